//! Validation rules: pure functions of a version's statistics, its predecessors'
//! statistics and the feature's declared expectations. No I/O, no clock.
//!
//! Each rule gives a [`Finding`] with its figure and threshold, at one [`Level`]; a
//! version with any `fail` finding is not activated by its load (see
//! [`super::gate`]). The rules, with their defaults (each can be set per feature in the
//! registry, under `validation`, see [`ValidationSpec`]):
//!
//! | rule | figure | default |
//! |---|---|---|
//! | `null_rate` | share of entities without a non-null value | ceiling off; fail on a rise of more than 0.2 over the previous version |
//! | `range` | min and max | off (declare `min`, `max`) |
//! | `row_count` | values (per feature) or entities (per group) against the previous version | fail above 2x or below half |
//! | `mean_z`, `std_z` | z-score of the mean (std) against the last `history` versions' means (stds); the spread is floored at the figure's sampling error | fail above 3; needs 2 earlier versions |
//! | `psi` | population stability index against the previous version, over its deciles | warn at 0.1, fail at 0.25 |
//!
//! A rule that cannot be evaluated (no previous version, a non-numeric feature, fewer
//! than [`MIN_COMPARED`] entities or values on either side of a comparison) gives no
//! finding; the report counts what was checked.

use serde::{Deserialize, Serialize};

use super::stats::{FeatureStats, VersionStats};

/// Expectations of one feature, as declared in the registry (`[feature.validation]`).
/// Every field is optional; an absent one takes the default of [`Rules`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSpec {
    /// False turns every rule of this feature off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Ceiling of the null rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_null_rate: Option<f64>,
    /// Largest rise of the null rate over the previous version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_null_rate_increase: Option<f64>,
    /// Smallest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Largest ratio of value counts against the previous version (also below
    /// `1/ratio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_row_ratio: Option<f64>,
    /// z-score above which the mean or standard deviation fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_z: Option<f64>,
    /// Earlier versions the z-scores look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<usize>,
    /// PSI that warns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_warn: Option<f64>,
    /// PSI that fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_fail: Option<f64>,
}

impl ValidationSpec {
    /// True when nothing is declared (the spec is then not written out).
    pub fn is_default(&self) -> bool {
        *self == ValidationSpec::default()
    }

    /// Checks the declared figures: thresholds positive and finite, `min <= max`.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_null_rate_increase", self.max_null_rate_increase),
            ("max_row_ratio", self.max_row_ratio),
            ("max_z", self.max_z),
            ("psi_warn", self.psi_warn),
            ("psi_fail", self.psi_fail),
        ];
        for (name, value) in positive {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return Err(format!(
                    "validation.{name} must be a positive number, not {v}"
                ));
            }
        }
        if let Some(v) = self.max_null_rate
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!(
                "validation.max_null_rate must be within [0, 1], not {v}"
            ));
        }
        if let Some(r) = self.max_row_ratio
            && r < 1.0
        {
            return Err(format!(
                "validation.max_row_ratio must be at least 1, not {r}"
            ));
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max)
            && lo > hi
        {
            return Err(format!("validation.min {lo} is above validation.max {hi}"));
        }
        if let Some(h) = self.history
            && !(1..=MAX_HISTORY).contains(&h)
        {
            return Err(format!(
                "validation.history must be within 1..={MAX_HISTORY}, not {h}"
            ));
        }
        Ok(())
    }
}

/// The rules of one feature, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Whether any rule runs.
    pub enabled: bool,
    /// Null-rate ceiling (1.0: off).
    pub max_null_rate: f64,
    /// Largest null-rate rise over the previous version.
    pub max_null_rate_increase: f64,
    /// Value range.
    pub min: Option<f64>,
    /// Value range.
    pub max: Option<f64>,
    /// Row-count ratio against the previous version.
    pub max_row_ratio: f64,
    /// z-score threshold.
    pub max_z: f64,
    /// Versions of history for the z-scores.
    pub history: usize,
    /// PSI thresholds.
    pub psi_warn: f64,
    /// PSI thresholds.
    pub psi_fail: f64,
}

