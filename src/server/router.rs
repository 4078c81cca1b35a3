//! Route table: matches a method and a raw request path to a [`Route`] and its
//! percent-decoded path parameters.
//!
//! The table is a fixed list of templates (`/v1/groups/{group}/versions`); a `{..}`
//! segment matches any one non-empty segment, except an entity id, which may be empty
//! so that the handler answers 400 naming it rather than a 404. A path that matches some template but
//! not with this method is a 405 (with the methods that would match), one that
//! matches none a 404. Stateless; safe from any thread.

use hyper::Method;

use super::url::{UrlError, percent_decode};

/// An endpoint of the HTTP API. Its [`template`](Route::template) is also the `route`
/// label of the request metrics (never the raw path, which would be unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /v1/features/{entity_type}/{entity_id}?names=..`: one entity's features.
    GetFeatures,
    /// `POST /v1/feature-definitions`: register or update definitions.
    ApplyDefinitions,
    /// `GET /v1/feature-definitions?entity_type=&owner=&tag=&name=&group=`.
    ListDefinitions,
    /// `GET /v1/groups`: groups and their active version.
    ListGroups,
    /// `GET /v1/groups/{group}/versions`.
    GroupVersions,
    /// `POST /v1/groups/{group}/loads`: load a local file as a new version.
    Load,
    /// `POST /v1/groups/{group}/versions/{version}/activate`.
    Activate,
    /// `POST /v1/groups/{group}/rollback`.
    Rollback,
    /// `POST /v1/groups/{group}/drop-old-versions?keep=K`.
    DropOldVersions,
    /// `POST /v1/push`: push streamed events.
    Push,
    /// `POST /v1/rank`: one context, many candidates.
    Rank,
    /// `POST /v1/registry`: register features, composite entity types, on-demand
    /// features and services.
    ApplyRegistry,
    /// `DELETE /v1/feature-definitions/{name}/versions/{version}`.
    DeleteDefinition,
    /// `GET /v1/entity-types`: composite entity types.
    ListEntityTypes,
    /// `GET /v1/on-demand-features`.
    ListOnDemand,
    /// `GET /v1/feature-services`.
    ListServices,
    /// `POST /v1/feature-services/{name}/versions/{version}/retire`.
    RetireService,
    /// `GET /v1/lineage`: which services and on-demand features use which features.
    Lineage,
    /// `GET /healthz`: the process is up.
    Healthz,
    /// `GET /readyz`: the store is open and the stream writer can write.
    Readyz,
    /// `GET /metrics`: Prometheus exposition.
    Metrics,
}

impl Route {
    /// Every route, in match order.
    pub const ALL: [Route; 21] = [
        Route::GetFeatures,
        Route::ApplyDefinitions,
        Route::ListDefinitions,
        Route::ListGroups,
        Route::GroupVersions,
        Route::Load,
        Route::Activate,
        Route::Rollback,
        Route::DropOldVersions,
        Route::Push,
        Route::Rank,
        Route::ApplyRegistry,
        Route::DeleteDefinition,
        Route::ListEntityTypes,
        Route::ListOnDemand,
        Route::ListServices,
        Route::RetireService,
        Route::Lineage,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
    ];

    /// The path template, with `{name}` for each parameter.
    pub fn template(self) -> &'static str {
        match self {
            Route::GetFeatures => "/v1/features/{entity_type}/{entity_id}",
            Route::ApplyDefinitions | Route::ListDefinitions => "/v1/feature-definitions",
            Route::ListGroups => "/v1/groups",
            Route::GroupVersions => "/v1/groups/{group}/versions",
            Route::Load => "/v1/groups/{group}/loads",
            Route::Activate => "/v1/groups/{group}/versions/{version}/activate",
            Route::Rollback => "/v1/groups/{group}/rollback",
            Route::DropOldVersions => "/v1/groups/{group}/drop-old-versions",
            Route::Push => "/v1/push",
            Route::Rank => "/v1/rank",
            Route::ApplyRegistry => "/v1/registry",
            Route::DeleteDefinition => "/v1/feature-definitions/{name}/versions/{version}",
            Route::ListEntityTypes => "/v1/entity-types",
            Route::ListOnDemand => "/v1/on-demand-features",
            Route::ListServices => "/v1/feature-services",
            Route::RetireService => "/v1/feature-services/{name}/versions/{version}/retire",
            Route::Lineage => "/v1/lineage",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
        }
    }

    /// The method the route answers.
    pub fn method(self) -> Method {
        match self {
            Route::ApplyDefinitions
            | Route::Load
            | Route::Activate
            | Route::Rollback
            | Route::DropOldVersions
            | Route::Push
            | Route::Rank
            | Route::ApplyRegistry
            | Route::RetireService => Method::POST,
            Route::DeleteDefinition => Method::DELETE,
            Route::GetFeatures
            | Route::ListDefinitions
            | Route::ListGroups
            | Route::GroupVersions
            | Route::ListEntityTypes
            | Route::ListOnDemand
            | Route::ListServices
            | Route::Lineage
            | Route::Healthz
            | Route::Readyz
            | Route::Metrics => Method::GET,
        }
    }

    /// True for a parameter that may be an empty segment: the entity id, which the
    /// store's id check refuses with a message naming it.
    fn may_be_empty(self, param: &str) -> bool {
        self == Route::GetFeatures && param == "{entity_id}"
    }

    /// Health checks and metrics: answered whatever the load (never queued or refused
    /// by admission) and on the connections beyond the cap.
    pub fn is_health_check(self) -> bool {
        matches!(self, Route::Healthz | Route::Readyz | Route::Metrics)
    }

    /// Routes whose handler reads a request body (they take their work slot after it).
    pub fn reads_body(self) -> bool {
        matches!(
            self,
            Route::ApplyDefinitions
                | Route::Load
                | Route::Push
                | Route::Rank
                | Route::ApplyRegistry
        )
    }

    /// The raw (still percent-encoded) parameters of `path` if it fits the template.
    fn match_path(self, path: &str) -> Option<Vec<&str>> {
        let mut params = Vec::new();
        let mut want = self.template().split('/');
        let mut have = path.split('/');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return Some(params),
                (Some(w), Some(h)) if w.starts_with('{') => {
                    if h.is_empty() && !self.may_be_empty(w) {
                        return None;
                    }
                    params.push(h);
                }
                (Some(w), Some(h)) if w == h => {}
                _ => return None,
            }
        }
    }
}

