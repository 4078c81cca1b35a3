//! The random source and the entity-id samplers.
//!
//! [`Rng`] is SplitMix64: tiny, fast and deterministic per seed, so every connection
//! draws its own reproducible stream without locking. [`KeyDist`] picks an entity
//! index in `0..n`: uniformly, or Zipf-distributed with exponent `s`, where index `k`
//! (rank `k + 1`) has probability `(k + 1)^-s / H(n, s)`. The Zipf sampler inverts a
//! precomputed cumulative table (8 bytes per entity; 8 MB for a million) with a binary
//! search, which is exact for any `s >= 0`. Hot entities are the low indices (`p0`,
//! `p1`, ...), the same ones in every system compared.
//!
//! Thread-safety: a [`KeyDist`] is immutable after construction and shared freely; an
//! [`Rng`] belongs to one task.

use std::sync::Arc;

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state, full period, passes BigCrush
/// when used as here (one output per step).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A float uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An integer uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (the bias is
    /// below 2^-32 for any `n` under 2^32, irrelevant for load generation).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Why a distribution could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum KeyDistError {
    /// `n` was zero.
    #[error("the key space is empty: need at least one entity")]
    Empty,
    /// The Zipf exponent was negative or not finite.
    #[error("zipf exponent {0} is invalid: use a finite s >= 0")]
    BadExponent(f64),
    /// The text form did not parse.
    #[error("key distribution `{0}`: expected `uniform` or `zipf:S` (e.g. zipf:0.99)")]
    Syntax(String),
}

/// The shape of a distribution, before it is sized: `uniform` or `zipf:S`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DistKind {
    /// Every index equally likely.
    Uniform,
    /// Zipf with this exponent.
    Zipf(f64),
}

impl std::str::FromStr for DistKind {
    type Err = KeyDistError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "uniform" {
            return Ok(DistKind::Uniform);
        }
        let s: f64 = text
            .strip_prefix("zipf:")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| KeyDistError::Syntax(text.to_owned()))?;
        if !s.is_finite() || s < 0.0 {
            return Err(KeyDistError::BadExponent(s));
        }
        Ok(DistKind::Zipf(s))
    }
}

impl std::fmt::Display for DistKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DistKind::Uniform => f.write_str("uniform"),
            DistKind::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// A sampler of entity indices in `0..n`. Cloning shares the Zipf table.
#[derive(Debug, Clone)]
pub enum KeyDist {
    /// Uniform over `0..n`.
    Uniform {
        /// Number of entities.
        n: u64,
    },
    /// Zipf over `0..n`.
    Zipf {
        /// Exponent.
        s: f64,
        /// `cdf[k]` = P(index <= k); the last entry is 1.
        cdf: Arc<[f64]>,
    },
}

impl KeyDist {
    /// A sampler of `kind` over `n` entities.
    pub fn new(kind: DistKind, n: u64) -> Result<KeyDist, KeyDistError> {
        if n == 0 {
            return Err(KeyDistError::Empty);
        }
        match kind {
            DistKind::Uniform => Ok(KeyDist::Uniform { n }),
            DistKind::Zipf(s) => {
                if !s.is_finite() || s < 0.0 {
                    return Err(KeyDistError::BadExponent(s));
                }
                let mut cdf = Vec::with_capacity(n as usize);
                let mut total = 0.0f64;
                for k in 0..n {
                    total += ((k + 1) as f64).powf(-s);
                    cdf.push(total);
                }
                for c in &mut cdf {
                    *c /= total;
                }
                if let Some(last) = cdf.last_mut() {
                    *last = 1.0;
                }
                Ok(KeyDist::Zipf { s, cdf: cdf.into() })
            }
        }
    }

    /// Number of entities.
    pub fn len(&self) -> u64 {
        match self {
            KeyDist::Uniform { n } => *n,
            KeyDist::Zipf { cdf, .. } => cdf.len() as u64,
        }
    }

    /// Never true: a distribution holds at least one entity.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The probability of index `k` (0 outside the key space).
    pub fn probability(&self, k: u64) -> f64 {
        match self {
            KeyDist::Uniform { n } => {
                if k < *n {
                    1.0 / *n as f64
                } else {
                    0.0
                }
            }
            KeyDist::Zipf { cdf, .. } => {
                let k = k as usize;
                let below = if k == 0 {
                    0.0
                } else {
                    cdf.get(k - 1).copied().unwrap_or(1.0)
                };
                cdf.get(k).map_or(0.0, |c| c - below)
            }
        }
    }

