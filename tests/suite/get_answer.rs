//! Single-entity reads answered by the query layer's columnar answer: the HTTP body
//! written from it is byte for byte the serde encoding of its row view, for every
//! dtype and status; the row view keeps the raw statuses (no defaults), duplicates and
//! `name@version`; and the plan cache never changes an answer or an error.

use featstore::api::{get_json, json};
use featstore::query::Names;
use featstore::registry::file::parse_features_toml;
use featstore::store::{PushEvent, ReadError};
use featstore::types::{FeatureStatus, Value, now_ms};

use super::common::temp_store;

const SPECS: &str = r#"
[[feature]]
name = "g_int"
entity_type = "thing"
group = "things"
owner = "tests"
dtype = "int64"
default = 7

[[feature]]
name = "g_f64"
entity_type = "thing"
group = "things"
owner = "tests"
dtype = "float64"
ttl = "1h"

[[feature]]
name = "g_f32"
entity_type = "thing"
group = "things"
owner = "tests"
dtype = "float32"
freshness_slo = "1s"

[[feature]]
name = "g_bool"
entity_type = "thing"
group = "things"
owner = "tests"
dtype = "bool"

[[feature]]
name = "g_str"
entity_type = "thing"
group = "things"
owner = "tests"
dtype = "string"

[[feature]]
name = "g_bytes"
entity_type = "thing"
group = "things"
owner = "tests"
dtype = "bytes"

[[feature]]
name = "g_vec"
entity_type = "thing"
group = "thing_vectors"
owner = "tests"
dtype = "float32_vector[3]"

[[feature]]
name = "g_other"
entity_type = "other"
group = "others"
owner = "tests"
dtype = "float64"
"#;

const ALL: [&str; 7] = [
    "g_int", "g_f64", "g_f32", "g_bool", "g_str", "g_bytes", "g_vec",
];

fn event(id: &str, event_time: i64, features: Vec<(&str, Value)>) -> PushEvent {
    PushEvent {
        entity_type: "thing".into(),
        entity_id: id.into(),
        event_time,
        features: features
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect(),
        event_id: None,
    }
}

#[test]
fn get_bodies_match_the_row_view_byte_for_byte() {
    let (_dir, store) = temp_store();
    let specs = parse_features_toml(SPECS, "get_answer").expect("specs");
    store.apply(specs).expect("apply");
    let now = now_ms();
    store
        .push(vec![
            event(
                "full",
                now - 10_000,
                vec![
                    ("g_int", Value::Int64(i64::MIN)),
                    ("g_f32", Value::Float32(0.1)),
                    ("g_bool", Value::Bool(true)),
                    ("g_str", Value::String("a\"b\n\u{7f}é".into())),
                    ("g_bytes", Value::Bytes(vec![0x0a, 0xff, 0x00])),
                    ("g_vec", Value::Float32Vector(vec![0.5, -2.0, f32::NAN])),
                ],
            ),
            // Past its TTL: expired, with its event time.
            event(
                "full",
                now - 7_200_000,
                vec![("g_f64", Value::Float64(1.5))],
            ),
            event(
                "odd",
                now + 60_000,
                vec![
                    ("g_f64", Value::Float64(f64::INFINITY)),
                    ("g_f32", Value::Float32(1e-7)),
                    ("g_str", Value::String(String::new())),
                ],
            ),
            event("odd", now - 5, vec![("g_int", Value::Int64(42))]),
        ])
        .expect("push");

    let lists: [&[&str]; 4] = [
        &ALL,
        &["g_vec", "g_int", "g_int", "g_str@1"],
        &["g_f32"],
        &["g_bytes", "g_bool", "g_f64", "g_vec", "g_f32"],
    ];
    for id in ["full", "odd", "nobody", "quote\"d"] {
        for names in lists {
            let answer = store
                .get_entity("thing", id, Names::List(names))
                .expect("read");
            let fast = get_json::encode_entity(&answer);
            let rows = answer.clone().into_vector();
            let serde = json::encode_feature_vector(&rows).expect("encodes");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&serde),
                "{id} {names:?}"
            );
            // The text form (a query string's `names=`) answers the same.
            let text = names.join(" ,");
            let again = store
                .get_entity("thing", id, Names::Text(&format!(",{text},")))
                .expect("read text");
            let mut again = again.into_vector();
            let mut rows = rows;
            for r in again.features.iter_mut().chain(rows.features.iter_mut()) {
                r.age_ms = None;
            }
            // (Compared encoded: a NaN is not equal to itself.)
            assert_eq!(
                json::encode_feature_vector(&again).expect("encodes"),
                json::encode_feature_vector(&rows).expect("encodes"),
                "{id} {names:?}"
            );
            assert_eq!(
                store
                    .get_features("thing", id, names)
                    .expect("read")
                    .features
                    .len(),
                names.len()
            );
        }
    }

    let full = store
        .get_features("thing", "full", &ALL)
        .expect("read")
        .features;
    let statuses: Vec<FeatureStatus> = full.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            FeatureStatus::Present,
            FeatureStatus::Expired,
            FeatureStatus::Stale,
            FeatureStatus::Present,
            FeatureStatus::Present,
            FeatureStatus::Present,
            FeatureStatus::Present,
        ]
    );
    assert_eq!(full[1].value, None);
    assert_eq!(full[1].event_time, Some(now - 7_200_000));
    assert_eq!(full[2].value, Some(Value::Float32(0.1)));
    // A single-entity read keeps the raw status: no default.
    let nobody = store
        .get_features("thing", "nobody", &["g_int"])
        .expect("read");
    assert_eq!(nobody.features[0].status, FeatureStatus::NotFound);
    assert_eq!(nobody.features[0].value, None);
    let odd = store
        .get_features("thing", "odd", &["g_f32"])
        .expect("read");
    assert_eq!(odd.features[0].age_ms, Some(0), "future event times age 0");
}