/// Defaults (see the module doc).
pub const DEFAULT_RULES: Rules = Rules {
    enabled: true,
    max_null_rate: 1.0,
    max_null_rate_increase: 0.2,
    min: None,
    max: None,
    max_row_ratio: 2.0,
    max_z: 3.0,
    history: 5,
    psi_warn: 0.1,
    psi_fail: 0.25,
};

/// Most earlier versions the rules look at (`history` is capped to it).
pub const MAX_HISTORY: usize = 10;
/// Fewest earlier versions the z-score rules need (a standard deviation of one figure
/// is undefined).
pub const MIN_Z_HISTORY: usize = 2;
/// Fewest entities (values, for a feature's figures) on both sides for a rule that
/// compares a version with earlier ones: below it, a comparison says more about the
/// sample than about the data, and the rule is not evaluated.
pub const MIN_COMPARED: u64 = 100;
/// Share given to an empty PSI bin, so that its logarithm stays finite.
pub const PSI_EMPTY_BIN: f64 = 1e-4;

impl Rules {
    /// `spec` over the defaults.
    pub fn resolve(spec: &ValidationSpec) -> Rules {
        let d = DEFAULT_RULES;
        Rules {
            enabled: spec.enabled.unwrap_or(d.enabled),
            max_null_rate: spec.max_null_rate.unwrap_or(d.max_null_rate),
            max_null_rate_increase: spec
                .max_null_rate_increase
                .unwrap_or(d.max_null_rate_increase),
            min: spec.min,
            max: spec.max,
            max_row_ratio: spec.max_row_ratio.unwrap_or(d.max_row_ratio),
            max_z: spec.max_z.unwrap_or(d.max_z),
            history: spec.history.unwrap_or(d.history).clamp(1, MAX_HISTORY),
            psi_warn: spec.psi_warn.unwrap_or(d.psi_warn),
            psi_fail: spec.psi_fail.unwrap_or(d.psi_fail),
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Within bounds.
    Pass,
    /// Reported, does not block.
    Warn,
    /// Blocks activation.
    Fail,
}

/// One rule's verdict on one feature (or `*`, the group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule name (see the module doc).
    pub rule: String,
    /// Feature name, or `*` for the group's entity count.
    pub feature: String,
    /// Verdict.
    pub level: Level,
    /// The figure measured.
    pub value: f64,
    /// The threshold it was held against (the failing one where it failed).
    pub threshold: f64,
    /// The figure and threshold in words.
    pub message: String,
}

fn finding(
    rule: &str,
    feature: &str,
    level: Level,
    value: f64,
    threshold: f64,
    message: String,
) -> Finding {
    Finding {
        rule: rule.to_owned(),
        feature: feature.to_owned(),
        level,
        value,
        threshold,
        message,
    }
}

/// The null-rate rules: ceiling and rise over `previous`.
pub fn null_rate(
    rules: &Rules,
    current: &FeatureStats,
    previous: Option<&FeatureStats>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let rate = current.null_rate;
    if rules.max_null_rate < 1.0 {
        let level = if rate > rules.max_null_rate {
            Level::Fail
        } else {
            Level::Pass
        };
        out.push(finding(
            "null_rate",
            &current.name,
            level,
            rate,
            rules.max_null_rate,
            format!("null rate {rate:.4}, ceiling {:.4}", rules.max_null_rate),
        ));
    }
    if let Some(prev) = previous.filter(|p| {
        p.values + p.missing >= MIN_COMPARED && current.values + current.missing >= MIN_COMPARED
    }) {
        let rise = rate - prev.null_rate;
        let level = if rise > rules.max_null_rate_increase {
            Level::Fail
        } else {
            Level::Pass
        };
        out.push(finding(
            "null_rate_increase",
            &current.name,
            level,
            rise,
            rules.max_null_rate_increase,
            format!(
                "null rate {rate:.4} against {:.4} in the previous version (rise {rise:+.4}, at most {:.4})",
                prev.null_rate, rules.max_null_rate_increase
            ),
        ));
    }
    out
}

/// The range rule: min and max within the declared bounds.
pub fn range(rules: &Rules, current: &FeatureStats) -> Vec<Finding> {
    let mut out = Vec::new();
    if let (Some(lo), Some(min)) = (rules.min, current.min) {
        let level = if min < lo { Level::Fail } else { Level::Pass };
        out.push(finding(
            "range_min",
            &current.name,
            level,
            min,
            lo,
            format!("min {min} against the declared min {lo}"),
        ));
    }
    if let (Some(hi), Some(max)) = (rules.max, current.max) {
        let level = if max > hi { Level::Fail } else { Level::Pass };
        out.push(finding(
            "range_max",
            &current.name,
            level,
            max,
            hi,
            format!("max {max} against the declared max {hi}"),
        ));
    }
    out
}

/// The row-count rule on one count: `current` against `previous`, within `ratio` either
/// way. `what` names the count in the message.
pub fn row_count(
    feature: &str,
    what: &str,
    ratio: f64,
    current: u64,
    previous: u64,
) -> Option<Finding> {
    if previous < MIN_COMPARED {
        return None;
    }
    let change = current as f64 / previous as f64;
    let (level, threshold) = if change > ratio {
        (Level::Fail, ratio)
    } else if change < 1.0 / ratio {
        (Level::Fail, 1.0 / ratio)
    } else {
        (Level::Pass, ratio)
    };
    Some(finding(
        "row_count",
        feature,
        level,
        change,
        threshold,
        format!(
            "{current} {what} against {previous} in the previous version ({change:.3}x, allowed {:.3}x to {ratio:.3}x)",
            1.0 / ratio
        ),
    ))
}

/// Mean and sample standard deviation of `xs` (at least two).
fn mean_std(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, var.sqrt()))
}

