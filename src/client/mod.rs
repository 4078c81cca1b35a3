//! A blocking, typed client of featstore's HTTP API, on `ureq`.
//!
//! Every method builds its URL with [`crate::api::paths`], sends the request type of
//! [`crate::api`] and decodes the answer into the response type there, so the client
//! and the server cannot drift apart silently: both compile against the same routes
//! and types. It is what the CLI's `--server` mode uses.
//!
//! A failed request is a [`ClientError`]: the transport failed, the server answered an
//! error status (with its message, the refused events of a push, `Retry-After`, and
//! the raw body), or the answer did not decode. Nothing is retried: whether a request
//! may be sent again (a push may, an admin operation should be checked first) is the
//! caller's call.
//!
//! Thread-safety contract: a [`Client`] is `Send + Sync` and cheap to clone; clones
//! share one connection pool (`ureq::Agent`).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::definitions::{ApplyResults, DefinitionList};
use crate::api::error::{ErrorBody, PushErrorBody, RejectedEvent};
use crate::api::features::FeatureAnswer;
use crate::api::groups::{
    ActivateBody, ActiveVersion, Dropped, GroupList, GroupVersions, LoadBody,
};
use crate::api::push::{PushAnswer, PushBody};
use crate::api::rank::{RankAnswer, RankBody};
use crate::api::rank_binary::{self, BINARY_CONTENT_TYPE, Decoded};
use crate::api::registry::{
    Deleted, EntityTypeList, Lineage, OnDemandList, RegistryApplyReport, ServiceList,
};
use crate::api::routes::paths;
use crate::loader::LoadRecord;
use crate::registry::file::RegistryObjects;
use crate::registry::service::ServiceDefinition;
use crate::registry::{DefinitionFilter, FeatureSpec};

