//! Issue 12, resource bounds of the HTTP server, against a real server on loopback:
//!
//! * request bodies had no shared memory bound: now a push that does not fit in the
//!   request memory budget waits, then gets 503 with `Retry-After`;
//! * connections that stalled mid-body were held forever, and enough of them stopped
//!   the server from accepting anything, `/healthz` included: now bodies time out
//!   (408, connection closed), connections are capped, and health checks keep a
//!   reserve of connections, or a listener of their own;
//! * nothing was shed under load: now a request that waited too long behind others,
//!   or whose deadline passed, is refused with 503 before any work, while health
//!   checks are always answered.
//!
//! Counts are small and every wait is bounded: stalled clients are loopback sockets
//! held by the test, closed when it ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use featstore::server::ServerConfig;

use super::common::{TestServer, get, item_specs, post, temp_store};

/// A server and its store's directory, removed after the server stopped.
struct Served {
    server: TestServer,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Served {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// Registers the `items` features (float64 `item_a`..) and starts a server.
fn server(config: ServerConfig) -> Served {
    server_on(config, false)
}

/// [`server`], with a health listener when `health` is set.
fn server_on(config: ServerConfig, health: bool) -> Served {
    let (dir, store) = temp_store();
    let store = Arc::new(store);
    store.apply(item_specs()).expect("apply specs");
    Served {
        server: TestServer::start_on(store, config, health),
        _dir: dir,
    }
}

/// A push body of `events` events, padded with spaces to exactly `len` bytes when given.
fn push_body(events: usize, len: Option<usize>) -> String {
    let events: Vec<String> = (0..events)
        .map(|n| {
            format!(
                r#"{{"entity_type":"item","entity_id":"i{n}","event_time":1700000000000,"features":{{"item_a":{n}}}}}"#
            )
        })
        .collect();
    let mut body = format!(r#"{{"events":[{}]}}"#, events.join(","));
    if let Some(len) = len {
        assert!(body.len() <= len, "{} > {len}", body.len());
        body.extend(std::iter::repeat_n(' ', len - body.len()));
    }
    body
}

/// A raw connection that sends a request head and part of its body, then stalls.
struct Stalled {
    stream: TcpStream,
}

impl Stalled {
    fn push(addr: SocketAddr, body: &str, sent: usize) -> Stalled {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let head = format!(
            "POST /v1/push HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        stream
            .write_all(&body.as_bytes()[..sent])
            .expect("part of the body");
        stream.flush().expect("flush");
        Stalled { stream }
    }

    /// Sends the rest of `body` (from `sent`).
    fn finish(&mut self, body: &str, sent: usize) {
        self.stream
            .write_all(&body.as_bytes()[sent..])
            .expect("rest of the body");
    }

    /// Reads until the server closes the connection (at most `wait`); returns what came.
    fn read_to_close(&mut self, wait: Duration) -> String {
        self.stream
            .set_read_timeout(Some(wait))
            .expect("read timeout");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "no close within {wait:?} ({e}); got {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The value of `metric` (a full sample name with labels) in the exposition.
fn metric(server: &TestServer, sample: &str) -> f64 {
    let (status, text) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
}

/// Sends one request on a raw connection and reads the status line and headers.
fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading {request:?}: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn pushes_share_one_memory_budget_and_the_excess_gets_503() {
    let max_body = 64 << 10;
    let config = ServerConfig {
        max_body_bytes: max_body,
        memory_wait: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    // Exactly one largest body (with its decoded estimate) fits.
    let config = ServerConfig {
        request_memory_bytes: config.min_request_memory_bytes(),
        ..config
    };
    let server = server(config);
    let big = push_body(10, Some(max_body - 1024));
    let mut first = Stalled::push(server.addr, &big, 100);
    // The first push holds its reservation while its body trickles in.
    let mut reserved = 0.0;
    for _ in 0..200 {
        reserved = metric(&server, "featstore_http_request_memory_reserved_bytes");
        if reserved > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(reserved >= big.len() as f64 * 20.0, "reserved {reserved}");

    // 2 KiB with its estimate does not fit in what is left (20 KiB).
    let small = push_body(3, Some(2 << 10));
    let answer = raw_request(
        server.addr,
        &format!(
            "POST /v1/push HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{small}",
            small.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert_eq!(
        metric(&server, r#"featstore_http_refused_total{reason="memory"}"#),
        1.0
    );

    first.finish(&big, 100);
    first
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let answer = read_response(&mut first.stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, body) = post(&server.url("/v1/push"), &small);
    assert_eq!(status, 200, "room again once the first is done: {body}");
    assert_eq!(
        metric(&server, "featstore_http_request_memory_reserved_bytes"),
        0.0
    );
    let (status, body) = post(&server.url("/v1/push"), &push_body(1, Some(max_body + 1)));
    assert_eq!(status, 413, "{body}");
}

#[test]
fn stalled_bodies_time_out_and_health_checks_keep_a_reserve() {
    let config = ServerConfig {
        max_connections: Some(12),
        health_connections: 2,
        body_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let server = server(config);
    let body = push_body(2, Some(1000));
    // Every normal slot is held by a client that stops mid-body.
    let mut stalled: Vec<Stalled> = (0..12)
        .map(|_| Stalled::push(server.addr, &body, 10))
        .collect();
    for _ in 0..200 {
        if metric(&server, "featstore_http_request_body_bytes_in_flight") >= 120.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // (The metrics scrapes above used the reserve too.)
    let (status, body_text) = get(&server.url("/healthz"));
    assert_eq!(status, 200, "{body_text}");
    let (status, _) = get(&server.url("/readyz"));
    assert_eq!(status, 200);
    // Beyond the cap, anything but a health check is refused and the connection closed.
    let answer = raw_request(server.addr, "GET /v1/groups HTTP/1.1\r\nhost: t\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // Beyond the reserve too, a connection is closed as soon as it is accepted.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let mut extra = Stalled {
        stream: TcpStream::connect(server.addr).expect("connect"),
    };
    assert_eq!(extra.read_to_close(Duration::from_secs(5)), "");
    drop(held);

    // The stalled bodies are answered 408 and closed after the body timeout.
    for s in &mut stalled {
        let answer = s.read_to_close(Duration::from_secs(10));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // Slots are free again once the server has ended those connections (just after
    // the clients saw them closed).
    let mut answer = (0, String::new());
    for _ in 0..200 {
        answer = post(&server.url("/v1/push"), &push_body(2, None));
        if answer.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(
        metric(
            &server,
            r#"featstore_http_refused_total{reason="body_timeout"}"#
        ),
        12.0
    );
    assert_eq!(
        metric(
            &server,
            r#"featstore_http_refused_total{reason="connection_limit"}"#
        ),
        1.0
    );
    assert!(metric(&server, "featstore_http_connections_refused_total") >= 1.0);
    assert_eq!(metric(&server, "featstore_http_max_connections"), 12.0);
}

#[test]
fn the_health_listener_answers_health_checks_only_whatever_the_api_holds() {
    let config = ServerConfig {
        max_connections: Some(4),
        health_connections: 4,
        ..ServerConfig::default()
    };
    let server = server_on(config, true);
    let health = server.health_addr.expect("health listener");
    // Every API connection, normal and health-only, is taken.
    let body = push_body(2, Some(1000));
    let _stalled: Vec<Stalled> = (0..4)
        .map(|_| Stalled::push(server.addr, &body, 10))
        .collect();
    let _idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let mut extra = Stalled {
        stream: TcpStream::connect(server.addr).expect("connect"),
    };
    assert_eq!(extra.read_to_close(Duration::from_secs(5)), "");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = raw_request(health, &format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    let answer = raw_request(health, "GET /v1/groups HTTP/1.1\r\nhost: t\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

#[test]
fn passed_deadlines_are_refused_before_work_but_health_checks_are_answered() {
    let server = server(ServerConfig::default());
    let answer = raw_request(
        server.addr,
        "GET /v1/features/item/i1?names=item_a HTTP/1.1\r\nhost: t\r\nx-featstore-deadline-ms: 0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    let answer = raw_request(
        server.addr,
        "GET /healthz HTTP/1.1\r\nhost: t\r\nx-featstore-deadline-ms: 0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw_request(
        server.addr,
        "GET /v1/groups HTTP/1.1\r\nhost: t\r\nx-featstore-deadline-ms: soon\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // A ranking read with `deadline_ms: 0` still means "fetch nothing", never a refusal.
    let (status, body) = post(
        &server.url("/v1/rank"),
        r#"{"candidates":{"entity_type":"item","ids":["i1"]},"features":["item_a"],"deadline_ms":0}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(
            &server,
            r#"featstore_http_refused_total{reason="deadline"}"#
        ),
        1.0
    );
}

#[test]
fn requests_that_waited_behind_a_backlog_are_shed_and_health_checks_are_not() {
    let config = ServerConfig {
        max_queue_time: Some(Duration::from_micros(300)),
        ..ServerConfig::default()
    };
    let server = server(config);
    // Bursts: every connection's request (a ranking read of 100 candidates, slower to
    // answer than to send) is written before the server can read them all, so those at
    // the back wait behind the others: the last 30 or so (the ones whose queue ahead
    // refusals can clear within the bound) are shed.
    let connections = 128;
    let ids: Vec<String> = (0..100).map(|n| format!("\"i{n}\"")).collect();
    let rank = format!(
        r#"{{"candidates":{{"entity_type":"item","ids":[{}]}},"features":["item_a","item_b","item_c","item_label"]}}"#,
        ids.join(",")
    );
    let rank_request = format!(
        "POST /v1/rank HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{rank}",
        rank.len()
    );
    let mut streams: Vec<TcpStream> = (0..connections)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let (mut ok, mut shed, mut health_ok, mut rounds) = (0, 0, 0, 0);
    while rounds < 50 && (ok == 0 || shed == 0) {
        rounds += 1;
        for (n, stream) in streams.iter_mut().enumerate() {
            let request = if n % 8 == 0 {
                "GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n"
            } else {
                rank_request.as_str()
            };
            stream.write_all(request.as_bytes()).expect("write");
        }
        for (n, stream) in streams.iter_mut().enumerate() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let head = read_response(stream);
            match (n % 8 == 0, head.get(..12).unwrap_or_default()) {
                (true, "HTTP/1.1 200") => health_ok += 1,
                (false, "HTTP/1.1 200") => ok += 1,
                (false, "HTTP/1.1 503") => {
                    assert!(
                        head.to_ascii_lowercase().contains("retry-after: 1"),
                        "{head}"
                    );
                    shed += 1;
                }
                _ => panic!("unexpected answer: {head}"),
            }
        }
    }
    assert_eq!(
        health_ok,
        rounds * connections / 8,
        "every health check answered"
    );
    assert!(shed > 0, "nothing shed ({ok} served)");
    assert!(ok > 0, "nothing served ({shed} shed)");
    assert_eq!(
        metric(
            &server,
            r#"featstore_http_refused_total{reason="queue_time"}"#
        ),
        shed as f64
    );
}

/// Reads one whole response (head and `content-length` body) from a keep-alive stream;
/// returns the head.
fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read head");
        assert!(
            n > 0,
            "closed mid-head: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&out).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("body");
    head
}
