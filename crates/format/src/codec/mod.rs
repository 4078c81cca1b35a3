//! Byte encodings of stored keys and values, shared by the batch loader (which writes SST
//! files) and the read path. `storage-format.md` documents every byte; the constants here
//! are checked against it by tests.
//!
//! This layer knows nothing of RocksDB: it maps model types to byte strings and back, and
//! rejects malformed bytes with a [`CodecError`] instead of panicking.

pub mod history;
pub mod key;
pub mod row;
pub mod stream;
pub mod value;

pub use key::{EntityKey, MAX_ENTITY_ID_LEN};
pub use value::{StoredValue, decode_value, encode_value};

/// A stored key or value that does not follow `storage-format.md`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended before the structure did.
    #[error("truncated {what}: need {needed} bytes, have {have}")]
    Truncated {
        /// The structure being decoded.
        what: &'static str,
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The value tag byte names no known type.
    #[error("unknown value tag {0}")]
    UnknownTag(u8),
    /// A field holds a value outside its domain.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}
