//! Streamed features: pushes, the event-time rule against stored and batch values,
//! all-or-nothing validation, TTL (read and compaction), freshness, and concurrency.

use std::sync::Arc;

use featstore::FeatureStore;
use featstore::codec::value::encode_value;
use featstore::loader::LoadRequest;
use featstore::registry::file::parse_features_toml;
use featstore::store::{PushError, PushEvent};
use featstore::types::{FeatureStatus, Value, now_ms};
use proptest::prelude::*;

use super::common::{item_specs, small_config, temp_store, write_items_csv};

/// Batch time of `write_items_csv`.
const BATCH_TIME: i64 = 1_700_000_000_000;

fn event(entity: &str, time: i64, features: &[(&str, Value)]) -> PushEvent {
    PushEvent {
        entity_type: "item".into(),
        entity_id: entity.into(),
        event_time: time,
        features: features
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect(),
        event_id: None,
    }
}

fn read(
    store: &FeatureStore,
    entity: &str,
    name: &str,
) -> (FeatureStatus, Option<Value>, Option<i64>) {
    let vector = store.get_features("item", entity, &[name]).expect("read");
    let r = &vector.features[0];
    (r.status, r.value.clone(), r.event_time)
}

fn loaded_store(entities: u64) -> (tempfile::TempDir, FeatureStore) {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let csv = write_items_csv(dir.path(), 1, entities);
    store
        .load(&LoadRequest::new("items", csv), &|_| {})
        .expect("load");
    (dir, store)
}

#[test]
fn newer_pushed_values_win_over_batch_and_older_ones_do_not() {
    let (_dir, store) = loaded_store(10);
    let outcome = store
        .push(vec![
            event("i1", BATCH_TIME + 1, &[("item_a", Value::Float64(7.0))]),
            event("i2", BATCH_TIME - 1, &[("item_a", Value::Float64(8.0))]),
            event(
                "i99",
                BATCH_TIME,
                &[("item_label", Value::String("new".into()))],
            ),
        ])
        .expect("push");
    assert_eq!(outcome.accepted, 3);
    assert_eq!(outcome.values_written, 3);
    assert_eq!(outcome.ignored_older, 0);
    assert_eq!(
        read(&store, "i1", "item_a"),
        (
            FeatureStatus::Present,
            Some(Value::Float64(7.0)),
            Some(BATCH_TIME + 1)
        )
    );
    // Older than the batch value: the batch value stays visible.
    assert_eq!(read(&store, "i2", "item_a").1, Some(Value::Float64(1002.0)));
    // Only streamed.
    assert_eq!(
        read(&store, "i99", "item_label").1,
        Some(Value::String("new".into()))
    );
    // Older than the stored streamed value: ignored and counted; a replay likewise.
    let outcome = store
        .push(vec![
            event("i1", BATCH_TIME, &[("item_a", Value::Float64(9.0))]),
            event("i1", BATCH_TIME + 1, &[("item_a", Value::Float64(7.0))]),
        ])
        .expect("push");
    assert_eq!((outcome.ignored_older, outcome.values_written), (2, 0));
    assert_eq!(read(&store, "i1", "item_a").1, Some(Value::Float64(7.0)));
}

#[test]
fn a_later_batch_version_with_older_times_does_not_hide_fresher_streamed_values() {
    let (dir, store) = loaded_store(10);
    store
        .push(vec![event(
            "i3",
            BATCH_TIME + 5,
            &[("item_b", Value::Float64(-1.0))],
        )])
        .expect("push");
    // Version 2 carries the same (older) event time for every value.
    let csv = write_items_csv(dir.path(), 2, 10);
    store
        .load(&LoadRequest::new("items", csv), &|_| {})
        .expect("load v2");
    assert_eq!(read(&store, "i3", "item_b").1, Some(Value::Float64(-1.0)));
    assert_eq!(read(&store, "i3", "item_a").1, Some(Value::Float64(2003.0)));
    store.rollback("items").expect("rollback");
    assert_eq!(read(&store, "i3", "item_b").1, Some(Value::Float64(-1.0)));
}

#[test]
fn a_later_batch_version_with_newer_times_wins_over_older_streamed_values() {
    let (dir, store) = loaded_store(10);
    store
        .push(vec![event(
            "i4",
            BATCH_TIME + 5,
            &[("item_c", Value::Float64(-4.0))],
        )])
        .expect("push");
    let path = dir.path().join("newer.csv");
    std::fs::write(
        &path,
        format!(
            "entity_id,event_time,item_a,item_b,item_c,item_label\ni4,{},1,2,3,x\n",
            BATCH_TIME + 10
        ),
    )
    .expect("csv");
    store
        .load(&LoadRequest::new("items", path), &|_| {})
        .expect("load");
    assert_eq!(read(&store, "i4", "item_c").1, Some(Value::Float64(3.0)));
}

