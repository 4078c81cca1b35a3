//! Damaged and hostile segments: every one must be rejected at open with the right
//! error, never a panic, an overflow or a huge allocation.
//!
//! Raw damage (truncation, bit flips) must trip the length or checksum checks.
//! Hostile files are damaged and then resealed (`segment::testing::reseal` recomputes
//! every checksum), so they reach the structural checks behind the checksums.

use std::ops::Range;

use featstore_format::segment::layout::{
    ENTITY_COUNT_OFFSET, FIELD_COUNT_OFFSET, FIELD_DIM_OFFSET, FIELD_ID_OFFSET, FIELD_RECORD_LEN,
    FIELD_SLOT_OFFSET, FIELD_TYPE_OFFSET, FINGERPRINT_OFFSET, FLAGS_OFFSET, HEADER_LEN,
    HEADER_LEN_OFFSET, HEADER_RESERVED_OFFSET, MAGIC, ROW_KEY_LEN_OFFSET, ROW_KEY_OFFSET_OFFSET,
    ROW_KEY_PREFIX_OFFSET, ROW_PRESENCE_OFFSET, ROW_WIDTH_OFFSET, SLOT_COUNT_OFFSET, Section,
    TIME_SLOTS_OFFSET, VALUES_RAW_LEN_OFFSET, VERSION_OFFSET, read_u32, read_u64,
};
use featstore_format::segment::testing::reseal;
use featstore_format::segment::{Segment, SegmentError, ValuesCompression};

use crate::common::fixture_writer;

fn fixture(compression: ValuesCompression) -> Vec<u8> {
    fixture_writer()
        .compression(compression)
        .finish_to_vec()
        .expect("writes")
}

fn open(bytes: &[u8]) -> Result<(), SegmentError> {
    Segment::open(bytes).map(|_| ())
}

fn section(bytes: &[u8], section: Section) -> Range<usize> {
    let at = section.entry_offset();
    let offset = read_u64(bytes, at).expect("entry") as usize;
    let len = read_u64(bytes, at + 8).expect("entry") as usize;
    offset..offset + len
}

fn put(bytes: &mut [u8], at: usize, new: &[u8]) {
    bytes[at..at + new.len()].copy_from_slice(new);
}

/// The fixture with `damage` applied and every checksum recomputed.
fn resealed(compression: ValuesCompression, damage: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = fixture(compression);
    damage(&mut bytes);
    assert!(reseal(&mut bytes));
    bytes
}

/// Row `r`'s byte range in the fixture file.
fn row(bytes: &[u8], r: usize) -> Range<usize> {
    let width = read_u32(bytes, ROW_WIDTH_OFFSET).expect("width") as usize;
    let start = section(bytes, Section::Rows).start + r * width;
    start..start + width
}

/// Row offset of the time indexes, and the bytes of one, from the header's counts.
fn time_indexes(bytes: &[u8]) -> (usize, usize) {
    let fields = read_u32(bytes, FIELD_COUNT_OFFSET).expect("fields") as usize;
    let slots = read_u32(bytes, TIME_SLOTS_OFFSET).expect("time slots") as usize;
    let width = match slots {
        1 => 0,
        2..=256 => 1,
        _ => 2,
    };
    (
        ROW_PRESENCE_OFFSET + 2 * fields.div_ceil(8) + 8 * slots,
        width,
    )
}

/// File offset of field `i`'s time index in row `r`.
fn time_index(bytes: &[u8], r: usize, i: usize) -> usize {
    let (at, width) = time_indexes(bytes);
    row(bytes, r).start + at + i * width
}

/// File offset of field `i`'s value in row `r`.
fn value(bytes: &[u8], r: usize, i: usize) -> usize {
    let fields = read_u32(bytes, FIELD_COUNT_OFFSET).expect("fields") as usize;
    let (at, width) = time_indexes(bytes);
    let record = section(bytes, Section::Schema).start + i * FIELD_RECORD_LEN;
    let rel = read_u32(bytes, record + FIELD_SLOT_OFFSET).expect("value offset") as usize;
    row(bytes, r).start + at + fields * width + rel
}

const NULL_BITMAP: usize = ROW_PRESENCE_OFFSET + 2; // the fixture's 9 fields: 2 bytes

