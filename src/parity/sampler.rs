//! The background parity sampler: a share of the live reads (`[parity] sample_rate`)
//! recomputed from the history as of their serving time, by the same code as
//! `featstore parity` ([`super::ParityReport`]), and counted per feature, so that a
//! training-serving skew shows in `featstore_parity_mismatch_ratio{feature}` before a
//! model is rolled out.
//!
//! It owns [`ParitySampler`] (an observer of answered reads registered on the store, a
//! bounded queue and one worker thread) and its counters ([`SamplerMetrics`]).
//!
//! Contract:
//! * **Never blocks a read.** The observer decides with one atomic add whether a read
//!   is sampled (exactly every `1 / sample_rate`-th read, spread evenly), and offers
//!   the sampled answer to a bounded queue without waiting (a GET's answer is copied, a
//!   ranking answer is shared). A full queue drops the sample and counts it in
//!   `featstore_parity_samples_dropped_total`.
//! * The worker recomputes each sample as of its request time and compares every
//!   value (status, value, event time); values served `not_fetched` are skipped, and a
//!   read that cannot be recomputed (a windowed aggregate; a feature since deleted) is
//!   counted as unverifiable, never as a match. The counts are cumulative since start.
//! * A read that overlaps a push or an activation can be judged at a time the history
//!   places the change after (the concurrency caveat of storage-format.md, "What the
//!   history answers"), so under concurrent writes a rare mismatch is not necessarily a
//!   bug; a ratio that stays above zero is.
//! * Memory: at most `queue_capacity` queued answers, plus per feature a few counters
//!   and at most [`super::MAX_EXAMPLES`] examples.
//!
//! Thread-safety: the observer runs on request threads and touches only atomics and
//! the channel; the report is behind a mutex taken by the worker per sample and by
//! scrapes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam::channel::{Receiver, Sender, TrySendError, bounded};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{ParityReport, request_for};
use crate::query::EntityAnswer;
use crate::query::rank::RankResponse;
use crate::store::history::read::HistoryQuery;
use crate::store::{FeatureStore, Observer, ObserverId, ReadAnswer, ReadEvent};

/// Share of reads sampled when none is configured.
pub const DEFAULT_SAMPLE_RATE: f64 = 0.001;
/// Samples queued for the worker when none is configured.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// Sampler settings (`[parity]` in the store configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParitySamplerConfig {
    /// Share of answered reads recomputed, `0..=1`; 0 turns the sampler off.
    pub sample_rate: f64,
    /// Samples waiting for the worker before new ones are dropped.
    pub queue_capacity: usize,
}

impl Default for ParitySamplerConfig {
    fn default() -> Self {
        ParitySamplerConfig {
            sample_rate: DEFAULT_SAMPLE_RATE,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// A sampler setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerConfigError {
    /// `sample_rate` is not within `0..=1`.
    #[error("[parity] sample_rate = {0} is not within 0..=1")]
    Rate(f64),
    /// `queue_capacity` is 0.
    #[error("[parity] queue_capacity must be at least 1")]
    Queue,
}

impl ParitySamplerConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), SamplerConfigError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(SamplerConfigError::Rate(self.sample_rate));
        }
        if self.queue_capacity == 0 {
            return Err(SamplerConfigError::Queue);
        }
        Ok(())
    }
}

/// What the sampler counted since it started.
#[derive(Debug, Default)]
pub struct SamplerMetrics {
    /// Reads sampled and queued.
    pub sampled: AtomicU64,
    /// Sampled reads dropped because the queue was full.
    pub dropped: AtomicU64,
    /// The comparisons: per feature values, mismatches, largest difference, examples;
    /// `unverifiable` counts reads that could not be recomputed.
    report: Mutex<ParityReport>,
}

impl SamplerMetrics {
    /// A copy of the comparisons so far (rates computed).
    pub fn report(&self) -> ParityReport {
        let mut report = self.report.lock().clone();
        report.finish();
        report
    }

