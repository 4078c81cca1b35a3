//! Ranking reads: one request carries a context (one user, one retailer...), a list of
//! candidate entities (hundreds of products) and the features to read (names, or a
//! feature service); the answer holds the context's features once and one row per
//! candidate, in the order asked.
//!
//! A request is first *planned* against the read view's registry (names resolved once,
//! each stored feature placed on the context or the candidates, composite entity types
//! keyed from the context ids and each candidate id, on-demand inputs added as hidden
//! columns), then *executed*: one [`lookup_group`] call per feature group for all
//! candidates at once, recording straight into typed columns ([`ColumnValues`]: a
//! status, an event time and a value per row); each column is then judged for TTL and
//! freshness ([`Freshness`], the one place they apply), on-demand features are
//! evaluated per row from the columns, and defaults applied per column.
//!
//! Deadline: before each group's lookup the elapsed time is checked against the
//! request's deadline; once it has passed, the remaining groups are not read and their
//! values (and the on-demand features that need them) are answered `not_fetched`. A
//! deadline of zero therefore fetches nothing, deterministically.
//!
//! Thread-safety: a pure function of one read view; takes no lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::answer::{ColumnData, ColumnValues, NO_TIME};
use super::error::ReadError;
use super::lookup::{ColumnSink, GroupLookup, lookup_group};
use super::read::Freshness;
use super::view::ReadView;
use crate::codec::key::EntityKey;
use crate::registry::defaults::parse_default;
use crate::registry::entity::{EntityIdError, composite_id};
use crate::registry::on_demand::{Input, InputValue, MAX_INPUTS, OnDemandDefinition, evaluate};
use crate::registry::{FeatureDefinition, Registry};
use crate::types::{DType, FeatureId, FeatureStatus, TimestampMs, Value};

/// Most candidates one request may carry.
pub const MAX_CANDIDATES: usize = 10_000;

/// Most values (candidates x columns, stored inputs included) one request may read,
/// which bounds its memory (13 to 20 bytes per scalar value while it is answered; a
/// vector's components count 4 bytes each on top).
pub const MAX_VALUES: usize = 2_000_000;

/// Which features a ranking request reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureSelection {
    /// These names (`name` or `name@version`; stored or on-demand), in response order.
    Names(Vec<String>),
    /// The features of this service (`name` for its newest live version, or
    /// `name@version`).
    Service(String),
}

/// One ranking request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankRequest {
    /// Context entities, `(entity type, id)`; at most one per entity type.
    pub context: Vec<(String, String)>,
    /// Entity type of the candidates.
    pub candidate_type: String,
    /// Candidate ids, in the order rows are answered.
    pub candidates: Vec<String>,
    /// What to read.
    pub features: FeatureSelection,
    /// Time budget for fetching; what is not fetched in time is `not_fetched`.
    pub deadline: Option<Duration>,
}

/// One answered value.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// What was found.
    pub status: FeatureStatus,
    /// The value (`present` and `defaulted` only).
    pub value: Option<Value>,
    /// Event time of the stored value; the request time for computed values; none
    /// for defaults.
    pub event_time: Option<TimestampMs>,
}

impl Cell {
    const NOT_FETCHED: Cell = Cell {
        status: FeatureStatus::NotFetched,
        value: None,
        event_time: None,
    };
}

/// A column of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RankColumn {
    /// The name as asked (or as the service lists it).
    pub name: String,
    /// The feature served, `name@version`.
    pub feature: String,
    /// dtype of its values (`float64` for on-demand features).
    pub dtype: DType,
    /// True for an on-demand feature.
    pub on_demand: bool,
}

