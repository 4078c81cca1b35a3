//! The writer thread: takes queued reads, encodes them ([`super::record`]), gathers them
//! into blocks (`featstore_format::reclog`), appends each block with one `write`, and
//! rotates and prunes files.
//!
//! Files are `<dir>/<created ms, 16 digits>-<seq, 6 digits>.fslog`; a file is never
//! appended to after the writer that created it stops (a restart starts a new file), so
//! a torn tail can only be at the end of a file that was being written when the process
//! died. A block is written when it holds `block_bytes` of records or
//! `flush_interval_ms` after its first record; a file is closed (end marker, fsync) past
//! `segment_bytes` or `segment_age_secs`, and on shutdown. Retention runs at start and
//! after each rotation, on closed files only.
//!
//! Thread-safety: the thread owns every file handle; the handle only joins it.
//!
//! Hand-over: the thread takes everything queued, then sleeps before it waits on the
//! queue again (2 ms after a batch of 8 reads or more, else 25 ms, never past the open
//! block's flush time), so a read seldom pays for waking it (a futex call per record,
//! on the read path's core): under load the thread wakes once per batch, and at a low
//! sample rate about once per 25 ms instead of once per logged read.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError};
use featstore_format::reclog::{BlockBuilder, BlockPlace, end_marker, file_header};

use super::record::{ColumnSets, encode_entity, encode_ranking};
use super::{DropReason, LogMetrics, Pending, Queued, ServeLogConfig, ServeLogError};
use crate::store::FeatureStore;
use crate::store::erase::{EntityMatch, HolderReport};
use crate::types::now_ms;

/// How long the writer lets the queue fill after taking what it held.
const GATHER: Duration = Duration::from_millis(2);
/// ... after taking fewer than [`BUSY_BATCH`] reads, at most until the block's flush
/// time (a block is still written `flush_interval_ms` after its first read).
const GATHER_LONG: Duration = Duration::from_millis(25);
/// A batch of at least this many reads keeps the short pause.
const BUSY_BATCH: usize = 8;

/// File name suffix of log files.
pub const EXTENSION: &str = "fslog";

/// The file name of a log file created at `created_ms`, `seq`-th of that millisecond.
pub fn file_name(created_ms: i64, seq: u32) -> String {
    format!("{created_ms:016}-{seq:06}.{EXTENSION}")
}

/// The creation time in a log file's name.
pub fn created_of(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(&format!(".{EXTENSION}"))?;
    stem.split_once('-')?.0.parse().ok()
}

/// The log files in `dir`, oldest first (an absent directory has none).
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, ServeLogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ServeLogError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| created_of(p).is_some())
        .collect();
    files.sort();
    Ok(files)
}

/// How long after a deletion the writer still drops records of the deleted entity
/// judged before it: a read that took its view before the deletion may reach the queue
/// after the files were rewritten.
const ERASE_GRACE: Duration = Duration::from_secs(60);

/// A request to the writer thread besides records.
pub(crate) enum Control {
    /// Rewrite the files without `target`'s records (`super::erase`) and answer.
    Erase {
        target: EntityMatch,
        reply: crossbeam::channel::Sender<Result<HolderReport, String>>,
    },
}

/// Whether `answer` names an entity `target` covers.
fn names(target: &EntityMatch, answer: &Queued) -> bool {
    match answer {
        Queued::Entity(a) => target.matches(a.entity_type(), a.entity_id()),
        Queued::Ranking(r) => {
            r.context.iter().any(|(ty, id)| target.matches(ty, id))
                || (target.covers_type(&r.candidate_type)
                    && r.candidates
                        .iter()
                        .any(|id| target.matches(&r.candidate_type, id)))
        }
    }
}

/// The writer thread's handle.
pub(crate) struct WriterHandle {
    thread: std::thread::JoinHandle<()>,
    stop: crossbeam::channel::Sender<()>,
    /// Requests to the thread (shared with the log's eraser).
    pub(crate) control: crossbeam::channel::Sender<Control>,
}

