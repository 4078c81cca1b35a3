//! The storage kernel, and [`FeatureStore`], the engine's facade.
//!
//! The kernel knows ids, versions and bytes, nothing about requests:
//!
//! * [`keyspace`] names every column family, meta key and file of the store directory.
//! * `versions` owns version management (`versions::VersionSet`): recovery at
//!   open, a load's version from allocation to completion, activation, rollback, drops.
//! * `view` holds the immutable read views; `lookup` probes a version's hot segment
//!   and column family; `segments` and `access` build hot segments and count the
//!   reads that choose their entities; [`stream`] owns pushes and streamed values;
//!   [`history`] keeps every value ever servable (as-of and point-in-time reads).
//! * [`manifest`], `meta`, [`options`] and [`memory`]: persistence in `meta`,
//!   RocksDB options by role, the memory model.
//!
//! [`FeatureStore`] is the library API (a Rust ranking host can embed it; the HTTP
//! server is a thin shell over it). It is a facade: each method locks what it must,
//! delegates to the kernel or the query code, publishes the new view, and reports what
//! happened to the registered observers ([`observe`]), so metrics (and later the
//! serving and audit logs) see embedded callers like HTTP ones.
//!
//! Thread-safety contract: every method takes `&self` and the store is `Send + Sync`.
//! Reads load the current [`ReadView`] with one atomic pointer load and take no lock.
//! Writers (registry changes, load commits, activation, drops) serialize on `admin`, a
//! `parking_lot::Mutex` held only for metadata updates (a synced meta write and a view
//! swap), never while a load reads its input or writes SST files, and never by readers.
//! Observers run after the operation, outside the lock.

pub(crate) mod access;
mod changed_value;
pub(crate) mod config;
pub mod erase;
pub(crate) mod error;
pub mod history;
pub mod keyspace;
pub mod load;
pub(crate) mod lookup;
pub mod manifest;
pub mod memory;
pub(crate) mod meta;
pub mod observe;
pub mod options;
pub(crate) mod registry_ops;
pub(crate) mod segments;
pub mod stream;
#[cfg(test)]
pub(crate) mod test_store;
pub(crate) mod version_range;
pub mod version_retention;
pub(crate) mod versions;
pub(crate) mod view;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use featstore_swap::SnapshotCell;
use parking_lot::Mutex;
use rocksdb::DB;
use serde::Serialize;

pub use crate::query::read::{FeatureReading, FeatureVector};
pub use config::StoreConfig;
pub use error::{ReadError, StoreError};
pub use load::{AcceptAll, LoadGate, VersionFacts};
pub use memory::MemoryUsage;
pub use observe::{
    ActivationCause, ActivationEvent, LoadEvent, Observer, ObserverId, PushReport, ReadAnswer,
    ReadContext, ReadEvent, StreamCommitEvent,
};
pub use registry_ops::{ObjectOutcome, RegistryApplyReport};
pub use segments::SegmentInfo;
pub use stream::{PushCheck, PushError, PushEvent, PushOutcome, StreamFault, WriterHealth};
pub use view::{ReadView, StreamedFeatures};

use crate::loader::{LoadProgress, LoadRecord, LoadRequest};
use crate::query::{self, RankError, RankRequest, RankResponse};
use crate::registry::{DefinitionFilter, FeatureDefinition, FeatureSpec, Registry};
use crate::types::{FeatureId, TimestampMs, now_ms};
use access::AccessCounter;
use keyspace::META_CF;
use manifest::VersionState;
use options::EngineOptions;
use versions::VersionSet;

/// What `apply` did with one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    /// A new (name, version) was registered.
    Created,
    /// A compatible change (owner, docs, SLOs, TTL, tags) was stored.
    Updated,
    /// Identical to what is registered.
    Unchanged,
}

/// Outcome of `apply` for one definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyOutcome {
    /// `name@version`.
    pub feature: String,
    /// Assigned feature id.
    pub id: FeatureId,
    /// What happened.
    pub action: ApplyAction,
}

/// One version of a group, as listed by [`FeatureStore::versions`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionInfo {
    /// Version number.
    pub version: u64,
    /// Lifecycle state.
    pub state: VersionState,
    /// Whether it is the version served.
    pub active: bool,
    /// When it was allocated.
    pub created_at_ms: TimestampMs,
    /// Its load record, once loaded.
    pub load: Option<LoadRecord>,
    /// Its hot segment, if one was built.
    pub segment: Option<segments::SegmentInfo>,
}

/// Versions of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupVersions {
    /// Group.
    pub group: String,
    /// Entity type of its features.
    pub entity_type: String,
    /// Version served.
    pub active: Option<u64>,
    /// Version a rollback would activate.
    pub rollback_target: Option<u64>,
    /// Every existing version, ascending.
    pub versions: Vec<VersionInfo>,
}

/// State only writers touch, guarded by `FeatureStore::admin`.
struct AdminState {
    /// The manifest and what it names.
    versions: VersionSet,
    registry: Arc<Registry>,
    next_feature_id: FeatureId,
    /// Features that ever received a pushed value, per group (persisted in meta).
    streamed: Arc<StreamedFeatures>,
}

/// Access counters by entity type; replaced (copy on write) when an entity type appears.
type AccessMap = HashMap<String, Arc<AccessCounter>>;

