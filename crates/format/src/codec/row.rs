//! Batch rows (batch layout 3): every feature one entity has in one batch version, in
//! one RocksDB value, so a read of an entity's features is one point lookup.
//!
//! A version's rows share one [`RowSchema`] (its features, sorted by id, with their
//! dtypes), stored once under the version's schema key; a row is then the hot
//! segment's row layout without the segment's key header: the row's distinct event
//! times, presence and null bitmaps, one time index per field when the row has several
//! times, a value area of fixed-width slots in schema order, and a tail holding the
//! bytes of strings, bytes and vectors. `storage-format.md` ("Batch rows") documents
//! every byte.
//!
//! Invariants:
//! - [`encode_row`] writes only rows that [`RowRef::parse`] accepts and whose every
//!   field reads back as the stored value and event time it was given (tests check the
//!   round trip).
//! - [`RowRef::parse`] checks the row's fixed part against the schema; [`RowRef::get`]
//!   checks each reference it follows, so hostile bytes give a [`CodecError`], never a
//!   panic or an out-of-bounds read (fuzzed: `fuzz/fuzz_targets/batch_row.rs`).
//! - Nothing here allocates on the read path: values borrow from the row's bytes.

use super::CodecError;
use super::value::{EVENT_TIME_OFFSET, PAYLOAD_OFFSET, dtype_of, encode_value, tag, tag_of};
use crate::segment::{F32Slice, FieldSpec, FieldValue, ValueRef};
use crate::types::{DType, FeatureId, MAX_VECTOR_DIM, TimestampMs, Value};

/// Version of the row bytes (byte 0 of every row).
pub const ROW_FORMAT: u8 = 1;
/// Version of the schema record (byte 0).
pub const SCHEMA_FORMAT: u8 = 1;
/// The key of a version's schema record (after the version prefix): an entity key of
/// id length 0, which no entity has, so it sorts before every row of the version.
pub const SCHEMA_KEY: &[u8] = &[0, 0];
/// Most fields a schema holds (time indexes are at most u16).
pub const MAX_FIELDS: usize = 65_535;

/// Bytes of a string, bytes or vector slot in the value area: offset u32 + length u32
/// into the row's tail.
const VAR_SLOT: usize = 8;
/// Row header: format u8, time count u16.
const HEADER: usize = 3;

fn width(dtype: DType) -> usize {
    match dtype {
        DType::Int64 | DType::Float64 => 8,
        DType::Float32 => 4,
        DType::Bool => 1,
        DType::String | DType::Bytes | DType::Float32Vector { .. } => VAR_SLOT,
    }
}

fn invalid(what: &'static str, detail: impl Into<String>) -> CodecError {
    CodecError::Invalid {
        what,
        detail: detail.into(),
    }
}

fn truncated(what: &'static str, needed: usize, have: usize) -> CodecError {
    CodecError::Truncated { what, needed, have }
}

/// The features of one batch version's rows, sorted by feature id, and where each
/// one's slot lies in a row's value area.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSchema {
    fields: Vec<FieldSpec>,
    /// Value-area offset of each field's slot.
    slots: Vec<u32>,
    /// Bytes of the value area.
    value_area: usize,
    /// Bytes of each bitmap.
    bitmap: usize,
}

impl RowSchema {
    /// The schema of `fields` (sorted by feature id here; ids must be distinct).
    pub fn new(mut fields: Vec<FieldSpec>) -> Result<RowSchema, CodecError> {
        fields.sort_by_key(|f| f.feature_id);
        if fields
            .windows(2)
            .any(|w| w[0].feature_id == w[1].feature_id)
        {
            return Err(invalid("row schema", "a feature id appears twice"));
        }
        if fields.len() > MAX_FIELDS {
            return Err(invalid(
                "row schema",
                format!("{} fields, at most {MAX_FIELDS}", fields.len()),
            ));
        }
        let mut slots = Vec::with_capacity(fields.len());
        let mut at = 0usize;
        for f in &fields {
            if let DType::Float32Vector { dim } = f.field_type
                && (dim == 0 || dim > MAX_VECTOR_DIM)
            {
                return Err(invalid(
                    "row schema",
                    format!("feature {}: vector dimension {dim}", f.feature_id),
                ));
            }
            slots.push(u32::try_from(at).map_err(|_| invalid("row schema", "too wide"))?);
            at += width(f.field_type);
        }
        Ok(RowSchema {
            bitmap: fields.len().div_ceil(8),
            fields,
            slots,
            value_area: at,
        })
    }

