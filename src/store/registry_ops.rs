//! Registry changes beyond feature definitions: composite entity types, on-demand
//! features and feature services (apply, retire, delete), their persistence in the
//! `meta` column family, and the protection of features that live services use.
//!
//! Writers hold the engine's admin lock (as `apply` does); each change is one synced
//! meta write batch followed by the publication of a new read view, so readers see a
//! change entirely or not at all.

use std::sync::Arc;

use rocksdb::{DB, WriteBatch};
use serde::Serialize;

use super::keyspace::{
    ENTITY_TYPE_PREFIX, META_CF, ON_DEMAND_PREFIX, SERVICE_PREFIX, entity_type_key, versioned_key,
};
use super::{ApplyAction, ApplyOutcome, FeatureStore, StoreError, meta};
use crate::registry::catalog::{Catalog, FeatureUsers};
use crate::registry::defaults::parse_default;
use crate::registry::entity::CompositeEntitySpec;
use crate::registry::file::RegistryObjects;
use crate::registry::on_demand::{OnDemandDefinition, OnDemandSpec};
use crate::registry::service::{ServiceDefinition, ServiceSpec};
use crate::registry::{FeatureDefinition, FeatureSpec, Registry};
use crate::types::now_ms;

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::CorruptMeta {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

fn decode_all<T: serde::de::DeserializeOwned>(db: &DB, prefix: &str) -> Result<Vec<T>, StoreError> {
    meta::read_prefix(db, prefix)?
        .into_iter()
        .map(|(key, bytes)| {
            serde_json::from_slice(&bytes).map_err(|source| StoreError::MetaDecode {
                key: format!("{prefix}{key}"),
                source,
            })
        })
        .collect()
}

/// Reads every stored composite entity type, on-demand feature and service.
pub fn read_catalog(db: &DB) -> Result<Catalog, StoreError> {
    Ok(Catalog::from_parts(
        decode_all::<CompositeEntitySpec>(db, ENTITY_TYPE_PREFIX)?,
        decode_all::<OnDemandDefinition>(db, ON_DEMAND_PREFIX)?,
        decode_all::<ServiceDefinition>(db, SERVICE_PREFIX)?,
    ))
}

/// One synced batch of meta puts and deletes.
fn write_meta(db: &DB, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Result<(), StoreError> {
    let cf = db
        .cf_handle(META_CF)
        .ok_or_else(|| corrupt(META_CF, "column family missing"))?;
    let mut batch = WriteBatch::default();
    for (k, v) in puts {
        batch.put_cf(&cf, k, v);
    }
    for k in deletes {
        batch.delete_cf(&cf, k);
    }
    db.write_opt(batch, &meta::synced())?;
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value)
        .map_err(|e| StoreError::Internal(format!("encoding a registry object: {e}")))
}

/// What an apply of registry objects did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RegistryApplyReport {
    /// Feature definitions.
    pub features: Vec<ApplyOutcome>,
    /// Composite entity types, on-demand features and services.
    pub objects: Vec<ObjectOutcome>,
}

/// What happened to one non-feature registry object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectOutcome {
    /// `entity_type`, `on_demand` or `service`.
    pub kind: &'static str,
    /// Its name (`name@version` for versioned objects).
    pub name: String,
    /// What happened.
    pub action: ApplyAction,
}

/// Checks a feature spec against the catalog before `apply` stores it: its default
/// fits its dtype, its name is not an on-demand feature's, and (for a change to a
/// registered `(name, version)`) its default does not change under a live service.
pub(super) fn check_feature_change(
    registry: &Registry,
    old: Option<&FeatureDefinition>,
    spec: &FeatureSpec,
) -> Result<(), StoreError> {
    if let Some(default) = &spec.default {
        parse_default(default, spec.dtype)
            .map_err(|e| StoreError::invalid_definition(format!("feature `{}`: {e}", spec.name)))?;
    }
    if registry.catalog().has_on_demand_name(&spec.name) {
        return Err(StoreError::invalid_definition(format!(
            "feature `{}`: the name belongs to an on-demand feature",
            spec.name
        )));
    }
    if let Some(old) = old
        && old.spec.default != spec.default
    {
        let users = registry.catalog().live_users(&old.qualified_name());
        if !users.is_empty() {
            return Err(StoreError::in_use(format!(
                "feature `{}` is used by live services {}: changing its default changes what they serve; register version {} instead",
                old.qualified_name(),
                users.join(", "),
                old.spec.version + 1
            )));
        }
    }
    Ok(())
}

