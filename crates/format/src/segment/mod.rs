//! Hot segment files: a read-only, memory-mappable table of one feature group
//! version's hot entities, where a lookup is one hash probe and a few cache lines.
//!
//! `storage-format.md`, "Hot segment files", documents every byte. Modules, bottom up:
//!
//! * `layout` — offsets, widths, limits and the fixed header's codec.
//! * `index` — the hash function, slot packing, the table build and the probe.
//! * `schema` — field records, the group name, the fingerprint and the row layout.
//! * `row` — [`Row`], [`FieldValue`], [`ValueRef`], [`F32Slice`]: zero-copy field reads.
//! * `reader` — [`Segment`]: validation at open, `find`, `find_batch`, `iter`.
//! * `writer` — [`SegmentWriter`]: rows in, durable file out.
//! * `mmap` — [`MappedSegment`]: the one `Mmap` and the crate's only `unsafe`.
//! * [`testing`] — checksum resealing for corruption tests and fuzzers.
//!
//! It is not: a mutable store (segments are written once and replaced whole), a source
//! of truth (RocksDB is; a segment is a cache of one version), or a place for
//! per-request allocation.
//!
//! Trust model: segment bytes are untrusted until [`Segment::open`] has checked all of
//! them; after that, reads rely on the checks but stay bounds-checked.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod error;
mod index;
pub mod layout;
mod mmap;
mod reader;
mod row;
mod schema;
pub mod testing;
mod writer;

pub use error::SegmentError;
pub use index::hash64;
pub use mmap::MappedSegment;
pub use reader::{Rows, Segment};
pub use row::{F32Slice, FieldValue, Row, ValueRef};
pub use schema::{FieldSpec, fingerprint, fixed_bytes_per_entity};
pub use writer::{CrcWriter, FieldInput, SegmentWriter, ValuesCompression};