    /// The fields, sorted by feature id.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The position of `feature` in the schema.
    pub fn position(&self, feature: FeatureId) -> Option<usize> {
        self.fields
            .binary_search_by_key(&feature, |f| f.feature_id)
            .ok()
    }

    /// The schema record: format u8, field count u32, then per field its feature id
    /// u32, value tag u8 and vector dimension u32 (0 for other types); little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + 9 * self.fields.len());
        out.push(SCHEMA_FORMAT);
        out.extend_from_slice(&(self.fields.len() as u32).to_le_bytes());
        for f in &self.fields {
            out.extend_from_slice(&f.feature_id.to_le_bytes());
            out.push(tag_of(f.field_type));
            let dim = match f.field_type {
                DType::Float32Vector { dim } => dim,
                _ => 0,
            };
            out.extend_from_slice(&dim.to_le_bytes());
        }
        out
    }

    /// Decodes a schema record written by [`RowSchema::encode`].
    pub fn decode(bytes: &[u8]) -> Result<RowSchema, CodecError> {
        let Some((&format, rest)) = bytes.split_first() else {
            return Err(truncated("row schema", 5, 0));
        };
        if format != SCHEMA_FORMAT {
            return Err(invalid(
                "row schema",
                format!("format {format}, this build reads {SCHEMA_FORMAT}"),
            ));
        }
        let (count, mut rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| truncated("row schema", 5, bytes.len()))?;
        let count = u32::from_le_bytes(*count) as usize;
        if rest.len() != count.saturating_mul(9) {
            return Err(truncated(
                "row schema fields",
                count.saturating_mul(9),
                rest.len(),
            ));
        }
        let mut fields = Vec::with_capacity(count);
        while let Some((record, tail)) = rest.split_first_chunk::<9>() {
            let [a, b, c, d, t, e, f, g, h] = *record;
            let feature_id = u32::from_le_bytes([a, b, c, d]);
            let dim = u32::from_le_bytes([e, f, g, h]);
            let field_type = dtype_of(t, dim).ok_or(CodecError::UnknownTag(t))?;
            fields.push(FieldSpec {
                feature_id,
                field_type,
            });
            rest = tail;
        }
        if fields
            .windows(2)
            .any(|w| w[0].feature_id >= w[1].feature_id)
        {
            return Err(invalid("row schema", "feature ids are not ascending"));
        }
        RowSchema::new(fields)
    }
}

/// One stored value borrowed from the per-value encoding (`tag ‖ event time ‖
/// payload`, [`super::value`]).
struct Borrowed<'a> {
    tag: u8,
    time: TimestampMs,
    payload: &'a [u8],
}

fn borrow_value(bytes: &[u8]) -> Result<Borrowed<'_>, CodecError> {
    let (&t, _) = bytes
        .split_first()
        .ok_or_else(|| truncated("value", PAYLOAD_OFFSET, 0))?;
    let time: [u8; 8] = bytes
        .get(EVENT_TIME_OFFSET..PAYLOAD_OFFSET)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| truncated("value header", PAYLOAD_OFFSET, bytes.len()))?;
    Ok(Borrowed {
        tag: t,
        time: i64::from_le_bytes(time),
        payload: bytes.get(PAYLOAD_OFFSET..).unwrap_or_default(),
    })
}

