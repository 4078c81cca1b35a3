//! Single-entity reads: `names` of one entity, answered as a one-candidate ranking read
//! with no context (the same [`Plan`] and the same columnar answer, one row per column).
//!
//! The plan of a names list is cached in the registry snapshot ([`super::cache`]), so a
//! repeated list costs one hash lookup instead of resolving every name. Checks run in
//! a fixed order, so errors do not depend on the cache: the entity type, then the id,
//! then the names (none given, then each name in order).
//!
//! [`EntityAnswer`] is the answer; [`FeatureVector`] (one owned reading per feature) is
//! a view built from it for callers that want rows.
//!
//! Thread-safety: a pure function of one read view; the plan cache takes a read lock
//! for one lookup.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::answer::ColumnValues;
use super::rank::{Plan, SpaceKeys, execute, plan_entity};
use super::read::{FeatureReading, FeatureVector, age_ms};
use super::tally::ServedTallies;
use crate::registry::Registry;
use crate::store::error::ReadError;
use crate::store::history::read::HistoryRead;
use crate::store::view::ReadView;
use crate::types::{FeatureStatus, TimestampMs, Value};

/// The features a single-entity read asks for, in answer order.
#[derive(Debug, Clone, Copy)]
pub enum Names<'a> {
    /// Comma-separated names as a query string carries them (`a, b,,c`): each trimmed,
    /// empty ones dropped.
    Text(&'a str),
    /// Exact names (`name` or `name@version`).
    List(&'a [&'a str]),
}

/// The answer to a single-entity read: one one-row column per name asked.
#[derive(Debug, Clone)]
pub struct EntityAnswer {
    entity_type: String,
    entity_id: String,
    plan: Arc<Plan>,
    values: Vec<ColumnValues>,
    versions: BTreeMap<String, u64>,
    now_ms: TimestampMs,
}

impl EntityAnswer {
    /// Entity type of the request.
    pub fn entity_type(&self) -> &str {
        &self.entity_type
    }

    /// Entity id of the request.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// The plan that answered (its columns are a function of it alone).
    pub(crate) fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Features answered (one per name asked).
    pub fn width(&self) -> usize {
        self.values.len()
    }

    /// The name asked for feature `i` (`name` or `name@version`).
    pub fn name(&self, i: usize) -> &str {
        self.plan.asked(i).map_or("", |n| n)
    }

    /// What column `i` serves: the feature (`name@version`), its dtype, whether it is
    /// computed on demand.
    pub fn column_info(&self, i: usize) -> Option<&super::RankColumn> {
        self.plan.column(i)
    }

    /// Feature `i`'s column (one row).
    pub fn column(&self, i: usize) -> Option<&ColumnValues> {
        self.values.get(i)
    }

    /// Every feature's column, in the order asked.
    pub fn columns(&self) -> &[ColumnValues] {
        &self.values
    }

    /// Every feature's status, in the order asked.
    pub fn statuses(&self) -> impl Iterator<Item = &FeatureStatus> {
        self.values.iter().flat_map(|c| c.statuses().first())
    }

    /// Batch version served for each group read.
    pub fn versions(&self) -> &BTreeMap<String, u64> {
        &self.versions
    }

    /// The read's time, ms since the epoch.
    pub fn now_ms(&self) -> TimestampMs {
        self.now_ms
    }

    /// Age of feature `i`'s stored value at read time (at least 0), when one was found.
    pub fn age_ms(&self, i: usize) -> Option<i64> {
        age_ms(self.values.get(i)?.event_time(0), self.now_ms)
    }

    /// Feature `i`'s value, when its status carries one.
    pub fn value(&self, i: usize) -> Option<Value> {
        self.values.get(i)?.value(0)
    }

    /// The row view: one owned reading per feature.
    pub fn into_vector(self) -> FeatureVector {
        let features = self
            .values
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let event_time = column.event_time(0);
                FeatureReading {
                    name: self.plan.asked(i).cloned().unwrap_or_else(|| Arc::from("")),
                    status: column.status(0),
                    value: column.value(0),
                    event_time,
                    age_ms: age_ms(event_time, self.now_ms),
                }
            })
            .collect();
        FeatureVector {
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            features,
            versions: self.versions,
        }
    }
}

