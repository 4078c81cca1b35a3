//! Ranking reads (issue 5): one context, many candidates, composite entity types,
//! on-demand features, defaults, feature services with lineage and protection, and
//! deadlines; in-process and over HTTP.

use std::sync::Arc;

use featstore::api::rank_binary;
use featstore::loader::LoadRequest;
use featstore::query::rank::{Cell, FeatureSelection, RankRequest, RankResponse, rank};
use featstore::registry::RegistryError;
use featstore::registry::file::parse_registry_toml;
use featstore::store::StoreError;
use featstore::types::{FeatureStatus, Value};
use featstore::{FeatureStore, StoreConfig};

use super::common::{TestServer, get, json, post, small_config};

const T0: i64 = 1_700_000_000_000;

pub(crate) const REGISTRY: &str = r#"
[[entity_type]]
name = "user_product"
components = ["user", "product"]
owner = "tests"

[[feature]]
name = "user_age"
entity_type = "user"
group = "users"
owner = "tests"
dtype = "int64"

[[feature]]
name = "user_emb"
entity_type = "user"
group = "users"
owner = "tests"
dtype = "float32_vector[3]"

[[feature]]
name = "user_last_visit"
entity_type = "user"
group = "users"
owner = "tests"
dtype = "int64"

[[feature]]
name = "product_price"
entity_type = "product"
group = "products"
owner = "tests"
dtype = "float64"
default = -1.0

[[feature]]
name = "product_clicks"
entity_type = "product"
group = "products"
owner = "tests"
dtype = "int64"

[[feature]]
name = "product_views"
entity_type = "product"
group = "products"
owner = "tests"
dtype = "int64"

[[feature]]
name = "product_emb"
entity_type = "product"
group = "products"
owner = "tests"
dtype = "float32_vector[3]"

[[feature]]
name = "product_promo"
entity_type = "product"
group = "products"
owner = "tests"
dtype = "float32"
ttl = "1d"
default = 0.5

[[feature]]
name = "up_affinity"
entity_type = "user_product"
group = "user_product"
owner = "tests"
dtype = "float64"
default = 0.0

[[feature]]
name = "up_clicks"
entity_type = "user_product"
group = "user_product"
owner = "tests"
dtype = "int64"

[[on_demand]]
name = "user_product_sim"
owner = "tests"
op = "cosine_similarity"
inputs = ["user_emb", "product_emb"]
default = 0.0

[[on_demand]]
name = "user_product_dot"
owner = "tests"
op = "dot_product"
inputs = ["user_emb", "product_emb"]
default = 0.0

[[on_demand]]
name = "product_ctr"
owner = "tests"
op = "ratio"
inputs = ["product_clicks", "product_views"]
default = -1.0

[[on_demand]]
name = "since_last_visit"
owner = "tests"
op = "time_since"
inputs = ["user_last_visit"]
default = -1.0

[[service]]
name = "ranker_v3"
owner = "ranking"
features = ["user_age", "product_price", "up_affinity", "user_product_sim", "product_ctr"]
"#;

/// A store with the ranking fixture registered and loaded.
pub(crate) fn ranking_store(dir: &std::path::Path, config: StoreConfig) -> FeatureStore {
    let store = FeatureStore::open(dir.join("store"), config).expect("open");
    let objects = parse_registry_toml(REGISTRY, "registry").expect("parses");
    store.apply_objects(objects).expect("apply");
    let files = [
        (
            "users",
            "entity_id,event_time,user_age,user_emb,user_last_visit\n\
             u1,1700000000000,31,1 0 0,1699990000000\n\
             u2,1700000000000,45,0 0 0,\n",
        ),
        (
            "products",
            "entity_id,event_time,product_price,product_clicks,product_views,product_emb,product_promo\n\
             p1,1700000000000,10.5,5,100,1 1 0,0.9\n\
             p2,1700000000000,20,0,0,0 1 0,0.1\n\
             p3,1700000000000,,7,10,1 0 0,\n",
        ),
        (
            "user_product",
            "entity_id,event_time,up_affinity,up_clicks\n\
             u1|p1,1700000000000,0.7,3\n\
             u1|p3,1700000000000,0.2,1\n",
        ),
    ];
    for (group, text) in files {
        let path = dir.join(format!("{group}.csv"));
        std::fs::write(&path, text).expect("write");
        store
            .load(&LoadRequest::new(group, &path), &|_| {})
            .expect("load");
    }
    store
}

