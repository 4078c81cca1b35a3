//! Parity on a recorded run: every read served and logged between loads, activations
//! (swaps), rollbacks and pushes is recomputed from the history as of its log time and
//! must match exactly; erasing an entity's history makes its values mismatch (the check
//! can fail).

use std::sync::Arc;

use featstore::query::rank::{FeatureSelection, RankRequest};
use featstore::registry::file::parse_features_toml;
use featstore::servelog::reader::Selection;
use featstore::servelog::{ServeLog, ServeLogConfig};
use featstore::store::AcceptAll;
use featstore::types::now_ms;
use featstore::{FeatureStore, LoadRequest, PushEvent, ReadContext, Value};

use super::common::small_config;

const SPECS: &str = r#"
[[feature]]
name = "price"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float64"
ttl = "1h"

[[feature]]
name = "title"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "string"

[[feature]]
name = "age"
entity_type = "user"
group = "users"
owner = "tests"
dtype = "int64"
"#;

#[test]
fn parity_is_exact_over_loads_swaps_rollbacks_and_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(FeatureStore::open(dir.path().join("store"), small_config()).expect("open"));
    store
        .apply(parse_features_toml(SPECS, "specs").expect("specs"))
        .expect("apply");
    let log_dir = dir.path().join("log");
    let config = ServeLogConfig {
        enabled: true,
        sample_rate: 1.0,
        flush_interval_ms: 20,
        ..ServeLogConfig::default()
    };
    let log = ServeLog::start(&store, &config, &log_dir).expect("log");
    let t = now_ms() - 60_000;
    let load = |group: &str, n: usize, text: String| {
        let path = dir.path().join(format!("{group}{n}.csv"));
        std::fs::write(&path, text).expect("write");
        store
            .load_gated(&LoadRequest::new(group, &path), &AcceptAll, &|_| {})
            .expect("load");
    };
    let items = |v: usize| {
        let mut text = String::from("entity_id,feature_name,event_time,value\n");
        for i in 0..6 {
            // Version v changes some prices, drops item v, overlaps event times.
            if i == v {
                continue;
            }
            let price = if i % 2 == v % 2 { i * 10 + v } else { i * 10 };
            text.push_str(&format!(
                "i{i},price,{},{price}.5\n",
                t + (v as i64 % 2) * 1000
            ));
            text.push_str(&format!("i{i},title,{t},t{i}\n"));
        }
        text
    };
    let mut n = 0;
    let mut read = |store: &FeatureStore| {
        for i in 0..6 {
            n += 1;
            let id = format!("g{n}");
            let context = ReadContext {
                request_id: Some(&id),
                route: "get",
                guard: None,
            };
            store
                .get_entity_in(
                    context,
                    "item",
                    &format!("i{i}"),
                    featstore::Names::List(&["price", "title"]),
                )
                .expect("get");
        }
        n += 1;
        let id = format!("r{n}");
        let context = ReadContext {
            request_id: Some(&id),
            route: "rank",
            guard: None,
        };
        store
            .rank_in(
                context,
                RankRequest {
                    context: vec![("user".into(), "u1".into())],
                    candidate_type: "item".into(),
                    candidates: (0..7).map(|i| format!("i{i}")).collect(),
                    features: FeatureSelection::Names(vec![
                        "age".into(),
                        "price".into(),
                        "title".into(),
                    ]),
                    deadline: None,
                },
            )
            .expect("rank");
    };
    let push = |item: &str, at: i64, price: f64| {
        store
            .push(vec![PushEvent {
                entity_type: "item".into(),
                entity_id: item.into(),
                event_time: at,
                features: vec![("price".into(), Value::Float64(price))],
                event_id: None,
            }])
            .expect("push");
    };
    read(&store);
    load("items", 1, items(1));
    load(
        "users",
        1,
        format!("entity_id,feature_name,event_time,value\nu1,age,{t},31\n"),
    );
    read(&store);
    push("i2", t + 500, 99.5);
    read(&store);
    load("items", 2, items(2));
    read(&store);
    // A late push (older than the batch) and a replay.
    push("i3", t - 5000, 1.5);
    push("i2", t + 500, 99.5);
    read(&store);
    store.rollback("items").expect("rollback");
    read(&store);
    load("items", 3, items(3));
    read(&store);
    store.activate("items", 2).expect("swap to v2");
    read(&store);
    push("i4", t + 2000, 7.5);
    read(&store);
    log.close();

    let report = featstore::parity::check(&store, &log_dir, &Selection::default()).expect("check");
    assert_eq!(report.records, 9 * 7, "{report:#?}");
    assert!(report.unverifiable.is_empty(), "{report:#?}");
    assert_eq!(report.values, 9 * (6 * 2 + 1 + 7 * 2), "{report:#?}");
    assert_eq!(report.mismatches, 0, "{report:#?}");
    for (feature, parity) in &report.features {
        assert_eq!(parity.mismatches, 0, "{feature}: {parity:#?}");
        assert_eq!(parity.max_abs_diff, 0.0, "{feature}");
    }

    // The check can fail: without i4's history its served values no longer match.
    store.erase_entity_history("item", "i4").expect("erase");
    let report = featstore::parity::check(&store, &log_dir, &Selection::default()).expect("check");
    let price = &report.features["price@1"];
    assert!(price.mismatches > 0, "{report:#?}");
    assert!(
        price.examples.iter().all(|e| e.entity == "i4"),
        "{price:#?}"
    );
    assert!(price.mismatch_rate > 0.0);
}