/// The outcome of matching a request line against the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match<'a> {
    /// A route answers; its parameters in template order, still percent-encoded.
    Found {
        /// The route.
        route: Route,
        /// Raw parameter segments; decode with [`decode_params`].
        params: Vec<&'a str>,
    },
    /// The path exists but not for this method.
    MethodNotAllowed {
        /// Template of the path (the metrics label).
        template: &'static str,
        /// Value for the `Allow` header, e.g. `GET, POST`.
        allow: String,
    },
    /// No route has this path.
    NotFound,
}

/// Matches `method` and the raw `path` (without query) against the route table.
pub fn match_route<'a>(method: &Method, path: &'a str) -> Match<'a> {
    let mut allowed: Vec<Method> = Vec::new();
    let mut template = None;
    for route in Route::ALL {
        let Some(params) = route.match_path(path) else {
            continue;
        };
        let route_method = route.method();
        if route_method == *method {
            return Match::Found { route, params };
        }
        template.get_or_insert(route.template());
        if !allowed.contains(&route_method) {
            allowed.push(route_method);
        }
    }
    match template {
        Some(template) => Match::MethodNotAllowed {
            template,
            allow: allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        },
        None => Match::NotFound,
    }
}

/// Percent-decodes path parameters (`+` stays `+`; `%2F` becomes `/`).
pub fn decode_params(params: &[&str]) -> Result<Vec<String>, UrlError> {
    params.iter().map(|p| percent_decode(p, false)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: Method, path: &str) -> (Route, Vec<&str>) {
        match match_route(&method, path) {
            Match::Found { route, params } => (route, params),
            other => panic!("{method} {path}: expected a route, got {other:?}"),
        }
    }

    #[test]
    fn every_route_matches_its_own_template() {
        for route in Route::ALL {
            let path = route.template().replace('{', "x").replace('}', "");
            let (matched, _) = found(route.method(), &path);
            assert_eq!(matched, route, "{path}");
        }
    }

    #[test]
    fn parameters_are_extracted_in_order() {
        assert_eq!(
            found(Method::GET, "/v1/features/product/p%2F1"),
            (Route::GetFeatures, vec!["product", "p%2F1"])
        );
        assert_eq!(
            found(Method::POST, "/v1/groups/product_daily/versions/3/activate"),
            (Route::Activate, vec!["product_daily", "3"])
        );
        assert_eq!(
            found(Method::GET, "/v1/groups/product_daily/versions"),
            (Route::GroupVersions, vec!["product_daily"])
        );
        assert_eq!(
            found(Method::POST, "/v1/groups/g/drop-old-versions"),
            (Route::DropOldVersions, vec!["g"])
        );
    }

    #[test]
    fn one_path_two_methods() {
        assert_eq!(
            found(Method::GET, "/v1/feature-definitions").0,
            Route::ListDefinitions
        );
        assert_eq!(
            found(Method::POST, "/v1/feature-definitions").0,
            Route::ApplyDefinitions
        );
        assert_eq!(
            match_route(&Method::DELETE, "/v1/feature-definitions"),
            Match::MethodNotAllowed {
                template: "/v1/feature-definitions",
                allow: "POST, GET".to_owned(),
            }
        );
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        assert_eq!(
            match_route(&Method::POST, "/v1/features/product/p1"),
            Match::MethodNotAllowed {
                template: "/v1/features/{entity_type}/{entity_id}",
                allow: "GET".to_owned(),
            }
        );
        assert_eq!(
            match_route(&Method::GET, "/v1/groups/g/rollback"),
            Match::MethodNotAllowed {
                template: "/v1/groups/{group}/rollback",
                allow: "POST".to_owned(),
            }
        );
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in [
            "/",
            "",
            "/v1",
            "/v1/features/product",
            "/v1/features/product/p1/extra",
            "/v1/features//p1",
            "/healthz/",
            "/v2/groups",
            "/v1/groups/g/versions/3",
            "/v1/groups//versions",
        ] {
            assert_eq!(match_route(&Method::GET, path), Match::NotFound, "{path}");
            assert_eq!(match_route(&Method::POST, path), Match::NotFound, "{path}");
        }
    }

    #[test]
    fn an_empty_entity_id_reaches_the_handler() {
        // Issue 12: the handler answers 400 naming the (empty) id, not 404.
        assert_eq!(
            found(Method::GET, "/v1/features/product/"),
            (Route::GetFeatures, vec!["product", ""])
        );
        assert_eq!(
            match_route(&Method::GET, "/v1/groups//versions"),
            Match::NotFound
        );
    }

    #[test]
    fn params_decode_after_splitting() {
        assert_eq!(
            decode_params(&["product", "a%2Fb+c"]),
            Ok(vec!["product".to_owned(), "a/b+c".to_owned()])
        );
        assert!(decode_params(&["%zz"]).is_err());
    }
}