/// The answer to a [`RankRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct RankResponse {
    /// The service read, `name@version`, when one was asked.
    pub service: Option<String>,
    /// Context entities, as asked.
    pub context: Vec<(String, String)>,
    /// Columns answered once for the context.
    pub context_columns: Vec<RankColumn>,
    /// One cell per context column.
    pub context_cells: Vec<Cell>,
    /// Entity type of the candidates.
    pub candidate_type: String,
    /// Columns answered per candidate.
    pub columns: Vec<RankColumn>,
    /// Candidate ids, in the order asked.
    pub candidates: Vec<String>,
    /// Column-major: one [`ColumnValues`] per column of `columns`, one row per
    /// candidate.
    pub values: Vec<ColumnValues>,
    /// Batch version read per group.
    pub versions: BTreeMap<String, u64>,
    /// False when the deadline left some values `not_fetched`.
    pub complete: bool,
    /// Defaulted values per feature (`name@version`), for features with any.
    pub defaults: Vec<(String, u64)>,
    /// The request time, ms since the epoch.
    pub now_ms: TimestampMs,
}

impl RankResponse {
    /// The cell of candidate `row`, column `column` (an owned copy).
    pub fn cell(&self, row: usize, column: usize) -> Cell {
        match self.values.get(column) {
            Some(c) => cell_of(c, row),
            None => Cell::NOT_FETCHED,
        }
    }

    /// The cells of candidate `row`, in column order (owned copies).
    pub fn row(&self, row: usize) -> Vec<Cell> {
        self.values.iter().map(|c| cell_of(c, row)).collect()
    }

    /// Values answered per candidate row (the number of columns).
    pub fn width(&self) -> usize {
        self.values.len()
    }
}

/// A ranking request that was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RankError {
    /// A read-path error (unknown feature or entity type, bad id, storage).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// No such feature service.
    #[error("unknown feature service `{0}`")]
    UnknownService(String),
    /// The service is retired.
    #[error("feature service `{0}` is retired")]
    RetiredService(String),
    /// A feature's entity type is neither the candidates' nor keyed by the context.
    #[error(
        "feature `{feature}` needs entity type `{entity_type}`, which is neither the candidates' (`{candidates}`) nor given in the context"
    )]
    Unplaceable {
        /// Feature as asked.
        feature: String,
        /// Its entity type, or the missing component of its composite type.
        entity_type: String,
        /// The candidates' entity type.
        candidates: String,
    },
    /// The same feature is asked twice.
    #[error("feature `{0}` is asked more than once")]
    Duplicate(String),
    /// A context id is not a valid id of its entity type.
    #[error("context `{entity_type}`: {source}")]
    InvalidContextId {
        /// The context entity type.
        entity_type: String,
        /// Why the id is invalid.
        source: EntityIdError,
    },
    /// A candidate id is not a valid id of the candidates' entity type.
    #[error("candidate {index}: {source}")]
    InvalidCandidateId {
        /// Position of the candidate in the request, from 0.
        index: usize,
        /// Why the id is invalid.
        source: EntityIdError,
    },
    /// The context names an entity type twice.
    #[error("the context names entity type `{0}` more than once")]
    DuplicateContext(String),
    /// Too many values (candidates x columns).
    #[error(
        "{candidates} candidates x {columns} columns exceed the limit of {max} values per request"
    )]
    TooManyValues {
        /// Candidates sent.
        candidates: usize,
        /// Columns read per candidate (on-demand inputs included).
        columns: usize,
        /// [`MAX_VALUES`].
        max: usize,
    },
    /// Too many candidates.
    #[error("{got} candidates exceed the limit of {max}")]
    TooManyCandidates {
        /// Candidates sent.
        got: usize,
        /// [`MAX_CANDIDATES`].
        max: usize,
    },
}

impl RankError {
    /// True when the caller, not the store, is at fault.
    pub fn is_client_error(&self) -> bool {
        match self {
            RankError::Read(e) => e.is_client_error(),
            _ => true,
        }
    }
}

/// Where a value comes from: the context row or each candidate's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Context,
    Candidate,
}

/// One part of an entity key: the candidate's id or context entity `i`'s id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Candidate,
    Context(usize),
}

