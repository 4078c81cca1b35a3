//! `featstore export-history` (`featstore::training::history_export`): picking from the
//! exported rows by the rule docs/history-export.md states gives the store's own
//! point-in-time answers (checked on every random run of `super::history`); composite
//! keys get one column per component; the manifest describes groups, versions and
//! features; a job that cannot be done leaves nothing behind; the HTTP job writes the
//! same files and refuses paths outside `exports/`.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use featstore::store::AcceptAll;
use featstore::store::history::read::HistoryQuery;
use featstore::training::history_export::{HistoryExportJob, MANIFEST, export};
use featstore::types::now_ms;
use featstore::{FeatureStatus, FeatureStore, LoadRequest, PushEvent, Value};

use super::common::{TestServer, json, post, small_config};

/// One exported row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub entity_id: String,
    pub components: Vec<String>,
    pub value: Option<f64>,
    pub event_time: i64,
    pub known_at: i64,
    pub stream: bool,
    pub version: Option<i64>,
}

/// Reads one feature's exported file (a float64 feature).
pub fn read_rows(dir: &Path) -> Vec<Row> {
    let file = std::fs::File::open(dir.join("part-00000.parquet")).expect("open part");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .clone()
        };
        let components: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n.ends_with("_id") && n != "entity_id")
            .collect();
        let (entity, value, event, known, source, version) = (
            col("entity_id"),
            col("value"),
            col("event_time"),
            col("known_at"),
            col("source"),
            col("batch_version"),
        );
        for r in 0..batch.num_rows() {
            rows.push(Row {
                entity_id: entity.as_string::<i32>().value(r).to_owned(),
                components: components
                    .iter()
                    .map(|c| col(c).as_string::<i32>().value(r).to_owned())
                    .collect(),
                value: (!value.is_null(r)).then(|| value.as_primitive::<Float64Type>().value(r)),
                event_time: event.as_primitive::<TimestampMillisecondType>().value(r),
                known_at: known.as_primitive::<TimestampMillisecondType>().value(r),
                stream: source.as_string::<i32>().value(r) == "stream",
                version: (!version.is_null(r))
                    .then(|| version.as_primitive::<Int64Type>().value(r)),
            });
        }
    }
    rows
}

/// The documented rule: among rows with `event_time <= ts` (and `known_at <= ts` as
/// known at), the greatest `(event_time, stream, known_at if stream else version)`.
pub fn pick<'r>(rows: &'r [Row], entity: &str, ts: i64, as_known_at: bool) -> Option<&'r Row> {
    rows.iter()
        .filter(|r| r.entity_id == entity)
        .filter(|r| r.event_time <= ts && (!as_known_at || r.known_at <= ts))
        .max_by_key(|r| {
            let tie = if r.stream {
                r.known_at
            } else {
                r.version.unwrap_or(i64::MIN)
            };
            (r.event_time, r.stream, tie)
        })
}

