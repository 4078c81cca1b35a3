//! Hot segments: reads answered from the memory-mapped segment are identical to reads
//! from RocksDB; a corrupt segment is rebuilt when its version is activated; segments are
//! mapped again after a restart, not rebuilt; the hottest entities are chosen when a
//! version exceeds the budget.

use featstore::loader::LoadRequest;
use featstore::registry::file::parse_features_toml;
use featstore::{FeatureStore, StoreConfig};
use proptest::prelude::*;

use super::common::{item_specs, small_config, write_items_csv};

const SPECS: &str = r#"
[[feature]]
name = "m_int"
entity_type = "thing"
group = "mixed"
owner = "tests"
dtype = "int64"

[[feature]]
name = "m_float"
entity_type = "thing"
group = "mixed"
owner = "tests"
dtype = "float32"

[[feature]]
name = "m_text"
entity_type = "thing"
group = "mixed"
owner = "tests"
dtype = "string"

[[feature]]
name = "m_flag"
entity_type = "thing"
group = "mixed"
owner = "tests"
dtype = "bool"

[[feature]]
name = "m_vec"
entity_type = "thing"
group = "mixed"
owner = "tests"
dtype = "float32_vector[3]"
ttl = "30d"
"#;

const NAMES: [&str; 5] = ["m_int", "m_float", "m_text", "m_flag", "m_vec"];

fn open(dir: &std::path::Path, name: &str, hot_segment_bytes: u64) -> FeatureStore {
    let config = StoreConfig {
        hot_segment_bytes,
        ..small_config()
    };
    let store = FeatureStore::open(dir.join(name), config).expect("open");
    store
        .apply(parse_features_toml(SPECS, "specs").expect("specs"))
        .expect("apply");
    store
}

/// One long-format row: entity, feature index, event time offset, value text.
type Cell = (u16, usize, u32, String);

fn cell() -> impl Strategy<Value = Cell> {
    (0u16..60, 0usize..5, 0u32..100_000_000, 0u32..1000).prop_map(|(e, f, t, v)| {
        let text = match f {
            0 => format!("{}", v as i64 - 500),
            1 => format!("{}", v as f32 / 7.0),
            2 if v % 9 == 0 => String::new(), // an explicit null
            2 => format!("text {v}"),
            3 => (v % 2 == 0).to_string(),
            _ => format!("[{v}, 0.5, -{v}]"),
        };
        (e, f, t, text)
    })
}

fn write_long(path: &std::path::Path, cells: &[Cell]) {
    let now = featstore::types::now_ms();
    let mut out = csv::Writer::from_path(path).expect("csv");
    out.write_record(["entity_id", "feature_name", "event_time", "value"])
        .expect("header");
    for (e, f, t, v) in cells {
        let time = (now - i64::from(*t) * 100).to_string();
        out.write_record([
            format!("t{e}").as_str(),
            NAMES[*f],
            time.as_str(),
            v.as_str(),
        ])
        .expect("row");
    }
    out.flush().expect("flush");
}

