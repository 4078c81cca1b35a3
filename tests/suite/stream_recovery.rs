//! Issue 12, item 7: after one failed write the stream writer refused every push until
//! a restart ("the stream writer stopped after a failed write; reopen the store") while
//! `/readyz` said ok. Now a failed write or WAL sync makes the writer unavailable, and
//! says so in the push errors, `/readyz` and the metrics; it recovers by itself once a
//! probe write succeeds, and no acknowledged push is lost. Failures are injected with
//! `FeatureStore::inject_stream_fault` (a full or failing disk, before RocksDB).

use std::sync::Arc;
use std::time::{Duration, Instant};

use featstore::FeatureStore;
use featstore::store::{PushError, PushEvent, StreamFault};
use featstore::types::{Value, now_ms};

use super::common::{TestServer, get, json, post, small_config};

const SPECS: &str = r#"
[[feature]]
name = "stock"
entity_type = "product"
group = "product_live"
owner = "tests"
dtype = "int64"
"#;

fn open(path: &std::path::Path) -> FeatureStore {
    let store = FeatureStore::open(path, small_config()).expect("open");
    store
        .apply(featstore::registry::file::parse_features_toml(SPECS, "specs").expect("specs"))
        .expect("apply");
    store
}

fn event(id: &str, time: i64, stock: i64) -> PushEvent {
    PushEvent {
        entity_type: "product".into(),
        entity_id: id.into(),
        event_time: time,
        features: vec![("stock".into(), Value::Int64(stock))],
        event_id: None,
    }
}

fn stock(store: &FeatureStore, id: &str) -> Option<Value> {
    store
        .get_features("product", id, &["stock"])
        .expect("read")
        .features
        .remove(0)
        .value
}

/// Waits (bounded) until the writer reports itself healthy again.
fn wait_until_healthy(store: &FeatureStore) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.stream_writer_health().healthy {
        assert!(
            Instant::now() < deadline,
            "the writer did not recover: {:?}",
            store.stream_writer_health()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_sync_refuses_pushes_until_the_writer_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let t = now_ms() - 60_000;
    {
        let store = open(&path);
        store.push(vec![event("p1", t, 1)]).expect("acknowledged");
        assert!(store.stream_writer_health().healthy);

        store.inject_stream_fault(Some(StreamFault::Sync(
            "No space left on device (injected)".into(),
        )));
        // The push that hits the failure says why, and is not acknowledged.
        let err = store.push(vec![event("p2", t, 2)]).expect_err("sync fails");
        assert!(matches!(err, PushError::WriteFailed(_)), "{err:?}");
        assert!(err.is_unavailable());
        let message = err.to_string();
        assert!(message.contains("No space left on device"), "{message}");
        assert!(message.contains("not acknowledged"), "{message}");

        // Then pushes are refused at once, naming the cause, and nothing is written.
        let health = store.stream_writer_health();
        assert!(!health.healthy);
        assert!(
            health
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("No space left on device")),
            "{health:?}"
        );
        assert_eq!(health.failures, 1);
        let err = store.push(vec![event("p3", t, 3)]).expect_err("refused");
        assert!(matches!(err, PushError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert_eq!(stock(&store, "p3"), None, "a refused push writes nothing");

        // The writer keeps probing while the fault lasts.
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.stream_writer_health().failed_probes < 2 {
            assert!(Instant::now() < deadline, "no probes");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!store.stream_writer_health().healthy);

        // Once the cause is gone it recovers without a push and without a restart.
        store.inject_stream_fault(None);
        wait_until_healthy(&store);
        let health = store.stream_writer_health();
        assert_eq!((health.recoveries, health.reason), (1, None));
        let outcome = store
            .push(vec![event("p4", t, 4), event("p1", t + 1, 11)])
            .expect("accepted again");
        assert_eq!(outcome.values_written, 2);
        assert_eq!(stock(&store, "p1"), Some(Value::Int64(11)));
        assert_eq!(stock(&store, "p4"), Some(Value::Int64(4)));
    }
    // Everything acknowledged survives a restart. p2's value was written before its
    // sync failed (readable, never acknowledged); the recovery probe flushed it.
    let store = FeatureStore::open(&path, small_config()).expect("reopen");
    assert_eq!(stock(&store, "p1"), Some(Value::Int64(11)));
    assert_eq!(stock(&store, "p4"), Some(Value::Int64(4)));
    assert_eq!(stock(&store, "p2"), Some(Value::Int64(2)));
    assert_eq!(stock(&store, "p3"), None);
    assert!(store.stream_writer_health().healthy);
}

#[test]
fn a_failed_write_applies_nothing_and_the_retry_is_applied_once_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("store"));
    let t = now_ms() - 60_000;
    store.push(vec![event("p1", t, 1)]).expect("acknowledged");
    store.inject_stream_fault(Some(StreamFault::Write(
        "Input/output error (injected)".into(),
    )));
    let err = store
        .push(vec![event("p1", t + 5, 5)])
        .expect_err("write fails");
    assert!(matches!(err, PushError::WriteFailed(_)), "{err:?}");
    assert!(err.to_string().contains("Input/output error"), "{err}");
    assert_eq!(
        stock(&store, "p1"),
        Some(Value::Int64(1)),
        "nothing written"
    );
    assert!(!store.stream_writer_health().healthy);

    store.inject_stream_fault(None);
    wait_until_healthy(&store);
    // The producer's retry of the failed push is applied.
    let outcome = store
        .push(vec![event("p1", t + 5, 5)])
        .expect("retry accepted");
    assert_eq!(outcome.values_written, 1);
    assert_eq!(stock(&store, "p1"), Some(Value::Int64(5)));
}

