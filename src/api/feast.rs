//! Feast-compatible online serving (`POST /get-online-features`): Feast's request and
//! answer shapes mapped onto the one query planner (`crate::query::rank`), so the Feast
//! Python SDK (`online_store: {type: remote, path: http://..}`, feast >= 0.64) reads
//! featstore like a Feast feature server. The push side (`/push`,
//! `/write-to-online-store`) is [`super::feast_push`].
//!
//! # Mapping
//!
//! * A Feast feature view is a featstore feature group: `"view:feature"` names feature
//!   `feature` (or `feature@version`) of group `view`. On-demand features belong to the
//!   view [`ON_DEMAND_VIEW`] (`"on_demand:user_product_sim"`). A `feature_service` is a
//!   featstore service (`name` or `name@version`).
//! * Join keys: entity type `T` is keyed by the request column `T_id`, or `T` when the
//!   request has that column instead. A composite entity type (`user_product`) is keyed
//!   by the columns of its components (`user_id`, `product_id`).
//! * Rows: the entity type with the most distinct ids becomes the planner's candidates;
//!   the other entity types are its context, and rows are grouped by their context ids
//!   (one ranking read per distinct context; the common ranking request, one user and
//!   many products, is one read). Every group is read against one read view.
//! * Answer: column-major, `metadata.feature_names` = the request's entity columns (in
//!   request order, echoed as sent) then the features in the order asked (a service's
//!   order for a service); `full_feature_names` names them `view__feature`.
//! * Statuses: `present` and `stale` (within TTL, past the freshness SLO) are
//!   `PRESENT`; `null` is `NULL_VALUE`; `expired` (past TTL) is `OUTSIDE_MAX_AGE`;
//!   `not_found` is `NOT_FOUND`. A registered default (`defaulted`) is served as the
//!   value with `PRESENT` and no event time, as it is to every other reader: Feast has
//!   no status for it.
//! * Values: int64 as JSON integers, floats always with a decimal point or exponent
//!   (so the SDK types them as doubles), a non-finite float (or a vector holding one)
//!   as `null` with `NULL_VALUE`, vectors as lists of floats, bytes as base64 text (as
//!   Feast's server sends them). Event times are RFC 3339 UTC with a `Z`, with
//!   milliseconds when they are not whole seconds; no event time is
//!   `1970-01-01T00:00:00Z`.
//! * Errors: the body is a JSON *string* holding `{"module","class","message"}`, the
//!   shape Feast's server sends and the SDK turns back into its own exception
//!   ([`FeastError`]): an unknown view or feature is a 404
//!   `FeatureViewNotFoundException`, an unknown service a 404
//!   `FeatureServiceNotFoundException`, a missing join key a 400
//!   `RequestDataNotFoundInEntityRowsException`.
//!
//! `include_feature_view_version_metadata` is accepted and ignored (featstore answers
//! no per-view version metadata on this path).
//!
//! # Invariants
//!
//! * Pure: parsing and planning read only the registry snapshot given; encoding reads
//!   only the answers given. TTL, freshness, defaults and on-demand evaluation are the
//!   planner's (one place, as for every read).
//! * Every column of the answer has exactly one value, status and event time per
//!   request row, in request order.
//! * Parsers never panic on input; they answer a [`FeastError`] naming what is wrong.
//!
//! Stateless; safe from any thread.

use std::collections::HashMap;
use std::fmt;

use hyper::StatusCode;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::query::answer::ColumnValues;
use crate::query::rank::{
    Cell, FeatureSelection, MAX_CANDIDATES, MAX_VALUES, RankError, RankRequest, RankResponse,
};
use crate::registry::Registry;
use crate::store::ReadError;
use crate::types::{FeatureStatus, TimestampMs, Value};

/// The view on-demand features are addressed under (`"on_demand:name"`).
pub const ON_DEMAND_VIEW: &str = "on_demand";

/// Python module of the exception classes named in error bodies.
const FEAST_ERRORS: &str = "feast.errors";

