//! What a probe returns: [`Row`], and the borrowed [`FieldValue`], [`ValueRef`] and
//! [`F32Slice`] it hands out.
//!
//! Owns the decoding of one row's bytes. Nothing here allocates: values borrow from the
//! segment's bytes. Rows come only from a segment that passed validation, so every
//! offset they read was checked at open; the reads still go through `get`, and a read
//! that would fall outside its slice (impossible for a validated segment over bytes that
//! do not change) yields [`FieldValue::Absent`] rather than a panic.
//!
//! Thread safety: everything here is `Copy` and borrows immutable bytes; share freely.

use std::fmt;

use super::layout::{
    EVENT_TIME_LEN, KEY_PREFIX_LEN, ROW_KEY_LEN_OFFSET, ROW_KEY_OFFSET_OFFSET,
    ROW_KEY_PREFIX_OFFSET, read_u32, read_u64,
};
use super::reader::warm;
use super::schema::{FieldLayout, Kind, RowLayout};
use crate::types::{TimestampMs, Value};

/// One entity's row in a segment.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    /// The row's bytes (`row_width` of them).
    pub(crate) bytes: &'a [u8],
    /// The entity id, from the keys section.
    pub(crate) entity_id: &'a [u8],
    /// The (decompressed) values section.
    pub(crate) values: &'a [u8],
    /// The segment's row layout.
    pub(crate) layout: &'a RowLayout,
    /// The row number.
    pub(crate) index: u32,
}

/// A field of a row, as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// No value for this entity and feature.
    Absent,
    /// An explicit null, with its event time (ms).
    Null(TimestampMs),
    /// A value.
    Present {
        /// When the fact was true (ms since the epoch).
        event_time: TimestampMs,
        /// The value, borrowed from the segment.
        value: ValueRef<'a>,
    },
}

/// A value borrowed from a segment; its variant matches the field's type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// An int64 field.
    Int64(i64),
    /// A float64 field.
    Float64(f64),
    /// A float32 field.
    Float32(f32),
    /// A bool field.
    Bool(bool),
    /// A string field (UTF-8, checked).
    Str(&'a str),
    /// A bytes field.
    Bytes(&'a [u8]),
    /// A float32 vector field, `dim` components.
    F32Vector(F32Slice<'a>),
}

/// A float32 vector stored as little-endian bytes, read without copying.
#[derive(Clone, Copy)]
pub struct F32Slice<'a> {
    /// Little-endian components; a multiple of 4 bytes.
    bytes: &'a [u8],
}

impl<'a> Row<'a> {
    /// Builds a row view over `bytes`, whose id `entity_id` the caller already sliced.
    pub(crate) fn new(
        bytes: &'a [u8],
        entity_id: &'a [u8],
        values: &'a [u8],
        layout: &'a RowLayout,
        index: u32,
    ) -> Row<'a> {
        Row {
            bytes,
            entity_id,
            values,
            layout,
            index,
        }
    }

    /// The entity id.
    pub fn entity_id(&self) -> &'a [u8] {
        self.entity_id
    }

    /// The row number, `0..entity_count`.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// Number of fields (the schema's length).
    pub fn field_count(&self) -> usize {
        self.layout.fields.len()
    }

    /// Field `field` (a schema position, see `Segment::field_index`). An index past the
    /// schema reads as [`FieldValue::Absent`].
    ///
    /// Inlined into the caller's loop: the scalar path is a few bounds checks and loads;
    /// strings, bytes and vectors take an out-of-line call.
    #[inline(always)]
    pub fn get(&self, field: usize) -> FieldValue<'a> {
        let layout = self.layout;
        let Some(f) = layout.fields.get(field) else {
            return FieldValue::Absent;
        };
        let time_slot = match layout.time_index_width {
            0 => 0,
            1 => self
                .bytes
                .get(f.time_index_at)
                .map_or(0, |&b| usize::from(b)),
            _ => self
                .bytes
                .get(f.time_index_at..)
                .and_then(|b| b.first_chunk::<2>())
                .map_or(0, |b| usize::from(u16::from_le_bytes(*b))),
        };
        match self.event_time(time_slot) {
            Some(time) => self.get_at(f, time),
            None => FieldValue::Absent,
        }
    }

    /// Entry `slot` of the row's event-time table.
    #[inline(always)]
    fn event_time(&self, slot: usize) -> Option<TimestampMs> {
        let at = self.layout.time_table_at + slot * EVENT_TIME_LEN;
        self.bytes
            .get(at..)
            .and_then(|t| t.first_chunk::<EVENT_TIME_LEN>())
            .map(|t| i64::from_le_bytes(*t))
    }

    /// Field `f` of this row, whose event time (if present or null) is `event_time`.
    #[inline(always)]
    fn get_at(&self, f: &FieldLayout, event_time: TimestampMs) -> FieldValue<'a> {
        match self.bytes.get(f.presence_byte) {
            Some(&presence) if presence & f.mask != 0 => {}
            _ => return FieldValue::Absent,
        }
        match self.bytes.get(f.null_byte) {
            Some(&null) if null & f.mask == 0 => {}
            _ => return FieldValue::Null(event_time),
        }
        let Some(raw) = self.bytes.get(f.value_at..) else {
            return FieldValue::Absent;
        };
        let value = match f.kind {
            Kind::Float32 => raw
                .first_chunk()
                .map(|b| ValueRef::Float32(f32::from_le_bytes(*b))),
            Kind::Int64 => raw
                .first_chunk()
                .map(|b| ValueRef::Int64(i64::from_le_bytes(*b))),
            Kind::Float64 => raw
                .first_chunk()
                .map(|b| ValueRef::Float64(f64::from_le_bytes(*b))),
            Kind::Bool => raw.first().map(|&b| ValueRef::Bool(b != 0)),
            Kind::Str | Kind::Bytes | Kind::F32Vector => self.var_value(f.kind, raw),
        };
        match value {
            Some(value) => FieldValue::Present { event_time, value },
            None => FieldValue::Absent,
        }
    }

    /// Starts loading the out-of-line bytes of field `field` (a string, bytes or vector
    /// value, stored in the values section) by touching each of their cache lines;
    /// does nothing for fixed-width fields, absent fields and nulls. A hint only:
    /// callers that read many rows' vectors touch them all first, so that their
    /// cache misses overlap instead of costing one memory latency per row.
    #[inline]
    pub fn prefetch_value(&self, field: usize) {
        let Some(f) = self.layout.fields.get(field) else {
            return;
        };
        if !matches!(f.kind, Kind::Str | Kind::Bytes | Kind::F32Vector) {
            return;
        }
        let present = self
            .bytes
            .get(f.presence_byte)
            .is_some_and(|&p| p & f.mask != 0);
        let null = self.bytes.get(f.null_byte).is_none_or(|&n| n & f.mask != 0);
        if !present || null {
            return;
        }
        let Some(slot_value) = self.bytes.get(f.value_at..) else {
            return;
        };
        let (Some(offset), Some(len)) = (
            read_u64(slot_value, 0),
            read_u32(slot_value, size_of::<u64>()),
        ) else {
            return;
        };
        let Some(bytes) = usize::try_from(offset)
            .ok()
            .and_then(|offset| self.values.get(offset..offset.checked_add(len as usize)?))
        else {
            return;
        };
        warm(bytes);
    }

    /// A string, bytes or vector value from its slot reference (offset u64, length u32
    /// into the values section). Out of line: it is the uncommon, longer path.
    #[inline(never)]
    fn var_value(&self, kind: Kind, slot_value: &[u8]) -> Option<ValueRef<'a>> {
        let offset = usize::try_from(read_u64(slot_value, 0)?).ok()?;
        let len = read_u32(slot_value, size_of::<u64>())? as usize;
        let bytes = self.values.get(offset..offset.checked_add(len)?)?;
        Some(match kind {
            Kind::Str => ValueRef::Str(std::str::from_utf8(bytes).ok()?),
            Kind::Bytes => ValueRef::Bytes(bytes),
            _ => ValueRef::F32Vector(F32Slice { bytes }),
        })
    }
}

