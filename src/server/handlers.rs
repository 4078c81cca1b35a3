//! Request handlers: parse the request, call [`FeatureStore`], encode the answer.
//!
//! The parsers, the answer types and their encoders are those of [`crate::api`]; a
//! parser's [`BadRequest`] is a 400. No business logic lives here. Every failure becomes an [`ApiError`] whose status
//! comes from one mapping per error type ([`store_error_status`], [`read_error_status`]).
//! Store calls that may take long (load, apply, activate, rollback, drop, and pushes,
//! which wait for their WAL sync) run on the blocking pool; reads run inline, they take
//! no lock and are fast.
//!
//! Thread-safety contract: handlers share only [`AppState`]: an `Arc` of the store
//! (`Send + Sync`), the atomic metrics, and the server's limits (request memory,
//! admission, the connection count), each synchronized on its own (see their modules).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use super::admission::{Admission, RequestTiming};
use super::budget::{self, Body, BodyLimits, MemoryBudget};
use super::config::ServerConfig;
use super::connections::ConnectionLimiter;
use super::metrics::{self, Metrics, ServerLoad};
use super::refusal::{RETRY_AFTER_SECS, Refusal, Refused};
use super::router::Route;
use super::url::parse_query;
use crate::FeatureStore;
use crate::api::definitions::{
    ApplyResults, DefinitionList, FILTER_KEYS, definition_filter, parse_specs,
};
use crate::api::groups::{
    ActiveVersion, Dropped, GroupList, GroupVersions, HeldLoad, parse_activate, parse_keep,
    parse_load, parse_version,
};
use crate::api::push::PushAnswer;
use crate::api::{BadRequest, json};
use crate::loader::input::InputError;
use crate::loader::{LoadError, LoadProgress};
use crate::query::Names;
use crate::registry::RegistryError;
use crate::servelog::request_id::RequestId;
use crate::store::PushError;
use crate::store::ReadContext;
use crate::store::{ReadError, StoreError};
use crate::types::now_ms;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The store served.
    pub store: Arc<FeatureStore>,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The server's settings.
    pub config: ServerConfig,
    /// Request memory shared by all connections.
    pub budget: Arc<MemoryBudget>,
    /// Queueing, concurrency and deadline checks.
    pub admission: Admission,
    /// The connection cap.
    pub connections: ConnectionLimiter,
    /// The serving log, when the store config enables it.
    pub serving_log: Option<crate::servelog::ServeLog>,
    /// The background parity sampler, when the store config's rate is above 0.
    pub parity_sampler: Option<crate::parity::sampler::ParitySampler>,
    /// The token file in force, when the server has one (`crate::auth`).
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// The audit log of the store's data directory.
    pub audit: Arc<crate::audit::AuditLog>,
}

impl AppState {
    /// The load gauges now.
    pub fn load(&self) -> ServerLoad {
        ServerLoad {
            open_connections: self.connections.open(),
            max_connections: self.connections.max(),
            requests_in_flight: self.admission.in_flight(),
            memory_reserved_bytes: self.budget.reserved_bytes(),
            memory_limit_bytes: self.budget.total_bytes(),
            body_bytes_in_flight: self.budget.body_bytes(),
            connections_waiting: self.admission.waiting(),
            refusal_cost: self.admission.refusal_cost(),
        }
    }
}

/// A request that failed: answered as `{"error": message}` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable reason, naming the offending thing.
    pub message: String,
    /// Set when the request was refused without being served (counted by reason).
    pub refused: Option<Refusal>,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            refused: None,
        }
    }

    /// Marks the error as a refusal for `reason`.
    pub fn refused(mut self, reason: Refusal) -> Self {
        self.refused = Some(reason);
        self
    }

    /// A 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The `{"error": ..}` response; server errors are also logged, except refusals
    /// (counted instead: under overload there is one per shed request). A 503 asks the
    /// client to retry after [`RETRY_AFTER_SECS`]; a refusal that leaves a body unread
    /// closes the connection.
    pub fn into_response(self) -> HttpResponse {
        if self.status.is_server_error() && self.refused.is_none() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let mut resp = json_response(self.status, json::error_body(&self.message));
        let headers = resp.headers_mut();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.refused.is_some_and(Refusal::closes_connection) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::new(r.reason.status(), r.message).refused(r.reason)
    }
}

impl From<BadRequest> for ApiError {
    fn from(e: BadRequest) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(store_error_status(&e), e.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        ApiError::new(read_error_status(&e), e.to_string())
    }
}

/// The HTTP status of a failed store operation.
pub fn store_error_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::UnknownGroup(_)
        | StoreError::UnknownVersion { .. }
        | StoreError::Registry(RegistryError::NotRegistered(_)) => StatusCode::NOT_FOUND,
        StoreError::Registry(RegistryError::InUse(_)) => StatusCode::CONFLICT,
        StoreError::Registry(_) => StatusCode::BAD_REQUEST,
        // The sink failing is the loader's own scratch space, not the input.
        StoreError::Load(LoadError::Input(InputError::Sink(_))) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        StoreError::Load(LoadError::Input(_) | LoadError::EmptyInput(_)) => StatusCode::BAD_REQUEST,
        // The version was built but a gate (validation) refused to commit it.
        StoreError::Load(LoadError::Refused { .. } | LoadError::Held { .. })
        | StoreError::ValidationFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::ForceNeedsReason
        | StoreError::Erase(crate::store::erase::EraseError::InvalidEntityId(_)) => {
            StatusCode::BAD_REQUEST
        }
        StoreError::Erase(crate::store::erase::EraseError::UnknownEntityType(_)) => {
            StatusCode::NOT_FOUND
        }
        StoreError::VersionNotReady { .. } | StoreError::NoPreviousVersion(_) => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status of a failed read.