/// A Feast-shaped failure: the HTTP status and the Feast exception class the SDK
/// raises for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FeastError {
    /// HTTP status.
    pub status: StatusCode,
    /// Class in `feast.errors` (e.g. `FeatureViewNotFoundException`).
    pub class: &'static str,
    /// Human-readable reason, naming the offending thing.
    pub message: String,
}

impl FeastError {
    /// An error of `class` with `status`.
    pub fn new(status: StatusCode, class: &'static str, message: impl Into<String>) -> Self {
        FeastError {
            status,
            class,
            message: message.into(),
        }
    }

    /// A 400 with Feast's base class.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "FeastError", message)
    }

    /// A 404 `FeatureViewNotFoundException`.
    pub fn unknown_view(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "FeatureViewNotFoundException",
            message,
        )
    }

    /// A 500 with Feast's base class.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "FeastError", message)
    }

    /// The error body: a JSON string holding `{"module","class","message"}` (what
    /// Feast's `FeastError.to_error_detail` makes and `from_error_detail` parses).
    pub fn body(&self) -> Vec<u8> {
        let detail = serde_json::json!({
            "module": FEAST_ERRORS,
            "class": self.class,
            "message": self.message,
        })
        .to_string();
        serde_json::Value::String(detail).to_string().into_bytes()
    }
}

impl From<ReadError> for FeastError {
    fn from(e: ReadError) -> Self {
        match &e {
            ReadError::UnknownFeature(_) | ReadError::WrongEntityType { .. } => {
                FeastError::unknown_view(e.to_string())
            }
            ReadError::UnknownEntityType(_) => FeastError::new(
                StatusCode::NOT_FOUND,
                "EntityNotFoundException",
                e.to_string(),
            ),
            ReadError::Denied(_) => {
                FeastError::new(StatusCode::FORBIDDEN, "FeastPermissionError", e.to_string())
            }
            _ if e.is_client_error() => FeastError::bad_request(e.to_string()),
            _ => FeastError::internal(e.to_string()),
        }
    }
}

impl From<RankError> for FeastError {
    fn from(e: RankError) -> Self {
        match e {
            RankError::Read(read) => read.into(),
            RankError::UnknownService(_) => FeastError::new(
                StatusCode::NOT_FOUND,
                "FeatureServiceNotFoundException",
                e.to_string(),
            ),
            RankError::RetiredService(_) => FeastError::new(
                StatusCode::GONE,
                "FeatureServiceNotFoundException",
                e.to_string(),
            ),
            _ if e.is_client_error() => FeastError::bad_request(e.to_string()),
            _ => FeastError::internal(e.to_string()),
        }
    }
}

/// JSON columns in the order sent (`{"user_id": [..], "item_id": [..]}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns(pub Vec<(String, Vec<serde_json::Value>)>);

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ColumnsVisitor;
        impl<'de> Visitor<'de> for ColumnsVisitor {
            type Value = Columns;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of column name to a list of values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Columns, A::Error> {
                let mut out: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
                while let Some((name, values)) = map.next_entry::<String, _>()? {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "column `{name}` is given twice"
                        )));
                    }
                    out.push((name, values));
                }
                Ok(Columns(out))
            }
        }
        d.deserialize_map(ColumnsVisitor)
    }
}

impl Columns {
    /// The column called `name`.
    pub fn get(&self, name: &str) -> Option<&[serde_json::Value]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The common length of every column; `Err` when they differ.
    pub fn rows(&self) -> Result<usize, FeastError> {
        let Some((first, values)) = self.0.first() else {
            return Ok(0);
        };
        let rows = values.len();
        match self.0.iter().find(|(_, v)| v.len() != rows) {
            Some((name, v)) => Err(FeastError::bad_request(format!(
                "column `{name}` has {} values, column `{first}` has {rows}",
                v.len()
            ))),
            None => Ok(rows),
        }
    }
}

/// What a Feast request reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeastSelection {
    /// `view:feature` references, in answer order.
    Features(Vec<String>),
    /// A feature service.
    Service(String),
}

