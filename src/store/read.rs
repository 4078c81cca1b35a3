//! The read path: one entity's feature vector from a [`ReadView`].
//!
//! Requested features are grouped by feature group; each group is read with one
//! [`lookup_group`] call (hot segment, then one RocksDB call), never one call per
//! feature. The status of each value (TTL included) is
//! decided by [`Freshness::status`], the one place every read path goes through.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::error::ReadError;
use super::lookup::{GroupLookup, RowMajor, Stored, lookup_group};
use super::view::ReadView;
use crate::registry::FeatureDefinition;
use crate::types::{FeatureId, FeatureStatus, TimestampMs, Value};

/// What was found for one requested feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureReading {
    /// The name as requested (`name` or `name@version`); shared with the registry for
    /// plain names, so a read allocates nothing per feature for it.
    pub name: Arc<str>,
    /// What was found.
    pub status: FeatureStatus,
    /// The value, when `status` is `present`.
    pub value: Option<Value>,
    /// Event time of the stored value, when one was found (also for `expired`/`null`).
    pub event_time: Option<TimestampMs>,
    /// Age of the stored value at read time (`now - event_time`, at least 0), when one
    /// was found.
    pub age_ms: Option<i64>,
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

/// The TTL and freshness SLO of one feature, in milliseconds: the only place they
/// decide a stored value's status (every read path, single entity or columnar ranking
/// answer, goes through [`Freshness::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    ttl_ms: Option<i64>,
    slo_ms: Option<i64>,
}

impl Freshness {
    /// The limits of `def`.
    pub fn of(def: &FeatureDefinition) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Freshness {
            ttl_ms: def.spec.ttl.map(ms),
            slo_ms: def.spec.freshness_slo.map(ms),
        }
    }

    /// Limits given in milliseconds.
    pub fn of_limits(ttl_ms: Option<i64>, slo_ms: Option<i64>) -> Self {
        Freshness { ttl_ms, slo_ms }
    }

    /// True when the feature has neither a TTL nor a freshness SLO (every status stays).
    pub fn is_unlimited(self) -> bool {
        self.ttl_ms.is_none() && self.slo_ms.is_none()
    }

    /// The status of a stored value (`null` for an explicit null) with `event_time`
    /// at `now`. Past its TTL a value is `expired` (not returned); past its freshness
    /// SLO (and within its TTL) it is `stale` and returned.
    #[inline]
    pub fn status(self, null: bool, event_time: TimestampMs, now: TimestampMs) -> FeatureStatus {
        let age = now.saturating_sub(event_time);
        if self.ttl_ms.is_some_and(|ttl| age > ttl) {
            FeatureStatus::Expired
        } else if null {
            FeatureStatus::Null
        } else if self.slo_ms.is_some_and(|slo| age > slo) {
            FeatureStatus::Stale
        } else {
            FeatureStatus::Present
        }
    }
}

/// Decides the status of a stored value for `def` at `now` (see [`Freshness`]); the
/// value is returned only with `present` and `stale`.
#[inline]
pub fn classify(
    def: &FeatureDefinition,
    stored: Option<(Value, TimestampMs)>,
    now: TimestampMs,
) -> (FeatureStatus, Option<Value>, Option<TimestampMs>) {
    let Some((value, event_time)) = stored else {
        return (FeatureStatus::NotFound, None, None);
    };
    let status = Freshness::of(def).status(value == Value::Null, event_time, now);
    let value = matches!(status, FeatureStatus::Present | FeatureStatus::Stale).then_some(value);
    (status, value, Some(event_time))
}

/// The age of a value with `event_time` at `now` (0 for a value from the future).
pub fn age_ms(event_time: Option<TimestampMs>, now: TimestampMs) -> Option<i64> {
    event_time.map(|t| now.saturating_sub(t).max(0))
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
    let entity = registry.entity_id_rule(entity_type).key(entity_id)?;
    if names.is_empty() {
        return Err(ReadError::NoFeatures);
    }

    let mut defs: Vec<&Arc<FeatureDefinition>> = Vec::with_capacity(names.len());
    let mut shared_names: Vec<Option<&Arc<str>>> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_ref();
        let (def, shared) = registry
            .resolve_named(name)
            .ok_or_else(|| ReadError::UnknownFeature(name.to_owned()))?;
        shared_names.push(shared);
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

    let mut found: Vec<Stored> = vec![None; defs.len()];
    let mut versions = BTreeMap::new();
    let entities = [entity];
    for (group, slots) in &groups {
        let mut wanted: Vec<(FeatureId, usize)> = slots.iter().map(|&s| (defs[s].id, s)).collect();
        wanted.sort_unstable();
        let request = GroupLookup {
            group,
            wanted: &wanted,
            defs: &defs,
            now,
        };
        let mut out = RowMajor {
            out: &mut found,
            width: defs.len(),
        };
        if let Some(version) = lookup_group(view, &request, &entities, &mut out)? {
            versions.insert((*group).to_owned(), version);
        }
    }
    let features = names
        .iter()
        .zip(shared_names)
        .zip(&defs)
        .zip(found)
        .map(|(((name, shared), def), stored)| {
            let (status, value, event_time) = classify(def, stored, now);
            FeatureReading {
                name: shared.map_or_else(|| Arc::from(name.as_ref()), Arc::clone),
                status,
                value,
                event_time,
                age_ms: age_ms(event_time, now),
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
