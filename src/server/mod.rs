//! The HTTP/1.1 endpoint (hyper): a thin shell over [`FeatureStore`] plus Prometheus
//! metrics. It holds no storage logic: handlers parse, call the store, encode.
//!
//! # Layout
//!
//! * this module — [`run_with`]: the accept loop, one task per connection, graceful
//!   shutdown ([`shutdown_signal`]: SIGTERM or SIGINT); and the dispatch of one
//!   request (route, admit, handle, record metrics).
//! * `config` — [`ServerConfig`]: resource bounds and timeouts.
//! * `audit` — the audit record of each admin request (`crate::audit`).
//! * `admission` — queueing time, concurrency and deadlines: which requests start.
//! * `refusal` — why a request was refused: statuses and metrics labels.
//! * `budget` — the request memory budget and bounded body reads.
//! * `connections` — the connection cap and the health-only reserve;
//!   `fd_limit` — the descriptor limit it is derived from.
//! * `health` — the optional health listener, on a thread and runtime of its own.
//! * `router` — matching requests against the routes of [`crate::api::routes`],
//!   404/405.
//! * `access` — the scope each route needs, the caller of a request, 401 and 403
//!   (the rules themselves are `crate::auth`).
//! * `handlers` — one function per endpoint, error-to-status mapping; the bodies
//!   they parse and the answers they write are the types and codecs of [`crate::api`].
//! * [`metrics`] — Prometheus metrics.
//! * `url` — percent-decoding and query parsing.
//!
//! # API
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | GET | `/v1/features/{entity_type}/{entity_id}?names=a,b` | feature vector |
//! | POST | `/v1/feature-definitions` | `{"results": [ApplyOutcome..]}` |
//! | GET | `/v1/feature-definitions?entity_type=&owner=&tag=&name=&group=` | `{"features": [..]}` |
//! | GET | `/v1/groups` | `{"groups": [{"group","entity_type","active_version"}]}` |
//! | GET | `/v1/groups/{group}/versions` | `GroupVersions` |
//! | POST | `/v1/groups/{group}/loads` | `LoadRecord` |
//! | POST | `/v1/groups/{group}/versions/{version}/activate` | `{"group","active_version"}` |
//! | POST | `/v1/groups/{group}/rollback` | `{"group","active_version"}` |
//! | POST | `/v1/groups/{group}/drop-old-versions?keep=K` | `{"group","dropped"}` |
//! | POST | `/v1/push` | `PushOutcome`, or 400 `{"error","rejected":[{"index","reason"}..]}` |
//! | POST | `/v1/rank` | ranking read (see `rank_handlers`) |
//! | POST | `/v1/registry` | `RegistryApplyReport` |
//! | DELETE | `/v1/feature-definitions/{name}/versions/{version}` | `{"deleted"}` |
//! | GET | `/v1/entity-types`, `/v1/on-demand-features`, `/v1/feature-services` | listings |
//! | POST | `/v1/feature-services/{name}/versions/{version}/retire` | the service |
//! | GET | `/v1/lineage` | `{"features": [FeatureUsers..]}` |
//! | DELETE | `/v1/entities/{entity_type}/{entity_id}?compact=` | `ErasureReport` |
//! | GET | `/healthz`, `/readyz` | `ok` (`/readyz`: 503 and the reason while the stream writer cannot write) |
//! | GET | `/metrics` | OpenMetrics text |
//!
//! The request and answer shapes are in `docs/wire.md`. Errors are
//! `{"error": "<message>"}` with a 4xx/5xx status. Requests refused by a
//! resource bound are 503 with `Retry-After` (or 408/413), see README "Limits and load
//! shedding".
//!
//! Thread-safety contract: [`run_on`] owns the listeners; each connection runs on its
//! own task and shares one `Arc<AppState>` (the store, `Send + Sync`, atomic metrics,
//! and the limits, each synchronized on its own), also with the health listener's
//! thread.
//! Shutdown is broadcast over a `watch` channel so a connection spawned at any moment
//! sees it.

