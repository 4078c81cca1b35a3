//! Persistence of engine metadata in the `meta` column family: registry definitions,
//! the feature-id counter, the manifest and load records. All values are JSON, so an
//! operator can read them with `ldb`; see storage-format.md, "Meta column family".
//!
//! Callers serialize writers (the engine's admin lock); every write here is synced.

use std::collections::BTreeMap;

use rocksdb::{DB, IteratorMode, WriteBatch, WriteOptions};
use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;
use super::keyspace::{
    DEFINITION_PREFIX, MANIFEST_KEY, META_CF, NEXT_FEATURE_ID_KEY, STREAMED_PREFIX, definition_key,
    load_group_prefix, load_key, stats_group_prefix, stats_key, streamed_key,
};
use super::manifest::Manifest;
use crate::loader::LoadRecord;
use crate::registry::FeatureDefinition;
use crate::types::FeatureId;
use crate::validate::VersionStats;

/// Synced write options: metadata changes survive power loss once acknowledged.
pub fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

fn meta_cf(db: &DB) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>, StoreError> {
    db.cf_handle(META_CF)
        .ok_or_else(|| StoreError::CorruptMeta {
            key: META_CF.into(),
            reason: "column family missing".into(),
        })
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::MetaDecode {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value)
        .map_err(|e| StoreError::Internal(format!("encoding a metadata document: {e}")))
}

/// Reads every registered definition.
pub fn read_definitions(db: &DB) -> Result<Vec<FeatureDefinition>, StoreError> {
    let cf = meta_cf(db)?;
    let mut out = Vec::new();
    let start = DEFINITION_PREFIX.as_bytes();
    for item in db.iterator_cf(&cf, IteratorMode::From(start, rocksdb::Direction::Forward)) {
        let (key, value) = item?;
        if !key.starts_with(start) {
            break;
        }
        out.push(decode(&key, &value)?);
    }
    Ok(out)
}

/// Reads the next feature id to assign (1 if none was ever assigned).
pub fn read_next_feature_id(db: &DB) -> Result<FeatureId, StoreError> {
    let cf = meta_cf(db)?;
    match db.get_cf(&cf, NEXT_FEATURE_ID_KEY)? {
        None => Ok(1),
        Some(bytes) => {
            let raw: [u8; 4] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::CorruptMeta {
                        key: String::from_utf8_lossy(NEXT_FEATURE_ID_KEY).into_owned(),
                        reason: format!("{} bytes, expected 4", bytes.len()),
                    })?;
            Ok(FeatureId::from_le_bytes(raw))
        }
    }
}

/// Writes definitions and the id counter in one synced batch.
pub fn write_definitions(
    db: &DB,
    defs: &[FeatureDefinition],
    next_id: FeatureId,
) -> Result<(), StoreError> {
    let cf = meta_cf(db)?;
    let mut batch = WriteBatch::default();
    for def in defs {
        batch.put_cf(
            &cf,
            definition_key(&def.spec.name, def.spec.version),
            encode(def)?,
        );
    }
    batch.put_cf(&cf, NEXT_FEATURE_ID_KEY, next_id.to_le_bytes());
    db.write_opt(batch, &synced())?;
    Ok(())
}

/// Reads the manifest (empty if none was written yet).
pub fn read_manifest(db: &DB) -> Result<Manifest, StoreError> {
    let cf = meta_cf(db)?;
    match db.get_cf(&cf, MANIFEST_KEY)? {
        None => Ok(Manifest::default()),
        Some(bytes) => {
            let manifest: Manifest = decode(MANIFEST_KEY, &bytes)?;
            let supported = super::manifest::MANIFEST_OLDEST_READABLE
                ..=super::manifest::MANIFEST_FORMAT_VERSION;
            if !supported.contains(&manifest.format_version) {
                return Err(StoreError::CorruptMeta {
                    key: "manifest".into(),
                    reason: format!(
                        "format version {} is not supported by this build (reads {} to {}): \
                         the data directory was written by a newer featstore; run that version",
                        manifest.format_version,
                        supported.start(),
                        supported.end()
                    ),
                });
            }
            // Rewritten at the current version with the next change; version 1 entries
            // keep their meaning (no `family`: layout 1).
            let mut manifest = manifest;
            manifest.format_version = super::manifest::MANIFEST_FORMAT_VERSION;
            Ok(manifest)
        }
    }
}

/// Writes the manifest, and optionally a load record, in one synced batch.
pub fn write_manifest(
    db: &DB,
    manifest: &Manifest,
    record: Option<&LoadRecord>,
) -> Result<(), StoreError> {
    let cf = meta_cf(db)?;
    let mut batch = WriteBatch::default();
    batch.put_cf(&cf, MANIFEST_KEY, encode(manifest)?);
    if let Some(record) = record {
        batch.put_cf(
            &cf,
            load_key(&record.group, record.version),
            encode(record)?,
        );
    }
    db.write_opt(batch, &synced())?;
    Ok(())
}

