//! The planner and executor of every read, and ranking reads.
//!
//! A ranking request carries a context (one user, one retailer...), a list of candidate
//! entities (hundreds of products) and the features to read (names, or a feature
//! service); the answer holds the context's features once and one row per candidate,
//! in the order asked. A single-entity read is the same read with that entity as the
//! only candidate and no context (`plan_entity`; see [`super::entity`]).
//!
//! A read is first *planned* against the read view's registry ([`Plan`]: names resolved
//! once, each stored feature placed on the context or the candidates, composite entity
//! types keyed from the context ids and each candidate id, on-demand inputs added as
//! hidden columns, defaults taken from the registry, where they were parsed once), then
//! *executed* (`execute`): one `lookup_group` call per feature group for all
//! candidates at once, recording straight into typed columns ([`ColumnValues`]: a
//! status, an event time and a value per row); each column is then judged for TTL and
//! freshness ([`Freshness`], the one place they apply), on-demand features are
//! evaluated per row from the columns, and defaults applied per column (ranking reads
//! only: a single-entity read keeps the raw status).
//!
//! Deadline: before each group's lookup the elapsed time is checked against the
//! request's deadline; once it has passed, the remaining groups are not read and their
//! values (and the on-demand features that need them) are answered `not_fetched`. A
//! deadline of zero therefore fetches nothing, deterministically.
//!
//! A ranking request's plan is cached in the registry snapshot ([`super::cache`]) under
//! the request's shape (candidate type, context entity types, names or service); the
//! checks of what the plan does not cover (ids, the context's types, the request's
//! size) run on every request.
//!
//! Thread-safety: a pure function of one read view; the plan cache takes a read lock
//! for one lookup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::answer::{ColumnData, ColumnValues, NO_TIME};
use super::read::Freshness;
use super::tally::{FeatureTally, ServedTallies};
use crate::codec::key::EntityKey;
use crate::registry::entity::{EntityIdError, composite_id};
use crate::registry::on_demand::{Input, InputValue, MAX_INPUTS, OnDemandDefinition, evaluate};
use crate::registry::{FeatureDefinition, Registry};
use crate::store::error::ReadError;
use crate::store::history::read::HistoryRead;
use crate::store::lookup::{ColumnSink, GroupLookup, lookup_group};
use crate::store::view::ReadView;
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
    /// Columns answered once for the context (shared with the plan that answered, and
    /// with every answer of that plan).
    pub context_columns: Arc<[RankColumn]>,
    /// One cell per context column.
    pub context_cells: Vec<Cell>,
    /// Entity type of the candidates.
    pub candidate_type: String,
    /// Columns answered per candidate (shared as `context_columns` is).
    pub columns: Arc<[RankColumn]>,
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
pub(crate) enum Place {
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
#[derive(Debug)]
pub(crate) struct KeySpace {
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

/// The stored features one group's lookup reads for one place.
#[derive(Debug)]
struct GroupColumns {
    /// A column of the group (its definition names the group).
    first: usize,
    /// The key space of the group's entity type.
    space: usize,
    /// `(feature id, column)`, sorted by feature id once planning is done.
    wanted: Vec<(FeatureId, usize)>,
}

/// The stored columns of one place (context or candidates).
#[derive(Debug, Default)]
struct StoredColumns {
    defs: Vec<Arc<FeatureDefinition>>,
    /// Each column's TTL and freshness SLO.
    freshness: Vec<Freshness>,
    /// Groups in first-seen order.
    groups: Vec<GroupColumns>,
}

impl StoredColumns {
    fn column(&mut self, def: &Arc<FeatureDefinition>, space: usize) -> usize {
        if let Some(col) = self.defs.iter().position(|d| d.id == def.id) {
            return col;
        }
        let col = self.defs.len();
        self.defs.push(def.clone());
        self.freshness.push(Freshness::of(def));
        let defs = &self.defs;
        match self
            .groups
            .iter_mut()
            .find(|g| defs[g.first].spec.group == def.spec.group)
        {
            Some(g) => g.wanted.push((def.id, col)),
            None => self.groups.push(GroupColumns {
                first: col,
                space,
                wanted: vec![(def.id, col)],
            }),
        }
        col
    }

