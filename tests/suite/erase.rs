//! Per-entity deletion (issue 16): `DELETE /v1/entities/{type}/{id}` removes one user
//! and the composite `user_product` entities containing it from two batch versions,
//! the stream family (latest values and aggregate tiles), the event-id markers, the
//! history, the hot segments, the access counts and the serving log; verified by
//! iterating every column family the database lists, reading every segment file,
//! every serving-log file and every SST and WAL file for the id's bytes, which the same
//! scan finds before the deletion. Other entities keep every value; the route needs
//! `admin`; the audit log records it.

use std::path::Path;
use std::sync::Arc;

use featstore::auth::token;
use featstore::registry::file::parse_registry_toml;
use featstore::server::ServerConfig;
use featstore::store::PushEvent;
use featstore::types::now_ms;
use featstore::{FeatureStore, LoadRequest, Value};

use super::common::{TestServer, get, json, small_config};

/// The deleted user: bytes that occur nowhere else.
const GONE: &str = "zq42gone";

const REGISTRY: &str = r#"
[[entity_type]]
name = "user_product"
components = ["user", "product"]
owner = "tests"

[[feature]]
name = "user_age"
entity_type = "user"
group = "users"
owner = "tests"
dtype = "float64"

[[feature]]
name = "user_click"
entity_type = "user"
group = "user_events"
owner = "tests"
dtype = "float64"

[[feature]]
name = "user_clicks_5m"
entity_type = "user"
group = "user_aggs"
owner = "tests"
dtype = "int64"
aggregate = { source = "user_click", function = "count", window = "5m", resolution = "1m" }

[[feature]]
name = "affinity"
entity_type = "user_product"
group = "affinity"
owner = "tests"
dtype = "float64"

[[feature]]
name = "price"
entity_type = "product"
group = "products"
owner = "tests"
dtype = "float64"
"#;

fn token_of(id: &str) -> String {
    format!("fst.{id}.{}", token::to_hex(&token::digest(id)))
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (id, scopes) in [("admin", r#""admin", "read""#), ("reader", r#""read""#)] {
        text.push_str(&format!(
            "[[principal]]\nid = \"{id}\"\nteam = \"t\"\ntoken_sha256 = \"{}\"\nscopes = [{scopes}]\nread = [\"*\"]\npush = []\nmax_sensitivity = \"pii\"\n",
            token::to_hex(&token::digest(&token_of(id)))
        ));
    }
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).expect("token file");
    path
}

fn config() -> featstore::StoreConfig {
    let mut config = small_config();
    config.serving_log.enabled = true;
    config.serving_log.flush_interval_ms = 20;
    // Stored blocks, so that a byte scan of the files sees the ids.
    config.serving_log.compression_level = 0;
    config
}

