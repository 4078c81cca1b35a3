//! Measures featstore at the design card's scale: many feature groups over many entity
//! types, each loaded several times, through one embedded store. Prints the process's
//! resident memory, RocksDB's own memory accounting, load latency, read latency, and
//! the time a restart takes until the store serves again (measured in a fresh child
//! process, so the figure is what a restarted sidecar holds, not allocator leftovers).
//!
//! The default shape is the one the memory issue was found at: 400 groups of 25 float32
//! features (2 per entity type, 200 entity types, 10,000 features), each loaded 3 times
//! (`keep_versions`) with 200 entities per version. `--big-groups K --big-entities N`
//! adds K groups of N entities (loaded once) to see what large versions cost.
//!
//! ```text
//! featstore-bench-scale [--groups 400] [--features 25] [--versions 3] [--entities 200]
//!                       [--big-groups 0] [--big-entities 1000000] [--reads 5000]
//!                       [--block-cache-mib 512] [--hot-segment-mib 1024] [--dir DIR]
//!                       [--push-groups 0] [--push-rounds 4] [--write-buffer-mib 128]
//! ```
//!
//! `--push-groups G` then pushes `--push-rounds` batches of 500 events (every feature
//! of the group) to each of G groups, round-robin, and prints the most memory all
//! memtables held at once (sampled after every push) against the budget.
//!
//! ```text
//! ```
//!
//! Reads are single-entity GETs of the 50 features of one entity type (its two groups),
//! in-process. Every figure is one run on this machine: compare before/after in one
//! session, not across machines.

/// mimalloc, as in production.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;
use measure::{percentile_us, rss_mib};

use anyhow::{Context, Result, bail};
use clap::Parser;
use featstore::datagen::{MatrixNames, write_named_float_matrix};
use featstore::loader::LoadRequest;
use featstore::{FeatureStore, StoreConfig};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug, Clone)]
#[command(about = "featstore at scale: RSS, restart time, load and read latency")]
struct Args {
    /// Feature groups (two per entity type).
    #[arg(long, default_value_t = 400)]
    groups: usize,
    /// float32 features per group.
    #[arg(long, default_value_t = 25)]
    features: usize,
    /// Loads (versions) per group; the store keeps `keep_versions` of them.
    #[arg(long, default_value_t = 3)]
    versions: usize,
    /// Entities per small version.
    #[arg(long, default_value_t = 200)]
    entities: u64,
    /// Extra groups holding many entities, loaded once each.
    #[arg(long, default_value_t = 0)]
    big_groups: usize,
    /// Entities per big group.
    #[arg(long, default_value_t = 1_000_000)]
    big_entities: u64,
    /// Groups (of the small shape) that receive streamed pushes, to show that all
    /// memtables together stay within `write_buffer_bytes`.
    #[arg(long, default_value_t = 0)]
    push_groups: usize,
    /// Pushes per streamed group, each of 500 events x all the group's features.
    #[arg(long, default_value_t = 4)]
    push_rounds: usize,
    /// Budget of all memtables together, MiB.
    #[arg(long, default_value_t = 128)]
    write_buffer_mib: usize,
    /// Timed GETs per measurement.
    #[arg(long, default_value_t = 5000)]
    reads: usize,
    /// RocksDB block cache, MiB.
    #[arg(long, default_value_t = 512)]
    block_cache_mib: usize,
    /// Hot segment budget per group version, MiB; 0 serves every read from RocksDB.
    #[arg(long, default_value_t = 1024)]
    hot_segment_mib: u64,
    /// Working directory (kept); a temporary one when absent.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Internal: run only the restart measurement on an existing store.
    #[arg(long, hide = true)]
    reopen: bool,
}

/// What the restarted child measured.
#[derive(Debug, Serialize, Deserialize)]
struct Reopened {
    open_ms: f64,
    rss_after_open_mib: f64,
    rss_after_reads_mib: f64,
    first_read_us: f64,
    read_p50_us: f64,
    read_p99_us: f64,
    big_read_us: Option<(f64, f64)>,
    memory: String,
}

fn group_name(g: usize) -> String {
    format!("g{g:04}")
}

fn entity_type_of(g: usize) -> String {
    format!("et{:04}", g / 2)
}

fn config(args: &Args) -> StoreConfig {
    StoreConfig {
        block_cache_bytes: args.block_cache_mib << 20,
        hot_segment_bytes: args.hot_segment_mib << 20,
        write_buffer_bytes: args.write_buffer_mib << 20,
        ..StoreConfig::default()
    }
}

/// Times `reads` GETs of the 50 features of random entities of random entity types.
fn time_reads(
    store: &FeatureStore,
    args: &Args,
    names: &[Vec<String>],
    seed: u64,
) -> Result<(f64, f64)> {
    let types = args.groups / 2;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut times = Vec::with_capacity(args.reads);
    for _ in 0..args.reads {
        let t = rng.random_range(0..types);
        let id = format!("e{}", rng.random_range(0..args.entities));
        let started = Instant::now();
        let vector = store.get_features(&entity_type_of(2 * t), &id, &names[t])?;
        times.push(started.elapsed());
        if vector.features.len() != names[t].len() {
            bail!("read of {id} answered {} features", vector.features.len());
        }
    }
    times.sort_unstable();
    Ok((percentile_us(&times, 0.5), percentile_us(&times, 0.99)))
}

