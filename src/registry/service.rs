//! Feature services: a named, versioned list of features one model uses (`ranker_v3`).
//!
//! A ranking host asks for a service instead of listing hundreds of names. Each listed
//! feature (stored or on-demand) is pinned to a `name@version` at registration, so a
//! later version of a feature never changes what a service serves. A service is live
//! until retired; a live service protects the features it uses (lineage) from deletion
//! and from changes to what they serve.

use serde::{Deserialize, Serialize};

use super::definition::validate_identifier;
use crate::types::TimestampMs;

/// A feature service as submitted (`[[service]]` in a registry file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name (`ranker_v3`).
    pub name: String,
    /// Version; a different feature list needs a new version.
    #[serde(default = "first_version")]
    pub version: u32,
    /// Owning team (the model's).
    pub owner: String,
    /// Features served, in response order: `name` (pinned to the newest version at
    /// registration) or `name@version`; stored or on-demand.
    pub features: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

fn first_version() -> u32 {
    1
}

impl ServiceSpec {
    /// Checks the spec on its own, before resolving features.
    pub fn validate(&self) -> Result<(), String> {
        validate_identifier("service name", &self.name)?;
        if self.version == 0 {
            return Err(format!("service `{}`: versions start at 1", self.name));
        }
        if self.owner.trim().is_empty() {
            return Err(format!("service `{}`: owner must not be empty", self.name));
        }
        if self.features.is_empty() {
            return Err(format!("service `{}` lists no features", self.name));
        }
        for (i, f) in self.features.iter().enumerate() {
            if self.features[..i].contains(f) {
                return Err(format!("service `{}` lists `{f}` twice", self.name));
            }
        }
        Ok(())
    }
}

/// A registered feature service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDefinition {
    /// When this (name, version) was registered.
    pub registered_at_ms: TimestampMs,
    /// When it was retired; `None` while live.
    #[serde(default)]
    pub retired_at_ms: Option<TimestampMs>,
    /// `spec.features` pinned at registration, `name@version`, same order.
    pub resolved_features: Vec<String>,
    /// The definition.
    #[serde(flatten)]
    pub spec: ServiceSpec,
}

impl ServiceDefinition {
    /// `name@version`.
    pub fn qualified_name(&self) -> String {
        format!("{}@{}", self.spec.name, self.spec.version)
    }

    /// True until retired.
    pub fn is_live(&self) -> bool {
        self.retired_at_ms.is_none()
    }
}
