//! Per-entity deletion (a privacy request): every stored value of one entity, and of
//! every composite entity that has it as a component (`u42|p7` of a `user_product`
//! type when `user` `u42` is deleted), is removed from the batch versions (active and
//! kept for rollback), the streamed latest values and aggregate tiles, the event-id
//! markers, the history store, the hot segments, the access counts and the serving log.
//!
//! Owns [`EntityErasure`] (the request), [`EntityMatch`] (which entity ids it covers),
//! [`ErasureReport`], the [`Eraser`] hook through which holders of copies outside the
//! store (the running serving log) take part, and the procedure itself
//! ([`FeatureStore::delete_entity`] delegates to `run`).
//!
//! How (storage-format.md, "Per-entity deletion"):
//! 1. The store's erase lock (one deletion at a time), then the load lock of every
//!    group holding the entity's type or a composite containing it, in name order: no
//!    load of those groups runs, so no load's history feed or segment reads a version
//!    half erased, and no new version is built from data read before the deletion.
//! 2. The stream committer is paused between two group commits for the rest of the
//!    key work, so a push is wholly before the deletion (and deleted) or wholly after
//!    it (a new value, the owner's business): never half of an entity's aggregates.
//! 3. The keys to delete are found: for the entity's own type, one range per column
//!    family and version (`[prefix ‖ entity key, prefix ‖ successor)`), without a scan;
//!    for a composite type, a scan of the group's keys (one seek per entity) for ids
//!    whose component at the type's position is the entity.
//! 4. Hot segments of versions that hold a deleted entity are detached (the manifest
//!    without them is synced first, their files unlinked): from then on those versions
//!    are read from RocksDB, and a crash leaves no segment holding the entity.
//! 5. Every deletion goes into one `WriteBatch` written with a synced WAL: atomic (a
//!    reader sees the entity whole or not at all in RocksDB) and durable when it
//!    returns.
//! 6. Access counts forget the deleted ids (and are persisted); the detached segments
//!    are rebuilt from the versions' data and attached again.
//! 7. The serving log: each registered [`Eraser`] (the running log's writer) rewrites
//!    its files; a serving-log directory no eraser covers is rewritten directly.
//! 8. With `compact` (the default), every column family's memtable is flushed (so the
//!    WAL files that held the entity become obsolete and are deleted) and the key range
//!    spanning the deleted keys of each touched family is compacted with the bottommost
//!    level forced: when this returns, no SST file holds the deleted values.
//!
//! Invariants:
//! * Nothing the request covers is readable once `run` returns, by any read path
//!   (live, as-of, point-in-time, exports), and a SIGKILL after it returned loses none
//!   of the deletion.
//! * Entities that do not match keep every value, byte for byte.
//! * A deletion never changes what a version is: version numbers, the manifest's
//!   activation order and load records stay.
//!
//! Not covered, by design: files written outside the data directory by exports and
//! training sets (their owner's), and the audit log, which records the deletion with
//! the id asked for. A later load or push containing the entity stores it again.
//!
//! Thread-safety: `run` takes the locks above; reads never wait for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use rocksdb::{DB, ReadOptions, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::keyspace::{EVENTS_CF, history_cf_name, stream_cf_name};
use super::{FeatureStore, StoreError};
use crate::codec::EntityKey;
use crate::codec::history::prefix_successor;
use crate::codec::key::{MAX_ENTITY_ID_LEN, entity_prefix_len};
use crate::registry::Registry;
use crate::registry::entity::split_composite_id;

/// A request to delete one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityErasure {
    /// The entity's type (`user`).
    pub entity_type: String,
    /// Its id (`u42`).
    pub entity_id: String,
    /// Compact the deleted key ranges before returning, so that no file holds the
    /// values any more (step 8 of the module docs). Without it the values are gone from
    /// every read at once and from the files at RocksDB's next compaction of them.
    pub compact: bool,
}

/// Which entity ids a deletion covers: the entity itself, and each composite id whose
/// component at the composite type's position of the entity's type is the entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityMatch {
    /// The entity's type.
    pub entity_type: String,
    /// The entity's id.
    pub entity_id: String,
    /// Composite entity types with `entity_type` as a component, and its position.
    pub composites: Vec<(String, usize)>,
}

