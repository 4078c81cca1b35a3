//! Probe latency of hot segment files, and the index choice behind it.
//!
//! One segment of 1,000,000 entities x 50 float32 fields (ids `user:0000000`..), built
//! in memory and also written to a temp file and mapped. Each iteration looks up one id
//! and copies all 50 fields (value and event time) into a caller's buffer, as a ranking
//! host fills its feature vector. The ids to look up are precomputed, so the loop itself
//! touches memory sequentially.
//!
//! `probe/find+read50/*`: ids drawn uniformly (every lookup misses the CPU caches: the
//! worst case), from Zipf(0.99) over randomly placed entities (popular products and
//! active users, as ranking traffic is), and from a 1,000-entity segment that stays in
//! L2 (a hot entity: the CPU cost alone). `probe/find+read50/batch500_*`: a ranking
//! request of 500 ids (uniform or Zipf) with all 50 fields of each read, by a loop of
//! `find` and by one `find_batch`; criterion reports time per request and ids/s
//! (divide the median by 500 for time per id). `index+read50/*` compares the segment's
//! open-addressing index with the alternatives it was chosen over, reading the same 50
//! fields of the same mapped rows: a std `HashMap` built at open (SipHash) and binary
//! search over sorted ids (what a sorted, fst- or sparkey-like layout costs).
//!
//! Run: `CARGO_TARGET_DIR=$HOME/.cache/featstore-format-target cargo bench -p
//! featstore-format --bench segment_probe`. Medians are in
//! `$CARGO_TARGET_DIR/criterion/*/new/estimates.json`.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use featstore_format::segment::{
    FieldInput, FieldSpec, FieldValue, MappedSegment, Row, Segment, SegmentWriter, ValueRef,
};
use featstore_format::types::DType;

const ENTITIES: usize = 1_000_000;
const FIELDS: usize = 50;
const ID_LEN: usize = 12;
/// Entities of the cache-resident comparison segment (about 0.7 MB).
const SMALL_ENTITIES: usize = 1_000;
/// Lookups prepared per benchmark, cycled through.
const LOOKUPS: usize = 1 << 20;

fn id(i: usize) -> [u8; ID_LEN] {
    let mut out = *b"user:0000000";
    let mut n = i;
    for slot in out[5..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// xorshift64*: deterministic lookup order.
fn random_indices(count: usize, below: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) % below as u64) as usize
        })
        .collect()
}

fn build(entities: usize) -> Vec<u8> {
    let fields = (1..=FIELDS as u32)
        .map(|feature_id| FieldSpec {
            feature_id,
            field_type: DType::Float32,
        })
        .collect();
    let mut writer = SegmentWriter::new("bench.hot", 1, fields).expect("schema");
    let mut row = Vec::with_capacity(FIELDS);
    for i in 0..entities {
        row.clear();
        row.extend((0..FIELDS).map(|f| {
            Some((
                1_763_700_000_000,
                FieldInput::Float32((i * FIELDS + f) as f32 * 1e-3),
            ))
        }));
        writer.push(&id(i), &row).expect("push");
    }
    writer.finish_to_vec().expect("finish")
}

/// What a ranking host does with a row: copies every field's value and event time into
/// its own feature buffer (NaN and time 0 for a missing value).
#[inline]
fn read_fields(row: &Row<'_>, out: &mut [(f32, i64); FIELDS]) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = match row.get(i) {
            FieldValue::Present {
                value: ValueRef::Float32(x),
                event_time,
            } => (x, event_time),
            _ => (f32::NAN, 0),
        };
    }
}

/// Zipf(`s`) ranks over `below` entities, each rank mapped to a random entity so hot
/// entities are scattered over the file, as in a real version.
fn zipf_indices(count: usize, below: usize, s: f64, seed: u64) -> Vec<usize> {
    let mut cumulative = Vec::with_capacity(below);
    let mut total = 0.0;
    for rank in 1..=below {
        total += 1.0 / (rank as f64).powf(s);
        cumulative.push(total);
    }
    let mut entity_of_rank: Vec<usize> = (0..below).collect();
    for (i, j) in random_indices(below, below, seed ^ 0x5555)
        .into_iter()
        .enumerate()
    {
        entity_of_rank.swap(i, j);
    }
    random_indices(count, 1 << 30, seed)
        .into_iter()
        .map(|r| {
            let target = r as f64 / (1u64 << 30) as f64 * total;
            let rank = cumulative.partition_point(|&c| c < target).min(below - 1);
            entity_of_rank[rank]
        })
        .collect()
}

