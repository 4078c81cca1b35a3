//! The schema section and the row layout it implies.
//!
//! Owns: the field records (feature id, type tag, vector dimension, value offset), the
//! group name, the schema fingerprint, and [`RowLayout`], which turns a schema into byte
//! positions inside a row.
//!
//! Invariants: a row's layout is a pure function of the field list (types and order) and
//! the header's event-time slot count, so the stored value offsets and row width are
//! redundant and the reader checks them against [`RowLayout::new`]. The field records,
//! and so the schema fingerprint, do not depend on the slot count. Feature ids are unique within a segment. Every width and
//! offset is computed with checked arithmetic and fits a `u32`.

use super::error::SegmentError;
use super::index::hash64;
use super::layout::{
    EVENT_TIME_LEN, FIELD_DIM_OFFSET, FIELD_ID_OFFSET, FIELD_RECORD_LEN, FIELD_SLOT_OFFSET,
    FIELD_TYPE_OFFSET, MAX_FIELDS, MAX_GROUP_NAME_LEN, MAX_TIME_SLOTS, ROW_PRESENCE_OFFSET,
    VAR_REF_LEN, read_u32,
};
use crate::codec::value::tag;
use crate::types::{DType, FeatureId, MAX_VECTOR_DIM};

/// One field of a segment: a feature and its type. Fields are stored in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// The registry's feature id.
    pub feature_id: FeatureId,
    /// The feature's type.
    pub field_type: DType,
}

/// How a field's value is stored in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int64,
    Float64,
    Float32,
    Bool,
    Str,
    Bytes,
    F32Vector,
}

impl Kind {
    fn of(dtype: DType) -> Kind {
        match dtype {
            DType::Int64 => Kind::Int64,
            DType::Float64 => Kind::Float64,
            DType::Float32 => Kind::Float32,
            DType::Bool => Kind::Bool,
            DType::String => Kind::Str,
            DType::Bytes => Kind::Bytes,
            DType::Float32Vector { .. } => Kind::F32Vector,
        }
    }

    /// Bytes of the field's value in the value area.
    fn value_width(self) -> usize {
        match self {
            Kind::Int64 | Kind::Float64 => size_of::<u64>(),
            Kind::Float32 => size_of::<f32>(),
            Kind::Bool => size_of::<u8>(),
            Kind::Str | Kind::Bytes | Kind::F32Vector => VAR_REF_LEN,
        }
    }
}

/// Where one field lives inside a row. Precomputed so a field read does no arithmetic
/// that could overflow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldLayout {
    pub kind: Kind,
    /// Components of a float32 vector; 0 otherwise.
    pub dim: u32,
    /// Row offset of the presence bitmap byte holding this field's bit.
    pub presence_byte: usize,
    /// Row offset of the null bitmap byte holding this field's bit.
    pub null_byte: usize,
    /// This field's bit in both bitmap bytes.
    pub mask: u8,
    /// Row offset of this field's time index; meaningful only when the row layout's
    /// `time_index_width` is not 0.
    pub time_index_at: usize,
    /// Offset of the value from the start of the row's value area (what the field
    /// record stores; independent of the time table's size).
    pub value_rel: usize,
    /// Row offset of the value.
    pub value_at: usize,
    /// Row offset one past the value.
    pub value_end: usize,
}

/// The byte layout of a row for one schema and one time-table size.
///
/// A row is: header, presence bitmap, null bitmap, event-time table (`time_slots`
/// i64s), one time index per field (`time_index_width` bytes each, none when the table
/// has one slot), then the values in schema order.
#[derive(Debug, Clone)]
pub(crate) struct RowLayout {
    pub fields: Vec<FieldLayout>,
    /// Bytes of each bitmap: `ceil(fields / 8)`.
    pub bitmap_len: usize,
    /// Event-time slots per row.
    pub time_slots: usize,
    /// Row offset of the event-time table.
    pub time_table_at: usize,
    /// Bytes of one time index: 0 (one slot), 1 (up to 256 slots) or 2.
    pub time_index_width: usize,
    /// Row offset of the value area.
    pub value_area_at: usize,
    /// Bytes of a row.
    pub width: usize,
}

/// Bytes of one field's time index when a row has `time_slots` event-time slots.
pub(crate) fn time_index_width(time_slots: usize) -> usize {
    match time_slots {
        0 | 1 => 0,
        2..=256 => size_of::<u8>(),
        _ => size_of::<u16>(),
    }
}

