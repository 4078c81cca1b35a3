//! `featstore-crashtest`: the project's crash test, in the spirit of RocksDB's
//! `db_crashtest.py`. It runs a real `featstore serve` on 127.0.0.1 over one data
//! directory, drives a random mix of loads (CSV and Parquet, some not activated, some
//! deliberately bad), activations, rollbacks, version drops, pushes (with event ids and
//! event times) and reads, SIGKILLs the server at random moments (while it opens, right
//! after, during loads, during version changes, while pushes are in flight), restarts
//! it, and checks after every kill:
//!
//! * the data directory (RocksDB opened read-only) against the documented layout: every
//!   ready version whole in `versions.{group}` under its version prefix, no key range or
//!   segment of an unnamed version surviving an open, nothing left of an interrupted
//!   load after an open ([`raw`]);
//! * the restarted server: it opens and is ready with no manual step; its versions are
//!   one of the manifest states the acknowledged operations allow ([`model`]); the
//!   active versions answer every entity of their input with the input's values; every
//!   acknowledged push is readable (or superseded by a newer event time), nothing
//!   refused is, and windowed counts lie between the acknowledged and the sent events;
//!   acknowledged event ids stay duplicates.
//!
//! While the server runs, a reader checks every answer: a read answers from exactly one
//! version of each group (the values of one load, never a mix), and pushed values are
//! never older than the newest acknowledged one. Every few lives a fault is injected
//! below the store ([`faults`]): a full disk or failing fsyncs for the WAL, the
//! manifest, a load's scratch, its segment or its ingestion. The failing operation must
//! say what failed, lose nothing acknowledged and show no partial version; the server
//! must then recover by itself, or, where RocksDB cannot, restart without repair.
//!
//! Everything random comes from `--seed` (printed; a run prints it again on failure
//! with the command to repeat). The seed fixes every choice; where a kill lands inside
//! an operation still depends on timing. The run is bounded by `--kills` and
//! `--duration`, talks only to loopback and kills only its own child.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod answers;
mod client;
mod data;
mod faults;
mod life;
mod model;
mod raw;
mod server;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "featstore-crashtest",
    about = "SIGKILLs a real featstore server at random moments and checks what survives"
)]
pub struct Args {
    /// Seed of every random choice (default: from the clock; always printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after this many kills.
    #[arg(long, default_value_t = 30)]
    pub kills: u64,
    /// Stop after this long (humantime: `60s`, `25m`), even if fewer kills were done.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Inject a fault in every Nth server life (0: never).
    #[arg(long, default_value_t = 6)]
    pub fault_every: u64,
    /// Only these fault scenarios, in turn (default: all). Names: push-wal-full,
    /// push-wal-sync, meta-full, meta-sync, load-scratch-full, load-segment-full,
    /// load-db-sync, countdown.
    #[arg(long, value_delimiter = ',', value_parser = faults::Scenario::parse)]
    pub scenarios: Vec<faults::Scenario>,
    /// How long a server gets to recover by itself once a fault is cleared, before the
    /// test concludes it needs a restart (RocksDB looks for free space again every 5 s
    /// after a full disk, and the writer probes at most every 2 s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub recovery_wait: Duration,
    /// The long run: 1,000 kills within 25 minutes (overrides --kills and --duration).
    #[arg(long)]
    pub long: bool,
    /// The `featstore` binary (default: next to this one).
    #[arg(long)]
    pub featstore: Option<PathBuf>,
    /// Working directory (default: a new temporary one, deleted after a clean run).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Keep the working directory after a clean run.
    #[arg(long)]
    pub keep: bool,
    /// C compiler for the fault shim.
    #[arg(long, default_value = "cc")]
    pub cc: String,
    /// One line per server life.
    #[arg(long, short)]
    pub verbose: bool,
}

fn main() {
    let mut args = Args::parse();
    if args.long {
        args.kills = 1_000;
        args.duration = Duration::from_secs(25 * 60);
    }
    match run(args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("crashtest: error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the crash test; true when no invariant broke.
fn run(args: Args) -> Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let featstore = match &args.featstore {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this executable")?
            .join("featstore"),
    };
    let mut temp = match &args.work {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            None
        }
        None => Some(
            tempfile::Builder::new()
                .prefix("featstore-crashtest-")
                .tempdir()?,
        ),
    };
    let work = match (&args.work, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory exists when --work is absent"),
    };
    println!(
        "crashtest: seed {seed}, up to {} kills in {}, a fault every {} lives, work dir {}",
        args.kills,
        humantime::format_duration(args.duration),
        args.fault_every,
        work.display()
    );
    let mut run = life::Run::new(&args, seed, featstore, work.clone())?;
    let clean = run.execute()?;
    run.report();
    if !clean {
        println!(
            "crashtest: FAILED; repeat with: featstore-crashtest --seed {seed} --kills {} --fault-every {}; \
             data and server logs kept in {}",
            args.kills,
            args.fault_every,
            work.display()
        );
        // Keep the evidence.
        if let Some(t) = temp.as_mut() {
            t.disable_cleanup(true);
        }
        return Ok(false);
    }
    if args.keep
        && let Some(t) = temp.as_mut()
    {
        t.disable_cleanup(true);
        println!("crashtest: kept {}", work.display());
    }
    Ok(true)
}
