//! Streamed features: durable pushes with group commit, the event-time rule, windowed
//! aggregates, and retention by compaction.
//!
//! # Layout
//!
//! * [`event`] — pushed events and their validation against the registry.
//! * [`body`] — the JSON push body, parsed and validated event by event.
//! * [`commit`] — the committer thread (group commit, event-time rule).
//! * [`merge`] — the read side, called by `super::lookup::lookup_group`.
//! * [`retention`] — TTL and window limits, and the compaction filter applying them.
//!
//! Streamed values live in one column family per group, `stream.{group}`, created on
//! the group's first push and never part of a batch version: activating, rolling back
//! or dropping batch versions never touches them. Event-id markers live in
//! `stream_events`. See storage-format.md, "Stream column families".
//!
//! Thread-safety contract: [`FeatureStore::push`] may be called from any number of
//! threads; they share one committer (see [`commit`]). Reads never wait for pushes.

pub mod body;
pub mod commit;
pub mod event;
pub mod merge;
pub mod retention;

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use body::parse_events;
pub use commit::{CommitObserver, StreamFault, WriterHealth};
use event::{AggregateIndex, Prepared, prepare};
pub use event::{PushCheck, PushError, PushEvent, PushOutcome, Rejection};
use retention::{RetentionTable, SharedRetention};

use rocksdb::DB;

use super::view::StreamedFeatures;
use super::{FeatureStore, StoreError, meta};
use crate::codec::stream::{StreamKey, decode_stream_key};
use crate::registry::Registry;
use crate::types::{FeatureId, TimestampMs, now_ms};

pub use super::keyspace::{EVENTS_CF, STREAM_CF_PREFIX, stream_cf_name};

/// The streamed-feature sets persisted in meta. A group with a stream column family
/// but no persisted set (a store written before the sets existed) gets its set from one
/// scan of that column family's keys, which is then persisted.
pub(crate) fn load_streamed_features(
    db: &DB,
    registry: &Registry,
) -> Result<StreamedFeatures, StoreError> {
    let mut streamed = meta::read_streamed_features(db)?;
    for group in registry.groups() {
        let group = &group.name;
        if streamed.contains_key(group) {
            continue;
        }
        let Some(cf) = db.cf_handle(&stream_cf_name(group)) else {
            continue;
        };
        let mut features = BTreeSet::new();
        let mut iter = db.raw_iterator_cf(&cf);
        iter.seek_to_first();
        while let Some(key) = iter.key() {
            if let Ok(StreamKey::Value(feature)) = decode_stream_key(key) {
                features.insert(feature);
            }
            iter.next();
        }
        iter.status()?;
        meta::write_streamed_features(db, group, &features)?;
        streamed.insert(group.clone(), features);
    }
    Ok(streamed)
}

/// The engine's streaming state.
pub(crate) struct StreamState {
    committer: commit::Committer,
    aggregates: ArcSwap<AggregateIndex>,
    retention: SharedRetention,
}

impl StreamState {
    /// Starts the committer on `db`, creating `stream_events` if needed.
    pub fn start(
        db: &Arc<rocksdb::DB>,
        options: &super::options::EngineOptions,
        registry: &Registry,
    ) -> Result<Self, StoreError> {
        if db.cf_handle(EVENTS_CF).is_none() {
            db.create_cf(EVENTS_CF, &options.events_cf())?;
        }
        let state = StreamState {
            committer: commit::Committer::start(db.clone()).map_err(|source| StoreError::Io {
                context: "start the stream committer thread".into(),
                source,
            })?,
            aggregates: ArcSwap::from_pointee(AggregateIndex::default()),
            retention: options.retention().clone(),
        };
        state.refresh(registry);
        Ok(state)
    }

    /// Installs the function called after every durable push commit (the store
    /// forwards it to its observers). Replaces any earlier one.
    pub fn set_commit_observer(&self, observer: CommitObserver) {
        *self.committer.shared.observer.lock() = Some(observer);
    }

    /// Holds the committer between two group commits until the guard is dropped (a
    /// per-entity deletion, `super::erase`): pushes queue meanwhile.
    pub fn pause(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.committer.shared.pause.lock()
    }

