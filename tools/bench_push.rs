//! Measures durable push throughput and push-to-readable latency through the library
//! API: for each producer count, producers push batches of events (each with F float
//! features of random entities) for D seconds, every push acknowledged only once its
//! WAL write is synced; meanwhile a probe pushes one event at a time and reads it back,
//! timing push-to-readable.
//!
//! `featstore-bench-push [SECONDS] [EVENTS_PER_PUSH] [FEATURES] [PRODUCERS,..]`
//! (defaults 5 10 10 1,8,64).

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
            sensitivity: Sensitivity::Internal,
            description: String::new(),
            tags: vec![],
            aggregate: None,
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

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5.0);
    let per_push: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let features: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let producers: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 8, 64],
    };
    if per_push == 0 || features == 0 {
        bail!("events per push and features must be positive");
    }
    let dir = tempfile::tempdir()?;
    let store = Arc::new(FeatureStore::open(dir.path(), StoreConfig::default())?);
    let names: Arc<Vec<String>> =
        Arc::new(specs(features).iter().map(|s| s.name.clone()).collect());
    store.apply(specs(features))?;
    println!(
        "durable pushes: {per_push} events x {features} float64 features per push, {seconds} s per run"
    );
    println!(
        "{:>9} {:>12} {:>14} {:>11} {:>11} {:>13} {:>13}",
        "producers", "events/s", "values/s", "push p50", "push p99", "readable p50", "readable p99"
    );
    for &count in &producers {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers: Vec<_> = (0..count)
            .map(|p| {
                let (store, stop, names) = (store.clone(), stop.clone(), names.clone());
                std::thread::spawn(move || -> Result<(u64, Vec<Duration>)> {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(p as u64);
                    let mut events = 0u64;
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
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
                        store.push(batch)?;
                        latencies.push(t.elapsed());
                        events += per_push as u64;
                    }
                    Ok((events, latencies))
                })
            })
            .collect();
        // The probe: push one value, read until it is visible.
        let mut readable = Vec::new();
        let mut n = 0u64;
        while started.elapsed().as_secs_f64() < seconds {
            n += 1;
            let id = format!("probe{n}");
            let t = Instant::now();
            store.push(vec![PushEvent {
                entity_type: "item".into(),
                entity_id: id.clone(),
                event_time: now_ms(),
                features: vec![(names[0].clone(), Value::Float64(n as f64))],
                event_id: None,
            }])?;
            loop {
                let v = store.get_features("item", &id, &[names[0].as_str()])?;
                if v.features[0].value == Some(Value::Float64(n as f64)) {
                    break;
                }
            }
            readable.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
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
            "{:>9} {:>12.0} {:>14.0} {:>9.2}ms {:>9.2}ms {:>11.2}ms {:>11.2}ms",
            count,
            events as f64 / secs,
            (events * features as u64) as f64 / secs,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(percentile(&readable, 0.5)),
            ms(percentile(&readable, 0.99)),
        );
    }
    Ok(())
}
