//! Values served by live reads, per feature and status: the counts behind
//! `featstore_feature_values_served_total{feature,status}`, and through
//! [`FeatureStore::served_counts`](crate::store::FeatureStore::served_counts) for an
//! embedding host.
//!
//! It owns [`ServedTallies`], one per store and shared by every read view, and the
//! [`FeatureTally`] of each feature served (`name@version`; on-demand features
//! included). A plan resolves the tally of each of its output columns once, when it is
//! built (a single-entity read's plan is cached, so a GET does no lookup); the
//! executor adds each answered column's statuses to its tally.
//!
//! Invariants:
//! * Only live reads are counted: as-of and point-in-time reads (the history) answer
//!   questions about the past and are not serving.
//! * The number of tallies is bounded ([`MAX_FEATURES`]); features beyond it are
//!   counted under [`OVERFLOW`], so a registry that churns through names cannot grow
//!   memory without bound.
//! * A count never decreases; a registry change does not reset it (a tally is keyed by
//!   the feature's qualified name, which is stable).
//!
//! Cost: a tally is a few cache-line-padded shards of seven counters, one per core up
//! to [`MAX_SHARDS`]; a thread adds to the shard its index picks with relaxed atomic
//! additions, so threads serving at the same time do not share a cache line. A GET of
//! 50 features does 50 additions, one per column; a ranking read does one per column
//! and status present in it, whatever the number of candidates.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;
use parking_lot::RwLock;

use crate::types::FeatureStatus;

/// Tallies kept, at most; features beyond are counted under [`OVERFLOW`].
pub const MAX_FEATURES: usize = 65_536;

/// The name counted for features beyond [`MAX_FEATURES`].
pub const OVERFLOW: &str = "_other";

/// Shards per tally, at most.
pub const MAX_SHARDS: usize = 16;

/// The statuses a tally counts, in the order of [`FeatureCounts::by_status`].
pub const STATUSES: [FeatureStatus; 7] = [
    FeatureStatus::Present,
    FeatureStatus::Null,
    FeatureStatus::NotFound,
    FeatureStatus::Expired,
    FeatureStatus::Stale,
    FeatureStatus::Defaulted,
    FeatureStatus::NotFetched,
];

/// The index of `status` in [`STATUSES`].
#[inline]
fn slot(status: FeatureStatus) -> usize {
    match status {
        FeatureStatus::Present => 0,
        FeatureStatus::Null => 1,
        FeatureStatus::NotFound => 2,
        FeatureStatus::Expired => 3,
        FeatureStatus::Stale => 4,
        FeatureStatus::Defaulted => 5,
        FeatureStatus::NotFetched => 6,
    }
}

/// Counters of one feature: one shard per core (up to [`MAX_SHARDS`]), each on its own
/// cache line.
pub struct FeatureTally {
    shards: Box<[CachePadded<[AtomicU64; 8]>]>,
}

impl std::fmt::Debug for FeatureTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureTally")
            .field("counts", &self.counts())
            .finish()
    }
}

/// The shard of the calling thread: threads take consecutive indexes when they first
/// count, so a server's worker threads land on distinct shards.
fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s)
}

impl FeatureTally {
    fn new(shards: usize) -> Self {
        FeatureTally {
            shards: (0..shards.max(1))
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
        }
    }

    /// The calling thread's shard.
    #[inline]
    fn shard(&self) -> &[AtomicU64; 8] {
        let i = thread_shard() % self.shards.len();
        // `i` is below the length: the modulo of a non-empty slice's length.
        &self.shards[i]
    }

    /// Adds one answered column's statuses.
    #[inline]
    pub fn add(&self, statuses: &[FeatureStatus]) {
        let shard = self.shard();
        if let [one] = statuses {
            shard[slot(*one)].fetch_add(1, Ordering::Relaxed);
            return;
        }
        for (counter, status) in shard.iter().zip(STATUSES) {
            // One vectorizable count per status over the column's status bytes.
            let n = statuses.iter().filter(|s| **s == status).count() as u64;
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The counts so far, by status in [`STATUSES`] order.
    pub fn counts(&self) -> [u64; 7] {
        let mut out = [0u64; 7];
        for shard in self.shards.iter() {
            for (total, counter) in out.iter_mut().zip(shard.iter()) {
                *total += counter.load(Ordering::Relaxed);
            }
        }
        out
    }
}

/// What one feature's reads served, by status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureCounts {
    /// The feature, `name@version` ([`OVERFLOW`] for features beyond the bound).
    pub feature: String,
    /// Values served, by status in [`STATUSES`] order.
    pub by_status: [u64; 7],
}

impl FeatureCounts {
    /// Values served with `status`.
    pub fn get(&self, status: FeatureStatus) -> u64 {
        self.by_status[slot(status)]
    }

