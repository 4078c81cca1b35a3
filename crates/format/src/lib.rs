//! featstore's byte formats, kept apart from the engine so they build without RocksDB
//! and can be fuzzed on their own.
//!
//! * [`types`] — dtypes, values, timestamps, read statuses (the shared data model).
//! * [`time`] — the one parser of event times given as text (epoch milliseconds or
//!   RFC 3339 with its offset).
//! * [`codec`] — the RocksDB key and value encodings (`storage-format.md`, "Keys",
//!   "Values").
//! * [`segment`] — hot segment files: read-only, memory-mapped tables of a group
//!   version's hot entities, one hash probe per lookup (`storage-format.md`, "Hot
//!   segment files").
//!
//! This crate knows bytes and nothing of RocksDB, HTTP or files beyond what a format
//! needs; every decoder rejects malformed input with an error, never a panic.

pub mod codec;
pub mod reclog;
pub mod segment;
pub mod time;
pub mod types;
