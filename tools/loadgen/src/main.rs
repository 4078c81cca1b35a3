//! `loadgen`: the command line of the load generator. Parses arguments, builds the
//! workload and a tokio runtime, and calls the library; see the crate docs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use featstore_loadgen::keys::{DistKind, KeyDist};
use featstore_loadgen::output::{self, AvailabilityNote};
use featstore_loadgen::report::{self, ReportContext};
use featstore_loadgen::runner::{self, Availability, RunConfig};
use featstore_loadgen::schedule::Pacing;
use featstore_loadgen::stats::RunResult;
use featstore_loadgen::target::{Protocol, Target, loopback_addr};
use featstore_loadgen::workload::{Encoding, EntitySet, Mix, RedisLayout, Shape, Sizes, Workload};
use featstore_loadgen::{floor, redis_load};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for featstore, the HTTP floor and Redis (loopback only)"
)]
struct Cli {
    /// Tokio worker threads (default: one per CPU this process may use).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// The data set the requests address (must match what was loaded).
#[derive(Args, Clone)]
struct DataArgs {
    /// Number of products (ids PREFIX0..).
    #[arg(long, default_value_t = 100_000)]
    products: u64,
    /// Product entity type.
    #[arg(long, default_value = "product")]
    product_type: String,
    /// Product id prefix.
    #[arg(long, default_value = "p")]
    product_prefix: String,
    /// Product feature names are FEATURE_PREFIX00, FEATURE_PREFIX01, ...
    #[arg(long, default_value = "pf")]
    product_feature_prefix: String,
    /// Product features in the data set.
    #[arg(long, default_value_t = 50)]
    product_features: usize,
    /// Number of users.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// User entity type.
    #[arg(long, default_value = "user")]
    user_type: String,
    /// User id prefix.
    #[arg(long, default_value = "u")]
    user_prefix: String,
    /// User feature name prefix.
    #[arg(long, default_value = "uf")]
    user_feature_prefix: String,
    /// User features in the data set.
    #[arg(long, default_value_t = 50)]
    user_features: usize,
    /// Id distribution: uniform or zipf:S.
    #[arg(long, default_value = "uniform")]
    keys: DistKind,
    /// Product features read per get and per ranking candidate.
    #[arg(long, default_value_t = 50)]
    get_features: usize,
    /// User features read per ranking request.
    #[arg(long, default_value_t = 50)]
    rank_user_features: usize,
    /// Candidates per ranking request.
    #[arg(long, default_value_t = 100)]
    candidates: usize,
    /// Events per push.
    #[arg(long, default_value_t = 1)]
    push_events: usize,
    /// Features per pushed event.
    #[arg(long, default_value_t = 10)]
    push_features: usize,
    /// featstore's ranking answer: json, or binary (`Accept: application/x-featstore-rank`).
    #[arg(long, default_value = "json")]
    accept: Encoding,
    /// How Redis holds the data: hash (one hash per entity, HMGETs) or packed (one
    /// float32 row per entity, one MGET per ranking read).
    #[arg(long, default_value = "hash")]
    redis_layout: RedisLayout,
}

impl DataArgs {
    fn workload(&self) -> Result<Workload> {
        let names = |prefix: &str, n: usize| (0..n).map(|k| format!("{prefix}{k:02}")).collect();
        let products = EntitySet {
            entity_type: self.product_type.clone(),
            id_prefix: self.product_prefix.clone(),
            features: names(&self.product_feature_prefix, self.product_features),
            keys: KeyDist::new(self.keys, self.products)?,
        };
        let users = EntitySet {
            entity_type: self.user_type.clone(),
            id_prefix: self.user_prefix.clone(),
            features: names(&self.user_feature_prefix, self.user_features),
            keys: KeyDist::new(self.keys, self.users)?,
        };
        let sizes = Sizes {
            get_features: self.get_features,
            user_features: self.rank_user_features,
            candidates: self.candidates,
            push_events: self.push_events,
            push_features: self.push_features,
        };
        Ok(Workload::new(products, users, sizes)?
            .with_encoding(self.accept)
            .with_redis_layout(self.redis_layout))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Drive a target and report throughput and latency percentiles.
    Run {
        /// http://127.0.0.1:PORT (featstore, floor) or redis://127.0.0.1:PORT.
        #[arg(long)]
        target: String,
        /// System label in the results (default: redis or featstore from the target).
        #[arg(long)]
        system: Option<String>,
        /// Request mix: get, rank, push, or weights like get=8,rank=1,push=1.
        #[arg(long, default_value = "get")]
        mix: Mix,
        /// Connections.
        #[arg(long, default_value_t = 8)]
        connections: u32,
        /// Open loop at this many requests/s in total (default: closed loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds to run (always bounded).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Stop after this many requests.
        #[arg(long, default_value_t = u64::MAX)]
        requests: u64,
        /// Per-request timeout, ms.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Seconds of unrecorded load before the measured run.
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        data: DataArgs,
        /// Append the result to this CSV file.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Write the result as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Append the result as one JSON line to this file.
        #[arg(long)]
        jsonl: Option<PathBuf>,
    },
    /// Probe which shapes a target answers (404/405 = not available).
    Probe {
        /// Target URL.
        #[arg(long)]
        target: String,
        /// System label.
        #[arg(long)]
        system: String,
        /// Shapes to probe.
        #[arg(long, value_delimiter = ',', default_value = "get,rank,push")]
        shapes: Vec<Shape>,
        #[command(flatten)]
        data: DataArgs,
        /// Append one availability note per shape to this JSON-lines file.
        #[arg(long)]
        jsonl: Option<PathBuf>,
    },
    /// Serve the floor: every request gets 200 and the same body of BODY_BYTES.
    Floor {
        /// Loopback address to bind.
        #[arg(long, default_value = "127.0.0.1:7071")]
        addr: String,
        /// Response body size.
        #[arg(long)]
        body_bytes: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 3600)]
        exit_after: u64,
    },
    /// Load a wide CSV (entity_id[,event_time],features..) into Redis hashes.
    RedisLoad {
        /// redis://127.0.0.1:PORT.
        #[arg(long)]
        target: String,
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// Entity type (key prefix `TYPE:`, or `packed:TYPE:`).
        #[arg(long)]
        entity_type: String,
        /// hash (one field per feature) or packed (one little-endian float32 row).
        #[arg(long, default_value = "hash")]
        layout: RedisLayout,
    },
    /// Print the largest FIELD of the closed-loop runs of SYSTEM and SHAPE (with
    /// --median, the median; with --mode, of the open-loop runs or all of them).
    Stat {
        /// Results (JSON lines).
        #[arg(long)]
        results: PathBuf,
        /// System label.
        #[arg(long)]
        system: String,
        /// Shape label.
        #[arg(long)]
        shape: String,
        /// throughput, rows_per_s, mean_response_bytes, ok, refused, p50_us, p99_us or
        /// refused_p99_us.
        #[arg(long, default_value = "throughput")]
        field: String,
        /// The median of the runs instead of the largest value.
        #[arg(long)]
        median: bool,
        /// Runs of this mode: closed, open or any.
        #[arg(long, default_value = "closed")]
        mode: String,
    },
    /// Write the Markdown report and its PNG charts.
    Report {
        /// Results (JSON lines).
        #[arg(long)]
        results: PathBuf,
        /// Availability notes (JSON lines).
        #[arg(long)]
        availability: Option<PathBuf>,
        /// The report file.
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// Directory of the charts.
        #[arg(long, default_value = "docs/benchmarks")]
        plots: PathBuf,
        /// The command to quote as the report's source.
        #[arg(long, default_value = "tools/bench.sh --http")]
        command: String,
        /// A set-up line (repeatable).
        #[arg(long)]
        note: Vec<String>,
    },
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    Ok(builder.enable_all().build()?)
}