/// An open feature store.
pub struct FeatureStore {
    // Constant after open.
    db: Arc<DB>,
    /// The options the database was opened with: they hold its statistics (tickers).
    db_options: rocksdb::Options,
    options: EngineOptions,
    config: StoreConfig,
    dir: PathBuf,
    // Swapped atomically by writers; loaded lock-free by readers. The swap protocol
    // (a version's resources live until the last view holding them is dropped) is
    // model-checked in crates/swap/tests/loom_swap.rs.
    view: SnapshotCell<ReadView>,
    access: ArcSwap<AccessMap>,
    // Writers only.
    admin: Mutex<AdminState>,
    // Streamed features: the committer thread and registry-derived tables.
    stream: stream::StreamState,
    // Told about every answered read, push, load and activation (see [`observe`]).
    observers: Arc<observe::Observers>,
    // One lock per group, held for a whole load: a group's loads run one at a time, so
    // each version's history is recorded against the one before it.
    load_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    // Entity lookups and hot segment hits, shared by every read view.
    lookups: Arc<view::LookupCounters>,
    // One per-entity deletion at a time ([`erase`]).
    erase_lock: Mutex<()>,
    // Holders of served data outside the store, called by every deletion.
    erasers: erase::Erasers,
}

/// The engine's own figures at one moment: RocksDB's block cache tickers and pending
/// compaction, and the hot segments' share of entity lookups (totals since open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Block cache lookups that found their block.
    pub block_cache_hits: u64,
    /// Block cache lookups that read their block from a file.
    pub block_cache_misses: u64,
    /// Bytes compaction must still rewrite (RocksDB's estimate, every column family).
    pub pending_compaction_bytes: u64,
    /// Entities looked up in active batch versions.
    pub hot_segment_lookups: u64,
    /// Of those, answered by the mapped hot segment.
    pub hot_segment_hits: u64,
}

impl std::fmt::Debug for FeatureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureStore")
            .field("dir", &self.dir)
            .finish()
    }
}

