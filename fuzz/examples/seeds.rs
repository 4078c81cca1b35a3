//! Writes seed corpora for the fuzz targets into `fuzz/corpus/<target>/` (ignored by
//! git): the checked-in segment fixtures, small segments of every type with and without
//! compression, and well-formed keys and values. Run from `fuzz/`:
//! `cargo run --example seeds`.

use std::path::Path;

use featstore_format::codec::key::encode_key_into;
use featstore_format::codec::value::encode_value;
use featstore_format::segment::{FieldInput, FieldSpec, SegmentWriter, ValuesCompression};
use featstore_format::types::{DType, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let write = |target: &str, name: String, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };

    for fixture in ["segment_v2.seg", "segment_v2_zstd.seg"] {
        let path = root.join("../crates/format/tests/fixtures").join(fixture);
        write("segment_open", fixture.to_owned(), &std::fs::read(path)?)?;
    }
    let types = [
        DType::Int64,
        DType::Float64,
        DType::Float32,
        DType::Bool,
        DType::String,
        DType::Bytes,
        DType::Float32Vector { dim: 2 },
    ];
    for (i, dtype) in types.iter().enumerate() {
        for (c, compression) in [ValuesCompression::Never, ValuesCompression::Always]
            .into_iter()
            .enumerate()
        {
            let fields = vec![
                FieldSpec {
                    feature_id: 1,
                    field_type: *dtype,
                },
                FieldSpec {
                    feature_id: 2,
                    field_type: DType::String,
                },
            ];
            let mut writer = SegmentWriter::new("seed", 1, fields)?.compression(compression);
            for e in 0..4u8 {
                let value = match dtype {
                    DType::Int64 => Value::Int64(i64::from(e)),
                    DType::Float64 => Value::Float64(f64::from(e)),
                    DType::Float32 => Value::Float32(f32::from(e)),
                    DType::Bool => Value::Bool(e % 2 == 0),
                    DType::String => Value::String("s".repeat(usize::from(e))),
                    DType::Bytes => Value::Bytes(vec![e; usize::from(e)]),
                    DType::Float32Vector { .. } => Value::Float32Vector(vec![f32::from(e); 2]),
                };
                let name = "n".repeat(usize::from(e) * 3);
                let first = match e {
                    0 => None,
                    1 => Some((1, FieldInput::Null)),
                    _ => Some((i64::from(e), FieldInput::from(&value))),
                };
                writer.push(&[b'e', e], &[first, Some((7, FieldInput::Str(&name)))])?;
            }
            write(
                "segment_open",
                format!("type{i}-c{c}.seg"),
                &writer.finish_to_vec()?,
            )?;
        }
    }

    for (i, (id, fid)) in [(&b"u7"[..], 5u32), (b"x", 0), (&[0xff; 1024][..], u32::MAX)]
        .into_iter()
        .enumerate()
    {
        let mut key = Vec::new();
        encode_key_into(id, fid, &mut key)?;
        write("codec_key", format!("key{i}"), &key)?;
    }
    let values = [
        Value::Null,
        Value::Int64(-1),
        Value::Float64(0.5),
        Value::Float32(1.5),
        Value::Bool(true),
        Value::String("héllo".into()),
        Value::Bytes(vec![0, 1, 2]),
        Value::Float32Vector(vec![1.0, -2.0]),
    ];
    for (i, value) in values.iter().enumerate() {
        let mut bytes = Vec::new();
        encode_value(value, 1000, &mut bytes);
        write("codec_value", format!("value{i}"), &bytes)?;
    }
    // batch_row: byte 0 = 0 (no schema part: the target's default schema), then rows
    // holding every value, a null and an absence, at one and at several event times.
    let schema = featstore_fuzz::batch_row_default_schema();
    let row_values = [
        Value::Float32(1.5),
        Value::Int64(-7),
        Value::String("red".into()),
        Value::Float32Vector(vec![0.5, 2.0]),
        Value::Bool(true),
        Value::Null,
        Value::Bytes(vec![0, 255]),
    ];
    for (n, times) in [[1000i64; 7], [1000, 1001, 1002, 1000, 1001, 1002, 1000]]
        .iter()
        .enumerate()
    {
        let encoded: Vec<Vec<u8>> = row_values
            .iter()
            .zip(times)
            .map(|(v, t)| {
                let mut out = Vec::new();
                encode_value(v, *t, &mut out);
                out
            })
            .collect();
        let pairs: Vec<(usize, &[u8])> = encoded
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 || n == 0)
            .map(|(i, b)| (i, b.as_slice()))
            .collect();
        let mut row = vec![0u8];
        featstore_format::codec::row::encode_row(&schema, &pairs, &mut row)?;
        write("batch_row", format!("row{n}"), &row)?;
    }
    Ok(())
}
