//! The engine's names: every column family, every meta key and every file the store
//! directory holds, in one place. This module mirrors storage-format.md ("Directory
//! layout", "Column families", "Meta column family"); a name changes here and there
//! together, with a format version.
//!
//! It owns names only: how bytes under those names are encoded lives in
//! `featstore_format::codec` (keys and values of batch and stream families) and in
//! `super::meta` (the JSON documents of the meta family).
//!
//! Invariants:
//! * Column family names are disjoint by prefix: `meta`, `stream_events`, `stream.*`,
//!   `versions.*`, `history.*` and the legacy `batch.*` never collide, because group names cannot be
//!   empty and each prefix ends in a dot (or is a fixed name without one).
//! * Meta keys are disjoint by prefix in the same way; fixed keys (`manifest`,
//!   `registry/next_id`) are not prefixes of any prefixed key.

use std::path::{Path, PathBuf};

// ---- Directory layout ------------------------------------------------------------

/// The RocksDB database, under the store directory.
pub const DB_DIR: &str = "db";
/// Scratch space of running loads (sorted runs, SST files before ingestion); emptied at
/// open.
pub const SCRATCH_DIR: &str = "tmp";
/// Hot segment files of batch versions.
pub const SEGMENTS_DIR: &str = "segments";
/// The audit log's directory (`crate::audit`; docs/audit.md).
pub const AUDIT_DIR: &str = "audit";
/// Bodies uploaded to HTTP loads, each kept while its load runs.
pub const UPLOADS_DIR: &str = "uploads";

/// The database directory of the store in `dir`.
pub fn db_dir(dir: &Path) -> PathBuf {
    dir.join(DB_DIR)
}

/// The scratch directory of the store in `dir`.
pub fn scratch_dir(dir: &Path) -> PathBuf {
    dir.join(SCRATCH_DIR)
}

/// The scratch directory of one load: `tmp/{group}.v{version}`.
pub fn load_scratch_dir(dir: &Path, group: &str, version: u64) -> PathBuf {
    scratch_dir(dir).join(format!("{group}.v{version}"))
}

/// The hot segment directory of the store in `dir`.
pub fn segments_dir(dir: &Path) -> PathBuf {
    dir.join(SEGMENTS_DIR)
}

/// The file name of the hot segment of the version called `version_name` (see
/// [`batch_cf_name`]): `{version_name}.seg`.
pub fn segment_file_name(version_name: &str) -> String {
    format!("{version_name}.seg")
}

// ---- Column families -------------------------------------------------------------

/// Column family holding the registry, manifest, load records and access counts.
pub const META_CF: &str = "meta";
/// Prefix of the layout-1 batch column family names, one per version:
/// `batch.{group}.v{version}`. Stores written before layout 2 keep serving from them
/// until those versions are dropped; no new one is created.
pub const BATCH_CF_PREFIX: &str = "batch.";
/// Prefix of the versions column family names, one per group: `versions.{group}`.
pub const VERSIONS_CF_PREFIX: &str = "versions.";
/// Prefix of stream column family names, one per pushed group: `stream.{group}`.
pub const STREAM_CF_PREFIX: &str = "stream.";
/// Column family of event-id markers (push idempotence).
pub const EVENTS_CF: &str = "stream_events";
/// Prefix of history column family names, one per group: `history.{group}` (every value
/// ever servable, see `super::history`).
pub const HISTORY_CF_PREFIX: &str = "history.";

/// The name of `version` of `group`: `batch.{group}.v{version}`. In layout 1 it is the
/// column family holding the version; in layout 2 it still names the version (manifest
/// entries, segment files, view maps), while the data lives in
/// [`versions_cf_name`] under the version's key prefix.
pub fn batch_cf_name(group: &str, version: u64) -> String {
    format!("{BATCH_CF_PREFIX}{group}.v{version}")
}

/// The column family that holds every batch version of `group` (layout 2).
pub fn versions_cf_name(group: &str) -> String {
    format!("{VERSIONS_CF_PREFIX}{group}")
}

