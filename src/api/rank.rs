//! The ranking request (`POST /v1/rank`) and its JSON answer as a client decodes it.
//! The server writes the answer with [`super::rank_json::encode_json`] or, when asked,
//! [`super::rank_binary::encode`] (decoded by [`super::rank_binary::decode`]); the
//! shapes are in `docs/wire.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::BadRequest;
use crate::query::rank::{FeatureSelection, RankRequest};
use crate::types::{FeatureStatus, TimestampMs};

/// The candidates of a ranking request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidatesBody {
    /// Their entity type.
    pub entity_type: String,
    /// Their ids, in the order rows are answered.
    pub ids: Vec<String>,
}

/// Body of `POST /v1/rank`: one context, many candidates, and either `features` or
/// `service` (not both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankBody {
    /// Context entities: entity type to id.
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    /// The candidates.
    pub candidates: CandidatesBody,
    /// Feature names (`name` or `name@version`), in answer order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// A feature service, `name` or `name@version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Fetch for at most this long, counted from the request's arrival; what is not
    /// fetched in time is answered `F` (not fetched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Answer as a live read at this time answered (epoch ms, or an RFC 3339 string),
    /// from the history: an as-of read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<AsOf>,
}

/// The time of an as-of read, as sent: epoch milliseconds or an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AsOf {
    /// Epoch milliseconds.
    Ms(TimestampMs),
    /// An RFC 3339 date-time (or epoch milliseconds as a string).
    Text(String),
}

impl AsOf {
    /// The time in epoch milliseconds.
    pub fn ms(&self) -> Result<TimestampMs, BadRequest> {
        match self {
            AsOf::Ms(ms) => Ok(*ms),
            AsOf::Text(text) => parse_as_of(text),
        }
    }
}

/// Parses the `as_of` of an as-of read (epoch ms or RFC 3339).
pub fn parse_as_of(text: &str) -> Result<TimestampMs, BadRequest> {
    crate::types::parse_timestamp_ms(text).map_err(|e| BadRequest(format!("invalid `as_of`: {e}")))
}

impl RankBody {
    /// The body of `request`. A deadline is sent in whole milliseconds, rounded up.
    pub fn of(request: &RankRequest) -> Self {
        let RankRequest {
            context,
            candidate_type,
            candidates,
            features,
            deadline,
        } = request;
        let (features, service) = match features {
            FeatureSelection::Names(names) => (Some(names.clone()), None),
            FeatureSelection::Service(service) => (None, Some(service.clone())),
        };
        RankBody {
            context: context.iter().cloned().collect(),
            candidates: CandidatesBody {
                entity_type: candidate_type.clone(),
                ids: candidates.clone(),
            },
            features,
            service,
            deadline_ms: deadline.map(|d| {
                let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
                u64::try_from(ms).unwrap_or(u64::MAX)
            }),
            as_of: None,
        }
    }
}

/// Parses a `POST /v1/rank` body, refusing `as_of` (see [`parse_rank_as_of`]).
pub fn parse_rank(body: &[u8]) -> Result<RankRequest, BadRequest> {
    match parse_rank_as_of(body)? {
        (request, None) => Ok(request),
        (_, Some(_)) => Err(BadRequest::new("`as_of` is not accepted here")),
    }
}

/// Parses a `POST /v1/rank` body and its `as_of` time, if any.
pub fn parse_rank_as_of(body: &[u8]) -> Result<(RankRequest, Option<TimestampMs>), BadRequest> {
    let body: RankBody = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("invalid ranking request: {e}")))?;
    let as_of = body.as_of.as_ref().map(AsOf::ms).transpose()?;
    let features = match (body.features, body.service) {
        (Some(names), None) => FeatureSelection::Names(names),
        (None, Some(service)) => FeatureSelection::Service(service),
        (Some(_), Some(_)) => {
            return Err(BadRequest::new(
                "give either `features` or `service`, not both",
            ));
        }
        (None, None) => {
            return Err(BadRequest::new(
                "give `features` (a list of names) or `service`",
            ));
        }
    };
    let request = RankRequest {
        context: body.context.into_iter().collect(),
        candidate_type: body.candidates.entity_type,
        candidates: body.candidates.ids,
        features,
        deadline: body.deadline_ms.map(Duration::from_millis),
    };
    Ok((request, as_of))
}

