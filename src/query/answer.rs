//! The columnar values of a ranking answer: per column, one status, one event time and
//! one typed value per row (`f32`s in a `Vec<f32>`, vectors packed `dim` floats per
//! row), so a request of 500 candidates x 50 float features is answered in a few
//! hundred kilobytes written once, instead of a 56-byte owned cell per value. A
//! single-entity read is the one-row case: its scalar rows stay inline ([`Rows`]).
//!
//! A [`ColumnValues`] is filled in two steps:
//! 1. *stored*: lookups record what is stored ([`ColumnValues::put_field`] from the hot
//!    segment, [`ColumnValues::put_stored`] from RocksDB and the stream); the status
//!    is then `present` (a value), `null` (an explicit null) or `not_found`;
//! 2. *judged*: [`ColumnValues::judge`] applies the feature's TTL and freshness SLO
//!    ([`Freshness::status`], the one place they apply), and
//!    [`ColumnValues::apply_default`] serves the definition's default where nothing
//!    usable was found.
//!
//! Invariants:
//! - every vector of a column has exactly `rows` entries (`rows * dim` floats for a
//!   vector column);
//! - a row's value is meaningful only when its status carries one (`present`, `stale`,
//!   `defaulted`); elsewhere it is the dtype's zero and never read;
//! - `event_time` is [`NO_TIME`] where the status carries none (`not_found`,
//!   `defaulted`, `not_fetched`).
//!
//! Thread-safety: plain owned data.

use super::read::Freshness;
use crate::types::{DType, FeatureStatus, TimestampMs, Value};
use featstore_format::segment::{FieldValue, ValueRef};
use smallvec::SmallVec;

/// The per-row storage of a column: a single-entity read's one row stays inline (a
/// 50-feature read allocates no buffer per column); ranking answers spill to the heap.
pub type Rows<T> = SmallVec<[T; 1]>;

/// `event_time` of a row that has none.
pub const NO_TIME: TimestampMs = TimestampMs::MIN;

/// The typed values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// int64 values.
    Int64(Rows<i64>),
    /// float64 values (on-demand features too).
    Float64(Rows<f64>),
    /// float32 values.
    Float32(Rows<f32>),
    /// bool values.
    Bool(Rows<bool>),
    /// float32 vectors of `dim` components, row `r` at `values[r * dim..(r + 1) * dim]`.
    Float32Vector {
        /// Components per vector.
        dim: usize,
        /// `rows * dim` components.
        values: Vec<f32>,
    },
    /// Strings and bytes, owned per row (`None` where the status carries no value).
    Other(Vec<Option<Value>>),
}

impl ColumnData {
    fn zeroed(dtype: DType, rows: usize) -> Self {
        match dtype {
            DType::Int64 => ColumnData::Int64(Rows::from_elem(0, rows)),
            DType::Float64 => ColumnData::Float64(Rows::from_elem(0.0, rows)),
            DType::Float32 => ColumnData::Float32(Rows::from_elem(0.0, rows)),
            DType::Bool => ColumnData::Bool(Rows::from_elem(false, rows)),
            DType::Float32Vector { dim } => {
                let dim = dim as usize;
                ColumnData::Float32Vector {
                    dim,
                    values: vec![0.0; rows.saturating_mul(dim)],
                }
            }
            DType::String | DType::Bytes => ColumnData::Other(vec![None; rows]),
        }
    }

    /// Writes `value` at `row`; false when its type is not the column's.
    #[inline]
    fn set_ref(&mut self, row: usize, value: ValueRef<'_>) -> bool {
        match (self, value) {
            (ColumnData::Float32(v), ValueRef::Float32(x)) => set(v, row, x),
            (ColumnData::Float64(v), ValueRef::Float64(x)) => set(v, row, x),
            (ColumnData::Int64(v), ValueRef::Int64(x)) => set(v, row, x),
            (ColumnData::Bool(v), ValueRef::Bool(x)) => set(v, row, x),
            (ColumnData::Float32Vector { dim, values }, ValueRef::F32Vector(x)) => {
                let components = x.as_bytes().as_chunks::<4>().0;
                x.len() == *dim
                    && fill(
                        values,
                        row,
                        *dim,
                        components.iter().map(|c| f32::from_le_bytes(*c)),
                    )
            }
            (ColumnData::Other(v), value @ (ValueRef::Str(_) | ValueRef::Bytes(_))) => {
                set(v, row, Some(value.to_value()))
            }
            _ => false,
        }
    }