/// How the key of one entity type is formed for a request.
struct KeySpace {
    entity_type: String,
    parts: Vec<Part>,
    composite: bool,
}

impl KeySpace {
    fn place(&self) -> Place {
        if self.parts.contains(&Part::Candidate) {
            Place::Candidate
        } else {
            Place::Context
        }
    }

    fn id(&self, context: &[(String, String)], candidate: &str) -> String {
        let part = |p: &Part| match p {
            Part::Candidate => candidate,
            Part::Context(i) => context.get(*i).map_or("", |(_, id)| id.as_str()),
        };
        if self.composite {
            let parts: Vec<&str> = self.parts.iter().map(part).collect();
            composite_id(&parts)
        } else {
            self.parts.first().map(part).unwrap_or_default().to_owned()
        }
    }
}

/// `(group, key space, wanted (feature id, column))` of one group's lookup.
type GroupColumns<'r> = (&'r str, usize, Vec<(FeatureId, usize)>);

/// The stored columns of one place (context or candidates).
#[derive(Default)]
struct StoredColumns<'r> {
    defs: Vec<&'r Arc<FeatureDefinition>>,
    /// `(group, key space, wanted (feature id, column) sorted)`, first-seen order.
    groups: Vec<GroupColumns<'r>>,
    by_id: Vec<(FeatureId, usize)>,
}

impl<'r> StoredColumns<'r> {
    fn column(&mut self, def: &'r Arc<FeatureDefinition>, space: usize) -> usize {
        if let Some(&(_, col)) = self.by_id.iter().find(|(id, _)| *id == def.id) {
            return col;
        }
        let col = self.defs.len();
        self.defs.push(def);
        self.by_id.push((def.id, col));
        match self
            .groups
            .iter_mut()
            .find(|(g, _, _)| *g == def.spec.group)
        {
            Some((_, _, wanted)) => wanted.push((def.id, col)),
            None => self
                .groups
                .push((&def.spec.group, space, vec![(def.id, col)])),
        }
        col
    }
}

/// What an output column is computed from.
enum Source {
    Stored {
        col: usize,
        default: Option<Value>,
    },
    OnDemand {
        def: Arc<OnDemandDefinition>,
        inputs: Vec<(Place, usize)>,
    },
}

struct OutColumn {
    column: RankColumn,
    place: Place,
    source: Source,
}

struct Plan<'r> {
    spaces: Vec<KeySpace>,
    context: StoredColumns<'r>,
    candidates: StoredColumns<'r>,
    outputs: Vec<OutColumn>,
    service: Option<String>,
}

struct Planner<'r, 'q> {
    registry: &'r Registry,
    request: &'q RankRequest,
    spaces: Vec<KeySpace>,
    context: StoredColumns<'r>,
    candidates: StoredColumns<'r>,
}

