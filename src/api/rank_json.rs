//! Encoders of the ranking response ([`RankResponse`]): compact JSON, written by hand
//! into one pre-sized buffer, and a binary form for hosts that ask for it with
//! `Accept: application/x-featstore-rank` (see README, "Ranking").
//!
//! JSON shape (feature names once; one row per candidate, in the order asked):
//!
//! ```json
//! {"service":"ranker_v3@1","now_ms":1763800000000,"complete":true,
//!  "event_times":[1763700000000],
//!  "context":{"entities":{"user":"u1"},"features":["user_age"],"values":[31],"status":"P","event_time":[0]},
//!  "candidates":{"entity_type":"product","features":["ctr","sim"],
//!    "rows":[{"id":"p1","values":[0.25,0.8],"status":"PP","event_time":[0,1]}]},
//!  "versions":{"product_daily":3},"defaults":{"sim@1":0}}
//! ```
//!
//! * `status` holds one letter per value, in column order: see [`status_letter`].
//! * `event_time` holds, per value, an index into the response's `event_times` table
//!   (distinct event times, in first-seen order; batch data shares a few) or `null`.
//! * values map as in [`super::json`]: numbers, bools, strings, hex for bytes, arrays
//!   for vectors; no value (and non-finite floats) is `null`; floats in their shortest
//!   form, as serde_json writes them ([`super::float_json`]).
//!
//! Stateless; safe from any thread.

use std::collections::HashMap;

use crate::query::answer::{ColumnData, ColumnValues, NO_TIME, all_items};
use crate::query::rank::{Cell, RankColumn, RankResponse};
use crate::types::{FeatureStatus, TimestampMs, Value};

use super::float_json::{push_f32, push_f32_array, push_f64};

/// `Content-Type` of the binary encoding, also the `Accept` value that selects it.
pub const BINARY_CONTENT_TYPE: &str = "application/x-featstore-rank";

/// The one-letter code of a status in `status` strings (and the binary encoding's
/// status byte): `P` present, `S` stale (present, older than the freshness SLO), `U`
/// null, `N` not found, `X` expired, `D` defaulted, `F` not fetched before the deadline.
pub fn status_letter(status: FeatureStatus) -> u8 {
    match status {
        FeatureStatus::Present => b'P',
        FeatureStatus::Stale => b'S',
        FeatureStatus::Null => b'U',
        FeatureStatus::NotFound => b'N',
        FeatureStatus::Expired => b'X',
        FeatureStatus::Defaulted => b'D',
        FeatureStatus::NotFetched => b'F',
    }
}

/// Distinct event times of a response, indexed in first-seen order.
#[derive(Default)]
pub struct TimeTable {
    times: Vec<TimestampMs>,
    index: HashMap<TimestampMs, u32, ahash::RandomState>,
    last: Option<(TimestampMs, u32)>,
}

impl TimeTable {
    /// The index of `t`, added if new.
    #[inline]
    pub fn slot(&mut self, t: TimestampMs) -> u32 {
        if let Some((last, i)) = self.last
            && last == t
        {
            return i;
        }
        let next = u32::try_from(self.times.len()).unwrap_or(u32::MAX);
        let i = *self.index.entry(t).or_insert(next);
        if i == next {
            self.times.push(t);
        }
        self.last = Some((t, i));
        i
    }

    /// The distinct times, by index.
    pub fn times(&self) -> &[TimestampMs] {
        &self.times
    }
}

/// Index into [`TimeIndex::times`] of a value that has no event time.
pub const NO_TIME_INDEX: u32 = u32::MAX;

/// Every value's index into the response's table of distinct event times, computed
/// once for an encoder: context values, then column by column.
pub struct TimeIndex {
    table: TimeTable,
    /// One index per context cell.
    pub context: Vec<u32>,
    /// Per candidate column, one index per row.
    pub columns: Vec<Vec<u32>>,
}

impl TimeIndex {
    /// Indexes every event time of `response`.
    pub fn of(response: &RankResponse) -> Self {
        let mut table = TimeTable::default();
        let context = response
            .context_cells
            .iter()
            .map(|c| c.event_time.map_or(NO_TIME_INDEX, |t| table.slot(t)))
            .collect();
        let columns = response
            .values
            .iter()
            .map(|column| {
                let times = column.event_times();
                let mut slot = |t: TimestampMs| {
                    if t == NO_TIME {
                        NO_TIME_INDEX
                    } else {
                        table.slot(t)
                    }
                };
                match times.first() {
                    // Batch columns often share one event time: one lookup, one fill.
                    Some(&first) if all_items(times, |t| *t == first) => {
                        vec![slot(first); times.len()]
                    }
                    _ => times.iter().map(|&t| slot(t)).collect(),
                }
            })
            .collect();
        TimeIndex {
            table,
            context,
            columns,
        }
    }

    /// The distinct times, by index.
    pub fn times(&self) -> &[TimestampMs] {
        self.table.times()
    }

