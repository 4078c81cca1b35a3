//! Compares ways of mapping batch group versions onto RocksDB column families at the
//! design card's scale, with the store's own column family options and key and value
//! encodings, so that the choice in `storage-format.md` rests on figures:
//!
//! * `version` (what featstore does): one column family per group version; a
//!   version is dropped by dropping its family.
//! * `group`: one family per group, the version as an 8-byte big-endian key
//!   prefix; a version is dropped with `DeleteFilesInRange` plus a `DeleteRange`
//!   tombstone for anything a file straddles.
//! * `entity-type`: one family per entity type, group and version as a 12-byte
//!   key prefix; dropped the same way.
//!
//! For each layout it builds `groups` groups x `versions` versions of `entities`
//! entities x `features` float32 values (one SST file ingested per load, as the loader
//! does), then, each in a fresh process: the resident memory after the build and after a
//! restart, the restart (open) time, the latency of reading one entity's features of
//! one group (a prefix scan, as the store's cold path does), and the time to drop the
//! oldest version of every group after loading one more.
//!
//! ```text
//! featstore-bench-keyspace [--groups 400] [--versions 3] [--entities 200] [--features 25]
//!                          [--layouts version,group,entity-type] [--dir DIR]
//! ```

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
use clap::{Parser, ValueEnum};
use featstore::codec::key::{EntityKey, entity_prefix_len};
use featstore::codec::value::encode_value;
use featstore::store::options::EngineOptions;
use featstore::types::Value;
use rand::{Rng, SeedableRng};
use rocksdb::{
    ColumnFamilyDescriptor, DB, IngestExternalFileOptions, Options, SliceTransform, SstFileWriter,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
/// One column family per: group version, group, or entity type.
enum Layout {
    Version,
    Group,
    EntityType,
}

impl Layout {
    /// Bytes of group/version prefix before the entity key.
    fn prefix_len(self) -> usize {
        match self {
            Layout::Version => 0,
            Layout::Group => 8,
            Layout::EntityType => 12,
        }
    }

    fn cf(self, group: usize, version: u64) -> String {
        match self {
            Layout::Version => format!("batch.g{group:04}.v{version}"),
            Layout::Group => format!("batch.g{group:04}"),
            Layout::EntityType => format!("batch.et{:04}", group / 2),
        }
    }

    #[expect(
        clippy::big_endian_bytes,
        reason = "key prefixes must sort numerically under RocksDB's bytewise order"
    )]
    fn key_prefix(self, group: usize, version: u64) -> Vec<u8> {
        match self {
            Layout::Version => Vec::new(),
            Layout::Group => version.to_be_bytes().to_vec(),
            Layout::EntityType => {
                let mut p = (group as u32).to_be_bytes().to_vec();
                p.extend_from_slice(&version.to_be_bytes());
                p
            }
        }
    }
}

#[derive(Parser, Debug, Clone)]
#[command(about = "column family layouts for batch versions, side by side")]
struct Args {
    #[arg(long, default_value_t = 400)]
    groups: usize,
    #[arg(long, default_value_t = 3)]
    versions: u64,
    #[arg(long, default_value_t = 200)]
    entities: u64,
    #[arg(long, default_value_t = 25)]
    features: u32,
    #[arg(long, default_value_t = 2000)]
    reads: usize,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "version,group,entity-type"
    )]
    layouts: Vec<Layout>,
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Internal: which step a child process runs.
    #[arg(long, hide = true)]
    step: Option<String>,
}

type Extractor = fn(&[u8]) -> &[u8];
type InDomain = fn(&[u8]) -> bool;

