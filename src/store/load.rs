//! The load pipeline: one batch load of a group, as explicit stages run by
//! [`LoadPipeline`].
//!
//! 1. **allocate**: the next version number of the group, its key prefix in the group's
//!    versions column family (created on first use), and a manifest entry in state
//!    `loading`, persisted before any file is written (a crash later leaves a version
//!    that open removes).
//! 2. **build**: reads the input file once (on a second thread; its size and CRC-32
//!    for the load record come from the same read), validates and sorts it with memory
//!    bounded by `load_memory_bytes` (`crate::loader`), and writes the sorted stream
//!    into SST files. The stream has several consumers, called with every unique record once,
//!    in key order, while the files are written: the SST writer and a
//!    [`StreamConsumers`] list: the hot segment's rows and the version's statistics
//!    (`crate::validate::StatsCollector`), which the gate sees; and the batch rows the
//!    writer encodes go to the history's changes (`history::feed`, ingested by the
//!    commit). Statistics and history run on threads of their own.
//! 3. **ingest**: moves the SST files into the versions column family.
//! 4. **segment**: writes, maps and validates the hot segment whose rows the build
//!    stage assembled (see [`SegmentStage`]).
//! 5. **gate**: the [`LoadGate`] sees the finished version's facts ([`VersionFacts`]:
//!    record, segment, statistics and the earlier versions') and accepts it, holds it
//!    (committed, not activated) or refuses it. [`FeatureStore::load`] uses the
//!    validation gate (`crate::validate::ValidationGate`); the shadow check against the
//!    active version is added to its report here. The statistics are then written to
//!    `meta`.
//! 6. **commit**: `commit_version` marks the version ready (and active,
//!    if asked) in the manifest, publishes the new read view and drops versions beyond
//!    `keep_versions`.
//!
//! A failure in any stage removes the version (`VersionSet::abandon`): nothing of it
//! becomes visible. A version the gate holds back (validation failed) is the exception:
//! it is committed `ready` without being activated, and the load answers
//! [`LoadError::Held`]. Each stage's time is reported through the load's progress callback
//! and logged; the load record keeps build, ingest and segment times.
//!
//! Hot segment from the stream: the segment is assembled from the sorted stream while
//! the SST files are written, never from a scan of the new column family. Which
//! entities it holds is decided as before, once the version's totals are known
//! (`segments::Sizing`): all of them if the version fits `hot_segment_bytes`, else
//! the most-read ones. The stage assembles both candidates while the stream passes,
//! and drops the whole-version one as soon as the entities seen prove it cannot fit.
//! Where a candidate could not be assembled from the stream (a group with variable-width
//! values, whose hot-entity count depends on the version's final size), the stage
//! falls back to the rebuild path (`segments::build`: one seek per hot entity, or a
//! scan), with identical results.
//!
//! Memory: the sort buffer stays within `load_memory_bytes` (streaming or spilling,
//! see `crate::loader::sorter`), plus about ten 1 MiB chunks of parsed records at most
//! between the reader thread and the sorting one (four in flight, five recycled). The segment stage holds the segment under
//! construction, about the size of the finished file: at most `hot_segment_bytes`
//! (plus one row) for the whole-version candidate, which is dropped as soon as the
//! version provably exceeds it, and at most the hot-entity count's rows for the other.
//! That is the memory the built segment had before (it was assembled after ingest),
//! and the memory the store maps for the version once it is committed; it is charged
//! to `hot_segment_bytes`, not to the sort budget. While both candidates are assembled
//! (a version with access counts, until it outgrows the budget) they hold up to twice
//! that.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use featstore_format::segment::FieldSpec;
use rocksdb::IngestExternalFileOptions;

use super::history;
use super::keyspace::{self, batch_cf_name};
use super::segments::{self, HotSegment, SegmentFeed, SegmentInfo, Selection, Sizing};
use super::versions;
use super::{FeatureStore, StoreError, io_err, meta};
use crate::codec::key::VersionPrefix;
use crate::loader::offthread::{OffThread, OffThreadFn};
use crate::loader::sorter::SortedSink;
use crate::loader::{self, LoadError, LoadProgress, LoadRecord, LoadRequest};
use crate::registry::Registry;
use crate::types::FeatureId;
use crate::validate::{StatsCollector, ValidationReport, VersionStats};

/// What the gate sees of a finished version, before it is committed.
#[derive(Debug, Clone, Copy)]
pub struct VersionFacts<'a> {
    /// Group loaded.
    pub group: &'a str,
    /// Version built.
    pub version: u64,
    /// Its load record: input, counts, sizes, timings.
    pub record: &'a LoadRecord,
    /// Its hot segment, if one was built.
    pub segment: Option<&'a SegmentInfo>,
    /// Its statistics and its predecessors', when the group has features.
    pub stats: Option<GateStats<'a>>,
}