impl WriterHandle {
    pub(crate) fn start(
        dir: PathBuf,
        config: ServeLogConfig,
        rx: Receiver<Pending>,
        metrics: Arc<LogMetrics>,
        store: Weak<FeatureStore>,
    ) -> Result<Self, ServeLogError> {
        std::fs::create_dir_all(&dir).map_err(|source| ServeLogError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut writer = Writer {
            dir,
            config,
            metrics,
            store,
            groups: HashMap::new(),
            file: None,
            block: BlockBuilder::new(),
            block_oldest_ms: None,
            block_values: 0,
            block_started: None,
            block_sets: 0,
            sets: ColumnSets::new(),
            record: Vec::new(),
            erased: Vec::new(),
        };
        writer.prune();
        writer.open_file()?;
        let (stop, stopped) = crossbeam::channel::bounded(1);
        let (control, requests) = crossbeam::channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("serving-log".into())
            .spawn(move || writer.run(&rx, &stopped, requests))
            .map_err(|source| ServeLogError::Io {
                path: PathBuf::from("serving-log thread"),
                source,
            })?;
        Ok(WriterHandle {
            thread,
            stop,
            control,
        })
    }

    /// Drains the queue, closes the file cleanly and joins the thread.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the serving-log writer thread panicked");
        }
    }
}

struct OpenFile {
    file: File,
    id: u64,
    path: PathBuf,
    bytes: u64,
    records: u32,
    opened: Instant,
}