/// Appends the row of one entity to `out`. `values` are `(schema position, stored
/// value)` pairs in ascending position, each in the per-value encoding
/// ([`super::encode_value`]); positions not given are absent. A value whose type is
/// not its field's dtype, or a repeated position, is refused.
pub fn encode_row<'v>(
    schema: &RowSchema,
    values: &[(usize, &'v [u8])],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let mut parsed: Vec<(usize, Borrowed<'v>)> = Vec::with_capacity(values.len());
    let mut last = None;
    for &(pos, bytes) in values {
        if last.is_some_and(|l| l >= pos) || pos >= schema.fields.len() {
            return Err(invalid(
                "row values",
                format!("position {pos} out of order or outside the schema"),
            ));
        }
        last = Some(pos);
        let v = borrow_value(bytes)?;
        let field = schema.fields[pos];
        if v.tag != tag::NULL {
            let fixed = match field.field_type {
                DType::Int64 | DType::Float64 => Some(8),
                DType::Float32 => Some(4),
                DType::Bool => Some(1),
                DType::Float32Vector { dim } => Some(dim as usize * 4),
                DType::String | DType::Bytes => None,
            };
            if v.tag != tag_of(field.field_type)
                || fixed.is_some_and(|n| n != v.payload.len())
                || (v.tag == tag::BOOL && v.payload.first().is_some_and(|b| *b > 1))
                || (v.tag == tag::STRING && std::str::from_utf8(v.payload).is_err())
            {
                return Err(invalid(
                    "row values",
                    format!(
                        "feature {}: a value of tag {} and {} bytes for a {} field",
                        field.feature_id,
                        v.tag,
                        v.payload.len(),
                        field.field_type
                    ),
                ));
            }
        }
        parsed.push((pos, v));
    }
    let mut times: Vec<TimestampMs> = parsed.iter().map(|(_, v)| v.time).collect();
    times.sort_unstable();
    times.dedup();
    let t = times.len();
    let n = schema.fields.len();
    let index_width = match t {
        0 | 1 => 0,
        2..=256 => 1,
        _ => 2,
    };
    let start = out.len();
    out.push(ROW_FORMAT);
    out.extend_from_slice(&(t as u16).to_le_bytes());
    for time in &times {
        out.extend_from_slice(&time.to_le_bytes());
    }
    let presence_at = out.len();
    let null_at = presence_at + schema.bitmap;
    let index_at = null_at + schema.bitmap;
    let values_at = index_at + n * index_width;
    let tail_at = values_at + schema.value_area;
    out.resize(start + (tail_at - start), 0);
    for (pos, v) in &parsed {
        let (pos, byte, mask) = (*pos, pos / 8, 1u8 << (pos % 8));
        out[presence_at + byte] |= mask;
        let slot = times.binary_search(&v.time).unwrap_or(0);
        match index_width {
            1 => out[index_at + pos] = slot as u8,
            2 => out[index_at + 2 * pos..index_at + 2 * pos + 2]
                .copy_from_slice(&(slot as u16).to_le_bytes()),
            _ => {}
        }
        if v.tag == tag::NULL {
            out[null_at + byte] |= mask;
            continue;
        }
        let at = values_at + schema.slots[pos] as usize;
        match schema.fields[pos].field_type {
            DType::String | DType::Bytes | DType::Float32Vector { .. } => {
                let offset = out.len() - tail_at;
                let (offset, len) = (
                    u32::try_from(offset).map_err(|_| invalid("row", "wider than u32::MAX"))?,
                    u32::try_from(v.payload.len())
                        .map_err(|_| invalid("row", "a value wider than u32::MAX"))?,
                );
                out[at..at + 4].copy_from_slice(&offset.to_le_bytes());
                out[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
                out.extend_from_slice(v.payload);
            }
            _ => out[at..at + v.payload.len()].copy_from_slice(v.payload),
        }
    }
    Ok(())
}

/// Appends `field` (read from a row or a segment) to `out` in the per-value encoding
/// ([`super::value`]); false, with nothing written, for an absent field. For the paths
/// that hand rows on as values (segment rebuilds, checks outside the read path).
pub fn encode_field(field: FieldValue<'_>, out: &mut Vec<u8>) -> bool {
    match field {
        FieldValue::Absent => return false,
        FieldValue::Null(time) => encode_value(&Value::Null, time, out),
        FieldValue::Present { event_time, value } => {
            encode_value(&value.to_value(), event_time, out);
        }
    }
    true
}

/// A row checked against its schema, reading fields without allocating.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    schema: &'a RowSchema,
    bytes: &'a [u8],
    times: &'a [u8],
    presence_at: usize,
    null_at: usize,
    index_at: usize,
    index_width: usize,
    values_at: usize,
    tail: &'a [u8],
}

