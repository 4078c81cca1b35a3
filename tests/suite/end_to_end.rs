//! The whole path: generate the synthetic marketplace, register it, load every group,
//! start the real HTTP server, and check every served value against the generator.

use std::sync::Arc;

use featstore::datagen::{Dataset, DatasetConfig};
use featstore::loader::LoadRequest;
use featstore::types::{Value, now_ms};

use super::common::{TestServer, get, json, temp_store};

/// The JSON the server must send for `value` (hex for bytes).
fn expected_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Int64(v) => serde_json::json!(v),
        Value::Float64(v) => serde_json::json!(v),
        Value::Float32(v) => serde_json::json!(v),
        Value::Bool(v) => serde_json::json!(v),
        Value::String(v) => serde_json::json!(v),
        Value::Bytes(v) => {
            serde_json::json!(v.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
        Value::Float32Vector(v) => serde_json::json!(v),
    }
}

fn same_number(got: &serde_json::Value, want: &Value) -> bool {
    match (got.as_f64(), want) {
        (Some(g), Value::Float32(w)) => g as f32 == *w,
        (Some(g), Value::Float64(w)) => g == *w,
        _ => false,
    }
}

fn same_value(got: &serde_json::Value, want: &Value) -> bool {
    match want {
        Value::Float32(_) | Value::Float64(_) => same_number(got, want),
        Value::Float32Vector(w) => got.as_array().is_some_and(|g| {
            g.len() == w.len()
                && g.iter()
                    .zip(w)
                    .all(|(g, w)| g.as_f64().is_some_and(|g| g as f32 == *w))
        }),
        other => *got == expected_json(other),
    }
}

#[test]
fn every_served_value_matches_the_generated_source() {
    let (dir, store) = temp_store();
    let mut config = DatasetConfig::tiny();
    config.base_time_ms = now_ms();
    let dataset = Dataset::new(config);
    let files = dataset.write(&dir.path().join("data")).expect("generate");
    store.apply(dataset.specs()).expect("apply");
    for load in &files.loads {
        let record = store
            .load(
                &LoadRequest::new(load.group.clone(), load.path.clone()),
                &|_| {},
            )
            .expect("load");
        assert!(record.values_stored > 0, "{record:?}");
    }
    let specs = dataset.specs();
    let server = TestServer::start(Arc::new(store));

    let mut checked = 0usize;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for entity_type in ["user", "product", "retailer"] {
        let features: Vec<_> = specs
            .iter()
            .filter(|s| s.entity_type == entity_type)
            .collect();
        assert!(!features.is_empty(), "no features for {entity_type}");
        let names: Vec<&str> = features.iter().map(|s| s.name.as_str()).collect();
        for entity_id in dataset.entity_ids(entity_type) {
            let (status, body) = get(&server.url(&format!(
                "/v1/features/{entity_type}/{entity_id}?names={}",
                names.join(",")
            )));
            assert_eq!(status, 200, "{body}");
            let body = json(&body);
            let got = body["features"].as_array().expect("features array");
            assert_eq!(got.len(), names.len());
            let now = now_ms();
            for (reading, spec) in got.iter().zip(&features) {
                assert_eq!(reading["name"], spec.name.as_str(), "order as asked");
                let status = reading["status"].as_str().expect("status");
                *statuses.entry(status.to_owned()).or_default() += 1;
                let context = format!("{entity_type}/{entity_id} {}: {reading}", spec.name);
                match dataset.expected(entity_type, &entity_id, &spec.name) {
                    None => assert_eq!(status, "not_found", "{context}"),
                    Some((value, event_time)) => {
                        assert_eq!(
                            reading["event_time"].as_i64(),
                            Some(event_time),
                            "{context}"
                        );
                        let age = now - event_time;
                        let ttl = spec.ttl.map(|t| t.as_millis() as i64);
                        let slo = spec.freshness_slo.map(|t| t.as_millis() as i64);
                        let near_boundary = ttl.is_some_and(|t| (age - t).abs() < 60_000)
                            || slo.is_some_and(|t| (age - t).abs() < 60_000);
                        let expired = ttl.is_some_and(|t| age > t);
                        if near_boundary {
                            continue;
                        }
                        if expired {
                            assert_eq!(status, "expired", "{context}");
                            assert!(reading["value"].is_null(), "{context}");
                        } else if value == Value::Null {
                            assert_eq!(status, "null", "{context}");
                        } else {
                            let stale = slo.is_some_and(|t| age > t);
                            assert_eq!(
                                status,
                                if stale { "stale" } else { "present" },
                                "{context}"
                            );
                            assert!(
                                same_value(&reading["value"], &value),
                                "{context}: want {value:?}"
                            );
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "checked only {checked} values");
    for status in ["present", "not_found", "null", "expired", "stale"] {
        assert!(
            statuses.get(status).copied().unwrap_or(0) > 0,
            "no `{status}` in {statuses:?}"
        );
    }
}

#[test]
fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let (dir, store) = temp_store();
    store.apply(super::common::item_specs()).expect("apply");
    let csv = super::common::write_items_csv(dir.path(), 1, 10);
    store
        .load(&LoadRequest::new("items", csv), &|_| {})
        .expect("load");
    let server = TestServer::start(Arc::new(store));

    let cases = [
        ("/v1/features/item/i1?names=nope", 404, "nope"),
        ("/v1/features/planet/i1?names=item_a", 404, "planet"),
        ("/v1/features/item/i1", 400, ""),
        ("/v1/features/item/i1?names=", 400, ""),
        ("/v1/features/item?names=item_a", 404, ""),
        ("/v2/anything", 404, ""),
    ];
    for (path, want, mention) in cases {
        let (status, body) = get(&server.url(path));
        assert_eq!(status, want, "{path}: {body}");
        assert!(
            body.contains(mention),
            "{path}: {body} should mention {mention}"
        );
    }
    let (status, body) = super::common::post(&server.url("/v1/feature-definitions"), "{not json");
    assert_eq!(status, 400, "{body}");

    let (status, body) = get(&server.url("/v1/features/item/i3?names=item_c,item_label,item_a"));
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(body["features"][0]["name"], "item_c");
    assert_eq!(body["features"][0]["value"], 1003.0);
    assert_eq!(body["features"][1]["value"], "v1");
    assert_eq!(body["features"][2]["name"], "item_a");
    assert_eq!(body["versions"]["items"], 1);

    let (status, metrics) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    assert!(metrics.contains("featstore"), "{metrics}");
}
