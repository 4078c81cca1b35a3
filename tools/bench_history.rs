//! Measures what the history costs: loads DAYS daily versions of ENTITIES x FEATURES
//! float32 values where CHANGE percent of the entities change each day (new values, new
//! event time; the others keep theirs) into two stores, history on and off, which take
//! each day's load in turns (the order alternating), and prints the history's bytes per
//! retained day and the load-time overhead of writing it. CPU seconds of a load count
//! the compactions it starts: each load is followed by a wait for them (not in its wall
//! time).
//!
//! `featstore-bench-history [ENTITIES] [FEATURES] [DAYS] [CHANGE] [DIR]` (defaults
//! 100000 50 8 5, a temp dir). With `--restamp` as the last argument every row gets
//! the day's event time (a batch job that stamps all rows with its run date): then
//! every value differs from the day before and is recorded.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use featstore::datagen::write_float_matrix;
use featstore::loader::LoadRequest;
use featstore::store::AcceptAll;
use featstore::{FeatureStore, StoreConfig};

#[path = "daily_versions.rs"]
mod daily_versions;
#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;

use daily_versions::write_day;

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                total += dir_bytes(&p);
            } else if p.extension().is_some_and(|e| e == "sst") {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let restamp = args.last().is_some_and(|a| a == "--restamp");
    let mut args = args.into_iter().filter(|a| a != "--restamp");
    let mut next = |default: u64| -> Result<u64> {
        Ok(args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let entities = next(100_000)?;
    let features = next(50)? as usize;
    let days = next(8)?;
    let change = next(5)?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let specs = write_float_matrix(&dir.join("specs.csv"), "matrix", 1, features, 1)?;
    for day in 0..days {
        write_day(
            &dir.join(format!("day{day}.parquet")),
            (entities, features),
            (day, change, restamp),
        )
        .context("generate")?;
    }
    println!(
        "entities {entities} features {features} days {days} change {change}% restamp {restamp}"
    );
    // Both stores are open at once and take each day's load in turns, the order
    // alternating from day to day, so drift in the machine's load falls on both.
    let mut stores = Vec::new();
    for history in [false, true] {
        let store_dir = dir.join(if history { "with" } else { "without" });
        if store_dir.exists() {
            std::fs::remove_dir_all(&store_dir)?;
        }
        let mut config = StoreConfig::default();
        config.history.enabled = history;
        let store = FeatureStore::open(&store_dir, config)?;
        store.apply(specs.clone())?;
        stores.push((store, store_dir));
    }
    let mut results: Vec<(Vec<f64>, Vec<f64>, u64)> = vec![Default::default(); 2];
    for day in 0..days {
        let order: [usize; 2] = if day % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (store, _) = &stores[which];
            let cpu_before = measure::process_cpu_secs();
            let started = Instant::now();
            store.load_gated(
                &LoadRequest::new("matrix", dir.join(format!("day{day}.parquet"))),
                &AcceptAll,
                &|_| {},
            )?;
            results[which].0.push(started.elapsed().as_secs_f64());
            // The compactions the load's files start are its cost too: its CPU time
            // is the process's (the load's threads and RocksDB's) until they are done,
            // steadier than wall time on a shared machine; the other store's load
            // then starts without them.
            store
                .view()
                .db()
                .wait_for_compact(&rocksdb::WaitForCompactOptions::default())?;
            results[which].1.push(
                measure::process_cpu_secs()
                    .zip(cpu_before)
                    .map_or(0.0, |(after, before)| after - before),
            );
        }
    }
    for (history, (store, store_dir)) in stores.into_iter().enumerate() {
        results[history].2 = dir_bytes(&store_dir.join("db"));
        if history == 1 {
            // The history family's own files, as RocksDB lists them.
            let files = store.view().db().live_files()?;
            let (count, bytes) = files
                .iter()
                .filter(|f| f.column_family_name == "history.matrix")
                .fold((0, 0), |(n, b), f| (n + 1, b + f.size));
            println!("history family files         {count}, {bytes} bytes");
        }
        drop(store);
        // Measured: its space goes back.
        std::fs::remove_dir_all(&store_dir)?;
    }
    let (off, off_cpu, off_bytes) = &results[0];
    let (on, on_cpu, on_bytes) = &results[1];
    let total = |v: &[f64]| v.iter().sum::<f64>();
    // Day 0 is recorded whole; the later days are the changes.
    let later = |v: &[f64]| v.iter().skip(1).sum::<f64>();
    let history_bytes = on_bytes.saturating_sub(*off_bytes);
    let values = entities * features as u64;
    println!(
        "load seconds, history off    {:.2} (days 1..: {:.2})",
        total(off),
        later(off)
    );
    println!(
        "load seconds, history on     {:.2} (days 1..: {:.2})",
        total(on),
        later(on)
    );
    println!(
        "load-time overhead           {:+.1}% (days 1..: {:+.1}%)",
        (total(on) / total(off) - 1.0) * 100.0,
        (later(on) / later(off) - 1.0) * 100.0
    );
    println!(
        "load cpu seconds, off / on   {:.2} / {:.2} (days 1..: {:.2} / {:.2}, {:+.1}%)",
        total(off_cpu),
        total(on_cpu),
        later(off_cpu),
        later(on_cpu),
        (later(on_cpu) / later(off_cpu) - 1.0) * 100.0
    );
    for (day, ((off, on), (off_cpu, on_cpu))) in off
        .iter()
        .zip(on)
        .zip(off_cpu.iter().zip(on_cpu))
        .enumerate()
    {
        println!(
            "day {day}: load seconds off / on {off:.2} / {on:.2} ({:+.1}%), cpu seconds {off_cpu:.2} / {on_cpu:.2} ({:+.1}%)",
            (on / off - 1.0) * 100.0,
            (on_cpu / off_cpu - 1.0) * 100.0
        );
    }
    println!("history bytes (SST)          {history_bytes}");
    println!(
        "bytes per retained day       {:.0} ({:.2} bytes per value of a version)",
        history_bytes as f64 / days as f64,
        history_bytes as f64 / days as f64 / values as f64
    );
    Ok(())
}
