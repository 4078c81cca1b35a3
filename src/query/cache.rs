//! The cache of read plans (single-entity and ranking) of one registry snapshot.
//!
//! A single-entity GET names its features in its query string (`names=a,b,c`), and a
//! ranking host asks the same list (or service) again and again: resolving 50 names,
//! grouping them and placing them costs more than a single read itself. The plan of each
//! distinct request shape is kept here, keyed by what it was planned from (the entity
//! type and the list as sent; for a ranking read the candidate type, the context's
//! entity types in order and the names or service), so that the next read of that
//! shape does one hash lookup. `cached` writes the key into a reused thread-local
//! buffer, so a hit allocates nothing.
//!
//! Invariants:
//! - a cache belongs to one [`crate::registry::Registry`] snapshot and holds only plans
//!   built from it: any change to the snapshot (a definition inserted, a new catalog)
//!   empties it, and a cloned snapshot starts with an empty one;
//! - only plans of successful reads are kept: a refused read (an unknown name, a wrong
//!   entity type) is planned again each time, with the same error;
//! - bounded: at most [`MAX_PLANS`] plans of at most [`MAX_KEY_BYTES`] of key and
//!   [`MAX_COLUMNS`] columns each; when full, the cache is emptied before a new plan
//!   goes in (a client sending ever new lists only makes its own reads plan again).
//!
//! Thread-safety: a `parking_lot::RwLock` around the map; readers hold it for one
//! lookup and an `Arc` clone, writers for one insertion. No lock is held while a plan
//! is built or a read executes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::rank::Plan;

/// Most plans one snapshot caches.
pub const MAX_PLANS: usize = 256;

/// Longest key (entity type and names as sent) whose plan is cached.
pub const MAX_KEY_BYTES: usize = 8 * 1024;

/// Most columns of a cached plan.
pub const MAX_COLUMNS: usize = 1024;

/// Single-entity read plans by key (see the module docs).
#[derive(Default)]
pub struct PlanCache {
    plans: RwLock<HashMap<Box<str>, Arc<Plan>, ahash::RandomState>>,
}

impl PlanCache {
    /// The plan cached under `key`.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Plan>> {
        self.plans.read().get(key).cloned()
    }

    /// Caches `plan` under `key`, unless either is over the limits.
    pub(crate) fn insert(&self, key: &str, plan: &Arc<Plan>) {
        if key.len() > MAX_KEY_BYTES || plan.stored_columns().max(plan.width()) > MAX_COLUMNS {
            return;
        }
        let mut plans = self.plans.write();
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(Box::from(key), plan.clone());
    }

    /// Plans cached.
    pub fn len(&self) -> usize {
        self.plans.read().len()
    }

    /// True when no plan is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

thread_local! {
    /// The cache key being looked up, reused so that a lookup does not allocate.
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The plan cached in `cache` under the key `write_key` writes, or the one `build`
/// makes, which is then cached. `write_key` gets an empty buffer and returns false when
/// the key would be ambiguous (a separator inside a part): such a plan is built and not
/// cached. Errors are never cached.
pub(crate) fn cached<E>(
    cache: &PlanCache,
    write_key: impl FnOnce(&mut String) -> bool,
    build: impl FnOnce() -> Result<Plan, E>,
) -> Result<Arc<Plan>, E> {
    KEY.with(|key| {
        let mut key = key.borrow_mut();
        key.clear();
        let cacheable = write_key(&mut key);
        if cacheable && let Some(plan) = cache.get(&key) {
            return Ok(plan);
        }
        let plan = Arc::new(build()?);
        if cacheable {
            cache.insert(&key, &plan);
        }
        Ok(plan)
    })
}

/// A clone is a cache of another snapshot: it starts empty.
impl Clone for PlanCache {
    fn clone(&self) -> Self {
        PlanCache::default()
    }
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("plans", &self.len())
            .finish()
    }
}