impl EntityMatch {
    /// The match of `entity_id` of `entity_type` under `registry`'s composite types.
    pub fn of(registry: &Registry, entity_type: &str, entity_id: &str) -> Self {
        let composites = registry
            .catalog()
            .entity_types()
            .iter()
            .filter_map(|spec| {
                let at = spec.components.iter().position(|c| c == entity_type)?;
                Some((spec.name.clone(), at))
            })
            .collect();
        EntityMatch {
            entity_type: entity_type.to_owned(),
            entity_id: entity_id.to_owned(),
            composites,
        }
    }

    /// The position of the entity's type in composite type `entity_type`.
    pub fn position(&self, entity_type: &str) -> Option<usize> {
        self.composites
            .iter()
            .find(|(name, _)| name == entity_type)
            .map(|(_, at)| *at)
    }

    /// Whether `entity_type` is the entity's type or a composite containing it.
    pub fn covers_type(&self, entity_type: &str) -> bool {
        entity_type == self.entity_type || self.position(entity_type).is_some()
    }

    /// Whether entity `entity_id` of `entity_type` is covered.
    pub fn matches(&self, entity_type: &str, entity_id: &str) -> bool {
        if entity_type == self.entity_type {
            return entity_id == self.entity_id;
        }
        self.position(entity_type)
            .is_some_and(|at| component_is(entity_id, at, &self.entity_id))
    }
}

/// Whether component `at` of composite id `id` is `wanted` (a malformed id matches
/// nothing).
fn component_is(id: &str, at: usize, wanted: &str) -> bool {
    // Most ids hold no escape: compare the raw part first.
    match id
        .split(crate::registry::entity::COMPONENT_SEPARATOR)
        .nth(at)
    {
        Some(part) if !part.contains('%') => part == wanted,
        Some(_) => split_composite_id(id)
            .and_then(|parts| parts.into_iter().nth(at))
            .is_some_and(|c| c == wanted),
        None => false,
    }
}

/// A deletion failed or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EraseError {
    /// No group and no composite entity type uses the entity type.
    #[error("unknown entity type `{0}`: no feature group or composite entity type uses it")]
    UnknownEntityType(String),
    /// The id cannot be an entity id.
    #[error("invalid entity id: {0}")]
    InvalidEntityId(String),
    /// A holder of copies outside the store (the serving log) could not erase them;
    /// the store's own data was already deleted. Run the deletion again.
    #[error("erasing the entity from {holder} failed: {reason}")]
    Holder {
        /// Which holder.
        holder: String,
        /// Its error.
        reason: String,
    },
}

/// What one holder outside the store removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderReport {
    /// The holder (`serving_log`).
    pub holder: String,
    /// Files rewritten without the entity's records.
    pub files_rewritten: u64,
    /// Records removed.
    pub records_removed: u64,
}

/// A holder of copies of served data outside the store's families (the running
/// serving log), called by every deletion after the store's own data is gone.
pub trait Eraser: Send + Sync {
    /// The directory whose files it rewrites (so the deletion does not rewrite them a
    /// second time, behind the holder's back).
    fn dir(&self) -> PathBuf;
    /// Removes every record covered by `target`, durably, before returning.
    fn erase(&self, target: &EntityMatch) -> Result<HolderReport, String>;
}

/// Handle of a registered eraser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EraserId(u64);