pub(crate) mod access;
pub(crate) mod admission;
pub(crate) mod audit;
pub(crate) mod budget;
pub(crate) mod config;
pub(crate) mod connections;
pub(crate) mod fd_limit;
pub(crate) mod feast_handlers;
pub(crate) mod files;
pub(crate) mod handlers;
pub(crate) mod health;
pub mod metrics;
pub(crate) mod rank_handlers;
pub(crate) mod refusal;
pub(crate) mod request_id;
pub(crate) mod router;
pub mod ui;
pub(crate) mod url;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::FeatureStore;
use crate::store::{Observer, ObserverId};
pub use admission::EVENT_INTERVAL;
use admission::{Admission, ArrivalClock, RequestTiming, Timed};
use budget::MemoryBudget;
pub use config::{ConfigError, ServerConfig};
use connections::{Admit, ConnectionLimiter, HEALTH_HEADER_TIMEOUT, OpenConnection};
pub use fd_limit::{FdLimit, raise as raise_fd_limit};
use handlers::{AppState, HttpResponse};
pub use metrics::Metrics;
use refusal::Refusal;
use router::{Match, Route, decode_params, match_route};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The sockets a server answers on.
#[derive(Debug)]
pub struct Listeners {
    /// The API, health checks included.
    pub api: TcpListener,
    /// Health checks and metrics only, answered by a thread and runtime of their own
    /// (see `health`), so they stay fast when the API's runtime is saturated.
    pub health: Option<std::net::TcpListener>,
}

/// Serves `store` on `listener` with the default [`ServerConfig`] until `shutdown`
/// completes (see [`run_with`]).
pub async fn run(
    store: Arc<FeatureStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_with(store, listener, ServerConfig::default(), shutdown).await
}

/// The connection cap `config` asks for, or the one derived from the descriptor limit.
fn max_connections(config: &ServerConfig) -> usize {
    if let Some(max) = config.max_connections {
        return max;
    }
    match fd_limit::current() {
        Ok(limit) => connections::auto_max_connections(
            limit.soft,
            fd_limit::open_descriptors().unwrap_or(64),
            config.health_connections,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "descriptor limit unknown; capping connections at 512");
            512
        }
    }
}

/// An observer registered on a store, unregistered when dropped.
struct Subscription {
    store: Arc<FeatureStore>,
    id: ObserverId,
}

