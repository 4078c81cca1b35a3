//! The registry objects beside feature definitions: composite entity types, on-demand
//! features and feature services, with the lineage between them.
//!
//! [`Catalog`] is immutable, like [`super::Registry`] which holds it: a change builds a
//! new one and the engine publishes it with the next read view.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::FastMap;
use super::entity::CompositeEntitySpec;
use super::on_demand::OnDemandDefinition;
use super::service::ServiceDefinition;

/// Composite entity types, on-demand features and services.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entity_types: FastMap<String, Arc<CompositeEntitySpec>>,
    on_demand: FastMap<String, BTreeMap<u32, Arc<OnDemandDefinition>>>,
    services: FastMap<String, BTreeMap<u32, Arc<ServiceDefinition>>>,
}

/// Who uses one feature (`name@version`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeatureUsers {
    /// The feature, `name@version`.
    pub feature: String,
    /// Live services listing it (directly or through an on-demand feature).
    pub services: Vec<String>,
    /// Retired services that listed it.
    pub retired_services: Vec<String>,
    /// On-demand features reading it.
    pub on_demand: Vec<String>,
}

fn split_version(requested: &str) -> Option<(&str, Option<u32>)> {
    match requested.split_once('@') {
        Some((name, v)) => Some((name, Some(v.parse().ok()?))),
        None => Some((requested, None)),
    }
}

impl Catalog {
    /// Builds a catalog from stored objects (any order).
    pub fn from_parts(
        entity_types: impl IntoIterator<Item = CompositeEntitySpec>,
        on_demand: impl IntoIterator<Item = OnDemandDefinition>,
        services: impl IntoIterator<Item = ServiceDefinition>,
    ) -> Self {
        let mut catalog = Catalog::default();
        for e in entity_types {
            catalog.insert_entity_type(e);
        }
        for d in on_demand {
            catalog.insert_on_demand(d);
        }
        for s in services {
            catalog.insert_service(s);
        }
        catalog
    }

    /// Adds or replaces a composite entity type.
    pub fn insert_entity_type(&mut self, spec: CompositeEntitySpec) {
        self.entity_types.insert(spec.name.clone(), Arc::new(spec));
    }

    /// Adds or replaces an on-demand feature.
    pub fn insert_on_demand(&mut self, def: OnDemandDefinition) {
        self.on_demand
            .entry(def.spec.name.clone())
            .or_default()
            .insert(def.spec.version, Arc::new(def));
    }

    /// Adds or replaces a service.
    pub fn insert_service(&mut self, def: ServiceDefinition) {
        self.services
            .entry(def.spec.name.clone())
            .or_default()
            .insert(def.spec.version, Arc::new(def));
    }

    /// The composite entity type `name`.
    pub fn entity_type(&self, name: &str) -> Option<&Arc<CompositeEntitySpec>> {
        self.entity_types.get(name)
    }

    /// Every composite entity type, by name.
    pub fn entity_types(&self) -> Vec<Arc<CompositeEntitySpec>> {
        let mut out: Vec<_> = self.entity_types.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `name@version`, or the newest version of `name`.
    pub fn resolve_on_demand(&self, requested: &str) -> Option<&Arc<OnDemandDefinition>> {
        let (name, version) = split_version(requested)?;
        let versions = self.on_demand.get(name)?;
        match version {
            Some(v) => versions.get(&v),
            None => versions.values().next_back(),
        }
    }

    /// True if some version of on-demand feature `name` exists.
    pub fn has_on_demand_name(&self, name: &str) -> bool {
        self.on_demand.contains_key(name)
    }

    /// Every on-demand feature, by name then version.
    pub fn on_demand(&self) -> Vec<Arc<OnDemandDefinition>> {
        let mut names: Vec<_> = self.on_demand.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| self.on_demand[n].values().cloned())
            .collect()
    }

    /// `name@version`, or the newest live version of `name`; retired services are
    /// returned only when asked by version (the caller refuses them).
    pub fn resolve_service(&self, requested: &str) -> Option<&Arc<ServiceDefinition>> {
        let (name, version) = split_version(requested)?;
        let versions = self.services.get(name)?;
        match version {
            Some(v) => versions.get(&v),
            None => versions
                .values()
                .rev()
                .find(|s| s.is_live())
                .or_else(|| versions.values().next_back()),
        }
    }

    /// Every service, by name then version.
    pub fn services(&self) -> Vec<Arc<ServiceDefinition>> {
        let mut names: Vec<_> = self.services.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| self.services[n].values().cloned())
            .collect()
    }

    /// The exact service (name, version).
    pub fn service(&self, name: &str, version: u32) -> Option<&Arc<ServiceDefinition>> {
        self.services.get(name).and_then(|v| v.get(&version))
    }

    /// Who uses each feature that something uses, keyed `name@version` (stored and
    /// on-demand features alike). Services using an on-demand feature also count as
    /// users of its inputs.
    pub fn lineage(&self) -> BTreeMap<String, FeatureUsers> {
        fn entry<'m>(
            out: &'m mut BTreeMap<String, FeatureUsers>,
            feature: &str,
        ) -> &'m mut FeatureUsers {
            out.entry(feature.to_owned())
                .or_insert_with(|| FeatureUsers {
                    feature: feature.to_owned(),
                    ..FeatureUsers::default()
                })
        }
        let mut out: BTreeMap<String, FeatureUsers> = BTreeMap::new();
        for versions in self.on_demand.values() {
            for def in versions.values() {
                for input in &def.resolved_inputs {
                    entry(&mut out, input).on_demand.push(def.qualified_name());
                }
            }
        }
        for versions in self.services.values() {
            for service in versions.values() {
                let mut used: BTreeSet<&str> = BTreeSet::new();
                for feature in &service.resolved_features {
                    used.insert(feature);
                    if let Some(od) = self.resolve_on_demand(feature) {
                        used.extend(od.resolved_inputs.iter().map(String::as_str));
                    }
                }
                for feature in used {
                    let users = entry(&mut out, feature);
                    if service.is_live() {
                        users.services.push(service.qualified_name());
                    } else {
                        users.retired_services.push(service.qualified_name());
                    }
                }
            }
        }
        for users in out.values_mut() {
            users.services.sort();
            users.retired_services.sort();
            users.on_demand.sort();
        }
        out
    }

    /// Live services using `feature` (`name@version`), directly or through an
    /// on-demand feature.
    pub fn live_users(&self, feature: &str) -> Vec<String> {
        self.lineage()
            .remove(feature)
            .map(|u| u.services)
            .unwrap_or_default()
    }
}