impl<'a> RowRef<'a> {
    /// Checks the fixed part of `bytes` against `schema`.
    pub fn parse(schema: &'a RowSchema, bytes: &'a [u8]) -> Result<RowRef<'a>, CodecError> {
        if bytes.len() < HEADER {
            return Err(truncated("batch row", HEADER, bytes.len()));
        }
        if bytes[0] != ROW_FORMAT {
            return Err(invalid(
                "batch row",
                format!("format {}, this build reads {ROW_FORMAT}", bytes[0]),
            ));
        }
        let t = usize::from(u16::from_le_bytes([bytes[1], bytes[2]]));
        let n = schema.fields.len();
        if t > n {
            return Err(invalid(
                "batch row",
                format!("{t} event times for {n} fields"),
            ));
        }
        let index_width = match t {
            0 | 1 => 0,
            2..=256 => 1,
            _ => 2,
        };
        let presence_at = HEADER + 8 * t;
        let null_at = presence_at + schema.bitmap;
        let index_at = null_at + schema.bitmap;
        let values_at = index_at + n * index_width;
        let tail_at = values_at + schema.value_area;
        if bytes.len() < tail_at {
            return Err(truncated("batch row", tail_at, bytes.len()));
        }
        Ok(RowRef {
            schema,
            bytes,
            times: &bytes[HEADER..presence_at],
            presence_at,
            null_at,
            index_at,
            index_width,
            values_at,
            tail: &bytes[tail_at..],
        })
    }

    /// The field at schema position `pos` (see [`RowSchema::position`]); a position
    /// past the schema is absent.
    #[inline]
    pub fn get(&self, pos: usize) -> Result<FieldValue<'a>, CodecError> {
        let Some(field) = self.schema.fields.get(pos) else {
            return Ok(FieldValue::Absent);
        };
        let (byte, mask) = (pos / 8, 1u8 << (pos % 8));
        let present = self.bytes[self.presence_at + byte] & mask != 0;
        let null = self.bytes[self.null_at + byte] & mask != 0;
        if !present {
            return if null {
                Err(invalid(
                    "batch row",
                    format!("field {pos}: null but absent"),
                ))
            } else {
                Ok(FieldValue::Absent)
            };
        }
        let slot = match self.index_width {
            0 => 0,
            1 => usize::from(self.bytes[self.index_at + pos]),
            _ => usize::from(u16::from_le_bytes([
                self.bytes[self.index_at + 2 * pos],
                self.bytes[self.index_at + 2 * pos + 1],
            ])),
        };
        let time = self
            .times
            .get(8 * slot..8 * slot + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
            .ok_or_else(|| invalid("batch row", format!("field {pos}: time slot {slot}")))?;
        if null {
            return Ok(FieldValue::Null(time));
        }
        let at = self.values_at + self.schema.slots[pos] as usize;
        let fixed = |n: usize| &self.bytes[at..at + n];
        let value = match field.field_type {
            DType::Int64 => ValueRef::Int64(i64::from_le_bytes(fixed8(fixed(8)))),
            DType::Float64 => ValueRef::Float64(f64::from_le_bytes(fixed8(fixed(8)))),
            DType::Float32 => {
                let b = fixed(4);
                ValueRef::Float32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            DType::Bool => match self.bytes[at] {
                0 => ValueRef::Bool(false),
                1 => ValueRef::Bool(true),
                other => {
                    return Err(invalid("batch row", format!("field {pos}: bool {other}")));
                }
            },
            DType::String | DType::Bytes | DType::Float32Vector { .. } => {
                let b = fixed(8);
                let offset = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
                let data = offset
                    .checked_add(len)
                    .and_then(|end| self.tail.get(offset..end))
                    .ok_or_else(|| {
                        invalid("batch row", format!("field {pos}: reference past the row"))
                    })?;
                match field.field_type {
                    DType::String => ValueRef::Str(std::str::from_utf8(data).map_err(|_| {
                        invalid("batch row", format!("field {pos}: invalid UTF-8"))
                    })?),
                    DType::Bytes => ValueRef::Bytes(data),
                    DType::Float32Vector { dim } => {
                        if data.len() != dim as usize * 4 {
                            return Err(invalid(
                                "batch row",
                                format!("field {pos}: {} bytes for dimension {dim}", data.len()),
                            ));
                        }
                        ValueRef::F32Vector(F32Slice::from_le_bytes(data))
                    }
                    _ => return Err(invalid("batch row", "unreachable kind")),
                }
            }
        };
        Ok(FieldValue::Present {
            event_time: time,
            value,
        })
    }
}

