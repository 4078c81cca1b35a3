//! Property tests against a model: random schemas and rows are written, opened (from
//! memory and from a mapped file) and compared field by field with what was pushed.

use std::collections::BTreeSet;

use featstore_format::segment::{
    FieldInput, FieldSpec, FieldValue, MappedSegment, Segment, SegmentWriter, ValueRef,
    ValuesCompression, fingerprint,
};
use featstore_format::types::{DType, TimestampMs, Value};
use proptest::prelude::*;

use crate::common::{ModelRow, expect, push_all, seen};

fn any_dtype() -> impl Strategy<Value = DType> {
    prop_oneof![
        Just(DType::Int64),
        Just(DType::Float64),
        Just(DType::Float32),
        Just(DType::Bool),
        Just(DType::String),
        Just(DType::Bytes),
        (1u32..5).prop_map(|dim| DType::Float32Vector { dim }),
    ]
}

fn any_schema() -> impl Strategy<Value = Vec<FieldSpec>> {
    proptest::collection::btree_set(any::<u32>(), 1..12)
        .prop_flat_map(|ids| {
            let n = ids.len();
            (
                Just(ids.into_iter().collect::<Vec<u32>>()).prop_shuffle(),
                proptest::collection::vec(any_dtype(), n),
            )
        })
        .prop_map(|(ids, types)| {
            ids.into_iter()
                .zip(types)
                .map(|(feature_id, field_type)| FieldSpec {
                    feature_id,
                    field_type,
                })
                .collect()
        })
}

fn any_value(dtype: DType) -> BoxedStrategy<Value> {
    let value = match dtype {
        DType::Int64 => any::<i64>().prop_map(Value::Int64).boxed(),
        DType::Float64 => any::<f64>().prop_map(Value::Float64).boxed(),
        DType::Float32 => any::<f32>().prop_map(Value::Float32).boxed(),
        DType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        DType::String => ".{0,12}".prop_map(Value::String).boxed(),
        DType::Bytes => proptest::collection::vec(any::<u8>(), 0..12)
            .prop_map(Value::Bytes)
            .boxed(),
        DType::Float32Vector { dim } => proptest::collection::vec(any::<f32>(), dim as usize)
            .prop_map(Value::Float32Vector)
            .boxed(),
    };
    prop_oneof![1 => Just(Value::Null), 6 => value].boxed()
}

fn any_field(dtype: DType) -> BoxedStrategy<Option<(TimestampMs, Value)>> {
    // Few distinct times (shared event-time table entries) as well as arbitrary ones.
    let time = prop_oneof![1 => any::<i64>(), 2 => 0..3i64];
    proptest::option::weighted(0.8, (time, any_value(dtype))).boxed()
}

fn any_segment() -> impl Strategy<Value = (Vec<FieldSpec>, Vec<ModelRow>, ValuesCompression)> {
    any_schema().prop_flat_map(|fields| {
        let row = (
            proptest::collection::vec(any::<u8>(), 1..20),
            fields
                .iter()
                .map(|f| any_field(f.field_type))
                .collect::<Vec<_>>(),
        );
        let compression = prop_oneof![
            Just(ValuesCompression::Auto),
            Just(ValuesCompression::Never),
            Just(ValuesCompression::Always),
        ];
        (
            Just(fields),
            proptest::collection::vec(row, 0..40).prop_map(|rows| {
                let mut seen = BTreeSet::new();
                rows.into_iter()
                    .filter(|(id, _)| seen.insert(id.clone()))
                    .collect::<Vec<_>>()
            }),
            compression,
        )
    })
}