pub fn read_error_status(e: &ReadError) -> StatusCode {
    match e {
        ReadError::UnknownEntityType(_)
        | ReadError::UnknownFeature(_)
        | ReadError::WrongEntityType { .. } => StatusCode::NOT_FOUND,
        ReadError::InvalidEntityId(_) | ReadError::NoFeatures => StatusCode::BAD_REQUEST,
        ReadError::Denied(_) => StatusCode::FORBIDDEN,
        other if other.is_client_error() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A response with `body` and a content type.
pub(super) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response of already-encoded bytes.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    response(status, "application/json", body)
}

/// A 200 JSON response of `value`.
pub(super) fn ok_json<T: Serialize + ?Sized>(value: &T) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding response: {e}"),
        )
    })?;
    Ok(json_response(StatusCode::OK, body))
}

/// The 404 for a path no route matches.
pub fn not_found(path: &str) -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")).into_response()
}

/// The 405 for a known path asked with another method; `allow` lists the methods.
pub fn method_not_allowed(method: &str, template: &str, allow: &str) -> HttpResponse {
    let mut resp = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {template}; use {allow}"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        resp.headers_mut().insert(header::ALLOW, value);
    }
    resp
}

/// Runs a blocking store call on the blocking pool.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    run_blocking(f).await?.map_err(ApiError::from)
}

/// Runs `f` on the blocking pool; a task that panicked or was cancelled is a 500. The
/// caller maps `f`'s own result (see [`blocking`] for store operations).
pub(super) async fn run_blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("operation did not complete: {e}"),
        )
    })
}

/// Reads the whole body of a `route` request within the server's limits (see
/// [`budget`]), then takes its work slot (see [`super::admission`]): the returned body
/// holds both until dropped.
pub(super) async fn read_body(
    state: &AppState,
    route: Route,
    req: Request<Incoming>,
) -> Result<Body, ApiError> {
    let timing = request_timing(&req);
    let config = &state.config;
    let limits = BodyLimits {
        max_bytes: config.max_body_bytes,
        decode_factor: budget::decode_factor(route),
        memory_wait: config.memory_wait,
        deadline: std::time::Instant::now() + config.body_timeout,
    };
    let body = budget::read_body(&state.budget, limits, req).await?;
    let slot = state.admission.enter(timing.deadline).await?;
    Ok(body.with_slot(slot))
}

/// The arrival and deadline dispatch recorded for `req`.
pub(super) fn request_timing(req: &Request<Incoming>) -> RequestTiming {
    req.extensions()
        .get::<RequestTiming>()
        .copied()
        .unwrap_or_else(|| RequestTiming {
            arrived: std::time::Instant::now(),
            deadline: None,
        })
}