    fn finish(&mut self) {
        for g in &mut self.groups {
            g.wanted.sort_unstable();
        }
    }
}

/// What an output column is computed from.
#[derive(Debug)]
enum Source {
    Stored {
        col: usize,
        /// The default served where nothing usable was found (ranking reads only).
        default: Option<Value>,
    },
    OnDemand {
        def: Arc<OnDemandDefinition>,
        inputs: Vec<(Place, usize)>,
    },
}

#[derive(Debug)]
struct OutColumn {
    column: RankColumn,
    /// Where live reads count what this column served.
    tally: Arc<FeatureTally>,
    /// The name as asked, shared by the answers built from a cached plan.
    asked: Arc<str>,
    place: Place,
    source: Source,
}

/// How a plan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A ranking request: on-demand features, defaults, each feature once, features
    /// placed on the context or the candidates by entity type.
    Rank,
    /// One entity's features (a single-entity GET: one candidate, no context): stored
    /// features of that entity type only, raw statuses (no defaults), a feature may be
    /// asked twice.
    Entity,
}

/// A read resolved against one registry snapshot: which stored columns each place
/// reads, grouped per feature group, and how each answered column is made from them.
/// Owned (definitions are shared), so a single-entity read's plan can be cached in
/// the snapshot it was built from ([`super::cache`]).
#[derive(Debug)]
pub struct Plan {
    spaces: Vec<KeySpace>,
    context: StoredColumns,
    candidates: StoredColumns,
    outputs: Vec<OutColumn>,
    /// The outputs' columns answered once for the context, in order.
    context_out: Arc<[RankColumn]>,
    /// The outputs' columns answered per candidate, in order.
    candidate_out: Arc<[RankColumn]>,
    service: Option<String>,
    /// True when output `i` is stored candidate column `i`, for every `i` (no context,
    /// no on-demand feature, no feature asked twice): the fetched columns are the
    /// answer, defaults applied in place.
    direct: bool,
}

impl Plan {
    /// Columns answered (the names asked, in order).
    pub fn width(&self) -> usize {
        self.outputs.len()
    }

    /// Column `i` of the answer.
    pub fn column(&self, i: usize) -> Option<&RankColumn> {
        self.outputs.get(i).map(|o| &o.column)
    }

    /// The name asked for column `i`.
    pub fn asked(&self, i: usize) -> Option<&Arc<str>> {
        self.outputs.get(i).map(|o| &o.asked)
    }

    /// Stored values one entity's read holds (its columns, inputs included).
    pub(crate) fn stored_columns(&self) -> usize {
        self.context.defs.len() + self.candidates.defs.len()
    }

    /// Every stored feature the plan reads, output by output: a stored output's own
    /// feature, an on-demand output's inputs (see [`super::guard`]).
    pub fn guarded_reads(&self) -> Vec<super::guard::GuardedRead<'_>> {
        let columns = |place: Place| match place {
            Place::Context => &self.context.defs,
            Place::Candidate => &self.candidates.defs,
        };
        let mut reads = Vec::with_capacity(self.outputs.len());
        for out in &self.outputs {
            match &out.source {
                Source::Stored { col, .. } => {
                    if let Some(def) = columns(out.place).get(*col) {
                        reads.push(super::guard::GuardedRead {
                            feature: def,
                            on_demand: None,
                        });
                    }
                }
                Source::OnDemand { inputs, .. } => {
                    for (place, col) in inputs {
                        if let Some(def) = columns(*place).get(*col) {
                            reads.push(super::guard::GuardedRead {
                                feature: def,
                                on_demand: Some(out.column.feature.as_str()),
                            });
                        }
                    }
                }
            }
        }
        reads
    }
}

struct Planner<'r, 'q> {
    registry: &'r Registry,
    tallies: &'r ServedTallies,
    mode: Mode,
    candidate_type: &'q str,
    context: &'q [(String, String)],
    spaces: Vec<KeySpace>,
    context_columns: StoredColumns,
    candidate_columns: StoredColumns,
}

