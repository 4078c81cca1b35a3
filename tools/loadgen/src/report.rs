//! The benchmark report: from the runs the suite recorded (JSON lines of
//! [`RunResult`]) and the availability of each shape, writes `docs/benchmarks.md`
//! (context, where each target of the issue stands, one table of every run) and one
//! PNG chart per shape (latency against throughput, each system a colour; p99 solid,
//! p50 dashed), plus an open-loop chart per shape that has open-loop runs.
//!
//! The targets are judged on closed-loop maxima and the open-loop run nearest half of
//! featstore's maximum; a target whose runs are missing (a shape the server does not
//! serve yet) is reported as not measured, never as met. Pure functions over the
//! results plus file writes; safe from any thread.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::output::AvailabilityNote;
use crate::plot::{Chart, Rgb, Series, render, short_count};
use crate::stats::RunResult;

/// The throughput featstore must reach relative to the floor (single reads).
pub const FLOOR_RATIO_TARGET: f64 = 0.8;
/// The p99 bound at half of the maximum throughput, µs.
pub const P99_AT_HALF_TARGET_US: f64 = 1000.0;
/// The system label of featstore runs on both cores (unpinned), which count for the
/// entity-reads target.
pub const TWO_CORE_SYSTEM: &str = "featstore-2core";
/// Entity reads per second to sustain.
pub const ENTITY_READS_TARGET: f64 = 100_000.0;

/// Where one target stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    /// The target, in words.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// `Some(true)` met, `Some(false)` not met, `None` not measured.
    pub met: Option<bool>,
}

fn closed<'a>(
    runs: &'a [RunResult],
    system: &'a str,
    shape: &'a str,
) -> impl Iterator<Item = &'a RunResult> {
    runs.iter()
        .filter(move |r| r.system == system && r.shape == shape && r.mode == "closed")
}

/// The closed-loop run of `system` and `shape` with the highest throughput.
pub fn best_closed<'a>(
    runs: &'a [RunResult],
    system: &'a str,
    shape: &'a str,
) -> Option<&'a RunResult> {
    closed(runs, system, shape).max_by(|a, b| a.throughput.total_cmp(&b.throughput))
}

/// Judges the targets on `runs`.
pub fn targets(runs: &[RunResult]) -> Vec<TargetStatus> {
    let mut out = Vec::new();
    let fs_get = best_closed(runs, "featstore", "get");
    let floor_get = best_closed(runs, "floor", "get");
    out.push(match (fs_get, floor_get) {
        (Some(f), Some(fl)) if fl.throughput > 0.0 => {
            let ratio = f.throughput / fl.throughput;
            TargetStatus {
                target: format!(
                    "single-entity reads (50 features) at >= {:.0}% of the floor's throughput",
                    FLOOR_RATIO_TARGET * 100.0
                ),
                measured: format!(
                    "{:.0}% ({:.0} vs {:.0} requests/s, best closed-loop runs: {} and {} connections)",
                    ratio * 100.0,
                    f.throughput,
                    fl.throughput,
                    f.connections,
                    fl.connections
                ),
                met: Some(ratio >= FLOOR_RATIO_TARGET),
            }
        }
        _ => not_measured("single-entity reads at >= 80% of the floor's throughput", "featstore or floor get runs missing"),
    });
    out.push(match fs_get {
        Some(best) => {
            let half = best.throughput / 2.0;
            let near = runs
                .iter()
                .filter(|r| r.system == "featstore" && r.shape == "get" && r.mode == "open")
                .filter_map(|r| r.rate.map(|rate| (r, (rate - half).abs())))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(r, _)| r);
            match near {
                Some(r) => TargetStatus {
                    target: "single reads: p99 under 1 ms at half of the maximum throughput".into(),
                    measured: format!(
                        "p99 {} at {:.0} requests/s offered (open loop; max {:.0}), {:.0} answered/s",
                        us(r.p99_us),
                        r.rate.unwrap_or_default(),
                        best.throughput,
                        r.throughput
                    ),
                    met: Some(r.p99_us < P99_AT_HALF_TARGET_US && r.errors.total() == 0),
                },
                None => not_measured("p99 under 1 ms at half of the maximum throughput", "no open-loop featstore get run"),
            }
        }
        None => not_measured("p99 under 1 ms at half of the maximum throughput", "no featstore get run"),
    });
    let fs_rank = best_closed(runs, "featstore", "rank");
    let redis_rank = best_closed(runs, "redis", "rank");
    out.push(match (fs_rank, redis_rank) {
        (Some(f), Some(r)) => TargetStatus {
            target: "ranking (1 user + 100 products x 50 features): more entity rows/s than Redis with pipelined HMGETs".into(),
            measured: format!(
                "{} vs {} rows/s ({:.2}x)",
                short_count(f.rows_per_s),
                short_count(r.rows_per_s),
                f.rows_per_s / r.rows_per_s.max(1e-9)
            ),
            met: Some(f.rows_per_s > r.rows_per_s),
        },
        (None, Some(r)) => not_measured(
            "ranking: more entity rows/s than Redis with pipelined HMGETs",
            &format!("featstore does not serve POST /v1/rank in this build; Redis: {} rows/s", short_count(r.rows_per_s)),
        ),
        _ => not_measured("ranking: more entity rows/s than Redis with pipelined HMGETs", "ranking runs missing"),
    });
    out.push(packed_rank_target(runs));
    out.push(packed_get_target(runs));
    let best_rows = runs
        .iter()
        .filter(|r| {
            (r.system == "featstore" || r.system == TWO_CORE_SYSTEM)
                && (r.shape == "get" || r.shape == "rank")
        })
        .max_by(|a, b| a.rows_per_s.total_cmp(&b.rows_per_s));
    out.push(match best_rows {
        Some(r) => TargetStatus {
            target: "100,000 entity reads/s sustained on two cores".into(),
            measured: format!(
                "{} entity reads/s ({}, {} shape, {} connections, {} loop)",
                short_count(r.rows_per_s),
                r.system,
                r.shape,
                r.connections,
                r.mode
            ),
            met: Some(r.rows_per_s >= ENTITY_READS_TARGET),
        },
        None => not_measured(
            "100,000 entity reads/s on two cores",
            "no featstore read runs",
        ),
    });
    out
}

