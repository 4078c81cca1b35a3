//! The committer: one thread that makes pushes durable with group commit.
//!
//! Producers validate their events, queue them on a crossbeam channel and block on a
//! reply. The committer takes every job queued (up to [`MAX_GROUP_VALUES`] values),
//! reads the stored state of every key they touch with one batched MultiGet per column
//! family, applies the event-time rule in queue order, writes one `WriteBatch` with a
//! synced WAL, and only then answers every producer. Concurrent pushes therefore share
//! one fsync, and a push is acknowledged only once durable.
//!
//! Event-time rule (per entity and feature): a value replaces the stored one only if
//! `(event time, encoded value)` is greater, bytewise on the value. The result is the
//! maximum over every value ever pushed, whatever the arrival order, and a replay
//! changes nothing.
//!
//! Thread-safety contract: the committer alone writes stream column families, so its
//! read-decide-write is not raced by another writer. A failed write poisons it: every
//! later push fails until the store is reopened (the WAL's state after a failed fsync is
//! unknown).

use std::collections::HashMap;
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

/// A group commit stops taking queued jobs once it holds this many values.
pub const MAX_GROUP_VALUES: usize = 200_000;

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
    pub newest: Mutex<HashMap<String, TimestampMs>>,
    pub observer: Mutex<Option<CommitObserver>>,
}

/// Handle of the committer thread; dropping it drains the queue and joins the thread.
pub(crate) struct Committer {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    pub shared: Arc<Shared>,
}

impl Committer {
    /// Starts the thread writing to `db`.
    pub fn start(db: Arc<DB>) -> std::io::Result<Self> {
        let (tx, rx) = channel::unbounded();
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("featstore-commit".into())
            .spawn(move || run(&db, &rx, &thread_shared))?;
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }

    /// Queues `events` and waits until they are durable (or refused).
    pub fn submit(&self, events: Vec<Prepared>) -> Result<PushOutcome, PushError> {
        if let Some(reason) = self.shared.poisoned.lock().clone() {
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
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("stream committer thread panicked");
        }
    }
}