impl Subscription {
    fn new(store: &Arc<FeatureStore>, observer: Arc<dyn Observer>) -> Self {
        Subscription {
            store: store.clone(),
            id: store.add_observer(observer),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.store.remove_observer(self.id);
    }
}

/// Serves `store` on `listener` until `shutdown` completes (see [`run_on`]).
pub async fn run_with(
    store: Arc<FeatureStore>,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listeners = Listeners {
        api: listener,
        health: None,
    };
    run_on(store, listeners, config, shutdown).await
}

/// Serves `store` on `listeners` until `shutdown` completes, then stops accepting and
/// lets in-flight requests finish (at most `config.shutdown_grace`); idle keep-alive
/// connections close at once. `config` is validated first (an invalid one is an
/// `InvalidInput` error).
pub async fn run_on(
    store: Arc<FeatureStore>,
    listeners: Listeners,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let Listeners {
        api: listener,
        health,
    } = listeners;
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let log_config = &store.config().serving_log;
    let serving_log = if log_config.enabled {
        let dir = log_config.dir_for(store.dir());
        Some(
            crate::servelog::ServeLog::start(&store, log_config, &dir)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        )
    } else {
        None
    };
    let parity_sampler =
        crate::parity::sampler::ParitySampler::start(&store, &store.config().parity)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    let auth = open_auth(&config, &listener, health.as_ref())?;
    let audit_log =
        crate::audit::AuditLog::open(&store.dir().join(crate::store::keyspace::AUDIT_DIR))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    let state = Arc::new(AppState {
        auth,
        audit: Arc::new(audit_log),
        serving_log,
        parity_sampler,
        store,
        metrics: Arc::new(Metrics::new()),
        budget: Arc::new(MemoryBudget::new(config.request_memory_bytes)),
        admission: Admission::new(config.max_concurrent_requests, config.max_queue_time),
        connections: ConnectionLimiter::new(max_connections(&config), config.health_connections),
        config,
    });
    // The domain metrics hear the store for as long as this server runs.
    let _subscription = Subscription::new(&state.store, state.metrics.clone());
    let health = health
        .map(|listener| health::HealthServer::start(state.clone(), listener))
        .transpose()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let persister = tokio::spawn(persist_access_counts_periodically(state.store.clone()));
    let token_watcher = state
        .auth
        .clone()
        .map(|auth| tokio::spawn(watch_token_file(auth, state.audit.clone())));
    let mut shutdown = std::pin::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            max_connections = state.connections.max(),
            "serving HTTP"
        );
    }

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let (open, kind) = match state.connections.admit() {
                        Admit::Serve(open) => (open, ConnKind::Api),
                        Admit::HealthOnly(open) => (open, ConnKind::HealthReserve),
                        Admit::Refuse => {
                            state.metrics.observe_connection_refused();
                            drop(stream);
                            continue;
                        }
                    };
                    let clock = state.admission.clock();
                    let connection = Connection {
                        state: state.clone(),
                        clock: clock.clone(),
                        open,
                        kind,
                    };
                    connections.spawn(Timed::new(
                        serve_connection(connection, stream, stop_rx.clone()),
                        clock,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
        while let Some(done) = connections.try_join_next() {
            log_connection_end(done);
        }
    }

    drop(listener);
    if let Some(health) = health {
        health.stop();
    }
    let grace = state.config.shutdown_grace;
    tracing::info!(
        connections = connections.len(),
        grace_secs = grace.as_secs_f64(),
        "shutting down: draining in-flight requests"
    );
    // Receivers only wait for `true`, so a send error (no connection left) is harmless.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while let Some(done) = connections.join_next().await {
            log_connection_end(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "grace period over; dropping connections still busy"
        );
        connections.shutdown().await;
    }
    persister.abort();
    if let Some(watcher) = token_watcher {
        watcher.abort();
    }
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.persist_access_counts()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not persist access counts at shutdown"),
        Err(e) => tracing::warn!(error = %e, "access count persistence task failed"),
    }
    tracing::info!("shut down");
    Ok(())
}

/// The token file of `config`, read once; or, without one, a refusal to serve a
/// non-loopback address unless `config.insecure_open` says so.
fn open_auth(
    config: &ServerConfig,
    listener: &TcpListener,
    health: Option<&std::net::TcpListener>,
) -> std::io::Result<Option<Arc<crate::auth::Auth>>> {
    if let Some(path) = &config.token_file {
        let auth = crate::auth::Auth::open(path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        tracing::info!(
            path = %path.display(),
            principals = auth.tokens().len(),
            "access control on: every request needs a token of the token file"
        );
        return Ok(Some(Arc::new(auth)));
    }
    let api = listener.local_addr()?;
    let health = health.map(std::net::TcpListener::local_addr).transpose()?;
    for addr in std::iter::once(api).chain(health) {
        if addr.ip().is_loopback() {
            continue;
        }
        if !config.insecure_open {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to serve {addr} without access control: anyone who can reach it could read every feature (pii included), push values and drop versions. Give a token file (--token-file; README, \"Security model\"), bind a loopback address, or pass --insecure-open to serve it open anyway"
                ),
            ));
        }
        tracing::warn!(
            %addr,
            "serving a non-loopback address with no access control (--insecure-open)"
        );
    }
    Ok(None)
}