fn request(features: &[&str]) -> RankRequest {
    RankRequest {
        context: vec![("user".into(), "u1".into())],
        candidate_type: "product".into(),
        candidates: vec!["p3".into(), "p1".into(), "nope".into(), "p2".into()],
        features: FeatureSelection::Names(features.iter().map(|s| (*s).to_owned()).collect()),
        deadline: None,
    }
}

fn value(cell: &Cell) -> Option<f64> {
    match &cell.value {
        Some(Value::Float64(v)) => Some(*v),
        Some(Value::Float32(v)) => Some(f64::from(*v)),
        Some(Value::Int64(v)) => Some(*v as f64),
        _ => None,
    }
}

fn column(response: &RankResponse, name: &str) -> Vec<(FeatureStatus, Option<f64>)> {
    let c = response
        .columns
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    (0..response.candidates.len())
        .map(|r| {
            let cell = &response.cell(r, c);
            (cell.status, value(cell))
        })
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

use FeatureStatus::{Defaulted, NotFetched, NotFound, Present};

#[test]
fn context_once_rows_in_order_composites_and_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ranking_store(dir.path(), small_config());
    let response = store
        .rank(request(&[
            "product_price",
            "user_age",
            "up_affinity",
            "up_clicks",
            "product_promo",
        ]))
        .expect("rank");
    assert_eq!(response.candidates, vec!["p3", "p1", "nope", "p2"]);
    let names: Vec<&str> = response.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["product_price", "up_affinity", "up_clicks", "product_promo"]
    );
    assert_eq!(response.context_columns.len(), 1);
    assert_eq!(response.context_columns[0].name, "user_age");
    assert_eq!(response.context_cells[0].status, Present);
    assert_eq!(response.context_cells[0].value, Some(Value::Int64(31)));
    assert_eq!(response.context_cells[0].event_time, Some(T0));
    assert!(response.complete);

    // p3's price is an explicit null: the default; the unknown product: the default.
    assert_eq!(
        column(&response, "product_price"),
        [
            (Defaulted, Some(-1.0)),
            (Present, Some(10.5)),
            (Defaulted, Some(-1.0)),
            (Present, Some(20.0))
        ]
    );
    // Composite user x product: u1|p2 is not stored, which is not an error.
    assert_eq!(
        column(&response, "up_affinity"),
        [
            (Present, Some(0.2)),
            (Present, Some(0.7)),
            (Defaulted, Some(0.0)),
            (Defaulted, Some(0.0))
        ]
    );
    assert_eq!(
        column(&response, "up_clicks"),
        [
            (Present, Some(1.0)),
            (Present, Some(3.0)),
            (NotFound, None),
            (NotFound, None)
        ]
    );
    // Expired past its TTL (and one null): the default, with no event time.
    for (status, v) in column(&response, "product_promo") {
        assert_eq!((status, v), (Defaulted, Some(0.5)));
    }
    let row = response.row(1);
    assert_eq!(row[0].event_time, Some(T0));
    assert_eq!(row[3].event_time, None);
    let defaults: std::collections::BTreeMap<_, _> = response.defaults.iter().cloned().collect();
    assert_eq!(defaults.get("product_price@1"), Some(&2));
    assert_eq!(defaults.get("up_affinity@1"), Some(&2));
    assert_eq!(defaults.get("product_promo@1"), Some(&4));
    assert_eq!(defaults.get("up_clicks@1"), None);
}

