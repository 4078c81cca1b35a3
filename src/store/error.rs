//! Errors of the storage engine. Read errors are a separate, cheap enum because they are
//! answered on the hot path and mapped to HTTP 4xx by the server.

use crate::codec::CodecError;
use crate::loader::LoadError;
use crate::registry::RegistryError;
use crate::registry::entity::EntityIdError;

/// An engine operation (open, registry change, load, version management) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Another process holds the store's directory (RocksDB allows one process per
    /// directory): typically a running server.
    #[error("the data directory {} is in use by another process", dir.display())]
    DirectoryInUse {
        /// The store's directory.
        dir: std::path::PathBuf,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A registry change was refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No feature is registered in this group.
    #[error("unknown feature group `{0}`: register its features first")]
    UnknownGroup(String),
    /// The group has no such version.
    #[error("group `{group}` has no version {version}")]
    UnknownVersion {
        /// Group.
        group: String,
        /// Version asked for.
        version: u64,
    },
    /// The version failed its validation; activating it needs a forced activation.
    #[error(
        "group `{group}` version {version} failed validation ({failures}); activate it with force, saying who and why"
    )]
    ValidationFailed {
        /// Group.
        group: String,
        /// Version.
        version: u64,
        /// The failing findings, in words.
        failures: String,
    },
    /// A forced activation without who asked or why.
    #[error("a forced activation needs who asked (`by`) and why (`reason`)")]
    ForceNeedsReason,
    /// The version exists but is not ready to serve.
    #[error("group `{group}` version {version} is not ready (still loading)")]
    VersionNotReady {
        /// Group.
        group: String,
        /// Version.
        version: u64,
    },
    /// Rollback was asked but no earlier version remains.
    #[error("group `{0}` has no previous version to roll back to")]
    NoPreviousVersion(String),
    /// A per-entity deletion was refused or failed.
    #[error(transparent)]
    Erase(#[from] super::erase::EraseError),
    /// A batch load failed; nothing of it became visible.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A hot segment could not be built, or a segment file is corrupt.
    #[error("hot segment {0}")]
    Segment(String),
    /// A [`crate::StoreConfig`] value is out of range; the message names the setting.
    #[error("invalid store config: {0}")]
    InvalidConfig(String),
    /// An internal invariant broke (a bug, not bad input or a storage failure); the
    /// message says which.
    #[error("internal error: {0}")]
    Internal(String),
    /// A metadata document in the `meta` column family does not decode.
    #[error("corrupt metadata at `{key}`: {source}")]
    MetaDecode {
        /// Meta key.
        key: String,
        /// The JSON decoder's error.
        source: serde_json::Error,
    },
    /// A stored batch value does not decode.
    #[error("corrupt stored value in {what}: {source}")]
    CorruptValue {
        /// Where it was read (group and version).
        what: String,
        /// The codec's error.
        source: CodecError,
    },
    /// Metadata in the `meta` column family is inconsistent (a missing family, an
    /// unsupported format version, a manifest naming what does not exist).
    #[error("corrupt metadata at `{key}`: {reason}")]
    CorruptMeta {
        /// Meta key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    /// A registry change refused as invalid or incompatible.
    pub(crate) fn invalid_definition(message: impl Into<String>) -> Self {
        StoreError::Registry(RegistryError::Invalid(message.into()))
    }

    /// A registry change refused because live objects use what it changes.
    pub(crate) fn in_use(message: impl Into<String>) -> Self {
        StoreError::Registry(RegistryError::InUse(message.into()))
    }

    /// A registry object that does not exist.
    pub(crate) fn not_registered(message: impl Into<String>) -> Self {
        StoreError::Registry(RegistryError::NotRegistered(message.into()))
    }
}

/// A read was refused or failed. Variants other than `Storage` and `Corrupt` are the
/// caller's mistake (HTTP 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No feature is registered for this entity type.
    #[error("unknown entity type `{0}`")]
    UnknownEntityType(String),
    /// No feature of this name (or name@version) is registered.
    #[error("unknown feature `{0}`")]
    UnknownFeature(String),
    /// The feature describes another entity type.
    #[error("feature `{feature}` belongs to entity type `{expected}`, not `{requested}`")]
    WrongEntityType {
        /// Feature as requested.
        feature: String,
        /// Its registered entity type.
        expected: String,
        /// The entity type of the request.
        requested: String,
    },
    /// The entity id is not a valid id of its entity type (empty, too long, not UTF-8,
    /// or a composite id without exactly its type's components).
    #[error(transparent)]
    InvalidEntityId(#[from] EntityIdError),
    /// The request names no feature.
    #[error("no feature names given")]
    NoFeatures,
    /// The caller's read guard refused a feature of the read (see
    /// `crate::query::guard`): nothing was read.
    #[error(transparent)]
    Denied(#[from] crate::query::guard::ReadDenied),
    /// RocksDB failed.
    #[error("storage error: {0}")]
    Storage(#[source] rocksdb::Error),
    /// An internal invariant of the read path broke (a bug, not bad input or a storage
    /// failure); the message says which.
    #[error("internal error: {0}")]
    Internal(String),
    /// An as-of or point-in-time read asked for a windowed aggregate, whose tiles the
    /// history does not record.
    #[error("feature `{0}` is a windowed aggregate; its past values are not in the history")]
    NotInHistory(String),
    /// A stored value does not decode.
    #[error("corrupt value for feature `{feature}`: {source}")]
    Corrupt {
        /// Feature.
        feature: String,
        /// Decoding error.
        source: CodecError,
    },
}

impl ReadError {
    /// True when the caller, not the store, is at fault.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            ReadError::Storage(_) | ReadError::Corrupt { .. } | ReadError::Internal(_)
        )
    }
}
