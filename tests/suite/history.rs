//! The history store against models: random runs of loads (overlapping event times,
//! values dropped from a version), activations, rollbacks and pushes (late, out of
//! order, replayed).
//!
//! * As-of reads at every time a live read was answered give that live answer,
//!   status, value, event time and age (TTL judged at that time).
//! * Point-in-time reads (Feast semantics) equal a brute-force model over every value
//!   ever servable, with and without as-known-at, TTL exactly at and past the
//!   boundary; as-known-at never sees a version activated, or a push written, after
//!   the row's time (a late backfill).

use std::collections::BTreeMap;

use featstore::codec::value::encode_value;
use featstore::registry::file::parse_features_toml;
use featstore::store::AcceptAll;
use featstore::store::history::read::HistoryQuery;
use featstore::types::now_ms;
use featstore::{FeatureStatus, FeatureStore, LoadRequest, PushEvent, Value};
use proptest::prelude::*;

use super::common::small_config;

const TTL_B_MS: i64 = 1000;
const ENTITIES: usize = 3;
const FEATURES: [&str; 2] = ["a", "b"];

fn specs() -> Vec<featstore::FeatureSpec> {
    parse_features_toml(
        r#"
        [[feature]]
        name = "a"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "float64"

        [[feature]]
        name = "b"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "float64"
        ttl = "1s"
        "#,
        "history specs",
    )
    .expect("specs")
}

#[derive(Debug, Clone)]
enum Op {
    /// `(entity, feature, event step, value)`; at least one row.
    Load(Vec<(usize, usize, i64, i64)>),
    /// Activates the n-th version loaded so far (modulo their count).
    Activate(usize),
    Rollback,
    /// `(entity, feature, event step, value)`.
    Push(usize, usize, i64, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let row = (0..ENTITIES, 0..FEATURES.len(), 0i64..12, 0i64..4);
    prop_oneof![
        3 => prop::collection::vec(row.clone(), 1..7).prop_map(Op::Load),
        1 => (0usize..8).prop_map(Op::Activate),
        1 => Just(Op::Rollback),
        3 => row.prop_map(|(e, f, t, v)| Op::Push(e, f, t, v)),
    ]
}

/// Waits until the clock has moved past `t`, so that events before and after a call
/// never share a millisecond.
fn after(t: i64) -> i64 {
    while now_ms() <= t {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    now_ms()
}

type Key = (usize, usize);
/// `(value, event time)`.
type Fact = (f64, i64);

/// What the model knows of a run.
#[derive(Default)]
struct Model {
    /// Every version loaded: its number and full content.
    versions: Vec<(u64, BTreeMap<Key, Fact>)>,
    /// Versions served, with the earliest time each was first served (the end of
    /// the call that activated it).
    served: BTreeMap<u64, i64>,
    /// Pushes that became the latest value: `(key, fact, written by)`.
    pushes: Vec<(Key, Fact, i64)>,
    /// The latest pushed value per key: `(event time, encoded)`.
    latest: BTreeMap<Key, (i64, Vec<u8>)>,
    /// Calls that changed the store: `(started, ended)`.
    calls: Vec<(i64, i64)>,
}

impl Model {
    fn content(&self, version: u64) -> Option<&BTreeMap<Key, Fact>> {
        self.versions
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, c)| c)
    }

    /// Whether `ts` falls within a call (then what was known at `ts` is undecided).
    fn undecided(&self, ts: i64) -> bool {
        self.calls.iter().any(|&(a, b)| a <= ts && ts <= b)
    }

    /// The point-in-time fact of `key` at `ts`: brute force over every value ever
    /// servable, newest event time at or before `ts`; ties to pushes, then to the
    /// newer version.
    fn point_in_time(&self, key: Key, ts: i64, as_known_at: bool) -> Option<Fact> {
        let mut best: Option<(i64, Vec<u8>, Fact)> = None;
        for &(k, fact, written) in &self.pushes {
            if k != key || fact.1 > ts || (as_known_at && written > ts) {
                continue;
            }
            let mut bytes = Vec::new();
            encode_value(&Value::Float64(fact.0), fact.1, &mut bytes);
            if best
                .as_ref()
                .is_none_or(|(t, b, _)| (fact.1, &bytes) > (*t, b))
            {
                best = Some((fact.1, bytes, fact));
            }
        }
        let mut best = best.map(|(_, _, fact)| fact);
        for (&version, &served) in self.served.iter().rev() {
            if as_known_at && served > ts {
                continue;
            }
            let Some(&fact) = self.content(version).and_then(|c| c.get(&key)) else {
                continue;
            };
            if fact.1 <= ts && best.is_none_or(|b| fact.1 > b.1) {
                best = Some(fact);
            }
        }
        best
    }
}

