//! Registry objects beyond feature definitions: the apply body and report
//! (`POST /v1/registry`), deletion, the listings of composite entity types, on-demand
//! features and services, retirement, and lineage.
//!
//! The deletion, listing and lineage answers are written with their object keys
//! sorted at every level (they always were: the server built them as JSON trees);
//! [`sorted_json`] keeps that.

use serde::{Deserialize, Serialize};

use super::definitions::{ApplyAction, ApplyOutcome};
use super::error::BadRequest;
use crate::registry::catalog::FeatureUsers;
use crate::registry::entity::CompositeEntitySpec;
use crate::registry::file::RegistryObjects;
use crate::registry::on_demand::OnDemandDefinition;
use crate::registry::service::ServiceDefinition;
use crate::store::registry_ops;

/// Parses a `POST /v1/registry` body (`{"features", "entity_types", "on_demand",
/// "services"}`, each optional, at least one object in all).
pub fn parse_registry_objects(body: &[u8]) -> Result<RegistryObjects, BadRequest> {
    let objects: RegistryObjects = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("invalid registry objects: {e}")))?;
    if objects.is_empty() {
        return Err(BadRequest::new("no registry objects given"));
    }
    Ok(objects)
}

/// Parses the `{version}` of a feature definition or service path.
pub fn parse_object_version(text: &str) -> Result<u32, BadRequest> {
    text.parse()
        .map_err(|_| BadRequest(format!("version `{text}` is not a number")))
}

/// What happened to one composite entity type, on-demand feature or service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectOutcome {
    /// `entity_type`, `on_demand` or `service`.
    pub kind: String,
    /// Its name (`name@version` for versioned objects).
    pub name: String,
    /// What happened.
    pub action: ApplyAction,
}

/// Answer of `POST /v1/registry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryApplyReport {
    /// Feature definitions, in request order.
    pub features: Vec<ApplyOutcome>,
    /// Composite entity types, on-demand features and services.
    pub objects: Vec<ObjectOutcome>,
}

impl From<registry_ops::RegistryApplyReport> for RegistryApplyReport {
    fn from(report: registry_ops::RegistryApplyReport) -> Self {
        let registry_ops::RegistryApplyReport { features, objects } = report;
        RegistryApplyReport {
            features: features.into_iter().map(ApplyOutcome::from).collect(),
            objects: objects
                .into_iter()
                .map(|o| {
                    let registry_ops::ObjectOutcome { kind, name, action } = o;
                    ObjectOutcome {
                        kind: kind.to_owned(),
                        name,
                        action: action.into(),
                    }
                })
                .collect(),
        }
    }
}

/// Answer of `DELETE /v1/feature-definitions/{name}/versions/{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// `name@version` of the feature deleted.
    pub deleted: String,
}

/// Answer of `GET /v1/entity-types`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityTypeList {
    /// Composite entity types, by name.
    pub entity_types: Vec<CompositeEntitySpec>,
}

/// Answer of `GET /v1/on-demand-features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnDemandList {
    /// On-demand features, by name then version.
    pub on_demand: Vec<OnDemandDefinition>,
}

/// One service of `GET /v1/feature-services`: its definition and whether it is live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// False once retired.
    pub live: bool,
    /// The definition (its fields appear beside `live`).
    #[serde(flatten)]
    pub service: ServiceDefinition,
}

/// Answer of `GET /v1/feature-services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    /// Services, by name then version.
    pub services: Vec<ServiceEntry>,
}

/// One feature of `GET /v1/lineage`: who uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageEntry {
    /// The feature, `name@version`.
    pub feature: String,
    /// Live services listing it (directly or through an on-demand feature).
    pub services: Vec<String>,
    /// Retired services that listed it.
    pub retired_services: Vec<String>,
    /// On-demand features reading it.
    pub on_demand: Vec<String>,
}

impl From<FeatureUsers> for LineageEntry {
    fn from(users: FeatureUsers) -> Self {
        let FeatureUsers {
            feature,
            services,
            retired_services,
            on_demand,
        } = users;
        LineageEntry {
            feature,
            services,
            retired_services,
            on_demand,
        }
    }
}

/// Answer of `GET /v1/lineage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// Every feature with a user.
    pub features: Vec<LineageEntry>,
}

/// Encodes `value` with the keys of every object sorted (through a JSON tree).
pub fn sorted_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&serde_json::to_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_bodies_parse_and_refuse_empty_ones() {
        let objects = parse_registry_objects(
            br#"{"entity_types":[{"name":"user_product","components":["user","product"]}]}"#,
        );
        assert!(objects.is_ok(), "{objects:?}");
        for body in ["", "{}", r#"{"features":[]}"#, r#"{"typo":[]}"#] {
            assert!(parse_registry_objects(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn reports_encode_as_the_store_report_did() {
        let report = registry_ops::RegistryApplyReport {
            features: vec![],
            objects: vec![registry_ops::ObjectOutcome {
                kind: "service",
                name: "ranker@1".into(),
                action: crate::store::ApplyAction::Unchanged,
            }],
        };
        let before = serde_json::to_vec(&report).expect("encodes");
        let after = RegistryApplyReport::from(report);
        assert_eq!(serde_json::to_vec(&after).expect("encodes"), before);
        let decoded: RegistryApplyReport = serde_json::from_slice(&before).expect("decodes");
        assert_eq!(decoded, after);
    }

    #[test]
    fn lineage_keeps_its_sorted_keys() {
        let users = FeatureUsers {
            feature: "ctr@1".into(),
            services: vec!["ranker@1".into()],
            retired_services: vec![],
            on_demand: vec!["boost@1".into()],
        };
        let before = serde_json::to_vec(&serde_json::json!({ "features": [users.clone()] }))
            .expect("encodes");
        let after = sorted_json(&Lineage {
            features: vec![users.into()],
        })
        .expect("encodes");
        assert_eq!(after, before);
        let decoded: Lineage = serde_json::from_slice(&after).expect("decodes");
        assert_eq!(decoded.features[0].on_demand, vec!["boost@1"]);
    }
}