/// The statistics a gate sees: the new version's, computed from its sorted stream,
/// and those of the group's earlier accepted versions.
#[derive(Debug, Clone, Copy)]
pub struct GateStats<'a> {
    /// The new version's statistics.
    pub current: &'a VersionStats,
    /// Earlier versions' statistics, newest first (at most
    /// [`keyspace::STATS_KEPT`]; versions held by their validation left out).
    pub history: &'a [VersionStats],
    /// The new version's sketches, for figures not stored (its distribution at any
    /// point).
    pub collector: &'a StatsCollector,
}

/// What a gate decided about a finished version.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    /// Commit it, activating it if the load asked to; the report (if any) is kept
    /// in its load record.
    Accept {
        /// The validation report.
        report: Option<ValidationReport>,
    },
    /// Commit it `ready` but do not activate it; the load fails with
    /// [`LoadError::Held`] and the report is kept in its load record.
    Hold {
        /// Why.
        report: ValidationReport,
    },
    /// Remove it: nothing of it becomes visible ([`LoadError::Refused`]).
    Refuse {
        /// Why.
        reason: String,
    },
}

/// Decides whether a finished version may be committed and activated. Called once per
/// load, after the version was ingested, its segment built and its statistics computed
/// (by a [`StatsCollector`] among the stream's consumers), before the manifest names it.
///
/// Data validation is the gate [`crate::validate::ValidationGate`], which
/// [`FeatureStore::load`] uses: a version breaking its rules is held (committed, not
/// activated), leaving the active version served.
pub trait LoadGate: Send + Sync {
    /// The gate's name, for the refusal message.
    fn name(&self) -> &str;

    /// The verdict on the finished version.
    fn check(&self, facts: &VersionFacts<'_>) -> GateVerdict;
}

/// A gate that accepts every version without a report.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl LoadGate for AcceptAll {
    fn name(&self) -> &str {
        "accept-all"
    }

    fn check(&self, _facts: &VersionFacts<'_>) -> GateVerdict {
        GateVerdict::Accept { report: None }
    }
}

/// The consumers of the sorted stream besides the SST writer, called in order with
/// every record (keys without the version prefix).
#[derive(Default)]
pub struct StreamConsumers<'a> {
    consumers: Vec<&'a mut dyn SortedSink>,
}

impl<'a> StreamConsumers<'a> {
    /// Adds a consumer.
    pub fn push(&mut self, consumer: &'a mut dyn SortedSink) {
        self.consumers.push(consumer);
    }
}

impl SortedSink for StreamConsumers<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        for consumer in &mut self.consumers {
            consumer.put(key, value)?;
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        for consumer in &mut self.consumers {
            consumer.restart()?;
        }
        Ok(())
    }
}

/// What a load hands its commit besides the record: the version's mapped segment and
/// its history files.
type BuiltParts = (Option<(SegmentInfo, Arc<HotSegment>)>, Option<Vec<PathBuf>>);

/// What the allocate stage reserved.
struct Allocated {
    version: u64,
    /// The version's name (the historical column family name), keying segments and
    /// ranges.
    cf_name: String,
    /// The group's versions column family.
    family: String,
    prefix: VersionPrefix,
    scratch: PathBuf,
    /// The version set's own record of the allocation.
    slot: versions::Allocated,
}

/// Milliseconds since `t`.
fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The statistics collector of a load of `group` at `version`: every feature of the
/// group.
fn stats_collector(registry: &Registry, group: &str, version: u64) -> StatsCollector {
    let features = registry
        .group(group)
        .map(|info| {
            info.features
                .iter()
                .filter_map(|id| registry.by_id(*id))
                .map(|d| (d.spec.name.clone(), d.id, d.spec.dtype))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    StatsCollector::new(group, version, features)
}

/// The segment's fields of `group`: every feature of the group, by id.
fn segment_fields(registry: &Registry, group: &str) -> Option<(String, Vec<FieldSpec>)> {
    let info = registry.group(group)?;
    let fields = info
        .features
        .iter()
        .filter_map(|id| registry.by_id(*id))
        .map(|d| FieldSpec {
            feature_id: d.id,
            field_type: d.spec.dtype,
        })
        .collect();
    Some((info.entity_type.clone(), fields))
}

/// The segment stage's stream consumer: assembles the candidate segments of the
/// version being written from the sorted stream.
///
/// `whole` takes every entity until the entities seen prove the version cannot fit the
/// budget (then it is dropped, freeing its memory); `hot` takes the most-read entities
/// known when the load started, when their number does not depend on the version's
/// size (groups without variable-width values) and access counts exist. A row error
/// is kept and reported once the stream ends.
pub struct SegmentStage {
    group: String,
    version: u64,
    entity_type: String,
    fields: Vec<FieldSpec>,
    budget: u64,
    sizing: Sizing,
    whole: Option<SegmentFeed>,
    hot: Option<SegmentFeed>,
    /// The selection `hot` was made with, to start it again.
    hot_ids: Option<Selection>,
    error: Option<StoreError>,
}

impl std::fmt::Debug for SegmentStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentStage")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("whole", &self.whole.is_some())
            .field("hot", &self.hot.is_some())
            .finish()
    }
}

