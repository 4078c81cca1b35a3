//! Read views: an immutable snapshot of the registry and of the active version of every
//! group, with open handles to their column families.
//!
//! Thread-safety contract: a [`ReadView`] is never mutated. The engine publishes a new
//! one with an atomic pointer swap (`ArcSwap`); a reader loads the current view once per
//! request and uses only it, so it sees exactly one version of each group even while a
//! swap happens, and takes no lock that a writer holds. A view keeps its column family
//! handles and version ranges alive: a version dropped meanwhile stays readable until
//! its last view is released, then its files are deleted (by RocksDB for a layout-1
//! column family, by [`super::version_range`] for a layout-2 key range).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rocksdb::{BoundColumnFamily, DB};
use self_cell::self_cell;

use super::StoreError;
use super::keyspace::stream_cf_name;
use super::manifest::Manifest;
use super::segments::HotSegment;
use super::version_range::VersionRange;
use crate::codec::key::VersionPrefix;
use crate::registry::Registry;
use crate::types::FeatureId;

/// Per group, the features that ever received a pushed value: the stream merge of a
/// read looks up only those (a group with one streamed feature does not cost a stream
/// lookup per feature read). A feature enters its set, durably, before its first
/// pushed value is written; sets only grow.
pub type StreamedFeatures = BTreeMap<String, BTreeSet<FeatureId>>;

/// The column family handles of a view, keyed by group.
pub struct GroupHandles<'db> {
    batch: HashMap<String, ActiveVersion<'db>>,
    /// Stream column families (`stream.{group}`) of groups that received pushes.
    stream: HashMap<String, Arc<BoundColumnFamily<'db>>>,
}

/// The active version of one group in a view.
pub struct ActiveVersion<'db> {
    /// The version number.
    pub version: u64,
    /// Handle to the column family holding it.
    pub cf: Arc<BoundColumnFamily<'db>>,
    /// Prefix of its keys in that column family (empty for layout 1).
    pub prefix: VersionPrefix,
    /// Its key range's hold (layout 2), keeping the range until the view is released.
    pub range: Option<Arc<VersionRange>>,
    /// Its hot segment, when one is mapped.
    pub segment: Option<Arc<HotSegment>>,
}

self_cell!(
    struct Handles {
        owner: Arc<DB>,
        #[covariant]
        dependent: GroupHandles,
    }
);

/// An immutable snapshot for reads. Cheap to share (`Arc`), never mutated.
pub struct ReadView {
    registry: Arc<Registry>,
    streamed: Arc<StreamedFeatures>,
    handles: Handles,
    counters: Arc<LookupCounters>,
}

/// Entity lookups in active batch versions and how many the hot segment answered
/// (the `featstore_hot_segment_*` metrics), and the values live reads served per
/// feature and status (`featstore_feature_values_served_total`), shared by every view
/// of one store.
#[derive(Debug, Default)]
pub struct LookupCounters {
    /// Entities looked up in an active batch version.
    pub lookups: std::sync::atomic::AtomicU64,
    /// Of those, found in the version's mapped hot segment.
    pub segment_hits: std::sync::atomic::AtomicU64,
    /// Values served per feature and status (counted by the query layer's executor).
    pub served: crate::query::tally::ServedTallies,
}

impl ReadView {
    /// Builds a view of `manifest`'s active versions. Fails if an active version's
    /// column family is missing (a corrupt manifest).
    pub fn build(
        db: Arc<DB>,
        registry: Arc<Registry>,
        manifest: &Manifest,
        segments: &HashMap<String, Arc<HotSegment>>,
        ranges: &HashMap<String, Arc<VersionRange>>,
        streamed: Arc<StreamedFeatures>,
        counters: Arc<LookupCounters>,
    ) -> Result<Self, StoreError> {
        let handles = Handles::try_new(db, |db| {
            let mut map = HashMap::new();
            for (group, gm) in &manifest.groups {
                let Some(version) = gm.active else { continue };
                let entry = gm.entry(version).ok_or_else(|| StoreError::CorruptMeta {
                    key: "manifest".into(),
                    reason: format!("group {group}: active version {version} is not listed"),
                })?;
                let (family, prefix) = entry.location();
                let cf = db
                    .cf_handle(family)
                    .ok_or_else(|| StoreError::CorruptMeta {
                        key: "manifest".into(),
                        reason: format!(
                            "group {group}: column family {family} of active version {version} is missing"
                        ),
                    })?;
                let segment = segments.get(&entry.cf_name).cloned();
                map.insert(
                    group.clone(),
                    ActiveVersion {
                        version,
                        cf,
                        prefix,
                        range: ranges.get(&entry.cf_name).cloned(),
                        segment,
                    },
                );
            }
            let stream = registry
                .groups()
                .into_iter()
                .filter_map(|g| {
                    db.cf_handle(&stream_cf_name(&g.name))
                        .map(|cf| (g.name.clone(), cf))
                })
                .collect();
            Ok::<_, StoreError>(GroupHandles { batch: map, stream })
        })?;
        Ok(ReadView {
            registry,
            streamed,
            handles,
            counters,
        })
    }

    /// The store's lookup counters.
    pub fn counters(&self) -> &LookupCounters {
        &self.counters
    }

    /// The registry snapshot of this view.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The database.
    pub fn db(&self) -> &DB {
        self.handles.borrow_owner()
    }

    /// The active version of `group`, if it has one.
    pub fn active(&self, group: &str) -> Option<&ActiveVersion<'_>> {
        self.handles.borrow_dependent().batch.get(group)
    }

    /// The stream column family of `group`, once it received a push.
    pub fn stream(&self, group: &str) -> Option<&Arc<BoundColumnFamily<'_>>> {
        self.handles.borrow_dependent().stream.get(group)
    }

    /// The features of `group` that ever received a pushed value.
    pub fn streamed_features(&self, group: &str) -> Option<&BTreeSet<FeatureId>> {
        self.streamed.get(group)
    }

    /// Every group's streamed features.
    pub fn streamed(&self) -> &Arc<StreamedFeatures> {
        &self.streamed
    }

    /// Active version number of every group that has one.
    pub fn active_versions(&self) -> BTreeMap<String, u64> {
        self.handles
            .borrow_dependent()
            .batch
            .iter()
            .map(|(g, a)| (g.clone(), a.version))
            .collect()
    }
}