/// One reading: status, value, event time, age.
type Reading = (FeatureStatus, Option<Value>, Option<i64>, Option<i64>);

fn readings(answer: featstore::query::EntityAnswer) -> Vec<Reading> {
    answer
        .into_vector()
        .features
        .into_iter()
        .map(|f| (f.status, f.value, f.event_time, f.age_ms))
        .collect()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FeatureStore::open(dir.path().join("store"), small_config()).expect("open");
    store.apply(specs()).expect("apply");
    let base = now_ms() - 6000;
    let event = |step: i64| base + step * 500;
    let mut model = Model::default();
    // `(time, entity, live answer)`.
    let mut live = Vec::new();
    let names = FEATURES.to_vec();
    let mut last = now_ms();
    for (n, op) in ops.into_iter().enumerate() {
        let started = after(last);
        match op {
            Op::Load(rows) => {
                let mut content = BTreeMap::new();
                for (e, f, t, v) in rows {
                    content.insert((e, f), (v as f64 + 0.5, event(t)));
                }
                let mut text = String::from("entity_id,feature_name,event_time,value\n");
                for (&(e, f), &(v, t)) in &content {
                    text.push_str(&format!("e{e},{},{t},{v}\n", FEATURES[f]));
                }
                let path = dir.path().join(format!("load{n}.csv"));
                std::fs::write(&path, text).expect("write");
                let record = store
                    .load_gated(&LoadRequest::new("items", &path), &AcceptAll, &|_| {})
                    .expect("load");
                let ended = now_ms();
                model.served.entry(record.version).or_insert(ended);
                model.versions.push((record.version, content));
                model.calls.push((started, ended));
            }
            Op::Activate(i) => {
                if model.versions.is_empty() {
                    continue;
                }
                let version = model.versions[i % model.versions.len()].0;
                let ok = store.activate("items", version).is_ok();
                let ended = now_ms();
                if ok {
                    model.served.entry(version).or_insert(ended);
                }
                model.calls.push((started, ended));
            }
            Op::Rollback => {
                let result = store.rollback("items");
                let ended = now_ms();
                if let Ok(version) = result {
                    model.served.entry(version).or_insert(ended);
                }
                model.calls.push((started, ended));
            }
            Op::Push(e, f, t, v) => {
                let value = v as f64 + 0.25;
                store
                    .push(vec![PushEvent {
                        entity_type: "item".into(),
                        entity_id: format!("e{e}"),
                        event_time: event(t),
                        features: vec![(FEATURES[f].to_owned(), Value::Float64(value))],
                        event_id: None,
                    }])
                    .expect("push");
                let ended = now_ms();
                let mut bytes = Vec::new();
                encode_value(&Value::Float64(value), event(t), &mut bytes);
                let newer = model
                    .latest
                    .get(&(e, f))
                    .is_none_or(|(lt, lb)| (event(t), &bytes) > (*lt, lb));
                if newer {
                    model.latest.insert((e, f), (event(t), bytes));
                    model.pushes.push(((e, f), (value, event(t)), ended));
                }
                model.calls.push((started, ended));
            }
        }
        after(now_ms());
        for e in 0..ENTITIES {
            let answer = store
                .get_entity(
                    "item",
                    &format!("e{e}"),
                    featstore::query::Names::List(&names),
                )
                .expect("live read");
            // The time the read was judged at, which its as-of twin is asked for.
            let at = answer.now_ms();
            live.push((at, e, readings(answer)));
        }
        last = now_ms();
    }

    // As of each live read's time: that live answer.
    for (at, e, expected) in &live {
        let answer = store
            .get_entity_as_of(
                "item",
                &format!("e{e}"),
                featstore::query::Names::List(&names),
                *at,
                None,
            )
            .expect("as-of read");
        assert_eq!(&readings(answer), expected, "entity e{e} as of {at}");
    }

    // Point in time: the brute-force model, at read times and at TTL boundaries.
    let mut times: Vec<i64> = live.iter().map(|(at, _, _)| *at).collect();
    for step in 0..12 {
        times.extend([
            event(step),
            event(step) + TTL_B_MS,
            event(step) + TTL_B_MS + 1,
        ]);
    }
    for &ts in &times {
        for as_known_at in [false, true] {
            if as_known_at && model.undecided(ts) {
                continue;
            }
            for e in 0..ENTITIES {
                let answer = store
                    .get_entity_from_history(
                        "item",
                        &format!("e{e}"),
                        featstore::query::Names::List(&names),
                        ts,
                        HistoryQuery::PointInTime { as_known_at },
                        None,
                    )
                    .expect("point-in-time read");
                let got = readings(answer);
                for (f, reading) in got.iter().enumerate() {
                    let expected = model.point_in_time((e, f), ts, as_known_at);
                    let context = format!("e{e}.{} at {ts}, as known: {as_known_at}", FEATURES[f]);
                    match expected {
                        None => assert_eq!(reading.0, FeatureStatus::NotFound, "{context}"),
                        Some((value, time)) => {
                            assert_eq!(reading.2, Some(time), "{context}");
                            assert!(time <= ts, "never a value from after the row: {context}");
                            if f == 1 && ts - time > TTL_B_MS {
                                assert_eq!(reading.0, FeatureStatus::Expired, "{context}");
                                assert_eq!(reading.1, None, "{context}");
                            } else {
                                assert_eq!(reading.0, FeatureStatus::Present, "{context}");
                                assert_eq!(reading.1, Some(Value::Float64(value)), "{context}");
                            }
                        }
                    }
                }
            }
        }
    }

    // The export: its documented pick gives the store's own point-in-time answers.
    let entities: Vec<String> = (0..ENTITIES).map(|e| format!("e{e}")).collect();
    super::history_export::export_agrees(
        &store,
        &dir.path().join("export"),
        "items",
        "item",
        &entities,
        &FEATURES,
        &times,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn history_answers_as_the_live_store_and_the_model_did(
        ops in prop::collection::vec(op(), 1..14)
    ) {
        run(ops);
    }
}

/// A backfill loaded after the fact (older event times, activated later) is seen by
/// plain point-in-time rows but never by as-known-at rows before its activation.
#[test]
fn as_known_at_excludes_a_late_backfill() {
    run(vec![
        Op::Load(vec![(0, 0, 8, 1)]),
        Op::Push(1, 0, 9, 2),
        // The backfill: older event times than what was served, loaded later.
        Op::Load(vec![(0, 0, 2, 3), (1, 0, 3, 3), (2, 0, 1, 3)]),
        Op::Rollback,
        Op::Push(1, 0, 1, 0),
        Op::Push(1, 0, 9, 2),
    ]);
}

/// `GET ...?as_of=` and `POST /v1/rank` with `"as_of"` answer what the live reads
/// answered then, over HTTP, across a load, a push and a rollback.
#[test]
fn as_of_reads_over_http_answer_what_was_served() {
    use super::common::{TestServer, get, json, post};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(
        FeatureStore::open(dir.path().join("store"), small_config()).expect("open"),
    );
    store.apply(specs()).expect("apply");
    let server = TestServer::start(store.clone());
    let t0 = now_ms() - 500;
    let load = |n: u64, value: f64| {
        let path = dir.path().join(format!("v{n}.csv"));
        std::fs::write(
            &path,
            format!(
                "entity_id,feature_name,event_time,value\ne0,a,{t0},{value}\ne1,a,{t0},{value}\n"
            ),
        )
        .expect("write");
        store
            .load_gated(&LoadRequest::new("items", &path), &AcceptAll, &|_| {})
            .expect("load");
    };
    let rank_body = |as_of: Option<i64>| {
        let as_of = as_of.map_or(String::new(), |t| format!(r#","as_of":{t}"#));
        format!(
            r#"{{"candidates":{{"entity_type":"item","ids":["e0","e1"]}},"features":["a"]{as_of}}}"#
        )
    };
    let mut seen = Vec::new();
    let mut last = now_ms();
    for step in 0..4 {
        after(last);
        match step {
            0 => load(1, 1.5),
            1 => load(2, 2.5),
            2 => {
                store
                    .push(vec![PushEvent {
                        entity_type: "item".into(),
                        entity_id: "e1".into(),
                        event_time: t0 + 1,
                        features: vec![("a".into(), Value::Float64(9.5))],
                        event_id: None,
                    }])
                    .expect("push");
            }
            _ => {
                store.rollback("items").expect("rollback");
            }
        }
        after(now_ms());
        let (status, body) = get(&server.url("/v1/features/item/e0?names=a"));
        assert_eq!(status, 200, "{body}");
        let live = json(&body);
        // The read's own time: its value's event time plus its age.
        let read_at = live["features"][0]["event_time"].as_i64().expect("time")
            + live["features"][0]["age_ms"].as_i64().expect("age");
        let (status, ranked) = post(&server.url("/v1/rank"), &rank_body(None));
        assert_eq!(status, 200, "{ranked}");
        let ranked = json(&ranked);
        seen.push((read_at, live, ranked));
        last = now_ms();
    }
    for (at, live, ranked) in seen {
        let (status, body) = get(&server.url(&format!("/v1/features/item/e0?names=a&as_of={at}")));
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body), live, "GET as of {at}");
        let ranked_at = ranked["now_ms"].as_i64().expect("now_ms");
        let (status, body) = post(&server.url("/v1/rank"), &rank_body(Some(ranked_at)));
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body), ranked, "rank as of {ranked_at}");
    }
    let (status, body) = get(&server.url("/v1/features/item/e0?names=a&as_of=yesterday"));
    assert_eq!(status, 400, "{body}");
}

