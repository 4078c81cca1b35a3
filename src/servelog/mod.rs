//! The serving log ("log-and-wait"): every answered read, or a sample of them, is
//! appended to checksummed, zstd-compressed log files off the hot path, and exported as
//! Parquet training data in Feast's logging schema.
//!
//! Owns: the configuration ([`ServeLogConfig`], the `[serving_log]` table of the store
//! config TOML), the sampler ([`Sampler`]: a rate per service and per route, decided
//! by the request id so a request is logged whole or not at all), request ids
//! ([`request_id`]), the observer and its bounded queue, the writer thread with
//! rotation and retention ([`writer`]), the record encoding ([`record`]), reading the
//! files back ([`reader`]), the Parquet export and training sets ([`export`]), and the
//! `featstore log` commands ([`cli`]). The framing of the files is
//! `featstore_format::reclog`.
//!
//! It is not a durable audit trail: it favours the read path over completeness, and says
//! exactly what it dropped.
//!
//! Invariants:
//! * A read is never blocked or slowed by the log beyond one sampling decision, one copy
//!   of its answer and one non-blocking queue send: when the queue is full the record is
//!   dropped and counted (`featstore_serving_log_dropped_total{reason="queue_full"}`).
//! * A record is written whole in one block or not at all; a block reaches the file in
//!   one `write` call, and a reader returns only records of blocks whose checksums hold.
//!   A process crash (SIGKILL) loses the records still queued or in the block being
//!   built (at most `flush_interval_ms` of reads), never a written block; a crash of the
//!   machine may also lose what the OS had not written back since the last rotation.
//! * Records of one file are in the order the writer received them; files are named by
//!   their creation time, so files sort in time order.
//!
//! Thread-safety: [`ServeLog`] is `Send + Sync`; the observer runs on request threads and
//! only touches atomics and the queue; one writer thread owns the files.

pub mod cli;
pub mod erase;
pub mod export;
pub mod reader;
pub mod record;
pub mod request_id;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use crate::query::{EntityAnswer, RankResponse};
use crate::store::{FeatureStore, Observer, ReadAnswer, ReadEvent};

/// Settings of the serving log: the `[serving_log]` table of the store config TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeLogConfig {
    /// Log answered reads (off by default).
    pub enabled: bool,
    /// Where the log files go; default `<data dir>/serving-log`.
    pub dir: Option<PathBuf>,
    /// Share of requests logged, 0..=1, where no rate below applies.
    pub sample_rate: f64,
    /// Rate per route (`get`, `rank`, `embedded`), over `sample_rate`.
    pub route_sample_rates: BTreeMap<String, f64>,
    /// Rate per feature service (its name, without version), over the route's rate.
    pub service_sample_rates: BTreeMap<String, f64>,
    /// Reads the queue holds before new ones are dropped.
    pub queue_capacity: usize,
    /// Uncompressed bytes of records per block; a block is written when it is this full.
    pub block_bytes: usize,
    /// A block that is not full is written at the latest this long after its first
    /// record: the most a process crash loses.
    pub flush_interval_ms: u64,
    /// zstd level of blocks (0 stores them uncompressed; negative: zstd's fast levels).
    /// Default -1: the writer shares the server's cores, and -1 compresses a ranking
    /// block about 2.2x faster than level 2 for about 1.3x the bytes (README,
    /// "Serving log").
    pub compression_level: i32,
    /// A file is closed (end marker, fsync) and a new one started past this size.
    pub segment_bytes: u64,
    /// ... or this long after it was created.
    pub segment_age_secs: u64,
    /// Closed files whose records are all older than this are deleted.
    pub retention_secs: u64,
    /// The oldest closed files are deleted while all files together are larger.
    pub retention_bytes: u64,
}

impl Default for ServeLogConfig {
    fn default() -> Self {
        ServeLogConfig {
            enabled: false,
            dir: None,
            sample_rate: 1.0,
            route_sample_rates: BTreeMap::new(),
            service_sample_rates: BTreeMap::new(),
            queue_capacity: 4096,
            block_bytes: 1 << 20,
            flush_interval_ms: 200,
            compression_level: -1,
            segment_bytes: 256 << 20,
            segment_age_secs: 3600,
            retention_secs: 7 * 24 * 3600,
            retention_bytes: 10 << 30,
        }
    }
}

