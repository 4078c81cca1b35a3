//! The typed client (`featstore::client`) against a real server on loopback: every
//! route the CLI's `--server` mode uses, typed errors carrying the server's status and
//! message, answers that decode without losing anything the server sent, and the CLI
//! itself in `--server` mode printing what it printed before it used the client.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use featstore::api::groups::LoadBody;
use featstore::api::push::{PushBody, PushEventBody};
use featstore::api::rank::{CandidatesBody, RankBody};
use featstore::client::{Client, ClientError};
use featstore::registry::DefinitionFilter;
use featstore::types::{DType, FeatureStatus, Value, now_ms};

use super::common::{TestServer, get, item_specs, json, temp_store, write_items_csv};

const LIVE: &str = r#"{"features":[
 {"name":"live_stock","entity_type":"item","group":"item_live","owner":"t","dtype":"int64"}]}"#;

/// A server with the item features registered and two loaded versions of `items`
/// (version 2 active).
fn served() -> (tempfile::TempDir, TestServer, Client) {
    let (dir, store) = temp_store();
    let server = TestServer::start_importing(Arc::new(store), dir.path());
    let client = Client::new(format!("http://{}/", server.addr));
    client.health().expect("healthz");
    client.ready().expect("readyz");
    let applied = client.apply_definitions(&item_specs()).expect("apply");
    assert_eq!(applied.results.len(), 4);
    for version in 1..=2 {
        let csv = write_items_csv(dir.path(), version, 5);
        let record = client.load("items", &LoadBody::new(csv)).expect("load");
        assert_eq!(record.version, version);
        assert_eq!(record.rows, 5);
        assert!(record.activated);
    }
    (dir, server, client)
}

/// The raw body of `GET path`, as JSON.
fn raw(server: &TestServer, path: &str) -> serde_json::Value {
    let (status, body) = get(&server.url(path));
    assert_eq!(status, 200, "{path}: {body}");
    json(&body)
}

/// A read answer with every `age_ms` set to 0: ages move between two reads.
fn without_ages(mut answer: serde_json::Value) -> serde_json::Value {
    for reading in answer["features"].as_array_mut().expect("features") {
        reading["age_ms"] = serde_json::json!(0);
    }
    answer
}

#[test]
fn the_client_reads_and_administers_a_running_server() {
    let (_dir, server, client) = served();

    let answer = client
        .get_features("item", "i3", &["item_a", "item_label"])
        .expect("get");
    assert_eq!(answer.versions["items"], 2);
    let a = answer.get("item_a").expect("asked");
    assert_eq!(a.status, FeatureStatus::Present);
    assert_eq!(a.value_as(DType::Float64), Ok(Value::Float64(2003.0)));
    assert_eq!(
        answer.get("item_label").expect("asked").value,
        serde_json::json!("v2")
    );
    // Nothing the server sent is lost in decoding (ages move between two reads).
    let path = "/v1/features/item/i3?names=item_a,item_label";
    assert_eq!(
        without_ages(serde_json::to_value(&answer).expect("encodes")),
        without_ages(raw(&server, path))
    );

    let versions = client.versions("items").expect("versions");
    assert_eq!(versions.active, Some(2));
    assert_eq!(versions.versions.len(), 2);
    assert_eq!(
        serde_json::to_value(&versions).expect("encodes"),
        raw(&server, "/v1/groups/items/versions")
    );
    let groups = client.groups().expect("groups");
    assert_eq!(groups.groups.len(), 1);
    assert_eq!(groups.groups[0].active_version, Some(2));

    let rolled = client.rollback("items").expect("rollback");
    assert_eq!((rolled.group.as_str(), rolled.active_version), ("items", 1));
    let read = client.get_features("item", "i3", &["item_a"]).expect("get");
    assert_eq!(read.features[0].value, serde_json::json!(1003.0));
    let active = client.activate("items", 2).expect("activate");
    assert_eq!(active.active_version, 2);
    let dropped = client.drop_old_versions("items", Some(1)).expect("drop");
    assert_eq!(dropped.dropped, vec![1]);

    let filter = DefinitionFilter {
        entity_type: Some("item".into()),
        ..DefinitionFilter::default()
    };
    let definitions = client.definitions(&filter).expect("definitions");
    assert_eq!(definitions.features.len(), 4);
    assert_eq!(
        serde_json::to_value(&definitions).expect("encodes"),
        raw(&server, "/v1/feature-definitions?entity_type=item")
    );
    let none = client
        .definitions(&DefinitionFilter {
            owner: Some("nobody at all".into()),
            ..DefinitionFilter::default()
        })
        .expect("definitions");
    assert!(none.features.is_empty());

    let lineage = client.lineage().expect("lineage");
    assert_eq!(
        serde_json::to_value(&lineage).expect("encodes"),
        raw(&server, "/v1/lineage")
    );
    assert!(
        client
            .entity_types()
            .expect("entity types")
            .entity_types
            .is_empty()
    );
    assert!(client.services().expect("services").services.is_empty());
    assert!(client.on_demand().expect("on demand").on_demand.is_empty());
    assert!(client.metrics().expect("metrics").contains("featstore_"));
}

