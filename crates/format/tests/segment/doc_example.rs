//! `storage-format.md`, "Hot segment files", "Worked example": the writer produces
//! exactly the bytes the document lists, and the reader reads them back.

use featstore_format::segment::{
    FieldInput, FieldSpec, FieldValue, Segment, SegmentWriter, ValueRef, ValuesCompression,
};
use featstore_format::types::DType;

/// The hex column of the worked example's dump (`offset | bytes | meaning` lines).
fn doc_bytes() -> Vec<u8> {
    let doc = include_str!("../../../../storage-format.md");
    let (_, example) = doc
        .split_once("### Worked example")
        .expect("doc has the worked example");
    let block = example
        .split("```")
        .nth(1)
        .expect("worked example has a code block");
    let mut bytes = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let mut cells = line.split('|');
        let offset: usize = cells
            .next()
            .and_then(|c| c.trim().parse().ok())
            .expect("offset column");
        assert_eq!(offset, bytes.len(), "doc offsets are consecutive: {line}");
        for hex in cells.next().expect("bytes column").split_whitespace() {
            bytes.push(u8::from_str_radix(hex, 16).expect("hex byte"));
        }
    }
    bytes
}

#[test]
fn worked_example_is_byte_exact() {
    let mut writer = SegmentWriter::new(
        "demo",
        3,
        vec![
            FieldSpec {
                feature_id: 5,
                field_type: DType::Float32,
            },
            FieldSpec {
                feature_id: 9,
                field_type: DType::String,
            },
        ],
    )
    .expect("schema")
    .compression(ValuesCompression::Never);
    writer
        .push(
            b"u7",
            &[
                Some((1000, FieldInput::Float32(1.5))),
                Some((1500, FieldInput::Str("hi"))),
            ],
        )
        .expect("push");
    writer
        .push(b"u8", &[None, Some((2000, FieldInput::Null))])
        .expect("push");
    let bytes = writer.finish_to_vec().expect("writes");
    assert_eq!(bytes.len(), 380);
    assert_eq!(bytes, doc_bytes());

    let segment = Segment::open(bytes).expect("opens");
    let u7 = segment.find(b"u7").expect("u7");
    assert_eq!(
        u7.get(0),
        FieldValue::Present {
            event_time: 1000,
            value: ValueRef::Float32(1.5)
        }
    );
    assert_eq!(
        u7.get(1),
        FieldValue::Present {
            event_time: 1500,
            value: ValueRef::Str("hi")
        }
    );
    let u8_row = segment.find(b"u8").expect("u8");
    assert_eq!(u8_row.get(0), FieldValue::Absent);
    assert_eq!(u8_row.get(1), FieldValue::Null(2000));
    assert_eq!(u8_row.get(2), FieldValue::Absent, "past the schema");
}
