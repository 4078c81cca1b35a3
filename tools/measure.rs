//! Measurement helpers shared by the benchmark tools (included with `#[path]`, so each
//! tool stays one binary; a tool that uses only some of them allows the rest unused).

use std::time::Duration;

/// Positional argument `i` of `args`, or `default` when it is not given.
pub fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> anyhow::Result<T> {
    match args.get(i) {
        Some(a) => a
            .parse()
            .map_err(|_| anyhow::anyhow!("argument {} `{a}` is not a number", i + 1)),
        None => Ok(default),
    }
}

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

/// User plus system CPU seconds of this process so far (Linux `/proc/self/stat`; `None`
/// elsewhere).
pub fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and
    // 15th fields of the line, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
