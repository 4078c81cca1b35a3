//! Pushed events: their library form, and validation against the registry into the
//! keys and encoded values the committer writes (the JSON form is [`super::body`]).
//!
//! Validation runs on the producer's thread, before anything is queued, so a request
//! with a bad event is refused whole and costs the committer nothing.

use std::sync::Arc;

use serde::Serialize;

use crate::codec::stream::{event_marker_key, tile_key};
use crate::codec::value::encode_value;
use crate::registry::{AggregateSpec, Registry};
use crate::types::{FeatureId, TimestampMs, Value};

/// An event more than this far in the future (ms) is refused: a producer with a wrong
/// clock must not pin a value that no correct event could then replace.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Longest accepted event id, in bytes.
pub const MAX_EVENT_ID_LEN: usize = 256;

/// One pushed event: values of some features of one entity, true at `event_time`.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEvent {
    /// Entity type of every feature named.
    pub entity_type: String,
    /// Entity id.
    pub entity_id: String,
    /// When the values were true, ms since the epoch.
    pub event_time: TimestampMs,
    /// `(name or name@version, value)` pairs.
    pub features: Vec<(String, Value)>,
    /// Optional producer-assigned id: a second event with the same entity and id is
    /// skipped whole (within the dedupe horizon), so replays do not count twice in
    /// windowed aggregates.
    pub event_id: Option<String>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PushOutcome {
    /// Events applied (all events of the request, less `duplicates`).
    pub accepted: u64,
    /// Feature values ignored because the stored value is as new or newer (older
    /// event time; or equal time and a value not greater, e.g. a replay).
    pub ignored_older: u64,
    /// Feature values that became the stored latest value.
    pub values_written: u64,
    /// Events skipped because their event id was seen before.
    pub duplicates: u64,
    /// Aggregate tiles updated (one per event and aggregate fed).
    pub aggregate_updates: u64,
    /// Aggregate updates skipped because the event is older than the aggregate's
    /// window plus one tile.
    pub late_for_aggregates: u64,
}

impl PushOutcome {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &PushOutcome) {
        self.accepted += other.accepted;
        self.ignored_older += other.ignored_older;
        self.values_written += other.values_written;
        self.duplicates += other.duplicates;
        self.aggregate_updates += other.aggregate_updates;
        self.late_for_aggregates += other.late_for_aggregates;
    }
}

/// Why one event of a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in the request, from 0.
    pub index: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// A push failed; nothing of it was applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The request is not a well-formed push body.
    #[error("invalid push request: {0}")]
    Malformed(String),
    /// The request holds no event.
    #[error("no events given")]
    Empty,
    /// The caller may not push a feature of the request (its push rules, see
    /// `crate::auth`); nothing was applied.
    #[error(transparent)]
    Denied(crate::query::guard::ReadDenied),
    /// Some events are invalid; the request was refused whole.
    #[error("{} of {events} events rejected; nothing was applied", rejections.len())]
    Rejected {
        /// Every bad event, in request order.
        rejections: Vec<Rejection>,
        /// Events in the request.
        events: usize,
    },
    /// RocksDB failed; the push is not durable and was not acknowledged.
    #[error("storage error: {0}")]
    Storage(#[source] rocksdb::Error),
    /// A stored value or tile the push is judged against does not decode.
    #[error("corrupt stored {what}: {source}")]
    Corrupt {
        /// What was read (`value`, `tile`).
        what: &'static str,
        /// The codec's error.
        source: crate::codec::CodecError,
    },
    /// An internal invariant broke (a bug, or the writer's thread is gone); the push is
    /// not durable and was not acknowledged.
    #[error("internal error: {0}")]
    Internal(String),
    /// The stream writer's write or WAL sync of this push failed (a full or failing
    /// disk): the push was not acknowledged, may or may not have been written, and
    /// pushes are refused until the writer has recovered (see `commit`).
    #[error(
        "{0}; the push is not durable and was not acknowledged (push it again: a replay is \
         harmless); pushes are refused until the stream writer has recovered"
    )]
    WriteFailed(String),
    /// The stream writer cannot write since an earlier write or sync failed; nothing of
    /// this push was written. The writer retries by itself (see `commit`); push again
    /// later.
    #[error("push refused, nothing was written: {0}; push again later")]
    Unavailable(String),
}

impl PushError {
    /// True when the caller, not the store, is at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            PushError::Malformed(_)
                | PushError::Empty
                | PushError::Rejected { .. }
                | PushError::Denied(_)
        )
    }

    /// True when the push failed because the stream writer cannot write now (a failed
    /// write or sync, or an outage after one): pushing again later can succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PushError::Unavailable(_) | PushError::WriteFailed(_))
    }
}

/// A latest-value write: `key` in the stream column family of `group`.
#[derive(Debug, Clone)]
pub(crate) struct ValueWrite {
    pub group: Arc<str>,
    /// The feature written.
    pub feature: FeatureId,
    pub key: Vec<u8>,
    pub event_time: TimestampMs,
    /// Encoded as in batch column families (tag, event time, payload).
    pub encoded: Vec<u8>,
}

/// One event's contribution to one aggregate tile.
#[derive(Debug, Clone)]
pub(crate) struct TileWrite {
    pub group: Arc<str>,
    pub key: Vec<u8>,
    pub event_time: TimestampMs,
    pub value: f64,
}

/// A validated event, ready for the committer.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub marker: Option<Vec<u8>>,
    pub event_time: TimestampMs,
    pub values: Vec<ValueWrite>,
    pub tiles: Vec<TileWrite>,
    pub late: u64,
}

/// An aggregate fed by a source feature.
#[derive(Debug, Clone)]
pub(crate) struct AggregateTarget {
    pub id: FeatureId,
    pub group: Arc<str>,
    pub spec: AggregateSpec,
}

