//! The committer: makes pushes durable with group commit, in a two-stage pipeline, and
//! keeps the stream writable across transient write failures.
//!
//! Producers validate their events, queue them on a crossbeam channel and block on a
//! reply. The **writer** thread takes every job queued (up to [`MAX_GROUP_VALUES`]
//! values), reads the stored state of every key they touch with one batched MultiGet
//! per column family, applies the event-time rule in queue order and writes one
//! `WriteBatch` (WAL and memtable, not yet synced): from then on the values are
//! readable. It hands the batch to the **syncer** thread and goes on with the next
//! jobs. The syncer takes every written batch waiting, syncs the WAL once
//! (`FlushWAL(sync)`, an fsync covering all of them) and only then answers their
//! producers. So concurrent pushes share one fsync, the next group is prepared while the
//! previous one is synced, and a push is acknowledged only once durable.
//!
//! A consequence to know: a value may be read between its write and its sync. If the
//! process then dies, that value is lost although a reader saw it; its producer was never
//! acknowledged and retries. Acknowledged values are never lost.
//!
//! Event-time rule (per entity and feature): a value replaces the stored one only if
//! `(event time, encoded value)` is greater, bytewise on the value. The result is the
//! maximum over every value ever pushed, whatever the arrival order, and a replay
//! changes nothing.
//!
//! # Failed writes and recovery
//!
//! When a write or a WAL sync fails (a full disk, an I/O error), the jobs of that group
//! commit are answered with the error and the writer becomes **unavailable**
//! ([`WriterHealth`]): every push is refused at once with
//! [`PushError::Unavailable`], before anything of it is written, until a recovery
//! probe succeeds. The writer probes by itself, after 100 ms and then at doubling
//! intervals of at most [`MAX_PROBE_INTERVAL`], also when no push arrives. A probe:
//!
//! 1. flushes the memtables of every stream column family and of `stream_events` to
//!    SST files. Values written before the failure (readable, maybe not synced) then
//!    no longer depend on the WAL, whose state after a failed sync is unknown; so a
//!    later push judged against them by the event-time rule (and acknowledged as
//!    `ignored_older`, or as a duplicate event id) cannot lose its effect in a crash;
//! 2. writes one probe key ([`PROBE_KEY`] in the `default` column family) and syncs the
//!    WAL.
//!
//! Only when both succeed does the writer accept pushes again.
//!
//! The store's own RocksDB writes (the manifest, definitions, a load's ingestion) report
//! their I/O errors here too (`Committer::report_failure`): RocksDB may refuse every
//! write after one, so pushes are refused and `/readyz` names the cause until a probe
//! succeeds, also when no push has failed yet. The outage keeps the failure that
//! started it as its reason; later failures (RocksDB often only answers "Seen error.
//! Skip writing buffer." after a failed sync) are reported beside it. If RocksDB itself
//! stopped writes after the failure, the probe fails until RocksDB has recovered (it
//! does so by itself once space is freed, for a full disk); an error it does not
//! recover from keeps the writer unavailable, with RocksDB's reason, until a restart.
//!
//! What is retried and what is lost: the writer retries only its probe, never a push.
//! A push answered with an error was never acknowledged; its values may or may not
//! have been written (a failed sync leaves them readable, and the next probe makes
//! them durable) and the producer should send it again: under the event-time rule a
//! replay changes nothing, and an event id makes a replayed event a duplicate. No
//! acknowledged push is lost.
//!
//! # Fault injection
//!
//! [`StreamFault`] (set with `FeatureStore::inject_stream_fault`) makes the writer's
//! next writes, syncs and probes fail before they reach RocksDB, as a failing disk
//! would, until it is cleared: the seam the recovery tests use. It costs one mutex
//! lock per group commit when unset.
//!
//! Thread-safety contract: the writer alone writes stream column families, so its
//! read-decide-write is not raced by another writer; the one exception, a per-entity
//! deletion (`crate::store::erase`), deletes while it holds `Shared::pause`, which the
//! writer holds across each group commit's read-decide-write. The health state is one
//! `parking_lot::Mutex` shared by producers (a read per push), the writer and the
//! syncer (on failure and recovery).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use rocksdb::{DB, FlushOptions, WriteBatch, WriteOptions};
use serde::Serialize;

