//! The feature registry: definitions teams register, discover and reuse.
//!
//! [`Registry`] is an immutable snapshot. Writers (apply) build a new snapshot and the
//! engine swaps it into the read view atomically, so readers never wait on a change.
//! Persistence lives in `store::meta`; parsing of declarative files in `file`.

pub mod aggregate;
pub mod catalog;
pub mod defaults;
pub mod definition;
pub mod entity;
pub mod error;
pub mod file;
pub mod on_demand;
pub mod service;

use std::collections::{BTreeMap, HashMap, HashSet};

/// Maps on the read path hash with aHash: several times faster than SipHash on short
/// feature names, and the keys come from the registry, not from requests (a request's
/// name is only looked up, never inserted), so HashDoS resistance is not needed beyond
/// aHash's random keys.
type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;
use std::sync::Arc;

pub use aggregate::{AggregateFunction, AggregateSpec};
pub use definition::{FeatureDefinition, FeatureSpec, Sensitivity};
pub use error::RegistryError;

use crate::query::cache::PlanCache;
use crate::types::{FeatureId, Value};

/// The features of one group, which all share its entity type.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Entity type of every feature in the group.
    pub entity_type: String,
    /// Feature ids, ascending.
    pub features: Vec<FeatureId>,
}

/// Filter for listing definitions; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DefinitionFilter {
    /// Exact entity type.
    pub entity_type: Option<String>,
    /// Exact owner.
    pub owner: Option<String>,
    /// Definitions carrying this tag.
    pub tag: Option<String>,
    /// Substring of the name.
    pub name: Option<String>,
    /// Exact group.
    pub group: Option<String>,
}

impl DefinitionFilter {
    fn matches(&self, def: &FeatureDefinition) -> bool {
        let spec = &def.spec;
        self.entity_type
            .as_ref()
            .is_none_or(|e| *e == spec.entity_type)
            && self.owner.as_ref().is_none_or(|o| *o == spec.owner)
            && self.tag.as_ref().is_none_or(|t| spec.tags.contains(t))
            && self
                .name
                .as_ref()
                .is_none_or(|n| spec.name.contains(n.as_str()))
            && self.group.as_ref().is_none_or(|g| *g == spec.group)
    }
}

/// Immutable snapshot of every registered definition, indexed for the read path.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_id: FastMap<FeatureId, Arc<FeatureDefinition>>,
    /// name -> version -> id. Keys are shared so that reads can name a feature in
    /// their answer without allocating ([`Registry::resolve_named`]).
    by_name: FastMap<Arc<str>, BTreeMap<u32, FeatureId>>,
    groups: FastMap<String, GroupInfo>,
    entity_types: HashSet<String, ahash::RandomState>,
    /// Composite entity types, on-demand features and services.
    catalog: Arc<catalog::Catalog>,
    /// Each definition's default, parsed once here rather than per read.
    defaults: FastMap<FeatureId, Value>,
    /// Plans of recent single-entity reads of this snapshot (emptied by any change).
    read_plans: PlanCache,
}

impl Registry {
    /// Builds a snapshot from definitions (any order).
    pub fn from_definitions(defs: impl IntoIterator<Item = FeatureDefinition>) -> Self {
        let mut registry = Registry::default();
        for def in defs {
            registry.insert(def);
        }
        registry
    }

    /// Adds or replaces a definition (keyed by its id).
    pub fn insert(&mut self, def: FeatureDefinition) {
        let id = def.id;
        self.read_plans = PlanCache::default();
        // Checked at registration; a literal that no longer converts serves no default.
        match def
            .spec
            .default
            .as_ref()
            .and_then(|literal| defaults::parse_default(literal, def.spec.dtype).ok())
        {
            Some(value) => self.defaults.insert(id, value),
            None => self.defaults.remove(&id),
        };
        self.entity_types.insert(def.spec.entity_type.clone());
        self.by_name
            .entry(Arc::from(def.spec.name.as_str()))
            .or_default()
            .insert(def.spec.version, id);
        let group = self
            .groups
            .entry(def.spec.group.clone())
            .or_insert_with(|| GroupInfo {
                name: def.spec.group.clone(),
                entity_type: def.spec.entity_type.clone(),
                features: Vec::new(),
            });
        if let Err(pos) = group.features.binary_search(&id) {
            group.features.insert(pos, id);
        }
        self.by_id.insert(id, Arc::new(def));
    }

