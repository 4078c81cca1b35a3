//! State survives a restart, and a load interrupted before its commit leaves nothing.

use featstore::codec::key::{VersionPrefix, encode_key_into, version_of_key};
use featstore::loader::LoadRequest;
use featstore::types::Value;
use featstore::{
    FeatureStore,
    store::manifest::{VersionEntry, VersionState},
};

use super::common::{item_specs, small_config, write_items_csv};

#[test]
fn registry_versions_and_data_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        for v in 1..=2 {
            let csv = write_items_csv(dir.path(), v, 10);
            store
                .load(&LoadRequest::new("items", csv), &|_| {})
                .expect("load");
        }
        store.rollback("items").expect("rollback");
    }
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(store.registry().len(), 4);
    let versions = store.versions("items").expect("versions");
    assert_eq!(versions.active, Some(1));
    assert_eq!(versions.versions.len(), 2);
    let vector = store
        .get_features("item", "i7", &["item_a", "item_label"])
        .expect("read");
    assert_eq!(vector.features[0].value, Some(Value::Float64(1007.0)));
    assert_eq!(vector.features[1].value, Some(Value::String("v1".into())));
    // New ids continue after the old ones.
    let mut extra = item_specs().remove(0);
    extra.name = "item_new".into();
    let outcome = store.apply(vec![extra]).expect("apply");
    assert_eq!(outcome[0].id, 5);
}

#[test]
fn a_load_interrupted_before_commit_is_removed_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        let csv = write_items_csv(dir.path(), 1, 10);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
    }
    // Simulate a crash after step 1 (allocate) and 3 (keys ingested): the manifest
    // names version 2 as loading and its keys are in the group's versions column
    // family; version 99's keys belong to no manifest entry (a drop cut short); and a
    // layout-1 column family the manifest does not name is left over.
    let key_of = |version: u64, entity: &[u8]| {
        let mut key = VersionPrefix::of(version).as_bytes().to_vec();
        encode_key_into(entity, 1, &mut key).expect("key");
        key
    };
    {
        let names =
            rocksdb::DB::list_cf(&rocksdb::Options::default(), path.join("db")).expect("list");
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path.join("db"), &names)
            .expect("raw open");
        let meta = db.cf_handle("meta").expect("meta");
        let mut manifest: featstore::store::manifest::Manifest = serde_json::from_slice(
            &db.get_cf(&meta, b"manifest")
                .expect("get")
                .expect("manifest"),
        )
        .expect("json");
        let group = manifest.groups.get_mut("items").expect("group");
        group.versions.push(VersionEntry {
            version: 2,
            cf_name: "batch.items.v2".into(),
            family: Some("versions.items".into()),
            rows: true,
            state: VersionState::Loading,
            created_at_ms: 0,
            segment: None,
        });
        group.next_version = 3;
        db.put_cf(
            &meta,
            b"manifest",
            serde_json::to_vec(&manifest).expect("json"),
        )
        .expect("put");
        drop(meta);
        let versions = db.cf_handle("versions.items").expect("versions family");
        db.put_cf(&versions, key_of(2, b"e1"), b"half-loaded")
            .expect("put");
        db.put_cf(&versions, key_of(99, b"e1"), b"orphan")
            .expect("put");
        drop(versions);
        db.create_cf("batch.items.v99", &rocksdb::Options::default())
            .expect("orphan cf");
    }
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    let versions = store.versions("items").expect("versions");
    assert_eq!(versions.versions.len(), 1, "{versions:?}");
    assert_eq!(versions.active, Some(1));
    drop(store);
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path.join("db")).expect("list");
    assert!(!names.iter().any(|c| c == "batch.items.v99"), "{names:?}");
    {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path.join("db"), &names)
            .expect("raw open");
        let versions = db.cf_handle("versions.items").expect("versions family");
        let left: Vec<u64> = db
            .iterator_cf(&versions, rocksdb::IteratorMode::Start)
            .map(|item| version_of_key(&item.expect("read").0).expect("versioned key"))
            .collect();
        assert!(!left.is_empty() && left.iter().all(|v| *v == 1), "{left:?}");
    }
    // The next load gets a fresh number, never reusing 2.
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    let csv = write_items_csv(dir.path(), 3, 10);
    let record = store
        .load(&LoadRequest::new("items", csv), &|_| {})
        .expect("load");
    assert_eq!(record.version, 3);
}