/// The (offset, length) of a row's entity id in the keys section, as stored.
#[inline]
pub(crate) fn key_ref(row: &[u8]) -> Option<(u64, u32)> {
    Some((
        read_u64(row, ROW_KEY_OFFSET_OFFSET)?,
        read_u32(row, ROW_KEY_LEN_OFFSET)?,
    ))
}

/// A row's inline id prefix, as stored.
#[inline]
pub(crate) fn key_prefix(row: &[u8]) -> Option<u128> {
    let raw = row.get(ROW_KEY_PREFIX_OFFSET..ROW_KEY_PREFIX_OFFSET.checked_add(KEY_PREFIX_LEN)?)?;
    raw.try_into().ok().map(u128::from_le_bytes)
}

/// The inline prefix an id is stored with: its first [`KEY_PREFIX_LEN`] bytes,
/// zero-padded, as a little-endian u128 (so one comparison checks all of them).
#[inline]
pub(crate) fn prefix_of(entity_id: &[u8]) -> u128 {
    let mut padded = [0u8; KEY_PREFIX_LEN];
    for (dst, src) in padded.iter_mut().zip(entity_id) {
        *dst = *src;
    }
    u128::from_le_bytes(padded)
}

impl fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_struct("Row");
        list.field("index", &self.index)
            .field("entity_id", &String::from_utf8_lossy(self.entity_id));
        let fields: Vec<FieldValue<'_>> = (0..self.field_count()).map(|i| self.get(i)).collect();
        list.field("fields", &fields).finish()
    }
}

impl<'a> ValueRef<'a> {
    /// An owned copy (allocates for strings, bytes and vectors).
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Int64(v) => Value::Int64(v),
            ValueRef::Float64(v) => Value::Float64(v),
            ValueRef::Float32(v) => Value::Float32(v),
            ValueRef::Bool(v) => Value::Bool(v),
            ValueRef::Str(v) => Value::String(v.to_owned()),
            ValueRef::Bytes(v) => Value::Bytes(v.to_vec()),
            ValueRef::F32Vector(v) => Value::Float32Vector(v.to_vec()),
        }
    }
}

impl<'a> F32Slice<'a> {
    /// A vector over little-endian binary32 components (a multiple of 4 bytes).
    pub(crate) fn from_le_bytes(bytes: &'a [u8]) -> F32Slice<'a> {
        F32Slice { bytes }
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.bytes.len() / size_of::<f32>()
    }

    /// True for a vector of no components (never stored: dimensions are at least 1).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Component `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<f32> {
        let start = i.checked_mul(size_of::<f32>())?;
        let raw = self
            .bytes
            .get(start..start.checked_add(size_of::<f32>())?)?;
        raw.try_into().ok().map(f32::from_le_bytes)
    }

    /// The components in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = f32> + 'a {
        self.bytes
            .chunks_exact(size_of::<f32>())
            .map(|c| c.try_into().map(f32::from_le_bytes).unwrap_or(f32::NAN))
    }

    /// The little-endian bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// An owned copy.
    pub fn to_vec(&self) -> Vec<f32> {
        self.iter().collect()
    }
}

impl fmt::Debug for F32Slice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Component-wise `f32` equality (so, like `f32`, a NaN component is unequal).
impl PartialEq for F32Slice<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}