#[test]
fn the_client_ranks_in_json_and_binary() {
    let (_dir, server, client) = served();
    let request = RankBody {
        context: BTreeMap::new(),
        candidates: CandidatesBody {
            entity_type: "item".into(),
            ids: vec!["i1".into(), "zz".into(), "i4".into()],
        },
        features: Some(vec!["item_b".into(), "item_label".into()]),
        service: None,
        deadline_ms: None,
        as_of: None,
    };
    let answer = client.rank(&request).expect("rank");
    assert!(answer.complete);
    assert_eq!(answer.candidates.features, vec!["item_b", "item_label"]);
    let statuses: Vec<&str> = answer
        .candidates
        .rows
        .iter()
        .map(|r| r.status.as_str())
        .collect();
    assert_eq!(statuses, vec!["PP", "NN", "PP"]);
    let (status, time, value) = answer.cell(2, 0).expect("cell");
    assert_eq!(status, Some(FeatureStatus::Present));
    assert_eq!(time, Some(1_700_000_000_000));
    assert_eq!(value, &serde_json::json!(2004.0));
    let (status, body) = super::common::post(
        &server.url("/v1/rank"),
        &serde_json::to_string(&request).expect("encodes"),
    );
    assert_eq!(status, 200, "{body}");
    let mut sent = json(&body);
    let mut decoded = serde_json::to_value(&answer).expect("encodes");
    // The request time differs between the two requests; everything else is equal.
    sent["now_ms"] = serde_json::json!(0);
    decoded["now_ms"] = serde_json::json!(0);
    assert_eq!(decoded, sent);

    let binary = client.rank_binary(&request).expect("rank binary");
    assert_eq!(binary.columns, vec!["item_b", "item_label"]);
    assert_eq!(binary.rows.len(), 3);
    assert_eq!(binary.rows[1].0, "zz");
    assert_eq!(binary.rows[1].1[0].0, b'N');
    assert_eq!(
        binary.rows[2].1[1],
        (
            b'P',
            Some(1_700_000_000_000),
            Some(Value::String("v2".into()))
        )
    );
}