    /// See [`commit::Committer::report_failure`].
    pub fn report_failure(&self, reason: &str) {
        self.committer.report_failure(reason);
    }

    /// Re-derives the aggregate index and retention table from a new registry.
    pub fn refresh(&self, registry: &Registry) {
        self.aggregates
            .store(Arc::new(AggregateIndex::from_registry(registry)));
        self.retention
            .store(Arc::new(RetentionTable::from_registry(registry)));
    }
}

/// Checks that every aggregate among `changed` names a registered source it can
/// aggregate (registered in the same apply or before).
pub(crate) fn check_aggregate_sources(
    registry: &Registry,
    changed: &[crate::registry::FeatureDefinition],
) -> Result<(), StoreError> {
    for def in changed {
        let Some(aggregate) = &def.spec.aggregate else {
            continue;
        };
        let source = registry.resolve(&aggregate.source).ok_or_else(|| {
            StoreError::invalid_definition(format!(
                "aggregate feature `{}`: source `{}` is not registered",
                def.spec.name, aggregate.source
            ))
        })?;
        aggregate
            .check_source(&def.spec, &source.spec)
            .map_err(StoreError::invalid_definition)?;
    }
    Ok(())
}

impl FeatureStore {
    /// Pushes events: validates every one against the registry, then applies them all
    /// (or, if any is invalid, none: [`PushError::Rejected`] lists each bad event with
    /// its index and reason). Returns once the values are durable (synced WAL).
    ///
    /// Per entity and feature the newest event time wins (see [`commit`]); older values
    /// are ignored and counted in [`PushOutcome::ignored_older`].
    pub fn push(&self, events: Vec<PushEvent>) -> Result<PushOutcome, PushError> {
        self.push_checked(events, None)
    }

    /// [`push`](Self::push) for a caller whose push rules `check` judges every
    /// feature named: one refused feature refuses the whole push
    /// ([`PushError::Denied`]), nothing applied.
    pub fn push_checked(
        &self,
        events: Vec<PushEvent>,
        check: Option<event::PushCheck<'_>>,
    ) -> Result<PushOutcome, PushError> {
        let started = std::time::Instant::now();
        let count = events.len();
        let result = match events.iter().try_for_each(|e| {
            let view = self.view();
            event::check_event(view.registry(), e, check)
        }) {
            Ok(()) => self.push_results(events.into_iter().map(Ok).collect()),
            Err(denied) => Err(PushError::Denied(denied)),
        };
        self.report_push(started, count, result)
    }

    /// Reports a push's result to the observers, and passes it through.
    pub(super) fn report_push(
        &self,
        started: std::time::Instant,
        events: usize,
        result: Result<PushOutcome, PushError>,
    ) -> Result<PushOutcome, PushError> {
        let report = super::PushReport {
            events,
            result: result.as_ref(),
            elapsed: started.elapsed(),
        };
        self.observers.each(|o| o.on_push(&report));
        result
    }