/// Decoded query pairs; any key outside `allowed` is refused, naming it.
fn query(req: &Request<Incoming>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = parse_query(req.uri().query())
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    if let Some((key, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{key}`; expected {}",
            allowed.join(", ")
        )));
    }
    Ok(pairs)
}

/// Takes path parameter `index` (the router guarantees the count).
fn param(params: &mut [String], index: usize) -> String {
    params
        .get_mut(index)
        .map(std::mem::take)
        .unwrap_or_default()
}

/// Answers a matched request. `params` are the decoded path parameters.
pub async fn handle(
    state: &AppState,
    route: Route,
    mut params: Vec<String>,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    match route {
        Route::GetFeatures => {
            let entity_type = param(&mut params, 0);
            let entity_id = param(&mut params, 1);
            get_features(state, &entity_type, &entity_id, &req)
        }
        Route::ApplyDefinitions => apply_definitions(state, req).await,
        Route::ListDefinitions => list_definitions(state, &req),
        Route::ListGroups => list_groups(state),
        Route::GroupVersions => {
            let group = param(&mut params, 0);
            // Load records carry validation findings computed from the values.
            check_group_readable(state, &super::access::caller_of(&req), &group)?;
            let store = state.store.clone();
            ok_json(&GroupVersions::from(
                blocking(move || store.versions(&group)).await?,
            ))
        }
        Route::Load => load(state, param(&mut params, 0), req).await,
        Route::Activate => {
            let group = param(&mut params, 0);
            let version = param(&mut params, 1);
            activate(state, group, &version, req).await
        }
        Route::VersionStats => {
            let group = param(&mut params, 0);
            let version = parse_version(&param(&mut params, 1))?;
            // The statistics are computed from the values: readable only by a caller
            // who may read every feature of the group.
            check_group_readable(state, &super::access::caller_of(&req), &group)?;
            let store = state.store.clone();
            ok_json(&blocking(move || store.version_stats(&group, version)).await?)
        }
        Route::Rollback => {
            let group = param(&mut params, 0);
            let store = state.store.clone();
            let name = group.clone();
            let active = blocking(move || store.rollback(&name)).await?;
            ok_json(&ActiveVersion {
                group,
                active_version: active,
            })
        }
        Route::DropOldVersions => drop_old_versions(state, param(&mut params, 0), &req).await,
        Route::DeleteEntity => {
            let entity_type = param(&mut params, 0);
            let entity_id = param(&mut params, 1);
            delete_entity(state, entity_type, entity_id, &req).await
        }
        Route::Push => push(state, req).await,
        Route::Rank
        | Route::ApplyRegistry
        | Route::DeleteDefinition
        | Route::ListEntityTypes
        | Route::ListOnDemand
        | Route::ListServices
        | Route::RetireService
        | Route::Lineage => super::rank_handlers::handle(state, route, params, req).await,
        Route::ServingLogExport => serving_log_export(state, req).await,
        Route::TrainingSets => training_set_job(state, req).await,
        Route::HistoryExports => history_export_job(state, req).await,
        Route::FeatureHealth => {
            let store = state.store.clone();
            let now = now_ms();
            let assessed = blocking(move || {
                let facts = crate::validate::freshness::gather(&store)?;
                Ok(crate::validate::freshness::assess(
                    &store.registry(),
                    &facts,
                    now,
                ))
            })
            .await?;
            state.metrics.set_freshness(&assessed);
            ok_json(&crate::validate::freshness::FeatureHealth::of(
                assessed, now,
            ))
        }
        Route::Ui => {
            let page = super::ui::PageQuery::from_pairs(query(&req, &super::ui::QUERY_KEYS)?);
            // A group's section shows its versions' statistics (computed from values);
            // the rest of the page shows definitions and freshness only.
            if let Some(group) = &page.group {
                check_group_readable(state, &super::access::caller_of(&req), group)?;
            }
            let store = state.store.clone();
            let html = blocking(move || super::ui::render(&store, &page, now_ms())).await?;
            Ok(response(StatusCode::OK, "text/html; charset=utf-8", html))
        }
        Route::AuditLog => {
            let mut after = 0;
            let mut limit = 1000;
            for (key, value) in query(&req, &["after", "limit"])? {
                let n: u64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("`{key}` must be a whole number"))
                })?;
                match key.as_str() {
                    "after" => after = n,
                    _ => limit = usize::try_from(n).unwrap_or(usize::MAX),
                }
            }
            let log = state.audit.clone();
            let page = run_blocking(move || log.read(after, limit))
                .await?
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            ok_json(&page)
        }
        Route::FeastGetOnlineFeatures
        | Route::FeastPush
        | Route::FeastWriteToOnlineStore
        | Route::OpenApi => super::feast_handlers::handle(state, route, req).await,
        Route::Healthz => Ok(response(StatusCode::OK, "text/plain; charset=utf-8", "ok")),
        Route::Readyz => Ok(readiness(&state.store)),
        Route::Metrics => {
            let groups = state.store.groups();
            state
                .metrics
                .set_stream_writer(&state.store.stream_writer_health());
            state
                .metrics
                .set_stream_newest(&state.store.stream_newest_event_times(), now_ms());
            state.metrics.set_memory(
                &state.store.memory_usage(),
                crate::store::memory::process_resident_bytes(),
            );
            state.metrics.set_engine(&state.store.engine_stats());
            let served = state.store.served_counts();
            state.metrics.set_served(&served);
            state
                .metrics
                .set_version_ages(&state.store.active_version_created(), now_ms());
            state.metrics.set_server_load(&state.load());
            match crate::validate::freshness::gather(&state.store) {
                Ok(facts) => state
                    .metrics
                    .set_freshness(&crate::validate::freshness::assess(
                        &state.store.registry(),
                        &facts,
                        now_ms(),
                    )),
                Err(e) => tracing::warn!(error = %e, "freshness figures unavailable"),
            }
            let mut text = state.metrics.render(&groups).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding metrics: {e}"),
                )
            })?;
            {
                let eof = text.rfind("# EOF").unwrap_or(text.len());
                text.insert_str(eof, &metrics::render_served(&served));
            }
            if let Some(log) = &state.serving_log {
                // The serving log's families go before OpenMetrics' closing `# EOF`.
                let eof = text.rfind("# EOF").unwrap_or(text.len());
                text.insert_str(eof, &log.metrics().render());
            }
            if let Some(auth) = &state.auth {
                let eof = text.rfind("# EOF").unwrap_or(text.len());
                text.insert_str(eof, &auth.render_metrics());
            }
            if let Some(sampler) = &state.parity_sampler {
                let eof = text.rfind("# EOF").unwrap_or(text.len());
                text.insert_str(eof, &sampler.metrics().render());
            }
            Ok(response(StatusCode::OK, metrics::CONTENT_TYPE, text))
        }
    }
}