/// Per-lookup latency percentiles, which criterion's per-iteration means cannot give
/// for a skewed mix of cache hits and misses: each lookup timed alone with `Instant`,
/// after subtracting the median cost of timing an empty region.
fn print_lookup_percentiles<D: AsRef<[u8]>>(
    name: &str,
    segment: &Segment<D>,
    ids: &[[u8; ID_LEN]],
) {
    const SAMPLES: usize = 200_000;
    let mut empty: Vec<u64> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            black_box(());
            started.elapsed().as_nanos() as u64
        })
        .collect();
    empty.sort_unstable();
    let overhead = empty[SAMPLES / 2];
    let mut out = [(0.0, 0); FIELDS];
    let mut took: Vec<u64> = ids
        .iter()
        .cycle()
        .take(SAMPLES)
        .map(|id| {
            let started = Instant::now();
            if let Some(row) = segment.find(black_box(id)) {
                read_fields(&row, &mut out);
            }
            black_box(&mut out);
            (started.elapsed().as_nanos() as u64).saturating_sub(overhead)
        })
        .collect();
    took.sort_unstable();
    let at = |q: f64| took[((SAMPLES as f64 * q) as usize).min(SAMPLES - 1)];
    println!(
        "per-lookup find+read50/{name}: p50 {} ns, p90 {} ns, p99 {} ns (timer overhead {overhead} ns subtracted)",
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

fn probe_and_read<D: AsRef<[u8]>>(
    segment: &Segment<D>,
    ids: &[[u8; ID_LEN]],
) -> impl FnMut() -> f32 {
    let mut next = 0;
    let mut out = [(0.0, 0); FIELDS];
    move || {
        let id = &ids[next];
        next = (next + 1) & (LOOKUPS - 1);
        if let Some(row) = segment.find(black_box(id)) {
            read_fields(&row, &mut out);
        }
        black_box(&mut out)[0].0
    }
}

/// Ids a ranking request looks up in one go, for the `batch500_*` cases.
const BATCH: usize = 500;

/// The ids of the next request: `BATCH` consecutive precomputed ids, wrapping.
fn next_batch<'i>(ids: &'i [[u8; ID_LEN]], next: &mut usize) -> &'i [[u8; ID_LEN]] {
    if *next + BATCH > ids.len() {
        *next = 0;
    }
    let batch = &ids[*next..*next + BATCH];
    *next += BATCH;
    batch
}

/// One request of `BATCH` ids, a `find` per id, each row's 50 fields read.
fn batch_by_find<D: AsRef<[u8]>>(
    segment: &Segment<D>,
    ids: &[[u8; ID_LEN]],
) -> impl FnMut() -> f32 {
    let mut next = 0;
    let mut out = [(0.0, 0); FIELDS];
    move || {
        let mut sum = 0.0;
        for id in black_box(next_batch(ids, &mut next)) {
            if let Some(row) = segment.find(id) {
                read_fields(&row, &mut out);
            }
            sum += black_box(&mut out)[0].0;
        }
        sum
    }
}

/// The same request through one `find_batch`.
fn batch_by_find_batch<D: AsRef<[u8]>>(
    segment: &Segment<D>,
    ids: &[[u8; ID_LEN]],
) -> impl FnMut() -> f32 {
    let mut next = 0;
    let mut out = [(0.0, 0); FIELDS];
    move || {
        let mut sum = 0.0;
        let batch = black_box(next_batch(ids, &mut next));
        segment.find_batch(
            batch.len(),
            |i| &batch[i],
            |_, row| {
                if let Some(row) = row {
                    read_fields(&row, &mut out);
                }
                sum += black_box(&mut out)[0].0;
            },
        );
        sum
    }
}

