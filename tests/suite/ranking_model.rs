//! Ranking answers against a model: random batch data (absent values, nulls, values
//! past their TTL or freshness SLO) and streamed values newer or older than the batch,
//! read through the columnar ranking path from a full hot segment, a partial one and
//! RocksDB alone; every stored cell is checked against what the model says the store
//! holds, and the three stores must answer identically.

use featstore::loader::LoadRequest;
use featstore::query::rank::{FeatureSelection, RankRequest, RankResponse, rank};
use featstore::registry::file::parse_registry_toml;
use featstore::store::PushEvent;
use featstore::types::{FeatureStatus, Value, now_ms};
use featstore::{FeatureStore, StoreConfig};
use proptest::prelude::*;

use super::common::small_config;

const REGISTRY: &str = r#"
[[feature]]
name = "f_ttl"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float32"
ttl = "1h"

[[feature]]
name = "f_slo"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float32"
freshness_slo = "1h"

[[feature]]
name = "f_plain"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float32"
default = -1.0

[[feature]]
name = "f_count"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "int64"

[[feature]]
name = "f_emb"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float32_vector[2]"

[[feature]]
name = "u_emb"
entity_type = "user"
group = "users"
owner = "tests"
dtype = "float32_vector[2]"

[[on_demand]]
name = "plain_per_count"
owner = "tests"
op = "ratio"
inputs = ["f_plain", "f_count"]
default = -2.0

[[on_demand]]
name = "sim"
owner = "tests"
op = "cosine_similarity"
inputs = ["u_emb", "f_emb"]
default = 0.0
"#;

const FEATURES: [&str; 5] = ["f_ttl", "f_slo", "f_plain", "f_count", "f_emb"];
const HOUR: i64 = 3_600_000;

/// What the store holds for one (entity, feature): nothing, a null, or a value (as
/// its CSV text and its model value), each with an event time.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    Absent,
    Null(i64),
    Value(Value, i64),
}

/// One generated cell: kind (0 absent, 1 null, else a value), age class, number.
type CellSeed = (u8, u8, i16);

fn age(class: u8) -> i64 {
    // Fresh, past the 1 h TTL/SLO, and a day old.
    [60_000, 2 * HOUR, 30 * HOUR][usize::from(class % 3)]
}

fn held(feature: usize, (kind, class, n): CellSeed, now: i64) -> Held {
    let t = now - age(class);
    match kind % 5 {
        0 => Held::Absent,
        1 => Held::Null(t),
        _ => Held::Value(
            match FEATURES[feature] {
                "f_count" => Value::Int64(i64::from(n % 4)),
                "f_emb" => Value::Float32Vector(vec![f32::from(n % 3), 1.0]),
                _ => Value::Float32(f32::from(n) / 4.0),
            },
            t,
        ),
    }
}

fn csv_value(value: &Value) -> String {
    match value {
        Value::Float32(v) => v.to_string(),
        Value::Int64(v) => v.to_string(),
        Value::Float32Vector(v) => format!(
            "\"[{}]\"",
            v.iter().map(f32::to_string).collect::<Vec<_>>().join(", ")
        ),
        other => panic!("not generated: {other:?}"),
    }
}

fn store(dir: &std::path::Path, hot_segment_bytes: u64) -> FeatureStore {
    let config = StoreConfig {
        hot_segment_bytes,
        ..small_config()
    };
    let store = FeatureStore::open(dir, config).expect("open");
    let objects = parse_registry_toml(REGISTRY, "registry").expect("parses");
    store.apply_objects(objects).expect("apply");
    store
}