#[test]
fn on_demand_features_match_a_reference_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ranking_store(dir.path(), small_config());
    let response = store
        .rank(request(&[
            "user_product_sim",
            "user_product_dot",
            "product_ctr",
            "since_last_visit",
        ]))
        .expect("rank");
    // since_last_visit reads only the user: answered once, in the context.
    assert_eq!(response.context_columns[0].name, "since_last_visit");
    let since = &response.context_cells[0];
    assert_eq!(since.status, Present);
    let expected = (response.now_ms - 1_699_990_000_000) as f64 / 1000.0;
    assert_eq!(value(since), Some(expected));

    let user = [1.0, 0.0, 0.0];
    let products = [
        Some([1.0, 0.0, 0.0]),
        Some([1.0, 1.0, 0.0]),
        None,
        Some([0.0, 1.0, 0.0]),
    ];
    let sims = column(&response, "user_product_sim");
    let dots = column(&response, "user_product_dot");
    for (r, p) in products.iter().enumerate() {
        match p {
            Some(p) => {
                let (status, got) = sims[r];
                assert_eq!(status, Present, "row {r}");
                assert!(
                    (got.expect("value") - cosine(&user, p)).abs() < 1e-9,
                    "row {r}"
                );
                let dot: f64 = user.iter().zip(p).map(|(a, b)| a * b).sum();
                assert_eq!(dots[r], (Present, Some(dot)), "row {r}");
            }
            None => {
                assert_eq!(sims[r], (Defaulted, Some(0.0)));
                assert_eq!(dots[r], (Defaulted, Some(0.0)));
            }
        }
    }
    assert_eq!(
        column(&response, "product_ctr"),
        [
            (Present, Some(0.7)),
            (Present, Some(0.05)),
            (Defaulted, Some(-1.0)),
            (Defaulted, Some(-1.0)) // zero views
        ]
    );

    // A zero user embedding: cosine is undefined (default), the dot product is 0.
    let mut req = request(&["user_product_sim", "user_product_dot"]);
    req.context = vec![("user".into(), "u2".into())];
    let response = store.rank(req).expect("rank");
    assert_eq!(
        column(&response, "user_product_sim")[1],
        (Defaulted, Some(0.0))
    );
    assert_eq!(
        column(&response, "user_product_dot")[1],
        (Present, Some(0.0))
    );
}

#[test]
fn deadline_zero_marks_everything_not_fetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ranking_store(dir.path(), small_config());
    let mut req = request(&["user_age", "product_price", "user_product_sim"]);
    req.deadline = Some(std::time::Duration::ZERO);
    let response = store.rank(req).expect("rank");
    assert!(!response.complete);
    assert_eq!(response.candidates.len(), 4);
    let rows = (0..response.candidates.len()).flat_map(|r| response.row(r));
    for cell in response.context_cells.iter().cloned().chain(rows) {
        assert_eq!(cell.status, NotFetched);
        assert_eq!(cell.value, None);
    }
    assert!(response.defaults.is_empty());
    // A generous deadline fetches everything.
    let mut req = request(&["user_age", "product_price", "user_product_sim"]);
    req.deadline = Some(std::time::Duration::from_secs(60));
    assert!(store.rank(req).expect("rank").complete);
}

#[test]
fn hot_segment_and_rocksdb_answer_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hot = ranking_store(&dir.path().join("hot"), small_config());
    let cold = ranking_store(
        &dir.path().join("cold"),
        StoreConfig {
            hot_segment_bytes: 0,
            ..small_config()
        },
    );
    assert!(hot.hot_segment_entities("products").is_some());
    assert_eq!(cold.hot_segment_entities("products"), None);
    let names = [
        "product_price",
        "product_clicks",
        "product_views",
        "product_emb",
        "product_promo",
        "user_age",
        "up_affinity",
        "up_clicks",
        "user_product_sim",
        "product_ctr",
    ];
    // Both the MultiGet path (few features of a group) and the scan path (many).
    for features in [&names[..], &names[..2], &["up_clicks"][..]] {
        let now = featstore::types::now_ms();
        let a = rank(&hot.view(), request(features), now).expect("hot");
        let b = rank(&cold.view(), request(features), now).expect("cold");
        assert_eq!(a, b, "{features:?}");
    }
    // The lookup counters: the hot store's segments answered the entities they hold
    // (not the candidate `nope`, which no version holds), the cold store's none (it
    // has no segment); the cold store read its values through the block cache.
    let (hot_stats, cold_stats) = (hot.engine_stats(), cold.engine_stats());
    assert!(
        hot_stats.hot_segment_hits > 0
            && hot_stats.hot_segment_hits < hot_stats.hot_segment_lookups,
        "{hot_stats:?}"
    );
    assert!(cold_stats.hot_segment_lookups > 0);
    assert_eq!(cold_stats.hot_segment_hits, 0);
    assert!(
        cold_stats.block_cache_hits + cold_stats.block_cache_misses > 0,
        "{cold_stats:?}"
    );
}