/// Times `reads` GETs of all features of one big group, random entities.
fn time_big_reads(store: &FeatureStore, args: &Args, seed: u64) -> Result<Option<(f64, f64)>> {
    if args.big_groups == 0 {
        return Ok(None);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let names: Vec<Vec<String>> = (0..args.big_groups)
        .map(|b| {
            let group = group_name(args.groups + 2 * b);
            (0..args.features)
                .map(|k| format!("{group}_f{k:02}"))
                .collect()
        })
        .collect();
    let mut times = Vec::with_capacity(args.reads);
    for _ in 0..args.reads {
        let b = rng.random_range(0..args.big_groups);
        let id = format!("e{}", rng.random_range(0..args.big_entities));
        let started = Instant::now();
        store.get_features(&entity_type_of(args.groups + 2 * b), &id, &names[b])?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    Ok(Some((
        percentile_us(&times, 0.5),
        percentile_us(&times, 0.99),
    )))
}

/// Pushes to `push_groups` groups and reports the memtables' peak against the budget.
fn push_load(store: &FeatureStore, args: &Args) -> Result<()> {
    use featstore::store::PushEvent;
    use featstore::types::Value;
    let groups = args.push_groups.min(args.groups);
    let started = Instant::now();
    let mut peak = 0u64;
    let mut values = 0u64;
    let mut event_time = featstore::types::now_ms();
    for round in 0..args.push_rounds {
        for g in 0..groups {
            event_time += 1;
            let events: Vec<PushEvent> = (0..500u64)
                .map(|e| PushEvent {
                    entity_type: entity_type_of(g),
                    entity_id: format!("s{round}_{e}"),
                    event_time,
                    features: (0..args.features)
                        .map(|k| {
                            (
                                format!("{}_f{k:02}", group_name(g)),
                                Value::Float32(e as f32 + k as f32),
                            )
                        })
                        .collect(),
                    event_id: None,
                })
                .collect();
            values += store.push(events)?.values_written;
            peak = peak.max(store.memory_usage().write_buffer_usage);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let usage = store.memory_usage();
    println!(
        "pushes to {groups} groups      {values} values in {secs:.1} s ({:.0} values/s)",
        values as f64 / secs
    );
    println!(
        "memtables under pushes      peak {:.1} MiB, now {:.1} MiB, budget {:.0} MiB",
        peak as f64 / (1 << 20) as f64,
        usage.write_buffer_usage as f64 / (1 << 20) as f64,
        usage.write_buffer_budget as f64 / (1 << 20) as f64
    );
    println!("rss after pushes            {:.0} MiB", rss_mib());
    Ok(())
}

/// Feature names read per entity type: all features of its two groups.
fn read_names(args: &Args) -> Vec<Vec<String>> {
    (0..args.groups / 2)
        .map(|t| {
            (2 * t..2 * t + 2)
                .flat_map(|g| (0..args.features).map(move |k| format!("{}_f{k:02}", group_name(g))))
                .collect()
        })
        .collect()
}

fn reopen(args: &Args, dir: &Path) -> Result<()> {
    // The store logs where its open time went ("store opened"); the parent prints it.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let started = Instant::now();
    let store = FeatureStore::open(dir, config(args))?;
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let rss_after_open_mib = rss_mib();
    let names = read_names(args);
    let started = Instant::now();
    store.get_features(&entity_type_of(0), "e0", &names[0])?;
    let first_read_us = started.elapsed().as_secs_f64() * 1e6;
    let (read_p50_us, read_p99_us) = time_reads(&store, args, &names, 11)?;
    let big_read_us = time_big_reads(&store, args, 12)?;
    let reopened = Reopened {
        big_read_us,
        open_ms,
        rss_after_open_mib,
        rss_after_reads_mib: rss_mib(),
        first_read_us,
        read_p50_us,
        read_p99_us,
        memory: format!("{}", store.memory_usage()),
    };
    println!("RESULT {}", serde_json::to_string(&reopened)?);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.groups < 2 || args.groups % 2 != 0 {
        bail!("--groups must be even and at least 2 (two groups per entity type)");
    }
    let temp = tempfile::tempdir()?;
    let work = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let store_dir = work.join("store");
    if args.reopen {
        return reopen(&args, &store_dir);
    }
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir)?;
    }
    let inputs = work.join("inputs");
    std::fs::create_dir_all(&inputs)?;

    println!(
        "shape: {} groups x {} float32 features over {} entity types ({} features), {} versions x {} entities; {} big groups x {} entities",
        args.groups,
        args.features,
        args.groups / 2,
        args.groups * args.features,
        args.versions,
        args.entities,
        args.big_groups,
        args.big_entities
    );
    let rss_start = rss_mib();
    let store = FeatureStore::open(&store_dir, config(&args))?;
    let rss_open = rss_mib();

    // Generate the inputs and register every feature.
    let started = Instant::now();
    let mut files = Vec::new();
    let mut specs = Vec::new();
    let mut add_group = |g: usize, entities: u64| -> Result<PathBuf> {
        let group = group_name(g);
        let entity_type = entity_type_of(g);
        let prefix = format!("{group}_f");
        let path = inputs.join(format!("{group}.parquet"));
        let names = MatrixNames {
            group: &group,
            entity_type: &entity_type,
            id_prefix: "e",
            feature_prefix: &prefix,
        };
        specs.extend(
            write_named_float_matrix(&path, &names, entities, args.features, g as u64)
                .with_context(|| format!("generate {}", path.display()))?,
        );
        Ok(path)
    };
    for g in 0..args.groups {
        files.push(add_group(g, args.entities)?);
    }
    let mut big_files = Vec::new();
    for b in 0..args.big_groups {
        big_files.push(add_group(args.groups + 2 * b, args.big_entities)?);
    }
    store.apply(specs)?;
    println!(
        "generated and registered in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Small loads: every group, `versions` times, round-robin as nightly jobs would.
    let mut load_times = Vec::new();
    let started = Instant::now();
    for _ in 0..args.versions {
        for (g, file) in files.iter().enumerate() {
            let t = Instant::now();
            store.load(&LoadRequest::new(group_name(g), file), &|_| {})?;
            load_times.push(t.elapsed());
        }
    }
    let loads_secs = started.elapsed().as_secs_f64();
    load_times.sort_unstable();
    let rss_loaded = rss_mib();
    let names = read_names(&args);
    let (read_p50, read_p99) = time_reads(&store, &args, &names, 7)?;
    let rss_read = rss_mib();
    println!("rss at start                {rss_start:.0} MiB");
    println!("rss after open (empty)      {rss_open:.0} MiB");
    println!(
        "small loads                 {} in {loads_secs:.1} s: p50 {:.1} ms, p99 {:.1} ms",
        load_times.len(),
        percentile_us(&load_times, 0.5) / 1e3,
        percentile_us(&load_times, 0.99) / 1e3
    );
    println!("rss after small loads       {rss_loaded:.0} MiB");
    println!("get 50 features (2 groups)  p50 {read_p50:.1} us, p99 {read_p99:.1} us");
    println!("rss after reads             {rss_read:.0} MiB");
    println!("rocksdb memory              {}", store.memory_usage());

    if args.push_groups > 0 {
        push_load(&store, &args)?;
    }

    for (b, file) in big_files.iter().enumerate() {
        let group = group_name(args.groups + 2 * b);
        let t = Instant::now();
        let record = store.load(&LoadRequest::new(&group, file), &|_| {})?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "big load {group}              {} values in {secs:.1} s ({:.0} values/s), rss {:.0} MiB",
            record.values_stored,
            record.values_stored as f64 / secs,
            rss_mib()
        );
    }
    if let Some((p50, p99)) = time_big_reads(&store, &args, 8)? {
        println!("get a big group's features  p50 {p50:.1} us, p99 {p99:.1} us");
        println!("rss after big reads         {:.0} MiB", rss_mib());
        println!("rocksdb memory              {}", store.memory_usage());
    }
    drop(store);

    let disk = dir_bytes(&store_dir);
    println!(
        "data directory              {:.1} MiB",
        disk as f64 / (1 << 20) as f64
    );

    // Restart in a fresh process.
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args([
            format!("--groups={}", args.groups),
            format!("--features={}", args.features),
            format!("--entities={}", args.entities),
            format!("--reads={}", args.reads),
            format!("--block-cache-mib={}", args.block_cache_mib),
            format!("--write-buffer-mib={}", args.write_buffer_mib),
            format!("--hot-segment-mib={}", args.hot_segment_mib),
            format!("--big-groups={}", args.big_groups),
            format!("--big-entities={}", args.big_entities),
        ])
        .arg("--dir")
        .arg(&work)
        .arg("--reopen")
        .output()
        .context("run the restart measurement")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(json) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        bail!(
            "restart measurement failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let r: Reopened = serde_json::from_str(json)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some(line) = stderr.lines().find(|l| l.contains("store opened")) {
        println!("restart: {}", line.trim());
    }
    println!("restart: open               {:.0} ms", r.open_ms);
    println!(
        "restart: rss after open     {:.0} MiB",
        r.rss_after_open_mib
    );
    println!("restart: first read         {:.0} us", r.first_read_us);
    println!(
        "restart: get 50 features    p50 {:.1} us, p99 {:.1} us",
        r.read_p50_us, r.read_p99_us
    );
    println!(
        "restart: rss after reads    {:.0} MiB",
        r.rss_after_reads_mib
    );
    println!("restart: rocksdb memory     {}", r.memory);
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
