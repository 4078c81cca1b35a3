//! Route table: matches a method and a raw request path to a [`Route`] and its
//! percent-decoded path parameters.
//!
//! The table is [`Route::ALL`], defined in [`crate::api::routes`] with the path
//! builders the client uses, so both sides share one list of templates (`/v1/groups/{group}/versions`); a `{..}`
//! segment matches any one non-empty segment, except an entity id, which may be empty
//! so that the handler answers 400 naming it rather than a 404. A path that matches some template but
//! not with this method is a 405 (with the methods that would match), one that
//! matches none a 404. Stateless; safe from any thread.

use hyper::Method;

use super::url::{UrlError, percent_decode};

pub use crate::api::routes::Route;

/// The server's side of each route: how its path matches, and how dispatch treats it.
/// The routes themselves (templates, methods) are defined in [`crate::api::routes`].
impl Route {
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
                | Route::Activate
                | Route::Push
                | Route::Rank
                | Route::ApplyRegistry
                | Route::FeastGetOnlineFeatures
                | Route::FeastPush
                | Route::FeastWriteToOnlineStore
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

    /// The server decodes what the client's path builders encode: the same route,
    /// the same parameters, the same query values.
    #[test]
    fn the_clients_paths_match_their_routes() {
        use crate::api::paths;
        use crate::registry::DefinitionFilter;
        let odd = "a/b c?d%e+f#g|h\u{e9}";
        let cases: Vec<(String, Route, Vec<&str>)> = vec![
            (
                paths::features("product", odd, &["x", "y@2"]),
                Route::GetFeatures,
                vec!["product", odd],
            ),
            (paths::apply_definitions(), Route::ApplyDefinitions, vec![]),
            (
                paths::definitions(&DefinitionFilter {
                    owner: Some(odd.into()),
                    ..DefinitionFilter::default()
                }),
                Route::ListDefinitions,
                vec![],
            ),
            (paths::groups(), Route::ListGroups, vec![]),
            (paths::versions(odd), Route::GroupVersions, vec![odd]),
            (paths::load(odd), Route::Load, vec![odd]),
            (paths::activate(odd, 7), Route::Activate, vec![odd, "7"]),
            (paths::rollback(odd), Route::Rollback, vec![odd]),
            (
                paths::version_stats(odd, 4),
                Route::VersionStats,
                vec![odd, "4"],
            ),
            (
                paths::drop_old_versions(odd, Some(2)),
                Route::DropOldVersions,
                vec![odd],
            ),
            (paths::push(), Route::Push, vec![]),
            (paths::rank(), Route::Rank, vec![]),
            (paths::apply_registry(), Route::ApplyRegistry, vec![]),
            (
                paths::delete_definition(odd, 3),
                Route::DeleteDefinition,
                vec![odd, "3"],
            ),
            (paths::entity_types(), Route::ListEntityTypes, vec![]),
            (paths::on_demand(), Route::ListOnDemand, vec![]),
            (paths::services(), Route::ListServices, vec![]),
            (
                paths::retire_service(odd, 1),
                Route::RetireService,
                vec![odd, "1"],
            ),
            (paths::lineage(), Route::Lineage, vec![]),
            (paths::serving_log_export(), Route::ServingLogExport, vec![]),
            (paths::training_sets(), Route::TrainingSets, vec![]),
            (paths::history_exports(), Route::HistoryExports, vec![]),
            (paths::feature_health(), Route::FeatureHealth, vec![]),
            (paths::ui(Some(odd)), Route::Ui, vec![]),
            (paths::healthz(), Route::Healthz, vec![]),
            (paths::readyz(), Route::Readyz, vec![]),
            (paths::metrics(), Route::Metrics, vec![]),
            (
                paths::feast_get_online_features(),
                Route::FeastGetOnlineFeatures,
                vec![],
            ),
            (paths::feast_push(), Route::FeastPush, vec![]),
            (
                paths::feast_write_to_online_store(),
                Route::FeastWriteToOnlineStore,
                vec![],
            ),
            (paths::openapi(), Route::OpenApi, vec![]),
            (paths::audit(Some(3), None), Route::AuditLog, vec![]),
            (
                paths::delete_entity(odd, odd, false),
                Route::DeleteEntity,
                vec![odd, odd],
            ),
        ];
        let mut seen: Vec<Route> = cases.iter().map(|c| c.1).collect();
        seen.dedup();
        assert_eq!(seen, Route::ALL.to_vec(), "one case per route, in order");
        for (path_and_query, route, want) in &cases {
            let (path, query) = match path_and_query.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (path_and_query.as_str(), None),
            };
            let (matched, raw) = found(route.method(), path);
            assert_eq!(matched, *route, "{path_and_query}");
            assert_eq!(
                decode_params(&raw).expect("decodes"),
                *want,
                "{path_and_query}"
            );
            let pairs = super::super::url::parse_query(query).expect("query decodes");
            match route {
                Route::GetFeatures => {
                    assert_eq!(pairs, vec![("names".to_owned(), "x,y@2".to_owned())]);
                }
                Route::ListDefinitions => {
                    assert_eq!(pairs, vec![("owner".to_owned(), odd.to_owned())]);
                }
                Route::DropOldVersions => {
                    assert_eq!(pairs, vec![("keep".to_owned(), "2".to_owned())]);
                }
                Route::Ui => {
                    assert_eq!(pairs, vec![("group".to_owned(), odd.to_owned())]);
                }
                Route::AuditLog => {
                    assert_eq!(pairs, vec![("after".to_owned(), "3".to_owned())]);
                }
                Route::DeleteEntity => {
                    assert_eq!(pairs, vec![("compact".to_owned(), "false".to_owned())]);
                }
                _ => assert!(pairs.is_empty(), "{path_and_query}"),
            }
        }
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
