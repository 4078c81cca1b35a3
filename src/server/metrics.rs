//! Prometheus metrics of the HTTP layer (`prometheus-client`, OpenMetrics text format).
//!
//! * `featstore_http_requests_total{method,route,status}`: requests answered. `route` is
//!   the route template (`/v1/groups/{group}/versions`), or `unmatched` for a 404 that
//!   matched no route, so label cardinality stays bounded.
//! * `featstore_http_request_duration_seconds{method,route}`: latency histogram, buckets
//!   from 50 µs to 1 s.
//! * `featstore_features_served_total{status}`: feature readings returned, by status
//!   (`present`, `not_found`, `expired`, `null`, `defaulted`, `not_fetched`).
//! * `featstore_feature_defaults_total{feature}`: values served as the definition's
//!   default, by feature (`name@version`); one series per feature that ever defaulted.
//! * `featstore_group_active_version{group}`: active version per group (0: none),
//!   refreshed from the store on each scrape.
//!
//! Thread-safety contract: counters and histograms are atomics shared by every
//! connection task. The registry and the group gauge sit behind one `parking_lot::Mutex`
//! taken only by scrapes (refresh + encode, short and never across an await), so two
//! concurrent scrapes cannot interleave a clear and an encode of the gauge.

use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::types::FeatureStatus;

/// Upper bounds of the latency buckets, in seconds: 50 µs to 1 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeatureLabels {
    feature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Counters for the four read statuses, resolved once so the read path does no lookup.
#[derive(Debug, Clone)]
struct ServedCounters {
    present: Counter,
    not_found: Counter,
    expired: Counter,
    null: Counter,
    defaulted: Counter,
    not_fetched: Counter,
}

struct Scrape {
    registry: Registry,
    active_versions: Family<GroupLabels, Gauge>,
}

/// The server's metrics. One per server, shared by all connections.
pub struct Metrics {
    // Atomics, updated by every request.
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    served: ServedCounters,
    defaults: Family<FeatureLabels, Counter>,
    // Scrape-only state (see the module docs for why one mutex).
    scrape: Mutex<Scrape>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "featstore_http_requests",
            "HTTP requests answered, by method, route template and status code",
            requests.clone(),
        );
        let latency: LatencyFamily =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "featstore_http_request_duration_seconds",
            "Time from routing a request to having its response, by method and route template",
            latency.clone(),
        );
        let served_family = Family::<StatusLabels, Counter>::default();
        registry.register(
            "featstore_features_served",
            "Feature readings returned by reads, by status",
            served_family.clone(),
        );
        let counter = |status: FeatureStatus| {
            served_family
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .clone()
        };
        let served = ServedCounters {
            present: counter(FeatureStatus::Present),
            not_found: counter(FeatureStatus::NotFound),
            expired: counter(FeatureStatus::Expired),
            null: counter(FeatureStatus::Null),
            defaulted: counter(FeatureStatus::Defaulted),
            not_fetched: counter(FeatureStatus::NotFetched),
        };
        let defaults = Family::<FeatureLabels, Counter>::default();
        registry.register(
            "featstore_feature_defaults",
            "Values served as the definition's default (status defaulted), by feature",
            defaults.clone(),
        );
        let active_versions = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "featstore_group_active_version",
            "Active batch version of each feature group (0: none active)",
            active_versions.clone(),
        );
        Metrics {
            requests,
            latency,
            served,
            defaults,
            scrape: Mutex::new(Scrape {
                registry,
                active_versions,
            }),
        }
    }

    /// Records one answered request.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { method, route })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts the readings of one read response by status.
    pub fn observe_features<'a>(&self, statuses: impl IntoIterator<Item = &'a FeatureStatus>) {
        let mut counts = [0u64; 6];
        for status in statuses {
            let slot = match status {
                FeatureStatus::Present => 0,
                FeatureStatus::NotFound => 1,
                FeatureStatus::Expired => 2,
                FeatureStatus::Null => 3,
                FeatureStatus::Defaulted => 4,
                FeatureStatus::NotFetched => 5,
            };
            counts[slot] += 1;
        }
        self.observe_status_counts(&counts);
    }

    /// Adds per-status counts, indexed present, not_found, expired, null, defaulted,
    /// not_fetched (the order of [`STATUS_ORDER`]).
    pub fn observe_status_counts(&self, counts: &[u64; 6]) {
        let served = &self.served;
        for (counter, &n) in [
            &served.present,
            &served.not_found,
            &served.expired,
            &served.null,
            &served.defaulted,
            &served.not_fetched,
        ]
        .into_iter()
        .zip(counts)
        {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }

    /// Adds `count` defaulted values of `feature` (`name@version`).
    pub fn observe_defaults(&self, feature: &str, count: u64) {
        if count > 0 {
            self.defaults
                .get_or_create(&FeatureLabels {
                    feature: feature.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// Replaces the active-version gauges with `groups` (name, entity type, active
    /// version) and encodes every metric in the OpenMetrics text format.
    pub fn render(
        &self,
        groups: &[(String, String, Option<u64>)],
    ) -> Result<String, std::fmt::Error> {
        let scrape = self.scrape.lock();
        scrape.active_versions.clear();
        for (group, _, active) in groups {
            let version = active.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
            scrape
                .active_versions
                .get_or_create(&GroupLabels {
                    group: group.clone(),
                })
                .set(version);
        }
        let mut out = String::with_capacity(8 * 1024);
        encode(&mut out, &scrape.registry)?;
        Ok(out)
    }
}

/// The statuses in the order [`Metrics::observe_status_counts`] takes their counts.
pub const STATUS_ORDER: [FeatureStatus; 6] = [
    FeatureStatus::Present,
    FeatureStatus::NotFound,
    FeatureStatus::Expired,
    FeatureStatus::Null,
    FeatureStatus::Defaulted,
    FeatureStatus::NotFetched,
];

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_metric() {
        let metrics = Metrics::new();
        metrics.observe_request(
            "GET",
            "/v1/features/{entity_type}/{entity_id}",
            200,
            Duration::from_micros(120),
        );
        metrics.observe_features(&[
            FeatureStatus::Present,
            FeatureStatus::Present,
            FeatureStatus::NotFound,
        ]);
        let text = metrics
            .render(&[
                ("product_daily".into(), "product".into(), Some(3)),
                ("user_daily".into(), "user".into(), None),
            ])
            .expect("encodes");
        for needle in [
            r#"featstore_http_requests_total{method="GET",route="/v1/features/{entity_type}/{entity_id}",status="200"} 1"#,
            r#"featstore_http_request_duration_seconds_bucket{le="0.00025",method="GET",route="/v1/features/{entity_type}/{entity_id}"} 1"#,
            r#"featstore_features_served_total{status="present"} 2"#,
            r#"featstore_features_served_total{status="not_found"} 1"#,
            r#"featstore_features_served_total{status="expired"} 0"#,
            r#"featstore_group_active_version{group="product_daily"} 3"#,
            r#"featstore_group_active_version{group="user_daily"} 0"#,
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn groups_gone_from_the_store_leave_the_gauge() {
        let metrics = Metrics::new();
        let first = metrics
            .render(&[("old".into(), "product".into(), Some(1))])
            .expect("encodes");
        assert!(first.contains(r#"group="old""#));
        let second = metrics.render(&[]).expect("encodes");
        assert!(!second.contains(r#"group="old""#), "{second}");
    }
}
