//! The bodies of featstore's fuzz targets, kept apart from `fuzz_targets/*.rs` so that
//! the format crate's tests (`crates/format/tests/segment/fuzz_replay.rs`) run the
//! same code on stable Rust, without libFuzzer.
//!
//! Each body panics exactly when it finds a bug: a panic inside the library, or a
//! result that disagrees with the body's model of it.

use featstore_format::codec::MAX_ENTITY_ID_LEN;
use featstore_format::codec::key::{decode_key, encode_key_into, entity_prefix_len};
use featstore_format::codec::row::{RowRef, RowSchema, encode_field, encode_row};
use featstore_format::codec::value::{decode_value, encode_value};
use featstore_format::segment::testing::reseal;
use featstore_format::segment::{
    FieldInput, FieldSpec, FieldValue, Segment, SegmentWriter, ValueRef,
};
use featstore_format::types::{DType, TimestampMs, Value};

/// `segment_open`: arbitrary bytes, as they are and with every checksum recomputed (so
/// the structural checks behind the checksums are reached), must open or be refused
/// without panicking. A segment that opens must agree with itself: every row is found
/// by its own id, every field reads as its schema's type, and rewriting its rows with
/// `SegmentWriter` gives a segment that reads the same.
pub fn segment_open(data: &[u8]) {
    check_segment(data);
    let mut resealed = data.to_vec();
    if reseal(&mut resealed) {
        check_segment(&resealed);
    }
}