/// A setting out of range.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeLogError {
    /// Names the setting and what is wrong.
    #[error("invalid serving_log setting `{setting}`: {reason}")]
    Invalid {
        /// The setting.
        setting: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory of the log.
    #[error("serving log {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A log file that is not a record log.
    #[error("serving log file {path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: featstore_format::reclog::LogError,
    },
}

impl ServeLogConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ServeLogError> {
        let invalid = |setting: &str, reason: &str| {
            Err(ServeLogError::Invalid {
                setting: setting.to_owned(),
                reason: reason.to_owned(),
            })
        };
        let rates = std::iter::once(("sample_rate".to_owned(), self.sample_rate))
            .chain(
                self.route_sample_rates
                    .iter()
                    .map(|(k, v)| (format!("route_sample_rates.{k}"), *v)),
            )
            .chain(
                self.service_sample_rates
                    .iter()
                    .map(|(k, v)| (format!("service_sample_rates.{k}"), *v)),
            );
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return invalid(&name, "must be within 0..=1");
            }
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity", "must be at least 1");
        }
        if self.block_bytes == 0 || self.block_bytes > featstore_format::reclog::MAX_BLOCK_BYTES {
            return invalid("block_bytes", "must be within 1..=32 MiB");
        }
        if self.flush_interval_ms == 0 {
            return invalid("flush_interval_ms", "must be at least 1");
        }
        if self.segment_bytes == 0 || self.segment_age_secs == 0 {
            return invalid("segment_bytes", "segment size and age must be positive");
        }
        if !(-7..=19).contains(&self.compression_level) {
            return invalid(
                "compression_level",
                "must be within -7..=19 (zstd's levels; negative levels are its fast \
                 modes, 0 stores blocks uncompressed)",
            );
        }
        Ok(())
    }

    /// The log directory of a store in `data_dir`.
    pub fn dir_for(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("serving-log"))
    }
}

/// Decides which requests are logged: the service's rate if one is configured, else the
/// route's, else the default, compared with a hash of the request id, so the decision
/// is the same for every part of a request and on every host.
#[derive(Debug, Clone)]
pub struct Sampler {
    default: f64,
    routes: BTreeMap<String, f64>,
    services: BTreeMap<String, f64>,
}

impl Sampler {
    /// The sampler of `config`.
    pub fn new(config: &ServeLogConfig) -> Self {
        Sampler {
            default: config.sample_rate,
            routes: config.route_sample_rates.clone(),
            services: config.service_sample_rates.clone(),
        }
    }

    /// The rate that applies to a read of `route` and `service` (`name` or `name@v`).
    pub fn rate(&self, route: &str, service: Option<&str>) -> f64 {
        let service = service.map(|s| s.split_once('@').map_or(s, |(n, _)| n));
        service
            .and_then(|s| self.services.get(s))
            .or_else(|| self.routes.get(route))
            .copied()
            .unwrap_or(self.default)
    }

    /// Whether the request `request_id` is logged at `rate`.
    pub fn keep(request_id: &str, rate: f64) -> bool {
        if rate >= 1.0 {
            return true;
        }
        if rate <= 0.0 {
            return false;
        }
        // The top 53 bits of a fixed hash, as a fraction in [0, 1).
        let fraction = (stable_hash(request_id.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
        fraction < rate
    }
}

/// FNV-1a, finished with a splitmix64 round: fixed across builds and hosts.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// An answer taken off the read path, waiting for the writer: a GET's (small) copied,
/// a ranking answer shared with the request that is sending it.
#[derive(Debug)]
pub(crate) enum Queued {
    Entity(Arc<EntityAnswer>),
    Ranking(Arc<RankResponse>),
}

/// One read waiting for the writer.
#[derive(Debug)]
pub(crate) struct Pending {
    pub request_id: String,
    pub route: String,
    pub answer: Queued,
}

/// Why records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full.
    QueueFull,
    /// The record is larger than a block may be.
    TooLarge,
    /// Writing failed (the error is logged); records of the lost block.
    IoError,
    /// A read of an entity deleted after the read was answered (`erase`).
    Erased,
}

impl DropReason {
    const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::TooLarge,
        DropReason::IoError,
        DropReason::Erased,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::TooLarge => "too_large",
            DropReason::IoError => "io_error",
            DropReason::Erased => "erased",
        }
    }
}