const TRAINING_REGISTRY: &str = r#"
[[entity_type]]
name = "user_item"
components = ["user", "item"]
owner = "tests"

[[feature]]
name = "a"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float64"
ttl = "10s"

[[feature]]
name = "affinity"
entity_type = "user_item"
group = "affinity"
owner = "tests"
dtype = "float64"
"#;

/// Reads the Parquet file `path` into `(column name, rendered values)`.
fn parquet_columns(path: &std::path::Path) -> Vec<(String, Vec<String>)> {
    use arrow_array::Array;
    let file = std::fs::File::open(path).expect("open");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        if out.is_empty() {
            out = batch
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), Vec::new()))
                .collect();
        }
        for (i, column) in batch.columns().iter().enumerate() {
            use arrow_array::cast::AsArray;
            use arrow_array::types::{Float64Type, Int64Type};
            for row in 0..column.len() {
                let text = if column.is_null(row) {
                    "null".to_owned()
                } else {
                    match column.data_type() {
                        arrow_schema::DataType::Utf8 => {
                            column.as_string::<i32>().value(row).to_owned()
                        }
                        arrow_schema::DataType::Float64 => {
                            column.as_primitive::<Float64Type>().value(row).to_string()
                        }
                        arrow_schema::DataType::Int64 => {
                            column.as_primitive::<Int64Type>().value(row).to_string()
                        }
                        other => panic!("unexpected column type {other}"),
                    }
                };
                out[i].1.push(text);
            }
        }
    }
    out
}