impl Planner<'_, '_> {
    /// The key space of `entity_type`, created on first use.
    fn space(&mut self, feature: &str, entity_type: &str) -> Result<usize, RankError> {
        if let Some(i) = self
            .spaces
            .iter()
            .position(|s| s.entity_type == entity_type)
        {
            return Ok(i);
        }
        let (candidate_type, context) = (self.candidate_type, self.context);
        let simple = |t: &str| -> Option<Part> {
            if t == candidate_type {
                Some(Part::Candidate)
            } else {
                context
                    .iter()
                    .position(|(ct, _)| ct == t)
                    .map(Part::Context)
            }
        };
        let unplaceable = |t: &str| RankError::Unplaceable {
            feature: feature.to_owned(),
            entity_type: t.to_owned(),
            candidates: candidate_type.to_owned(),
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
        def: &Arc<FeatureDefinition>,
    ) -> Result<(Place, usize), RankError> {
        let space = self.space(asked, &def.spec.entity_type)?;
        let place = self.spaces[space].place();
        let columns = match place {
            Place::Context => &mut self.context_columns,
            Place::Candidate => &mut self.candidate_columns,
        };
        Ok((place, columns.column(def, space)))
    }

    fn output(&mut self, asked: &str, pinned: &str) -> Result<OutColumn, RankError> {
        let registry = self.registry;
        if let Some((def, shared)) = registry.resolve_named(pinned) {
            if self.mode == Mode::Entity && def.spec.entity_type != self.candidate_type {
                return Err(ReadError::WrongEntityType {
                    feature: asked.to_owned(),
                    expected: def.spec.entity_type.clone(),
                    requested: self.candidate_type.to_owned(),
                }
                .into());
            }
            let (place, col) = self.stored(asked, def)?;
            let default = match self.mode {
                // Parsed once, when the registry snapshot was built.
                Mode::Rank => registry.default_value(def.id).cloned(),
                Mode::Entity => None,
            };
            let asked_shared = match shared {
                Some(name) if asked == pinned => name.clone(),
                _ => Arc::from(asked),
            };
            let feature = def.qualified_name();
            return Ok(OutColumn {
                tally: self.tallies.of(&feature),
                column: RankColumn {
                    name: asked.to_owned(),
                    feature,
                    dtype: def.spec.dtype,
                    on_demand: false,
                },
                asked: asked_shared,
                place,
                source: Source::Stored { col, default },
            });
        }
        let on_demand = match self.mode {
            Mode::Rank => registry.catalog().resolve_on_demand(pinned),
            Mode::Entity => None,
        };
        let Some(od) = on_demand else {
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
        let feature = od.qualified_name();
        Ok(OutColumn {
            tally: self.tallies.of(&feature),
            column: RankColumn {
                name: asked.to_owned(),
                feature,
                dtype: DType::Float64,
                on_demand: true,
            },
            asked: Arc::from(asked),
            place,
            source: Source::OnDemand {
                def: od.clone(),
                inputs,
            },
        })
    }

    /// Plans every `(asked, pinned)` name, in order.
    fn plan<'n>(
        mut self,
        names: impl IntoIterator<Item = (&'n str, &'n str)>,
        service: Option<String>,
    ) -> Result<Plan, RankError> {
        let names = names.into_iter();
        let mut outputs: Vec<OutColumn> = Vec::with_capacity(names.size_hint().0);
        for (asked, pinned) in names {
            let out = self.output(asked, pinned)?;
            if self.mode == Mode::Rank
                && outputs
                    .iter()
                    .any(|o| o.column.feature == out.column.feature)
            {
                return Err(RankError::Duplicate(asked.to_owned()));
            }
            outputs.push(out);
        }
        self.context_columns.finish();
        self.candidate_columns.finish();
        let direct = outputs.len() == self.candidate_columns.defs.len()
            && outputs.iter().enumerate().all(|(i, o)| {
                o.place == Place::Candidate
                    && matches!(o.source, Source::Stored { col, .. } if col == i)
            });
        let columns_at = |place: Place| -> Arc<[RankColumn]> {
            outputs
                .iter()
                .filter(|o| o.place == place)
                .map(|o| o.column.clone())
                .collect()
        };
        Ok(Plan {
            direct,
            spaces: self.spaces,
            context: self.context_columns,
            candidates: self.candidate_columns,
            context_out: columns_at(Place::Context),
            candidate_out: columns_at(Place::Candidate),
            outputs,
            service,
        })
    }
}

/// Checks a ranking request's entities (the candidates' type and count, the context's
/// entity types and every id), then plans its names (or service): from the snapshot's
/// plan cache when a request of the same shape was planned before ([`rank_cache_key`]),
/// else built now and cached.
fn plan_rank(
    registry: &Registry,
    tallies: &ServedTallies,
    request: &RankRequest,
) -> Result<Arc<Plan>, RankError> {
    check_entities(registry, request)?;
    let plan = super::cache::cached(
        registry.read_plans(),
        |key| rank_cache_key(key, request),
        || build_rank_plan(registry, tallies, request),
    )?;
    let columns = plan.candidates.defs.len() + plan.outputs.len();
    if request.candidates.len().saturating_mul(columns) > MAX_VALUES {
        return Err(RankError::TooManyValues {
            candidates: request.candidates.len(),
            columns,
            max: MAX_VALUES,
        });
    }
    Ok(plan)
}

/// Writes the plan cache key of a ranking request into `key`: what its plan is a
/// function of (the candidates' entity type, the context's entity types in order, and
/// the names or the service as asked), NUL-separated, with the context's count. False
/// when a part holds a NUL (the key would be ambiguous), which is then not cached.
fn rank_cache_key(key: &mut String, request: &RankRequest) -> bool {
    use std::fmt::Write;
    let mut clean = !request.candidate_type.contains('\0');
    key.push('R');
    key.push_str(&request.candidate_type);
    let _ = write!(key, "\0{}", request.context.len());
    for (entity_type, _) in &request.context {
        clean &= !entity_type.contains('\0');
        key.push('\0');
        key.push_str(entity_type);
    }
    match &request.features {
        FeatureSelection::Service(service) => {
            clean &= !service.contains('\0');
            key.push_str("\0S");
            key.push_str(service);
        }
        FeatureSelection::Names(names) => {
            key.push_str("\0N");
            for name in names {
                clean &= !name.contains('\0');
                key.push('\0');
                key.push_str(name);
            }
        }
    }
    clean
}

/// The checks of a ranking request that its plan does not cover: they run on every
/// request, cached plan or not.
fn check_entities(registry: &Registry, request: &RankRequest) -> Result<(), RankError> {
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
    Ok(())
}

/// Resolves a checked ranking request's names (or service) into a plan.
fn build_rank_plan(
    registry: &Registry,
    tallies: &ServedTallies,
    request: &RankRequest,
) -> Result<Plan, RankError> {
    let candidate_type = request.candidate_type.as_str();
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
    let planner = Planner {
        registry,
        tallies,
        mode: Mode::Rank,
        candidate_type,
        context: &request.context,
        spaces: Vec::new(),
        context_columns: StoredColumns::default(),
        candidate_columns: StoredColumns::default(),
    };
    planner.plan(names, service)
}

/// Plans a read of `names` of one entity of `entity_type`: the ranking planner with
/// that entity as the only candidate and no context. `names` is not empty.
pub(crate) fn plan_entity(
    registry: &Registry,
    tallies: &ServedTallies,
    entity_type: &str,
    names: &[&str],
) -> Result<Plan, ReadError> {
    let planner = Planner {
        registry,
        tallies,
        mode: Mode::Entity,
        candidate_type: entity_type,
        context: &[],
        spaces: Vec::new(),
        context_columns: StoredColumns::default(),
        candidate_columns: StoredColumns::default(),
    };
    planner
        .plan(names.iter().map(|n| (*n, *n)), None)
        .map_err(|e| match e {
            RankError::Read(e) => e,
            // An entity plan refuses only with read errors (every feature is of the
            // candidates' entity type, duplicates are allowed).
            other => ReadError::Internal(format!("planning a single-entity read: {other}")),
        })
}

/// Encodes one key per candidate (or one for the context) of `space`. Every id was
/// checked when planning; a composite id made of checked components can still be too
/// long, which `key` reports.
fn keys(
    registry: &Registry,
    space: &KeySpace,
    context: &[(String, String)],
    candidates: &[String],
) -> Result<Vec<EntityKey>, ReadError> {
    let rule = registry.entity_id_rule(&space.entity_type);
    let encode = |id: &str| rule.key(id).map_err(ReadError::from);
    match space.place() {
        Place::Context => Ok(vec![encode(&space.id(context, ""))?]),
        Place::Candidate if !space.composite => candidates.iter().map(|c| encode(c)).collect(),
        Place::Candidate => candidates
            .iter()
            .map(|c| encode(&space.id(context, c)))
            .collect(),
    }
}

/// The entity keys of a read, per key space of its plan, encoded on first use.
pub(crate) struct SpaceKeys<'q> {
    keys: Vec<Option<Vec<EntityKey>>>,
    context: &'q [(String, String)],
    candidates: &'q [String],
}