#[test]
fn every_truncation_is_reported_as_truncated() {
    for compression in [ValuesCompression::Never, ValuesCompression::Always] {
        let bytes = fixture(compression);
        for len in 0..bytes.len() {
            match open(&bytes[..len]) {
                Err(SegmentError::Truncated { have, .. }) => assert_eq!(have, len as u64),
                other => panic!("length {len}: {other:?}"),
            }
        }
        assert!(open(&bytes).is_ok());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            open(&longer),
            Err(SegmentError::TrailingBytes { expected, have })
                if expected == bytes.len() as u64 && have == expected + 1
        ));
    }
}

#[test]
fn every_bit_flip_is_detected() {
    for compression in [ValuesCompression::Never, ValuesCompression::Always] {
        let bytes = fixture(compression);
        let sections: Vec<(Section, Range<usize>)> = Section::ALL
            .iter()
            .map(|&s| (s, section(&bytes, s)))
            .collect();
        let mut flipped = bytes.clone();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                flipped[at] ^= 1 << bit;
                let err = open(&flipped).expect_err("a flipped bit is detected");
                let ok = match at {
                    _ if at < VERSION_OFFSET => matches!(err, SegmentError::BadMagic { .. }),
                    _ if at < HEADER_LEN_OFFSET => {
                        matches!(err, SegmentError::UnsupportedVersion { supported: 2, .. })
                    }
                    _ if at < FLAGS_OFFSET => matches!(err, SegmentError::Corrupt { .. }),
                    _ if at < HEADER_LEN => {
                        matches!(err, SegmentError::ChecksumMismatch { what: "header", .. })
                    }
                    _ => {
                        let (s, _) = sections
                            .iter()
                            .find(|(_, r)| r.contains(&at))
                            .expect("every byte is in a section");
                        matches!(err, SegmentError::ChecksumMismatch { what, .. } if what == s.name())
                    }
                };
                assert!(ok, "byte {at} bit {bit}: {err}");
                flipped[at] ^= 1 << bit;
            }
        }
    }
}

