//! Shared builders and comparisons.

use featstore_format::segment::{FieldInput, FieldSpec, FieldValue, SegmentWriter, ValueRef};
use featstore_format::types::{DType, TimestampMs, Value};

/// Path of a checked-in fixture.
pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One row of a model: entity id and per-field `None` / `Some((event time, value))`.
pub type ModelRow = (Vec<u8>, Vec<Option<(TimestampMs, Value)>>);

/// Pushes `rows` into `writer`.
pub fn push_all(writer: &mut SegmentWriter, rows: &[ModelRow]) {
    for (id, fields) in rows {
        let inputs: Vec<Option<(TimestampMs, FieldInput<'_>)>> = fields
            .iter()
            .map(|f| f.as_ref().map(|(t, v)| (*t, FieldInput::from(v))))
            .collect();
        writer.push(id, &inputs).expect("model rows are valid");
    }
}

/// The model's expectation for one stored field, as a comparable owned value with
/// floats as bits (so NaN equals itself).
#[derive(Debug, PartialEq)]
pub enum Seen {
    Absent,
    Null(TimestampMs),
    Present(TimestampMs, Bits),
}

/// A value with floats replaced by their bit patterns.
#[derive(Debug, PartialEq)]
pub enum Bits {
    Int64(i64),
    Float64(u64),
    Float32(u32),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
    Vector(Vec<u32>),
}

/// What the model says field `value` should read as.
pub fn expect(value: &Option<(TimestampMs, Value)>) -> Seen {
    match value {
        None => Seen::Absent,
        Some((t, Value::Null)) => Seen::Null(*t),
        Some((t, v)) => Seen::Present(
            *t,
            match v {
                Value::Null => unreachable!("handled above"),
                Value::Int64(x) => Bits::Int64(*x),
                Value::Float64(x) => Bits::Float64(x.to_bits()),
                Value::Float32(x) => Bits::Float32(x.to_bits()),
                Value::Bool(x) => Bits::Bool(*x),
                Value::String(x) => Bits::Str(x.clone()),
                Value::Bytes(x) => Bits::Bytes(x.clone()),
                Value::Float32Vector(x) => Bits::Vector(x.iter().map(|f| f.to_bits()).collect()),
            },
        ),
    }
}

/// What a segment read returned, in the model's terms.
pub fn seen(value: FieldValue<'_>) -> Seen {
    match value {
        FieldValue::Absent => Seen::Absent,
        FieldValue::Null(t) => Seen::Null(t),
        FieldValue::Present { event_time, value } => Seen::Present(
            event_time,
            match value {
                ValueRef::Int64(x) => Bits::Int64(x),
                ValueRef::Float64(x) => Bits::Float64(x.to_bits()),
                ValueRef::Float32(x) => Bits::Float32(x.to_bits()),
                ValueRef::Bool(x) => Bits::Bool(x),
                ValueRef::Str(x) => Bits::Str(x.to_owned()),
                ValueRef::Bytes(x) => Bits::Bytes(x.to_vec()),
                ValueRef::F32Vector(x) => Bits::Vector(x.iter().map(f32::to_bits).collect()),
            },
        ),
    }
}

/// The schema of the checked-in fixture: every type, nine fields (two bitmap bytes).
pub fn fixture_fields() -> Vec<FieldSpec> {
    let f = |feature_id, field_type| FieldSpec {
        feature_id,
        field_type,
    };
    vec![
        f(1, DType::Int64),
        f(2, DType::Float64),
        f(3, DType::Float32),
        f(4, DType::Bool),
        f(5, DType::String),
        f(6, DType::Bytes),
        f(7, DType::Float32Vector { dim: 3 }),
        f(8, DType::Int64),
        f(10, DType::Float32),
    ]
}

/// The rows of the checked-in fixture.
pub fn fixture_rows() -> Vec<ModelRow> {
    let t = 1_763_700_000_000;
    let all = |i: i64| -> Vec<Option<(TimestampMs, Value)>> {
        vec![
            Some((t, Value::Int64(-i))),
            Some((t + 1, Value::Float64(i as f64 / 3.0))),
            Some((t + 2, Value::Float32(i as f32 * 0.5))),
            Some((t + 3, Value::Bool(i % 2 == 0))),
            Some((t + 4, Value::String(format!("product category {i}")))),
            Some((t + 5, Value::Bytes(vec![0, 0xff, i as u8]))),
            Some((t + 6, Value::Float32Vector(vec![0.25, -1.0, i as f32]))),
            Some((t + 7, Value::Int64(i64::MAX - i))),
            Some((t + 8, Value::Float32(f32::NAN))),
        ]
    };
    vec![
        (b"alice".to_vec(), all(1)),
        (b"bob".to_vec(), vec![Some((t, Value::Null)); 9]),
        (
            b"carol".to_vec(),
            vec![
                Some((-5, Value::Int64(0))),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ],
        ),
        (
            "d\u{e4}ve \u{65e5}\u{672c}".as_bytes().to_vec(),
            vec![
                None,
                Some((0, Value::Float64(-0.0))),
                Some((0, Value::Float32(f32::NEG_INFINITY))),
                Some((0, Value::Bool(false))),
                Some((0, Value::String(String::new()))),
                Some((0, Value::Bytes(Vec::new()))),
                None,
                Some((i64::MIN, Value::Null)),
                Some((i64::MAX, Value::Float32(1.0))),
            ],
        ),
        (vec![b'x'; 64], all(2)),
        (vec![0u8], all(3)),
    ]
}

/// A writer over the fixture's schema.
pub fn fixture_writer() -> SegmentWriter {
    let mut writer =
        SegmentWriter::new("fixture.demo", 42, fixture_fields()).expect("fixture schema");
    push_all(&mut writer, &fixture_rows());
    writer
}
