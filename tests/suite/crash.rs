//! Durability across a crash: the real `featstore serve` binary acknowledges pushes
//! from concurrent producers and is killed with SIGKILL while they are still pushing;
//! after a restart on the same directory, every acknowledged event is there. Also the
//! `featstore push` command on a data directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use featstore::FeatureStore;
use featstore::types::{Value, now_ms};

use super::common::{post, small_config};

/// A server child process, killed (SIGKILL) when dropped, so a failing test leaves
/// no server behind.
struct Server(Child);

impl Server {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `featstore serve` on an ephemeral port; returns the child and its address.
fn spawn_server(data: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_featstore"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn featstore serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(addr) = line.strip_prefix("featstore serving on ") {
                let _ = tx.send(addr.trim().to_owned());
                sent = true;
            }
        }
    });
    let server = Server(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not report its address");
    (server, addr)
}

const SPEC: &str = r#"{"features":[
 {"name":"crash_value","entity_type":"item","group":"crash_live","owner":"tests","dtype":"int64"},
 {"name":"crash_label","entity_type":"item","group":"crash_live","owner":"tests","dtype":"string"}]}"#;

#[test]
fn every_acknowledged_push_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("store");
    let (mut child, base) = spawn_server(&data);
    let (status, body) = post(&format!("{base}/v1/feature-definitions"), SPEC);
    assert_eq!(status, 200, "{body}");

    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let time = now_ms();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (acked, url) = (acked.clone(), format!("{base}/v1/push"));
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .into();
                for n in 0i64.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let ids: Vec<String> = (0..5).map(|k| format!("p{p}-{n}-{k}")).collect();
                    let events: Vec<serde_json::Value> = ids
                        .iter()
                        .map(|id| {
                            serde_json::json!({"entity_type": "item", "entity_id": id,
                            "event_time": time, "features": {"crash_value": n, "crash_label": id}})
                        })
                        .collect();
                    let body = serde_json::json!({ "events": events }).to_string();
                    let response = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(body.as_bytes());
                    match response {
                        Ok(r) if r.status() == 200 => {
                            let mut acked = acked.lock().expect("lock");
                            acked.extend(ids.into_iter().map(|id| (id, n)));
                        }
                        // Killed mid-request: not acknowledged, nothing to check.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Kill once some pushes were acknowledged, while producers are still pushing.
    while acked.lock().expect("lock").len() < 2_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill();
    for producer in producers {
        producer.join().expect("producer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 2_000,
        "only {} events acknowledged",
        acked.len()
    );

    let store = FeatureStore::open(&data, small_config()).expect("reopen after crash");
    for (id, n) in &acked {
        let vector = store
            .get_features("item", id, &["crash_value", "crash_label"])
            .expect("read");
        assert_eq!(vector.features[0].value, Some(Value::Int64(*n)), "{id}");
        assert_eq!(
            vector.features[1].value,
            Some(Value::String(id.clone())),
            "{id}"
        );
    }
    drop(store);

    // The restarted server answers them too.
    let (mut child, base) = spawn_server(&data);
    for (id, n) in acked.iter().step_by(acked.len() / 20 + 1) {
        let (status, body) =
            super::common::get(&format!("{base}/v1/features/item/{id}?names=crash_value"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            super::common::json(&body)["features"][0]["value"],
            *n,
            "{body}"
        );
    }
    child.kill();
}

#[test]
fn the_cli_pushes_a_file_and_refuses_a_bad_one_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("store");
    let features = dir.path().join("features.toml");
    std::fs::write(
        &features,
        "[[feature]]\nname = \"crash_value\"\nentity_type = \"item\"\ngroup = \"crash_live\"\nowner = \"t\"\ndtype = \"int64\"\n",
    )
    .expect("write");
    let featstore = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_featstore"))
            .args(args)
            .arg("--data")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run featstore")
    };
    let out = featstore(&["apply", features.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{out:?}");
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        format!(r#"{{"events":[{{"entity_type":"item","entity_id":"a","event_time":{},"features":{{"crash_value":5}}}}]}}"#, now_ms()),
    )
    .expect("write");
    let out = featstore(&["push", good.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"accepted\": 1"),
        "{out:?}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"events":[{"entity_type":"item","entity_id":"b","event_time":1,"features":{"crash_value":1}},
                      {"entity_type":"item","entity_id":"b","event_time":1,"features":{"crash_value":"x"}}]}"#,
    )
    .expect("write");
    let out = featstore(&["push", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("event 1:"),
        "{out:?}"
    );
    let store = FeatureStore::open(&data, small_config()).expect("open");
    let read = |id: &str| {
        store
            .get_features("item", id, &["crash_value"])
            .expect("read")
            .features[0]
            .value
            .clone()
    };
    assert_eq!(read("a"), Some(Value::Int64(5)));
    assert_eq!(read("b"), None);
}
