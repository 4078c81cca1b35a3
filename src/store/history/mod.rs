//! The history store: every value of a group that was ever servable, from every batch
//! version loaded and every push, with its event time and the time featstore learned
//! it, kept in one RocksDB column family per group (`history.{group}`, named in
//! [`super::keyspace`]; bytes in `featstore_format::codec::history` and
//! storage-format.md, "History column families").
//!
//! It owns the history families, the history's `meta` keys (the versions recorded and
//! the activations), the shared [`HistoryTable`] that readers and the compaction filter
//! see, and [`erase_entity`]. What it answers is in [`read`]: what was served at a time
//! (as-of reads) and what a point-in-time training row sees.
//!
//! What is recorded:
//! * **Batch versions, changes only.** A load merge-joins its sorted stream with the
//!   group's previous recorded version in key order ([`feed::HistoryFeed`], one more
//!   consumer of the load's sorted stream) and records, in one row record per changed
//!   entity, only the values that differ (in value or event time) from the previous
//!   version, plus an absence where a value of the previous version is missing from
//!   the new one ([`rows`]; format-1 stores hold one record per value, still read). The
//!   value of version `v` for a key is therefore its newest batch record with a recorded
//!   version `<= v`. The records are written to SST files during the build and ingested
//!   when the version is committed, after which the version's `history/version` key
//!   names it recorded; records of a version without that key (a load that failed
//!   after ingesting them) are ignored by every reader.
//! * **Activations**: each time a version becomes the one served (a load, an
//!   activation, a rollback), with its time, written under the admin lock before the
//!   new read view is published. The version served at `T` is the last activation at
//!   or before `T`.
//! * **Pushes**: every value that became a group's latest streamed value, written in
//!   the same `WriteBatch` as the stream family's value (atomic with it), keyed by event
//!   time and write time (the time just before the write became readable).
//!
//! Invariants:
//! * Loads of one group are serialized (the store's per-group load lock), so a
//!   version's changes are always relative to the newest recorded version.
//! * Version numbers are never reused (the manifest's `next_version`), so a stale
//!   record of a failed load can never be mistaken for another version's.
//! * Retention is enforced by a compaction filter ([`rows`], which judges row records
//!   and hands the rest to [`retention`]), never by a scan on a read path: a record is
//!   dropped only when no question about a time within the group's retention can need
//!   it.
//!
//! Deletion: [`erase_entity`] removes every history record of one entity of one group
//! with one range deletion. The per-entity deletion (`super::erase`) writes the same
//! range, for each group of the entity's type and each composite id containing it, in
//! its one batch with every other family's deletions.
//!
//! Thread-safety: the table is immutable and published through an `ArcSwap`; writers
//! change it under the store's admin lock, readers and compactions load it once.

pub mod feed;
pub mod read;
pub mod retention;
pub mod rows;
pub mod servable;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rocksdb::DB;
use serde::{Deserialize, Serialize};

use super::keyspace::{self, history_cf_name};
use super::{StoreError, meta};
use crate::codec::history::prefix_successor;
use crate::types::TimestampMs;

/// The history record format this build writes: 2, batch versions as row records
/// (format 1 wrote one record per value; both are read). Written after each version's
/// commit time in its `history/version` key, which a build knowing only format 1
/// refuses.
pub const RECORD_FORMAT: u8 = 2;

/// Retention of a group's history when none is configured: 90 days.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// History settings (`[history]` in the server's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Whether loads and pushes record history.
    pub enabled: bool,
    /// Days of history kept when a group has no entry in `retention_days_by_group`.
    pub retention_days: u32,
    /// Days of history kept, per group.
    pub retention_days_by_group: BTreeMap<String, u32>,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            retention_days: DEFAULT_RETENTION_DAYS,
            retention_days_by_group: BTreeMap::new(),
        }
    }
}

impl HistoryConfig {
    /// The retention of `group`, in ms.
    pub fn retention_ms(&self, group: &str) -> i64 {
        let days = self
            .retention_days_by_group
            .get(group)
            .copied()
            .unwrap_or(self.retention_days);
        i64::from(days).saturating_mul(DAY_MS)
    }
}

