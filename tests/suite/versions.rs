//! Version management: activate, roll back, keep the last K, load without activating.

use std::sync::Arc;

use featstore::loader::LoadRequest;
use featstore::store::StoreError;
use featstore::types::Value;

use super::common::{TestServer, get, item_specs, json, post, temp_store, write_items_csv};

fn item_a(store: &featstore::FeatureStore, id: &str) -> Option<Value> {
    store
        .get_features("item", id, &["item_a"])
        .expect("read")
        .features[0]
        .value
        .clone()
}

#[test]
fn activate_rollback_and_drop() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    for v in 1..=3 {
        let csv = write_items_csv(dir.path(), v, 5);
        let record = store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
        assert_eq!(record.version, v);
        assert_eq!(
            item_a(&store, "i1"),
            Some(Value::Float64((v * 1000 + 1) as f64))
        );
    }
    assert_eq!(store.rollback("items").expect("rollback"), 2);
    assert_eq!(item_a(&store, "i1"), Some(Value::Float64(2001.0)));
    assert_eq!(store.rollback("items").expect("rollback"), 1);
    assert!(matches!(
        store.rollback("items"),
        Err(StoreError::NoPreviousVersion(_))
    ));
    store.activate("items", 3).expect("activate");
    assert_eq!(item_a(&store, "i1"), Some(Value::Float64(3001.0)));
    assert!(matches!(
        store.activate("items", 9),
        Err(StoreError::UnknownVersion { .. })
    ));

    // A version loaded without activation is ready but not served.
    let csv = write_items_csv(dir.path(), 4, 5);
    let mut request = LoadRequest::new("items", csv);
    request.activate = false;
    store.load(&request, &|_| {}).expect("load");
    assert_eq!(item_a(&store, "i1"), Some(Value::Float64(3001.0)));

    // keep_versions = 3: version 1 went when version 4 arrived.
    let listed: Vec<u64> = store
        .versions("items")
        .expect("versions")
        .versions
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed, vec![2, 3, 4]);
    let dropped = store.drop_old_versions("items", 1).expect("drop");
    assert_eq!(dropped, vec![2], "newest kept, active (3) never dropped");
    let versions = store.versions("items").expect("versions");
    assert_eq!(versions.active, Some(3));
    let record = versions
        .versions
        .iter()
        .find(|v| v.version == 3)
        .and_then(|v| v.load.clone())
        .expect("record");
    assert_eq!(record.rows, 5);
    assert!(record.source.ends_with("items-v3.csv"));
}

#[test]
fn versions_over_http() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let server = TestServer::start_importing(Arc::new(store), dir.path());
    for v in 1..=2 {
        let csv = write_items_csv(dir.path(), v, 5);
        let body = serde_json::json!({ "input": csv }).to_string();
        let (status, body) = post(&server.url("/v1/groups/items/loads"), &body);
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["version"], v);
    }
    let (status, body) = post(&server.url("/v1/groups/items/rollback"), "");
    assert_eq!(status, 200, "{body}");
    let (_, body) = get(&server.url("/v1/features/item/i2?names=item_a"));
    assert_eq!(json(&body)["features"][0]["value"], 1002.0);
    let (status, body) = post(&server.url("/v1/groups/items/versions/2/activate"), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&server.url("/v1/groups/items/versions"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["active"], 2);
    let (status, _) = post(&server.url("/v1/groups/items/versions/77/activate"), "");
    assert_eq!(status, 404);
    let (status, body) = post(
        &server.url("/v1/groups/items/loads"),
        r#"{"input": "/nonexistent.csv"}"#,
    );
    assert!((400..600).contains(&status) && status != 200, "{body}");
    let (_, body) = get(&server.url("/v1/features/item/i2?names=item_a"));
    assert_eq!(
        json(&body)["features"][0]["value"],
        2002.0,
        "failed load changed nothing"
    );
}
