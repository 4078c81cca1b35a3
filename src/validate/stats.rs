//! Per-feature statistics of one batch version, computed while the load's sorted stream
//! passes ([`StatsCollector`] is one more [`SortedSink`] of the build stage), and the
//! document they are stored as ([`VersionStats`], one per version in `meta`, see
//! storage-format.md "Version statistics").
//!
//! Exact figures: value count, explicit nulls, entities without a value, min, max, mean
//! and standard deviation (sums of values shifted by the first one, in f64: no division
//! per value). Approximate figures, from Apache DataSketches: the distinct count (HLL,
//! `lg_k` [`HLL_LG_K`], relative standard error about 1.6%, fed every value) and
//! quantiles (KLL, `k` [`KLL_K`], normalized rank error about 1.65% at 99% confidence).
//!
//! Quantiles and cost: a KLL update costs about 10x the rest of the statistics, so a
//! feature's first [`QUANTILE_EXACT`] values all go into one sketch (the *head*) and
//! later values go, each with probability 1/[`QUANTILE_TAIL_RATE`], into a second one
//! (the *tail*). The distribution is the two sketches weighted by the values they stand
//! for (head: its count; tail: every value after the head), so the sample is unbiased;
//! beyond the head the rank error adds the tail's sampling error (at 3 sigma,
//! 1.5/sqrt(tail items): 0.27% for a feature of 1M values). Numeric dtypes (int64, float64, float32, bool as 0/1) get every figure;
//! strings and bytes get counts and the distinct count; vectors get counts only.
//!
//! Memory: per numeric feature of the group one KLL sketch (at most about 3k items,
//! under 10 KiB) and one HLL sketch (at most 4 KiB); per other feature the HLL only. A
//! group of 1,000 features holds under 14 MiB while it loads. The stored document keeps
//! only [`QUANTILE_POINTS`] quantiles per feature, not the sketches.
//!
//! Not thread-safe by itself: one collector belongs to one load's build stage, which
//! runs it on its own thread (`loader::offthread`). Within a feature, a value repeating
//! the one before it is not hashed into the HLL sketch again (it changes no register).

use std::collections::BTreeMap;

use datasketches::common::SearchCriteria;
use datasketches::hll::{HllSketch, HllType};
use datasketches::kll::{KllFloat, KllSketch};
use serde::{Deserialize, Serialize};

use crate::codec::value::EVENT_TIME_OFFSET;
use crate::codec::value::{PAYLOAD_OFFSET, tag};
use crate::loader::LoadError;
use crate::loader::sorter::SortedSink;
use crate::types::{DType, FeatureId, TimestampMs};

/// KLL accuracy parameter (the library's default).
pub const KLL_K: u16 = 200;
/// HLL register count exponent: 4,096 registers.
pub const HLL_LG_K: u8 = 12;
/// Quantile ranks stored per numeric feature: 0, 0.05, .., 1.
pub const QUANTILE_POINTS: usize = 21;
/// A feature's first values that all go into the quantile sketch.
pub const QUANTILE_EXACT: u64 = 1 << 14;
/// One in this many later values goes into the tail sketch (on average).
pub const QUANTILE_TAIL_RATE: u64 = 32;

/// One quantile of a feature's distribution, with the share of values at or below it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    /// The rank asked, in `[0, 1]`.
    pub rank: f64,
    /// The value at that rank.
    pub value: f64,
    /// The share of values `<= value` (the sketch's inclusive rank; above `rank` where
    /// values repeat).
    pub cdf: f64,
}

/// Statistics of one feature in one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// Feature name.
    pub name: String,
    /// Feature id.
    pub id: FeatureId,
    /// Values stored (explicit nulls included).
    pub values: u64,
    /// Explicit nulls among them.
    pub nulls: u64,
    /// Entities of the version without a value of this feature.
    pub missing: u64,
    /// Share of the version's entities without a non-null value: `(nulls + missing) /
    /// entities` (0 for an empty version).
    pub null_rate: f64,
    /// Smallest non-null numeric value.
    pub min: Option<f64>,
    /// Largest non-null numeric value.
    pub max: Option<f64>,
    /// Mean of the non-null numeric values.
    pub mean: Option<f64>,
    /// Their population standard deviation.
    pub std: Option<f64>,
    /// Approximate distinct non-null values (HLL); `None` for vectors.
    pub distinct: Option<f64>,
    /// Newest event time among the feature's values, ms since the epoch (the freshness
    /// of a batch feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_event_ms: Option<TimestampMs>,
    /// Quantiles at [`QUANTILE_POINTS`] ranks (KLL), numeric features only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<Quantile>,
}