/// The z-score of `x` against `history`. The spread is the history's sample standard
/// deviation, floored at `sampling` (the figure's own sampling error, so that a short
/// history of near-identical figures does not turn noise into a failure) and at a
/// millionth of the history's magnitude (identical history never divides by zero).
fn z_score(x: f64, history: &[f64], sampling: f64) -> Option<(f64, f64, f64)> {
    let (mean, std) = mean_std(history)?;
    let floor = (1e-6 * mean.abs()).max(sampling).max(1e-12);
    let spread = std.max(floor);
    Some(((x - mean).abs() / spread, mean, spread))
}

/// The z-score rules: the mean and the standard deviation against those of `history`
/// (the newest earlier versions, at most `rules.history`, any order).
pub fn z_scores(rules: &Rules, current: &FeatureStats, history: &[&FeatureStats]) -> Vec<Finding> {
    let mut out = Vec::new();
    if history.len() < MIN_Z_HISTORY || current.present() < MIN_COMPARED {
        return out;
    }
    let Some(prev) = history.first() else {
        return out;
    };
    // The standard errors of a difference of two sample means (stds) of sizes n1, n2:
    // sqrt(s1²/n1 + s2²/n2) (for the std, with 2n in place of n).
    let (n1, n2) = (
        prev.present().max(1) as f64,
        current.present().max(1) as f64,
    );
    let (s1, s2) = (prev.std.unwrap_or(0.0), current.std.unwrap_or(0.0));
    let mean_error = (s1 * s1 / n1 + s2 * s2 / n2).sqrt();
    let std_error = (s1 * s1 / (2.0 * n1) + s2 * s2 / (2.0 * n2)).sqrt();
    type Figure = fn(&FeatureStats) -> Option<f64>;
    let figures: [(&str, &str, Figure, f64); 2] = [
        ("mean_z", "mean", |s| s.mean, mean_error),
        ("std_z", "std", |s| s.std, std_error),
    ];
    for (rule, word, figure, sampling) in figures {
        let Some(x) = figure(current) else { continue };
        let past: Vec<f64> = history.iter().filter_map(|s| figure(s)).collect();
        let Some((z, mean, std)) = z_score(x, &past, sampling) else {
            continue;
        };
        let level = if z > rules.max_z {
            Level::Fail
        } else {
            Level::Pass
        };
        out.push(finding(
            rule,
            &current.name,
            level,
            z,
            rules.max_z,
            format!(
                "{word} {x:.6} against {mean:.6} ± {std:.6} over the last {} versions: z = {z:.2} (at most {:.2})",
                past.len(),
                rules.max_z
            ),
        ));
    }
    out
}

