//! Windowed aggregates (count, sum, mean, last over sliding windows) computed from
//! pushed events, checked against a brute-force evaluation over the raw events.

use featstore::FeatureStore;
use featstore::registry::file::parse_features_toml;
use featstore::registry::{AggregateFunction, AggregateSpec};
use featstore::store::{PushError, PushEvent};
use featstore::types::{FeatureStatus, Value, now_ms};
use rand::{Rng, SeedableRng};

use super::common::temp_store;

const SPECS: &str = r#"
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
name = "user_click_sum_1h"
entity_type = "user"
group = "user_aggs"
owner = "tests"
dtype = "float64"
aggregate = { source = "user_click", function = "sum", window = "1h", resolution = "1m" }

[[feature]]
name = "user_click_mean_24h"
entity_type = "user"
group = "user_aggs"
owner = "tests"
dtype = "float64"
aggregate = { source = "user_click", function = "mean", window = "24h" }

[[feature]]
name = "user_click_last_7d"
entity_type = "user"
group = "user_aggs"
owner = "tests"
dtype = "float64"
aggregate = { source = "user_click", function = "last", window = "7d" }
"#;

const NAMES: [&str; 4] = [
    "user_clicks_5m",
    "user_click_sum_1h",
    "user_click_mean_24h",
    "user_click_last_7d",
];

fn store_with_aggregates() -> (tempfile::TempDir, FeatureStore) {
    let (dir, store) = temp_store();
    store
        .apply(parse_features_toml(SPECS, "aggregates").expect("specs"))
        .expect("apply");
    (dir, store)
}

fn click(user: &str, time: i64, value: f64, id: Option<String>) -> PushEvent {
    PushEvent {
        entity_type: "user".into(),
        entity_id: user.into(),
        event_time: time,
        features: vec![("user_click".into(), Value::Float64(value))],
        event_id: id,
    }
}

/// The brute-force value of `spec` over `events` (time, value) at `now`.
fn brute_force(spec: &AggregateSpec, events: &[(i64, f64)], now: i64) -> Option<Value> {
    let (first, end) = spec.window_tiles(now);
    let inside: Vec<(i64, f64)> = events
        .iter()
        .copied()
        .filter(|(t, _)| (first..end).contains(&spec.tile_start(*t)))
        .collect();
    let count = inside.len();
    let sum: f64 = inside.iter().map(|(_, v)| v).sum();
    let last = inside
        .iter()
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, v)| *v);
    match spec.function {
        AggregateFunction::Count => Some(Value::Int64(count as i64)),
        AggregateFunction::Sum => Some(Value::Float64(sum)),
        AggregateFunction::Mean => (count > 0).then(|| Value::Float64(sum / count as f64)),
        AggregateFunction::Last => last.map(Value::Float64),
    }
}

/// The aggregate specs of [`NAMES`], in order.
fn aggregate_specs(store: &FeatureStore) -> Vec<AggregateSpec> {
    let registry = store.registry();
    NAMES
        .iter()
        .map(|n| {
            registry
                .resolve(n)
                .expect("def")
                .spec
                .aggregate
                .clone()
                .expect("agg")
        })
        .collect()
}

/// Reads `user`'s aggregates and the window bounds they were computed for; retries
/// when a tile boundary passed during the read.
fn read_stable(store: &FeatureStore, user: &str) -> (Vec<Option<Value>>, i64) {
    let specs = aggregate_specs(store);
    for _ in 0..10 {
        let before = now_ms();
        let vector = store.get_features("user", user, &NAMES).expect("read");
        let after = now_ms();
        if specs
            .iter()
            .all(|s| s.window_tiles(before) == s.window_tiles(after))
        {
            return (
                vector.features.into_iter().map(|r| r.value).collect(),
                before,
            );
        }
    }
    panic!("tile boundaries kept moving during reads");
}

#[test]
fn aggregates_match_a_brute_force_reference_over_random_events() {
    let (_dir, store) = store_with_aggregates();
    let specs = aggregate_specs(&store);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let now = now_ms();
    let users = ["u0", "u1", "u2"];
    let mut truth: Vec<Vec<(i64, f64)>> = vec![Vec::new(); users.len()];
    let mut pushed: Vec<PushEvent> = Vec::new();
    for n in 0..600 {
        let u = rng.random_range(0..users.len());
        // Dense in the last 10 minutes, sparse back to 8 days (some beyond every window).
        let age = if rng.random_bool(0.5) {
            rng.random_range(0..600_000)
        } else {
            rng.random_range(0..8 * 86_400_000)
        };
        let value = f64::from(rng.random_range(0..10));
        let time = now - age;
        truth[u].push((time, value));
        pushed.push(click(users[u], time, value, Some(format!("ev{n}"))));
    }
    let mut outcome = featstore::store::PushOutcome::default();
    for chunk in pushed.chunks(64) {
        outcome.add(&store.push(chunk.to_vec()).expect("push"));
    }
    // A replay of some events (same ids) must not count twice.
    let replay: Vec<PushEvent> = pushed.iter().step_by(5).cloned().collect();
    let replayed = store.push(replay.clone()).expect("replay");
    assert_eq!(replayed.duplicates, replay.len() as u64);
    assert_eq!(replayed.aggregate_updates, 0);
    assert!(outcome.late_for_aggregates > 0, "{outcome:?}");

    for (u, user) in users.iter().enumerate() {
        let (got, at) = read_stable(&store, user);
        for ((spec, name), got) in specs.iter().zip(NAMES).zip(got) {
            let want = brute_force(spec, &truth[u], at);
            match (&got, &want) {
                (Some(Value::Float64(g)), Some(Value::Float64(w))) => {
                    assert!((g - w).abs() < 1e-9, "{user} {name}: got {g}, want {w}")
                }
                _ => assert_eq!(got, want, "{user} {name}"),
            }
        }
    }
}