fn check_against_model<D: AsRef<[u8]>>(
    segment: &Segment<D>,
    fields: &[FieldSpec],
    rows: &[ModelRow],
    absent: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(segment.entity_count(), rows.len());
    prop_assert_eq!(segment.fields(), fields);
    prop_assert_eq!(segment.group(), "model.group");
    prop_assert_eq!(segment.group_version(), 9);
    prop_assert_eq!(
        segment.schema_fingerprint(),
        fingerprint(fields).expect("valid")
    );
    for (i, spec) in fields.iter().enumerate() {
        prop_assert_eq!(segment.field_index(spec.feature_id), Some(i));
    }
    for (index, (id, values)) in rows.iter().enumerate() {
        let row = segment.find(id);
        prop_assert!(row.is_some(), "entity {:?} not found", id);
        let row = row.expect("checked");
        prop_assert_eq!(row.index(), index);
        prop_assert_eq!(row.field_count(), fields.len());
        for (i, value) in values.iter().enumerate() {
            prop_assert_eq!(
                seen(row.get(i)),
                expect(value),
                "entity {:?} field {}",
                id,
                i
            );
        }
    }
    for id in absent {
        if !rows.iter().any(|(stored, _)| stored == id) {
            prop_assert!(segment.find(id).is_none(), "absent {:?} found", id);
        }
    }
    // find_batch answers as find does, over stored and absent ids interleaved (up to
    // 60 ids: several 16-id chunks and a partial one).
    let mut lookups: Vec<Vec<u8>> = Vec::new();
    for i in 0..rows.len().max(absent.len()) {
        lookups.extend(rows.get(i).map(|(id, _)| id.clone()));
        lookups.extend(absent.get(i).cloned());
    }
    crate::batch::check_batch(segment, &lookups);
    let order: Vec<&[u8]> = segment.iter().map(|r| r.entity_id()).collect();
    let want: Vec<&[u8]> = rows.iter().map(|(id, _)| id.as_slice()).collect();
    prop_assert_eq!(order, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn segments_round_trip(
        (fields, rows, compression) in any_segment(),
        absent in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..20),
    ) {
        let mut writer = SegmentWriter::new("model.group", 9, fields.clone())
            .expect("valid schema")
            .compression(compression);
        push_all(&mut writer, &rows);
        let bytes = writer.finish_to_vec().expect("writes");
        let segment = Segment::open(bytes.as_slice()).expect("opens");
        if compression == ValuesCompression::Never {
            prop_assert!(!segment.values_compressed());
        }
        check_against_model(&segment, &fields, &rows, &absent)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn mapped_files_round_trip((fields, rows, compression) in any_segment()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.seg");
        let mut writer = SegmentWriter::new("model.group", 9, fields.clone())
            .expect("valid schema")
            .compression(compression);
        push_all(&mut writer, &rows);
        writer.finish_to_path(&path).expect("writes");
        let segment = MappedSegment::open(&path).expect("maps");
        check_against_model(&segment, &fields, &rows, &[])?;
    }
}

/// Enough entities that probe paths collide and wrap, with ids that differ only in
/// their last bytes.
#[test]
fn many_similar_ids_are_all_found() {
    let fields = vec![FieldSpec {
        feature_id: 1,
        field_type: DType::Int64,
    }];
    let mut writer = SegmentWriter::new("many", 1, fields).expect("schema");
    for i in 0..100_000i64 {
        let id = format!("user:{i:08}");
        writer
            .push(
                id.as_bytes(),
                &[Some((i, featstore_format::segment::FieldInput::Int64(i)))],
            )
            .expect("push");
    }
    let segment = Segment::open(writer.finish_to_vec().expect("writes")).expect("opens");
    for i in 0..100_000i64 {
        let row = segment
            .find(format!("user:{i:08}").as_bytes())
            .expect("found");
        assert_eq!(seen(row.get(0)), expect(&Some((i, Value::Int64(i)))));
    }
    for i in 100_000..110_000i64 {
        assert!(segment.find(format!("user:{i:08}").as_bytes()).is_none());
    }
}

#[test]
fn an_empty_segment_opens_and_finds_nothing() {
    let fields = vec![FieldSpec {
        feature_id: 1,
        field_type: DType::Bool,
    }];
    let bytes = SegmentWriter::new("empty", 1, fields)
        .expect("schema")
        .finish_to_vec()
        .expect("writes");
    let segment = Segment::open(bytes).expect("opens");
    assert_eq!(segment.entity_count(), 0);
    assert!(segment.find(b"x").is_none());
    assert_eq!(segment.iter().count(), 0);
}

#[test]
fn rows_with_more_than_256_distinct_times_use_two_byte_indexes() {
    let fields: Vec<FieldSpec> = (0..300u32)
        .map(|feature_id| FieldSpec {
            feature_id,
            field_type: DType::Int64,
        })
        .collect();
    let mut writer = SegmentWriter::new("wide", 1, fields).expect("schema");
    // Entity "a": every field its own time, in descending order; "b": one shared time.
    let spread: Vec<_> = (0..300i64)
        .map(|i| Some((10_000 - i, FieldInput::Int64(i))))
        .collect();
    let shared: Vec<_> = (0..300i64)
        .map(|i| (i % 7 != 0).then_some((5, FieldInput::Int64(-i))))
        .collect();
    writer.push(b"a", &spread).expect("push");
    writer.push(b"b", &shared).expect("push");
    let bytes = writer.finish_to_vec().expect("writes");
    let segment = Segment::open(bytes).expect("opens");
    let a = segment.find(b"a").expect("a");
    let b = segment.find(b"b").expect("b");
    for i in 0..300usize {
        assert_eq!(
            a.get(i),
            FieldValue::Present {
                event_time: 10_000 - i as i64,
                value: ValueRef::Int64(i as i64)
            }
        );
        let want = if i % 7 == 0 {
            FieldValue::Absent
        } else {
            FieldValue::Present {
                event_time: 5,
                value: ValueRef::Int64(-(i as i64)),
            }
        };
        assert_eq!(b.get(i), want);
    }
}