/// One activation: `version` became the one served at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// When (ms since the epoch).
    pub at_ms: TimestampMs,
    /// The version.
    pub version: u64,
}

/// What the history knows of one group's batch versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupHistory {
    /// Versions recorded, with the time their changes were committed.
    pub versions: BTreeMap<u64, TimestampMs>,
    /// Activations, in time order.
    pub activations: Vec<Activation>,
    /// Retention (ms).
    pub retention_ms: i64,
}

impl GroupHistory {
    /// The version served at `at` (the last activation at or before it).
    pub fn active_at(&self, at: TimestampMs) -> Option<u64> {
        let i = self.activations.partition_point(|a| a.at_ms <= at);
        i.checked_sub(1)
            .and_then(|i| self.activations.get(i))
            .map(|a| a.version)
    }

    /// Whether `version`'s records count (its changes were committed).
    pub fn is_recorded(&self, version: u64) -> bool {
        self.versions.contains_key(&version)
    }

    /// The newest recorded version.
    pub fn newest(&self) -> Option<u64> {
        self.versions.keys().next_back().copied()
    }

    /// Every version ever served with the time it was first served, newest version
    /// first.
    pub fn first_activations(&self) -> Vec<(u64, TimestampMs)> {
        let mut first: BTreeMap<u64, TimestampMs> = BTreeMap::new();
        for a in &self.activations {
            first.entry(a.version).or_insert(a.at_ms);
        }
        first.into_iter().rev().collect()
    }

    /// The smallest version served at any time at or after `horizon`: batch records of
    /// older versions shadowed by a record of a version up to it are never needed again.
    pub fn floor_version(&self, horizon: TimestampMs) -> Option<u64> {
        let at = self.active_at(horizon);
        self.activations
            .iter()
            .filter(|a| a.at_ms > horizon)
            .map(|a| a.version)
            .chain(at)
            .min()
    }
}

/// What readers and compactions see of every group's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryTable {
    /// Per group.
    pub groups: HashMap<String, GroupHistory>,
    /// Whether the table was read from `meta` (until then compactions drop nothing).
    pub loaded: bool,
}

impl HistoryTable {
    /// The history of `group`, if any was recorded.
    pub fn group(&self, group: &str) -> Option<&GroupHistory> {
        self.groups.get(group)
    }
}

/// The shared, swappable table.
pub type SharedHistory = Arc<ArcSwap<HistoryTable>>;

/// Reads every group's history facts from `meta`.
pub fn read_table(db: &DB, config: &HistoryConfig) -> Result<HistoryTable, StoreError> {
    let mut groups: HashMap<String, GroupHistory> = HashMap::new();
    for (rest, value) in meta::read_prefix(db, keyspace::HISTORY_VERSION_PREFIX)? {
        let bad = |reason: &str| StoreError::CorruptMeta {
            key: format!("{}{rest}", keyspace::HISTORY_VERSION_PREFIX),
            reason: reason.to_owned(),
        };
        let (group, version) = rest.rsplit_once('/').ok_or_else(|| bad("no version"))?;
        let version: u64 = version.parse().map_err(|_| bad("version not a number"))?;
        // `at_ms i64 LE`, then (record format 2 on) the format byte.
        let (at, format) = value.split_at(value.len().min(8));
        let at: [u8; 8] = at
            .try_into()
            .map_err(|_| bad("value is shorter than 8 bytes"))?;
        if !matches!(format, [] | [RECORD_FORMAT]) {
            return Err(bad("unknown history record format"));
        }
        groups
            .entry(group.to_owned())
            .or_default()
            .versions
            .insert(version, i64::from_le_bytes(at));
    }
    for (group, value) in meta::read_prefix(db, keyspace::HISTORY_ACTIVATION_PREFIX)? {
        let activations: Vec<Activation> =
            serde_json::from_slice(&value).map_err(|source| StoreError::MetaDecode {
                key: format!("{}{group}", keyspace::HISTORY_ACTIVATION_PREFIX),
                source,
            })?;
        groups.entry(group).or_default().activations = activations;
    }
    for (name, g) in &mut groups {
        g.retention_ms = config.retention_ms(name);
    }
    Ok(HistoryTable {
        groups,
        loaded: true,
    })
}