/// `featstore training-set`'s job: composite keys from two spine columns, labels
/// passed through, TTL measured from the row's timestamp (exactly at the boundary:
/// present; one past: expired), nothing from after the row, and as-known-at excluding
/// a backfill activated after the row; the HTTP job writes the same file.
#[test]
fn training_sets_are_point_in_time_correct() {
    use featstore::training::{TrainingJob, build};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(
        FeatureStore::open(dir.path().join("store"), small_config()).expect("open"),
    );
    store
        .apply_objects(
            featstore::registry::file::parse_registry_toml(TRAINING_REGISTRY, "registry")
                .expect("parses"),
        )
        .expect("apply");
    let load = |group: &str, name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        store
            .load_gated(&LoadRequest::new(group, &path), &AcceptAll, &|_| {})
            .expect("load");
    };
    // Event times in the recent past: the batch has i1 at base+1000 (1.5), a push i2
    // at base+5000; the backfill, loaded later, i3 at base+3000.
    let base = now_ms() - 5000;
    load(
        "items",
        "items1.csv",
        &format!(
            "entity_id,feature_name,event_time,value\ni1,a,{},1.5\n",
            base + 1000
        ),
    );
    load(
        "affinity",
        "aff.csv",
        &format!(
            "entity_id,feature_name,event_time,value\nu1|i1,affinity,{},0.75\n",
            base + 2000
        ),
    );
    store
        .push(vec![PushEvent {
            entity_type: "item".into(),
            entity_id: "i2".into(),
            event_time: base + 5000,
            features: vec![("a".into(), Value::Float64(2.5))],
            event_id: None,
        }])
        .expect("push");
    let before_backfill = after(now_ms());
    after(before_backfill);
    load(
        "items",
        "items2.csv",
        &format!(
            "entity_id,feature_name,event_time,value\ni1,a,{},1.5\ni3,a,{},3.5\n",
            base + 1000,
            base + 3000
        ),
    );
    let spine = dir.path().join("spine.csv");
    std::fs::write(
        &spine,
        format!(
            "user_id,item_id,event_timestamp,label\n\
             u1,i1,{},a\n\
             u1,i1,{},b\n\
             u1,i1,{},c\n\
             u1,i2,{},d\n\
             u1,i2,{},e\n\
             u2,i3,{before_backfill},f\n",
            base + 999,
            base + 11000,
            base + 11001,
            base + 6000,
            base + 4999,
        ),
    )
    .expect("spine");
    let job = |as_known_at: bool, out: &str| TrainingJob {
        spine: spine.clone(),
        features: featstore::FeatureSelection::Names(vec!["a".into(), "affinity".into()]),
        timestamp_column: "event_timestamp".into(),
        as_known_at,
        out: dir.path().join(out),
        guard: None,
        threads: 1,
    };
    let summary = build(&store, &job(false, "plain.parquet")).expect("build");
    assert_eq!(summary.rows, 6);
    assert_eq!(summary.key_columns, ["user_id", "item_id"]);
    let plain = parquet_columns(&dir.path().join("plain.parquet"));
    let column = |cols: &[(String, Vec<String>)], name: &str| -> Vec<String> {
        cols.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| {
                panic!(
                    "no column {name}: {:?}",
                    cols.iter().map(|c| &c.0).collect::<Vec<_>>()
                )
            })
            .1
            .clone()
    };
    assert_eq!(column(&plain, "label"), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(
        column(&plain, "a"),
        ["null", "1.5", "null", "2.5", "null", "3.5"]
    );
    assert_eq!(
        column(&plain, "a__status"),
        [
            "not_found",
            "present",
            "expired",
            "present",
            "not_found",
            "present"
        ]
    );
    let t = |d: i64| (base + d).to_string();
    assert_eq!(
        column(&plain, "a__event_time"),
        [
            "null".into(),
            t(1000),
            t(1000),
            t(5000),
            "null".into(),
            t(3000)
        ]
    );
    // The composite key (user, item) from two columns; no TTL.
    assert_eq!(
        column(&plain, "affinity"),
        ["null", "0.75", "0.75", "null", "null", "null"]
    );
    // As known at the row's time: the backfill was not loaded yet for row f.
    build(&store, &job(true, "known.parquet")).expect("build");
    let known = parquet_columns(&dir.path().join("known.parquet"));
    // Rows a and e precede what they ask for; row f precedes the backfill. Rows b to
    // d lie after every load (5 s and more after the test began).
    assert_eq!(
        column(&known, "a__status"),
        [
            "not_found",
            "present",
            "expired",
            "present",
            "not_found",
            "not_found"
        ],
        "as known at each row's time"
    );
    assert_eq!(column(&known, "affinity"), column(&plain, "affinity"));

    // The HTTP job: files only under exports/.
    use super::common::{TestServer, json, post};
    let exports = dir.path().join("store").join("exports");
    std::fs::create_dir_all(&exports).expect("exports");
    std::fs::copy(&spine, exports.join("spine.csv")).expect("copy");
    let server = TestServer::start(store.clone());
    let (status, body) = post(
        &server.url("/v1/training-sets"),
        r#"{"spine":"spine.csv","features":["a","affinity"],"out":"train.parquet"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["rows"], 6);
    assert_eq!(parquet_columns(&exports.join("train.parquet")), plain);
    let (status, body) = post(
        &server.url("/v1/training-sets"),
        r#"{"spine":"../spine.csv","features":["a"],"out":"x.parquet"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        &server.url("/v1/training-sets"),
        r#"{"spine":"spine.csv","features":["a"],"out":"/tmp/x.parquet"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        &server.url("/v1/training-sets"),
        r#"{"spine":"spine.csv","features":["a"],"out":"t.parquet","threads":0}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(!exports.join("t.parquet").exists());
}

/// A spine of several batches answered on several threads: the same file, row for
/// row in spine order, as on one thread; a bad row in a later batch fails the job
/// with that row's number and leaves no file, whole or partial.
#[test]
fn training_sets_on_several_threads_match_one_thread() {
    use featstore::training::{BATCH_ROWS, TrainingError, TrainingJob, build};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FeatureStore::open(dir.path().join("store"), small_config()).expect("open");
    store
        .apply_objects(
            featstore::registry::file::parse_registry_toml(TRAINING_REGISTRY, "registry")
                .expect("parses"),
        )
        .expect("apply");
    let base = now_ms() - 100_000;
    let mut text = String::from("entity_id,feature_name,event_time,value\n");
    for i in 0..100 {
        text.push_str(&format!("i{i},a,{},{i}.5\n", base + i * 500));
    }
    let load = dir.path().join("items.csv");
    std::fs::write(&load, text).expect("write");
    store
        .load_gated(&LoadRequest::new("items", &load), &AcceptAll, &|_| {})
        .expect("load");
    let rows = 3 * BATCH_ROWS + 17;
    let spine_text = |bad_row: Option<usize>| {
        let mut spine = String::from("item_id,event_timestamp,label\n");
        for r in 0..rows {
            // Entities past i99 are unknown; times fall before, among and after the
            // events.
            let ts = if Some(r) == bad_row {
                "yesterday".to_owned()
            } else {
                (base - 5000 + (r as i64 * 7919) % 60_000).to_string()
            };
            spine.push_str(&format!("i{},{ts},{r}\n", (r * 31) % 120));
        }
        spine
    };
    let spine = dir.path().join("spine.csv");
    std::fs::write(&spine, spine_text(None)).expect("spine");
    let job = |threads: usize, out: &str| TrainingJob {
        spine: spine.clone(),
        features: featstore::FeatureSelection::Names(vec!["a".into()]),
        timestamp_column: "event_timestamp".into(),
        as_known_at: false,
        out: dir.path().join(out),
        guard: None,
        threads,
    };
    let one = build(&store, &job(1, "one.parquet")).expect("one thread");
    let three = build(&store, &job(3, "three.parquet")).expect("three threads");
    assert_eq!(one.rows, rows as u64);
    assert_eq!(
        (three.rows, three.values, three.present),
        (one.rows, one.values, one.present)
    );
    assert!(one.present > 0 && one.present < one.values, "{one:?}");
    let columns = parquet_columns(&dir.path().join("one.parquet"));
    assert_eq!(parquet_columns(&dir.path().join("three.parquet")), columns);
    let label = &columns.iter().find(|(n, _)| n == "label").expect("label").1;
    let expected: Vec<String> = (0..rows).map(|r| r.to_string()).collect();
    assert_eq!(label, &expected, "spine order");

    let bad = 2 * BATCH_ROWS + 5;
    std::fs::write(&spine, spine_text(Some(bad))).expect("spine");
    for threads in [1, 3] {
        let out = format!("bad{threads}.parquet");
        match build(&store, &job(threads, &out)) {
            Err(TrainingError::Spine { message, .. }) => {
                assert!(message.contains(&format!("row {bad}:")), "{message}");
            }
            other => panic!("a bad timestamp on {threads} threads: {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("bad"))
            .collect();
        assert!(left.is_empty(), "files left by a failed job: {left:?}");
    }
}
