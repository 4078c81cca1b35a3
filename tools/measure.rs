//! Measurement helpers shared by the scale and keyspace benchmarks (included with
//! `#[path]`, so each tool stays one binary).

use std::time::Duration;

/// The process's resident set size in MiB (NaN where the platform does not say).
pub fn rss_mib() -> f64 {
    featstore::store::memory::process_resident_bytes()
        .map_or(f64::NAN, |b| b as f64 / f64::from(1u32 << 20))
}

/// The `p` quantile (0..=1, nearest rank) of `sorted` durations, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}
