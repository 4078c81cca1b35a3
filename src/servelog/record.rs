//! One serving-log record: the bytes of one answered read, and the answer rebuilt from
//! them (`storage-format.md`, "Serving log records").
//!
//! A record holds the request id, the route, the request time (which is the log time),
//! and the answer as the client got it: the service, the context entities with their
//! columns and cells, the candidate type and ids, per column the feature served
//! (`name@version`), its dtype, its group, and per value the status, event time and
//! value, column by column; then the batch version read per group and the defaults
//! served. A single-entity GET is the one-candidate case with no context.
//!
//! Column sets: what the columns are (name, feature, dtype, group) repeats from read to
//! read, so the writer says it once per block, in a column-set record, and each read's
//! record names the set by a number ([`ColumnSets`]); a block that holds a read's record
//! holds its sets' records before it, so every block still decodes alone. Set numbers
//! count per writer, so per file: [`Decoder`] reads one file's records in order.
//! (Records of format version 1, which carried their columns inline, still decode.)
//!
//! Encoding: little-endian; `uv` = LEB128 unsigned varint, `iv` = zigzag varint, `str` =
//! `uv` length then UTF-8 bytes. Float columns are stored byte-plane by byte-plane (all
//! rows' first bytes, then all second bytes, ...), which zstd compresses far better than
//! interleaved floats and decodes to the same bits.
//!
//! [`Decoder`] checks every count against the bytes left before allocating, so a
//! damaged record is an error, never a panic or an unbounded allocation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crate::query::answer::{ColumnData, ColumnValues, NO_TIME, Rows};
use crate::query::rank::Plan;
use crate::query::{Cell, EntityAnswer, RankColumn, RankResponse};
use crate::store::{FeatureReading, FeatureVector};
use crate::types::{DType, FeatureStatus, TimestampMs, Value};

/// Record kind byte: a single-entity GET with its columns inline (format version 1).
const KIND_ENTITY_INLINE: u8 = 1;
/// Record kind byte: a ranking read with its columns inline (format version 1).
const KIND_RANKING_INLINE: u8 = 2;
/// Record kind byte: a column set, which later records of its block name.
const KIND_COLUMNS: u8 = 3;
/// Record kind byte: a single-entity GET naming its column set.
const KIND_ENTITY: u8 = 4;
/// Record kind byte: a ranking read naming its two column sets (context, candidates).
const KIND_RANKING: u8 = 5;
/// Record kind byte: as [`KIND_ENTITY`], with every column's head before every column's
/// data (format version 3; what the writer writes).
const KIND_ENTITY_SPLIT: u8 = 6;
/// Record kind byte: as [`KIND_RANKING`], the candidates' column heads before their
/// data (format version 3; what the writer writes).
const KIND_RANKING_SPLIT: u8 = 7;

/// Column sets a writer remembers before it starts numbering afresh (bounds memory when
/// requests name ever new feature lists).
const MAX_KNOWN_SETS: usize = 4096;

/// Plans (and ranking column lists) whose column set a writer remembers by identity
/// (see [`ColumnSets::id_of_plan`] and [`ColumnSets::id_of_list`]).
const MAX_KNOWN_PLANS: usize = 64;

/// Which read a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// A single-entity GET.
    Entity,
    /// A ranking read.
    Ranking,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The request id.
    pub request_id: String,
    /// The route (`get`, `rank`, `embedded`...).
    pub route: String,
    /// Which read.
    pub kind: ReadKind,
    /// The answer; for a GET, one candidate (the entity) and no context, the columns
    /// named as asked.
    pub answer: RankResponse,
    /// Group of each context column (`""` for on-demand features).
    pub context_groups: Vec<String>,
    /// Group of each candidate column (`""` for on-demand features).
    pub groups: Vec<String>,
}

impl Record {
    /// The log time: the request time the answer was judged at (ms since the epoch).
    pub fn log_ms(&self) -> TimestampMs {
        self.answer.now_ms
    }

    /// The service read, without its version, when one was asked.
    pub fn service_name(&self) -> Option<&str> {
        self.answer
            .service
            .as_deref()
            .map(|s| s.split_once('@').map_or(s, |(name, _)| name))
    }

    /// Values the record holds (context cells plus candidates x columns).
    pub fn value_count(&self) -> usize {
        self.answer.context_cells.len() + self.answer.candidates.len() * self.answer.columns.len()
    }

    /// The answer's row view for a GET record (what `GET /v1/features` encodes); `None`
    /// for a ranking record.
    pub fn feature_vector(&self) -> Option<FeatureVector> {
        if self.kind != ReadKind::Entity {
            return None;
        }
        let now = self.answer.now_ms;
        let features = self
            .answer
            .columns
            .iter()
            .zip(&self.answer.values)
            .map(|(column, values)| {
                let event_time = values.event_time(0);
                FeatureReading {
                    name: Arc::from(column.name.as_str()),
                    status: values.status(0),
                    value: values.value(0),
                    event_time,
                    age_ms: crate::query::read::age_ms(event_time, now),
                }
            })
            .collect();
        Some(FeatureVector {
            entity_type: self.answer.candidate_type.clone(),
            entity_id: self.answer.candidates.first().cloned().unwrap_or_default(),
            features,
            versions: self.answer.versions.clone(),
        })
    }