struct Writer {
    dir: PathBuf,
    config: ServeLogConfig,
    metrics: Arc<LogMetrics>,
    store: Weak<FeatureStore>,
    /// Group of each served feature (`name@version`), resolved once: definitions are
    /// immutable per version.
    groups: HashMap<String, String>,
    file: Option<OpenFile>,
    block: BlockBuilder,
    block_oldest_ms: Option<i64>,
    block_values: u64,
    block_started: Option<Instant>,
    /// Column-set records in the block (not reads: left out of the read counts).
    block_sets: u32,
    sets: ColumnSets,
    record: Vec<u8>,
    /// Entities deleted in the last [`ERASE_GRACE`], with the deletion's time: records
    /// of reads judged before it are dropped.
    erased: Vec<(EntityMatch, i64, Instant)>,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Pending>, stopped: &Receiver<()>, requests: Receiver<Control>) {
        let interval = Duration::from_millis(self.config.flush_interval_ms);
        let mut requests = requests;
        loop {
            if stopped.try_recv().is_ok() {
                break;
            }
            let wait = self.until_flush(interval);
            let received = crossbeam::channel::select! {
                recv(rx) -> pending => pending.map_err(|_| RecvTimeoutError::Disconnected),
                recv(requests) -> request => {
                    match request {
                        Ok(request) => self.control(request, rx),
                        // The handle is gone: stop listening for requests.
                        Err(_) => requests = crossbeam::channel::never(),
                    }
                    continue;
                }
                default(wait) => Err(RecvTimeoutError::Timeout),
            };
            match received {
                Ok(pending) => {
                    self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    self.add(pending);
                    let mut taken = 1;
                    while let Ok(pending) = rx.try_recv() {
                        self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                        self.add(pending);
                        taken += 1;
                    }
                    // Let the queue fill while a block is open: while the writer sleeps
                    // instead of waiting on the channel, a read hands its answer over
                    // without a wake-up call (a futex call on the read's core, and two
                    // context switches). A small batch means few reads are logged (a
                    // low sample rate): sleep longer, so that they too wake the writer
                    // about once per GATHER_LONG rather than once per read.
                    let pause = if taken >= BUSY_BATCH {
                        GATHER
                    } else {
                        GATHER_LONG
                    };
                    let left = self.until_flush(interval);
                    std::thread::sleep(pause.min(left).max(GATHER.min(interval)));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.block_started.is_some_and(|t| t.elapsed() >= interval) {
                self.flush();
            }
        }
        // Drain what is queued, then close cleanly.
        while let Ok(pending) = rx.try_recv() {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            self.add(pending);
        }
        self.flush();
        self.close_file();
    }

    /// How long until the open block is due to be written (`interval` when none is open).
    fn until_flush(&self, interval: Duration) -> Duration {
        self.block_started
            .map_or(interval, |t| interval.saturating_sub(t.elapsed()))
    }

    /// The group of a served feature; asked once per new column set.
    fn group_of(
        groups: &mut HashMap<String, String>,
        store: &Weak<FeatureStore>,
        feature: &str,
    ) -> String {
        if let Some(g) = groups.get(feature) {
            return g.clone();
        }
        let group = store
            .upgrade()
            .and_then(|s| s.registry().resolve(feature).map(|d| d.spec.group.clone()))
            .unwrap_or_default();
        groups.insert(feature.to_owned(), group.clone());
        group
    }

    /// Answers a request (see [`Control`]).
    fn control(&mut self, request: Control, rx: &Receiver<Pending>) {
        match request {
            Control::Erase { target, reply } => {
                // Reads answered before the deletion are in the queue: they go into
                // the files first, and out of them with the rest.
                while let Ok(pending) = rx.try_recv() {
                    self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    self.add(pending);
                }
                self.flush();
                self.close_file();
                let result =
                    super::erase::erase_dir(&self.dir, &target, self.config.compression_level)
                        .map_err(|e| e.to_string());
                self.erased.push((target, now_ms(), Instant::now()));
                if let Err(e) = self.open_file() {
                    tracing::error!(error = %e, "serving log: cannot open a new file");
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Whether `pending` is a read of an entity deleted after it was judged.
    fn is_erased(&mut self, pending: &Pending) -> bool {
        self.erased.retain(|(_, _, at)| at.elapsed() < ERASE_GRACE);
        if self.erased.is_empty() {
            return false;
        }
        let at = match &pending.answer {
            Queued::Entity(a) => a.now_ms(),
            Queued::Ranking(r) => r.now_ms,
        };
        self.erased
            .iter()
            .any(|(target, erased_at, _)| at <= *erased_at && names(target, &pending.answer))
    }

    fn add(&mut self, pending: Pending) {
        if self.is_erased(&pending) {
            self.metrics.drop_records(DropReason::Erased, 1);
            return;
        }
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        let (groups, store) = (&mut self.groups, &self.store);
        let mut group_of = |f: &str| Self::group_of(groups, store, f);
        let (at, values) = match &pending.answer {
            Queued::Entity(a) => {
                encode_entity(
                    &mut record,
                    &pending.request_id,
                    &pending.route,
                    a,
                    &mut self.sets,
                    &mut group_of,
                );
                (a.now_ms(), a.width() as u64)
            }
            Queued::Ranking(r) => {
                encode_ranking(
                    &mut record,
                    &pending.request_id,
                    &pending.route,
                    r,
                    &mut self.sets,
                    &mut group_of,
                );
                (
                    r.now_ms,
                    (r.context_cells.len() + r.candidates.len() * r.columns.len()) as u64,
                )
            }
        };
        if record.len() > featstore_format::reclog::MAX_RECORD_BYTES {
            self.metrics.drop_records(DropReason::TooLarge, 1);
        } else {
            let sets_len = |sets: &ColumnSets, ids: &[u64]| -> usize {
                ids.iter()
                    .filter_map(|id| sets.record(*id))
                    .map(|r| r.len() + 8)
                    .sum()
            };
            let mut missing = self.sets.missing();
            if !self
                .block
                .fits(record.len() + sets_len(&self.sets, &missing))
            {
                self.flush();
                // A new block holds no set: it needs them all again.
                missing = self.sets.missing();
            }
            // The sets this read names go into its block first.
            let mut sets_added = true;
            for id in missing {
                let added = self
                    .sets
                    .record(id)
                    .is_some_and(|set| self.block.add(set).is_ok());
                if !added {
                    sets_added = false;
                    break;
                }
                self.block_sets += 1;
                self.sets.mark_in_block(id);
            }
            if sets_added && self.block.add(&record).is_ok() {
                self.block_oldest_ms = Some(self.block_oldest_ms.map_or(at, |o| o.min(at)));
                self.block_values += values;
                self.block_started.get_or_insert_with(Instant::now);
            } else {
                self.metrics.drop_records(DropReason::TooLarge, 1);
            }
            if self.block.raw_len() >= self.config.block_bytes {
                self.flush();
            }
        }
        self.record = record;
    }

    fn flush(&mut self) {
        self.block_started = None;
        self.sets.new_block();
        if self.block.is_empty() {
            return;
        }
        // Reads in the block; the file's framing also counts its column-set records.
        let framed = self.block.records();
        let records = framed - std::mem::take(&mut self.block_sets);
        let values = std::mem::take(&mut self.block_values);
        let oldest = self.block_oldest_ms.take();
        let level = (self.config.compression_level != 0).then_some(self.config.compression_level);
        if self.file.is_none() && self.open_file().is_err() {
            self.metrics
                .drop_records(DropReason::IoError, u64::from(records));
            self.block = BlockBuilder::new();
            return;
        }
        let Some(open) = self.file.as_mut() else {
            return;
        };
        let place = BlockPlace {
            file_id: open.id,
            offset: open.bytes,
        };
        let bytes = match self.block.finish(place, level) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "serving log: compressing a block failed");
                self.metrics
                    .drop_records(DropReason::IoError, u64::from(records));
                self.block = BlockBuilder::new();
                return;
            }
        };
        match open.file.write_all(bytes) {
            Ok(()) => {
                open.bytes += bytes.len() as u64;
                open.records = open.records.saturating_add(framed);
                self.metrics
                    .records_written
                    .fetch_add(u64::from(records), Ordering::Relaxed);
                self.metrics
                    .bytes_written
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.metrics
                    .values_written
                    .fetch_add(values, Ordering::Relaxed);
                if let Some(oldest) = oldest {
                    self.metrics
                        .write_lag_ms
                        .store(now_ms().saturating_sub(oldest), Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, path = %open.path.display(), "serving log: write failed; starting a new file");
                self.metrics
                    .drop_records(DropReason::IoError, u64::from(records));
                // The file may end in a torn block; never append after it.
                self.file = None;
                return;
            }
        }
        let rotate = open.bytes >= self.config.segment_bytes
            || open.opened.elapsed() >= Duration::from_secs(self.config.segment_age_secs);
        if rotate {
            self.close_file();
            self.prune();
            if let Err(e) = self.open_file() {
                tracing::error!(error = %e, "serving log: cannot open a new file");
            }
        }
    }

    fn open_file(&mut self) -> Result<(), ServeLogError> {
        let created = now_ms();
        let mut seq = 0u32;
        let (path, mut file) = loop {
            let path = self.dir.join(file_name(created, seq));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && seq < 999_999 => {
                    seq += 1;
                }
                Err(source) => return Err(ServeLogError::Io { path, source }),
            }
        };
        let id = rand::random::<u64>();
        let header = file_header(created, id);
        file.write_all(&header)
            .map_err(|source| ServeLogError::Io {
                path: path.clone(),
                source,
            })?;
        self.file = Some(OpenFile {
            file,
            id,
            path,
            bytes: header.len() as u64,
            records: 0,
            opened: Instant::now(),
        });
        Ok(())
    }

    fn close_file(&mut self) {
        let Some(mut open) = self.file.take() else {
            return;
        };
        let place = BlockPlace {
            file_id: open.id,
            offset: open.bytes,
        };
        let result = open
            .file
            .write_all(&end_marker(place, open.records))
            .and_then(|()| open.file.sync_all());
        if let Err(e) = result {
            tracing::error!(error = %e, path = %open.path.display(), "serving log: closing a file failed");
        }
    }

    /// Deletes closed files past the retention age (the log's, or the shortest feature
    /// retention) or beyond the byte budget, oldest first; the open file is never
    /// deleted.
    fn prune(&mut self) {
        let Ok(files) = list_files(&self.dir) else {
            return;
        };
        let open = self.file.as_ref().map(|f| f.path.clone());
        // The log's own retention, or the shortest retention of a registered feature
        // when that is shorter (a record may hold any feature's values).
        let features = self.store.upgrade().and_then(|store| {
            store
                .registry()
                .list(&crate::registry::DefinitionFilter::default())
                .iter()
                .filter_map(|d| d.spec.retention_ms())
                .min()
        });
        let own = i64::try_from(self.config.retention_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let cutoff = now_ms().saturating_sub(features.map_or(own, |f| f.min(own)));
        let sizes: Vec<u64> = files
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .collect();
        let mut total: u64 = sizes.iter().sum();
        for (i, path) in files.iter().enumerate() {
            if Some(path) == open.as_ref() {
                break;
            }
            // Every record of a file is older than the next file's creation.
            let next_created = files.get(i + 1).and_then(|p| created_of(p));
            let expired = next_created.is_some_and(|n| n < cutoff);
            let over = total > self.config.retention_bytes;
            if !(expired || over) {
                break;
            }
            match std::fs::remove_file(path) {
                Ok(()) => total = total.saturating_sub(sizes.get(i).copied().unwrap_or(0)),
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "serving log: cannot delete an old file");
                    break;
                }
            }
        }
    }
}
