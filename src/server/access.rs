//! The server's side of access control (`crate::auth`): which scope each route needs,
//! who the caller of a request is, and the 401 and 403 answers.
//!
//! Dispatch calls [`authorize`] once a route matched and before admission reads any
//! body: an unauthenticated request costs no body read and no work slot. The caller
//! ([`Caller`]) rides in the request's extensions; handlers ask it about features
//! (reads go through its read guard, pushes through [`Caller::check_push`]).
//!
//! Thread-safety: stateless; the token set is `crate::auth::Auth`'s.

use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use super::handlers::{ApiError, HttpResponse};
use super::router::Route;
use crate::auth::{AuthError, Principal, Scope};
use crate::query::guard::{ReadDenied, ReadGuard};
use crate::registry::FeatureDefinition;

/// The scope a route needs; `None`: answered to anyone (health checks, metrics and
/// the API description, which carry no feature values).
pub fn required_scope(route: Route) -> Option<Scope> {
    match route {
        Route::Healthz | Route::Readyz | Route::Metrics | Route::OpenApi => None,
        Route::GetFeatures
        | Route::ListDefinitions
        | Route::ListGroups
        | Route::GroupVersions
        | Route::VersionStats
        | Route::Rank
        | Route::ListEntityTypes
        | Route::ListOnDemand
        | Route::ListServices
        | Route::Lineage
        | Route::FeatureHealth
        | Route::Ui
        | Route::FeastGetOnlineFeatures => Some(Scope::Read),
        Route::Push | Route::FeastPush | Route::FeastWriteToOnlineStore => Some(Scope::Push),
        Route::ApplyDefinitions
        | Route::Load
        | Route::Activate
        | Route::Rollback
        | Route::DropOldVersions
        | Route::ApplyRegistry
        | Route::DeleteDefinition
        | Route::RetireService
        | Route::ServingLogExport
        | Route::TrainingSets
        | Route::HistoryExports
        | Route::AuditLog
        | Route::DeleteEntity => Some(Scope::Admin),
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The server runs without a token file: everyone may do everything.
    Open,
    /// An authenticated principal of the token file.
    Principal(Arc<Principal>),
}

impl Caller {
    /// The read guard of its reads (`None`: all allowed).
    pub fn guard(&self) -> Option<&dyn ReadGuard> {
        match self {
            Caller::Open => None,
            Caller::Principal(p) => Some(p.as_ref()),
        }
    }

    /// [`guard`](Self::guard), owned: for work that outlives the request's borrow (a
    /// training-set job on the blocking pool).
    pub fn shared_guard(&self) -> Option<Arc<dyn ReadGuard>> {
        match self {
            Caller::Open => None,
            Caller::Principal(p) => Some(p.clone() as Arc<dyn ReadGuard>),
        }
    }

    /// Its id in the audit log (`anonymous` on an open server).
    pub fn id(&self) -> &str {
        match self {
            Caller::Open => "anonymous",
            Caller::Principal(p) => &p.id,
        }
    }

    /// Its team, when it has one.
    pub fn team(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Principal(p) => Some(&p.team),
        }
    }

    /// A 403 naming `def` when it may not read its values.
    pub fn check_read(&self, def: &FeatureDefinition) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Principal(p) => p.check_read(def).map_err(denied),
        }
    }

    /// A 403 naming `def` when it may not push values of it.
    pub fn check_push(&self, def: &FeatureDefinition) -> Result<(), ReadDenied> {
        match self {
            Caller::Open => Ok(()),
            Caller::Principal(p) => p.check_push(def),
        }
    }

    /// True when it may push every feature (no push rule to check).
    pub fn pushes_anything(&self) -> bool {
        matches!(self, Caller::Open)
    }
}

/// The 403 of a denied feature.
pub fn denied(e: ReadDenied) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, e.to_string())
}

/// The outcome of [`authorize`].
#[derive(Debug)]
pub struct Authorized {
    /// Who asked, when known (an authenticated principal, refused or not).
    pub caller: Option<Caller>,
    /// The 401/403 answer of a refused request.
    pub refusal: Option<HttpResponse>,
}

/// The caller of a request for `route`, and its 401/403 answer when it is refused.
pub fn authorize(
    auth: Option<&crate::auth::Auth>,
    route: Route,
    headers: &hyper::HeaderMap,
) -> Authorized {
    let allowed = |caller| Authorized {
        caller: Some(caller),
        refusal: None,
    };
    let Some(auth) = auth else {
        return allowed(Caller::Open);
    };
    let Some(scope) = required_scope(route) else {
        return allowed(Caller::Open);
    };
    let header = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let principal = match auth.authenticate(header, crate::types::now_ms()) {
        Ok(p) => p,
        Err(e) => {
            return Authorized {
                caller: None,
                refusal: Some(unauthorized(e)),
            };
        }
    };
    if !principal.has(scope) {
        let refusal = ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "principal `{}` lacks the `{}` scope that {} {} needs",
                principal.id,
                scope.as_str(),
                route.method(),
                route.template()
            ),
        )
        .into_response();
        return Authorized {
            caller: Some(Caller::Principal(principal)),
            refusal: Some(refusal),
        };
    }
    allowed(Caller::Principal(principal))
}

/// The 401 of a request that is not authenticated, with its `WWW-Authenticate`.
fn unauthorized(e: AuthError) -> HttpResponse {
    let code = match e {
        AuthError::Missing => None,
        AuthError::Malformed => Some("invalid_request"),
        _ => Some("invalid_token"),
    };
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    let challenge = match code {
        None => "Bearer realm=\"featstore\"".to_owned(),
        Some(code) => format!("Bearer realm=\"featstore\", error=\"{code}\""),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    resp
}

/// The caller recorded on a request by dispatch (`Open` when none was).
pub fn caller_of<B>(req: &hyper::Request<B>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_scope_decision() {
        let open: Vec<Route> = Route::ALL
            .into_iter()
            .filter(|r| required_scope(*r).is_none())
            .collect();
        assert_eq!(
            open,
            vec![
                Route::Healthz,
                Route::Readyz,
                Route::Metrics,
                Route::OpenApi
            ]
        );
        for route in Route::ALL {
            if route.method() != hyper::Method::GET && required_scope(route) == Some(Scope::Read) {
                assert!(
                    matches!(route, Route::Rank | Route::FeastGetOnlineFeatures),
                    "{route:?} changes something but needs only read"
                );
            }
        }
    }
}