impl RowLayout {
    /// The layout of rows of `fields` with `time_slots` event-time slots (0 only for the
    /// writer's staging rows, which keep their times aside); fails if a row would
    /// exceed `u32::MAX` bytes.
    pub fn new(fields: &[FieldSpec], time_slots: usize) -> Result<RowLayout, SegmentError> {
        let too_wide = || SegmentError::InvalidSchema {
            detail: format!(
                "{} fields and {time_slots} event-time slots make a row wider than u32::MAX \
                 bytes",
                fields.len()
            ),
        };
        let bitmap_len = fields.len().div_ceil(8);
        let null_at = ROW_PRESENCE_OFFSET
            .checked_add(bitmap_len)
            .ok_or_else(too_wide)?;
        let time_table_at = null_at.checked_add(bitmap_len).ok_or_else(too_wide)?;
        let time_index_at = time_slots
            .checked_mul(EVENT_TIME_LEN)
            .and_then(|t| t.checked_add(time_table_at))
            .ok_or_else(too_wide)?;
        let index_width = time_index_width(time_slots);
        let value_area_at = fields
            .len()
            .checked_mul(index_width)
            .and_then(|t| t.checked_add(time_index_at))
            .ok_or_else(too_wide)?;
        let mut rel = 0usize;
        let mut layouts = Vec::with_capacity(fields.len());
        for (i, spec) in fields.iter().enumerate() {
            let kind = Kind::of(spec.field_type);
            let value_at = value_area_at.checked_add(rel).ok_or_else(too_wide)?;
            let value_end = value_at
                .checked_add(kind.value_width())
                .ok_or_else(too_wide)?;
            layouts.push(FieldLayout {
                kind,
                dim: match spec.field_type {
                    DType::Float32Vector { dim } => dim,
                    _ => 0,
                },
                presence_byte: ROW_PRESENCE_OFFSET + i / 8,
                null_byte: null_at + i / 8,
                mask: 1 << (i % 8),
                time_index_at: time_index_at + i * index_width,
                value_rel: rel,
                value_at,
                value_end,
            });
            rel += kind.value_width();
        }
        let width = value_area_at.checked_add(rel).ok_or_else(too_wide)?;
        if u32::try_from(width).is_err() {
            return Err(too_wide());
        }
        Ok(RowLayout {
            fields: layouts,
            bitmap_len,
            time_slots,
            time_table_at,
            time_index_width: index_width,
            value_area_at,
            width,
        })
    }

    /// Row offset of the null bitmap.
    pub fn null_bitmap_at(&self) -> usize {
        ROW_PRESENCE_OFFSET + self.bitmap_len
    }
}

/// Checks a schema for the writer: at least one field, at most [`MAX_FIELDS`], unique
/// feature ids, vector dimensions in `1..=MAX_VECTOR_DIM`.
pub(crate) fn check_fields(fields: &[FieldSpec]) -> Result<(), SegmentError> {
    let invalid = |detail: String| Err(SegmentError::InvalidSchema { detail });
    if fields.is_empty() || fields.len() > MAX_FIELDS as usize {
        return invalid(format!(
            "{} fields, expected 1..={MAX_FIELDS}",
            fields.len()
        ));
    }
    let mut ids: Vec<FeatureId> = fields.iter().map(|f| f.feature_id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|w| w.first() == w.get(1)) {
        return invalid(format!("feature id {:?} appears twice", pair.first()));
    }
    for field in fields {
        if let DType::Float32Vector { dim } = field.field_type
            && (dim == 0 || dim > MAX_VECTOR_DIM)
        {
            return invalid(format!(
                "feature {}: vector dimension {dim} is outside 1..={MAX_VECTOR_DIM}",
                field.feature_id
            ));
        }
    }
    Ok(())
}

/// Checks a group name: `[a-z][a-z0-9_.]{0,127}` (`storage-format.md`, "Column
/// families").
pub(crate) fn check_group_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if first_ok && rest_ok && name.len() <= MAX_GROUP_NAME_LEN {
        Ok(())
    } else {
        Err(format!(
            "group name {name:?} does not match [a-z][a-z0-9_.]{{0,127}}"
        ))
    }
}