    /// Writes an owned `value` at `row`; false when its type is not the column's.
    fn set_owned(&mut self, row: usize, value: Value) -> bool {
        match (self, value) {
            (ColumnData::Float32(v), Value::Float32(x)) => set(v, row, x),
            (ColumnData::Float64(v), Value::Float64(x)) => set(v, row, x),
            (ColumnData::Int64(v), Value::Int64(x)) => set(v, row, x),
            (ColumnData::Bool(v), Value::Bool(x)) => set(v, row, x),
            (ColumnData::Float32Vector { dim, values }, Value::Float32Vector(x)) => {
                x.len() == *dim && fill(values, row, *dim, x.into_iter())
            }
            (ColumnData::Other(v), value @ (Value::String(_) | Value::Bytes(_))) => {
                set(v, row, Some(value))
            }
            _ => false,
        }
    }

    /// The value at `row` as an owned [`Value`] (whatever the status).
    fn value(&self, row: usize) -> Option<Value> {
        match self {
            ColumnData::Int64(v) => v.get(row).map(|x| Value::Int64(*x)),
            ColumnData::Float64(v) => v.get(row).map(|x| Value::Float64(*x)),
            ColumnData::Float32(v) => v.get(row).map(|x| Value::Float32(*x)),
            ColumnData::Bool(v) => v.get(row).map(|x| Value::Bool(*x)),
            ColumnData::Float32Vector { .. } => {
                self.vector(row).map(|x| Value::Float32Vector(x.to_vec()))
            }
            ColumnData::Other(v) => v.get(row).cloned().flatten(),
        }
    }

    /// The vector at `row` of a vector column.
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        match self {
            ColumnData::Float32Vector { dim, values } => {
                values.get(row.checked_mul(*dim)?..row.checked_add(1)?.checked_mul(*dim)?)
            }
            _ => None,
        }
    }

    /// The number at `row` of a numeric column, as f64.
    pub fn number(&self, row: usize) -> Option<f64> {
        match self {
            ColumnData::Int64(v) => v.get(row).map(|x| *x as f64),
            ColumnData::Float64(v) => v.get(row).copied(),
            ColumnData::Float32(v) => v.get(row).map(|x| f64::from(*x)),
            _ => None,
        }
    }

    /// The int64 at `row` of an int64 column.
    pub fn int64(&self, row: usize) -> Option<i64> {
        match self {
            ColumnData::Int64(v) => v.get(row).copied(),
            _ => None,
        }
    }
}

#[inline(always)]
fn set<T>(v: &mut [T], row: usize, x: T) -> bool {
    match v.get_mut(row) {
        Some(slot) => {
            *slot = x;
            true
        }
        None => false,
    }
}

/// Copies `x` into row `row` (`dim` components) of `values`; false when the row lies
/// outside. A loop over fixed-size items, which the compiler turns into wide copies.
#[inline]
fn fill(values: &mut [f32], row: usize, dim: usize, x: impl Iterator<Item = f32>) -> bool {
    let Some(slots) = row
        .checked_mul(dim)
        .and_then(|start| values.get_mut(start..start.checked_add(dim)?))
    else {
        return false;
    };
    for (slot, x) in slots.iter_mut().zip(x) {
        *slot = x;
    }
    true
}

/// True when `pred` holds for every item: checked 64 items at a time without early
/// exit inside a chunk, so the check vectorizes (answers are scanned per column).
#[inline]
pub fn all_items<T>(items: &[T], pred: impl Fn(&T) -> bool) -> bool {
    items
        .chunks(64)
        .all(|chunk| chunk.iter().fold(true, |ok, x| ok & pred(x)))
}

/// One column of a ranking answer (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnValues {
    status: Rows<FeatureStatus>,
    event_time: Rows<TimestampMs>,
    data: ColumnData,
}

impl ColumnValues {
    /// `rows` rows of `dtype`, every one `status` with no value and no event time.
    pub fn new(dtype: DType, rows: usize, status: FeatureStatus) -> Self {
        ColumnValues {
            status: Rows::from_elem(status, rows),
            event_time: Rows::from_elem(NO_TIME, rows),
            data: ColumnData::zeroed(dtype, rows),
        }
    }

