//! `Segment::find_batch` against `find`: hits, misses, ids whose index tag collides,
//! ids longer than the inline key prefix, empty batches and batch sizes around the
//! 16-id chunk, over raw and compressed values sections. (The model's property tests
//! also compare the two, see `model::check_against_model`.)

use featstore_format::segment::{
    FieldSpec, MappedSegment, Segment, SegmentWriter, ValuesCompression, hash64,
};
use featstore_format::types::{TimestampMs, Value};

use crate::common::{ModelRow, Seen, fixture_fields, fixture_path, push_all, seen};

/// What one lookup returned: row number, stored id and every field, or `None`.
type Answer = Option<(usize, Vec<u8>, Vec<Seen>)>;

fn answer(row: Option<featstore_format::segment::Row<'_>>) -> Answer {
    row.map(|row| {
        let fields = (0..row.field_count()).map(|i| seen(row.get(i))).collect();
        (row.index(), row.entity_id().to_vec(), fields)
    })
}

/// Asserts that `find_batch` over `ids` visits 0, 1, ... once each and answers as
/// `find` does, and returns how many ids were found.
pub fn check_batch<D: AsRef<[u8]>>(segment: &Segment<D>, ids: &[Vec<u8>]) -> usize {
    let want: Vec<Answer> = ids.iter().map(|id| answer(segment.find(id))).collect();
    let mut got: Vec<Answer> = Vec::with_capacity(ids.len());
    segment.find_batch(
        ids.len(),
        |i| &ids[i],
        |i, row| {
            assert_eq!(i, got.len(), "visits are in order, once each");
            got.push(answer(row));
        },
    );
    assert_eq!(got.len(), ids.len());
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "id {i} ({:?})", String::from_utf8_lossy(&ids[i]));
    }
    want.iter().filter(|a| a.is_some()).count()
}

/// A row of the fixture schema: an int, a string and a vector, the rest absent.
fn row(id: &[u8], i: i64) -> ModelRow {
    let t: TimestampMs = 1_763_700_000_000 + i;
    let mut fields = vec![None; fixture_fields().len()];
    fields[0] = Some((t, Value::Int64(i)));
    fields[4] = Some((t, Value::String(format!("value of entity {i}"))));
    fields[6] = Some((t, Value::Float32Vector(vec![i as f32, 0.5, -1.0])));
    (id.to_vec(), fields)
}

fn segment_of(ids: &[Vec<u8>], compression: ValuesCompression) -> Segment<Vec<u8>> {
    let mut writer = SegmentWriter::new("batch.test", 1, fixture_fields())
        .expect("schema")
        .compression(compression);
    let rows: Vec<ModelRow> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| row(id, i as i64))
        .collect();
    push_all(&mut writer, &rows);
    let segment = Segment::open(writer.finish_to_vec().expect("writes")).expect("opens");
    assert_eq!(
        segment.values_compressed(),
        compression == ValuesCompression::Always
    );
    segment
}

/// 40-byte ids that share their first 24 bytes: longer than the 16-byte inline
/// prefix, so only the keys section tells them apart.
fn long_id(i: usize) -> Vec<u8> {
    format!("entity-with-a-long-name:{i:016}").into_bytes()
}

#[test]
fn find_batch_agrees_with_find_on_hits_misses_and_every_batch_size() {
    let stored: Vec<Vec<u8>> = (0..150)
        .map(|i| format!("e{i}").into_bytes())
        .chain((0..50).map(long_id))
        .collect();
    // Hits and misses interleaved: absent short ids, absent long ids with a stored
    // id's length and prefix, a stored long id cut to the prefix, the empty id, and
    // repeats.
    let mut lookups: Vec<Vec<u8>> = Vec::new();
    for i in 0..120 {
        lookups.push(format!("e{}", i * 7 % 150).into_bytes());
        lookups.push(format!("x{i}").into_bytes());
        if i % 3 == 0 {
            lookups.push(long_id(i % 50));
            lookups.push(long_id(1000 + i));
            lookups.push(long_id(i)[..16].to_vec());
        }
    }
    lookups.push(Vec::new());
    lookups.push(b"e7".to_vec());
    for compression in [ValuesCompression::Never, ValuesCompression::Always] {
        let segment = segment_of(&stored, compression);
        let found = check_batch(&segment, &lookups);
        assert!(found > 100 && found < lookups.len(), "found {found}");
        for len in [0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 100, 255] {
            check_batch(&segment, &lookups[..len]);
            check_batch(&segment, &lookups[lookups.len() - len..]);
        }
        // All stored ids in one batch, each found at its own row.
        assert_eq!(check_batch(&segment, &stored), stored.len());
    }
}

