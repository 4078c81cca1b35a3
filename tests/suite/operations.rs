//! Issue 12, item 10: operations a new user hit. `featstore apply --data DIR` while a
//! server holds DIR printed RocksDB's raw "LOCK: Resource temporarily unavailable"
//! twice; `serve --help` listed `--server`; logs had colour codes when stderr was not a
//! terminal; the demo printed a load example with a relative path the server refuses.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use featstore::api::groups::parse_load;

fn featstore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_featstore"))
}

/// A `featstore serve` child, killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_command_on_a_directory_a_server_holds_says_so_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = featstore()
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn featstore serve");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    // Read the log until the server serves; it goes to a pipe, not a terminal, so it
    // must be free of colour escape codes.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let serving = line.contains("serving HTTP");
            if tx.send(line).is_err() || serving {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("server did not start");
        let serving = line.contains("serving HTTP");
        log.push(line);
        if serving {
            break;
        }
    }
    let log = log.join("\n");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );

    let toml = dir.path().join("features.toml");
    std::fs::write(
        &toml,
        "[[feature]]\nname = \"f\"\nentity_type = \"e\"\ngroup = \"g\"\nowner = \"o\"\ndtype = \"int64\"\n",
    )
    .expect("write");
    let output = featstore()
        .arg("apply")
        .arg(&toml)
        .arg("--data")
        .arg(&data)
        .output()
        .expect("run featstore apply");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("is in use by another process").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("--server http://"), "{stderr}");
    assert!(
        !stderr.contains("Resource temporarily unavailable"),
        "{stderr}"
    );
    drop(server);
}

#[test]
fn serve_help_lists_data_but_not_server() {
    let output = featstore().args(["serve", "--help"]).output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--data"), "{help}");
    assert!(!help.contains("--server"), "{help}");
    let output = featstore().args(["apply", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--server"), "{help}");
}

#[test]
fn the_demo_load_example_names_an_absolute_path_the_server_accepts() {
    let body = featstore::demo::load_body(std::path::Path::new(
        "featstore-demo/data/product_daily.parquet",
    ));
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let input = json["input"].as_str().expect("input");
    assert!(std::path::Path::new(input).is_absolute(), "{body}");
    assert!(
        input.ends_with("featstore-demo/data/product_daily.parquet"),
        "{body}"
    );
    let request = parse_load("product_daily".into(), body.as_bytes()).expect("accepted");
    assert!(request.input.is_absolute());
    // Quotes survive the shell's single quotes and JSON.
    let body = featstore::demo::load_body(std::path::Path::new("/tmp/it's \"here\".csv"));
    assert_eq!(body, r#"{"input":"/tmp/it'\''s \"here\".csv"}"#);
}
