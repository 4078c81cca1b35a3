//! Retention of a group's history records of format 1 (one record per value) and of
//! its stream records, judged by the history family's compaction filter
//! ([`super::rows::HistoryRetentionFactory`], which handles row records itself and
//! hands every other record to [`HistoryRetentionFilter`]): no read path ever scans
//! for expired records.
//!
//! With `horizon = now - retention`, a record is dropped only when no question about a
//! time at or after the horizon can need it:
//! * a batch record of a version older than a record of the same key already kept in
//!   this compaction whose version is at most the group's floor version (the smallest
//!   version served at any time since the horizon, [`super::GroupHistory::floor_version`]):
//!   every version served since then finds that newer record first;
//! * a stream record older (by event time, then write time) than a record of the same
//!   key already kept in this compaction that was written, and whose event lies, at or
//!   before the horizon: from the horizon on, that record always wins over it.
//!
//! Keys reach a filter in ascending order and a key's records are ordered newest
//! first, so the filter keeps one key's state at a time. A compaction that sees only
//! some of a key's records drops only what the records it saw prove unneeded, so
//! dropping is always safe; compactions reaching the bottom level eventually see them
//! all. Absence records are kept (an older value in a file outside the compaction could
//! otherwise show through). Until the store has read its history table, nothing is
//! dropped.
//!
//! Feature retention (a feature's `retention`, `crate::store::stream::retention`'s
//! table): with `cutoff = now - retention`, a stream record whose value's event time is
//! before the cutoff is dropped, and a batch record's value is replaced by an absence
//! record (its key, which holds no value, stays, so that an older version's record
//! never shows through for the version that had this one). Readers never return such a
//! value before the filter ran (the query layer judges retention at the wall clock).

use rocksdb::CompactionDecision;

use crate::codec::history::{ABSENT_VALUE, HistoryKind, decode_history_key};
use crate::codec::value::decode_event_time;
use crate::store::stream::retention::RetentionTable;
use crate::types::TimestampMs;

/// Drops unneeded history records during one compaction (see the module doc).
#[derive(Debug)]
pub struct HistoryRetentionFilter {
    /// The horizon and the floor version; `None`: drop nothing.
    limits: Option<(TimestampMs, Option<u64>)>,
    /// The feature key whose records are being visited.
    key: Vec<u8>,
    /// A batch record at or below the floor was kept for `key`.
    batch_covered: bool,
    /// A stream record written and true at or before the horizon was kept for `key`.
    stream_covered: bool,
    /// Feature retentions and the compaction's time; `None`: none apply.
    pub(super) features: Option<(std::sync::Arc<RetentionTable>, TimestampMs)>,
}

impl HistoryRetentionFilter {
    /// A filter with `limits` (the horizon and floor version), or one dropping nothing.
    pub fn new(limits: Option<(TimestampMs, Option<u64>)>) -> Self {
        HistoryRetentionFilter {
            limits,
            key: Vec::new(),
            batch_covered: false,
            stream_covered: false,
            features: None,
        }
    }

    /// Whether the record's value is past its feature's retention.
    fn past_retention(&self, key: &[u8], value: &[u8]) -> bool {
        let Some((table, now)) = &self.features else {
            return false;
        };
        let Ok((_, feature, _)) = decode_history_key(key) else {
            return false;
        };
        let Some(retention) = table.retention.get(&feature) else {
            return false;
        };
        value
            .get(1..)
            .filter(|_| value.first() == Some(&1))
            .and_then(|v| decode_event_time(v).ok())
            .is_some_and(|t| t < now.saturating_sub(*retention))
    }

    /// What to do with `key`/`value`: drop it, keep it, or (a batch value past its
    /// feature's retention) keep its key with an absence record.
    pub fn decide(&mut self, key: &[u8], value: &[u8]) -> CompactionDecision {
        if self.drops(key, value) {
            return CompactionDecision::Remove;
        }
        if self.past_retention(key, value) {
            return match decode_history_key(key) {
                Ok((_, _, HistoryKind::Batch { .. })) => CompactionDecision::Change(ABSENT_VALUE),
                _ => CompactionDecision::Remove,
            };
        }
        CompactionDecision::Keep
    }

    /// Whether the record `key`/`value` (visited in key order) can be dropped.
    pub fn drops(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some((horizon, floor)) = self.limits else {
            return false;
        };
        let Ok((fk, _, kind)) = decode_history_key(key) else {
            return false;
        };
        if fk != self.key.as_slice() {
            self.key.clear();
            self.key.extend_from_slice(fk);
            self.batch_covered = false;
            self.stream_covered = false;
        }
        match kind {
            HistoryKind::Batch { version } => {
                if self.batch_covered {
                    return true;
                }
                if floor.is_some_and(|floor| version <= floor) {
                    self.batch_covered = true;
                }
                false
            }
            HistoryKind::Stream {
                event_time,
                write_time,
            } => {
                if self.stream_covered {
                    return true;
                }
                let event_known = value
                    .get(1..)
                    .and_then(|v| decode_event_time(v).ok())
                    .is_some_and(|t| t == event_time);
                if event_known && write_time <= horizon && event_time <= horizon {
                    self.stream_covered = true;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EntityKey;
    use crate::codec::history::{ABSENT_VALUE, batch_key, encode_present, stream_key};
    use crate::codec::value::encode_value;
    use crate::types::Value;

    fn present(t: TimestampMs) -> Vec<u8> {
        let mut encoded = Vec::new();
        encode_value(&Value::Int64(1), t, &mut encoded);
        let mut out = Vec::new();
        encode_present(&encoded, &mut out);
        out
    }

    #[test]
    fn drops_only_what_a_kept_record_shadows_since_the_horizon() {
        let fk = EntityKey::new(b"u").expect("entity").feature_key(1);
        let other = EntityKey::new(b"v").expect("entity").feature_key(1);
        let mut filter = HistoryRetentionFilter::new(Some((1000, Some(3))));
        // Versions 5 and 4 were served after the horizon; 3 is the floor.
        assert!(!filter.drops(&batch_key(&fk, 5), &present(10)));
        assert!(!filter.drops(&batch_key(&fk, 4), ABSENT_VALUE));
        assert!(
            !filter.drops(&batch_key(&fk, 2), &present(10)),
            "the floor's value"
        );
        assert!(filter.drops(&batch_key(&fk, 1), &present(5)));
        // Stream: the first record written and true before the horizon stays, older go.
        assert!(!filter.drops(&stream_key(&fk, 2000, 2000), &present(2000)));
        assert!(
            !filter.drops(&stream_key(&fk, 900, 1500), &present(900)),
            "written later"
        );
        assert!(!filter.drops(&stream_key(&fk, 800, 900), &present(800)));
        assert!(filter.drops(&stream_key(&fk, 700, 950), &present(700)));
        // The next key starts afresh.
        assert!(!filter.drops(&batch_key(&other, 1), &present(5)));
        // Without limits nothing goes.
        let mut none = HistoryRetentionFilter::new(None);
        assert!(!none.drops(&batch_key(&fk, 1), &present(5)));
    }
}