use super::event::{Prepared, PushError, PushOutcome};
use super::{EVENTS_CF, stream_cf_name};
use crate::codec::history;
use crate::codec::stream::Tile;
use crate::codec::value::decode_event_time;
use crate::store::keyspace::history_cf_name;
use crate::types::{TimestampMs, now_ms};

/// Maps of one commit, hashed with aHash (keys are producer-chosen, but a commit's maps
/// live for one batch and are bounded by it; aHash's random keys suffice).
type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A group commit stops taking queued jobs once it holds this many values: enough to
/// share one fsync among hundreds of pushes, few enough that one group holds the writer
/// for tens of milliseconds at most (the writer applies about 250,000 values/s here
/// with the WAL sync off the path, see README "Streaming pushes").
pub const MAX_GROUP_VALUES: usize = 20_000;

/// The first recovery probe runs this long after a failure.
pub const FIRST_PROBE_DELAY: Duration = Duration::from_millis(100);

/// Longest wait between two recovery probes (the delay doubles up to it).
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(2);

pub use crate::store::keyspace::PROBE_KEY;

/// What RocksDB answers every WAL write with after a failed WAL write or sync: it names
/// no cause (the failure before it does, possibly reported a moment later by the
/// syncer).
const ROCKSDB_REFUSAL: &str = "Seen error";

/// How long a write that failed with [`ROCKSDB_REFUSAL`] waits for the syncer to report
/// the failure that caused it, so that its pushes are told the cause.
const CAUSE_WAIT: Duration = Duration::from_millis(50);

/// Whether a failure says only that RocksDB refuses to write after an earlier one.
fn names_no_cause(reason: &str) -> bool {
    reason.contains(ROCKSDB_REFUSAL)
}

/// Called after each durable commit with, per group, the event times of the values
/// that became readable and the time they did.
pub type CommitObserver = Arc<dyn Fn(&str, &[TimestampMs], TimestampMs) + Send + Sync>;

/// An injected failure of the stream writer's I/O (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFault {
    /// Writes fail with this message before reaching RocksDB: nothing is written.
    Write(String),
    /// WAL syncs fail with this message: the group's values were written (readable)
    /// but are not acknowledged.
    Sync(String),
}

/// Whether the stream writer can write, as `/readyz`, the metrics and pushes report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriterHealth {
    /// True when pushes are accepted.
    pub healthy: bool,
    /// While unavailable: the failure that stopped writes (the root cause; later
    /// failures are often only RocksDB refusing to write after it).
    pub reason: Option<String>,
    /// While unavailable: the latest failure of a write or probe since, when it says
    /// something other than `reason`.
    pub last_error: Option<String>,
    /// While unavailable: when writes stopped, ms since the epoch.
    pub since_ms: Option<TimestampMs>,
    /// While unavailable: recovery probes that failed so far.
    pub failed_probes: u64,
    /// Failed writes and syncs since the store was opened (the writer's own, and the
    /// store's metadata writes and ingestions, which stop the writer too).
    pub failures: u64,
    /// Times the writer recovered since the store was opened.
    pub recoveries: u64,
}

impl WriterHealth {
    /// A one-line description for errors and `/readyz`.
    pub fn describe(&self) -> String {
        match (&self.reason, self.since_ms) {
            (Some(reason), Some(since)) => format!(
                "the stream writer cannot write since {} ms ago: {reason}; it retries by itself \
                 ({} failed probe{}{})",
                now_ms().saturating_sub(since).max(0),
                self.failed_probes,
                if self.failed_probes == 1 { "" } else { "s" },
                match &self.last_error {
                    Some(last) => format!("; the last failure: {last}"),
                    None => String::new(),
                }
            ),
            _ => "the stream writer is writing".to_owned(),
        }
    }
}