    /// Values served, every status.
    pub fn total(&self) -> u64 {
        self.by_status.iter().sum()
    }
}

/// The tallies of one store, shared by every read view.
pub struct ServedTallies {
    shards: usize,
    by_feature: RwLock<HashMap<Arc<str>, Arc<FeatureTally>, ahash::RandomState>>,
    overflow: Arc<FeatureTally>,
}

impl std::fmt::Debug for ServedTallies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedTallies")
            .field("features", &self.by_feature.read().len())
            .finish_non_exhaustive()
    }
}

impl Default for ServedTallies {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_shards(cores.min(MAX_SHARDS))
    }
}

impl ServedTallies {
    /// Tallies with `shards` shards each.
    pub fn with_shards(shards: usize) -> Self {
        ServedTallies {
            shards: shards.max(1),
            by_feature: RwLock::new(HashMap::default()),
            overflow: Arc::new(FeatureTally::new(shards)),
        }
    }

    /// The tally of `feature` (`name@version`), created on first use.
    pub fn of(&self, feature: &str) -> Arc<FeatureTally> {
        if let Some(t) = self.by_feature.read().get(feature) {
            return t.clone();
        }
        let mut map = self.by_feature.write();
        if let Some(t) = map.get(feature) {
            return t.clone();
        }
        if map.len() >= MAX_FEATURES {
            return self.overflow.clone();
        }
        let tally = Arc::new(FeatureTally::new(self.shards));
        map.insert(Arc::from(feature), tally.clone());
        tally
    }

    /// Every feature's counts, by name, features that served nothing left out; the
    /// overflow last when it counted anything.
    pub fn snapshot(&self) -> Vec<FeatureCounts> {
        let mut out: Vec<FeatureCounts> = self
            .by_feature
            .read()
            .iter()
            .map(|(name, t)| FeatureCounts {
                feature: name.to_string(),
                by_status: t.counts(),
            })
            .filter(|c| c.total() > 0)
            .collect();
        out.sort_by(|a, b| a.feature.cmp(&b.feature));
        let overflow = self.overflow.counts();
        if overflow.iter().any(|n| *n > 0) {
            out.push(FeatureCounts {
                feature: OVERFLOW.to_owned(),
                by_status: overflow,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_columns_by_status_across_threads_and_shards() {
        let tallies = Arc::new(ServedTallies::with_shards(3));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let tallies = tallies.clone();
                std::thread::spawn(move || {
                    let t = tallies.of("a@1");
                    for _ in 0..1000 {
                        t.add(&[FeatureStatus::Present]);
                        t.add(&[
                            FeatureStatus::Null,
                            FeatureStatus::Present,
                            FeatureStatus::Defaulted,
                            FeatureStatus::Null,
                        ]);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("counting thread");
        }
        tallies.of("unused@1");
        let snap = tallies.snapshot();
        assert_eq!(snap.len(), 1, "a feature that served nothing is left out");
        let a = &snap[0];
        assert_eq!(a.feature, "a@1");
        assert_eq!(a.get(FeatureStatus::Present), 8000);
        assert_eq!(a.get(FeatureStatus::Null), 8000);
        assert_eq!(a.get(FeatureStatus::Defaulted), 4000);
        assert_eq!(a.get(FeatureStatus::NotFound), 0);
        assert_eq!(a.total(), 20_000);
    }

    #[test]
    fn the_same_name_shares_a_tally_and_names_beyond_the_bound_overflow() {
        let tallies = ServedTallies::with_shards(1);
        assert!(Arc::ptr_eq(&tallies.of("x@1"), &tallies.of("x@1")));
        for i in 0..MAX_FEATURES {
            tallies.of(&format!("f{i}@1"));
        }
        tallies.of("late@1").add(&[FeatureStatus::Expired]);
        tallies.of("x@1").add(&[FeatureStatus::Stale]);
        let snap = tallies.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].feature, "x@1");
        assert_eq!(snap[0].get(FeatureStatus::Stale), 1);
        assert_eq!(snap[1].feature, OVERFLOW);
        assert_eq!(snap[1].get(FeatureStatus::Expired), 1);
    }
}