/// The system label of featstore's ranking runs with the binary answer.
pub const BINARY_SYSTEM: &str = "featstore-binary";
/// The system label of Redis holding one packed float32 row per entity.
pub const PACKED_SYSTEM: &str = "redis-packed";

/// Binary ranking over HTTP against Redis's packed rows and one `MGET`, per core; the
/// JSON answer's ratio is reported beside it.
fn packed_rank_target(runs: &[RunResult]) -> TargetStatus {
    let target = "binary ranking answer over HTTP: at least Redis's entity rows/s with packed rows and one MGET, per core";
    let packed = best_closed(runs, PACKED_SYSTEM, "rank");
    let binary = best_closed(runs, BINARY_SYSTEM, "rank");
    let json = best_closed(runs, "featstore", "rank");
    match (binary, packed) {
        (Some(b), Some(p)) if p.rows_per_s > 0.0 => {
            let json_part = json.map_or(String::new(), |j| {
                format!(
                    "; JSON answer {} rows/s ({:.2}x)",
                    short_count(j.rows_per_s),
                    j.rows_per_s / p.rows_per_s
                )
            });
            TargetStatus {
                target: target.into(),
                measured: format!(
                    "{} vs {} rows/s ({:.2}x){json_part}",
                    short_count(b.rows_per_s),
                    short_count(p.rows_per_s),
                    b.rows_per_s / p.rows_per_s
                ),
                met: Some(b.rows_per_s >= p.rows_per_s),
            }
        }
        _ => not_measured(
            target,
            "binary featstore or packed Redis ranking runs missing",
        ),
    }
}

/// Single GETs against a Redis `GET` of the packed row.
fn packed_get_target(runs: &[RunResult]) -> TargetStatus {
    let target =
        "single GETs (50 features): at least the requests/s of Redis's GET of a packed row";
    match (
        best_closed(runs, "featstore", "get"),
        best_closed(runs, PACKED_SYSTEM, "get"),
    ) {
        (Some(f), Some(p)) if p.throughput > 0.0 => TargetStatus {
            target: target.into(),
            measured: format!(
                "{:.0} vs {:.0} requests/s ({:.2}x)",
                f.throughput,
                p.throughput,
                f.throughput / p.throughput
            ),
            met: Some(f.throughput >= p.throughput),
        },
        _ => not_measured(target, "featstore or packed Redis get runs missing"),
    }
}

