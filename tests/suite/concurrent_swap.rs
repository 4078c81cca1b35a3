//! Readers never see a mix of two versions of a group, not even while versions are
//! swapped, loaded and dropped under them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use featstore::loader::LoadRequest;
use featstore::types::Value;

use super::common::{item_specs, temp_store, write_items_csv};

#[test]
fn readers_see_one_version_per_group_during_swaps() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    for v in 1..=2 {
        let csv = write_items_csv(dir.path(), v, 50);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
    }
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let names = ["item_a", "item_b", "item_c", "item_label"];

    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let entity = (n + r) % 50;
                    let vector = store
                        .get_features("item", &format!("i{entity}"), &names)
                        .expect("read");
                    let version = vector.versions["items"];
                    let want = (version * 1000 + entity) as f64;
                    for reading in &vector.features[..3] {
                        assert_eq!(
                            reading.value,
                            Some(Value::Float64(want)),
                            "mixed versions: {vector:?}"
                        );
                    }
                    assert_eq!(
                        vector.features[3].value,
                        Some(Value::String(format!("v{version}")))
                    );
                    n += 1;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Swap back and forth, load new versions (auto-dropping old ones) under the readers.
    let mut next = 3;
    for round in 0..60 {
        if round % 15 == 14 {
            let csv = write_items_csv(dir.path(), next, 50);
            store
                .load(&LoadRequest::new("items", csv), &|_| {})
                .expect("load");
            next += 1;
        } else {
            store
                .rollback("items")
                .or_else(|_| store.activate("items", next - 1).map(|()| 0))
                .expect("swap");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("reader panicked");
    }
    assert!(reads.load(Ordering::Relaxed) > 100, "readers made progress");
}