/// Every entity's readings (versions left out: stores loaded a different number of
/// times number their versions differently; ages too: they depend on the read time).
fn all_readings(store: &FeatureStore) -> Vec<Vec<featstore::store::FeatureReading>> {
    (0..70)
        .map(|e| {
            let mut features = store
                .get_features("thing", &format!("t{e}"), &NAMES)
                .expect("read")
                .features;
            for reading in &mut features {
                reading.age_ms = None;
            }
            features
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn hot_and_rocksdb_paths_answer_identically(cells in proptest::collection::vec(cell(), 1..400)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.csv");
        write_long(&input, &cells);
        let hot = open(dir.path(), "hot", 64 << 20);
        let cold = open(dir.path(), "cold", 0);
        for store in [&hot, &cold] {
            store.load(&LoadRequest::new("mixed", &input), &|_| {}).expect("load");
        }
        prop_assert!(hot.hot_segment_entities("mixed").is_some());
        prop_assert_eq!(cold.hot_segment_entities("mixed"), None);
        prop_assert_eq!(all_readings(&hot), all_readings(&cold));

        // Partial segment: only the hottest entities, the rest from RocksDB.
        let partial = open(dir.path(), "partial", 2_000);
        partial.load(&LoadRequest::new("mixed", &input), &|_| {}).expect("load");
        for _ in 0..64 {
            for e in 0..5 {
                let _ = partial.get_features("thing", &format!("t{e}"), &NAMES);
            }
        }
        partial.load(&LoadRequest::new("mixed", &input), &|_| {}).expect("reload");
        let held = partial.hot_segment_entities("mixed").unwrap_or(0);
        prop_assert!(held < 60, "budget respected: {}", held);
        prop_assert_eq!(all_readings(&partial), all_readings(&cold));
    }
}

/// The segment file of `version` of group `items`.
fn segment_file(store: &FeatureStore, path: &std::path::Path, version: u64) -> std::path::PathBuf {
    let versions = store.versions("items").expect("versions");
    let entry = versions
        .versions
        .iter()
        .find(|v| v.version == version)
        .expect("version");
    path.join("segments")
        .join(&entry.segment.as_ref().expect("has a segment").file)
}

/// Flips one bit in the middle of `file` (while the store is down: a mapped segment is
/// never modified, the contract that makes mapping it sound).
fn corrupt(file: &std::path::Path) {
    let mut bytes = std::fs::read(file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(file, bytes).expect("write");
    assert!(featstore_format::segment::MappedSegment::open(file).is_err());
}

#[test]
fn rollback_and_activate_rebuild_a_corrupt_segment() {
    // Issue 12, item 8: rollback and activate answered "checksum mismatch" exactly
    // when the previous version was needed. Now the version activates, served from
    // RocksDB, and its segment is rebuilt from the version's column family.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let (v1_file, v2_file) = {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        for v in 1..=2 {
            let csv = write_items_csv(dir.path(), v, 20);
            store
                .load(&LoadRequest::new("items", csv), &|_| {})
                .expect("load");
        }
        (
            segment_file(&store, &path, 1),
            segment_file(&store, &path, 2),
        )
    };
    corrupt(&v1_file);

    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(store.rollback("items").expect("rollback"), 1);
    assert_eq!(store.versions("items").expect("versions").active, Some(1));
    assert_eq!(store.hot_segment_entities("items"), Some(20), "rebuilt");
    featstore_format::segment::MappedSegment::open(&v1_file).expect("valid again");
    let vector = store
        .get_features("item", "i3", &["item_a", "item_label"])
        .expect("read");
    assert_eq!(
        vector.features[0].value,
        Some(featstore::types::Value::Float64(1003.0))
    );
    assert_eq!(
        vector.features[1].value,
        Some(featstore::types::Value::String("v1".into()))
    );
    drop(store);

    // Activate: version 2 is not mapped at open (version 1 is active now).
    corrupt(&v2_file);
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    store.activate("items", 2).expect("activate");
    assert_eq!(store.versions("items").expect("versions").active, Some(2));
    assert_eq!(store.hot_segment_entities("items"), Some(20), "rebuilt");
    featstore_format::segment::MappedSegment::open(&v2_file).expect("valid again");
    let vector = store.get_features("item", "i3", &["item_a"]).expect("read");
    assert_eq!(
        vector.features[0].value,
        Some(featstore::types::Value::Float64(2003.0))
    );

    // A missing file is handled the same way.
    drop(store);
    std::fs::remove_file(&v1_file).expect("remove");
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(store.rollback("items").expect("rollback"), 1);
    assert_eq!(store.hot_segment_entities("items"), Some(20), "rebuilt");
    let vector = store.get_features("item", "i7", &["item_b"]).expect("read");
    assert_eq!(
        vector.features[0].value,
        Some(featstore::types::Value::Float64(1007.0))
    );
}

#[test]
fn segments_are_mapped_again_after_restart_not_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let segment_file = {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        let csv = write_items_csv(dir.path(), 1, 30);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
        assert_eq!(store.hot_segment_entities("items"), Some(30));
        let versions = store.versions("items").expect("versions");
        let info = versions.versions[0].segment.clone().expect("segment");
        path.join("segments").join(info.file)
    };
    let before = std::fs::metadata(&segment_file)
        .expect("stat")
        .modified()
        .expect("mtime");
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(store.hot_segment_entities("items"), Some(30));
    let after = std::fs::metadata(&segment_file)
        .expect("stat")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "mapped, not rebuilt");
    let vector = store
        .get_features("item", "i29", &["item_label", "item_b"])
        .expect("read");
    assert_eq!(
        vector.features[0].value,
        Some(featstore::types::Value::String("v1".into()))
    );
    assert_eq!(
        vector.features[1].value,
        Some(featstore::types::Value::Float64(1029.0))
    );
    drop(store);

    // A segment corrupted while the store was down, or written by another format
    // version, is rebuilt from its column family at open; reads work throughout.
    for damage in ["bit flip", "format version 1"] {
        let mut bytes = std::fs::read(&segment_file).expect("read");
        match damage {
            "bit flip" => {
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
            }
            _ => bytes[8..12].copy_from_slice(&1u32.to_le_bytes()),
        }
        std::fs::write(&segment_file, &bytes).expect("write");
        let store = FeatureStore::open(&path, small_config()).expect("reopen");
        assert_eq!(store.hot_segment_entities("items"), Some(30), "{damage}");
        assert_ne!(
            std::fs::read(&segment_file).expect("read"),
            bytes,
            "{damage}: rebuilt"
        );
        featstore_format::segment::MappedSegment::open(&segment_file).expect("valid again");
        let vector = store
            .get_features("item", "i29", &["item_b"])
            .expect("read");
        assert_eq!(
            vector.features[0].value,
            Some(featstore::types::Value::Float64(1029.0))
        );
    }
}

#[test]
fn access_counts_survive_a_restart_to_choose_tomorrows_hot_entities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = FeatureStore::open(&path, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        let csv = write_items_csv(dir.path(), 1, 50);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
        for _ in 0..800 {
            store
                .get_features("item", "i42", &["item_a"])
                .expect("read");
        }
        for _ in 0..80 {
            store.get_features("item", "i7", &["item_a"]).expect("read");
        }
        store.persist_access_counts().expect("persist");
    }
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    let top = store.hottest_entities("item", 2);
    assert_eq!(top.len(), 2, "{top:?}");
    assert_eq!(top[0].0, b"i42".to_vec());
    assert_eq!(top[1].0, b"i7".to_vec());
    assert!(top[0].1 >= 40, "halved but kept: {top:?}");
}
