//! Questions the history answers, per (entity, feature): what was served at a time
//! ([`as_of`]) and what a point-in-time training row sees ([`point_in_time`]). Both are
//! pure functions of one key's records ([`KeyHistory`]) and the group's facts
//! ([`GroupHistory`]), so tests compare them with a brute-force model; [`lookup`]
//! reads the records and hands the answers to the same sink as live reads.
//!
//! As of `T` (what a live read at `T` answered): the batch value of the version active
//! at `T` (the newest recorded batch record at or below that version), merged with the
//! latest streamed value readable at `T` (the pushed value with the greatest event
//! time among those written at or before `T`) by the live read path's rule: the newer
//! event time wins, the streamed value on a tie.
//!
//! Point in time at `ts` (Feast's semantics): among every value ever servable (each
//! served version's values, every pushed value that became the latest), the one with
//! the newest event time at or before `ts`; with `as_known_at`, only values featstore
//! knew at `ts` (a batch value from the first activation of a version holding it, a
//! pushed value from its write). Ties on event time go to the streamed value, then to
//! the newer version. The TTL (`ts - event time <= ttl`) is judged by the query layer,
//! as for every read.

use std::collections::BTreeMap;
use std::sync::Arc;

use rocksdb::ReadOptions;

use super::{GroupHistory, HistoryTable};
use crate::codec::EntityKey;
use crate::codec::history::{self, HistoryKind, RowRecord};
use crate::codec::value::{decode_event_time, decode_value};
use crate::store::error::ReadError;
use crate::store::keyspace::history_cf_name;
use crate::store::lookup::{GroupLookup, StoredSink};
use crate::store::view::ReadView;
use crate::types::{FeatureId, TimestampMs};

/// How a history lookup answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// What a live read at the lookup's time answered.
    AsOf,
    /// The newest event at or before the lookup's time; with `as_known_at`, among
    /// values known then.
    PointInTime {
        /// Only values written at or before the time.
        as_known_at: bool,
    },
}

/// How a read goes to the history: the history facts it reads against and the
/// question asked.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRead<'a> {
    /// The history facts (versions recorded, activations).
    pub table: &'a HistoryTable,
    /// What is asked.
    pub query: HistoryQuery,
}

/// One (entity, feature)'s records: batch records newest version first (`None`: an
/// absence), taken from the entity's row records and from per-value records of format
/// 1, and stream records newest event first, then latest write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyHistory {
    /// `(version, stored value)`.
    pub batch: Vec<(u64, Option<Vec<u8>>)>,
    /// `(event time, write time, stored value)`.
    pub stream: Vec<(TimestampMs, TimestampMs, Vec<u8>)>,
}

/// The stored value of `version` (its newest recorded batch record at or below it).
fn batch_value<'h>(group: &GroupHistory, h: &'h KeyHistory, version: u64) -> Option<&'h [u8]> {
    h.batch
        .iter()
        .find(|(v, _)| *v <= version && group.is_recorded(*v))
        .and_then(|(_, value)| value.as_deref())
}

fn time_of(bytes: &[u8]) -> TimestampMs {
    decode_event_time(bytes).unwrap_or(TimestampMs::MIN)
}

/// What a live read at `at` answered (see the module doc): a stored value encoding.
pub fn as_of<'h>(group: &GroupHistory, h: &'h KeyHistory, at: TimestampMs) -> Option<&'h [u8]> {
    let batch = group
        .active_at(at)
        .and_then(|version| batch_value(group, h, version));
    let stream = h
        .stream
        .iter()
        .find(|(_, write, _)| *write <= at)
        .map(|(_, _, value)| value.as_slice());
    match (batch, stream) {
        (Some(b), Some(s)) => Some(if time_of(b) > time_of(s) { b } else { s }),
        (b, s) => s.or(b),
    }
}

/// What a point-in-time training row at `ts` sees (see the module doc).
pub fn point_in_time<'h>(
    group: &GroupHistory,
    h: &'h KeyHistory,
    ts: TimestampMs,
    as_known_at: bool,
) -> Option<&'h [u8]> {
    point_in_time_among(group, &group.first_activations(), h, ts, as_known_at)
}

/// [`point_in_time`] with the group's [`GroupHistory::first_activations`] computed
/// once by the caller, not once per key.
pub fn point_in_time_among<'h>(
    group: &GroupHistory,
    first: &[(u64, TimestampMs)],
    h: &'h KeyHistory,
    ts: TimestampMs,
    as_known_at: bool,
) -> Option<&'h [u8]> {
    let stream = h
        .stream
        .iter()
        .find(|(event, write, _)| *event <= ts && (!as_known_at || *write <= ts))
        .map(|(_, _, value)| value.as_slice());
    let mut best: Option<&[u8]> = stream;
    // Newest version first: on equal event times the first one seen stays.
    for &(version, first_served) in first {
        if as_known_at && first_served > ts {
            continue;
        }
        let Some(value) = batch_value(group, h, version) else {
            continue;
        };
        let time = time_of(value);
        if time > ts {
            continue;
        }
        if best.is_none_or(|b| time > time_of(b)) {
            best = Some(value);
        }
    }
    best
}