impl FeatureStats {
    /// Non-null values.
    pub fn present(&self) -> u64 {
        self.values.saturating_sub(self.nulls)
    }
}

/// Statistics of one version: the group's entity count and one entry per feature of
/// the group (by name), whether the version holds values of it or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    /// Group.
    pub group: String,
    /// Version.
    pub version: u64,
    /// Distinct entities of the version.
    pub entities: u64,
    /// False while the version is held by its validation (not a baseline for the next
    /// versions' drift rules); set when it passed or was activated by force.
    #[serde(default = "accepted_default")]
    pub accepted: bool,
    /// Per feature, by name.
    pub features: BTreeMap<String, FeatureStats>,
}

fn accepted_default() -> bool {
    true
}

/// What kind of figures a dtype gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Numeric,
    Text,
    Other,
}

fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::Int64 | DType::Float64 | DType::Float32 | DType::Bool => Kind::Numeric,
        DType::String | DType::Bytes => Kind::Text,
        _ => Kind::Other,
    }
}

/// The running figures of one feature.
struct Running {
    name: String,
    id: FeatureId,
    dtype: DType,
    values: u64,
    nulls: u64,
    /// Non-null numeric values seen (NaN excluded).
    n: u64,
    /// The first value, which the sums are shifted by (keeps them small: precise).
    shift: f64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
    newest: TimestampMs,
    quantiles: Option<Quantiles>,
    hll: Option<HllSketch>,
    /// The bits last given to the HLL sketch: a repeat changes no register, so it is
    /// not hashed again (constant and low-cardinality features repeat most values).
    last_bits: Option<u64>,
}

/// The head and the sampled tail of a feature's values (see the module doc).
struct Quantiles {
    head: KllSketch<KllFloat<f64>>,
    tail: KllSketch<KllFloat<f64>>,
    /// Values after the head, sampled or not.
    tail_values: u64,
    /// xorshift64 state for the tail's sampling.
    rng: u64,
}

impl Quantiles {
    fn new() -> Option<Self> {
        Some(Quantiles {
            head: KllSketch::new(KLL_K).ok()?,
            tail: KllSketch::new(KLL_K).ok()?,
            tail_values: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        })
    }

