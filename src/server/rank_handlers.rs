//! Handlers of the ranking endpoint and of the registry objects it serves (composite
//! entity types, on-demand features, feature services, lineage, deletion).
//!
//! `POST /v1/rank` body:
//!
//! ```json
//! {"context": {"user": "u1", "retailer": "r9"},
//!  "candidates": {"entity_type": "product", "ids": ["p1", "p2"]},
//!  "features": ["product_ctr", "user_product_sim"],
//!  "deadline_ms": 5}
//! ```
//!
//! with `"service": "ranker_v3"` (or `"ranker_v3@2"`) instead of `features`
//! ([`crate::api::rank::RankBody`]). The answer is JSON ([`crate::api::rank_json`]), or
//! the binary encoding ([`crate::api::rank_binary`]) when the `Accept` header names
//! [`BINARY_CONTENT_TYPE`]. The read runs inline on the
//! connection's task, like single-entity reads: it takes no lock.

use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};

use super::handlers::{
    ApiError, AppState, HttpResponse, blocking, json_response, ok_json, read_body,
    read_error_status, request_timing, response,
};
use super::refusal::{Refusal, Refused};
use super::router::Route;
use crate::api::rank::parse_rank_as_of;
use crate::api::rank_json::{BINARY_CONTENT_TYPE, encode_json};
use crate::api::registry::{
    Deleted, EntityTypeList, Lineage, OnDemandList, RegistryApplyReport, ServiceEntry, ServiceList,
    parse_object_version, parse_registry_objects, sorted_json,
};
use crate::query::rank::{RankError, RankRequest};

impl From<RankError> for ApiError {
    fn from(e: RankError) -> Self {
        let status = match &e {
            RankError::Read(read) => read_error_status(read),
            RankError::UnknownService(_) => StatusCode::NOT_FOUND,
            RankError::RetiredService(_) => StatusCode::GONE,
            _ if e.is_client_error() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn wants_binary(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(BINARY_CONTENT_TYPE))
}

/// The deadline left to a ranking read that starts now: its own `deadline_ms` and the
/// deadline header both count from arrival. `Err` when one had passed before the read
/// could start; `deadline_ms: 0` keeps its meaning (fetch nothing) and is never refused.
fn remaining_deadline(
    request: &RankRequest,
    arrived: Instant,
    header: Option<Instant>,
    now: Instant,
) -> Result<Option<Duration>, Refused> {
    let passed = || Refused {
        reason: Refusal::Deadline,
        message: "the request's deadline passed before it could be started".into(),
    };
    let own = match request.deadline {
        Some(d) if d.is_zero() => return Ok(Some(Duration::ZERO)),
        Some(d) => Some(arrived + d),
        None => None,
    };
    let until = match (own, header) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match until {
        None => Ok(None),
        Some(until) if until <= now => Err(passed()),
        Some(until) => Ok(Some(until - now)),
    }
}

async fn rank(state: &AppState, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let binary = wants_binary(&req);
    let timing = request_timing(&req);
    let request_id = req
        .extensions()
        .get::<crate::servelog::request_id::RequestId>()
        .cloned();
    let caller = super::access::caller_of(&req);
    let body = read_body(state, Route::Rank, req).await?;
    let (mut request, as_of) = parse_rank_as_of(&body)?;
    request.deadline =
        remaining_deadline(&request, timing.arrived, timing.deadline, Instant::now())?;
    let context = crate::store::ReadContext {
        request_id: request_id.as_ref().map(|r| r.0.as_str()),
        route: "rank",
        guard: caller.guard(),
    };
    // An as-of read answers from the history; it is not a served read (no observer,
    // no serving log).
    let answer = match as_of {
        Some(at) => std::sync::Arc::new(state.store.rank_as_of(request, at, caller.guard())?),
        None => state.store.rank_in(context, request)?,
    };
    drop(body);
    let mut resp = if binary {
        response(
            StatusCode::OK,
            BINARY_CONTENT_TYPE,
            crate::api::rank_binary::encode(&answer),
        )
    } else {
        json_response(StatusCode::OK, encode_json(&answer))
    };
    vary_accept(&mut resp);
    Ok(resp)
}

fn version_param(text: &str) -> Result<u32, ApiError> {
    Ok(parse_object_version(text)?)
}

fn take(params: &mut [String], index: usize) -> String {
    params
        .get_mut(index)
        .map(std::mem::take)
        .unwrap_or_default()
}

/// A 200 JSON response of `value` with its object keys sorted (see
/// [`sorted_json`]).
fn ok_sorted_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<HttpResponse, ApiError> {
    let body = sorted_json(value).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding response: {e}"),
        )
    })?;
    Ok(json_response(StatusCode::OK, body))
}