impl SortedSink for SegmentStage {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        if self.error.is_some() {
            return Ok(());
        }
        if let Some(whole) = self.whole.as_mut() {
            let fed = whole.put(key, value);
            let outgrown = self.sizing.cannot_fit(whole.entities(), self.budget)
                || (!self.sizing.is_fixed() && whole.staged_bytes() > self.budget);
            if let Err(e) = fed {
                self.error = Some(e);
            }
            if outgrown {
                self.whole = None;
            }
        }
        if let Some(hot) = self.hot.as_mut()
            && let Err(e) = hot.put(key, value)
        {
            self.error = Some(e);
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        let fresh = |selection: &Selection| {
            SegmentFeed::new(&self.group, self.version, self.fields.clone(), selection)
        };
        let whole = fresh(&Selection::All);
        let hot = self.hot_ids.as_ref().map(fresh).transpose();
        match (whole, hot) {
            (Ok(whole), Ok(hot)) => {
                self.whole = Some(whole);
                self.hot = hot;
                self.error = None;
            }
            (Err(e), _) | (_, Err(e)) => self.error = Some(e),
        }
        Ok(())
    }
}

impl<'s> LoadPipeline<'s> {
    /// A pipeline loading into `store`, with `gate` deciding whether the finished
    /// version is committed ([`FeatureStore::load`] passes [`AcceptAll`]).
    pub fn new(
        store: &'s FeatureStore,
        gate: &'s dyn LoadGate,
        progress: &'s dyn Fn(LoadProgress),
    ) -> Self {
        LoadPipeline {
            store,
            gate,
            progress,
        }
    }
}

/// Runs one load through its stages (see the module doc).
pub struct LoadPipeline<'s> {
    store: &'s FeatureStore,
    gate: &'s dyn LoadGate,
    progress: &'s dyn Fn(LoadProgress),
}

impl std::fmt::Debug for LoadPipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadPipeline")
            .field("gate", &self.gate.name())
            .finish()
    }
}

/// Stage times of one load, in milliseconds.
#[derive(Debug, Default, Clone, Copy)]
struct StageTimes {
    allocate: u64,
    read: u64,
    write: u64,
    ingest: u64,
    segment: u64,
    gate: u64,
    commit: u64,
}