    fn push_results(
        &self,
        events: Vec<Result<PushEvent, String>>,
    ) -> Result<PushOutcome, PushError> {
        if events.is_empty() {
            return Err(PushError::Empty);
        }
        let view = self.view();
        let registry = view.registry();
        let aggregates = self.stream.aggregates.load();
        let now = now_ms();
        let total = events.len();
        let mut prepared = Vec::with_capacity(total);
        let mut rejections = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            match event.and_then(|e| prepare(registry, &aggregates, &e, now)) {
                Ok(p) => prepared.push(p),
                Err(reason) => rejections.push(Rejection { index, reason }),
            }
        }
        if !rejections.is_empty() {
            return Err(PushError::Rejected {
                rejections,
                events: total,
            });
        }
        drop(aggregates);
        self.commit_prepared(&view, prepared)
    }

    /// Makes validated events durable (see [`FeatureStore::push`]); every push path
    /// ends here.
    fn commit_prepared(
        &self,
        view: &super::ReadView,
        prepared: Vec<Prepared>,
    ) -> Result<PushOutcome, PushError> {
        self.ensure_stream_cfs(view, &prepared)
            .map_err(|e| match e {
                StoreError::Rocks(e) => PushError::Storage(e),
                other => PushError::Internal(other.to_string()),
            })?;
        self.stream.committer.submit(prepared)
    }

    /// Creates the stream column families `prepared` needs, records (durably) the
    /// features it writes for the first time in their group's streamed set, and
    /// publishes a view that holds both, all before any of its values is written: a
    /// read never misses a pushed value. Only a group's first push, and a feature's,
    /// take the admin lock.
    fn ensure_stream_cfs(
        &self,
        view: &super::ReadView,
        prepared: &[Prepared],
    ) -> Result<(), StoreError> {
        let missing: BTreeSet<&str> = prepared
            .iter()
            .flat_map(|p| {
                p.values
                    .iter()
                    .map(|v| &*v.group)
                    .chain(p.tiles.iter().map(|t| &*t.group))
            })
            .filter(|g| view.stream(g).is_none())
            .collect();
        let new_features: BTreeSet<(&str, FeatureId)> = prepared
            .iter()
            .flat_map(|p| p.values.iter().map(|v| (&*v.group, v.feature)))
            .filter(|(g, f)| !view.streamed_features(g).is_some_and(|set| set.contains(f)))
            .collect();
        if missing.is_empty() && new_features.is_empty() {
            return Ok(());
        }
        let mut state = self.admin.lock();
        for group in missing {
            let name = stream_cf_name(group);
            if self.config.history.enabled {
                // Before the stream family: the committer records a pushed value in
                // the history whenever the group's history family exists.
                self.checked_write(
                    "creating a history column family",
                    super::history::ensure_family(&self.db, &self.options, group),
                )?;
            }
            if self.db.cf_handle(&name).is_none() {
                self.checked_write(
                    "creating a stream column family",
                    self.db
                        .create_cf(&name, &self.options.stream_cf())
                        .map_err(StoreError::from),
                )?;
            }
        }
        if !new_features.is_empty() {
            let mut streamed = (*state.streamed).clone();
            let mut changed = BTreeSet::new();
            for (group, feature) in new_features {
                if streamed
                    .entry(group.to_owned())
                    .or_default()
                    .insert(feature)
                {
                    changed.insert(group);
                }
            }
            for group in changed {
                if let Some(set) = streamed.get(group) {
                    self.checked_write(
                        "recording streamed features",
                        meta::write_streamed_features(&self.db, group, set),
                    )?;
                }
            }
            state.streamed = Arc::new(streamed);
        }
        self.publish(&state)
    }

    /// Whether the stream writer can write: after a failed write or WAL sync it refuses
    /// pushes until a recovery probe succeeds (see [`commit`], "Failed writes and
    /// recovery"). `/readyz` and the metrics report this.
    pub fn stream_writer_health(&self) -> WriterHealth {
        self.stream.committer.shared.health()
    }

    /// Fault injection, for tests and crash tests: while `Some`, the stream writer's
    /// writes ([`StreamFault::Write`]) or WAL syncs ([`StreamFault::Sync`]), and every
    /// recovery probe, fail with the given message before reaching RocksDB, as a full
    /// or failing disk would make them fail; `None` lets them through again, and the
    /// writer then recovers by itself. Never set in production.
    pub fn inject_stream_fault(&self, fault: Option<StreamFault>) {
        self.stream.committer.shared.inject(fault);
    }

    /// Newest event time pushed per group since the store was opened.
    pub fn stream_newest_event_times(&self) -> Vec<(String, TimestampMs)> {
        let mut out: Vec<_> = self
            .stream
            .committer
            .shared
            .newest
            .lock()
            .iter()
            .map(|(g, t)| (g.clone(), *t))
            .collect();
        out.sort();
        out
    }

    /// Compacts `group`'s stream column family (and the event-id markers) now, which
    /// drops expired values, tiles and markers; compactions RocksDB schedules itself do
    /// the same over time.
    pub fn compact_stream(&self, group: &str) -> Result<(), StoreError> {
        let name = stream_cf_name(group);
        if let Some(cf) = self.db.cf_handle(&name) {
            self.db.flush_cf(&cf)?;
            self.db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
        }
        if let Some(cf) = self.db.cf_handle(EVENTS_CF) {
            self.db.flush_cf(&cf)?;
            self.db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}
