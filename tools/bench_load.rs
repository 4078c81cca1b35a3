//! Measures batch load throughput and on-disk size: generates a wide Parquet file of
//! N entities x F float32 features, loads it as a new version, and prints values/s,
//! SST bytes per value and the ratios to the raw and Parquet sizes.
//!
//! `featstore-bench-load [ENTITIES] [FEATURES] [DIR] [no-history]` (defaults 1000000 50,
//! a temp dir, the history store recording as by default; `no-history` turns it off,
//! to measure what recording the first version's history costs).

/// mimalloc, as in production: per-request answer buffers are many small, short-lived
/// allocations.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use anyhow::{Context, Result};
use featstore::datagen::write_float_matrix;
use featstore::loader::LoadRequest;
use featstore::{FeatureStore, StoreConfig};

#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let entities: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let features: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let history = match args.next().as_deref() {
        None => true,
        Some("no-history") => false,
        Some(other) => anyhow::bail!("unknown argument `{other}` (expected `no-history`)"),
    };

    let input = dir.join("matrix.parquet");
    let started = Instant::now();
    let specs = write_float_matrix(&input, "matrix", entities, features, 7).context("generate")?;
    let parquet_bytes = std::fs::metadata(&input)?.len();
    eprintln!(
        "generated {} in {:.1}s",
        input.display(),
        started.elapsed().as_secs_f64()
    );

    let store_dir = dir.join("store");
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir)?;
    }
    let mut config = StoreConfig::default();
    config.history.enabled = history;
    let store = FeatureStore::open(&store_dir, config)?;
    store.apply(specs)?;
    let cpu_before = measure::process_cpu_secs();
    let started = Instant::now();
    let record = store.load(&LoadRequest::new("matrix", &input), &|p| {
        eprintln!(
            "  {}: {} values at {:.1}s",
            p.phase, p.values, p.elapsed_secs
        )
    })?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = measure::process_cpu_secs()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let values = record.values_stored as f64;
    let raw = values * 4.0;
    println!("entities            {entities}");
    println!("features            {features}");
    println!("values              {}", record.values_stored);
    println!(
        "load seconds        {secs:.2} (read+sort+SST {} ms, ingest {} ms, hot segment {} ms)",
        record.build_ms, record.ingest_ms, record.segment_ms
    );
    println!(
        "values/s            {:.0} (end to end, hot segment included)",
        values / secs
    );
    if let Some(cpu) = cpu {
        // On a shared machine the wall time includes waiting for a core; CPU time
        // does not.
        println!(
            "load cpu seconds    {cpu:.2} (user + system; {:.0} values per cpu second)",
            values / cpu
        );
    }
    println!(
        "values/s to serving {:.0} (read, sort, SST, ingest; without the segment)",
        values / ((record.build_ms + record.ingest_ms) as f64 / 1000.0)
    );
    println!(
        "parquet bytes       {parquet_bytes} ({:.2} bytes/value)",
        parquet_bytes as f64 / values
    );
    println!(
        "sst bytes           {} ({:.2} bytes/value)",
        record.sst_bytes,
        record.sst_bytes as f64 / values
    );
    println!("raw value bytes     {raw:.0} (float32)");
    println!("on-disk / raw       {:.2}x", record.sst_bytes as f64 / raw);
    println!(
        "on-disk / parquet   {:.2}x",
        record.sst_bytes as f64 / parquet_bytes as f64
    );
    Ok(())
}
