//! Batch loads: bad rows fail the whole load with file, row and reason and leave the
//! served version untouched; duplicates resolve by event time; spills keep results
//! identical.

use featstore::loader::LoadRequest;
use featstore::store::StoreError;

use super::common::{item_specs, temp_store, write_items_csv};

#[test]
fn a_bad_row_fails_the_load_and_nothing_becomes_visible() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let good = write_items_csv(dir.path(), 1, 20);
    store
        .load(&LoadRequest::new("items", good), &|_| {})
        .expect("first load");

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "entity_id,event_time,item_a,item_b,item_c,item_label\n\
         i1,1700000000000,1,2,3,x\n\
         i2,1700000000000,1,2,3,x\n\
         i3,1700000000000,1,two,3,x\n",
    )
    .expect("write");
    let err = store
        .load(&LoadRequest::new("items", &bad), &|_| {})
        .expect_err("bad row refused");
    let message = err.to_string();
    assert!(message.contains("bad.csv"), "{message}");
    assert!(message.contains("row 3"), "{message}");
    assert!(message.contains("item_b"), "{message}");

    let versions = store.versions("items").expect("versions");
    assert_eq!(versions.active, Some(1));
    assert_eq!(
        versions.versions.len(),
        1,
        "failed version removed: {versions:?}"
    );
    let vector = store.get_features("item", "i2", &["item_a"]).expect("read");
    assert_eq!(
        vector.features[0].value,
        Some(featstore::types::Value::Float64(1002.0))
    );
}

#[test]
fn unknown_features_and_empty_inputs_are_refused() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let long = dir.path().join("long.csv");
    std::fs::write(
        &long,
        "entity_id,feature_name,event_time,value\ni1,item_a,1000,1.5\ni1,item_z,1000,2\n",
    )
    .expect("write");
    let err = store
        .load(&LoadRequest::new("items", &long), &|_| {})
        .expect_err("unknown feature");
    assert!(err.to_string().contains("item_z"), "{err}");

    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "entity_id,feature_name,event_time,value\n").expect("write");
    let err = store
        .load(&LoadRequest::new("items", &empty), &|_| {})
        .expect_err("empty input");
    assert!(err.to_string().contains("no rows"), "{err}");

    let err = store
        .load(&LoadRequest::new("nogroup", &long), &|_| {})
        .expect_err("unknown group");
    assert!(matches!(err, StoreError::UnknownGroup(_)), "{err}");
    assert!(
        store
            .versions("items")
            .expect("versions")
            .versions
            .is_empty()
    );
}

#[test]
fn duplicates_keep_the_newest_event_time() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let long = dir.path().join("dups.csv");
    std::fs::write(
        &long,
        "entity_id,feature_name,event_time,value\n\
         i1,item_a,3000,3\n\
         i1,item_a,1000,1\n\
         i2,item_a,1000,1\n\
         i2,item_a,1000,2\n\
         i0,item_a,5000,5\n",
    )
    .expect("write");
    let record = store
        .load(&LoadRequest::new("items", &long), &|_| {})
        .expect("load");
    assert_eq!(record.values_read, 5);
    assert_eq!(record.values_stored, 3);
    assert_eq!(record.duplicates, 2);
    let value = |id: &str| {
        store
            .get_features("item", id, &["item_a"])
            .expect("read")
            .features[0]
            .clone()
    };
    assert_eq!(
        value("i1").value,
        Some(featstore::types::Value::Float64(3.0))
    );
    assert_eq!(value("i1").event_time, Some(3000));
    assert_eq!(
        value("i2").value,
        Some(featstore::types::Value::Float64(2.0)),
        "tie: later row wins"
    );
}

#[test]
fn loads_larger_than_the_memory_budget_spill_and_read_back_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = super::common::small_config();
    config.load_memory_bytes = 1 << 20; // forces several sorted runs
    let store = featstore::FeatureStore::open(dir.path().join("store"), config).expect("open");
    store.apply(item_specs()).expect("apply");
    // Long format in reverse entity order, so the sorter must really sort.
    let path = dir.path().join("big.csv");
    let mut text = String::from("entity_id,feature_name,event_time,value\n");
    let n = 20_000u64;
    for e in (0..n).rev() {
        for f in ["item_c", "item_a", "item_b"] {
            text.push_str(&format!("e{e},{f},1000,{}\n", e as f64 + 0.5));
        }
    }
    std::fs::write(&path, text).expect("write");
    let record = store
        .load(&LoadRequest::new("items", &path), &|_| {})
        .expect("load");
    assert_eq!(record.values_stored, 3 * n);
    assert_eq!(record.entities, n);
    for e in [0, 1, 9_999, n - 1] {
        let v = store
            .get_features(
                "item",
                &format!("e{e}"),
                &["item_a", "item_b", "item_c", "item_label"],
            )
            .expect("read");
        for reading in &v.features[..3] {
            assert_eq!(
                reading.value,
                Some(featstore::types::Value::Float64(e as f64 + 0.5))
            );
        }
        assert_eq!(
            v.features[3].status,
            featstore::types::FeatureStatus::NotFound
        );
    }
}
