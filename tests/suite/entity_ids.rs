//! Issue 12, item 2: entity ids were checked differently on different paths. A
//! composite id with an empty component (`|a`) or the wrong number of components
//! (`a|b|c`, `nopipe`) was loaded and stored; a ranking context `{"user": ""}` was
//! served when the feature was composite and refused when it was not; an empty
//! candidate was answered `N`; a CSV row with an invalid UTF-8 id was loaded and could
//! never be read. Now one check (`EntityIdRule::check`) answers every path alike: a
//! load fails on the row, a push rejects the event, a read or a ranking request is a
//! 400 naming the id, all with the same reason.

use std::sync::Arc;

use featstore::FeatureStore;
use featstore::loader::LoadRequest;
use featstore::query::rank::{FeatureSelection, RankError, RankRequest};
use featstore::registry::file::parse_registry_toml;
use featstore::store::{PushError, PushEvent, ReadError, StoreError};
use featstore::types::{Value, now_ms};

use super::common::{TestServer, get, json, post, temp_store};

const REGISTRY: &str = r#"
[[entity_type]]
name = "user_product"
components = ["user", "product"]

[[feature]]
name = "affinity"
entity_type = "user_product"
group = "user_product"
owner = "tests"
dtype = "float64"

[[feature]]
name = "age"
entity_type = "user"
group = "users"
owner = "tests"
dtype = "int64"

[[feature]]
name = "price"
entity_type = "product"
group = "products"
owner = "tests"
dtype = "float64"
"#;

fn store() -> (tempfile::TempDir, FeatureStore) {
    let (dir, store) = temp_store();
    store
        .apply_objects(parse_registry_toml(REGISTRY, "registry").expect("parses"))
        .expect("apply");
    (dir, store)
}

/// Loads one-row CSV `rows` (after a valid row) into `group`; returns the load error.
fn load_error(
    store: &FeatureStore,
    dir: &std::path::Path,
    group: &str,
    feature: &str,
    id: &[u8],
) -> String {
    let path = dir.join(format!("{group}-bad.csv"));
    let mut text = format!("entity_id,event_time,{feature}\n").into_bytes();
    let good: &[u8] = if group == "user_product" {
        b"u1|p1"
    } else {
        b"p1"
    };
    text.extend_from_slice(good);
    text.extend_from_slice(b",1700000000000,1.5\n");
    text.extend_from_slice(id);
    text.extend_from_slice(b",1700000000000,2.5\n");
    std::fs::write(&path, text).expect("write");
    let err = store
        .load(&LoadRequest::new(group, &path), &|_| {})
        .expect_err("bad id refused");
    assert!(matches!(err, StoreError::Load(_)), "{err:?}");
    assert!(
        store.versions(group).expect("versions").versions.is_empty(),
        "nothing of the load is visible"
    );
    err.to_string()
}

fn push_reason(store: &FeatureStore, entity_type: &str, feature: &str, id: &str) -> String {
    let err = store
        .push(vec![PushEvent {
            entity_type: entity_type.into(),
            entity_id: id.into(),
            event_time: now_ms(),
            features: vec![(feature.into(), Value::Float64(1.0))],
            event_id: None,
        }])
        .expect_err("bad id refused");
    match err {
        PushError::Rejected { rejections, .. } => rejections[0].reason.clone(),
        other => panic!("{other:?}"),
    }
}

fn read_error(store: &FeatureStore, entity_type: &str, feature: &str, id: &str) -> String {
    let err = store
        .get_features(entity_type, id, &[feature])
        .expect_err("bad id refused");
    assert!(matches!(err, ReadError::InvalidEntityId(_)), "{err:?}");
    err.to_string()
}

#[test]
fn a_bad_composite_id_gets_the_same_answer_on_every_path() {
    let (dir, store) = store();
    for (id, problem) in [
        ("|a", "component 1 (user) of user|product is empty"),
        ("u1|", "component 2 (product) of user|product is empty"),
        ("a|b|c", "3 components, the type has 2 (user|product)"),
        ("nopipe", "1 component, the type has 2 (user|product)"),
        ("", "the id is empty"),
        ("u1|p%zz", "component 2 has a `%`"),
    ] {
        let reason = format!("invalid user_product id `{id}`: {problem}");
        let load = load_error(
            &store,
            dir.path(),
            "user_product",
            "affinity",
            id.as_bytes(),
        );
        assert!(load.contains("row 2, column `entity_id`"), "{load}");
        assert!(load.contains(&reason), "load: {load}\nwant: {reason}");
        let push = push_reason(&store, "user_product", "affinity", id);
        assert!(push.starts_with(&reason), "push: {push}\nwant: {reason}");
        let read = read_error(&store, "user_product", "affinity", id);
        assert!(read.starts_with(&reason), "read: {read}\nwant: {reason}");
        let rank = store
            .rank(RankRequest {
                context: vec![],
                candidate_type: "user_product".into(),
                candidates: vec!["u1|p1".into(), id.into()],
                features: FeatureSelection::Names(vec!["affinity".into()]),
                deadline: None,
            })
            .expect_err("bad candidate refused");
        assert!(
            matches!(rank, RankError::InvalidCandidateId { index: 1, .. }),
            "{rank:?}"
        );
        assert!(rank.is_client_error());
        assert!(
            rank.to_string().contains(&reason),
            "rank: {rank}\nwant: {reason}"
        );
    }
    // A valid composite id loads, pushes and reads.
    let csv = dir.path().join("up.csv");
    std::fs::write(
        &csv,
        "entity_id,event_time,affinity\nu1|p1,1700000000000,0.5\n",
    )
    .expect("write");
    store
        .load(&LoadRequest::new("user_product", &csv), &|_| {})
        .expect("valid ids load");
    let read = store
        .get_features("user_product", "u1|p1", &["affinity"])
        .expect("read");
    assert_eq!(read.features[0].value, Some(Value::Float64(0.5)));
}

