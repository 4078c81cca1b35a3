//! The Feast-compatible routes over HTTP (`/get-online-features`, `/push`,
//! `/write-to-online-store`), on the ranking fixture: rows of several contexts, composite
//! keys, on-demand features, services, Feast statuses and error bodies, and retried
//! pushes. The real Feast SDK reads the same routes in tests/python/test_feast_sdk.py.

use std::sync::Arc;

use super::common::{TestServer, json, post, small_config};
use super::ranking::ranking_store;

fn feast_error(status: u16, text: &str) -> (u16, String, String) {
    let outer = json(text);
    let inner = json(outer.as_str().expect("the body is a JSON string"));
    assert_eq!(inner["module"], "feast.errors", "{text}");
    (
        status,
        inner["class"].as_str().expect("class").to_owned(),
        inner["message"].as_str().expect("message").to_owned(),
    )
}

#[test]
fn online_reads_map_rows_keys_statuses_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let server = TestServer::start(store);
    let url = server.url("/get-online-features");

    // Three rows, two users: two planner reads, answered in request order.
    let body = r#"{"entities":{"user_id":["u1","u2","u1"],"product_id":["p1","p2","nope"]},
        "features":["users:user_age","products:product_price","user_product:up_clicks",
                    "on_demand:user_product_sim"],"full_feature_names":true}"#;
    let (status, text) = post(&url, body);
    assert_eq!(status, 200, "{text}");
    let a = json(&text);
    assert_eq!(
        a["metadata"]["feature_names"],
        serde_json::json!([
            "user_id",
            "product_id",
            "users__user_age",
            "products__product_price",
            "user_product__up_clicks",
            "on_demand__user_product_sim"
        ])
    );
    let r = &a["results"];
    assert_eq!(r[0]["values"], serde_json::json!(["u1", "u2", "u1"]));
    assert_eq!(r[1]["values"], serde_json::json!(["p1", "p2", "nope"]));
    assert_eq!(r[2]["values"], serde_json::json!([31, 45, 31]));
    assert_eq!(
        r[2]["event_timestamps"][0], "2023-11-14T22:13:20Z",
        "RFC 3339 UTC"
    );
    // A default is served as the value (PRESENT); 20 is written as a float.
    assert_eq!(r[3]["values"], serde_json::json!([10.5, 20.0, -1.0]));
    assert!(text.contains("[10.5,20.0,-1.0]"), "{text}");
    assert_eq!(r[3]["event_timestamps"][2], "1970-01-01T00:00:00Z");
    // Composite user_product keyed from both join keys: only u1|p1 is stored.
    assert_eq!(r[4]["values"], serde_json::json!([3, null, null]));
    assert_eq!(
        r[4]["statuses"],
        serde_json::json!(["PRESENT", "NOT_FOUND", "NOT_FOUND"])
    );
    let sim = r[5]["values"][0].as_f64().expect("on-demand value");
    assert!(
        (sim - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9,
        "{sim}"
    );

    // A service, and the columns of a ranking read with a single context.
    let (status, text) = post(
        &url,
        r#"{"entities":{"user":["u1","u1"],"product_id":["p3","p1"]},"feature_service":"ranker_v3"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let a = json(&text);
    assert_eq!(
        a["metadata"]["feature_names"],
        serde_json::json!([
            "user",
            "product_id",
            "user_age",
            "product_price",
            "up_affinity",
            "user_product_sim",
            "product_ctr"
        ])
    );
    // p3's price is an explicit null in the fixture: its default is served.
    assert_eq!(a["results"][4]["values"], serde_json::json!([0.2, 0.7]));

    // Errors the SDK turns into its own exceptions.
    let cases = [
        (
            r#"{"entities":{"user_id":["u1"]},"features":["users:nope"]}"#,
            404,
            "FeatureViewNotFoundException",
        ),
        (
            r#"{"entities":{"product_id":["p1"]},"features":["users:product_price"]}"#,
            404,
            "FeatureViewNotFoundException",
        ),
        (
            r#"{"entities":{"user_id":["u1"]},"feature_service":"nope"}"#,
            404,
            "FeatureServiceNotFoundException",
        ),
        (
            r#"{"entities":{"user_id":["u1"]},"features":["products:product_price"]}"#,
            400,
            "RequestDataNotFoundInEntityRowsException",
        ),
        (
            r#"{"entities":{"user_id":["u1"]},"features":["product_price"]}"#,
            400,
            "FeastError",
        ),
        (
            r#"{"entities":{"user_id":["u1","u2"],"product_id":["p1"]},"features":["products:product_price"]}"#,
            400,
            "FeastError",
        ),
        (
            r#"{"entities":{"user_id":[1.5]},"features":["users:user_age"]}"#,
            400,
            "FeastError",
        ),
    ];
    for (body, want_status, want_class) in cases {
        let (status, text) = post(&url, body);
        let (status, class, message) = feast_error(status, &text);
        assert_eq!(
            (status, class.as_str()),
            (want_status, want_class),
            "{body}: {message}"
        );
    }
}

#[test]
fn feast_pushes_are_applied_once_whatever_the_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let server = TestServer::start(store);
    let now = featstore::types::now_ms();
    let body = format!(
        r#"{{"push_source_name":"products","df":{{"product_id":["p1","p9"],
            "product_clicks":[9.0,2],"product_views":[10,null],"event_timestamp":[{now},{now}]}},"to":"online"}}"#
    );
    let (status, text) = post(&server.url("/push"), &body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["accepted"], 2);
    // The SDK's retry of the same request: every event is a duplicate.
    let (status, text) = post(&server.url("/push"), &body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["duplicates"], 2);
    assert_eq!(json(&text)["values_written"], 0);
    // The SDK's write path names the view instead; event times decide there too.
    let write = body.replace("push_source_name", "feature_view_name");
    let (status, text) = post(&server.url("/write-to-online-store"), &write);
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["values_written"], 0);

    let (_, text) = post(
        &server.url("/get-online-features"),
        r#"{"entities":{"product_id":["p1","p9"]},"features":["products:product_clicks","products:product_views"]}"#,
    );
    let a = json(&text);
    assert_eq!(a["results"][1]["values"], serde_json::json!([9, 2]));
    assert_eq!(a["results"][2]["values"], serde_json::json!([10, null]));
    assert_eq!(
        a["results"][2]["statuses"],
        serde_json::json!(["PRESENT", "NULL_VALUE"])
    );

    for (path, body, want_status, want_class) in [
        (
            "/push",
            r#"{"push_source_name":"nope","df":{}}"#,
            422,
            "PushSourceNotFoundException",
        ),
        (
            "/write-to-online-store",
            r#"{"feature_view_name":"nope","df":{}}"#,
            404,
            "FeatureViewNotFoundException",
        ),
        (
            "/push",
            r#"{"push_source_name":"products","df":{"product_id":["p1"],"event_timestamp":[1],"bogus":[1]}}"#,
            400,
            "FeastError",
        ),
        (
            "/push",
            r#"{"push_source_name":"products","df":{"product_id":["p1"],"event_timestamp":[1],"product_clicks":[1]},"to":"offline"}"#,
            400,
            "FeastError",
        ),
    ] {
        let (status, text) = post(&server.url(path), body);
        let (status, class, message) = feast_error(status, &text);
        assert_eq!(
            (status, class.as_str()),
            (want_status, want_class),
            "{body}: {message}"
        );
    }
}