type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Aggregates by source feature id, derived from the registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct AggregateIndex {
    pub by_source: FastMap<FeatureId, Vec<AggregateTarget>>,
    /// Interned group names.
    pub groups: FastMap<String, Arc<str>>,
}

impl AggregateIndex {
    /// Builds the index of `registry`.
    pub fn from_registry(registry: &Registry) -> Self {
        let mut index = AggregateIndex::default();
        for def in registry.list(&crate::registry::DefinitionFilter::default()) {
            let group: Arc<str> = index
                .groups
                .entry(def.spec.group.clone())
                .or_insert_with(|| Arc::from(def.spec.group.as_str()))
                .clone();
            let Some(aggregate) = &def.spec.aggregate else {
                continue;
            };
            let Some(source) = registry.resolve(&aggregate.source) else {
                continue;
            };
            index
                .by_source
                .entry(source.id)
                .or_default()
                .push(AggregateTarget {
                    id: def.id,
                    group,
                    spec: aggregate.clone(),
                });
        }
        index
    }

    fn group(&self, name: &str) -> Arc<str> {
        self.groups
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }
}

/// The number an aggregate adds for `value`, or `None` for a null.
fn aggregate_input(value: &Value) -> Option<f64> {
    match value {
        Value::Null => None,
        Value::Int64(v) => Some(*v as f64),
        Value::Float64(v) => Some(*v),
        Value::Float32(v) => Some(f64::from(*v)),
        Value::Bool(v) => Some(f64::from(u8::from(*v))),
        // Only `count` accepts other sources (checked at registration); it adds 1.
        _ => Some(1.0),
    }
}

/// Validates `event` against `registry` at `now`, returning what to write.
pub(crate) fn prepare(
    registry: &Registry,
    aggregates: &AggregateIndex,
    event: &PushEvent,
    now: TimestampMs,
) -> Result<Prepared, String> {
    if !registry.has_entity_type(&event.entity_type) {
        return Err(format!("unknown entity type `{}`", event.entity_type));
    }
    let entity = registry
        .entity_id_rule(&event.entity_type)
        .key(&event.entity_id)
        .map_err(|e| e.to_string())?;
    if event.event_time > now.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(format!(
            "event time {} is more than {} s in the future (now {now})",
            event.event_time,
            MAX_FUTURE_SKEW_MS / 1000
        ));
    }
    if event.features.is_empty() {
        return Err("no features given".into());
    }
    let marker = match &event.event_id {
        None => None,
        Some(id) if id.is_empty() || id.len() > MAX_EVENT_ID_LEN => {
            return Err(format!(
                "event id must be 1..={MAX_EVENT_ID_LEN} bytes, got {}",
                id.len()
            ));
        }
        Some(id) => Some(
            event_marker_key(&event.entity_type, &entity, id)
                .map_err(|e| format!("event id: {e}"))?,
        ),
    };
    let mut prepared = Prepared {
        marker,
        event_time: event.event_time,
        values: Vec::with_capacity(event.features.len()),
        tiles: Vec::new(),
        late: 0,
    };
    let mut seen: Vec<FeatureId> = Vec::with_capacity(event.features.len());
    for (name, value) in &event.features {
        let def = registry
            .resolve(name)
            .ok_or_else(|| format!("unknown feature `{name}`"))?;
        if def.spec.entity_type != event.entity_type {
            return Err(format!(
                "feature `{name}` belongs to entity type `{}`, not `{}`",
                def.spec.entity_type, event.entity_type
            ));
        }
        if let Some(aggregate) = &def.spec.aggregate {
            return Err(format!(
                "feature `{name}` is an aggregate computed from `{}`; push that instead",
                aggregate.source
            ));
        }
        if !value.matches(def.spec.dtype) {
            return Err(format!(
                "feature `{name}` is {}, the value given is not",
                def.spec.dtype
            ));
        }
        if seen.contains(&def.id) {
            return Err(format!("feature `{name}` is given twice"));
        }
        seen.push(def.id);
        let mut encoded = Vec::with_capacity(16);
        encode_value(value, event.event_time, &mut encoded);
        prepared.values.push(ValueWrite {
            group: aggregates.group(&def.spec.group),
            feature: def.id,
            key: entity.feature_key(def.id),
            event_time: event.event_time,
            encoded,
        });
        let (Some(targets), Some(input)) =
            (aggregates.by_source.get(&def.id), aggregate_input(value))
        else {
            continue;
        };
        for target in targets {
            let start = target.spec.tile_start(event.event_time);
            if now.saturating_sub(start) > target.spec.retention_ms() {
                prepared.late += 1;
                continue;
            }
            prepared.tiles.push(TileWrite {
                group: target.group.clone(),
                key: tile_key(&entity, target.id, start),
                event_time: event.event_time,
                value: input,
            });
        }
    }
    Ok(prepared)
}

/// A caller's check of each feature it pushes (its push rules); `Err` names the
/// feature refused.
pub type PushCheck<'a> = &'a (
        dyn Fn(&crate::registry::FeatureDefinition) -> Result<(), crate::query::guard::ReadDenied>
            + Sync
    );

/// The first feature of `event` that `check` refuses. Names that resolve to no
/// feature are left to validation, which rejects them.
pub(crate) fn check_event(
    registry: &Registry,
    event: &PushEvent,
    check: Option<PushCheck<'_>>,
) -> Result<(), crate::query::guard::ReadDenied> {
    let Some(check) = check else {
        return Ok(());
    };
    for (name, _) in &event.features {
        if let Some(def) = registry.resolve(name) {
            check(def)?;
        }
    }
    Ok(())
}