#[test]
fn checksum_errors_carry_both_values() {
    let mut bytes = fixture(ValuesCompression::Never);
    let rows = section(&bytes, Section::Rows);
    bytes[rows.start + 20] ^= 0x10;
    let err = open(&bytes).expect_err("corrupt");
    let SegmentError::ChecksumMismatch {
        what,
        expected,
        got,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(what, "rows section");
    assert_eq!(
        expected,
        read_u32(&bytes, Section::Rows.entry_offset() + 16).expect("crc")
    );
    assert_eq!(got, crc32fast::hash(&bytes[rows]));
    assert_ne!(expected, got);
}

#[test]
fn newer_versions_are_refused_before_length_checks() {
    let mut bytes = fixture(ValuesCompression::Never);
    put(&mut bytes, VERSION_OFFSET, &3u32.to_le_bytes());
    for len in [12, 100, bytes.len()] {
        let err = open(&bytes[..len]).expect_err("newer");
        assert!(
            matches!(
                err,
                SegmentError::UnsupportedVersion {
                    found: 3,
                    supported: 2
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("version 3 is not supported"),
            "{err}"
        );
    }
    assert!(matches!(
        open(b"PK\x03\x04 a zip file"),
        Err(SegmentError::BadMagic { .. })
    ));
    assert!(matches!(
        open(&MAGIC[..5]),
        Err(SegmentError::Truncated { .. })
    ));
}

/// Header fields set to hostile values, checksums recomputed.
#[test]
fn hostile_headers_are_rejected() {
    use ValuesCompression::{Always, Never};
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, ValuesCompression, Damage)> = vec![
        (
            "huge entity count",
            Never,
            Box::new(|b| put(b, ENTITY_COUNT_OFFSET, &u32::MAX.to_le_bytes())),
        ),
        (
            "max entity count",
            Never,
            Box::new(|b| put(b, ENTITY_COUNT_OFFSET, &(u32::MAX - 1).to_le_bytes())),
        ),
        (
            "one more entity",
            Never,
            Box::new(|b| {
                let n = read_u32(b, ENTITY_COUNT_OFFSET).expect("n");
                put(b, ENTITY_COUNT_OFFSET, &(n + 1).to_le_bytes());
            }),
        ),
        (
            "huge slot count",
            Never,
            Box::new(|b| put(b, SLOT_COUNT_OFFSET, &(1u64 << 62).to_le_bytes())),
        ),
        (
            "slot count not a power of two",
            Never,
            Box::new(|b| put(b, SLOT_COUNT_OFFSET, &15u64.to_le_bytes())),
        ),
        (
            "slot count below 2n",
            Never,
            Box::new(|b| put(b, SLOT_COUNT_OFFSET, &8u64.to_le_bytes())),
        ),
        (
            "huge field count",
            Never,
            Box::new(|b| put(b, FIELD_COUNT_OFFSET, &u32::MAX.to_le_bytes())),
        ),
        (
            "zero field count",
            Never,
            Box::new(|b| put(b, FIELD_COUNT_OFFSET, &0u32.to_le_bytes())),
        ),
        (
            "row width",
            Never,
            Box::new(|b| put(b, ROW_WIDTH_OFFSET, &158u32.to_le_bytes())),
        ),
        (
            "zero time slots",
            Never,
            Box::new(|b| put(b, TIME_SLOTS_OFFSET, &0u32.to_le_bytes())),
        ),
        (
            "more time slots than fields",
            Never,
            Box::new(|b| put(b, TIME_SLOTS_OFFSET, &10u32.to_le_bytes())),
        ),
        (
            "one time slot fewer",
            Never,
            Box::new(|b| {
                let t = read_u32(b, TIME_SLOTS_OFFSET).expect("t");
                put(b, TIME_SLOTS_OFFSET, &(t - 1).to_le_bytes());
            }),
        ),
        (
            "reserved header bytes",
            Never,
            Box::new(|b| put(b, HEADER_RESERVED_OFFSET, &1u32.to_le_bytes())),
        ),
        (
            "fingerprint",
            Never,
            Box::new(|b| b[FINGERPRINT_OFFSET] ^= 1),
        ),
        (
            "unknown flag",
            Never,
            Box::new(|b| put(b, FLAGS_OFFSET, &2u32.to_le_bytes())),
        ),
        (
            "header length",
            Never,
            Box::new(|b| put(b, HEADER_LEN_OFFSET, &200u32.to_le_bytes())),
        ),
        (
            "values section past EOF",
            Never,
            Box::new(|b| {
                put(
                    b,
                    Section::Values.entry_offset() + 8,
                    &(1u64 << 40).to_le_bytes(),
                );
            }),
        ),
        (
            "values length overflows",
            Never,
            Box::new(|b| {
                put(
                    b,
                    Section::Values.entry_offset() + 8,
                    &u64::MAX.to_le_bytes(),
                );
            }),
        ),
        (
            "rows overlap the header",
            Never,
            Box::new(|b| put(b, Section::Rows.entry_offset(), &0u64.to_le_bytes())),
        ),
        (
            "index overlaps the schema",
            Never,
            Box::new(|b| {
                let schema = read_u64(b, Section::Schema.entry_offset()).expect("offset");
                put(b, Section::Index.entry_offset(), &schema.to_le_bytes());
            }),
        ),
        (
            "schema shorter, index longer",
            Never,
            Box::new(|b| {
                let at = Section::Schema.entry_offset() + 8;
                let len = read_u64(b, at).expect("len");
                put(b, at, &(len - 8).to_le_bytes());
            }),
        ),
        (
            "raw length differs",
            Never,
            Box::new(|b| {
                let raw = read_u64(b, VALUES_RAW_LEN_OFFSET).expect("raw");
                put(b, VALUES_RAW_LEN_OFFSET, &(raw + 1).to_le_bytes());
            }),
        ),
        (
            "huge raw length, compressed",
            Always,
            Box::new(|b| put(b, VALUES_RAW_LEN_OFFSET, &(1u64 << 50).to_le_bytes())),
        ),
        (
            "raw length off by one, compressed",
            Always,
            Box::new(|b| {
                let raw = read_u64(b, VALUES_RAW_LEN_OFFSET).expect("raw");
                put(b, VALUES_RAW_LEN_OFFSET, &(raw - 1).to_le_bytes());
            }),
        ),
        (
            "compressed flag on raw values",
            Never,
            Box::new(|b| put(b, FLAGS_OFFSET, &1u32.to_le_bytes())),
        ),
        (
            "raw flag on compressed values",
            Always,
            Box::new(|b| put(b, FLAGS_OFFSET, &0u32.to_le_bytes())),
        ),
    ];
    for (name, compression, damage) in cases {
        let bytes = resealed(compression, |b| damage(b));
        let err = open(&bytes).expect_err(name);
        assert!(
            !matches!(err, SegmentError::ChecksumMismatch { .. }),
            "{name}: resealed, so the structural check must fire: {err}"
        );
    }
}

/// Section contents that break one rule each, checksums recomputed.
#[test]
fn hostile_contents_are_rejected() {
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let schema_field = |b: &[u8], i: usize, field: usize| {
        section(b, Section::Schema).start + i * FIELD_RECORD_LEN + field
    };
    let cases: Vec<(&str, Damage)> = vec![
        (
            "empty entity id",
            Box::new(|b| {
                let at = row(b, 0).start + ROW_KEY_LEN_OFFSET;
                put(b, at, &0u32.to_le_bytes());
            }),
        ),
        (
            "entity id too long",
            Box::new(|b| {
                let at = row(b, 0).start + ROW_KEY_LEN_OFFSET;
                put(b, at, &2000u32.to_le_bytes());
            }),
        ),
        (
            "entity id outside keys",
            Box::new(|b| {
                let at = row(b, 0).start + ROW_KEY_OFFSET_OFFSET;
                put(b, at, &(u64::MAX - 1).to_le_bytes());
            }),
        ),
        (
            "bool byte 2",
            Box::new(|b| {
                let at = value(b, 0, 3);
                b[at] = 2;
            }),
        ),
        (
            "string outside values",
            Box::new(|b| {
                let at = value(b, 0, 4) + 8;
                put(b, at, &1000u32.to_le_bytes());
            }),
        ),
        (
            "string offset overflows",
            Box::new(|b| {
                let at = value(b, 0, 4);
                put(b, at, &u64::MAX.to_le_bytes());
            }),
        ),
        (
            "string not UTF-8",
            Box::new(|b| {
                let value = read_u64(b, value(b, 0, 4)).expect("offset") as usize;
                let at = section(b, Section::Values).start + value;
                b[at] = 0xff;
            }),
        ),
        (
            "vector of the wrong length",
            Box::new(|b| {
                let at = value(b, 0, 6) + 8;
                put(b, at, &8u32.to_le_bytes());
            }),
        ),
        (
            "null without presence",
            Box::new(|b| {
                let at = row(b, 2).start + NULL_BITMAP;
                b[at] |= 0b10;
            }),
        ),
        (
            "absent value not zero",
            Box::new(|b| {
                let at = value(b, 2, 1);
                b[at] = 1;
            }),
        ),
        (
            "absent time index not zero",
            Box::new(|b| {
                let at = time_index(b, 2, 1);
                b[at] = 1;
            }),
        ),
        (
            "time index past the time table",
            Box::new(|b| {
                let at = time_index(b, 0, 0);
                b[at] = 9;
            }),
        ),
        (
            "null value not zero",
            Box::new(|b| {
                let at = value(b, 1, 0);
                b[at] = 1;
            }),
        ),
        (
            "presence bit past the last field",
            Box::new(|b| {
                let at = row(b, 0).start + ROW_PRESENCE_OFFSET + 1;
                b[at] |= 0x80;
            }),
        ),
        (
            "slot names a missing row",
            Box::new(|b| {
                let index = section(b, Section::Index);
                let at = (index.start..index.end)
                    .step_by(8)
                    .find(|&at| read_u64(b, at) != Some(0))
                    .expect("occupied");
                put(b, at, &100u32.to_le_bytes());
            }),
        ),
        (
            "slot with a tag and no row",
            Box::new(|b| {
                let index = section(b, Section::Index);
                let at = (index.start..index.end)
                    .step_by(8)
                    .find(|&at| read_u64(b, at) == Some(0))
                    .expect("empty");
                put(b, at + 4, &0xdead_beefu32.to_le_bytes());
            }),
        ),
        (
            "two slots swapped",
            Box::new(|b| {
                let index = section(b, Section::Index);
                let occupied: Vec<usize> = (index.start..index.end)
                    .step_by(8)
                    .filter(|&at| read_u64(b, at) != Some(0))
                    .collect();
                let (x, y) = (occupied[0], occupied[1]);
                let (sx, sy) = (b[x..x + 8].to_vec(), b[y..y + 8].to_vec());
                put(b, x, &sy);
                put(b, y, &sx);
            }),
        ),
        (
            "entity moved out of its slot",
            Box::new(|b| {
                let index = section(b, Section::Index);
                let slots: Vec<usize> = (index.start..index.end).step_by(8).collect();
                let (i, &at) = slots
                    .iter()
                    .enumerate()
                    .find(|&(_, &at)| read_u64(b, at) != Some(0))
                    .expect("occupied");
                // Move it to an empty slot after an empty gap: unreachable by probing.
                let target = (1..slots.len())
                    .map(|d| (i + d) % slots.len())
                    .filter(|&j| read_u64(b, slots[j]) == Some(0))
                    .nth(1)
                    .expect("empty slots");
                let value = b[at..at + 8].to_vec();
                put(b, slots[target], &value);
                put(b, at, &[0; 8]);
            }),
        ),
        (
            "unknown type tag",
            Box::new(move |b| {
                let at = schema_field(b, 0, FIELD_TYPE_OFFSET);
                b[at] = 9;
            }),
        ),
        (
            "null type tag",
            Box::new(move |b| {
                let at = schema_field(b, 0, FIELD_TYPE_OFFSET);
                b[at] = 0;
            }),
        ),
        (
            "reserved byte set",
            Box::new(move |b| {
                let at = schema_field(b, 0, FIELD_TYPE_OFFSET + 1);
                b[at] = 1;
            }),
        ),
        (
            "dimension on a scalar",
            Box::new(move |b| {
                let at = schema_field(b, 0, FIELD_DIM_OFFSET);
                b[at] = 1;
            }),
        ),
        (
            "vector dimension changed",
            Box::new(move |b| {
                let at = schema_field(b, 6, FIELD_DIM_OFFSET);
                b[at] = 4;
            }),
        ),
        (
            "vector dimension zero",
            Box::new(move |b| {
                let at = schema_field(b, 6, FIELD_DIM_OFFSET);
                put(b, at, &0u32.to_le_bytes());
            }),
        ),
        (
            "slot offset moved",
            Box::new(move |b| {
                let at = schema_field(b, 1, FIELD_SLOT_OFFSET);
                b[at] += 1;
            }),
        ),
        (
            "duplicate feature id",
            Box::new(move |b| {
                let at = schema_field(b, 8, FIELD_ID_OFFSET);
                put(b, at, &1u32.to_le_bytes());
            }),
        ),
        (
            "feature id changed",
            Box::new(move |b| {
                let at = schema_field(b, 8, FIELD_ID_OFFSET);
                put(b, at, &11u32.to_le_bytes());
            }),
        ),
        (
            "group name not a group name",
            Box::new(|b| {
                let at = section(b, Section::Schema).start + 9 * FIELD_RECORD_LEN + 2;
                b[at] = b'F';
            }),
        ),
        (
            "group name not UTF-8",
            Box::new(|b| {
                let at = section(b, Section::Schema).start + 9 * FIELD_RECORD_LEN + 2;
                b[at] = 0xc3;
            }),
        ),
    ];
    for (name, damage) in cases {
        let bytes = resealed(ValuesCompression::Never, |b| damage(b));
        let err = open(&bytes).expect_err(name);
        assert!(
            matches!(
                err,
                SegmentError::Corrupt { .. } | SegmentError::DuplicateEntity { .. }
            ),
            "{name}: {err}"
        );
    }
}

#[test]
fn duplicate_ids_in_a_file_are_rejected() {
    // Point bob's row at alice's id (offset, length and inline prefix).
    let bytes = resealed(ValuesCompression::Never, |b| {
        let alice = row(b, 0).start;
        let prefix = b[alice + ROW_KEY_PREFIX_OFFSET..alice + ROW_PRESENCE_OFFSET].to_vec();
        let at = row(b, 1).start;
        put(b, at + ROW_KEY_OFFSET_OFFSET, &0u64.to_le_bytes());
        put(b, at + ROW_KEY_LEN_OFFSET, &5u32.to_le_bytes());
        put(b, at + ROW_KEY_PREFIX_OFFSET, &prefix);
    });
    let err = open(&bytes).expect_err("duplicate");
    assert!(
        matches!(&err, SegmentError::DuplicateEntity { entity_id, first: 0, second: 1 } if entity_id == b"alice"),
        "{err}"
    );
}

#[test]
fn damaged_zstd_frames_are_rejected() {
    let clean = fixture(ValuesCompression::Always);
    let values = section(&clean, Section::Values);
    for at in values {
        for bit in [0, 3, 7] {
            let mut bytes = clean.clone();
            bytes[at] ^= 1 << bit;
            assert!(reseal(&mut bytes));
            // Either zstd notices, or the decompressed values break a row check; a
            // flip zstd tolerates (none seen) must still decode to valid rows.
            if let Ok(segment) = Segment::open(bytes.as_slice()) {
                assert_eq!(segment.iter().count(), segment.entity_count());
            }
        }
    }
}