    /// The JSON body the client received, re-encoded from the record with the server's
    /// own encoders (byte-identical in values and statuses).
    pub fn replay_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self.feature_vector() {
            Some(vector) => crate::api::json::encode_feature_vector(&vector),
            None => Ok(crate::api::rank_json::encode_json(&self.answer)),
        }
    }
}

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes end inside a field.
    #[error("serving-log record truncated reading {0}")]
    Truncated(&'static str),
    /// A field holds a value no writer produces.
    #[error("serving-log record has a bad {what}: {detail}")]
    Bad {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

fn bad(what: &'static str, detail: impl Into<String>) -> RecordError {
    RecordError::Bad {
        what,
        detail: detail.into(),
    }
}

// ---- encoding ----

fn put_uv(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_iv(out: &mut Vec<u8>, v: i64) {
    put_uv(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uv(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn status_code(s: FeatureStatus) -> u8 {
    match s {
        FeatureStatus::Present => 0,
        FeatureStatus::Null => 1,
        FeatureStatus::NotFound => 2,
        FeatureStatus::Expired => 3,
        FeatureStatus::Stale => 4,
        FeatureStatus::Defaulted => 5,
        FeatureStatus::NotFetched => 6,
    }
}

fn status_of(code: u8) -> Result<FeatureStatus, RecordError> {
    Ok(match code {
        0 => FeatureStatus::Present,
        1 => FeatureStatus::Null,
        2 => FeatureStatus::NotFound,
        3 => FeatureStatus::Expired,
        4 => FeatureStatus::Stale,
        5 => FeatureStatus::Defaulted,
        6 => FeatureStatus::NotFetched,
        other => return Err(bad("status", format!("code {other}"))),
    })
}

/// Event times as deltas from the previous row's (present rows `zigzag(delta) << 1 | 1`,
/// rows without one `0`), so a column of equal times costs one byte per row.
fn put_times(out: &mut Vec<u8>, times: &[TimestampMs]) {
    let mut prev = 0i64;
    for &t in times {
        if t == NO_TIME {
            out.push(0);
        } else {
            let d = t.wrapping_sub(prev);
            put_uv(out, ((((d << 1) ^ (d >> 63)) as u64) << 1) | 1);
            prev = t;
        }
    }
}

/// `N`-byte little-endian items stored byte-plane by byte-plane: one pass per plane.
/// One item (every column of a single-entity read) is its own bytes, written at once.
fn put_planes<const N: usize>(
    out: &mut Vec<u8>,
    mut items: impl ExactSizeIterator<Item = [u8; N]> + Clone,
) {
    if items.len() == 1 {
        if let Some(bytes) = items.next() {
            out.extend_from_slice(&bytes);
        }
        return;
    }
    put_planes_by_plane(out, items);
}

fn put_planes_by_plane<const N: usize>(
    out: &mut Vec<u8>,
    items: impl ExactSizeIterator<Item = [u8; N]> + Clone,
) {
    out.reserve(items.len() * N);
    for plane in 0..N {
        out.extend(
            items
                .clone()
                .map(|bytes| bytes.get(plane).copied().unwrap_or(0)),
        );
    }
}

fn put_value(out: &mut Vec<u8>, v: Option<&Value>) {
    match v {
        None => out.push(0),
        Some(Value::Null) => out.push(1),
        Some(Value::Int64(x)) => {
            out.push(2);
            put_iv(out, *x);
        }
        Some(Value::Float64(x)) => {
            out.push(3);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Some(Value::Float32(x)) => {
            out.push(4);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Some(Value::Bool(x)) => out.extend_from_slice(&[5, u8::from(*x)]),
        Some(Value::String(s)) => {
            out.push(6);
            put_str(out, s);
        }
        Some(Value::Bytes(b)) => {
            out.push(7);
            put_bytes(out, b);
        }
        Some(Value::Float32Vector(x)) => {
            out.push(8);
            put_uv(out, x.len() as u64);
            for c in x {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
    }
}

/// What the last `values` of a read that gave one status (or one event time) for all
/// its rows gave: mode 2 of `statuses` and `times` repeats it in one byte, since the
/// columns of a read mostly share both (a GET's 50 columns: one batch event time).
/// One per read, fresh at its start; the decoder keeps the same.
#[derive(Debug, Clone, Copy, Default)]
struct Shared {
    status: Option<FeatureStatus>,
    time: Option<TimestampMs>,
}

/// Statuses and event times: `0` then one per row, `1` and the one value every row
/// shares (the common case: a column of present values of one load), or `2` when that
/// one value is the read's `shared` one.
fn put_column_meta(out: &mut Vec<u8>, column: &ColumnValues, shared: &mut Shared) {
    let statuses = column.statuses();
    match statuses.first() {
        Some(first) if statuses.iter().all(|s| s == first) => {
            if shared.status == Some(*first) {
                out.push(2);
            } else {
                out.push(1);
                out.push(status_code(*first));
                shared.status = Some(*first);
            }
        }
        _ => {
            out.push(0);
            out.extend(statuses.iter().map(|s| status_code(*s)));
        }
    }
    let times = column.event_times();
    match times.first() {
        Some(first) if times.iter().all(|t| t == first) => {
            if shared.time == Some(*first) {
                out.push(2);
            } else {
                out.push(1);
                put_times(out, &[*first]);
                shared.time = Some(*first);
            }
        }
        _ => {
            out.push(0);
            put_times(out, times);
        }
    }
}

/// The `values` of a read's columns as kinds 6 and 7 write them: every column's head,
/// then every column's data, so that the heads (mostly one repeated byte pattern) and
/// the values each form one run, which zstd's fast levels match or entropy-code whole.
fn put_values<'a>(out: &mut Vec<u8>, columns: impl Iterator<Item = &'a ColumnValues> + Clone) {
    let mut shared = Shared::default();
    for column in columns.clone() {
        put_column_head(out, column, &mut shared);
    }
    for column in columns {
        put_column_data(out, column);
    }
}

/// Rows, statuses, times, the type byte and (vectors) the dimension.
fn put_column_head(out: &mut Vec<u8>, column: &ColumnValues, shared: &mut Shared) {
    put_uv(out, column.len() as u64);
    put_column_meta(out, column, shared);
    match column.data() {
        ColumnData::Int64(_) => out.push(1),
        ColumnData::Float64(_) => out.push(2),
        ColumnData::Float32(_) => out.push(3),
        ColumnData::Bool(_) => out.push(4),
        ColumnData::Float32Vector { dim, .. } => {
            out.push(5);
            put_uv(out, *dim as u64);
        }
        ColumnData::Other(_) => out.push(6),
    }
}

/// The values of the rows, as the head's type says.
fn put_column_data(out: &mut Vec<u8>, column: &ColumnValues) {
    match column.data() {
        ColumnData::Int64(v) => {
            for x in v {
                put_iv(out, *x);
            }
        }
        ColumnData::Float64(v) => put_planes(out, v.iter().map(|x| x.to_le_bytes())),
        ColumnData::Float32(v) => put_planes(out, v.iter().map(|x| x.to_le_bytes())),
        ColumnData::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
        ColumnData::Float32Vector { values, .. } => {
            put_planes(out, values.iter().map(|x| x.to_le_bytes()));
        }
        ColumnData::Other(v) => {
            for x in v {
                put_value(out, x.as_ref());
            }
        }
    }
}

fn put_column(out: &mut Vec<u8>, column: &RankColumn, group: &str) {
    put_str(out, &column.name);
    put_str(out, &column.feature);
    put_str(out, &column.dtype.to_string());
    out.push(u8::from(column.on_demand));
    put_str(out, group);
}

fn put_header(out: &mut Vec<u8>, kind: u8, request_id: &str, route: &str, now_ms: TimestampMs) {
    out.push(kind);
    put_str(out, request_id);
    put_str(out, route);
    put_iv(out, now_ms);
}

fn put_versions(out: &mut Vec<u8>, versions: &BTreeMap<String, u64>) {
    put_uv(out, versions.len() as u64);
    for (group, version) in versions {
        put_str(out, group);
        put_uv(out, *version);
    }
}

/// What makes two columns the same in a column set (the group follows from the
/// feature, which names one version of one definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ColumnKey<'a> {
    name: &'a str,
    feature: &'a str,
    dtype: DType,
    on_demand: bool,
}

impl<'a> From<&'a RankColumn> for ColumnKey<'a> {
    fn from(c: &'a RankColumn) -> Self {
        ColumnKey {
            name: &c.name,
            feature: &c.feature,
            dtype: c.dtype,
            on_demand: c.on_demand,
        }
    }
}

struct KnownSet {
    id: u64,
    columns: Vec<RankColumn>,
}

/// The writer's column sets: numbers each distinct list of columns once, keeps the
/// column-set record of each, and knows which of them the current block already holds.
///
/// Invariant: a read's record is added to a block only after the records of the sets it
/// names ([`ColumnSets::missing`], then [`ColumnSets::mark_in_block`]); numbers are never
/// reused by one writer, so a number means one set for the whole file.
pub struct ColumnSets {
    hasher: ahash::RandomState,
    known: HashMap<u64, Vec<KnownSet>>,
    records: HashMap<u64, Vec<u8>>,
    next_id: u64,
    in_block: HashSet<u64>,
    /// Sets the last encoded record names.
    used: Vec<u64>,
    /// The set of recently logged single-entity plans, by identity: a repeated GET's
    /// set is found by one pointer comparison instead of hashing and comparing every
    /// column name. The plans are held, so a remembered address is never reused by
    /// another plan while it is here.
    plans: Vec<(Arc<Plan>, u64)>,
    /// The same for the column lists of recent ranking answers, which their plan
    /// shares with every answer it gives.
    lists: Vec<(Arc<[RankColumn]>, u64)>,
}

impl Default for ColumnSets {
    fn default() -> Self {
        ColumnSets {
            hasher: ahash::RandomState::new(),
            known: HashMap::new(),
            records: HashMap::new(),
            next_id: 0,
            in_block: HashSet::new(),
            used: Vec::new(),
            plans: Vec::new(),
            lists: Vec::new(),
        }
    }
}

impl ColumnSets {
    /// No sets yet.
    pub fn new() -> Self {
        ColumnSets::default()
    }

    /// The number of the set `columns`, making its record (groups from `group_of`)
    /// the first time.
    fn id_of<'c, I>(
        &mut self,
        columns: impl Fn() -> I,
        group_of: &mut dyn FnMut(&str) -> String,
    ) -> u64
    where
        I: Iterator<Item = ColumnKey<'c>>,
    {
        let mut hasher = self.hasher.build_hasher();
        let mut n = 0;
        for key in columns() {
            key.hash(&mut hasher);
            n += 1;
        }
        let hash = std::hash::Hasher::finish(&hasher);
        let found = self.known.get(&hash).and_then(|bucket| {
            bucket
                .iter()
                .find(|k| {
                    k.columns.len() == n
                        && k.columns
                            .iter()
                            .zip(columns())
                            .all(|(a, b)| ColumnKey::from(a) == b)
                })
                .map(|k| k.id)
        });
        let id = match found {
            Some(id) => id,
            None => {
                if self.records.len() >= MAX_KNOWN_SETS {
                    // Forget every set but those the record being encoded already
                    // names (a ranking read names two), whose records it still needs.
                    let used = &self.used;
                    self.records.retain(|id, _| used.contains(id));
                    for bucket in self.known.values_mut() {
                        bucket.retain(|k| used.contains(&k.id));
                    }
                    self.known.retain(|_, bucket| !bucket.is_empty());
                    self.in_block.clear();
                    self.plans.clear();
                    self.lists.clear();
                }
                let id = self.next_id;
                self.next_id += 1;
                let owned: Vec<RankColumn> = columns()
                    .map(|k| RankColumn {
                        name: k.name.to_owned(),
                        feature: k.feature.to_owned(),
                        dtype: k.dtype,
                        on_demand: k.on_demand,
                    })
                    .collect();
                let mut record = vec![KIND_COLUMNS];
                put_uv(&mut record, id);
                put_uv(&mut record, owned.len() as u64);
                for column in &owned {
                    put_column(&mut record, column, &group_of(&column.feature));
                }
                self.records.insert(id, record);
                self.known
                    .entry(hash)
                    .or_default()
                    .push(KnownSet { id, columns: owned });
                id
            }
        };
        self.used.push(id);
        id
    }

    /// The number of the set of an entity answer's columns, which are a function of
    /// its plan alone: remembered by the plan's identity, else [`id_of`](Self::id_of).
    fn id_of_plan(
        &mut self,
        answer: &EntityAnswer,
        group_of: &mut dyn FnMut(&str) -> String,
    ) -> u64 {
        let plan = answer.plan();
        if let Some(&(_, id)) = self.plans.iter().find(|(p, _)| Arc::ptr_eq(p, plan)) {
            self.used.push(id);
            return id;
        }
        let key = |i: usize| {
            let info = answer.column_info(i);
            ColumnKey {
                name: answer.name(i),
                feature: info.map_or("", |c| c.feature.as_str()),
                dtype: info.map_or(DType::Float64, |c| c.dtype),
                on_demand: info.is_some_and(|c| c.on_demand),
            }
        };
        let id = self.id_of(|| (0..answer.width()).map(key), group_of);
        if self.plans.len() >= MAX_KNOWN_PLANS {
            self.plans.remove(0);
        }
        self.plans.push((Arc::clone(plan), id));
        id
    }

    /// The number of the set of a ranking answer's `columns` (context or candidate):
    /// remembered by the list's identity, else [`id_of`](Self::id_of).
    fn id_of_list(
        &mut self,
        columns: &Arc<[RankColumn]>,
        group_of: &mut dyn FnMut(&str) -> String,
    ) -> u64 {
        if let Some(&(_, id)) = self.lists.iter().find(|(l, _)| Arc::ptr_eq(l, columns)) {
            self.used.push(id);
            return id;
        }
        let id = self.id_of(|| columns.iter().map(ColumnKey::from), group_of);
        if self.lists.len() >= MAX_KNOWN_PLANS {
            self.lists.remove(0);
        }
        self.lists.push((Arc::clone(columns), id));
        id
    }

    /// The sets the record just encoded names that the current block does not hold
    /// yet: their records go into the block before it.
    pub fn missing(&self) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for id in &self.used {
            if !self.in_block.contains(id) && !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }

    /// The column-set record of set `id`.
    pub fn record(&self, id: u64) -> Option<&[u8]> {
        self.records.get(&id).map(Vec::as_slice)
    }

    /// Notes that the current block now holds set `id`'s record.
    pub fn mark_in_block(&mut self, id: u64) {
        self.in_block.insert(id);
    }

    /// A new block holds no set yet.
    pub fn new_block(&mut self) {
        self.in_block.clear();
    }

    fn start_record(&mut self) {
        self.used.clear();
    }
}

/// Encodes a ranking answer naming its column sets (see [`ColumnSets`]); `group_of`
/// names the group of a served feature (`name@version`), `""` when it has none
/// (on-demand).
pub fn encode_ranking(
    out: &mut Vec<u8>,
    request_id: &str,
    route: &str,
    answer: &RankResponse,
    sets: &mut ColumnSets,
    group_of: &mut dyn FnMut(&str) -> String,
) {
    sets.start_record();
    put_header(out, KIND_RANKING_SPLIT, request_id, route, answer.now_ms);
    match &answer.service {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
    out.push(u8::from(answer.complete));
    put_versions(out, &answer.versions);
    put_uv(out, answer.context.len() as u64);
    for (t, id) in &answer.context {
        put_str(out, t);
        put_str(out, id);
    }
    let context = sets.id_of_list(&answer.context_columns, group_of);
    put_uv(out, context);
    for cell in &answer.context_cells {
        out.push(status_code(cell.status));
        match cell.event_time {
            Some(t) => {
                out.push(1);
                put_iv(out, t);
            }
            None => out.push(0),
        }
        put_value(out, cell.value.as_ref());
    }
    put_str(out, &answer.candidate_type);
    put_uv(out, answer.candidates.len() as u64);
    for c in &answer.candidates {
        put_str(out, c);
    }
    let columns = sets.id_of_list(&answer.columns, group_of);
    put_uv(out, columns);
    put_values(out, answer.values.iter());
    put_uv(out, answer.defaults.len() as u64);
    for (feature, n) in &answer.defaults {
        put_str(out, feature);
        put_uv(out, *n);
    }
}

/// Encodes a single-entity answer (the columns named as asked) naming its column set.
pub fn encode_entity(
    out: &mut Vec<u8>,
    request_id: &str,
    route: &str,
    answer: &EntityAnswer,
    sets: &mut ColumnSets,
    group_of: &mut dyn FnMut(&str) -> String,
) {
    sets.start_record();
    put_header(out, KIND_ENTITY_SPLIT, request_id, route, answer.now_ms());
    put_versions(out, answer.versions());
    put_str(out, answer.entity_type());
    put_str(out, answer.entity_id());
    let set = sets.id_of_plan(answer, group_of);
    put_uv(out, set);
    put_values(out, answer.columns().iter());
}

// ---- decoding ----

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn left(&self) -> usize {
        self.b.len().saturating_sub(self.p)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self.p.checked_add(n).ok_or(RecordError::Truncated(what))?;
        let s = self
            .b
            .get(self.p..end)
            .ok_or(RecordError::Truncated(what))?;
        self.p = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    fn uv(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad(what, "varint longer than 10 bytes"))
    }

    fn iv(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let u = self.uv(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A count of items of at least `min_bytes` each, checked against the bytes left.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, RecordError> {
        let n = self.uv(what)?;
        let n = usize::try_from(n).map_err(|_| bad(what, "count overflows"))?;
        if n.saturating_mul(min_bytes.max(1)) > self.left() {
            return Err(RecordError::Truncated(what));
        }
        Ok(n)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], RecordError> {
        let n = self.count(what, 1)?;
        self.take(n, what)
    }

    fn str(&mut self, what: &'static str) -> Result<String, RecordError> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad(what, "not UTF-8"))
    }

    fn planes<const N: usize>(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<Vec<[u8; N]>, RecordError> {
        let planes = self.take(n.checked_mul(N).ok_or(RecordError::Truncated(what))?, what)?;
        let mut items = vec![[0u8; N]; n];
        for (plane, bytes) in planes.chunks(n.max(1)).enumerate().take(N) {
            for (item, b) in items.iter_mut().zip(bytes) {
                if let Some(slot) = item.get_mut(plane) {
                    *slot = *b;
                }
            }
        }
        Ok(items)
    }
}

fn value(c: &mut Cur<'_>) -> Result<Option<Value>, RecordError> {
    Ok(Some(match c.u8("value tag")? {
        0 => return Ok(None),
        1 => Value::Null,
        2 => Value::Int64(c.iv("int64 value")?),
        3 => Value::Float64(f64::from_le_bytes(arr(c.take(8, "float64 value")?))),
        4 => Value::Float32(f32::from_le_bytes(arr(c.take(4, "float32 value")?))),
        5 => Value::Bool(c.u8("bool value")? != 0),
        6 => Value::String(c.str("string value")?),
        7 => Value::Bytes(c.bytes("bytes value")?.to_vec()),
        8 => {
            let n = c.count("vector length", 4)?;
            let b = c.take(n * 4, "vector")?;
            Value::Float32Vector(
                b.chunks_exact(4)
                    .map(|x| f32::from_le_bytes(arr(x)))
                    .collect(),
            )
        }
        other => return Err(bad("value tag", format!("{other}"))),
    }))
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, x) in out.iter_mut().zip(b) {
        *o = *x;
    }
    out
}

/// One column's `values` of kinds 1, 2, 4 and 5: its head, then its data.
fn column_values(c: &mut Cur<'_>, shared: &mut Shared) -> Result<ColumnValues, RecordError> {
    let head = column_head(c, shared, &mut 0)?;
    column_data(c, head)
}

/// The `values` of `n` columns of kinds 6 and 7: every head, then every data.
fn split_values(c: &mut Cur<'_>, n: usize) -> Result<Vec<ColumnValues>, RecordError> {
    let mut shared = Shared::default();
    let mut claimed = 0;
    let mut heads = Vec::with_capacity(n.min(c.left()));
    for _ in 0..n {
        heads.push(column_head(c, &mut shared, &mut claimed)?);
    }
    heads.into_iter().map(|head| column_data(c, head)).collect()
}

/// A column's head read, its data not yet.
struct Head {
    rows: usize,
    status: Rows<FeatureStatus>,
    times: Rows<TimestampMs>,
    /// The type byte.
    kind: u8,
    /// Components per vector (type 5).
    dim: usize,
}

/// Reads a column head. `claimed`: the rows of the heads read before this one whose
/// data is still to come (kinds 6 and 7: every head's; otherwise none). Every row takes
/// at least one byte of data, so their sum is bounded by the bytes left before anything
/// is allocated.
fn column_head(
    c: &mut Cur<'_>,
    shared: &mut Shared,
    claimed: &mut usize,
) -> Result<Head, RecordError> {
    let rows = c.uv("rows")?;
    let rows = usize::try_from(rows).map_err(|_| RecordError::Truncated("rows"))?;
    *claimed = claimed
        .checked_add(rows)
        .filter(|sum| *sum <= c.left())
        .ok_or(RecordError::Truncated("rows"))?;
    let status: Rows<FeatureStatus> = match c.u8("status mode")? {
        0 => c
            .take(rows, "statuses")?
            .iter()
            .map(|s| status_of(*s))
            .collect::<Result<_, _>>()?,
        1 => {
            let status = status_of(c.u8("status")?)?;
            shared.status = Some(status);
            Rows::from_elem(status, rows)
        }
        2 => match shared.status {
            Some(status) => Rows::from_elem(status, rows),
            None => return Err(bad("status mode", "2 (repeat) before any shared status")),
        },
        other => return Err(bad("status mode", format!("{other}"))),
    };
    let time = |c: &mut Cur<'_>, prev: &mut i64| -> Result<TimestampMs, RecordError> {
        let u = c.uv("event time")?;
        Ok(if u == 0 {
            NO_TIME
        } else {
            let z = u >> 1;
            let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
            *prev = prev.wrapping_add(d);
            *prev
        })
    };
    let mut prev = 0i64;
    let times: Rows<TimestampMs> = match c.u8("time mode")? {
        0 => {
            if rows > c.left() {
                return Err(RecordError::Truncated("event times"));
            }
            (0..rows)
                .map(|_| time(c, &mut prev))
                .collect::<Result<_, _>>()?
        }
        1 => {
            let time = time(c, &mut prev)?;
            shared.time = Some(time);
            Rows::from_elem(time, rows)
        }
        2 => match shared.time {
            Some(time) => Rows::from_elem(time, rows),
            None => return Err(bad("time mode", "2 (repeat) before any shared time")),
        },
        other => return Err(bad("time mode", format!("{other}"))),
    };
    let kind = c.u8("column type")?;
    let dim = if kind == 5 {
        usize::try_from(c.uv("vector dim")?).map_err(|_| bad("vector dim", "too large"))?
    } else {
        0
    };
    Ok(Head {
        rows,
        status,
        times,
        kind,
        dim,
    })
}

/// Reads the data of the column `head` describes.
fn column_data(c: &mut Cur<'_>, head: Head) -> Result<ColumnValues, RecordError> {
    let Head {
        rows,
        status,
        times,
        kind,
        dim,
    } = head;
    // Every data type takes at least one byte per row, but for shared-status all-null
    // columns of `Other` values, also one byte per row: so rows are bounded by the bytes.
    if rows > c.left() {
        return Err(RecordError::Truncated("column data"));
    }
    let data = match kind {
        1 => ColumnData::Int64((0..rows).map(|_| c.iv("int64")).collect::<Result<_, _>>()?),
        2 => ColumnData::Float64(
            c.planes::<8>(rows, "float64s")?
                .into_iter()
                .map(f64::from_le_bytes)
                .collect(),
        ),
        3 => ColumnData::Float32(
            c.planes::<4>(rows, "float32s")?
                .into_iter()
                .map(f32::from_le_bytes)
                .collect(),
        ),
        4 => ColumnData::Bool(c.take(rows, "bools")?.iter().map(|b| *b != 0).collect()),
        5 => {
            let n = rows
                .checked_mul(dim)
                .filter(|n| n.saturating_mul(4) <= c.left())
                .ok_or(RecordError::Truncated("vector column"))?;
            ColumnData::Float32Vector {
                dim,
                values: c
                    .planes::<4>(n, "vectors")?
                    .into_iter()
                    .map(f32::from_le_bytes)
                    .collect(),
            }
        }
        6 => ColumnData::Other((0..rows).map(|_| value(c)).collect::<Result<_, _>>()?),
        other => return Err(bad("column type", format!("{other}"))),
    };
    ColumnValues::from_parts(status, times, data).ok_or_else(|| bad("column", "row counts differ"))
}

fn column(c: &mut Cur<'_>) -> Result<(RankColumn, String), RecordError> {
    let name = c.str("column name")?;
    let feature = c.str("feature")?;
    let dtype: DType = c
        .str("dtype")?
        .parse()
        .map_err(|e: String| bad("dtype", e))?;
    let on_demand = c.u8("on_demand")? != 0;
    let group = c.str("group")?;
    Ok((
        RankColumn {
            name,
            feature,
            dtype,
            on_demand,
        },
        group,
    ))
}

fn versions(c: &mut Cur<'_>) -> Result<BTreeMap<String, u64>, RecordError> {
    let n = c.count("versions", 2)?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let g = c.str("version group")?;
        out.insert(g, c.uv("version")?);
    }
    Ok(out)
}

/// A column set read back: each column with its group.
type SetColumns = Arc<[(RankColumn, String)]>;

/// Decodes the records of one log file, in file order: it keeps the column sets the
/// file defines for the records that name them.
///
/// Memory: one entry per column-set record read, which the file's size bounds.
#[derive(Debug, Default)]
pub struct Decoder {
    sets: HashMap<u64, SetColumns>,
}

impl Decoder {
    /// A decoder for a new file.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Decodes one record: `None` for a column-set record (kept for the records after
    /// it).
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Option<Record>, RecordError> {
        if bytes.first() == Some(&KIND_COLUMNS) {
            let mut c = Cur { b: bytes, p: 1 };
            let id = c.uv("column set number")?;
            let n = c.count("set columns", 8)?;
            let columns = (0..n)
                .map(|_| column(&mut c))
                .collect::<Result<Vec<_>, _>>()?;
            if c.left() != 0 {
                return Err(bad(
                    "column set",
                    format!("{} bytes after the end", c.left()),
                ));
            }
            self.sets.insert(id, columns.into());
            return Ok(None);
        }
        decode_read(bytes, &self.sets).map(Some)
    }
}

/// The columns of a record: inline (format version 1) or the set it names.
fn columns_of(
    c: &mut Cur<'_>,
    inline: bool,
    sets: &HashMap<u64, SetColumns>,
    what: &'static str,
) -> Result<Columns, RecordError> {
    Ok(if inline {
        Columns::Inline(c.count(what, 8)?)
    } else {
        let id = c.uv("column set number")?;
        let set = sets
            .get(&id)
            .ok_or_else(|| bad("column set", format!("set {id} is named before its record")))?;
        Columns::Set(set.clone())
    })
}

enum Columns {
    Inline(usize),
    Set(SetColumns),
}

impl Columns {
    fn len(&self) -> usize {
        match self {
            Columns::Inline(n) => *n,
            Columns::Set(set) => set.len(),
        }
    }

    /// Column `i` with its group: read inline, or taken from the set.
    fn column(&self, c: &mut Cur<'_>, i: usize) -> Result<(RankColumn, String), RecordError> {
        match self {
            Columns::Inline(_) => column(c),
            Columns::Set(set) => set
                .get(i)
                .cloned()
                .ok_or_else(|| bad("column set", "fewer columns than named")),
        }
    }
}

/// Reads the columns of a read and their `values` into `answer`, and each column's
/// group into `groups`: head and data column by column (kinds 1, 2, 4 and 5), or, with
/// `split` (kinds 6 and 7), every column's head, then every column's data.
fn read_columns(
    c: &mut Cur<'_>,
    columns: &Columns,
    split: bool,
    answer: &mut RankResponse,
    groups: &mut Vec<String>,
) -> Result<(), RecordError> {
    let mut shared = Shared::default();
    let mut answered = Vec::with_capacity(columns.len());
    for i in 0..columns.len() {
        let (col, group) = columns.column(c, i)?;
        answered.push(col);
        groups.push(group);
        if !split {
            answer.values.push(column_values(c, &mut shared)?);
        }
    }
    answer.columns = answered.into();
    if split {
        answer.values = split_values(c, columns.len())?;
    }
    Ok(())
}

fn decode_read(bytes: &[u8], sets: &HashMap<u64, SetColumns>) -> Result<Record, RecordError> {
    let mut c = Cur { b: bytes, p: 0 };
    let kind = c.u8("kind")?;
    let request_id = c.str("request id")?;
    let route = c.str("route")?;
    let now_ms = c.iv("log time")?;
    let mut answer = RankResponse {
        service: None,
        context: Vec::new(),
        context_columns: Arc::from([]),
        context_cells: Vec::new(),
        candidate_type: String::new(),
        columns: Arc::from([]),
        candidates: Vec::new(),
        values: Vec::new(),
        versions: BTreeMap::new(),
        complete: true,
        defaults: Vec::new(),
        now_ms,
    };
    let mut context_groups = Vec::new();
    let mut groups = Vec::new();
    let kind = match kind {
        KIND_ENTITY | KIND_ENTITY_INLINE | KIND_ENTITY_SPLIT => {
            answer.versions = versions(&mut c)?;
            answer.candidate_type = c.str("entity type")?;
            answer.candidates.push(c.str("entity id")?);
            let columns = columns_of(&mut c, kind == KIND_ENTITY_INLINE, sets, "columns")?;
            read_columns(
                &mut c,
                &columns,
                kind == KIND_ENTITY_SPLIT,
                &mut answer,
                &mut groups,
            )?;
            if answer.values.iter().any(|v| v.len() != 1) {
                return Err(bad("column", "a GET answers one row"));
            }
            ReadKind::Entity
        }
        KIND_RANKING | KIND_RANKING_INLINE | KIND_RANKING_SPLIT => {
            let inline = kind == KIND_RANKING_INLINE;
            answer.service = match c.u8("service flag")? {
                0 => None,
                _ => Some(c.str("service")?),
            };
            answer.complete = c.u8("complete")? != 0;
            answer.versions = versions(&mut c)?;
            let n = c.count("context", 2)?;
            for _ in 0..n {
                let t = c.str("context type")?;
                answer.context.push((t, c.str("context id")?));
            }
            let columns = columns_of(&mut c, inline, sets, "context columns")?;
            let mut context_columns = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                let (col, group) = columns.column(&mut c, i)?;
                let status = status_of(c.u8("context status")?)?;
                let event_time = match c.u8("context time flag")? {
                    0 => None,
                    _ => Some(c.iv("context time")?),
                };
                let value = value(&mut c)?;
                context_columns.push(col);
                answer.context_cells.push(Cell {
                    status,
                    value,
                    event_time,
                });
                context_groups.push(group);
            }
            answer.context_columns = context_columns.into();
            answer.candidate_type = c.str("candidate type")?;
            let n = c.count("candidates", 1)?;
            for _ in 0..n {
                answer.candidates.push(c.str("candidate")?);
            }
            let columns = columns_of(&mut c, inline, sets, "columns")?;
            read_columns(
                &mut c,
                &columns,
                kind == KIND_RANKING_SPLIT,
                &mut answer,
                &mut groups,
            )?;
            if answer
                .values
                .iter()
                .any(|v| v.len() != answer.candidates.len())
            {
                return Err(bad("column", "rows differ from candidates"));
            }
            let n = c.count("defaults", 2)?;
            for _ in 0..n {
                let f = c.str("default feature")?;
                answer.defaults.push((f, c.uv("default count")?));
            }
            ReadKind::Ranking
        }
        other => return Err(bad("kind", format!("{other}"))),
    };
    if c.left() != 0 {
        return Err(bad("record", format!("{} bytes after the end", c.left())));
    }
    Ok(Record {
        request_id,
        route,
        kind,
        answer,
        context_groups,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(dtype: DType, rows: usize) -> ColumnValues {
        let mut status = Rows::new();
        let mut times = Rows::new();
        for r in 0..rows {
            status.push(if r % 3 == 0 {
                FeatureStatus::NotFound
            } else {
                FeatureStatus::Present
            });
            times.push(if r % 3 == 0 {
                NO_TIME
            } else {
                1_700_000_000_000 + r as i64
            });
        }
        let data = match dtype {
            DType::Float32 => ColumnData::Float32((0..rows).map(|r| r as f32 * 0.5).collect()),
            DType::Int64 => ColumnData::Int64((0..rows).map(|r| -(r as i64)).collect()),
            DType::String => ColumnData::Other(
                (0..rows)
                    .map(|r| (r % 3 != 0).then(|| Value::String(format!("s{r}"))))
                    .collect(),
            ),
            _ => ColumnData::Float64((0..rows).map(|r| r as f64 / 3.0).collect()),
        };
        ColumnValues::from_parts(status, times, data).expect("consistent")
    }

    fn ranking() -> RankResponse {
        let dtypes = [DType::Float32, DType::Int64, DType::String, DType::Float64];
        let rows = 7;
        RankResponse {
            service: Some("svc@2".into()),
            context: vec![("user".into(), "u1".into())],
            context_columns: Arc::from([RankColumn {
                name: "user_age".into(),
                feature: "user_age@1".into(),
                dtype: DType::Int64,
                on_demand: false,
            }]),
            context_cells: vec![Cell {
                status: FeatureStatus::Stale,
                value: Some(Value::Int64(41)),
                event_time: Some(5),
            }],
            candidate_type: "product".into(),
            columns: dtypes
                .iter()
                .enumerate()
                .map(|(i, d)| RankColumn {
                    name: format!("f{i}"),
                    feature: format!("f{i}@1"),
                    dtype: *d,
                    on_demand: i == 3,
                })
                .collect(),
            candidates: (0..rows).map(|r| format!("p{r}")).collect(),
            values: dtypes.iter().map(|d| column(*d, rows)).collect(),
            versions: [("products".to_owned(), 3u64)].into(),
            complete: false,
            defaults: vec![("f1@1".into(), 2)],
            now_ms: 1_700_000_000_123,
        }
    }

    /// The records a writer adds to the current block for the read `encode` writes:
    /// the sets it names that the block lacks, then it.
    fn block_records(
        sets: &mut ColumnSets,
        encode: impl FnOnce(&mut Vec<u8>, &mut ColumnSets),
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        encode(&mut out, sets);
        let mut records: Vec<Vec<u8>> = Vec::new();
        for id in sets.missing() {
            records.push(sets.record(id).expect("a known set").to_vec());
            sets.mark_in_block(id);
        }
        records.push(out);
        records
    }

    /// [`block_records`] of a ranking answer.
    fn records_of(answer: &RankResponse, sets: &mut ColumnSets) -> Vec<Vec<u8>> {
        block_records(sets, |out, sets| {
            encode_ranking(out, "rid-1", "rank", answer, sets, &mut |f| {
                format!("g:{f}")
            })
        })
    }

    /// [`block_records`] of a single-entity answer.
    fn entity_records(answer: &EntityAnswer, sets: &mut ColumnSets) -> Vec<Vec<u8>> {
        block_records(sets, |out, sets| {
            encode_entity(out, "rid-e", "get", answer, sets, &mut |f| format!("g:{f}"))
        })
    }

    #[test]
    fn one_item_is_written_as_its_byte_planes_and_reads_back() {
        // The one-item shortcut writes what the per-plane passes write.
        for x in [0.25f32, f32::NAN, -0.0, f32::MAX] {
            let (mut fast, mut by_plane) = (Vec::new(), Vec::new());
            put_planes(&mut fast, std::iter::once(x.to_le_bytes()));
            put_planes_by_plane(&mut by_plane, std::iter::once(x.to_le_bytes()));
            assert_eq!(fast, by_plane, "f32 {x}");
        }
        for x in [-1e300f64, 1.0 / 3.0] {
            let (mut fast, mut by_plane) = (Vec::new(), Vec::new());
            put_planes(&mut fast, std::iter::once(x.to_le_bytes()));
            put_planes_by_plane(&mut by_plane, std::iter::once(x.to_le_bytes()));
            assert_eq!(fast, by_plane, "f64 {x}");
        }
        // One-row columns of every fixed-width type, status and time read back.
        let statuses = [
            FeatureStatus::Present,
            FeatureStatus::Defaulted,
            FeatureStatus::Stale,
        ];
        let times = [NO_TIME, 0, 1, -5, 1_700_000_000_000];
        let data = [
            ColumnData::Float32([0.25f32].into_iter().collect()),
            ColumnData::Float32([f32::NAN].into_iter().collect()),
            ColumnData::Float64([-1e300f64].into_iter().collect()),
            ColumnData::Int64([i64::MIN].into_iter().collect()),
            ColumnData::Int64([300].into_iter().collect()),
        ];
        let mut columns = 0;
        for status in statuses {
            for time in times {
                for d in &data {
                    let column = ColumnValues::from_parts(
                        [status].into_iter().collect(),
                        [time].into_iter().collect(),
                        d.clone(),
                    )
                    .expect("one row");
                    let mut bytes = Vec::new();
                    put_column_values(&mut bytes, &column, &mut Shared::default());
                    let mut c = Cur { b: &bytes, p: 0 };
                    let back = column_values(&mut c, &mut Shared::default()).expect("decodes");
                    assert_eq!(c.left(), 0);
                    assert_eq!(back.statuses(), column.statuses());
                    assert_eq!(back.event_times(), column.event_times());
                    let mut again = Vec::new();
                    put_column_values(&mut again, &back, &mut Shared::default());
                    assert_eq!(again, bytes, "{status:?} at {time}: {d:?}");
                    columns += 1;
                }
            }
        }
        assert_eq!(columns, 75);
    }

    /// One-row float32 column with `status` at `time`.
    fn one_row(status: FeatureStatus, time: TimestampMs, x: f32) -> ColumnValues {
        ColumnValues::from_parts(
            [status].into_iter().collect(),
            [time].into_iter().collect(),
            ColumnData::Float32([x].into_iter().collect()),
        )
        .expect("one row")
    }

    #[test]
    fn columns_repeat_the_previous_shared_status_and_time_in_one_byte() {
        use FeatureStatus::{Expired, Present};
        let t = 1_795_219_200_000;
        // Runs of equal statuses and times, a change of each, a return to the first
        // (repeats the last shared one, not the first), a column with no time, and a
        // multi-row column whose rows differ (mode 0, which leaves the shared ones).
        let mut columns = vec![
            one_row(Present, t, 1.0),
            one_row(Present, t, 2.0),
            one_row(Expired, t, 3.0),
            one_row(Expired, t - 7, 4.0),
            one_row(Present, t, 5.0),
            one_row(Present, NO_TIME, 6.0),
            one_row(Present, NO_TIME, 7.0),
        ];
        columns.push(
            ColumnValues::from_parts(
                [Present, Expired].into_iter().collect(),
                [t, t + 1].into_iter().collect(),
                ColumnData::Float32([8.0, 9.0].into_iter().collect()),
            )
            .expect("two rows"),
        );
        columns.push(one_row(Present, NO_TIME, 10.0));
        let mut bytes = Vec::new();
        let mut shared = Shared::default();
        for column in &columns {
            put_column_values(&mut bytes, column, &mut shared);
        }
        // The second column is rows, mode 2, mode 2, type, value: 8 bytes, where mode 1
        // for both took 2 + 8 more (the status byte and the 7-byte time).
        let mut alone = Vec::new();
        put_column_values(&mut alone, &columns[1], &mut Shared::default());
        assert_eq!(alone.len(), 1 + 2 + 8 + 1 + 4);
        let mut c = Cur { b: &bytes, p: 0 };
        let mut shared = Shared::default();
        let first = column_values(&mut c, &mut shared).expect("first");
        let second_at = c.p;
        let _ = column_values(&mut c, &mut shared).expect("second");
        assert_eq!(c.p - second_at, 1 + 1 + 1 + 1 + 4);
        assert_eq!(first.statuses(), columns[0].statuses());
        let mut c = Cur { b: &bytes, p: 0 };
        let mut shared = Shared::default();
        for (i, column) in columns.iter().enumerate() {
            let back = column_values(&mut c, &mut shared).expect("decodes");
            assert_eq!(back.statuses(), column.statuses(), "column {i}");
            assert_eq!(back.event_times(), column.event_times(), "column {i}");
            assert_eq!(back.data(), column.data(), "column {i}");
        }
        assert_eq!(c.left(), 0);
        // A read whose first column says "repeat" is damaged, not read as anything.
        let mut c = Cur {
            b: &bytes[second_at..],
            p: 0,
        };
        let err = column_values(&mut c, &mut Shared::default()).expect_err("no shared status");
        assert!(err.to_string().contains("repeat"), "{err}");
        // Version 2 writers gave every column mode 1: those bytes still read the same.
        let mut v2 = Vec::new();
        for column in &columns {
            put_column_values(&mut v2, column, &mut Shared::default());
        }
        assert!(v2.len() > bytes.len());
        let mut c = Cur { b: &v2, p: 0 };
        let mut shared = Shared::default();
        for column in &columns {
            let back = column_values(&mut c, &mut shared).expect("v2 bytes decode");
            assert_eq!(back.event_times(), column.event_times());
            assert_eq!(back.statuses(), column.statuses());
        }
    }

    /// A column's `values` as kinds 1, 2, 4 and 5 hold them: its head, then its data.
    fn put_column_values(out: &mut Vec<u8>, column: &ColumnValues, shared: &mut Shared) {
        put_column_head(out, column, shared);
        put_column_data(out, column);
    }

    /// `record` (kind 7, of `answer`) as a version 2 writer wrote it: kind 5, each
    /// column's head and data together, statuses and times in modes 0 and 1 only.
    fn as_version_2(record: &[u8], answer: &RankResponse) -> Vec<u8> {
        let mut split = Vec::new();
        put_values(&mut split, answer.values.iter());
        let mut defaults = Vec::new();
        put_uv(&mut defaults, answer.defaults.len() as u64);
        for (feature, n) in &answer.defaults {
            put_str(&mut defaults, feature);
            put_uv(&mut defaults, *n);
        }
        let at = record.len() - defaults.len() - split.len();
        assert_eq!(record.first(), Some(&KIND_RANKING_SPLIT));
        assert_eq!(&record[at..record.len() - defaults.len()], &split[..]);
        assert_eq!(&record[record.len() - defaults.len()..], &defaults[..]);
        let mut v2 = vec![KIND_RANKING];
        v2.extend_from_slice(&record[1..at]);
        for values in &answer.values {
            put_column_values(&mut v2, values, &mut Shared::default());
        }
        v2.extend_from_slice(&defaults);
        v2
    }

    #[test]
    fn version_2_reads_still_decode_to_the_same_answer() {
        let mut answer = ranking();
        // Every candidate column with one status and one time: the case mode 2 repeats.
        for values in &mut answer.values {
            let rows = values.len();
            *values = ColumnValues::from_parts(
                Rows::from_elem(FeatureStatus::Present, rows),
                Rows::from_elem(1_795_219_200_000, rows),
                values.data().clone(),
            )
            .expect("same rows");
        }
        for answer in [ranking(), answer] {
            let mut sets = ColumnSets::new();
            let records = records_of(&answer, &mut sets);
            let mut decoder = Decoder::new();
            for set in &records[..2] {
                assert_eq!(decoder.decode(set).expect("set"), None);
            }
            let v3 = decoder.decode(&records[2]).expect("v3").expect("a read");
            let v2_bytes = as_version_2(&records[2], &answer);
            let v2 = decoder.decode(&v2_bytes).expect("v2").expect("a read");
            assert_eq!(v2.answer, answer);
            assert_eq!(v2, v3);
        }
    }

    #[test]
    fn split_heads_that_claim_more_rows_than_bytes_are_refused_before_allocating() {
        // Two float32 heads of 1,000,000 rows each, shared status and time, then 8 bytes.
        let mut bytes = Vec::new();
        for _ in 0..2 {
            put_uv(&mut bytes, 1_000_000);
            bytes.extend_from_slice(&[1, 0, 1, 0, 3]);
        }
        bytes.extend_from_slice(&[0; 8]);
        let mut c = Cur { b: &bytes, p: 0 };
        assert!(matches!(
            split_values(&mut c, 2),
            Err(RecordError::Truncated("rows"))
        ));
        // Rows that do fit decode; data short of them is truncated, not read past.
        let mut ok = Vec::new();
        put_uv(&mut ok, 2);
        ok.extend_from_slice(&[1, 0, 1, 0, 3]);
        put_planes(&mut ok, [1.0f32, 2.0].iter().map(|x| x.to_le_bytes()));
        let mut c = Cur { b: &ok, p: 0 };
        let values = split_values(&mut c, 1).expect("fits");
        assert_eq!(c.left(), 0);
        assert_eq!(
            values[0].data(),
            &ColumnData::Float32([1.0f32, 2.0].into_iter().collect())
        );
        let mut c = Cur {
            b: &ok[..ok.len() - 1],
            p: 0,
        };
        assert!(split_values(&mut c, 1).is_err());
    }

    #[test]
    fn a_ranking_answer_round_trips() {
        let answer = ranking();
        let mut sets = ColumnSets::new();
        let records = records_of(&answer, &mut sets);
        assert_eq!(records.len(), 3, "two sets, then the read");
        let mut decoder = Decoder::new();
        for set in &records[..2] {
            assert_eq!(decoder.decode(set).expect("set"), None);
        }
        let record = decoder
            .decode(&records[2])
            .expect("decodes")
            .expect("a read");
        assert_eq!(record.answer, answer);
        assert_eq!(record.request_id, "rid-1");
        assert_eq!(record.groups[0], "g:f0@1");
        assert_eq!(record.context_groups, vec!["g:user_age@1".to_owned()]);
        assert_eq!(record.service_name(), Some("svc"));
        assert_eq!(
            record.replay_json().expect("json"),
            crate::api::rank_json::encode_json(&answer)
        );
        // The same columns again in the same block: no set record; in a new block, the
        // same numbers again with their records.
        let again = records_of(&answer, &mut sets);
        assert_eq!(again.len(), 1);
        assert_eq!(decoder.decode(&again[0]).expect("decodes"), Some(record));
        sets.new_block();
        assert_eq!(records_of(&answer, &mut sets), records);
        // Equal columns in another list (not the plan's shared one): found by content,
        // the same set.
        let mut copy = answer.clone();
        copy.columns = answer.columns.to_vec().into();
        copy.context_columns = answer.context_columns.to_vec().into();
        assert_eq!(records_of(&copy, &mut sets), vec![records[2].clone()]);
        // Other columns: a new set number.
        let mut other = answer.clone();
        let mut renamed = answer.columns.to_vec();
        renamed[0].name = "renamed".into();
        other.columns = renamed.into();
        let other_records = records_of(&other, &mut sets);
        assert_eq!(other_records.len(), 2);
        assert_eq!(decoder.decode(&other_records[0]).expect("set"), None);
        let read = decoder
            .decode(&other_records[1])
            .expect("decodes")
            .expect("read");
        assert_eq!(read.answer, other);
        // A set never defined is an error naming it.
        let err = Decoder::new().decode(&records[2]).expect_err("no set");
        assert!(err.to_string().contains("named before its record"), "{err}");
    }

    #[test]
    fn an_entity_answer_names_its_plans_set_even_after_the_sets_are_reset() {
        let (_dir, store) = crate::store::test_store::with_price_feature();
        let names = crate::query::Names::Text("price");
        let first = store.get_entity("item", "x", names).expect("get");
        let second = store.get_entity("item", "y", names).expect("get");
        assert!(Arc::ptr_eq(first.plan(), second.plan()), "one cached plan");
        let mut sets = ColumnSets::new();
        let records = entity_records(&first, &mut sets);
        assert_eq!(records.len(), 2, "the set, then the read");
        // The same plan: the same set, already in the block.
        assert_eq!(entity_records(&second, &mut sets).len(), 1);
        // Enough other sets to make the writer forget every set: the plan's set must
        // then be made again, with a record, not named from memory.
        let mut answer = ranking();
        for i in 0..MAX_KNOWN_SETS {
            let mut columns = answer.columns.to_vec();
            columns[0].name = format!("c{i}");
            answer.columns = columns.into();
            records_of(&answer, &mut sets);
        }
        sets.new_block();
        let again = entity_records(&second, &mut sets);
        assert_eq!(again.len(), 2, "the set's record again, then the read");
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(&again[0]).expect("set"), None);
        let read = decoder.decode(&again[1]).expect("decodes").expect("a read");
        assert_eq!(read.feature_vector(), Some(second.into_vector()));
    }

    #[test]
    fn every_truncation_and_many_flips_are_errors_not_panics() {
        let records = records_of(&ranking(), &mut ColumnSets::new());
        for (n, out) in records.iter().enumerate() {
            let decoder = || {
                let mut d = Decoder::new();
                for set in &records[..n] {
                    d.decode(set).expect("set");
                }
                d
            };
            for cut in 0..out.len() {
                assert!(
                    decoder().decode(&out[..cut]).is_err(),
                    "record {n}, cut at {cut}"
                );
            }
            for at in 0..out.len() {
                let mut b = out.clone();
                b[at] ^= 0xa5;
                let _ = decoder().decode(&b);
            }
        }
    }
}