/// The largest answer a client reads by default, bytes (see
/// [`Client::with_max_answer_bytes`]).
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 64 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request could not be sent or its answer not read (connection refused,
    /// timeout, an answer over the size limit, ...).
    #[error("{method} {url}: {source}")]
    Transport {
        /// Request method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// What failed.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered an error status.
    #[error("{0}")]
    Server(Box<ServerError>),
    /// A success answer that is not the route's response type.
    #[error("{method} {url}: the answer does not decode: {reason}")]
    Decode {
        /// Request method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request body could not be encoded.
    #[error("encoding the request body: {0}")]
    Encode(#[source] serde_json::Error),
}

/// An error status the server answered, with what it said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method} {url}: the server answered {status}: {message}")]
pub struct ServerError {
    /// Request method.
    pub method: &'static str,
    /// Request URL.
    pub url: String,
    /// HTTP status (4xx, 5xx).
    pub status: u16,
    /// The server's message (`error` of the JSON body; the text of a text body).
    pub message: String,
    /// The refused events of a push refused for its events; otherwise empty.
    pub rejected: Vec<RejectedEvent>,
    /// `Retry-After` in seconds, when the server sent one (503: try again then).
    pub retry_after_secs: Option<u64>,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl ClientError {
    /// The server's answer, for a server error.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            ClientError::Server(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status of a server error; `None` for the other kinds.
    pub fn status(&self) -> Option<u16> {
        self.server().map(|e| e.status)
    }

    /// The server's message of a server error.
    pub fn server_message(&self) -> Option<&str> {
        self.server().map(|e| e.message.as_str())
    }
}

/// A blocking client of one featstore server.
#[derive(Debug, Clone)]
pub struct Client {
    /// `http://host:port`, without a trailing `/`.
    base: String,
    agent: ureq::Agent,
    max_answer_bytes: u64,
    /// `Bearer <token>`, sent with every request when set.
    authorization: Option<String>,
}

/// One request to send: method, path (and query), body.
struct Call<'a> {
    method: &'static str,
    path: String,
    body: Option<&'a [u8]>,
    accept: Option<&'static str>,
}

/// An answer with a success status.
struct Answer {
    url: String,
    method: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode {
            method: self.method,
            url: self.url,
            reason: e.to_string(),
        })
    }
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:7070`), with no timeout.
    pub fn new(base: impl Into<String>) -> Self {
        Self::build(base.into(), None)
    }

    /// A client whose every request must complete within `timeout`.
    pub fn with_timeout(base: impl Into<String>, timeout: Duration) -> Self {
        Self::build(base.into(), Some(timeout))
    }

    fn build(base: String, timeout: Option<Duration>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            authorization: None,
        }
    }

    /// Reads answers of up to `bytes` (larger ones fail as [`ClientError::Transport`]).
    pub fn with_max_answer_bytes(mut self, bytes: u64) -> Self {
        self.max_answer_bytes = bytes;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request (a server with a
    /// token file; README, "Security model").
    pub fn with_token(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {}", token.trim()));
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn send(&self, call: Call<'_>) -> Result<Answer, ClientError> {
        let Call {
            method,
            path,
            body,
            accept,
        } = call;
        let url = format!("{}{}", self.base, path);
        let transport = |source| ClientError::Transport {
            method,
            url: url.clone(),
            source: Box::new(source),
        };
        let auth = self.authorization.as_deref();
        let result = match (method, body) {
            ("GET", _) => with_accept(self.agent.get(&url), accept, auth).call(),
            ("DELETE", _) => with_accept(self.agent.delete(&url), accept, auth).call(),
            (_, Some(body)) => with_accept(self.agent.post(&url), accept, auth)
                .header("content-type", "application/json")
                .send(body),
            (_, None) => with_accept(self.agent.post(&url), accept, auth).send_empty(),
        };
        let mut response = result.map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after_secs = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = response
            .body_mut()
            .with_config()
            .limit(self.max_answer_bytes)
            .read_to_vec()
            .map_err(transport)?;
        if (200..300).contains(&status) {
            return Ok(Answer {
                url,
                method,
                body: bytes,
            });
        }
        let (message, rejected) = error_message(&bytes);
        Err(ClientError::Server(Box::new(ServerError {
            method,
            url,
            status,
            message,
            rejected,
            retry_after_secs,
            body: bytes,
        })))
    }

    fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, ClientError> {
        self.send(Call {
            method: "GET",
            path,
            body: None,
            accept: None,
        })?
        .json()
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: String,
        body: Option<&[u8]>,
    ) -> Result<T, ClientError> {
        self.send(Call {
            method: "POST",
            path,
            body,
            accept: None,
        })?
        .json()
    }

    fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: String,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(ClientError::Encode)?;
        self.post(path, Some(&body))
    }

    fn text(&self, path: String) -> Result<String, ClientError> {
        let answer = self.send(Call {
            method: "GET",
            path,
            body: None,
            accept: None,
        })?;
        String::from_utf8(answer.body).map_err(|e| ClientError::Decode {
            method: answer.method,
            url: answer.url,
            reason: e.to_string(),
        })
    }

    /// `GET /healthz`: the process is up.
    pub fn health(&self) -> Result<(), ClientError> {
        self.text(paths::healthz()).map(drop)
    }

    /// `GET /readyz`: the store serves reads and takes pushes (a 503 names why not).
    pub fn ready(&self) -> Result<(), ClientError> {
        self.text(paths::readyz()).map(drop)
    }

    /// `GET /metrics`: the OpenMetrics text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        self.text(paths::metrics())
    }

    /// `GET /v1/features/{entity_type}/{entity_id}?names=..`: one entity's features,
    /// in the order of `names`.
    pub fn get_features(
        &self,
        entity_type: &str,
        entity_id: &str,
        names: &[&str],
    ) -> Result<FeatureAnswer, ClientError> {
        self.get(paths::features(entity_type, entity_id, names))
    }

    /// `POST /v1/rank`, answered as JSON.
    pub fn rank(&self, request: &RankBody) -> Result<RankAnswer, ClientError> {
        self.post_json(paths::rank(), request)
    }

    /// `POST /v1/rank`, answered in the binary form (`Accept:
    /// application/x-featstore-rank`).
    pub fn rank_binary(&self, request: &RankBody) -> Result<Decoded, ClientError> {
        let body = serde_json::to_vec(request).map_err(ClientError::Encode)?;
        let answer = self.send(Call {
            method: "POST",
            path: paths::rank(),
            body: Some(&body),
            accept: Some(BINARY_CONTENT_TYPE),
        })?;
        rank_binary::decode(&answer.body).ok_or_else(|| ClientError::Decode {
            method: answer.method,
            url: answer.url,
            reason: "not a binary ranking answer of version 2".into(),
        })
    }

    /// `POST /v1/push`: all events applied, or none (a 400 [`ClientError::Server`]
    /// listing every refused event).
    pub fn push(&self, events: &PushBody) -> Result<PushAnswer, ClientError> {
        self.post_json(paths::push(), events)
    }

    /// `POST /v1/push` of a body already encoded (`{"events": [..]}`).
    pub fn push_json(&self, body: &[u8]) -> Result<PushAnswer, ClientError> {
        self.post(paths::push(), Some(body))
    }

    /// `POST /v1/feature-definitions`: register or update definitions.
    pub fn apply_definitions(&self, specs: &[FeatureSpec]) -> Result<ApplyResults, ClientError> {
        self.post_json(paths::apply_definitions(), specs)
    }

    /// `POST /v1/registry`: register features, composite entity types, on-demand
    /// features and services.
    pub fn apply_registry(
        &self,
        objects: &RegistryObjects,
    ) -> Result<RegistryApplyReport, ClientError> {
        self.post_json(paths::apply_registry(), objects)
    }

    /// `GET /v1/feature-definitions?..`: the definitions `filter` matches.
    pub fn definitions(&self, filter: &DefinitionFilter) -> Result<DefinitionList, ClientError> {
        self.get(paths::definitions(filter))
    }

    /// `DELETE /v1/feature-definitions/{name}/versions/{version}`.
    pub fn delete_definition(&self, name: &str, version: u32) -> Result<Deleted, ClientError> {
        self.send(Call {
            method: "DELETE",
            path: paths::delete_definition(name, version),
            body: None,
            accept: None,
        })?
        .json()
    }

    /// `DELETE /v1/entities/{entity_type}/{entity_id}`: deletes every value of the
    /// entity and of the composite entities containing it (`crate::store::erase`);
    /// `compact` also compacts the deleted key ranges before the answer.
    pub fn delete_entity(
        &self,
        entity_type: &str,
        entity_id: &str,
        compact: bool,
    ) -> Result<crate::store::erase::ErasureReport, ClientError> {
        self.send(Call {
            method: "DELETE",
            path: paths::delete_entity(entity_type, entity_id, compact),
            body: None,
            accept: None,
        })?
        .json()
    }

    /// `GET /v1/groups`.
    pub fn groups(&self) -> Result<GroupList, ClientError> {
        self.get(paths::groups())
    }

    /// `GET /v1/groups/{group}/versions`.
    pub fn versions(&self, group: &str) -> Result<GroupVersions, ClientError> {
        self.get(paths::versions(group))
    }

    /// `POST /v1/groups/{group}/loads`: load a file on the server's machine as a new
    /// version; answered once loaded.
    pub fn load(&self, group: &str, body: &LoadBody) -> Result<LoadRecord, ClientError> {
        self.post_json(paths::load(group), body)
    }

    /// `POST /v1/groups/{group}/versions/{version}/activate`.
    pub fn activate(&self, group: &str, version: u64) -> Result<ActiveVersion, ClientError> {
        self.post(paths::activate(group, version), None)
    }

    /// `POST /v1/groups/{group}/versions/{version}/activate` with `force`: activates a
    /// version that failed its validation, recording `by` and `reason`.
    pub fn activate_forced(
        &self,
        group: &str,
        version: u64,
        by: &str,
        reason: &str,
    ) -> Result<ActiveVersion, ClientError> {
        let body = ActivateBody {
            force: true,
            by: Some(by.to_owned()),
            reason: Some(reason.to_owned()),
        };
        self.post_json(paths::activate(group, version), &body)
    }

    /// `GET /v1/groups/{group}/versions/{version}/stats`: the version's statistics.
    pub fn version_stats(
        &self,
        group: &str,
        version: u64,
    ) -> Result<crate::validate::VersionStats, ClientError> {
        self.get(paths::version_stats(group, version))
    }

    /// `POST /v1/groups/{group}/rollback`.
    pub fn rollback(&self, group: &str) -> Result<ActiveVersion, ClientError> {
        self.post(paths::rollback(group), None)
    }

    /// `POST /v1/groups/{group}/drop-old-versions`: keep the newest `keep` versions
    /// (absent: the server's `keep_versions`), never the active one.
    pub fn drop_old_versions(
        &self,
        group: &str,
        keep: Option<usize>,
    ) -> Result<Dropped, ClientError> {
        self.post(paths::drop_old_versions(group, keep), None)
    }

    /// `GET /v1/entity-types`.
    pub fn entity_types(&self) -> Result<EntityTypeList, ClientError> {
        self.get(paths::entity_types())
    }

    /// `GET /v1/on-demand-features`.
    pub fn on_demand(&self) -> Result<OnDemandList, ClientError> {
        self.get(paths::on_demand())
    }

    /// `GET /v1/feature-services`.
    pub fn services(&self) -> Result<ServiceList, ClientError> {
        self.get(paths::services())
    }

    /// `POST /v1/feature-services/{name}/versions/{version}/retire`.
    pub fn retire_service(
        &self,
        name: &str,
        version: u32,
    ) -> Result<ServiceDefinition, ClientError> {
        self.post(paths::retire_service(name, version), None)
    }

    /// `GET /v1/lineage`.
    pub fn lineage(&self) -> Result<Lineage, ClientError> {
        self.get(paths::lineage())
    }
}

fn with_accept<B>(
    request: ureq::RequestBuilder<B>,
    accept: Option<&'static str>,
    authorization: Option<&str>,
) -> ureq::RequestBuilder<B> {
    let request = match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    };
    match accept {
        Some(accept) => request.header("accept", accept),
        None => request,
    }
}