/// Why the writer is unavailable, and when it probes next.
#[derive(Debug)]
struct Outage {
    /// The failure that stopped writes.
    reason: String,
    /// The latest later failure, if it differs.
    last_error: Option<String>,
    since_ms: TimestampMs,
    failed_probes: u64,
    next_probe: Instant,
    delay: Duration,
}

/// State shared between producers, the committer threads and the metrics.
#[derive(Default)]
pub(crate) struct Shared {
    /// `Some` while the writer is unavailable.
    outage: Mutex<Option<Outage>>,
    failures: AtomicU64,
    recoveries: AtomicU64,
    fault: Mutex<Option<StreamFault>>,
    /// Newest event time written per group since open.
    pub newest: Mutex<std::collections::HashMap<String, TimestampMs>>,
    pub observer: Mutex<Option<CommitObserver>>,
    /// Held by the writer across each group commit's read-decide-write; a per-entity
    /// deletion holds it to keep every commit wholly before or after it.
    pub pause: Mutex<()>,
}

impl Shared {
    /// The current health.
    pub fn health(&self) -> WriterHealth {
        let outage = self.outage.lock();
        WriterHealth {
            healthy: outage.is_none(),
            reason: outage.as_ref().map(|o| o.reason.clone()),
            last_error: outage.as_ref().and_then(|o| o.last_error.clone()),
            since_ms: outage.as_ref().map(|o| o.since_ms),
            failed_probes: outage.as_ref().map_or(0, |o| o.failed_probes),
            failures: self.failures.load(Ordering::Relaxed),
            recoveries: self.recoveries.load(Ordering::Relaxed),
        }
    }

    /// The refusal for a push while unavailable, or `None` when writing.
    fn refusal(&self) -> Option<PushError> {
        if self.outage.lock().is_none() {
            return None;
        }
        Some(PushError::Unavailable(self.health().describe()))
    }

    /// Records a failed write or sync: the writer becomes unavailable (or stays so).
    /// Returns what to tell the pushes that failed: `reason`, and the root cause when
    /// an earlier failure had already stopped writes (RocksDB then often only says it
    /// refuses to write, e.g. "Seen error. Skip writing buffer.").
    fn failed(&self, reason: &str) -> String {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut outage = self.outage.lock();
        match outage.as_mut() {
            None => {
                tracing::error!(error = %reason, "stream write failed; refusing pushes until a recovery probe succeeds");
                *outage = Some(Outage {
                    reason: reason.to_owned(),
                    last_error: None,
                    since_ms: now_ms(),
                    failed_probes: 0,
                    next_probe: Instant::now() + FIRST_PROBE_DELAY,
                    delay: FIRST_PROBE_DELAY,
                });
                reason.to_owned()
            }
            Some(o) if o.reason == reason => reason.to_owned(),
            // The failure behind RocksDB's refusal, reported after it: the real reason.
            Some(o) if names_no_cause(&o.reason) && !names_no_cause(reason) => {
                tracing::error!(error = %reason, "stream write failed");
                o.last_error = Some(std::mem::replace(&mut o.reason, reason.to_owned()));
                reason.to_owned()
            }
            Some(o) => {
                o.last_error = Some(reason.to_owned());
                format!(
                    "{reason} (writes have failed since an earlier error: {})",
                    o.reason
                )
            }
        }
    }

