//! Result files: CSV (one row per run, header once), JSON (one run, pretty) and JSON
//! lines (one run per line, what the benchmark script accumulates and the report
//! reads), plus the availability notes of probed shapes.
//!
//! CSV fields are quoted when they hold a comma, quote or line break (a mix label
//! such as `get=8,rank=1` does), doubling inner quotes (RFC 4180). Absent values (the
//! rate of a closed-loop run) are empty cells.

use std::fs::OpenOptions;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stats::RunResult;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 24] = [
    "system",
    "shape",
    "mode",
    "connections",
    "rate",
    "keys",
    "elapsed_s",
    "requests",
    "ok",
    "errors_connect",
    "errors_timeout",
    "errors_http_4xx",
    "errors_http_5xx",
    "errors_protocol",
    "throughput",
    "rows_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "mean_us",
    "mean_response_bytes",
    "send_lag_p99_us",
];

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The CSV header line (no line break).
pub fn csv_header() -> String {
    CSV_COLUMNS.join(",")
}

/// One run as a CSV line (no line break), in [`CSV_COLUMNS`] order.
pub fn csv_row(r: &RunResult) -> String {
    let e = &r.errors;
    let cells = [
        csv_field(&r.system),
        csv_field(&r.shape),
        csv_field(&r.mode),
        r.connections.to_string(),
        r.rate.map(|x| format!("{x}")).unwrap_or_default(),
        csv_field(&r.keys),
        format!("{:.3}", r.elapsed_s),
        r.requests.to_string(),
        r.ok.to_string(),
        e.connect.to_string(),
        e.timeout.to_string(),
        e.http_4xx.to_string(),
        e.http_5xx.to_string(),
        e.protocol.to_string(),
        format!("{:.1}", r.throughput),
        format!("{:.1}", r.rows_per_s),
        format!("{:.1}", r.p50_us),
        format!("{:.1}", r.p90_us),
        format!("{:.1}", r.p99_us),
        format!("{:.1}", r.p999_us),
        format!("{:.1}", r.max_us),
        format!("{:.1}", r.mean_us),
        format!("{:.1}", r.mean_response_bytes),
        format!("{:.1}", r.send_lag_p99_us),
    ];
    cells.join(",")
}

/// Appends `r` to the CSV file at `path`, writing the header first if the file is new
/// or empty.
pub fn append_csv(path: &Path, r: &RunResult) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    if file.metadata()?.len() == 0 {
        writeln!(file, "{}", csv_header())?;
    }
    writeln!(file, "{}", csv_row(r))
}

/// Writes `r` as pretty JSON to `path` (replacing it).
pub fn write_json(path: &Path, r: &RunResult) -> io::Result<()> {
    let text = serde_json::to_string_pretty(r).map_err(io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Appends one JSON value as a line to `path`.
pub fn append_jsonl<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let line = serde_json::to_string(value).map_err(io::Error::other)?;
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "{line}")
}

/// Reads a JSON-lines file of `T` (blank lines skipped); a bad line is an error naming
/// its number. A missing file reads as empty.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Vec<T>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} line {}: {e}", path.display(), n + 1),
            )
        })?);
    }
    Ok(out)
}

/// Whether a system answers a shape, as probed by the benchmark script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityNote {
    /// System label.
    pub system: String,
    /// Shape or mix label.
    pub shape: String,
    /// Whether it is available.
    pub available: bool,
    /// Why not (the probe's answer).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorCounts;

    fn result(shape: &str, rate: Option<f64>) -> RunResult {
        RunResult {
            system: "featstore".into(),
            shape: shape.into(),
            mode: if rate.is_some() { "open" } else { "closed" }.into(),
            connections: 8,
            rate,
            keys: "zipf:0.99".into(),
            elapsed_s: 5.0,
            requests: 1000,
            ok: 998,
            errors: ErrorCounts {
                timeout: 2,
                ..ErrorCounts::default()
            },
            throughput: 199.6,
            rows_per_s: 199.6,
            p50_us: 100.0,
            p90_us: 200.0,
            p99_us: 300.0,
            p999_us: 400.0,
            max_us: 500.25,
            mean_us: 120.0,
            mean_response_bytes: 4096.0,
            send_lag_p99_us: 3.5,
            refused: 0,
            refused_p99_us: 0.0,
        }
    }

    #[test]
    fn csv_rows_line_up_with_the_header_and_quote_mixes() {
        let mix = result("get=8,rank=1", Some(500.0));
        let row = csv_row(&mix);
        assert!(row.starts_with(
            "featstore,\"get=8,rank=1\",open,8,500,zipf:0.99,5.000,1000,998,0,2,0,0,0,"
        ));
        assert!(
            row.ends_with(",500.2,120.0,4096.0,3.5") || row.ends_with(",500.3,120.0,4096.0,3.5"),
            "{row}"
        );
        // Unquoting the one quoted cell gives as many cells as columns.
        let unquoted = row.replace("\"get=8,rank=1\"", "mix");
        assert_eq!(unquoted.split(',').count(), CSV_COLUMNS.len());
        let closed = csv_row(&result("get", None));
        assert_eq!(closed.split(',').nth(4), Some(""), "{closed}");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("r.csv");
        append_csv(&csv, &result("get", None)).expect("csv");
        append_csv(&csv, &result("rank", None)).expect("csv");
        let text = std::fs::read_to_string(&csv).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], csv_header());

        let json = dir.path().join("r.json");
        write_json(&json, &result("get", Some(10.0))).expect("json");
        let back: RunResult =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("parse");
        assert_eq!(back, result("get", Some(10.0)));

        let jsonl = dir.path().join("r.jsonl");
        assert!(
            read_jsonl::<RunResult>(&jsonl)
                .expect("missing is empty")
                .is_empty()
        );
        append_jsonl(&jsonl, &result("get", None)).expect("jsonl");
        append_jsonl(&jsonl, &result("push", Some(5.0))).expect("jsonl");
        let back: Vec<RunResult> = read_jsonl(&jsonl).expect("read");
        assert_eq!(back, vec![result("get", None), result("push", Some(5.0))]);

        std::fs::write(&jsonl, "{\"system\": 1}\n").expect("write");
        let err = read_jsonl::<RunResult>(&jsonl).expect_err("bad line");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