fn run(db: &DB, rx: &Receiver<Job>, shared: &Shared) {
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
        let results = match poisoned {
            Some(reason) => Err(PushError::Poisoned(reason)),
            None => commit(db, &jobs, shared),
        };
        match results {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    // A producer that gave up waiting is no error of ours.
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                if let PushError::Storage(reason) = &e {
                    tracing::error!(error = %reason, "stream write failed; refusing further pushes");
                    *shared.poisoned.lock() = Some(reason.clone());
                }
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A latest value: its event time and encoded bytes.
type Latest = (TimestampMs, Vec<u8>);

/// The stored latest value of one key during a commit.
struct ValueSlot {
    current: Option<Latest>,
    dirty: bool,
}

struct TileSlot {
    tile: Tile,
    dirty: bool,
}

/// Keys one commit touches in one group's column family.
#[derive(Default)]
struct GroupWork {
    values: HashMap<Vec<u8>, ValueSlot>,
    tiles: HashMap<Vec<u8>, TileSlot>,
    /// Event times of the values that became the latest value.
    applied: Vec<TimestampMs>,
}

fn storage(e: rocksdb::Error) -> PushError {
    PushError::Storage(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> PushError {
    PushError::Storage(format!("corrupt stored {what}: {e}"))
}

/// Reads the stored values of `keys` (sorted) in `cf`.
fn multi_get(
    db: &DB,
    cf: &impl rocksdb::AsColumnFamilyRef,
    keys: &[&Vec<u8>],
) -> Result<Vec<Option<Vec<u8>>>, PushError> {
    db.batched_multi_get_cf(cf, keys.iter(), true)
        .into_iter()
        .map(|r| r.map(|v| v.map(|s| s.to_vec())).map_err(storage))
        .collect()
}

fn commit(db: &DB, jobs: &[Job], shared: &Shared) -> Result<Vec<PushOutcome>, PushError> {
    // 1. Every key touched, per group.
    let mut groups: HashMap<Arc<str>, GroupWork> = HashMap::new();
    let mut markers: HashMap<Vec<u8>, bool> = HashMap::new();
    for event in jobs.iter().flat_map(|j| &j.events) {
        for v in &event.values {
            groups
                .entry(v.group.clone())
                .or_default()
                .values
                .entry(v.key.clone())
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
                .entry(t.key.clone())
                .or_insert(TileSlot {
                    tile: Tile::default(),
                    dirty: false,
                });
        }
        if let Some(marker) = &event.marker {
            markers.insert(marker.clone(), false);
        }
    }

    // 2. Their stored state: one batched MultiGet per column family and key kind.
    let mut names: HashMap<Arc<str>, String> = HashMap::new();
    for (group, work) in &mut groups {
        let name = stream_cf_name(group);
        let cf = db
            .cf_handle(&name)
            .ok_or_else(|| PushError::Storage(format!("column family {name} is missing")))?;
        let mut keys: Vec<&Vec<u8>> = work.values.keys().collect();
        keys.sort_unstable();
        let found = multi_get(db, &cf, &keys)?;
        let loaded: Vec<(Vec<u8>, Latest)> = keys
            .into_iter()
            .zip(found)
            .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
            .map(|(k, v)| {
                decode_event_time(&v)
                    .map(|t| (k, (t, v)))
                    .map_err(|e| corrupt("value", e))
            })
            .collect::<Result<_, _>>()?;
        for (key, current) in loaded {
            if let Some(slot) = work.values.get_mut(&key) {
                slot.current = Some(current);
            }
        }
        let mut keys: Vec<&Vec<u8>> = work.tiles.keys().collect();
        keys.sort_unstable();
        let found = multi_get(db, &cf, &keys)?;
        let loaded: Vec<(Vec<u8>, Tile)> = keys
            .into_iter()
            .zip(found)
            .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
            .map(|(k, v)| {
                Tile::decode(&v)
                    .map(|t| (k, t))
                    .map_err(|e| corrupt("tile", e))
            })
            .collect::<Result<_, _>>()?;
        for (key, tile) in loaded {
            if let Some(slot) = work.tiles.get_mut(&key) {
                slot.tile = tile;
            }
        }
        names.insert(group.clone(), name);
    }
    let events_cf = db
        .cf_handle(EVENTS_CF)
        .ok_or_else(|| PushError::Storage(format!("column family {EVENTS_CF} is missing")))?;
    if !markers.is_empty() {
        let mut keys: Vec<&Vec<u8>> = markers.keys().collect();
        keys.sort_unstable();
        let found = multi_get(db, &events_cf, &keys)?;
        let seen: Vec<Vec<u8>> = keys
            .into_iter()
            .zip(found)
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in seen {
            markers.insert(key, true);
        }
    }

    // 3. The event-time rule, in queue order.
    let mut batch = WriteBatch::default();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut outcome = PushOutcome::default();
        for event in &job.events {
            if let Some(marker) = &event.marker {
                match markers.get_mut(marker) {
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
                let Some(slot) = work.values.get_mut(&v.key) else {
                    continue;
                };
                let newer = match &slot.current {
                    None => true,
                    Some((t, bytes)) => (v.event_time, &v.encoded) > (*t, bytes),
                };
                if newer {
                    slot.current = Some((v.event_time, v.encoded.clone()));
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
                    .and_then(|w| w.tiles.get_mut(&t.key))
                {
                    slot.tile.add(t.value, t.event_time);
                    slot.dirty = true;
                    outcome.aggregate_updates += 1;
                }
            }
        }
        outcomes.push(outcome);
    }

    // 4. One synced write.
    for (group, work) in &groups {
        let Some(cf) = names.get(group).and_then(|n| db.cf_handle(n)) else {
            continue;
        };
        for (key, slot) in &work.values {
            if let (true, Some((_, bytes))) = (slot.dirty, &slot.current) {
                batch.put_cf(&cf, key, bytes);
            }
        }
        for (key, slot) in &work.tiles {
            if slot.dirty {
                batch.put_cf(&cf, key, slot.tile.encode());
            }
        }
    }
    if !batch.is_empty() {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts).map_err(storage)?;
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
