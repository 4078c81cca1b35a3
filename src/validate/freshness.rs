//! Freshness guardrails: per feature with a `freshness_slo`, the age of its newest value
//! against the SLO, and why it breaches: a stream that stopped (no push within the
//! SLO), a batch group that missed its load (the active version was loaded longer ago
//! than the SLO), or a newest value older than the SLO.
//!
//! [`assess`] is a pure function of the facts; [`gather`] collects them from the
//! store's facade (read-only: the registry, the active versions, their load records and
//! statistics, the stream writer's newest event times). The newest streamed event time
//! is known per group, for pushes since the store was opened; a batch feature's newest
//! value is its active version's `newest_event_ms` statistic.
//!
//! Cost: [`gather`] reads each group's load records and the active version's statistics
//! from `meta` (no data scan); call it per scrape or request, not per read.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::registry::Registry;
use crate::store::{FeatureStore, StoreError};
use crate::types::{FeatureId, TimestampMs};

/// Where a feature's newest value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Pushed values (the feature ever received one).
    Stream,
    /// Batch versions only.
    Batch,
}

/// The freshness of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureFreshness {
    /// `name@version`.
    pub feature: String,
    /// Its group.
    pub group: String,
    /// Stream or batch.
    pub source: Source,
    /// Newest event time known, ms since the epoch.
    pub newest_event_ms: Option<TimestampMs>,
    /// Seconds since then.
    pub age_seconds: Option<f64>,
    /// When the group's active version was loaded (batch).
    pub loaded_at_ms: Option<TimestampMs>,
    /// The SLO, in seconds.
    pub slo_seconds: f64,
    /// Whether it breaches the SLO.
    pub breach: bool,
    /// Why, in words (empty when it does not breach).
    pub reasons: Vec<String>,
}

/// What [`assess`] knows of one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupFacts {
    /// Features that ever received a pushed value.
    pub streamed: BTreeSet<FeatureId>,
    /// Newest event time pushed since open.
    pub stream_newest_ms: Option<TimestampMs>,
    /// When the active version's load started.
    pub loaded_at_ms: Option<TimestampMs>,
    /// Newest event time per feature id in the active version.
    pub batch_newest_ms: BTreeMap<FeatureId, TimestampMs>,
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The freshness of every feature of `registry` that has an SLO, by name.
pub fn assess(
    registry: &Registry,
    groups: &BTreeMap<String, GroupFacts>,
    now_ms: TimestampMs,
) -> Vec<FeatureFreshness> {
    let empty = GroupFacts::default();
    let mut out = Vec::new();
    for group in registry.groups() {
        let facts = groups.get(&group.name).unwrap_or(&empty);
        for def in group.features.iter().filter_map(|id| registry.by_id(*id)) {
            let Some(slo) = def.spec.freshness_slo else {
                continue;
            };
            let slo_ms = i64::try_from(slo.as_millis()).unwrap_or(i64::MAX);
            let streamed = facts.streamed.contains(&def.id);
            let batch = facts.batch_newest_ms.get(&def.id).copied();
            let mut reasons = Vec::new();
            let newest = if streamed {
                let newest = facts.stream_newest_ms.max(batch);
                match facts.stream_newest_ms {
                    Some(t) if now_ms - t > slo_ms => reasons.push(format!(
                        "stream stopped: no push for {:.0} s (SLO {:.0} s)",
                        seconds(now_ms - t),
                        seconds(slo_ms)
                    )),
                    Some(_) => {}
                    None if newest.is_none_or(|t| now_ms - t > slo_ms) => reasons
                        .push("stream stopped: no push since the store was opened".to_owned()),
                    None => {}
                }
                newest
            } else {
                match facts.loaded_at_ms {
                    None => reasons.push("no active version".to_owned()),
                    Some(t) if now_ms - t > slo_ms => reasons.push(format!(
                        "batch load missed: the active version was loaded {:.0} s ago (SLO {:.0} s)",
                        seconds(now_ms - t),
                        seconds(slo_ms)
                    )),
                    Some(_) => {}
                }
                if let Some(t) = batch
                    && now_ms - t > slo_ms
                {
                    reasons.push(format!(
                        "newest value is {:.0} s old (SLO {:.0} s)",
                        seconds(now_ms - t),
                        seconds(slo_ms)
                    ));
                }
                batch
            };
            out.push(FeatureFreshness {
                feature: def.qualified_name(),
                group: group.name.clone(),
                source: if streamed {
                    Source::Stream
                } else {
                    Source::Batch
                },
                newest_event_ms: newest,
                age_seconds: newest.map(|t| seconds(now_ms - t)),
                loaded_at_ms: facts.loaded_at_ms,
                slo_seconds: slo.as_secs_f64(),
                breach: !reasons.is_empty(),
                reasons,
            });
        }
    }
    out
}

