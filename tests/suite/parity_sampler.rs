//! The background parity sampler on live reads: a clean run of loads, pushes, a
//! rollback and reads (GET and ranking) stays at a mismatch ratio of 0; an erased
//! entity's history and a corrupted history record make the ratio of the features
//! they touch non-zero, and `/metrics` exports it per feature.

use std::sync::Arc;

use featstore::codec::EntityKey;
use featstore::codec::history::{RowRecordWriter, row_key};
use featstore::codec::value::encode_value;
use featstore::parity::sampler::{ParitySampler, ParitySamplerConfig};
use featstore::query::rank::{FeatureSelection, RankRequest};
use featstore::registry::file::parse_features_toml;
use featstore::store::AcceptAll;
use featstore::types::now_ms;
use featstore::{FeatureStore, LoadRequest, PushEvent, Value};

use super::common::small_config;

const SPECS: &str = r#"
[[feature]]
name = "price"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float64"

[[feature]]
name = "title"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "string"
"#;

fn wait_past(t: i64) {
    while now_ms() <= t {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

struct Run {
    _dir: tempfile::TempDir,
    store: Arc<FeatureStore>,
    sampler: ParitySampler,
}

fn start() -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(FeatureStore::open(dir.path().join("store"), small_config()).expect("open"));
    store
        .apply(parse_features_toml(SPECS, "specs").expect("specs"))
        .expect("apply");
    let config = ParitySamplerConfig {
        sample_rate: 1.0,
        queue_capacity: 4096,
    };
    let sampler = ParitySampler::start(&store, &config)
        .expect("start")
        .expect("a rate above 0 starts the sampler");
    let t = now_ms() - 60_000;
    for v in 0..2 {
        let mut text = String::from("entity_id,feature_name,event_time,value\n");
        for i in 0..4 {
            text.push_str(&format!("i{i},price,{},{}.5\n", t + v * 1000, i * 10 + v));
            text.push_str(&format!("i{i},title,{t},t{i}\n"));
        }
        let path = dir.path().join(format!("v{v}.csv"));
        std::fs::write(&path, text).expect("write");
        store
            .load_gated(&LoadRequest::new("items", &path), &AcceptAll, &|_| {})
            .expect("load");
        wait_past(now_ms());
    }
    store
        .push(vec![PushEvent {
            entity_type: "item".into(),
            entity_id: "i2".into(),
            event_time: t + 5000,
            features: vec![("price".into(), Value::Float64(99.5))],
            event_id: None,
        }])
        .expect("push");
    wait_past(now_ms());
    Run {
        _dir: dir,
        store,
        sampler,
    }
}

fn read_all(store: &FeatureStore) {
    for i in 0..4 {
        store
            .get_entity(
                "item",
                &format!("i{i}"),
                featstore::query::Names::List(&["price", "title"]),
            )
            .expect("get");
    }
    store
        .rank(RankRequest {
            context: Vec::new(),
            candidate_type: "item".into(),
            candidates: (0..4).map(|i| format!("i{i}")).collect(),
            features: FeatureSelection::Names(vec!["price".into(), "title".into()]),
            deadline: None,
        })
        .expect("rank");
    wait_past(now_ms());
}

#[test]
fn a_clean_run_stays_at_zero() {
    let run = start();
    read_all(&run.store);
    run.store.rollback("items").expect("rollback");
    wait_past(now_ms());
    read_all(&run.store);
    run.sampler.flush();
    let report = run.sampler.metrics().report();
    assert_eq!(report.records, 10, "every read sampled and checked");
    assert_eq!(report.values, 32);
    assert_eq!(report.mismatches, 0, "{report:?}");
    assert!(report.unverifiable.is_empty(), "{report:?}");
    let text = run.sampler.metrics().render();
    assert!(
        text.contains("featstore_parity_mismatch_ratio{feature=\"price@1\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("featstore_parity_samples_dropped_total 0\n"),
        "{text}"
    );
}

#[test]
fn an_erased_entity_and_a_corrupted_record_show_in_the_ratio() {
    let run = start();
    // i0's history is gone: its live values (still in the version) no longer match.
    run.store
        .erase_entity_history("item", "i0")
        .expect("erase history");
    // i1's price in the active version (2) is recorded wrong.
    let mut writer = RowRecordWriter::default();
    writer.clear();
    let mut wrong = Vec::new();
    encode_value(&Value::Float64(-1.0), now_ms() - 60_000, &mut wrong);
    let price = run
        .store
        .registry()
        .resolve("price")
        .expect("price registered")
        .id;
    writer.push(price, Some(&wrong)).expect("push");
    let view = run.store.view();
    let db = view.db();
    let cf = db.cf_handle("history.items").expect("history family");
    let entity = EntityKey::new(b"i1").expect("entity");
    db.put_cf(&cf, row_key(entity.as_bytes(), 2), writer.bytes())
        .expect("corrupt the history");
    drop(cf);
    read_all(&run.store);
    run.sampler.flush();
    let report = run.sampler.metrics().report();
    let price = &report.features["price@1"];
    let title = &report.features["title@1"];
    // i0 in the GET and the ranking read, both features; i1's price twice.
    assert_eq!(price.values, 8);
    assert_eq!(price.mismatches, 4, "{report:?}");
    assert_eq!(title.mismatches, 2, "{report:?}");
    assert!(price.mismatch_rate > 0.0 && title.mismatch_rate > 0.0);
    let text = run.sampler.metrics().render();
    assert!(
        text.contains("featstore_parity_mismatch_ratio{feature=\"price@1\"} 0.5\n"),
        "{text}"
    );
    assert!(
        text.contains("featstore_parity_mismatch_ratio{feature=\"title@1\"} 0.25\n"),
        "{text}"
    );
}

#[test]
fn a_rate_of_zero_starts_nothing_and_a_bad_rate_is_refused() {
    let run = start();
    let off = ParitySamplerConfig {
        sample_rate: 0.0,
        ..ParitySamplerConfig::default()
    };
    assert!(
        ParitySampler::start(&run.store, &off)
            .expect("start")
            .is_none()
    );
    let bad = ParitySamplerConfig {
        sample_rate: 2.0,
        ..ParitySamplerConfig::default()
    };
    assert!(ParitySampler::start(&run.store, &bad).is_err());
}