/// The log's counters, shared by the observer and the writer.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Records written to files.
    pub records_written: AtomicU64,
    /// Bytes written to files (compressed, framing included).
    pub bytes_written: AtomicU64,
    /// Values (cells) in the records written.
    pub values_written: AtomicU64,
    /// Reads not logged because of the sample rate.
    pub sampled_out: AtomicU64,
    dropped: [AtomicU64; 4],
    /// Milliseconds from the oldest read of the last block written to its write.
    pub write_lag_ms: AtomicI64,
    /// Records queued and not yet taken by the writer.
    pub queue_depth: AtomicI64,
}

impl LogMetrics {
    /// Counts `n` dropped records.
    pub fn drop_records(&self, reason: DropReason, n: u64) {
        if let Some(c) = self.dropped.get(reason as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped
            .get(reason as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The counters in OpenMetrics text (no `# EOF`).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP featstore_serving_log_{name} {help}\n# TYPE featstore_serving_log_{name} counter\nfeatstore_serving_log_{name}_total {v}\n"
            );
        };
        counter(
            &mut out,
            "records_written",
            "Serving-log records written to files.",
            self.records_written.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "bytes_written",
            "Serving-log bytes written to files (compressed, framing included).",
            self.bytes_written.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "values_written",
            "Feature values in the serving-log records written.",
            self.values_written.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sampled_out",
            "Answered reads not logged because of the sample rate.",
            self.sampled_out.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP featstore_serving_log_dropped Serving-log records dropped, never blocking a read.\n# TYPE featstore_serving_log_dropped counter"
        );
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "featstore_serving_log_dropped_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.dropped(reason)
            );
        }
        let _ = write!(
            out,
            "# HELP featstore_serving_log_queue_depth Answered reads waiting for the serving-log writer.\n# TYPE featstore_serving_log_queue_depth gauge\nfeatstore_serving_log_queue_depth {}\n",
            self.queue_depth.load(Ordering::Relaxed).max(0)
        );
        let _ = write!(
            out,
            "# HELP featstore_serving_log_write_lag_seconds Time from the oldest read of the last block written to its write.\n# TYPE featstore_serving_log_write_lag_seconds gauge\nfeatstore_serving_log_write_lag_seconds {}\n",
            self.write_lag_ms.load(Ordering::Relaxed).max(0) as f64 / 1000.0
        );
        out
    }
}

/// The observer: samples, copies the answer and hands it to the queue.
struct LogObserver {
    sampler: Sampler,
    tx: crossbeam::channel::Sender<Pending>,
    metrics: Arc<LogMetrics>,
}

impl Observer for LogObserver {
    fn on_read(&self, event: &ReadEvent<'_>) {
        let service = match event.answer {
            ReadAnswer::Ranking(r) => r.service.as_deref(),
            ReadAnswer::Entity(_) => None,
        };
        let rate = self.sampler.rate(event.context.route, service);
        let generated;
        let request_id = match event.context.request_id {
            Some(id) => id,
            None => {
                generated = request_id::generate();
                &generated
            }
        };
        if !Sampler::keep(request_id, rate) {
            self.metrics.sampled_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let pending = Pending {
            request_id: request_id.to_owned(),
            route: event.context.route.to_owned(),
            answer: match event.answer {
                ReadAnswer::Entity(a) => Queued::Entity(Arc::clone(a)),
                ReadAnswer::Ranking(r) => Queued::Ranking(Arc::clone(r)),
            },
        };
        match self.tx.try_send(pending) {
            Ok(()) => {
                self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => self.metrics.drop_records(DropReason::QueueFull, 1),
        }
    }
}

/// The running log's part in a per-entity deletion: its writer thread closes the open
/// file and rewrites the files ([`erase`]), so no file is rewritten while appended to.
struct LogEraser {
    dir: PathBuf,
    control: crossbeam::channel::Sender<writer::Control>,
}

impl crate::store::erase::Eraser for LogEraser {
    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    fn erase(
        &self,
        target: &crate::store::erase::EntityMatch,
    ) -> Result<crate::store::erase::HolderReport, String> {
        let (reply, answer) = crossbeam::channel::bounded(1);
        self.control
            .send(writer::Control::Erase {
                target: target.clone(),
                reply,
            })
            .map_err(|_| "the serving-log writer has stopped".to_owned())?;
        answer
            .recv()
            .map_err(|_| "the serving-log writer has stopped".to_owned())?
    }
}

/// A running serving log: registered on a store, with its writer thread. Dropping it
/// unregisters the observer, drains the queue, writes the end marker and syncs.
pub struct ServeLog {
    store: Weak<FeatureStore>,
    observer: Option<crate::store::ObserverId>,
    eraser: Option<crate::store::erase::EraserId>,
    writer: Option<writer::WriterHandle>,
    metrics: Arc<LogMetrics>,
    dir: PathBuf,
}

impl std::fmt::Debug for ServeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeLog").field("dir", &self.dir).finish()
    }
}

