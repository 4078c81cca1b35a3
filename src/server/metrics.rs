//! Prometheus metrics of the HTTP layer (`prometheus-client`, OpenMetrics text format).
//!
//! * `featstore_http_requests_total{method,route,status}`: requests answered. `route` is
//!   the route template (`/v1/groups/{group}/versions`), or `unmatched` for a 404 that
//!   matched no route, so label cardinality stays bounded.
//! * `featstore_http_request_duration_seconds{method,route,status}`: latency histogram,
//!   buckets from 50 µs to 1 s.
//! * `featstore_features_served_total{status}`: values live reads returned, by status
//!   (`present`, `not_found`, `expired`, `null`, `stale`, `defaulted`, `not_fetched`):
//!   the sum of the per-feature series below, read from the store at scrape time.
//! * `featstore_reads_total{kind}` and `featstore_read_duration_seconds{kind}`: reads
//!   answered by the engine (`kind`: `entity` or `ranking`) and the engine's time per
//!   read, whoever called it (HTTP or an embedding host, through the store's observer
//!   hooks; see `store::observe`).
//! * `featstore_pushes_total{result}`: pushes by result (`ok`, `rejected`: an event
//!   failed validation, `refused`: the writer could not take it).
//! * `featstore_loads_total{group,result}`: batch loads by group and result (`ok`,
//!   `held`: loaded but not activated, its validation failed, `failed`);
//!   `featstore_version_activations_total{group,cause}`: versions made active, by cause
//!   (`load`, `activate`, `rollback`).
//! * `featstore_load_duration_seconds{group}`: time per batch load, validation included
//!   (0.1 s to 1 h buckets).
//! * `featstore_validation_findings_total{group,rule,level}`: validation rules that
//!   warned or failed on loaded versions (`level`: `warn`, `fail`); at most groups x 8
//!   rules x 2 series, whatever the number of features (the feature is in the load
//!   record's report, not in a label).
//! * `featstore_feature_age_seconds{feature}` and
//!   `featstore_feature_freshness_breach{feature}` (1 breaching, 0 not): per feature
//!   with a `freshness_slo` only, the age of its newest value and whether it breaches
//!   (`crate::validate::freshness`), refreshed on each scrape; at 10,000 features with
//!   SLOs that is 20,000 series, the one per-feature cost chosen here, because a
//!   freshness alert must name its feature.
//! * `featstore_feature_values_served_total{feature,status}`: values live reads
//!   served, by feature (`name@version`, on-demand features included) and status, from
//!   the store's tallies ([`render_served`], `crate::query::tally`); one series per
//!   feature and status that occurred, so the text grows with what is read. A feature's
//!   default rate is the rate of its `defaulted` series over the rate of all its
//!   series; its null rate likewise with `null`. As-of reads are not counted.
//! * `featstore_feature_defaults_total{feature}`: values served as the definition's
//!   default, by feature (`name@version`); one series per feature that ever defaulted.
//! * `featstore_group_active_version{group}`: active version per group (0: none),
//!   refreshed from the store on each scrape;
//!   `featstore_group_active_version_age_seconds{group}`: the active version's age,
//!   from when its load began (a nightly group whose age passes a day missed a load).
//! * `featstore_stream_lag_seconds{group}`: per pushed value that became the latest
//!   value, the time from its event time to when it was durable and readable.
//! * `featstore_stream_newest_age_seconds{group}`: age, at scrape time, of the newest
//!   event time pushed to the group since the server started.
//! * `featstore_memory_bytes{pool}`: what each memory pool of the engine holds at scrape
//!   time (`block_cache`, `block_cache_pinned`, `memtables`, `memtables_unflushed`,
//!   `write_buffers`, `table_readers`, `hot_segments_mapped`), from RocksDB's own
//!   accounting; see `store::memory` for what bounds each.
//! * `featstore_memory_budget_bytes{pool}`: the configured budgets (`block_cache`,
//!   `write_buffers`).
//! * `featstore_batch_versions`: batch versions kept (active and rollback targets).
//! * `process_resident_memory_bytes`: the process's resident set size.
//! * `featstore_rocksdb_block_cache_hits_total`, `_block_cache_misses_total`: block
//!   cache lookups (RocksDB's tickers; hit rate = hits / (hits + misses));
//!   `featstore_rocksdb_pending_compaction_bytes`: what compaction must still rewrite,
//!   all column families together (`rocksdb.estimate-pending-compaction-bytes`).
//! * `featstore_hot_segment_lookups_total`, `featstore_hot_segment_hits_total`: entity
//!   lookups in active batch versions, and those the mapped hot segment answered (hit
//!   rate = hits / lookups; the rest went to RocksDB).
//! * `featstore_stream_writer_healthy`: 1 while the stream writer accepts pushes, 0
//!   while it cannot write after a failed write or sync (it retries by itself).
//! * `featstore_stream_write_failures_total`: failed stream writes and WAL syncs since
//!   the store was opened; `featstore_stream_writer_recoveries_total`: times the writer
//!   recovered from them. All three refreshed from the store on each scrape.
//! * `featstore_http_refused_total{reason}`: requests refused without being served, by
//!   `Refusal` (`queue_time`, `concurrency`, `deadline`, `memory`, `body_timeout`,
//!   `body_too_large`, `connection_limit`); each is also in the requests counter with
//!   its status.
//! * `featstore_http_connections_refused_total`: connections closed at accept, beyond
//!   the connection cap and the health reserve.
//! * `featstore_http_queue_seconds`: per request, the time from its arrival (its
//!   connection being woken) to its dispatch, refused requests included.
//! * Gauges, at scrape time: `featstore_http_open_connections`,
//!   `featstore_http_max_connections`, `featstore_http_requests_in_flight` (in their
//!   work phase), `featstore_http_request_memory_reserved_bytes` (of
//!   `featstore_http_request_memory_limit_bytes`) and
//!   `featstore_http_request_body_bytes_in_flight` (bodies received and held),
//!   `featstore_http_connections_waiting` (connection tasks woken and not yet run: the
//!   runtime's queue that queueing-time shedding watches) and
//!   `featstore_http_refusal_cost_seconds` (the running estimate of what refusing one
//!   request costs, which decides whether refusing can help; see `admission`).
//!
//! The feature, read, push, load, activation and stream-lag series are domain metrics:
//! they count what the engine did, for every caller, not what HTTP carried. Values
//! served are counted by the engine itself (`crate::query::tally`) and read at scrape
//! time; the others come from [`Metrics`] being an [`Observer`] of the store,
//! registered by the server when it starts. The rest are HTTP metrics, recorded by the
//! server itself.
//!
//! Thread-safety contract: counters and histograms are atomics shared by every
//! connection task. The registry and the group gauge sit behind one `parking_lot::Mutex`
//! taken only by scrapes (refresh + encode, short and never across an await), so two
//! concurrent scrapes cannot interleave a clear and an encode of the gauge.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::refusal::Refusal;
use crate::store::observe::{
    ActivationEvent, LoadEvent, Observer, PushReport, ReadAnswer, ReadEvent, StreamCommitEvent,
};
use crate::store::{MemoryUsage, WriterHealth};
use crate::types::TimestampMs;

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
struct ReasonLabels {
    reason: &'static str,
}