/// The store's batch column family options, with the prefix extractor widened by the
/// layout's group/version prefix.
fn cf_options(engine: &EngineOptions, layout: Layout) -> Options {
    let mut opts = engine.batch_cf();
    let skip = layout.prefix_len();
    if skip > 0 {
        let (name, extract, domain): (&str, Extractor, InDomain) = if skip == 8 {
            (
                "bench.v8_entity_prefix",
                |k| prefixed::<8>(k),
                |k| domain::<8>(k),
            )
        } else {
            (
                "bench.v12_entity_prefix",
                |k| prefixed::<12>(k),
                |k| domain::<12>(k),
            )
        };
        opts.set_prefix_extractor(SliceTransform::create(name, extract, Some(domain)));
    }
    opts
}

fn prefixed<const SKIP: usize>(key: &[u8]) -> &[u8] {
    match key.get(SKIP..).and_then(entity_prefix_len) {
        Some(len) => key.get(..SKIP + len).unwrap_or(key),
        None => key,
    }
}

fn domain<const SKIP: usize>(key: &[u8]) -> bool {
    key.get(SKIP..).and_then(entity_prefix_len).is_some()
}

fn open(path: &Path, engine: &EngineOptions, layout: Layout) -> Result<DB> {
    let db_opts = engine.db();
    let mut names = DB::list_cf(&db_opts, path).unwrap_or_default();
    if names.is_empty() {
        names.push("default".to_owned());
    }
    let descriptors = names
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(n, cf_options(engine, layout)));
    Ok(DB::open_cf_descriptors(&db_opts, path, descriptors)?)
}

/// Writes and ingests one version of one group.
fn load(
    db: &DB,
    engine: &EngineOptions,
    layout: Layout,
    args: &Args,
    scratch: &Path,
    group: usize,
    version: u64,
) -> Result<()> {
    let name = layout.cf(group, version);
    if db.cf_handle(&name).is_none() {
        db.create_cf(&name, &cf_options(engine, layout))?;
    }
    let cf = db.cf_handle(&name).context("column family vanished")?;
    let opts = cf_options(engine, layout);
    let mut writer = SstFileWriter::create(&opts);
    let file = scratch.join(format!("{group}.{version}.sst"));
    writer.open(&file)?;
    let prefix = layout.key_prefix(group, version);
    // SST keys must ascend: order the entities by their encoded keys.
    let mut entities = (0..args.entities)
        .map(|e| EntityKey::new(format!("e{e}").as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    entities.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut key = Vec::new();
    let mut value = Vec::new();
    for entity in &entities {
        for f in 0..args.features {
            key.clear();
            key.extend_from_slice(&prefix);
            key.extend_from_slice(&entity.feature_key(f));
            value.clear();
            encode_value(
                &Value::Float32((group as f32) + f as f32 / 100.0),
                1_763_780_000_000 + version as i64,
                &mut value,
            );
            writer.put(&key, &value)?;
        }
    }
    writer.finish()?;
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    db.ingest_external_file_cf_opts(&cf, &ingest, vec![file])?;
    Ok(())
}

fn drop_version(db: &DB, layout: Layout, group: usize, version: u64) -> Result<()> {
    let name = layout.cf(group, version);
    if layout == Layout::Version {
        db.drop_cf(&name)?;
        return Ok(());
    }
    let cf = db.cf_handle(&name).context("no column family")?;
    let from = layout.key_prefix(group, version);
    let to = layout.key_prefix(group, version + 1);
    db.delete_file_in_range_cf(&cf, &from, &to)?;
    db.delete_range_cf(&cf, &from, &to)?;
    Ok(())
}

fn read_latency(db: &DB, layout: Layout, args: &Args, version: u64) -> Result<(f64, f64)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut times = Vec::with_capacity(args.reads);
    for _ in 0..args.reads {
        let group = rng.random_range(0..args.groups);
        let id = format!("e{}", rng.random_range(0..args.entities));
        let started = Instant::now();
        let cf = db
            .cf_handle(&layout.cf(group, version))
            .context("no column family")?;
        let mut prefix = layout.key_prefix(group, version);
        prefix.extend_from_slice(EntityKey::new(id.as_bytes())?.as_bytes());
        let mut n = 0u32;
        for item in db.prefix_iterator_cf(&cf, &prefix) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            n += 1;
        }
        times.push(started.elapsed());
        if n != args.features {
            bail!("{id} in group {group}: {n} values");
        }
    }
    times.sort_unstable();
    Ok((percentile_us(&times, 0.5), percentile_us(&times, 0.99)))
}