/// The field records of `fields`, as stored at the start of the schema section.
fn encode_records(fields: &[FieldSpec], layout: &RowLayout) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len() * FIELD_RECORD_LEN);
    for (spec, field) in fields.iter().zip(&layout.fields) {
        out.extend_from_slice(&spec.feature_id.to_le_bytes());
        out.push(crate::codec::value::tag_of(spec.field_type));
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&field.dim.to_le_bytes());
        let slot = u32::try_from(field.value_rel).unwrap_or(u32::MAX);
        out.extend_from_slice(&slot.to_le_bytes());
    }
    out
}

/// The fixed bytes one entity costs in a segment of `fields` whose rows hold
/// `time_slots` distinct event times: its row plus its share of the index (two 8-byte
/// slots, at the load factor of at most 0.5). Entity ids longer than the row's inline
/// prefix and variable-width values come on top. Used to decide how many entities fit
/// a memory budget before building.
pub fn fixed_bytes_per_entity(
    fields: &[FieldSpec],
    time_slots: usize,
) -> Result<u64, SegmentError> {
    let width = RowLayout::new(fields, time_slots.max(1))?.width as u64;
    Ok(width + 2 * size_of::<u64>() as u64)
}

/// The schema fingerprint of `fields`: [`hash64`] of their field records as stored.
///
/// Two segments have equal fingerprints exactly when (barring hash collisions) they
/// store the same feature ids with the same types in the same order, so the engine can
/// check a segment against the registry without comparing field lists.
pub fn fingerprint(fields: &[FieldSpec]) -> Result<u64, SegmentError> {
    let layout = RowLayout::new(fields, 1)?;
    Ok(hash64(&encode_records(fields, &layout)))
}