#[test]
fn services_lineage_and_protection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ranking_store(dir.path(), small_config());
    let mut req = request(&[]);
    req.features = FeatureSelection::Service("ranker_v3".into());
    let response = store.rank(req).expect("rank");
    assert_eq!(response.service.as_deref(), Some("ranker_v3@1"));
    let names: Vec<&str> = response.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "product_price",
            "up_affinity",
            "user_product_sim",
            "product_ctr"
        ]
    );
    assert_eq!(response.context_columns[0].name, "user_age");

    // Lineage: direct and through an on-demand feature.
    let lineage = store.lineage();
    let users = |f: &str| {
        lineage
            .iter()
            .find(|u| u.feature == f)
            .unwrap_or_else(|| panic!("{f} in lineage"))
            .clone()
    };
    assert_eq!(users("product_price@1").services, ["ranker_v3@1"]);
    assert_eq!(users("product_emb@1").services, ["ranker_v3@1"]);
    assert_eq!(
        users("product_emb@1").on_demand,
        ["user_product_dot@1", "user_product_sim@1"]
    );

    // Used by a live service: no deletion, no change of default.
    let err = store
        .delete_feature("product_price", 1)
        .expect_err("in use");
    assert!(
        matches!(err, StoreError::Registry(RegistryError::InUse(_))),
        "{err}"
    );
    assert!(err.to_string().contains("ranker_v3@1"), "{err}");
    let mut spec = parse_registry_toml(REGISTRY, "r").expect("parses").feature;
    spec.retain(|s| s.name == "product_price");
    spec[0].default = Some(serde_json::json!(0.0));
    let err = store
        .apply(spec.clone())
        .expect_err("default change refused");
    assert!(
        matches!(err, StoreError::Registry(RegistryError::InUse(_))),
        "{err}"
    );
    // The dtype never changes under the same version.
    spec[0].default = Some(serde_json::json!(-1.0));
    spec[0].dtype = featstore::types::DType::Float32;
    assert!(store.apply(spec).is_err());
    // Read by an on-demand feature: no deletion either.
    let err = store
        .delete_feature("user_last_visit", 1)
        .expect_err("read by since_last_visit");
    assert!(err.to_string().contains("since_last_visit@1"), "{err}");
    // A service's feature list is fixed per version.
    let mut services = parse_registry_toml(REGISTRY, "r").expect("parses").service;
    services[0].features.pop();
    assert!(
        store
            .apply_catalog(vec![], vec![], services.clone())
            .is_err()
    );
    services[0].version = 2;
    store
        .apply_catalog(vec![], vec![], services)
        .expect("new version");

    // Retired: no longer served by version, no longer protecting.
    store.retire_service("ranker_v3", 1).expect("retire");
    let mut req = request(&[]);
    req.features = FeatureSelection::Service("ranker_v3@1".into());
    assert!(store.rank(req).is_err());
    let mut req = request(&[]);
    req.features = FeatureSelection::Service("ranker_v3".into());
    assert_eq!(
        store.rank(req).expect("v2").service.as_deref(),
        Some("ranker_v3@2")
    );
    store.retire_service("ranker_v3", 2).expect("retire");
    store
        .delete_feature("product_price", 1)
        .expect("now deletable");
    assert!(store.registry().resolve("product_price").is_none());
    // Still remembered after a restart.
    drop(store);
    let store = FeatureStore::open(dir.path().join("store"), small_config()).expect("reopen");
    assert!(store.registry().resolve("product_price").is_none());
    let catalog = store.registry().catalog().clone();
    assert!(
        !catalog
            .resolve_service("ranker_v3@1")
            .expect("kept")
            .is_live()
    );
    assert!(catalog.entity_type("user_product").is_some());
    assert!(catalog.resolve_on_demand("product_ctr").is_some());
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ranking_store(dir.path(), small_config());
    let mut req = request(&["up_affinity"]);
    req.context.clear();
    let err = store.rank(req).expect_err("no user for user_product");
    assert!(err.to_string().contains("user"), "{err}");
    assert!(store.rank(request(&["nope"])).is_err());
    assert!(
        store
            .rank(request(&["product_price", "product_price"]))
            .is_err()
    );
    let mut req = request(&["product_price"]);
    req.features = FeatureSelection::Service("unknown".into());
    assert!(store.rank(req).is_err());
    let mut req = request(&["product_price"]);
    req.candidates = (0..=featstore::query::rank::MAX_CANDIDATES)
        .map(|i| format!("p{i}"))
        .collect();
    let err = store.rank(req).expect_err("too many");
    assert!(err.to_string().contains("10000"), "{err}");
    let mut req = request(&["product_price"]);
    req.context.push(("user".into(), "u2".into()));
    assert!(store.rank(req).is_err(), "a context type twice");
}