/// Applies entity types, on-demand features and services to `catalog` (in that order,
/// so later objects may name earlier ones), collecting meta writes.
struct CatalogChange<'a> {
    registry: &'a Registry,
    catalog: Catalog,
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    outcomes: Vec<ObjectOutcome>,
}

fn invalid(message: String) -> StoreError {
    StoreError::invalid_definition(message)
}

impl CatalogChange<'_> {
    fn outcome(&mut self, kind: &'static str, name: String, action: ApplyAction) {
        self.outcomes.push(ObjectOutcome { kind, name, action });
    }

    fn entity_type(&mut self, spec: CompositeEntitySpec) -> Result<(), StoreError> {
        spec.validate().map_err(invalid)?;
        let action = match self.catalog.entity_type(&spec.name) {
            Some(old) if **old == spec => ApplyAction::Unchanged,
            Some(old) if old.components != spec.components => {
                return Err(invalid(format!(
                    "composite entity type `{}` has components {:?}; they cannot change (stored ids are built from them)",
                    spec.name, old.components
                )));
            }
            Some(_) => ApplyAction::Updated,
            None => ApplyAction::Created,
        };
        if action != ApplyAction::Unchanged {
            self.puts
                .push((entity_type_key(&spec.name), encode(&spec)?));
        }
        self.outcome("entity_type", spec.name.clone(), action);
        self.catalog.insert_entity_type(spec);
        Ok(())
    }

    fn on_demand(&mut self, spec: OnDemandSpec) -> Result<(), StoreError> {
        spec.validate().map_err(invalid)?;
        if self.registry.resolve(&spec.name).is_some() {
            return Err(invalid(format!(
                "on-demand feature `{}`: a stored feature has that name",
                spec.name
            )));
        }
        let mut resolved = Vec::with_capacity(spec.inputs.len());
        let mut dtypes = Vec::with_capacity(spec.inputs.len());
        for input in &spec.inputs {
            let def = self.registry.resolve(input).ok_or_else(|| {
                invalid(format!(
                    "on-demand feature `{}`: input `{input}` is not a registered stored feature",
                    spec.name
                ))
            })?;
            resolved.push(def.qualified_name());
            dtypes.push(def.spec.dtype);
        }
        if let Some(reason) = spec.op.check_inputs(&dtypes) {
            return Err(invalid(format!(
                "on-demand feature `{}`: {reason}",
                spec.name
            )));
        }
        let qualified = format!("{}@{}", spec.name, spec.version);
        let existing = self.catalog.resolve_on_demand(&qualified).cloned();
        let (registered_at_ms, action) = match existing {
            Some(old) if old.spec == spec => {
                self.outcome("on_demand", qualified, ApplyAction::Unchanged);
                return Ok(());
            }
            Some(old) => {
                let serving_change = old.spec.op != spec.op
                    || old.resolved_inputs != resolved
                    || old.spec.default.to_bits() != spec.default.to_bits();
                let users = self.catalog.live_users(&qualified);
                if serving_change && !users.is_empty() {
                    return Err(StoreError::in_use(format!(
                        "on-demand feature `{qualified}` is used by live services {}: a change of operation, inputs or default needs version {}",
                        users.join(", "),
                        spec.version + 1
                    )));
                }
                (old.registered_at_ms, ApplyAction::Updated)
            }
            None => (now_ms(), ApplyAction::Created),
        };
        let def = OnDemandDefinition {
            registered_at_ms,
            resolved_inputs: resolved,
            spec,
        };
        self.puts.push((
            versioned_key(ON_DEMAND_PREFIX, &def.spec.name, def.spec.version),
            encode(&def)?,
        ));
        self.outcome("on_demand", qualified, action);
        self.catalog.insert_on_demand(def);
        Ok(())
    }

    fn service(&mut self, spec: ServiceSpec) -> Result<(), StoreError> {
        spec.validate().map_err(invalid)?;
        let mut resolved = Vec::with_capacity(spec.features.len());
        let reuse = |def: &crate::registry::FeatureDefinition, via: Option<&str>| {
            if def.spec.reusable_by(&spec.owner) {
                return Ok(());
            }
            let via = via
                .map(|v| format!(" (an input of `{v}`)"))
                .unwrap_or_default();
            Err(invalid(format!(
                "service `{}` of team `{}` may not use feature `{}`{via}: its owner `{}` allows only teams {}",
                spec.name,
                spec.owner,
                def.qualified_name(),
                def.spec.owner,
                def.spec
                    .reuse_teams
                    .as_deref()
                    .unwrap_or_default()
                    .join(", ")
            )))
        };
        for feature in &spec.features {
            let pinned = match self.registry.resolve(feature) {
                Some(def) => {
                    reuse(def, None)?;
                    def.qualified_name()
                }
                None => {
                    let od = self.catalog.resolve_on_demand(feature).ok_or_else(|| {
                        invalid(format!(
                            "service `{}`: feature `{feature}` is not registered",
                            spec.name
                        ))
                    })?;
                    for input in &od.resolved_inputs {
                        if let Some(def) = self.registry.resolve(input) {
                            reuse(def, Some(&od.qualified_name()))?;
                        }
                    }
                    od.qualified_name()
                }
            };
            resolved.push(pinned);
        }
        let qualified = format!("{}@{}", spec.name, spec.version);
        let (registered_at_ms, action) = match self.catalog.service(&spec.name, spec.version) {
            Some(old) if !old.is_live() => {
                return Err(invalid(format!(
                    "service `{qualified}` is retired; register version {} instead",
                    spec.version + 1
                )));
            }
            Some(old) if old.spec == spec => {
                self.outcome("service", qualified, ApplyAction::Unchanged);
                return Ok(());
            }
            Some(old)
                if old.spec.features != spec.features || old.resolved_features != resolved =>
            {
                return Err(invalid(format!(
                    "service `{qualified}` already lists other features; register version {} instead",
                    spec.version + 1
                )));
            }
            Some(old) => (old.registered_at_ms, ApplyAction::Updated),
            None => (now_ms(), ApplyAction::Created),
        };
        let def = ServiceDefinition {
            registered_at_ms,
            retired_at_ms: None,
            resolved_features: resolved,
            spec,
        };
        self.puts.push((
            versioned_key(SERVICE_PREFIX, &def.spec.name, def.spec.version),
            encode(&def)?,
        ));
        self.outcome("service", qualified, action);
        self.catalog.insert_service(def);
        Ok(())
    }
}

