//! The facade's observer hooks: every read, push, load and activation reaches the
//! registered observers, for in-process callers as for HTTP ones, and the server's
//! domain metrics count both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use featstore::loader::LoadRequest;
use featstore::query::rank::{FeatureSelection, RankRequest};
use featstore::store::PushEvent;
use featstore::store::observe::{
    ActivationEvent, LoadEvent, Observer, PushReport, ReadAnswer, ReadEvent, StreamCommitEvent,
};
use featstore::types::{Value, now_ms};
use parking_lot::Mutex;

use super::common::{TestServer, get, item_specs, temp_store, write_items_csv};

/// Writes one line per event it hears.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }

    fn push(&self, line: String) {
        self.0.lock().push(line);
    }
}

impl Observer for Recorder {
    fn on_read(&self, event: &ReadEvent<'_>) {
        match event.answer {
            ReadAnswer::Entity(answer) => {
                let statuses: Vec<&str> = answer.statuses().map(|s| s.as_str()).collect();
                self.push(format!("get {} {}", answer.entity_id(), statuses.join(",")));
            }
            ReadAnswer::Ranking(answer) => {
                self.push(format!("rank {} rows", answer.candidates.len()));
            }
        }
    }

    fn on_push(&self, event: &PushReport<'_>) {
        match event.result {
            Ok(outcome) => self.push(format!("push {} ok {}", event.events, outcome.accepted)),
            Err(e) => self.push(format!("push {} refused: {e}", event.events)),
        }
    }

    fn on_load(&self, event: &LoadEvent<'_>) {
        match event.result {
            Ok(record) => self.push(format!("load {} v{}", event.group, record.version)),
            Err(_) => self.push(format!("load {} failed", event.group)),
        }
    }

    fn on_activation(&self, event: &ActivationEvent<'_>) {
        self.push(format!(
            "active {} v{} by {}",
            event.group,
            event.version,
            event.cause.as_str()
        ));
    }

    fn on_stream_commit(&self, event: &StreamCommitEvent<'_>) {
        self.push(format!(
            "commit {} {} values",
            event.group,
            event.event_times.len()
        ));
    }
}