#[test]
fn a_cached_ranking_plan_changes_no_answer_and_no_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ranking_store(dir.path(), small_config());
    let features = ["product_price", "user_age", "up_affinity", "product_promo"];
    let first = store.rank(request(&features)).expect("rank");
    let mut second = store.rank(request(&features)).expect("rank again");
    // The clock may tick between the two reads; everything else is equal.
    second.now_ms = first.now_ms;
    assert_eq!(first, second);
    assert!(
        Arc::ptr_eq(&first.columns, &second.columns)
            && Arc::ptr_eq(&first.context_columns, &second.context_columns),
        "the second answer is planned from the cache"
    );
    // Other candidates, the same plan: the answer is the uncached one's.
    let mut fewer = request(&features);
    fewer.candidates.truncate(2);
    let answer = store.rank(fewer.clone()).expect("rank");
    assert_eq!(answer.values.len(), first.values.len());
    for (a, b) in answer.values.iter().zip(&first.values) {
        for row in 0..2 {
            assert_eq!(a.value(row), b.value(row));
            assert_eq!(a.status(row), b.status(row));
        }
    }
    // Every per-request check still runs with a cached plan: ids, context types
    // (the plan depends on them), and the context's duplicates.
    let mut bad = request(&features);
    bad.candidates[1] = String::new();
    let err = store.rank(bad).expect_err("an empty candidate id");
    assert!(err.to_string().contains("candidate"), "{err}");
    let mut no_user = request(&features);
    no_user.context.clear();
    let err = store.rank(no_user).expect_err("no user for user_product");
    assert!(err.to_string().contains("user"), "{err}");
    let mut twice = request(&features);
    twice.context.push(("user".into(), "u2".into()));
    assert!(store.rank(twice).is_err(), "a context type twice");
    // The same names in another order are another plan, answered in that order.
    let reversed: Vec<&str> = features.iter().rev().copied().collect();
    let other = store.rank(request(&reversed)).expect("rank");
    let names: Vec<&str> = other.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["product_promo", "up_affinity", "product_price"]);
    // A failed plan is not cached: it fails the same way every time.
    for _ in 0..2 {
        let err = store
            .rank(request(&["product_price", "nope"]))
            .expect_err("unknown feature");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}