/// Upper bounds of the queueing-time buckets, in seconds: 10 µs to 1 s.
const QUEUE_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// The server's load at scrape time (see the gauges in the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLoad {
    /// Connection tasks woken and waiting for a worker thread.
    pub connections_waiting: usize,
    /// The estimated cost of refusing one request.
    pub refusal_cost: Duration,
    /// Connections open (normal and health-only).
    pub open_connections: usize,
    /// The cap of normal connections.
    pub max_connections: usize,
    /// Requests in their work phase.
    pub requests_in_flight: usize,
    /// Request memory reserved.
    pub memory_reserved_bytes: usize,
    /// The request memory budget.
    pub memory_limit_bytes: usize,
    /// Body bytes received and held.
    pub body_bytes_in_flight: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The `feature` label (`name@version`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeatureLabels {
    feature: String,
}

/// The `group` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GroupLabels {
    group: String,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Per-group histogram of push-to-readable lag; cloning shares the same counters.
pub type LagFamily = Family<GroupLabels, Histogram, fn() -> Histogram>;

/// Upper bounds of the stream lag buckets, in seconds: 1 ms to 1 h.
const LAG_BUCKETS: [f64; 18] = [
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

fn lag_histogram() -> Histogram {
    Histogram::new(LAG_BUCKETS)
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The `kind` label of the read series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The `result` label of the push series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The labels of the load series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoadLabels {
    group: String,
    result: &'static str,
}

/// The labels of the validation findings series: bounded by groups x rules x 2.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FindingLabels {
    group: String,
    rule: String,
    level: &'static str,
}

/// Upper bounds of the load duration buckets, in seconds: 0.1 s to 1 h.
const LOAD_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

fn load_histogram() -> Histogram {
    Histogram::new(LOAD_BUCKETS)
}

/// The labels of the activation series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActivationLabels {
    group: String,
    cause: &'static str,
}

/// Read counters and latency, resolved once per kind.
#[derive(Debug, Clone)]
struct ReadSeries {
    count: Counter,
    seconds: Histogram,
}

/// The `pool` label of the memory gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

struct Scrape {
    registry: Registry,
    active_versions: Family<GroupLabels, Gauge>,
    version_age: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    newest_age: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    feature_age: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    feature_breach: Family<FeatureLabels, Gauge>,
    memory: Family<PoolLabels, Gauge>,
    memory_budget: Family<PoolLabels, Gauge>,
    batch_versions: Gauge,
    resident: Gauge,
    engine: EngineSeries,
    writer_healthy: Gauge,
    write_failures: Counter,
    writer_recoveries: Counter,
    load: LoadGauges,
}

/// The engine's own figures, read at scrape time (counters follow the store's totals).
#[derive(Default)]
struct EngineSeries {
    block_cache_hits: Counter,
    block_cache_misses: Counter,
    pending_compaction: Gauge,
    segment_lookups: Counter,
    segment_hits: Counter,
}

/// Raises `counter` to `total` (a total kept elsewhere, which never decreases).
fn follow(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// The [`ServerLoad`] gauges.
#[derive(Default)]
struct LoadGauges {
    open_connections: Gauge,
    max_connections: Gauge,
    requests_in_flight: Gauge,
    memory_reserved_bytes: Gauge,
    memory_limit_bytes: Gauge,
    body_bytes_in_flight: Gauge,
    connections_waiting: Gauge,
    refusal_cost_seconds: Gauge<f64, AtomicU64>,
}

impl LoadGauges {
    fn register(&self, registry: &mut Registry) {
        for (name, help, gauge) in [
            (
                "featstore_http_open_connections",
                "Connections open, normal and health-only",
                &self.open_connections,
            ),
            (
                "featstore_http_max_connections",
                "The cap of normal connections",
                &self.max_connections,
            ),
            (
                "featstore_http_requests_in_flight",
                "Requests in their work phase (holding a concurrency slot)",
                &self.requests_in_flight,
            ),
            (
                "featstore_http_request_memory_reserved_bytes",
                "Request memory reserved by requests in flight (bodies and their decoded estimate)",
                &self.memory_reserved_bytes,
            ),
            (
                "featstore_http_request_memory_limit_bytes",
                "The request memory budget",
                &self.memory_limit_bytes,
            ),
            (
                "featstore_http_request_body_bytes_in_flight",
                "Request body bytes received and held by requests in flight",
                &self.body_bytes_in_flight,
            ),
            (
                "featstore_http_connections_waiting",
                "Connection tasks woken and not yet run (the queue that queueing-time shedding watches)",
                &self.connections_waiting,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "featstore_http_refusal_cost_seconds",
            "Running estimate of what refusing one request for its queueing time costs",
            self.refusal_cost_seconds.clone(),
        );
    }

    fn set(&self, load: &ServerLoad) {
        let set = |gauge: &Gauge, v: usize| {
            gauge.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.open_connections, load.open_connections);
        set(&self.max_connections, load.max_connections);
        set(&self.requests_in_flight, load.requests_in_flight);
        set(&self.memory_reserved_bytes, load.memory_reserved_bytes);
        set(&self.memory_limit_bytes, load.memory_limit_bytes);
        set(&self.body_bytes_in_flight, load.body_bytes_in_flight);
        set(&self.connections_waiting, load.connections_waiting);
        self.refusal_cost_seconds
            .set(load.refusal_cost.as_secs_f64());
    }
}

/// The server's metrics. One per server, shared by all connections.
pub struct Metrics {
    // Atomics, updated by every request.
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    /// `featstore_features_served_total`, one counter per status in
    /// `crate::query::tally::STATUSES` order.
    served: [Counter; crate::query::tally::STATUSES.len()],
    /// Reads answered by the engine: single-entity, ranking.
    reads: [ReadSeries; 2],
    /// Pushes: ok, rejected, refused.
    pushes: [Counter; 3],
    loads: Family<LoadLabels, Counter>,
    load_duration: LagFamily,
    findings: Family<FindingLabels, Counter>,
    activations: Family<ActivationLabels, Counter>,
    stream_lag: LagFamily,
    defaults: Family<FeatureLabels, Counter>,
    /// One counter per [`Refusal`], in [`Refusal::ALL`] order.
    refused: [Counter; Refusal::ALL.len()],
    connections_refused: Counter,
    queue_time: Histogram,
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
            "Time from routing a request to having its response, by method, route template and status code",
            latency.clone(),
        );
        let served_family = Family::<StatusLabels, Counter>::default();
        registry.register(
            "featstore_features_served",
            "Feature readings returned by reads, by status",
            served_family.clone(),
        );
        let served = crate::query::tally::STATUSES.map(|status| {
            served_family
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .clone()
        });
        let read_counts = Family::<KindLabels, Counter>::default();
        registry.register(
            "featstore_reads",
            "Reads answered by the engine, by kind (entity, ranking), whoever called it",
            read_counts.clone(),
        );
        let read_seconds: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "featstore_read_duration_seconds",
            "Engine time per read, by kind (entity, ranking)",
            read_seconds.clone(),
        );
        let reads = ["entity", "ranking"].map(|kind| ReadSeries {
            count: read_counts.get_or_create(&KindLabels { kind }).clone(),
            seconds: read_seconds.get_or_create(&KindLabels { kind }).clone(),
        });
        let push_family = Family::<ResultLabels, Counter>::default();
        registry.register(
            "featstore_pushes",
            "Pushes by result: ok, rejected (an event failed validation), refused (not written)",
            push_family.clone(),
        );
        let pushes = ["ok", "rejected", "refused"]
            .map(|result| push_family.get_or_create(&ResultLabels { result }).clone());
        let loads = Family::<LoadLabels, Counter>::default();
        registry.register(
            "featstore_loads",
            "Batch loads by group and result (ok; held: loaded, not activated, its validation failed; failed)",
            loads.clone(),
        );
        let load_duration: LagFamily =
            Family::new_with_constructor(load_histogram as fn() -> Histogram);
        registry.register(
            "featstore_load_duration_seconds",
            "Time a batch load took, validation included, by group",
            load_duration.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "featstore_validation_findings",
            "Validation rules that warned or failed on a loaded version, by group, rule and level",
            findings.clone(),
        );
        let activations = Family::<ActivationLabels, Counter>::default();
        registry.register(
            "featstore_version_activations",
            "Batch versions made active, by group and cause (load, activate, rollback)",
            activations.clone(),
        );
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
        let version_age = Family::<GroupLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "featstore_group_active_version_age_seconds",
            "Age of each group's active batch version, from when its load began",
            version_age.clone(),
        );
        let stream_lag: LagFamily =
            Family::new_with_constructor(lag_histogram as fn() -> Histogram);
        registry.register(
            "featstore_stream_lag_seconds",
            "Time from a pushed value's event time to when it was durable and readable, by group",
            stream_lag.clone(),
        );
        let newest_age = Family::<GroupLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "featstore_stream_newest_age_seconds",
            "Age of the newest event time pushed to each group since start",
            newest_age.clone(),
        );
        let feature_age = Family::<FeatureLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "featstore_feature_age_seconds",
            "Age of the newest value of each feature with a freshness SLO",
            feature_age.clone(),
        );
        let feature_breach = Family::<FeatureLabels, Gauge>::default();
        registry.register(
            "featstore_feature_freshness_breach",
            "1 while a feature breaches its freshness SLO (stream stopped, batch load missed, value too old)",
            feature_breach.clone(),
        );
        let memory = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "featstore_memory_bytes",
            "Bytes held by each memory pool of the engine, from RocksDB's accounting",
            memory.clone(),
        );
        let memory_budget = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "featstore_memory_budget_bytes",
            "Configured budget of each bounded memory pool",
            memory_budget.clone(),
        );
        let batch_versions = Gauge::default();
        registry.register(
            "featstore_batch_versions",
            "Batch versions kept, active ones and rollback targets",
            batch_versions.clone(),
        );
        let resident = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident set size of the process",
            resident.clone(),
        );
        let engine = EngineSeries::default();
        registry.register(
            "featstore_rocksdb_block_cache_hits",
            "Block cache lookups that found their block (RocksDB ticker block.cache.hit)",
            engine.block_cache_hits.clone(),
        );
        registry.register(
            "featstore_rocksdb_block_cache_misses",
            "Block cache lookups that read their block from a file (RocksDB ticker block.cache.miss)",
            engine.block_cache_misses.clone(),
        );
        registry.register(
            "featstore_rocksdb_pending_compaction_bytes",
            "Bytes RocksDB estimates compaction must rewrite, all column families together",
            engine.pending_compaction.clone(),
        );
        registry.register(
            "featstore_hot_segment_lookups",
            "Entity lookups in active batch versions (hits / lookups is the hot segment hit rate)",
            engine.segment_lookups.clone(),
        );
        registry.register(
            "featstore_hot_segment_hits",
            "Entity lookups in active batch versions answered by the mapped hot segment",
            engine.segment_hits.clone(),
        );
        let writer_healthy = Gauge::default();
        writer_healthy.set(1);
        registry.register(
            "featstore_stream_writer_healthy",
            "1 while the stream writer accepts pushes, 0 while it cannot write after a failed write or sync",
            writer_healthy.clone(),
        );
        let write_failures = Counter::default();
        registry.register(
            "featstore_stream_write_failures",
            "Failed stream writes and WAL syncs since the store was opened",
            write_failures.clone(),
        );
        let writer_recoveries = Counter::default();
        registry.register(
            "featstore_stream_writer_recoveries",
            "Times the stream writer recovered from a failed write or sync",
            writer_recoveries.clone(),
        );
        let refused_family = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "featstore_http_refused",
            "Requests refused without being served (load shedding and limits), by reason",
            refused_family.clone(),
        );
        let refused = Refusal::ALL.map(|reason| {
            refused_family
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str(),
                })
                .clone()
        });
        let connections_refused = Counter::default();
        registry.register(
            "featstore_http_connections_refused",
            "Connections closed at accept, beyond the connection cap and the health reserve",
            connections_refused.clone(),
        );
        let queue_time = Histogram::new(QUEUE_BUCKETS);
        registry.register(
            "featstore_http_queue_seconds",
            "Time from a request's arrival (its connection woken) to its dispatch",
            queue_time.clone(),
        );
        let load = LoadGauges::default();
        load.register(&mut registry);
        Metrics {
            requests,
            latency,
            served,
            reads,
            pushes,
            loads,
            load_duration,
            findings,
            activations,
            stream_lag,
            defaults,
            refused,
            connections_refused,
            queue_time,
            scrape: Mutex::new(Scrape {
                registry,
                active_versions,
                version_age,
                newest_age,
                feature_age,
                feature_breach,
                memory,
                memory_budget,
                batch_versions,
                resident,
                engine,
                writer_healthy,
                write_failures,
                writer_recoveries,
                load,
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
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one request refused for `reason`.
    pub fn observe_refused(&self, reason: Refusal) {
        if let Some(slot) = Refusal::ALL.iter().position(|r| *r == reason)
            && let Some(counter) = self.refused.get(slot)
        {
            counter.inc();
        }
    }

    /// Counts one connection closed at accept.
    pub fn observe_connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Records how long a request waited between arrival and dispatch.
    pub fn observe_queue_time(&self, waited: Duration) {
        self.queue_time.observe(waited.as_secs_f64());
    }

    /// Sets the load gauges.
    pub fn set_server_load(&self, load: &ServerLoad) {
        self.scrape.lock().load.set(load);
    }

    /// Sets the per-status totals from the store's per-feature tallies (counters
    /// follow the store's totals, which only grow).
    pub fn set_served(&self, counts: &[crate::query::tally::FeatureCounts]) {
        let mut totals = [0u64; crate::query::tally::STATUSES.len()];
        for c in counts {
            for (total, n) in totals.iter_mut().zip(c.by_status) {
                *total += n;
            }
        }
        for (counter, total) in self.served.iter().zip(totals) {
            follow(counter, total);
        }
    }

    /// The lag histogram family, for the store's commit observer (a clone shares it).
    pub fn stream_lag(&self) -> LagFamily {
        self.stream_lag.clone()
    }

    /// Records one commit of `group`: values with `event_times` became readable at
    /// `readable` (ms).
    pub fn observe_stream_commit(
        lag: &LagFamily,
        group: &str,
        event_times: &[TimestampMs],
        readable: TimestampMs,
    ) {
        let histogram = lag.get_or_create(&GroupLabels {
            group: group.to_owned(),
        });
        for t in event_times {
            histogram.observe(readable.saturating_sub(*t).max(0) as f64 / 1000.0);
        }
    }

    /// Sets the newest-value age gauges from `(group, newest event time)` at `now`.
    pub fn set_stream_newest(&self, newest: &[(String, TimestampMs)], now: TimestampMs) {
        let scrape = self.scrape.lock();
        for (group, t) in newest {
            scrape
                .newest_age
                .get_or_create(&GroupLabels {
                    group: group.clone(),
                })
                .set(now.saturating_sub(*t).max(0) as f64 / 1000.0);
        }
    }

    /// Replaces the active-version age gauges with `created` (group, when its active
    /// version was created, ms) at `now`.
    pub fn set_version_ages(&self, created: &[(String, TimestampMs)], now: TimestampMs) {
        let scrape = self.scrape.lock();
        scrape.version_age.clear();
        for (group, at) in created {
            scrape
                .version_age
                .get_or_create(&GroupLabels {
                    group: group.clone(),
                })
                .set(now.saturating_sub(*at).max(0) as f64 / 1000.0);
        }
    }

    /// Sets the per-feature freshness gauges from an assessment.
    pub fn set_freshness(&self, assessed: &[crate::validate::freshness::FeatureFreshness]) {
        let scrape = self.scrape.lock();
        for f in assessed {
            let labels = FeatureLabels {
                feature: f.feature.clone(),
            };
            if let Some(age) = f.age_seconds {
                scrape.feature_age.get_or_create(&labels).set(age);
            }
            scrape
                .feature_breach
                .get_or_create(&labels)
                .set(i64::from(f.breach));
        }
    }

    /// Sets the stream writer's gauge and counters from the store's `health`.
    pub fn set_stream_writer(&self, health: &WriterHealth) {
        let scrape = self.scrape.lock();
        scrape.writer_healthy.set(i64::from(health.healthy));
        let catch_up = |counter: &Counter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&scrape.write_failures, health.failures);
        catch_up(&scrape.writer_recoveries, health.recoveries);
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

    /// Sets the memory gauges from one reading of the store's pools and the process's
    /// resident size (when the platform reports it).
    pub fn set_memory(&self, usage: &MemoryUsage, resident_bytes: Option<u64>) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let scrape = self.scrape.lock();
        for (pool, bytes) in [
            ("block_cache", usage.block_cache_usage),
            ("block_cache_pinned", usage.block_cache_pinned),
            ("memtables", usage.memtables),
            ("memtables_unflushed", usage.memtables_unflushed),
            ("write_buffers", usage.write_buffer_usage),
            ("table_readers", usage.table_readers),
            ("hot_segments_mapped", usage.hot_segments_mapped),
        ] {
            scrape
                .memory
                .get_or_create(&PoolLabels { pool })
                .set(gauge(bytes));
        }
        for (pool, bytes) in [
            ("block_cache", usage.block_cache_capacity),
            ("write_buffers", usage.write_buffer_budget),
        ] {
            scrape
                .memory_budget
                .get_or_create(&PoolLabels { pool })
                .set(gauge(bytes));
        }
        scrape.batch_versions.set(gauge(usage.batch_versions));
        if let Some(bytes) = resident_bytes {
            scrape.resident.set(gauge(bytes));
        }
    }

    /// Sets the engine's series from one reading of its statistics.
    pub fn set_engine(&self, stats: &crate::store::EngineStats) {
        let scrape = self.scrape.lock();
        let e = &scrape.engine;
        follow(&e.block_cache_hits, stats.block_cache_hits);
        follow(&e.block_cache_misses, stats.block_cache_misses);
        e.pending_compaction
            .set(i64::try_from(stats.pending_compaction_bytes).unwrap_or(i64::MAX));
        follow(&e.segment_lookups, stats.hot_segment_lookups);
        follow(&e.segment_hits, stats.hot_segment_hits);
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

/// `featstore_feature_values_served_total{feature,status}` in the OpenMetrics text
/// format, from the store's tallies (`crate::query::tally`): one series per feature and
/// status it served, zero counts left out, so the text grows with what is read, not
/// with the registry. Rates (default rate, null rate per feature) are ratios of these
/// counters' rates.
pub fn render_served(counts: &[crate::query::tally::FeatureCounts]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(128 + counts.len() * 2 * 96);
    out.push_str(
        "# HELP featstore_feature_values_served Values served by live reads, by feature and status.\n\
         # TYPE featstore_feature_values_served counter\n",
    );
    for c in counts {
        let feature = label_value(&c.feature);
        for (status, n) in crate::query::tally::STATUSES.iter().zip(c.by_status) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "featstore_feature_values_served_total{{feature=\"{feature}\",status=\"{}\"}} {n}",
                    status.as_str()
                );
            }
        }
    }
    out
}

