//! The binary encoding of a ranking response (`Content-Type:
//! application/x-featstore-rank`), for hosts that want no number parsing: candidate
//! values come column by column, each fixed-width column as one dense little-endian
//! array a client can use in place (500 float32 values are 2,000 contiguous bytes).
//!
//! The grammar, with every field's meaning and the edge cases, is in `docs/wire.md`
//! ("Binary ranking answer"); [`encode`] and [`decode`] follow it, and the tests here
//! check the two against each other. Status bytes are the letters of
//! [`status_letter`]; value tags are those of storage-format.md.
//!
//! Stateless; safe from any thread.

use crate::codec::value::tag;
use crate::query::answer::{ColumnData, ColumnValues, all_items};
use crate::query::rank::{Cell, RankColumn, RankResponse};
use crate::types::{DType, FeatureStatus, TimestampMs, Value};

pub use super::rank_json::BINARY_CONTENT_TYPE;
use super::rank_json::{NO_TIME_INDEX, TimeIndex, status_letter};

/// First bytes of every binary ranking response.
pub const MAGIC: &[u8; 4] = b"FSRK";
/// Encoding version written after the magic.
pub const VERSION: u8 = 2;

fn put_u32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len());
    out.extend_from_slice(s);
}

fn dtype_tag(dtype: DType) -> (u8, u32) {
    let dim = match dtype {
        DType::Float32Vector { dim } => dim,
        _ => 0,
    };
    (crate::codec::value::tag_of(dtype), dim)
}

fn put_columns(out: &mut Vec<u8>, columns: &[RankColumn]) {
    put_u32(out, columns.len());
    for c in columns {
        put_str(out, c.name.as_bytes());
        put_str(out, c.feature.as_bytes());
        let (tag, dim) = dtype_tag(c.dtype);
        out.push(tag);
        out.extend_from_slice(&dim.to_le_bytes());
    }
}

/// True for the statuses whose cells carry a value.
fn carries_value(status: u8) -> bool {
    matches!(status, b'P' | b'S' | b'D')
}

#[inline]
fn put_status_time(out: &mut Vec<u8>, status: FeatureStatus, time: u32, narrow: bool) {
    out.push(status_letter(status));
    if narrow {
        out.push(u8::try_from(time).unwrap_or(u8::MAX));
    } else {
        out.extend_from_slice(&time.to_le_bytes());
    }
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    put_u32(out, v.len());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Int64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Float64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Float32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_str(out, s.as_bytes()),
        Value::Bytes(b) => put_str(out, b),
        Value::Float32Vector(v) => put_f32s(out, v),
        // Cells that carry a value always hold one of the column's dtype.
        Value::Null => {}
    }
}

fn put_cell(out: &mut Vec<u8>, cell: &Cell, time: u32, narrow: bool) {
    put_status_time(out, cell.status, time, narrow);
    if carries_value(status_letter(cell.status))
        && let Some(value) = &cell.value
    {
        put_value(out, value);
    }
}

/// `mode` byte of a status or time-index run: one entry per row follows.
const PER_ROW: u8 = 0;
/// `mode` byte of a status or time-index run: one entry, every row's, follows.
const UNIFORM: u8 = 1;

/// The value every item of `items` has, if they all have one (and there is one).
fn uniform<T: Copy + PartialEq>(items: &[T]) -> Option<T> {
    let first = *items.first()?;
    all_items(items, |x| *x == first).then_some(first)
}