impl LoadPipeline<'_> {
    /// Loads a new version of `request.group`; on any failure the version is removed
    /// and nothing of it is visible.
    pub fn run(&self, request: &LoadRequest) -> Result<LoadRecord, StoreError> {
        let started = Instant::now();
        let registry = self.store.registry();
        let group = registry
            .group(&request.group)
            .ok_or_else(|| StoreError::UnknownGroup(request.group.clone()))?;
        let columns = loader::group_columns(&registry, &group.name);
        // One load of a group at a time: its history is recorded against the
        // version before it.
        let lock = self.store.load_lock(&request.group);
        let _serialized = lock.lock();
        let mut times = StageTimes::default();
        let allocated = self.allocate(request)?;
        times.allocate = ms_since(started);
        let result = self.stages(request, &columns, &allocated, started, &mut times);
        if let Err(e) = std::fs::remove_dir_all(&allocated.scratch)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %allocated.scratch.display(), error = %e, "could not remove load scratch");
        }
        match &result {
            Ok(record) => tracing::info!(
                group = request.group.as_str(),
                version = allocated.version,
                values = record.values_stored,
                allocate_ms = times.allocate,
                read_ms = times.read,
                write_ms = times.write,
                ingest_ms = times.ingest,
                segment_ms = times.segment,
                gate_ms = times.gate,
                commit_ms = times.commit,
                total_ms = ms_since(started),
                "load committed"
            ),
            // Committed, not activated: the version stays, ready.
            Err(StoreError::Load(LoadError::Held { record, .. })) => tracing::warn!(
                group = request.group.as_str(),
                version = allocated.version,
                failures = record
                    .validation
                    .as_ref()
                    .map(|v| v.describe_failures())
                    .unwrap_or_default(),
                "load committed but not activated: validation failed"
            ),
            Err(_) => self
                .store
                .admin
                .lock()
                .versions
                .abandon(&request.group, &allocated.slot),
        }
        result
    }

    fn report(&self, phase: &'static str, values: u64, started: Instant) {
        (self.progress)(LoadProgress {
            phase,
            values,
            elapsed_secs: started.elapsed().as_secs_f64(),
        });
    }

    /// Stage 1: the version number, its key prefix and a `loading` manifest entry.
    fn allocate(&self, request: &LoadRequest) -> Result<Allocated, StoreError> {
        let store = self.store;
        let slot = {
            let mut state = store.admin.lock();
            store.checked_write(
                "allocating a version",
                state.versions.allocate(
                    &request.group,
                    &store.options.versions_family(&request.group),
                ),
            )?
        };
        Ok(Allocated {
            version: slot.version,
            cf_name: slot.name.clone(),
            family: slot.family.clone(),
            prefix: slot.prefix,
            scratch: keyspace::load_scratch_dir(&store.dir, &request.group, slot.version),
            slot,
        })
    }

    /// Stages 2 to 6.
    fn stages(
        &self,
        request: &LoadRequest,
        columns: &HashMap<String, loader::input::FeatureColumn>,
        allocated: &Allocated,
        started: Instant,
        times: &mut StageTimes,
    ) -> Result<LoadRecord, StoreError> {
        let store = self.store;
        let scratch = &allocated.scratch;
        std::fs::create_dir_all(scratch)
            .map_err(io_err(format!("create {}", scratch.display())))?;

        // Stage 2: build, with the segment's rows, the statistics and the history's
        // changes taken from the sorted stream.
        let mut segment = store.segment_stage(&request.group, allocated.version)?;
        // Statistics run on their own thread: on a machine with a spare core their cost
        // overlaps with the build instead of adding to it.
        let mut collector = OffThread::start(
            "featstore-stats",
            stats_collector(&store.registry(), &request.group, allocated.version),
        )?;
        // The history's changes too: the feed opens its own handles on its thread.
        let mut history_feed = match store.history_base(&request.group)? {
            Some(spec) => {
                let db = Arc::clone(&store.db);
                let options = store.options.history_cf(&request.group);
                let dir = scratch.join("history");
                let version = allocated.version;
                let schema = loader::version_schema(columns)?;
                Some(OffThreadFn::start("featstore-history", move |records| {
                    Ok(history::feed::run(
                        &db, spec, schema, &options, &dir, version, records,
                    ))
                })?)
            }
            None => None,
        };
        let built = {
            let mut consumers = StreamConsumers::default();
            if let Some(stage) = segment.as_mut() {
                consumers.push(stage);
            }
            consumers.push(&mut collector);
            // The history takes the rows the build encodes, one per entity.
            let rows = history_feed
                .as_mut()
                .map(|feed| feed as &mut dyn loader::sorter::SortedSink);
            self.build(
                request,
                columns,
                allocated,
                loader::BuildConsumers {
                    values: &mut consumers,
                    rows,
                },
            )?
        };
        let collector = collector.finish()?;
        let history_files = match history_feed {
            Some(feed) => {
                let outcome = feed.finish()??;
                tracing::debug!(
                    group = request.group.as_str(),
                    version = allocated.version,
                    rows = outcome.rows,
                    changed = outcome.changed,
                    absent = outcome.absent,
                    unchanged = outcome.unchanged,
                    "history changes written"
                );
                Some(outcome.files)
            }
            None => None,
        };
        times.read = built.read_ms;
        times.write = built.record.build_ms.saturating_sub(built.read_ms);

        // Stage 3: ingest.
        let ingest_started = Instant::now();
        store.ingest(&allocated.family, built.files.clone())?;
        let ingest_ms = ms_since(ingest_started);
        times.ingest = ingest_ms;
        self.report("ingest", built.record.values_stored, started);

        // Stage 4: segment.
        let segment_started = Instant::now();
        let segment = match segment {
            Some(stage) => store.finish_segment(stage, allocated, &built.record)?,
            None => None,
        };
        let mut record = built.record;
        record.version = allocated.version;
        record.ingest_ms = ingest_ms;
        record.segment_ms = ms_since(segment_started);
        record.activated = request.activate;
        times.segment = record.segment_ms;
        self.report("segment", record.values_stored, started);

        // Stage 5: gate.
        let gate_started = Instant::now();
        let mut current = collector.finish();
        let history = store.stats_history(&request.group, allocated.version)?;
        let facts = VersionFacts {
            group: &request.group,
            version: allocated.version,
            record: &record,
            segment: segment.as_ref().map(|(info, _)| info),
            stats: Some(GateStats {
                current: &current,
                history: &history,
                collector: &collector,
            }),
        };
        let verdict = self.gate.check(&facts);
        drop(collector);
        let shadow = || match store.shadow_check(&request.group, allocated) {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!(group = request.group.as_str(), error = %e, "shadow check failed");
                None
            }
        };
        let held = match verdict {
            GateVerdict::Accept { mut report } => {
                if let Some(report) = report.as_mut() {
                    report.shadow = shadow();
                }
                record.validation = report;
                false
            }
            GateVerdict::Hold { mut report } => {
                report.shadow = shadow();
                record.validation = Some(report);
                record.activated = false;
                current.accepted = false;
                true
            }
            GateVerdict::Refuse { reason } => {
                return Err(StoreError::Load(LoadError::Refused {
                    gate: self.gate.name().to_owned(),
                    group: request.group.clone(),
                    version: allocated.version,
                    reason,
                }));
            }
        };
        times.gate = ms_since(gate_started);
        store.checked_write(
            "writing the version's statistics",
            meta::write_stats(&store.db, &current, keyspace::STATS_KEPT),
        )?;

        // Stage 6: commit.
        let commit_started = Instant::now();
        store.commit_version(
            &request.group,
            allocated,
            (segment, history_files),
            &record,
            request.activate && !held,
        )?;
        times.commit = ms_since(commit_started);
        self.report("commit", record.values_stored, started);
        if held {
            return Err(StoreError::Load(LoadError::Held {
                gate: self.gate.name().to_owned(),
                record: Box::new(record),
            }));
        }
        Ok(record)
    }

    /// Stage 2: reads the input once, sorts it and writes the SST files, feeding
    /// `consumers` from the same sorted stream.
    fn build(
        &self,
        request: &LoadRequest,
        columns: &HashMap<String, loader::input::FeatureColumn>,
        allocated: &Allocated,
        consumers: loader::BuildConsumers<'_>,
    ) -> Result<loader::BuiltFiles, StoreError> {
        let store = self.store;
        let sst_options = store.options.versions_cf();
        let registry = store.registry();
        let entity_type = registry
            .group(&request.group)
            .map(|g| g.entity_type.as_str())
            .unwrap_or_default();
        Ok(loader::build_files(
            request,
            columns,
            registry.entity_id_rule(entity_type),
            &loader::SstTarget {
                options: &sst_options,
                key_prefix: allocated.prefix.as_bytes(),
            },
            &allocated.scratch,
            store.config.load_memory_bytes,
            store.config.sst_target_bytes,
            consumers,
            self.progress,
        )?)
    }
}