#[test]
fn observers_hear_every_operation_of_an_embedded_caller() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let recorder = Arc::new(Recorder::default());
    let id = store.add_observer(recorder.clone());

    for v in 1..=2 {
        let csv = write_items_csv(dir.path(), v, 3);
        store
            .load(&LoadRequest::new("items", csv), &|_| {})
            .expect("load");
    }
    let missing = dir.path().join("missing.csv");
    store
        .load(&LoadRequest::new("items", missing), &|_| {})
        .expect_err("no such file");
    assert_eq!(
        recorder.take(),
        [
            "load items v1",
            "active items v1 by load",
            "load items v2",
            "active items v2 by load",
            "load items failed",
        ]
    );

    store
        .get_features("item", "i1", &["item_a", "item_b"])
        .expect("read");
    store
        .get_features("item", "nobody", &["item_a"])
        .expect("read");
    store
        .rank(RankRequest {
            context: Vec::new(),
            candidate_type: "item".into(),
            candidates: vec!["i1".into(), "i2".into(), "zz".into()],
            features: FeatureSelection::Names(vec!["item_a".into()]),
            deadline: None,
        })
        .expect("rank");
    // A refused read is no answer: observers hear nothing of it.
    store
        .get_features("item", "i1", &["no_such_feature"])
        .expect_err("unknown feature");
    assert_eq!(
        recorder.take(),
        [
            "get i1 present,present",
            "get nobody not_found",
            "rank 3 rows"
        ]
    );

    store.rollback("items").expect("rollback");
    store.activate("items", 2).expect("activate");
    assert_eq!(
        recorder.take(),
        ["active items v1 by rollback", "active items v2 by activate"]
    );

    store
        .push(vec![PushEvent {
            entity_type: "item".into(),
            entity_id: "i1".into(),
            event_time: now_ms(),
            features: [("item_a".to_owned(), Value::Float64(1.5))].into(),
            event_id: None,
        }])
        .expect("push");
    store.push(Vec::new()).expect_err("empty push");
    // The commit is reported by the committer's thread; it may land either side of the
    // push's own report, so wait for both (bounded) and compare as a set.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut heard = Vec::new();
    while heard.len() < 3 && Instant::now() < deadline {
        heard.extend(recorder.take());
        std::thread::sleep(Duration::from_millis(10));
    }
    heard.sort();
    assert_eq!(
        heard,
        [
            "commit items 1 values",
            "push 0 refused: no events given",
            "push 1 ok 1",
        ]
    );

    store.remove_observer(id);
    store.get_features("item", "i1", &["item_a"]).expect("read");
    assert!(
        recorder.take().is_empty(),
        "a removed observer hears nothing"
    );
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn server_metrics_count_in_process_reads_and_loads_too() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let store = Arc::new(store);
    let server = TestServer::start(store.clone());
    let csv = write_items_csv(dir.path(), 1, 3);
    store
        .load(&LoadRequest::new("items", csv), &|_| {})
        .expect("load");
    let (status, _) = get(&server.url("/v1/features/item/i1?names=item_a"));
    assert_eq!(status, 200);
    store
        .get_features("item", "i2", &["item_a", "item_b"])
        .expect("in-process read");

    let (status, body) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    assert_eq!(
        metric(&body, "featstore_reads_total{kind=\"entity\"}"),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "featstore_features_served_total{status=\"present\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &body,
            "featstore_loads_total{group=\"items\",result=\"ok\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            "featstore_version_activations_total{group=\"items\",cause=\"load\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn values_served_are_counted_per_feature_and_status_and_the_active_version_has_an_age() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let store = Arc::new(store);
    let server = TestServer::start(store.clone());
    let csv = write_items_csv(dir.path(), 1, 3);
    store
        .load(&LoadRequest::new("items", csv), &|_| {})
        .expect("load");
    let (status, _) = get(&server.url("/v1/features/item/i1?names=item_a,item_b"));
    assert_eq!(status, 200);
    let (status, _) = get(&server.url("/v1/features/item/nobody?names=item_a"));
    assert_eq!(status, 200);
    store
        .rank(RankRequest {
            context: Vec::new(),
            candidate_type: "item".into(),
            candidates: vec!["i1".into(), "i2".into(), "zz".into()],
            features: FeatureSelection::Names(vec!["item_a".into()]),
            deadline: None,
        })
        .expect("rank");
    // An as-of read answers about the past: it is not serving and is not counted.
    store
        .get_entity_as_of(
            "item",
            "i1",
            featstore::query::Names::List(&["item_a", "item_b"]),
            now_ms(),
            None,
        )
        .expect("as-of read");

    let counts = store.served_counts();
    let of = |feature: &str| counts.iter().find(|c| c.feature == feature);
    let a = of("item_a@1").expect("item_a counted");
    assert_eq!(
        a.get(featstore::types::FeatureStatus::Present),
        3,
        "{counts:?}"
    );
    assert_eq!(
        a.get(featstore::types::FeatureStatus::NotFound),
        2,
        "{counts:?}"
    );
    assert_eq!(a.total(), 5);
    let b = of("item_b@1").expect("item_b counted");
    assert_eq!(b.total(), 1);
    assert!(of("item_c@1").is_none(), "never read, never listed");

    let (status, body) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    let served = |feature: &str, status: &str| {
        metric(
            &body,
            &format!(
                "featstore_feature_values_served_total{{feature=\"{feature}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(served("item_a@1", "present"), Some(3.0), "{body}");
    assert_eq!(served("item_a@1", "not_found"), Some(2.0));
    assert_eq!(served("item_b@1", "present"), Some(1.0));
    assert_eq!(
        served("item_b@1", "not_found"),
        None,
        "zero counts are left out"
    );
    let age = metric(
        &body,
        "featstore_group_active_version_age_seconds{group=\"items\"}",
    )
    .expect("the active version's age");
    assert!((0.0..3600.0).contains(&age), "{age}");
    assert!(body.trim_end().ends_with("# EOF"), "one closing EOF");
}
