//! Stateless, portable hashing: every generated value is a pure function of its
//! coordinates, so nothing has to be stored to know what a file holds.

/// One step of the splitmix64 generator (Steele, Lea & Flood), used as a 64-bit mixer.
pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a seed and a list of coordinates (stream, entity, slot, sub-slot...).
pub(super) fn mix(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(splitmix64(seed), |acc, &part| splitmix64(acc ^ part))
}

/// A float in `[0, 1)` with 24 random bits: exactly representable, no rounding anywhere.
pub(super) fn unit_f32(h: u64) -> f32 {
    // The top 24 bits fit an f32 mantissa exactly; scaling by 2^-24 is exact too.
    (h >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// A float in `[-1, 1)` with 24 random bits, also exact.
pub(super) fn signed_f32(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / 8_388_608.0) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // Reference: splitmix64 seeded with 0 yields 0xE220A8397B1DCDAF first.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn unit_floats_stay_in_range() {
        for h in [0, u64::MAX, 1 << 63, 0x1234_5678_9ABC_DEF0] {
            let u = unit_f32(h);
            assert!((0.0..1.0).contains(&u), "{u}");
            let s = signed_f32(h);
            assert!((-1.0..1.0).contains(&s), "{s}");
        }
    }
}