impl FeatureStore {
    /// Where a load of `group` finds the previous version's values for its history
    /// (see [`history::feed`]), creating the group's history family; `None` when
    /// history is off.
    fn history_base(&self, group: &str) -> Result<Option<history::feed::BaseSpec>, StoreError> {
        if !self.config.history.enabled {
            return Ok(None);
        }
        self.checked_write(
            "creating a history column family",
            history::ensure_family(&self.db, &self.options, group),
        )?;
        let table = self.options.history().load();
        let Some(facts) = table.group(group) else {
            return Ok(Some(history::feed::BaseSpec::Empty));
        };
        let Some(newest) = facts.newest() else {
            return Ok(Some(history::feed::BaseSpec::Empty));
        };
        let location = {
            let state = self.admin.lock();
            let ready = state
                .versions
                .group(group)
                .and_then(|g| g.entry(newest))
                .is_some_and(|e| e.state == super::manifest::VersionState::Ready);
            if ready {
                state.versions.location(group, newest).ok()
            } else {
                None
            }
        };
        if let Some((family, prefix)) = location
            && let Some(cf) = self.db.cf_handle(&family)
        {
            let schema = super::version_range::read_row_schema(&self.db, &cf, prefix)?;
            return Ok(Some(history::feed::BaseSpec::Version {
                family,
                prefix,
                schema,
            }));
        }
        Ok(Some(history::feed::BaseSpec::History {
            family: keyspace::history_cf_name(group),
            group: facts.clone(),
        }))
    }

    /// Ingests a load's history files into `history.{group}` and records the version.
    fn commit_history(
        &self,
        group: &str,
        version: u64,
        files: Vec<PathBuf>,
    ) -> Result<(), StoreError> {
        if !files.is_empty() {
            let name = keyspace::history_cf_name(group);
            let cf = self.db.cf_handle(&name).ok_or_else(|| {
                StoreError::Internal(format!(
                    "history column family {name} vanished after creation"
                ))
            })?;
            let mut ingest = IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            self.checked_write(
                "ingesting the load's history",
                self.db
                    .ingest_external_file_cf_opts(&cf, &ingest, files)
                    .map_err(StoreError::from),
            )?;
        }
        self.checked_write(
            "recording the version in the history",
            history::record_version(
                &self.db,
                self.options.history(),
                &self.config.history,
                group,
                version,
                crate::types::now_ms(),
            ),
        )
    }

    /// The shadow check of the version `allocated` against `group`'s active version,
    /// on the most-read entities (see [`crate::validate::shadow`]); `None` without an
    /// active version or access counts.
    fn shadow_check(
        &self,
        group: &str,
        allocated: &Allocated,
    ) -> Result<Option<crate::validate::shadow::ShadowReport>, StoreError> {
        use crate::validate::shadow::{self, MAX_ENTITIES, MAX_KEYS};
        let registry = self.registry();
        let Some(info) = registry.group(group) else {
            return Ok(None);
        };
        let features: Vec<_> = info
            .features
            .iter()
            .filter_map(|id| registry.by_id(*id))
            .collect();
        let active = {
            let state = self.admin.lock();
            let Some(active) = state.versions.group(group).and_then(|g| g.active) else {
                return Ok(None);
            };
            (active, state.versions.location(group, active)?)
        };
        let (active_version, (active_family, active_prefix)) = active;
        let k = MAX_ENTITIES.min(MAX_KEYS / features.len().max(1));
        let hot = self.hottest_entities(&info.entity_type, k);
        if hot.is_empty() || features.is_empty() {
            return Ok(None);
        }
        let (Some(new_cf), Some(old_cf)) = (
            self.db.cf_handle(&allocated.family),
            self.db.cf_handle(&active_family),
        ) else {
            return Ok(None);
        };
        let ids: Vec<&[u8]> = hot.iter().map(|(entity, _)| entity.as_slice()).collect();
        let fids: Vec<FeatureId> = features.iter().map(|d| d.id).collect();
        let new_values =
            super::lookup::stored_values(&self.db, &new_cf, allocated.prefix, &ids, &fids)?;
        let old_values =
            super::lookup::stored_values(&self.db, &old_cf, active_prefix, &ids, &fids)?;
        let per = hot.len();
        let features = features
            .iter()
            .enumerate()
            .map(|(i, def)| {
                let range = i * per..(i + 1) * per;
                let new = new_values.get(range.clone()).unwrap_or_default();
                let old = old_values.get(range).unwrap_or_default();
                shadow::compare(
                    &def.spec.name,
                    new.iter()
                        .zip(old)
                        .map(|(a, b)| (a.as_deref(), b.as_deref())),
                )
            })
            .collect();
        Ok(Some(shadow::ShadowReport {
            active_version,
            entities: per,
            features,
        }))
    }