    /// A column from its parts (a logged answer read back); `None` unless every part
    /// has the column's row count (`rows * dim` components for a vector column).
    pub fn from_parts(
        status: Rows<FeatureStatus>,
        event_time: Rows<TimestampMs>,
        data: ColumnData,
    ) -> Option<Self> {
        let rows = status.len();
        let data_rows = match &data {
            ColumnData::Int64(v) => v.len(),
            ColumnData::Float64(v) => v.len(),
            ColumnData::Float32(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Float32Vector { dim, values } => {
                if *dim == 0 || values.len() % dim != 0 {
                    return None;
                }
                values.len() / dim
            }
            ColumnData::Other(v) => v.len(),
        };
        (event_time.len() == rows && data_rows == rows).then_some(ColumnValues {
            status,
            event_time,
            data,
        })
    }

    /// Rows in the column.
    pub fn len(&self) -> usize {
        self.status.len()
    }

    /// True for a column of no rows.
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// Every row's status.
    pub fn statuses(&self) -> &[FeatureStatus] {
        &self.status
    }

    /// Every row's event time ([`NO_TIME`] where none).
    pub fn event_times(&self) -> &[TimestampMs] {
        &self.event_time
    }

    /// The typed values (see [`ColumnValues`]'s invariants for which are meaningful).
    pub fn data(&self) -> &ColumnData {
        &self.data
    }

    /// Row `row`'s status (`not_found` past the end).
    #[inline]
    pub fn status(&self, row: usize) -> FeatureStatus {
        self.status
            .get(row)
            .copied()
            .unwrap_or(FeatureStatus::NotFound)
    }

    /// Row `row`'s event time, if it has one.
    #[inline]
    pub fn event_time(&self, row: usize) -> Option<TimestampMs> {
        self.event_time.get(row).copied().filter(|t| *t != NO_TIME)
    }

    /// True when row `row`'s status carries a value.
    #[inline]
    pub fn has_value(&self, row: usize) -> bool {
        matches!(
            self.status(row),
            FeatureStatus::Present | FeatureStatus::Stale | FeatureStatus::Defaulted
        )
    }

    /// True when row `row` holds a value an on-demand feature may use (`present` or
    /// `stale`; not a default).
    #[inline]
    pub fn usable(&self, row: usize) -> bool {
        matches!(
            self.status(row),
            FeatureStatus::Present | FeatureStatus::Stale
        )
    }

    /// Row `row`'s value, owned, when its status carries one.
    pub fn value(&self, row: usize) -> Option<Value> {
        if self.has_value(row) {
            self.data.value(row)
        } else {
            None
        }
    }

    /// Records the hot segment's field for `row` (step 1). False when the stored
    /// value's type is not the column's (the row is then left `not_found`).
    #[inline]
    pub fn put_field(&mut self, row: usize, field: FieldValue<'_>) -> bool {
        let (status, time) = match field {
            FieldValue::Absent => (FeatureStatus::NotFound, NO_TIME),
            FieldValue::Null(t) => (FeatureStatus::Null, t),
            FieldValue::Present { event_time, value } => {
                if !self.data.set_ref(row, value) {
                    self.mark(row, FeatureStatus::NotFound, NO_TIME);
                    return false;
                }
                (FeatureStatus::Present, event_time)
            }
        };
        self.mark(row, status, time);
        true
    }

    /// Records one field of every found row (`rows[i]` for row `first + i`, read with
    /// `field_of`; `None` rows are left untouched), step 1: the rows of a hot segment or
    /// of RocksDB, a block at a time. Float32 columns, the common case, take a loop with
    /// no per-value type dispatch. False when some value's type is not the column's
    /// (those rows are left `not_found`).
    #[inline]
    pub fn put_rows<'v, T>(
        &mut self,
        first: usize,
        rows: &[Option<T>],
        mut field_of: impl FnMut(&T) -> FieldValue<'v>,
    ) -> bool {
        let ColumnData::Float32(values) = &mut self.data else {
            let mut ok = true;
            for (i, row) in rows.iter().enumerate() {
                if let Some(row) = row {
                    ok &= self.put_field(first + i, field_of(row));
                }
            }
            return ok;
        };
        let mut ok = true;
        let cells = values
            .iter_mut()
            .skip(first)
            .zip(self.status.iter_mut().skip(first))
            .zip(self.event_time.iter_mut().skip(first));
        for (((value, status), time), row) in cells.zip(rows) {
            let Some(row) = row else {
                continue;
            };
            (*status, *time) = match field_of(row) {
                FieldValue::Present {
                    event_time,
                    value: ValueRef::Float32(x),
                } => {
                    *value = x;
                    (FeatureStatus::Present, event_time)
                }
                FieldValue::Null(t) => (FeatureStatus::Null, t),
                FieldValue::Absent => (FeatureStatus::NotFound, NO_TIME),
                FieldValue::Present { .. } => {
                    ok = false;
                    (FeatureStatus::NotFound, NO_TIME)
                }
            };
        }
        ok
    }

    /// Records an owned stored value for `row` (step 1); `None` stores nothing. False
    /// when the value's type is not the column's (the row is then left `not_found`).
    pub fn put_stored(&mut self, row: usize, stored: Option<(Value, TimestampMs)>) -> bool {
        let (status, time) = match stored {
            None => (FeatureStatus::NotFound, NO_TIME),
            Some((Value::Null, t)) => (FeatureStatus::Null, t),
            Some((value, t)) => {
                if !self.data.set_owned(row, value) {
                    self.mark(row, FeatureStatus::NotFound, NO_TIME);
                    return false;
                }
                (FeatureStatus::Present, t)
            }
        };
        self.mark(row, status, time);
        true
    }