/// True when RocksDB refused to open because another process (or another open store
/// in this one) holds the database's `LOCK` file.
fn is_lock_error(e: &rocksdb::Error) -> bool {
    let message = e.as_ref();
    e.kind() == rocksdb::ErrorKind::IOError
        && (message.contains("While lock file") || message.contains("lock hold by current process"))
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

impl FeatureStore {
    /// Opens (or creates) the store in `dir`, recovering from an interrupted load: a
    /// version left `loading` and any column family the manifest does not name are
    /// dropped, so no partial version survives a crash.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let db_path = keyspace::db_dir(&dir);
        let scratch = keyspace::scratch_dir(&dir);
        std::fs::create_dir_all(&db_path)
            .map_err(io_err(format!("create {}", db_path.display())))?;
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .map_err(io_err(format!("clean {}", scratch.display())))?;
        }
        let opened = Instant::now();
        let options = EngineOptions::new(config.block_cache_bytes, config.write_buffer_bytes);
        let db_opts = options.db();
        let mut names = DB::list_cf(&db_opts, &db_path).unwrap_or_default();
        if !names.iter().any(|n| n == META_CF) {
            names.push(META_CF.to_owned());
        }
        let descriptors = names
            .iter()
            .map(|n| rocksdb::ColumnFamilyDescriptor::new(n, options.for_existing_cf(n)));
        let db = DB::open_cf_descriptors(&db_opts, &db_path, descriptors).map_err(|e| {
            if is_lock_error(&e) {
                StoreError::DirectoryInUse { dir: dir.clone() }
            } else {
                StoreError::Rocks(e)
            }
        })?;
        let db = Arc::new(db);
        let rocksdb_ms = opened.elapsed().as_millis();

        let definitions = meta::read_definitions(&db)?;
        let mut registry = Registry::from_definitions(definitions);
        registry.set_catalog(Arc::new(registry_ops::read_catalog(&db)?));
        let mut next_feature_id = meta::read_next_feature_id(&db)?;
        if let Some(max) = registry.max_id() {
            next_feature_id = next_feature_id.max(max + 1);
        }

        let versions = VersionSet::open(db.clone(), &dir, &names)?;
        options
            .schemas()
            .store(Arc::new(version_retention::schemas_of(
                versions.ranges().values(),
            )));
        options
            .history()
            .store(Arc::new(history::read_table(&db, &config.history)?));
        if config.history.enabled {
            for name in &names {
                if let keyspace::FamilyRole::Stream(group) = keyspace::family_role(name) {
                    history::ensure_family(&db, &options, group)?;
                }
            }
        }
        let registry = Arc::new(registry);
        let streamed = Arc::new(stream::load_streamed_features(&db, &registry)?);
        let lookups = Arc::new(view::LookupCounters::default());
        let view = ReadView::build(
            db.clone(),
            registry.clone(),
            versions.manifest(),
            versions.segments(),
            versions.ranges(),
            streamed.clone(),
            lookups.clone(),
        )?;
        let stream = stream::StreamState::start(&db, &options, &registry)?;
        let observers = Arc::new(observe::Observers::default());
        stream.set_commit_observer({
            let observers = observers.clone();
            Arc::new(move |group, event_times, readable_ms| {
                let event = StreamCommitEvent {
                    group,
                    event_times,
                    readable_ms,
                };
                observers.each(|o| o.on_stream_commit(&event));
            })
        });
        let store = FeatureStore {
            db,
            db_options: db_opts,
            options,
            config,
            dir,
            view: SnapshotCell::new(view),
            access: ArcSwap::from_pointee(AccessMap::new()),
            admin: Mutex::new(AdminState {
                versions,
                registry,
                next_feature_id,
                streamed,
            }),
            stream,
            observers,
            load_locks: Mutex::new(HashMap::new()),
            lookups,
            erase_lock: Mutex::new(()),
            erasers: erase::Erasers::default(),
        };
        let state_ms = opened.elapsed().as_millis() - rocksdb_ms;
        store.load_access_counts()?;
        store.rebuild_unusable_segments();
        tracing::info!(
            column_families = names.len(),
            rocksdb_ms,
            state_ms,
            total_ms = opened.elapsed().as_millis(),
            "store opened"
        );
        Ok(store)
    }

    /// Rebuilds, from their column families, the segments of active versions that could
    /// not be mapped at open: corrupted while the store was down, or written by another
    /// segment format version (after an upgrade). A segment is a cache of its version,
    /// so this restores hot reads without a reload; until it finishes, and if it fails,
    /// reads of that version go to RocksDB with identical results.
    fn rebuild_unusable_segments(&self) {
        let unmapped = self.admin.lock().versions.unmapped_active();
        for (group, version) in unmapped {
            match self.rebuild_segment(&group, version) {
                Ok(()) => tracing::info!(group, version, "hot segment rebuilt"),
                Err(e) => tracing::error!(
                    group,
                    version,
                    error = %e,
                    "hot segment rebuild failed; serving that version from RocksDB"
                ),
            }
        }
    }

    /// Builds the segment of `version` of `group` again and publishes it.
    fn rebuild_segment(&self, group: &str, version: u64) -> Result<(), StoreError> {
        let records = meta::read_load_records(&self.db, group)?;
        let record = records.get(&version).ok_or_else(|| {
            StoreError::Segment(format!("{group} v{version}: no load record to size it"))
        })?;
        let (family, prefix) = self.admin.lock().versions.location(group, version)?;
        let cf = self.db.cf_handle(&family).ok_or_else(|| {
            StoreError::Segment(format!(
                "{group} v{version}: column family {family} is missing"
            ))
        })?;
        let built = self.build_segment(group, version, &cf, prefix, record)?;
        drop(cf);
        let mut state = self.admin.lock();
        // False when dropped while the segment was built: nothing to attach it to.
        if self.checked_write(
            "attaching a rebuilt segment",
            state.versions.attach_segment(group, version, built),
        )? {
            self.publish(&state)?;
        }
        Ok(())
    }

    /// After `version` of `group` was activated without its unusable segment: rebuilds
    /// the segment from the version's column family. A failure is logged, and the
    /// version keeps being served from RocksDB, with identical answers.
    fn rebuild_activated_segment(&self, group: &str, version: u64) {
        match self.rebuild_segment(group, version) {
            Ok(()) => tracing::info!(group, version, "hot segment rebuilt after activation"),
            Err(e) => tracing::error!(
                group,
                version,
                error = %e,
                "hot segment rebuild failed; serving that version from RocksDB"
            ),
        }
    }

    /// The access counter of `entity_type`, created on first use.
    fn access_counter(&self, entity_type: &str) -> Arc<AccessCounter> {
        if let Some(counter) = self.access.load().get(entity_type) {
            return counter.clone();
        }
        let counter = Arc::new(AccessCounter::new(self.config.access_tracking_entities));
        self.access.rcu(|map| {
            let mut next = (**map).clone();
            next.entry(entity_type.to_owned())
                .or_insert_with(|| counter.clone());
            next
        });
        self.access
            .load()
            .get(entity_type)
            .cloned()
            .unwrap_or(counter)
    }

    fn record_access(&self, entity_type: &str, entity_id: &str) {
        if self.config.hot_segment_bytes == 0 {
            return;
        }
        match self.access.load().get(entity_type) {
            Some(counter) => counter.record(entity_id.as_bytes()),
            None => self
                .access_counter(entity_type)
                .record(entity_id.as_bytes()),
        }
    }

    /// Loads persisted access counts, halved so that old traffic fades.
    fn load_access_counts(&self) -> Result<(), StoreError> {
        for (entity_type, bytes) in meta::read_prefix(&self.db, keyspace::ACCESS_PREFIX)? {
            let counter = self.access_counter(&entity_type);
            for (id, count) in access::decode_counts(&bytes) {
                if count / 2 > 0 {
                    counter.add_count(&id, count / 2);
                }
            }
        }
        Ok(())
    }

    /// Persists the access counts of every entity type (the server does this
    /// periodically and at shutdown; loads do it before building a segment).
    pub fn persist_access_counts(&self) -> Result<(), StoreError> {
        let map = self.access.load_full();
        for (entity_type, counter) in map.iter() {
            let top = counter.top(self.config.access_tracking_entities);
            self.checked_write(
                "persisting access counts",
                meta::put(
                    &self.db,
                    &keyspace::access_key(entity_type),
                    &access::encode_counts(&top),
                ),
            )?;
        }
        Ok(())
    }

    /// The most-read entities of `entity_type`, most-read first.
    pub fn hottest_entities(&self, entity_type: &str, k: usize) -> Vec<(Vec<u8>, u32)> {
        self.access
            .load()
            .get(entity_type)
            .map(|c| c.top(k))
            .unwrap_or_default()
    }

    /// What the engine's memory pools hold now (see [`memory`]). Walks every column
    /// family's properties: call it for metrics or diagnostics, not per request.
    pub fn memory_usage(&self) -> MemoryUsage {
        let (hot_segments_mapped, column_families) = {
            let state = self.admin.lock();
            (
                state.versions.mapped_bytes(),
                state.versions.version_count(),
            )
        };
        self.options
            .memory_usage(&self.db, hot_segments_mapped, column_families)
    }

    /// The engine's statistics now (see [`EngineStats`]).
    pub fn engine_stats(&self) -> EngineStats {
        use std::sync::atomic::Ordering::Relaxed;
        // The families from what the store holds in memory (no read of RocksDB's
        // MANIFEST per scrape): meta, every version the manifest names, and each
        // group's stream and history families.
        let mut families: std::collections::BTreeSet<String> =
            [keyspace::META_CF.to_owned()].into();
        {
            let state = self.admin.lock();
            for manifest in state.versions.manifest().groups.values() {
                families.extend(manifest.versions.iter().map(|v| v.location().0.to_owned()));
            }
            for group in state.registry.groups() {
                families.insert(keyspace::stream_cf_name(&group.name));
                families.insert(keyspace::history_cf_name(&group.name));
            }
        }
        let pending_compaction_bytes = families
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(&cf, "rocksdb.estimate-pending-compaction-bytes")
                    .ok()
                    .flatten()
            })
            .sum();
        EngineStats {
            block_cache_hits: self
                .db_options
                .get_ticker_count(rocksdb::statistics::Ticker::BlockCacheHit),
            block_cache_misses: self
                .db_options
                .get_ticker_count(rocksdb::statistics::Ticker::BlockCacheMiss),
            pending_compaction_bytes,
            hot_segment_lookups: self.lookups.lookups.load(Relaxed),
            hot_segment_hits: self.lookups.segment_hits.load(Relaxed),
        }
    }

    /// Values live reads served since the store was opened, per feature
    /// (`name@version`) and status, features that served nothing left out (see
    /// [`crate::query::tally`]).
    pub fn served_counts(&self) -> Vec<crate::query::tally::FeatureCounts> {
        self.lookups.served.snapshot()
    }

    /// Per group with an active version: the group and when that version was created
    /// (its load began), ms since the epoch.
    pub fn active_version_created(&self) -> Vec<(String, TimestampMs)> {
        let state = self.admin.lock();
        state
            .versions
            .manifest()
            .groups
            .iter()
            .filter_map(|(group, m)| {
                let entry = m.entry(m.active?)?;
                Some((group.clone(), entry.created_at_ms))
            })
            .collect()
    }

    /// The store's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The current read view. Hold it to make several reads against one snapshot.
    pub fn view(&self) -> Arc<ReadView> {
        self.view.load()
    }

    /// Entities held by the mapped hot segment of `group`'s active version, if any.
    pub fn hot_segment_entities(&self, group: &str) -> Option<usize> {
        self.view.with(|view| {
            view.active(group)
                .and_then(|a| a.segment.as_ref())
                .map(|s| s.entity_count())
        })
    }

    /// The current registry snapshot.
    pub fn registry(&self) -> Arc<Registry> {
        self.view.with(|view| view.registry().clone())
    }

    /// Registers `observer`: from now on it hears of every answered read, push, load,
    /// activation and stream commit, whoever asked for them (see [`observe`]).
    pub fn add_observer(&self, observer: Arc<dyn Observer>) -> ObserverId {
        self.observers.add(observer)
    }

    /// Unregisters an observer added by [`add_observer`](Self::add_observer).
    pub fn remove_observer(&self, id: ObserverId) {
        self.observers.remove(id);
    }

    /// The start of a read, for its observers; `None` (and no clock read on the read
    /// path) while no observer is registered.
    fn read_started(&self) -> Option<Instant> {
        (!self.observers.is_empty()).then(Instant::now)
    }

    /// Reports an answered read to the observers, if any was registered when the read
    /// started.
    fn observe_read(
        &self,
        answer: ReadAnswer<'_>,
        context: ReadContext<'_>,
        at_ms: TimestampMs,
        started: Option<Instant>,
    ) {
        let Some(started) = started else {
            return;
        };
        let event = ReadEvent {
            answer,
            context,
            at_ms,
            elapsed: started.elapsed(),
        };
        self.observers.each(|o| o.on_read(&event));
    }

    /// Reports an activation to the observers.
    fn observe_activation(&self, group: &str, version: u64, cause: ActivationCause) {
        let event = ActivationEvent {
            group,
            version,
            cause,
        };
        self.observers.each(|o| o.on_activation(&event));
    }

    /// Reads `names` of one entity, in the order given (the row view of
    /// [`get_entity`](Self::get_entity)).
    pub fn get_features<S: AsRef<str>>(
        &self,
        entity_type: &str,
        entity_id: &str,
        names: &[S],
    ) -> Result<FeatureVector, ReadError> {
        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        self.get_entity(entity_type, entity_id, query::Names::List(&names))
            .map(query::EntityAnswer::into_vector)
    }

    /// Reads `names` of one entity: a one-candidate read of the query layer
    /// ([`crate::query::entity`]), answered in columns in the order given.
    pub fn get_entity(
        &self,
        entity_type: &str,
        entity_id: &str,
        names: query::Names<'_>,
    ) -> Result<query::EntityAnswer, ReadError> {
        self.get_entity_in(ReadContext::EMBEDDED, entity_type, entity_id, names)
            .map(Arc::unwrap_or_clone)
    }

    /// [`get_entity`](Self::get_entity) on behalf of `context` (a request id and a
    /// route), which the observers hear with the answer. The answer is shared with the
    /// observers that keep it (the serving log), so it is never copied for them.
    pub fn get_entity_in(
        &self,
        context: ReadContext<'_>,
        entity_type: &str,
        entity_id: &str,
        names: query::Names<'_>,
    ) -> Result<Arc<query::EntityAnswer>, ReadError> {
        let started = self.read_started();
        let now = now_ms();
        let answer = self.view.with(|view| {
            query::entity::get_in(
                view,
                entity_type,
                entity_id,
                names,
                now,
                context.guard,
                None,
            )
            .map(Arc::new)
        })?;
        self.record_access(entity_type, entity_id);
        self.observe_read(ReadAnswer::Entity(&answer), context, now, started);
        Ok(answer)
    }

    /// Answers a ranking request: the context's features once and one row per
    /// candidate, in the order asked (see `crate::query::rank`).
    ///
    /// Candidates are counted for the hot segment's choice of entities once the request
    /// was accepted (so unknown entity types from requests never create counters).
    pub fn rank(&self, request: RankRequest) -> Result<RankResponse, RankError> {
        self.rank_in(ReadContext::EMBEDDED, request)
            .map(Arc::unwrap_or_clone)
    }

    /// [`rank`](Self::rank) on behalf of `context` (a request id and a route), which
    /// the observers hear with the answer. The answer is shared with the observers that
    /// keep it (the serving log), so it is never copied for them.
    pub fn rank_in(
        &self,
        context: ReadContext<'_>,
        request: RankRequest,
    ) -> Result<Arc<RankResponse>, RankError> {
        let started = self.read_started();
        let now = now_ms();
        let response = Arc::new(
            self.view
                .with(|view| query::rank::rank_in(view, request, now, context.guard, None))?,
        );
        if self.config.hot_segment_bytes > 0 {
            let counter = self.access_counter(&response.candidate_type);
            for id in &response.candidates {
                counter.record(id.as_bytes());
            }
        }
        self.observe_read(ReadAnswer::Ranking(&response), context, now, started);
        Ok(response)
    }

    /// Answers several ranking requests against one read view (so one answer never
    /// mixes versions), in order; stops at the first that fails. Each answer is
    /// observed and counted as [`rank`](Self::rank) does.
    pub fn rank_all(&self, requests: Vec<RankRequest>) -> Result<Vec<RankResponse>, RankError> {
        self.rank_all_in(ReadContext::EMBEDDED, requests)
            .map(|answers| answers.into_iter().map(Arc::unwrap_or_clone).collect())
    }

    /// [`rank_all`](Self::rank_all) for a caller that says who asked (an HTTP request's
    /// id and route), which the observers receive with each answer.
    pub fn rank_all_in(
        &self,
        context: ReadContext<'_>,
        requests: Vec<RankRequest>,
    ) -> Result<Vec<Arc<RankResponse>>, RankError> {
        let started = self.read_started();
        let now = now_ms();
        let view = self.view();
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(Arc::new(query::rank::rank_in(
                &view,
                request,
                now,
                context.guard,
                None,
            )?));
        }
        for response in &answers {
            if self.config.hot_segment_bytes > 0 {
                let counter = self.access_counter(&response.candidate_type);
                for id in &response.candidates {
                    counter.record(id.as_bytes());
                }
            }
            self.observe_read(ReadAnswer::Ranking(response), context, now, started);
        }
        Ok(answers)
    }

    /// Definitions matching `filter`.
    pub fn list_definitions(&self, filter: &DefinitionFilter) -> Vec<Arc<FeatureDefinition>> {
        self.view.with(|view| view.registry().list(filter))
    }

    /// Publishes a view of the writers' state, after it was persisted.
    fn publish(&self, state: &AdminState) -> Result<(), StoreError> {
        self.options
            .schemas()
            .store(Arc::new(version_retention::schemas_of(
                state.versions.ranges().values(),
            )));
        let view = ReadView::build(
            self.db.clone(),
            state.registry.clone(),
            state.versions.manifest(),
            state.versions.segments(),
            state.versions.ranges(),
            state.streamed.clone(),
            self.lookups.clone(),
        )?;
        self.view.store(Arc::new(view));
        Ok(())
    }

    /// Passes `result` through; a RocksDB I/O error (a full disk, a failed sync) is
    /// also reported to the stream writer, because RocksDB may refuse every write after
    /// it: pushes are then refused and `/readyz` says why until a probe write succeeds
    /// (see [`stream::commit`], "Failed writes and recovery"). `what` names the write.
    fn checked_write<T>(&self, what: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Rocks(e)) = &result
            && e.kind() == rocksdb::ErrorKind::IOError
        {
            self.stream.report_failure(&format!("{what} failed: {e}"));
        }
        result
    }

    /// Registers or updates definitions, all or nothing. An incompatible change to an
    /// existing (name, version) is refused with a message asking for a new version.
    pub fn apply(&self, specs: Vec<FeatureSpec>) -> Result<Vec<ApplyOutcome>, StoreError> {
        let mut state = self.admin.lock();
        let mut registry = (*state.registry).clone();
        let mut next_id = state.next_feature_id;
        let mut changed = Vec::new();
        let mut outcomes = Vec::new();
        let now = now_ms();
        for spec in specs {
            spec.validate().map_err(StoreError::invalid_definition)?;
            if let Some(group) = registry.group(&spec.group)
                && group.entity_type != spec.entity_type
            {
                return Err(StoreError::invalid_definition(format!(
                    "feature `{}`: group `{}` holds entity type `{}`, not `{}`; a group has one entity type",
                    spec.name, spec.group, group.entity_type, spec.entity_type
                )));
            }
            let existing = registry.get(&spec.name, spec.version).cloned();
            registry_ops::check_feature_change(&registry, existing.as_deref(), &spec)?;
            let (def, action) = match existing {
                Some(old) if old.spec == spec => {
                    outcomes.push(ApplyOutcome {
                        feature: old.qualified_name(),
                        id: old.id,
                        action: ApplyAction::Unchanged,
                    });
                    continue;
                }
                Some(old) => {
                    if let Some(reason) = old.spec.incompatibility(&spec) {
                        return Err(StoreError::invalid_definition(reason));
                    }
                    let def = FeatureDefinition {
                        id: old.id,
                        registered_at_ms: old.registered_at_ms,
                        updated_at_ms: now,
                        spec,
                    };
                    (def, ApplyAction::Updated)
                }
                None => {
                    let def = FeatureDefinition {
                        id: next_id,
                        registered_at_ms: now,
                        updated_at_ms: now,
                        spec,
                    };
                    next_id = next_id
                        .checked_add(1)
                        .ok_or_else(|| StoreError::invalid_definition("feature ids exhausted"))?;
                    (def, ApplyAction::Created)
                }
            };
            outcomes.push(ApplyOutcome {
                feature: def.qualified_name(),
                id: def.id,
                action,
            });
            registry.insert(def.clone());
            changed.push(def);
        }
        if changed.is_empty() {
            return Ok(outcomes);
        }
        stream::check_aggregate_sources(&registry, &changed)?;
        self.checked_write(
            "writing feature definitions",
            meta::write_definitions(&self.db, &changed, next_id),
        )?;
        state.next_feature_id = next_id;
        state.registry = Arc::new(registry);
        self.stream.refresh(&state.registry);
        self.publish(&state)?;
        Ok(outcomes)
    }

    /// Loads a new version of a group from a file, ingests it, and (if asked) activates
    /// it atomically. On any failure nothing becomes visible and the version is removed.
    /// The stages are in [`load`].
    ///
    /// The version is validated ([`crate::validate`]): one that breaks its group's
    /// rules is committed `ready` but not activated, and the load fails with
    /// [`LoadError::Held`](crate::LoadError::Held) carrying the report.
    pub fn load(
        &self,
        request: &LoadRequest,
        progress: &dyn Fn(LoadProgress),
    ) -> Result<LoadRecord, StoreError> {
        let gate = crate::validate::ValidationGate::new(self.registry());
        self.load_gated(request, &gate, progress)
    }

    /// Loads like [`load`](Self::load), with `gate` deciding whether the finished
    /// version is committed and activated (see [`load::LoadGate`]); a refusal fails the
    /// load and nothing of the version becomes visible.
    pub fn load_gated(
        &self,
        request: &LoadRequest,
        gate: &dyn load::LoadGate,
        progress: &dyn Fn(LoadProgress),
    ) -> Result<LoadRecord, StoreError> {
        let started = Instant::now();
        let result = load::LoadPipeline::new(self, gate, progress).run(request);
        let message = result.as_ref().err().map(ToString::to_string);
        let validation = match &result {
            Ok(record) => record.validation.as_ref(),
            Err(StoreError::Load(crate::LoadError::Held { record, .. })) => {
                record.validation.as_ref()
            }
            Err(_) => None,
        };
        let event = LoadEvent {
            group: &request.group,
            result: result
                .as_ref()
                .map_err(|_| message.as_deref().unwrap_or_default()),
            elapsed: started.elapsed(),
            validation,
        };
        self.observers.each(|o| o.on_load(&event));
        if let Ok(record) = &result
            && record.activated
        {
            self.observe_activation(&request.group, record.version, ActivationCause::Load);
        }
        result
    }

    /// Lists the versions of `group`.
    pub fn versions(&self, group: &str) -> Result<GroupVersions, StoreError> {
        let (gm, entity_type) = {
            let state = self.admin.lock();
            let entity_type = state
                .registry
                .group(group)
                .map(|g| g.entity_type.clone())
                .ok_or_else(|| StoreError::UnknownGroup(group.to_owned()))?;
            let gm = state.versions.group(group).cloned().unwrap_or_default();
            (gm, entity_type)
        };
        let mut records = meta::read_load_records(&self.db, group)?;
        Ok(GroupVersions {
            group: group.to_owned(),
            entity_type,
            active: gm.active,
            rollback_target: gm.rollback_target(),
            versions: gm
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    state: v.state,
                    active: gm.active == Some(v.version),
                    created_at_ms: v.created_at_ms,
                    load: records.remove(&v.version),
                    segment: v.segment.clone(),
                })
                .collect(),
        })
    }

    /// The statistics of `version` of `group`, computed by its load (kept for the
    /// group's newest [`keyspace::STATS_KEPT`] versions).
    pub fn version_stats(
        &self,
        group: &str,
        version: u64,
    ) -> Result<crate::validate::VersionStats, StoreError> {
        if self.registry().group(group).is_none() {
            return Err(StoreError::UnknownGroup(group.to_owned()));
        }
        meta::read_stats(&self.db, group, version)?.ok_or_else(|| StoreError::UnknownVersion {
            group: group.to_owned(),
            version,
        })
    }

    /// Groups with at least one registered feature, with their active version.
    pub fn groups(&self) -> Vec<(String, String, Option<u64>)> {
        let state = self.admin.lock();
        state
            .registry
            .groups()
            .into_iter()
            .map(|g| {
                let active = state.versions.group(&g.name).and_then(|m| m.active);
                (g.name.clone(), g.entity_type.clone(), active)
            })
            .collect()
    }

    /// Makes `version` of `group` the one served, atomically for all readers. If its hot
    /// segment file is unusable (corrupt or missing), the version is served from
    /// RocksDB from the moment it is active, and the segment is rebuilt before this
    /// returns (a failed rebuild is logged; the version stays active).
    ///
    /// A version whose validation failed is refused
    /// ([`StoreError::ValidationFailed`]); [`activate_forced`](Self::activate_forced)
    /// overrides that.
    pub fn activate(&self, group: &str, version: u64) -> Result<(), StoreError> {
        self.activate_checked(group, version, None)
    }

    /// Activates `version` of `group` even if its validation failed, recording `by`
    /// and `reason` (and the time) in its load record's validation report.
    pub fn activate_forced(
        &self,
        group: &str,
        version: u64,
        by: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.activate_checked(group, version, Some((by, reason)))
    }

    fn activate_checked(
        &self,
        group: &str,
        version: u64,
        force: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let rebuild = self.activate_locked(group, version, force)?;
        self.observe_activation(group, version, ActivationCause::Activate);
        if rebuild {
            self.rebuild_activated_segment(group, version);
        }
        Ok(())
    }

    /// [`activate`](Self::activate) under the admin lock; true when the segment must be
    /// rebuilt.
    fn activate_locked(
        &self,
        group: &str,
        version: u64,
        force: Option<(&str, &str)>,
    ) -> Result<bool, StoreError> {
        let mut state = self.admin.lock();
        state.versions.require_group(group)?;
        let record = meta::read_load_record(&self.db, group, version)?;
        let failed = record
            .as_ref()
            .and_then(|r| r.validation.as_ref())
            .filter(|v| !v.passed && v.forced.is_none());
        if let Some(report) = failed {
            let Some((by, reason)) = force else {
                return Err(StoreError::ValidationFailed {
                    group: group.to_owned(),
                    version,
                    failures: report.describe_failures(),
                });
            };
            if by.trim().is_empty() || reason.trim().is_empty() {
                return Err(StoreError::ForceNeedsReason);
            }
            let mut record = record.clone().ok_or_else(|| {
                StoreError::Internal("a validation report without its record".into())
            })?;
            if let Some(validation) = record.validation.as_mut() {
                validation.forced = Some(crate::validate::ForcedActivation {
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                    at_ms: now_ms(),
                });
            }
            self.checked_write(
                "recording a forced activation",
                meta::write_load_record(&self.db, &record),
            )?;
            if let Some(mut stats) = meta::read_stats(&self.db, group, version)? {
                stats.accepted = true;
                self.checked_write(
                    "accepting the version's statistics",
                    meta::write_stats(&self.db, &stats, keyspace::STATS_KEPT),
                )?;
            }
            tracing::warn!(
                group,
                version,
                by,
                reason,
                "version activated despite failed validation"
            );
        }
        let rebuild = self.checked_write(
            "activating a version",
            state.versions.activate(group, version),
        )?;
        self.record_activation(group, version);
        self.publish(&state)?;
        Ok(rebuild)
    }

    /// Re-activates the version that was active before the current one. Returns it.
    /// An unusable hot segment of that version is handled as by
    /// [`activate`](Self::activate).
    pub fn rollback(&self, group: &str) -> Result<u64, StoreError> {
        let (target, rebuild) = self.rollback_locked(group)?;
        self.observe_activation(group, target, ActivationCause::Rollback);
        if rebuild {
            self.rebuild_activated_segment(group, target);
        }
        Ok(target)
    }

    fn rollback_locked(&self, group: &str) -> Result<(u64, bool), StoreError> {
        let mut state = self.admin.lock();
        let outcome = self.checked_write("rolling back", state.versions.rollback(group))?;
        self.record_activation(group, outcome.0);
        self.publish(&state)?;
        Ok(outcome)
    }

    /// Records in the history that `version` of `group` is served from now on. Called
    /// under the admin lock after the manifest changed and before the view naming the
    /// version is published. A failure is logged: serving goes on, and as-of reads of
    /// the time since then answer from the previous activation.
    fn record_activation(&self, group: &str, version: u64) {
        if !self.config.history.enabled {
            return;
        }
        if let Err(e) = history::record_activation(
            &self.db,
            self.options.history(),
            &self.config.history,
            group,
            version,
            now_ms(),
        ) {
            tracing::error!(group, version, error = %e, "could not record an activation in the history");
        }
    }

    /// The lock serializing `group`'s loads.
    fn load_lock(&self, group: &str) -> Arc<Mutex<()>> {
        self.load_locks
            .lock()
            .entry(group.to_owned())
            .or_default()
            .clone()
    }

    /// The history facts now (versions recorded, activations), for as-of and
    /// point-in-time reads.
    pub fn history_table(&self) -> Arc<history::HistoryTable> {
        self.options.history().load_full()
    }

    /// Hands every entity's history records of `group` to `visitor`, in key order,
    /// from one snapshot (see [`history::servable::scan_group`]); the block cache is
    /// left as it is. Returns the number of entities.
    pub fn scan_history(
        &self,
        group: &str,
        visitor: &mut impl history::servable::EntityVisitor,
    ) -> Result<u64, ReadError> {
        let snapshot = self.db.snapshot();
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_snapshot(&snapshot);
        opts.set_total_order_seek(true);
        opts.fill_cache(false);
        history::servable::scan_group(&self.db, opts, group, visitor)
    }

    /// Reads `names` of one entity as a live read at `at_ms` answered them (see
    /// [`history::read`]): the same planner and answer as live reads, with TTL and
    /// freshness judged at `at_ms`. Not reported to observers (nothing is served).
    pub fn get_entity_as_of(
        &self,
        entity_type: &str,
        entity_id: &str,
        names: query::Names<'_>,
        at_ms: TimestampMs,
        guard: Option<&dyn query::guard::ReadGuard>,
    ) -> Result<query::EntityAnswer, ReadError> {
        self.get_entity_from_history(
            entity_type,
            entity_id,
            names,
            at_ms,
            history::read::HistoryQuery::AsOf,
            guard,
        )
    }

    /// Reads `names` of one entity from the history at `at_ms` as `query` asks (as of,
    /// or point in time for a training row).
    pub fn get_entity_from_history(
        &self,
        entity_type: &str,
        entity_id: &str,
        names: query::Names<'_>,
        at_ms: TimestampMs,
        query: history::read::HistoryQuery,
        guard: Option<&dyn query::guard::ReadGuard>,
    ) -> Result<query::EntityAnswer, ReadError> {
        let table = self.history_table();
        let read = history::read::HistoryRead {
            table: &table,
            query,
        };
        self.view.with(|view| {
            query::entity::get_in(
                view,
                entity_type,
                entity_id,
                names,
                at_ms,
                guard,
                Some(read),
            )
        })
    }

    /// Answers a ranking request as a live read at `at_ms` answered it (see
    /// [`get_entity_as_of`](Self::get_entity_as_of)).
    pub fn rank_as_of(
        &self,
        request: RankRequest,
        at_ms: TimestampMs,
        guard: Option<&dyn query::guard::ReadGuard>,
    ) -> Result<RankResponse, RankError> {
        self.rank_from_history(request, at_ms, history::read::HistoryQuery::AsOf, guard)
    }

    /// Answers a ranking request from the history at `at_ms` as `query` asks (as of,
    /// or point in time for a training row); not reported to observers.
    pub fn rank_from_history(
        &self,
        request: RankRequest,
        at_ms: TimestampMs,
        query: history::read::HistoryQuery,
        guard: Option<&dyn query::guard::ReadGuard>,
    ) -> Result<RankResponse, RankError> {
        let table = self.history_table();
        let read = history::read::HistoryRead {
            table: &table,
            query,
        };
        self.view
            .with(|view| query::rank::rank_in(view, request, at_ms, guard, Some(read)))
    }

    /// Removes every history record of one entity: each group of `entity_type` (see
    /// [`history::erase_entity`]); nothing else. A privacy request wants
    /// [`delete_entity`](Self::delete_entity), which covers every family.
    pub fn erase_entity_history(
        &self,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<(), StoreError> {
        let registry = self.registry();
        for group in registry.groups() {
            if group.entity_type == entity_type {
                history::erase_entity(&self.db, &group.name, entity_id.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Deletes every value of one entity, and of every composite entity containing
    /// it, from every place the store keeps values (see [`erase`] for what, how and
    /// the guarantees). Durable when it returns.
    pub fn delete_entity(
        &self,
        request: &erase::EntityErasure,
    ) -> Result<erase::ErasureReport, StoreError> {
        erase::run(self, request)
    }

    /// Flushes and fully compacts every column family, with the bottommost level
    /// forced, so that the retention filters judge every stored record now (what
    /// `featstore compact` runs; README, "Retention"). Takes as long as rewriting the
    /// store's files; reads go on meanwhile.
    pub fn compact_all(&self) -> Result<(), StoreError> {
        let names = DB::list_cf(&rocksdb::Options::default(), self.db.path()).unwrap_or_default();
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in names {
            if let Some(cf) = self.db.cf_handle(&name) {
                self.db.flush_cf(&cf)?;
                self.db
                    .compact_range_cf_opt(&cf, None::<&[u8]>, None::<&[u8]>, &opts);
            }
        }
        Ok(())
    }

    /// Registers a holder of served data outside the store (the running serving log),
    /// which every [`delete_entity`](Self::delete_entity) calls.
    pub fn add_eraser(&self, eraser: Arc<dyn erase::Eraser>) -> erase::EraserId {
        self.erasers.add(eraser)
    }

    /// Unregisters an eraser added by [`add_eraser`](Self::add_eraser).
    pub fn remove_eraser(&self, id: erase::EraserId) {
        self.erasers.remove(id);
    }

    /// Builds again the segment of `version` of `group` detached by a deletion, and
    /// attaches it (mapped when the version is active).
    fn resegment(&self, group: &str, version: u64) -> Result<(), StoreError> {
        let records = meta::read_load_records(&self.db, group)?;
        let Some(record) = records.get(&version) else {
            return Ok(());
        };
        let Ok((family, prefix)) = self.admin.lock().versions.location(group, version) else {
            return Ok(());
        };
        let Some(cf) = self.db.cf_handle(&family) else {
            return Ok(());
        };
        let built = self.build_segment(group, version, &cf, prefix, record)?;
        drop(cf);
        let file = built.as_ref().map(|(info, _)| info.file.clone());
        let mut state = self.admin.lock();
        if self.checked_write(
            "attaching a segment rebuilt after a deletion",
            state.versions.reattach_segment(group, version, built),
        )? {
            self.publish(&state)?;
        } else if let Some(file) = file {
            let _ = std::fs::remove_file(keyspace::segments_dir(&self.dir).join(file));
        }
        Ok(())
    }

    /// Drops all but the newest `keep` versions of `group` (never the active one).
    /// Readers holding an older view keep reading a dropped version until they finish.
    pub fn drop_old_versions(&self, group: &str, keep: usize) -> Result<Vec<u64>, StoreError> {
        let mut state = self.admin.lock();
        state.versions.require_group(group)?;
        self.drop_locked(&mut state, group, keep)
    }

    fn drop_locked(
        &self,
        state: &mut AdminState,
        group: &str,
        keep: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let result = state.versions.drop_old(group, keep);
        // A failure after the manifest was committed (deleting a legacy column family)
        // still leaves a new manifest to publish; publishing an unchanged one is harmless.
        if !matches!(&result, Ok(dropped) if dropped.is_empty()) {
            self.publish(state)?;
        }
        self.checked_write("dropping old versions", result)
    }
}
