//! Runs a load: N connections in closed or open loop until the request count or the
//! duration is reached, then merges their measurements; and probes which request
//! shapes a server supports.
//!
//! Request `i` is a ticket taken from one shared atomic counter, so the count bound
//! holds across connections and open-loop send times ([`schedule`]) are global. In
//! open loop a connection that is late sends at once (latency still counts from the
//! intended time); requests not sent by the deadline are not sent at all, and the
//! send-lag percentile of the result tells when the generator fell behind.
//! Every wait is bounded: a connection stops taking tickets at the deadline, each
//! exchange has a timeout, and the run as a whole is abandoned if its connections
//! have not finished [`STOP_GRACE`] after the deadline plus one timeout. Each
//! connection owns its random stream (seed + index) and its [`Recorder`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::http::{Failure, HttpConn};
use crate::keys::Rng;
use crate::redis::RedisConn;
use crate::schedule::{Pacing, due_by, latency};
use crate::stats::{ErrorClass, Recorder, RunLabels, RunResult};
use crate::target::{Protocol, Target};
use crate::workload::{Mix, Op, Shape, Workload};

/// Longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most connections accepted.
pub const MAX_CONNECTIONS: u32 = 4096;
/// How long after the deadline plus one request timeout a run waits for its
/// connections before abandoning them.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed connect before the connection tries again.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(20);

/// A run that could not start or finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A bound out of range.
    #[error("invalid run: {0}")]
    Invalid(String),
    /// Connections still busy long after the deadline.
    #[error("{0} connections did not stop after the deadline; the run was abandoned")]
    Stuck(usize),
    /// A probe request failed other than by 404/405.
    #[error("probe of {shape} on {target}: {message}")]
    Probe {
        /// Shape probed.
        shape: &'static str,
        /// Target URL.
        target: String,
        /// What happened.
        message: String,
    },
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where to send.
    pub target: Target,
    /// Label of the system in the results.
    pub system: String,
    /// Request mix.
    pub mix: Mix,
    /// Closed or open loop.
    pub pacing: Pacing,
    /// Connections (1..=[`MAX_CONNECTIONS`]).
    pub connections: u32,
    /// Stop taking new requests after this long (at most [`MAX_DURATION`]).
    pub duration: Duration,
    /// Stop after this many requests (at least 1).
    pub max_requests: u64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Seed of every connection's random stream.
    pub seed: u64,
    /// Label of the key distribution in the results.
    pub keys_label: String,
}

impl RunConfig {
    fn validate(&self) -> Result<(), RunError> {
        let bad = |m: String| Err(RunError::Invalid(m));
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return bad(format!("connections must be 1..={MAX_CONNECTIONS}"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!("duration must be > 0 and at most {MAX_DURATION:?}"));
        }
        if self.max_requests == 0 {
            return bad("the request count must be at least 1".into());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return bad("the request timeout must be > 0 and at most 60 s".into());
        }
        if let Pacing::Open { rate } = self.pacing
            && !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0)
        {
            return bad(format!("rate {rate} must be in (0, 10M] requests/s"));
        }
        Ok(())
    }
}

/// A connection of either protocol, with its pipeline buffer.
enum Conn {
    Http(HttpConn),
    Redis(RedisConn, Vec<u8>),
}

impl Conn {
    async fn open(target: &Target) -> Result<Conn, Failure> {
        Ok(match target.protocol {
            Protocol::Http => Conn::Http(HttpConn::connect(target.addr).await?),
            Protocol::Redis => Conn::Redis(RedisConn::connect(target.addr).await?, Vec::new()),
        })
    }

