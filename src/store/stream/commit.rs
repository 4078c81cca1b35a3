//! The committer: makes pushes durable with group commit, in a two-stage pipeline.
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
//! Thread-safety contract: the writer alone writes stream column families, so its
//! read-decide-write is not raced by another writer. A failed write or sync poisons the
//! committer: every later push fails until the store is reopened (the WAL's state after
//! a failed fsync is unknown).

use std::borrow::Cow;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use rocksdb::{DB, WriteBatch, WriteOptions};

use super::event::{Prepared, PushError, PushOutcome};
use super::{EVENTS_CF, stream_cf_name};
use crate::codec::stream::Tile;
use crate::codec::value::decode_event_time;
use crate::types::{TimestampMs, now_ms};

/// Maps of one commit, hashed with aHash (keys are producer-chosen, but a commit's maps
/// live for one batch and are bounded by it; aHash's random keys suffice).
type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A group commit stops taking queued jobs once it holds this many values: enough to
/// share one fsync among hundreds of pushes, few enough that one group holds the writer
/// for tens of milliseconds at most (the writer applies about 250,000 values/s here
/// with the WAL sync off the path, see README "Streaming pushes").
pub const MAX_GROUP_VALUES: usize = 20_000;

/// Called after each durable commit with, per group, the event times of the values
/// that became readable and the time they did.
pub type CommitObserver = Arc<dyn Fn(&str, &[TimestampMs], TimestampMs) + Send + Sync>;

struct Job {
    events: Vec<Prepared>,
    reply: Sender<Result<PushOutcome, PushError>>,
}

/// State shared between producers, the committer thread and the metrics.
#[derive(Default)]
pub(crate) struct Shared {
    poisoned: Mutex<Option<String>>,
    /// Newest event time written per group since open.
    pub newest: Mutex<std::collections::HashMap<String, TimestampMs>>,
    pub observer: Mutex<Option<CommitObserver>>,
}

/// Jobs written (readable) and waiting for the WAL sync.
struct Written {
    jobs: Vec<Job>,
    outcomes: Vec<PushOutcome>,
}

/// Handle of the committer threads; dropping it drains the queue and joins them.
pub(crate) struct Committer {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    pub shared: Arc<Shared>,
}

impl Committer {
    /// Starts the thread writing to `db`.
    pub fn start(db: Arc<DB>) -> std::io::Result<Self> {
        let (tx, rx) = channel::unbounded();
        let (written_tx, written_rx) = channel::unbounded();
        let shared = Arc::new(Shared::default());
        let (writer_db, writer_shared) = (db.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("featstore-commit".into())
            .spawn(move || run_writer(&writer_db, &rx, &written_tx, &writer_shared))?;
        let syncer_shared = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("featstore-sync".into())
            .spawn(move || run_syncer(&db, &written_rx, &syncer_shared))?;
        Ok(Committer {
            tx: Some(tx),
            threads: vec![writer, syncer],
            shared,
        })
    }

    /// Queues `events` and waits until they are durable (or refused).
    pub fn submit(&self, events: Vec<Prepared>) -> Result<PushOutcome, PushError> {
        let poisoned = self.shared.poisoned.lock().clone();
        if let Some(reason) = poisoned {
            return Err(PushError::Poisoned(reason));
        }
        let (reply, answer) = channel::bounded(1);
        let stopped = || PushError::Storage("the stream writer has stopped".into());
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

fn poison(shared: &Shared, reason: &str) {
    tracing::error!(error = %reason, "stream write failed; refusing further pushes");
    let mut poisoned = shared.poisoned.lock();
    if poisoned.is_none() {
        *poisoned = Some(reason.to_owned());
    }
}

fn fail(jobs: Vec<Job>, e: &PushError) {
    for job in jobs {
        // A producer that gave up waiting is no error of ours.
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// Stage 1: group, decide, write (readable, not yet durable).
fn run_writer(db: &DB, rx: &Receiver<Job>, written: &Sender<Written>, shared: &Shared) {
    while let Ok(first) = rx.recv() {
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
        let poisoned = shared.poisoned.lock().clone();
        if let Some(reason) = poisoned {
            fail(jobs, &PushError::Poisoned(reason));
            continue;
        }
        match commit(db, &jobs, shared) {
            Ok(outcomes) => {
                if let Err(channel::SendError(w)) = written.send(Written { jobs, outcomes }) {
                    fail(
                        w.jobs,
                        &PushError::Storage("the WAL syncer has stopped".into()),
                    );
                }
            }
            Err(e) => {
                if let PushError::Storage(reason) = &e {
                    poison(shared, reason);
                }
                fail(jobs, &e);
            }
        }
    }
}

/// Stage 2: one WAL sync for every batch written meanwhile, then the acknowledgements.
fn run_syncer(db: &DB, rx: &Receiver<Written>, shared: &Shared) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let poisoned = shared.poisoned.lock().clone();
        let synced = match poisoned {
            Some(reason) => Err(PushError::Poisoned(reason)),
            None => db.flush_wal(true).map_err(|e| {
                let reason = format!("WAL sync failed: {e}");
                poison(shared, &reason);
                PushError::Storage(reason)
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
    PushError::Storage(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> PushError {
    PushError::Storage(format!("corrupt stored {what}: {e}"))
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

fn commit(db: &DB, jobs: &[Job], shared: &Shared) -> Result<Vec<PushOutcome>, PushError> {
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
            .ok_or_else(|| PushError::Storage(format!("column family {name} is missing")))?;
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
        names.insert(group.clone(), name);
    }
    let events_cf = db
        .cf_handle(EVENTS_CF)
        .ok_or_else(|| PushError::Storage(format!("column family {EVENTS_CF} is missing")))?;
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
    for (group, work) in &groups {
        let Some(cf) = names.get(group).and_then(|n| db.cf_handle(n)) else {
            continue;
        };
        let mut values: Vec<(&[u8], &[u8])> = work
            .values
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .filter_map(|(key, slot)| slot.current.as_ref().map(|(_, bytes)| (*key, &**bytes)))
            .collect();
        values.sort_unstable();
        for (key, bytes) in values {
            batch.put_cf(&cf, key, bytes);
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
        db.write_opt(batch, &WriteOptions::default())
            .map_err(storage)?;
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
