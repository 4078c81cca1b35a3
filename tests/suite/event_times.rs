//! Issue 12, item 1: `"2025-11-22T05:33:20.123+02:00"` was stored as if the offset were
//! `Z` (two hours off) whenever a fraction was present, and refused without one or with
//! `-05:30`. Every path now reads RFC 3339 with its offset through one parser.

use std::sync::Arc;

use super::common::{TestServer, get, item_specs, json, post, temp_store};

/// 2025-11-22T05:33:20Z in epoch milliseconds.
const BASE: i64 = 1_763_789_600_000;
const HOUR: i64 = 3_600_000;

#[test]
fn pushes_and_loads_apply_rfc3339_offsets() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let cases = [
        ("2025-11-22T05:33:20.123+02:00", BASE - 2 * HOUR + 123),
        ("2025-11-22T05:33:20.123+09:00", BASE - 9 * HOUR + 123),
        ("2025-11-22T05:33:20+02:00", BASE - 2 * HOUR),
        ("2025-11-22T05:33:20-05:30", BASE + 5 * HOUR + HOUR / 2),
        ("2025-11-22T05:33:20.123456789Z", BASE + 123),
    ];
    let server = TestServer::start_importing(Arc::new(store), dir.path());
    for (i, (text, want)) in cases.iter().enumerate() {
        let body = serde_json::json!({"events": [{"entity_type": "item", "entity_id": format!("pushed{i}"),
            "event_time": text, "features": {"item_a": 1.0}}]});
        let (status, answer) = post(&server.url("/v1/push"), &body.to_string());
        assert_eq!(status, 200, "{text}: {answer}");
        let (_, read) = get(&server.url(&format!("/v1/features/item/pushed{i}?names=item_a")));
        assert_eq!(json(&read)["features"][0]["event_time"], *want, "{text}");
    }

    let mut csv = String::from("entity_id,event_time,item_a\n");
    for (i, (text, _)) in cases.iter().enumerate() {
        csv.push_str(&format!("loaded{i},{text},1\n"));
    }
    let path = dir.path().join("times.csv");
    std::fs::write(&path, csv).expect("write");
    let load = serde_json::json!({"input": path});
    let (status, answer) = post(&server.url("/v1/groups/items/loads"), &load.to_string());
    assert_eq!(status, 200, "{answer}");
    for (i, (text, want)) in cases.iter().enumerate() {
        let (_, read) = get(&server.url(&format!("/v1/features/item/loaded{i}?names=item_a")));
        assert_eq!(json(&read)["features"][0]["event_time"], *want, "{text}");
    }

    // A time without an offset, or out of range, is refused naming it.
    for (text, says) in [
        ("2025-11-22T05:33:20.123", "no UTC offset"),
        ("2025-13-22T05:33:20Z", "out of range"),
        ("99999999999999999999", "out of range"),
    ] {
        let body = serde_json::json!({"events": [{"entity_type": "item", "entity_id": "x",
            "event_time": text, "features": {"item_a": 1.0}}]});
        let (status, answer) = post(&server.url("/v1/push"), &body.to_string());
        assert_eq!(status, 400, "{text}: {answer}");
        let reason = json(&answer)["rejected"][0]["reason"].to_string();
        assert!(reason.contains(text) && reason.contains(says), "{reason}");
    }

    // The default event time of a load goes through the same parser.
    let path = dir.path().join("no-times.csv");
    std::fs::write(&path, "entity_id,item_a\ndefaulted,1\n").expect("write");
    let load =
        serde_json::json!({"input": path, "default_event_time": "2025-11-22T05:33:20+02:00"});
    let (status, answer) = post(&server.url("/v1/groups/items/loads"), &load.to_string());
    assert_eq!(status, 200, "{answer}");
    let (_, read) = get(&server.url("/v1/features/item/defaulted?names=item_a"));
    assert_eq!(json(&read)["features"][0]["event_time"], BASE - 2 * HOUR);
}

#[test]
fn cli_default_event_times_apply_offsets() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    drop(store);
    let csv = dir.path().join("no-times.csv");
    std::fs::write(&csv, "entity_id,item_a\ncli,1\n").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_featstore"))
        .args([
            "load",
            "--group",
            "items",
            "--default-event-time",
            "2025-11-22T05:33:20-05:30",
        ])
        .arg("--input")
        .arg(&csv)
        .arg("--data")
        .arg(dir.path().join("store"))
        .output()
        .expect("run featstore load");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store =
        featstore::FeatureStore::open(dir.path().join("store"), super::common::small_config())
            .expect("reopen");
    let read = store
        .get_features("item", "cli", &["item_a"])
        .expect("read");
    assert_eq!(
        read.features[0].event_time,
        Some(BASE + 5 * HOUR + HOUR / 2)
    );
}
