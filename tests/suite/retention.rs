//! Retention per feature (issue 16): a value older than its feature's `retention` is
//! never served (live, as-of), and after a forced compaction its bytes are gone from
//! the batch version, stream and history families, which the same scan finds before
//! the compaction;
//! values of a feature without retention, and recent ones, stay.

use std::path::Path;

use featstore::registry::file::parse_registry_toml;
use featstore::store::PushEvent;
use featstore::types::now_ms;
use featstore::{FeatureStore, LoadRequest, Value};

use super::common::small_config;

const REGISTRY: &str = r#"
[[feature]]
name = "short"
entity_type = "user"
group = "shorts"
owner = "tests"
dtype = "float64"
retention = "1h"

[[feature]]
name = "plain"
entity_type = "user"
group = "shorts"
owner = "tests"
dtype = "float64"

[[feature]]
name = "sclick"
entity_type = "user"
group = "short_stream"
owner = "tests"
dtype = "float64"
retention = "1h"
"#;

/// The value past retention: bytes that occur nowhere else.
const OLD: f64 = 12_345.678_125;
/// The only value of a row that is wholly past retention.
const OLD_ROW: f64 = 54_321.187_5;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The column families of the closed store in `dir` holding `needle`, iterated raw.
fn families_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let db_dir = dir.join("db");
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &db_dir).expect("list cf");
    let db =
        rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), &db_dir, &names, false)
            .expect("open read-only");
    let mut found = Vec::new();
    for name in &names {
        let cf = db.cf_handle(name).expect("handle");
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_total_order_seek(true);
        let mut iter = db.raw_iterator_cf_opt(&cf, opts);
        iter.seek_to_first();
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if contains(k, needle) || contains(v, needle) {
                found.push(name.clone());
                break;
            }
            iter.next();
        }
        iter.status().expect("iterate");
    }
    found
}

fn read(store: &FeatureStore, id: &str, names: &[&str]) -> Vec<(String, Option<Value>)> {
    store
        .get_features("user", id, names)
        .expect("read")
        .features
        .into_iter()
        .map(|f| (format!("{:?}", f.status), f.value))
        .collect()
}

#[test]
fn values_past_retention_are_never_served_and_are_deleted_by_compaction() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().join("store");
    let store = FeatureStore::open(&dir, small_config()).expect("open");
    store
        .apply_objects(parse_registry_toml(REGISTRY, "registry").expect("parses"))
        .expect("apply");
    let now = now_ms();
    let old = now - 2 * 3600 * 1000;
    let recent = now - 60 * 1000;
    let csv = tmp.path().join("shorts.csv");
    std::fs::write(
        &csv,
        format!(
            "entity_id,feature_name,event_time,value\nu1,short,{old},{OLD}\nu1,plain,{old},7.5\nu2,short,{recent},2.5\nu3,short,{old},{OLD_ROW}\n"
        ),
    )
    .expect("write");
    store
        .load(&LoadRequest::new("shorts", &csv), &|_| {})
        .expect("load");
    for (user, time, value) in [("u1", old, OLD), ("u2", recent, 3.5)] {
        store
            .push(vec![PushEvent {
                entity_type: "user".into(),
                entity_id: user.into(),
                event_time: time,
                features: vec![("sclick".into(), Value::Float64(value))],
                event_id: None,
            }])
            .expect("push");
    }

    // Never served past retention; the rest is.
    let u1 = read(&store, "u1", &["short", "plain", "sclick"]);
    assert_eq!(u1[0], ("Expired".to_owned(), None), "{u1:?}");
    assert_eq!(u1[1], ("Present".to_owned(), Some(Value::Float64(7.5))));
    assert_eq!(u1[2], ("Expired".to_owned(), None), "{u1:?}");
    let u2 = read(&store, "u2", &["short", "sclick"]);
    assert_eq!(u2[0], ("Present".to_owned(), Some(Value::Float64(2.5))));
    assert_eq!(u2[1], ("Present".to_owned(), Some(Value::Float64(3.5))));
    let as_of = store
        .get_entity_as_of(
            "user",
            "u1",
            featstore::query::Names::List(&["short", "sclick"]),
            now_ms(),
            None,
        )
        .expect("as of")
        .into_vector();
    for f in &as_of.features {
        assert_eq!(f.value, None, "served as of now: {as_of:?}");
    }
    drop(store);

    let needle = OLD.to_le_bytes();
    let before = families_holding(&dir, &needle);
    let row_before = families_holding(&dir, &OLD_ROW.to_le_bytes());
    assert!(
        row_before.contains(&"versions.shorts".to_owned()),
        "{row_before:?}"
    );
    for family in [
        "versions.shorts",
        "history.shorts",
        "stream.short_stream",
        "history.short_stream",
    ] {
        assert!(
            before.iter().any(|f| f == family),
            "{family} not in {before:?}"
        );
    }

    let store = FeatureStore::open(&dir, small_config()).expect("reopen");
    store.compact_all().expect("compact");
    assert_eq!(
        read(&store, "u2", &["short", "sclick"])[1],
        ("Present".to_owned(), Some(Value::Float64(3.5)))
    );
    // u1's row lost its expired field and kept the retained one.
    let u1 = read(&store, "u1", &["plain", "short"]);
    assert_eq!(
        u1[0],
        ("Present".to_owned(), Some(Value::Float64(7.5))),
        "{u1:?}"
    );
    assert_eq!(u1[1].1, None, "{u1:?}");
    drop(store);
    let after = families_holding(&dir, &needle);
    for family in [
        "versions.shorts",
        "history.shorts",
        "stream.short_stream",
        "history.short_stream",
    ] {
        assert!(
            !after.iter().any(|f| f == family),
            "{family} still in {after:?}"
        );
    }
    // A batch row wholly past retention is removed from its version; the row that
    // still holds a retained value (u1's `plain`) is rewritten without the expired one.
    let row_after = families_holding(&dir, &OLD_ROW.to_le_bytes());
    assert!(row_after.is_empty(), "{row_after:?}");
    // Values of features without retention stay.
    let plain = families_holding(&dir, &7.5f64.to_le_bytes());
    for family in ["history.shorts", "versions.shorts"] {
        assert!(
            plain.iter().any(|f| f == family),
            "{family} not in {plain:?}"
        );
    }
}
