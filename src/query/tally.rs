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
//! Cost: a tally is a few cache-line-padded shards of seven counters: one per core (up
//! to [`MAX_SHARDS`]), each owned by one thread, and one shared. Threads take indexes
//! in the order they first count; the first ones own a shard and add with a plain
//! relaxed load and store (no locked instruction: no other thread writes that shard),
//! later ones add to the shared shard with atomic additions. Threads serving at the
//! same time never share a cache line. A GET of 50 features does 50 additions, one per
//! column; a ranking read does one per column and status present in it, whatever the
//! number of candidates.

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

/// How many of `statuses` are `status`: discriminant bytes compared and summed in
/// byte lanes, 255 at a time (the most a byte holds), so the loop vectorizes.
#[inline]
fn count_of(statuses: &[FeatureStatus], status: FeatureStatus) -> usize {
    let want = status as u8;
    statuses
        .chunks(255)
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, s| n.wrapping_add(u8::from(*s as u8 == want)));
            usize::from(n)
        })
        .sum()
}

/// Counters of one feature: one shard per core (up to [`MAX_SHARDS`]), each owned by
/// one thread, then one shared by every other thread; each on its own cache line.
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

/// The calling thread's index: threads take consecutive indexes when they first count,
/// and keep them, so thread `i` is the only one that ever has index `i`.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s)
}

impl FeatureTally {
    /// A tally with `owned` thread-owned shards and the shared one.
    fn new(owned: usize) -> Self {
        FeatureTally {
            shards: (0..=owned)
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
        }
    }

    /// Adds one answered column's statuses.
    #[inline]
    pub fn add(&self, statuses: &[FeatureStatus]) {
        let index = thread_index();
        let shared = self.shards.len() - 1;
        if index < shared {
            // The calling thread is the only writer of shard `index`: a load and a
            // store cannot lose another thread's addition.
            let shard = &self.shards[index];
            Self::add_to(shard, statuses, |c, n| {
                c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            });
        } else {
            let shard = &self.shards[shared];
            Self::add_to(shard, statuses, |c, n| {
                c.fetch_add(n, Ordering::Relaxed);
            });
        }
    }

    #[inline]
    fn add_to(shard: &[AtomicU64; 8], statuses: &[FeatureStatus], bump: impl Fn(&AtomicU64, u64)) {
        if let [one] = statuses {
            bump(&shard[slot(*one)], 1);
            return;
        }
        // One vectorized pass per status, in order of how common they are, until every
        // value is counted: a column all present (most ranking columns) takes one pass.
        let mut left = statuses.len();
        for (counter, status) in shard.iter().zip(STATUSES) {
            if left == 0 {
                break;
            }
            let n = count_of(statuses, status);
            if n > 0 {
                bump(counter, n as u64);
                left = left.saturating_sub(n);
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
    /// Tallies with `shards` thread-owned shards each, and the shared one.
    pub fn with_shards(shards: usize) -> Self {
        ServedTallies {
            shards,
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
        let handles: Vec<_> = (0..8)
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
        assert_eq!(a.get(FeatureStatus::Present), 16_000);
        assert_eq!(a.get(FeatureStatus::Null), 16_000);
        assert_eq!(a.get(FeatureStatus::Defaulted), 8000);
        assert_eq!(a.get(FeatureStatus::NotFound), 0);
        assert_eq!(a.total(), 40_000);
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
