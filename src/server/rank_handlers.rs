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
//! with `"service": "ranker_v3"` (or `"ranker_v3@2"`) instead of `features`. The answer
//! is JSON ([`super::rank_json`]), or the binary encoding ([`super::rank_binary`]) when
//! the `Accept` header names [`BINARY_CONTENT_TYPE`]. The read runs inline on the
//! connection's task, like single-entity reads: it takes no lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::handlers::{
    ApiError, AppState, HttpResponse, blocking, json_response, ok_json, read_body,
    read_error_status, request_timing, response,
};
use super::rank_json::{BINARY_CONTENT_TYPE, encode_json};
use super::refusal::{Refusal, Refused};
use super::router::Route;
use crate::registry::file::RegistryObjects;
use crate::registry::service::ServiceDefinition;
use crate::store::rank::{FeatureSelection, RankError, RankRequest};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatesBody {
    entity_type: String,
    ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RankBody {
    #[serde(default)]
    context: BTreeMap<String, String>,
    candidates: CandidatesBody,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    deadline_ms: Option<u64>,
}

/// Parses a `POST /v1/rank` body.
pub fn parse_rank(body: &[u8]) -> Result<RankRequest, ApiError> {
    let body: RankBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid ranking request: {e}")))?;
    let features = match (body.features, body.service) {
        (Some(names), None) => FeatureSelection::Names(names),
        (None, Some(service)) => FeatureSelection::Service(service),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either `features` or `service`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "give `features` (a list of names) or `service`",
            ));
        }
    };
    Ok(RankRequest {
        context: body.context.into_iter().collect(),
        candidate_type: body.candidates.entity_type,
        candidates: body.candidates.ids,
        features,
        deadline: body.deadline_ms.map(std::time::Duration::from_millis),
    })
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
    let body = read_body(state, Route::Rank, req).await?;
    let mut request = parse_rank(&body)?;
    request.deadline =
        remaining_deadline(&request, timing.arrived, timing.deadline, Instant::now())?;
    let answer = state.store.rank(request)?;
    drop(body);
    let mut resp = if binary {
        response(
            StatusCode::OK,
            BINARY_CONTENT_TYPE,
            super::rank_binary::encode(&answer),
        )
    } else {
        json_response(StatusCode::OK, encode_json(&answer))
    };
    vary_accept(&mut resp);
    Ok(resp)
}

fn version_param(text: &str) -> Result<u32, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("version `{text}` is not a number")))
}

fn take(params: &mut [String], index: usize) -> String {
    params
        .get_mut(index)
        .map(std::mem::take)
        .unwrap_or_default()
}

#[derive(Serialize)]
struct ServiceListing<'a> {
    live: bool,
    #[serde(flatten)]
    def: &'a ServiceDefinition,
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
            let body = read_body(state, Route::ApplyRegistry, req).await?;
            let objects: RegistryObjects = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid registry objects: {e}")))?;
            if objects.is_empty() {
                return Err(ApiError::bad_request("no registry objects given"));
            }
            let store = state.store.clone();
            let report = blocking(move || store.apply_objects(objects)).await?;
            drop(body);
            ok_json(&report)
        }
        Route::DeleteDefinition => {
            let name = take(&mut params, 0);
            let version = version_param(&take(&mut params, 1))?;
            let store = state.store.clone();
            let deleted = format!("{name}@{version}");
            blocking(move || store.delete_feature(&name, version)).await?;
            ok_json(&serde_json::json!({ "deleted": deleted }))
        }
        Route::ListEntityTypes => {
            let registry = state.store.registry();
            ok_json(&serde_json::json!({ "entity_types": registry.catalog().entity_types() }))
        }
        Route::ListOnDemand => {
            let registry = state.store.registry();
            ok_json(&serde_json::json!({ "on_demand": registry.catalog().on_demand() }))
        }
        Route::ListServices => {
            let registry = state.store.registry();
            let services = registry.catalog().services();
            let listing: Vec<ServiceListing<'_>> = services
                .iter()
                .map(|s| ServiceListing {
                    live: s.is_live(),
                    def: s,
                })
                .collect();
            ok_json(&serde_json::json!({ "services": listing }))
        }
        Route::RetireService => {
            let name = take(&mut params, 0);
            let version = version_param(&take(&mut params, 1))?;
            let store = state.store.clone();
            ok_json(&blocking(move || store.retire_service(&name, version)).await?)
        }
        Route::Lineage => ok_json(&serde_json::json!({ "features": state.store.lineage() })),
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
    fn rank_bodies_parse() {
        let req = parse_rank(
            br#"{"context":{"user":"u1","retailer":"r9"},"candidates":{"entity_type":"product","ids":["p1","p2"]},"features":["a","b"],"deadline_ms":5}"#,
        )
        .expect("parses");
        assert_eq!(
            req.context,
            vec![
                ("retailer".into(), "r9".into()),
                ("user".into(), "u1".into())
            ]
        );
        assert_eq!(req.candidates, vec!["p1", "p2"]);
        assert_eq!(req.deadline, Some(std::time::Duration::from_millis(5)));
        let req = parse_rank(
            br#"{"candidates":{"entity_type":"product","ids":[]},"service":"ranker_v3@2"}"#,
        )
        .expect("service");
        assert_eq!(
            req.features,
            FeatureSelection::Service("ranker_v3@2".into())
        );
    }

    #[test]
    fn ranking_deadlines_count_from_arrival() {
        let arrived = Instant::now();
        let ms = Duration::from_millis;
        let with = |deadline: Option<u64>| RankRequest {
            deadline: deadline.map(ms),
            ..parse_rank(br#"{"candidates":{"entity_type":"p","ids":[]},"features":["a"]}"#)
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

    #[test]
    fn bad_rank_bodies_are_400() {
        for body in [
            "",
            "{}",
            r#"{"candidates":{"entity_type":"p","ids":[]}}"#,
            r#"{"candidates":{"entity_type":"p","ids":[]},"features":["a"],"service":"s"}"#,
            r#"{"candidates":{"entity_type":"p","ids":[1]},"features":["a"]}"#,
            r#"{"candidates":{"entity_type":"p","ids":[]},"features":["a"],"typo":1}"#,
        ] {
            let err = parse_rank(body.as_bytes()).expect_err(body);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
        }
    }
}
