//! In-process ranking reads: one user and one retailer in the context, 500 candidate
//! products x 50 float32 features + 2 on-demand similarity features (cosine of user
//! and product embeddings, dot product of retailer and product embeddings), answered
//! from the hot segment and from RocksDB; and the cost of encoding the answer as JSON
//! and in the binary form.
//!
//! Corpus: `FEATSTORE_BENCH_PRODUCTS` products (default 100,000), generated
//! deterministically (`datagen::ranking`). Throughput is in entity rows (candidates).
//!
//! Run: `cargo bench --profile dev --bench ranking` (see README, "Benchmarks").

#![allow(missing_docs)] // criterion's macros generate undocumented items

/// The allocator the `featstore` binary runs with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use featstore::api::{rank_binary, rank_json};
use featstore::datagen::ranking::{RankingCorpus, ranking_request, write_ranking_corpus};
use featstore::loader::LoadRequest;
use featstore::query::rank::RankRequest;
use featstore::store::PushEvent;
use featstore::types::{Value, now_ms};
use featstore::{FeatureStore, StoreConfig};

const CANDIDATES: usize = 500;

fn products() -> u64 {
    std::env::var("FEATSTORE_BENCH_PRODUCTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn load(dir: &std::path::Path, corpus: &RankingCorpus, hot_segment_bytes: u64) -> FeatureStore {
    let config = StoreConfig {
        hot_segment_bytes,
        ..StoreConfig::default()
    };
    let store = FeatureStore::open(dir, config).expect("open");
    store.apply_objects(corpus.registry.clone()).expect("apply");
    for (group, path) in &corpus.loads {
        store
            .load(&LoadRequest::new(group.clone(), path), &|_| {})
            .expect("load");
    }
    store
}

fn request(n: u64, corpus: &RankingCorpus) -> RankRequest {
    ranking_request(n, corpus.products, &corpus.feature_names, CANDIDATES)
}

fn bench_ranking(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus =
        write_ranking_corpus(&dir.path().join("data"), products(), 50, 32, 7).expect("corpus");
    let hot = load(&dir.path().join("hot"), &corpus, 4 << 30);
    let cold = load(&dir.path().join("cold"), &corpus, 0);
    assert_eq!(
        hot.hot_segment_entities("bench_products"),
        Some(corpus.products as usize)
    );

    // The same data, plus one streamed value of one product feature: the group then
    // has a stream column family, which every ranking read merges.
    let streamed = load(&dir.path().join("streamed"), &corpus, 4 << 30);
    streamed
        .push(vec![PushEvent {
            entity_type: "product".into(),
            entity_id: "p0".into(),
            event_time: now_ms(),
            features: vec![(corpus.feature_names[0].clone(), Value::Float32(1.0))],
            event_id: None,
        }])
        .expect("push");

    // Warm the RocksDB store's block cache (its rows fit the default 512 MiB cache up to
    // about 2M products): enough requests that nearly every product was read; the
    // first of them give the cold-cache figure.
    let mut first = Vec::new();
    let warm_requests = corpus.products * 4 / CANDIDATES as u64;
    for n in 0..warm_requests {
        let req = request(n + 1_000_000, &corpus);
        let started = std::time::Instant::now();
        black_box(cold.rank(req).expect("rank"));
        if n < 20 {
            first.push(started.elapsed());
        }
    }
    first.sort_unstable();
    if let Some(median) = first.get(first.len() / 2) {
        eprintln!(
            "rocksdb cold block cache, 500x(50+2): median {:.2} ms over the first {} requests",
            median.as_secs_f64() * 1e3,
            first.len()
        );
    }

    let mut group = c.benchmark_group("rank");
    group.throughput(Throughput::Elements(CANDIDATES as u64));
    for (label, store) in [
        ("hot_segment", &hot),
        ("hot_segment_streamed_group", &streamed),
        ("rocksdb", &cold),
    ] {
        let mut n = 0u64;
        group.bench_function(format!("{label}/500x(50+2)"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    request(n, &corpus)
                },
                |req| black_box(store.rank(req).expect("rank")),
                BatchSize::SmallInput,
            )
        });
    }
    let answer = hot.rank(request(1, &corpus)).expect("rank");
    group.bench_function("encode_json/500x(50+2)", |b| {
        b.iter(|| black_box(rank_json::encode_json(&answer)))
    });
    group.bench_function("encode_binary/500x(50+2)", |b| {
        b.iter(|| black_box(rank_binary::encode(&answer)))
    });
    group.finish();
    eprintln!(
        "response sizes: json {} bytes, binary {} bytes",
        rank_json::encode_json(&answer).len(),
        rank_binary::encode(&answer).len()
    );
}

criterion_group!(benches, bench_ranking);
criterion_main!(benches);
