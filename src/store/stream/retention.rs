//! Retention of streamed data: the table of per-feature time limits, shared by every
//! stream column family's compaction filter, and the filter itself.
//!
//! Expired data is removed by RocksDB compactions, never by a scan: a latest value past
//! its feature's TTL or retention (the shorter), a tile past its aggregate's window plus
//! one tile or past the aggregate's retention, and an event-id marker past the dedupe
//! horizon are dropped when a compaction reads them. The table also gives each
//! feature's retention to the history families' filter (`crate::store::history::retention`).
//!
//! Thread-safety contract: the table is immutable and published through an `ArcSwap`
//! when the registry changes; each compaction takes the table current when it starts
//! (a factory creates one filter per compaction, used by one thread).

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rocksdb::CompactionDecision;
use rocksdb::compaction_filter::CompactionFilter;
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};

use crate::codec::stream::{StreamKey, decode_stream_key};
use crate::codec::value::decode_event_time;
use crate::registry::{DefinitionFilter, Registry};
use crate::types::{FeatureId, TimestampMs, now_ms};

/// Event-id markers are kept at least this long (ms), and longer when an aggregate's
/// window plus one tile is longer: a replay older than that could no longer change
/// any aggregate anyway.
pub const MIN_DEDUPE_HORIZON_MS: i64 = 24 * 3600 * 1000;

/// Time limits of streamed data, derived from the registry.
///
/// The [`Default`] table removes nothing: it is what compactions see while the store
/// opens, before the registry is read, when any limit would be a guess (a horizon of 0
/// there once removed every event-id marker, so acknowledged events pushed again after a
/// restart were counted again).
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionTable {
    /// How long a latest value is kept (ms): the shorter of the feature's TTL and
    /// retention, for features with either.
    pub value_ttl: HashMap<FeatureId, i64>,
    /// Retention (ms) of features that have one (what the history keeps).
    pub retention: HashMap<FeatureId, i64>,
    /// Tile retention (window + resolution, ms) of aggregate features.
    pub tile_retention: HashMap<FeatureId, i64>,
    /// How long event-id markers are kept (ms).
    pub dedupe_horizon: i64,
}

impl Default for RetentionTable {
    fn default() -> Self {
        RetentionTable {
            value_ttl: HashMap::new(),
            retention: HashMap::new(),
            tile_retention: HashMap::new(),
            dedupe_horizon: i64::MAX,
        }
    }
}

impl RetentionTable {
    /// The limits of every feature of `registry`.
    pub fn from_registry(registry: &Registry) -> Self {
        let mut table = RetentionTable {
            dedupe_horizon: MIN_DEDUPE_HORIZON_MS,
            ..RetentionTable::default()
        };
        for def in registry.list(&DefinitionFilter::default()) {
            let ttl = def
                .spec
                .ttl
                .map(|ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
            let retention = def.spec.retention_ms();
            if let Some(keep) = [ttl, retention].into_iter().flatten().min() {
                table.value_ttl.insert(def.id, keep);
            }
            if let Some(retention) = retention {
                table.retention.insert(def.id, retention);
            }
            if let Some(aggregate) = &def.spec.aggregate {
                let window = aggregate.retention_ms();
                let keep = retention.map_or(window, |r| r.min(window));
                table.tile_retention.insert(def.id, keep);
                table.dedupe_horizon = table.dedupe_horizon.max(window);
            }
        }
        table
    }

    /// Whether a key/value of a stream column family is past its limit at `now`.
    pub fn expired(&self, key: &[u8], value: &[u8], now: TimestampMs) -> bool {
        match decode_stream_key(key) {
            Ok(StreamKey::Value(fid)) => {
                let (Some(ttl), Ok(event_time)) =
                    (self.value_ttl.get(&fid), decode_event_time(value))
                else {
                    return false;
                };
                now.saturating_sub(event_time) > *ttl
            }
            Ok(StreamKey::Tile(fid, start)) => self
                .tile_retention
                .get(&fid)
                .is_some_and(|keep| now.saturating_sub(start) > *keep),
            Err(_) => false,
        }
    }

    /// Whether an event-id marker (value: event time) is past the dedupe horizon.
    pub fn marker_expired(&self, value: &[u8], now: TimestampMs) -> bool {
        let Ok(raw) = <[u8; 8]>::try_from(value) else {
            return false;
        };
        now.saturating_sub(i64::from_le_bytes(raw)) > self.dedupe_horizon
    }
}

/// The shared, swappable table.
pub type SharedRetention = Arc<ArcSwap<RetentionTable>>;

/// What a filter's column family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// A `stream.{group}` column family: latest values and tiles.
    Stream,
    /// `stream_events`: event-id markers.
    Markers,
}