/// `v` escaped as an OpenMetrics label value (backslash, double quote, line feed).
fn label_value(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 2);
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The domain metrics: what the engine answered and did, for every caller.
impl Observer for Metrics {
    fn on_read(&self, event: &ReadEvent<'_>) {
        let series = match event.answer {
            // Values by status are counted by the executor (`crate::query::tally`) and
            // read at scrape time (`set_served`), not here.
            ReadAnswer::Entity(_) => &self.reads[0],
            ReadAnswer::Ranking(answer) => {
                for (feature, count) in &answer.defaults {
                    self.observe_defaults(feature, *count);
                }
                &self.reads[1]
            }
        };
        series.count.inc();
        series.seconds.observe(event.elapsed.as_secs_f64());
    }

    fn on_push(&self, event: &PushReport<'_>) {
        let slot = match event.result {
            Ok(_) => 0,
            Err(e) if e.is_client_error() => 1,
            Err(_) => 2,
        };
        self.pushes[slot].inc();
    }

    fn on_load(&self, event: &LoadEvent<'_>) {
        let held = event.validation.is_some_and(|v| !v.passed);
        let result = match (&event.result, held) {
            (Ok(_), _) => "ok",
            (Err(_), true) => "held",
            (Err(_), false) => "failed",
        };
        self.load_duration
            .get_or_create(&GroupLabels {
                group: event.group.to_owned(),
            })
            .observe(event.elapsed.as_secs_f64());
        for finding in event.validation.iter().flat_map(|v| v.findings.iter()) {
            let level = match finding.level {
                crate::validate::Level::Fail => "fail",
                crate::validate::Level::Warn => "warn",
                crate::validate::Level::Pass => continue,
            };
            self.findings
                .get_or_create(&FindingLabels {
                    group: event.group.to_owned(),
                    rule: finding.rule.clone(),
                    level,
                })
                .inc();
        }
        self.loads
            .get_or_create(&LoadLabels {
                group: event.group.to_owned(),
                result,
            })
            .inc();
    }

