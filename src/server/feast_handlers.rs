//! Handlers of the Feast-compatible routes (`/get-online-features`, `/push`,
//! `/write-to-online-store`) and of `/openapi.json`.
//!
//! The mapping is `crate::api::feast` and `crate::api::feast_push`; here the body is
//! read within the server's limits, the store called, and every failure answered in
//! Feast's error shape ([`FeastError::body`]) so the Feast SDK raises its own
//! exceptions. Refusals by admission and the memory budget (before the body is read)
//! keep featstore's `{"error"}` body, which the SDK reports as a `RuntimeError` with
//! the status; a 503 carries `Retry-After`.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};

use super::handlers::{
    ApiError, AppState, HttpResponse, PUSH_RETRY_AFTER_SECS, json_response, ok_json,
    push_error_status, read_body, response,
};
use super::router::Route;
use crate::api::feast::{self, FeastError};
use crate::api::feast_push::{PushKind, parse_push};
use crate::api::push::PushAnswer;
use crate::store::PushError;

fn feast_error(e: &FeastError) -> HttpResponse {
    if e.status.is_server_error() {
        tracing::error!(status = e.status.as_u16(), error = %e.message, "Feast request failed");
    }
    json_response(e.status, e.body())
}

async fn get_online_features(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let request_id = req
        .extensions()
        .get::<crate::servelog::request_id::RequestId>()
        .cloned();
    let caller = super::access::caller_of(&req);
    let body = read_body(state, Route::FeastGetOnlineFeatures, req).await?;
    let context = crate::store::ReadContext {
        request_id: request_id.as_ref().map(|r| r.0.as_str()),
        route: "feast",
        guard: caller.guard(),
    };
    let answer = feast::parse_request(&body).and_then(|request| {
        let registry = state.store.registry();
        let mut plan = feast::plan(&registry, request)?;
        let requests = plan.take_requests();
        let answers = state.store.rank_all_in(context, requests)?;
        feast::encode(&plan, &answers)
    });
    drop(body);
    Ok(match answer {
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(e) => feast_error(&e),
    })
}

fn push_failure(e: &PushError) -> HttpResponse {
    let status = push_error_status(e);
    let mut message = e.to_string();
    if let PushError::Rejected { rejections, .. } = e {
        for r in rejections.iter().take(20) {
            message.push_str(&format!("; row {}: {}", r.index, r.reason));
        }
    }
    let mut resp = feast_error(&FeastError::new(status, "FeastError", message));
    if e.is_unavailable() {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(PUSH_RETRY_AFTER_SECS),
        );
    }
    resp
}

async fn push(
    state: &AppState,
    route: Route,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let kind = match route {
        Route::FeastPush => PushKind::Push,
        _ => PushKind::WriteToOnlineStore,
    };
    let caller = super::access::caller_of(&req);
    let body = read_body(state, route, req).await?;
    let events = match parse_push(&state.store.registry(), kind, &body) {
        Ok(events) => events,
        Err(e) => return Ok(feast_error(&e)),
    };
    drop(body);
    let store = state.store.clone();
    let result = super::handlers::run_blocking(move || {
        let check = |def: &crate::registry::FeatureDefinition| caller.check_push(def);
        let check: Option<crate::store::PushCheck<'_>> =
            (!caller.pushes_anything()).then_some(&check);
        store.push_checked(events, check)
    })
    .await?;
    match result {
        Ok(outcome) => ok_json(&PushAnswer::from(outcome)),
        Err(e) => Ok(push_failure(&e)),
    }
}

/// Answers the routes of this module.
pub async fn handle(
    state: &AppState,
    route: Route,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    match route {
        Route::FeastGetOnlineFeatures => get_online_features(state, req).await,
        Route::FeastPush | Route::FeastWriteToOnlineStore => push(state, route, req).await,
        _ => Ok(response(
            StatusCode::OK,
            "application/json",
            crate::api::openapi::OPENAPI_JSON,
        )),
    }
}
