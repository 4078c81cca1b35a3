//! Registry: declarative registration, filters, refusal of incompatible changes (library
//! and HTTP), and new versions of a feature living beside the old one.

use std::sync::Arc;

use featstore::registry::{DefinitionFilter, RegistryError};
use featstore::store::{ApplyAction, StoreError};
use featstore::types::DType;

use super::common::{TestServer, get, item_specs, json, post, temp_store};

#[test]
fn incompatible_changes_need_a_new_version() {
    let (_dir, store) = temp_store();
    let outcomes = store.apply(item_specs()).expect("apply");
    assert!(outcomes.iter().all(|o| o.action == ApplyAction::Created));
    let again = store.apply(item_specs()).expect("re-apply");
    assert!(again.iter().all(|o| o.action == ApplyAction::Unchanged));

    let mut changed = item_specs();
    changed[0].dtype = DType::Int64;
    let err = store
        .apply(changed.clone())
        .expect_err("dtype change refused");
    assert!(matches!(
        err,
        StoreError::Registry(RegistryError::Invalid(_))
    ));
    assert!(err.to_string().contains("version 2"), "{err}");

    // All or nothing: a refused batch registers none of its definitions.
    let mut batch = item_specs();
    batch[1].description = "changed".into();
    batch.push(changed[0].clone());
    assert!(store.apply(batch).is_err());
    let b = store.registry().resolve("item_b").expect("item_b").clone();
    assert_eq!(b.spec.description, "");

    changed[0].version = 2;
    let outcomes = store.apply(vec![changed[0].clone()]).expect("new version");
    assert_eq!(outcomes[0].action, ApplyAction::Created);
    let registry = store.registry();
    assert_eq!(registry.resolve("item_a").expect("latest").spec.version, 2);
    assert_eq!(
        registry.resolve("item_a@1").expect("v1").spec.dtype,
        DType::Float64
    );

    let mut compatible = item_specs();
    compatible[2].owner = "another-team".into();
    compatible[2].tags = vec!["reused".into()];
    let outcomes = store.apply(compatible).expect("compatible change");
    assert_eq!(outcomes[2].action, ApplyAction::Updated);
    let tagged = store.list_definitions(&DefinitionFilter {
        tag: Some("reused".into()),
        ..Default::default()
    });
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].spec.owner, "another-team");
}

#[test]
fn a_group_has_one_entity_type() {
    let (_dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let mut stray = item_specs().remove(0);
    stray.name = "user_thing".into();
    stray.entity_type = "user".into();
    let err = store.apply(vec![stray]).expect_err("refused");
    assert!(err.to_string().contains("one entity type"), "{err}");
}

#[test]
fn registry_over_http_registers_filters_and_refuses() {
    let (_dir, store) = temp_store();
    let server = TestServer::start(Arc::new(store));
    let specs = serde_json::to_string(&item_specs()).expect("json");
    let (status, body) = post(&server.url("/v1/feature-definitions"), &specs);
    assert_eq!(status, 200, "{body}");

    let (status, body) = get(&server.url("/v1/feature-definitions?entity_type=item&name=item_"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["features"].as_array().expect("array").len(), 4);
    let (_, body) = get(&server.url("/v1/feature-definitions?owner=nobody"));
    assert_eq!(json(&body)["features"].as_array().expect("array").len(), 0);

    let mut changed = item_specs();
    changed[0].dtype = DType::Bool;
    let (status, body) = post(
        &server.url("/v1/feature-definitions"),
        &serde_json::to_string(&changed[0]).expect("json"),
    );
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(body.contains("version 2"), "{body}");

    let (status, body) = post(&server.url("/v1/feature-definitions"), r#"{"name": "x"}"#);
    assert_eq!(status, 400, "{body}");
}
