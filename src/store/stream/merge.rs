//! The stream side of `super::super::lookup::lookup_group`: merges a group's streamed
//! latest values into what the batch version answered, and evaluates windowed
//! aggregates from their tiles.
//!
//! Only the features in the group's streamed set ([`ReadView::streamed_features`]) are
//! looked up: a feature enters that set durably before its first pushed value is
//! written, so the others have none.
//!
//! Merge rule, per entity and feature: the value with the newer event time wins; on
//! equal event times the streamed value wins. So a batch version loaded later with
//! older event times never hides a fresher streamed value, and a streamed value older
//! than the batch's never hides the batch value.

use std::sync::Arc;

use rocksdb::{BoundColumnFamily, ReadOptions};

use super::super::error::ReadError;
use super::super::lookup::{GroupLookup, Stored, StoredSink};
use super::super::view::ReadView;
use crate::codec::EntityKey;
use crate::codec::stream::{Tile, tile_key};
use crate::codec::value::decode_value;
use crate::registry::{AggregateFunction, AggregateSpec, FeatureDefinition};
use crate::types::{FeatureId, TimestampMs, Value};

fn storage(e: rocksdb::Error) -> ReadError {
    ReadError::Storage(e)
}

/// Merges the streamed values and aggregates of `request` for `entities` into `out`
/// (as `super::super::lookup::lookup_group` filled it), at time `request.now`.
pub fn merge_stream(
    view: &ReadView,
    cf: &Arc<BoundColumnFamily<'_>>,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    out: &mut impl StoredSink,
) -> Result<(), ReadError> {
    let now = request.now;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut targets: Vec<(usize, usize)> = Vec::new();
    let mut aggregates: Vec<(usize, &AggregateSpec)> = Vec::new();
    for &(_, column) in request.wanted {
        if let Some(aggregate) = &request.defs[column].spec.aggregate {
            aggregates.push((column, aggregate));
        }
    }
    // Only features that ever received a pushed value can have one: the others are
    // not looked up (a group with one streamed feature costs one key per entity).
    let streamed: Vec<(FeatureId, usize)> = match view.streamed_features(request.group) {
        Some(set) => request
            .wanted
            .iter()
            .filter(|(fid, column)| {
                set.contains(fid) && request.defs[*column].spec.aggregate.is_none()
            })
            .copied()
            .collect(),
        None => Vec::new(),
    };
    keys.reserve(entities.len() * streamed.len());
    targets.reserve(keys.capacity());
    for (e, entity) in entities.iter().enumerate() {
        for &(fid, column) in &streamed {
            keys.push(entity.feature_key(fid));
            targets.push((e, column));
        }
    }
    if !keys.is_empty() {
        let sorted = keys.windows(2).all(|w| w[0] <= w[1]);
        let results = view.db().batched_multi_get_cf(cf, keys.iter(), sorted);
        for (result, (e, column)) in results.into_iter().zip(targets) {
            let Some(bytes) = result.map_err(storage)? else {
                continue;
            };
            let stored = decode_value(&bytes).map_err(|source| ReadError::Corrupt {
                feature: request.defs[column].qualified_name(),
                source,
            })?;
            let keep_batch = out
                .stored_time(e, column)
                .is_some_and(|batch_time| batch_time > stored.event_time);
            if !keep_batch {
                out.put_stored(e, column, Some((stored.value, stored.event_time)));
            }
        }
    }
    for (e, entity) in entities.iter().enumerate() {
        for &(column, aggregate) in &aggregates {
            let def = request.defs[column];
            out.put_stored(e, column, evaluate(view, cf, entity, def, aggregate, now)?);
        }
    }
    Ok(())
}

/// Sums the tiles of the window ending at `now` (one bounded range scan, at most the
/// window's tile count) and applies the aggregate's function.
fn evaluate(
    view: &ReadView,
    cf: &Arc<BoundColumnFamily<'_>>,
    entity: &EntityKey,
    def: &FeatureDefinition,
    aggregate: &AggregateSpec,
    now: TimestampMs,
) -> Result<Stored, ReadError> {
    let fid = def.id;
    let (first, end) = aggregate.window_tiles(now);
    let mut opts = ReadOptions::default();
    opts.set_prefix_same_as_start(true);
    opts.set_iterate_upper_bound(tile_key(entity, fid, end));
    let mut iter = view.db().raw_iterator_cf_opt(cf, opts);
    iter.seek(tile_key(entity, fid, first));
    let mut total = Tile::default();
    while iter.valid() {
        let Some(value) = iter.value() else { break };
        let tile = Tile::decode(value).map_err(|source| ReadError::Corrupt {
            feature: def.qualified_name(),
            source,
        })?;
        total.merge(&tile);
        iter.next();
    }
    iter.status().map_err(storage)?;
    Ok(finish(aggregate.function, &total, now))
}

/// The value of `function` over `total`. An empty window counts 0 and sums 0.0 (as of
/// `now`); its mean and last are not found.
pub fn finish(function: AggregateFunction, total: &Tile, now: TimestampMs) -> Stored {
    let time = if total.count > 0 {
        total.last_time
    } else {
        now
    };
    match function {
        AggregateFunction::Count => Some((
            Value::Int64(i64::try_from(total.count).unwrap_or(i64::MAX)),
            time,
        )),
        AggregateFunction::Sum => Some((Value::Float64(total.sum), time)),
        AggregateFunction::Mean if total.count > 0 => {
            Some((Value::Float64(total.sum / total.count as f64), time))
        }
        AggregateFunction::Last if total.count > 0 => Some((Value::Float64(total.last), time)),
        AggregateFunction::Mean | AggregateFunction::Last => None,
    }
}