fn print_result(r: &RunResult) {
    let rate = r.rate.map_or(String::new(), |x| format!(" rate {x:.0}/s"));
    println!(
        "{} {} {} c={}{rate}: {} ok, {} errors ({}), {:.0} req/s, {:.0} rows/s, p50 {:.1} us, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}, {:.0} B/answer, send lag p99 {:.1} us, {} refused (503) p99 {:.1} us",
        r.system,
        r.shape,
        r.mode,
        r.connections,
        r.ok,
        r.errors.total(),
        serde_json::to_string(&r.errors).unwrap_or_default(),
        r.throughput,
        r.rows_per_s,
        r.p50_us,
        r.p90_us,
        r.p99_us,
        r.p999_us,
        r.max_us,
        r.mean_response_bytes,
        r.send_lag_p99_us,
        r.refused,
        r.refused_p99_us
    );
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = runtime(cli.threads)?;
    match cli.command {
        Command::Run {
            target,
            system,
            mix,
            connections,
            rate,
            duration,
            requests,
            timeout_ms,
            warmup,
            seed,
            data,
            csv,
            json,
            jsonl,
        } => {
            let target = Target::parse(&target)?;
            if !(duration.is_finite() && duration > 0.0) {
                bail!("--duration must be a positive number of seconds");
            }
            let workload = Arc::new(data.workload()?);
            let system = system.unwrap_or_else(|| {
                match target.protocol {
                    Protocol::Http => "featstore",
                    Protocol::Redis => "redis",
                }
                .to_owned()
            });
            let mut cfg = RunConfig {
                target,
                system,
                mix,
                pacing: rate.map_or(Pacing::Closed, |rate| Pacing::Open { rate }),
                connections,
                duration: Duration::from_secs_f64(duration.min(3600.0)),
                max_requests: requests,
                timeout: Duration::from_millis(timeout_ms),
                seed,
                keys_label: data.keys.to_string(),
            };
            let result = rt.block_on(async {
                if warmup > 0.0 && warmup.is_finite() {
                    let mut w = cfg.clone();
                    w.duration = Duration::from_secs_f64(warmup.min(600.0));
                    w.seed = seed ^ 0x5741_524d; // "WARM"
                    runner::run(&w, workload.clone()).await?;
                }
                cfg.seed = seed;
                runner::run(&cfg, workload).await
            })?;
            print_result(&result);
            if let Some(path) = csv {
                output::append_csv(&path, &result).with_context(|| path.display().to_string())?;
            }
            if let Some(path) = json {
                output::write_json(&path, &result).with_context(|| path.display().to_string())?;
            }
            if let Some(path) = jsonl {
                output::append_jsonl(&path, &result).with_context(|| path.display().to_string())?;
            }
            Ok(())
        }
        Command::Probe {
            target,
            system,
            shapes,
            data,
            jsonl,
        } => {
            let target = Target::parse(&target)?;
            let workload = data.workload()?;
            for shape in shapes {
                let availability = rt.block_on(runner::probe(
                    &target,
                    &workload,
                    shape,
                    Duration::from_secs(10),
                ))?;
                let note = match availability {
                    Availability::Available => AvailabilityNote {
                        system: system.clone(),
                        shape: shape.name().to_owned(),
                        available: true,
                        detail: String::new(),
                    },
                    Availability::NotAvailable { status, message } => AvailabilityNote {
                        system: system.clone(),
                        shape: shape.name().to_owned(),
                        available: false,
                        detail: format!("HTTP {status}: {message}"),
                    },
                };
                println!(
                    "{} {} {}",
                    note.system,
                    note.shape,
                    if note.available {
                        "available"
                    } else {
                        "not-available"
                    }
                );
                if let Some(path) = &jsonl {
                    output::append_jsonl(path, &note)
                        .with_context(|| path.display().to_string())?;
                }
            }
            Ok(())
        }
        Command::Floor {
            addr,
            body_bytes,
            exit_after,
        } => {
            let addr = loopback_addr(&addr)?;
            if body_bytes > floor::MAX_BODY_BYTES {
                bail!("--body-bytes must be at most {}", floor::MAX_BODY_BYTES);
            }
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))?;
                eprintln!(
                    "floor serving {body_bytes}-byte answers on http://{}",
                    listener.local_addr()?
                );
                let stop = async {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(exit_after)) => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                };
                floor::serve(listener, floor::body_of(body_bytes), stop).await?;
                Ok(())
            })
        }
        Command::RedisLoad {
            target,
            csv,
            entity_type,
            layout,
        } => {
            let target = Target::parse(&target)?;
            if target.protocol != Protocol::Redis {
                bail!("redis-load needs a redis:// target");
            }
            let started = std::time::Instant::now();
            let rows = rt.block_on(redis_load::load_csv(
                target.addr,
                &csv,
                &entity_type,
                layout,
            ))?;
            eprintln!(
                "loaded {rows} {entity_type} rows ({layout:?} layout) from {} into {} in {:.1}s",
                csv.display(),
                target.url(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Stat {
            results,
            system,
            shape,
            field,
            median,
            mode,
        } => {
            let runs: Vec<RunResult> = output::read_jsonl(&results)?;
            if !pick_known(&field) {
                bail!(
                    "unknown field `{field}`: use throughput, rows_per_s, mean_response_bytes, ok, refused, p50_us, p99_us or refused_p99_us"
                );
            }
            let pick = |r: &RunResult| match field.as_str() {
                "throughput" => r.throughput,
                "rows_per_s" => r.rows_per_s,
                "mean_response_bytes" => r.mean_response_bytes,
                "ok" => r.ok as f64,
                "refused" => r.refused as f64,
                "p50_us" => r.p50_us,
                "p99_us" => r.p99_us,
                _ => r.refused_p99_us,
            };
            let mut values: Vec<f64> = runs
                .iter()
                .filter(|r| {
                    r.system == system
                        && r.shape == shape
                        && (mode == "any" || r.mode == mode)
                        && r.ok > 0
                })
                .map(pick)
                .collect();
            values.sort_by(f64::total_cmp);
            let value = if median {
                values.get(values.len() / 2).copied()
            } else {
                values.last().copied()
            };
            // Counts and rates as whole numbers (scripts do arithmetic on them).
            let latency = field.ends_with("_us");
            match value {
                Some(v) if !latency => {
                    println!("{v:.0}");
                    Ok(())
                }
                Some(v) => {
                    println!("{v:.1}");
                    Ok(())
                }
                None => bail!(
                    "no {mode}-loop {system} {shape} run in {}",
                    results.display()
                ),
            }
        }
        Command::Report {
            results,
            availability,
            out,
            plots,
            command,
            note,
        } => {
            let runs: Vec<RunResult> = output::read_jsonl(&results)?;
            let availability = match availability {
                Some(path) => output::read_jsonl(&path)?,
                None => Vec::new(),
            };
            let ctx = ReportContext {
                command,
                notes: note,
                availability,
            };
            report::write(&runs, &ctx, &out, &plots).with_context(|| out.display().to_string())?;
            eprintln!("wrote {} and charts in {}", out.display(), plots.display());
            Ok(())
        }
    }
}

fn pick_known(field: &str) -> bool {
    matches!(
        field,
        "throughput"
            | "rows_per_s"
            | "mean_response_bytes"
            | "ok"
            | "refused"
            | "p50_us"
            | "p99_us"
            | "refused_p99_us"
    )
}