    /// Sends `op`; the response bytes on success.
    async fn exchange(&mut self, workload: &Workload, op: &Op) -> Result<usize, Failure> {
        match self {
            Conn::Http(conn) => conn.send(&workload.http(op)).await.map(|a| a.body.len()),
            Conn::Redis(conn, buf) => {
                buf.clear();
                let n = workload.redis(op, buf);
                conn.exchange(buf, n).await
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What one connection did.
struct ConnOutcome {
    recorder: Recorder,
    sent: u64,
    last_done: Instant,
}

async fn drive(
    cfg: Arc<RunConfig>,
    workload: Arc<Workload>,
    tickets: Arc<AtomicU64>,
    permits: Option<Arc<Semaphore>>,
    index: u64,
    start: Instant,
) -> ConnOutcome {
    let deadline = start + cfg.duration;
    let mut rng = Rng::new(cfg.seed ^ (index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut recorder = Recorder::new();
    let mut conn: Option<Conn> = None;
    let mut sent = 0u64;
    let mut last_done = start;
    loop {
        // Open loop: one permit per due request, released by the pacer thread.
        if let Some(permits) = &permits {
            match permits.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_closed) => break,
            }
        }
        let i = tickets.fetch_add(1, Ordering::Relaxed);
        if i >= cfg.max_requests {
            break;
        }
        let origin = match cfg.pacing.intended_offset(i) {
            Some(offset) => {
                let at = start + offset;
                if at >= deadline {
                    break;
                }
                // Tickets never run ahead of permits, so `at` has come (to within float
                // rounding): no wait here, tokio's 1 ms timer would only add lag.
                let now = Instant::now();
                // A connection that fell behind its schedule stops at the deadline too;
                // the send lag shows it fell behind.
                if now >= deadline {
                    break;
                }
                recorder.send_lag(now.saturating_duration_since(at));
                at
            }
            None => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
        };
        let op = workload.draw(cfg.mix.pick(&mut rng), &mut rng, now_ms());
        sent += 1;
        let exchange = async {
            if conn.is_none() {
                conn = Some(Conn::open(&cfg.target).await?);
            }
            match conn.as_mut() {
                Some(c) => c.exchange(&workload, &op).await,
                None => unreachable!("opened above"),
            }
        };
        let outcome = tokio::time::timeout(cfg.timeout, exchange).await;
        let done = Instant::now();
        last_done = done;
        match outcome {
            Ok(Ok(bytes)) => recorder.ok(latency_since(origin, done), op.rows(), bytes),
            Ok(Err(failure)) => {
                if failure.status.is_some_and(|s| s.as_u16() == 503) {
                    recorder.refused(latency_since(origin, done));
                }
                let connect = failure.class == ErrorClass::Connect;
                recorder.error(failure.class, || failure.message.clone());
                if !failure.reusable {
                    conn = None;
                }
                if connect {
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
            Err(_elapsed) => {
                recorder.error(ErrorClass::Timeout, || {
                    format!("no answer within {:?}", cfg.timeout)
                });
                conn = None;
            }
        }
    }
    ConnOutcome {
        recorder,
        sent,
        last_done,
    }
}

fn latency_since(origin: Instant, done: Instant) -> Duration {
    latency(Duration::ZERO, done.saturating_duration_since(origin))
}

/// The open-loop pacer: a plain thread (the OS timer wakes it within tens of µs,
/// where tokio's timer has 1 ms resolution) that adds one permit to `permits` for
/// every request whose intended time has come, until the deadline, the request
/// count, or `stop`; then adds one permit per connection, so every connection still
/// waiting wakes, finds the count or the deadline reached, and ends.
fn pace(
    pacing: Pacing,
    start: Instant,
    deadline: Instant,
    max_requests: u64,
    connections: u32,
    permits: &Semaphore,
    stop: &AtomicBool,
) {
    let mut released = 0u64;
    while !stop.load(Ordering::Relaxed) && released < max_requests {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = due_by(&pacing, now.saturating_duration_since(start)).min(max_requests);
        if due > released {
            let more = usize::try_from(due - released)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS);
            permits.add_permits(more);
            released += more as u64;
        }
        let next = pacing
            .intended_offset(released)
            .map_or(deadline, |offset| start + offset)
            .min(deadline);
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(PACER_MAX_SLEEP);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    permits.add_permits(connections as usize);
}

/// Longest single sleep of the pacer, so it notices `stop` soon.
const PACER_MAX_SLEEP: Duration = Duration::from_millis(10);

/// Runs `cfg` with requests from `workload` and summarises it. The measurements of
/// every connection are merged; the elapsed time runs from the start to the last
/// answer.
pub async fn run(cfg: &RunConfig, workload: Arc<Workload>) -> Result<RunResult, RunError> {
    cfg.validate()?;
    let cfg = Arc::new(cfg.clone());
    let tickets = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (permits, pacer) = match cfg.pacing {
        Pacing::Closed => (None, None),
        Pacing::Open { .. } => {
            let permits = Arc::new(Semaphore::new(0));
            let (p, s, c) = (permits.clone(), stop.clone(), cfg.clone());
            let pacer = std::thread::Builder::new()
                .name("loadgen-pacer".into())
                .spawn(move || {
                    pace(
                        c.pacing,
                        start,
                        start + c.duration,
                        c.max_requests,
                        c.connections,
                        &p,
                        &s,
                    )
                })
                .map_err(|e| RunError::Invalid(format!("cannot start the pacer thread: {e}")))?;
            (Some(permits), Some(pacer))
        }
    };
    let mut tasks = JoinSet::new();
    for index in 0..u64::from(cfg.connections) {
        tasks.spawn(drive(
            cfg.clone(),
            workload.clone(),
            tickets.clone(),
            permits.clone(),
            index,
            start,
        ));
    }
    let limit = cfg.duration + cfg.timeout + STOP_GRACE;
    let mut merged = Recorder::new();
    let mut sent = 0;
    let mut last_done = start;
    let collected = tokio::time::timeout_at((start + limit).into(), async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                merged.merge(&outcome.recorder);
                sent += outcome.sent;
                last_done = last_done.max(outcome.last_done);
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    if let Some(pacer) = pacer {
        // It sleeps at most PACER_MAX_SLEEP before seeing `stop`.
        let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    }
    if collected.is_err() {
        let stuck = tasks.len();
        tasks.shutdown().await;
        return Err(RunError::Stuck(stuck));
    }
    let labels = RunLabels {
        system: cfg.system.clone(),
        shape: cfg.mix.label(),
        connections: cfg.connections,
        rate: cfg.pacing.rate(),
        keys: cfg.keys_label.clone(),
    };
    if let Some(message) = &merged.last_error {
        eprintln!(
            "loadgen: {} failed requests; first: {message}",
            merged.errors.total()
        );
    }
    Ok(RunResult::summarize(
        labels,
        &merged,
        sent,
        last_done.saturating_duration_since(start),
    ))
}

/// Whether a server answers a request shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// It answered 2xx.
    Available,
    /// It answered 404 or 405: the route does not exist there.
    NotAvailable {
        /// The status.
        status: u16,
        /// The answer's body (trimmed).
        message: String,
    },
}

/// Sends one request of `shape` to `target`: 2xx is available, 404/405 not; anything
/// else is an error (the route exists but the request or server is broken). Redis
/// supports every shape; the probe still checks it answers.
pub async fn probe(
    target: &Target,
    workload: &Workload,
    shape: Shape,
    timeout: Duration,
) -> Result<Availability, RunError> {
    let failed = |message: String| RunError::Probe {
        shape: shape.name(),
        target: target.url(),
        message,
    };
    let op = workload.draw(shape, &mut Rng::new(1), now_ms());
    let exchange = async {
        let mut conn = Conn::open(target).await?;
        conn.exchange(workload, &op).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(failed(format!("no answer within {timeout:?}"))),
        Ok(Ok(_)) => Ok(Availability::Available),
        Ok(Err(f)) => match f.status.map(|s| s.as_u16()) {
            Some(status @ (404 | 405)) => Ok(Availability::NotAvailable {
                status,
                message: f.message,
            }),
            _ => Err(failed(f.message)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_releases_the_due_requests_then_one_per_connection() {
        let permits = Semaphore::new(0);
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let rate = Pacing::Open { rate: 2000.0 };
        // 2,000/s for 50 ms: requests 0..100 are due; a count of 30 stops it first.
        let deadline = start + Duration::from_millis(50);
        pace(rate, start, deadline, 30, 4, &permits, &stop);
        assert_eq!(permits.available_permits(), 30 + 4);
        // The deadline bounds it when the count does not.
        let permits = Semaphore::new(0);
        let deadline = Instant::now() + Duration::from_millis(20);
        pace(rate, start, deadline, u64::MAX, 1, &permits, &stop);
        assert!(Instant::now() >= deadline);
        assert!(permits.available_permits() >= 40);
        // A stopped pacer releases nothing but the wake-ups.
        let permits = Semaphore::new(0);
        stop.store(true, Ordering::Relaxed);
        pace(
            rate,
            start,
            Instant::now() + Duration::from_secs(60),
            u64::MAX,
            3,
            &permits,
            &stop,
        );
        assert_eq!(permits.available_permits(), 3);
    }

    #[test]
    fn invalid_runs_are_refused_before_starting() {
        let cfg = RunConfig {
            target: Target {
                protocol: Protocol::Http,
                addr: "127.0.0.1:1".parse().expect("addr"),
            },
            system: "x".into(),
            mix: Mix::only(Shape::Get),
            pacing: Pacing::Closed,
            connections: 1,
            duration: Duration::from_secs(1),
            max_requests: 1,
            timeout: Duration::from_secs(1),
            seed: 0,
            keys_label: "uniform".into(),
        };
        assert!(cfg.validate().is_ok());
        for bad in [
            RunConfig {
                connections: 0,
                ..cfg.clone()
            },
            RunConfig {
                duration: Duration::ZERO,
                ..cfg.clone()
            },
            RunConfig {
                duration: MAX_DURATION * 2,
                ..cfg.clone()
            },
            RunConfig {
                max_requests: 0,
                ..cfg.clone()
            },
            RunConfig {
                timeout: Duration::ZERO,
                ..cfg.clone()
            },
            RunConfig {
                pacing: Pacing::Open { rate: 0.0 },
                ..cfg.clone()
            },
            RunConfig {
                pacing: Pacing::Open { rate: f64::NAN },
                ..cfg.clone()
            },
        ] {
            assert!(matches!(bad.validate(), Err(RunError::Invalid(_))));
        }
    }
}
