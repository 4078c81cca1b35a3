//! The JSON text of a float, for every hand-written JSON answer (single-entity reads,
//! ranking answers, the Feast-compatible endpoint): the shortest text that reads back
//! as the same float, exactly as serde_json writes it (the `zmij` algorithm serde_json
//! uses; a positive exponent carries its sign, `1e+17`), and `null` for a value that is
//! not finite, which JSON cannot hold.
//!
//! One owner so that every answer writes a float the same way, and so that serde_json's
//! own encoders (`super::json`) and these agree byte for byte.
//!
//! Stateless; safe from any thread.

/// Appends `v`, or `null` when it is not finite.
#[inline]
pub fn push_f32(out: &mut Vec<u8>, v: f32) {
    push(out, v.is_finite().then_some(v));
}

/// Appends `v`, or `null` when it is not finite.
#[inline]
pub fn push_f64(out: &mut Vec<u8>, v: f64) {
    push(out, v.is_finite().then_some(v));
}

/// Appends `[v0,v1,..]`, each component as [`push_f32`] writes it (a vector value).
pub fn push_f32_array(out: &mut Vec<u8>, v: &[f32]) {
    out.push(b'[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_f32(out, *x);
    }
    out.push(b']');
}

/// A finite float's text, or `null`.
#[inline]
fn push<F: zmij::Float>(out: &mut Vec<u8>, finite: Option<F>) {
    match finite {
        Some(v) => out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Floats of every magnitude, both signs, halfway cases and the specials.
    fn samples_f32() -> impl Iterator<Item = f32> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let specials = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-7,
            1e16,
            1e17,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
            1.0e-45,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        specials.into_iter().chain((0..200_000).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f32::from_bits((x >> 32) as u32)
        }))
    }

    #[test]
    fn floats_are_written_as_serde_json_writes_them() {
        for v in samples_f32() {
            let mut ours = Vec::new();
            push_f32(&mut ours, v);
            let theirs = serde_json::to_vec(&v).expect("a float always encodes");
            assert_eq!(ours, theirs, "f32 {v:e}");

            let w = f64::from(v) * 1.000_000_1;
            let mut ours = Vec::new();
            push_f64(&mut ours, w);
            let theirs = serde_json::to_vec(&w).expect("a float always encodes");
            assert_eq!(ours, theirs, "f64 {w:e}");
        }
    }

    #[test]
    fn finite_floats_read_back_exactly() {
        for v in samples_f32().filter(|v| v.is_finite()) {
            let mut text = Vec::new();
            push_f32(&mut text, v);
            let back: f32 = serde_json::from_slice(&text).expect("valid JSON number");
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
        }
    }

    #[test]
    fn floats_without_a_json_form_are_null() {
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut out = Vec::new();
            push_f32(&mut out, v);
            push_f64(&mut out, f64::from(v));
            assert_eq!(out, b"nullnull");
        }
    }
}