/// Exports `group` of `store` into `out` and checks, for every entity, feature,
/// time and mode, that the documented pick gives the store's point-in-time reading.
pub fn export_agrees(
    store: &FeatureStore,
    out: &Path,
    group: &str,
    entity_type: &str,
    entities: &[String],
    features: &[&str],
    times: &[i64],
) {
    let summary = export(
        store,
        &HistoryExportJob {
            out: out.to_owned(),
            groups: vec![group.to_owned()],
            features: Vec::new(),
        },
        None,
    )
    .expect("export");
    assert_eq!(summary.groups, 1);
    let mut files: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
    for f in features {
        let dir = out.join(format!("group={group}/feature={f}/version=1"));
        files.insert(f, read_rows(&dir));
    }
    let names: Vec<&str> = features.to_vec();
    for &ts in times {
        for as_known_at in [false, true] {
            for e in entities {
                let answer = store
                    .get_entity_from_history(
                        entity_type,
                        e,
                        featstore::query::Names::List(&names),
                        ts,
                        HistoryQuery::PointInTime { as_known_at },
                        None,
                    )
                    .expect("point-in-time read");
                for reading in answer.into_vector().features {
                    let rows = &files[reading.name.as_ref()];
                    let picked = pick(rows, e, ts, as_known_at);
                    let context = format!("{e}.{} at {ts}, as known: {as_known_at}", reading.name);
                    match picked {
                        None => assert_eq!(reading.status, FeatureStatus::NotFound, "{context}"),
                        Some(row) => {
                            assert_eq!(reading.event_time, Some(row.event_time), "{context}");
                            if reading.status != FeatureStatus::Expired {
                                assert_eq!(
                                    reading.value,
                                    Some(row.value.map_or(Value::Null, Value::Float64)),
                                    "{context}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

const REGISTRY: &str = r#"
[[entity_type]]
name = "user_item"
components = ["user", "item"]
owner = "tests"

[[feature]]
name = "affinity"
entity_type = "user_item"
group = "affinity"
owner = "tests"
dtype = "float64"
ttl = "10s"
default = 0.0

[[feature]]
name = "a"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float64"
"#;

fn store_with_data(dir: &Path) -> std::sync::Arc<FeatureStore> {
    let store =
        std::sync::Arc::new(FeatureStore::open(dir.join("store"), small_config()).expect("open"));
    store
        .apply_objects(
            featstore::registry::file::parse_registry_toml(REGISTRY, "registry").expect("parses"),
        )
        .expect("apply");
    let base = now_ms() - 5000;
    let path = dir.join("aff.csv");
    std::fs::write(
        &path,
        format!(
            "entity_id,feature_name,event_time,value\nu1|i1,affinity,{},0.75\nu%7C2|i2,affinity,{},0.5\n",
            base + 1000,
            base + 2000
        ),
    )
    .expect("write");
    store
        .load_gated(&LoadRequest::new("affinity", &path), &AcceptAll, &|_| {})
        .expect("load");
    store
        .push(vec![PushEvent {
            entity_type: "user_item".into(),
            entity_id: "u1|i1".into(),
            event_time: base + 3000,
            features: vec![("affinity".into(), Value::Float64(0.25))],
            event_id: None,
        }])
        .expect("push");
    store
}

#[test]
fn composite_keys_manifest_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_data(dir.path());
    let out = dir.path().join("export");
    let summary = export(
        &store,
        &HistoryExportJob {
            out: out.clone(),
            groups: vec!["affinity".into()],
            features: Vec::new(),
        },
        None,
    )
    .expect("export");
    assert_eq!(
        (
            summary.groups,
            summary.features,
            summary.entities,
            summary.values
        ),
        (1, 1, 2, 3)
    );
    let rows = read_rows(&out.join("group=affinity/feature=affinity/version=1"));
    let mut keys: Vec<(String, Vec<String>, bool)> = rows
        .iter()
        .map(|r| (r.entity_id.clone(), r.components.clone(), r.stream))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            (
                "u%7C2|i2".to_owned(),
                vec!["u|2".to_owned(), "i2".to_owned()],
                false
            ),
            (
                "u1|i1".to_owned(),
                vec!["u1".to_owned(), "i1".to_owned()],
                false
            ),
            (
                "u1|i1".to_owned(),
                vec!["u1".to_owned(), "i1".to_owned()],
                true
            ),
        ],
        "the component columns hold the un-escaped components"
    );
    let batch = rows.iter().find(|r| !r.stream).expect("a batch row");
    assert_eq!(batch.version, Some(1));
    let manifest = json(&std::fs::read_to_string(out.join(MANIFEST)).expect("manifest"));
    assert_eq!(manifest["format"], 1);
    let group = &manifest["groups"][0];
    assert_eq!(group["name"], "affinity");
    assert_eq!(
        group["entity_components"],
        serde_json::json!(["user", "item"])
    );
    assert_eq!(group["versions"][0]["version"], 1);
    assert_eq!(group["activations"][0]["version"], 1);
    let feature = &group["features"][0];
    assert_eq!(feature["name"], "affinity");
    assert_eq!(feature["ttl_ms"], 10_000);
    assert_eq!(feature["default"], 0.0);
    assert_eq!(feature["current"], true);
    assert_eq!(feature["path"], "group=affinity/feature=affinity/version=1");
    assert_eq!(feature["rows"], 3);

    // A second export into the same directory is refused and changes nothing.
    let again = export(
        &store,
        &HistoryExportJob {
            out: out.clone(),
            ..HistoryExportJob::default()
        },
        None,
    );
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("not empty")),
        "{again:?}"
    );
    assert_eq!(
        read_rows(&out.join("group=affinity/feature=affinity/version=1")).len(),
        3
    );
    // Unknown names are refused before anything is written.
    let other = dir.path().join("other");
    for job in [
        HistoryExportJob {
            out: other.clone(),
            groups: vec!["nope".into()],
            features: Vec::new(),
        },
        HistoryExportJob {
            out: other.clone(),
            groups: Vec::new(),
            features: vec!["nope".into()],
        },
    ] {
        let result = export(&store, &job, None);
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.to_string().contains("no ")),
            "{result:?}"
        );
        assert!(!other.exists());
    }
    // A caller that may not read a selected feature is refused whole.
    let deny = |_: &featstore::registry::FeatureDefinition| Err("denied".to_owned());
    let result = export(
        &store,
        &HistoryExportJob {
            out: other.clone(),
            ..HistoryExportJob::default()
        },
        Some(&deny),
    );
    assert!(
        result.as_ref().is_err_and(|e| e.to_string() == "denied"),
        "{result:?}"
    );
    assert!(!other.exists());
    let mut partial = other.clone().into_os_string();
    partial.push(".partial");
    assert!(!Path::new(&partial).exists());
}

#[test]
fn the_http_job_writes_under_exports_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_data(dir.path());
    let server = TestServer::start(store.clone());
    let url = server.url("/v1/history-exports");
    let (status, body) = post(&url, r#"{"out": "hist", "groups": ["affinity"]}"#);
    assert_eq!(status, 200, "{body}");
    let summary = json(&body);
    assert_eq!(summary["values"], 3, "{body}");
    let rows = read_rows(
        &store
            .dir()
            .join("exports/hist/group=affinity/feature=affinity/version=1"),
    );
    assert_eq!(rows.len(), 3);
    for bad in [
        r#"{"out": "../escape"}"#,
        r#"{"out": "/tmp/x"}"#,
        r#"{"out": "ok", "extra": 1}"#,
        r#"{"out": "ok2", "features": ["nope"]}"#,
        r#"{"out": "hist"}"#,
    ] {
        let (status, body) = post(&url, bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