/// The status of a one-letter code of a `status` string (inverse of
/// [`super::rank_json::status_letter`]).
pub fn status_of_letter(letter: u8) -> Option<FeatureStatus> {
    Some(match letter {
        b'P' => FeatureStatus::Present,
        b'S' => FeatureStatus::Stale,
        b'U' => FeatureStatus::Null,
        b'N' => FeatureStatus::NotFound,
        b'X' => FeatureStatus::Expired,
        b'D' => FeatureStatus::Defaulted,
        b'F' => FeatureStatus::NotFetched,
        _ => return None,
    })
}

/// The values answered for the context, once per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextAnswer {
    /// Context entities, entity type to id.
    pub entities: BTreeMap<String, String>,
    /// Context column names.
    pub features: Vec<String>,
    /// One value per column (JSON; `null` where the status carries none).
    pub values: Vec<serde_json::Value>,
    /// One status letter per column.
    pub status: String,
    /// Per column, an index into [`RankAnswer::event_times`], or `null`.
    pub event_time: Vec<Option<u32>>,
}

/// One candidate's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowAnswer {
    /// The candidate id.
    pub id: String,
    /// One value per candidate column (JSON; `null` where the status carries none).
    pub values: Vec<serde_json::Value>,
    /// One status letter per column.
    pub status: String,
    /// Per column, an index into [`RankAnswer::event_times`], or `null`.
    pub event_time: Vec<Option<u32>>,
}

/// The candidates' columns and rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidatesAnswer {
    /// Entity type of the candidates.
    pub entity_type: String,
    /// Candidate column names.
    pub features: Vec<String>,
    /// One row per candidate, in the order asked.
    pub rows: Vec<RowAnswer>,
}

/// The JSON answer of `POST /v1/rank`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankAnswer {
    /// The service read, `name@version`, when one was asked.
    pub service: Option<String>,
    /// The request time, ms since the epoch.
    pub now_ms: TimestampMs,
    /// False when the deadline left some values not fetched.
    pub complete: bool,
    /// Distinct event times, in first-seen order; `event_time` entries index it.
    pub event_times: Vec<TimestampMs>,
    /// The context's values.
    pub context: ContextAnswer,
    /// The candidates' values.
    pub candidates: CandidatesAnswer,
    /// Batch version read per group.
    pub versions: BTreeMap<String, u64>,
    /// Defaulted values per feature (`name@version`), for features with any.
    pub defaults: BTreeMap<String, u64>,
}

/// One decoded value of a [`RankAnswer`]: status, event time, JSON value.
pub type AnswerCell<'a> = (
    Option<FeatureStatus>,
    Option<TimestampMs>,
    &'a serde_json::Value,
);

impl RankAnswer {
    /// The event time an `event_time` entry names.
    pub fn time(&self, index: Option<u32>) -> Option<TimestampMs> {
        self.event_times.get(usize::try_from(index?).ok()?).copied()
    }

