//! [`SegmentError`], the one error type of the segment layer, for both the writer and
//! the reader.
//!
//! Every variant carries the values that explain it (both checksums, the lengths, the
//! offending field), so a log line is enough to tell a truncated copy from a bit flip
//! or a writer bug. Errors are built only on failure paths; the probe path returns
//! `Option`s and never errors.

use std::path::PathBuf;

use crate::types::{DType, FeatureId};

/// A segment that cannot be written or does not follow `storage-format.md`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The file ends before a structure it declares.
    #[error("truncated segment: {what} needs {needed} bytes, the file has {have}")]
    Truncated {
        /// The structure that does not fit.
        what: &'static str,
        /// Bytes the structure needs from the start of the file.
        needed: u64,
        /// Bytes in the file.
        have: u64,
    },
    /// The file is longer than its last section.
    #[error("segment has {have} bytes, its sections end at {expected}")]
    TrailingBytes {
        /// Where the last section ends.
        expected: u64,
        /// Bytes in the file.
        have: u64,
    },
    /// A stored crc32 does not match the bytes it covers.
    #[error("checksum mismatch in {what}: stored {expected:#010x}, computed {got:#010x}")]
    ChecksumMismatch {
        /// The header or section.
        what: &'static str,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum of the bytes read.
        got: u32,
    },
    /// The file does not start with the segment magic.
    #[error("not a featstore segment: starts with {found:02x?}")]
    BadMagic {
        /// The first bytes of the file (at most 8).
        found: Vec<u8>,
    },
    /// The file was written by another format version.
    #[error(
        "segment format version {found} is not supported (this build reads version \
         {supported}); rebuild the segment with a matching featstore"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The header sets flag bits this version does not know.
    #[error("segment uses unknown flags {flags:#x} (known: {known:#x})")]
    UnknownFlags {
        /// The flags in the file.
        flags: u32,
        /// The flags this version knows.
        known: u32,
    },
    /// A section's offset does not follow the previous section's end.
    #[error("{what} starts at {offset}, expected {expected} (sections must be contiguous)")]
    SectionPlacement {
        /// The section.
        what: &'static str,
        /// Its stored offset.
        offset: u64,
        /// Where the previous section ends.
        expected: u64,
    },
    /// A structure's contents are invalid (a count, an offset, a value).
    #[error("corrupt segment: {what}: {detail}")]
    Corrupt {
        /// The structure.
        what: &'static str,
        /// What is wrong, with the values involved.
        detail: String,
    },
    /// An entity id appears in two rows.
    #[error("duplicate entity id {entity_id:02x?} (rows {first} and {second})")]
    DuplicateEntity {
        /// The id.
        entity_id: Vec<u8>,
        /// The row the index reaches first.
        first: u64,
        /// The other row.
        second: u64,
    },
    /// The schema given to the writer is unusable.
    #[error("invalid segment schema: {detail}")]
    InvalidSchema {
        /// Why.
        detail: String,
    },
    /// A pushed row does not match the schema.
    #[error("row {row}: {detail}")]
    InvalidRow {
        /// The row number (push order).
        row: u64,
        /// Why.
        detail: String,
    },
    /// A pushed value's type differs from its field's.
    #[error("row {row}, feature {feature_id}: expected {expected}, got {got}")]
    TypeMismatch {
        /// The row number (push order).
        row: u64,
        /// The field's feature id.
        feature_id: FeatureId,
        /// The field's type.
        expected: DType,
        /// The pushed value's type.
        got: &'static str,
    },
    /// The entities' hashes cluster so that some entity would sit more than
    /// `MAX_PROBE - 1` slots from its home slot, even in the largest table tried.
    #[error("{entities} entities cannot be indexed within {max_probe} probes")]
    IndexTooClustered {
        /// Entities in the segment.
        entities: u64,
        /// The probe limit.
        max_probe: usize,
    },
    /// zstd failed to compress or decompress the values section.
    #[error("zstd {what}: {detail}")]
    Zstd {
        /// "compress" or "decompress".
        what: &'static str,
        /// zstd's message.
        detail: String,
    },
    /// An I/O operation failed.
    #[error("{what} {path:?}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The file or directory (empty for a caller-supplied writer).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SegmentError {
    /// A [`SegmentError::Corrupt`].
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        SegmentError::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}
