//! Stored-value lookup: the values of some features of one group for a batch of
//! entities, from that group's active sources.
//!
//! This is the seam every read path goes through (one entity's vector, a ranking
//! request's hundreds of candidates): it answers "what is stored", never "what does the
//! caller see" (TTL, freshness and defaults are decided later, in
//! [`super::read::classify`]).
//!
//! Invariants:
//! - `out` is entity-major: the value of column `c` for entity `e` is
//!   `out[e * width + c]`; columns not named in `wanted` are left untouched.
//! - A source is asked once per batch, never once per feature: the hot segment first,
//!   then one RocksDB MultiGet (few features) or one prefix scan per entity (many
//!   features) for the entities the segment does not hold.
//! - Streamed values are merged in here, so every read path sees them: one MultiGet
//!   over every (entity, feature) key of the group's stream column family, newest
//!   event time winning (ties: the streamed value); windowed aggregates are evaluated
//!   from their tiles (see [`super::stream::merge`]).

use std::sync::Arc;

use rocksdb::ReadOptions;

use super::error::ReadError;
use super::stream::merge::merge_stream;
use super::view::ReadView;
use crate::codec::key::{EntityKey, decode_key, entity_prefix_len};
use crate::codec::value::decode_value;
use crate::registry::FeatureDefinition;
use crate::types::{FeatureId, TimestampMs, Value};

/// A stored value and its event time, or nothing stored.
pub type Stored = Option<(Value, TimestampMs)>;

/// Up to this many features of one group are fetched with MultiGet; more use a scan.
const MULTI_GET_MAX: usize = 4;

/// What one [`lookup_group`] call asks for.
pub struct GroupLookup<'a> {
    /// The feature group.
    pub group: &'a str,
    /// `(feature id, column)` pairs, sorted by feature id.
    pub wanted: &'a [(FeatureId, usize)],
    /// Definitions by column, to name a feature in errors.
    pub defs: &'a [&'a Arc<FeatureDefinition>],
    /// Row width of `out`.
    pub width: usize,
    /// The read's time (ms): windowed aggregates are evaluated at it, the same instant
    /// the caller's TTL and freshness checks use.
    pub now: TimestampMs,
}

/// Fills `out` with the stored values of `request.wanted` for every entity of
/// `entities`: the active batch version's, merged with the group's streamed values.
/// Returns the batch version read, or `None` when the group has no active version.
pub fn lookup_group(
    view: &ReadView,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    out: &mut [Stored],
) -> Result<Option<u64>, ReadError> {
    debug_assert_eq!(out.len(), entities.len() * request.width);
    let version = lookup_batch(view, request, entities, out)?;
    if let Some(cf) = view.stream(request.group) {
        merge_stream(view, cf, request, entities, out)?;
    }
    Ok(version)
}

/// The batch half of [`lookup_group`]: the active version's values.
fn lookup_batch(
    view: &ReadView,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    out: &mut [Stored],
) -> Result<Option<u64>, ReadError> {
    let Some(active) = view.active(request.group) else {
        return Ok(None);
    };
    let width = request.width;
    let mut misses: Vec<usize> = Vec::new();
    // Field positions are resolved once per call, not per entity.
    let prepared = active
        .segment
        .as_ref()
        .map(|segment| (segment, segment.prepare(request.wanted)));
    for (e, entity) in entities.iter().enumerate() {
        let row = &mut out[e * width..(e + 1) * width];
        let hit = prepared
            .as_ref()
            .is_some_and(|(segment, fields)| segment.lookup_prepared(entity.id(), fields, row));
        if !hit {
            misses.push(e);
        }
    }
    if misses.is_empty() {
        return Ok(Some(active.version));
    }
    if request.wanted.len() <= MULTI_GET_MAX {
        multi_get(view, &active.cf, request, entities, &misses, out)?;
    } else {
        // One iterator, re-seeked per entity (each seek sets the prefix bound).
        let mut opts = ReadOptions::default();
        opts.set_prefix_same_as_start(true);
        let mut iter = view.db().raw_iterator_cf_opt(&active.cf, opts);
        for &e in &misses {
            let row = &mut out[e * width..(e + 1) * width];
            scan_entity(&mut iter, request, &entities[e], row)?;
        }
    }
    Ok(Some(active.version))
}

fn decode_into(
    bytes: &[u8],
    column: usize,
    defs: &[&Arc<FeatureDefinition>],
    row: &mut [Stored],
) -> Result<(), ReadError> {
    let stored = decode_value(bytes).map_err(|source| ReadError::Corrupt {
        feature: defs[column].qualified_name(),
        source,
    })?;
    row[column] = Some((stored.value, stored.event_time));
    Ok(())
}

fn storage(e: rocksdb::Error) -> ReadError {
    ReadError::Storage(e.to_string())
}

/// One batched MultiGet over every (missed entity, wanted feature) key.
fn multi_get(
    view: &ReadView,
    cf: &Arc<rocksdb::BoundColumnFamily<'_>>,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    misses: &[usize],
    out: &mut [Stored],
) -> Result<(), ReadError> {
    let width = request.width;
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(misses.len() * request.wanted.len());
    let mut targets: Vec<(usize, usize)> = Vec::with_capacity(keys.capacity());
    for &e in misses {
        for &(fid, column) in request.wanted {
            keys.push(entities[e].feature_key(fid));
            targets.push((e, column));
        }
    }
    // Keys are sorted when entities are: RocksDB's batched MultiGet is told so only
    // then.
    let sorted = keys.windows(2).all(|w| w[0] <= w[1]);
    let results = view.db().batched_multi_get_cf(cf, keys.iter(), sorted);
    for (result, (e, column)) in results.into_iter().zip(targets) {
        if let Some(bytes) = result.map_err(storage)? {
            let row = &mut out[e * width..(e + 1) * width];
            decode_into(&bytes, column, request.defs, row)?;
        }
    }
    Ok(())
}

/// One prefix scan over the entity's keys, picking the wanted features.
fn scan_entity(
    iter: &mut rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB>,
    request: &GroupLookup<'_>,
    entity: &EntityKey,
    row: &mut [Stored],
) -> Result<(), ReadError> {
    let wanted = request.wanted;
    let Some(&(first_fid, _)) = wanted.first() else {
        return Ok(());
    };
    iter.seek(entity.feature_key(first_fid));
    let prefix_len = entity.as_bytes().len();
    let mut next = 0;
    while iter.valid() && next < wanted.len() {
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            break;
        };
        if entity_prefix_len(key) != Some(prefix_len) || !key.starts_with(entity.as_bytes()) {
            break;
        }
        let Ok((_, fid)) = decode_key(key) else {
            break;
        };
        while next < wanted.len() && wanted[next].0 < fid {
            next += 1;
        }
        while next < wanted.len() && wanted[next].0 == fid {
            decode_into(value, wanted[next].1, request.defs, row)?;
            next += 1;
        }
        iter.next();
    }
    iter.status().map_err(storage)
}