/// The model's status and value for `held` of `feature` at `now` (defaults applied).
fn expected(feature: &str, held: &Held, now: i64) -> (FeatureStatus, Option<Value>) {
    let ttl = (feature == "f_ttl").then_some(HOUR);
    let slo = (feature == "f_slo").then_some(HOUR);
    let (status, value) = match held {
        Held::Absent => (FeatureStatus::NotFound, None),
        Held::Null(t) if ttl.is_some_and(|ttl| now - t > ttl) => (FeatureStatus::Expired, None),
        Held::Null(_) => (FeatureStatus::Null, None),
        Held::Value(_, t) if ttl.is_some_and(|ttl| now - t > ttl) => (FeatureStatus::Expired, None),
        Held::Value(v, t) if slo.is_some_and(|slo| now - t > slo) => {
            (FeatureStatus::Stale, Some(v.clone()))
        }
        Held::Value(v, _) => (FeatureStatus::Present, Some(v.clone())),
    };
    if feature == "f_plain" && value.is_none() {
        return (FeatureStatus::Defaulted, Some(Value::Float32(-1.0)));
    }
    (status, value)
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Float32(x) => f64::from(*x),
        Value::Int64(x) => *x as f64,
        other => panic!("not a number: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn columnar_answers_match_the_model_from_every_source(
        cells in prop::collection::vec(
            (0u8..10, 0u8..3, -40i16..40), FEATURES.len() * 8..FEATURES.len() * 40
        ),
        pushes in prop::collection::vec((any::<bool>(), -20i16..20), 0..12),
    ) {
        let now = now_ms();
        let entities = cells.len() / FEATURES.len();
        let mut model: Vec<Vec<Held>> = (0..entities)
            .map(|e| (0..FEATURES.len()).map(|f| held(f, cells[e * FEATURES.len() + f], now)).collect())
            .collect();
        // Entities with no batch value at all are not in the batch version.
        let loaded = model.iter().filter(|row| row.iter().any(|h| *h != Held::Absent)).count();
        let mut csv = String::from("entity_id,feature_name,event_time,value\n");
        for (e, row) in model.iter().enumerate() {
            for (f, cell) in row.iter().enumerate() {
                match cell {
                    Held::Absent => {}
                    Held::Null(t) => csv.push_str(&format!("i{e},{},{t},\n", FEATURES[f])),
                    Held::Value(v, t) => {
                        csv.push_str(&format!("i{e},{},{t},{}\n", FEATURES[f], csv_value(v)));
                    }
                }
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let items = dir.path().join("items.csv");
        std::fs::write(&items, csv).expect("write");
        let users = dir.path().join("users.csv");
        std::fs::write(&users, format!("entity_id,event_time,u_emb\nu1,{now},\"[1, 0.5]\"\n"))
            .expect("write");
        // Streamed f_plain values: newer than the batch's (they win, a tie too) or
        // older (the batch value stays).
        let mut events = Vec::new();
        // At most one push per entity (the order of two pushes with one event time is
        // not what this test is about).
        for (i, (newer, n)) in pushes.iter().enumerate().take(entities) {
            let e = i;
            let batch_time = match &model[e][2] {
                Held::Absent => now - 3 * HOUR,
                Held::Null(t) | Held::Value(_, t) => *t,
            };
            let t = if *newer { batch_time + i64::from(n.abs() % 2) } else { batch_time - 1 - i64::from(n.abs()) };
            let value = Value::Float32(f32::from(*n));
            if *newer || model[e][2] == Held::Absent {
                model[e][2] = Held::Value(value.clone(), t);
            }
            events.push(PushEvent {
                entity_type: "item".into(),
                entity_id: format!("i{e}"),
                event_time: t,
                features: vec![("f_plain".into(), value)],
                event_id: None,
            });
        }

        let full = store(&dir.path().join("full"), 64 << 20);
        let partial = store(&dir.path().join("partial"), 2 << 10);
        let cold = store(&dir.path().join("cold"), 0);
        // The partial store's segment holds the entities read most: half of them are
        // read before the load (8 times each, as reads are sampled 1 in 8).
        for e in 0..entities / 2 {
            for _ in 0..8 {
                let read = RankRequest {
                    context: vec![],
                    candidate_type: "item".into(),
                    candidates: vec![format!("i{e}")],
                    features: FeatureSelection::Names(vec!["f_plain".into()]),
                    deadline: None,
                };
                partial.rank(read).expect("rank");
            }
        }
        for s in [&full, &partial, &cold] {
            for (group, path) in [("items", &items), ("users", &users)] {
                s.load(&LoadRequest::new(group, path), &|_| {}).expect("load");
            }
            // One event at a time: events for one entity keep their order.
            for event in &events {
                s.push(vec![event.clone()]).expect("push");
            }
        }
        prop_assert_eq!(full.hot_segment_entities("items"), Some(loaded));
        prop_assert_eq!(cold.hot_segment_entities("items"), None);
        let held = partial.hot_segment_entities("items").unwrap_or_default();
        prop_assert!(held > 0 && held < loaded, "partial segment holds {held} of {loaded}");

        let mut names: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
        names.extend(["plain_per_count".to_owned(), "sim".to_owned()]);
        let mut candidates: Vec<String> = (0..entities).rev().map(|e| format!("i{e}")).collect();
        candidates.insert(1, "unknown".into());
        let request = RankRequest {
            context: vec![("user".into(), "u1".into())],
            candidate_type: "item".into(),
            candidates: candidates.clone(),
            features: FeatureSelection::Names(names),
            deadline: None,
        };
        let answers: Vec<RankResponse> = [&full, &partial, &cold]
            .iter()
            .map(|s| rank(&s.view(), request.clone(), now).expect("rank"))
            .collect();
        prop_assert_eq!(&answers[0], &answers[1], "full vs partial hot segment");
        prop_assert_eq!(&answers[0], &answers[2], "hot segment vs RocksDB");

        let answer = &answers[0];
        for (r, id) in candidates.iter().enumerate() {
            let row: Vec<Held> = match id.strip_prefix('i').and_then(|n| n.parse::<usize>().ok()) {
                Some(e) => model[e].clone(),
                None => vec![Held::Absent; FEATURES.len()],
            };
            for (c, feature) in FEATURES.iter().enumerate() {
                let cell = answer.cell(r, c);
                prop_assert_eq!(
                    (cell.status, cell.value.clone()),
                    expected(feature, &row[c], now),
                    "{} {}", id, feature
                );
            }
            // The ratio reads f_plain and f_count before f_plain's default applies
            // (`f_plain_raw`: the model of f_plain without its default).
            let usable = |h: &Held, f: &str| match expected(f, h, now) {
                (FeatureStatus::Present | FeatureStatus::Stale, Some(v)) => Some(number(&v)),
                _ => None,
            };
            let ratio = match (usable(&row[2], "f_plain_raw"), usable(&row[3], "f_count")) {
                (Some(a), Some(b)) if b != 0.0 => (FeatureStatus::Present, a / b),
                _ => (FeatureStatus::Defaulted, -2.0),
            };
            let cell = answer.cell(r, FEATURES.len());
            prop_assert_eq!((cell.status, cell.value), (ratio.0, Some(Value::Float64(ratio.1))));
        }
    }
}