/// The column family holding `group`'s streamed values.
pub fn stream_cf_name(group: &str) -> String {
    format!("{STREAM_CF_PREFIX}{group}")
}

/// The column family holding `group`'s history.
pub fn history_cf_name(group: &str) -> String {
    format!("{HISTORY_CF_PREFIX}{group}")
}

/// What a column family name says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyRole<'a> {
    /// `meta`.
    Meta,
    /// `stream_events`.
    Events,
    /// `stream.{group}`.
    Stream(&'a str),
    /// `versions.{group}` (layout 2).
    Versions(&'a str),
    /// `batch.{group}.v{n}` (layout 1).
    LegacyBatch,
    /// `history.{group}`.
    History(&'a str),
    /// `default` or a name this version of the engine does not write.
    Other,
}

/// Classifies a column family by its name.
pub fn family_role(name: &str) -> FamilyRole<'_> {
    if name == META_CF {
        FamilyRole::Meta
    } else if name == EVENTS_CF {
        FamilyRole::Events
    } else if let Some(group) = name.strip_prefix(STREAM_CF_PREFIX) {
        FamilyRole::Stream(group)
    } else if let Some(group) = name.strip_prefix(VERSIONS_CF_PREFIX) {
        FamilyRole::Versions(group)
    } else if name.starts_with(BATCH_CF_PREFIX) {
        FamilyRole::LegacyBatch
    } else if let Some(group) = name.strip_prefix(HISTORY_CF_PREFIX) {
        FamilyRole::History(group)
    } else {
        FamilyRole::Other
    }
}

// ---- Meta keys -------------------------------------------------------------------

/// Key of the manifest document.
pub const MANIFEST_KEY: &[u8] = b"manifest";
/// Key of the next feature id to assign (`u32` little-endian).
pub const NEXT_FEATURE_ID_KEY: &[u8] = b"registry/next_id";
/// Prefix of definition keys: `registry/def/{name}@{version:010}`.
pub const DEFINITION_PREFIX: &str = "registry/def/";
/// Prefix of composite entity types: `registry/entity/{name}`.
pub const ENTITY_TYPE_PREFIX: &str = "registry/entity/";
/// Prefix of on-demand features: `registry/on_demand/{name}@{version:010}`.
pub const ON_DEMAND_PREFIX: &str = "registry/on_demand/";
/// Prefix of feature services: `registry/service/{name}@{version:010}`.
pub const SERVICE_PREFIX: &str = "registry/service/";
/// Prefix of load record keys: `load/{group}/{version:020}`.
pub const LOAD_PREFIX: &str = "load/";
/// Prefix of version statistics: `stats/{group}/{version:020}` -> JSON
/// (`crate::validate::VersionStats`). Kept for the newest [`STATS_KEPT`] versions of a
/// group, dropped versions included (the drift rules compare against them).
pub const STATS_PREFIX: &str = "stats/";
/// Versions of a group whose statistics are kept.
pub const STATS_KEPT: usize = 30;
/// Prefix of the per-group sets of features that ever received a pushed value:
/// `stream/features/{group}` -> JSON list of feature ids.
pub const STREAMED_PREFIX: &str = "stream/features/";
/// Prefix of persisted access counts: `access/{entity_type}`.
pub const ACCESS_PREFIX: &str = "access/";
/// Prefix of the batch versions recorded in a group's history:
/// `history/version/{group}/{version:020}` -> the time (`i64` ms little-endian) the
/// version's changes were committed to `history.{group}`. Records of versions without
/// such a key (a load that failed after writing them) are ignored.
pub const HISTORY_VERSION_PREFIX: &str = "history/version/";
/// Prefix of a group's activations: `history/activation/{group}` -> JSON list of
/// `{"at_ms", "version"}` in the order they happened.
pub const HISTORY_ACTIVATION_PREFIX: &str = "history/activation/";

/// Key the stream writer's recovery probe writes in the `default` column family (value:
/// the probe time, `i64` ms little-endian); nothing reads it.
pub const PROBE_KEY: &[u8] = b"featstore.stream_probe";

/// `{prefix}{name}@{version:010}`: the key of a versioned registry object.
pub fn versioned_key(prefix: &str, name: &str, version: u32) -> Vec<u8> {
    format!("{prefix}{name}@{version:010}").into_bytes()
}

/// The meta key of a definition.
pub fn definition_key(name: &str, version: u32) -> Vec<u8> {
    versioned_key(DEFINITION_PREFIX, name, version)
}

/// The meta key of a composite entity type.
pub fn entity_type_key(name: &str) -> Vec<u8> {
    format!("{ENTITY_TYPE_PREFIX}{name}").into_bytes()
}

/// The meta key prefix of `group`'s load records: `load/{group}/`.
pub fn load_group_prefix(group: &str) -> String {
    format!("{LOAD_PREFIX}{group}/")
}

/// The meta key of a load record.
pub fn load_key(group: &str, version: u64) -> Vec<u8> {
    format!("{LOAD_PREFIX}{group}/{version:020}").into_bytes()
}

/// The meta key prefix of `group`'s version statistics: `stats/{group}/`.
pub fn stats_group_prefix(group: &str) -> String {
    format!("{STATS_PREFIX}{group}/")
}

/// The meta key of the statistics of `version` of `group`.
pub fn stats_key(group: &str, version: u64) -> Vec<u8> {
    format!("{STATS_PREFIX}{group}/{version:020}").into_bytes()
}

/// The meta key of `group`'s streamed-feature set.
pub fn streamed_key(group: &str) -> Vec<u8> {
    format!("{STREAMED_PREFIX}{group}").into_bytes()
}

/// The meta key prefix of the versions recorded in `group`'s history.
pub fn history_version_prefix(group: &str) -> String {
    format!("{HISTORY_VERSION_PREFIX}{group}/")
}

/// The meta key of `version` of `group` recorded in history.
pub fn history_version_key(group: &str, version: u64) -> Vec<u8> {
    format!("{HISTORY_VERSION_PREFIX}{group}/{version:020}").into_bytes()
}

/// The meta key of `group`'s activations.
pub fn history_activation_key(group: &str) -> Vec<u8> {
    format!("{HISTORY_ACTIVATION_PREFIX}{group}").into_bytes()
}

/// The meta key of `entity_type`'s access counts.
pub fn access_key(entity_type: &str) -> Vec<u8> {
    format!("{ACCESS_PREFIX}{entity_type}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_documented_ones() {
        assert_eq!(batch_cf_name("user_stats", 3), "batch.user_stats.v3");
        assert_eq!(versions_cf_name("user_stats"), "versions.user_stats");
        assert_eq!(stream_cf_name("user_stats"), "stream.user_stats");
        assert_eq!(segment_file_name("batch.g.v2"), "batch.g.v2.seg");
        assert_eq!(definition_key("ctr", 2), b"registry/def/ctr@0000000002");
        assert_eq!(load_key("g", 7), b"load/g/00000000000000000007");
        assert_eq!(streamed_key("g"), b"stream/features/g");
        assert_eq!(stats_key("g", 7), b"stats/g/00000000000000000007");
        assert_eq!(stats_group_prefix("g"), "stats/g/");
        assert_eq!(access_key("user"), b"access/user");
        assert_eq!(history_cf_name("g"), "history.g");
        assert_eq!(
            history_version_key("g", 7),
            b"history/version/g/00000000000000000007"
        );
        assert_eq!(history_activation_key("g"), b"history/activation/g");
        assert_eq!(
            entity_type_key("user_product"),
            b"registry/entity/user_product"
        );
    }

    #[test]
    fn roles_follow_the_prefixes() {
        assert_eq!(family_role("meta"), FamilyRole::Meta);
        assert_eq!(family_role("stream_events"), FamilyRole::Events);
        assert_eq!(family_role("stream.g"), FamilyRole::Stream("g"));
        assert_eq!(family_role("versions.g"), FamilyRole::Versions("g"));
        assert_eq!(family_role("batch.g.v1"), FamilyRole::LegacyBatch);
        assert_eq!(family_role("history.g"), FamilyRole::History("g"));
        assert_eq!(family_role("default"), FamilyRole::Other);
    }
}