/// Reads every record of the entity `entity_key` (encoded, length prefix included)
/// whose feature `wanted` accepts into `out` (cleared first), one [`KeyHistory`] per
/// feature: row records (format 2) and per-value records (format 1) merged, batch
/// records newest version first. `iter` must be positioned at the entity's first
/// record or before it (after the previous entity's); it is left after the entity's
/// last record. Each row record is parsed once, whatever the number of features.
pub fn read_entity(
    iter: &mut rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB>,
    entity_key: &[u8],
    wanted: &dyn Fn(FeatureId) -> bool,
    out: &mut BTreeMap<FeatureId, KeyHistory>,
) -> Result<(), ReadError> {
    let corrupt = |what: &str, source| ReadError::Corrupt {
        feature: what.into(),
        source,
    };
    out.clear();
    // Row records, newest version first (inverted versions in the key).
    let mut rows: Vec<(u64, Vec<u8>)> = Vec::new();
    while iter.valid() {
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            break;
        };
        if !key.starts_with(entity_key) {
            break;
        }
        if let Some((entity, version)) = history::decode_row_key(key) {
            if entity != entity_key {
                break;
            }
            rows.push((version, value.to_vec()));
            iter.next();
            continue;
        }
        let (feature_key, fid, kind) =
            history::decode_history_key(key).map_err(|source| corrupt("history key", source))?;
        if feature_key.len() != entity_key.len() + size_of::<FeatureId>() {
            break;
        }
        if wanted(fid) {
            let record = history::decode_record(value)
                .map_err(|source| corrupt("history record", source))?;
            let h = out.entry(fid).or_default();
            match kind {
                HistoryKind::Batch { version } => {
                    h.batch.push((version, record.map(<[u8]>::to_vec)));
                }
                HistoryKind::Stream {
                    event_time,
                    write_time,
                } => {
                    if let Some(record) = record {
                        h.stream.push((event_time, write_time, record.to_vec()));
                    }
                }
            }
        }
        iter.next();
    }
    iter.status().map_err(ReadError::Storage)?;
    for (version, value) in &rows {
        let record =
            RowRecord::parse(value).map_err(|source| corrupt("history row record", source))?;
        for entry in record.iter() {
            let (fid, entry) = entry.map_err(|source| corrupt("history row record", source))?;
            if wanted(fid) {
                out.entry(fid)
                    .or_default()
                    .batch
                    .push((*version, entry.map(|v| v.to_stored())));
            }
        }
    }
    // Per-value records came first; with row records too, restore newest first.
    for h in out.values_mut() {
        if !h.batch.is_sorted_by(|a, b| a.0 >= b.0) {
            h.batch.sort_by_key(|b| std::cmp::Reverse(b.0));
        }
    }
    Ok(())
}

/// Records in `out` what `query` answers at `request.now` for `request.wanted` of
/// every entity: the history side of `crate::store::lookup::lookup_group`. Returns
/// the batch version served at that time (as-of reads) or `None`.
pub fn lookup(
    view: &ReadView,
    table: &HistoryTable,
    query: HistoryQuery,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    out: &mut impl StoredSink,
) -> Result<Option<u64>, ReadError> {
    for &(_, column) in request.wanted {
        let def = request.defs[column];
        if def.spec.aggregate.is_some() {
            return Err(ReadError::NotInHistory(def.qualified_name()));
        }
    }
    let at = request.now;
    // A group only pushed to has stream records and no batch facts.
    let empty = GroupHistory::default();
    let group = table.group(request.group).unwrap_or(&empty);
    let (served, first) = match query {
        HistoryQuery::AsOf => (group.active_at(at), Vec::new()),
        HistoryQuery::PointInTime { .. } => (None, group.first_activations()),
    };
    let db = view.db();
    let Some(cf): Option<Arc<rocksdb::BoundColumnFamily<'_>>> =
        db.cf_handle(&history_cf_name(request.group))
    else {
        return Ok(served);
    };
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    let mut iter = db.raw_iterator_cf_opt(&cf, opts);
    let mut wanted: Vec<FeatureId> = request.wanted.iter().map(|&(fid, _)| fid).collect();
    wanted.sort_unstable();
    let is_wanted = |fid: FeatureId| wanted.binary_search(&fid).is_ok();
    let mut keys = BTreeMap::new();
    let none = KeyHistory::default();
    for (e, entity) in entities.iter().enumerate() {
        iter.seek(entity.as_bytes());
        read_entity(&mut iter, entity.as_bytes(), &is_wanted, &mut keys)?;
        for &(fid, column) in request.wanted {
            let h = keys.get(&fid).unwrap_or(&none);
            let found = match query {
                HistoryQuery::AsOf => as_of(group, h, at),
                HistoryQuery::PointInTime { as_known_at } => {
                    point_in_time_among(group, &first, h, at, as_known_at)
                }
            };
            let Some(bytes) = found else { continue };
            let stored = decode_value(bytes).map_err(|source| ReadError::Corrupt {
                feature: request.defs[column].qualified_name(),
                source,
            })?;
            out.put_stored(e, column, Some((stored.value, stored.event_time)));
        }
    }
    Ok(served)
}

#[cfg(test)]
mod tests;
