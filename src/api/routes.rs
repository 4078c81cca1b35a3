//! The routes of the HTTP API, defined once: each [`Route`] names its path template and
//! method, and [`paths`] builds the request path (with its query) of each route from
//! typed arguments. The server matches requests against [`Route::template`]
//! (`server::router`); the client and the CLI build URLs with [`paths`], so a route
//! renamed here changes both, and a route removed breaks the build of both.
//!
//! Builders percent-encode every path parameter and query value with
//! [`encode_component`] (everything but RFC 3986 unreserved characters), so any id —
//! one holding `/`, `?`, `%`, spaces or non-ASCII text — reaches the handler as given.
//!
//! Stateless; safe from any thread.

use hyper::Method;

use crate::registry::DefinitionFilter;

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
    /// `GET /v1/groups/{group}/versions/{version}/stats`: the version's statistics.
    VersionStats,
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
    /// `POST /v1/serving-log/exports`: export the serving log as Parquet (a job that
    /// answers when done).
    ServingLogExport,
    /// `POST /v1/training-sets`: build a point-in-time training set from the history
    /// (a job on the blocking pool that answers when done; files under the data
    /// directory's `exports/`).
    TrainingSets,
    /// `POST /v1/history-exports`: write the history as partitioned Parquet (a job on
    /// the blocking pool that answers when done; under the data directory's
    /// `exports/`).
    HistoryExports,
    /// `GET /v1/health/features`: features breaching their freshness SLO.
    FeatureHealth,
    /// `GET /ui?name=&owner=&tag=&entity_type=&group=`: the built-in page.
    Ui,
    /// `GET /healthz`: the process is up.
    Healthz,
    /// `GET /readyz`: the store is open and the stream writer can write.
    Readyz,
    /// `GET /metrics`: Prometheus exposition.
    Metrics,
    /// `POST /get-online-features`: Feast's online read (`crate::api::feast`).
    FeastGetOnlineFeatures,
    /// `POST /push`: Feast's push (`crate::api::feast_push`).
    FeastPush,
    /// `POST /write-to-online-store`: Feast's online write (`crate::api::feast_push`).
    FeastWriteToOnlineStore,
    /// `GET /openapi.json`: the OpenAPI 3.1 description of this API.
    OpenApi,
    /// `GET /v1/audit?after=&limit=`: the audit log's records (`crate::audit`).
    AuditLog,
    /// `DELETE /v1/entities/{entity_type}/{entity_id}?compact=`: delete every value of
    /// one entity and of the composite entities containing it (`crate::store::erase`).
    DeleteEntity,
}

impl Route {
    /// Every route, in match order.
    pub const ALL: [Route; 33] = [
        Route::GetFeatures,
        Route::ApplyDefinitions,
        Route::ListDefinitions,
        Route::ListGroups,
        Route::GroupVersions,
        Route::Load,
        Route::Activate,
        Route::Rollback,
        Route::VersionStats,
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
        Route::ServingLogExport,
        Route::TrainingSets,
        Route::HistoryExports,
        Route::FeatureHealth,
        Route::Ui,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::FeastGetOnlineFeatures,
        Route::FeastPush,
        Route::FeastWriteToOnlineStore,
        Route::OpenApi,
        Route::AuditLog,
        Route::DeleteEntity,
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
            Route::VersionStats => "/v1/groups/{group}/versions/{version}/stats",
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
            Route::ServingLogExport => "/v1/serving-log/exports",
            Route::TrainingSets => "/v1/training-sets",
            Route::HistoryExports => "/v1/history-exports",
            Route::FeatureHealth => "/v1/health/features",
            Route::Ui => "/ui",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::FeastGetOnlineFeatures => "/get-online-features",
            Route::FeastPush => "/push",
            Route::FeastWriteToOnlineStore => "/write-to-online-store",
            Route::OpenApi => "/openapi.json",
            Route::AuditLog => "/v1/audit",
            Route::DeleteEntity => "/v1/entities/{entity_type}/{entity_id}",
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
            | Route::RetireService
            | Route::ServingLogExport
            | Route::TrainingSets
            | Route::HistoryExports
            | Route::FeastGetOnlineFeatures
            | Route::FeastPush
            | Route::FeastWriteToOnlineStore => Method::POST,
            Route::DeleteDefinition | Route::DeleteEntity => Method::DELETE,
            Route::GetFeatures
            | Route::ListDefinitions
            | Route::ListGroups
            | Route::GroupVersions
            | Route::VersionStats
            | Route::ListEntityTypes
            | Route::ListOnDemand
            | Route::ListServices
            | Route::Lineage
            | Route::FeatureHealth
            | Route::Ui
            | Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::OpenApi
            | Route::AuditLog => Method::GET,
        }
    }

    /// The number of `{..}` parameters of the template.
    pub fn param_count(self) -> usize {
        self.template().matches('{').count()
    }

    /// The template with each `{..}` segment replaced, in order, by the next of
    /// `params`, percent-encoded. The typed builders of [`paths`] are the way to call
    /// it; a parameter missing from `params` is left empty.
    fn fill(self, params: &[&str]) -> String {
        let mut params = params.iter();
        let mut out = String::with_capacity(self.template().len() + 16);
        for (i, segment) in self.template().split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if segment.starts_with('{') {
                out.push_str(&encode_component(params.next().copied().unwrap_or("")));
            } else {
                out.push_str(segment);
            }
        }
        out
    }
}

