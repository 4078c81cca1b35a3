//! Batch layouts on disk: a store written by layout 1 (one column family per version,
//! manifest format 1) or layout 2 (one key per value in the group's family, manifest
//! format 2) keeps serving after an upgrade, and its old versions disappear as they
//! are dropped; drops free their key ranges.

use featstore::FeatureStore;
use featstore::codec::key::{VersionPrefix, encode_key_into, version_of_key};
use featstore::codec::row::{RowRef, RowSchema, SCHEMA_KEY, encode_field};
use featstore::loader::LoadRequest;
use featstore::types::Value;
use rocksdb::{DB, IteratorMode, Options};

use super::common::{item_specs, small_config, write_items_csv};

/// One stored key and value.
type KeyValue = (Vec<u8>, Vec<u8>);
/// One key and value as RocksDB's iterator returns them.
type StoredPair = (Box<[u8]>, Box<[u8]>);

/// The keys and values version 1 of `items` would have had before layout 3: one
/// `entity key ‖ feature id` key per value (without the version prefix), expanded from
/// its rows.
fn per_value_records(db: &DB, versions: &impl rocksdb::AsColumnFamilyRef) -> Vec<KeyValue> {
    let prefix = VersionPrefix::of(1);
    let stored: Vec<StoredPair> = db
        .iterator_cf(versions, IteratorMode::Start)
        .map(|item| item.expect("read"))
        .collect();
    assert!(stored.iter().all(|(k, _)| version_of_key(k) == Some(1)));
    let schema_record = stored
        .iter()
        .find(|(k, _)| prefix.strip(k) == Some(SCHEMA_KEY))
        .expect("schema record");
    let schema = RowSchema::decode(&schema_record.1).expect("schema");
    let mut out = Vec::new();
    for (key, value) in &stored {
        let entity = prefix.strip(key).expect("version 1 key");
        if entity == SCHEMA_KEY {
            continue;
        }
        let row = RowRef::parse(&schema, value).expect("row");
        for (pos, spec) in schema.fields().iter().enumerate() {
            let mut bytes = Vec::new();
            if !encode_field(row.get(pos).expect("field"), &mut bytes) {
                continue;
            }
            let mut key = Vec::new();
            encode_key_into(&entity[2..], spec.feature_id, &mut key).expect("key");
            out.push((key, bytes));
        }
    }
    out
}

/// Rewrites a one-version store as layout 2 wrote it: one key per value under the
/// version prefix in `versions.items`, a format-2 manifest whose entry has no `rows`.
fn downgrade_to_layout_2(path: &std::path::Path) {
    let db = raw_open(path);
    let versions = db.cf_handle("versions.items").expect("versions family");
    let records = per_value_records(&db, &versions);
    db.delete_range_cf(&versions, [0u8; 8], [0xFFu8; 8])
        .expect("clear");
    let prefix = VersionPrefix::of(1);
    for (key, value) in &records {
        db.put_cf(&versions, [prefix.as_bytes(), key].concat(), value)
            .expect("put");
    }
    rewrite_manifest(&db, 2, |entry| {
        entry.remove("rows").expect("layout-3 entry");
    });
    db.flush_cf(&versions).expect("flush");
}

/// Sets the manifest's format version and edits version 1's entry.
fn rewrite_manifest(
    db: &DB,
    format: u32,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) {
    let meta = db.cf_handle("meta").expect("meta");
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &db.get_cf(&meta, b"manifest")
            .expect("get")
            .expect("manifest"),
    )
    .expect("json");
    manifest["format_version"] = format.into();
    edit(
        manifest["groups"]["items"]["versions"][0]
            .as_object_mut()
            .expect("entry"),
    );
    db.put_cf(
        &meta,
        b"manifest",
        serde_json::to_vec(&manifest).expect("json"),
    )
    .expect("put");
}