#[test]
fn http_rank_json_binary_metrics_and_registry_endpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let server = TestServer::start(store);
    let body = r#"{"context":{"user":"u1"},"candidates":{"entity_type":"product","ids":["p2","nope","p1"]},"features":["product_price","user_age","user_product_sim"]}"#;
    let (status, text) = post(&server.url("/v1/rank"), body);
    assert_eq!(status, 200, "{text}");
    let answer = json(&text);
    assert_eq!(answer["complete"], true);
    assert_eq!(answer["context"]["entities"]["user"], "u1");
    assert_eq!(
        answer["context"]["features"],
        serde_json::json!(["user_age"])
    );
    assert_eq!(answer["context"]["values"], serde_json::json!([31]));
    assert_eq!(answer["context"]["status"], "P");
    let times = answer["event_times"].as_array().expect("times").clone();
    let t = answer["context"]["event_time"][0].as_u64().expect("index") as usize;
    assert_eq!(times[t], serde_json::json!(T0));
    assert_eq!(
        answer["candidates"]["features"],
        serde_json::json!(["product_price", "user_product_sim"])
    );
    let rows = answer["candidates"]["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["p2", "nope", "p1"]);
    assert_eq!(rows[0]["values"][0], serde_json::json!(20.0));
    assert_eq!(rows[1]["status"], "DD");
    assert_eq!(rows[1]["event_time"], serde_json::json!([null, null]));
    assert_eq!(rows[2]["status"], "PP");
    assert_eq!(answer["defaults"]["product_price@1"], 1);

    // The same request in the binary encoding decodes to the same values.
    let mut response = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&server.url("/v1/rank"))
        .header("accept", rank_binary::BINARY_CONTENT_TYPE)
        .send(body.as_bytes())
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.body_mut().read_to_vec().expect("body");
    let decoded = rank_binary::decode(&bytes).expect("decodes");
    assert_eq!(decoded.columns, ["product_price", "user_product_sim"]);
    assert_eq!(decoded.rows.len(), 3);
    assert_eq!(decoded.rows[0].0, "p2");
    assert_eq!(
        decoded.rows[0].1[0],
        (b'P', Some(T0), Some(Value::Float64(20.0)))
    );
    assert_eq!(
        decoded.rows[1].1[0],
        (b'D', None, Some(Value::Float64(-1.0)))
    );
    assert_eq!(decoded.context_cells[0].2, Some(Value::Int64(31)));

    // Service request; deadline 0; per-feature defaults counter in /metrics.
    let (status, text) = post(
        &server.url("/v1/rank"),
        r#"{"context":{"user":"u1"},"candidates":{"entity_type":"product","ids":["p1"]},"service":"ranker_v3","deadline_ms":0}"#,
    );
    assert_eq!(status, 200, "{text}");
    let answer = json(&text);
    assert_eq!(answer["complete"], false);
    assert_eq!(answer["candidates"]["rows"][0]["status"], "FFFF");
    let (_, metrics) = get(&server.url("/metrics"));
    assert!(
        // Once per request: the JSON one and the binary one.
        metrics.contains(r#"featstore_feature_defaults_total{feature="product_price@1"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"featstore_features_served_total{status="not_fetched"} 5"#),
        "{metrics}"
    );

    // Errors: unknown feature 404, bad body 400, unknown service 404.
    let (status, text) = post(
        &server.url("/v1/rank"),
        r#"{"candidates":{"entity_type":"product","ids":["p1"]},"features":["nope"]}"#,
    );
    assert_eq!(status, 404, "{text}");
    assert!(
        json(&text)["error"]
            .as_str()
            .expect("message")
            .contains("nope")
    );
    let (status, _) = post(&server.url("/v1/rank"), r#"{"candidates":{}}"#);
    assert_eq!(status, 400);
    let (status, _) = post(
        &server.url("/v1/rank"),
        r#"{"candidates":{"entity_type":"product","ids":["p1"]},"service":"ghost"}"#,
    );
    assert_eq!(status, 404);

    // Registry endpoints: listing, lineage, refused delete, retire, delete.
    let (status, text) = get(&server.url("/v1/feature-services"));
    assert_eq!(status, 200);
    assert_eq!(json(&text)["services"][0]["live"], true);
    let (_, text) = get(&server.url("/v1/lineage"));
    assert!(text.contains("ranker_v3@1"), "{text}");
    let (_, text) = get(&server.url("/v1/entity-types"));
    assert!(text.contains("user_product"), "{text}");
    let (_, text) = get(&server.url("/v1/on-demand-features"));
    assert!(text.contains("cosine_similarity"), "{text}");
    let (status, text) = delete(&server.url("/v1/feature-definitions/user_age/versions/1"));
    assert_eq!(status, 409, "{text}");
    let (status, text) = post(
        &server.url("/v1/feature-services/ranker_v3/versions/1/retire"),
        "",
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = delete(&server.url("/v1/feature-definitions/user_age/versions/1"));
    assert_eq!(status, 200, "{text}");
    let (status, _) = delete(&server.url("/v1/feature-definitions/user_age/versions/1"));
    assert_eq!(status, 404);
    let (status, text) = post(
        &server.url("/v1/registry"),
        r#"{"services":[{"name":"ranker_v4","owner":"ranking","features":["product_price","product_ctr"]}]}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = post(
        &server.url("/v1/rank"),
        r#"{"context":{},"candidates":{"entity_type":"product","ids":["p1","p2"]},"service":"ranker_v4"}"#,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["candidates"]["rows"][1]["status"], "PD");
}

fn delete(url: &str) -> (u16, String) {
    let mut response = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .delete(url)
        .call()
        .expect("DELETE");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}

#[test]
fn candidates_with_only_composite_features_and_escaped_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FeatureStore::open(dir.path().join("store"), small_config()).expect("open");
    let objects = parse_registry_toml(
        r#"
        [[entity_type]]
        name = "brand_product"
        components = ["brand", "product"]

        [[feature]]
        name = "bp_share"
        entity_type = "brand_product"
        group = "brand_product"
        owner = "tests"
        dtype = "float64"
        "#,
        "registry",
    )
    .expect("parses");
    store.apply_objects(objects).expect("apply");
    // Ids holding the separator and the escape character still key one pair each.
    let id = featstore::registry::entity::composite_id(&["b|1", "p%2"]);
    assert_eq!(id, "b%7C1|p%252");
    let path = dir.path().join("bp.csv");
    std::fs::write(
        &path,
        format!("entity_id,event_time,bp_share\n{id},{T0},0.25\n"),
    )
    .expect("write");
    store
        .load(&LoadRequest::new("brand_product", &path), &|_| {})
        .expect("load");
    let response = store
        .rank(RankRequest {
            context: vec![("brand".into(), "b|1".into())],
            candidate_type: "product".into(),
            candidates: vec!["p%2".into(), "p2".into()],
            features: FeatureSelection::Names(vec!["bp_share".into()]),
            deadline: None,
        })
        .expect("rank");
    assert_eq!(
        column(&response, "bp_share"),
        [(Present, Some(0.25)), (NotFound, None)]
    );
}
