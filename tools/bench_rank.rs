//! Ranking requests over HTTP on loopback: starts `featstore::server::run` in-process on
//! an ephemeral port, loads the ranking corpus (products x 50 float32 features +
//! 32-dim embeddings for products, users and retailers), then sends requests of
//! 1 user + 1 retailer + 500 products x (50 features + 2 on-demand similarity
//! features) one after another on one keep-alive connection, in JSON and in the binary
//! encoding, and prints latency percentiles and entity rows per second.
//!
//! `featstore-bench-rank [PRODUCTS] [REQUESTS] [SERVER_THREADS]` (defaults 100000 2000 2);
//! `FEATSTORE_BENCH_ENCODINGS=binary` (or `json`) measures one encoding only;
//! `FEATSTORE_BENCH_CANDIDATES=N` sends N candidates instead of 500 (1: the round trip
//! with almost no work, the HTTP floor of the machine at that moment).
//!
//! Latency is measured by the client: from writing the request to having read the whole
//! response body. "Rows/s per CPU" divides the rows answered by the CPU time of the whole
//! process (server and client together, from /proc/self/stat), a conservative per-core
//! figure.

/// mimalloc, as in production: per-request answer buffers are many small, short-lived
/// allocations.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use featstore::api::rank_json::BINARY_CONTENT_TYPE;
use featstore::datagen::ranking::{ranking_request_json, write_ranking_corpus};
use featstore::loader::LoadRequest;
use featstore::{FeatureStore, StoreConfig};

#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;

/// Candidates per request unless `FEATSTORE_BENCH_CANDIDATES` says otherwise.
const CANDIDATES: usize = 500;
const DISTINCT_BODIES: u64 = 64;

/// One HTTP/1.1 keep-alive connection speaking just enough of the protocol.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Client {
    fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::with_capacity(1 << 20, stream.try_clone()?),
            writer: stream,
            addr,
        })
    }

    /// POSTs `body` and returns (status, response body length).
    fn post(&mut self, path: &str, body: &str, accept: &str) -> Result<(u16, usize)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: {accept}\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.context("no content-length")?;
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, length))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let products: u64 = measure::arg(&args, 0, 100_000)?;
    let requests: usize = measure::arg(&args, 1, 2000)?;
    let threads: usize = measure::arg(&args, 2, 2)?;

    let candidates: usize = match std::env::var("FEATSTORE_BENCH_CANDIDATES") {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("FEATSTORE_BENCH_CANDIDATES `{v}` is not a number"))?,
        Err(_) => CANDIDATES,
    };
    let temp = tempfile::tempdir()?;
    let started = Instant::now();
    let corpus = write_ranking_corpus(&temp.path().join("data"), products, 50, 32, 7)?;
    let store = FeatureStore::open(temp.path().join("store"), StoreConfig::default())?;
    store.apply_objects(corpus.registry.clone())?;
    for (group, path) in &corpus.loads {
        store.load(&LoadRequest::new(group.clone(), path), &|_| {})?;
    }
    eprintln!(
        "loaded {products} products x 50 floats + embeddings in {:.1}s; hot segment: {:?} products",
        started.elapsed().as_secs_f64(),
        store.hot_segment_entities("bench_products")
    );

    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let store = Arc::new(store);
    let server = std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addr_tx.send(listener.local_addr()?)?;
            // Shedding off: the benchmark measures latency and throughput at
            // saturation, not refusals.
            let config = featstore::server::ServerConfig {
                max_queue_time: None,
                ..featstore::server::ServerConfig::default()
            };
            featstore::server::run_with(store, listener, config, async {
                let _ = stop_rx.await;
            })
            .await?;
            Ok(())
        })
    });
    let addr = addr_rx.recv().context("server did not start")?;
    let bodies: Vec<String> = (0..DISTINCT_BODIES)
        .map(|n| ranking_request_json(n, &corpus, candidates))
        .collect();

    println!(
        "request: 1 user + 1 retailer + {candidates} products x ({} features: 50 float32 + 2 on-demand), {requests} requests, one connection, {threads} server threads",
        corpus.feature_names.len()
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>16}",
        "encoding", "median", "p90", "p99", "max", "mean", "resp bytes", "rows/s per CPU"
    );
    // `FEATSTORE_BENCH_ENCODINGS=binary` (or `json`) runs one encoding only.
    let only = std::env::var("FEATSTORE_BENCH_ENCODINGS").unwrap_or_default();
    for (label, accept) in [
        ("json", "application/json"),
        ("binary", BINARY_CONTENT_TYPE),
    ] {
        if !only.is_empty() && !only.split(',').any(|e| e.trim() == label) {
            continue;
        }
        let mut client = Client::connect(addr)?;
        let mut size = 0;
        for (i, body) in bodies.iter().cycle().take(requests / 10 + 1).enumerate() {
            let (status, len) = client.post("/v1/rank", body, accept)?;
            if status != 200 {
                bail!("warm-up request {i} answered {status}");
            }
            size = len;
        }
        let mut latencies = Vec::with_capacity(requests);
        let cpu_before = measure::process_cpu_secs();
        let wall = Instant::now();
        for body in bodies.iter().cycle().take(requests) {
            let t = Instant::now();
            let (status, _) = client.post("/v1/rank", body, accept)?;
            latencies.push(t.elapsed());
            if status != 200 {
                bail!("request answered {status}");
            }
        }
        let wall = wall.elapsed().as_secs_f64();
        let cpu = measure::process_cpu_secs()
            .zip(cpu_before)
            .map(|(after, before)| after - before)
            .filter(|c| *c > 0.0)
            .unwrap_or(wall);
        latencies.sort_unstable();
        let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;
        let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
        println!(
            "{label:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {size:>12} {:>16.0}",
            us(percentile(&latencies, 0.5)),
            us(percentile(&latencies, 0.9)),
            us(percentile(&latencies, 0.99)),
            us(percentile(&latencies, 1.0)),
            us(mean),
            (requests * candidates) as f64 / cpu,
        );
        eprintln!(
            "  {label}: {:.0} rows/s wall on one connection; process CPU {:.2}s over {:.2}s",
            (requests * candidates) as f64 / wall,
            cpu,
            wall
        );
    }
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    Ok(())
}