/// A parsed `POST /get-online-features` body.
#[derive(Debug, Clone, PartialEq)]
pub struct FeastRequest {
    /// Entity (join key) columns, in request order.
    pub entities: Columns,
    /// What to read.
    pub selection: FeastSelection,
    /// Name features `view__feature` rather than `feature`.
    pub full_feature_names: bool,
}

#[derive(Deserialize)]
struct RawRequest {
    entities: Columns,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    feature_service: Option<String>,
    #[serde(default)]
    full_feature_names: bool,
    #[serde(default)]
    #[allow(dead_code)]
    include_feature_view_version_metadata: bool,
}

/// Parses a `POST /get-online-features` body.
pub fn parse_request(body: &[u8]) -> Result<FeastRequest, FeastError> {
    let raw: RawRequest = serde_json::from_slice(body)
        .map_err(|e| FeastError::bad_request(format!("invalid request body: {e}")))?;
    let selection = match (raw.features, raw.feature_service) {
        (Some(_), Some(_)) => {
            return Err(FeastError::bad_request(
                "give either `features` or `feature_service`, not both",
            ));
        }
        (Some(features), None) => FeastSelection::Features(features),
        (None, Some(service)) => FeastSelection::Service(service),
        (None, None) => {
            return Err(FeastError::bad_request(
                "give `features` (a list of `view:feature`) or `feature_service`",
            ));
        }
    };
    Ok(FeastRequest {
        entities: raw.entities,
        selection,
        full_feature_names: raw.full_feature_names,
    })
}

/// The text of an entity value: strings as given, integers in decimal.
pub fn entity_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The request column keying entity type `entity_type`: `{type}_id`, else `{type}`.
pub fn join_key<'c>(entities: &'c Columns, entity_type: &str) -> Option<&'c str> {
    let with_id = format!("{entity_type}_id");
    entities
        .0
        .iter()
        .find(|(n, _)| *n == with_id)
        .or_else(|| entities.0.iter().find(|(n, _)| n == entity_type))
        .map(|(n, _)| n.as_str())
}

/// One feature column of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Output {
    /// The featstore name the planner is asked (and answers the column under).
    asked: String,
    /// The name in the answer (`feature` or `view__feature`).
    answer_name: String,
}

/// A Feast request resolved against one registry snapshot: the ranking reads to run
/// and how their answers make the Feast answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FeastPlan {
    entities: Columns,
    rows: usize,
    outputs: Vec<Output>,
    /// The reads, one per distinct context ([`FeastPlan::take_requests`]).
    requests: Vec<RankRequest>,
    /// How many reads were planned.
    reads: usize,
    /// Per request row: (read, position among that read's candidates).
    placement: Vec<(usize, usize)>,
}

/// Splits `view:feature`.
fn split_reference(reference: &str) -> Result<(&str, &str), FeastError> {
    match reference.split_once(':') {
        Some((view, feature)) if !view.is_empty() && !feature.is_empty() => Ok((view, feature)),
        _ => Err(FeastError::bad_request(format!(
            "feature reference `{reference}` is not of the form `view:feature`"
        ))),
    }
}