    /// Waits (at most `limit`) until an outage with a named cause is recorded.
    fn wait_for_cause(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .outage
                .lock()
                .as_ref()
                .is_some_and(|o| !names_no_cause(&o.reason))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// How long until the next probe is due: `None` when writing.
    fn until_probe(&self) -> Option<Duration> {
        self.outage
            .lock()
            .as_ref()
            .map(|o| o.next_probe.saturating_duration_since(Instant::now()))
    }

    fn probe_failed(&self, reason: String) {
        let mut outage = self.outage.lock();
        if let Some(o) = outage.as_mut() {
            o.failed_probes += 1;
            o.delay = (o.delay * 2).min(MAX_PROBE_INTERVAL);
            o.next_probe = Instant::now() + o.delay;
            if o.last_error.as_ref() != Some(&reason) {
                tracing::warn!(error = %reason, "stream writer recovery probe failed");
            }
            // The root cause stays: a probe after a failed sync often only learns that
            // RocksDB refuses to write.
            o.last_error = (reason != o.reason).then_some(reason);
        }
    }

    fn recovered(&self) {
        let mut outage = self.outage.lock();
        if let Some(o) = outage.take() {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                failed_probes = o.failed_probes,
                down_ms = now_ms().saturating_sub(o.since_ms),
                "stream writer recovered; accepting pushes again"
            );
        }
    }

    fn fault(&self) -> Option<StreamFault> {
        self.fault.lock().clone()
    }

    /// Sets or clears the injected fault.
    pub fn inject(&self, fault: Option<StreamFault>) {
        *self.fault.lock() = fault;
    }
}

struct Job {
    events: Vec<Prepared>,
    reply: Sender<Result<PushOutcome, PushError>>,
}

/// Jobs written (readable) and waiting for the WAL sync.
struct Written {
    jobs: Vec<Job>,
    outcomes: Vec<PushOutcome>,
}

/// Handle of the committer threads; dropping it drains the queue and joins them.
pub(crate) struct Committer {
    tx: Option<Sender<Job>>,
    /// Wakes the writer so that it probes (see [`Committer::report_failure`]).
    wake: Sender<()>,
    threads: Vec<JoinHandle<()>>,
    pub shared: Arc<Shared>,
}

impl Committer {
    /// Starts the threads writing to `db`.
    pub fn start(db: Arc<DB>) -> std::io::Result<Self> {
        let (tx, rx) = channel::unbounded();
        let (written_tx, written_rx) = channel::unbounded();
        // The syncer wakes the writer when a sync fails, so that it probes even when no
        // push arrives.
        let (wake_tx, wake_rx) = channel::bounded(1);
        let shared = Arc::new(Shared::default());
        let (writer_db, writer_shared) = (db.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("featstore-commit".into())
            .spawn(move || run_writer(&writer_db, &rx, &wake_rx, &written_tx, &writer_shared))?;
        let syncer_shared = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("featstore-sync".into())
            .spawn({
                let wake_tx = wake_tx.clone();
                move || run_syncer(&db, &written_rx, &wake_tx, &syncer_shared)
            })?;
        Ok(Committer {
            tx: Some(tx),
            wake: wake_tx,
            threads: vec![writer, syncer],
            shared,
        })
    }

    /// Reports a failed RocksDB write made outside the writer (the store's metadata, a
    /// load's ingestion): RocksDB may have stopped every write after it, so the writer
    /// becomes unavailable (pushes refused, `/readyz` at 503 with `reason`) and probes
    /// until writes work again, as after a failure of its own.
    pub fn report_failure(&self, reason: &str) {
        self.shared.failed(reason);
        // Full: a wake-up is already pending.
        let _ = self.wake.try_send(());
    }

    /// Queues `events` and waits until they are durable (or refused).
    pub fn submit(&self, events: Vec<Prepared>) -> Result<PushOutcome, PushError> {
        if let Some(refusal) = self.shared.refusal() {
            return Err(refusal);
        }
        let (reply, answer) = channel::bounded(1);
        let stopped = || PushError::Internal("the stream writer has stopped".into());
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job { events, reply })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.tx.take();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("stream committer thread panicked");
            }
        }
    }
}