#[test]
fn the_client_pushes_and_reports_refused_events() {
    let (_dir, server, client) = served();
    let (status, body) = super::common::post(&server.url("/v1/feature-definitions"), LIVE);
    assert_eq!(status, 200, "{body}");
    let event = |id: &str, value: serde_json::Value| PushEventBody {
        entity_type: "item".into(),
        entity_id: id.into(),
        event_time: featstore::api::groups::EventTime::Millis(now_ms()),
        features: BTreeMap::from([("live_stock".to_owned(), value)]),
        event_id: None,
    };
    let outcome = client
        .push(&PushBody {
            events: vec![event("i1", serde_json::json!(7))],
        })
        .expect("push");
    assert_eq!((outcome.accepted, outcome.values_written), (1, 1));
    let read = client
        .get_features("item", "i1", &["live_stock"])
        .expect("get");
    assert_eq!(read.features[0].value, serde_json::json!(7));

    let refused = client
        .push(&PushBody {
            events: vec![
                event("i1", serde_json::json!(8)),
                event("i2", serde_json::json!("many")),
            ],
        })
        .expect_err("refused");
    let Some(answer) = refused.server() else {
        panic!("expected a server error, got {refused:?}");
    };
    assert_eq!(answer.status, 400);
    assert!(
        answer.message.contains("1 of 2 events rejected"),
        "{}",
        answer.message
    );
    assert_eq!(answer.rejected.len(), 1);
    assert_eq!(answer.rejected[0].index, 1);
    assert_eq!(answer.retry_after_secs, None);
    // Nothing of the refused push was applied.
    let read = client
        .get_features("item", "i1", &["live_stock"])
        .expect("get");
    assert_eq!(read.features[0].value, serde_json::json!(7));
    let malformed = client.push_json(b"{\"events\": 3}").expect_err("malformed");
    assert_eq!(malformed.status(), Some(400));
}

#[test]
fn client_errors_carry_the_status_and_the_servers_message() {
    let (_dir, server, client) = served();
    let err = client.versions("nope").expect_err("unknown group");
    assert_eq!(err.status(), Some(404));
    assert!(
        err.server_message().is_some_and(|m| m.contains("nope")),
        "{err}"
    );
    let err = client
        .get_features("item", "i1", &["not_a_feature"])
        .expect_err("unknown feature");
    assert_eq!(err.status(), Some(404));
    assert!(err.to_string().contains("not_a_feature"), "{err}");
    let err = client
        .get_features("item", "i1", &[])
        .expect_err("no names");
    assert_eq!(err.status(), Some(400));
    let err = client.activate("items", 99).expect_err("unknown version");
    assert_eq!(err.status(), Some(404));
    let err = client.rollback("nope").expect_err("unknown group");
    assert_eq!(err.status(), Some(404), "{err}");
    let err = client
        .load("items", &LoadBody::new("relative.csv"))
        .expect_err("relative path");
    assert_eq!(err.status(), Some(400));

    // Nothing listens here once the server is gone: a transport error, no status.
    let addr = server.addr;
    drop(server);
    let gone = Client::with_timeout(format!("http://{addr}"), std::time::Duration::from_secs(5));
    let err = gone.health().expect_err("no server");
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert_eq!(err.status(), None);
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_featstore"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run featstore")
}

/// What the CLI printed for a server answer before it used the client: the body as
/// pretty JSON, object keys sorted.
fn printed(value: &serde_json::Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).expect("encodes")
    )
}

#[test]
fn the_cli_server_mode_reads_and_administers_through_the_client() {
    let (_dir, server, _client) = served();
    let base = format!("http://{}", server.addr);

    let out = cli(&[
        "get",
        "item",
        "i3",
        "--names",
        "item_a, item_label",
        "--server",
        &base,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let sent = raw(&server, "/v1/features/item/i3?names=item_a,item_label");
    assert_eq!(without_ages(json(&stdout)), without_ages(sent));
    assert_eq!(stdout, printed(&json(&stdout)), "pretty, keys sorted");

    let out = cli(&["versions", "rollback", "items", "--server", &base]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).expect("utf-8"),
        printed(&serde_json::json!({"group": "items", "active_version": 1}))
    );
    let out = cli(&["versions", "list", "items", "--server", &base]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).expect("utf-8"),
        printed(&raw(&server, "/v1/groups/items/versions"))
    );

    // An error answer: its body on stdout, the status on stderr, exit 1.
    let out = cli(&["versions", "activate", "items", "99", "--server", &base]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(json(&stdout)["error"].as_str().is_some(), "{stdout}");
    assert_eq!(
        String::from_utf8(out.stderr).expect("utf-8"),
        "error: server answered 404 Not Found\n"
    );
}