#[test]
fn invalid_utf8_and_empty_ids_are_refused_by_loads_like_every_other_path() {
    let (dir, store) = store();
    let load = load_error(&store, dir.path(), "products", "price", b"p\xff2");
    assert!(
        load.contains("invalid product id `p\u{fffd}2`: the id is not valid UTF-8"),
        "{load}"
    );
    let load = load_error(&store, dir.path(), "products", "price", b"");
    let reason = "invalid product id ``: the id is empty";
    assert!(load.contains(reason), "{load}");
    assert!(push_reason(&store, "product", "price", "").starts_with(reason));
    assert!(read_error(&store, "product", "price", "").starts_with(reason));
    // Ids are exact: padding is part of the id, on every path.
    let csv = dir.path().join("padded.csv");
    std::fs::write(&csv, "entity_id,event_time,price\n p1 ,1700000000000,3.5\n").expect("write");
    store
        .load(&LoadRequest::new("products", &csv), &|_| {})
        .expect("load");
    let padded = store
        .get_features("product", " p1 ", &["price"])
        .expect("read");
    assert_eq!(padded.features[0].value, Some(Value::Float64(3.5)));
    let plain = store
        .get_features("product", "p1", &["price"])
        .expect("read");
    assert_eq!(plain.features[0].value, None);
}

#[test]
fn ranking_context_ids_are_checked_whatever_features_use_them() {
    let (_dir, store) = store();
    let request = |features: &[&str], context: &str| RankRequest {
        context: vec![("user".into(), context.into())],
        candidate_type: "product".into(),
        candidates: vec!["p1".into()],
        features: FeatureSelection::Names(features.iter().map(|f| (*f).to_owned()).collect()),
        deadline: None,
    };
    // Composite feature, plain feature, and no feature of the context type at all.
    for features in [&["affinity"][..], &["age"], &["price"]] {
        let err = store
            .rank(request(features, ""))
            .expect_err("empty context id refused");
        assert_eq!(
            err.to_string(),
            "context `user`: invalid user id ``: the id is empty",
            "{features:?}"
        );
        assert!(err.is_client_error());
        store.rank(request(features, "u1")).expect("valid context");
    }
    // An empty candidate is refused too, not answered `not_found`.
    let err = store
        .rank(RankRequest {
            context: vec![("user".into(), "u1".into())],
            candidate_type: "product".into(),
            candidates: vec!["p1".into(), String::new()],
            features: FeatureSelection::Names(vec!["affinity".into(), "price".into()]),
            deadline: None,
        })
        .expect_err("empty candidate refused");
    assert_eq!(
        err.to_string(),
        "candidate 1: invalid product id ``: the id is empty"
    );
}

#[test]
fn bad_ids_are_400_naming_the_id_over_http() {
    let (_dir, store) = store();
    let server = TestServer::start(Arc::new(store));
    // An empty id was a 404 "no such endpoint".
    let (status, body) = get(&server.url("/v1/features/product/?names=price"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        json(&body)["error"],
        "invalid product id ``: the id is empty",
        "{body}"
    );
    let (status, body) = get(&server.url("/v1/features/user_product/nopipe?names=affinity"));
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid user_product id `nopipe`")),
        "{body}"
    );
    let (status, body) = get(&server.url("/v1/features/user_product/u1%7Cp1?names=affinity"));
    assert_eq!(status, 200, "{body}");

    let (status, body) = post(
        &server.url("/v1/rank"),
        r#"{"context": {"user": ""}, "candidates": {"entity_type": "product", "ids": ["p1"]},
            "features": ["affinity"]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid user id ``"), "{body}");
    let (status, body) = post(
        &server.url("/v1/rank"),
        r#"{"context": {"user": "u1"}, "candidates": {"entity_type": "product", "ids": ["p1", ""]},
            "features": ["price"]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("candidate 1: invalid product id ``"),
        "{body}"
    );

    let (status, body) = post(
        &server.url("/v1/push"),
        r#"{"events": [{"entity_type": "user_product", "entity_id": "|a", "event_time": 1700000000000,
            "features": {"affinity": 1.0}}]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        json(&body)["rejected"][0]["reason"],
        "invalid user_product id `|a`: component 1 (user) of user|product is empty",
        "{body}"
    );
}