    /// The index of candidate `row`'s value in column `column`.
    #[inline]
    pub fn at(&self, column: usize, row: usize) -> u32 {
        self.columns
            .get(column)
            .and_then(|c| c.get(row))
            .copied()
            .unwrap_or(NO_TIME_INDEX)
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends one value as JSON (`null` for none; floats: [`super::float_json`]).
pub(crate) fn push_value(out: &mut Vec<u8>, value: Option<&Value>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match value {
        None | Some(Value::Null) => out.extend_from_slice(b"null"),
        Some(Value::Float32(v)) => push_f32(out, *v),
        Some(Value::Float64(v)) => push_f64(out, *v),
        Some(Value::Int64(v)) => push_int(out, *v),
        Some(Value::Bool(v)) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
        Some(Value::String(s)) => push_str(out, s),
        Some(Value::Bytes(b)) => {
            out.push(b'"');
            for byte in b {
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            }
            out.push(b'"');
        }
        Some(Value::Float32Vector(v)) => push_f32_array(out, v),
    }
}

fn push_names(out: &mut Vec<u8>, columns: &[RankColumn]) {
    out.push(b'[');
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, &c.name);
    }
    out.push(b']');
}

fn push_time_index(out: &mut Vec<u8>, index: u32) {
    if index == NO_TIME_INDEX {
        out.extend_from_slice(b"null");
    } else {
        push_int(out, i64::from(index));
    }
}

/// Writes `"values":[..],"status":"..","event_time":[..]` of the context's cells.
fn push_cells(out: &mut Vec<u8>, cells: &[Cell], times: &[u32]) {
    out.extend_from_slice(b"\"values\":[");
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_value(out, c.value.as_ref());
    }
    out.extend_from_slice(b"],\"status\":\"");
    out.extend(cells.iter().map(|c| status_letter(c.status)));
    out.extend_from_slice(b"\",\"event_time\":[");
    for (i, &t) in times.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_time_index(out, t);
    }
    out.push(b']');
}

/// Writes row `row`'s value of `column`, `null` where its status carries none.
#[inline]
fn push_column_value(out: &mut Vec<u8>, column: &ColumnValues, row: usize) {
    if !column.has_value(row) {
        out.extend_from_slice(b"null");
        return;
    }
    match column.data() {
        ColumnData::Float32(v) => push_f32(out, v.get(row).copied().unwrap_or(f32::NAN)),
        ColumnData::Float64(v) => push_f64(out, v.get(row).copied().unwrap_or(f64::NAN)),
        ColumnData::Int64(v) => match v.get(row) {
            Some(x) => push_int(out, *x),
            None => out.extend_from_slice(b"null"),
        },
        ColumnData::Bool(v) => out.extend_from_slice(if v.get(row) == Some(&true) {
            b"true"
        } else {
            b"false"
        }),
        ColumnData::Float32Vector { .. } => {
            push_f32_array(out, column.data().vector(row).unwrap_or_default());
        }
        ColumnData::Other(v) => push_value(out, v.get(row).and_then(Option::as_ref)),
    }
}

/// Writes `"values":[..],"status":"..","event_time":[..]` of candidate `row`.
fn push_row(out: &mut Vec<u8>, response: &RankResponse, row: usize, times: &TimeIndex) {
    out.extend_from_slice(b"\"values\":[");
    for (i, column) in response.values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_column_value(out, column, row);
    }
    out.extend_from_slice(b"],\"status\":\"");
    out.extend(response.values.iter().map(|c| status_letter(c.status(row))));
    out.extend_from_slice(b"\",\"event_time\":[");
    for i in 0..response.values.len() {
        if i > 0 {
            out.push(b',');
        }
        push_time_index(out, times.at(i, row));
    }
    out.push(b']');
}

/// A generous guess of the encoded size, so the buffer rarely grows.
fn estimated_len(response: &RankResponse) -> usize {
    let per_value = 24;
    512 + response.candidates.len() * response.width() * per_value
        + response
            .candidates
            .iter()
            .map(|c| c.len() + 64)
            .sum::<usize>()
        + response.columns.len() * 40
}

/// Encodes the JSON ranking response (shape in the module docs).
pub fn encode_json(response: &RankResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimated_len(response));
    let times = TimeIndex::of(response);
    out.extend_from_slice(b"{\"service\":");
    match &response.service {
        Some(s) => push_str(&mut out, s),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"now_ms\":");
    push_int(&mut out, response.now_ms);
    out.extend_from_slice(if response.complete {
        b",\"complete\":true"
    } else {
        b",\"complete\":false"
    });
    out.extend_from_slice(b",\"event_times\":[");
    for (i, t) in times.times().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_int(&mut out, *t);
    }
    out.extend_from_slice(b"],\"context\":{\"entities\":{");
    for (i, (entity_type, id)) in response.context.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, entity_type);
        out.push(b':');
        push_str(&mut out, id);
    }
    out.extend_from_slice(b"},\"features\":");
    push_names(&mut out, &response.context_columns);
    out.push(b',');
    push_cells(&mut out, &response.context_cells, &times.context);
    out.extend_from_slice(b"},\"candidates\":{\"entity_type\":");
    push_str(&mut out, &response.candidate_type);
    out.extend_from_slice(b",\"features\":");
    push_names(&mut out, &response.columns);
    out.extend_from_slice(b",\"rows\":[");
    for (r, id) in response.candidates.iter().enumerate() {
        if r > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        push_str(&mut out, id);
        out.push(b',');
        push_row(&mut out, response, r, &times);
        out.push(b'}');
    }
    out.extend_from_slice(b"]},\"versions\":{");
    for (i, (group, version)) in response.versions.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, group);
        out.push(b':');
        push_int(&mut out, i64::try_from(*version).unwrap_or(i64::MAX));
    }
    out.extend_from_slice(b"},\"defaults\":{");
    for (i, (feature, n)) in response.defaults.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, feature);
        out.push(b':');
        push_int(&mut out, i64::try_from(*n).unwrap_or(i64::MAX));
    }
    out.extend_from_slice(b"}}");
    out
}
