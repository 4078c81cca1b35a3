//! Feature groups and their versions: the listing (`GET /v1/groups`), the versions of
//! a group, the load body and answer, and the answers of activate, rollback and drop.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::BadRequest;
use crate::loader::input::{InputFormat, InputOptions, Layout};
use crate::loader::{LoadRecord, LoadRequest};
use crate::store;
use crate::store::manifest::VersionState;
use crate::store::segments::SegmentInfo;
use crate::types::{TimestampMs, parse_timestamp_ms};

/// One group of `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// Group name.
    pub group: String,
    /// Entity type of its features.
    pub entity_type: String,
    /// Version served, if any.
    pub active_version: Option<u64>,
}

/// Answer of `GET /v1/groups`: `{"groups": [..]}`, ordered by group name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    /// Every group.
    pub groups: Vec<GroupEntry>,
}

impl GroupList {
    /// The listing of the store's `(group, entity type, active version)` triples.
    pub fn of(groups: &[(String, String, Option<u64>)]) -> Self {
        GroupList {
            groups: groups
                .iter()
                .map(|(group, entity_type, active_version)| GroupEntry {
                    group: group.clone(),
                    entity_type: entity_type.clone(),
                    active_version: *active_version,
                })
                .collect(),
        }
    }
}

/// One version of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Version number.
    pub version: u64,
    /// `loading` or `ready`.
    pub state: VersionState,
    /// Whether it is the version served.
    pub active: bool,
    /// When it was allocated, ms since the epoch.
    pub created_at_ms: TimestampMs,
    /// Its load record, once loaded.
    pub load: Option<LoadRecord>,
    /// Its hot segment, if one was built.
    pub segment: Option<SegmentInfo>,
}

impl From<store::VersionInfo> for VersionInfo {
    fn from(info: store::VersionInfo) -> Self {
        let store::VersionInfo {
            version,
            state,
            active,
            created_at_ms,
            load,
            segment,
        } = info;
        VersionInfo {
            version,
            state,
            active,
            created_at_ms,
            load,
            segment,
        }
    }
}

/// Answer of `GET /v1/groups/{group}/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupVersions {
    /// Group.
    pub group: String,
    /// Entity type of its features.
    pub entity_type: String,
    /// Version served.
    pub active: Option<u64>,
    /// Version a rollback would activate.
    pub rollback_target: Option<u64>,
    /// Every existing version, ascending.
    pub versions: Vec<VersionInfo>,
}

impl From<store::GroupVersions> for GroupVersions {
    fn from(versions: store::GroupVersions) -> Self {
        let store::GroupVersions {
            group,
            entity_type,
            active,
            rollback_target,
            versions,
        } = versions;
        GroupVersions {
            group,
            entity_type,
            active,
            rollback_target,
            versions: versions.into_iter().map(VersionInfo::from).collect(),
        }
    }
}

/// Answer of activate and rollback: `{"group", "active_version"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveVersion {
    /// Group.
    pub group: String,
    /// The version now served.
    pub active_version: u64,
}

/// Answer of `POST /v1/groups/{group}/drop-old-versions`: `{"group", "dropped"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Group.
    pub group: String,
    /// The versions dropped, ascending.
    pub dropped: Vec<u64>,
}

/// Parses the `{version}` of an activate path.
pub fn parse_version(text: &str) -> Result<u64, BadRequest> {
    text.parse()
        .map_err(|_| BadRequest(format!("version `{text}` is not a number")))
}

/// Parses the `keep` query value of a drop.
pub fn parse_keep(text: &str) -> Result<usize, BadRequest> {
    text.parse()
        .map_err(|_| BadRequest(format!("keep `{text}` is not a non-negative number")))
}

/// An event time in a request: epoch milliseconds or RFC 3339 text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventTime {
    /// Milliseconds since the epoch.
    Millis(TimestampMs),
    /// RFC 3339 text with its offset, or epoch milliseconds as text.
    Text(String),
}

/// Body of `POST /v1/groups/{group}/loads`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBody {
    /// Absolute path of a local Parquet or CSV file, on the server's machine.
    pub input: PathBuf,
    /// `csv` or `parquet`; detected from the extension when absent.
    #[serde(default)]
    pub format: Option<InputFormat>,
    /// `long` or `wide`; detected from the columns when absent.
    #[serde(default)]
    pub layout: Option<Layout>,
    /// Activate the version once ingested (default true).
    #[serde(default = "default_activate")]
    pub activate: bool,
    /// Event time for rows without one (ms or RFC 3339).
    #[serde(default)]
    pub default_event_time: Option<EventTime>,
    /// Skip columns that are not features.
    #[serde(default)]
    pub ignore_unknown_columns: bool,
}

fn default_activate() -> bool {
    true
}

impl LoadBody {
    /// A load of `input` with every option at its default (detected format and
    /// layout, activate once ingested).
    pub fn new(input: impl Into<PathBuf>) -> Self {
        LoadBody {
            input: input.into(),
            format: None,
            layout: None,
            activate: true,
            default_event_time: None,
            ignore_unknown_columns: false,
        }
    }
}

/// Body of `POST /v1/groups/{group}/versions/{version}/activate` (optional: an empty
/// body is a plain activation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    /// Activate even though the version failed its validation; needs `by` and
    /// `reason`, which its validation report records.
    #[serde(default)]
    pub force: bool,
    /// Who asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Parses an activate body (empty: no options).
