//! Measures durable push throughput and push-to-readable latency through the library
//! API: for each producer count, producers push batches of events (each with F float
//! features of random entities) for D seconds, every push acknowledged only once its
//! WAL write is synced. Meanwhile a probe pushes one event every 2 ms from its own
//! thread while another thread reads it until it is visible: push-to-readable is the
//! time from the start of the push to the first read that returns the value.
//!
//! With RATE > 0 the producers together offer about RATE feature values/s (paced),
//! which measures latency at a given load instead of at saturation.
//!
//! With `http` as the first argument, pushes go through `POST /v1/push` of a server
//! started in-process on 127.0.0.1 (JSON encoding, HTTP and parsing included); reads
//! stay in-process.
//!
//! `featstore-bench-push [http] [SECONDS] [EVENTS_PER_PUSH] [FEATURES] [PRODUCERS,..] [RATE]`
//! (defaults 5 10 10 1,8,64 0).

/// mimalloc, as in production: per-request answer buffers are many small, short-lived
/// allocations.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use featstore::registry::{FeatureSpec, Sensitivity};
use featstore::store::PushEvent;
use featstore::types::{DType, Value, now_ms};
use featstore::{FeatureStore, StoreConfig};
use rand::{Rng, SeedableRng};

fn specs(features: usize) -> Vec<FeatureSpec> {
    (0..features)
        .map(|k| FeatureSpec {
            name: format!("live_f{k:02}"),
            version: 1,
            entity_type: "item".into(),
            group: "live".into(),
            owner: "benchmarks".into(),
            dtype: DType::Float64,
            transform_ref: None,
            freshness_slo: None,
            ttl: None,
            retention: None,
            sensitivity: Sensitivity::Internal,
            description: String::new(),
            tags: vec![],
            reuse_teams: None,
            aggregate: None,
            default: None,
            validation: Default::default(),
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How a push is sent: in-process, or over HTTP.
type PushFn = Arc<dyn Fn(Vec<PushEvent>) -> Result<()> + Send + Sync>;

fn library_push(store: Arc<FeatureStore>) -> PushFn {
    Arc::new(move |events| {
        store.push(events)?;
        Ok(())
    })
}

/// Starts the HTTP server on a runtime of its own and returns a push over HTTP.
fn http_push(store: Arc<FeatureStore>) -> Result<PushFn> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addr_tx.send(listener.local_addr()?)?;
            // Shedding off: the benchmark measures throughput at saturation, where
            // a refused push would end the run.
            let config = featstore::server::ServerConfig {
                max_queue_time: None,
                ..featstore::server::ServerConfig::default()
            };
            featstore::server::run_with(store, listener, config, std::future::pending()).await?;
            Ok(())
        })
    });
    let url = format!("http://{}/v1/push", addr_rx.recv()?);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    Ok(Arc::new(move |events: Vec<PushEvent>| {
        let events: Vec<serde_json::Value> = events
            .into_iter()
            .map(|e| {
                let features: serde_json::Map<String, serde_json::Value> = e
                    .features
                    .into_iter()
                    .map(|(name, value)| {
                        let json = match value {
                            Value::Float64(v) => serde_json::json!(v),
                            _ => serde_json::Value::Null,
                        };
                        (name, json)
                    })
                    .collect();
                serde_json::json!({"entity_type": e.entity_type, "entity_id": e.entity_id,
                    "event_time": e.event_time, "features": features})
            })
            .collect();
        let body = serde_json::json!({ "events": events }).to_string();
        let mut response = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.as_bytes())?;
        if response.status() != 200 {
            bail!(
                "push answered {}: {}",
                response.status(),
                response.body_mut().read_to_string()?
            );
        }
        Ok(())
    }))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let http = args.next_if(|a| a == "http").is_some();
    let seconds: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5.0);
    let per_push: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let features: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let producers: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 8, 64],
    };
    let rate: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(0.0);
    if per_push == 0 || features == 0 {
        bail!("events per push and features must be positive");
    }
    let dir = tempfile::tempdir()?;
    let store = Arc::new(FeatureStore::open(dir.path(), StoreConfig::default())?);
    let names: Arc<Vec<String>> =
        Arc::new(specs(features).iter().map(|s| s.name.clone()).collect());
    store.apply(specs(features))?;
    let push = if http {
        http_push(store.clone())?
    } else {
        library_push(store.clone())
    };
    println!(
        "durable pushes ({}): {per_push} events x {features} float64 features per push, {seconds} s per run, {}",
        if http { "HTTP" } else { "library" },
        if rate > 0.0 {
            format!("{rate} values/s offered")
        } else {
            "unpaced".to_owned()
        }
    );
    println!(
        "{:>9} {:>12} {:>14} {:>11} {:>11} {:>13} {:>13} {:>13}",
        "producers",
        "events/s",
        "values/s",
        "push p50",
        "push p99",
        "readable p50",
        "readable p99",
        "probe ack p99"
    );
    for &count in &producers {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers: Vec<_> = (0..count)
            .map(|p| {
                let (push, stop, names) = (push.clone(), stop.clone(), names.clone());
                std::thread::spawn(move || -> Result<(u64, Vec<Duration>)> {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(p as u64);
                    let mut events = 0u64;
                    let mut latencies = Vec::new();
                    // Seconds between pushes of this producer when paced.
                    let interval =
                        (rate > 0.0).then(|| (per_push * features * count) as f64 / rate);
                    let begun = Instant::now();
                    let mut pushes = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(interval) = interval {
                            let due = begun + Duration::from_secs_f64(interval * pushes as f64);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        pushes += 1;
                        let now = now_ms();
                        let batch: Vec<PushEvent> = (0..per_push)
                            .map(|_| PushEvent {
                                entity_type: "item".into(),
                                entity_id: format!("i{}", rng.random_range(0..1_000_000)),
                                event_time: now,
                                features: names
                                    .iter()
                                    .map(|n| (n.clone(), Value::Float64(rng.random())))
                                    .collect(),
                                event_id: None,
                            })
                            .collect();
                        let t = Instant::now();
                        push(batch)?;
                        latencies.push(t.elapsed());
                        events += per_push as u64;
                    }
                    Ok((events, latencies))
                })
            })
            .collect();
        // The probe: a pusher thread pushes one value at a time; this thread reads it
        // until visible.
        let (probe_tx, probe_rx) = std::sync::mpsc::channel::<(String, f64)>();
        let pusher = {
            let (push, names) = (push.clone(), names.clone());
            std::thread::spawn(move || -> Result<Vec<Duration>> {
                let mut acks = Vec::new();
                for (id, value) in probe_rx {
                    let t = Instant::now();
                    push(vec![PushEvent {
                        entity_type: "item".into(),
                        entity_id: id,
                        event_time: now_ms(),
                        features: vec![(names[0].clone(), Value::Float64(value))],
                        event_id: None,
                    }])?;
                    acks.push(t.elapsed());
                }
                Ok(acks)
            })
        };
        let mut readable = Vec::new();
        let mut n = 0u64;
        while started.elapsed().as_secs_f64() < seconds {
            n += 1;
            let id = format!("probe{count}-{n}");
            let t = Instant::now();
            probe_tx.send((id.clone(), n as f64))?;
            loop {
                let v = store.get_features("item", &id, &[names[0].as_str()])?;
                if v.features[0].value == Some(Value::Float64(n as f64)) {
                    break;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            readable.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(probe_tx);
        let mut acks = pusher
            .join()
            .map_err(|_| anyhow::anyhow!("probe pusher panicked"))??;
        acks.sort();
        stop.store(true, Ordering::Relaxed);
        let mut events = 0u64;
        let mut latencies = Vec::new();
        for w in workers {
            let (e, l) = w
                .join()
                .map_err(|_| anyhow::anyhow!("producer panicked"))??;
            events += e;
            latencies.extend(l);
        }
        let secs = started.elapsed().as_secs_f64();
        latencies.sort();
        readable.sort();
        println!(
            "{:>9} {:>12.0} {:>14.0} {:>9.2}ms {:>9.2}ms {:>11.2}ms {:>11.2}ms {:>11.2}ms",
            count,
            events as f64 / secs,
            (events * features as u64) as f64 / secs,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(percentile(&readable, 0.5)),
            ms(percentile(&readable, 0.99)),
            ms(percentile(&acks, 0.99)),
        );
    }
    Ok(())
}