    /// The event time of what step 1 stored at `row` (a value or a null), if anything.
    #[inline]
    pub fn stored_time(&self, row: usize) -> Option<TimestampMs> {
        match self.status(row) {
            FeatureStatus::Present | FeatureStatus::Null => self.event_time(row),
            _ => None,
        }
    }

    #[inline(always)]
    fn mark(&mut self, row: usize, status: FeatureStatus, time: TimestampMs) {
        if let (Some(s), Some(t)) = (self.status.get_mut(row), self.event_time.get_mut(row)) {
            *s = status;
            *t = time;
        }
    }

    /// Step 2: applies `freshness` at `now` to every stored value or null; a value
    /// older than the feature's retention (at the wall clock) is `expired` whatever
    /// `now` is.
    pub fn judge(&mut self, freshness: Freshness, now: TimestampMs) {
        if freshness.is_unlimited() {
            // No TTL and no SLO: every stored value and null keeps its status.
            return;
        }
        // Retention is judged against the wall clock (one clock read per column).
        let retained_from = freshness.retained_from(crate::types::now_ms());
        for (status, &time) in self.status.iter_mut().zip(&self.event_time) {
            if matches!(*status, FeatureStatus::Present | FeatureStatus::Null) {
                *status = if retained_from.is_some_and(|from| time < from) {
                    FeatureStatus::Expired
                } else {
                    freshness.status(*status == FeatureStatus::Null, time, now)
                };
            }
        }
    }

    /// Serves `default` in every row with nothing usable (`not_found`, `null`,
    /// `expired`), marking it `defaulted` with no event time. Returns how many rows.
    pub fn apply_default(&mut self, default: &Value) -> u64 {
        let unusable = |s: &FeatureStatus| {
            matches!(
                s,
                FeatureStatus::NotFound | FeatureStatus::Null | FeatureStatus::Expired
            )
        };
        if all_items(&self.status, |s| !unusable(s)) {
            return 0;
        }
        let mut count = 0;
        for row in 0..self.status.len() {
            if matches!(
                self.status(row),
                FeatureStatus::NotFound | FeatureStatus::Null | FeatureStatus::Expired
            ) && self.data.set_owned(row, default.clone())
            {
                self.mark(row, FeatureStatus::Defaulted, NO_TIME);
                count += 1;
            }
        }
        count
    }

    /// Sets row `row` to a computed float64 (an on-demand column's value).
    pub fn put_computed(
        &mut self,
        row: usize,
        status: FeatureStatus,
        value: f64,
        time: TimestampMs,
    ) {
        if let ColumnData::Float64(v) = &mut self.data {
            set(v, row, value);
        }
        self.mark(row, status, time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_then_judged_then_defaulted() {
        let mut c = ColumnValues::new(DType::Float32, 4, FeatureStatus::NotFound);
        assert!(c.put_field(
            0,
            FieldValue::Present {
                event_time: 1_000,
                value: ValueRef::Float32(2.5)
            }
        ));
        assert!(c.put_field(1, FieldValue::Null(1_000)));
        assert!(c.put_stored(2, Some((Value::Float32(1.0), 10))));
        assert!(
            !c.put_stored(3, Some((Value::Int64(1), 10))),
            "type mismatch"
        );
        assert_eq!(c.stored_time(0), Some(1_000));
        assert_eq!(c.stored_time(3), None);
        let freshness = Freshness::of_limits(Some(500), None);
        c.judge(freshness, 1_200);
        assert_eq!(c.status(0), FeatureStatus::Present);
        assert_eq!(c.value(0), Some(Value::Float32(2.5)));
        assert_eq!(c.status(1), FeatureStatus::Null);
        assert_eq!(c.status(2), FeatureStatus::Expired);
        assert_eq!(c.event_time(2), Some(10));
        assert_eq!(c.value(2), None);
        assert_eq!(c.apply_default(&Value::Float32(-1.0)), 3);
        assert_eq!(c.status(3), FeatureStatus::Defaulted);
        assert_eq!(c.value(3), Some(Value::Float32(-1.0)));
        assert_eq!(c.event_time(3), None);
        assert_eq!(c.status(0), FeatureStatus::Present);
    }

    #[test]
    fn vectors_pack_per_row() {
        let mut c = ColumnValues::new(DType::Float32Vector { dim: 2 }, 2, FeatureStatus::NotFound);
        assert!(c.put_stored(1, Some((Value::Float32Vector(vec![1.0, 2.0]), 5))));
        assert!(
            !c.put_stored(0, Some((Value::Float32Vector(vec![1.0]), 5))),
            "wrong dim"
        );
        assert_eq!(c.data().vector(1), Some(&[1.0f32, 2.0][..]));
        assert_eq!(c.value(1), Some(Value::Float32Vector(vec![1.0, 2.0])));
        assert_eq!(c.status(0), FeatureStatus::NotFound);
    }
}