fn raw_open(path: &std::path::Path) -> DB {
    let names = DB::list_cf(&Options::default(), path.join("db")).expect("list");
    DB::open_cf(&Options::default(), path.join("db"), &names).expect("raw open")
}

/// Keys of `version` in a versions column family, counted in total order.
fn version_keys(db: &DB, cf: &impl rocksdb::AsColumnFamilyRef, version: u64) -> usize {
    let prefix = VersionPrefix::of(version);
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_total_order_seek(true);
    let mut iter = db.raw_iterator_cf_opt(cf, opts);
    iter.seek(prefix.as_bytes());
    let mut n = 0;
    while let Some(key) = iter.key() {
        if !key.starts_with(prefix.as_bytes()) {
            break;
        }
        n += 1;
        iter.next();
    }
    iter.status().expect("scan");
    n
}

fn item_a(store: &FeatureStore, id: &str) -> Option<Value> {
    let vector = store.get_features("item", id, &["item_a"]).expect("read");
    vector.features[0].value.clone()
}

/// Rewrites a one-version store as layout 1 wrote it: the version's values, one key
/// each without a version prefix, in `batch.items.v1`; a format-1 manifest whose entry
/// names no family.
fn downgrade_to_layout_1(path: &std::path::Path) {
    let db = raw_open(path);
    let versions = db.cf_handle("versions.items").expect("versions family");
    let records = per_value_records(&db, &versions);
    db.create_cf("batch.items.v1", &Options::default())
        .expect("legacy family");
    let legacy = db.cf_handle("batch.items.v1").expect("legacy family");
    for (key, value) in &records {
        db.put_cf(&legacy, key, value).expect("put");
    }
    db.delete_range_cf(&versions, [0u8; 8], [0xFFu8; 8])
        .expect("clear");
    rewrite_manifest(&db, 1, |entry| {
        entry.remove("family").expect("layout-2 entry");
        entry.remove("rows").expect("layout-3 entry");
    });
    db.flush_cf(&legacy).expect("flush");
}

#[test]
fn a_layout_1_store_serves_after_upgrade_and_sheds_its_families() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        let csv = write_items_csv(dir.path(), 1, 20);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
    }
    downgrade_to_layout_1(&path);

    // Without hot segments, so reads go to the layout-1 column family itself.
    let config = featstore::StoreConfig {
        hot_segment_bytes: 0,
        ..small_config()
    };
    let store = FeatureStore::open(&path, config.clone()).expect("open layout 1");
    assert_eq!(item_a(&store, "i7"), Some(Value::Float64(1007.0)));
    // New loads go to the versions family; the old version stays for rollback.
    for v in 2..=4 {
        let csv = write_items_csv(dir.path(), v, 20);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
        assert_eq!(
            item_a(&store, "i7"),
            Some(Value::Float64((v * 1000 + 7) as f64))
        );
        if v == 2 {
            assert_eq!(store.rollback("items").expect("rollback"), 1);
            assert_eq!(item_a(&store, "i7"), Some(Value::Float64(1007.0)));
            store.activate("items", 2).expect("activate");
        }
    }
    // keep_versions = 3: version 1 (layout 1) was dropped with its column family.
    drop(store);
    let names = DB::list_cf(&Options::default(), path.join("db")).expect("list");
    assert!(!names.iter().any(|n| n.starts_with("batch.")), "{names:?}");
    let store = FeatureStore::open(&path, config).expect("reopen");
    assert_eq!(item_a(&store, "i7"), Some(Value::Float64(4007.0)));
}