/// The message (and refused events) of an error body: `{"error", "rejected"?}`, or
/// the text of a body that is not JSON (`/readyz`).
fn error_message(body: &[u8]) -> (String, Vec<RejectedEvent>) {
    if let Ok(push) = serde_json::from_slice::<PushErrorBody>(body) {
        return (push.error, push.rejected);
    }
    if let Ok(error) = serde_json::from_slice::<ErrorBody>(body) {
        return (error.error, Vec::new());
    }
    (String::from_utf8_lossy(body).trim().to_owned(), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(br#"{"error":"unknown group `g`"}"#),
            ("unknown group `g`".to_owned(), vec![])
        );
        let (message, rejected) = error_message(
            br#"{"error":"1 of 2 events rejected","rejected":[{"index":1,"reason":"r"}]}"#,
        );
        assert_eq!(message, "1 of 2 events rejected");
        assert_eq!(
            rejected,
            vec![RejectedEvent {
                index: 1,
                reason: "r".into()
            }]
        );
        assert_eq!(
            error_message(b"not ready: disk full\n"),
            ("not ready: disk full".to_owned(), vec![])
        );
    }

    #[test]
    fn base_urls_lose_their_trailing_slash() {
        assert_eq!(
            Client::new("http://127.0.0.1:7070/").base(),
            "http://127.0.0.1:7070"
        );
    }
}