/// With a token file, a principal registers only for its own team: every feature
/// and service it applies must name its team as owner, and a feature already
/// registered under another team's ownership is not its to change (its reuse rule
/// included). A 403 naming the first that is not.
pub(super) fn check_owners(
    state: &AppState,
    caller: &super::access::Caller,
    features: &[crate::registry::FeatureSpec],
    services: &[crate::registry::service::ServiceSpec],
) -> Result<(), ApiError> {
    let Some(team) = caller.team() else {
        return Ok(());
    };
    let forbidden = |what: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "principal `{}` of team `{team}` may not {what}",
                caller.id()
            ),
        )
    };
    let registry = state.store.registry();
    for spec in features {
        if spec.owner != team {
            return Err(forbidden(format!(
                "register feature `{}` for owner `{}`",
                spec.name, spec.owner
            )));
        }
        if let Some(old) = registry.get(&spec.name, spec.version)
            && old.spec.owner != team
        {
            return Err(forbidden(format!(
                "change feature `{}`, owned by `{}`",
                old.qualified_name(),
                old.spec.owner
            )));
        }
    }
    for spec in services {
        if spec.owner != team {
            return Err(forbidden(format!(
                "register service `{}` for owner `{}`",
                spec.name, spec.owner
            )));
        }
    }
    Ok(())
}

/// A 403 naming the first feature of `group` that `caller` may not read (nothing
/// when the group is unknown: the store answers that).
fn check_group_readable(
    state: &AppState,
    caller: &super::access::Caller,
    group: &str,
) -> Result<(), ApiError> {
    if matches!(caller, super::access::Caller::Open) {
        return Ok(());
    }
    let registry = state.store.registry();
    if let Some(info) = registry.group(group) {
        for id in &info.features {
            if let Some(def) = registry.by_id(*id) {
                caller.check_read(def)?;
            }
        }
    }
    Ok(())
}

/// Splits `names=a,b&names=c` into `[a, b, c]`, trimming and dropping empty names.
/// The comma-separated names of every `names=` pair, borrowed from the decoded query.
fn feature_names(pairs: &[(String, String)]) -> Vec<&str> {
    pairs
        .iter()
        .filter(|(key, _)| key == "names")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

/// The `as_of` of a query string, decoded, if given (the last one wins).
fn pairs_as_of(req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(query) = req.uri().query() else {
        return Ok(None);
    };
    if !query.contains("as_of") {
        return Ok(None);
    }
    let pairs = parse_query(Some(query))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    Ok(pairs
        .into_iter()
        .rev()
        .find(|(k, _)| k == "as_of")
        .map(|(_, v)| v))
}

/// The names text of a query string that is `names=..` alone with nothing to decode
/// (no `%`, `+` or `&`): the value as sent, which [`Names::Text`] splits exactly as
/// [`feature_names`] splits the decoded pairs.
fn plain_names(query: Option<&str>) -> Option<&str> {
    let value = query?.strip_prefix("names=")?;
    (!value.bytes().any(|b| matches!(b, b'%' | b'+' | b'&'))).then_some(value)
}

fn get_features(
    state: &AppState,
    entity_type: &str,
    entity_id: &str,
    req: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    // The common request needs no decoding, and its names text is the key of its
    // cached plan (see `crate::query::cache`); any other query is decoded and checked.
    let pairs;
    let listed;
    let names = match plain_names(req.uri().query()) {
        Some(text) => Names::Text(text),
        None => {
            pairs = query(req, &["names", "as_of"])?;
            listed = feature_names(&pairs);
            Names::List(&listed)
        }
    };
    let as_of = match pairs_as_of(req)? {
        Some(text) => Some(crate::api::rank::parse_as_of(&text)?),
        None => None,
    };
    // The store checks the entity type, then the id, then the names, then the
    // caller's read guard.
    let caller = req.extensions().get::<super::access::Caller>();
    let caller = caller.unwrap_or(&super::access::Caller::Open);
    let request_id = req.extensions().get::<RequestId>();
    let context = ReadContext {
        request_id: request_id.map(|r| r.0.as_str()),
        route: "get",
        guard: caller.guard(),
    };
    let result = match as_of {
        // From the history; not a served read (no observer, no serving log).
        Some(at) => state
            .store
            .get_entity_as_of(entity_type, entity_id, names, at, caller.guard())
            .map(std::sync::Arc::new),
        None => state
            .store
            .get_entity_in(context, entity_type, entity_id, names),
    };
    let answer = match result {
        Err(ReadError::NoFeatures) => {
            return Err(ApiError::bad_request(
                "no feature names given: add ?names=a,b,c",
            ));
        }
        result => result?,
    };
    // Statuses are counted by the metrics observer of the store (see `metrics`).
    Ok(json_response(
        StatusCode::OK,
        crate::api::get_json::encode_entity(&answer),
    ))
}

/// The body of `POST /v1/serving-log/exports`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportJob {
    /// Oldest log time, inclusive (epoch ms or RFC 3339).
    from: Option<String>,
    /// Newest log time, exclusive.
    to: Option<String>,
    /// Only reads of this service.
    service: Option<String>,
    /// Output directory on the server's machine.
    out: std::path::PathBuf,
}