/// Reads `names` of one entity from `view` at `now`.
pub fn get(
    view: &ReadView,
    entity_type: &str,
    entity_id: &str,
    names: Names<'_>,
    now: TimestampMs,
) -> Result<EntityAnswer, ReadError> {
    get_in(view, entity_type, entity_id, names, now, None, None)
}

/// Reads `names` of one entity at `now` once `guard` (if any) admits the plan (see
/// [`super::guard`]), with stored values read as `history` says (`None`: live; as-of
/// and point-in-time reads otherwise).
pub fn get_in(
    view: &ReadView,
    entity_type: &str,
    entity_id: &str,
    names: Names<'_>,
    now: TimestampMs,
    guard: Option<&dyn super::guard::ReadGuard>,
    history: Option<HistoryRead<'_>>,
) -> Result<EntityAnswer, ReadError> {
    let registry = view.registry();
    if !registry.has_entity_type(entity_type) {
        return Err(ReadError::UnknownEntityType(entity_type.to_owned()));
    }
    let key = registry.entity_id_rule(entity_type).key(entity_id)?;
    let plan = plan_of(registry, &view.counters().served, entity_type, names)?;
    if let Some(guard) = guard {
        guard.admit_shared(&plan)?;
    }
    let mut keys = SpaceKeys::single(key);
    let executed = execute(view, &plan, &mut keys, (1, now), history, &|| false)?;
    Ok(EntityAnswer {
        entity_type: entity_type.to_owned(),
        entity_id: entity_id.to_owned(),
        plan,
        values: executed.outputs,
        versions: executed.versions,
        now_ms: now,
    })
}

/// The plan of `names` of `entity_type`, from the snapshot's cache or built (and
/// cached) now.
fn plan_of(
    registry: &Registry,
    tallies: &ServedTallies,
    entity_type: &str,
    names: Names<'_>,
) -> Result<Arc<Plan>, ReadError> {
    super::cache::cached(
        registry.read_plans(),
        |key| cache_key(key, entity_type, names),
        || {
            let list: Vec<&str> = match names {
                Names::Text(text) => text
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .collect(),
                Names::List(list) => list.to_vec(),
            };
            if list.is_empty() {
                return Err(ReadError::NoFeatures);
            }
            plan_entity(registry, tallies, entity_type, &list)
        },
    )
}

/// Writes the cache key of a read into `key`: the form of `names`, the entity type,
/// then the names as given, separated by NUL. False when the key would be ambiguous
/// (a NUL inside a name or the entity type), which is then not cached.
fn cache_key(key: &mut String, entity_type: &str, names: Names<'_>) -> bool {
    key.clear();
    let mut clean = !entity_type.contains('\0');
    match names {
        Names::Text(text) => {
            key.push('T');
            key.push_str(entity_type);
            key.push('\0');
            key.push_str(text);
        }
        Names::List(list) => {
            key.push('L');
            key.push_str(entity_type);
            for name in list {
                clean &= !name.contains('\0');
                key.push('\0');
                key.push_str(name);
            }
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_tell_forms_and_lists_apart() {
        let mut a = String::new();
        let mut b = String::new();
        assert!(cache_key(&mut a, "item", Names::Text("x,y")));
        assert!(cache_key(&mut b, "item", Names::List(&["x,y"])));
        assert_ne!(a, b);
        assert!(cache_key(&mut a, "item", Names::List(&["x", "y"])));
        assert_ne!(a, b);
        assert!(cache_key(&mut b, "itemx", Names::List(&["y"])));
        assert_ne!(a, b);
        assert!(!cache_key(&mut a, "item", Names::List(&["x\0y"])));
        assert!(!cache_key(&mut a, "it\0em", Names::Text("x")));
    }
}