impl FeatureStore {
    /// Applies a registry document: feature definitions first (as [`apply`](Self::apply)),
    /// then composite entity types, on-demand features and services. Each of the two
    /// steps is all or nothing.
    pub fn apply_objects(
        &self,
        objects: RegistryObjects,
    ) -> Result<RegistryApplyReport, StoreError> {
        let features = if objects.feature.is_empty() {
            Vec::new()
        } else {
            self.apply(objects.feature)?
        };
        let objects =
            self.apply_catalog(objects.entity_type, objects.on_demand, objects.service)?;
        Ok(RegistryApplyReport { features, objects })
    }

    /// Registers or updates composite entity types, on-demand features and services,
    /// all or nothing.
    pub fn apply_catalog(
        &self,
        entity_types: Vec<CompositeEntitySpec>,
        on_demand: Vec<OnDemandSpec>,
        services: Vec<ServiceSpec>,
    ) -> Result<Vec<ObjectOutcome>, StoreError> {
        let mut state = self.admin.lock();
        let registry = state.registry.clone();
        let mut change = CatalogChange {
            registry: &registry,
            catalog: Catalog::clone(registry.catalog()),
            puts: Vec::new(),
            outcomes: Vec::new(),
        };
        for spec in entity_types {
            change.entity_type(spec)?;
        }
        for spec in on_demand {
            change.on_demand(spec)?;
        }
        for spec in services {
            change.service(spec)?;
        }
        let CatalogChange {
            catalog,
            puts,
            outcomes,
            ..
        } = change;
        if puts.is_empty() {
            return Ok(outcomes);
        }
        write_meta(&self.db, &puts, &[])?;
        let mut next = Registry::clone(&registry);
        next.set_catalog(Arc::new(catalog));
        state.registry = Arc::new(next);
        self.publish(&state)?;
        Ok(outcomes)
    }