fn fixed8(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> RowSchema {
        RowSchema::new(vec![
            FieldSpec {
                feature_id: 9,
                field_type: DType::String,
            },
            FieldSpec {
                feature_id: 2,
                field_type: DType::Float32,
            },
            FieldSpec {
                feature_id: 5,
                field_type: DType::Int64,
            },
            FieldSpec {
                feature_id: 7,
                field_type: DType::Float32Vector { dim: 2 },
            },
            FieldSpec {
                feature_id: 8,
                field_type: DType::Bool,
            },
        ])
        .expect("schema")
    }

    fn enc(v: &Value, t: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, t, &mut out);
        out
    }

    /// The worked example of storage-format.md, "Batch rows", byte for byte.
    #[test]
    fn the_documented_example_is_what_the_encoder_writes() {
        let s = RowSchema::new(vec![
            FieldSpec {
                feature_id: 9,
                field_type: DType::String,
            },
            FieldSpec {
                feature_id: 5,
                field_type: DType::Float32,
            },
        ])
        .expect("schema");
        assert_eq!(
            s.encode(),
            [
                0x01, 2, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0, 0
            ]
        );
        let f5 = enc(&Value::Float32(1.5), 1000);
        let f9 = enc(&Value::String("red".into()), 1000);
        let mut row = Vec::new();
        encode_row(&s, &[(0, &f5), (1, &f9)], &mut row).expect("encode");
        assert_eq!(
            row,
            [
                0x01, 0x01, 0x00, 0xe8, 0x03, 0, 0, 0, 0, 0, 0, 0x03, 0x00, 0x00, 0x00, 0xc0, 0x3f,
                0, 0, 0, 0, 3, 0, 0, 0, b'r', b'e', b'd'
            ]
        );
        assert_eq!(SCHEMA_KEY, [0, 0]);
    }

    #[test]
    fn schema_round_trips_sorted_by_id() {
        let s = schema();
        let ids: Vec<u32> = s.fields().iter().map(|f| f.feature_id).collect();
        assert_eq!(ids, [2, 5, 7, 8, 9]);
        assert_eq!(RowSchema::decode(&s.encode()).expect("decode"), s);
        assert_eq!(s.position(7), Some(2));
        assert_eq!(s.position(3), None);
        let mut bad = s.encode();
        bad[0] = 9;
        assert!(RowSchema::decode(&bad).is_err());
        assert!(RowSchema::decode(&s.encode()[..7]).is_err());
    }

    #[test]
    fn rows_read_back_every_value_time_and_absence() {
        let s = schema();
        let values = [
            enc(&Value::Float32(1.5), 1000),
            enc(&Value::Null, 2000),
            enc(&Value::Float32Vector(vec![0.25, -1.0]), 1000),
            enc(&Value::String("red".into()), 3000),
        ];
        let given = [
            (0, values[0].as_slice()),
            (1, values[1].as_slice()),
            (2, values[2].as_slice()),
            (4, values[3].as_slice()),
        ];
        let mut out = Vec::new();
        encode_row(&s, &given, &mut out).expect("encode");
        let row = RowRef::parse(&s, &out).expect("parse");
        assert_eq!(
            row.get(0).expect("f"),
            FieldValue::Present {
                event_time: 1000,
                value: ValueRef::Float32(1.5)
            }
        );
        assert_eq!(row.get(1).expect("null"), FieldValue::Null(2000));
        match row.get(2).expect("vector") {
            FieldValue::Present {
                event_time: 1000,
                value: ValueRef::F32Vector(v),
            } => assert_eq!(v.to_vec(), vec![0.25, -1.0]),
            other => panic!("{other:?}"),
        }
        assert_eq!(row.get(3).expect("absent"), FieldValue::Absent);
        assert_eq!(
            row.get(4).expect("s"),
            FieldValue::Present {
                event_time: 3000,
                value: ValueRef::Str("red")
            }
        );
        assert_eq!(row.get(99).expect("past"), FieldValue::Absent);
    }

    #[test]
    fn a_row_of_50_floats_with_one_time_is_225_bytes() {
        let fields = (0..50)
            .map(|i| FieldSpec {
                feature_id: i,
                field_type: DType::Float32,
            })
            .collect();
        let s = RowSchema::new(fields).expect("schema");
        let values: Vec<Vec<u8>> = (0..50).map(|i| enc(&Value::Float32(i as f32), 7)).collect();
        let given: Vec<(usize, &[u8])> = values.iter().map(Vec::as_slice).enumerate().collect();
        let mut out = Vec::new();
        encode_row(&s, &given, &mut out).expect("encode");
        // 3 header + 8 one time + 7 + 7 bitmaps + 200 values.
        assert_eq!(out.len(), 225);
        let row = RowRef::parse(&s, &out).expect("parse");
        for i in 0..50 {
            assert_eq!(
                row.get(i).expect("get"),
                FieldValue::Present {
                    event_time: 7,
                    value: ValueRef::Float32(i as f32)
                }
            );
        }
    }

    #[test]
    fn wrong_types_and_orders_are_refused() {
        let s = schema();
        let int = enc(&Value::Int64(3), 1);
        let mut out = Vec::new();
        assert!(
            encode_row(&s, &[(0, &int)], &mut out).is_err(),
            "int for a float field"
        );
        let f = enc(&Value::Float32(1.0), 1);
        assert!(
            encode_row(&s, &[(1, &int), (0, &f)], &mut out).is_err(),
            "out of order"
        );
        assert!(
            encode_row(&s, &[(9, &f)], &mut out).is_err(),
            "outside the schema"
        );
        let vec3 = enc(&Value::Float32Vector(vec![1.0, 2.0, 3.0]), 1);
        assert!(
            encode_row(&s, &[(2, &vec3)], &mut out).is_err(),
            "wrong dimension"
        );
    }

    #[test]
    fn many_times_use_wide_indexes_and_damage_is_an_error() {
        let fields = (0..300)
            .map(|i| FieldSpec {
                feature_id: i,
                field_type: DType::Int64,
            })
            .collect();
        let s = RowSchema::new(fields).expect("schema");
        let values: Vec<Vec<u8>> = (0..300).map(|i| enc(&Value::Int64(i), i)).collect();
        let given: Vec<(usize, &[u8])> = values.iter().map(Vec::as_slice).enumerate().collect();
        let mut out = Vec::new();
        encode_row(&s, &given, &mut out).expect("encode");
        let row = RowRef::parse(&s, &out).expect("parse");
        assert_eq!(
            row.get(299).expect("get"),
            FieldValue::Present {
                event_time: 299,
                value: ValueRef::Int64(299)
            }
        );
        // Every truncation is an error, never a panic.
        for cut in 0..out.len().min(400) {
            if let Ok(r) = RowRef::parse(&s, &out[..cut]) {
                let _ = r.get(0);
            }
        }
        let mut bad = out.clone();
        bad[1] = 0xff;
        bad[2] = 0xff;
        assert!(RowRef::parse(&s, &bad).is_err());
    }
}
