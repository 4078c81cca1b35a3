//! The storage engine: RocksDB column families holding immutable, versioned batch data,
//! plus the registry and manifest in the `meta` column family.
//!
//! [`FeatureStore`] is the library API (a Rust ranking host can embed it; the HTTP
//! server is a thin shell over it).
//!
//! Thread-safety contract: every method takes `&self` and the store is `Send + Sync`.
//! Reads load the current [`ReadView`] with one atomic pointer load and take no lock.
//! Writers (registry changes, load commits, activation, drops) serialize on `admin`, a
//! `parking_lot::Mutex` held only for metadata updates (a synced meta write and a view
//! swap), never while a load reads its input or writes SST files, and never by readers.

pub mod access;
pub mod config;
pub mod error;
pub mod lookup;
pub mod manifest;
pub mod memory;
pub mod meta;
pub mod options;
pub mod registry_ops;
pub mod segments;
pub mod stream;
pub mod version_range;
pub mod view;

// The read planning and answers moved to the query layer; these paths stay for callers.
pub use crate::query::{answer, rank, read};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use featstore_swap::SnapshotCell;
use parking_lot::Mutex;
use rocksdb::{DB, IngestExternalFileOptions};
use serde::Serialize;

pub use config::StoreConfig;
pub use error::{ReadError, StoreError};
pub use memory::MemoryUsage;
pub use read::{FeatureReading, FeatureVector};
pub use stream::{PushError, PushEvent, PushOutcome, StreamFault, WriterHealth};
pub use view::{ReadView, StreamedFeatures};

use crate::codec::key::{VersionPrefix, version_of_key};
use crate::loader::{self, LoadProgress, LoadRecord, LoadRequest};
use crate::query::{self, RankError, RankRequest, RankResponse};
use crate::registry::{DefinitionFilter, FeatureDefinition, FeatureSpec, Registry};
use crate::types::{FeatureId, TimestampMs, now_ms};
use access::AccessCounter;
use manifest::{GroupManifest, Manifest, VersionEntry, VersionState};
use options::{
    BATCH_CF_PREFIX, EngineOptions, META_CF, VERSIONS_CF_PREFIX, batch_cf_name, versions_cf_name,
};
use segments::{HotSegment, Selection};
use version_range::VersionRange;

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
    manifest: Manifest,
    registry: Arc<Registry>,
    next_feature_id: FeatureId,
    /// Mapped hot segments, by the column family name of their version.
    segments: HashMap<String, Arc<HotSegment>>,
    /// Features that ever received a pushed value, per group (persisted in meta).
    streamed: Arc<StreamedFeatures>,
    /// Key ranges of the layout-2 versions the manifest names, by version name.
    ranges: HashMap<String, Arc<VersionRange>>,
}

/// Access counters by entity type; replaced (copy on write) when an entity type appears.
type AccessMap = HashMap<String, Arc<AccessCounter>>;

/// Meta key prefix of persisted access counts: `access/{entity_type}`.
const ACCESS_PREFIX: &str = "access/";

/// An open feature store.
pub struct FeatureStore {
    // Constant after open.
    db: Arc<DB>,
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
        let db_path = dir.join("db");
        let scratch = dir.join("tmp");
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