async fn serving_log_export(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let Some(log) = &state.serving_log else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the serving log is not enabled ([serving_log] enabled = true in the store config)",
        ));
    };
    let caller = super::access::caller_of(&req);
    let body = read_body(state, Route::ServingLogExport, req).await?;
    let job: ExportJob = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad export job: {e}")))?;
    drop(body);
    let time = |t: &Option<String>| {
        t.as_deref()
            .map(crate::types::parse_timestamp_ms)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("bad time: {e}")))
    };
    let selection = crate::servelog::reader::Selection {
        from_ms: time(&job.from)?,
        to_ms: time(&job.to)?,
        service: job.service,
        request_id: None,
    };
    let out = super::files::export_path(&state.config.export_dirs, &job.out)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))?;
    let dir = log.dir().to_owned();
    let store = state.store.clone();
    let summary = run_blocking(move || {
        let registry = store.registry();
        let admit =
            |record: &crate::servelog::record::Record| record_readable(&registry, &caller, record);
        let admit: Option<crate::servelog::export::RecordCheck<'_>> =
            (!matches!(caller, super::access::Caller::Open)).then_some(&admit);
        crate::servelog::export::export_admitted(&dir, &selection, &out, admit)
    })
    .await?
    .map_err(|e| match e {
        crate::servelog::export::ExportError::Denied(reason) => {
            ApiError::new(StatusCode::FORBIDDEN, reason)
        }
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })?;
    ok_json(&summary)
}

/// `Err` naming the first feature of a logged read that `caller` may not read now: a
/// stored feature by its rules, an on-demand feature by each of its inputs; a feature
/// no longer registered cannot be judged and is refused.
fn record_readable(
    registry: &crate::registry::Registry,
    caller: &super::access::Caller,
    record: &crate::servelog::record::Record,
) -> Result<(), String> {
    let answer = &record.answer;
    for column in answer.context_columns.iter().chain(answer.columns.iter()) {
        let inputs: Vec<String> = if column.on_demand {
            match registry.catalog().resolve_on_demand(&column.feature) {
                Some(od) => od.resolved_inputs.clone(),
                None => {
                    return Err(format!(
                        "access to feature `{}` denied: it is no longer registered, so its inputs cannot be judged",
                        column.feature
                    ));
                }
            }
        } else {
            vec![column.feature.clone()]
        };
        for input in inputs {
            let Some(def) = registry.resolve(&input) else {
                return Err(format!(
                    "access to feature `{input}` denied: it is no longer registered, so its sensitivity cannot be judged"
                ));
            };
            caller.check_read(def).map_err(|e| e.message)?;
        }
    }
    Ok(())
}

/// The body of `POST /v1/training-sets`. Files are plain names under the data
/// directory's `exports/` folder: a job never reads or writes anywhere else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingSetJob {
    /// The spine file in `exports/` (`.parquet`, else CSV).
    spine: String,
    /// Feature names; or `service`.
    features: Option<Vec<String>>,
    /// A feature service.
    service: Option<String>,
    /// The spine's timestamp column (default `event_timestamp`).
    timestamp_column: Option<String>,
    /// Only values known at each row's timestamp.
    #[serde(default)]
    as_known_at: bool,
    /// Threads answering the spine: default 1, so a job leaves the server's other
    /// cores to reads; at most the machine's cores.
    threads: Option<usize>,
    /// The Parquet file written in `exports/`.
    out: String,
}