#[test]
fn errors_are_the_same_with_and_without_a_cached_plan() {
    let (_dir, store) = temp_store();
    let specs = parse_features_toml(SPECS, "get_answer").expect("specs");
    store.apply(specs).expect("apply");
    for _ in 0..2 {
        assert_eq!(
            store.get_entity("nope", "x", Names::Text("g_int")).err(),
            Some(ReadError::UnknownEntityType("nope".into()))
        );
        assert!(matches!(
            store.get_entity("thing", "", Names::Text("g_int")).err(),
            Some(ReadError::InvalidEntityId(_))
        ));
        assert_eq!(
            store.get_entity("thing", "x", Names::Text(" , ")).err(),
            Some(ReadError::NoFeatures)
        );
        assert_eq!(
            store
                .get_entity("thing", "x", Names::Text("g_int,missing"))
                .err(),
            Some(ReadError::UnknownFeature("missing".into()))
        );
        assert_eq!(
            store
                .get_entity("thing", "x", Names::Text("g_int,g_other"))
                .err(),
            Some(ReadError::WrongEntityType {
                feature: "g_other".into(),
                expected: "other".into(),
                requested: "thing".into(),
            })
        );
        assert_eq!(
            store.get_entity("thing", "x", Names::Text("g_int@9")).err(),
            Some(ReadError::UnknownFeature("g_int@9".into()))
        );
        // A cached list still checks the id first.
        store
            .get_entity("thing", "x", Names::Text("g_int"))
            .expect("read");
        assert!(matches!(
            store.get_entity("thing", "", Names::Text("g_int")).err(),
            Some(ReadError::InvalidEntityId(_))
        ));
    }
    // A registry change empties the cache: a new version is served by plain names.
    let mut specs = parse_features_toml(SPECS, "get_answer").expect("specs");
    specs.truncate(1);
    specs[0].version = 2;
    store.apply(specs).expect("apply v2");
    store
        .push(vec![event(
            "x",
            now_ms(),
            vec![("g_int@2", Value::Int64(5))],
        )])
        .ok();
    let read = store.get_features("thing", "x", &["g_int"]).expect("read");
    assert_eq!(read.features[0].name.as_ref(), "g_int");
    let v2 = store.registry().resolve("g_int").map(|d| d.spec.version);
    assert_eq!(v2, Some(2));
    let answer = store
        .get_entity("thing", "x", Names::Text("g_int"))
        .expect("read");
    assert_eq!(answer.name(0), "g_int");
    let rows = answer.into_vector();
    assert_eq!(
        rows.features[0].status,
        store
            .get_features("thing", "x", &["g_int@2"])
            .expect("read")
            .features[0]
            .status
    );
}