impl<'q> SpaceKeys<'q> {
    fn new(plan: &Plan, context: &'q [(String, String)], candidates: &'q [String]) -> Self {
        SpaceKeys {
            keys: plan.spaces.iter().map(|_| None).collect(),
            context,
            candidates,
        }
    }

    /// Keys of a one-entity read whose only key space holds `key`.
    pub(crate) fn single(key: EntityKey) -> Self {
        SpaceKeys {
            keys: vec![Some(vec![key])],
            context: &[],
            candidates: &[],
        }
    }

    fn get(
        &mut self,
        registry: &Registry,
        spaces: &[KeySpace],
        space: usize,
    ) -> Result<&[EntityKey], ReadError> {
        let out_of_range = || ReadError::Internal("key space out of range".into());
        let slot = self.keys.get_mut(space).ok_or_else(out_of_range)?;
        if slot.is_none() {
            let space = spaces.get(space).ok_or_else(out_of_range)?;
            *slot = Some(keys(registry, space, self.context, self.candidates)?);
        }
        Ok(slot.as_deref().unwrap_or_default())
    }
}

/// Reads the stored columns of one place into one [`ColumnValues`] per column: one
/// `lookup_group` per group, until the deadline; then judges each fetched column
/// (TTL, freshness: the one place they apply). Columns of groups not read are
/// `not_fetched`. Returns the columns and whether every group was read.
fn fetch(
    view: &ReadView,
    columns: &StoredColumns,
    (spaces, keys): (&[KeySpace], &mut SpaceKeys<'_>),
    (rows, now): (usize, TimestampMs),
    history: Option<HistoryRead<'_>>,
    out_of_time: &dyn Fn() -> bool,
    versions: &mut BTreeMap<String, u64>,
) -> Result<(Vec<ColumnValues>, bool), ReadError> {
    let mut values: Vec<ColumnValues> = columns
        .defs
        .iter()
        .map(|d| ColumnValues::new(d.spec.dtype, rows, FeatureStatus::NotFound))
        .collect();
    if rows == 0 || columns.groups.is_empty() {
        return Ok((values, true));
    }
    let defs: Vec<&Arc<FeatureDefinition>> = columns.defs.iter().collect();
    let mut read_groups = 0;
    for g in &columns.groups {
        if out_of_time() {
            break;
        }
        let group = defs
            .get(g.first)
            .map(|d| d.spec.group.as_str())
            .unwrap_or_default();
        let entities = keys.get(view.registry(), spaces, g.space)?;
        let lookup = GroupLookup {
            group,
            wanted: &g.wanted,
            defs: &defs,
            now,
            history,
        };
        let mut sink = ColumnSink {
            columns: &mut values,
            mismatch: None,
        };
        let version = lookup_group(view, &lookup, entities, &mut sink)?;
        if let Some(column) = sink.mismatch {
            let def = defs.get(column).map(|d| d.qualified_name());
            return Err(ReadError::Internal(format!(
                "a stored value of `{}` is not of its registered dtype",
                def.unwrap_or_default()
            )));
        }
        if let Some(version) = version {
            if let Some(v) = versions.get_mut(group) {
                *v = version;
            } else {
                versions.insert(group.to_owned(), version);
            }
        }
        read_groups += 1;
    }
    let complete = read_groups == columns.groups.len();
    let mut fetched = vec![complete; values.len()];
    if !complete {
        for g in &columns.groups[..read_groups] {
            for &(_, col) in &g.wanted {
                if let Some(f) = fetched.get_mut(col) {
                    *f = true;
                }
            }
        }
    }
    for (((column, def), freshness), fetched) in values
        .iter_mut()
        .zip(&columns.defs)
        .zip(&columns.freshness)
        .zip(&fetched)
    {
        if *fetched {
            column.judge(*freshness, now);
        } else {
            *column = ColumnValues::new(def.spec.dtype, rows, FeatureStatus::NotFetched);
        }
    }
    Ok((values, complete))
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

/// Serves a stored column's default where nothing usable was found (the one place
/// defaults apply). Counts the defaulted rows in `count`.
#[inline]
fn serve_default(column: &mut ColumnValues, source: &Source, count: &mut u64) {
    if let Source::Stored {
        default: Some(default),
        ..
    } = source
    {
        *count += column.apply_default(default);
    }
}

/// The executed plan of one read: every place's stored columns, fetched and judged,
/// then every output column (on-demand features evaluated, defaults applied), in the
/// plan's order.
pub(crate) struct Executed {
    /// Per output column: its values (one row for a context column, one per candidate
    /// otherwise).
    pub(crate) outputs: Vec<ColumnValues>,
    /// Batch version read per group.
    pub(crate) versions: BTreeMap<String, u64>,
    /// False when the deadline left some values `not_fetched`.
    pub(crate) complete: bool,
    /// Defaulted values per output column.
    pub(crate) defaults: Vec<u64>,
}

/// Runs `plan` for `rows` candidates at `now`: stored values from the live sources,
/// or from the history when `history` says how (as-of and point-in-time reads), with
/// everything above the stored values (TTL and freshness judged at `now`, defaults,
/// on-demand features) the same.
///
/// A live read's answered columns are added to their features' tallies
/// ([`super::tally`]); a read of the history is not serving and is not counted.
pub(crate) fn execute(
    view: &ReadView,
    plan: &Plan,
    keys: &mut SpaceKeys<'_>,
    rows_now: (usize, TimestampMs),
    history: Option<HistoryRead<'_>>,
    out_of_time: &dyn Fn() -> bool,
) -> Result<Executed, ReadError> {
    let live = history.is_none();
    let executed = execute_columns(view, plan, keys, rows_now, history, out_of_time)?;
    if live {
        for (out, column) in plan.outputs.iter().zip(&executed.outputs) {
            out.tally.add(column.statuses());
        }
    }
    Ok(executed)
}

/// [`execute`]'s work, without the tallies.
fn execute_columns(
    view: &ReadView,
    plan: &Plan,
    keys: &mut SpaceKeys<'_>,
    (rows, now): (usize, TimestampMs),
    history: Option<HistoryRead<'_>>,
    out_of_time: &dyn Fn() -> bool,
) -> Result<Executed, ReadError> {
    let mut versions = BTreeMap::new();
    let (ctx_values, ctx_complete) = fetch(
        view,
        &plan.context,
        (&plan.spaces, keys),
        (1, now),
        history,
        out_of_time,
        &mut versions,
    )?;
    let (mut cand_values, cand_complete) = fetch(
        view,
        &plan.candidates,
        (&plan.spaces, keys),
        (rows, now),
        history,
        out_of_time,
        &mut versions,
    )?;
    let mut defaults = vec![0u64; plan.outputs.len()];
    if plan.direct {
        for ((column, out), count) in cand_values
            .iter_mut()
            .zip(&plan.outputs)
            .zip(defaults.iter_mut())
        {
            serve_default(column, &out.source, count);
        }
        return Ok(Executed {
            outputs: cand_values,
            versions,
            complete: ctx_complete && cand_complete,
            defaults,
        });
    }
    let mut outputs: Vec<Option<ColumnValues>> = plan.outputs.iter().map(|_| None).collect();
    // On-demand columns first: they read stored columns before defaults apply and
    // before those columns move into the answer. The context is a one-row answer:
    // its computed values go through the same column operations as the candidates'.
    for ((out, slot), count) in plan
        .outputs
        .iter()
        .zip(outputs.iter_mut())
        .zip(defaults.iter_mut())
    {
        if let Source::OnDemand { def, inputs } = &out.source {
            let (n, candidates): (usize, &[ColumnValues]) = match out.place {
                Place::Context => (1, &[]),
                Place::Candidate => (rows, &cand_values),
            };
            let mut column = ColumnValues::new(DType::Float64, n, FeatureStatus::NotFound);
            for r in 0..n {
                let (status, value, time) =
                    on_demand_value(def, inputs, (&ctx_values, candidates), r, now, count);
                column.put_computed(r, status, value, time);
            }
            *slot = Some(column);
        }
    }
    // A stored column moves into the answer at its last use (a single-entity read may
    // ask one feature twice); context columns stay, on-demand inputs may share them.
    let mut last_use = vec![usize::MAX; cand_values.len()];
    for (i, out) in plan.outputs.iter().enumerate() {
        if let (Place::Candidate, Source::Stored { col, .. }) = (out.place, &out.source)
            && let Some(last) = last_use.get_mut(*col)
        {
            *last = i;
        }
    }
    let missing = || ReadError::Internal("column out of range".into());
    for (i, ((out, slot), count)) in plan
        .outputs
        .iter()
        .zip(outputs.iter_mut())
        .zip(defaults.iter_mut())
        .enumerate()
    {
        let Source::Stored { col, .. } = &out.source else {
            continue;
        };
        let mut column = match out.place {
            Place::Context => ctx_values.get(*col).cloned().ok_or_else(missing)?,
            Place::Candidate if last_use.get(*col) == Some(&i) => cand_values
                .get_mut(*col)
                .map(|c| {
                    std::mem::replace(
                        c,
                        ColumnValues::new(DType::Bool, 0, FeatureStatus::NotFound),
                    )
                })
                .ok_or_else(missing)?,
            Place::Candidate => cand_values.get(*col).cloned().ok_or_else(missing)?,
        };
        serve_default(&mut column, &out.source, count);
        *slot = Some(column);
    }
    Ok(Executed {
        outputs: outputs
            .into_iter()
            .map(|c| {
                c.unwrap_or_else(|| ColumnValues::new(DType::Float64, 0, FeatureStatus::NotFound))
            })
            .collect(),
        versions,
        complete: ctx_complete && cand_complete,
        defaults,
    })
}

/// Answers `request` from `view` at `now`.
pub fn rank(
    view: &ReadView,
    request: RankRequest,
    now: TimestampMs,
) -> Result<RankResponse, RankError> {
    rank_in(view, request, now, None, None)
}

/// Answers `request` at `now` once `guard` (if any) admits the plan (see
/// [`super::guard`]), with stored values read as `history` says (`None`: live): an
/// as-of ranking read is this with
/// [`HistoryQuery::AsOf`](crate::store::history::read::HistoryQuery).
pub fn rank_in(
    view: &ReadView,
    request: RankRequest,
    now: TimestampMs,
    guard: Option<&dyn super::guard::ReadGuard>,
    history: Option<HistoryRead<'_>>,
) -> Result<RankResponse, RankError> {
    let started = Instant::now();
    let deadline = request.deadline;
    let out_of_time = || deadline.is_some_and(|d| started.elapsed() >= d);
    let plan = plan_rank(view.registry(), &view.counters().served, &request)?;
    if let Some(guard) = guard {
        guard.admit_shared(&plan).map_err(ReadError::from)?;
    }
    let rows = request.candidates.len();
    let mut keys = SpaceKeys::new(&plan, &request.context, &request.candidates);
    let executed = execute(view, &plan, &mut keys, (rows, now), history, &out_of_time)?;

    let mut context_cells = Vec::with_capacity(plan.context_out.len());
    let mut values = Vec::with_capacity(plan.candidate_out.len());
    for (out, column) in plan.outputs.iter().zip(executed.outputs) {
        match out.place {
            Place::Context => context_cells.push(cell_of(&column, 0)),
            Place::Candidate => values.push(column),
        }
    }
    let defaults = plan
        .outputs
        .iter()
        .zip(&executed.defaults)
        .filter(|(_, n)| **n > 0)
        .map(|(o, n)| (o.column.feature.clone(), *n))
        .collect();
    Ok(RankResponse {
        service: plan.service.clone(),
        context: request.context,
        context_columns: plan.context_out.clone(),
        context_cells,
        candidate_type: request.candidate_type,
        columns: plan.candidate_out.clone(),
        candidates: request.candidates,
        values,
        versions: executed.versions,
        complete: executed.complete,
        defaults,
        now_ms: now,
    })
}
