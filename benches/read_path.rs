//! In-process reads of one entity's features through `FeatureStore::get_features` (the
//! row view: one owned reading per feature) and `FeatureStore::get_entity` (the
//! columnar answer the server encodes), answered from the hot segment and from
//! RocksDB, on the same data.
//!
//! Corpus: `FEATSTORE_BENCH_ENTITIES` entities (default 1,000,000) x 50 float32 features,
//! generated deterministically (`datagen::write_float_matrix`) and loaded twice: into a
//! store whose hot segment holds every entity, and into one with hot segments disabled.
//! Entities are drawn uniformly at random. `FEATSTORE_BENCH_BLOCK_CACHE_MIB` sets the
//! block cache (default 512 MiB: the warm figures need the data to fit, about 250 MB
//! per million entities).
//!
//! Run: `./tools/bench.sh` (see README, "Benchmarks").

#![allow(missing_docs)] // criterion's macros generate undocumented items

/// The allocator the `featstore` binary runs with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use featstore::datagen::write_float_matrix;
use featstore::loader::LoadRequest;
use featstore::query::Names;
use featstore::{FeatureStore, StoreConfig};

fn entities() -> u64 {
    std::env::var("FEATSTORE_BENCH_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The block cache: `FEATSTORE_BENCH_BLOCK_CACHE_MIB` (default 512 MiB, the store's
/// default). Above about 2M entities the data outgrows the default, and the "warm"
/// figures are then of a partly cold cache unless this is raised.
fn block_cache_bytes() -> usize {
    std::env::var("FEATSTORE_BENCH_BLOCK_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(StoreConfig::default().block_cache_bytes, |mib| mib << 20)
}

fn load(
    dir: &std::path::Path,
    name: &str,
    input: &std::path::Path,
    specs: Vec<featstore::registry::FeatureSpec>,
    hot_segment_bytes: u64,
) -> FeatureStore {
    let config = StoreConfig {
        hot_segment_bytes,
        block_cache_bytes: block_cache_bytes(),
        ..StoreConfig::default()
    };
    let store = FeatureStore::open(dir.join(name), config).expect("open");
    store.apply(specs).expect("apply");
    let record = store
        .load(&LoadRequest::new("matrix", input), &|_| {})
        .expect("load");
    let segment = store
        .versions("matrix")
        .expect("versions")
        .versions
        .last()
        .and_then(|v| v.segment.clone());
    eprintln!(
        "{name}: {} values, {} SST bytes ({:.2}/value), segment: {}",
        record.values_stored,
        record.sst_bytes,
        record.sst_bytes as f64 / record.values_stored as f64,
        segment.map_or("none".to_owned(), |s| format!(
            "{} entities, {} bytes ({:.0}/entity, raw values 200/entity)",
            s.entities,
            s.bytes,
            s.bytes as f64 / s.entities as f64
        )),
    );
    store
}

fn bench_reads(c: &mut Criterion) {
    let n = entities();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("matrix.parquet");
    let specs = write_float_matrix(&input, "matrix", n, 50, 7).expect("generate");
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let hot = load(dir.path(), "hot", &input, specs.clone(), 4 << 30);
    let cold = load(dir.path(), "rocksdb", &input, specs, 0);
    assert_eq!(hot.hot_segment_entities("matrix"), Some(n as usize));

    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_entity = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        format!("e{}", rng % n)
    };

    // The cold-cache figure: the first reads of the RocksDB store, before its block
    // cache holds the blocks they touch (the OS page cache may hold the files). 10,000
    // random reads over about 60,000 data blocks per million entities: most are first
    // touches. Then every entity is read once, so the measured runs below see a warm
    // block cache (the data, about 250 MB per million entities, fits the 512 MiB cache).
    let mut first = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let id = next_entity();
        let started = std::time::Instant::now();
        black_box(cold.get_features("item", &id, &names).expect("read"));
        first.push(started.elapsed());
    }
    first.sort_unstable();
    eprintln!(
        "rocksdb cold block cache, 50 floats: median {:.1} µs, p99 {:.1} µs over {} first reads",
        first[first.len() / 2].as_secs_f64() * 1e6,
        first[first.len() * 99 / 100].as_secs_f64() * 1e6,
        first.len()
    );
    for e in 0..n {
        black_box(
            cold.get_features("item", &format!("e{e}"), &names[..1])
                .expect("read"),
        );
    }

    let mut group = c.benchmark_group("get_features");
    group.throughput(Throughput::Elements(50));
    for (label, store) in [("hot_segment", &hot), ("rocksdb", &cold)] {
        group.bench_function(format!("{label}/50_floats"), |b| {
            b.iter_batched(
                &mut next_entity,
                |id| black_box(store.get_features("item", &id, &names).expect("read")),
                BatchSize::SmallInput,
            )
        });
    }
    // The columnar answer (`get_entity`), which the server encodes: the same read
    // without the row view's one owned reading per feature.
    let listed: Vec<&str> = names.iter().map(String::as_str).collect();
    for (label, store) in [("hot_segment", &hot), ("rocksdb", &cold)] {
        group.bench_function(format!("{label}/50_floats_columnar"), |b| {
            b.iter_batched(
                &mut next_entity,
                |id| {
                    black_box(
                        store
                            .get_entity("item", &id, Names::List(&listed))
                            .expect("read"),
                    )
                },
                BatchSize::SmallInput,
            )
        });
    }
    let few = &names[..4];
    group.throughput(Throughput::Elements(4));
    for (label, store) in [("hot_segment", &hot), ("rocksdb", &cold)] {
        group.bench_function(format!("{label}/4_floats"), |b| {
            b.iter_batched(
                &mut next_entity,
                |id| black_box(store.get_features("item", &id, few).expect("read")),
                BatchSize::SmallInput,
            )
        });
    }
    group.throughput(Throughput::Elements(50));
    group.bench_function("rocksdb/50_floats_missing_entity", |b| {
        b.iter(|| {
            black_box(
                cold.get_features("item", "absent-entity", &names)
                    .expect("read"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_reads);
criterion_main!(benches);