fn not_measured(target: &str, why: &str) -> TargetStatus {
    TargetStatus {
        target: target.to_owned(),
        measured: why.to_owned(),
        met: None,
    }
}

/// A latency in µs for tables: `87 µs`, `1.25 ms`.
pub fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn color(system: &str) -> Rgb {
    match system {
        "featstore" => [205, 40, 40],
        TWO_CORE_SYSTEM => [235, 140, 20],
        "floor" => [110, 110, 110],
        "redis" => [30, 90, 200],
        PACKED_SYSTEM => [120, 60, 190],
        BINARY_SYSTEM => [150, 20, 90],
        _ => [20, 150, 60],
    }
}

/// The charts of `runs`: per shape, closed loop (p99 solid, p50 dashed per system),
/// and open loop when there are such runs. Returns (file stem, chart).
pub fn charts(runs: &[RunResult]) -> Vec<(String, Chart)> {
    let shapes: BTreeSet<&str> = runs.iter().map(|r| r.shape.as_str()).collect();
    let systems: BTreeSet<&str> = runs.iter().map(|r| r.system.as_str()).collect();
    let mut out = Vec::new();
    for shape in shapes {
        for mode in ["closed", "open"] {
            let mut series = Vec::new();
            for system in &systems {
                let points: Vec<&RunResult> = runs
                    .iter()
                    .filter(|r| {
                        r.system == *system && r.shape == shape && r.mode == mode && r.ok > 0
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                for (label, dashed, pick) in [
                    (
                        "p99",
                        false,
                        (|r: &RunResult| r.p99_us) as fn(&RunResult) -> f64,
                    ),
                    ("p50", true, |r: &RunResult| r.p50_us),
                ] {
                    series.push(Series {
                        label: format!("{system} {label}"),
                        color: color(system),
                        dashed,
                        points: points.iter().map(|r| (r.throughput, pick(r))).collect(),
                    });
                }
            }
            if series.is_empty() {
                continue;
            }
            let stem = format!("{}-{mode}", shape.replace([',', '='], "_"));
            out.push((
                stem,
                Chart {
                    title: format!("{shape}: latency vs throughput, {mode} loop"),
                    x_label: "answered requests/s".into(),
                    y_label: "latency (log)".into(),
                    log_y: true,
                    series,
                },
            ));
        }
    }
    out
}

/// Everything the report says besides the runs.
#[derive(Debug, Clone, Default)]
pub struct ReportContext {
    /// The command that produced it.
    pub command: String,
    /// Free-form lines about the machine, data set, pinning.
    pub notes: Vec<String>,
    /// Shapes probed per system.
    pub availability: Vec<AvailabilityNote>,
}

/// The Markdown report; `plot_dir` is the charts' directory relative to the report.
pub fn markdown(
    runs: &[RunResult],
    ctx: &ReportContext,
    plot_dir: &str,
    stems: &[String],
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks: featstore, the HTTP floor and Redis under load\n"
    );
    let _ = writeln!(
        md,
        "Generated by `{}` (source: `tools/bench-http.sh`, `tools/loadgen/`). Every figure below comes \
         from one run of that script on this machine; ratios compare runs of the same script run.\n",
        ctx.command
    );
    if !ctx.notes.is_empty() {
        let _ = writeln!(md, "## Set-up\n");
        for note in &ctx.notes {
            let _ = writeln!(md, "* {note}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | status |\n|---|---|---|");
    for t in targets(runs) {
        let status = match t.met {
            Some(true) => "**met**",
            Some(false) => "not met",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {status} |", t.target, t.measured);
    }
    md.push('\n');
    let missing: Vec<&AvailabilityNote> =
        ctx.availability.iter().filter(|a| !a.available).collect();
    if !missing.is_empty() {
        let _ = writeln!(md, "## Not available\n");
        let _ = writeln!(
            md,
            "These shapes were probed and the server answered 404/405, so they were not run:\n"
        );
        for a in missing {
            let _ = writeln!(
                md,
                "* {} `{}`: {}",
                a.system,
                a.shape,
                a.detail.replace('|', "/")
            );
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Runs\n");
    let _ = writeln!(
        md,
        "Throughput counts answered requests; rows/s counts entity rows (1 per get, 1 + candidates per \
         ranking request, the events of a push). Open-loop latency runs from each request's intended \
         send time (coordinated omission corrected); its send lag p99 is how late the load generator \
         itself sent requests (large values: the generator, not the server, fell behind).\n"
    );
    let _ = writeln!(
        md,
        "| system | shape | loop | connections | rate (req/s) | throughput (req/s) | rows/s | p50 | p99 | p99.9 | max | errors | send lag p99 |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut sorted: Vec<&RunResult> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.shape.as_str(),
            a.system.as_str(),
            a.mode.as_str(),
            a.connections,
        )
            .cmp(&(
                b.shape.as_str(),
                b.system.as_str(),
                b.mode.as_str(),
                b.connections,
            ))
            .then(a.rate.unwrap_or(0.0).total_cmp(&b.rate.unwrap_or(0.0)))
    });
    for r in sorted {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.shape,
            r.mode,
            r.connections,
            r.rate.map_or("-".to_owned(), |x| format!("{x:.0}")),
            r.throughput,
            r.rows_per_s,
            us(r.p50_us),
            us(r.p99_us),
            us(r.p999_us),
            us(r.max_us),
            r.errors.total(),
            if r.mode == "open" {
                us(r.send_lag_p99_us)
            } else {
                "-".to_owned()
            }
        );
    }
    md.push('\n');
    if !stems.is_empty() {
        let _ = writeln!(md, "## Latency against throughput\n");
        let _ = writeln!(
            md,
            "Each point is one run; solid lines are p99, dashed p50; red featstore, orange featstore on both cores, grey the floor, blue Redis. \
             Closed-loop charts trace the curve as connections grow; open-loop charts show latency at fixed offered rates.\n"
        );
        for stem in stems {
            let _ = writeln!(md, "![{stem}]({plot_dir}/{stem}.png)\n");
        }
    }
    md
}

/// Writes the report to `out` and its charts to `plot_dir` (created).
pub fn write(
    runs: &[RunResult],
    ctx: &ReportContext,
    out: &Path,
    plot_dir: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(plot_dir)?;
    let mut stems = Vec::new();
    for (stem, chart) in charts(runs) {
        std::fs::write(plot_dir.join(format!("{stem}.png")), render(&chart))?;
        stems.push(stem);
    }
    let relative = out
        .parent()
        .and_then(|parent| plot_dir.strip_prefix(parent).ok())
        .map_or_else(
            || plot_dir.display().to_string(),
            |p| p.display().to_string(),
        );
    std::fs::write(out, markdown(runs, ctx, &relative, &stems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorCounts;

    fn run(
        system: &str,
        shape: &str,
        conns: u32,
        rate: Option<f64>,
        tput: f64,
        rows: f64,
        p99: f64,
    ) -> RunResult {
        RunResult {
            system: system.into(),
            shape: shape.into(),
            mode: if rate.is_some() { "open" } else { "closed" }.into(),
            connections: conns,
            rate,
            keys: "uniform".into(),
            elapsed_s: 5.0,
            requests: 100,
            ok: 100,
            errors: ErrorCounts::default(),
            throughput: tput,
            rows_per_s: rows,
            p50_us: p99 / 2.0,
            p90_us: p99 * 0.8,
            p99_us: p99,
            p999_us: p99 * 1.5,
            max_us: p99 * 2.0,
            mean_us: p99 / 2.0,
            mean_response_bytes: 4000.0,
            send_lag_p99_us: 0.0,
            refused: 0,
            refused_p99_us: 0.0,
        }
    }

    #[test]
    fn targets_are_judged_from_the_right_runs() {
        let runs = vec![
            run("featstore", "get", 1, None, 10_000.0, 10_000.0, 200.0),
            run("featstore", "get", 16, None, 40_000.0, 40_000.0, 900.0),
            run("floor", "get", 16, None, 45_000.0, 45_000.0, 500.0),
            run(
                "featstore",
                "get",
                16,
                Some(10_000.0),
                10_000.0,
                10_000.0,
                2000.0,
            ),
            run(
                "featstore",
                "get",
                16,
                Some(20_000.0),
                20_000.0,
                20_000.0,
                800.0,
            ),
            run("redis", "rank", 4, None, 1_000.0, 101_000.0, 3000.0),
        ];
        let t = targets(&runs);
        let mut with_two_cores = runs.clone();
        with_two_cores.push(run(
            TWO_CORE_SYSTEM,
            "get",
            64,
            None,
            120_000.0,
            120_000.0,
            900.0,
        ));
        let four = &targets(&with_two_cores)[5];
        assert_eq!(four.met, Some(true), "{four:?}");
        assert!(
            four.measured.contains("featstore-2core"),
            "{}",
            four.measured
        );
        // The two-core run does not change the pinned comparison with the floor.
        assert_eq!(targets(&with_two_cores)[0], t[0]);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0].met, Some(true), "{:?}", t[0]);
        assert!(t[0].measured.starts_with("89%"), "{}", t[0].measured);
        // The run at 20k (half of 40k) is judged, not the one at 10k.
        assert_eq!(t[1].met, Some(true), "{:?}", t[1]);
        assert!(t[1].measured.contains("800 µs"), "{}", t[1].measured);
        assert_eq!(t[2].met, None, "no featstore ranking: not measured");
        assert_eq!(t[3].met, None, "no packed Redis runs: not measured");
        assert_eq!(t[4].met, None, "no packed Redis runs: not measured");
        assert_eq!(t[5].met, Some(false));
        assert!(t[5].measured.starts_with("40k"), "{}", t[5].measured);
    }

    #[test]
    fn packed_redis_targets_compare_per_core_rows_and_requests() {
        let runs = vec![
            run("featstore", "get", 16, None, 40_000.0, 40_000.0, 900.0),
            run(PACKED_SYSTEM, "get", 16, None, 50_000.0, 50_000.0, 300.0),
            run("featstore", "rank", 16, None, 2_000.0, 202_000.0, 9000.0),
            run(BINARY_SYSTEM, "rank", 16, None, 6_000.0, 606_000.0, 3000.0),
            run(BINARY_SYSTEM, "rank", 4, None, 5_000.0, 505_000.0, 900.0),
            run(
                PACKED_SYSTEM,
                "rank",
                16,
                None,
                10_000.0,
                1_010_000.0,
                2000.0,
            ),
        ];
        let t = targets(&runs);
        assert_eq!(t[3].met, Some(false), "{:?}", t[3]);
        assert!(
            t[3].measured
                .starts_with("606k vs 1.0M rows/s (0.60x); JSON answer 202k rows/s (0.20x)"),
            "{}",
            t[3].measured
        );
        assert_eq!(t[4].met, Some(false), "{:?}", t[4]);
        assert!(t[4].measured.contains("(0.80x)"), "{}", t[4].measured);
        let mut faster = runs.clone();
        faster.push(run(
            BINARY_SYSTEM,
            "rank",
            64,
            None,
            11_000.0,
            1_111_000.0,
            9000.0,
        ));
        assert_eq!(targets(&faster)[3].met, Some(true));
    }

    #[test]
    fn the_report_lists_every_run_and_chart() {
        let runs = vec![
            run("featstore", "get", 1, None, 10_000.0, 10_000.0, 200.0),
            run("redis", "get", 1, Some(5_000.0), 5_000.0, 5_000.0, 100.0),
        ];
        let ctx = ReportContext {
            command: "tools/bench.sh --http".into(),
            notes: vec!["2 cores".into()],
            availability: vec![AvailabilityNote {
                system: "featstore".into(),
                shape: "rank".into(),
                available: false,
                detail: "404 no such endpoint".into(),
            }],
        };
        let stems: Vec<String> = charts(&runs).into_iter().map(|(s, _)| s).collect();
        assert_eq!(stems, ["get-closed", "get-open"]);
        let md = markdown(&runs, &ctx, "benchmarks", &stems);
        assert_eq!(
            md.matches("\n| featstore | get |").count() + md.matches("\n| redis | get |").count(),
            2
        );
        assert!(md.contains("![get-open](benchmarks/get-open.png)"));
        assert!(md.contains("featstore `rank`: 404 no such endpoint"));
        assert!(md.contains("* 2 cores"));
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("benchmarks.md");
        write(&runs, &ctx, &out, &dir.path().join("benchmarks")).expect("write");
        assert!(dir.path().join("benchmarks/get-closed.png").exists());
        assert!(
            std::fs::read_to_string(&out)
                .expect("read")
                .contains("(benchmarks/get-closed.png)")
        );
    }
}