    /// Candidate `row`'s value of column `column`, if both exist.
    pub fn cell(&self, row: usize, column: usize) -> Option<AnswerCell<'_>> {
        let row = self.candidates.rows.get(row)?;
        let value = row.values.get(column)?;
        let status = row
            .status
            .as_bytes()
            .get(column)
            .and_then(|l| status_of_letter(*l));
        let time = self.time(row.event_time.get(column).copied().flatten());
        Some((status, time, value))
    }

    /// The context's value of column `column`, if it exists.
    pub fn context_cell(&self, column: usize) -> Option<AnswerCell<'_>> {
        let context = &self.context;
        let value = context.values.get(column)?;
        let status = context
            .status
            .as_bytes()
            .get(column)
            .and_then(|l| status_of_letter(*l));
        let time = self.time(context.event_time.get(column).copied().flatten());
        Some((status, time, value))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::rank_json::{encode_json, status_letter};
    use crate::query::answer::ColumnValues;
    use crate::query::rank::{RankColumn, RankResponse};
    use crate::query::read::Freshness;
    use crate::types::{DType, Value};

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
        assert_eq!(req.deadline, Some(Duration::from_millis(5)));
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
    fn bad_rank_bodies_are_refused() {
        for body in [
            "",
            "{}",
            r#"{"candidates":{"entity_type":"p","ids":[]}}"#,
            r#"{"candidates":{"entity_type":"p","ids":[]},"features":["a"],"service":"s"}"#,
            r#"{"candidates":{"entity_type":"p","ids":[1]},"features":["a"]}"#,
            r#"{"candidates":{"entity_type":"p","ids":[]},"features":["a"],"typo":1}"#,
        ] {
            let err = parse_rank(body.as_bytes()).expect_err(body);
            assert!(!err.0.is_empty(), "{body}");
        }
    }

    #[test]
    fn requests_a_client_sends_parse_back() {
        for (features, deadline) in [
            (
                FeatureSelection::Names(vec!["a".into(), "b@2".into()]),
                Some(Duration::from_millis(7)),
            ),
            (FeatureSelection::Service("ranker".into()), None),
        ] {
            let request = RankRequest {
                context: vec![
                    ("retailer".into(), "r9".into()),
                    ("user".into(), "u1".into()),
                ],
                candidate_type: "product".into(),
                candidates: vec!["p1".into(), "p/2".into()],
                features,
                deadline,
            };
            let body = serde_json::to_vec(&RankBody::of(&request)).expect("encodes");
            assert_eq!(parse_rank(&body).expect("parses"), request);
        }
        let rounded = RankBody::of(&RankRequest {
            context: vec![],
            candidate_type: "p".into(),
            candidates: vec![],
            features: FeatureSelection::Names(vec![]),
            deadline: Some(Duration::from_micros(1_500)),
        });
        assert_eq!(rounded.deadline_ms, Some(2));
    }

    #[test]
    fn every_letter_maps_back_to_its_status() {
        for status in [
            FeatureStatus::Present,
            FeatureStatus::Stale,
            FeatureStatus::Null,
            FeatureStatus::NotFound,
            FeatureStatus::Expired,
            FeatureStatus::Defaulted,
            FeatureStatus::NotFetched,
        ] {
            assert_eq!(status_of_letter(status_letter(status)), Some(status));
        }
        assert_eq!(status_of_letter(b'?'), None);
    }

    #[test]
    fn the_json_answer_decodes_to_the_cells_answered() {
        let rows = 5;
        let mut column = ColumnValues::new(DType::Float32, rows, FeatureStatus::NotFound);
        let mut text = ColumnValues::new(DType::String, rows, FeatureStatus::NotFound);
        for r in (0..rows).filter(|r| r % 2 == 0) {
            column.put_stored(r, Some((Value::Float32(r as f32 * 0.1), 100 + r as i64)));
            text.put_stored(r, Some((Value::String(format!("s\"{r}")), 100)));
        }
        column.judge(Freshness::of_limits(None, None), 1_000);
        text.judge(Freshness::of_limits(None, Some(850)), 1_000);
        let col = |name: &str, dtype| RankColumn {
            name: name.into(),
            feature: format!("{name}@1"),
            dtype,
            on_demand: false,
        };
        let answer = RankResponse {
            service: Some("ranker@1".into()),
            context: vec![("user".into(), "u1".into())],
            context_columns: Arc::from([]),
            context_cells: vec![],
            candidate_type: "product".into(),
            columns: Arc::from([col("ctr", DType::Float32), col("label", DType::String)]),
            candidates: (0..rows).map(|r| format!("p{r}")).collect(),
            values: vec![column, text],
            versions: BTreeMap::from([("g".to_owned(), 2)]),
            complete: true,
            defaults: vec![("ctr@1".into(), 0)],
            now_ms: 1_000,
        };
        let decoded: RankAnswer = serde_json::from_slice(&encode_json(&answer)).expect("decodes");
        assert_eq!(decoded.service.as_deref(), Some("ranker@1"));
        assert_eq!(decoded.candidates.features, vec!["ctr", "label"]);
        assert_eq!(decoded.context.entities["user"], "u1");
        assert_eq!(decoded.versions["g"], 2);
        assert_eq!(decoded.defaults["ctr@1"], 0);
        for r in 0..rows {
            assert_eq!(decoded.candidates.rows[r].id, format!("p{r}"));
            for (c, dtype) in [DType::Float32, DType::String].into_iter().enumerate() {
                let want = answer.cell(r, c);
                let (status, time, value) = decoded.cell(r, c).expect("cell");
                assert_eq!(status, Some(want.status), "row {r} column {c}");
                assert_eq!(time, want.event_time, "row {r} column {c}");
                let value = match value {
                    serde_json::Value::Null => None,
                    v => Some(crate::registry::defaults::parse_default(v, dtype).expect("typed")),
                };
                assert_eq!(value, want.value, "row {r} column {c}");
            }
        }
        assert_eq!(decoded.cell(rows, 0), None);
    }
}