impl<'r> Planner<'r, '_> {
    /// The key space of `entity_type`, created on first use.
    fn space(&mut self, feature: &str, entity_type: &str) -> Result<usize, RankError> {
        if let Some(i) = self
            .spaces
            .iter()
            .position(|s| s.entity_type == entity_type)
        {
            return Ok(i);
        }
        let request = self.request;
        let simple = |t: &str| -> Option<Part> {
            if t == request.candidate_type {
                Some(Part::Candidate)
            } else {
                request
                    .context
                    .iter()
                    .position(|(ct, _)| ct == t)
                    .map(Part::Context)
            }
        };
        let unplaceable = |t: &str| RankError::Unplaceable {
            feature: feature.to_owned(),
            entity_type: t.to_owned(),
            candidates: request.candidate_type.clone(),
        };
        let space = if let Some(part) = simple(entity_type) {
            KeySpace {
                entity_type: entity_type.to_owned(),
                parts: vec![part],
                composite: false,
            }
        } else if let Some(composite) = self.registry.catalog().entity_type(entity_type) {
            let parts = composite
                .components
                .iter()
                .map(|c| simple(c).ok_or_else(|| unplaceable(c)))
                .collect::<Result<Vec<_>, _>>()?;
            KeySpace {
                entity_type: entity_type.to_owned(),
                parts,
                composite: true,
            }
        } else {
            return Err(unplaceable(entity_type));
        };
        self.spaces.push(space);
        Ok(self.spaces.len() - 1)
    }

    fn stored(
        &mut self,
        asked: &str,
        def: &'r Arc<FeatureDefinition>,
    ) -> Result<(Place, usize), RankError> {
        let space = self.space(asked, &def.spec.entity_type)?;
        let place = self.spaces[space].place();
        let columns = match place {
            Place::Context => &mut self.context,
            Place::Candidate => &mut self.candidates,
        };
        Ok((place, columns.column(def, space)))
    }

    fn output(&mut self, asked: &str, pinned: &str) -> Result<OutColumn, RankError> {
        let registry = self.registry;
        if let Some(def) = registry.resolve(pinned) {
            let (place, col) = self.stored(asked, def)?;
            let default = match &def.spec.default {
                // Checked at registration; a literal that no longer converts serves no default.
                Some(literal) => parse_default(literal, def.spec.dtype).ok(),
                None => None,
            };
            return Ok(OutColumn {
                column: RankColumn {
                    name: asked.to_owned(),
                    feature: def.qualified_name(),
                    dtype: def.spec.dtype,
                    on_demand: false,
                },
                place,
                source: Source::Stored { col, default },
            });
        }
        let Some(od) = registry.catalog().resolve_on_demand(pinned) else {
            return Err(ReadError::UnknownFeature(asked.to_owned()).into());
        };
        let mut inputs = Vec::with_capacity(od.resolved_inputs.len());
        for input in &od.resolved_inputs {
            let def = registry
                .resolve(input)
                .ok_or_else(|| ReadError::UnknownFeature(input.clone()))?;
            inputs.push(self.stored(asked, def)?);
        }
        let place = if inputs.iter().any(|(p, _)| *p == Place::Candidate) {
            Place::Candidate
        } else {
            Place::Context
        };
        Ok(OutColumn {
            column: RankColumn {
                name: asked.to_owned(),
                feature: od.qualified_name(),
                dtype: DType::Float64,
                on_demand: true,
            },
            place,
            source: Source::OnDemand {
                def: od.clone(),
                inputs,
            },
        })
    }
}