    /// Draws one index.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyDist::Uniform { n } => rng.below(*n),
            KeyDist::Zipf { cdf, .. } => {
                let u = rng.next_f64();
                let k = cdf.partition_point(|&c| c <= u);
                (k.min(cdf.len() - 1)) as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(dist: &KeyDist, draws: usize, seed: u64) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        let mut counts = vec![0u64; dist.len() as usize];
        for _ in 0..draws {
            let k = dist.sample(&mut rng) as usize;
            counts[k] += 1;
        }
        counts
    }

    /// Pearson's chi-square statistic of observed counts against the distribution.
    fn chi_square(dist: &KeyDist, counts: &[u64], draws: usize) -> f64 {
        counts
            .iter()
            .enumerate()
            .map(|(k, &o)| {
                let e = dist.probability(k as u64) * draws as f64;
                (o as f64 - e).powi(2) / e
            })
            .sum()
    }

    #[test]
    fn splitmix_matches_reference_outputs() {
        // Reference values of SplitMix64 seeded with 0 (as in the original C code).
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn zipf_probabilities_follow_the_power_law() {
        let dist = KeyDist::new(DistKind::Zipf(1.0), 100).expect("dist");
        let h: f64 = (1..=100).map(|k| 1.0 / k as f64).sum();
        for k in [0u64, 1, 9, 99] {
            let want = 1.0 / (k + 1) as f64 / h;
            assert!((dist.probability(k) - want).abs() < 1e-12, "k={k}");
        }
        let total: f64 = (0..100).map(|k| dist.probability(k)).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(dist.probability(100), 0.0);
    }

    #[test]
    fn zipf_samples_fit_the_distribution() {
        // 50 categories, 49 degrees of freedom: the 99.9th percentile of chi-square is
        // 85.4; a sampler off by one rank or using the wrong exponent lands far above.
        for s in [0.5, 0.99, 1.2] {
            let dist = KeyDist::new(DistKind::Zipf(s), 50).expect("dist");
            let draws = 200_000;
            let c = counts(&dist, draws, 42);
            let chi = chi_square(&dist, &c, draws);
            assert!(chi < 85.4, "s={s}: chi-square {chi}");
            assert!(c[0] > c[1] && c[1] > c[10], "s={s}: {c:?}");
        }
    }

    #[test]
    fn a_wrong_exponent_is_detected_by_the_same_check() {
        // The check above has power: samples of s=1.2 do not fit s=0.99.
        let sampled = KeyDist::new(DistKind::Zipf(1.2), 50).expect("dist");
        let claimed = KeyDist::new(DistKind::Zipf(0.99), 50).expect("dist");
        let draws = 200_000;
        let c = counts(&sampled, draws, 7);
        assert!(chi_square(&claimed, &c, draws) > 85.4);
    }

    #[test]
    fn uniform_samples_cover_the_range_evenly() {
        let dist = KeyDist::new(DistKind::Uniform, 50).expect("dist");
        let draws = 200_000;
        let c = counts(&dist, draws, 1);
        assert!(chi_square(&dist, &c, draws) < 85.4);
        assert!(c.iter().all(|&n| n > 0));
    }

    #[test]
    fn zipf_zero_is_uniform_and_one_entity_always_wins() {
        let dist = KeyDist::new(DistKind::Zipf(0.0), 10).expect("dist");
        for k in 0..10 {
            assert!((dist.probability(k) - 0.1).abs() < 1e-12);
        }
        let one = KeyDist::new(DistKind::Zipf(2.0), 1).expect("dist");
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| one.sample(&mut rng) == 0));
    }

    #[test]
    fn bad_distributions_are_refused() {
        assert_eq!(
            KeyDist::new(DistKind::Uniform, 0).err(),
            Some(KeyDistError::Empty)
        );
        assert!(matches!(
            "zipf:-1".parse::<DistKind>(),
            Err(KeyDistError::BadExponent(_))
        ));
        assert!(matches!(
            "zipf:x".parse::<DistKind>(),
            Err(KeyDistError::Syntax(_))
        ));
        assert!(matches!(
            "normal".parse::<DistKind>(),
            Err(KeyDistError::Syntax(_))
        ));
        assert_eq!("zipf:0.99".parse::<DistKind>(), Ok(DistKind::Zipf(0.99)));
        assert_eq!("uniform".parse::<DistKind>(), Ok(DistKind::Uniform));
    }
}