/// The facts of every group with a feature that has an SLO, from the store.
pub fn gather(store: &FeatureStore) -> Result<BTreeMap<String, GroupFacts>, StoreError> {
    let registry = store.registry();
    let view = store.view();
    let stream_newest: BTreeMap<String, TimestampMs> =
        store.stream_newest_event_times().into_iter().collect();
    let mut out = BTreeMap::new();
    for group in registry.groups() {
        let has_slo = group
            .features
            .iter()
            .filter_map(|id| registry.by_id(*id))
            .any(|d| d.spec.freshness_slo.is_some());
        if !has_slo {
            continue;
        }
        let mut facts = GroupFacts {
            streamed: view
                .streamed_features(&group.name)
                .cloned()
                .unwrap_or_default(),
            stream_newest_ms: stream_newest.get(&group.name).copied(),
            ..GroupFacts::default()
        };
        if let Some(active) = view.active_versions().get(&group.name).copied() {
            let versions = store.versions(&group.name)?;
            facts.loaded_at_ms = versions
                .versions
                .iter()
                .find(|v| v.version == active)
                .map(|v| v.load.as_ref().map_or(v.created_at_ms, |l| l.started_at_ms));
            if let Ok(stats) = store.version_stats(&group.name, active) {
                facts.batch_newest_ms = stats
                    .features
                    .values()
                    .filter_map(|f| Some((f.id, f.newest_event_ms?)))
                    .collect();
            }
        }
        out.insert(group.name.clone(), facts);
    }
    Ok(out)
}

/// Answer of `GET /v1/health/features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureHealth {
    /// When assessed, ms since the epoch.
    pub now_ms: TimestampMs,
    /// Features with an SLO, assessed.
    pub checked: usize,
    /// Those breaching it.
    pub breaches: Vec<FeatureFreshness>,
}

impl FeatureHealth {
    /// The health answer of `assessed`.
    pub fn of(assessed: Vec<FeatureFreshness>, now_ms: TimestampMs) -> Self {
        let checked = assessed.len();
        FeatureHealth {
            now_ms,
            checked,
            breaches: assessed.into_iter().filter(|f| f.breach).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::file::parse_features_toml;
    use crate::registry::{FeatureDefinition, Registry};

    fn registry() -> Registry {
        let specs = parse_features_toml(
            r#"
            [[feature]]
            name = "clicks_1h"
            entity_type = "user"
            group = "user_stream"
            owner = "t"
            dtype = "int64"
            freshness_slo = "5m"

            [[feature]]
            name = "ctr_30d"
            entity_type = "user"
            group = "user_daily"
            owner = "t"
            dtype = "float64"
            freshness_slo = "26h"

            [[feature]]
            name = "no_slo"
            entity_type = "user"
            group = "user_daily"
            owner = "t"
            dtype = "float64"
            "#,
            "t",
        )
        .expect("specs");
        Registry::from_definitions(specs.into_iter().zip(1u32..).map(|(spec, id)| {
            FeatureDefinition {
                id,
                registered_at_ms: 0,
                updated_at_ms: 0,
                spec,
            }
        }))
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn stopped_streams_and_missed_loads_breach() {
        let registry = registry();
        let now = 100 * HOUR;
        let mut groups = BTreeMap::new();
        groups.insert(
            "user_stream".to_owned(),
            GroupFacts {
                streamed: [1].into(),
                stream_newest_ms: Some(now - 60_000),
                ..GroupFacts::default()
            },
        );
        groups.insert(
            "user_daily".to_owned(),
            GroupFacts {
                loaded_at_ms: Some(now - 10 * HOUR),
                batch_newest_ms: [(2, now - 12 * HOUR)].into(),
                ..GroupFacts::default()
            },
        );
        let fresh = assess(&registry, &groups, now);
        assert_eq!(fresh.len(), 2, "features without an SLO are not assessed");
        assert!(fresh.iter().all(|f| !f.breach), "{fresh:?}");

        // The stream stops for 10 minutes; the nightly load is missed.
        let later = now + 30 * HOUR;
        let fresh = assess(&registry, &groups, later);
        let stream = fresh
            .iter()
            .find(|f| f.feature == "clicks_1h@1")
            .expect("stream");
        assert!(stream.breach);
        assert_eq!(stream.source, Source::Stream);
        assert!(
            stream.reasons[0].starts_with("stream stopped"),
            "{stream:?}"
        );
        let batch = fresh
            .iter()
            .find(|f| f.feature == "ctr_30d@1")
            .expect("batch");
        assert!(batch.breach);
        assert!(
            batch.reasons[0].starts_with("batch load missed"),
            "{batch:?}"
        );
        assert_eq!(FeatureHealth::of(fresh, later).breaches.len(), 2);

        // A group never loaded breaches: no active version.
        let fresh = assess(&registry, &BTreeMap::new(), now);
        let batch = fresh
            .iter()
            .find(|f| f.feature == "ctr_30d@1")
            .expect("batch");
        assert_eq!(batch.reasons, ["no active version"]);
    }
}
