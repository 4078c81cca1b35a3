//! The read path: one entity's feature vector from a [`ReadView`].
//!
//! Requested features are grouped by feature group; each group is read with one RocksDB
//! call (a batched MultiGet for a few features, one prefix scan over the entity's keys
//! for more), never one call per feature. The status of each value (TTL included) is
//! decided in [`classify`], the one place every read path goes through.

use std::collections::BTreeMap;
use std::sync::Arc;

use rocksdb::ReadOptions;
use serde::Serialize;

use super::error::ReadError;
use super::view::ReadView;
use crate::codec::key::{EntityKey, decode_key, entity_prefix_len};
use crate::codec::value::decode_value;
use crate::registry::FeatureDefinition;
use crate::types::{FeatureId, FeatureStatus, TimestampMs, Value};

/// Up to this many features of one group are fetched with MultiGet; more use a scan.
const MULTI_GET_MAX: usize = 4;

/// What was found for one requested feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureReading {
    /// The name as requested (`name` or `name@version`).
    pub name: String,
    /// What was found.
    pub status: FeatureStatus,
    /// The value, when `status` is `present`.
    pub value: Option<Value>,
    /// Event time of the stored value, when one was found (also for `expired`/`null`).
    pub event_time: Option<TimestampMs>,
}

/// One entity's features, in the order requested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureVector {
    /// Entity type of the request.
    pub entity_type: String,
    /// Entity id of the request.
    pub entity_id: String,
    /// One reading per requested name, in request order.
    pub features: Vec<FeatureReading>,
    /// Batch version served for each group read.
    pub versions: BTreeMap<String, u64>,
}

/// Decides the status of a stored value for `def` at `now`: the only place TTL applies.
pub fn classify(
    def: &FeatureDefinition,
    stored: Option<(Value, TimestampMs)>,
    now: TimestampMs,
) -> (FeatureStatus, Option<Value>, Option<TimestampMs>) {
    let Some((value, event_time)) = stored else {
        return (FeatureStatus::NotFound, None, None);
    };
    if let Some(ttl) = def.spec.ttl {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(event_time) > ttl_ms {
            return (FeatureStatus::Expired, None, Some(event_time));
        }
    }
    if value == Value::Null {
        return (FeatureStatus::Null, None, Some(event_time));
    }
    (FeatureStatus::Present, Some(value), Some(event_time))
}

/// Reads `names` of one entity from `view`.
pub fn read_entity<S: AsRef<str>>(
    view: &ReadView,
    entity_type: &str,
    entity_id: &str,
    names: &[S],
    now: TimestampMs,
) -> Result<FeatureVector, ReadError> {
    let registry = view.registry();
    if !registry.has_entity_type(entity_type) {
        return Err(ReadError::UnknownEntityType(entity_type.to_owned()));
    }
    if names.is_empty() {
        return Err(ReadError::NoFeatures);
    }
    let entity = EntityKey::new(entity_id.as_bytes())
        .map_err(|e| ReadError::InvalidEntityId(e.to_string()))?;

    let mut defs: Vec<&Arc<FeatureDefinition>> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_ref();
        let def = registry
            .resolve(name)
            .ok_or_else(|| ReadError::UnknownFeature(name.to_owned()))?;
        if def.spec.entity_type != entity_type {
            return Err(ReadError::WrongEntityType {
                feature: name.to_owned(),
                expected: def.spec.entity_type.clone(),
                requested: entity_type.to_owned(),
            });
        }
        defs.push(def);
    }

    // Slots per group, in first-seen order; few groups per request, so a Vec suffices.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (slot, def) in defs.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == def.spec.group) {
            Some((_, slots)) => slots.push(slot),
            None => groups.push((&def.spec.group, vec![slot])),
        }
    }

    let mut found: Vec<Option<(Value, TimestampMs)>> = vec![None; defs.len()];
    let mut versions = BTreeMap::new();
    for (group, slots) in &groups {
        let Some(active) = view.active(group) else {
            continue;
        };
        versions.insert((*group).to_owned(), active.version);
        let mut wanted: Vec<(FeatureId, usize)> = slots.iter().map(|&s| (defs[s].id, s)).collect();
        wanted.sort_unstable();
        if let Some(segment) = &active.segment
            && segment.lookup(entity_id.as_bytes(), &wanted, &mut found)
        {
            continue;
        }
        fetch_group(view, &active.cf, &entity, &wanted, &defs, &mut found)?;
    }
    let features = names
        .iter()
        .zip(&defs)
        .zip(found)
        .map(|((name, def), stored)| {
            let (status, value, event_time) = classify(def, stored, now);
            FeatureReading {
                name: name.as_ref().to_owned(),
                status,
                value,
                event_time,
            }
        })
        .collect();
    Ok(FeatureVector {
        entity_type: entity_type.to_owned(),
        entity_id: entity_id.to_owned(),
        features,
        versions,
    })
}

fn decode_into(
    bytes: &[u8],
    slot: usize,
    defs: &[&Arc<FeatureDefinition>],
    found: &mut [Option<(Value, TimestampMs)>],
) -> Result<(), ReadError> {
    let stored = decode_value(bytes).map_err(|source| ReadError::Corrupt {
        feature: defs[slot].qualified_name(),
        source,
    })?;
    found[slot] = Some((stored.value, stored.event_time));
    Ok(())
}

/// Fetches `wanted` (feature id, slot), sorted by id, of one entity from one column family.
fn fetch_group(
    view: &ReadView,
    cf: &Arc<rocksdb::BoundColumnFamily<'_>>,
    entity: &EntityKey,
    wanted: &[(FeatureId, usize)],
    defs: &[&Arc<FeatureDefinition>],
    found: &mut [Option<(Value, TimestampMs)>],
) -> Result<(), ReadError> {
    let db = view.db();
    let storage = |e: rocksdb::Error| ReadError::Storage(e.to_string());
    if wanted.len() <= MULTI_GET_MAX {
        let keys: Vec<Vec<u8>> = wanted
            .iter()
            .map(|(fid, _)| entity.feature_key(*fid))
            .collect();
        let results = db.batched_multi_get_cf(cf, keys.iter(), true);
        for (result, (_, slot)) in results.into_iter().zip(wanted) {
            if let Some(bytes) = result.map_err(storage)? {
                decode_into(&bytes, *slot, defs, found)?;
            }
        }
        return Ok(());
    }

    let Some(&(first_fid, _)) = wanted.first() else {
        return Ok(());
    };
    let mut opts = ReadOptions::default();
    opts.set_prefix_same_as_start(true);
    let mut iter = db.raw_iterator_cf_opt(cf, opts);
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
            decode_into(value, wanted[next].1, defs, found)?;
            next += 1;
        }
        iter.next();
    }
    iter.status().map_err(storage)
}