pub fn parse_activate(body: &[u8]) -> Result<ActivateBody, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActivateBody::default());
    }
    let body: ActivateBody = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("invalid activate request: {e}")))?;
    let given = |v: &Option<String>| v.as_deref().is_some_and(|t| !t.trim().is_empty());
    if body.force && !(given(&body.by) && given(&body.reason)) {
        return Err(BadRequest(
            "a forced activation needs `by` (who asks) and `reason` (why)".into(),
        ));
    }
    Ok(body)
}

/// Answer of a load whose version its validation held back (422):
/// `{"error": message, "load": record}`; the record carries the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldLoad {
    /// What happened, naming the failed rules.
    pub error: String,
    /// The version's load record, `validation` included.
    pub load: LoadRecord,
}

/// Parses a load body into the request for `group`.
pub fn parse_load(group: String, body: &[u8]) -> Result<LoadRequest, BadRequest> {
    let body: LoadBody = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("invalid load request: {e}")))?;
    if !body.input.is_absolute() {
        return Err(BadRequest(format!(
            "input `{}` must be an absolute path on the server",
            body.input.display()
        )));
    }
    let default_event_time = match body.default_event_time {
        None => None,
        Some(EventTime::Millis(ms)) => Some(ms),
        Some(EventTime::Text(text)) => Some(
            parse_timestamp_ms(&text)
                .map_err(|e| BadRequest(format!("default_event_time: {e}")))?,
        ),
    };
    Ok(LoadRequest {
        group,
        input: body.input,
        options: InputOptions {
            format: body.format,
            layout: body.layout,
            default_event_time,
            ignore_unknown_columns: body.ignore_unknown_columns,
        },
        activate: body.activate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_bodies_parse_with_defaults() {
        let req = parse_load("g".into(), br#"{"input":"/data/x.parquet"}"#).expect("minimal");
        assert_eq!(req.group, "g");
        assert!(req.activate);
        assert_eq!(req.options, InputOptions::default());
        let req = parse_load(
            "g".into(),
            br#"{"input":"/d/x.csv","format":"csv","layout":"wide","activate":false,"default_event_time":"1970-01-01T00:00:01Z"}"#,
        )
        .expect("full");
        assert!(!req.activate);
        assert_eq!(req.options.format, Some(InputFormat::Csv));
        assert_eq!(req.options.layout, Some(Layout::Wide));
        assert_eq!(req.options.default_event_time, Some(1000));
        let req = parse_load(
            "g".into(),
            br#"{"input":"/d/x.csv","format":null,"layout":null,"activate":true,"default_event_time":5}"#,
        )
        .expect("nulls");
        assert_eq!(req.options.default_event_time, Some(5));
    }

    #[test]
    fn bad_load_bodies_are_refused() {
        for body in [
            "",
            r#"{"input":"relative.csv"}"#,
            r#"{"input":"/x.csv","format":"xlsx"}"#,
            r#"{"input":"/x.csv","typo":1}"#,
            r#"{"input":"/x.csv","default_event_time":"yesterday"}"#,
        ] {
            let err = parse_load("g".into(), body.as_bytes()).expect_err(body);
            assert!(!err.0.is_empty(), "{body}");
        }
    }

    #[test]
    fn load_bodies_a_client_sends_parse_back() {
        let mut body = LoadBody::new("/d/x.csv");
        body.format = Some(InputFormat::Csv);
        body.layout = Some(Layout::Long);
        body.activate = false;
        body.default_event_time = Some(EventTime::Text("1970-01-01T00:00:02Z".into()));
        body.ignore_unknown_columns = true;
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let req = parse_load("g".into(), &bytes).expect("parses");
        assert_eq!(req.input, PathBuf::from("/d/x.csv"));
        assert_eq!(req.options.format, Some(InputFormat::Csv));
        assert_eq!(req.options.layout, Some(Layout::Long));
        assert_eq!(req.options.default_event_time, Some(2000));
        assert!(req.options.ignore_unknown_columns);
        assert!(!req.activate);
        let back: LoadBody = serde_json::from_slice(&bytes).expect("decodes");
        assert_eq!(back, body);
        body.default_event_time = Some(EventTime::Millis(7));
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let req = parse_load("g".into(), &bytes).expect("parses");
        assert_eq!(req.options.default_event_time, Some(7));
    }

    #[test]
    fn version_and_keep_parameters_parse() {
        assert_eq!(parse_version("3"), Ok(3));
        assert!(parse_version("x").is_err());
        assert_eq!(parse_keep("0"), Ok(0));
        assert!(parse_keep("-1").is_err());
    }

    #[test]
    fn version_listings_encode_as_the_store_type_did() {
        let versions = store::GroupVersions {
            group: "g".into(),
            entity_type: "product".into(),
            active: Some(2),
            rollback_target: None,
            versions: vec![store::VersionInfo {
                version: 2,
                state: VersionState::Ready,
                active: true,
                created_at_ms: 1_700_000_000_000,
                load: None,
                segment: Some(SegmentInfo {
                    file: "batch.g.v2.seg".into(),
                    entities: 3,
                    bytes: 100,
                    hot_only: false,
                }),
            }],
        };
        let before = serde_json::to_vec(&versions).expect("encodes");
        let wire = GroupVersions::from(versions);
        assert_eq!(serde_json::to_vec(&wire).expect("encodes"), before);
        let decoded: GroupVersions = serde_json::from_slice(&before).expect("decodes");
        assert_eq!(decoded, wire);
    }
}