fn fail(jobs: Vec<Job>, e: &PushError) {
    for job in jobs {
        // A producer that gave up waiting is no error of ours.
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// The error for the jobs whose write or sync failed with `reason`.
fn failed_write(reason: &str) -> PushError {
    PushError::WriteFailed(reason.to_owned())
}

/// What the writer waits for.
enum Wait {
    Job(Job),
    Wake,
    ProbeDue,
    Closed,
}

/// Stage 1: group, decide, write (readable, not yet durable); and the recovery probes.
fn run_writer(
    db: &DB,
    rx: &Receiver<Job>,
    wake: &Receiver<()>,
    written: &Sender<Written>,
    shared: &Shared,
) {
    // Stream column families this writer has written: what a probe must flush.
    let mut touched: BTreeSet<String> = BTreeSet::new();
    touched.insert(EVENTS_CF.to_owned());
    loop {
        let wait = match shared.until_probe() {
            None => channel::select! {
                recv(rx) -> job => job.map_or(Wait::Closed, Wait::Job),
                recv(wake) -> _ => Wait::Wake,
            },
            Some(due) => channel::select! {
                recv(rx) -> job => job.map_or(Wait::Closed, Wait::Job),
                recv(wake) -> _ => Wait::Wake,
                default(due) => Wait::ProbeDue,
            },
        };
        let first = match wait {
            Wait::Closed => return,
            Wait::Wake => continue,
            Wait::ProbeDue => {
                probe(db, &touched, shared);
                continue;
            }
            Wait::Job(job) => job,
        };
        if shared.until_probe().is_some_and(|due| due.is_zero()) {
            probe(db, &touched, shared);
        }
        let mut values: usize = first.events.iter().map(|e| e.values.len()).sum();
        let mut jobs = vec![first];
        while values < MAX_GROUP_VALUES {
            match rx.try_recv() {
                Ok(job) => {
                    values += job.events.iter().map(|e| e.values.len()).sum::<usize>();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if let Some(refusal) = shared.refusal() {
            fail(jobs, &refusal);
            continue;
        }
        let paused = shared.pause.lock();
        let committed = commit(db, &jobs, shared, &mut touched);
        drop(paused);
        match committed {
            Ok(outcomes) => {
                if let Err(channel::SendError(w)) = written.send(Written { jobs, outcomes }) {
                    fail(
                        w.jobs,
                        &PushError::Internal("the WAL syncer has stopped".into()),
                    );
                }
            }
            Err(Failure::Write(reason)) => {
                // A concurrent sync that failed is the cause; the syncer reports it in a
                // moment.
                if names_no_cause(&reason) {
                    shared.wait_for_cause(CAUSE_WAIT);
                }
                let message = shared.failed(&reason);
                fail(jobs, &failed_write(&message));
            }
            Err(Failure::Other(e)) => fail(jobs, &e),
        }
    }
}

/// One recovery probe (see the module docs); marks the writer available on success.
fn probe(db: &DB, touched: &BTreeSet<String>, shared: &Shared) {
    match try_probe(db, touched, shared) {
        Ok(()) => shared.recovered(),
        Err(reason) => shared.probe_failed(reason),
    }
}

fn try_probe(db: &DB, touched: &BTreeSet<String>, shared: &Shared) -> Result<(), String> {
    if let Some(StreamFault::Write(m) | StreamFault::Sync(m)) = shared.fault() {
        return Err(format!("recovery probe failed: {m}"));
    }
    let handles: Vec<_> = touched.iter().filter_map(|n| db.cf_handle(n)).collect();
    let refs: Vec<_> = handles.iter().collect();
    let mut flush = FlushOptions::default();
    flush.set_wait(true);
    db.flush_cfs_opt(&refs, &flush)
        .map_err(|e| format!("recovery probe: flushing the stream column families failed: {e}"))?;
    db.put(PROBE_KEY, now_ms().to_le_bytes())
        .map_err(|e| format!("recovery probe: write failed: {e}"))?;
    db.flush_wal(true)
        .map_err(|e| format!("recovery probe: WAL sync failed: {e}"))
}

/// Stage 2: one WAL sync for every batch written meanwhile, then the acknowledgements.
fn run_syncer(db: &DB, rx: &Receiver<Written>, wake: &Sender<()>, shared: &Shared) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let synced = match shared.health().reason {
            // Written while an earlier sync failed: a sync now would not prove the
            // earlier writes these were judged against are durable, so they are not
            // acknowledged (the probe makes whatever became readable durable).
            Some(reason) => Err(failed_write(&format!("not synced: {reason}"))),
            None => sync_wal(db, shared).map_err(|reason| {
                let message = shared.failed(&reason);
                // Full: a wake-up is already pending.
                let _ = wake.try_send(());
                failed_write(&message)
            }),
        };
        for batch in batches {
            match &synced {
                Ok(()) => {
                    for (job, outcome) in batch.jobs.into_iter().zip(batch.outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                Err(e) => fail(batch.jobs, e),
            }
        }
    }
}

fn sync_wal(db: &DB, shared: &Shared) -> Result<(), String> {
    if let Some(StreamFault::Sync(m)) = shared.fault() {
        return Err(format!("WAL sync failed: {m}"));
    }
    db.flush_wal(true)
        .map_err(|e| format!("WAL sync failed: {e}"))
}

/// Why a commit failed.
enum Failure {
    /// The write itself failed: the writer becomes unavailable.
    Write(String),
    /// Anything else (a read, a corrupt stored value): only these jobs fail.
    Other(PushError),
}

impl From<PushError> for Failure {
    fn from(e: PushError) -> Self {
        Failure::Other(e)
    }
}

/// A latest value: its event time and encoded bytes (read from the store, or borrowed
/// from the pushed value that replaced it).
type Latest<'a> = (TimestampMs, Cow<'a, [u8]>);

/// The stored latest value of one key during a commit.
struct ValueSlot<'a> {
    current: Option<Latest<'a>>,
    dirty: bool,
}

struct TileSlot {
    tile: Tile,
    dirty: bool,
}

/// Keys one commit touches in one group's column family, borrowed from the jobs (a
/// commit's working set is then its maps and the write batch, not copies of every key).
#[derive(Default)]
struct GroupWork<'a> {
    values: FastMap<&'a [u8], ValueSlot<'a>>,
    tiles: FastMap<&'a [u8], TileSlot>,
    /// Event times of the values that became the latest value.
    applied: Vec<TimestampMs>,
}

fn storage(e: rocksdb::Error) -> PushError {
    PushError::Storage(e)
}

fn corrupt(what: &'static str, source: crate::codec::CodecError) -> PushError {
    PushError::Corrupt { what, source }
}

/// Keys per MultiGet call: RocksDB allocates per-key lookup state for a whole call,
/// so one push of many values is read in slices of this many keys.
const MULTI_GET_KEYS: usize = 4096;

/// Reads the stored values of `keys` (sorted) in `cf`, handing each one found to
/// `found` with its key.
fn multi_get<'k>(
    db: &DB,
    cf: &impl rocksdb::AsColumnFamilyRef,
    keys: &[&'k [u8]],
    mut found: impl FnMut(&'k [u8], Vec<u8>) -> Result<(), PushError>,
) -> Result<(), PushError> {
    for chunk in keys.chunks(MULTI_GET_KEYS) {
        let results = db.batched_multi_get_cf(cf, chunk.iter(), true);
        for (key, result) in chunk.iter().zip(results) {
            if let Some(value) = result.map_err(storage)? {
                found(key, value.to_vec())?;
            }
        }
    }
    Ok(())
}

fn commit(
    db: &DB,
    jobs: &[Job],
    shared: &Shared,
    touched: &mut BTreeSet<String>,
) -> Result<Vec<PushOutcome>, Failure> {
    // 1. Every key touched, per group.
    let mut groups: FastMap<Arc<str>, GroupWork<'_>> = FastMap::default();
    let mut markers: FastMap<&[u8], bool> = FastMap::default();
    for event in jobs.iter().flat_map(|j| &j.events) {
        for v in &event.values {
            groups
                .entry(v.group.clone())
                .or_default()
                .values
                .entry(v.key.as_slice())
                .or_insert(ValueSlot {
                    current: None,
                    dirty: false,
                });
        }
        for t in &event.tiles {
            groups
                .entry(t.group.clone())
                .or_default()
                .tiles
                .entry(t.key.as_slice())
                .or_insert(TileSlot {
                    tile: Tile::default(),
                    dirty: false,
                });
        }
        if let Some(marker) = &event.marker {
            markers.insert(marker.as_slice(), false);
        }
    }

    // 2. Their stored state: batched MultiGets per column family and key kind.
    let mut names: FastMap<Arc<str>, String> = FastMap::default();
    for (group, work) in &mut groups {
        let name = stream_cf_name(group);
        let cf = db
            .cf_handle(&name)
            .ok_or_else(|| PushError::Internal(format!("column family {name} is missing")))?;
        let mut keys: Vec<&[u8]> = work.values.keys().copied().collect();
        keys.sort_unstable();
        let values = &mut work.values;
        multi_get(db, &cf, &keys, |key, v| {
            let time = decode_event_time(&v).map_err(|e| corrupt("value", e))?;
            if let Some(slot) = values.get_mut(key) {
                slot.current = Some((time, Cow::Owned(v)));
            }
            Ok(())
        })?;
        let mut keys: Vec<&[u8]> = work.tiles.keys().copied().collect();
        keys.sort_unstable();
        let tiles = &mut work.tiles;
        multi_get(db, &cf, &keys, |key, v| {
            let tile = Tile::decode(&v).map_err(|e| corrupt("tile", e))?;
            if let Some(slot) = tiles.get_mut(key) {
                slot.tile = tile;
            }
            Ok(())
        })?;
        if !touched.contains(&name) {
            touched.insert(name.clone());
            // A probe flushes the history family with the stream family it records.
            let history = history_cf_name(group);
            if db.cf_handle(&history).is_some() {
                touched.insert(history);
            }
        }
        names.insert(group.clone(), name);
    }
    let events_cf = db
        .cf_handle(EVENTS_CF)
        .ok_or_else(|| PushError::Internal(format!("column family {EVENTS_CF} is missing")))?;
    if !markers.is_empty() {
        let mut keys: Vec<&[u8]> = markers.keys().copied().collect();
        keys.sort_unstable();
        multi_get(db, &events_cf, &keys, |key, _| {
            markers.insert(key, true);
            Ok(())
        })?;
    }

    // 3. The event-time rule, in queue order.
    let mut batch = WriteBatch::default();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut outcome = PushOutcome::default();
        for event in &job.events {
            if let Some(marker) = &event.marker {
                match markers.get_mut(marker.as_slice()) {
                    Some(true) => {
                        outcome.duplicates += 1;
                        continue;
                    }
                    Some(seen) => {
                        *seen = true;
                        batch.put_cf(&events_cf, marker, event.event_time.to_le_bytes());
                    }
                    None => {}
                }
            }
            outcome.accepted += 1;
            outcome.late_for_aggregates += event.late;
            for v in &event.values {
                let Some(work) = groups.get_mut(&v.group) else {
                    continue;
                };
                let Some(slot) = work.values.get_mut(v.key.as_slice()) else {
                    continue;
                };
                let newer = match &slot.current {
                    None => true,
                    Some((t, bytes)) => (v.event_time, v.encoded.as_slice()) > (*t, &**bytes),
                };
                if newer {
                    slot.current = Some((v.event_time, Cow::Borrowed(&v.encoded)));
                    slot.dirty = true;
                    work.applied.push(v.event_time);
                    outcome.values_written += 1;
                } else {
                    outcome.ignored_older += 1;
                }
            }
            for t in &event.tiles {
                if let Some(slot) = groups
                    .get_mut(&t.group)
                    .and_then(|w| w.tiles.get_mut(t.key.as_slice()))
                {
                    slot.tile.add(t.value, t.event_time);
                    slot.dirty = true;
                    outcome.aggregate_updates += 1;
                }
            }
        }
        outcomes.push(outcome);
    }

    // 4. One write; the syncer makes it durable before anyone is acknowledged. Keys go
    // in ascending order: the memtable's skip list then inserts each one starting from
    // the previous one's position.
    // The time the values become readable, as the history records it (see
    // `crate::store::history`): the next millisecond, and the batch is written only once
    // the clock reached it, so a read judged before it never saw the values and one
    // judged after the write always does. Costs the writer up to a millisecond per
    // group commit (shared by all its pushes).
    let write_time = now_ms().saturating_add(1);
    let mut record = Vec::new();
    let mut recorded = false;
    for (group, work) in &groups {
        let Some(cf) = names.get(group).and_then(|n| db.cf_handle(n)) else {
            continue;
        };
        let mut values: Vec<(&[u8], TimestampMs, &[u8])> = work
            .values
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .filter_map(|(key, slot)| {
                slot.current
                    .as_ref()
                    .map(|(time, bytes)| (*key, *time, &**bytes))
            })
            .collect();
        values.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let history_cf = db.cf_handle(&history_cf_name(group));
        for (key, event_time, bytes) in values {
            batch.put_cf(&cf, key, bytes);
            if let Some(history_cf) = &history_cf {
                recorded = true;
                record.clear();
                history::encode_present(bytes, &mut record);
                batch.put_cf(
                    history_cf,
                    history::stream_key(key, event_time, write_time),
                    &record,
                );
            }
        }
        let mut tiles: Vec<(&[u8], &TileSlot)> = work
            .tiles
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .map(|(key, slot)| (*key, slot))
            .collect();
        tiles.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, slot) in tiles {
            batch.put_cf(&cf, key, slot.tile.encode());
        }
    }
    if !batch.is_empty() {
        if recorded {
            crate::store::history::wait_until(write_time);
        }
        if let Some(StreamFault::Write(m)) = shared.fault() {
            return Err(Failure::Write(format!("write failed: {m}")));
        }
        db.write_opt(batch, &WriteOptions::default())
            .map_err(|e| Failure::Write(format!("write failed: {e}")))?;
    }

    // 5. Freshness: what became readable, and when.
    let readable = now_ms();
    let observer = shared.observer.lock().clone();
    let mut newest = shared.newest.lock();
    for (group, work) in &groups {
        let Some(&max) = work.applied.iter().max() else {
            continue;
        };
        let entry = newest.entry(group.to_string()).or_insert(max);
        *entry = (*entry).max(max);
        if let Some(observer) = &observer {
            observer(group, &work.applied, readable);
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSAL: &str = "write failed: IO error: Seen error. Skip writing buffer.";
    const CAUSE: &str =
        "WAL sync failed: IO error: While fdatasync: 000075.log: Input/output error";

    #[test]
    fn the_cause_of_a_refusal_becomes_the_reason_when_reported_after_it() {
        let shared = Shared::default();
        assert_eq!(shared.failed(REFUSAL), REFUSAL);
        assert_eq!(shared.failed(CAUSE), CAUSE);
        let health = shared.health();
        assert_eq!(health.reason.as_deref(), Some(CAUSE));
        assert_eq!(health.last_error.as_deref(), Some(REFUSAL));
        // A later refusal is told the cause.
        let told = shared.failed(REFUSAL);
        assert!(told.contains(REFUSAL) && told.contains(CAUSE), "{told}");
        assert_eq!(shared.health().failures, 3);
    }

    #[test]
    fn the_first_failure_with_a_cause_stays_the_reason() {
        let shared = Shared::default();
        shared.failed(CAUSE);
        let told = shared.failed(REFUSAL);
        assert!(told.contains(CAUSE), "{told}");
        shared.probe_failed(format!("recovery probe: {REFUSAL}"));
        let health = shared.health();
        assert_eq!(health.reason.as_deref(), Some(CAUSE));
        assert!(health.describe().contains("Input/output error"));
        shared.recovered();
        let health = shared.health();
        assert_eq!(
            (health.healthy, health.reason, health.last_error),
            (true, None, None)
        );
    }
}
