//! Issue 12: SIGTERM killed `featstore serve` at once (only SIGINT shut it down
//! gracefully), so a sidecar manager's stop dropped requests in flight. Now SIGTERM
//! stops accepting, lets in-flight requests finish within `--shutdown-grace`, and the
//! process exits 0. Tested on the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::common::post;

/// A server child process, killed (SIGKILL) when dropped, so a failing test leaves
/// no server behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Starts `featstore serve` on an ephemeral port with `args`; returns it and its
    /// address (`127.0.0.1:port`).
    fn start(data: &std::path::Path, args: &[&str]) -> (Server, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_featstore"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
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
                if !sent && let Some(url) = line.strip_prefix("featstore serving on http://") {
                    let _ = tx.send(url.trim().to_owned());
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

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit, at most `wait`.
    fn wait_exit(&mut self, wait: Duration) -> ExitStatus {
        let until = Instant::now() + wait;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the server did not exit within {wait:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const SPEC: &str = r#"{"features":[
 {"name":"term_value","entity_type":"item","group":"term_live","owner":"tests","dtype":"int64"}]}"#;

const BODY: &str = r#"{"events":[{"entity_type":"item","entity_id":"a","event_time":1700000000000,"features":{"term_value":5}}]}"#;

/// Sends a push head and the first `sent` bytes of [`BODY`], then waits until the
/// server holds the request (its body bytes show in the metrics).
fn start_push(addr: &str, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /v1/push HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&BODY.as_bytes()[..sent]).expect("part");
    for _ in 0..500 {
        let (_, metrics) = super::common::get(&format!("http://{addr}/metrics"));
        if metrics
            .lines()
            .any(|l| l == format!("featstore_http_request_body_bytes_in_flight {sent}"))
        {
            return stream;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the server never started reading the push");
}

/// Reads until the server closes the connection.
fn read_all(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn sigterm_drains_requests_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, addr) = Server::start(&dir.path().join("store"), &["--shutdown-grace", "20s"]);
    let (status, body) = post(&format!("http://{addr}/v1/feature-definitions"), SPEC);
    assert_eq!(status, 200, "{body}");
    let mut push = start_push(&addr, 20);

    server.terminate();
    // The listener goes at once: new connections are refused.
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(&addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(refused, "still accepting after SIGTERM");
    assert!(
        server.0.try_wait().expect("try_wait").is_none(),
        "exited with a request in flight"
    );

    // The request in flight is finished and answered, then the process exits 0.
    push.write_all(&BODY.as_bytes()[20..]).expect("rest");
    let answer = read_all(&mut push);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""accepted":1"#), "{answer}");
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");

    // What it acknowledged is there after a restart.
    let (_server, addr) = Server::start(&dir.path().join("store"), &[]);
    let (status, body) = super::common::get(&format!(
        "http://{addr}/v1/features/item/a?names=term_value"
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        super::common::json(&body)["features"][0]["value"],
        5,
        "{body}"
    );
}

#[test]
fn sigterm_drops_requests_still_running_after_the_grace_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, addr) = Server::start(
        &dir.path().join("store"),
        &["--shutdown-grace", "1s", "--body-timeout", "120s"],
    );
    let (status, body) = post(&format!("http://{addr}/v1/feature-definitions"), SPEC);
    assert_eq!(status, 200, "{body}");
    let mut push = start_push(&addr, 20);
    server.terminate();
    // The stalled client never finishes: the server gives up on it after the grace
    // (long before the body timeout) and exits 0.
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit status {status}");
    assert_eq!(read_all(&mut push), "", "dropped without an answer");
}
