//! A feature definition: what a feature is, who owns it and how it may be served.
//!
//! Identity is `(name, version)`. The registry assigns each identity a dense
//! [`FeatureId`] once; it never changes and is never reused.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{DType, FeatureId, TimestampMs};

/// How sensitive a feature's values are; governs who may read or export them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// May be shown to anyone.
    Public,
    /// For use inside the company (the default).
    #[default]
    Internal,
    /// Business-confidential.
    Confidential,
    /// Personal data: restricted access, never exported in clear.
    Pii,
}

/// A feature definition as submitted by a team (TOML file or HTTP body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Globally unique name, `[a-z0-9_.]`, at most 128 bytes.
    pub name: String,
    /// Version of the definition; an incompatible change needs a new one. Starts at 1.
    #[serde(default = "first_version")]
    pub version: u32,
    /// Entity type the feature describes (`user`, `product`, `user_product`...).
    pub entity_type: String,
    /// Feature group (view) that loads it: the unit of batch loading and versioning.
    pub group: String,
    /// Owning team or person.
    pub owner: String,
    /// Value type.
    pub dtype: DType,
    /// Reference to the code that computes it (repository path, job name...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_ref: Option<String>,
    /// How fresh values are expected to be.
    #[serde(default, with = "crate::types::duration_text")]
    pub freshness_slo: Option<Duration>,
    /// Max age: values whose event time is older are served as `expired`.
    #[serde(default, with = "crate::types::duration_text")]
    pub ttl: Option<Duration>,
    /// Maximum age of stored values: a value whose event time is older is never served
    /// (`expired`) and is deleted from the stream and history families by their
    /// compaction filters, and from the serving log by its pruning (README, "Retention").
    /// Where the TTL hides, retention deletes. A compatible change.
    #[serde(
        default,
        with = "crate::types::duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Duration>,
    /// Sensitivity class.
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// Free text for discovery.
    #[serde(default)]
    pub description: String,
    /// Free-form tags for discovery.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Teams besides `owner` that may use this feature in a feature service
    /// (directly or through an on-demand feature); absent: every team. Checked when a
    /// service is registered: services registered before a restriction keep serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_teams: Option<Vec<String>>,
    /// A windowed aggregate computed from pushed events (see
    /// [`super::aggregate`]); such a feature is never pushed or loaded itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<super::aggregate::AggregateSpec>,
    /// Value served (status `defaulted`) by ranking reads when none is usable (not
    /// found, null or expired); a JSON/TOML literal of the feature's dtype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Expectations the load's validation checks (see [`crate::validate::rules`]);
    /// absent fields take the defaults. A compatible change.
    #[serde(
        default,
        skip_serializing_if = "crate::validate::ValidationSpec::is_default"
    )]
    pub validation: crate::validate::ValidationSpec,
}

fn first_version() -> u32 {
    1
}

/// A registered feature: the spec plus what the registry assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDefinition {
    /// Dense id used in stored keys.
    pub id: FeatureId,
    /// When this (name, version) was first registered.
    pub registered_at_ms: TimestampMs,
    /// When the spec was last changed (compatible changes only).
    pub updated_at_ms: TimestampMs,
    /// The definition.
    #[serde(flatten)]
    pub spec: FeatureSpec,
}

impl FeatureDefinition {
    /// `name@version`, the form used in messages and explicit requests.
    pub fn qualified_name(&self) -> String {
        format!("{}@{}", self.spec.name, self.spec.version)
    }
}

/// Checks names of features, groups and entity types: `[a-z0-9_.]`, starting with a
/// letter, at most 128 bytes.
pub fn validate_identifier(kind: &str, text: &str) -> Result<(), String> {
    let ok_start = text.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let ok_chars = text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if !ok_start || !ok_chars || text.len() > 128 {
        return Err(format!(
            "{kind} `{text}` is invalid: use lowercase letters, digits, `_` and `.`, \
             starting with a letter, at most 128 bytes"
        ));
    }
    Ok(())
}

impl FeatureSpec {
    /// The retention in ms, when set.
    pub fn retention_ms(&self) -> Option<i64> {
        self.retention
            .map(|r| i64::try_from(r.as_millis()).unwrap_or(i64::MAX))
    }

    /// True when a service owned by `team` may use this feature (its reuse rule).
    pub fn reusable_by(&self, team: &str) -> bool {
        team == self.owner
            || self
                .reuse_teams
                .as_ref()
                .is_none_or(|teams| teams.iter().any(|t| t == team))
    }

    /// Checks the spec on its own (names, version), before comparing with the registry.
    pub fn validate(&self) -> Result<(), String> {
        validate_identifier("feature name", &self.name)?;
        validate_identifier("entity type", &self.entity_type)?;
        validate_identifier("group", &self.group)?;
        if self.version == 0 {
            return Err(format!("feature `{}`: versions start at 1", self.name));
        }
        if self.owner.trim().is_empty() {
            return Err(format!("feature `{}`: owner must not be empty", self.name));
        }
        if let Some(aggregate) = &self.aggregate {
            aggregate.validate(self)?;
        }
        if self.retention.is_some_and(|r| r.as_millis() == 0) {
            return Err(format!(
                "feature `{}`: retention must be positive",
                self.name
            ));
        }
        self.validation
            .validate()
            .map_err(|e| format!("feature `{}`: {e}", self.name))?;
        Ok(())
    }

    /// Why replacing `self` (registered) with `next` under the same (name, version) is
    /// refused, or `None` if the change is compatible (owner, docs, SLOs, tags...).
    pub fn incompatibility(&self, next: &FeatureSpec) -> Option<String> {
        let mut changes = Vec::new();
        if self.dtype != next.dtype {
            changes.push(format!("dtype {} -> {}", self.dtype, next.dtype));
        }
        if self.entity_type != next.entity_type {
            changes.push(format!(
                "entity type {} -> {}",
                self.entity_type, next.entity_type
            ));
        }
        if self.group != next.group {
            changes.push(format!("group {} -> {}", self.group, next.group));
        }
        if self.aggregate != next.aggregate {
            changes.push("aggregate definition".to_owned());
        }
        if changes.is_empty() {
            return None;
        }
        Some(format!(
            "incompatible change to feature `{}@{}` ({}): register it as version {} instead",
            self.name,
            self.version,
            changes.join(", "),
            self.version + 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FeatureSpec {
        FeatureSpec {
            name: "product_ctr_7d".into(),
            version: 1,
            entity_type: "product".into(),
            group: "product_stats".into(),
            owner: "ranking".into(),
            dtype: DType::Float32,
            transform_ref: None,
            freshness_slo: None,
            ttl: Some(Duration::from_secs(86_400)),
            retention: None,
            sensitivity: Sensitivity::Internal,
            description: String::new(),
            tags: vec![],
            reuse_teams: None,
            aggregate: None,
            default: None,
            validation: Default::default(),
        }
    }

    #[test]
    fn dtype_and_entity_changes_are_incompatible() {
        let old = spec();
        let mut next = spec();
        next.owner = "search".into();
        assert_eq!(old.incompatibility(&next), None);
        next.dtype = DType::Float32Vector { dim: 4 };
        let msg = old.incompatibility(&next).expect("refused");
        assert!(msg.contains("version 2"), "{msg}");
        let mut next = spec();
        next.entity_type = "user".into();
        assert!(old.incompatibility(&next).is_some());
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(validate_identifier("feature", "ctr_7d.v").is_ok());
        assert!(validate_identifier("feature", "7d").is_err());
        assert!(validate_identifier("feature", "Ctr").is_err());
        assert!(validate_identifier("feature", "a b").is_err());
    }
}