#[test]
fn readyz_metrics_and_push_answers_report_the_outage_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir.path().join("store")));
    let server = TestServer::start(store.clone());
    let t = now_ms() - 60_000;
    let body = |stock: i64| {
        serde_json::json!({"events": [{"entity_type": "product", "entity_id": "p1",
            "event_time": t + stock, "features": {"stock": stock}}]})
        .to_string()
    };
    let (status, answer) = post(&server.url("/v1/push"), &body(1));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(get(&server.url("/readyz")), (200, "ok".to_owned()));

    store.inject_stream_fault(Some(StreamFault::Sync(
        "No space left on device (injected)".into(),
    )));
    let (status, answer) = post(&server.url("/v1/push"), &body(2));
    assert_eq!(status, 503, "{answer}");
    assert!(
        json(&answer)["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left on device")),
        "{answer}"
    );
    let response = ureq_post(&server.url("/v1/push"), &body(3));
    assert_eq!(response.0, 503, "{}", response.2);
    assert_eq!(response.1.as_deref(), Some("1"), "Retry-After");
    assert!(response.2.contains("nothing was written"), "{}", response.2);

    let (status, text) = get(&server.url("/readyz"));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    let (_, metrics) = get(&server.url("/metrics"));
    assert!(
        metrics.contains("featstore_stream_writer_healthy 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("featstore_stream_write_failures_total 1"),
        "{metrics}"
    );
    // Reads are served throughout.
    let (status, read) = get(&server.url("/v1/features/product/p1?names=stock"));
    assert_eq!(status, 200, "{read}");

    store.inject_stream_fault(None);
    wait_until_healthy(&store);
    assert_eq!(get(&server.url("/readyz")), (200, "ok".to_owned()));
    let (status, answer) = post(&server.url("/v1/push"), &body(4));
    assert_eq!(status, 200, "{answer}");
    let (_, metrics) = get(&server.url("/metrics"));
    assert!(
        metrics.contains("featstore_stream_writer_healthy 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("featstore_stream_writer_recoveries_total 1"),
        "{metrics}"
    );
    let (_, read) = get(&server.url("/v1/features/product/p1?names=stock"));
    assert_eq!(json(&read)["features"][0]["value"], 4, "{read}");
}

/// POST returning (status, Retry-After, body).
fn ureq_post(url: &str, body: &str) -> (u16, Option<String>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.as_bytes())
        .expect("POST");
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    (
        status,
        retry,
        response.body_mut().read_to_string().expect("body"),
    )
}
