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
//! * [`servelog`] — the serving log: answered reads, sampled, appended off the hot
//!   path, exported as Parquet training data.

//! # Embedding
//!
//! A ranking host in Rust opens the store and reads it in-process; observers hear every
//! read, push, load and activation (the same hooks the server's metrics use):
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! use featstore::{FeatureStore, LoadRequest, Observer, ReadEvent, StoreConfig};
//!
//! #[derive(Default)]
//! struct Reads(AtomicU64);
//!
//! impl Observer for Reads {
//!     fn on_read(&self, _event: &ReadEvent<'_>) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = FeatureStore::open("/var/lib/featstore", StoreConfig::default())?;
//! let reads = Arc::new(Reads::default());
//! store.add_observer(reads.clone());
//! store.load(&LoadRequest::new("product_daily", "product_daily.parquet"), &|_| {})?;
//! let vector = store.get_features("product", "p42", &["product_ctr_7d", "product_price"])?;
//! for reading in &vector.features {
//!     println!("{}: {:?} ({})", reading.name, reading.value, reading.status.as_str());
//! }
//! assert_eq!(reads.0.load(Ordering::Relaxed), 1);
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod audit;
pub mod auth;
pub mod client;
pub mod loader;
pub mod parity;
pub mod query;
pub mod registry;
pub mod servelog;
pub mod server;
pub mod store;
pub mod training;
pub mod validate;

// The synthetic data set and the demo serve the project's own binaries, tools,
// benchmarks and tests (which link the library from outside the crate); they are not
// part of the API an embedding host builds on.
#[doc(hidden)]
pub mod datagen;
#[doc(hidden)]
pub mod demo;

pub use featstore_format::{codec, types};

// What an embedding ranking host needs, at the top level.
pub use loader::{LoadError, LoadProgress, LoadRecord, LoadRequest};
pub use query::{
    Cell, EntityAnswer, FeatureSelection, Names, RankColumn, RankError, RankRequest, RankResponse,
};
pub use registry::{DefinitionFilter, FeatureDefinition, FeatureSpec, Registry, RegistryError};
pub use store::{
    ActivationCause, ActivationEvent, ApplyAction, ApplyOutcome, FeatureReading, FeatureStore,
    FeatureVector, GroupVersions, LoadEvent, LoadGate, MemoryUsage, Observer, ObserverId,
    PushError, PushEvent, PushOutcome, PushReport, ReadAnswer, ReadContext, ReadError, ReadEvent,
    StoreConfig, StoreError, StreamCommitEvent, VersionInfo, WriterHealth,
};
pub use types::{DType, FeatureStatus, TimestampMs, Value};