/// Publishes `table` with `change` applied to `group`'s entry.
fn update(
    shared: &SharedHistory,
    config: &HistoryConfig,
    group: &str,
    change: impl Fn(&mut GroupHistory),
) {
    shared.rcu(|table| {
        let mut next = (**table).clone();
        let entry = next
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| GroupHistory {
                retention_ms: config.retention_ms(group),
                ..GroupHistory::default()
            });
        change(entry);
        next
    });
}

/// Records that `version` of `group` became the one served at `at_ms` (persisted,
/// then published). Called under the admin lock, before the read view naming the
/// version is published.
pub fn record_activation(
    db: &DB,
    shared: &SharedHistory,
    config: &HistoryConfig,
    group: &str,
    version: u64,
    at_ms: TimestampMs,
) -> Result<(), StoreError> {
    let table = shared.load();
    let mut list = table
        .group(group)
        .map(|g| g.activations.clone())
        .unwrap_or_default();
    // Effective from the next millisecond: every read that took its time before this
    // call has a time before it, and the view naming the version is published only once
    // the clock reached it ([`wait_until`]), so every read after has a time at or after
    // it. Time never goes backwards within a group's list (a clock step back is
    // clamped), so the list stays sorted for `active_at`.
    let at_ms = at_ms.saturating_add(1);
    let at_ms = list.last().map_or(at_ms, |last| last.at_ms.max(at_ms));
    list.push(Activation { at_ms, version });
    let bytes = serde_json::to_vec(&list)
        .map_err(|e| StoreError::Internal(format!("encoding activations: {e}")))?;
    meta::put(db, &keyspace::history_activation_key(group), &bytes)?;
    update(shared, config, group, |g| g.activations = list.clone());
    wait_until(at_ms);
    Ok(())
}

/// Returns once the clock reads `at_ms` or later (at most about a millisecond after a
/// time taken with `now_ms() + 1`): what the history records as happening at `at_ms`
/// becomes visible only then, so reads judged before `at_ms` never see it and reads
/// judged at or after it do (for reads that do not overlap the change).
pub fn wait_until(at_ms: TimestampMs) {
    let mut spins = 0u32;
    while crate::types::now_ms() < at_ms && spins < 100_000 {
        std::thread::sleep(std::time::Duration::from_micros(50));
        spins += 1;
    }
}

/// Records that `version`'s changes were committed to `group`'s history at `at_ms`.
pub fn record_version(
    db: &DB,
    shared: &SharedHistory,
    config: &HistoryConfig,
    group: &str,
    version: u64,
    at_ms: TimestampMs,
) -> Result<(), StoreError> {
    let mut value = at_ms.to_le_bytes().to_vec();
    value.push(RECORD_FORMAT);
    meta::put(db, &keyspace::history_version_key(group, version), &value)?;
    update(shared, config, group, |g| {
        g.versions.insert(version, at_ms);
    });
    Ok(())
}

/// Removes every history record of entity `entity_id` of `group` (batch and stream,
/// every version): one range deletion over the entity's key prefix, which also hides
/// them from every reader at once. The per-entity deletion feature calls this for each
/// group of the entity's type. A group without history deletes nothing.
pub fn erase_entity(db: &DB, group: &str, entity_id: &[u8]) -> Result<(), StoreError> {
    let Some(cf) = db.cf_handle(&history_cf_name(group)) else {
        return Ok(());
    };
    let entity =
        crate::codec::EntityKey::new(entity_id).map_err(|source| StoreError::CorruptValue {
            what: format!("entity id to erase from {group}'s history"),
            source,
        })?;
    let start = entity.as_bytes();
    let end = prefix_successor(start)
        .ok_or_else(|| StoreError::Internal("an entity key is never all 0xff".into()))?;
    db.delete_range_cf(&cf, start, &end)?;
    Ok(())
}

/// Creates `group`'s history column family if it does not exist.
pub fn ensure_family(
    db: &DB,
    options: &super::options::EngineOptions,
    group: &str,
) -> Result<(), StoreError> {
    let name = history_cf_name(group);
    if db.cf_handle(&name).is_none() {
        db.create_cf(&name, &options.history_cf(group))?;
    }
    Ok(())
}
