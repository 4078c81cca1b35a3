//! Cold reads (RocksDB, no hot segment) in-process, against a store loaded once and
//! kept on disk, so that two builds can be compared on the same data by running them
//! in turns.
//!
//! ```text
//! featstore-bench-cold load DIR [PRODUCTS]     # the ranking corpus, hot segments off
//! featstore-bench-cold run DIR [REQUESTS]      # prints one line of medians
//! ```
//!
//! `load` writes the ranking corpus (`datagen::ranking`: PRODUCTS products, default
//! 1,000,000, x 50 float32 features and a 32-dim embedding; 100 users, 10 retailers)
//! under `DIR/data` and loads it into `DIR/store` with `hot_segment_bytes = 0`.
//!
//! `run` opens the store, warms the block cache with PRODUCTS x 4 / 500 ranking
//! requests (nearly every product read once; the rows fit the default 512 MiB cache up
//! to about 2M products), then times, one after another on one thread:
//! - REQUESTS (default 1,000) ranking reads of 1 user + 1 retailer + 500 random
//!   products x (50 features + 2 on-demand), as `cargo bench --bench ranking` sends;
//! - 50,000 single reads of one random product's 50 floats through
//!   `FeatureStore::get_entity` (the columnar answer the server encodes).
//!
//! It prints medians and 90th percentiles. Comparing builds: copy each build's binary
//! aside, `load` once, then `run` the binaries alternately several times and compare
//! medians of their runs (the host's noise moves whole runs).

/// mimalloc, as in production.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use featstore::datagen::ranking::{ranking_feature_names, ranking_request, write_ranking_corpus};
use featstore::loader::LoadRequest;
use featstore::query::Names;
use featstore::{FeatureStore, StoreConfig};

#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;

/// Candidates per ranking request.
const CANDIDATES: usize = 500;
/// Single reads timed.
const GETS: usize = 50_000;
/// Product features in the corpus (`pf00`..`pf49`).
const FEATURES: usize = 50;

fn config() -> StoreConfig {
    StoreConfig {
        hot_segment_bytes: 0,
        ..StoreConfig::default()
    }
}

fn load(dir: &Path, products: u64) -> Result<()> {
    let corpus = write_ranking_corpus(&dir.join("data"), products, FEATURES, 32, 7)
        .context("writing the corpus")?;
    let store = FeatureStore::open(dir.join("store"), config()).context("opening the store")?;
    store
        .apply_objects(corpus.registry.clone())
        .context("registering the corpus")?;
    for (group, path) in &corpus.loads {
        store
            .load(&LoadRequest::new(group.clone(), path), &|_| {})
            .with_context(|| format!("loading {group}"))?;
    }
    std::fs::write(dir.join("products"), products.to_string())
        .context("recording the product count")?;
    eprintln!("loaded {products} products into {}", dir.display());
    Ok(())
}

fn run(dir: &Path, requests: u64) -> Result<()> {
    let products: u64 = std::fs::read_to_string(dir.join("products"))
        .with_context(|| format!("{} holds no loaded corpus: run `load` first", dir.display()))?
        .trim()
        .parse()
        .context("the products file")?;
    let store = FeatureStore::open(dir.join("store"), config()).context("opening the store")?;
    let names = ranking_feature_names(FEATURES);
    let request = |n: u64| ranking_request(n, products, &names, CANDIDATES);
    let warm = products * 4 / CANDIDATES as u64;
    for n in 0..warm {
        black_box(store.rank(request(n + 1_000_000))?);
    }
    let mut rank_times = Vec::with_capacity(requests as usize);
    for n in 0..requests {
        let req = request(n);
        let started = Instant::now();
        black_box(store.rank(req)?);
        rank_times.push(started.elapsed());
    }
    let floats: Vec<&str> = names[..FEATURES].iter().map(String::as_str).collect();
    let mut get_times = Vec::with_capacity(GETS);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..GETS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let id = format!("p{}", rng % products);
        let started = Instant::now();
        black_box(store.get_entity("product", &id, Names::List(&floats))?);
        get_times.push(started.elapsed());
    }
    if rank_times.is_empty() {
        bail!("no ranking request timed");
    }
    rank_times.sort_unstable();
    get_times.sort_unstable();
    println!(
        "{products} products: rank 500x(50+2) median {:.3} ms p90 {:.3} ms | get 50 floats median {:.2} µs p90 {:.2} µs",
        measure::percentile_us(&rank_times, 0.5) / 1e3,
        measure::percentile_us(&rank_times, 0.9) / 1e3,
        measure::percentile_us(&get_times, 0.5),
        measure::percentile_us(&get_times, 0.9),
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("load"), Some(dir)) => load(Path::new(dir), measure::arg(&args, 2, 1_000_000)?),
        (Some("run"), Some(dir)) => run(Path::new(dir), measure::arg(&args, 2, 1_000)?),
        _ => bail!("usage: featstore-bench-cold load DIR [PRODUCTS] | run DIR [REQUESTS]"),
    }
}