        let mut manifest = meta::read_manifest(&db)?;
        let recovered = Self::recover(&db, &names, &mut manifest)?;
        if recovered {
            meta::write_manifest(&db, &manifest, None)?;
        }
        Self::delete_orphan_ranges(&db, &names, &manifest)?;
        let ranges = Self::version_ranges(&db, &manifest);
        let registry = Arc::new(registry);
        let segments = Self::map_active_segments(&dir, &manifest);
        let streamed = Arc::new(stream::load_streamed_features(&db, &registry)?);
        let view = ReadView::build(
            db.clone(),
            registry.clone(),
            &manifest,
            &segments,
            &ranges,
            streamed.clone(),
        )?;
        let stream = stream::StreamState::start(&db, &options, &registry)?;
        let store = FeatureStore {
            db,
            options,
            config,
            dir,
            view: SnapshotCell::new(view),
            access: ArcSwap::from_pointee(AccessMap::new()),
            admin: Mutex::new(AdminState {
                manifest,
                registry,
                next_feature_id,
                segments,
                streamed,
                ranges,
            }),
            stream,
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
        let unmapped: Vec<(String, u64)> = {
            let state = self.admin.lock();
            state
                .manifest
                .groups
                .iter()
                .filter_map(|(group, gm)| {
                    let entry = gm.entry(gm.active?)?;
                    entry.segment.as_ref()?;
                    let missing = !state.segments.contains_key(&entry.cf_name);
                    missing.then(|| (group.clone(), entry.version))
                })
                .collect()
        };
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
        let cf_name = batch_cf_name(group, version);
        let (family, prefix) = {
            let state = self.admin.lock();
            let entry = state
                .manifest
                .groups
                .get(group)
                .and_then(|gm| gm.entry(version))
                .ok_or_else(|| {
                    StoreError::Segment(format!("{group} v{version}: not in the manifest"))
                })?;
            let (family, prefix) = entry.location();
            (family.to_owned(), prefix)
        };
        let cf = self.db.cf_handle(&family).ok_or_else(|| {
            StoreError::Segment(format!(
                "{group} v{version}: column family {family} is missing"
            ))
        })?;
        let built = self.build_segment(group, version, &cf, prefix, record)?;
        drop(cf);
        let mut state = self.admin.lock();
        let mut next = state.manifest.clone();
        let Some(entry) = next
            .groups
            .get_mut(group)
            .and_then(|gm| gm.versions.iter_mut().find(|e| e.version == version))
        else {
            // Dropped while the segment was built: nothing to attach it to.
            return Ok(());
        };
        entry.segment = built.as_ref().map(|(info, _)| info.clone());
        if let Some((_, segment)) = built {
            state.segments.insert(cf_name, segment);
        }
        self.commit_manifest(&mut state, next, None)
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

    fn segments_dir(dir: &Path) -> PathBuf {
        dir.join("segments")
    }

    /// Maps the segments of active versions, and deletes segment files the manifest no
    /// longer names. A corrupt segment is left out (reads of that version go to
    /// RocksDB, with identical results) and logged.
    fn map_active_segments(dir: &Path, manifest: &Manifest) -> HashMap<String, Arc<HotSegment>> {
        let seg_dir = Self::segments_dir(dir);
        let named: std::collections::HashSet<&str> = manifest
            .groups
            .values()
            .flat_map(|g| g.versions.iter())
            .filter_map(|v| v.segment.as_ref().map(|s| s.file.as_str()))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&seg_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !named.contains(name.as_str()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut mapped = HashMap::new();
        for gm in manifest.groups.values() {
            let Some(entry) = gm.active.and_then(|v| gm.entry(v)) else {
                continue;
            };
            let Some(info) = &entry.segment else { continue };
            match HotSegment::open(&seg_dir.join(&info.file)) {
                Ok(segment) => {
                    mapped.insert(entry.cf_name.clone(), Arc::new(segment));
                }
                Err(e) => {
                    tracing::error!(error = %e, "hot segment unusable; serving that version from RocksDB")
                }
            }
        }
        mapped
    }

    /// Maps the segment of `entry`, about to be activated, if it has one and it is not
    /// mapped yet. Returns true when the file is unusable (corrupt, missing, another
    /// format): the version then activates without it, served from RocksDB with
    /// identical answers (a segment is a cache of its version), and the caller rebuilds
    /// it once the activation is committed, as open does for the active versions. A
    /// corrupt segment is never mapped.
    fn ensure_segment(&self, state: &mut AdminState, entry: &VersionEntry) -> bool {
        let Some(info) = &entry.segment else {
            return false;
        };
        if state.segments.contains_key(&entry.cf_name) {
            return false;
        }
        match HotSegment::open(&Self::segments_dir(&self.dir).join(&info.file)) {
            Ok(segment) => {
                state
                    .segments
                    .insert(entry.cf_name.clone(), Arc::new(segment));
                false
            }
            Err(e) => {
                tracing::error!(
                    cf = entry.cf_name.as_str(),
                    error = %e,
                    "hot segment unusable; activating the version from RocksDB and rebuilding the segment"
                );
                true
            }
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
        for (entity_type, bytes) in meta::read_prefix(&self.db, ACCESS_PREFIX)? {
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
                    format!("{ACCESS_PREFIX}{entity_type}").as_bytes(),
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

    /// Drops what an interrupted load left behind. Returns whether the manifest changed.
    fn recover(db: &DB, cf_names: &[String], manifest: &mut Manifest) -> Result<bool, StoreError> {
        let mut changed = false;
        for (group, gm) in manifest.groups.iter_mut() {
            let stale: Vec<u64> = gm
                .versions
                .iter()
                .filter(|v| v.state == VersionState::Loading)
                .map(|v| v.version)
                .collect();
            for version in stale {
                tracing::warn!(
                    group,
                    version,
                    "removing version left loading by an interrupted load"
                );
                gm.remove(version);
                changed = true;
            }
        }
        for name in cf_names.iter().filter(|n| n.starts_with(BATCH_CF_PREFIX)) {
            let known = manifest
                .groups
                .values()
                .flat_map(|g| g.versions.iter())
                .any(|v| &v.cf_name == name);
            if !known {
                tracing::warn!(
                    cf = name.as_str(),
                    "dropping column family not named by the manifest"
                );
                db.drop_cf(name)?;
            }
        }
        Ok(changed)
    }

    /// What the engine's memory pools hold now (see [`memory`]). Walks every column
    /// family's properties: call it for metrics or diagnostics, not per request.
    pub fn memory_usage(&self) -> MemoryUsage {
        let (hot_segments_mapped, column_families) = {
            let state = self.admin.lock();
            let mapped = state.segments.values().map(|s| s.mapped_bytes()).sum();
            let batch = state
                .manifest
                .groups
                .values()
                .map(|g| g.versions.len() as u64)
                .sum::<u64>();
            (mapped, batch)
        };
        self.options
            .memory_usage(&self.db, hot_segments_mapped, column_families)
    }

    /// Deletes the key ranges of versions that a versions column family holds but the
    /// manifest does not name (a load or a drop interrupted by a crash). Finds them with
    /// one seek per version present, never a scan.
    fn delete_orphan_ranges(
        db: &DB,
        cf_names: &[String],
        manifest: &Manifest,
    ) -> Result<(), StoreError> {
        for family in cf_names
            .iter()
            .filter(|n| n.starts_with(VERSIONS_CF_PREFIX))
        {
            let Some(cf) = db.cf_handle(family) else {
                continue;
            };
            let named: std::collections::HashSet<u64> = manifest
                .groups
                .values()
                .flat_map(|g| g.versions.iter())
                .filter(|v| v.family.as_deref() == Some(family.as_str()))
                .map(|v| v.version)
                .collect();
            let mut orphans = Vec::new();
            {
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_total_order_seek(true);
                let mut iter = db.raw_iterator_cf_opt(&cf, opts);
                iter.seek_to_first();
                while let Some(version) = iter.key().and_then(version_of_key) {
                    if !named.contains(&version) {
                        orphans.push(version);
                    }
                    match VersionPrefix::of(version).upper_bound() {
                        Some(next) => iter.seek(next),
                        None => break,
                    }
                }
                iter.status()?;
            }
            for version in orphans {
                tracing::warn!(
                    family = family.as_str(),
                    version,
                    "deleting keys of a version the manifest does not name"
                );
                VersionRange::delete_now(db, family, VersionPrefix::of(version))?;
            }
        }
        Ok(())
    }

    /// The key ranges of every layout-2 version the manifest names.
    fn version_ranges(db: &Arc<DB>, manifest: &Manifest) -> HashMap<String, Arc<VersionRange>> {
        manifest
            .groups
            .values()
            .flat_map(|g| g.versions.iter())
            .filter_map(|entry| {
                let family = entry.family.as_ref()?;
                Some((
                    entry.cf_name.clone(),
                    VersionRange::new(db.clone(), family, VersionPrefix::of(entry.version)),
                ))
            })
            .collect()
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
        let answer = self
            .view
            .with(|view| query::get(view, entity_type, entity_id, names, now_ms()))?;
        self.record_access(entity_type, entity_id);
        Ok(answer)
    }

    /// Answers a ranking request: the context's features once and one row per
    /// candidate, in the order asked (see [`crate::query::rank`]).
    ///
    /// Candidates are counted for the hot segment's choice of entities once the request
    /// was accepted (so unknown entity types from requests never create counters).
    pub fn rank(&self, request: RankRequest) -> Result<RankResponse, RankError> {
        let response = self
            .view
            .with(|view| query::rank(view, request, now_ms()))?;
        if self.config.hot_segment_bytes > 0 {
            let counter = self.access_counter(&response.candidate_type);
            for id in &response.candidates {
                counter.record(id.as_bytes());
            }
        }
        Ok(response)
    }

    /// Definitions matching `filter`.
    pub fn list_definitions(&self, filter: &DefinitionFilter) -> Vec<Arc<FeatureDefinition>> {
        self.view.with(|view| view.registry().list(filter))
    }

    /// Publishes a view of the writers' state, after it was persisted.
    fn publish(&self, state: &AdminState) -> Result<(), StoreError> {
        let view = ReadView::build(
            self.db.clone(),
            state.registry.clone(),
            &state.manifest,
            &state.segments,
            &state.ranges,
            state.streamed.clone(),
        )?;
        self.view.store(Arc::new(view));
        Ok(())
    }

    /// Persists `next` (with an optional load record), publishes it, and makes it the
    /// writers' manifest. Nothing changes if the write fails.
    fn commit_manifest(
        &self,
        state: &mut AdminState,
        next: Manifest,
        record: Option<&LoadRecord>,
    ) -> Result<(), StoreError> {
        self.checked_write(
            "writing the manifest",
            meta::write_manifest(&self.db, &next, record),
        )?;
        state.manifest = next;
        self.publish(state)
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
            spec.validate().map_err(StoreError::InvalidDefinition)?;
            if let Some(group) = registry.group(&spec.group)
                && group.entity_type != spec.entity_type
            {
                return Err(StoreError::InvalidDefinition(format!(
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
                        return Err(StoreError::InvalidDefinition(reason));
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
                    next_id = next_id.checked_add(1).ok_or_else(|| {
                        StoreError::InvalidDefinition("feature ids exhausted".into())
                    })?;
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
    pub fn load(
        &self,
        request: &LoadRequest,
        progress: &dyn Fn(LoadProgress),
    ) -> Result<LoadRecord, StoreError> {
        let registry = self.registry();
        let group = registry
            .group(&request.group)
            .ok_or_else(|| StoreError::UnknownGroup(request.group.clone()))?;
        let columns = loader::group_columns(&registry, &group.name);

        let (version, cf_name) = {
            let mut state = self.admin.lock();
            let mut next = state.manifest.clone();
            let gm = next.groups.entry(request.group.clone()).or_default();
            let version = gm.next_version.max(1);
            gm.next_version = version + 1;
            let cf_name = batch_cf_name(&request.group, version);
            let family = versions_cf_name(&request.group);
            if self.db.cf_handle(&family).is_none() {
                self.checked_write(
                    "creating a versions column family",
                    self.db
                        .create_cf(&family, &self.options.versions_cf())
                        .map_err(StoreError::from),
                )?;
            }
            gm.versions.push(VersionEntry {
                version,
                cf_name: cf_name.clone(),
                family: Some(family),
                state: VersionState::Loading,
                created_at_ms: now_ms(),
                segment: None,
            });
            self.checked_write(
                "writing the manifest",
                meta::write_manifest(&self.db, &next, None),
            )?;
            state.manifest = next;
            (version, cf_name)
        };

        let scratch = self
            .dir
            .join("tmp")
            .join(format!("{}.v{version}", request.group));
        let result =
            self.build_and_commit(request, &columns, version, &cf_name, &scratch, progress);
        if let Err(e) = std::fs::remove_dir_all(&scratch)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %scratch.display(), error = %e, "could not remove load scratch");
        }
        if result.is_err() {
            self.abandon_version(&request.group, version, &cf_name);
        }
        result
    }

    fn build_and_commit(
        &self,
        request: &LoadRequest,
        columns: &std::collections::HashMap<String, loader::input::FeatureColumn>,
        version: u64,
        cf_name: &str,
        scratch: &Path,
        progress: &dyn Fn(LoadProgress),
    ) -> Result<LoadRecord, StoreError> {
        std::fs::create_dir_all(scratch)
            .map_err(io_err(format!("create {}", scratch.display())))?;
        let sst_options = self.options.versions_cf();
        let prefix = VersionPrefix::of(version);
        let family = versions_cf_name(&request.group);
        let registry = self.registry();
        let entity_type = registry
            .group(&request.group)
            .map(|g| g.entity_type.as_str())
            .unwrap_or_default();
        let built = loader::build_files(
            request,
            columns,
            registry.entity_id_rule(entity_type),
            &loader::SstTarget {
                options: &sst_options,
                key_prefix: prefix.as_bytes(),
            },
            scratch,
            self.config.load_memory_bytes,
            self.config.sst_target_bytes,
            progress,
        )?;

        let ingest_started = Instant::now();
        let cf = self
            .db
            .cf_handle(&family)
            .ok_or_else(|| StoreError::CorruptMeta {
                key: family.clone(),
                reason: "versions column family vanished after creation".into(),
            })?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.checked_write(
            "ingesting the load's SST files",
            self.db
                .ingest_external_file_cf_opts(&cf, &ingest, built.files.clone())
                .map_err(StoreError::from),
        )?;
        let ingest_ms = u64::try_from(ingest_started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let segment_started = Instant::now();
        let segment = self.build_segment(&request.group, version, &cf, prefix, &built.record)?;
        drop(cf);

        let mut record = built.record;
        record.version = version;
        record.ingest_ms = ingest_ms;
        record.segment_ms =
            u64::try_from(segment_started.elapsed().as_millis()).unwrap_or(u64::MAX);
        record.activated = request.activate;

        let mut state = self.admin.lock();
        let mut next = state.manifest.clone();
        let gm = next.groups.entry(request.group.clone()).or_default();
        if let Some(entry) = gm.versions.iter_mut().find(|v| v.version == version) {
            entry.state = VersionState::Ready;
            entry.segment = segment.as_ref().map(|(info, _)| info.clone());
        }
        if let Some((_, mapped)) = segment {
            state.segments.insert(cf_name.to_owned(), mapped);
        }
        state.ranges.insert(
            cf_name.to_owned(),
            VersionRange::new(self.db.clone(), &family, prefix),
        );
        if request.activate {
            gm.activate(version);
        }
        self.commit_manifest(&mut state, next, Some(&record))?;
        let keep = self.config.keep_versions.max(1);
        if let Err(e) = self.drop_locked(&mut state, &request.group, keep) {
            tracing::warn!(group = request.group.as_str(), error = %e, "could not drop old versions");
        }
        Ok(record)
    }

    /// Builds, maps and validates the hot segment of a freshly ingested version, within
    /// the configured budget: the whole version if it fits, else its hottest entities.
    fn build_segment(
        &self,
        group: &str,
        version: u64,
        cf: &Arc<rocksdb::BoundColumnFamily<'_>>,
        prefix: VersionPrefix,
        record: &LoadRecord,
    ) -> Result<Option<(segments::SegmentInfo, Arc<HotSegment>)>, StoreError> {
        let budget = self.config.hot_segment_bytes;
        if budget == 0 || record.entities == 0 {
            return Ok(None);
        }
        let registry = self.registry();
        let Some(info) = registry.group(group) else {
            return Ok(None);
        };
        let fields: Vec<featstore_format::segment::FieldSpec> = info
            .features
            .iter()
            .filter_map(|id| registry.by_id(*id))
            .map(|d| featstore_format::segment::FieldSpec {
                feature_id: d.id,
                field_type: d.spec.dtype,
            })
            .collect();
        let fixed = featstore_format::segment::fixed_bytes_per_entity(&fields, 1)
            .map_err(|e| StoreError::Segment(format!("{group}: {e}")))?;
        // Ids beyond the inline prefix and variable-width values: bounded above by the
        // version's stored bytes per entity.
        let variable = fields.iter().any(|f| {
            matches!(
                f.field_type,
                crate::types::DType::String
                    | crate::types::DType::Bytes
                    | crate::types::DType::Float32Vector { .. }
            )
        });
        let per_entity = fixed.max(1)
            + if variable {
                record.sst_bytes / record.entities.max(1)
            } else {
                16
            };
        let selection = if record.entities.saturating_mul(per_entity) <= budget {
            Selection::All
        } else {
            self.persist_access_counts()?;
            let k = usize::try_from(budget / per_entity).unwrap_or(usize::MAX);
            let hot: Vec<Vec<u8>> = self
                .hottest_entities(&info.entity_type, k)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            if hot.is_empty() {
                tracing::info!(
                    group,
                    version,
                    "version exceeds the hot segment budget and no access counts exist yet; no segment"
                );
                return Ok(None);
            }
            Selection::Only(hot)
        };
        let dir = Self::segments_dir(&self.dir);
        let file = segments::file_name(&batch_cf_name(group, version));
        let target = segments::SegmentTarget {
            group,
            version,
            dir: &dir,
            file: &file,
        };
        let Some(info) = segments::build(&self.db, cf, prefix, &target, fields, &selection)? else {
            return Ok(None);
        };
        let mapped = HotSegment::open(&dir.join(&info.file))?;
        Ok(Some((info, Arc::new(mapped))))
    }

    /// Removes a failed load's version from the manifest and deletes its keys.
    fn abandon_version(&self, group: &str, version: u64, cf_name: &str) {
        let segment = Self::segments_dir(&self.dir).join(segments::file_name(cf_name));
        if segment.exists() {
            let _ = std::fs::remove_file(&segment);
        }
        let mut state = self.admin.lock();
        let mut next = state.manifest.clone();
        if let Some(gm) = next.groups.get_mut(group) {
            gm.remove(version);
        }
        if let Err(e) = self.commit_manifest(&mut state, next, None) {
            tracing::error!(group, version, error = %e, "could not remove failed version; it is dropped at next open");
            return;
        }
        state.ranges.remove(cf_name);
        let family = versions_cf_name(group);
        if let Err(e) = VersionRange::delete_now(&self.db, &family, VersionPrefix::of(version)) {
            tracing::error!(group, version, error = %e, "could not delete keys of failed load; they are deleted at next open");
        }
    }

    fn group_manifest<'a>(
        state: &'a AdminState,
        group: &str,
    ) -> Result<&'a GroupManifest, StoreError> {
        state
            .manifest
            .groups
            .get(group)
            .ok_or_else(|| StoreError::UnknownGroup(group.to_owned()))
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
            let gm = state
                .manifest
                .groups
                .get(group)
                .cloned()
                .unwrap_or_default();
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

    /// Groups with at least one registered feature, with their active version.
    pub fn groups(&self) -> Vec<(String, String, Option<u64>)> {
        let state = self.admin.lock();
        state
            .registry
            .groups()
            .into_iter()
            .map(|g| {
                let active = state.manifest.groups.get(&g.name).and_then(|m| m.active);
                (g.name.clone(), g.entity_type.clone(), active)
            })
            .collect()
    }

    /// Makes `version` of `group` the one served, atomically for all readers. If its hot
    /// segment file is unusable (corrupt or missing), the version is served from
    /// RocksDB from the moment it is active, and the segment is rebuilt before this
    /// returns (a failed rebuild is logged; the version stays active).
    pub fn activate(&self, group: &str, version: u64) -> Result<(), StoreError> {
        if self.activate_locked(group, version)? {
            self.rebuild_activated_segment(group, version);
        }
        Ok(())
    }

    /// [`activate`](Self::activate) under the admin lock; true when the segment must be
    /// rebuilt.
    fn activate_locked(&self, group: &str, version: u64) -> Result<bool, StoreError> {
        let mut state = self.admin.lock();
        let gm = Self::group_manifest(&state, group)?;
        let entry = gm
            .entry(version)
            .ok_or_else(|| StoreError::UnknownVersion {
                group: group.to_owned(),
                version,
            })?;
        if entry.state != VersionState::Ready {
            return Err(StoreError::VersionNotReady {
                group: group.to_owned(),
                version,
            });
        }
        let entry = entry.clone();
        let rebuild = self.ensure_segment(&mut state, &entry);
        let mut next = state.manifest.clone();
        if let Some(gm) = next.groups.get_mut(group) {
            gm.activate(version);
        }
        self.commit_manifest(&mut state, next, None)?;
        Ok(rebuild)
    }

    /// Re-activates the version that was active before the current one. Returns it.
    /// An unusable hot segment of that version is handled as by
    /// [`activate`](Self::activate).
    pub fn rollback(&self, group: &str) -> Result<u64, StoreError> {
        let (target, rebuild) = self.rollback_locked(group)?;
        if rebuild {
            self.rebuild_activated_segment(group, target);
        }
        Ok(target)
    }

    fn rollback_locked(&self, group: &str) -> Result<(u64, bool), StoreError> {
        let mut state = self.admin.lock();
        let mut next = state.manifest.clone();
        let gm = next
            .groups
            .get_mut(group)
            .ok_or_else(|| StoreError::UnknownGroup(group.to_owned()))?;
        let target = gm
            .rollback()
            .ok_or_else(|| StoreError::NoPreviousVersion(group.to_owned()))?;
        let rebuild = match gm.entry(target).cloned() {
            Some(entry) => self.ensure_segment(&mut state, &entry),
            None => false,
        };
        self.commit_manifest(&mut state, next, None)?;
        Ok((target, rebuild))
    }

    /// Drops all but the newest `keep` versions of `group` (never the active one).
    /// Readers holding an older view keep reading a dropped version until they finish.
    pub fn drop_old_versions(&self, group: &str, keep: usize) -> Result<Vec<u64>, StoreError> {
        let mut state = self.admin.lock();
        Self::group_manifest(&state, group)?;
        self.drop_locked(&mut state, group, keep)
    }

    fn drop_locked(
        &self,
        state: &mut AdminState,
        group: &str,
        keep: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let Some(gm) = state.manifest.groups.get(group) else {
            return Ok(Vec::new());
        };
        let doomed = gm.versions_to_drop(keep);
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let doomed_entries: Vec<VersionEntry> = doomed
            .iter()
            .filter_map(|v| gm.entry(*v).cloned())
            .collect();
        let mut next = state.manifest.clone();
        if let Some(gm) = next.groups.get_mut(group) {
            for v in &doomed {
                gm.remove(*v);
            }
        }
        // Manifest first: a crash before the drops leaves orphans that open() drops.
        self.commit_manifest(state, next, None)?;
        for entry in doomed_entries {
            // Readers still holding an older view keep the mapping (and the column
            // family handle) alive; unlinking a mapped file is safe.
            state.segments.remove(&entry.cf_name);
            if let Some(info) = &entry.segment {
                let path = Self::segments_dir(&self.dir).join(&info.file);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not delete segment");
                }
            }
            match state.ranges.remove(&entry.cf_name) {
                // Deleted now, or when the last view reading it is released.
                Some(range) => range.doom(),
                None if entry.family.is_none() => self.db.drop_cf(&entry.cf_name)?,
                None => {}
            }
        }
        Ok(doomed)
    }
}
