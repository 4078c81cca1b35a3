//! Peak memory of a `featstore serve` process under large pushes (issue 12, item 4).
//!
//! For each scenario a fresh server is started on an empty data directory (its own
//! process, so its memory is its own), ten float64 features are registered and one
//! small push creates the stream column family; then `CONCURRENCY` clients each send
//! one push of about `MB` megabytes at once, valid (every event applies) or rejected
//! (every event names an unknown feature, so nothing applies and every event is listed
//! in the answer). Reported per scenario: the answers by status (`closed`: the
//! connection failed, e.g. closed by the server while the client was still sending),
//! the resident set
//! before the pushes (`VmRSS`) and its peak (`VmHWM` of `/proc/PID/status`), and the
//! peak growth per body byte of the pushes the server processed (answered 200 or 400;
//! a 503 was refused before its body was kept).
//!
//! `featstore-push-memory [--featstore PATH] [--mb 14.8] [--scenarios valid:1,valid:8,rejected:1,rejected:8,rejected:16] [-- SERVE_ARGS..]`
//!
//! `--featstore` defaults to the `featstore` binary next to this one; give an older
//! build to compare. Arguments after `--` go to `featstore serve` (e.g.
//! `--memory-wait 60s` to let every push wait for request memory instead of being
//! refused). Linux only (`/proc`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Features per event (all float64).
const FEATURES: usize = 10;

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(featstore: &PathBuf, data: &std::path::Path, serve_args: &[String]) -> Result<Server> {
        let mut child = Command::new(featstore)
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(serve_args)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", featstore.display()))?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(url) = line.strip_prefix("featstore serving on ") {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .context("the server did not report its address")?;
        Ok(Server { child, base })
    }

    /// `VmRSS` and `VmHWM`, bytes.
    fn memory(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/PID/status"))?;
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .context("no value")?
                .parse()?;
            Ok(kb * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// POSTs `body`; the status, or 0 when the connection failed (a server that refuses a
/// body before reading it closes the connection, which the sender may see first).
fn post(base: &str, path: &str, body: &[u8]) -> u16 {
    match agent()
        .post(&format!("{base}{path}"))
        .header("content-type", "application/json")
        .send(body)
    {
        Ok(mut response) => {
            // Read the answer whole: a refused push lists every event.
            let _ = response.body_mut().read_to_vec();
            response.status().as_u16()
        }
        Err(_) => 0,
    }
}

fn specs() -> String {
    let features: Vec<String> = (0..FEATURES)
        .map(|k| {
            format!(
                r#"{{"name":"mem_f{k:02}","entity_type":"item","group":"mem_live","owner":"tools","dtype":"float64"}}"#
            )
        })
        .collect();
    format!(r#"{{"features":[{}]}}"#, features.join(","))
}

/// A push body of about `bytes` bytes; `client` makes entity ids distinct per client.
fn body(bytes: usize, valid: bool, client: usize) -> Vec<u8> {
    let mut out = String::with_capacity(bytes + 512);
    out.push_str(r#"{"events":["#);
    let now = now_ms();
    let mut n = 0u64;
    while out.len() < bytes {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"entity_type":"item","entity_id":"c{client}-e{n}","event_time":{},"features":{{"#,
            now - 1000
        ));
        for k in 0..FEATURES {
            if k > 0 {
                out.push(',');
            }
            let name = if valid || k > 0 {
                format!("mem_f{k:02}")
            } else {
                "mem_unknown".to_owned()
            };
            out.push_str(&format!(
                r#""{name}":{}.{:06}"#,
                n % 1000,
                (n * 7919 + k as u64) % 1_000_000
            ));
        }
        out.push_str("}}");
        n += 1;
    }
    out.push_str("]}");
    out.into_bytes()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Pushes answered 200 or 400: the ones whose bodies the server read and decoded.
fn statuses_len(counts: &std::collections::BTreeMap<u16, usize>) -> usize {
    counts
        .iter()
        .filter(|(s, _)| matches!(s, 200 | 400))
        .map(|(_, n)| n)
        .sum()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> Result<()> {
    let mut featstore = std::env::current_exe()?.with_file_name("featstore");
    let mut megabytes = 14.8f64;
    let mut scenarios = "valid:1,valid:8,rejected:1,rejected:8,rejected:16".to_owned();
    let mut serve_args = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--featstore" => featstore = args.next().context("--featstore PATH")?.into(),
            "--mb" => megabytes = args.next().context("--mb MB")?.parse()?,
            "--scenarios" => scenarios = args.next().context("--scenarios LIST")?,
            "--" => serve_args.extend(args.by_ref()),
            other => bail!("unknown argument {other}; see the tool's docs"),
        }
    }
    let bytes = (megabytes * 1e6) as usize;
    println!(
        "featstore {} | body {:.1} MB | serve args {:?}",
        featstore.display(),
        bytes as f64 / 1e6,
        serve_args
    );
    println!(
        "| pushes | concurrent | answers | RSS before | peak RSS | peak growth | growth / processed body byte |"
    );
    println!("|---|---|---|---|---|---|---|");
    for scenario in scenarios.split(',') {
        let (kind, concurrency) = scenario
            .split_once(':')
            .with_context(|| format!("scenario {scenario}: KIND:CONCURRENCY"))?;
        let valid = match kind {
            "valid" => true,
            "rejected" => false,
            other => bail!("scenario kind {other}: valid or rejected"),
        };
        let concurrency: usize = concurrency.parse()?;
        let bodies: Vec<Vec<u8>> = (0..concurrency).map(|c| body(bytes, valid, c)).collect();
        let dir = tempfile::tempdir()?;
        let server = Server::start(&featstore, &dir.path().join("store"), &serve_args)?;
        if post(&server.base, "/v1/feature-definitions", specs().as_bytes()) != 200 {
            bail!("registering the features failed");
        }
        if post(&server.base, "/v1/push", &body(200, true, 999)) != 200 {
            bail!("the warm-up push failed");
        }
        let (before, _) = server.memory()?;
        let started = Instant::now();
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = bodies
                .iter()
                .map(|b| scope.spawn(|| post(&server.base, "/v1/push", b)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
        });
        let elapsed = started.elapsed();
        let (_, peak) = server.memory()?;
        let mut counts: std::collections::BTreeMap<u16, usize> = std::collections::BTreeMap::new();
        for s in statuses {
            *counts.entry(s).or_insert(0) += 1;
        }
        let answers: Vec<String> = counts
            .iter()
            .map(|(s, n)| match s {
                0 => format!("{n}x closed"),
                s => format!("{n}x {s}"),
            })
            .collect();
        let processed: usize = statuses_len(&counts) * bytes;
        let growth = peak.saturating_sub(before);
        println!(
            "| {kind} | {concurrency} | {} in {:.1} s | {:.0} MB | {:.0} MB | {:.0} MB | {:.1} |",
            answers.join(", "),
            elapsed.as_secs_f64(),
            mb(before),
            mb(peak),
            mb(growth),
            growth as f64 / processed.max(1) as f64
        );
    }
    Ok(())
}
