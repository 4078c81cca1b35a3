//! The history's logical content: every value a point-in-time question can return, one
//! [`Servable`] per distinct candidate, with the times that decide whether a training
//! row may see it. This is what `featstore export-history` writes, so that an engine
//! outside featstore (Spark, DuckDB) answers point-in-time questions exactly as
//! [`super::read::point_in_time`] does, without knowing how batch versions are stored
//! as changes.
//!
//! It owns turning one key's records ([`KeyHistory`]) and the group's facts into
//! candidates ([`servable`]), and the scan of a whole history family that hands them
//! out entity by entity ([`scan_group`]).
//!
//! Invariant (tested against `point_in_time` on random histories): for every `ts` and
//! both modes, `point_in_time(group, h, ts, as_known_at)` is the candidate with the
//! greatest [`Servable::order`] among those with `event_time <= ts` and, with
//! `as_known_at`, `known_at <= ts`. Batch candidates: one per recorded batch record
//! that some served version reads (the newest recorded record at or below it), known
//! from the first time any such version was served; absences are no candidates.
//! Stream candidates: every pushed value, known from its write. On equal event times a
//! pushed value wins (the later write first), then the newer version: the order is
//! `(event time, stream before batch, write time or version)`.

use std::collections::BTreeMap;

use rocksdb::{DB, ReadOptions};

use super::GroupHistory;
use super::read::{KeyHistory, read_entity};
use crate::codec::key::{ENTITY_LEN_PREFIX, entity_prefix_len};
use crate::codec::value::decode_event_time;
use crate::store::error::ReadError;
use crate::store::keyspace::history_cf_name;
use crate::types::{FeatureId, TimestampMs};

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A batch record of this version (the oldest version serving it).
    Batch {
        /// The version whose record it is.
        version: u64,
    },
    /// A pushed value.
    Stream {
        /// When featstore wrote it.
        write_time: TimestampMs,
    },
}

/// One value a point-in-time question can return.
#[derive(Debug, Clone, PartialEq)]
pub struct Servable<'h> {
    /// The stored value encoding (tag, event time, payload).
    pub stored: &'h [u8],
    /// Its event time.
    pub event_time: TimestampMs,
    /// The first time featstore could have served it: the first activation of a
    /// version reading it, or a push's write time.
    pub known_at: TimestampMs,
    /// Where it came from.
    pub source: Source,
}

impl Servable<'_> {
    /// The order that picks among candidates of one key: the greatest wins.
    pub fn order(&self) -> (TimestampMs, u8, i128) {
        match self.source {
            Source::Stream { write_time } => (self.event_time, 1, i128::from(write_time)),
            Source::Batch { version } => (self.event_time, 0, i128::from(version)),
        }
    }
}

/// The candidates of one key (see the module doc), batch ones newest version first,
/// then stream ones in their records' order, into `out` (cleared first).
pub fn servable<'h>(group: &GroupHistory, h: &'h KeyHistory, out: &mut Vec<Servable<'h>>) {
    servable_among(group, &group.first_activations(), h, out);
}

/// [`servable`] with the group's [`GroupHistory::first_activations`] computed once by
/// the caller, not once per key.
pub fn servable_among<'h>(
    group: &GroupHistory,
    first: &[(u64, TimestampMs)],
    h: &'h KeyHistory,
    out: &mut Vec<Servable<'h>>,
) {
    out.clear();
    // Record index -> first time a version reading it was served.
    let mut known: BTreeMap<usize, TimestampMs> = BTreeMap::new();
    for &(version, first_served) in first {
        let Some(i) = h
            .batch
            .iter()
            .position(|(v, _)| *v <= version && group.is_recorded(*v))
        else {
            continue;
        };
        known
            .entry(i)
            .and_modify(|t| *t = (*t).min(first_served))
            .or_insert(first_served);
    }
    for (&i, &known_at) in &known {
        let Some((version, Some(stored))) = h.batch.get(i) else {
            continue; // an absence
        };
        out.push(Servable {
            stored,
            event_time: decode_event_time(stored).unwrap_or(TimestampMs::MIN),
            known_at,
            source: Source::Batch { version: *version },
        });
    }
    for (event_time, write_time, stored) in &h.stream {
        out.push(Servable {
            stored,
            event_time: *event_time,
            known_at: *write_time,
            source: Source::Stream {
                write_time: *write_time,
            },
        });
    }
}

/// What [`scan_group`] hands out per entity: its id and, per feature with records,
/// its records.
pub trait EntityVisitor {
    /// One entity's records: `(feature, history)` in ascending feature id order.
    fn entity(&mut self, id: &[u8], keys: &[(FeatureId, KeyHistory)]) -> Result<(), ReadError>;
}

/// Reads `group`'s history family through `snapshot`-consistent `opts` and hands
/// each entity's records to `visitor`, in key order. Row records (format 2) and
/// per-value records (format 1) are merged into one [`KeyHistory`] per feature, as a
/// lookup does. Returns the number of entities; a group without a history family
/// has none.
pub fn scan_group(
    db: &DB,
    opts: ReadOptions,
    group: &str,
    visitor: &mut impl EntityVisitor,
) -> Result<u64, ReadError> {
    let Some(cf) = db.cf_handle(&history_cf_name(group)) else {
        return Ok(0);
    };
    let mut iter = db.raw_iterator_cf_opt(&cf, opts);
    iter.seek_to_first();
    let mut keys: BTreeMap<FeatureId, KeyHistory> = BTreeMap::new();
    let mut entities = 0u64;
    let mut entity: Vec<u8> = Vec::new();
    while iter.valid() {
        let Some(key) = iter.key() else { break };
        let len = entity_prefix_len(key).ok_or_else(|| ReadError::Corrupt {
            feature: "history key".into(),
            source: crate::codec::CodecError::Invalid {
                what: "history key",
                detail: format!("{} bytes hold no entity key", key.len()),
            },
        })?;
        entity.clear();
        entity.extend_from_slice(&key[..len]);
        read_entity(&mut iter, &entity, &|_| true, &mut keys)?;
        entities += 1;
        let out: Vec<(FeatureId, KeyHistory)> = std::mem::take(&mut keys).into_iter().collect();
        visitor.entity(entity.get(ENTITY_LEN_PREFIX..).unwrap_or_default(), &out)?;
    }
    iter.status().map_err(ReadError::Storage)?;
    Ok(entities)
}

#[cfg(test)]
mod tests;
