//! Runs the fuzz targets' bodies (`fuzz/src/lib.rs`, included as `fuzz_bodies`) on
//! stable Rust over the fixtures, every truncation of them, deterministic random
//! mutations (raw and resealed), and random codec inputs; and over `fuzz/corpus/*` and
//! `fuzz/artifacts/*` when a local fuzzing run left them. CI thus exercises the targets
//! without libFuzzer.

use std::path::Path;

use featstore_format::segment::ValuesCompression;

use crate::common::{fixture_path, fixture_writer};
use crate::fuzz_bodies::{
    batch_row, batch_row_default_schema, codec_key, codec_value, reclog_read, segment_open,
};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        std::fs::read(fixture_path("segment_v2.seg")).expect("fixture"),
        std::fs::read(fixture_path("segment_v2_zstd.seg")).expect("fixture"),
    ];
    seeds.push(
        fixture_writer()
            .compression(ValuesCompression::Auto)
            .finish_to_vec()
            .expect("writes"),
    );
    seeds
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            out.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(out.len());
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => out[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            3 => out.truncate(at),
            4 => {
                let len = rng.below(8).min(out.len() - at);
                let chunk = out[at..at + len].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, chunk);
            }
            _ => {
                // Overwrite a little-endian u32 with an interesting number.
                let v: u32 = [0, 1, 2, 0xff, 0xffff, u32::MAX, u32::MAX - 1, 1 << 31][rng.below(8)];
                for (i, b) in v.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = b;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn segment_open_over_fixtures_truncations_and_mutations() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in seeds() {
        segment_open(&seed);
        for len in (0..seed.len()).step_by(7) {
            segment_open(&seed[..len]);
        }
        for _ in 0..3000 {
            segment_open(&mutate(&mut rng, &seed));
        }
    }
}

#[test]
fn codec_bodies_over_random_inputs() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..20_000 {
        let len = rng.below(48);
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Make some inputs well-formed: a plausible key length prefix, a known tag.
        if rng.below(2) == 0 && data.len() >= 2 {
            let id_len = data.len().saturating_sub(6) as u16;
            data[0] = (id_len >> 8) as u8;
            data[1] = id_len as u8;
        }
        codec_key(&data);
        if let Some(tag) = data.first_mut() {
            *tag %= 9;
        }
        codec_value(&data);
    }
}

#[test]
fn reclog_body_over_random_inputs() {
    let mut rng = Rng(0x0dd_ba11_5eed_f00d);
    for _ in 0..5_000 {
        let len = rng.below(200);
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half the inputs go to the model mode (odd first byte).
        if let Some(mode) = data.first_mut()
            && rng.below(2) == 0
        {
            *mode |= 1;
        }
        reclog_read(&data);
    }
}

/// Valid rows of the default schema (every type, nulls, absences, several event
/// times), then mutations of them and random bytes, through the `batch_row` body.
#[test]
fn batch_row_body_over_rows_and_mutations() {
    use featstore_format::codec::row::encode_row;
    use featstore_format::codec::value::encode_value;
    use featstore_format::types::Value;
    let schema = batch_row_default_schema();
    let values = [
        Value::Float32(1.5),
        Value::Int64(-7),
        Value::String("héllo".into()),
        Value::Float32Vector(vec![0.5, f32::NAN]),
        Value::Bool(true),
        Value::Float64(2.25),
        Value::Bytes(vec![0, 255]),
    ];
    let mut rng = Rng(0x0bad_cafe_f00d_1234);
    let mut seeds = Vec::new();
    for mask in [0b111_1111u32, 0b101_0101, 0b000_0001, 0] {
        let encoded: Vec<Vec<u8>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut out = Vec::new();
                let v = if i == 2 && mask == 0b101_0101 {
                    &Value::Null
                } else {
                    v
                };
                encode_value(v, 1000 + (i as i64 % 3) * 7, &mut out);
                out
            })
            .collect();
        let pairs: Vec<(usize, &[u8])> = encoded
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(i, b)| (i, b.as_slice()))
            .collect();
        let mut row = vec![0u8]; // split 0: the schema part is empty, so the default
        encode_row(&schema, &pairs, &mut row).expect("encode");
        seeds.push(row);
    }
    for seed in &seeds {
        batch_row(seed);
        for _ in 0..3000 {
            batch_row(&mutate(&mut rng, seed));
        }
    }
    for _ in 0..5000 {
        let len = rng.below(96);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        batch_row(&data);
    }
}

/// Corpus and crash files from local fuzzing runs (ignored by git), when present.
#[test]
fn local_fuzz_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    type Body = fn(&[u8]);
    let targets: [(&str, Body); 5] = [
        ("segment_open", segment_open),
        ("codec_key", codec_key),
        ("codec_value", codec_value),
        ("reclog_read", reclog_read),
        ("batch_row", batch_row),
    ];
    for (name, body) in targets {
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries.flatten().take(20_000) {
                if let Ok(data) = std::fs::read(entry.path()) {
                    body(&data);
                }
            }
        }
    }
}
