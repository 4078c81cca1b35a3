//! What a read decides per value, and the row view of a single-entity answer.
//!
//! [`Freshness`] holds a feature's TTL and freshness SLO; [`Freshness::status`] is the
//! one place they decide a stored value's status, for every read path (through
//! [`super::answer::ColumnValues::judge`]). [`FeatureVector`] is one entity's answer
//! as rows of owned readings, built from the columnar answer
//! ([`super::entity::EntityAnswer::into_vector`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::registry::FeatureDefinition;
use crate::types::{FeatureStatus, TimestampMs, Value};

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
    /// The feature's retention: judged against the wall clock, not the read's time, so
    /// that an as-of or point-in-time read never returns a value past it either.
    retention_ms: Option<i64>,
}

impl Freshness {
    /// The limits of `def`.
    pub fn of(def: &FeatureDefinition) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Freshness {
            ttl_ms: def.spec.ttl.map(ms),
            slo_ms: def.spec.freshness_slo.map(ms),
            retention_ms: def.spec.retention_ms(),
        }
    }

    /// Limits given in milliseconds.
    pub fn of_limits(ttl_ms: Option<i64>, slo_ms: Option<i64>) -> Self {
        Freshness {
            ttl_ms,
            slo_ms,
            retention_ms: None,
        }
    }

    /// These limits with a retention (ms).
    pub fn with_retention(self, retention_ms: Option<i64>) -> Self {
        Freshness {
            retention_ms,
            ..self
        }
    }

    /// True when the feature has no TTL, freshness SLO or retention (every status
    /// stays).
    pub fn is_unlimited(self) -> bool {
        self.ttl_ms.is_none() && self.slo_ms.is_none() && self.retention_ms.is_none()
    }

    /// The oldest event time retained at wall-clock time `wall` (`None`: no
    /// retention).
    pub fn retained_from(self, wall: TimestampMs) -> Option<TimestampMs> {
        self.retention_ms.map(|r| wall.saturating_sub(r))
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

/// The age of a value with `event_time` at `now` (0 for a value from the future).
pub fn age_ms(event_time: Option<TimestampMs>, now: TimestampMs) -> Option<i64> {
    event_time.map(|t| now.saturating_sub(t).max(0))
}
