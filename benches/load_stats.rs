//! The cost of version statistics on a load: the statistics collector alone, fed the
//! sorted stream of 200,000 entities x 50 float32 features (as `featstore-bench-load`
//! loads, values spread like `gen-matrix`'s), finishing included. Its time per value,
//! against the load's (`featstore-bench-load`, "load cpu seconds" per value), is the
//! share of a load's CPU the statistics take (docs/validation.md, "Cost").
//!
//! Run: `cargo bench --profile dev --bench load_stats`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use featstore::codec::key::encode_key_into;
use featstore::codec::value::encode_value;
use featstore::loader::sorter::SortedSink;
use featstore::types::{DType, Value};
use featstore::validate::StatsCollector;

const ENTITIES: usize = 200_000;
const FEATURES: u32 = 50;

/// The sorted stream: keys entity by entity (ids sort as their zero-padded text),
/// features ascending; values uniform in [0, 100) as float32.
fn stream() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut out = Vec::with_capacity(ENTITIES * FEATURES as usize);
    for e in 0..ENTITIES {
        let id = format!("e{e:08}");
        for f in 1..=FEATURES {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = (state >> 40) as f32 / (1u64 << 24) as f32 * 100.0;
            let mut key = Vec::new();
            encode_key_into(id.as_bytes(), f, &mut key).expect("key");
            let mut value = Vec::new();
            encode_value(&Value::Float32(x), 1_700_000_000_000, &mut value);
            out.push((key, value));
        }
    }
    out
}

fn collector() -> StatsCollector {
    StatsCollector::new(
        "bench",
        1,
        (1..=FEATURES).map(|f| (format!("f{f}"), f, DType::Float32)),
    )
}

fn bench(c: &mut Criterion) {
    let records = stream();
    let mut group = c.benchmark_group("load_stats");
    group.sample_size(10);
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("collect_and_finish", |b| {
        b.iter_batched(
            collector,
            |mut stats| {
                for (key, value) in &records {
                    stats.put(key, value).expect("put");
                }
                black_box(stats.finish())
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