    /// The sampler's metric families in the OpenMetrics text format (without `# EOF`).
    pub fn render(&self) -> String {
        let report = self.report();
        let mut out = String::with_capacity(512 + 160 * report.features.len());
        let label = |name: &str| name.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# TYPE featstore_parity_mismatch_ratio gauge\n\
             # HELP featstore_parity_mismatch_ratio Share of sampled live values that differ from the history's answer as of their serving time."
        );
        for (feature, f) in &report.features {
            let _ = writeln!(
                out,
                "featstore_parity_mismatch_ratio{{feature=\"{}\"}} {}",
                label(feature),
                f.mismatch_rate
            );
        }
        let _ = writeln!(
            out,
            "# TYPE featstore_parity_values counter\n\
             # HELP featstore_parity_values Sampled live values compared with the history."
        );
        for (feature, f) in &report.features {
            let _ = writeln!(
                out,
                "featstore_parity_values_total{{feature=\"{}\"}} {}",
                label(feature),
                f.values
            );
        }
        let _ = writeln!(
            out,
            "# TYPE featstore_parity_mismatches counter\n\
             # HELP featstore_parity_mismatches Sampled live values that differ from the history."
        );
        for (feature, f) in &report.features {
            let _ = writeln!(
                out,
                "featstore_parity_mismatches_total{{feature=\"{}\"}} {}",
                label(feature),
                f.mismatches
            );
        }
        let unverifiable: u64 = report.unverifiable.values().sum();
        let counters = [
            (
                "featstore_parity_samples",
                "Live reads sampled for parity.",
                self.sampled.load(Ordering::Relaxed),
            ),
            (
                "featstore_parity_samples_dropped",
                "Sampled reads dropped because the sampler's queue was full.",
                self.dropped.load(Ordering::Relaxed),
            ),
            (
                "featstore_parity_samples_checked",
                "Sampled reads recomputed and compared.",
                report.records,
            ),
            (
                "featstore_parity_samples_unverifiable",
                "Sampled reads the history could not recompute.",
                unverifiable,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# TYPE {name} counter\n# HELP {name} {help}\n{name}_total {value}"
            );
        }
        out
    }
}

/// A sampled answer.
enum Sample {
    Entity(Arc<EntityAnswer>),
    Ranking(Arc<RankResponse>),
}

enum Message {
    Sample(Sample),
    /// Answered once every sample queued before it was compared.
    Flush(Sender<()>),
}

/// Whether the `n`-th read (from 0) is sampled at `rate`: exactly when `n x rate`
/// crosses a whole number, so that reads are sampled evenly at the rate.
fn sampled(n: u64, rate: f64) -> bool {
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

struct SamplerObserver {
    rate: f64,
    seen: AtomicU64,
    tx: Sender<Message>,
    metrics: Arc<SamplerMetrics>,
}

impl Observer for SamplerObserver {
    fn on_read(&self, event: &ReadEvent<'_>) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if !sampled(n, self.rate) {
            return;
        }
        let sample = match event.answer {
            ReadAnswer::Entity(a) => Sample::Entity(Arc::clone(a)),
            ReadAnswer::Ranking(r) => Sample::Ranking(Arc::clone(r)),
        };
        match self.tx.try_send(Message::Sample(sample)) {
            Ok(()) => {
                self.metrics.sampled.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A running sampler: registered on a store, with its worker thread. Dropping it
/// unregisters the observer and stops the worker (samples still queued are dropped).
pub struct ParitySampler {
    store: Weak<FeatureStore>,
    observer: Option<ObserverId>,
    tx: Option<Sender<Message>>,
    worker: Option<JoinHandle<()>>,
    metrics: Arc<SamplerMetrics>,
}

impl std::fmt::Debug for ParitySampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParitySampler")
            .field("sampled", &self.metrics.sampled.load(Ordering::Relaxed))
            .finish()
    }
}

/// Starting the sampler failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] SamplerConfigError),
    /// The worker thread could not be started.
    #[error("starting the parity sampler's thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl ParitySampler {
    /// Starts sampling `store`'s reads as `config` says; `None` when the rate is 0 or
    /// the store records no history (nothing to compare with).
    pub fn start(
        store: &Arc<FeatureStore>,
        config: &ParitySamplerConfig,
    ) -> Result<Option<ParitySampler>, SamplerError> {
        config.validate()?;
        if config.sample_rate == 0.0 || !store.config().history.enabled {
            return Ok(None);
        }
        let (tx, rx) = bounded::<Message>(config.queue_capacity);
        let metrics = Arc::new(SamplerMetrics::default());
        let weak = Arc::downgrade(store);
        let worker = {
            let (weak, metrics) = (weak.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("featstore-parity".into())
                .spawn(move || run(&weak, &rx, &metrics))
                .map_err(SamplerError::Thread)?
        };
        let observer = store.add_observer(Arc::new(SamplerObserver {
            rate: config.sample_rate,
            seen: AtomicU64::new(0),
            tx: tx.clone(),
            metrics: metrics.clone(),
        }));
        Ok(Some(ParitySampler {
            store: weak,
            observer: Some(observer),
            tx: Some(tx),
            worker: Some(worker),
            metrics,
        }))
    }

    /// The counters.
    pub fn metrics(&self) -> &SamplerMetrics {
        &self.metrics
    }

    /// Waits until every sample queued so far was compared (for tests and shutdown
    /// reports; a scrape never waits).
    pub fn flush(&self) {
        let (done_tx, done_rx) = bounded(1);
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Message::Flush(done_tx)).is_ok());
        if sent {
            let _ = done_rx.recv();
        }
    }
}

