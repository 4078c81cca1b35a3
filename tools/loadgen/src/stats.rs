//! What a run measures: a latency histogram of answered requests, counts of failed
//! ones by class, a latency histogram of the requests the server refused with 503
//! (load shedding: how fast the excess is turned away), and the summary
//! ([`RunResult`]) written to CSV and JSON.
//!
//! Latencies are recorded in nanoseconds into an HdrHistogram with 3 significant
//! digits (0.1% resolution) from 1 ns to 60 s; longer ones are clamped to 60 s. A
//! request counts as answered (`ok`) when featstore or the floor answer 2xx, or every
//! Redis reply of its pipeline is a non-error reply. Each connection owns a
//! [`Recorder`]; they are merged when the run ends, so recording takes no lock.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histogram holds (larger values are clamped to it).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The TCP connection could not be opened (or the HTTP handshake failed).
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// An HTTP 4xx answer.
    Http4xx,
    /// An HTTP 5xx answer (or another non-2xx status).
    Http5xx,
    /// A broken connection, a malformed answer, or a Redis error reply.
    Protocol,
}

impl ErrorClass {
    /// Every class, in report order.
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::Protocol,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::Protocol => "protocol",
        }
    }

    /// The class of a non-2xx HTTP status.
    pub fn of_status(status: u16) -> ErrorClass {
        if (400..500).contains(&status) {
            ErrorClass::Http4xx
        } else {
            ErrorClass::Http5xx
        }
    }
}

/// Failed requests by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// [`ErrorClass::Connect`].
    pub connect: u64,
    /// [`ErrorClass::Timeout`].
    pub timeout: u64,
    /// [`ErrorClass::Http4xx`].
    pub http_4xx: u64,
    /// [`ErrorClass::Http5xx`].
    pub http_5xx: u64,
    /// [`ErrorClass::Protocol`].
    pub protocol: u64,
}

impl ErrorCounts {
    /// Adds one failure of `class`.
    pub fn add(&mut self, class: ErrorClass) {
        *self.slot(class) += 1;
    }

    /// The count of `class`.
    pub fn get(&self, class: ErrorClass) -> u64 {
        match class {
            ErrorClass::Connect => self.connect,
            ErrorClass::Timeout => self.timeout,
            ErrorClass::Http4xx => self.http_4xx,
            ErrorClass::Http5xx => self.http_5xx,
            ErrorClass::Protocol => self.protocol,
        }
    }

    fn slot(&mut self, class: ErrorClass) -> &mut u64 {
        match class {
            ErrorClass::Connect => &mut self.connect,
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Http4xx => &mut self.http_4xx,
            ErrorClass::Http5xx => &mut self.http_5xx,
            ErrorClass::Protocol => &mut self.protocol,
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        ErrorClass::ALL.iter().map(|c| self.get(*c)).sum()
    }

    fn merge(&mut self, other: &ErrorCounts) {
        for class in ErrorClass::ALL {
            *self.slot(class) += other.get(class);
        }
    }
}

/// One connection's measurements.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latencies of answered requests, ns.
    pub histogram: Histogram<u64>,
    /// Failed requests.
    pub errors: ErrorCounts,
    /// Entity rows of answered requests.
    pub rows: u64,
    /// Response bytes of answered requests (HTTP body or RESP replies).
    pub response_bytes: u64,
    /// A sample failure message per class seen, for the log.
    pub last_error: Option<String>,
    /// Open loop: how late each request went out after its intended time, ns. Large
    /// values mean the load generator itself could not keep the schedule.
    pub send_lag: Histogram<u64>,
    /// Latencies of requests answered 503 (refused by the server's load shedding), ns;
    /// they are counted in `errors` too.
    pub refused: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .expect("1 ns .. 60 s at 3 significant digits are valid bounds")
}