/// The view (group, or [`ON_DEMAND_VIEW`]) of featstore feature `name` and the simple
/// entity types it is keyed by; `None` when no such feature exists.
fn locate(registry: &Registry, name: &str) -> Option<(String, Vec<String>)> {
    let catalog = registry.catalog();
    let simple = |entity_type: &str, out: &mut Vec<String>| {
        let components = match catalog.entity_type(entity_type) {
            Some(composite) => composite.components.clone(),
            None => vec![entity_type.to_owned()],
        };
        for c in components {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    };
    let mut types = Vec::new();
    if let Some(def) = registry.resolve(name) {
        simple(&def.spec.entity_type, &mut types);
        return Some((def.spec.group.clone(), types));
    }
    let od = catalog.resolve_on_demand(name)?;
    for input in &od.resolved_inputs {
        if let Some(def) = registry.resolve(input) {
            simple(&def.spec.entity_type, &mut types);
        }
    }
    Some((ON_DEMAND_VIEW.to_owned(), types))
}

/// Resolves `request` against `registry` into the reads to run.
pub fn plan(registry: &Registry, request: FeastRequest) -> Result<FeastPlan, FeastError> {
    let FeastRequest {
        entities,
        selection,
        full_feature_names,
    } = request;
    if entities.0.is_empty() {
        return Err(FeastError::bad_request("`entities` names no join key"));
    }
    let rows = entities.rows()?;
    if rows > MAX_CANDIDATES {
        return Err(FeastError::bad_request(format!(
            "{rows} entity rows exceed the limit of {MAX_CANDIDATES}"
        )));
    }
    let name = |view: &str, feature: &str| {
        if full_feature_names {
            format!("{view}__{feature}")
        } else {
            feature.to_owned()
        }
    };
    let mut outputs = Vec::new();
    let mut types: Vec<String> = Vec::new();
    let mut add_types = |t: Vec<String>| {
        for t in t {
            if !types.contains(&t) {
                types.push(t);
            }
        }
    };
    let features = match &selection {
        FeastSelection::Features(references) => {
            if references.is_empty() {
                return Err(FeastError::bad_request("`features` is empty"));
            }
            for reference in references {
                let (view, feature) = split_reference(reference)?;
                let Some((home, t)) = locate(registry, feature) else {
                    return Err(FeastError::unknown_view(format!(
                        "feature view `{view}` has no feature `{feature}`"
                    )));
                };
                if home != view {
                    return Err(FeastError::unknown_view(format!(
                        "feature view `{view}` has no feature `{feature}` (it is in `{home}`)"
                    )));
                }
                add_types(t);
                outputs.push(Output {
                    asked: feature.to_owned(),
                    answer_name: name(view, feature),
                });
            }
            FeatureSelection::Names(outputs.iter().map(|o| o.asked.clone()).collect())
        }
        FeastSelection::Service(asked) => {
            let service = registry
                .catalog()
                .resolve_service(asked)
                .ok_or_else(|| FeastError::from(RankError::UnknownService(asked.clone())))?;
            for (listed, pinned) in service.spec.features.iter().zip(&service.resolved_features) {
                let (view, t) = locate(registry, pinned).ok_or_else(|| {
                    FeastError::internal(format!(
                        "feature `{pinned}` of service `{asked}` is not registered"
                    ))
                })?;
                add_types(t);
                outputs.push(Output {
                    asked: listed.clone(),
                    answer_name: name(&view, listed),
                });
            }
            FeatureSelection::Service(asked.clone())
        }
    };
    if rows.saturating_mul(outputs.len()) > MAX_VALUES {
        return Err(FeastError::bad_request(format!(
            "{rows} rows x {} features exceed the limit of {MAX_VALUES} values",
            outputs.len()
        )));
    }

    // Each entity type's id per row.
    let mut ids: Vec<(String, Vec<String>)> = Vec::with_capacity(types.len());
    for t in &types {
        let key = join_key(&entities, t).ok_or_else(|| {
            FeastError::new(
                StatusCode::BAD_REQUEST,
                "RequestDataNotFoundInEntityRowsException",
                format!("the features asked need entity type `{t}`: give its join key `{t}_id`"),
            )
        })?;
        let column = entities.get(key).unwrap_or_default();
        let texts = column
            .iter()
            .enumerate()
            .map(|(row, v)| {
                entity_text(v).ok_or_else(|| {
                    FeastError::bad_request(format!(
                        "join key `{key}` row {row}: {v} is not a string or an integer"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        ids.push((t.clone(), texts));
    }
    // Candidates: the type with the most distinct ids (fewest reads).
    let distinct = |v: &[String]| {
        let mut v: Vec<&String> = v.iter().collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let candidate = ids
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, v))| (distinct(v), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
        .ok_or_else(|| FeastError::internal("no entity type to read"))?;

    let mut requests: Vec<RankRequest> = Vec::new();
    let mut by_context: HashMap<Vec<&str>, usize> = HashMap::new();
    let mut placement = Vec::with_capacity(rows);
    for row in 0..rows {
        let context: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != candidate)
            .map(|(_, (_, v))| v[row].as_str())
            .collect();
        let read = match by_context.get(&context) {
            Some(read) => *read,
            None => {
                let read = requests.len();
                requests.push(RankRequest {
                    context: ids
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != candidate)
                        .map(|(_, (t, v))| (t.clone(), v[row].clone()))
                        .collect(),
                    candidate_type: ids[candidate].0.clone(),
                    candidates: Vec::new(),
                    features: features.clone(),
                    deadline: None,
                });
                by_context.insert(context, read);
                read
            }
        };
        let candidates = &mut requests[read].candidates;
        placement.push((read, candidates.len()));
        candidates.push(ids[candidate].1[row].clone());
    }
    Ok(FeastPlan {
        entities,
        rows,
        outputs,
        reads: requests.len(),
        requests,
        placement,
    })
}

impl FeastPlan {
    /// The ranking reads to run, one per distinct context, in the order [`encode`]
    /// takes their answers; run them all against one read view.
    pub fn take_requests(&mut self) -> Vec<RankRequest> {
        std::mem::take(&mut self.requests)
    }
}

/// Where a read's answer holds an output column.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Context(usize),
    Candidate(usize),
}

/// The Feast status of a featstore status.
pub fn status_name(status: FeatureStatus) -> &'static str {
    match status {
        FeatureStatus::Present | FeatureStatus::Stale | FeatureStatus::Defaulted => "PRESENT",
        FeatureStatus::Null => "NULL_VALUE",
        FeatureStatus::Expired => "OUTSIDE_MAX_AGE",
        FeatureStatus::NotFound | FeatureStatus::NotFetched => "NOT_FOUND",
    }
}

/// Encodes the Feast answer of `plan` from the answers of its reads (same order as
/// [`FeastPlan::take_requests`]).
pub fn encode<A: std::borrow::Borrow<RankResponse>>(
    plan: &FeastPlan,
    answers: &[A],
) -> Result<Vec<u8>, FeastError> {
    if answers.len() != plan.reads {
        return Err(FeastError::internal(format!(
            "{} reads answered, {} planned",
            answers.len(),
            plan.reads
        )));
    }
    let locs = answers
        .iter()
        .map(|a| {
            let a: &RankResponse = a.borrow();
            plan.outputs
                .iter()
                .map(|o| {
                    if let Some(i) = a.columns.iter().position(|c| c.name == o.asked) {
                        Ok(Loc::Candidate(i))
                    } else if let Some(i) = a.context_columns.iter().position(|c| c.name == o.asked)
                    {
                        Ok(Loc::Context(i))
                    } else {
                        Err(FeastError::internal(format!(
                            "the read did not answer `{}`",
                            o.asked
                        )))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;

    let rows = plan.rows;
    let mut out = Vec::with_capacity(64 + rows * (plan.outputs.len() + 1) * 48);
    out.extend_from_slice(br#"{"metadata":{"feature_names":["#);
    let names = plan
        .entities
        .0
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(plan.outputs.iter().map(|o| o.answer_name.as_str()));
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, name);
    }
    out.extend_from_slice(br#"]},"results":["#);
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    for (_, values) in &plan.entities.0 {
        sep(&mut out);
        out.extend_from_slice(br#"{"values":"#);
        // Echoed as sent: the values parsed from the request re-encode losslessly.
        serde_json::to_writer(&mut out, values)
            .map_err(|e| FeastError::internal(format!("encoding entities: {e}")))?;
        out.extend_from_slice(br#","statuses":["#);
        repeat(&mut out, b"\"PRESENT\"", rows);
        out.extend_from_slice(br#"],"event_timestamps":["#);
        repeat(&mut out, EPOCH, rows);
        out.extend_from_slice(b"]}");
    }
    let mut statuses: Vec<&'static str> = Vec::with_capacity(rows);
    let mut times: Vec<Option<TimestampMs>> = Vec::with_capacity(rows);
    for (j, _) in plan.outputs.iter().enumerate() {
        sep(&mut out);
        out.extend_from_slice(br#"{"values":["#);
        statuses.clear();
        times.clear();
        for (row, &(read, pos)) in plan.placement.iter().enumerate() {
            if row > 0 {
                out.push(b',');
            }
            let answer: &RankResponse = answers[read].borrow();
            let (status, time) = match locs[read][j] {
                Loc::Candidate(c) => match answer.values.get(c) {
                    Some(column) => write_column_cell(&mut out, column, pos),
                    None => {
                        out.extend_from_slice(b"null");
                        (FeatureStatus::NotFound, None)
                    }
                },
                Loc::Context(c) => match answer.context_cells.get(c) {
                    Some(cell) => write_cell(&mut out, cell),
                    None => {
                        out.extend_from_slice(b"null");
                        (FeatureStatus::NotFound, None)
                    }
                },
            };
            statuses.push(status_name(status));
            times.push(time);
        }
        out.extend_from_slice(br#"],"statuses":["#);
        for (i, s) in statuses.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(br#"],"event_timestamps":["#);
        for (i, t) in times.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            write_rfc3339(&mut out, t.unwrap_or(0));
            out.push(b'"');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(br#"],"status":true}"#);
    Ok(out)
}

const EPOCH: &[u8] = b"\"1970-01-01T00:00:00Z\"";

fn repeat(out: &mut Vec<u8>, item: &[u8], n: usize) {
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes row `row` of `column`; returns its (Feast-adjusted) status and event time.
fn write_column_cell(
    out: &mut Vec<u8>,
    column: &ColumnValues,
    row: usize,
) -> (FeatureStatus, Option<TimestampMs>) {
    let status = column.status(row);
    let time = column.event_time(row);
    match column.value(row) {
        Some(v) => finish(out, status, time, &v),
        None => {
            out.extend_from_slice(b"null");
            (status, time)
        }
    }
}

fn write_cell(out: &mut Vec<u8>, cell: &Cell) -> (FeatureStatus, Option<TimestampMs>) {
    match &cell.value {
        Some(v) => finish(out, cell.status, cell.event_time, v),
        None => {
            out.extend_from_slice(b"null");
            (cell.status, cell.event_time)
        }
    }
}

fn finish(
    out: &mut Vec<u8>,
    status: FeatureStatus,
    time: Option<TimestampMs>,
    value: &Value,
) -> (FeatureStatus, Option<TimestampMs>) {
    if write_value(out, value) {
        (status, time)
    } else {
        (FeatureStatus::Null, time)
    }
}

/// Writes `value` as Feast's JSON; false (and `null` written) when it has no JSON form
/// (a non-finite float, or a vector holding one) or is an explicit null.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> bool {
    match value {
        Value::Null => {
            out.extend_from_slice(b"null");
            return false;
        }
        Value::Int64(x) => out.extend_from_slice(itoa(*x).as_bytes()),
        Value::Float64(x) if x.is_finite() => super::float_json::push_f64(out, *x),
        Value::Float32(x) if x.is_finite() => super::float_json::push_f32(out, *x),
        Value::Float64(_) | Value::Float32(_) => {
            out.extend_from_slice(b"null");
            return false;
        }
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => {
            out.push(b'"');
            base64(out, b);
            out.push(b'"');
        }
        Value::Float32Vector(v) => {
            if !v.iter().all(|x| x.is_finite()) {
                out.extend_from_slice(b"null");
                return false;
            }
            super::float_json::push_f32_array(out, v);
        }
    }
    true
}

fn itoa(x: i64) -> String {
    x.to_string()
}

/// Standard base64 with padding (RFC 4648 §4), as Python's `base64.b64encode`.
fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| ALPHABET[((n >> shift) & 63) as usize];
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { b'=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { b'=' });
    }
}

/// Earliest and latest event times written as themselves (years 0000 to 9999); others
/// are clamped into that range.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// Writes `ms` since the epoch as RFC 3339 UTC: `2026-11-30T10:00:00Z`, or with `.mmm`
/// when not a whole second.
pub fn write_rfc3339(out: &mut Vec<u8>, ms: TimestampMs) {
    let ms = ms.clamp(MIN_MS, MAX_MS);
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let text = if millis == 0 {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    } else {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    };
    out.extend_from_slice(text.as_bytes());
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(ms: i64) -> String {
        let mut out = Vec::new();
        write_rfc3339(&mut out, ms);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn event_times_are_rfc3339_utc() {
        assert_eq!(rfc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc(i64::MIN), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn values_have_feast_json_forms() {
        let enc = |v: Value| {
            let mut out = Vec::new();
            let ok = write_value(&mut out, &v);
            (String::from_utf8(out).expect("utf8"), ok)
        };
        assert_eq!(enc(Value::Float64(1.0)), ("1.0".into(), true));
        assert_eq!(enc(Value::Float32(0.1)), ("0.1".into(), true));
        assert_eq!(enc(Value::Float64(f64::NAN)), ("null".into(), false));
        assert_eq!(enc(Value::Float32(f32::INFINITY)), ("null".into(), false));
        assert_eq!(enc(Value::Int64(-3)), ("-3".into(), true));
        assert_eq!(enc(Value::Bool(true)), ("true".into(), true));
        assert_eq!(
            enc(Value::String("a\"b".into())),
            ("\"a\\\"b\"".into(), true)
        );
        assert_eq!(
            enc(Value::Bytes(b"hi!?".to_vec())),
            ("\"aGkhPw==\"".into(), true)
        );
        assert_eq!(
            enc(Value::Float32Vector(vec![1.0, 0.5])),
            ("[1.0,0.5]".into(), true)
        );
        assert_eq!(
            enc(Value::Float32Vector(vec![1.0, f32::NAN])),
            ("null".into(), false)
        );
        assert_eq!(enc(Value::Null), ("null".into(), false));
    }

    #[test]
    fn error_bodies_are_json_strings_of_feast_error_details() {
        let body = FeastError::unknown_view("feature view `x` has no feature `y`").body();
        let outer: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let inner: serde_json::Value =
            serde_json::from_str(outer.as_str().expect("a string")).expect("json inside");
        assert_eq!(inner["module"], "feast.errors");
        assert_eq!(inner["class"], "FeatureViewNotFoundException");
        assert_eq!(inner["message"], "feature view `x` has no feature `y`");
    }

    #[test]
    fn requests_parse_in_column_order() {
        let req = parse_request(
            br#"{"entities":{"user_id":[7,7],"item_id":["a","b"]},"features":["v:f"],"full_feature_names":true}"#,
        )
        .expect("parses");
        let names: Vec<&str> = req.entities.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["user_id", "item_id"]);
        assert_eq!(req.selection, FeastSelection::Features(vec!["v:f".into()]));
        assert!(req.full_feature_names);
        assert_eq!(req.entities.rows(), Ok(2));
        assert_eq!(entity_text(&serde_json::json!(7)).as_deref(), Some("7"));
        assert_eq!(entity_text(&serde_json::json!(1.5)), None);
        assert_eq!(join_key(&req.entities, "user"), Some("user_id"));
        assert_eq!(join_key(&req.entities, "item"), Some("item_id"));
        assert_eq!(join_key(&req.entities, "shop"), None);

        for bad in [
            &br#"{"entities":{"a":[1]}}"#[..],
            br#"{"entities":{"a":[1]},"features":["v:f"],"feature_service":"s"}"#,
            br#"{"entities":{"a":[1],"a":[2]},"features":["v:f"]}"#,
            br#"{"entities":[1],"features":["v:f"]}"#,
            b"not json",
        ] {
            let err = parse_request(bad).expect_err("refused");
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{err}");
        }
        let uneven = parse_request(br#"{"entities":{"a":[1],"b":[1,2]},"features":["v:f"]}"#)
            .expect("parses");
        assert!(uneven.entities.rows().is_err());
    }

    #[test]
    fn statuses_map_onto_feasts() {
        assert_eq!(status_name(FeatureStatus::Present), "PRESENT");
        assert_eq!(status_name(FeatureStatus::Stale), "PRESENT");
        assert_eq!(status_name(FeatureStatus::Null), "NULL_VALUE");
        assert_eq!(status_name(FeatureStatus::NotFound), "NOT_FOUND");
        assert_eq!(status_name(FeatureStatus::Expired), "OUTSIDE_MAX_AGE");
    }
}