/// Every `(key without prefix, value)` under `prefix`.
pub fn read_prefix(db: &DB, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let cf = meta_cf(db)?;
    let mut out = Vec::new();
    for item in db.iterator_cf(
        &cf,
        IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward),
    ) {
        let (key, value) = item?;
        let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
            break;
        };
        out.push((String::from_utf8_lossy(rest).into_owned(), value.to_vec()));
    }
    Ok(out)
}

/// Writes one key (synced).
pub fn put(db: &DB, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let cf = meta_cf(db)?;
    db.put_cf_opt(&cf, key, value, &synced())?;
    Ok(())
}

/// Load records of `group`, by version.
pub fn read_load_records(db: &DB, group: &str) -> Result<BTreeMap<u64, LoadRecord>, StoreError> {
    let cf = meta_cf(db)?;
    let prefix = load_group_prefix(group);
    let mut out = BTreeMap::new();
    for item in db.iterator_cf(
        &cf,
        IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward),
    ) {
        let (key, value) = item?;
        if !key.starts_with(prefix.as_bytes()) {
            break;
        }
        let record: LoadRecord = decode(&key, &value)?;
        out.insert(record.version, record);
    }
    Ok(out)
}

/// Writes the statistics of a version (synced), and deletes those of the group's
/// versions older than the newest `keep`.
pub fn write_stats(db: &DB, stats: &VersionStats, keep: usize) -> Result<(), StoreError> {
    let cf = meta_cf(db)?;
    let mut batch = WriteBatch::default();
    batch.put_cf(&cf, stats_key(&stats.group, stats.version), encode(stats)?);
    let versions = stats_versions(db, &stats.group)?;
    let older: Vec<u64> = versions
        .iter()
        .copied()
        .filter(|v| *v != stats.version)
        .collect();
    let excess = (older.len() + 1).saturating_sub(keep.max(1));
    for version in older.iter().take(excess) {
        batch.delete_cf(&cf, stats_key(&stats.group, *version));
    }
    db.write_opt(batch, &synced())?;
    Ok(())
}

/// Deletes the statistics of `version` of `group` (synced).
pub fn delete_stats(db: &DB, group: &str, version: u64) -> Result<(), StoreError> {
    let cf = meta_cf(db)?;
    db.delete_cf_opt(&cf, stats_key(group, version), &synced())?;
    Ok(())
}

/// The versions of `group` that have statistics, ascending (keys only are decoded).
pub fn stats_versions(db: &DB, group: &str) -> Result<Vec<u64>, StoreError> {
    let cf = meta_cf(db)?;
    let prefix = stats_group_prefix(group);
    let mut out = Vec::new();
    let mut iter = db.raw_iterator_cf(&cf);
    iter.seek(prefix.as_bytes());
    while let Some(key) = iter.key() {
        let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
            break;
        };
        if let Some(v) = std::str::from_utf8(rest).ok().and_then(|t| t.parse().ok()) {
            out.push(v);
        }
        iter.next();
    }
    iter.status()?;
    Ok(out)
}

/// The statistics of `version` of `group`, if stored.
pub fn read_stats(db: &DB, group: &str, version: u64) -> Result<Option<VersionStats>, StoreError> {
    let cf = meta_cf(db)?;
    let key = stats_key(group, version);
    db.get_cf(&cf, &key)?
        .map(|bytes| decode(&key, &bytes))
        .transpose()
}

/// The load record of `version` of `group`, if stored.
pub fn read_load_record(
    db: &DB,
    group: &str,
    version: u64,
) -> Result<Option<LoadRecord>, StoreError> {
    let cf = meta_cf(db)?;
    let key = load_key(group, version);
    db.get_cf(&cf, &key)?
        .map(|bytes| decode(&key, &bytes))
        .transpose()
}

/// Writes a load record again (an override recorded after the load), synced.
pub fn write_load_record(db: &DB, record: &LoadRecord) -> Result<(), StoreError> {
    put(
        db,
        &load_key(&record.group, record.version),
        &encode(record)?,
    )
}

/// The features of each group that ever received a pushed value (see
/// [`STREAMED_PREFIX`]).
pub fn read_streamed_features(
    db: &DB,
) -> Result<BTreeMap<String, std::collections::BTreeSet<FeatureId>>, StoreError> {
    let mut out = BTreeMap::new();
    for (group, bytes) in read_prefix(db, STREAMED_PREFIX)? {
        let ids: std::collections::BTreeSet<FeatureId> = decode(&streamed_key(&group), &bytes)?;
        out.insert(group, ids);
    }
    Ok(out)
}

/// Persists (synced) the streamed features of `group`.
pub fn write_streamed_features(
    db: &DB,
    group: &str,
    features: &std::collections::BTreeSet<FeatureId>,
) -> Result<(), StoreError> {
    put(db, &streamed_key(group), &encode(features)?)
}