impl ServeLog {
    /// Starts the log of `store` as `config` says (the config's `dir`, or `default_dir`),
    /// and registers its observer.
    pub fn start(
        store: &Arc<FeatureStore>,
        config: &ServeLogConfig,
        default_dir: &Path,
    ) -> Result<Self, ServeLogError> {
        config.validate()?;
        let dir = config.dir.clone().unwrap_or_else(|| default_dir.to_owned());
        let metrics = Arc::new(LogMetrics::default());
        let (tx, rx) = crossbeam::channel::bounded(config.queue_capacity);
        let weak = Arc::downgrade(store);
        let writer = writer::WriterHandle::start(
            dir.clone(),
            config.clone(),
            rx,
            metrics.clone(),
            weak.clone(),
        )?;
        let eraser = store.add_eraser(Arc::new(LogEraser {
            dir: dir.clone(),
            control: writer.control.clone(),
        }));
        let observer = store.add_observer(Arc::new(LogObserver {
            sampler: Sampler::new(config),
            tx,
            metrics: metrics.clone(),
        }));
        Ok(ServeLog {
            store: weak,
            observer: Some(observer),
            eraser: Some(eraser),
            writer: Some(writer),
            metrics,
            dir,
        })
    }

    /// The log's counters.
    pub fn metrics(&self) -> &Arc<LogMetrics> {
        &self.metrics
    }

    /// The directory of the log files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unregisters the observer, writes what is queued, closes the file cleanly.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(store) = self.store.upgrade() {
            if let Some(id) = self.observer.take() {
                store.remove_observer(id);
            }
            if let Some(id) = self.eraser.take() {
                store.remove_eraser(id);
            }
        }
        if let Some(writer) = self.writer.take() {
            writer.stop();
        }
    }
}

impl Drop for ServeLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_decided_by_the_request_id_and_near_its_rate() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("req-{i}")).collect();
        let kept = ids.iter().filter(|id| Sampler::keep(id, 0.1)).count();
        assert!(
            (1_700..2_300).contains(&kept),
            "kept {kept} of 20000 at 10%"
        );
        for id in &ids[..500] {
            assert_eq!(Sampler::keep(id, 0.1), Sampler::keep(id, 0.1));
            // A request kept at a rate is kept at every higher rate.
            if Sampler::keep(id, 0.1) {
                assert!(Sampler::keep(id, 0.5));
            }
        }
        assert!(ids.iter().all(|id| Sampler::keep(id, 1.0)));
        assert!(!ids.iter().any(|id| Sampler::keep(id, 0.0)));
    }

    #[test]
    fn the_service_rate_wins_over_the_route_rate() {
        let config = ServeLogConfig {
            sample_rate: 0.5,
            route_sample_rates: [("rank".to_owned(), 0.2)].into(),
            service_sample_rates: [("search".to_owned(), 1.0)].into(),
            ..ServeLogConfig::default()
        };
        let s = Sampler::new(&config);
        assert_eq!(s.rate("rank", Some("search@3")), 1.0);
        assert_eq!(s.rate("rank", Some("other")), 0.2);
        assert_eq!(s.rate("get", None), 0.5);
        let bad = ServeLogConfig {
            sample_rate: 1.5,
            ..ServeLogConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn metrics_name_every_drop_reason() {
        let m = LogMetrics::default();
        m.drop_records(DropReason::QueueFull, 3);
        let text = m.render();
        assert!(text.contains("featstore_serving_log_dropped_total{reason=\"queue_full\"} 3"));
        assert!(text.contains("featstore_serving_log_records_written_total 0"));
    }
}