#[test]
fn a_value_stops_counting_when_it_leaves_the_window() {
    let (_dir, store) = store_with_aggregates();
    let now = now_ms();
    store
        .push(vec![
            click("u", now - 7 * 60_000, 5.0, None),
            click("u", now - 1_000, 2.0, None),
        ])
        .expect("push");
    let vector = store.get_features("user", "u", &NAMES).expect("read");
    assert_eq!(vector.features[0].value, Some(Value::Int64(1)), "5m count");
    assert_eq!(
        vector.features[1].value,
        Some(Value::Float64(7.0)),
        "1h sum"
    );
    assert_eq!(
        vector.features[3].value,
        Some(Value::Float64(2.0)),
        "7d last"
    );
    // A user without events: zero counts, no mean.
    let vector = store.get_features("user", "nobody", &NAMES).expect("read");
    assert_eq!(vector.features[0].value, Some(Value::Int64(0)));
    assert_eq!(vector.features[2].status, FeatureStatus::NotFound);
}

#[test]
fn aggregates_are_not_pushed_and_need_a_valid_source() {
    let (_dir, store) = store_with_aggregates();
    let err = store
        .push(vec![PushEvent {
            entity_type: "user".into(),
            entity_id: "u".into(),
            event_time: now_ms(),
            features: vec![("user_clicks_5m".into(), Value::Int64(3))],
            event_id: None,
        }])
        .expect_err("refused");
    assert!(
        matches!(&err, PushError::Rejected { rejections, .. } if rejections[0].reason.contains("user_click")),
        "{err:?}"
    );
    let bad = |aggregate: &str, dtype: &str| {
        let text = format!(
            "[[feature]]\nname = \"bad_agg\"\nentity_type = \"user\"\ngroup = \"user_aggs\"\nowner = \"t\"\ndtype = \"{dtype}\"\naggregate = {aggregate}\n"
        );
        match parse_features_toml(&text, "bad") {
            Err(e) => e.to_string(),
            Ok(specs) => store.apply(specs).expect_err(&text).to_string(),
        }
    };
    assert!(
        bad(
            r#"{ source = "nope", function = "sum", window = "1h" }"#,
            "float64"
        )
        .contains("nope")
    );
    assert!(
        bad(
            r#"{ source = "user_click", function = "sum", window = "1h" }"#,
            "int64"
        )
        .contains("dtype")
    );
    assert!(
        bad(
            r#"{ source = "user_click", function = "count", window = "1h", resolution = "7m" }"#,
            "int64"
        )
        .contains("multiple")
    );
}

#[test]
fn compaction_drops_tiles_past_their_window_and_old_event_markers() {
    use featstore::codec::EntityKey;
    use featstore::codec::stream::{Tile, event_marker_key, tile_key};

    let (_dir, store) = store_with_aggregates();
    let now = now_ms();
    // Creates the stream column families.
    store
        .push(vec![click("u", now, 1.0, Some("fresh".into()))])
        .expect("push");
    let registry = store.registry();
    let count_5m = registry.resolve("user_clicks_5m").expect("def");
    let spec = count_5m.spec.aggregate.clone().expect("aggregate");
    let entity = EntityKey::new(b"u").expect("id");
    let old_tile = tile_key(
        &entity,
        count_5m.id,
        spec.tile_start(now - spec.retention_ms() - 60_000),
    );
    let live_tile = tile_key(&entity, count_5m.id, spec.tile_start(now));
    let old_marker = event_marker_key("user", &entity, "ancient").expect("key");
    let live_marker = event_marker_key("user", &entity, "fresh").expect("key");
    {
        // Written directly: a push would refuse such late events.
        let view = store.view();
        let cf = view.stream("user_aggs").expect("stream cf");
        let mut tile = Tile::default();
        tile.add(1.0, now - spec.retention_ms() - 60_000);
        view.db().put_cf(cf, &old_tile, tile.encode()).expect("put");
        let events = view.db().cf_handle("stream_events").expect("events cf");
        view.db()
            .put_cf(&events, &old_marker, (now - 30 * 86_400_000).to_le_bytes())
            .expect("put");
    }
    store.compact_stream("user_aggs").expect("compact");
    let view = store.view();
    let cf = view.stream("user_aggs").expect("stream cf");
    let events = view.db().cf_handle("stream_events").expect("events cf");
    assert!(
        view.db().get_cf(cf, &old_tile).expect("get").is_none(),
        "old tile kept"
    );
    assert!(
        view.db().get_cf(cf, &live_tile).expect("get").is_some(),
        "live tile dropped"
    );
    assert!(
        view.db()
            .get_cf(&events, &old_marker)
            .expect("get")
            .is_none(),
        "old marker kept"
    );
    assert!(
        view.db()
            .get_cf(&events, &live_marker)
            .expect("get")
            .is_some(),
        "live marker dropped"
    );
}