#[test]
fn a_request_with_bad_events_is_refused_whole_listing_each() {
    let (_dir, store) = loaded_store(10);
    let mut bad_id = event("x", BATCH_TIME, &[("item_a", Value::Float64(1.0))]);
    bad_id.entity_id = String::new();
    let mut wrong_type = event("x", BATCH_TIME, &[("item_a", Value::Float64(1.0))]);
    wrong_type.entity_type = "planet".into();
    let err = store
        .push(vec![
            event("i5", BATCH_TIME + 1, &[("item_a", Value::Float64(55.0))]),
            event(
                "i5",
                BATCH_TIME + 1,
                &[("item_a", Value::String("no".into()))],
            ),
            event("i5", BATCH_TIME + 1, &[("nope", Value::Float64(1.0))]),
            bad_id,
            wrong_type,
            event(
                "i5",
                now_ms() + 3_600_000,
                &[("item_b", Value::Float64(1.0))],
            ),
            event("i5", BATCH_TIME + 1, &[]),
        ])
        .expect_err("refused");
    let PushError::Rejected { rejections, events } = err else {
        panic!("expected a rejection, got {err:?}");
    };
    assert_eq!(events, 7);
    let indices: Vec<usize> = rejections.iter().map(|r| r.index).collect();
    assert_eq!(indices, vec![1, 2, 3, 4, 5, 6], "{rejections:?}");
    assert!(rejections[0].reason.contains("float64"), "{rejections:?}");
    assert!(rejections[1].reason.contains("nope"), "{rejections:?}");
    assert!(rejections[3].reason.contains("planet"), "{rejections:?}");
    assert!(rejections[4].reason.contains("future"), "{rejections:?}");
    // The good event was not applied either.
    assert_eq!(read(&store, "i5", "item_a").1, Some(Value::Float64(1005.0)));
    assert!(matches!(store.push(vec![]), Err(PushError::Empty)));
}

fn ttl_specs() -> Vec<featstore::registry::FeatureSpec> {
    parse_features_toml(
        r#"
        [[feature]]
        name = "item_stock"
        entity_type = "item"
        group = "item_live"
        owner = "tests"
        dtype = "int64"
        ttl = "1h"
        freshness_slo = "1m"

        [[feature]]
        name = "item_price"
        entity_type = "item"
        group = "item_live"
        owner = "tests"
        dtype = "float64"

        [[feature]]
        name = "item_qty"
        entity_type = "item"
        group = "item_live"
        owner = "tests"
        dtype = "int64"
        "#,
        "ttl_specs",
    )
    .expect("specs")
}

#[test]
fn ttl_expires_on_read_staleness_is_flagged_and_compaction_drops_expired_values() {
    let (_dir, store) = temp_store();
    store.apply(ttl_specs()).expect("apply");
    let now = now_ms();
    store
        .push(vec![
            event(
                "old",
                now - 2 * 3_600_000,
                &[
                    ("item_stock", Value::Int64(1)),
                    ("item_price", Value::Float64(1.0)),
                ],
            ),
            event("stale", now - 120_000, &[("item_stock", Value::Int64(2))]),
            event("fresh", now, &[("item_stock", Value::Int64(3))]),
        ])
        .expect("push");
    let vector = store
        .get_features("item", "old", &["item_stock", "item_price"])
        .expect("read");
    assert_eq!(vector.features[0].status, FeatureStatus::Expired);
    assert_eq!(vector.features[0].value, None);
    assert!(vector.features[0].age_ms.expect("age") >= 2 * 3_600_000);
    assert_eq!(vector.features[1].status, FeatureStatus::Present);
    let stale = store
        .get_features("item", "stale", &["item_stock"])
        .expect("read");
    assert_eq!(stale.features[0].status, FeatureStatus::Stale);
    assert_eq!(stale.features[0].value, Some(Value::Int64(2)));
    assert!(stale.features[0].age_ms.expect("age") >= 120_000);
    assert_eq!(
        read(&store, "fresh", "item_stock").0,
        FeatureStatus::Present
    );

    // Compaction removes the expired value and keeps the others.
    let stock_id = store.registry().resolve("item_stock").expect("def").id;
    let price_id = store.registry().resolve("item_price").expect("def").id;
    let key = |entity: &str, fid| {
        featstore::codec::EntityKey::new(entity.as_bytes())
            .expect("id")
            .feature_key(fid)
    };
    let raw = |k: &[u8]| {
        let view = store.view();
        let cf = view.stream("item_live").expect("stream cf");
        view.db().get_cf(cf, k).expect("get")
    };
    assert!(raw(&key("old", stock_id)).is_some());
    store.compact_stream("item_live").expect("compact");
    assert!(
        raw(&key("old", stock_id)).is_none(),
        "expired value survived compaction"
    );
    assert!(raw(&key("old", price_id)).is_some(), "no TTL: kept");
    assert!(raw(&key("stale", stock_id)).is_some());
    assert!(raw(&key("fresh", stock_id)).is_some());
}

#[test]
fn streamed_values_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let now = now_ms();
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(ttl_specs()).expect("apply");
        store
            .push(vec![event(
                "a",
                now,
                &[("item_price", Value::Float64(4.5))],
            )])
            .expect("push");
    }
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(read(&store, "a", "item_price").1, Some(Value::Float64(4.5)));
}

