//! The `featstore log ...` and `featstore training-set` commands: thin wrappers over
//! [`super::reader`] and [`super::export`].

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::reader::{Selection, read_all, tail};
use super::record::Record;

/// Where the log is.
#[derive(clap::Args, Debug, Clone)]
pub struct LogDir {
    /// Directory of the serving log (`[serving_log] dir`; default
    /// `<data dir>/serving-log`).
    #[arg(long, default_value = "featstore-data/serving-log")]
    pub log_dir: PathBuf,
}

/// A time range of log times.
#[derive(clap::Args, Debug, Clone)]
pub struct Range {
    /// Oldest log time, inclusive (epoch ms or RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Newest log time, exclusive (epoch ms or RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Only reads of this feature service.
    #[arg(long)]
    pub service: Option<String>,
}

impl Range {
    fn selection(&self) -> Result<Selection> {
        let parse = |t: &Option<String>| -> Result<Option<i64>> {
            t.as_deref()
                .map(|t| {
                    featstore_format::types::parse_timestamp_ms(t)
                        .with_context(|| format!("bad time `{t}`"))
                })
                .transpose()
        };
        Ok(Selection {
            from_ms: parse(&self.from)?,
            to_ms: parse(&self.to)?,
            service: self.service.clone(),
            request_id: None,
        })
    }
}

/// `featstore log ...`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum LogCommand {
    /// Write the selected records as Parquet in Feast's logging schema.
    Export {
        /// Where the log is.
        #[command(flatten)]
        dir: LogDir,
        /// Which records.
        #[command(flatten)]
        range: Range,
        /// Output directory (one subdirectory per read shape).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the newest records, one JSON line each.
    Tail {
        /// Where the log is.
        #[command(flatten)]
        dir: LogDir,
        /// Records to print.
        #[arg(short, long, default_value_t = 10)]
        n: usize,
    },
    /// Print the answer a request got, re-encoded from the log.
    Show {
        /// Where the log is.
        #[command(flatten)]
        dir: LogDir,
        /// The request id (`X-Request-Id`).
        request_id: String,
    },
}

/// `featstore training-set --from-log` (log and wait; the point-in-time form with
/// `--spine` is `crate::training`).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainingSetArgs {
    /// Directory of the serving log: join its served rows with labels.
    #[arg(long, requires = "labels")]
    pub from_log: Option<PathBuf>,
    /// Which records.
    #[command(flatten)]
    pub range: Range,
    /// Labels (with `--from-log`): a Parquet file (`.parquet`) or a CSV file with a
    /// header.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Join columns: `request_id`, optionally followed by the candidate's entity column.
    #[arg(long, value_delimiter = ',', default_value = "request_id")]
    pub join: Vec<String>,
    /// The Parquet file to write.
    #[arg(long)]
    pub out: PathBuf,
}

fn summary_line(r: &Record) -> String {
    serde_json::json!({
        "request_id": r.request_id,
        "log_ms": r.log_ms(),
        "route": r.route,
        "service": r.answer.service,
        "entity_type": r.answer.candidate_type,
        "candidates": r.answer.candidates.len(),
        "features": r.answer.columns.len() + r.answer.context_columns.len(),
        "values": r.value_count(),
    })
    .to_string()
}

/// Runs a `featstore log` command.
pub fn run_log(command: LogCommand) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        LogCommand::Export { dir, range, out } => {
            let started = std::time::Instant::now();
            let summary = super::export::export(&dir.log_dir, &range.selection()?, &out)?;
            let secs = started.elapsed().as_secs_f64();
            writeln!(
                stdout,
                "exported {} records, {} rows, {} values into {} files in {:.2} s ({:.0} values/s); {} damaged regions skipped, {} torn files",
                summary.records,
                summary.rows,
                summary.values,
                summary.files.len(),
                secs,
                summary.values as f64 / secs.max(1e-9),
                summary.corruptions,
                summary.torn_files
            )?;
            for f in &summary.files {
                writeln!(stdout, "wrote {}", f.display())?;
            }
        }
        LogCommand::Tail { dir, n } => {
            for r in tail(&dir.log_dir, n)? {
                writeln!(stdout, "{}", summary_line(&r))?;
            }
        }
        LogCommand::Show { dir, request_id } => {
            let selection = Selection {
                request_id: Some(request_id.clone()),
                ..Selection::default()
            };
            let (records, _) = read_all(&dir.log_dir, &selection)?;
            if records.is_empty() {
                bail!("request `{request_id}` is not in the log (not sampled, dropped, or pruned)");
            }
            for r in records {
                stdout.write_all(&r.replay_json()?)?;
                stdout.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

/// Runs `featstore training-set`.
pub fn run_training_set(args: TrainingSetArgs) -> Result<()> {
    let (Some(from_log), Some(labels)) = (&args.from_log, &args.labels) else {
        anyhow::bail!(
            "give --from-log DIR --labels FILE (or --spine FILE for a point-in-time set)"
        );
    };
    let summary = super::export::training_set(
        from_log,
        &args.range.selection()?,
        labels,
        &args.join,
        &args.out,
    )?;
    println!(
        "wrote {}: {} rows, {} with a label; {} label rows matched no served row",
        args.out.display(),
        summary.rows,
        summary.labelled_rows,
        summary.unmatched_labels
    );
    Ok(())
}