/// Polls the token file every [`crate::auth::POLL_INTERVAL`] and swaps in its new
/// principals when it changed (a bad file keeps the old ones; see `crate::auth`).
async fn watch_token_file(auth: Arc<crate::auth::Auth>, audit: Arc<crate::audit::AuditLog>) {
    let mut ticks = tokio::time::interval(crate::auth::POLL_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let polled = auth.clone();
        let audit = audit.clone();
        let done = tokio::task::spawn_blocking(move || {
            let Some(reload) = polled.poll() else {
                return;
            };
            let (outcome, detail) = match reload {
                crate::auth::Reload::Applied { principals } => {
                    ("ok", format!("{principals} principals in force"))
                }
                crate::auth::Reload::Rejected { reason } => (
                    "refused",
                    format!("{reason}; the previous principals stay in force"),
                ),
            };
            let entry = crate::audit::AuditEntry {
                principal: "system".into(),
                action: "token_file_reload".into(),
                target: polled.path().display().to_string(),
                outcome: outcome.into(),
                detail,
                ..crate::audit::AuditEntry::default()
            };
            if let Err(e) = audit.append(entry) {
                tracing::error!(error = %e, "could not record the token file reload in the audit log");
            }
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "token file poll failed");
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), whichever comes first: the signals a
/// sidecar manager or a terminal send to stop the server gracefully.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops gracefully")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("SIGINT received");
}

/// How often the access counts that choose each version's hot entities are persisted.
pub const ACCESS_PERSIST_INTERVAL: Duration = Duration::from_secs(60);

/// Persists access counts every [`ACCESS_PERSIST_INTERVAL`], off the request path, so a
/// restart (and the next nightly segment build) keeps yesterday's traffic.
async fn persist_access_counts_periodically(store: Arc<FeatureStore>) {
    let mut ticks = tokio::time::interval(ACCESS_PERSIST_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.persist_access_counts()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not persist access counts"),
            Err(e) => tracing::warn!(error = %e, "access count persistence task failed"),
        }
    }
}

fn log_connection_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "connection task panicked");
    }
}

/// What a connection may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnKind {
    /// Anything.
    Api,
    /// Beyond the cap: health checks only (anything else gets 503), one request.
    HealthReserve,
    /// On the health listener: health checks only (anything else gets 404).
    HealthListener,
}

/// What one connection's requests share.
struct Connection {
    state: Arc<AppState>,
    clock: Arc<ArrivalClock>,
    /// Its slot under the connection cap.
    open: OpenConnection,
    kind: ConnKind,
}