fn check_segment(data: &[u8]) {
    let Ok(segment) = Segment::open(data) else {
        return;
    };
    let mut count = 0;
    for row in segment.iter() {
        let found = segment
            .find(row.entity_id())
            .expect("every stored id is found");
        assert_eq!(found.index(), row.index());
        for (i, spec) in segment.fields().iter().enumerate() {
            if let FieldValue::Present { value, .. } = row.get(i) {
                assert!(
                    Value::matches(&value.to_value(), spec.field_type),
                    "field {i} reads as {value:?}, schema says {}",
                    spec.field_type
                );
            }
        }
        count += 1;
    }
    assert_eq!(count, segment.entity_count());
    for len in 0..=data.len().min(24) {
        if let Some(row) = segment.find(&data[..len]) {
            assert_eq!(row.entity_id(), &data[..len]);
        }
    }
    // Batched lookups (stored ids and prefixes of the input, interleaved) answer as
    // `find` does; prefetching out-of-line values only reads.
    let mut ids: Vec<&[u8]> = segment.iter().map(|row| row.entity_id()).collect();
    ids.extend((0..=data.len().min(24)).map(|len| &data[..len]));
    let third = ids.len() / 3;
    ids.rotate_left(third);
    segment.find_batch(
        ids.len(),
        |i| ids[i],
        |i, row| {
            assert_eq!(
                row.map(|r| r.index()),
                segment.find(ids[i]).map(|r| r.index()),
                "find_batch and find disagree on id {i}"
            );
            if let Some(row) = row {
                for field in 0..segment.fields().len() {
                    row.prefetch_value(field);
                }
            }
        },
    );

    let mut writer = SegmentWriter::new(
        segment.group(),
        segment.group_version(),
        segment.fields().to_vec(),
    )
    .expect("an open segment's schema is valid");
    for row in segment.iter() {
        let owned = owned_fields(&segment, row.index());
        let inputs: Vec<Option<(TimestampMs, FieldInput<'_>)>> = owned
            .iter()
            .map(|f| f.as_ref().map(|(t, v)| (*t, FieldInput::from(v))))
            .collect();
        writer
            .push(row.entity_id(), &inputs)
            .expect("an open segment's rows are valid");
    }
    let bytes = writer.finish_to_vec().expect("rewrite");
    let again = Segment::open(bytes.as_slice()).expect("a rewritten segment opens");
    assert_eq!(again.schema_fingerprint(), segment.schema_fingerprint());
    assert_eq!(again.entity_count(), segment.entity_count());
    for row in segment.iter() {
        let other = again.find(row.entity_id()).expect("rewritten row is found");
        for i in 0..row.field_count() {
            assert!(
                same(row.get(i), other.get(i)),
                "field {i}: {:?} != {:?}",
                row.get(i),
                other.get(i)
            );
        }
    }
}

/// Row `index`'s fields as owned values.
fn owned_fields<D: AsRef<[u8]>>(
    segment: &Segment<D>,
    index: usize,
) -> Vec<Option<(TimestampMs, Value)>> {
    let row = segment.row(index).expect("row in range");
    (0..row.field_count())
        .map(|i| match row.get(i) {
            FieldValue::Absent => None,
            FieldValue::Null(t) => Some((t, Value::Null)),
            FieldValue::Present { event_time, value } => Some((event_time, value.to_value())),
        })
        .collect()
}

/// Equality with floats compared by bits (NaN equals itself).
pub fn same(a: FieldValue<'_>, b: FieldValue<'_>) -> bool {
    match (a, b) {
        (
            FieldValue::Present {
                event_time: ta,
                value: va,
            },
            FieldValue::Present {
                event_time: tb,
                value: vb,
            },
        ) => ta == tb && same_value(va, vb),
        _ => a == b,
    }
}

fn same_value(a: ValueRef<'_>, b: ValueRef<'_>) -> bool {
    match (a, b) {
        (ValueRef::Float64(x), ValueRef::Float64(y)) => x.to_bits() == y.to_bits(),
        (ValueRef::Float32(x), ValueRef::Float32(y)) => x.to_bits() == y.to_bits(),
        (ValueRef::F32Vector(x), ValueRef::F32Vector(y)) => x.as_bytes() == y.as_bytes(),
        _ => a == b,
    }
}

/// `codec_key`: `decode_key` on arbitrary bytes must not panic, and a key it accepts
/// must be the canonical encoding of what it returns; then the bytes, read as
/// `fid (4 bytes LE) ‖ entity id`, must encode and decode back to themselves.
pub fn codec_key(data: &[u8]) {
    if let Ok((id, fid)) = decode_key(data) {
        assert_eq!(entity_prefix_len(data), Some(2 + id.len()));
        assert!((1..=MAX_ENTITY_ID_LEN).contains(&id.len()));
        let mut again = Vec::new();
        encode_key_into(id, fid, &mut again).expect("a decoded id re-encodes");
        assert_eq!(again, data, "decode_key accepted a non-canonical key");
    }
    let Some((fid, id)) = data.split_first_chunk::<4>() else {
        return;
    };
    let fid = u32::from_le_bytes(*fid);
    let mut key = Vec::new();
    match encode_key_into(id, fid, &mut key) {
        Ok(()) => {
            assert_eq!(decode_key(&key).expect("an encoded key decodes"), (id, fid));
            assert_eq!(entity_prefix_len(&key), Some(2 + id.len()));
        }
        Err(_) => assert!(id.is_empty() || id.len() > MAX_ENTITY_ID_LEN),
    }
}

/// `codec_value`: `decode_value` on arbitrary bytes must not panic, and a value it
/// accepts must re-encode to the same bytes; then a value built from the bytes
/// (`selector ‖ event time ‖ payload`) must survive encode, decode, encode unchanged.
pub fn codec_value(data: &[u8]) {
    if let Ok(stored) = decode_value(data) {
        let mut again = Vec::new();
        encode_value(&stored.value, stored.event_time, &mut again);
        assert_eq!(again, data, "decode_value accepted a non-canonical value");
    }
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((time, payload)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let event_time = i64::from_le_bytes(*time);
    let word = |n: usize| -> [u8; 8] {
        let mut out = [0; 8];
        for (o, b) in out.iter_mut().zip(payload).take(n) {
            *o = *b;
        }
        out
    };
    let value = match selector % 8 {
        0 => Value::Null,
        1 => Value::Int64(i64::from_le_bytes(word(8))),
        2 => Value::Float64(f64::from_le_bytes(word(8))),
        3 => {
            let w = word(4);
            Value::Float32(f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        }
        4 => Value::Bool(payload.first().is_some_and(|b| b & 1 == 1)),
        5 => Value::String(String::from_utf8_lossy(payload).into_owned()),
        6 => Value::Bytes(payload.to_vec()),
        _ => Value::Float32Vector(
            payload
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
    };
    let mut first = Vec::new();
    encode_value(&value, event_time, &mut first);
    let decoded = decode_value(&first).expect("an encoded value decodes");
    assert_eq!(decoded.event_time, event_time);
    let mut second = Vec::new();
    encode_value(&decoded.value, decoded.event_time, &mut second);
    assert_eq!(first, second);
}

/// `reclog_read`: a record log built from the input, then damaged as the input says,
/// read back against a model. The first byte picks the mode:
/// * even: the rest is a log file's bytes after a valid header (so fuzzing reaches the
///   block parser): reading never panics and accounts for every byte;
/// * odd: the rest is split into records (at `0xff` bytes) and blocks (every
///   `1 + byte 1 % 4` records), written plain or with zstd, with or without an end
///   marker, then cut at an input-chosen length and bit-flipped at input-chosen
///   offsets. The reader returns only records that were written, in the order written;
///   undamaged, it returns all of them and reports a clean file; only cut, it returns
///   exactly the records of the blocks wholly before the cut.
pub fn reclog_read(data: &[u8]) {
    use featstore_format::reclog::{
        BlockBuilder, BlockPlace, HEADER_LEN, LogReader, end_marker, file_header,
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let mut bytes = file_header(0, 0).to_vec();
        bytes.extend_from_slice(rest);
        let mut returned = 0u64;
        let report = LogReader::new(&bytes)
            .expect("a valid header")
            .for_each_record(|_| returned += 1);
        assert_eq!(report.records, returned);
        return;
    }
    let Some((&shape, rest)) = rest.split_first() else {
        return;
    };
    let Some((damage, payload)) = rest.split_at_checked(rest.len().min(8)) else {
        return;
    };
    let records: Vec<&[u8]> = payload.split(|b| *b == 0xff).take(64).collect();
    let per_block = 1 + usize::from(shape % 4);
    let level = (shape & 0x10 != 0).then_some(1);
    let with_end = shape & 0x20 != 0;
    // The file id depends on every record, as a random id would be unknown to them: no
    // record can hold a block that passes for one of this file.
    let file_id = payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let place = |bytes: &[u8]| BlockPlace {
        file_id,
        offset: bytes.len() as u64,
    };
    let mut bytes = file_header(0, file_id).to_vec();
    let mut block_ends = Vec::new();
    for chunk in records.chunks(per_block) {
        let mut b = BlockBuilder::new();
        for r in chunk {
            b.add(r).expect("small records fit");
        }
        let block = b.finish(place(&bytes), level).expect("compress");
        bytes.extend_from_slice(block);
        block_ends.push((bytes.len(), chunk.len()));
    }
    if with_end {
        let marker = end_marker(place(&bytes), records.len() as u32);
        bytes.extend(marker);
    }
    let written = bytes.len();
    let cut = match damage.first() {
        Some(&c) if shape & 0x40 != 0 => {
            HEADER_LEN + (usize::from(c) * (written - HEADER_LEN)) / 256
        }
        _ => written,
    };
    bytes.truncate(cut);
    let flips: Vec<usize> = if shape & 0x80 != 0 {
        damage
            .iter()
            .skip(1)
            .map(|&d| HEADER_LEN + usize::from(d) * 7919 % (cut - HEADER_LEN).max(1))
            .filter(|&at| at < cut)
            .collect()
    } else {
        Vec::new()
    };
    let undamaged = bytes.clone();
    for (i, &at) in flips.iter().enumerate() {
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 1 << (i % 8);
        }
    }
    let flipped = bytes != undamaged;
    let mut got: Vec<Vec<u8>> = Vec::new();
    let report = LogReader::new(&bytes)
        .expect("the header is never damaged")
        .for_each_record(|r| got.push(r.to_vec()));
    // Returned records are a subsequence of the written ones.
    let mut next = records.iter();
    for r in &got {
        assert!(
            next.any(|w| *w == r.as_slice()),
            "returned a record that was not written, or out of order"
        );
    }
    if !flipped {
        let whole: usize = block_ends
            .iter()
            .filter(|(end, _)| *end <= cut)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(got.len(), whole, "cut at {cut}: lost a whole block");
        if cut == written {
            assert_eq!(report.corruption_count, 0);
            assert_eq!(report.clean_end, with_end);
            assert_eq!(report.torn_tail_bytes, 0);
        }
    }
}

/// The schema `batch_row` reads rows with when its input's schema part does not
/// decode: one field of every type.
pub fn batch_row_default_schema() -> RowSchema {
    let types = [
        DType::Float32,
        DType::Int64,
        DType::String,
        DType::Float32Vector { dim: 2 },
        DType::Bool,
        DType::Float64,
        DType::Bytes,
    ];
    let fields = types
        .into_iter()
        .enumerate()
        .map(|(i, field_type)| FieldSpec {
            feature_id: i as u32 * 3 + 1,
            field_type,
        })
        .collect();
    match RowSchema::new(fields) {
        Ok(schema) => schema,
        Err(e) => panic!("the default schema is valid: {e}"),
    }
}

/// `batch_row`: byte 0 splits the rest into a schema record and a row. A schema that
/// does not decode is replaced by [`batch_row_default_schema`]. Parsing the row and
/// reading every field must never panic; a row whose every field reads must encode
/// again (`encode_row`) to a row whose fields read the same (compared as stored
/// values, so NaN payloads compare by bits).
pub fn batch_row(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (schema_bytes, row_bytes) = rest.split_at(usize::from(split).min(rest.len()));
    let schema = RowSchema::decode(schema_bytes).unwrap_or_else(|_| batch_row_default_schema());
    let Ok(row) = RowRef::parse(&schema, row_bytes) else {
        return;
    };
    let stored = |field: FieldValue<'_>| -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        encode_field(field, &mut bytes).then_some(bytes)
    };
    let mut fields = Vec::new();
    for pos in 0..schema.fields().len() {
        match row.get(pos) {
            Ok(field) => fields.push(stored(field)),
            Err(_) => return,
        }
    }
    let pairs: Vec<(usize, &[u8])> = fields
        .iter()
        .enumerate()
        .filter_map(|(pos, f)| f.as_deref().map(|b| (pos, b)))
        .collect();
    let mut again = Vec::new();
    if let Err(e) = encode_row(&schema, &pairs, &mut again) {
        panic!("values read from a row do not encode again: {e}");
    }
    let reread = match RowRef::parse(&schema, &again) {
        Ok(r) => r,
        Err(e) => panic!("an encoded row does not parse: {e}"),
    };
    for (pos, field) in fields.iter().enumerate() {
        let back = reread.get(pos).ok().and_then(stored);
        assert_eq!(
            &back, field,
            "field {pos} reads differently after re-encoding"
        );
    }
}