/// Creates one [`RetentionFilter`] per compaction.
pub struct RetentionFilterFactory {
    table: SharedRetention,
    kind: FilterKind,
}

impl RetentionFilterFactory {
    /// A factory reading limits from `table`.
    pub fn new(table: SharedRetention, kind: FilterKind) -> Self {
        RetentionFilterFactory { table, kind }
    }
}

impl CompactionFilterFactory for RetentionFilterFactory {
    type Filter = RetentionFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> RetentionFilter {
        RetentionFilter {
            table: self.table.load_full(),
            now: now_ms(),
            kind: self.kind,
        }
    }

    fn name(&self) -> &CStr {
        c"featstore.stream_retention.v2"
    }
}

/// Drops expired entries during one compaction.
pub struct RetentionFilter {
    table: Arc<RetentionTable>,
    now: TimestampMs,
    kind: FilterKind,
}

impl CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> CompactionDecision {
        let expired = match self.kind {
            FilterKind::Stream => self.table.expired(key, value, self.now),
            FilterKind::Markers => self.table.marker_expired(value, self.now),
        };
        if expired {
            CompactionDecision::Remove
        } else {
            CompactionDecision::Keep
        }
    }

    fn name(&self) -> &CStr {
        c"featstore.stream_retention.v2"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EntityKey;
    use crate::codec::stream::tile_key;
    use crate::codec::value::encode_value;
    use crate::types::Value;

    #[test]
    fn expiry_follows_the_table() {
        let table = RetentionTable {
            value_ttl: HashMap::from([(1, 1000)]),
            retention: HashMap::new(),
            tile_retention: HashMap::from([(2, 5000)]),
            dedupe_horizon: 100,
        };
        let entity = EntityKey::new(b"u1").expect("valid");
        let mut value = Vec::new();
        encode_value(&Value::Int64(1), 10_000, &mut value);
        assert!(!table.expired(&entity.feature_key(1), &value, 11_000));
        assert!(table.expired(&entity.feature_key(1), &value, 11_001));
        // No TTL: kept forever.
        assert!(!table.expired(&entity.feature_key(3), &value, i64::MAX));
        let tile = tile_key(&entity, 2, 10_000);
        assert!(!table.expired(&tile, &[0; 32], 15_000));
        assert!(table.expired(&tile, &[0; 32], 15_001));
        assert!(table.marker_expired(&0i64.to_le_bytes(), 101));
        assert!(!table.marker_expired(&0i64.to_le_bytes(), 100));
    }

    #[test]
    fn the_table_before_the_registry_is_known_removes_nothing() {
        let table = RetentionTable::default();
        let entity = EntityKey::new(b"u1").expect("valid");
        let mut value = Vec::new();
        encode_value(&Value::Int64(1), i64::MIN, &mut value);
        assert!(!table.expired(&entity.feature_key(1), &value, i64::MAX));
        assert!(!table.expired(&tile_key(&entity, 2, i64::MIN), &[0; 32], i64::MAX));
        assert!(!table.marker_expired(&i64::MIN.to_le_bytes(), i64::MAX));
        // The registry's table keeps markers for the minimum horizon, not forever.
        let registered = RetentionTable::from_registry(&Registry::default());
        assert_eq!(registered.dedupe_horizon, MIN_DEDUPE_HORIZON_MS);
    }
}
