//! The OpenAPI 3.1 description of the HTTP API: `docs/openapi.json`, compiled in and
//! served at `GET /openapi.json`.
//!
//! Invariant: the document's paths and methods are exactly the routes of
//! [`super::routes::Route::ALL`] (a test below compares them), so a route added or
//! removed without the document fails the build's tests.

/// `docs/openapi.json`, as served.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::routes::Route;

    #[test]
    fn the_document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
            Some(true)
        );
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    documented.insert((path.clone(), method.to_uppercase()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = Route::ALL
            .iter()
            .map(|r| (r.template().to_owned(), r.method().as_str().to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }
}
