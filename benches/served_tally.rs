//! The cost the per-feature served-value tallies (`featstore::query::tally`) add to a
//! read: one GET of 50 features adds one status to each of 50 tallies; one ranking
//! read of 500 candidates adds a 500-status column to each. Against the GET's own
//! time (`cargo bench --profile dev --bench read_path`, `get_features/hot_segment`),
//! this is the share of a read the metric takes (README, "Metrics").
//!
//! Run: `cargo bench --profile dev --bench served_tally`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use featstore::query::tally::{FeatureTally, ServedTallies};
use featstore::types::FeatureStatus;

fn bench_tallies(c: &mut Criterion) {
    let tallies = ServedTallies::default();
    let columns: Vec<Arc<FeatureTally>> = (0..50).map(|i| tallies.of(&format!("f{i}@1"))).collect();
    let one = [FeatureStatus::Present];
    let mut ranked = vec![FeatureStatus::Present; 500];
    for (i, s) in ranked.iter_mut().enumerate() {
        if i % 7 == 0 {
            *s = FeatureStatus::NotFound;
        }
    }

    let mut group = c.benchmark_group("served_tally");
    group.throughput(Throughput::Elements(50));
    group.bench_function("get_50_features", |b| {
        b.iter(|| {
            for t in &columns {
                t.add(black_box(&one));
            }
        })
    });
    group.throughput(Throughput::Elements(50 * 500));
    group.bench_function("rank_500_x_50", |b| {
        b.iter(|| {
            for t in &columns {
                t.add(black_box(&ranked));
            }
        })
    });
    let present = vec![FeatureStatus::Present; 500];
    group.bench_function("rank_500_x_50_all_present", |b| {
        b.iter(|| {
            for t in &columns {
                t.add(black_box(&present));
            }
        })
    });
    // A thread beyond the owned shards adds with locked atomic instructions.
    let shared = ServedTallies::with_shards(0);
    let shared_columns: Vec<Arc<FeatureTally>> =
        (0..50).map(|i| shared.of(&format!("f{i}@1"))).collect();
    group.throughput(Throughput::Elements(50));
    group.bench_function("get_50_features_shared_shard", |b| {
        b.iter(|| {
            for t in &shared_columns {
                t.add(black_box(&one));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_tallies);
criterion_main!(benches);