#[test]
fn a_dropped_version_leaves_no_keys_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        for v in 1..=3 {
            let csv = write_items_csv(dir.path(), v, 20);
            store
                .load(&LoadRequest::new("items", csv), &|_| {})
                .expect("load");
        }
        let mut dropped = store.drop_old_versions("items", 1).expect("drop");
        dropped.sort_unstable();
        assert_eq!(dropped, vec![1, 2]);
        assert_eq!(item_a(&store, "i3"), Some(Value::Float64(3003.0)));
    }
    let db = raw_open(&path);
    let versions = db.cf_handle("versions.items").expect("versions family");
    assert_eq!(version_keys(&db, &versions, 1), 0);
    assert_eq!(version_keys(&db, &versions, 2), 0);
    // 20 rows and the schema record.
    assert_eq!(version_keys(&db, &versions, 3), 20 + 1);
}

#[test]
fn a_reader_holding_a_view_reads_a_dropped_version_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FeatureStore::open(dir.path().join("store"), small_config()).expect("open");
    store.apply(item_specs()).expect("apply");
    for v in 1..=2 {
        let csv = write_items_csv(dir.path(), v, 20);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
    }
    store.rollback("items").expect("rollback to 1");
    let view = store.view();
    // Version 2 becomes active again and version 1, active in `view`, is dropped.
    store.activate("items", 2).expect("activate");
    assert_eq!(store.drop_old_versions("items", 1).expect("drop"), vec![1]);
    let active = view.active("items").expect("active in the old view");
    assert_eq!(active.version, 1);
    // The old view's version is still there, whole, until the view is released.
    assert_eq!(version_keys(view.db(), &active.cf, 1), 20 + 1);
    drop(view);
    let fresh = store.view();
    let active = fresh.active("items").expect("active");
    assert_eq!(
        version_keys(fresh.db(), &active.cf, 1),
        0,
        "version 1's keys are deleted once no view holds it"
    );
    assert_eq!(version_keys(fresh.db(), &active.cf, 2), 20 + 1);
}

#[test]
fn a_layout_2_store_serves_after_upgrade_beside_new_row_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        let csv = write_items_csv(dir.path(), 1, 20);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
    }
    downgrade_to_layout_2(&path);
    // Without hot segments, so reads go to the stored keys.
    let config = featstore::StoreConfig {
        hot_segment_bytes: 0,
        ..small_config()
    };
    let store = FeatureStore::open(&path, config.clone()).expect("open layout 2");
    let before = store
        .get_features("item", "i7", &["item_a", "item_b", "item_c", "item_label"])
        .expect("read");
    assert_eq!(before.features[0].value, Some(Value::Float64(1007.0)));
    // A new load writes rows into the same family; both versions serve, each in its
    // own layout, with the same answers for the same data.
    let csv = write_items_csv(dir.path(), 2, 20);
    store
        .load(&LoadRequest::new("items", csv), &|_| {})
        .expect("load");
    assert_eq!(item_a(&store, "i7"), Some(Value::Float64(2007.0)));
    assert_eq!(store.rollback("items").expect("rollback"), 1);
    let again = store
        .get_features("item", "i7", &["item_a", "item_b", "item_c", "item_label"])
        .expect("read");
    let facts = |v: &featstore::FeatureVector| {
        v.features
            .iter()
            .map(|f| (f.status, f.value.clone(), f.event_time))
            .collect::<Vec<_>>()
    };
    assert_eq!(facts(&again), facts(&before));
    store.activate("items", 2).expect("activate");
    drop(store);
    let db = raw_open(&path);
    let versions = db.cf_handle("versions.items").expect("versions family");
    assert_eq!(version_keys(&db, &versions, 1), 20 * 4, "one key per value");
    assert_eq!(
        version_keys(&db, &versions, 2),
        20 + 1,
        "rows and the schema"
    );
}

#[test]
fn a_newer_manifest_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        let csv = write_items_csv(dir.path(), 1, 5);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
    }
    {
        let db = raw_open(&path);
        rewrite_manifest(&db, 99, |_| {});
    }
    let err =
        FeatureStore::open(&path, small_config()).expect_err("a format-99 manifest is refused");
    let text = err.to_string();
    assert!(
        text.contains("format version 99") && text.contains("newer featstore"),
        "{text}"
    );
}