async fn training_set_job(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    use crate::query::rank::FeatureSelection;
    let caller = super::access::caller_of(&req);
    let body = read_body(state, Route::TrainingSets, req).await?;
    let job: TrainingSetJob = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad training-set job: {e}")))?;
    drop(body);
    let features = match (job.features, job.service) {
        (Some(names), None) => FeatureSelection::Names(names),
        (None, Some(service)) => FeatureSelection::Service(service),
        _ => {
            return Err(ApiError::bad_request(
                "give `features` (a list of names) or `service`",
            ));
        }
    };
    let exports = state.store.dir().join("exports");
    let spine = crate::training::confined(&exports, &job.spine).map_err(ApiError::bad_request)?;
    let out = crate::training::confined(&exports, &job.out).map_err(ApiError::bad_request)?;
    if spine == out {
        return Err(ApiError::bad_request("`out` must not be the spine"));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match job.threads {
        None => 1,
        Some(n) if (1..=cores).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "`threads` is {n}: give 1 to {cores} (this machine's cores)"
            )));
        }
    };
    let job = crate::training::TrainingJob {
        spine,
        features,
        timestamp_column: job
            .timestamp_column
            .unwrap_or_else(|| crate::training::DEFAULT_TIMESTAMP_COLUMN.to_owned()),
        as_known_at: job.as_known_at,
        out,
        guard: caller.shared_guard(),
        threads,
    };
    let store = state.store.clone();
    let summary = run_blocking(move || crate::training::build(&store, &job))
        .await?
        .map_err(|e| match e {
            crate::training::TrainingError::Spine { .. }
            | crate::training::TrainingError::Csv { .. } => ApiError::bad_request(e.to_string()),
            crate::training::TrainingError::Io { ref source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            crate::training::TrainingError::Read { source, row } => {
                let status = ApiError::from(source.clone()).status;
                ApiError::new(status, format!("spine row {row}: {source}"))
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
    ok_json(&summary)
}

/// The body of `POST /v1/history-exports`: `out` is a plain directory name under the
/// data directory's `exports/` folder.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryExportBody {
    /// The directory written in `exports/` (absent or empty).
    out: String,
    /// Only these groups.
    #[serde(default)]
    groups: Vec<String>,
    /// Only these features (`name` or `name@version`).
    #[serde(default)]
    features: Vec<String>,
}

async fn history_export_job(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    use crate::training::history_export::{self, HistoryExportError};
    let caller = super::access::caller_of(&req);
    let body = read_body(state, Route::HistoryExports, req).await?;
    let job: HistoryExportBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad history export job: {e}")))?;
    drop(body);
    let exports = state.store.dir().join("exports");
    let out = crate::training::confined(&exports, &job.out).map_err(ApiError::bad_request)?;
    let job = history_export::HistoryExportJob {
        out,
        groups: job.groups,
        features: job.features,
    };
    let store = state.store.clone();
    let summary = run_blocking(move || {
        let admit = |def: &crate::registry::FeatureDefinition| {
            caller.check_read(def).map_err(|e| e.message)
        };
        let admit: Option<history_export::FeatureCheck<'_>> =
            (!matches!(caller, super::access::Caller::Open)).then_some(&admit);
        history_export::export(&store, &job, admit)
    })
    .await?
    .map_err(|e| match e {
        HistoryExportError::Job(_) => ApiError::bad_request(e.to_string()),
        HistoryExportError::Denied(reason) => ApiError::new(StatusCode::FORBIDDEN, reason),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    })?;
    ok_json(&summary)
}

async fn apply_definitions(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    // The body holds the request's memory and work slot until the answer is made.
    let caller = super::access::caller_of(&req);
    let body = read_body(state, Route::ApplyDefinitions, req).await?;
    let specs = parse_specs(&body)?;
    check_owners(state, &caller, &specs, &[])?;
    let store = state.store.clone();
    let results = blocking(move || store.apply(specs)).await?;
    drop(body);
    ok_json(&ApplyResults::from(results))
}

fn list_definitions(state: &AppState, req: &Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let pairs = query(req, &FILTER_KEYS)?;
    let definitions = state.store.list_definitions(&definition_filter(pairs));
    ok_json(&DefinitionList {
        features: definitions.iter().map(|d| d.as_ref().clone()).collect(),
    })
}

fn list_groups(state: &AppState) -> Result<HttpResponse, ApiError> {
    ok_json(&GroupList::of(&state.store.groups()))
}

async fn activate(
    state: &AppState,
    group: String,
    version: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let version = parse_version(version)?;
    let note = req.extensions().get::<super::audit::AuditNote>().cloned();
    let body = read_body(state, Route::Activate, req).await?;
    let options = parse_activate(&body)?;
    drop(body);
    if let (true, Some(note), Some(by), Some(reason)) =
        (options.force, &note, &options.by, &options.reason)
    {
        note.set(format!("forced by {by}: {reason}"));
    }
    let store = state.store.clone();
    let name = group.clone();
    blocking(
        move || match (options.force, &options.by, &options.reason) {
            (true, Some(by), Some(reason)) => store.activate_forced(&name, version, by, reason),
            _ => store.activate(&name, version),
        },
    )
    .await?;
    ok_json(&ActiveVersion {
        group,
        active_version: version,
    })
}

async fn drop_old_versions(
    state: &AppState,
    group: String,
    req: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let mut keep = state.store.config().keep_versions;
    for (_, value) in query(req, &["keep"])? {
        keep = parse_keep(&value)?;
    }
    let store = state.store.clone();
    let name = group.clone();
    let dropped = blocking(move || store.drop_old_versions(&name, keep)).await?;
    ok_json(&Dropped { group, dropped })
}

/// `DELETE /v1/entities/{entity_type}/{entity_id}[?compact=false]`: a per-entity
/// deletion (`crate::store::erase`), answered with its report once durable.
async fn delete_entity(
    state: &AppState,
    entity_type: String,
    entity_id: String,
    req: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let mut compact = true;
    for (_, value) in query(req, &["compact"])? {
        compact = match value.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "compact must be true or false, not `{other}`"
                )));
            }
        };
    }
    let store = state.store.clone();
    let request = crate::store::erase::EntityErasure {
        entity_type,
        entity_id,
        compact,
    };
    ok_json(&blocking(move || store.delete_entity(&request)).await?)
}

/// Content types of a load whose body is the input file itself.
const UPLOAD_TYPES: [(&str, crate::loader::input::InputFormat); 3] = [
    ("text/csv", crate::loader::input::InputFormat::Csv),
    (
        "application/vnd.apache.parquet",
        crate::loader::input::InputFormat::Parquet,
    ),
    (
        "application/x-parquet",
        crate::loader::input::InputFormat::Parquet,
    ),
];

/// Query keys of an uploaded load (a JSON load request takes its options in its body).
const UPLOAD_OPTIONS: [&str; 4] = [
    "activate",
    "layout",
    "default_event_time",
    "ignore_unknown_columns",
];

