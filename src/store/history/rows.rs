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
//!   one (a record only partly covered is kept whole; only feature retention, below,
//!   rewrites a record);
//! * a format-1 batch record of a covered feature with an older version is dropped;
//! * every other record goes to [`super::retention::HistoryRetentionFilter`], which
//!   also applies feature retention to them.
//!
//! Feature retention (a feature's `retention`): a row record that is kept but holds a
//! value whose event time is before `now - retention` is rewritten with an absence in
//! that value's place (the entry stays, so the record still shadows older records of
//! that feature for its version, exactly as a batch record turned into an absence
//! record does in [`super::retention`]); readers never return such a value before the
//! filter ran (the query layer judges retention at the wall clock).
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
use crate::codec::history::{
    HistoryKind, RowRecord, RowRecordWriter, decode_history_key, decode_row_key,
};
use crate::codec::key::entity_prefix_len;
use crate::codec::value::decode_event_time;
use crate::store::stream::retention::{RetentionTable, SharedRetention};
use crate::types::{FeatureId, TimestampMs, now_ms};

/// The name of the history families' compaction filter.
pub const FILTER_NAME: &CStr = c"featstore.history_retention.v3";

/// Creates one [`RowRetentionFilter`] per compaction of `history.{group}`.
pub struct HistoryRetentionFactory {
    shared: SharedHistory,
    features: SharedRetention,
    group: String,
}

impl HistoryRetentionFactory {
    /// A factory for `group`'s history family, reading facts from `shared` and feature
    /// retentions from `features`.
    pub fn new(shared: SharedHistory, features: SharedRetention, group: &str) -> Self {
        HistoryRetentionFactory {
            shared,
            features,
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
        let mut filter = RowRetentionFilter::new(facts);
        filter.set_feature_retention(self.features.load_full(), now_ms());
        filter
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
    /// Feature retentions and the compaction's time; `None`: none apply.
    features: Option<(std::sync::Arc<RetentionTable>, TimestampMs)>,
    /// The last rewritten row record.
    rewritten: RowRecordWriter,
    /// Its bytes, handed to RocksDB by [`CompactionFilter::filter`].
    changed: crate::store::changed_value::ChangedValue,
    /// Scratch for one stored value.
    stored: Vec<u8>,
}

/// What the filter does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowDecision {
    /// Keep it as it is.
    Keep,
    /// Drop it.
    Remove,
    /// Replace its value with the filter's [`RowRetentionFilter::rewritten`] bytes.
    Rewrite,
    /// Replace its value with an absence record (a per-value batch record past its
    /// feature's retention).
    Absent,
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
            features: None,
            rewritten: RowRecordWriter::default(),
            changed: Default::default(),
            stored: Vec::new(),
        }
    }

    /// Applies `table`'s feature retentions as of `now` (to row records here, to the
    /// other records through [`HistoryRetentionFilter`]).
    pub fn set_feature_retention(
        &mut self,
        table: std::sync::Arc<RetentionTable>,
        now: TimestampMs,
    ) {
        self.per_value.features = Some((table.clone(), now));
        self.features = Some((table, now));
    }

    /// The bytes of the last [`RowDecision::Rewrite`].
    pub fn rewritten(&self) -> &[u8] {
        self.rewritten.bytes()
    }

    /// What to do with `key`/`value` (visited in key order): [`Self::drops`], then
    /// feature retention.
    pub fn decide(&mut self, key: &[u8], value: &[u8]) -> RowDecision {
        if self.drops(key, value) {
            return RowDecision::Remove;
        }
        if decode_row_key(key).is_some() {
            return if self.rewrite_past_retention(value) {
                RowDecision::Rewrite
            } else {
                RowDecision::Keep
            };
        }
        match self.per_value.decide(key, value) {
            CompactionDecision::Remove => RowDecision::Remove,
            CompactionDecision::Change(_) => RowDecision::Absent,
            CompactionDecision::Keep => RowDecision::Keep,
        }
    }

    /// Writes into `rewritten` the row record `value` with an absence for each value
    /// past its feature's retention; false (and nothing written) when none is.
    fn rewrite_past_retention(&mut self, value: &[u8]) -> bool {
        let Some((table, now)) = &self.features else {
            return false;
        };
        if table.retention.is_empty() {
            return false;
        }
        let Ok(record) = RowRecord::parse(value) else {
            return false;
        };
        let past = |feature: FeatureId, stored: &[u8]| {
            table.retention.get(&feature).is_some_and(|keep| {
                decode_event_time(stored).is_ok_and(|t| t < now.saturating_sub(*keep))
            })
        };
        let mut any = false;
        for entry in record.iter() {
            let Ok((feature, Some(v))) = entry else {
                continue;
            };
            self.stored.clear();
            v.write_stored(&mut self.stored);
            if past(feature, &self.stored) {
                any = true;
                break;
            }
        }
        if !any {
            return false;
        }
        self.rewritten.clear();
        for entry in record.iter() {
            let Ok((feature, v)) = entry else {
                return false;
            };
            let kept = match v {
                Some(v) => {
                    self.stored.clear();
                    v.write_stored(&mut self.stored);
                    !past(feature, &self.stored)
                }
                None => false,
            };
            let pushed = self
                .rewritten
                .push(feature, kept.then_some(self.stored.as_slice()));
            if pushed.is_err() {
                return false;
            }
        }
        true
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
        match self.decide(key, value) {
            RowDecision::Keep => CompactionDecision::Keep,
            RowDecision::Remove => CompactionDecision::Remove,
            RowDecision::Absent => CompactionDecision::Change(crate::codec::history::ABSENT_VALUE),
            RowDecision::Rewrite => {
                let changed = self.changed.buffer_mut();
                changed.clear();
                changed.extend_from_slice(self.rewritten.bytes());
                self.changed.decision()
            }
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

    #[test]
    fn a_kept_row_record_loses_only_the_values_past_their_features_retention() {
        let e = EntityKey::new(b"u").expect("entity");
        let table = RetentionTable {
            // Feature 1 keeps 5 ms; the stored values' event time is 10.
            retention: std::collections::HashMap::from([(1, 5)]),
            ..RetentionTable::default()
        };
        let mut filter = RowRetentionFilter::new(Some((0, None, group(&[1]))));
        filter.set_feature_retention(std::sync::Arc::new(table), 100);
        let record = row(&[(1, Some(7)), (2, Some(8)), (3, None)]);
        assert_eq!(
            filter.decide(&row_key(e.as_bytes(), 1), &record),
            RowDecision::Rewrite
        );
        let rewritten = RowRecord::parse(filter.rewritten()).expect("a valid row record");
        let entries: Vec<_> = rewritten
            .iter()
            .map(|entry| {
                let (feature, value) = entry.expect("entry");
                (feature, value.map(|v| v.to_stored()))
            })
            .collect();
        assert_eq!(entries, [(1, None), (2, Some(stored(8))), (3, None)]);
        // Within retention (or without one), a record is kept as it is.
        let mut later = RowRetentionFilter::new(Some((0, None, group(&[1]))));
        later.set_feature_retention(
            std::sync::Arc::new(RetentionTable {
                retention: std::collections::HashMap::from([(1, 1000)]),
                ..RetentionTable::default()
            }),
            100,
        );
        assert_eq!(
            later.decide(&row_key(e.as_bytes(), 1), &record),
            RowDecision::Keep
        );
        let mut none = RowRetentionFilter::new(Some((0, None, group(&[1]))));
        assert_eq!(
            none.decide(&row_key(e.as_bytes(), 1), &record),
            RowDecision::Keep
        );
    }
}