    fn update(&mut self, item: KllFloat<f64>) {
        if self.head.n() < QUANTILE_EXACT {
            self.head.update(item);
            return;
        }
        self.tail_values += 1;
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if self.rng.is_multiple_of(QUANTILE_TAIL_RATE) {
            self.tail.update(item);
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// The share of values `<= x`.
    fn cdf(&self, x: f64) -> Option<f64> {
        let item = KllFloat::<f64>::new(x).ok()?;
        let head = self.head.rank(&item, SearchCriteria::Inclusive)?;
        let Some(tail) = self.tail.rank(&item, SearchCriteria::Inclusive) else {
            return Some(head);
        };
        let (h, t) = (self.head.n() as f64, self.tail_values as f64);
        Some((h * head + t * tail) / (h + t))
    }

    /// The smallest value whose share of values at or below is at least `rank`, within
    /// `[min, max]` (bisection on the weighted distribution when there is a tail).
    fn quantile(&self, rank: f64, min: f64, max: f64) -> Option<f64> {
        if self.tail.is_empty() {
            return self
                .head
                .quantile(rank, SearchCriteria::Inclusive)
                .ok()
                .flatten()
                .map(KllFloat::into_inner);
        }
        if rank <= 0.0 {
            return Some(min);
        }
        let (mut lo, mut hi) = (min, max);
        // 48 halvings pin the value to 2^-48 of the range, far below the sketches' error.
        for _ in 0..48 {
            let mid = lo + (hi - lo) / 2.0;
            if mid <= lo || mid >= hi {
                break;
            }
            if self.cdf(mid)? >= rank {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

impl Running {
    fn new(name: String, id: FeatureId, dtype: DType) -> Self {
        let kind = kind_of(dtype);
        Running {
            name,
            id,
            dtype,
            values: 0,
            nulls: 0,
            n: 0,
            shift: 0.0,
            sum: 0.0,
            sum_sq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            newest: TimestampMs::MIN,
            quantiles: (kind == Kind::Numeric).then(Quantiles::new).flatten(),
            hll: (kind != Kind::Other)
                .then(|| HllSketch::new(HLL_LG_K, HllType::Hll8).ok())
                .flatten(),
            last_bits: None,
        }
    }

    fn reset(&mut self) {
        *self = Running::new(std::mem::take(&mut self.name), self.id, self.dtype);
    }

    fn number(&mut self, x: f64, bits: u64) {
        if self.last_bits != Some(bits)
            && let Some(hll) = self.hll.as_mut()
        {
            hll.update(bits);
            self.last_bits = Some(bits);
        }
        let Ok(item) = KllFloat::<f64>::new(x) else {
            return; // NaN: counted as a value, not in the numeric figures.
        };
        if self.n == 0 {
            self.shift = x;
        }
        self.n += 1;
        let d = x - self.shift;
        self.sum += d;
        self.sum_sq += d * d;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        if let Some(q) = self.quantiles.as_mut() {
            q.update(item);
        }
    }

    fn take(&mut self, value: &[u8]) {
        self.values += 1;
        let Some(&t) = value.first() else {
            return;
        };
        if let Some(b) = value
            .get(EVENT_TIME_OFFSET..PAYLOAD_OFFSET)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
        {
            self.newest = self.newest.max(TimestampMs::from_le_bytes(b));
        }
        let payload = value.get(PAYLOAD_OFFSET..).unwrap_or_default();
        match t {
            tag::NULL => self.nulls += 1,
            tag::FLOAT64 => {
                if let Ok(b) = <[u8; 8]>::try_from(payload) {
                    let x = f64::from_le_bytes(b);
                    self.number(x, x.to_bits());
                }
            }
            tag::FLOAT32 => {
                if let Ok(b) = <[u8; 4]>::try_from(payload) {
                    let x = f64::from(f32::from_le_bytes(b));
                    self.number(x, x.to_bits());
                }
            }
            tag::INT64 => {
                if let Ok(b) = <[u8; 8]>::try_from(payload) {
                    let v = i64::from_le_bytes(b);
                    self.number(v as f64, u64::from_le_bytes(b));
                }
            }
            tag::BOOL => {
                let v = u8::from(payload == [1]);
                self.number(f64::from(v), u64::from(v));
            }
            tag::STRING | tag::BYTES => {
                if let Some(hll) = self.hll.as_mut() {
                    hll.update(payload);
                }
            }
            _ => {}
        }
    }

    fn finish(&self, entities: u64) -> FeatureStats {
        let numeric = self.n > 0;
        let quantiles = match &self.quantiles {
            Some(q) if !q.is_empty() => quantile_points(q, self.min, self.max),
            _ => Vec::new(),
        };
        let n = self.n.max(1) as f64;
        let mean_d = self.sum / n;
        let variance = (self.sum_sq / n - mean_d * mean_d).max(0.0);
        let missing = entities.saturating_sub(self.values);
        let null_rate = if entities == 0 {
            0.0
        } else {
            ((self.nulls + missing) as f64 / entities as f64).min(1.0)
        };
        FeatureStats {
            name: self.name.clone(),
            id: self.id,
            values: self.values,
            nulls: self.nulls,
            missing,
            null_rate,
            min: numeric.then_some(self.min),
            max: numeric.then_some(self.max),
            mean: numeric.then_some(self.shift + mean_d),
            std: numeric.then(|| variance.sqrt()),
            distinct: self.hll.as_ref().map(HllSketch::estimate),
            newest_event_ms: (self.values > 0).then_some(self.newest),
            quantiles,
        }
    }
}

/// The stored quantiles of a feature's sketches.
fn quantile_points(q: &Quantiles, min: f64, max: f64) -> Vec<Quantile> {
    (0..QUANTILE_POINTS)
        .filter_map(|i| {
            let rank = i as f64 / (QUANTILE_POINTS - 1) as f64;
            let value = q.quantile(rank, min, max)?;
            let cdf = q.cdf(value)?;
            Some(Quantile { rank, value, cdf })
        })
        .collect()
}

/// Computes a version's statistics from its sorted stream (keys without the version
/// prefix: entity key ‖ feature id, big-endian). Records of features not named at
/// construction are counted nowhere (the loader only writes the group's features).
///
/// The figures of the sketches can be asked of a finished collector, for rules that
/// compare another distribution against this one ([`StatsCollector::cdf`]).
pub struct StatsCollector {
    group: String,
    version: u64,
    /// Sorted by feature id, for a binary search per record.
    features: Vec<Running>,
    entities: u64,
    last_entity: Vec<u8>,
    /// Where the next record's feature is expected in `features`.
    next: usize,
}

impl std::fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsCollector")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("features", &self.features.len())
            .finish()
    }
}

impl StatsCollector {
    /// A collector for `version` of `group`, whose features are `(name, id, dtype)`.
    pub fn new(
        group: &str,
        version: u64,
        features: impl IntoIterator<Item = (String, FeatureId, DType)>,
    ) -> Self {
        let mut features: Vec<Running> = features
            .into_iter()
            .map(|(name, id, dtype)| Running::new(name, id, dtype))
            .collect();
        features.sort_by_key(|r| r.id);
        StatsCollector {
            group: group.to_owned(),
            version,
            features,
            entities: 0,
            last_entity: Vec::new(),
            next: 0,
        }
    }

    /// The statistics of what the stream held.
    pub fn finish(&self) -> VersionStats {
        VersionStats {
            group: self.group.clone(),
            version: self.version,
            entities: self.entities,
            accepted: true,
            features: self
                .features
                .iter()
                .map(|r| (r.name.clone(), r.finish(self.entities)))
                .collect(),
        }
    }

    /// The share of `feature`'s non-null numeric values `<= x` in this version (KLL
    /// inclusive rank), or `None` when it has none.
    pub fn cdf(&self, feature: &str, x: f64) -> Option<f64> {
        let running = self.features.iter().find(|r| r.name == feature)?;
        running.quantiles.as_ref().filter(|q| !q.is_empty())?.cdf(x)
    }
}

impl SortedSink for StatsCollector {
    #[expect(
        clippy::big_endian_bytes,
        reason = "a stored key ends in the feature id, big-endian (storage-format.md, Keys)"
    )]
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let split = key.len().saturating_sub(size_of::<FeatureId>());
        let (entity, fid) = key.split_at(split);
        let Ok(fid) = <[u8; 4]>::try_from(fid) else {
            return Ok(());
        };
        if entity != self.last_entity.as_slice() {
            self.entities += 1;
            self.last_entity.clear();
            self.last_entity.extend_from_slice(entity);
        }
        let fid = FeatureId::from_be_bytes(fid);
        // Keys come entity by entity, features ascending: the next feature is usually
        // the one after the last.
        let i = match self.features.get(self.next) {
            Some(r) if r.id == fid => Some(self.next),
            _ => self.features.binary_search_by_key(&fid, |r| r.id).ok(),
        };
        if let Some(i) = i
            && let Some(running) = self.features.get_mut(i)
        {
            running.take(value);
            self.next = i + 1;
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        for running in &mut self.features {
            running.reset();
        }
        self.entities = 0;
        self.last_entity.clear();
        self.next = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::key::encode_key_into;
    use crate::codec::value::encode_value;
    use crate::types::Value;

    fn record(entity: &str, fid: FeatureId, value: &Value) -> (Vec<u8>, Vec<u8>) {
        let mut key = Vec::new();
        encode_key_into(entity.as_bytes(), fid, &mut key).expect("key");
        let mut bytes = Vec::new();
        encode_value(value, 1_000, &mut bytes);
        (key, bytes)
    }

    /// A deterministic pseudo-random sequence (xorshift), no dependency.
    fn noise(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn statistics_equal_a_brute_force_computation() {
        // More values than the quantile head holds: the sampled tail is exercised.
        let n = 300_000usize;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut collector = StatsCollector::new(
            "g",
            3,
            [
                ("x".to_owned(), 7, DType::Float64),
                ("label".to_owned(), 9, DType::String),
                ("k".to_owned(), 8, DType::Int64),
            ],
        );
        let mut xs = Vec::new();
        let mut labels = std::collections::HashSet::new();
        let mut nulls = 0u64;
        let mut ks = Vec::new();
        for e in 0..n {
            let entity = format!("e{e:07}");
            // A skewed distribution: exp of a uniform.
            let x = (noise(&mut seed) * 4.0).exp() - 20.0;
            let v = if e % 17 == 0 {
                nulls += 1;
                Value::Null
            } else {
                xs.push(x);
                Value::Float64(x)
            };
            let (key, value) = record(&entity, 7, &v);
            collector.put(&key, &value).expect("put");
            if e % 3 != 0 {
                let k = (e % 1_000) as i64;
                ks.push(k as f64);
                let (key, value) = record(&entity, 8, &Value::Int64(k));
                collector.put(&key, &value).expect("put");
            }
            let label = format!("l{}", e % 4_000);
            labels.insert(label.clone());
            let (key, value) = record(&entity, 9, &Value::String(label));
            collector.put(&key, &value).expect("put");
        }
        let stats = collector.finish();
        assert_eq!(stats.entities, n as u64);
        let x = &stats.features["x"];
        assert_eq!(x.values, n as u64);
        assert_eq!(x.nulls, nulls);
        assert_eq!(x.missing, 0);
        assert!((x.null_rate - nulls as f64 / n as f64).abs() < 1e-12);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!((x.mean.expect("mean") - mean).abs() < 1e-9 * mean.abs().max(1.0));
        assert!((x.std.expect("std") - var.sqrt()).abs() < 1e-9 * var.sqrt());
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(x.min, sorted.first().copied());
        assert_eq!(x.max, sorted.last().copied());
        assert_eq!(x.newest_event_ms, Some(1_000));
        // Quantiles: the true rank of each sketch quantile is within the documented
        // error: KLL's normalized rank error (k = 200: 1.65% at 99% confidence) plus the
        // tail's sampling error (3 sigma: 1.5/sqrt(8,900 items) = 1.6%, for 95% of the
        // values): 3.5% allowed.
        assert_eq!(x.quantiles.len(), QUANTILE_POINTS);
        for q in &x.quantiles {
            let below = sorted.partition_point(|v| *v <= q.value) as f64 / sorted.len() as f64;
            assert!(
                (below - q.rank).abs() <= 0.035,
                "rank {} value {} true rank {below}",
                q.rank,
                q.value
            );
        }
        // The distinct count of the labels: HLL with 4,096 registers (RSE 1.6%).
        let distinct = stats.features["label"].distinct.expect("distinct");
        assert!(
            (distinct - labels.len() as f64).abs() / (labels.len() as f64) < 0.05,
            "{distinct} vs {}",
            labels.len()
        );
        assert_eq!(stats.features["label"].min, None);
        let k = &stats.features["k"];
        assert_eq!(k.values, ks.len() as u64);
        assert_eq!(k.missing, (n - ks.len()) as u64);
        assert!((k.null_rate - (n - ks.len()) as f64 / n as f64).abs() < 1e-12);
        let distinct = k.distinct.expect("distinct");
        assert!((distinct - 1_000.0).abs() < 50.0, "{distinct}");
        assert_eq!(k.min, Some(0.0));
        assert_eq!(k.max, Some(999.0));
    }

    #[test]
    fn a_restart_forgets_what_was_taken() {
        let mut collector = StatsCollector::new("g", 1, [("x".to_owned(), 1, DType::Float32)]);
        for e in 0..10 {
            let (key, value) = record(&format!("e{e}"), 1, &Value::Float32(e as f32));
            collector.put(&key, &value).expect("put");
        }
        collector.restart().expect("restart");
        let (key, value) = record("e0", 1, &Value::Float32(5.0));
        collector.put(&key, &value).expect("put");
        let stats = collector.finish();
        assert_eq!(stats.entities, 1);
        assert_eq!(stats.features["x"].values, 1);
        assert_eq!(stats.features["x"].mean, Some(5.0));
        assert_eq!(stats.features["x"].quantiles.len(), QUANTILE_POINTS);
    }
}
