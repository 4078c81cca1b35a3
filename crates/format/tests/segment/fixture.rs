//! The checked-in fixtures: `segment_v2.seg` (values stored raw) and
//! `segment_v2_zstd.seg` (values compressed), written by format version 2, and
//! `segment_v1.seg`, the same rows in format version 1, which this build refuses.
//!
//! They pin the format: a change to the writer that alters their bytes fails
//! `writer_still_produces_the_fixtures`, and a reader that can no longer open them fails
//! `fixtures_open_and_hold_their_rows`. To re-create them after a deliberate format
//! change (which needs a version bump, see `storage-format.md`), run the tests with
//! `FEATSTORE_BLESS_FIXTURES=1`.

use featstore_format::segment::{MappedSegment, Segment, SegmentError, ValuesCompression};

use crate::common::{expect, fixture_path, fixture_rows, fixture_writer, seen};

const FIXTURES: [(&str, ValuesCompression); 2] = [
    ("segment_v2.seg", ValuesCompression::Never),
    ("segment_v2_zstd.seg", ValuesCompression::Always),
];

fn check<D: AsRef<[u8]>>(segment: &Segment<D>, compressed: bool) {
    assert_eq!(segment.group(), "fixture.demo");
    assert_eq!(segment.group_version(), 42);
    assert_eq!(segment.schema_fingerprint(), 0xe0e0_84dc_9591_5dbe);
    assert_eq!(segment.values_compressed(), compressed);
    assert_eq!(segment.fields().len(), 9);
    assert_eq!(segment.field_index(10), Some(8));
    assert_eq!(segment.field_index(9), None);
    let rows = fixture_rows();
    assert_eq!(segment.entity_count(), rows.len());
    for (index, (id, fields)) in rows.iter().enumerate() {
        let row = segment.find(id).expect("fixture entity is found");
        assert_eq!(row.index(), index);
        assert_eq!(row.entity_id(), id.as_slice());
        for (i, field) in fields.iter().enumerate() {
            assert_eq!(seen(row.get(i)), expect(field), "entity {id:?} field {i}");
        }
    }
    assert!(segment.find(b"nobody").is_none());
    assert!(segment.find(b"").is_none());
    let ids: Vec<&[u8]> = segment.iter().map(|r| r.entity_id()).collect();
    let want: Vec<&[u8]> = rows.iter().map(|(id, _)| id.as_slice()).collect();
    assert_eq!(ids, want);
}

#[test]
fn fixtures_open_and_hold_their_rows() {
    for (name, compression) in FIXTURES {
        let bytes = std::fs::read(fixture_path(name)).expect("fixture is checked in");
        let segment = Segment::open(bytes).expect("fixture opens");
        check(&segment, compression == ValuesCompression::Always);
        let mapped = MappedSegment::open(fixture_path(name)).expect("fixture maps");
        check(&mapped, compression == ValuesCompression::Always);
    }
}

#[test]
fn writer_still_produces_the_fixtures() {
    for (name, compression) in FIXTURES {
        let bytes = fixture_writer()
            .compression(compression)
            .finish_to_vec()
            .expect("writes");
        let path = fixture_path(name);
        if std::env::var_os("FEATSTORE_BLESS_FIXTURES").is_some() {
            std::fs::write(&path, &bytes).expect("bless fixture");
        }
        let stored = std::fs::read(&path).expect("fixture is checked in");
        assert!(
            stored == bytes,
            "{name}: the writer's output changed; see this module's doc"
        );
    }
}

#[test]
fn version_1_files_are_refused_with_the_version_named() {
    let bytes = std::fs::read(fixture_path("segment_v1.seg")).expect("fixture is checked in");
    let err = Segment::open(bytes).expect_err("version 1 is refused");
    assert!(
        matches!(
            err,
            SegmentError::UnsupportedVersion {
                found: 1,
                supported: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rebuild the segment"), "{err}");
}
