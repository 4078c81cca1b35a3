//! End-to-end runs of the load generator, bounded by request counts: against a real
//! featstore server started in-process, the floor, a minimal RESP server standing in
//! for Redis, and a server that never answers (the run must still stop).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use featstore::datagen::{MatrixNames, write_named_float_matrix};
use featstore::loader::LoadRequest;
use featstore::{FeatureStore, StoreConfig};
use featstore_loadgen::keys::{DistKind, KeyDist};
use featstore_loadgen::resp::{self, Reply};
use featstore_loadgen::runner::{self, Availability, RunConfig};
use featstore_loadgen::schedule::Pacing;
use featstore_loadgen::target::{Protocol, Target};
use featstore_loadgen::workload::{Encoding, EntitySet, Mix, RedisLayout, Shape, Sizes, Workload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PRODUCTS: u64 = 300;
const USERS: u64 = 30;
const FEATURES: usize = 50;

fn workload(product_feature_prefix: &str, keys: DistKind) -> Workload {
    let names = |prefix: &str| (0..FEATURES).map(|k| format!("{prefix}{k:02}")).collect();
    Workload::new(
        EntitySet {
            entity_type: "product".into(),
            id_prefix: "p".into(),
            features: names(product_feature_prefix),
            keys: KeyDist::new(keys, PRODUCTS).expect("keys"),
        },
        EntitySet {
            entity_type: "user".into(),
            id_prefix: "u".into(),
            features: names("uf"),
            keys: KeyDist::new(keys, USERS).expect("keys"),
        },
        Sizes {
            get_features: FEATURES,
            user_features: FEATURES,
            candidates: 10,
            push_events: 2,
            push_features: 5,
        },
    )
    .expect("workload")
}

fn config(addr: SocketAddr, protocol: Protocol, mix: &str, requests: u64) -> RunConfig {
    RunConfig {
        target: Target { protocol, addr },
        system: "test".into(),
        mix: mix.parse::<Mix>().expect("mix"),
        pacing: Pacing::Closed,
        connections: 4,
        duration: Duration::from_secs(60),
        max_requests: requests,
        timeout: Duration::from_secs(10),
        seed: 3,
        keys_label: "zipf:0.99".into(),
    }
}

/// A store holding products p0.. (pf00..pf49) and users u0.. (uf00..uf49).
fn loaded_store(dir: &std::path::Path) -> FeatureStore {
    let store = FeatureStore::open(dir.join("store"), StoreConfig::default()).expect("open");
    for (group, entity_type, id_prefix, feature_prefix, n) in [
        ("bench_product", "product", "p", "pf", PRODUCTS),
        ("bench_user", "user", "u", "uf", USERS),
    ] {
        let path = dir.join(format!("{group}.csv"));
        let names = MatrixNames {
            group,
            entity_type,
            id_prefix,
            feature_prefix,
        };
        let specs = write_named_float_matrix(&path, &names, n, FEATURES, 7).expect("data");
        store.apply(specs).expect("apply");
        store
            .load(&LoadRequest::new(group, &path), &|_| {})
            .expect("load");
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_get_run_against_featstore_counts_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(loaded_store(dir.path()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(featstore::server::run(store, listener, async {
        let _ = stop_rx.await;
    }));

    let w = Arc::new(workload("pf", DistKind::Zipf(0.99)));
    let result = runner::run(&config(addr, Protocol::Http, "get", 300), w.clone())
        .await
        .expect("run");
    assert_eq!(result.requests, 300);
    assert_eq!(result.ok, 300, "{result:?}");
    assert_eq!(result.errors.total(), 0);
    assert_eq!(result.shape, "get");
    assert_eq!(result.mode, "closed");
    // 50 features of about 80 bytes of JSON each.
    assert!(
        result.mean_response_bytes > 3000.0,
        "{}",
        result.mean_response_bytes
    );
    let rows = result.rows_per_s * result.elapsed_s;
    assert!((rows - 300.0).abs() < 1.0, "{rows}");
    assert!(
        result.p50_us > 0.0 && result.p50_us <= result.p99_us && result.p99_us <= result.max_us
    );

    let target = Target {
        protocol: Protocol::Http,
        addr,
    };
    let probe = runner::probe(&target, &w, Shape::Get, Duration::from_secs(10)).await;
    assert_eq!(probe.expect("probe"), Availability::Available);
    // Unknown features are a 404 on featstore: such a shape counts as not available.
    let unknown = workload("nosuch", DistKind::Uniform);
    match runner::probe(&target, &unknown, Shape::Get, Duration::from_secs(10)).await {
        Ok(Availability::NotAvailable { status: 404, .. }) => {}
        other => panic!("expected not available, got {other:?}"),
    }
    // And a measured run of it counts 4xx errors, not answers.
    let result = runner::run(&config(addr, Protocol::Http, "get", 20), Arc::new(unknown))
        .await
        .expect("run");
    assert_eq!((result.ok, result.errors.http_4xx), (0, 20));

    // Ranking reads in both encodings: every one answered, and the binary form (which
    // featstore only sends when asked with its Accept header) is the smaller answer.
    let json = runner::run(&config(addr, Protocol::Http, "rank", 40), w.clone())
        .await
        .expect("run");
    let binary_workload =
        Arc::new(workload("pf", DistKind::Zipf(0.99)).with_encoding(Encoding::Binary));
    let binary = runner::run(&config(addr, Protocol::Http, "rank", 40), binary_workload)
        .await
        .expect("run");
    assert_eq!((json.ok, binary.ok), (40, 40), "{json:?} {binary:?}");
    assert!(
        binary.mean_response_bytes < json.mean_response_bytes * 0.75,
        "binary {} vs json {}",
        binary.mean_response_bytes,
        json.mean_response_bytes
    );

    let _ = stop_tx.send(());
    server.await.expect("join").expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_against_the_floor_keeps_the_schedule_and_the_body_size() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let floor = tokio::spawn(featstore_loadgen::floor::serve(
        listener,
        featstore_loadgen::floor::body_of(1234),
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut cfg = config(addr, Protocol::Http, "get=2,rank=1,push=1", 200);
    cfg.pacing = Pacing::Open { rate: 2000.0 };
    cfg.connections = 2;
    let result = runner::run(&cfg, Arc::new(workload("pf", DistKind::Uniform)))
        .await
        .expect("run");
    assert_eq!((result.requests, result.ok), (200, 200), "{result:?}");
    assert_eq!(result.mean_response_bytes, 1234.0);
    assert_eq!(result.mode, "open");
    assert_eq!(result.rate, Some(2000.0));
    assert_eq!(result.shape, "get=2,rank=1,push=1");
    // Request 199 is not sent before its intended time, 99.5 ms in.
    assert!(result.elapsed_s >= 0.0995, "{}", result.elapsed_s);
    let _ = stop_tx.send(());
    floor.await.expect("join").expect("floor");
}

/// A minimal Redis: answers HMGET with one bulk string per field, HSET with the
/// number of fields, and anything else with an error reply.
/// A packed row of 50 float32 as a RESP bulk string.
fn packed_row() -> Vec<u8> {
    let mut out = b"$200\r\n".to_vec();
    out.extend(std::iter::repeat_n(0u8, 200));
    out.extend_from_slice(b"\r\n");
    out
}

async fn fake_redis(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            loop {
                let Ok(n) = stream.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let mut out = Vec::new();
                let mut at = 0;
                while let Ok(Some((reply, used))) = resp::decode(&buf[at..]) {
                    at += used;
                    let Reply::Array(Some(args)) = reply else {
                        return;
                    };
                    let name = match args.first() {
                        Some(Reply::Bulk(Some(b))) => b.clone(),
                        _ => return,
                    };
                    match name.as_slice() {
                        b"HMGET" => {
                            out.extend_from_slice(format!("*{}\r\n", args.len() - 2).as_bytes());
                            for _ in 2..args.len() {
                                out.extend_from_slice(b"$3\r\n0.5\r\n");
                            }
                        }
                        b"HSET" => out
                            .extend_from_slice(format!(":{}\r\n", (args.len() - 2) / 2).as_bytes()),
                        b"SET" => out.extend_from_slice(b"+OK\r\n"),
                        b"SETRANGE" => out.extend_from_slice(b":200\r\n"),
                        b"GET" => out.extend_from_slice(&packed_row()),
                        b"MGET" => {
                            out.extend_from_slice(format!("*{}\r\n", args.len() - 1).as_bytes());
                            for _ in 1..args.len() {
                                out.extend_from_slice(&packed_row());
                            }
                        }
                        _ => out.extend_from_slice(b"-ERR unknown command\r\n"),
                    }
                }
                buf.drain(..at);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pipelines_count_one_request_per_ranking_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(fake_redis(listener));
    let w = Arc::new(workload("pf", DistKind::Zipf(1.1)));
    let result = runner::run(&config(addr, Protocol::Redis, "rank", 50), w.clone())
        .await
        .expect("run");
    assert_eq!((result.requests, result.ok), (50, 50), "{result:?}");
    // 1 user + 10 candidates per request.
    let rows = result.rows_per_s * result.elapsed_s;
    assert!((rows - 550.0).abs() < 1.0, "{rows}");
    // 11 arrays: 11 headers of 5 bytes and 11 x 50 bulk strings of 9 bytes.
    assert_eq!(result.mean_response_bytes, (11 * 5 + 11 * 50 * 9) as f64);

    let result = runner::run(&config(addr, Protocol::Redis, "get=1,push=1", 100), w)
        .await
        .expect("run");
    assert_eq!((result.ok, result.errors.total()), (100, 0), "{result:?}");

    // The packed layout: one MGET per ranking read, whose one reply is an array of 11
    // bulk strings of 200 bytes (208 with their framing).
    let packed =
        Arc::new(workload("pf", DistKind::Zipf(1.1)).with_redis_layout(RedisLayout::Packed));
    let result = runner::run(&config(addr, Protocol::Redis, "rank", 50), packed.clone())
        .await
        .expect("run");
    assert_eq!((result.requests, result.ok), (50, 50), "{result:?}");
    assert_eq!(result.mean_response_bytes, (5 + 11 * 208) as f64);
    let result = runner::run(&config(addr, Protocol::Redis, "get=1,push=1", 100), packed)
        .await
        .expect("run");
    assert_eq!((result.ok, result.errors.total()), (100, 0), "{result:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_the_run_stops() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut cfg = config(addr, Protocol::Http, "get", 1_000_000);
    cfg.duration = Duration::from_millis(600);
    cfg.timeout = Duration::from_millis(200);
    cfg.connections = 2;
    let result = runner::run(&cfg, Arc::new(workload("pf", DistKind::Uniform)))
        .await
        .expect("run stops");
    assert_eq!(result.ok, 0);
    assert!(result.errors.timeout >= 2, "{result:?}");
    assert_eq!(result.errors.total(), result.requests);
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_load_sends_every_row_and_names_the_bad_line() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(fake_redis(listener));
    let dir = tempfile::tempdir().expect("tempdir");
    let names = MatrixNames {
        group: "bench_product",
        entity_type: "product",
        id_prefix: "p",
        feature_prefix: "pf",
    };
    let csv = dir.path().join("products.csv");
    // More rows than one pipeline holds, so several pipelines and a partial last one.
    write_named_float_matrix(&csv, &names, 1_234, 5, 7).expect("data");
    let rows = featstore_loadgen::redis_load::load_csv(addr, &csv, "product", RedisLayout::Hash)
        .await
        .expect("load");
    assert_eq!(rows, 1_234);

    let ragged = dir.path().join("ragged.csv");
    std::fs::write(
        &ragged,
        "entity_id,event_time,a,b\np0,1,0.5,0.25\np1,1,0.5\n",
    )
    .expect("write");
    let err = featstore_loadgen::redis_load::load_csv(addr, &ragged, "product", RedisLayout::Hash)
        .await
        .expect_err("ragged");
    assert!(err.to_string().contains("line 3"), "{err}");
    let headless = dir.path().join("headless.csv");
    std::fs::write(&headless, "id,a\np0,1\n").expect("write");
    assert!(
        featstore_loadgen::redis_load::load_csv(addr, &headless, "product", RedisLayout::Hash)
            .await
            .is_err()
    );
    // The packed layout sends the same rows, one SET each, and refuses a cell that is
    // not a float, naming the line and the column.
    let rows = featstore_loadgen::redis_load::load_csv(addr, &csv, "product", RedisLayout::Packed)
        .await
        .expect("packed load");
    assert_eq!(rows, 1_234);
    let text = dir.path().join("text.csv");
    std::fs::write(&text, "entity_id,event_time,a,b\np0,1,0.5,\np1,1,0.5,red\n").expect("write");
    let err = featstore_loadgen::redis_load::load_csv(addr, &text, "product", RedisLayout::Packed)
        .await
        .expect_err("not a float");
    assert!(
        err.to_string().contains("line 3") && err.to_string().contains("column b"),
        "{err}"
    );
    server.abort();
}
