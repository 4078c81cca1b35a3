//! The validation gate: the load gate that runs [`super::rules`] on a finished
//! version's statistics against its predecessors', with each feature's declared rules
//! (registry `validation`, defaults otherwise).
//!
//! A version with a failing rule is held: committed `ready`, not activated (see
//! [`GateVerdict::Hold`]). Warnings are reported and do not hold it. Stateless apart
//! from the registry snapshot it was made with; safe from any thread.

use std::sync::Arc;

use super::rules::{self, Level, Rules};
use super::{ValidationReport, VersionStats};
use crate::registry::Registry;
use crate::store::load::{GateVerdict, LoadGate, VersionFacts};

/// Runs the rules; see the module doc.
#[derive(Debug, Clone)]
pub struct ValidationGate {
    registry: Arc<Registry>,
}

impl ValidationGate {
    /// A gate reading the features' declared rules from `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        ValidationGate { registry }
    }

    /// The report of `current` against `history` (newest first). `cdf(feature, x)` is
    /// the current version's share of `feature`'s values `<= x`.
    pub fn report(
        &self,
        current: &VersionStats,
        history: &[VersionStats],
        cdf: &dyn Fn(&str, f64) -> Option<f64>,
    ) -> ValidationReport {
        let rules_of = |id| {
            self.registry
                .by_id(id)
                .map(|d| Rules::resolve(&d.spec.validation))
                .unwrap_or(rules::DEFAULT_RULES)
        };
        // The group's entity count: checked unless every feature turned its rules off,
        // within the most lenient ratio its features declare.
        let group_ratio = current
            .features
            .values()
            .map(|s| rules_of(s.id))
            .filter(|r| r.enabled)
            .map(|r| r.max_row_ratio)
            .reduce(f64::max);
        let mut findings = match group_ratio {
            Some(ratio) => rules::group_findings(current, history.first(), ratio),
            None => Vec::new(),
        };
        for (name, stats) in &current.features {
            let rules = rules_of(stats.id);
            let past: Vec<_> = history
                .iter()
                .filter_map(|v| v.features.get(name))
                .collect();
            let feature_cdf = |x: f64| cdf(name, x);
            findings.extend(rules::feature_findings(&rules, stats, &past, &feature_cdf));
        }
        let checks = findings.len();
        let passed = findings.iter().all(|f| f.level != Level::Fail);
        findings.retain(|f| f.level != Level::Pass);
        findings.sort_by(|a, b| {
            b.level
                .cmp(&a.level)
                .then_with(|| a.feature.cmp(&b.feature))
        });
        ValidationReport {
            passed,
            compared_with: history.iter().map(|v| v.version).collect(),
            checks,
            findings,
            shadow: None,
            forced: None,
        }
    }
}

impl LoadGate for ValidationGate {
    fn name(&self) -> &str {
        "validation"
    }

    fn check(&self, facts: &VersionFacts<'_>) -> GateVerdict {
        let Some(stats) = facts.stats else {
            return GateVerdict::Accept { report: None };
        };
        let report = self.report(stats.current, stats.history, &|f, x| {
            stats.collector.cdf(f, x)
        });
        if report.passed {
            GateVerdict::Accept {
                report: Some(report),
            }
        } else {
            GateVerdict::Hold { report }
        }
    }
}