/// Answers the routes of this module.
pub async fn handle(
    state: &AppState,
    route: Route,
    mut params: Vec<String>,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    match route {
        Route::Rank => rank(state, req).await,
        Route::ApplyRegistry => {
            let caller = super::access::caller_of(&req);
            let body = read_body(state, Route::ApplyRegistry, req).await?;
            let objects = parse_registry_objects(&body)?;
            super::handlers::check_owners(state, &caller, &objects.feature, &objects.service)?;
            let store = state.store.clone();
            let report = blocking(move || store.apply_objects(objects)).await?;
            drop(body);
            ok_json(&RegistryApplyReport::from(report))
        }
        Route::DeleteDefinition => {
            let name = take(&mut params, 0);
            let version = version_param(&take(&mut params, 1))?;
            let store = state.store.clone();
            let deleted = format!("{name}@{version}");
            blocking(move || store.delete_feature(&name, version)).await?;
            ok_sorted_json(&Deleted { deleted })
        }
        Route::ListEntityTypes => {
            let registry = state.store.registry();
            let entity_types = registry.catalog().entity_types();
            ok_sorted_json(&EntityTypeList {
                entity_types: entity_types.iter().map(|e| e.as_ref().clone()).collect(),
            })
        }
        Route::ListOnDemand => {
            let registry = state.store.registry();
            let on_demand = registry.catalog().on_demand();
            ok_sorted_json(&OnDemandList {
                on_demand: on_demand.iter().map(|d| d.as_ref().clone()).collect(),
            })
        }
        Route::ListServices => {
            let registry = state.store.registry();
            let services = registry.catalog().services();
            ok_sorted_json(&ServiceList {
                services: services
                    .iter()
                    .map(|s| ServiceEntry {
                        live: s.is_live(),
                        service: s.as_ref().clone(),
                    })
                    .collect(),
            })
        }
        Route::RetireService => {
            let name = take(&mut params, 0);
            let version = version_param(&take(&mut params, 1))?;
            let store = state.store.clone();
            ok_json(&blocking(move || store.retire_service(&name, version)).await?)
        }
        Route::Lineage => ok_sorted_json(&Lineage {
            features: state.store.lineage().into_iter().map(Into::into).collect(),
        }),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("route {} is not handled here", route.template()),
        )),
    }
}

/// `Vary: Accept` for responses whose encoding depends on it.
fn vary_accept(resp: &mut HttpResponse) {
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_deadlines_count_from_arrival() {
        let arrived = Instant::now();
        let ms = Duration::from_millis;
        let with = |deadline: Option<u64>| RankRequest {
            deadline: deadline.map(ms),
            ..crate::api::rank::parse_rank(
                br#"{"candidates":{"entity_type":"p","ids":[]},"features":["a"]}"#,
            )
            .expect("parses")
        };
        // 3 ms of a 10 ms deadline spent waiting: 7 ms left for the read.
        assert_eq!(
            remaining_deadline(&with(Some(10)), arrived, None, arrived + ms(3)),
            Ok(Some(ms(7)))
        );
        // The header's deadline is earlier.
        assert_eq!(
            remaining_deadline(
                &with(Some(10)),
                arrived,
                Some(arrived + ms(5)),
                arrived + ms(3)
            ),
            Ok(Some(ms(2)))
        );
        assert_eq!(
            remaining_deadline(&with(None), arrived, Some(arrived + ms(5)), arrived + ms(3)),
            Ok(Some(ms(2)))
        );
        // Passed while queued: refused without work.
        let refused = remaining_deadline(&with(Some(10)), arrived, None, arrived + ms(10))
            .expect_err("passed");
        assert_eq!(refused.reason, Refusal::Deadline);
        // 0 means "fetch nothing", whatever the wait.
        assert_eq!(
            remaining_deadline(&with(Some(0)), arrived, None, arrived + ms(50)),
            Ok(Some(Duration::ZERO))
        );
        assert_eq!(
            remaining_deadline(&with(None), arrived, None, arrived + ms(50)),
            Ok(None)
        );
    }
}
