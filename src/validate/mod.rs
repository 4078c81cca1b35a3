//! Data validation of batch versions: statistics, rules, and the gate that holds back a
//! version that breaks them.
//!
//! * [`stats`]: per-feature statistics computed from the load's sorted stream (one more
//!   consumer of the build stage, no second pass over the input), stored per version in
//!   `meta` (storage-format.md, "Version statistics").
//! * [`rules`]: pure functions from statistics (and the feature's declared
//!   expectations) to [`Finding`]s.
//! * [`gate`]: the load gate ([`ValidationGate`]) that runs the rules against the
//!   previous versions' statistics and decides: a version with a failing rule is
//!   committed `ready` but **not activated**; its load fails with
//!   [`crate::LoadError::Held`], whose record carries the [`ValidationReport`].
//!   Activating it afterwards needs a forced activation, which the report records
//!   ([`ForcedActivation`]: who, why, when).
//! * [`shadow`]: the new version against the active one on the most-read entities
//!   (share of changed values, mean shift per feature), reported, not gating.
//! * [`freshness`]: per feature with a freshness SLO, the age of its newest value, a
//!   stopped stream or a missed batch load (`GET /v1/health/features`, metrics).
//!
//! It is not: a data-quality suite over the offline data (Deequ, Great Expectations),
//! nor a monitor of served values (the serving log's job). Statistics describe what one
//! load stored.

pub mod freshness;
pub mod gate;
pub mod rules;
pub mod shadow;
pub mod stats;

use serde::{Deserialize, Serialize};

pub use gate::ValidationGate;
pub use rules::{Finding, Level, Rules, ValidationSpec};
pub use stats::{FeatureStats, StatsCollector, VersionStats};

use crate::types::TimestampMs;

/// Who activated a version despite its failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedActivation {
    /// Who asked (free text: a user name, a job).
    pub by: String,
    /// Why.
    pub reason: String,
    /// When, ms since the epoch.
    pub at_ms: TimestampMs,
}

/// The validation of one version: the outcome, the findings that did not pass, and
/// the overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// No finding failed.
    pub passed: bool,
    /// Versions whose statistics the rules compared against, newest first.
    pub compared_with: Vec<u64>,
    /// Rule evaluations run.
    pub checks: usize,
    /// The findings that warned or failed (passing ones are counted in `checks` only,
    /// to keep the record small for groups of thousands of features).
    pub findings: Vec<Finding>,
    /// The shadow check against the active version, when one was active and access
    /// counts exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<shadow::ShadowReport>,
    /// Set when the version was activated despite a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<ForcedActivation>,
}

impl ValidationReport {
    /// The failing findings.
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Fail)
    }

    /// One line per failing finding: `feature: rule: message`.
    pub fn describe_failures(&self) -> String {
        self.failures()
            .map(|f| format!("{}: {}: {}", f.feature, f.rule, f.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