/// The registered erasers (copy on write; a deletion loads the list once).
#[derive(Default)]
pub(crate) struct Erasers {
    list: ArcSwap<Vec<(EraserId, Arc<dyn Eraser>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Erasers {
    pub(crate) fn add(&self, eraser: Arc<dyn Eraser>) -> EraserId {
        let id = EraserId(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.list.rcu(|list| {
            let mut next = (**list).clone();
            next.push((id, eraser.clone()));
            next
        });
        id
    }

    pub(crate) fn remove(&self, id: EraserId) {
        self.list.rcu(|list| {
            let mut next = (**list).clone();
            next.retain(|(registered, _)| *registered != id);
            next
        });
    }
}

/// What one group lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupErasure {
    /// The group.
    pub group: String,
    /// Its entity type.
    pub entity_type: String,
    /// Distinct entity ids removed (1 for the entity's own type; the composite ids
    /// found for a composite type).
    pub entities: u64,
    /// Batch versions that held one of them.
    pub versions: u64,
    /// Whether the stream family held one (latest values, tiles).
    pub streamed: bool,
    /// Whether the history held one.
    pub history: bool,
}

/// What a deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// The entity's type.
    pub entity_type: String,
    /// The entity's id.
    pub entity_id: String,
    /// Per group of the type or of a composite type containing it.
    pub groups: Vec<GroupErasure>,
    /// Event-id markers removed.
    pub event_markers: u64,
    /// Hot segments rebuilt without the entity (or removed, when nothing was left).
    pub segments_rebuilt: u64,
    /// Holders outside the store (the serving log).
    pub holders: Vec<HolderReport>,
    /// Whether the touched key ranges were compacted before the answer.
    pub compacted: bool,
    /// Time the whole deletion took.
    pub elapsed_ms: u64,
}

/// Deletions of one column family: the ranges, and the span to compact.
#[derive(Default)]
struct FamilyDeletes {
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FamilyDeletes {
    fn span(&self) -> Option<(&[u8], &[u8])> {
        let from = self.ranges.iter().map(|(f, _)| f.as_slice()).min()?;
        let to = self.ranges.iter().map(|(_, t)| t.as_slice()).max()?;
        Some((from, to))
    }
}

/// The range of every key that starts with `prefix ‖ entity key`.
fn entity_range(prefix: &[u8], entity_key: &[u8]) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let from = [prefix, entity_key].concat();
    let to = prefix_successor(&from)
        .ok_or_else(|| StoreError::Internal("an entity key is never all 0xff".into()))?;
    Ok((from, to))
}

/// Whether `db`'s family `cf` holds a key in `[from, to)`.
fn holds_any(
    db: &DB,
    cf: &impl rocksdb::AsColumnFamilyRef,
    (from, to): &(Vec<u8>, Vec<u8>),
) -> Result<bool, StoreError> {
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    opts.set_iterate_upper_bound(to.clone());
    let mut iter = db.raw_iterator_cf_opt(cf, opts);
    iter.seek(from);
    let found = iter.valid();
    iter.status()?;
    Ok(found)
}

/// The entity keys under `prefix` in `cf` whose id `keep` accepts: one seek per entity
/// (an entity's keys are contiguous), skipping `prefix ‖ 00 00` (a row schema record).
fn scan_entities(
    db: &DB,
    cf: &impl rocksdb::AsColumnFamilyRef,
    prefix: &[u8],
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    if let Some(upper) = prefix_successor(prefix) {
        opts.set_iterate_upper_bound(upper);
    }
    let mut iter = db.raw_iterator_cf_opt(cf, opts);
    iter.seek(prefix);
    let mut found = Vec::new();
    while let Some(key) = iter.key() {
        let Some(rest) = key.strip_prefix(prefix) else {
            break;
        };
        let Some(len) = entity_prefix_len(rest) else {
            iter.next();
            continue;
        };
        let Some(entity_key) = rest.get(..len) else {
            break;
        };
        let entity_key = entity_key.to_vec();
        let id = entity_key.get(2..).unwrap_or_default();
        if !id.is_empty() && std::str::from_utf8(id).is_ok_and(keep) {
            found.push(entity_key.clone());
        }
        match prefix_successor(&[prefix, &entity_key].concat()) {
            Some(next) => iter.seek(next),
            None => break,
        }
    }
    iter.status()?;
    Ok(found)
}

/// Where one batch version keeps its keys: version, column family, key prefix.
type Location = (u64, String, Vec<u8>);

/// One group to erase from.
struct Target {
    group: String,
    entity_type: String,
    /// For a composite type, the position of the entity's type.
    position: Option<usize>,
}

/// The deletion; see the module docs.
pub(super) fn run(
    store: &FeatureStore,
    request: &EntityErasure,
) -> Result<ErasureReport, StoreError> {
    let started = Instant::now();
    let id = request.entity_id.as_str();
    if id.is_empty() || id.len() > MAX_ENTITY_ID_LEN {
        return Err(EraseError::InvalidEntityId(format!(
            "an entity id is 1..={MAX_ENTITY_ID_LEN} bytes, got {}",
            id.len()
        ))
        .into());
    }
    let registry = store.registry();
    let target = EntityMatch::of(&registry, &request.entity_type, id);
    let mut targets: Vec<Target> = registry
        .groups()
        .into_iter()
        .filter(|g| target.covers_type(&g.entity_type))
        .map(|g| Target {
            group: g.name.clone(),
            entity_type: g.entity_type.clone(),
            position: target.position(&g.entity_type),
        })
        .collect();
    targets.sort_by(|a, b| a.group.cmp(&b.group));
    if targets.is_empty()
        && target.composites.is_empty()
        && !registry.has_entity_type(&request.entity_type)
    {
        return Err(EraseError::UnknownEntityType(request.entity_type.clone()).into());
    }
    let own_key =
        EntityKey::new(id.as_bytes()).map_err(|e| EraseError::InvalidEntityId(e.to_string()))?;

    // Step 1: one deletion at a time, and no load of a covered group.
    let _one_at_a_time = store.erase_lock.lock();
    let load_locks: Vec<_> = targets.iter().map(|t| store.load_lock(&t.group)).collect();
    let _loads_held: Vec<_> = load_locks.iter().map(|l| l.lock()).collect();

    let db = &store.db;
    let mut report = ErasureReport {
        entity_type: request.entity_type.clone(),
        entity_id: id.to_owned(),
        ..ErasureReport::default()
    };
    let mut families: BTreeMap<String, FamilyDeletes> = BTreeMap::new();
    // Versions holding a deleted entity, to re-segment: (group, version).
    let mut holding: Vec<(String, u64)> = Vec::new();
    // Deleted ids per entity type (access counts).
    let mut deleted_ids: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();

    // Step 2: pushes wait until the key work is done.
    let paused = store.stream.pause();

    let locations: Vec<(String, Vec<Location>)> = {
        let state = store.admin.lock();
        targets
            .iter()
            .map(|t| {
                let versions = state
                    .versions
                    .group(&t.group)
                    .map(|gm| {
                        gm.versions
                            .iter()
                            .map(|v| {
                                let (family, prefix) = v.location();
                                (v.version, family.to_owned(), prefix.as_bytes().to_vec())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (t.group.clone(), versions)
            })
            .collect()
    };

    // Step 3: the keys.
    for (t, (_, versions)) in targets.iter().zip(&locations) {
        let wanted = &target.entity_id;
        let keep = |candidate: &str| match t.position {
            Some(at) => component_is(candidate, at, wanted),
            None => candidate == wanted,
        };
        // The entity keys of this group's type held by one (family, prefix).
        let keys_in = |family: &str, prefix: &[u8]| -> Result<Vec<Vec<u8>>, StoreError> {
            let Some(cf) = db.cf_handle(family) else {
                return Ok(Vec::new());
            };
            if t.position.is_none() {
                let range = entity_range(prefix, own_key.as_bytes())?;
                return Ok(if holds_any(db, &cf, &range)? {
                    vec![own_key.as_bytes().to_vec()]
                } else {
                    Vec::new()
                });
            }
            scan_entities(db, &cf, prefix, &keep)
        };
        let mut group_report = GroupErasure {
            group: t.group.clone(),
            entity_type: t.entity_type.clone(),
            ..GroupErasure::default()
        };
        let mut ids: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
        let mut add = |family: &str, prefix: &[u8], keys: &[Vec<u8>]| -> Result<(), StoreError> {
            let deletes = families.entry(family.to_owned()).or_default();
            for key in keys {
                deletes.ranges.push(entity_range(prefix, key)?);
                ids.insert(key.clone());
            }
            Ok(())
        };
        for (version, family, prefix) in versions {
            let keys = keys_in(family, prefix)?;
            if !keys.is_empty() {
                group_report.versions += 1;
                holding.push((t.group.clone(), *version));
            }
            add(family, prefix, &keys)?;
        }
        let stream = stream_cf_name(&t.group);
        let keys = keys_in(&stream, &[])?;
        group_report.streamed = !keys.is_empty();
        add(&stream, &[], &keys)?;
        let history = history_cf_name(&t.group);
        let keys = keys_in(&history, &[])?;
        group_report.history = !keys.is_empty();
        add(&history, &[], &keys)?;
        group_report.entities = ids.len() as u64;
        deleted_ids
            .entry(t.entity_type.clone())
            .or_default()
            .extend(
                ids.into_iter()
                    .filter_map(|k| k.get(2..).map(<[u8]>::to_vec)),
            );
        report.groups.push(group_report);
    }
    // Event-id markers: `T ‖ entity type ‖ entity key ‖ event id`.
    if let Some(cf) = db.cf_handle(EVENTS_CF) {
        let mut types: Vec<(String, Option<usize>)> = vec![(target.entity_type.clone(), None)];
        types.extend(
            target
                .composites
                .iter()
                .map(|(n, at)| (n.clone(), Some(*at))),
        );
        for (entity_type, position) in types {
            let Ok(len) = u8::try_from(entity_type.len()) else {
                continue;
            };
            let prefix = [&[len][..], entity_type.as_bytes()].concat();
            let keys = match position {
                None => {
                    let range = entity_range(&prefix, own_key.as_bytes())?;
                    if holds_any(db, &cf, &range)? {
                        vec![own_key.as_bytes().to_vec()]
                    } else {
                        Vec::new()
                    }
                }
                Some(at) => scan_entities(db, &cf, &prefix, &|c| {
                    component_is(c, at, &target.entity_id)
                })?,
            };
            report.event_markers += keys.len() as u64;
            let deletes = families.entry(EVENTS_CF.to_owned()).or_default();
            for key in &keys {
                deletes.ranges.push(entity_range(&prefix, key)?);
            }
        }
    }

    // Step 4: no segment that holds a deleted entity stays named or mapped.
    holding.sort();
    holding.dedup();
    let detached = {
        let mut state = store.admin.lock();
        let mut detached = Vec::new();
        for (group, version) in &holding {
            if store.checked_write(
                "detaching a hot segment for a deletion",
                state.versions.detach_segment(group, *version),
            )? {
                detached.push((group.clone(), *version));
            }
        }
        if !detached.is_empty() {
            store.publish(&state)?;
        }
        detached
    };

    // Step 5: one atomic, synced batch.
    let mut batch = WriteBatch::default();
    for (family, deletes) in &families {
        let Some(cf) = db.cf_handle(family) else {
            continue;
        };
        for (from, to) in &deletes.ranges {
            batch.delete_range_cf(&cf, from, to);
        }
    }
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    store.checked_write(
        "writing a deletion",
        db.write_opt(batch, &sync).map_err(StoreError::from),
    )?;
    drop(paused);

    // Step 6: access counts, then the segments again.
    for (entity_type, ids) in &deleted_ids {
        if !ids.is_empty() {
            store.access_counter(entity_type).forget(ids);
        }
    }
    // Older values of the rewritten access counts stay in `meta`'s files until those
    // are compacted: their key range is compacted with the rest (step 8).
    let mut rewritten: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    if deleted_ids.values().any(|ids| !ids.is_empty()) {
        store.persist_access_counts()?;
        let from = super::keyspace::ACCESS_PREFIX.as_bytes().to_vec();
        if let Some(to) = prefix_successor(&from) {
            rewritten.push((super::keyspace::META_CF.to_owned(), from, to));
        }
    }
    for (group, version) in &detached {
        store.resegment(group, *version)?;
        report.segments_rebuilt += 1;
    }

    // Step 7: the serving log.
    let erasers = store.erasers.list.load_full();
    let mut covered: Vec<PathBuf> = Vec::new();
    for (_, eraser) in erasers.iter() {
        covered.push(eraser.dir());
        let holder = eraser.erase(&target).map_err(|reason| EraseError::Holder {
            holder: "serving_log".into(),
            reason,
        })?;
        report.holders.push(holder);
    }
    let log_dir = store.config.serving_log.dir_for(&store.dir);
    if !covered.contains(&log_dir) {
        let holder = crate::servelog::erase::erase_dir(
            &log_dir,
            &target,
            store.config.serving_log.compression_level,
        )
        .map_err(|e| EraseError::Holder {
            holder: "serving_log".into(),
            reason: e.to_string(),
        })?;
        report.holders.push(holder);
    }

    // Step 8: the files.
    if request.compact {
        compact(db, &families, &rewritten)?;
        report.compacted = true;
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        entity_type = request.entity_type.as_str(),
        groups = report.groups.len(),
        segments_rebuilt = report.segments_rebuilt,
        compacted = report.compacted,
        elapsed_ms = report.elapsed_ms,
        "entity deleted"
    );
    Ok(report)
}

/// Flushes every column family (the WAL files holding the deleted values become
/// obsolete and RocksDB deletes them) and compacts the span of each family's deleted
/// ranges down to the bottommost level, which drops the values and their tombstones,
/// and the `rewritten` ranges (older values of the access counts in `meta`).
fn compact(
    db: &DB,
    families: &BTreeMap<String, FamilyDeletes>,
    rewritten: &[(String, Vec<u8>, Vec<u8>)],
) -> Result<(), StoreError> {
    let names = DB::list_cf(&rocksdb::Options::default(), db.path()).unwrap_or_default();
    let handles: Vec<_> = names.iter().filter_map(|n| db.cf_handle(n)).collect();
    let refs: Vec<_> = handles.iter().collect();
    let mut flush = rocksdb::FlushOptions::default();
    flush.set_wait(true);
    db.flush_cfs_opt(&refs, &flush)?;
    let mut opts = rocksdb::CompactOptions::default();
    opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
    for (family, deletes) in families {
        let (Some(cf), Some((from, to))) = (db.cf_handle(family), deletes.span()) else {
            continue;
        };
        db.compact_range_cf_opt(&cf, Some(from), Some(to), &opts);
    }
    for (family, from, to) in rewritten {
        if let Some(cf) = db.cf_handle(family) {
            db.compact_range_cf_opt(&cf, Some(from), Some(to), &opts);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> EntityMatch {
        EntityMatch {
            entity_type: "user".into(),
            entity_id: "u42".into(),
            composites: vec![("user_product".into(), 0), ("product_user".into(), 1)],
        }
    }

    #[test]
    fn composite_ids_match_by_their_component() {
        let m = matcher();
        assert!(m.matches("user", "u42"));
        assert!(!m.matches("user", "u421"));
        assert!(!m.matches("product", "u42"));
        assert!(m.matches("user_product", "u42|p7"));
        assert!(!m.matches("user_product", "p7|u42"));
        assert!(!m.matches("user_product", "u421|p7"));
        assert!(m.matches("product_user", "p7|u42"));
        assert!(!m.matches("product_user", "u42|p7"));
    }

    #[test]
    fn escaped_components_are_compared_unescaped() {
        let m = EntityMatch {
            entity_id: "a|b".into(),
            ..matcher()
        };
        assert!(m.matches("user_product", "a%7Cb|p7"));
        assert!(!m.matches("user_product", "a|b|p7"));
        let m = EntityMatch {
            entity_id: "50%".into(),
            ..matcher()
        };
        assert!(m.matches("user_product", "50%25|p7"));
        assert!(
            !m.matches("user_product", "50%|p7"),
            "a malformed id matches nothing"
        );
    }

    #[test]
    fn a_span_covers_every_range() {
        let deletes = FamilyDeletes {
            ranges: vec![
                (b"b".to_vec(), b"c".to_vec()),
                (b"a".to_vec(), b"b".to_vec()),
                (b"x".to_vec(), b"y".to_vec()),
            ],
        };
        assert_eq!(deletes.span(), Some((&b"a"[..], &b"y"[..])));
        assert_eq!(FamilyDeletes::default().span(), None);
    }
}