/// Percent-encodes `text` for one path segment or query value: every byte outside the
/// RFC 3986 unreserved set (`A-Z a-z 0-9 - _ . ~`) becomes `%XX`.
pub fn encode_component(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

/// Appends `?k=v&..` of the pairs whose value is given (nothing when none is).
fn with_query(mut path: String, pairs: &[(&str, Option<&str>)]) -> String {
    let mut first = true;
    for (key, value) in pairs {
        if let Some(value) = value {
            path.push(if first { '?' } else { '&' });
            first = false;
            path.push_str(key);
            path.push('=');
            path.push_str(&encode_component(value));
        }
    }
    path
}

/// The request path (and query) of every route, from typed arguments. Each returns
/// the path only; prefix the server's base URL.
pub mod paths {
    use super::{DefinitionFilter, Route, with_query};

    /// `GET /v1/features/{entity_type}/{entity_id}?names=a,b`.
    pub fn features(entity_type: &str, entity_id: &str, names: &[&str]) -> String {
        let names = names.join(",");
        with_query(
            Route::GetFeatures.fill(&[entity_type, entity_id]),
            &[("names", Some(&names))],
        )
    }

    /// `POST /v1/feature-definitions`.
    pub fn apply_definitions() -> String {
        Route::ApplyDefinitions.fill(&[])
    }

    /// `GET /v1/feature-definitions?..`: only the filter's given fields are sent.
    pub fn definitions(filter: &DefinitionFilter) -> String {
        let DefinitionFilter {
            entity_type,
            owner,
            tag,
            name,
            group,
        } = filter;
        with_query(
            Route::ListDefinitions.fill(&[]),
            &[
                ("entity_type", entity_type.as_deref()),
                ("owner", owner.as_deref()),
                ("tag", tag.as_deref()),
                ("name", name.as_deref()),
                ("group", group.as_deref()),
            ],
        )
    }

    /// `GET /v1/groups`.
    pub fn groups() -> String {
        Route::ListGroups.fill(&[])
    }

    /// `GET /v1/groups/{group}/versions`.
    pub fn versions(group: &str) -> String {
        Route::GroupVersions.fill(&[group])
    }

    /// `POST /v1/groups/{group}/loads`.
    pub fn load(group: &str) -> String {
        Route::Load.fill(&[group])
    }

    /// `POST /v1/groups/{group}/versions/{version}/activate`.
    pub fn activate(group: &str, version: u64) -> String {
        Route::Activate.fill(&[group, &version.to_string()])
    }

    /// `GET /v1/groups/{group}/versions/{version}/stats`.
    pub fn version_stats(group: &str, version: u64) -> String {
        Route::VersionStats.fill(&[group, &version.to_string()])
    }

    /// `POST /v1/groups/{group}/rollback`.
    pub fn rollback(group: &str) -> String {
        Route::Rollback.fill(&[group])
    }

    /// `POST /v1/groups/{group}/drop-old-versions[?keep=K]` (absent: the server's
    /// `keep_versions`).
    pub fn drop_old_versions(group: &str, keep: Option<usize>) -> String {
        let keep = keep.map(|k| k.to_string());
        with_query(
            Route::DropOldVersions.fill(&[group]),
            &[("keep", keep.as_deref())],
        )
    }

    /// `GET /v1/audit[?after=N][&limit=M]`.
    pub fn audit(after: Option<u64>, limit: Option<usize>) -> String {
        let after = after.map(|a| a.to_string());
        let limit = limit.map(|l| l.to_string());
        with_query(
            Route::AuditLog.fill(&[]),
            &[("after", after.as_deref()), ("limit", limit.as_deref())],
        )
    }

    /// `DELETE /v1/entities/{entity_type}/{entity_id}[?compact=false]`.
    pub fn delete_entity(entity_type: &str, entity_id: &str, compact: bool) -> String {
        with_query(
            Route::DeleteEntity.fill(&[entity_type, entity_id]),
            &[("compact", (!compact).then_some("false"))],
        )
    }

    /// `POST /v1/push`.
    pub fn push() -> String {
        Route::Push.fill(&[])
    }

    /// `POST /v1/rank`.
    pub fn rank() -> String {
        Route::Rank.fill(&[])
    }

    /// `POST /v1/registry`.
    pub fn apply_registry() -> String {
        Route::ApplyRegistry.fill(&[])
    }

    /// `DELETE /v1/feature-definitions/{name}/versions/{version}`.
    pub fn delete_definition(name: &str, version: u32) -> String {
        Route::DeleteDefinition.fill(&[name, &version.to_string()])
    }

    /// `GET /v1/entity-types`.
    pub fn entity_types() -> String {
        Route::ListEntityTypes.fill(&[])
    }

    /// `GET /v1/on-demand-features`.
    pub fn on_demand() -> String {
        Route::ListOnDemand.fill(&[])
    }

    /// `GET /v1/feature-services`.
    pub fn services() -> String {
        Route::ListServices.fill(&[])
    }

    /// `POST /v1/feature-services/{name}/versions/{version}/retire`.
    pub fn retire_service(name: &str, version: u32) -> String {
        Route::RetireService.fill(&[name, &version.to_string()])
    }

    /// `GET /v1/lineage`.
    pub fn lineage() -> String {
        Route::Lineage.fill(&[])
    }

    /// `POST /v1/serving-log/exports`.
    pub fn serving_log_export() -> String {
        Route::ServingLogExport.fill(&[])
    }

    /// `POST /v1/training-sets`.
    pub fn training_sets() -> String {
        Route::TrainingSets.fill(&[])
    }

    /// `POST /v1/history-exports`.
    pub fn history_exports() -> String {
        Route::HistoryExports.fill(&[])
    }

    /// `GET /v1/health/features`.
    pub fn feature_health() -> String {
        Route::FeatureHealth.fill(&[])
    }

    /// `GET /ui` (the page; a group's versions with `group`).
    pub fn ui(group: Option<&str>) -> String {
        with_query(Route::Ui.fill(&[]), &[("group", group)])
    }

    /// `GET /healthz`.
    pub fn healthz() -> String {
        Route::Healthz.fill(&[])
    }

    /// `GET /readyz`.
    pub fn readyz() -> String {
        Route::Readyz.fill(&[])
    }

    /// `GET /metrics`.
    pub fn metrics() -> String {
        Route::Metrics.fill(&[])
    }

    /// `POST /get-online-features` (Feast).
    pub fn feast_get_online_features() -> String {
        Route::FeastGetOnlineFeatures.fill(&[])
    }

    /// `POST /push` (Feast).
    pub fn feast_push() -> String {
        Route::FeastPush.fill(&[])
    }

    /// `POST /write-to-online-store` (Feast).
    pub fn feast_write_to_online_store() -> String {
        Route::FeastWriteToOnlineStore.fill(&[])
    }

    /// `GET /openapi.json`.
    pub fn openapi() -> String {
        Route::OpenApi.fill(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_encode_all_but_unreserved() {
        assert_eq!(encode_component("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(encode_component("p/1 x"), "p%2F1%20x");
        assert_eq!(encode_component("a,b+c%"), "a%2Cb%2Bc%25");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_component(""), "");
    }

    #[test]
    fn builders_fill_templates_in_order() {
        assert_eq!(
            paths::features("product", "p/1", &["a", "b@2"]),
            "/v1/features/product/p%2F1?names=a%2Cb%402"
        );
        assert_eq!(
            paths::activate("product_daily", 3),
            "/v1/groups/product_daily/versions/3/activate"
        );
        assert_eq!(
            paths::drop_old_versions("g", Some(2)),
            "/v1/groups/g/drop-old-versions?keep=2"
        );
        assert_eq!(
            paths::drop_old_versions("g", None),
            "/v1/groups/g/drop-old-versions"
        );
        assert_eq!(
            paths::definitions(&DefinitionFilter::default()),
            "/v1/feature-definitions"
        );
        assert_eq!(
            paths::definitions(&DefinitionFilter {
                owner: Some("rank ing".into()),
                tag: Some("t".into()),
                ..DefinitionFilter::default()
            }),
            "/v1/feature-definitions?owner=rank%20ing&tag=t"
        );
        assert_eq!(
            paths::delete_definition("ctr", 2),
            "/v1/feature-definitions/ctr/versions/2"
        );
        assert_eq!(
            paths::delete_entity("user_product", "u42|p7", true),
            "/v1/entities/user_product/u42%7Cp7"
        );
        assert_eq!(
            paths::delete_entity("user", "u42", false),
            "/v1/entities/user/u42?compact=false"
        );
    }

    #[test]
    fn param_counts_follow_the_templates() {
        assert_eq!(Route::GetFeatures.param_count(), 2);
        assert_eq!(Route::Activate.param_count(), 2);
        assert_eq!(Route::Load.param_count(), 1);
        assert_eq!(Route::Healthz.param_count(), 0);
    }
}