/// Serves one connection until the client closes it or shutdown is signalled.
async fn serve_connection(
    connection: Connection,
    stream: TcpStream,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let Connection {
        state,
        clock,
        open,
        kind,
    } = connection;
    let header_timeout = match kind {
        ConnKind::Api => state.config.header_timeout,
        ConnKind::HealthReserve | ConnKind::HealthListener => {
            HEALTH_HEADER_TIMEOUT.min(state.config.header_timeout)
        }
    };
    let service = service_fn(move |req| {
        let state = state.clone();
        let clock = clock.clone();
        async move { Ok::<_, Infallible>(dispatch(&state, &clock, kind, req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(kind != ConnKind::HealthReserve)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(open);
                return;
            }
            // Err: the sender is gone, which also means shutdown.
            _ = stop.wait_for(|stopping| *stopping), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Routes one request read on a connection whose wakes `clock` records, admits it
/// (see [`admission`]; health checks are always answered), answers it and records its
/// metrics. Never fails: every error is a JSON response.
async fn dispatch(
    state: &AppState,
    clock: &ArrivalClock,
    kind: ConnKind,
    mut req: Request<Incoming>,
) -> HttpResponse {
    let started = Instant::now();
    let arrival = clock.arrival();
    state
        .metrics
        .observe_queue_time(started.saturating_duration_since(arrival.at));
    let method = req.method().clone();
    let request_id = match request_id::of(req.headers()) {
        Ok(id) => id,
        Err(e) => {
            let refused = e.into_response();
            state.metrics.observe_request(
                method_label(&method),
                "unmatched",
                refused.status().as_u16(),
                started.elapsed(),
            );
            return refused;
        }
    };
    let header = hyper::header::HeaderValue::from_str(&request_id.0).ok();
    let request_id_text = request_id.0.clone();
    req.extensions_mut().insert(request_id);
    let (route_label, mut response) = match match_route(&method, req.uri().path()) {
        Match::NotFound => ("unmatched", handlers::not_found(req.uri().path())),
        Match::MethodNotAllowed { template, allow } => (
            template,
            handlers::method_not_allowed(method.as_str(), template, &allow),
        ),
        Match::Found { route, params } => {
            let decoded = decode_params(&params);
            let authorized = access::authorize(state.auth.as_deref(), route, req.headers());
            let audit =
                audit::Pending::of(route, &decoded, authorized.caller.as_ref(), request_id_text);
            if let Some(pending) = &audit {
                req.extensions_mut().insert(pending.note.clone());
            }
            let admitted = match (authorized.refusal, authorized.caller) {
                (Some(refused), _) => Err(refused),
                (None, caller) => {
                    if let Some(caller) = caller {
                        req.extensions_mut().insert(caller);
                    }
                    admit(state, clock, route, started, kind, req.headers()).await
                }
            };
            let response = match (admitted, decoded) {
                (Err(refused), _) => refused,
                (Ok(_), Err(e)) => {
                    handlers::ApiError::bad_request(format!("bad path: {e}")).into_response()
                }
                (Ok((slot, timing)), Ok(params)) => {
                    req.extensions_mut().insert(timing);
                    let response = handlers::handle(state, route, params, req)
                        .await
                        .unwrap_or_else(|e| refusal_response(state, e));
                    drop(slot);
                    response
                }
            };
            let response = match audit {
                Some(pending) => pending.record(state, response).await,
                None => response,
            };
            (route.template(), response)
        }
    };
    if let Some(header) = header {
        response
            .headers_mut()
            .insert(crate::servelog::request_id::HEADER, header);
    }
    state.metrics.observe_request(
        method_label(&method),
        route_label,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The admission checks of one routed request: `Ok` with its work slot and timing when
/// it may start (health checks and body-reading routes get no slot here: the former
/// need none, the latter take theirs once the body is in), or the refusal's response.
async fn admit(
    state: &AppState,
    clock: &ArrivalClock,
    route: Route,
    now: Instant,
    kind: ConnKind,
    headers: &hyper::HeaderMap,
) -> Result<(Option<admission::Slot>, RequestTiming), HttpResponse> {
    let arrival = clock.arrival();
    let mut timing = RequestTiming {
        arrived: arrival.at,
        deadline: None,
    };
    if route.is_health_check() {
        return Ok((None, timing));
    }
    if kind == ConnKind::HealthListener {
        return Err(handlers::ApiError::new(
            hyper::StatusCode::NOT_FOUND,
            format!(
                "{} is not served here: this listener answers only /healthz, /readyz and /metrics",
                route.template()
            ),
        )
        .into_response());
    }
    if kind == ConnKind::HealthReserve {
        let refused = handlers::ApiError::new(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server is at its connection limit ({}); this connection may only ask /healthz, /readyz and /metrics",
                state.connections.max()
            ),
        )
        .refused(Refusal::ConnectionLimit);
        return Err(refusal_response(state, refused));
    }
    timing.deadline = admission::header_deadline(headers, arrival.at)
        .map_err(|e| handlers::ApiError::bad_request(e).into_response())?;
    let refuse = |r: refusal::Refused| {
        if r.reason == Refusal::QueueTime {
            clock.note_refusal();
        }
        refusal_response(state, handlers::ApiError::from(r))
    };
    state
        .admission
        .check_queue(arrival, now, timing.deadline)
        .map_err(refuse)?;
    if route.reads_body() {
        return Ok((None, timing));
    }
    let slot = state
        .admission
        .enter(timing.deadline)
        .await
        .map_err(refuse)?;
    Ok((Some(slot), timing))
}

/// The response of a failed request, counting it when it is a refusal.
fn refusal_response(state: &AppState, e: handlers::ApiError) -> HttpResponse {
    if let Some(reason) = e.refused {
        state.metrics.observe_refused(reason);
    }
    e.into_response()
}

/// A bounded `method` label: standard methods by name, anything else `other`.
fn method_label(method: &hyper::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}