fn benches(c: &mut Criterion) {
    let started = Instant::now();
    let bytes = build(ENTITIES);
    let built = started.elapsed();

    let started = Instant::now();
    let segment = Segment::open(bytes.as_slice()).expect("opens");
    let opened = started.elapsed();

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.seg");
    std::fs::write(&path, &bytes).expect("write");
    let started = Instant::now();
    let mapped = MappedSegment::open(&path).expect("maps");
    let mapped_open = started.elapsed();

    let file_bytes = bytes.len() as f64;
    println!(
        "segment: {ENTITIES} entities x {FIELDS} float32 = {:.1} MB; {:.1} bytes/entity vs \
         {} raw value bytes ({:.2}x); built in {built:.2?}, validated in {opened:.2?} \
         (mapped, page-cache warm: {mapped_open:.2?})",
        file_bytes / 1e6,
        file_bytes / ENTITIES as f64,
        FIELDS * 4,
        file_bytes / ENTITIES as f64 / (FIELDS * 4) as f64,
    );

    let hits: Vec<[u8; ID_LEN]> = random_indices(LOOKUPS, ENTITIES, 0x9e37_79b9_7f4a_7c15)
        .into_iter()
        .map(id)
        .collect();
    let misses: Vec<[u8; ID_LEN]> = random_indices(LOOKUPS, ENTITIES, 0x0123_4567_89ab_cdef)
        .into_iter()
        .map(|i| id(ENTITIES + i))
        .collect();

    print_lookup_percentiles("uniform", &mapped, &hits);
    let zipf_ids: Vec<[u8; ID_LEN]> = zipf_indices(LOOKUPS, ENTITIES, 0.99, 0x2545_f491)
        .into_iter()
        .map(id)
        .collect();
    print_lookup_percentiles("zipf0.99", &mapped, &zipf_ids);
    drop(zipf_ids);

    let mut group = c.benchmark_group("probe");
    group.bench_function("find+read50/uniform", |b| {
        b.iter(probe_and_read(&mapped, &hits))
    });
    group.bench_function("find+read50/uniform_vec", |b| {
        b.iter(probe_and_read(&segment, &hits))
    });
    let zipf: Vec<[u8; ID_LEN]> = zipf_indices(LOOKUPS, ENTITIES, 0.99, 0x2545_f491)
        .into_iter()
        .map(id)
        .collect();
    group.bench_function("find+read50/zipf0.99", |b| {
        b.iter(probe_and_read(&mapped, &zipf))
    });
    // The same probe over a segment small enough to stay in L2: the CPU cost alone.
    let small_bytes = build(SMALL_ENTITIES);
    let small = Segment::open(small_bytes.as_slice()).expect("opens");
    let small_hits: Vec<[u8; ID_LEN]> = random_indices(LOOKUPS, SMALL_ENTITIES, 7)
        .into_iter()
        .map(id)
        .collect();
    group.bench_function("find+read50/in_cache", |b| {
        b.iter(probe_and_read(&small, &small_hits))
    });
    // The machine's floor: one dependent load from a random place in 256 MB (a random
    // cyclic permutation, chased), the cost of each cache miss a lookup of a random
    // entity cannot avoid.
    let chase = {
        let slots = (256 << 20) / 64;
        let order = {
            let mut order: Vec<usize> = (0..slots).collect();
            for (i, j) in random_indices(slots, slots, 99).into_iter().enumerate() {
                order.swap(i, j);
            }
            order
        };
        // One u64 per 64-byte line: index of the next line to visit.
        let mut next_of = vec![0u64; slots * 8];
        for (k, &line) in order.iter().enumerate() {
            next_of[line * 8] = order[(k + 1) % slots] as u64;
        }
        next_of
    };
    group.bench_function("dependent_load_256MB", |b| {
        let mut at = 0usize;
        b.iter(|| {
            at = chase[at * 8] as usize;
            black_box(at)
        })
    });
    drop(chase);
    group.bench_function("find/miss", |b| {
        let mut next = 0;
        b.iter(|| {
            let id = &misses[next];
            next = (next + 1) & (LOOKUPS - 1);
            segment.find(black_box(id)).is_some()
        })
    });
    // A ranking request: 500 ids, all 50 fields of each, by a loop of find and by one
    // find_batch (the same work as 500 find+read50 iterations). Last in the group, as
    // the throughput (per id) applies to every case after it.
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, ids) in [("uniform", &hits), ("zipf0.99", &zipf)] {
        group.bench_function(format!("find+read50/batch500_find_loop_{name}"), |b| {
            b.iter(batch_by_find(&mapped, ids))
        });
        group.bench_function(format!("find+read50/batch500_find_batch_{name}"), |b| {
            b.iter(batch_by_find_batch(&mapped, ids))
        });
    }
    group.finish();

    // The index choice: the same lookup-and-read of 50 fields from the same mapped
    // rows, finding the row number with the segment's own index, a std HashMap built at
    // open (SipHash; 1M entries), or binary search over sorted ids.
    let mut group = c.benchmark_group("index+read50");
    group.bench_function("segment_index", |b| b.iter(probe_and_read(&mapped, &hits)));
    let map: HashMap<[u8; ID_LEN], u32> = (0..ENTITIES).map(|i| (id(i), i as u32)).collect();
    group.bench_function("std_hashmap", |b| {
        let mut next = 0;
        b.iter(|| {
            let id = &hits[next];
            next = (next + 1) & (LOOKUPS - 1);
            map.get(black_box(id))
                .and_then(|&i| mapped.row(i as usize))
                .map_or(0.0, |row| {
                    let mut out = [(0.0, 0); FIELDS];
                    read_fields(&row, &mut out);
                    black_box(out)[0].0
                })
        })
    });
    drop(map);
    let mut sorted: Vec<([u8; ID_LEN], u32)> = (0..ENTITIES).map(|i| (id(i), i as u32)).collect();
    sorted.sort_unstable();
    group.bench_function("binary_search", |b| {
        let mut next = 0;
        b.iter(|| {
            let id = &hits[next];
            next = (next + 1) & (LOOKUPS - 1);
            sorted
                .binary_search_by(|(k, _)| k.cmp(black_box(id)))
                .ok()
                .and_then(|at| mapped.row(sorted[at].1 as usize))
                .map_or(0.0, |row| {
                    let mut out = [(0.0, 0); FIELDS];
                    read_fields(&row, &mut out);
                    black_box(out)[0].0
                })
        })
    });
    group.finish();
}

criterion_group! {
    name = segment_probe;
    config = Criterion::default()
        .sample_size(60)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    targets = benches
}
criterion_main!(segment_probe);