    /// The statistics of `group`'s versions before `version` that are baselines (not
    /// held by their validation), newest first.
    fn stats_history(&self, group: &str, version: u64) -> Result<Vec<VersionStats>, StoreError> {
        let mut out = Vec::new();
        for v in meta::stats_versions(&self.db, group)?.into_iter().rev() {
            if v >= version {
                continue;
            }
            if let Some(stats) = meta::read_stats(&self.db, group, v)?
                && stats.accepted
            {
                out.push(stats);
            }
            if out.len() >= crate::validate::rules::MAX_HISTORY {
                break;
            }
        }
        Ok(out)
    }

    /// Stage 3: moves `files` into the versions column family `family`.
    fn ingest(&self, family: &str, files: Vec<PathBuf>) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(family).ok_or_else(|| {
            StoreError::Internal(format!(
                "versions column family {family} vanished after creation"
            ))
        })?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.checked_write(
            "ingesting the load's SST files",
            self.db
                .ingest_external_file_cf_opts(&cf, &ingest, files)
                .map_err(StoreError::from),
        )
    }

    /// The segment stage of a load of `group` at `version`, or `None` when hot segments
    /// are off or the group has no features.
    fn segment_stage(&self, group: &str, version: u64) -> Result<Option<SegmentStage>, StoreError> {
        let budget = self.config.hot_segment_bytes;
        if budget == 0 {
            return Ok(None);
        }
        let registry = self.registry();
        let Some((entity_type, fields)) = segment_fields(&registry, group) else {
            return Ok(None);
        };
        let sizing = Sizing::new(group, &fields)?;
        let whole = SegmentFeed::new(group, version, fields.clone(), &Selection::All)?;
        // The most-read entities, when their number is known before the version is
        // written; the counts are persisted if the version turns out not to fit.
        let hot_ids = if sizing.is_fixed() {
            let k = sizing.hot_count(0, 0, budget);
            let ids: Vec<Vec<u8>> = self
                .hottest_entities(&entity_type, k)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            (!ids.is_empty()).then_some(Selection::Only(ids))
        } else {
            None
        };
        let hot = hot_ids
            .as_ref()
            .map(|ids| SegmentFeed::new(group, version, fields.clone(), ids))
            .transpose()?;
        Ok(Some(SegmentStage {
            group: group.to_owned(),
            version,
            entity_type,
            fields,
            budget,
            sizing,
            whole: Some(whole),
            hot,
            hot_ids,
            error: None,
        }))
    }

    /// Stage 4: chooses the segment of the version `record` describes (the same choice
    /// as [`FeatureStore::build_segment`]), writes it, maps and validates it.
    fn finish_segment(
        &self,
        mut stage: SegmentStage,
        allocated: &Allocated,
        record: &LoadRecord,
    ) -> Result<Option<(SegmentInfo, Arc<HotSegment>)>, StoreError> {
        if let Some(e) = stage.error.take() {
            return Err(e);
        }
        if record.entities == 0 {
            return Ok(None);
        }
        let fits = stage
            .sizing
            .fits(record.entities, record.sst_bytes, stage.budget);
        let feed = if fits {
            stage.hot = None;
            stage.whole.take()
        } else {
            stage.whole = None;
            self.persist_access_counts()?;
            stage.hot.take()
        };
        let dir = keyspace::segments_dir(&self.dir);
        let file = segments::file_name(&allocated.cf_name);
        let info = match feed {
            Some(feed) => feed.finish(&dir, &file)?,
            None => {
                // Not assembled from the stream (see the module doc): the rebuild path.
                return self.scan_segment(allocated, record, &stage);
            }
        };
        let Some(info) = info else {
            return Ok(None);
        };
        let mapped = HotSegment::open(&dir.join(&info.file))?;
        Ok(Some((info, Arc::new(mapped))))
    }

    /// The segment of a freshly ingested version built from its column family, for a
    /// candidate the stream could not assemble.
    fn scan_segment(
        &self,
        allocated: &Allocated,
        record: &LoadRecord,
        stage: &SegmentStage,
    ) -> Result<Option<(SegmentInfo, Arc<HotSegment>)>, StoreError> {
        let Some(selection) = self.scan_selection(
            &stage.group,
            &stage.entity_type,
            allocated.version,
            &stage.sizing,
            record,
            stage.budget,
        ) else {
            return Ok(None);
        };
        let cf = self.db.cf_handle(&allocated.family).ok_or_else(|| {
            StoreError::Internal(format!(
                "versions column family {} vanished after creation",
                allocated.family
            ))
        })?;
        self.write_segment(
            &stage.group,
            allocated.version,
            &cf,
            allocated.prefix,
            stage.fields.clone(),
            &selection,
        )
    }

    /// The entities a segment built from the version's column family takes: all of
    /// them when the version `record` describes fits `budget`, else the most-read ones
    /// of `entity_type`, or `None` (logged) when no access counts exist yet.
    fn scan_selection(
        &self,
        group: &str,
        entity_type: &str,
        version: u64,
        sizing: &Sizing,
        record: &LoadRecord,
        budget: u64,
    ) -> Option<Selection> {
        if sizing.fits(record.entities, record.sst_bytes, budget) {
            return Some(Selection::All);
        }
        let k = sizing.hot_count(record.entities, record.sst_bytes, budget);
        let hot: Vec<Vec<u8>> = self
            .hottest_entities(entity_type, k)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if hot.is_empty() {
            tracing::info!(
                group,
                version,
                "version exceeds the hot segment budget and no access counts exist yet; no segment"
            );
            return None;
        }
        Some(Selection::Only(hot))
    }

    /// Builds the segment of `version` from its keys in `cf` and maps it.
    fn write_segment(
        &self,
        group: &str,
        version: u64,
        cf: &Arc<rocksdb::BoundColumnFamily<'_>>,
        prefix: VersionPrefix,
        fields: Vec<FieldSpec>,
        selection: &Selection,
    ) -> Result<Option<(SegmentInfo, Arc<HotSegment>)>, StoreError> {
        let dir = keyspace::segments_dir(&self.dir);
        let file = segments::file_name(&batch_cf_name(group, version));
        let target = segments::SegmentTarget {
            group,
            version,
            dir: &dir,
            file: &file,
        };
        let Some(info) = segments::build(&self.db, cf, prefix, &target, fields, selection)? else {
            return Ok(None);
        };
        let mapped = HotSegment::open(&dir.join(&info.file))?;
        Ok(Some((info, Arc::new(mapped))))
    }

    /// Builds, maps and validates the hot segment of an ingested version from its
    /// column family, within the configured budget: the whole version if it fits, else
    /// its hottest entities. The rebuild path (a segment unusable at open or
    /// activation); a load assembles its segment from its sorted stream instead.
    pub(super) fn build_segment(
        &self,
        group: &str,
        version: u64,
        cf: &Arc<rocksdb::BoundColumnFamily<'_>>,
        prefix: VersionPrefix,
        record: &LoadRecord,
    ) -> Result<Option<(SegmentInfo, Arc<HotSegment>)>, StoreError> {
        let budget = self.config.hot_segment_bytes;
        if budget == 0 || record.entities == 0 {
            return Ok(None);
        }
        let registry = self.registry();
        let Some((entity_type, fields)) = segment_fields(&registry, group) else {
            return Ok(None);
        };
        let sizing = Sizing::new(group, &fields)?;
        if !sizing.fits(record.entities, record.sst_bytes, budget) {
            self.persist_access_counts()?;
        }
        let Some(selection) =
            self.scan_selection(group, &entity_type, version, &sizing, record, budget)
        else {
            return Ok(None);
        };
        self.write_segment(group, version, cf, prefix, fields, &selection)
    }

    /// Stage 6: marks the version ready (and active, if `activate`) in the manifest
    /// with its segment and load record, publishes the new read view, and drops
    /// versions beyond `keep_versions`. The one place a load changes what is served.
    fn commit_version(
        &self,
        group: &str,
        allocated: &Allocated,
        (segment, history_files): BuiltParts,
        record: &LoadRecord,
        activate: bool,
    ) -> Result<(), StoreError> {
        let mut state = self.admin.lock();
        if let Some(files) = history_files {
            // The version's changes become part of the history before the manifest
            // names it; a failure here fails the load, which leaves them unnamed.
            self.commit_history(group, allocated.version, files)?;
        }
        self.checked_write(
            "committing the loaded version",
            state
                .versions
                .complete(group, &allocated.slot, segment, record, activate),
        )?;
        if activate {
            self.record_activation(group, allocated.version);
        }
        self.publish(&state)?;
        let keep = self.config.keep_versions.max(1);
        if let Err(e) = self.drop_locked(&mut state, group, keep) {
            tracing::warn!(group, error = %e, "could not drop old versions");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use crate::types::Value;

    fn specs() -> Vec<crate::registry::FeatureSpec> {
        crate::store::test_store::item_specs(&[
            ("a", "float64"),
            ("b", "float64"),
            ("label", "string"),
        ])
    }

    fn store(dir: &std::path::Path) -> FeatureStore {
        let config = StoreConfig {
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 8 << 20,
            load_memory_bytes: 1 << 20,
            sst_target_bytes: 4 << 20,
            hot_segment_bytes: 64 << 20,
            ..StoreConfig::default()
        };
        let store = FeatureStore::open(dir.join("store"), config).expect("open");
        store.apply(specs()).expect("apply");
        store
    }

    /// Long rows of `entities` items in key order, each value `n + 0.5`, label `l{n}`.
    fn sorted_csv(entities: u64) -> String {
        let mut text = String::from("entity_id,feature_name,event_time,value\n");
        for n in 0..entities {
            for (feature, value) in [("a", format!("{n}.5")), ("b", format!("{n}.5"))] {
                text.push_str(&format!("e{n:06},{feature},1000,{value}\n"));
            }
            text.push_str(&format!("e{n:06},label,1000,l{n}\n"));
        }
        text
    }

    fn read(store: &FeatureStore, n: u64) -> Vec<Option<Value>> {
        store
            .get_features("item", &format!("e{n:06}"), &["a", "b", "label"])
            .expect("read")
            .features
            .into_iter()
            .map(|f| f.value)
            .collect()
    }

    #[test]
    fn an_input_out_of_order_after_streaming_is_sorted_again_with_the_same_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let n = 30_000u64;
        // Several sort buffers in key order (streamed), then a newer value for an
        // entity streamed long ago: the load starts over with run files.
        let mut text = sorted_csv(n);
        text.push_str("e000007,a,2000,99.5\n");
        let path = dir.path().join("late.csv");
        std::fs::write(&path, text).expect("write");
        let phases = std::sync::Mutex::new(Vec::new());
        let record = store
            .load(&LoadRequest::new("items", &path), &|p| {
                phases.lock().expect("lock").push(p.phase);
            })
            .expect("load");
        assert_eq!(record.values_stored, 3 * n);
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(record.source_bytes, bytes.len() as u64);
        assert_eq!(record.source_crc32, crc32fast::hash(&bytes));
        assert_eq!(record.values_read, 3 * n + 1);
        assert_eq!(record.duplicates, 1);
        assert_eq!(record.entities, n);
        assert_eq!(
            read(&store, 7),
            [
                Some(Value::Float64(99.5)),
                Some(Value::Float64(7.5)),
                Some(Value::String("l7".into()))
            ]
        );
        assert_eq!(
            read(&store, n - 1),
            [
                Some(Value::Float64(n as f64 - 0.5)),
                Some(Value::Float64(n as f64 - 0.5)),
                Some(Value::String(format!("l{}", n - 1)))
            ]
        );
        // The segment was assembled again from the second pass: it holds every
        // entity once, and answers as RocksDB does.
        assert_eq!(store.hot_segment_entities("items"), Some(n as usize));
        let phases = phases.into_inner().expect("lock");
        for stage in ["ingest", "segment", "commit"] {
            assert_eq!(
                phases.iter().filter(|p| **p == stage).count(),
                1,
                "{phases:?}"
            );
        }
        // The sorted input alone streams with no restart and gives the same record.
        let path = dir.path().join("sorted.csv");
        std::fs::write(&path, sorted_csv(n)).expect("write");
        let again = store
            .load(&LoadRequest::new("items", &path), &|_| {})
            .expect("load");
        assert_eq!(again.values_stored, 3 * n);
        assert!(again.sst_bytes > 0);
        assert_eq!(read(&store, 7)[0], Some(Value::Float64(7.5)));
        assert_eq!(store.hot_segment_entities("items"), Some(n as usize));
    }

    struct Refuse;
    impl LoadGate for Refuse {
        fn name(&self) -> &str {
            "test"
        }
        fn check(&self, facts: &VersionFacts<'_>) -> GateVerdict {
            GateVerdict::Refuse {
                reason: format!(
                    "{} entities, segment {:?}",
                    facts.record.entities,
                    facts.segment.map(|s| s.entities)
                ),
            }
        }
    }

    #[test]
    fn a_refusing_gate_fails_the_load_and_the_active_version_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let path = dir.path().join("items.csv");
        std::fs::write(&path, sorted_csv(10)).expect("write");
        store
            .load(&LoadRequest::new("items", &path), &|_| {})
            .expect("first load");
        std::fs::write(&path, sorted_csv(20)).expect("write");
        let err = store
            .load_gated(&LoadRequest::new("items", &path), &Refuse, &|_| {})
            .expect_err("refused");
        assert!(
            matches!(&err, StoreError::Load(LoadError::Refused { gate, version: 2, .. }) if gate == "test"),
            "{err}"
        );
        assert!(
            err.to_string().contains("20 entities, segment Some(20)"),
            "{err}"
        );
        let versions = store.versions("items").expect("versions");
        assert_eq!(versions.active, Some(1));
        assert_eq!(versions.versions.len(), 1);
        assert_eq!(store.hot_segment_entities("items"), Some(10));
        let segments: Vec<_> = std::fs::read_dir(dir.path().join("store").join("segments"))
            .expect("segments dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            segments.len(),
            1,
            "the refused version's segment is removed"
        );
        // AcceptAll is what `load` uses.
        store
            .load_gated(&LoadRequest::new("items", &path), &AcceptAll, &|_| {})
            .expect("accepted");
        assert_eq!(store.hot_segment_entities("items"), Some(20));
    }
}