    /// Deletes a feature definition (stored or on-demand). Refused while a live service
    /// uses it (directly or through an on-demand feature) and, for a stored feature,
    /// while an on-demand feature reads it. Its id is never reused; values stored under
    /// it stay in their versions, unreadable, until those versions are dropped.
    pub fn delete_feature(&self, name: &str, version: u32) -> Result<(), StoreError> {
        let mut state = self.admin.lock();
        let registry = state.registry.clone();
        let qualified = format!("{name}@{version}");
        let users = registry
            .catalog()
            .lineage()
            .remove(&qualified)
            .unwrap_or_default();
        if !users.services.is_empty() {
            return Err(StoreError::in_use(format!(
                "feature `{qualified}` is used by live services {}; retire them first",
                users.services.join(", ")
            )));
        }
        if let Some(def) = registry.get(name, version) {
            if !users.on_demand.is_empty() {
                return Err(StoreError::in_use(format!(
                    "feature `{qualified}` is read by on-demand features {}; delete them first",
                    users.on_demand.join(", ")
                )));
            }
            write_meta(
                &self.db,
                &[],
                &[super::keyspace::definition_key(name, version)],
            )?;
            state.registry = Arc::new(registry.without(def.id));
        } else if registry.catalog().resolve_on_demand(&qualified).is_some() {
            write_meta(
                &self.db,
                &[],
                &[versioned_key(ON_DEMAND_PREFIX, name, version)],
            )?;
            let catalog = registry.catalog();
            let rebuilt = Catalog::from_parts(
                catalog
                    .entity_types()
                    .iter()
                    .map(|e| CompositeEntitySpec::clone(e)),
                catalog
                    .on_demand()
                    .iter()
                    .filter(|d| d.qualified_name() != qualified)
                    .map(|d| OnDemandDefinition::clone(d)),
                catalog
                    .services()
                    .iter()
                    .map(|s| ServiceDefinition::clone(s)),
            );
            let mut next = Registry::clone(&registry);
            next.set_catalog(Arc::new(rebuilt));
            state.registry = Arc::new(next);
        } else {
            return Err(StoreError::not_registered(format!(
                "no feature `{qualified}` is registered"
            )));
        }
        self.publish(&state)
    }

    /// Retires a feature service: it is no longer served and no longer protects its
    /// features. Idempotent; the record stays for lineage.
    pub fn retire_service(
        &self,
        name: &str,
        version: u32,
    ) -> Result<ServiceDefinition, StoreError> {
        let mut state = self.admin.lock();
        let registry = state.registry.clone();
        let old = registry.catalog().service(name, version).ok_or_else(|| {
            StoreError::not_registered(format!(
                "no feature service `{name}@{version}` is registered"
            ))
        })?;
        if !old.is_live() {
            return Ok(ServiceDefinition::clone(old));
        }
        let mut def = ServiceDefinition::clone(old);
        def.retired_at_ms = Some(now_ms());
        write_meta(
            &self.db,
            &[(versioned_key(SERVICE_PREFIX, name, version), encode(&def)?)],
            &[],
        )?;
        let mut catalog = Catalog::clone(registry.catalog());
        catalog.insert_service(def.clone());
        let mut next = Registry::clone(&registry);
        next.set_catalog(Arc::new(catalog));
        state.registry = Arc::new(next);
        self.publish(&state)?;
        Ok(def)
    }

    /// Who uses which feature: every feature some service or on-demand feature uses.
    pub fn lineage(&self) -> Vec<FeatureUsers> {
        self.registry().catalog().lineage().into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_version() {
        assert_eq!(
            versioned_key(SERVICE_PREFIX, "ranker", 2),
            b"registry/service/ranker@0000000002".to_vec()
        );
        assert!(versioned_key(ON_DEMAND_PREFIX, "a", 9) < versioned_key(ON_DEMAND_PREFIX, "a", 10));
    }
}