fn add_clamped(to: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Same bounds on both sides, so adding cannot fail; clamp if it ever did.
    if to.add(from).is_err() {
        for v in from.iter_recorded() {
            to.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_NS)
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            histogram: new_histogram(),
            send_lag: new_histogram(),
            refused: new_histogram(),
            errors: ErrorCounts::default(),
            rows: 0,
            response_bytes: 0,
            last_error: None,
        }
    }

    /// Records an answered request.
    pub fn ok(&mut self, latency: Duration, rows: u64, bytes: usize) {
        self.histogram.saturating_record(nanos(latency));
        self.rows += rows;
        self.response_bytes += bytes as u64;
    }

    /// Records the latency of a request the server refused with 503.
    pub fn refused(&mut self, latency: Duration) {
        self.refused.saturating_record(nanos(latency));
    }

    /// Records how late an open-loop request was sent.
    pub fn send_lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(nanos(lag));
    }

    /// Records a failed request.
    pub fn error(&mut self, class: ErrorClass, message: impl FnOnce() -> String) {
        self.errors.add(class);
        if self.last_error.is_none() {
            self.last_error = Some(format!("{}: {}", class.name(), message()));
        }
    }

    /// Adds `other`'s measurements to this one.
    pub fn merge(&mut self, other: &Recorder) {
        add_clamped(&mut self.histogram, &other.histogram);
        add_clamped(&mut self.send_lag, &other.send_lag);
        add_clamped(&mut self.refused, &other.refused);
        self.errors.merge(&other.errors);
        self.rows += other.rows;
        self.response_bytes += other.response_bytes;
        if self.last_error.is_none() {
            self.last_error.clone_from(&other.last_error);
        }
    }

    /// Answered requests.
    pub fn ok_count(&self) -> u64 {
        self.histogram.len()
    }
}

/// The summary of one run: one CSV row, one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The system driven (`featstore`, `floor`, `redis`, or any label).
    pub system: String,
    /// The request mix (`get`, `rank`, `get=8,rank=1,push=1`).
    pub shape: String,
    /// `closed` or `open`.
    pub mode: String,
    /// Connections.
    pub connections: u32,
    /// Target rate of an open-loop run, requests/s.
    pub rate: Option<f64>,
    /// Entity id distribution (`uniform`, `zipf:0.99`).
    pub keys: String,
    /// Seconds from the first send to the last answer.
    pub elapsed_s: f64,
    /// Requests sent.
    pub requests: u64,
    /// Requests answered successfully.
    pub ok: u64,
    /// Failed requests by class.
    pub errors: ErrorCounts,
    /// Answered requests per second.
    pub throughput: f64,
    /// Entity rows of answered requests per second.
    pub rows_per_s: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Mean response bytes of answered requests.
    pub mean_response_bytes: f64,
    /// Open loop: p99 of how late requests were sent after their intended time, µs
    /// (0 in closed loop). Well above the latencies means the load generator, not the
    /// server, fell behind.
    #[serde(default)]
    pub send_lag_p99_us: f64,
    /// Requests answered 503 (refused by load shedding; also in `errors.http_5xx`).
    #[serde(default)]
    pub refused: u64,
    /// 99th percentile latency of the refused requests, µs (0 when none).
    #[serde(default)]
    pub refused_p99_us: f64,
}

/// How a run was configured, for its summary.
#[derive(Debug, Clone)]
pub struct RunLabels {
    /// System label.
    pub system: String,
    /// Mix label.
    pub shape: String,
    /// Connections.
    pub connections: u32,
    /// Open-loop rate.
    pub rate: Option<f64>,
    /// Key distribution label.
    pub keys: String,
}