    fn on_activation(&self, event: &ActivationEvent<'_>) {
        self.activations
            .get_or_create(&ActivationLabels {
                group: event.group.to_owned(),
                cause: event.cause.as_str(),
            })
            .inc();
    }

    fn on_stream_commit(&self, event: &StreamCommitEvent<'_>) {
        Self::observe_stream_commit(
            &self.stream_lag,
            event.group,
            event.event_times,
            event.readable_ms,
        );
    }
}

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
        metrics.set_served(&[crate::query::tally::FeatureCounts {
            feature: "a@1".into(),
            by_status: [2, 0, 1, 0, 0, 0, 0],
        }]);
        let text = metrics
            .render(&[
                ("product_daily".into(), "product".into(), Some(3)),
                ("user_daily".into(), "user".into(), None),
            ])
            .expect("encodes");
        for needle in [
            r#"featstore_http_requests_total{method="GET",route="/v1/features/{entity_type}/{entity_id}",status="200"} 1"#,
            r#"featstore_http_request_duration_seconds_bucket{le="0.00025",method="GET",route="/v1/features/{entity_type}/{entity_id}",status="200"} 1"#,
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
    fn engine_series_follow_the_stores_totals() {
        let metrics = Metrics::new();
        let mut stats = crate::store::EngineStats {
            block_cache_hits: 90,
            block_cache_misses: 10,
            pending_compaction_bytes: 4096,
            hot_segment_lookups: 1000,
            hot_segment_hits: 750,
        };
        metrics.set_engine(&stats);
        stats.block_cache_hits = 95;
        stats.hot_segment_lookups = 1010;
        stats.pending_compaction_bytes = 0;
        metrics.set_engine(&stats);
        let text = metrics.render(&[]).expect("encodes");
        for needle in [
            "featstore_rocksdb_block_cache_hits_total 95",
            "featstore_rocksdb_block_cache_misses_total 10",
            "featstore_rocksdb_pending_compaction_bytes 0",
            "featstore_hot_segment_lookups_total 1010",
            "featstore_hot_segment_hits_total 750",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn served_totals_sum_the_features_and_follow_the_tallies() {
        use crate::query::tally::FeatureCounts;
        let counts = |a: [u64; 7], b: [u64; 7]| {
            [
                FeatureCounts {
                    feature: "a@1".into(),
                    by_status: a,
                },
                FeatureCounts {
                    feature: "b\"x@2".into(),
                    by_status: b,
                },
            ]
        };
        let metrics = Metrics::new();
        metrics.set_served(&counts([3, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 2, 0, 0]));
        metrics.set_served(&counts([4, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 2, 0, 0]));
        let text = metrics.render(&[]).expect("encodes");
        for needle in [
            r#"featstore_features_served_total{status="present"} 5"#,
            r#"featstore_features_served_total{status="null"} 2"#,
            r#"featstore_features_served_total{status="stale"} 2"#,
            r#"featstore_features_served_total{status="not_found"} 0"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        let per_feature = render_served(&counts([4, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 2, 0, 0]));
        for needle in [
            r#"featstore_feature_values_served_total{feature="a@1",status="present"} 4"#,
            r#"featstore_feature_values_served_total{feature="a@1",status="null"} 1"#,
            r#"featstore_feature_values_served_total{feature="b\"x@2",status="stale"} 2"#,
            "# TYPE featstore_feature_values_served counter",
        ] {
            assert!(
                per_feature.contains(needle),
                "missing {needle} in\n{per_feature}"
            );
        }
        assert!(
            !per_feature.contains("not_found"),
            "zero counts are left out"
        );
    }

    #[test]
    fn stream_freshness_is_exported_per_group() {
        let metrics = Metrics::new();
        Metrics::observe_stream_commit(&metrics.stream_lag(), "clicks", &[1_000, 1_990], 2_000);
        metrics.set_stream_newest(&[("clicks".into(), 1_990)], 4_000);
        let text = metrics.render(&[]).expect("encodes");
        for needle in [
            r#"featstore_stream_lag_seconds_bucket{le="0.01",group="clicks"} 1"#,
            r#"featstore_stream_lag_seconds_bucket{le="1.0",group="clicks"} 2"#,
            r#"featstore_stream_lag_seconds_count{group="clicks"} 2"#,
            r#"featstore_stream_newest_age_seconds{group="clicks"} 2.01"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn refusals_and_load_are_exported() {
        let metrics = Metrics::new();
        metrics.observe_refused(Refusal::QueueTime);
        metrics.observe_refused(Refusal::QueueTime);
        metrics.observe_refused(Refusal::Memory);
        metrics.observe_connection_refused();
        metrics.observe_queue_time(Duration::from_micros(300));
        metrics.set_server_load(&ServerLoad {
            open_connections: 3,
            max_connections: 712,
            requests_in_flight: 1,
            memory_reserved_bytes: 4096,
            memory_limit_bytes: 1 << 20,
            body_bytes_in_flight: 100,
            connections_waiting: 9,
            refusal_cost: Duration::from_micros(12),
        });
        let text = metrics.render(&[]).expect("encodes");
        for needle in [
            r#"featstore_http_refused_total{reason="queue_time"} 2"#,
            r#"featstore_http_refused_total{reason="memory"} 1"#,
            r#"featstore_http_refused_total{reason="connection_limit"} 0"#,
            "featstore_http_connections_refused_total 1",
            r#"featstore_http_queue_seconds_bucket{le="0.0005"} 1"#,
            "featstore_http_open_connections 3",
            "featstore_http_max_connections 712",
            "featstore_http_requests_in_flight 1",
            "featstore_http_request_memory_reserved_bytes 4096",
            "featstore_http_request_memory_limit_bytes 1048576",
            "featstore_http_request_body_bytes_in_flight 100",
            "featstore_http_connections_waiting 9",
            "featstore_http_refusal_cost_seconds 0.000012",
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

    #[test]
    fn memory_pools_and_budgets_are_exported() {
        let metrics = Metrics::new();
        let usage = MemoryUsage {
            block_cache_capacity: 512 << 20,
            block_cache_usage: 3_000,
            memtables: 2_048,
            write_buffer_budget: 128 << 20,
            write_buffer_usage: 2_100,
            table_readers: 77,
            batch_versions: 12,
            ..MemoryUsage::default()
        };
        metrics.set_memory(&usage, Some(9_999));
        let text = metrics.render(&[]).expect("encodes");
        for needle in [
            r#"featstore_memory_bytes{pool="block_cache"} 3000"#,
            r#"featstore_memory_bytes{pool="memtables"} 2048"#,
            r#"featstore_memory_bytes{pool="write_buffers"} 2100"#,
            r#"featstore_memory_bytes{pool="table_readers"} 77"#,
            r#"featstore_memory_budget_bytes{pool="block_cache"} 536870912"#,
            r#"featstore_memory_budget_bytes{pool="write_buffers"} 134217728"#,
            "featstore_batch_versions 12",
            "process_resident_memory_bytes 9999",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
