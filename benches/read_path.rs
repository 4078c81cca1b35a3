//! In-process reads of one entity's features through `FeatureStore::get_features`.
//!
//! Corpus: `FEATSTORE_BENCH_ENTITIES` entities (default 1,000,000) x 50 float32 features,
//! generated deterministically (`datagen::write_float_matrix`) and loaded once as a batch
//! version. Entities are drawn uniformly, so most reads miss the block cache's hot set.
//!
//! Run: `./tools/bench.sh read_path` (see README, "Benchmarks").

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use featstore::datagen::write_float_matrix;
use featstore::loader::LoadRequest;
use featstore::{FeatureStore, StoreConfig};

fn entities() -> u64 {
    std::env::var("FEATSTORE_BENCH_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn bench_reads(c: &mut Criterion) {
    let n = entities();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("matrix.parquet");
    let specs = write_float_matrix(&input, "matrix", n, 50, 7).expect("generate");
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let store = FeatureStore::open(dir.path().join("store"), StoreConfig::default()).expect("open");
    store.apply(specs).expect("apply");
    let record = store
        .load(&LoadRequest::new("matrix", &input), &|_| {})
        .expect("load");
    eprintln!(
        "corpus: {n} entities x 50 floats, {} SST bytes ({:.1} bytes/value)",
        record.sst_bytes,
        record.sst_bytes as f64 / record.values_stored as f64
    );

    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_entity = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        format!("e{}", rng % n)
    };

    let mut group = c.benchmark_group("get_features");
    group.throughput(Throughput::Elements(50));
    group.bench_function("50_floats_uniform", |b| {
        b.iter_batched(
            &mut next_entity,
            |id| black_box(store.get_features("item", &id, &names).expect("read")),
            criterion::BatchSize::SmallInput,
        )
    });
    let few = &names[..4];
    group.throughput(Throughput::Elements(4));
    group.bench_function("4_floats_uniform", |b| {
        b.iter_batched(
            &mut next_entity,
            |id| black_box(store.get_features("item", &id, few).expect("read")),
            criterion::BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(50));
    group.bench_function("50_floats_missing_entity", |b| {
        b.iter(|| {
            black_box(
                store
                    .get_features("item", "absent-entity", &names)
                    .expect("read"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_reads);
criterion_main!(benches);