/// Resolves names (or the service) into a plan.
fn plan<'r>(registry: &'r Registry, request: &RankRequest) -> Result<Plan<'r>, RankError> {
    let candidate_type = request.candidate_type.as_str();
    let known =
        registry.has_entity_type(candidate_type)
            || registry.catalog().entity_types().iter().any(|e| {
                e.name == candidate_type || e.components.iter().any(|c| c == candidate_type)
            });
    if !known {
        return Err(ReadError::UnknownEntityType(request.candidate_type.clone()).into());
    }
    if request.candidates.len() > MAX_CANDIDATES {
        return Err(RankError::TooManyCandidates {
            got: request.candidates.len(),
            max: MAX_CANDIDATES,
        });
    }
    for (i, (entity_type, id)) in request.context.iter().enumerate() {
        if request.context[..i].iter().any(|(t, _)| t == entity_type) {
            return Err(RankError::DuplicateContext(entity_type.clone()));
        }
        registry
            .entity_id_rule(entity_type)
            .check(id.as_bytes())
            .map_err(|source| RankError::InvalidContextId {
                entity_type: entity_type.clone(),
                source,
            })?;
    }
    let candidate_ids = registry.entity_id_rule(candidate_type);
    for (index, id) in request.candidates.iter().enumerate() {
        candidate_ids
            .check(id.as_bytes())
            .map_err(|source| RankError::InvalidCandidateId { index, source })?;
    }
    let (service, names): (Option<String>, Vec<(&str, &str)>) = match &request.features {
        FeatureSelection::Names(names) => (
            None,
            names.iter().map(|n| (n.as_str(), n.as_str())).collect(),
        ),
        FeatureSelection::Service(asked) => {
            let service = registry
                .catalog()
                .resolve_service(asked)
                .ok_or_else(|| RankError::UnknownService(asked.clone()))?;
            if !service.is_live() {
                return Err(RankError::RetiredService(service.qualified_name()));
            }
            (
                Some(service.qualified_name()),
                service
                    .spec
                    .features
                    .iter()
                    .zip(&service.resolved_features)
                    .map(|(a, p)| (a.as_str(), p.as_str()))
                    .collect(),
            )
        }
    };
    if names.is_empty() {
        return Err(ReadError::NoFeatures.into());
    }
    let mut planner = Planner {
        registry,
        request,
        spaces: Vec::new(),
        context: StoredColumns::default(),
        candidates: StoredColumns::default(),
    };
    let mut outputs: Vec<OutColumn> = Vec::with_capacity(names.len());
    for (asked, pinned) in names {
        let out = planner.output(asked, pinned)?;
        if outputs
            .iter()
            .any(|o| o.column.feature == out.column.feature)
        {
            return Err(RankError::Duplicate(asked.to_owned()));
        }
        outputs.push(out);
    }
    let columns = planner.candidates.defs.len() + outputs.len();
    if request.candidates.len().saturating_mul(columns) > MAX_VALUES {
        return Err(RankError::TooManyValues {
            candidates: request.candidates.len(),
            columns,
            max: MAX_VALUES,
        });
    }
    Ok(Plan {
        spaces: planner.spaces,
        context: planner.context,
        candidates: planner.candidates,
        outputs,
        service,
    })
}

/// Encodes one key per candidate (or one for the context) of each key space used.
/// Every id was checked by [`plan`]; a composite id made of checked components can
/// still be too long, which `key` reports.
fn keys(
    registry: &Registry,
    space: &KeySpace,
    request: &RankRequest,
) -> Result<Vec<EntityKey>, ReadError> {
    let rule = registry.entity_id_rule(&space.entity_type);
    let encode = |id: &str| rule.key(id).map_err(ReadError::from);
    match space.place() {
        Place::Context => Ok(vec![encode(&space.id(&request.context, ""))?]),
        Place::Candidate if !space.composite => {
            request.candidates.iter().map(|c| encode(c)).collect()
        }
        Place::Candidate => request
            .candidates
            .iter()
            .map(|c| encode(&space.id(&request.context, c)))
            .collect(),
    }
}

/// Reads the stored columns of one place into one [`ColumnValues`] per column: one
/// `lookup_group` per group, until the deadline; then judges each fetched column
/// (TTL, freshness). Columns of groups not read are `not_fetched`. Returns the columns
/// and whether every group was read.
fn fetch(
    view: &ReadView,
    columns: &StoredColumns<'_>,
    (plan_spaces, space_keys): (&[KeySpace], &mut [Option<Vec<EntityKey>>]),
    (request, now): (&RankRequest, TimestampMs),
    rows: usize,
    out_of_time: &dyn Fn() -> bool,
    versions: &mut BTreeMap<String, u64>,
) -> Result<(Vec<ColumnValues>, bool), RankError> {
    let mut values: Vec<ColumnValues> = columns
        .defs
        .iter()
        .map(|d| ColumnValues::new(d.spec.dtype, rows, FeatureStatus::NotFound))
        .collect();
    let mut fetched = vec![false; values.len()];
    if rows == 0 {
        return Ok((values, true));
    }
    for (group, space, wanted) in &columns.groups {
        if out_of_time() {
            break;
        }
        let slot = space_keys
            .get_mut(*space)
            .ok_or_else(|| ReadError::Internal("key space out of range".into()))?;
        if slot.is_none() {
            let space = plan_spaces
                .get(*space)
                .ok_or_else(|| ReadError::Internal("key space out of range".into()))?;
            *slot = Some(keys(view.registry(), space, request)?);
        }
        let entities = slot.as_deref().unwrap_or_default();
        let mut wanted = wanted.clone();
        wanted.sort_unstable();
        let lookup = GroupLookup {
            group,
            wanted: &wanted,
            defs: &columns.defs,
            now,
        };
        let mut sink = ColumnSink {
            columns: &mut values,
            mismatch: None,
        };
        let version = lookup_group(view, &lookup, entities, &mut sink)?;
        if let Some(column) = sink.mismatch {
            let def = columns.defs.get(column).map(|d| d.qualified_name());
            return Err(ReadError::Internal(format!(
                "a stored value of `{}` is not of its registered dtype",
                def.unwrap_or_default()
            ))
            .into());
        }
        if let Some(version) = version {
            versions.insert((*group).to_owned(), version);
        }
        for &(_, col) in &wanted {
            if let Some(f) = fetched.get_mut(col) {
                *f = true;
            }
        }
    }
    for ((column, def), fetched) in values.iter_mut().zip(&columns.defs).zip(&fetched) {
        if *fetched {
            column.judge(Freshness::of(def), now);
        } else {
            *column = ColumnValues::new(def.spec.dtype, rows, FeatureStatus::NotFetched);
        }
    }
    Ok((values, fetched.iter().all(|f| *f)))
}

