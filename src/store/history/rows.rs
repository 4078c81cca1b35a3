//! Retention of row records (history record format 2: one record per changed entity
//! of a batch version, `crate::codec::history::RowRecord`) beside the per-value
//! records of format 1 and the stream records, which [`super::retention`] judges.
//!
//! [`HistoryRetentionFactory`] is the history families' compaction filter factory.
//! Its filter visits one entity's records in key order: its row records first, newest
//! version first (they carry feature id 0), then its per-value records feature by
//! feature. A row record of a recorded version at or below the floor version (the
//! smallest version served since the horizon) *covers* the features it names: every
//! version served since the horizon finds that record, or a newer one, first. So:
//! * a row record is dropped when every feature it names is covered by a newer kept
//!   one (a record only partly covered is kept whole: a compaction filter can drop a
//!   record but not rewrite it);
//! * a format-1 batch record of a covered feature with an older version is dropped;
//! * every other record goes to [`super::retention::HistoryRetentionFilter`].
//!
//! Only recorded versions cover (records of a load that failed after ingesting them
//! are ignored by readers, so they shadow nothing). As there, a compaction that sees
//! some of an entity's records drops only what those prove unneeded, and nothing is
//! dropped until the store has read its history table.

use std::ffi::CStr;

use rocksdb::CompactionDecision;
use rocksdb::compaction_filter::CompactionFilter;
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};

use super::retention::HistoryRetentionFilter;
use super::{GroupHistory, SharedHistory};
use crate::codec::history::{HistoryKind, RowRecord, decode_history_key, decode_row_key};
use crate::codec::key::entity_prefix_len;
use crate::types::{FeatureId, TimestampMs, now_ms};

/// The name of the history families' compaction filter.
pub const FILTER_NAME: &CStr = c"featstore.history_retention.v2";

/// Creates one [`RowRetentionFilter`] per compaction of `history.{group}`.
pub struct HistoryRetentionFactory {
    shared: SharedHistory,
    group: String,
}

impl HistoryRetentionFactory {
    /// A factory for `group`'s history family, reading facts from `shared`.
    pub fn new(shared: SharedHistory, group: &str) -> Self {
        HistoryRetentionFactory {
            shared,
            group: group.to_owned(),
        }
    }
}

impl CompactionFilterFactory for HistoryRetentionFactory {
    type Filter = RowRetentionFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> RowRetentionFilter {
        let table = self.shared.load();
        let facts = table.group(&self.group).filter(|_| table.loaded).map(|g| {
            let horizon = now_ms().saturating_sub(g.retention_ms);
            (horizon, g.floor_version(horizon), g.clone())
        });
        RowRetentionFilter::new(facts)
    }

    fn name(&self) -> &CStr {
        FILTER_NAME
    }
}

/// Drops unneeded history records during one compaction (see the module doc).
#[derive(Debug)]
pub struct RowRetentionFilter {
    /// The floor version and the group's facts; `None`: drop nothing.
    facts: Option<(Option<u64>, GroupHistory)>,
    /// Format-1 and stream records.
    per_value: HistoryRetentionFilter,
    /// The entity whose records are being visited.
    entity: Vec<u8>,
    /// Its covered features, with the version of the row record covering each,
    /// ascending by feature.
    covered: Vec<(FeatureId, u64)>,
}

impl RowRetentionFilter {
    /// A filter with the horizon, floor version and facts of the group, or one
    /// dropping nothing.
    pub fn new(facts: Option<(TimestampMs, Option<u64>, GroupHistory)>) -> Self {
        let limits = facts.as_ref().map(|(horizon, floor, _)| (*horizon, *floor));
        RowRetentionFilter {
            facts: facts.map(|(_, floor, group)| (floor, group)),
            per_value: HistoryRetentionFilter::new(limits),
            entity: Vec::new(),
            covered: Vec::new(),
        }
    }

    fn enter(&mut self, entity: &[u8]) {
        if entity != self.entity.as_slice() {
            self.entity.clear();
            self.entity.extend_from_slice(entity);
            self.covered.clear();
        }
    }

    fn covering(&self, feature: FeatureId) -> Option<u64> {
        self.covered
            .binary_search_by_key(&feature, |&(f, _)| f)
            .ok()
            .and_then(|i| self.covered.get(i))
            .map(|&(_, version)| version)
    }

