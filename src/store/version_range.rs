//! The key range of one batch version inside its group's versions column family
//! (layout 2), and the deletion of that range once nothing can read it.
//!
//! Owns [`VersionRange`]. The store holds one for every version the manifest names;
//! each read view holds the ranges of the versions active in it. Dropping a version
//! marks its range doomed and releases the store's hold; the range is deleted when the
//! last holder lets go, so a reader that took its view before the drop finishes reading
//! the version whole, as it would with a column family per version (RocksDB keeps a
//! dropped family's files until its last handle goes). The deletion is a range
//! tombstone over `[prefix(v), prefix(v + 1))` followed by `DeleteFilesInRange`, which
//! unlinks the version's SST files at once (each load's files hold only its version).
//!
//! Invariant: a range is deleted only when doomed, and doomed only after the manifest
//! without the version is durable, so a crash leaves either a named version or an
//! orphan range that the store deletes at the next open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::DB;

use featstore_format::codec::row::{RowSchema, SCHEMA_KEY};

use crate::codec::key::VersionPrefix;

/// One layout-2 version's key range; see the module docs.
pub struct VersionRange {
    db: Arc<DB>,
    family: String,
    prefix: VersionPrefix,
    /// The row schema of a layout-3 version (one row per entity); `None`: one key per
    /// value (layout 2).
    schema: Option<Arc<RowSchema>>,
    doomed: AtomicBool,
}

impl std::fmt::Debug for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRange")
            .field("family", &self.family)
            .field("prefix", &self.prefix)
            .field("doomed", &self.doomed.load(Ordering::Relaxed))
            .finish()
    }
}

impl VersionRange {
    /// The range of the version with `prefix` in `family`, holding rows of `schema`
    /// (layout 3) or, without one, one key per value.
    pub fn new(
        db: Arc<DB>,
        family: impl Into<String>,
        prefix: VersionPrefix,
        schema: Option<Arc<RowSchema>>,
    ) -> Arc<Self> {
        Arc::new(VersionRange {
            db,
            family: family.into(),
            prefix,
            schema,
            doomed: AtomicBool::new(false),
        })
    }

    /// The row schema of a layout-3 version.
    pub fn schema(&self) -> Option<&Arc<RowSchema>> {
        self.schema.as_ref()
    }

    /// The versions column family holding the range.
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The version number of the range.
    pub fn version(&self) -> Option<u64> {
        crate::codec::key::version_of_key(self.prefix.as_bytes())
    }

    /// Deletes the range when the last holder lets go (now, if nobody else holds it).
    pub fn doom(&self) {
        self.doomed.store(true, Ordering::Release);
    }

    /// Deletes `[prefix, next prefix)` of `family` now: a range tombstone, then the
    /// files wholly inside the range. Idempotent.
    pub fn delete_now(db: &DB, family: &str, prefix: VersionPrefix) -> Result<(), rocksdb::Error> {
        let Some(cf) = db.cf_handle(family) else {
            return Ok(());
        };
        let from = prefix.as_bytes();
        // The last version number has no successor prefix: a bound above every key of
        // it (prefix, then 0xFF past any entity key length) is used instead.
        let to: Vec<u8> = match prefix.upper_bound() {
            Some(upper) => upper.to_vec(),
            None => [from, &[0xFF; 4][..]].concat(),
        };
        db.delete_range_cf(&cf, from, &to)?;
        db.delete_file_in_range_cf(&cf, from, &to)?;
        Ok(())
    }
}

/// The row schema of the version under `prefix` in `cf` (its schema record, which a
/// layout-3 load writes first), or `None` for a version without one (one key per
/// value). A record that does not decode is a corrupt store.
pub fn read_row_schema(
    db: &DB,
    cf: &impl rocksdb::AsColumnFamilyRef,
    prefix: VersionPrefix,
) -> Result<Option<RowSchema>, super::StoreError> {
    let key = [prefix.as_bytes(), SCHEMA_KEY].concat();
    let Some(bytes) = db.get_pinned_cf(cf, &key)? else {
        return Ok(None);
    };
    RowSchema::decode(&bytes)
        .map(Some)
        .map_err(|e| super::StoreError::CorruptMeta {
            key: format!(
                "schema record of version {}",
                crate::codec::key::version_of_key(prefix.as_bytes()).unwrap_or_default()
            ),
            reason: e.to_string(),
        })
}

impl Drop for VersionRange {
    fn drop(&mut self) {
        if !self.doomed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = Self::delete_now(&self.db, &self.family, self.prefix) {
            // The manifest no longer names the version: the next open deletes it.
            tracing::error!(
                family = self.family.as_str(),
                error = %e,
                "could not delete a dropped version's keys; they are deleted at next open"
            );
        }
    }
}