/// The cell of `row` in `column`.
fn cell_of(column: &ColumnValues, row: usize) -> Cell {
    Cell {
        status: column.status(row),
        value: column.value(row),
        event_time: column.event_time(row),
    }
}

/// An on-demand input from row `row` of `column`: `None` when it has no usable value.
#[inline]
fn input_of(column: &ColumnValues, row: usize) -> Option<Input<'_>> {
    if !column.usable(row) {
        return None;
    }
    let value = match column.data() {
        ColumnData::Int64(v) => InputValue::Int64(*v.get(row)?),
        ColumnData::Float32(_) | ColumnData::Float64(_) => {
            InputValue::Float(column.data().number(row)?)
        }
        ColumnData::Float32Vector { .. } => InputValue::Vector(column.data().vector(row)?),
        ColumnData::Bool(_) | ColumnData::Other(_) => InputValue::Other,
    };
    Some((value, column.event_time(row)))
}

/// The value of an on-demand feature at one row: `(status, value, event time)`.
fn on_demand_value(
    def: &OnDemandDefinition,
    inputs: &[(Place, usize)],
    (context, candidates): (&[ColumnValues], &[ColumnValues]),
    row: usize,
    now: TimestampMs,
    count: &mut u64,
) -> (FeatureStatus, f64, TimestampMs) {
    let mut values: [Option<Input<'_>>; MAX_INPUTS] = [None; MAX_INPUTS];
    for (slot, &(place, col)) in values.iter_mut().zip(inputs) {
        let (columns, r) = match place {
            Place::Context => (context, 0),
            Place::Candidate => (candidates, row),
        };
        let Some(column) = columns.get(col) else {
            continue;
        };
        if column.status(r) == FeatureStatus::NotFetched {
            return (FeatureStatus::NotFetched, 0.0, NO_TIME);
        }
        *slot = input_of(column, r);
    }
    let values = values.get(..inputs.len()).unwrap_or_default();
    match evaluate(def.spec.op, values, now) {
        Some(x) => (FeatureStatus::Present, x, now),
        None => {
            *count += 1;
            (FeatureStatus::Defaulted, def.spec.default, NO_TIME)
        }
    }
}

/// Answers `request` from `view` at `now`.
pub fn rank(
    view: &ReadView,
    request: RankRequest,
    now: TimestampMs,
) -> Result<RankResponse, RankError> {
    let started = Instant::now();
    let deadline = request.deadline;
    let out_of_time = || deadline.is_some_and(|d| started.elapsed() >= d);
    let plan = plan(view.registry(), &request)?;
    let rows = request.candidates.len();
    let mut versions = BTreeMap::new();
    let mut space_keys: Vec<Option<Vec<EntityKey>>> = plan.spaces.iter().map(|_| None).collect();

    let (ctx_values, ctx_complete) = fetch(
        view,
        &plan.context,
        (&plan.spaces, &mut space_keys),
        (&request, now),
        1,
        &out_of_time,
        &mut versions,
    )?;
    let (mut cand_values, cand_complete) = fetch(
        view,
        &plan.candidates,
        (&plan.spaces, &mut space_keys),
        (&request, now),
        rows,
        &out_of_time,
        &mut versions,
    )?;

    let mut default_counts = vec![0u64; plan.outputs.len()];
    let mut context_columns = Vec::new();
    let mut context_cells = Vec::new();
    for (out, count) in plan.outputs.iter().zip(default_counts.iter_mut()) {
        if out.place != Place::Context {
            continue;
        }
        // The context is a one-row answer: defaults and computed values go through the
        // same column operations as the candidates'.
        let column = match &out.source {
            Source::Stored { col, default } => {
                let mut column = ctx_values
                    .get(*col)
                    .cloned()
                    .ok_or_else(|| ReadError::Internal("column out of range".into()))?;
                if let Some(default) = default {
                    *count += column.apply_default(default);
                }
                column
            }
            Source::OnDemand { def, inputs } => {
                let (status, value, time) =
                    on_demand_value(def, inputs, (&ctx_values, &[]), 0, now, count);
                let mut column = ColumnValues::new(DType::Float64, 1, FeatureStatus::NotFound);
                column.put_computed(0, status, value, time);
                column
            }
        };
        let cell = cell_of(&column, 0);
        context_columns.push(out.column.clone());
        context_cells.push(cell);
    }

    // On-demand columns first: they read stored columns before defaults apply and
    // before those columns move into the answer.
    let mut answer: Vec<Option<ColumnValues>> = plan.outputs.iter().map(|_| None).collect();
    for ((out, slot), count) in plan
        .outputs
        .iter()
        .zip(answer.iter_mut())
        .zip(default_counts.iter_mut())
    {
        if let (Place::Candidate, Source::OnDemand { def, inputs }) = (out.place, &out.source) {
            let mut column = ColumnValues::new(DType::Float64, rows, FeatureStatus::NotFound);
            for r in 0..rows {
                let (status, value, time) =
                    on_demand_value(def, inputs, (&ctx_values, &cand_values), r, now, count);
                column.put_computed(r, status, value, time);
            }
            *slot = Some(column);
        }
    }
    for ((out, slot), count) in plan
        .outputs
        .iter()
        .zip(answer.iter_mut())
        .zip(default_counts.iter_mut())
    {
        if let (Place::Candidate, Source::Stored { col, default }) = (out.place, &out.source) {
            let mut column = cand_values
                .get_mut(*col)
                .map(|c| {
                    std::mem::replace(
                        c,
                        ColumnValues::new(DType::Bool, 0, FeatureStatus::NotFound),
                    )
                })
                .ok_or_else(|| ReadError::Internal("column out of range".into()))?;
            if let Some(default) = default {
                *count += column.apply_default(default);
            }
            *slot = Some(column);
        }
    }
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for (out, column) in plan.outputs.iter().zip(answer) {
        if let Some(column) = column {
            columns.push(out.column.clone());
            values.push(column);
        }
    }
    let defaults = plan
        .outputs
        .iter()
        .zip(&default_counts)
        .filter(|(_, n)| **n > 0)
        .map(|(o, n)| (o.column.feature.clone(), *n))
        .collect();
    Ok(RankResponse {
        service: plan.service,
        context: request.context,
        context_columns,
        context_cells,
        candidate_type: request.candidate_type,
        columns,
        candidates: request.candidates,
        values,
        versions,
        complete: ctx_complete && cand_complete,
        defaults,
        now_ms: now,
    })
}
