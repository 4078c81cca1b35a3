//! Retention in batch versions: the compaction filter of the `versions.{group}`
//! families (`featstore.version_retention.v1`), which deletes what a feature's
//! `retention` no longer allows a version to keep.
//!
//! * A layout-3 row (one key per entity) is removed when every field it holds (a value
//!   or an explicit null) belongs to a feature with a retention and is older than it.
//!   A row that still holds one retained field is kept whole: RocksDB's Rust binding
//!   lets a filter replace a value only with a static one, so a row is never rewritten
//!   without some of its fields; those fields are hidden from every read (the query
//!   layer judges retention) and leave with the version.
//! * A layout-2 value key (one key per value) is removed when older than its feature's
//!   retention. Schema records and layout-1 families are never touched.
//!
//! Owns [`SharedSchemas`] (each version's row schema, by family, published by the
//! store whenever its versions change) and the filter. Invariant: nothing is removed
//! without a known schema and retention table; until the store publishes them (at
//! open), the filter keeps everything.
//!
//! Thread-safety: the schema map and the retention table are immutable snapshots
//! behind `ArcSwap`s; each compaction loads them once.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use featstore_format::codec::row::{RowRef, RowSchema};
use featstore_format::segment::FieldValue;
use rocksdb::CompactionDecision;
use rocksdb::compaction_filter::CompactionFilter;
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};

use super::stream::retention::{RetentionTable, SharedRetention};
use super::version_range::VersionRange;
use crate::codec::key::{VERSION_PREFIX_LEN, entity_prefix_len, version_of_key};
use crate::codec::value::decode_event_time;
use crate::types::{FeatureId, TimestampMs, now_ms};

/// Row schemas of one family's versions, by version.
pub type FamilySchemas = Arc<HashMap<u64, Arc<RowSchema>>>;

/// Row schemas of every versions family, by family name.
pub type SharedSchemas = Arc<ArcSwap<HashMap<String, FamilySchemas>>>;

/// The schema map of the version `ranges` the store names now.
pub fn schemas_of<'r>(
    ranges: impl IntoIterator<Item = &'r Arc<VersionRange>>,
) -> HashMap<String, FamilySchemas> {
    let mut by_family: HashMap<String, HashMap<u64, Arc<RowSchema>>> = HashMap::new();
    for range in ranges {
        if let (Some(schema), Some(version)) = (range.schema(), range.version()) {
            by_family
                .entry(range.family().to_owned())
                .or_default()
                .insert(version, schema.clone());
        }
    }
    by_family
        .into_iter()
        .map(|(family, schemas)| (family, Arc::new(schemas)))
        .collect()
}

/// Creates one [`VersionRetentionFilter`] per compaction of one versions family.
pub struct VersionRetentionFactory {
    family: String,
    schemas: SharedSchemas,
    retention: SharedRetention,
}

impl VersionRetentionFactory {
    /// A factory for the versions family `family`.
    pub fn new(family: String, schemas: SharedSchemas, retention: SharedRetention) -> Self {
        VersionRetentionFactory {
            family,
            schemas,
            retention,
        }
    }
}

impl CompactionFilterFactory for VersionRetentionFactory {
    type Filter = VersionRetentionFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> VersionRetentionFilter {
        VersionRetentionFilter {
            schemas: self.schemas.load().get(&self.family).cloned(),
            table: self.retention.load_full(),
            now: now_ms(),
        }
    }

    fn name(&self) -> &CStr {
        c"featstore.version_retention.v1"
    }
}

/// Removes batch rows and values past retention during one compaction.
pub struct VersionRetentionFilter {
    schemas: Option<FamilySchemas>,
    table: Arc<RetentionTable>,
    now: TimestampMs,
}

impl VersionRetentionFilter {
    /// A filter judging at `now` with these schemas and limits.
    pub fn new(
        schemas: Option<FamilySchemas>,
        table: Arc<RetentionTable>,
        now: TimestampMs,
    ) -> Self {
        VersionRetentionFilter {
            schemas,
            table,
            now,
        }
    }

    fn expired(&self, feature: FeatureId, event_time: TimestampMs) -> bool {
        self.table
            .retention
            .get(&feature)
            .is_some_and(|r| event_time < self.now.saturating_sub(*r))
    }

    /// Whether the key/value of a versions family may be removed.
    pub fn removes(&self, key: &[u8], value: &[u8]) -> bool {
        if self.table.retention.is_empty() {
            return false;
        }
        let (Some(version), Some(rest)) = (version_of_key(key), key.get(VERSION_PREFIX_LEN..))
        else {
            return false;
        };
        let Some(entity_len) = entity_prefix_len(rest) else {
            return false;
        };
        if entity_len <= 2 {
            // A schema record (an entity key of id length 0).
            return false;
        }
        match rest.len() - entity_len {
            0 => {
                let Some(schema) = self.schemas.as_ref().and_then(|s| s.get(&version)) else {
                    return false;
                };
                let Ok(row) = RowRef::parse(schema, value) else {
                    return false;
                };
                let mut held = false;
                for (pos, field) in schema.fields().iter().enumerate() {
                    let time = match row.get(pos) {
                        Ok(FieldValue::Absent) => continue,
                        Ok(FieldValue::Null(t) | FieldValue::Present { event_time: t, .. }) => t,
                        Err(_) => return false,
                    };
                    if !self.expired(field.feature_id, time) {
                        return false;
                    }
                    held = true;
                }
                held
            }
            4 => {
                let Some(feature) = rest
                    .get(entity_len..)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                else {
                    return false;
                };
                decode_event_time(value).is_ok_and(|t| self.expired(feature, t))
            }
            _ => false,
        }
    }
}

impl CompactionFilter for VersionRetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> CompactionDecision {
        if self.removes(key, value) {
            CompactionDecision::Remove
        } else {
            CompactionDecision::Keep
        }
    }

    fn name(&self) -> &CStr {
        c"featstore.version_retention.v1"
    }
}