/// The population stability index of the current distribution against `previous`'s,
/// over the bins its stored quantiles cut (deciles where values do not repeat).
/// `current_cdf(x)` is the current share of values `<= x`. `None` without quantiles.
pub fn psi_value(previous: &FeatureStats, current_cdf: &dyn Fn(f64) -> Option<f64>) -> Option<f64> {
    // Cut points: the previous version's quantiles at 0.1, .., 0.9, deduplicated.
    let mut cuts: Vec<(f64, f64)> = Vec::new();
    for q in &previous.quantiles {
        let decile = (q.rank * 10.0).round();
        if (q.rank * 10.0 - decile).abs() > 1e-9 || !(1.0..=9.0).contains(&decile) {
            continue;
        }
        if cuts.last().is_some_and(|(v, _)| *v >= q.value) {
            continue;
        }
        cuts.push((q.value, q.cdf));
    }
    if cuts.is_empty() {
        return None;
    }
    let mut psi = 0.0;
    let mut prev_expected = 0.0;
    let mut prev_actual = 0.0;
    for (value, expected_cdf) in cuts
        .iter()
        .copied()
        .chain(std::iter::once((f64::INFINITY, 1.0)))
    {
        let actual_cdf = if value.is_infinite() {
            1.0
        } else {
            current_cdf(value)?
        };
        let e = (expected_cdf - prev_expected).max(PSI_EMPTY_BIN);
        let a = (actual_cdf - prev_actual).max(PSI_EMPTY_BIN);
        psi += (a - e) * (a / e).ln();
        prev_expected = expected_cdf;
        prev_actual = actual_cdf;
    }
    Some(psi)
}

/// The PSI rule: warn and fail thresholds against the previous version.
pub fn psi(
    rules: &Rules,
    current: &FeatureStats,
    previous: &FeatureStats,
    current_cdf: &dyn Fn(f64) -> Option<f64>,
) -> Option<Finding> {
    if current.present() < MIN_COMPARED || previous.present() < MIN_COMPARED {
        return None;
    }
    let value = psi_value(previous, current_cdf)?;
    let (level, threshold) = if value >= rules.psi_fail {
        (Level::Fail, rules.psi_fail)
    } else if value >= rules.psi_warn {
        (Level::Warn, rules.psi_warn)
    } else {
        (Level::Pass, rules.psi_warn)
    };
    Some(finding(
        "psi",
        &current.name,
        level,
        value,
        threshold,
        format!(
            "PSI {value:.4} against the previous version (warn {:.2}, fail {:.2})",
            rules.psi_warn, rules.psi_fail
        ),
    ))
}

/// Every rule of one feature. `history` is newest first; its first entry is the
/// previous version.
pub fn feature_findings(
    rules: &Rules,
    current: &FeatureStats,
    history: &[&FeatureStats],
    current_cdf: &dyn Fn(f64) -> Option<f64>,
) -> Vec<Finding> {
    if !rules.enabled {
        return Vec::new();
    }
    let previous = history.first().copied();
    let mut out = null_rate(rules, current, previous);
    out.extend(range(rules, current));
    if let Some(prev) = previous {
        out.extend(row_count(
            &current.name,
            "values",
            rules.max_row_ratio,
            current.values,
            prev.values,
        ));
        out.extend(psi(rules, current, prev, current_cdf));
    }
    let window = &history[..history.len().min(rules.history)];
    out.extend(z_scores(rules, current, window));
    out
}

