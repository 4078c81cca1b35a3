//! featstore: a single-node online feature store.
//!
//! It holds batch features (loaded nightly as immutable, versioned column families in
//! RocksDB) and serves them to ranking hosts over a thin HTTP layer, or in-process
//! through [`FeatureStore`].
//!
//! It is not a distributed database, a warehouse or a stream processor: it runs beside
//! one ranking host (a sidecar), is fed by batch jobs and producers, and answers point
//! reads of feature vectors with a status and event time per value.
//!
//! # Layout
//!
//! Layers stack by dependency; only the lowest ones know bytes.
//!
//! * [`types`] — dtypes, values, timestamps, read statuses.
//! * [`codec`] — byte encodings of stored keys and values (`storage-format.md`).
//! * [`registry`] — feature definitions and the immutable registry snapshot, with
//!   composite entity types, on-demand features and feature services.
//! * [`store`] — the RocksDB engine: column families, manifest, versions, read views,
//!   the stored-value lookup, streamed pushes and windowed aggregates.
//!   [`FeatureStore`] is its public face.
//! * [`query`] — the query layer: one planner and one columnar answer for every read
//!   (single-entity and ranking), TTL, freshness, defaults, on-demand features.
//! * [`loader`] — batch ingestion: CSV/Parquet input, external sort, SST files, ingest.
//! * [`api`] — the wire: routes, request and response types, their JSON and binary
//!   encoders and decoders, shared by the server, the client and the CLI.
//! * [`server`] — the hyper HTTP endpoint and Prometheus metrics; no storage logic.
//! * [`client`] — a blocking, typed Rust client of the HTTP API.
//! * [`datagen`] — the deterministic synthetic marketplace data set (demo, tests,
//!   benchmarks).

pub mod api;
pub mod client;
pub mod datagen;
pub mod demo;
pub mod loader;
pub mod query;
pub mod registry;
pub mod server;
pub mod store;

pub use featstore_format::{codec, types};
pub use store::{FeatureStore, StoreConfig};