#[test]
fn concurrent_producers_are_all_applied() {
    let (_dir, store) = temp_store();
    store.apply(ttl_specs()).expect("apply");
    let store = Arc::new(store);
    let now = now_ms();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut written = 0;
                for n in 0..50 {
                    let events = (0..10)
                        .map(|k| {
                            event(
                                &format!("t{t}-{n}-{k}"),
                                now,
                                &[("item_price", Value::Float64(f64::from(t * 1000 + n)))],
                            )
                        })
                        .collect();
                    written += store.push(events).expect("push").values_written;
                }
                written
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(total, 8 * 50 * 10);
    for t in 0..8 {
        for n in [0, 49] {
            assert_eq!(
                read(&store, &format!("t{t}-{n}-9"), "item_price").1,
                Some(Value::Float64(f64::from(t * 1000 + n)))
            );
        }
    }
}

/// (entity, feature, event time, value) with few distinct values, so ties happen.
fn arb_events() -> impl Strategy<Value = Vec<(u8, u8, i64, i64)>> {
    proptest::collection::vec((0u8..3, 0u8..2, 0i64..4, 0i64..3), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any arrival order (one push per event, or all in one push) ends in the state of
    /// the model: per key, the maximum `(event time, encoded value)`; replaying
    /// everything changes nothing.
    #[test]
    fn any_permutation_of_arrivals_ends_in_the_same_state(
        events in arb_events(),
        seed in any::<u64>(),
    ) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let names = ["item_qty", "item_price"];
        let to_event = |&(e, f, t, v): &(u8, u8, i64, i64)| {
            let value = if f == 0 { Value::Int64(v) } else { Value::Float64(v as f64 - 1.0) };
            event(&format!("e{e}"), BATCH_TIME + t, &[(names[f as usize], value)])
        };
        // The model.
        let mut model = std::collections::HashMap::<(u8, u8), (i64, Vec<u8>, Value)>::new();
        for ev in &events {
            let pe = to_event(ev);
            let (_, value) = &pe.features[0];
            let mut bytes = Vec::new();
            encode_value(value, pe.event_time, &mut bytes);
            let entry = model.entry((ev.0, ev.1)).or_insert((i64::MIN, Vec::new(), Value::Null));
            if (pe.event_time, &bytes) > (entry.0, &entry.1) {
                *entry = (pe.event_time, bytes, value.clone());
            }
        }
        let mut shuffled = events.clone();
        shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));

        let (_d1, one_by_one) = temp_store();
        let (_d2, all_at_once) = temp_store();
        for store in [&one_by_one, &all_at_once] {
            store.apply(ttl_specs()).expect("apply");
        }
        for ev in &shuffled {
            one_by_one.push(vec![to_event(ev)]).expect("push");
        }
        all_at_once.push(events.iter().map(to_event).collect()).expect("push");
        let replay = one_by_one.push(events.iter().map(to_event).collect()).expect("replay");
        prop_assert_eq!(replay.values_written, 0);
        prop_assert_eq!(replay.ignored_older, events.len() as u64);
        for e in 0u8..3 {
            for f in 0u8..2 {
                let want = model.get(&(e, f)).map(|(t, _, v)| (v.clone(), *t));
                for store in [&one_by_one, &all_at_once] {
                    let (_, value, time) = read(store, &format!("e{e}"), names[f as usize]);
                    let got = value.zip(time);
                    prop_assert_eq!(&got, &want, "entity e{} feature {}", e, names[f as usize]);
                }
            }
        }
    }
}

#[test]
fn streamed_feature_sets_survive_restarts_and_are_rebuilt_when_missing() {
    let (dir, store) = loaded_store(10);
    store
        .push(vec![event(
            "i1",
            BATCH_TIME + 1,
            &[("item_a", Value::Float64(7.0))],
        )])
        .expect("push");
    let pushed = (
        FeatureStatus::Present,
        Some(Value::Float64(7.0)),
        Some(BATCH_TIME + 1),
    );
    assert_eq!(read(&store, "i1", "item_a"), pushed);
    // A feature never pushed is not looked up in the stream, and reads its batch value.
    assert_eq!(
        read(&store, "i2", "item_b").0,
        FeatureStatus::Present,
        "batch values of other features"
    );
    drop(store);

    let path = dir.path().join("store");
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(
        read(&store, "i1", "item_a"),
        pushed,
        "the set was persisted"
    );
    drop(store);

    // A store written before the sets existed has none: open rebuilds it from the
    // stream column family's keys.
    {
        let db_path = path.join("db");
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &db_path).expect("list");
        let db =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), &db_path, &names).expect("raw open");
        let meta = db.cf_handle("meta").expect("meta cf");
        db.delete_cf(&meta, b"stream/features/items")
            .expect("delete the set");
    }
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(read(&store, "i1", "item_a"), pushed, "the set was rebuilt");
    // A feature pushed for the first time after that is merged from its first value.
    store
        .push(vec![event(
            "i3",
            BATCH_TIME + 5,
            &[("item_b", Value::Float64(9.0))],
        )])
        .expect("push");
    assert_eq!(read(&store, "i3", "item_b").1, Some(Value::Float64(9.0)));
}