/// The schema section for `fields` and `group`.
pub(crate) fn encode_section(fields: &[FieldSpec], layout: &RowLayout, group: &str) -> Vec<u8> {
    let mut out = encode_records(fields, layout);
    let name_len = u16::try_from(group.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(group.as_bytes());
    out
}

/// A schema section, decoded and checked.
#[derive(Debug)]
pub(crate) struct DecodedSchema {
    pub fields: Vec<FieldSpec>,
    pub layout: RowLayout,
    pub group: String,
    pub fingerprint: u64,
}

/// Decodes the schema section `bytes` of a segment whose header declares `field_count`
/// fields and `time_slots` event-time slots per row, checking every record against the
/// layout they imply.
pub(crate) fn decode_section(
    bytes: &[u8],
    field_count: u32,
    time_slots: u32,
) -> Result<DecodedSchema, SegmentError> {
    if field_count == 0 || field_count > MAX_FIELDS {
        return Err(SegmentError::corrupt(
            "field count",
            format!("{field_count}, expected 1..={MAX_FIELDS}"),
        ));
    }
    let records_len = (field_count as usize)
        .checked_mul(FIELD_RECORD_LEN)
        .ok_or_else(|| SegmentError::corrupt("field count", format!("{field_count} overflows")))?;
    let records = bytes.get(..records_len).ok_or_else(|| {
        SegmentError::corrupt(
            "schema section",
            format!(
                "{} bytes cannot hold {field_count} field records",
                bytes.len()
            ),
        )
    })?;
    let rest = bytes.get(records_len..).unwrap_or_default();
    let name_len = rest
        .get(..size_of::<u16>())
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| {
            SegmentError::corrupt("schema section", "ends before the group name length")
        })?;
    let name_bytes = rest.get(size_of::<u16>()..).unwrap_or_default();
    if name_bytes.len() != usize::from(name_len) {
        return Err(SegmentError::corrupt(
            "schema section",
            format!(
                "group name length {name_len}, but {} bytes follow",
                name_bytes.len()
            ),
        ));
    }
    let group = std::str::from_utf8(name_bytes)
        .map_err(|e| SegmentError::corrupt("group name", e.to_string()))?;
    check_group_name(group).map_err(|detail| SegmentError::corrupt("group name", detail))?;

    let mut fields = Vec::with_capacity(field_count as usize);
    let mut stored_slots = Vec::with_capacity(field_count as usize);
    for record in records.chunks_exact(FIELD_RECORD_LEN) {
        let feature_id = read_u32(record, FIELD_ID_OFFSET).unwrap_or_default();
        let type_tag = record.get(FIELD_TYPE_OFFSET).copied().unwrap_or_default();
        let reserved = record
            .get(FIELD_TYPE_OFFSET + 1..FIELD_DIM_OFFSET)
            .unwrap_or_default();
        let dim = read_u32(record, FIELD_DIM_OFFSET).unwrap_or_default();
        stored_slots.push(read_u32(record, FIELD_SLOT_OFFSET).unwrap_or_default());
        if reserved.iter().any(|&b| b != 0) {
            return Err(SegmentError::corrupt(
                "field record",
                format!("feature {feature_id}: reserved bytes {reserved:?} are not zero"),
            ));
        }
        let Some(field_type) = crate::codec::value::dtype_of(type_tag, dim) else {
            return Err(SegmentError::corrupt(
                "field record",
                format!("feature {feature_id}: unknown type tag {type_tag}"),
            ));
        };
        if type_tag != tag::FLOAT32_VECTOR && dim != 0 {
            return Err(SegmentError::corrupt(
                "field record",
                format!("feature {feature_id}: dimension {dim} on a non-vector field"),
            ));
        }
        fields.push(FieldSpec {
            feature_id,
            field_type,
        });
    }
    check_fields(&fields).map_err(|e| SegmentError::corrupt("schema", e.to_string()))?;
    if time_slots == 0 || time_slots > MAX_TIME_SLOTS || time_slots > field_count {
        return Err(SegmentError::corrupt(
            "time slots",
            format!(
                "{time_slots}, expected 1..={}",
                field_count.min(MAX_TIME_SLOTS)
            ),
        ));
    }
    let layout = RowLayout::new(&fields, time_slots as usize)
        .map_err(|e| SegmentError::corrupt("schema", e.to_string()))?;
    for ((spec, field), &stored) in fields.iter().zip(&layout.fields).zip(&stored_slots) {
        if stored as usize != field.value_rel {
            return Err(SegmentError::corrupt(
                "field record",
                format!(
                    "feature {}: value offset {stored}, the layout puts it at {}",
                    spec.feature_id, field.value_rel
                ),
            ));
        }
    }
    Ok(DecodedSchema {
        fingerprint: hash64(records),
        fields,
        layout,
        group: group.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_packs_slots_in_schema_order() {
        let fields = [
            FieldSpec {
                feature_id: 1,
                field_type: DType::Float32,
            },
            FieldSpec {
                feature_id: 2,
                field_type: DType::String,
            },
            FieldSpec {
                feature_id: 3,
                field_type: DType::Bool,
            },
        ];
        let layout = RowLayout::new(&fields, 1).expect("valid");
        assert_eq!(layout.bitmap_len, 1);
        let at: Vec<usize> = layout.fields.iter().map(|f| f.value_at).collect();
        // 28-byte row header + 2 bitmaps + one event time; float32 4, string 12, bool 1.
        assert_eq!(at, [38, 42, 54]);
        assert_eq!(layout.width, 55);
        // Two time slots: a second event time and one index byte per field.
        let two = RowLayout::new(&fields, 2).expect("valid");
        assert_eq!(two.time_index_width, 1);
        let index_at: Vec<usize> = two.fields.iter().map(|f| f.time_index_at).collect();
        assert_eq!(index_at, [46, 47, 48]);
        assert_eq!(two.fields[0].value_at, 49);
        assert_eq!(two.width, 66);
        assert_eq!(
            RowLayout::new(&fields, 257)
                .expect("valid")
                .time_index_width,
            2
        );
    }

    #[test]
    fn group_names_follow_the_registry_pattern() {
        assert!(check_group_name("product_daily.v2").is_ok());
        for bad in ["", "Product", "9x", "a-b", &"a".repeat(129)] {
            assert!(check_group_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_checks_reject_duplicates_and_bad_dims() {
        let f = |feature_id, field_type| FieldSpec {
            feature_id,
            field_type,
        };
        assert!(check_fields(&[]).is_err());
        assert!(check_fields(&[f(1, DType::Int64), f(1, DType::Bool)]).is_err());
        assert!(check_fields(&[f(1, DType::Float32Vector { dim: 0 })]).is_err());
        assert!(
            check_fields(&[f(
                1,
                DType::Float32Vector {
                    dim: MAX_VECTOR_DIM
                }
            )])
            .is_ok()
        );
    }
}