impl RunResult {
    /// Summarises `recorder` for a run of `elapsed` that sent `requests`.
    pub fn summarize(
        labels: RunLabels,
        recorder: &Recorder,
        requests: u64,
        elapsed: Duration,
    ) -> RunResult {
        let h = &recorder.histogram;
        let ok = recorder.ok_count();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |quantile: f64| {
            if ok == 0 {
                0.0
            } else {
                us(h.value_at_quantile(quantile))
            }
        };
        RunResult {
            system: labels.system,
            shape: labels.shape,
            mode: if labels.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .to_owned(),
            connections: labels.connections,
            rate: labels.rate,
            keys: labels.keys,
            elapsed_s: elapsed.as_secs_f64(),
            requests,
            ok,
            errors: recorder.errors,
            throughput: ok as f64 / secs,
            rows_per_s: recorder.rows as f64 / secs,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if ok == 0 { 0.0 } else { us(h.max()) },
            mean_us: if ok == 0 { 0.0 } else { h.mean() / 1000.0 },
            mean_response_bytes: if ok == 0 {
                0.0
            } else {
                recorder.response_bytes as f64 / ok as f64
            },
            send_lag_p99_us: if recorder.send_lag.is_empty() {
                0.0
            } else {
                us(recorder.send_lag.value_at_quantile(0.99))
            },
            refused: recorder.refused.len(),
            refused_p99_us: if recorder.refused.is_empty() {
                0.0
            } else {
                us(recorder.refused.value_at_quantile(0.99))
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut r = Recorder::new();
        for us in 1..=1000u64 {
            r.ok(Duration::from_micros(us), 2, 100);
        }
        r.error(ErrorClass::Timeout, || "slow".into());
        r.error(ErrorClass::of_status(404), || "gone".into());
        r.error(ErrorClass::of_status(503), || "down".into());
        r.refused(Duration::from_micros(40));
        let labels = RunLabels {
            system: "x".into(),
            shape: "get".into(),
            connections: 4,
            rate: None,
            keys: "uniform".into(),
        };
        let res = RunResult::summarize(labels, &r, 1003, Duration::from_secs(2));
        assert_eq!(res.ok, 1000);
        assert_eq!(res.requests, 1003);
        assert_eq!(res.errors.total(), 3);
        assert_eq!(
            (res.errors.timeout, res.errors.http_4xx, res.errors.http_5xx),
            (1, 1, 1)
        );
        assert_eq!(res.throughput, 500.0);
        assert_eq!(res.rows_per_s, 1000.0);
        assert_eq!(res.mean_response_bytes, 100.0);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(near(res.p50_us, 500.0), "{}", res.p50_us);
        assert!(near(res.p90_us, 900.0), "{}", res.p90_us);
        assert!(near(res.p99_us, 990.0), "{}", res.p99_us);
        assert!(near(res.p999_us, 999.0), "{}", res.p999_us);
        assert_eq!(res.refused, 1);
        assert!(near(res.refused_p99_us, 40.0), "{}", res.refused_p99_us);
        assert!(near(res.max_us, 1000.0), "{}", res.max_us);
        assert_eq!(res.mode, "closed");
        assert_eq!(r.last_error.as_deref(), Some("timeout: slow"));
    }

    #[test]
    fn recorders_merge_and_clamp() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.ok(Duration::from_millis(1), 1, 10);
        b.ok(Duration::from_secs(3600), 1, 10);
        b.error(ErrorClass::Connect, || "refused".into());
        a.merge(&b);
        assert_eq!(a.ok_count(), 2);
        assert_eq!(a.errors.connect, 1);
        assert_eq!(a.rows, 2);
        assert!(a.histogram.max() <= MAX_LATENCY_NS * 1001 / 1000);
        assert!(a.histogram.max() >= MAX_LATENCY_NS * 999 / 1000);
    }

    #[test]
    fn an_empty_run_summarises_to_zeros() {
        let labels = RunLabels {
            system: "x".into(),
            shape: "get".into(),
            connections: 1,
            rate: Some(10.0),
            keys: "uniform".into(),
        };
        let res = RunResult::summarize(labels, &Recorder::new(), 0, Duration::ZERO);
        assert_eq!(
            (res.ok, res.p99_us, res.max_us, res.throughput),
            (0, 0.0, 0.0, 0.0)
        );
        assert_eq!(res.mode, "open");
    }
}