/// The input format of an uploaded load body, from its content type; `None`: a JSON
/// load request naming a server-side file.
fn upload_format(req: &Request<Incoming>) -> Option<crate::loader::input::InputFormat> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = value.split(';').next().unwrap_or_default().trim();
    UPLOAD_TYPES
        .iter()
        .find(|(t, _)| mime.eq_ignore_ascii_case(t))
        .map(|(_, f)| *f)
}

/// The load request of an uploaded body: the body saved to a scratch file of the
/// store, options from the query (`activate`, `layout`, `default_event_time`,
/// `ignore_unknown_columns`).
fn upload_request(
    state: &AppState,
    group: String,
    format: crate::loader::input::InputFormat,
    pairs: Vec<(String, String)>,
    body: &[u8],
) -> Result<(crate::loader::LoadRequest, tempfile::NamedTempFile), ApiError> {
    let mut load = serde_json::Map::new();
    for (key, value) in pairs {
        let json = match key.as_str() {
            "activate" | "ignore_unknown_columns" => match value.as_str() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "`{key}` must be true or false"
                    )));
                }
            },
            _ => serde_json::Value::String(value),
        };
        load.insert(key, json);
    }
    let scratch = state.store.dir().join(crate::store::keyspace::UPLOADS_DIR);
    let io = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("saving the uploaded input: {e}"),
        )
    };
    std::fs::create_dir_all(&scratch).map_err(io)?;
    let mut file = tempfile::Builder::new()
        .prefix("load-")
        .tempfile_in(&scratch)
        .map_err(io)?;
    std::io::Write::write_all(&mut file, body).map_err(io)?;
    load.insert(
        "input".into(),
        serde_json::Value::String(file.path().display().to_string()),
    );
    let text = serde_json::to_vec(&load)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}")))?;
    let mut request = parse_load(group, &text)?;
    request.options.format = Some(format);
    Ok((request, file))
}

/// The answer to a load whose input did not parse: where and what kind of problem,
/// never the file's contents (a cell, a header, a line), which go to the server log.
fn input_refusal(shown: &str, e: &InputError) -> ApiError {
    tracing::warn!(input = shown, error = %e, "HTTP load input refused");
    let what = match e {
        InputError::Io { .. } => "could not be read".to_owned(),
        InputError::BadSchema { .. } => {
            "its columns do not fit the group (the server log has the details)".to_owned()
        }
        InputError::BadRow { row, .. } => {
            format!("data row {row} does not parse (the server log has the details)")
        }
        InputError::Parquet { .. } => "is not a valid Parquet file".to_owned(),
        _ => "is not a valid input".to_owned(),
    };
    ApiError::bad_request(format!("input `{shown}` {what}"))
}

async fn load(
    state: &AppState,
    group: String,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let upload = upload_format(&req);
    let pairs = query(
        &req,
        match upload {
            Some(_) => &UPLOAD_OPTIONS,
            None => &[],
        },
    )?;
    let body = read_body(state, Route::Load, req).await?;
    let (request, scratch, shown) = match upload {
        Some(format) => {
            let (request, file) = upload_request(state, group, format, pairs, &body)?;
            (request, Some(file), "(uploaded body)".to_owned())
        }
        None => {
            let mut request = parse_load(group, &body)?;
            let shown = request.input.display().to_string();
            request.input = super::files::import_path(&state.config.import_dirs, &request.input)
                .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))?;
            (request, None, shown)
        }
    };
    drop(body);
    let store = state.store.clone();
    // The store's error is matched here: a version held by its validation is answered
    // with its record.
    let result = blocking(move || {
        let result = store.load(&request, &|p: LoadProgress| {
            tracing::info!(
                group = request.group.as_str(),
                phase = p.phase,
                values = p.values,
                elapsed_secs = p.elapsed_secs,
                "load progress"
            );
        });
        drop(scratch);
        Ok(result)
    })
    .await?;
    match result {
        Ok(record) => ok_json(&record),
        Err(e) => match e {
            StoreError::Load(LoadError::Held { ref record, .. }) => {
                let answer = HeldLoad {
                    error: e.to_string(),
                    load: (**record).clone(),
                };
                let body = serde_json::to_vec(&answer).map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("encoding response: {e}"),
                    )
                })?;
                Ok(json_response(StatusCode::UNPROCESSABLE_ENTITY, body))
            }
            StoreError::Load(LoadError::Input(ref input))
                if !matches!(input, InputError::Sink(_)) =>
            {
                Err(input_refusal(&shown, input))
            }
            StoreError::Load(LoadError::EmptyInput(_)) => Err(ApiError::bad_request(format!(
                "input `{shown}` has no rows; refusing to create an empty version"
            ))),
            e => Err(ApiError::from(e)),
        },
    }
}

/// Seconds a client is asked to wait (`Retry-After`) before pushing again while the
/// stream writer cannot write.
pub const PUSH_RETRY_AFTER_SECS: u32 = 1;

/// `GET /readyz`: 200 `ok` while the store can serve reads and take pushes; 503 with
/// the reason while the stream writer cannot write (reads are still served).
pub fn readiness(store: &FeatureStore) -> HttpResponse {
    let health = store.stream_writer_health();
    if health.healthy {
        return response(StatusCode::OK, "text/plain; charset=utf-8", "ok");
    }
    let mut resp = response(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        format!("not ready: {}\n", health.describe()),
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(PUSH_RETRY_AFTER_SECS),
    );
    resp
}