#[test]
fn find_batch_with_colliding_tags() {
    // Pairs of ids whose hashes agree in the tag (high 32 bits) and the low 6 bits: in
    // a segment of at most 16 entities (at most 32 slots) both have the same home slot,
    // and the probe meets the other's slot with a matching tag. find_batch's warm-up
    // pass fetches the first tag match's row, which may be the wrong one.
    let pairs: [(&[u8], &[u8]); 3] = [
        (b"t683046", b"t993913"),
        (b"t452240", b"t1230008"),
        (b"t54414", b"t1285588"),
    ];
    for (a, b) in pairs {
        let (ha, hb) = (hash64(a), hash64(b));
        assert_eq!(ha >> 32, hb >> 32, "{a:?} and {b:?}: tags");
        assert_eq!(ha & 0x3f, hb & 0x3f, "{a:?} and {b:?}: low bits");
    }
    let as_vec = |ids: &[&[u8]]| ids.iter().map(|id| id.to_vec()).collect::<Vec<_>>();
    // Both of the first pair stored (the second behind the first), one of each other
    // pair; every id of every pair looked up, in both orders.
    let stored = as_vec(&[
        pairs[0].0, pairs[0].1, pairs[1].0, pairs[2].1, b"other", b"ids",
    ]);
    let lookups = as_vec(&[
        pairs[0].1, pairs[0].0, pairs[1].1, pairs[1].0, pairs[2].0, pairs[2].1, b"other",
    ]);
    for compression in [ValuesCompression::Never, ValuesCompression::Always] {
        let segment = segment_of(&stored, compression);
        assert_eq!(check_batch(&segment, &lookups), 5);
        let reversed: Vec<Vec<u8>> = lookups.iter().rev().cloned().collect();
        assert_eq!(check_batch(&segment, &reversed), 5);
        for (id, want) in [
            (pairs[1].1, None),
            (pairs[2].0, None),
            (pairs[0].1, Some(1)),
        ] {
            segment.find_batch(
                1,
                |_| id,
                |_, row| {
                    assert_eq!(row.map(|r| r.index()), want, "{id:?}");
                },
            );
        }
    }
}

#[test]
fn empty_batches_and_empty_segments() {
    let segment = segment_of(&[b"a".to_vec()], ValuesCompression::Never);
    segment.find_batch(
        0,
        |_| -> &[u8] { unreachable!("no ids") },
        |_, _| unreachable!("no visits"),
    );
    let empty = segment_of(&[], ValuesCompression::Never);
    assert_eq!(empty.entity_count(), 0);
    let lookups: Vec<Vec<u8>> = (0..40).map(|i| format!("e{i}").into_bytes()).collect();
    assert_eq!(check_batch(&empty, &lookups), 0);
    assert_eq!(check_batch(&empty, &[]), 0);
}

#[test]
fn find_batch_over_the_fixtures() {
    let lookups: Vec<Vec<u8>> = crate::common::fixture_rows()
        .into_iter()
        .map(|(id, _)| id)
        .chain([
            b"nobody".to_vec(),
            Vec::new(),
            vec![b'x'; 63],
            vec![b'x'; 65],
        ])
        .collect();
    for name in ["segment_v2.seg", "segment_v2_zstd.seg"] {
        let mapped = MappedSegment::open(fixture_path(name)).expect("fixture maps");
        assert_eq!(check_batch(&mapped, &lookups), 6, "{name}");
    }
}

/// Many entities: probe paths collide and wrap, and batches span many chunks.
#[test]
fn find_batch_over_many_similar_ids() {
    let fields = vec![FieldSpec {
        feature_id: 1,
        field_type: featstore_format::types::DType::Int64,
    }];
    let mut writer = SegmentWriter::new("many", 1, fields).expect("schema");
    for i in 0..20_000i64 {
        let input = featstore_format::segment::FieldInput::Int64(i);
        writer
            .push(format!("user:{i:08}").as_bytes(), &[Some((i, input))])
            .expect("push");
    }
    let segment = Segment::open(writer.finish_to_vec().expect("writes")).expect("opens");
    let lookups: Vec<Vec<u8>> = (0..25_000)
        .map(|i| format!("user:{:08}", (i * 7919) % 25_000).into_bytes())
        .collect();
    assert_eq!(check_batch(&segment, &lookups), 20_000);
}