/// The group-level rule: the version's entity count against the previous version's,
/// within `ratio`.
pub fn group_findings(
    current: &VersionStats,
    previous: Option<&VersionStats>,
    ratio: f64,
) -> Vec<Finding> {
    previous
        .and_then(|prev| row_count("*", "entities", ratio, current.entities, prev.entities))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::stats::Quantile;

    fn stats(name: &str, values: u64, mean: f64, std: f64, null_rate: f64) -> FeatureStats {
        FeatureStats {
            name: name.to_owned(),
            id: 1,
            values,
            nulls: 0,
            missing: 0,
            null_rate,
            min: Some(mean - 3.0 * std),
            max: Some(mean + 3.0 * std),
            mean: Some(mean),
            std: Some(std),
            distinct: Some(values as f64),
            newest_event_ms: None,
            quantiles: Vec::new(),
        }
    }

    #[test]
    fn declared_specs_are_checked() {
        let bad = ValidationSpec {
            min: Some(2.0),
            max: Some(1.0),
            ..ValidationSpec::default()
        };
        assert!(bad.validate().is_err());
        let bad = ValidationSpec {
            psi_fail: Some(-1.0),
            ..ValidationSpec::default()
        };
        assert!(bad.validate().is_err());
        assert!(ValidationSpec::default().validate().is_ok());
        let rules = Rules::resolve(&ValidationSpec {
            max_z: Some(4.0),
            ..ValidationSpec::default()
        });
        assert_eq!(rules.max_z, 4.0);
        assert_eq!(rules.psi_fail, 0.25);
    }

    #[test]
    fn row_counts_fail_beyond_double_or_half() {
        assert_eq!(
            row_count("x", "values", 2.0, 100, 100).map(|f| f.level),
            Some(Level::Pass)
        );
        assert_eq!(
            row_count("x", "values", 2.0, 201, 100).map(|f| f.level),
            Some(Level::Fail)
        );
        assert_eq!(
            row_count("x", "values", 2.0, 49, 100).map(|f| f.level),
            Some(Level::Fail)
        );
        assert_eq!(
            row_count("x", "values", 2.0, 50, 100).map(|f| f.level),
            Some(Level::Pass)
        );
        assert!(row_count("x", "values", 2.0, 50, 0).is_none());
    }

    #[test]
    fn z_scores_need_history_and_fail_beyond_three_sigma() {
        let rules = DEFAULT_RULES;
        let h1 = stats("x", 100, 10.0, 1.0, 0.0);
        let h2 = stats("x", 100, 10.2, 1.1, 0.0);
        let h3 = stats("x", 100, 9.9, 0.9, 0.0);
        assert!(z_scores(&rules, &h1, &[&h2]).is_empty());
        let good = stats("x", 100, 10.1, 1.0, 0.0);
        let found = z_scores(&rules, &good, &[&h1, &h2, &h3]);
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|f| f.level == Level::Pass), "{found:?}");
        let shifted = stats("x", 100, 12.0, 1.0, 0.0);
        let found = z_scores(&rules, &shifted, &[&h1, &h2, &h3]);
        assert_eq!(found[0].rule, "mean_z");
        assert_eq!(found[0].level, Level::Fail);
        assert_eq!(found[1].level, Level::Pass);
    }

    #[test]
    fn null_rate_rises_and_ceilings_fail() {
        let prev = stats("x", 100, 0.0, 1.0, 0.01);
        let cur = stats("x", 100, 0.0, 1.0, 0.5);
        let found = null_rate(&DEFAULT_RULES, &cur, Some(&prev));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].level, Level::Fail);
        let rules = Rules {
            max_null_rate: 0.1,
            ..DEFAULT_RULES
        };
        let found = null_rate(&rules, &cur, None);
        assert_eq!(found[0].rule, "null_rate");
        assert_eq!(found[0].level, Level::Fail);
        let found = null_rate(&rules, &prev, None);
        assert_eq!(found[0].level, Level::Pass);
    }

    #[test]
    fn psi_is_zero_for_the_same_distribution_and_large_for_a_shift() {
        // Previous: uniform on [0, 10): deciles at 1, 2, .., 9.
        let mut prev = stats("x", 1_000, 5.0, 2.9, 0.0);
        prev.quantiles = (0..=20)
            .map(|i| {
                let rank = i as f64 / 20.0;
                Quantile {
                    rank,
                    value: rank * 10.0,
                    cdf: rank,
                }
            })
            .collect();
        let same = |x: f64| Some((x / 10.0).clamp(0.0, 1.0));
        let psi = psi_value(&prev, &same).expect("psi");
        assert!(psi.abs() < 1e-9, "{psi}");
        // Shifted by 3: uniform on [3, 13).
        let shifted = |x: f64| Some(((x - 3.0) / 10.0).clamp(0.0, 1.0));
        let psi = psi_value(&prev, &shifted).expect("psi");
        assert!(psi > 0.25, "{psi}");
        let cur = stats("x", 1_000, 8.0, 2.9, 0.0);
        let found = super::psi(&DEFAULT_RULES, &cur, &prev, &shifted).expect("finding");
        assert_eq!(found.level, Level::Fail);
    }
}