fn child(args: &Args, layout: Layout, step: &str, work: &Path) -> Result<()> {
    let engine = EngineOptions::new(512 << 20, 128 << 20);
    let path = work.join("db");
    let scratch = work.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    match step {
        "build" => {
            let db = open(&path, &engine, layout)?;
            let mut times = Vec::new();
            for v in 1..=args.versions {
                for g in 0..args.groups {
                    let t = Instant::now();
                    load(&db, &engine, layout, args, &scratch, g, v)?;
                    times.push(t.elapsed());
                }
            }
            times.sort_unstable();
            println!(
                "RESULT load_p50_ms={:.2} load_p99_ms={:.2} rss_built_mib={:.0}",
                percentile_us(&times, 0.5) / 1e3,
                percentile_us(&times, 0.99) / 1e3,
                rss_mib()
            );
        }
        "reopen" => {
            let t = Instant::now();
            let db = open(&path, &engine, layout)?;
            let open_ms = t.elapsed().as_secs_f64() * 1e3;
            let rss_open = rss_mib();
            let (p50, p99) = read_latency(&db, layout, args, args.versions)?;
            println!(
                "RESULT open_ms={open_ms:.0} rss_open_mib={rss_open:.0} read_p50_us={p50:.1} read_p99_us={p99:.1} rss_read_mib={:.0}",
                rss_mib()
            );
        }
        "drop" => {
            let db = open(&path, &engine, layout)?;
            let next = args.versions + 1;
            for g in 0..args.groups {
                load(&db, &engine, layout, args, &scratch, g, next)?;
            }
            let mut times = Vec::new();
            for g in 0..args.groups {
                let t = Instant::now();
                drop_version(&db, layout, g, 1)?;
                times.push(t.elapsed());
            }
            times.sort_unstable();
            let (p50, _) = read_latency(&db, layout, args, next)?;
            println!(
                "RESULT drop_p50_ms={:.2} drop_p99_ms={:.2} read_after_drop_p50_us={p50:.1}",
                percentile_us(&times, 0.5) / 1e3,
                percentile_us(&times, 0.99) / 1e3
            );
        }
        other => bail!("unknown step {other}"),
    }
    Ok(())
}

fn run_step(args: &Args, layout: Layout, step: &str, work: &Path) -> Result<String> {
    let layout_name = layout
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let output = Command::new(std::env::current_exe()?)
        .args([
            format!("--groups={}", args.groups),
            format!("--versions={}", args.versions),
            format!("--entities={}", args.entities),
            format!("--features={}", args.features),
            format!("--reads={}", args.reads),
            format!("--layouts={layout_name}"),
            format!("--step={step}"),
        ])
        .arg("--dir")
        .arg(work)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) {
        Some(r) => Ok(r.to_owned()),
        None => bail!(
            "{layout_name} {step} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    if let Some(step) = &args.step {
        let layout = *args.layouts.first().context("--layouts")?;
        return child(&args, layout, step, &root);
    }
    println!(
        "{} groups x {} versions x {} entities x {} features",
        args.groups, args.versions, args.entities, args.features
    );
    for &layout in &args.layouts {
        let work = root.join(format!("{layout:?}"));
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir_all(&work)?;
        let t = Instant::now();
        let built = run_step(&args, layout, "build", &work)?;
        let build_s = t.elapsed().as_secs_f64();
        let reopened = run_step(&args, layout, "reopen", &work)?;
        let dropped = run_step(&args, layout, "drop", &work)?;
        println!("family per {layout:?}: build_s={build_s:.1} {built} {reopened} {dropped}");
    }
    Ok(())
}