/// Writes one column's block: statuses, time indexes, values (grammar in the module
/// docs).
fn put_block(out: &mut Vec<u8>, column: &ColumnValues, times: &[u32], narrow: bool) {
    let statuses = column.statuses();
    let uniform_status = uniform(statuses);
    match uniform_status {
        Some(status) => out.extend_from_slice(&[UNIFORM, status_letter(status)]),
        None => {
            out.push(PER_ROW);
            out.extend(statuses.iter().map(|s| status_letter(*s)));
        }
    }
    let (mode, times) = match uniform(times) {
        Some(_) => (UNIFORM, times.get(..1).unwrap_or_default()),
        None => (PER_ROW, times),
    };
    out.push(mode);
    if narrow {
        out.extend(times.iter().map(|t| u8::try_from(*t).unwrap_or(u8::MAX)));
    } else {
        for t in times {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
    // Every row carries a value (the common case): no per-row check.
    let all_carry = uniform_status.is_some_and(|s| carries_value(status_letter(s)));
    let carries = |r: usize| {
        all_carry
            || statuses
                .get(r)
                .is_some_and(|s| carries_value(status_letter(*s)))
    };
    match column.data() {
        ColumnData::Float32(v) if all_carry => {
            out.reserve(v.len() * size_of::<f32>());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        ColumnData::Float32(v) => {
            for (r, x) in v.iter().enumerate() {
                let x = if carries(r) { *x } else { 0.0 };
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        ColumnData::Float64(v) => {
            for (r, x) in v.iter().enumerate() {
                let x = if carries(r) { *x } else { 0.0 };
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        ColumnData::Int64(v) => {
            for (r, x) in v.iter().enumerate() {
                let x = if carries(r) { *x } else { 0 };
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        ColumnData::Bool(v) => {
            out.extend(
                v.iter()
                    .enumerate()
                    .map(|(r, x)| u8::from(carries(r) && *x)),
            );
        }
        ColumnData::Float32Vector { dim, values } => {
            for (r, vector) in values.chunks_exact((*dim).max(1)).enumerate() {
                let keep = carries(r);
                for x in vector {
                    out.extend_from_slice(&(if keep { *x } else { 0.0 }).to_le_bytes());
                }
            }
        }
        ColumnData::Other(v) => {
            for (r, value) in v.iter().enumerate() {
                if carries(r) {
                    match value {
                        Some(Value::String(s)) => put_str(out, s.as_bytes()),
                        Some(Value::Bytes(b)) => put_str(out, b),
                        // A string or bytes column holds only those values; a cell
                        // that carries one always has it.
                        _ => put_str(out, b""),
                    }
                }
            }
        }
    }
}

/// Encodes `response` (grammar in the module docs).
pub fn encode(response: &RankResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + response.candidates.len() * (response.width() * 9 + 16));
    let times = TimeIndex::of(response);
    let narrow = times.times().len() < usize::from(u8::MAX);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(u8::from(response.complete));
    out.push(if narrow { 1 } else { 4 });
    out.extend_from_slice(&response.now_ms.to_le_bytes());
    put_str(
        &mut out,
        response.service.as_deref().unwrap_or("").as_bytes(),
    );
    put_str(&mut out, response.candidate_type.as_bytes());
    put_u32(&mut out, response.context.len());
    for (t, id) in &response.context {
        put_str(&mut out, t.as_bytes());
        put_str(&mut out, id.as_bytes());
    }
    put_u32(&mut out, times.times().len());
    for t in times.times() {
        out.extend_from_slice(&t.to_le_bytes());
    }
    put_columns(&mut out, &response.context_columns);
    for (cell, &time) in response.context_cells.iter().zip(&times.context) {
        put_cell(&mut out, cell, time, narrow);
    }
    put_columns(&mut out, &response.columns);
    put_u32(&mut out, response.candidates.len());
    for id in &response.candidates {
        put_str(&mut out, id.as_bytes());
    }
    for (column, indexes) in response.values.iter().zip(&times.columns) {
        put_block(&mut out, column, indexes, narrow);
    }
    put_u32(&mut out, response.versions.len());
    for (group, version) in &response.versions {
        put_str(&mut out, group.as_bytes());
        out.extend_from_slice(&version.to_le_bytes());
    }
    put_u32(&mut out, response.defaults.len());
    for (feature, n) in &response.defaults {
        put_str(&mut out, feature.as_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

/// One decoded cell: status letter, event time, value.
pub type DecodedCell = (u8, Option<TimestampMs>, Option<Value>);

/// A decoded binary response (for Rust clients and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// False when some values were not fetched before the deadline.
    pub complete: bool,
    /// Request time.
    pub now_ms: TimestampMs,
    /// Service read, if any.
    pub service: Option<String>,
    /// Candidates' entity type.
    pub candidate_type: String,
    /// Context entities.
    pub context: Vec<(String, String)>,
    /// Context column names.
    pub context_columns: Vec<String>,
    /// Context cells: (status letter, event time, value).
    pub context_cells: Vec<DecodedCell>,
    /// Candidate column names.
    pub columns: Vec<String>,
    /// Rows: (id, cells).
    pub rows: Vec<(String, Vec<DecodedCell>)>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1)?.first().copied()
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
    fn columns(&mut self) -> Option<Vec<(String, u8, u32)>> {
        let n = self.u32()?;
        (0..n)
            .map(|_| {
                let name = self.string()?;
                let _feature = self.string()?;
                let tag = self.u8()?;
                let dim = self.u32()?;
                Some((name, tag, dim))
            })
            .collect()
    }
    fn time(&mut self, times: &[i64], narrow: bool) -> Option<Option<TimestampMs>> {
        let t = if narrow {
            match self.u8()? {
                u8::MAX => NO_TIME_INDEX,
                t => u32::from(t),
            }
        } else {
            self.u32()?
        };
        if t == NO_TIME_INDEX {
            Some(None)
        } else {
            Some(Some(*times.get(t as usize)?))
        }
    }
    fn f32s(&mut self, n: usize) -> Option<Vec<f32>> {
        let raw = self.bytes(n.checked_mul(4)?)?;
        Some(
            raw.chunks_exact(4)
                .map(|c| c.try_into().map(f32::from_le_bytes).unwrap_or(f32::NAN))
                .collect(),
        )
    }
    /// One fixed-width value of a block, or a string/bytes value.
    fn value(&mut self, tag_: u8, dim: u32) -> Option<Value> {
        Some(match tag_ {
            tag::INT64 => Value::Int64(self.i64()?),
            tag::FLOAT64 => Value::Float64(f64::from_le_bytes(self.bytes(8)?.try_into().ok()?)),
            tag::FLOAT32 => Value::Float32(f32::from_le_bytes(self.bytes(4)?.try_into().ok()?)),
            tag::BOOL => Value::Bool(self.u8()? != 0),
            tag::STRING => Value::String(self.string()?),
            tag::BYTES => {
                let n = self.u32()? as usize;
                Value::Bytes(self.bytes(n)?.to_vec())
            }
            tag::FLOAT32_VECTOR => Value::Float32Vector(self.f32s(dim as usize)?),
            _ => return None,
        })
    }
    /// One column's block: a cell per row.
    fn block(
        &mut self,
        (tag_, dim): (u8, u32),
        rows: usize,
        times: &[i64],
        narrow: bool,
    ) -> Option<Vec<DecodedCell>> {
        let statuses: Vec<u8> = match self.u8()? {
            PER_ROW => self.bytes(rows)?.to_vec(),
            UNIFORM => vec![self.u8()?; rows],
            _ => return None,
        };
        let row_times: Vec<Option<TimestampMs>> = match self.u8()? {
            PER_ROW => (0..rows)
                .map(|_| self.time(times, narrow))
                .collect::<Option<_>>()?,
            UNIFORM => vec![self.time(times, narrow)?; rows],
            _ => return None,
        };
        let mut cells: Vec<DecodedCell> = statuses
            .into_iter()
            .zip(row_times)
            .map(|(s, t)| (s, t, None))
            .collect();
        let dense = !matches!(tag_, tag::STRING | tag::BYTES);
        for cell in &mut cells {
            if dense || carries_value(cell.0) {
                let value = self.value(tag_, dim)?;
                if carries_value(cell.0) {
                    cell.2 = Some(value);
                }
            }
        }
        Some(cells)
    }
    /// A context cell.
    fn cell(&mut self, (tag_, dim): (u8, u32), times: &[i64], narrow: bool) -> Option<DecodedCell> {
        let status = self.u8()?;
        let time = self.time(times, narrow)?;
        if !carries_value(status) {
            return Some((status, time, None));
        }
        let value = if tag_ == tag::FLOAT32_VECTOR {
            let n = self.u32()? as usize;
            Value::Float32Vector(self.f32s(n)?)
        } else {
            self.value(tag_, dim)?
        };
        Some((status, time, Some(value)))
    }
}

/// Decodes a binary response; `None` if the bytes are not one.
pub fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut r = Reader(bytes);
    if r.bytes(4)? != MAGIC || r.u8()? != VERSION {
        return None;
    }
    let complete = r.u8()? != 0;
    let narrow = match r.u8()? {
        1 => true,
        4 => false,
        _ => return None,
    };
    let now_ms = r.i64()?;
    let service = Some(r.string()?).filter(|s| !s.is_empty());
    let candidate_type = r.string()?;
    let n = r.u32()?;
    let context = (0..n)
        .map(|_| Some((r.string()?, r.string()?)))
        .collect::<Option<Vec<_>>>()?;
    let n = r.u32()?;
    let times = (0..n).map(|_| r.i64()).collect::<Option<Vec<_>>>()?;
    let ctx_cols = r.columns()?;
    let context_cells = ctx_cols
        .iter()
        .map(|(_, t, d)| r.cell((*t, *d), &times, narrow))
        .collect::<Option<Vec<_>>>()?;
    let cols = r.columns()?;
    let n = r.u32()? as usize;
    let ids = (0..n).map(|_| r.string()).collect::<Option<Vec<_>>>()?;
    let mut rows: Vec<(String, Vec<DecodedCell>)> =
        ids.into_iter().map(|id| (id, Vec::new())).collect();
    for (_, t, d) in &cols {
        let cells = r.block((*t, *d), n, &times, narrow)?;
        for ((_, row), cell) in rows.iter_mut().zip(cells) {
            row.push(cell);
        }
    }
    let n = r.u32()?;
    for _ in 0..n {
        r.string()?;
        r.u64()?;
    }
    let n = r.u32()?;
    for _ in 0..n {
        r.string()?;
        r.u64()?;
    }
    Some(Decoded {
        complete,
        now_ms,
        service,
        candidate_type,
        context,
        context_columns: ctx_cols.into_iter().map(|(n, _, _)| n).collect(),
        context_cells,
        columns: cols.into_iter().map(|(n, _, _)| n).collect(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::query::read::Freshness;

    /// Int64 values: every third row not found, the others present (and the second
    /// of every three stale, which carries its value too).
    fn column_values(rows: usize) -> ColumnValues {
        let mut column = ColumnValues::new(DType::Int64, rows, FeatureStatus::NotFound);
        for r in (0..rows).filter(|r| r % 3 != 0) {
            let time = if r % 3 == 2 {
                1000 + r as i64
            } else {
                -(r as i64)
            };
            column.put_stored(r, Some((Value::Int64(r as i64), time)));
        }
        column.judge(Freshness::of_limits(None, Some(1_000)), 1_500);
        column
    }

    fn response(rows: usize) -> RankResponse {
        let column = RankColumn {
            name: "n".into(),
            feature: "n@1".into(),
            dtype: DType::Int64,
            on_demand: false,
        };
        RankResponse {
            service: None,
            context: vec![("user".into(), "u1".into())],
            context_columns: Arc::from([]),
            context_cells: vec![],
            candidate_type: "product".into(),
            columns: Arc::from([column]),
            candidates: (0..rows).map(|r| format!("p{r}")).collect(),
            values: vec![column_values(rows)],
            versions: BTreeMap::new(),
            complete: true,
            defaults: vec![],
            now_ms: 5,
        }
    }

    #[test]
    fn round_trips_with_narrow_and_wide_time_indexes() {
        for rows in [10, 600] {
            let answer = response(rows);
            let bytes = encode(&answer);
            assert_eq!(bytes[6], if rows < 300 { 1 } else { 4 }, "time width");
            let decoded = decode(&bytes).expect("decodes");
            assert_eq!(decoded.rows.len(), rows);
            for (r, (id, cells)) in decoded.rows.iter().enumerate() {
                assert_eq!(id, &format!("p{r}"));
                let cell = &answer.cell(r, 0);
                assert_eq!(
                    cells[0],
                    (
                        status_letter(cell.status),
                        cell.event_time,
                        cell.value.clone()
                    )
                );
            }
            assert_eq!(decode(&bytes[..bytes.len() - 9]), None, "truncated");
            let stale = decoded.rows.iter().filter(|(_, c)| c[0].0 == b'S').count();
            assert!(stale > 0, "stale cells occur");
            assert!(
                decoded
                    .rows
                    .iter()
                    .all(|(_, c)| (c[0].0 == b'N') == c[0].2.is_none()),
                "every present or stale cell carries its value"
            );
        }
    }

    #[test]
    fn round_trips_every_column_type() {
        let dtypes = [
            DType::Float32,
            DType::Float64,
            DType::Bool,
            DType::String,
            DType::Bytes,
            DType::Float32Vector { dim: 3 },
        ];
        let rows = 7;
        let mut answer = response(rows);
        let mut columns = Vec::new();
        answer.values.clear();
        let value_at = |dtype: DType, r: usize| match dtype {
            DType::Float32 => Value::Float32(r as f32 * 0.5),
            DType::Float64 => Value::Float64(r as f64 * 0.25),
            DType::Bool => Value::Bool(r.is_multiple_of(2)),
            DType::String => Value::String(format!("s{r}")),
            DType::Bytes => Value::Bytes(vec![r as u8; r]),
            _ => Value::Float32Vector(vec![r as f32, 1.0, -2.0]),
        };
        for (i, dtype) in dtypes.into_iter().enumerate() {
            let mut column = ColumnValues::new(dtype, rows, FeatureStatus::NotFound);
            for r in (0..rows).filter(|r| (r + i) % 4 != 0) {
                let stored = if r % 5 == 1 {
                    Value::Null
                } else {
                    value_at(dtype, r)
                };
                column.put_stored(r, Some((stored, 10 * r as i64)));
            }
            column.judge(Freshness::of_limits(Some(1_000), Some(30)), 60);
            columns.push(RankColumn {
                name: format!("c{i}"),
                feature: format!("c{i}@1"),
                dtype,
                on_demand: false,
            });
            answer.values.push(column);
        }
        // A column whose rows share one status and one event time (written once each).
        let mut uniform_column = ColumnValues::new(DType::Float32, rows, FeatureStatus::NotFound);
        for r in 0..rows {
            uniform_column.put_stored(r, Some((Value::Float32(r as f32), 50)));
        }
        columns.push(RankColumn {
            name: "u".into(),
            feature: "u@1".into(),
            dtype: DType::Float32,
            on_demand: false,
        });
        answer.values.push(uniform_column);
        answer.context_columns = Arc::from([columns[5].clone()]);
        answer.columns = columns.into();
        answer.context_cells = vec![answer.cell(2, 5)];
        let decoded = decode(&encode(&answer)).expect("decodes");
        assert_eq!(decoded.columns.len(), 7);
        let expect = |c: &Cell| (status_letter(c.status), c.event_time, c.value.clone());
        assert_eq!(
            decoded.context_cells,
            vec![expect(&answer.context_cells[0])]
        );
        let mut statuses = std::collections::BTreeSet::new();
        for (r, (_, cells)) in decoded.rows.iter().enumerate() {
            for (c, cell) in cells.iter().enumerate() {
                assert_eq!(cell, &expect(&answer.cell(r, c)), "row {r} column {c}");
                statuses.insert(cell.0);
            }
        }
        assert_eq!(statuses, [b'N', b'P', b'S', b'U'].into_iter().collect());
    }
}
