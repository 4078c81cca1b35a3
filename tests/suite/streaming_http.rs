//! `POST /v1/push` over the real server: durable answers with counts, all-or-nothing
//! rejection listing every bad event, ages in reads, freshness metrics.

use std::sync::Arc;

use featstore::types::now_ms;

use super::common::{TestServer, get, json, post, temp_store};

const SPECS: &str = r#"{"features":[
 {"name":"live_stock","entity_type":"product","group":"product_live","owner":"t","dtype":"int64","freshness_slo":"1m"},
 {"name":"live_price","entity_type":"product","group":"product_live","owner":"t","dtype":"float32"},
 {"name":"live_tags","entity_type":"product","group":"product_live","owner":"t","dtype":"float32_vector[2]"}]}"#;

#[test]
fn pushes_over_http_are_applied_whole_or_refused_whole() {
    let (_dir, store) = temp_store();
    let server = TestServer::start(Arc::new(store));
    let (status, body) = post(&server.url("/v1/feature-definitions"), SPECS);
    assert_eq!(status, 200, "{body}");
    let now = now_ms();

    let good = serde_json::json!({"events": [
        {"entity_type": "product", "entity_id": "p1", "event_time": now,
         "features": {"live_stock": 7, "live_price": 2.5, "live_tags": [0.5, 1.0]}},
        {"entity_type": "product", "entity_id": "p2", "event_time": "2020-01-01T00:00:00Z",
         "features": {"live_stock@1": 3}, "event_id": "e-2"},
        {"entity_type": "product", "entity_id": "p1", "event_time": now - 1000,
         "features": {"live_stock": 6}}
    ]});
    let (status, body) = post(&server.url("/v1/push"), &good.to_string());
    assert_eq!(status, 200, "{body}");
    let outcome = json(&body);
    assert_eq!(outcome["accepted"], 3, "{body}");
    assert_eq!(outcome["ignored_older"], 1, "{body}");
    assert_eq!(outcome["values_written"], 4, "{body}");

    let (status, body) = get(&server.url("/v1/features/product/p1?names=live_stock,live_tags"));
    assert_eq!(status, 200, "{body}");
    let read = json(&body);
    assert_eq!(read["features"][0]["value"], 7, "{body}");
    assert_eq!(read["features"][0]["status"], "present", "{body}");
    assert!(read["features"][0]["age_ms"].as_i64().is_some(), "{body}");
    assert_eq!(
        read["features"][1]["value"],
        serde_json::json!([0.5, 1.0]),
        "{body}"
    );
    let (_, body) = get(&server.url("/v1/features/product/p2?names=live_stock"));
    let read = json(&body);
    assert_eq!(read["features"][0]["status"], "stale", "{body}");
    assert_eq!(read["features"][0]["value"], 3, "{body}");

    let bad = serde_json::json!({"events": [
        {"entity_type": "product", "entity_id": "p3", "event_time": now, "features": {"live_stock": 1}},
        {"entity_type": "product", "entity_id": "p3", "event_time": now, "features": {"live_stock": "many"}},
        {"entity_type": "product", "entity_id": "p3", "event_time": now, "features": {"live_tags": [1.0]}},
        {"entity_type": "product", "entity_id": "p3", "features": {"live_stock": 1}},
        {"entity_type": "user", "entity_id": "p3", "event_time": now, "features": {"live_stock": 1}}
    ]});
    let (status, body) = post(&server.url("/v1/push"), &bad.to_string());
    assert_eq!(status, 400, "{body}");
    let answer = json(&body);
    let indices: Vec<i64> = answer["rejected"]
        .as_array()
        .expect("rejected list")
        .iter()
        .map(|r| r["index"].as_i64().expect("index"))
        .collect();
    assert_eq!(indices, vec![1, 2, 3, 4], "{body}");
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("nothing was applied")
    );
    let (_, body) = get(&server.url("/v1/features/product/p3?names=live_stock"));
    assert_eq!(json(&body)["features"][0]["status"], "not_found", "{body}");

    for malformed in ["", "{", r#"{"events": 3}"#, r#"{"events": []}"#, "[]"] {
        let (status, body) = post(&server.url("/v1/push"), malformed);
        assert_eq!(status, 400, "{malformed}: {body}");
        assert!(json(&body)["rejected"].is_array(), "{body}");
    }

    let (status, metrics) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    for needle in [
        r#"featstore_stream_lag_seconds_count{group="product_live"} 4"#,
        r#"featstore_stream_newest_age_seconds{group="product_live"}"#,
        r#"featstore_http_requests_total{method="POST",route="/v1/push",status="400"}"#,
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}