/// The HTTP status of a failed push: 400 for the caller's mistakes, 503 while the
/// stream writer cannot write (push again later), 500 otherwise.
pub fn push_error_status(e: &PushError) -> StatusCode {
    if matches!(e, PushError::Denied(_)) {
        StatusCode::FORBIDDEN
    } else if e.is_client_error() {
        StatusCode::BAD_REQUEST
    } else if e.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The response of a failed push: `{"error", "rejected": [{"index", "reason"}..]}`.
pub fn push_error_response(e: &PushError) -> HttpResponse {
    let status = push_error_status(e);
    if status.is_server_error() {
        tracing::error!(error = %e, "push failed");
    }
    let rejected = match e {
        PushError::Rejected { rejections, .. } => rejections.as_slice(),
        _ => &[],
    };
    let mut resp = match crate::api::error::push_error_body(&e.to_string(), rejected) {
        Ok(body) => json_response(status, body),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding response: {e}"),
        )
        .into_response(),
    };
    if e.is_unavailable() {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(PUSH_RETRY_AFTER_SECS),
        );
    }
    resp
}

/// `POST /v1/push`: all events applied (200 with counts), or none (400 listing every
/// bad event).
async fn push(state: &AppState, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let caller = super::access::caller_of(&req);
    let body = read_body(state, Route::Push, req).await?;
    let store = state.store.clone();
    // The body (and the memory and slot it holds) lives until the push is done.
    let result = run_blocking(move || {
        let check = |def: &crate::registry::FeatureDefinition| caller.check_push(def);
        let check: Option<crate::store::PushCheck<'_>> =
            (!caller.pushes_anything()).then_some(&check);
        store.push_json_checked(&body, check)
    })
    .await?;
    match result {
        Ok(outcome) => ok_json(&PushAnswer::from(outcome)),
        Err(e) => Ok(push_error_response(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses() {
        let cases = [
            (StoreError::UnknownGroup("g".into()), 404),
            (
                StoreError::UnknownVersion {
                    group: "g".into(),
                    version: 9,
                },
                404,
            ),
            (StoreError::invalid_definition("bad"), 400),
            (
                StoreError::Load(LoadError::Refused {
                    gate: "validation".into(),
                    group: "g".into(),
                    version: 2,
                    reason: "null rate 0.9 above 0.1".into(),
                }),
                422,
            ),
            (
                StoreError::Load(LoadError::EmptyInput("/x.csv".into())),
                400,
            ),
            (
                StoreError::Load(LoadError::Input(InputError::BadSchema {
                    path: "/x.csv".into(),
                    reason: "no entity_id".into(),
                })),
                400,
            ),
            (
                StoreError::Load(LoadError::Input(InputError::Sink("disk full".into()))),
                500,
            ),
            (
                StoreError::VersionNotReady {
                    group: "g".into(),
                    version: 2,
                },
                409,
            ),
            (StoreError::NoPreviousVersion("g".into()), 409),
            (StoreError::Load(LoadError::TooLarge), 500),
            (
                StoreError::Io {
                    context: "create".into(),
                    source: std::io::Error::other("boom"),
                },
                500,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(store_error_status(&error).as_u16(), status, "{error}");
        }
    }

    #[test]
    fn read_errors_map_to_statuses() {
        assert_eq!(
            read_error_status(&ReadError::UnknownEntityType("x".into())),
            404
        );
        assert_eq!(
            read_error_status(&ReadError::UnknownFeature("f".into())),
            404
        );
        assert_eq!(
            read_error_status(&ReadError::WrongEntityType {
                feature: "f".into(),
                expected: "user".into(),
                requested: "product".into(),
            }),
            404
        );
        assert_eq!(
            read_error_status(&ReadError::InvalidEntityId(
                crate::registry::Registry::default()
                    .entity_id_rule("product")
                    .check(b"")
                    .expect_err("empty")
            )),
            400
        );
        assert_eq!(read_error_status(&ReadError::NoFeatures), 400);
        assert_eq!(read_error_status(&ReadError::Internal("bug".into())), 500);
    }

    #[test]
    fn bad_bodies_are_400_with_the_parsers_reason() {
        for (body, err) in [
            ("42", parse_specs(b"42").expect_err("not definitions")),
            (
                "relative input",
                parse_load("g".into(), br#"{"input":"relative.csv"}"#).expect_err("relative"),
            ),
            ("version", parse_version("x").expect_err("not a number")),
        ] {
            let message = err.0.clone();
            let api = ApiError::from(err);
            assert_eq!(api.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(api.message, message);
        }
    }

    #[test]
    fn names_split_on_commas_and_repeat() {
        let pairs = vec![
            ("names".to_owned(), "a, b,,c".to_owned()),
            ("names".to_owned(), "d@2".to_owned()),
        ];
        assert_eq!(feature_names(&pairs), vec!["a", "b", "c", "d@2"]);
        assert!(feature_names(&[("names".to_owned(), " , ".to_owned())]).is_empty());
    }

    #[test]
    fn error_responses_are_json() {
        let resp = method_not_allowed("PUT", "/v1/groups", "GET");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let resp = not_found("/nope");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