impl Drop for ParitySampler {
    fn drop(&mut self) {
        if let (Some(id), Some(store)) = (self.observer.take(), self.store.upgrade()) {
            store.remove_observer(id);
        }
        // The observer's sender went with the observer; this one ends the worker.
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A GET's answer as a ranking answer with one candidate (the shape parity compares).
fn as_ranking(answer: &EntityAnswer) -> Option<RankResponse> {
    let columns = (0..answer.width())
        .map(|i| answer.column_info(i).cloned())
        .collect::<Option<Vec<_>>>()?;
    Some(RankResponse {
        service: None,
        context: Vec::new(),
        context_columns: Arc::from([]),
        context_cells: Vec::new(),
        candidate_type: answer.entity_type().to_owned(),
        columns: columns.into(),
        candidates: vec![answer.entity_id().to_owned()],
        values: answer.columns().to_vec(),
        versions: answer.versions().clone(),
        complete: true,
        defaults: Vec::new(),
        now_ms: answer.now_ms(),
    })
}

/// The worker: recomputes and compares each sample until the sampler is dropped.
fn run(store: &Weak<FeatureStore>, rx: &Receiver<Message>, metrics: &SamplerMetrics) {
    for message in rx {
        let sample = match message {
            Message::Sample(sample) => sample,
            Message::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let Some(store) = store.upgrade() else {
            return;
        };
        let (served, ranking) = match &sample {
            Sample::Ranking(r) => (std::borrow::Cow::Borrowed(r.as_ref()), true),
            Sample::Entity(a) => match as_ranking(a) {
                Some(r) => (std::borrow::Cow::Owned(r), false),
                None => {
                    *metrics
                        .report
                        .lock()
                        .unverifiable
                        .entry("a column without its feature".into())
                        .or_default() += 1;
                    continue;
                }
            },
        };
        let request = request_for(&served, ranking);
        let again = store.rank_from_history(request, served.now_ms, HistoryQuery::AsOf, None);
        let mut report = metrics.report.lock();
        match again {
            Ok(again) => {
                let before = report.mismatches;
                report.compare_answers("sampled", &served, &again);
                if report.mismatches > before {
                    tracing::warn!(
                        at_ms = served.now_ms,
                        mismatches = report.mismatches - before,
                        "parity sampler: a live read differs from the history's answer"
                    );
                }
            }
            Err(e) => {
                *report.unverifiable.entry(e.to_string()).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ReadContext;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (_dir, store) = crate::store::test_store::with_price_feature();
        let answer = Arc::new(
            store
                .get_entity("item", "x", crate::query::Names::List(&["price"]))
                .expect("get"),
        );
        // Nobody takes from the queue: the first sample fills it.
        let (tx, _rx) = bounded(1);
        let metrics = Arc::new(SamplerMetrics::default());
        let observer = SamplerObserver {
            rate: 1.0,
            seen: AtomicU64::new(0),
            tx,
            metrics: metrics.clone(),
        };
        let event = ReadEvent {
            answer: ReadAnswer::Entity(&answer),
            context: ReadContext::EMBEDDED,
            at_ms: answer.now_ms(),
            elapsed: std::time::Duration::ZERO,
        };
        for _ in 0..3 {
            observer.on_read(&event);
        }
        assert_eq!(metrics.sampled.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.dropped.load(Ordering::Relaxed), 2);
        assert!(
            metrics
                .render()
                .contains("featstore_parity_samples_dropped_total 2\n")
        );
    }

    #[test]
    fn reads_are_sampled_evenly_at_the_rate() {
        let count = |rate: f64, n: u64| (0..n).filter(|&i| sampled(i, rate)).count();
        assert_eq!(count(0.001, 10_000), 10);
        assert_eq!(count(0.25, 100), 25);
        assert_eq!(count(1.0, 7), 7);
        assert_eq!(count(0.0, 1000), 0);
        assert!(ParitySamplerConfig::default().validate().is_ok());
        let bad = ParitySamplerConfig {
            sample_rate: 1.5,
            ..ParitySamplerConfig::default()
        };
        assert!(bad.validate().is_err());
        let nan = ParitySamplerConfig {
            sample_rate: f64::NAN,
            ..ParitySamplerConfig::default()
        };
        assert!(nan.validate().is_err());
    }
}