    /// The definition with this id.
    pub fn by_id(&self, id: FeatureId) -> Option<&Arc<FeatureDefinition>> {
        self.by_id.get(&id)
    }

    /// The default of definition `id`, parsed when the snapshot was built.
    pub fn default_value(&self, id: FeatureId) -> Option<&Value> {
        self.defaults.get(&id)
    }

    /// The cache of single-entity read plans built from this snapshot.
    pub fn read_plans(&self) -> &PlanCache {
        &self.read_plans
    }

    /// `name@version`, or the newest version of `name` when no version is given.
    pub fn resolve(&self, requested: &str) -> Option<&Arc<FeatureDefinition>> {
        self.resolve_named(requested).map(|(def, _)| def)
    }

    /// [`resolve`](Self::resolve), also handing out the registry's shared copy of the
    /// requested text when it is a plain name (no `@version`), so a read can echo the
    /// name in its answer without allocating.
    pub fn resolve_named(
        &self,
        requested: &str,
    ) -> Option<(&Arc<FeatureDefinition>, Option<&Arc<str>>)> {
        let (name, version) = match requested.split_once('@') {
            Some((name, v)) => (name, Some(v.parse::<u32>().ok()?)),
            None => (requested, None),
        };
        let (key, versions) = self.by_name.get_key_value(name)?;
        let id = match version {
            Some(v) => versions.get(&v)?,
            None => versions.values().next_back()?,
        };
        let shared = version.is_none().then_some(key);
        self.by_id.get(id).map(|def| (def, shared))
    }

    /// The exact (name, version).
    pub fn get(&self, name: &str, version: u32) -> Option<&Arc<FeatureDefinition>> {
        self.by_name
            .get(name)
            .and_then(|v| v.get(&version))
            .and_then(|id| self.by_id.get(id))
    }

    /// A group, if any feature is registered in it.
    pub fn group(&self, name: &str) -> Option<&GroupInfo> {
        self.groups.get(name)
    }

    /// All groups, in name order.
    pub fn groups(&self) -> Vec<&GroupInfo> {
        let mut groups: Vec<_> = self.groups.values().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    /// True if some feature is registered for this entity type.
    pub fn has_entity_type(&self, entity_type: &str) -> bool {
        self.entity_types.contains(entity_type)
    }

    /// Definitions matching `filter`, ordered by name then version.
    pub fn list(&self, filter: &DefinitionFilter) -> Vec<Arc<FeatureDefinition>> {
        let mut out: Vec<_> = self
            .by_id
            .values()
            .filter(|d| filter.matches(d))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (a.spec.name.as_str(), a.spec.version).cmp(&(b.spec.name.as_str(), b.spec.version))
        });
        out
    }

    /// Number of registered (name, version) pairs.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True if nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// How ids of `entity_type` are checked ([`entity::EntityIdRule::check`]: the one
    /// check every load, push and read applies): composite if the type is declared as
    /// one, plain otherwise.
    pub fn entity_id_rule<'r>(&'r self, entity_type: &'r str) -> entity::EntityIdRule<'r> {
        entity::EntityIdRule::new(
            entity_type,
            self.catalog.entity_type(entity_type).map(|spec| &**spec),
        )
    }

    /// Composite entity types, on-demand features and services.
    pub fn catalog(&self) -> &Arc<catalog::Catalog> {
        &self.catalog
    }

    /// Replaces the catalog.
    pub fn set_catalog(&mut self, catalog: Arc<catalog::Catalog>) {
        self.catalog = catalog;
        self.read_plans = PlanCache::default();
    }

    /// This snapshot without the definition `id` (same catalog).
    pub fn without(&self, id: FeatureId) -> Registry {
        let mut next = Registry::from_definitions(
            self.by_id
                .values()
                .filter(|d| d.id != id)
                .map(|d| FeatureDefinition::clone(d)),
        );
        next.set_catalog(self.catalog.clone());
        next
    }

    /// The largest id in use, if any.
    pub fn max_id(&self) -> Option<FeatureId> {
        self.by_id.keys().copied().max()
    }
}