fn call(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match method {
        "DELETE" => {
            let mut r = agent.delete(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
    };
    let mut response = result.expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    (status, body)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where `needle` occurs in the store directory `dir` (closed): each column family the
/// database lists, iterated raw (keys and values), every hot segment file, every
/// serving-log file, and every SST and WAL file of the database.
fn places_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let db_dir = dir.join("db");
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &db_dir).expect("list cf");
    let db =
        rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), &db_dir, &names, false)
            .expect("open read-only");
    for name in &names {
        let cf = db.cf_handle(name).expect("handle");
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_total_order_seek(true);
        let mut iter = db.raw_iterator_cf_opt(&cf, opts);
        iter.seek_to_first();
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if contains(k, needle) || contains(v, needle) {
                found.push(format!("cf {name}"));
                break;
            }
            iter.next();
        }
        iter.status().expect("iterate");
    }
    drop(db);
    for sub in ["segments", "serving-log", "db"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // RocksDB's MANIFEST may name a deleted file's boundary keys until it is
            // rewritten at the next open (README, "Per-entity deletion").
            let scanned = sub != "db" || name.ends_with(".sst") || name.ends_with(".log");
            if scanned && contains(&std::fs::read(entry.path()).expect("read"), needle) {
                found.push(format!("{sub}/{name}"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn open(dir: &Path) -> Arc<FeatureStore> {
    Arc::new(FeatureStore::open(dir, config()).expect("open"))
}

/// Waits (bounded) until every `Arc` of the store is gone, so its directory can be
/// opened again.
fn close(store: Arc<FeatureStore>) {
    let mut store = store;
    for _ in 0..500 {
        match Arc::try_unwrap(store) {
            Ok(s) => {
                drop(s);
                return;
            }
            Err(s) => {
                store = s;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    panic!("the store is still held");
}

const READS: [&str; 4] = [
    "/v1/features/user/{u}?names=user_age,user_click,user_clicks_5m",
    "/v1/features/user_product/{u}%7Cp1?names=affinity",
    "/v1/features/user_product/{u}%7Cp2?names=affinity",
    "/v1/features/product/p1?names=price",
];

#[test]
fn deleting_an_entity_removes_every_byte_of_it_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().join("store");
    let store = open(&dir);
    store
        .apply_objects(parse_registry_toml(REGISTRY, "registry").expect("parses"))
        .expect("apply");
    let load = |group: &str, text: String| {
        let path = tmp.path().join(format!("{group}.csv"));
        std::fs::write(&path, text).expect("write");
        store
            .load(&LoadRequest::new(group, &path), &|_| {})
            .expect("load");
    };
    // Two versions of users: one served, one kept for rollback.
    for v in 1..=2 {
        load(
            "users",
            format!(
                "entity_id,event_time,user_age\n{GONE},1700000000000,{v}1\nu7,1700000000000,{v}7\n"
            ),
        );
    }
    load(
        "affinity",
        format!(
            "entity_id,event_time,affinity\n{GONE}|p1,1700000000000,0.5\n{GONE}|p2,1700000000000,0.25\nu7|p1,1700000000000,0.75\n"
        ),
    );
    load(
        "products",
        "entity_id,event_time,price\np1,1700000000000,9.5\n".into(),
    );
    let now = now_ms();
    for user in [GONE, "u7"] {
        store
            .push(vec![PushEvent {
                entity_type: "user".into(),
                entity_id: user.into(),
                event_time: now - 1000,
                features: vec![("user_click".into(), Value::Float64(1.0))],
                event_id: Some(format!("click-{user}")),
            }])
            .expect("push");
    }

    // Serve some reads, so that the serving log and the access counts hold the ids.
    let server = TestServer::start(store.clone());
    let mut before = Vec::new();
    for read in READS {
        for u in [GONE, "u7"] {
            let (status, body) = get(&server.url(&read.replace("{u}", u)));
            assert_eq!(status, 200, "{read}: {body}");
            before.push(json(&body));
        }
    }
    let (status, ranked) = super::common::post(
        &server.url("/v1/rank"),
        &format!(
            r#"{{"context": {{"user": "{GONE}"}}, "candidates": {{"entity_type": "product", "ids": ["p1"]}}, "features": ["user_age", "price"]}}"#
        ),
    );
    assert_eq!(status, 200, "{ranked}");
    drop(server);
    store.persist_access_counts().expect("persist");
    close(store);

    // The scan finds the entity everywhere it was put.
    let held = places_holding(&dir, GONE.as_bytes());
    for place in [
        "cf versions.users",
        "cf versions.affinity",
        "cf stream.user_events",
        "cf stream.user_aggs",
        "cf history.users",
        "cf history.affinity",
        "cf stream_events",
    ] {
        assert!(held.iter().any(|p| p == place), "{place} not in {held:?}");
    }
    assert!(held.iter().any(|p| p.starts_with("segments/")), "{held:?}");
    assert!(
        held.iter().any(|p| p.starts_with("serving-log/")),
        "{held:?}"
    );

    // Reopen behind a token file: only `admin` may delete.
    let store = open(&dir);
    let server = TestServer::start_with(
        store.clone(),
        ServerConfig {
            token_file: Some(token_file(tmp.path())),
            ..ServerConfig::default()
        },
    );
    let delete = server.url(&format!("/v1/entities/user/{GONE}"));
    assert_eq!(call("DELETE", &delete, None).0, 401);
    assert_eq!(call("DELETE", &delete, Some(&token_of("reader"))).0, 403);
    let unknown = server.url("/v1/entities/nobody/x");
    assert_eq!(call("DELETE", &unknown, Some(&token_of("admin"))).0, 404);
    let (status, body) = call("DELETE", &delete, Some(&token_of("admin")));
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    assert_eq!(report["compacted"], true, "{report}");
    let entities = |group: &str| {
        report["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["group"] == group)
            .map(|g| g["entities"].as_u64().expect("count"))
    };
    assert_eq!(entities("users"), Some(1), "{report}");
    assert_eq!(entities("affinity"), Some(2), "{report}");
    assert_eq!(entities("products"), None, "{report}");

    drop(server);
    close(store);

    // Physically gone (the compaction ran before the answer); the other entities'
    // bytes are still there.
    assert_eq!(places_holding(&dir, GONE.as_bytes()), Vec::<String>::new());
    assert!(!places_holding(&dir, b"u7|p1").is_empty());
    let log_dir = dir.join("serving-log");
    let (records, _) =
        featstore::servelog::reader::read_all(&log_dir, &Default::default()).expect("read log");
    assert!(records.iter().any(|r| r.answer.candidates == ["u7"]));
    assert!(
        !records
            .iter()
            .any(|r| r.answer.candidates[0].contains(GONE))
    );

    // Reopened: nothing is served for it; everything else exactly as before.
    let store = open(&dir);
    let server = TestServer::start_with(
        store.clone(),
        ServerConfig {
            token_file: Some(tmp.path().join("tokens.toml")),
            ..ServerConfig::default()
        },
    );
    let admin = token_of("admin");
    let mut after = Vec::new();
    for read in READS {
        for u in [GONE, "u7"] {
            let (status, body) = call("GET", &server.url(&read.replace("{u}", u)), Some(&admin));
            assert_eq!(status, 200, "{read}: {body}");
            after.push(json(&body));
        }
    }
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let gone_read = i % 2 == 0 && i < 6;
        if gone_read {
            for f in a["features"].as_array().expect("features") {
                // A windowed count of no events is 0.
                let empty =
                    f["value"].is_null() || (f["name"] == "user_clicks_5m" && f["value"] == 0);
                assert!(empty, "still served after deletion: {a}");
            }
        } else {
            let strip = |v: &serde_json::Value| {
                let mut v = v.clone();
                for f in v["features"].as_array_mut().expect("features") {
                    f.as_object_mut().expect("feature").remove("age_ms");
                }
                v
            };
            assert_eq!(strip(a), strip(b), "another entity changed");
        }
    }
    let as_of = server.url(&format!(
        "/v1/features/user/{GONE}?names=user_age&as_of={}",
        now_ms()
    ));
    let (status, body) = call("GET", &as_of, Some(&admin));
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["features"][0]["value"].is_null(), "{body}");
    let rolled = server.url("/v1/groups/users/rollback");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut rollback = agent
        .post(&rolled)
        .header("authorization", &format!("Bearer {admin}"))
        .send_empty()
        .expect("rollback");
    assert_eq!(rollback.status().as_u16(), 200);
    let _ = rollback.body_mut().read_to_string();
    let (_, body) = call(
        "GET",
        &server.url(&format!("/v1/features/user/{GONE}?names=user_age")),
        Some(&admin),
    );
    assert!(
        json(&body)["features"][0]["value"].is_null(),
        "the kept version still served it: {body}"
    );
    let (_, body) = call(
        "GET",
        &server.url("/v1/features/user/u7?names=user_age"),
        Some(&admin),
    );
    assert_eq!(json(&body)["features"][0]["value"], 17.0, "{body}");

    // On record.
    let (status, audit) = call("GET", &server.url("/v1/audit"), Some(&admin));
    assert_eq!(status, 200, "{audit}");
    let records = json(&audit)["records"].clone();
    let outcomes: Vec<(String, String)> = records
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "delete_entity")
        .map(|r| {
            (
                r["principal"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&("admin".to_owned(), "ok".to_owned())),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("reader".to_owned(), "refused".to_owned())),
        "{outcomes:?}"
    );
    drop(server);
    close(store);
}

/// A push running while the entity is deleted is wholly before the deletion (deleted
/// with the rest) or wholly after it: the aggregate counts exactly the pushes after the
/// deletion (the one in flight either way), and the latest value is the last push's.
#[test]
fn a_concurrent_push_is_wholly_before_or_after_the_deletion() {
    let tmp = tempfile::tempdir().expect("dir");
    let store = Arc::new(FeatureStore::open(tmp.path().join("store"), config()).expect("open"));
    store
        .apply_objects(parse_registry_toml(REGISTRY, "registry").expect("parses"))
        .expect("apply");
    let deleting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deleted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let base = now_ms() - 10_000;
    let pusher = {
        let (store, deleting, deleted, stop) = (
            store.clone(),
            deleting.clone(),
            deleted.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::SeqCst;
            // (started after the deletion returned, acknowledged before it began)
            let mut pushes: Vec<(bool, bool)> = Vec::new();
            let mut after = 0;
            for i in 0..2000i64 {
                if stop.load(SeqCst) || after >= 50 {
                    break;
                }
                let started_after = deleted.load(SeqCst);
                store
                    .push(vec![PushEvent {
                        entity_type: "user".into(),
                        entity_id: GONE.into(),
                        event_time: base + i,
                        features: vec![("user_click".into(), Value::Float64(i as f64))],
                        event_id: None,
                    }])
                    .expect("push");
                let acked_before = !deleting.load(SeqCst);
                after += usize::from(started_after);
                pushes.push((started_after, acked_before));
            }
            pushes
        })
    };
    while store
        .get_features("user", GONE, &["user_clicks_5m"])
        .expect("read")
        .features[0]
        .value
        .as_ref()
        .is_none_or(|v| matches!(v, Value::Int64(n) if *n < 5))
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    deleting.store(true, std::sync::atomic::Ordering::SeqCst);
    store
        .delete_entity(&featstore::store::erase::EntityErasure {
            entity_type: "user".into(),
            entity_id: GONE.into(),
            compact: false,
        })
        .expect("delete");
    deleted.store(true, std::sync::atomic::Ordering::SeqCst);
    let pushes = pusher.join().expect("pusher");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let surely_deleted = pushes.iter().filter(|(_, before)| *before).count();
    let surely_kept = pushes.iter().filter(|(after, _)| *after).count();
    assert!(
        surely_deleted >= 2 && surely_kept == 50,
        "{surely_deleted} {surely_kept}"
    );
    let in_flight = pushes.len() - surely_deleted - surely_kept;
    let read = store
        .get_features("user", GONE, &["user_clicks_5m", "user_click"])
        .expect("read");
    let Some(Value::Int64(count)) = read.features[0].value else {
        panic!("no count: {read:?}");
    };
    let count = usize::try_from(count).expect("count");
    assert!(
        (surely_kept..=surely_kept + in_flight).contains(&count),
        "count {count}, kept {surely_kept}, in flight {in_flight}"
    );
    assert_eq!(
        read.features[1].value,
        Some(Value::Float64((pushes.len() - 1) as f64)),
        "{read:?}"
    );
}