    /// Whether the record `key`/`value` (visited in key order) can be dropped.
    pub fn drops(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some((floor, group)) = &self.facts else {
            return false;
        };
        if let Some((entity, version)) = decode_row_key(key) {
            let covers = group.is_recorded(version) && floor.is_some_and(|f| version <= f);
            self.enter(entity);
            let Ok(record) = RowRecord::parse(value) else {
                return false;
            };
            let mut shadowed = true;
            let mut named = Vec::new();
            for entry in record.iter() {
                let Ok((feature, _)) = entry else {
                    return false;
                };
                if self.covering(feature).is_none_or(|w| w <= version) {
                    shadowed = false;
                }
                named.push(feature);
            }
            if shadowed {
                return true;
            }
            if covers {
                for feature in named {
                    if let Err(at) = self.covered.binary_search_by_key(&feature, |&(f, _)| f) {
                        self.covered.insert(at, (feature, version));
                    }
                }
            }
            return false;
        }
        if let Ok((feature_key, feature, kind)) = decode_history_key(key)
            && let Some(entity_len) = entity_prefix_len(feature_key)
        {
            self.enter(feature_key.get(..entity_len).unwrap_or_default());
            if let HistoryKind::Batch { version } = kind
                && self.covering(feature).is_some_and(|w| w > version)
            {
                return true;
            }
        }
        self.per_value.drops(key, value)
    }
}

impl CompactionFilter for RowRetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> CompactionDecision {
        if self.drops(key, value) {
            CompactionDecision::Remove
        } else {
            CompactionDecision::Keep
        }
    }

    fn name(&self) -> &CStr {
        FILTER_NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EntityKey;
    use crate::codec::history::{RowRecordWriter, batch_key, encode_present, row_key};
    use crate::codec::value::encode_value;
    use crate::store::history::Activation;
    use crate::types::Value;

    fn stored(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&Value::Int64(v), 10, &mut out);
        out
    }

    fn row(entries: &[(FeatureId, Option<i64>)]) -> Vec<u8> {
        let mut w = RowRecordWriter::default();
        w.clear();
        for &(f, v) in entries {
            let value = v.map(stored);
            w.push(f, value.as_deref()).expect("push");
        }
        w.bytes().to_vec()
    }

    fn group(recorded: &[u64]) -> GroupHistory {
        GroupHistory {
            versions: recorded.iter().map(|&v| (v, 0)).collect(),
            activations: vec![Activation {
                at_ms: 0,
                version: 1,
            }],
            retention_ms: 0,
        }
    }

    #[test]
    fn a_row_record_goes_once_every_feature_it_names_is_covered() {
        let e = EntityKey::new(b"u").expect("entity");
        let other = EntityKey::new(b"v").expect("entity");
        // Floor 4; version 6 was never recorded (a failed load).
        let mut filter = RowRetentionFilter::new(Some((1000, Some(4), group(&[1, 2, 3, 4, 5]))));
        let k = |v| row_key(e.as_bytes(), v);
        assert!(!filter.drops(&k(6), &row(&[(1, Some(60)), (2, Some(60))])));
        assert!(
            !filter.drops(&k(5), &row(&[(1, Some(50))])),
            "above the floor"
        );
        assert!(!filter.drops(&k(4), &row(&[(1, Some(40))])), "the floor's");
        assert!(
            filter.drops(&k(3), &row(&[(1, None)])),
            "feature 1 covered by 4"
        );
        assert!(
            !filter.drops(&k(2), &row(&[(1, Some(20)), (2, Some(20))])),
            "feature 2 is not covered (6 does not count)"
        );
        assert!(filter.drops(&k(1), &row(&[(2, Some(10))])), "covered by 2");
        // Format-1 records of the entity: feature 1 is covered, feature 3 is not.
        let mut present = Vec::new();
        encode_present(&stored(5), &mut present);
        assert!(filter.drops(&batch_key(&e.feature_key(1), 1), &present));
        assert!(!filter.drops(&batch_key(&e.feature_key(3), 1), &present));
        // The next entity starts afresh.
        assert!(!filter.drops(&row_key(other.as_bytes(), 1), &row(&[(1, Some(1))])));
        // Without facts nothing goes.
        let mut none = RowRetentionFilter::new(None);
        assert!(!none.drops(&k(1), &row(&[(2, Some(10))])));
    }
}
