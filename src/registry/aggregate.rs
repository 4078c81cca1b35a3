//! Windowed aggregates: features computed from pushed events (count, sum, mean or last
//! of a raw feature over a sliding window), declared in the registry.
//!
//! A window of length `W` with resolution `r` (`W` a multiple of `r`) is served from
//! `W / r` tiles of width `r`; at read time `now` it covers the tiles starting at or
//! after `tile_start(now) + r - W`, the current (partial) tile included. An event
//! therefore counts for at least `W - r` and less than `W` after its event time; that
//! is the window's resolution.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::definition::FeatureSpec;
use crate::types::{DType, TimestampMs};

/// Most tiles one window may span (each read of an aggregate scans up to this many).
pub const MAX_TILES_PER_WINDOW: u64 = 1440;

/// Tiles per window when no resolution is given.
pub const DEFAULT_TILES_PER_WINDOW: u64 = 60;

/// The function applied to the events of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    /// Number of non-null source values (dtype `int64`).
    Count,
    /// Sum of the source values (dtype `float64`).
    Sum,
    /// Mean of the source values (dtype `float64`); not found when the window is empty.
    Mean,
    /// The newest source value (dtype `float64`); not found when the window is empty.
    Last,
}

impl AggregateFunction {
    /// The dtype an aggregate feature with this function must declare.
    pub fn dtype(self) -> DType {
        match self {
            AggregateFunction::Count => DType::Int64,
            _ => DType::Float64,
        }
    }
}

/// The `aggregate` table of a feature definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// The pushed raw feature aggregated (`name` or `name@version`), of the same entity
    /// type, with a numeric or bool dtype (any dtype for `count`).
    pub source: String,
    /// count, sum, mean or last.
    pub function: AggregateFunction,
    /// Window length (`5m`, `1h`, `24h`, `7d`).
    #[serde(with = "crate::types::duration_text")]
    pub window: Option<Duration>,
    /// Tile width; the window must be a multiple of it. Default: window / 60.
    #[serde(default, with = "crate::types::duration_text")]
    pub resolution: Option<Duration>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AggregateSpec {
    /// Window length in ms (validated specs only).
    pub fn window_ms(&self) -> i64 {
        self.window.map_or(0, millis)
    }

    /// Tile width in ms (validated specs only).
    pub fn resolution_ms(&self) -> i64 {
        match self.resolution {
            Some(r) => millis(r),
            None => self.window_ms() / DEFAULT_TILES_PER_WINDOW as i64,
        }
    }

    /// Start of the tile holding `t`.
    pub fn tile_start(&self, t: TimestampMs) -> TimestampMs {
        let r = self.resolution_ms().max(1);
        t.div_euclid(r) * r
    }

    /// The tile starts a read at `now` covers: `[first, end)`.
    pub fn window_tiles(&self, now: TimestampMs) -> (TimestampMs, TimestampMs) {
        let end = self.tile_start(now).saturating_add(self.resolution_ms());
        (end.saturating_sub(self.window_ms()), end)
    }

    /// How long after its start a tile can still be read: window + one tile.
    pub fn retention_ms(&self) -> i64 {
        self.window_ms().saturating_add(self.resolution_ms())
    }

    /// Checks the aggregate on its own (window, resolution, dtype of `spec`).
    pub fn validate(&self, spec: &FeatureSpec) -> Result<(), String> {
        let name = &spec.name;
        let window = self
            .window
            .ok_or_else(|| format!("aggregate feature `{name}`: `window` is required"))?;
        let w = millis(window);
        let r = self.resolution_ms();
        if r < 1000 {
            return Err(format!(
                "aggregate feature `{name}`: resolution must be at least 1s (window / {DEFAULT_TILES_PER_WINDOW} by default); give a longer window or an explicit resolution"
            ));
        }
        if w % r != 0 {
            return Err(format!(
                "aggregate feature `{name}`: the window ({}) must be a multiple of the resolution ({})",
                humantime::format_duration(window),
                humantime::format_duration(Duration::from_millis(r.unsigned_abs()))
            ));
        }
        if (w / r).unsigned_abs() > MAX_TILES_PER_WINDOW {
            return Err(format!(
                "aggregate feature `{name}`: window / resolution is {} tiles, at most {MAX_TILES_PER_WINDOW}",
                w / r
            ));
        }
        let want = self.function.dtype();
        if spec.dtype != want {
            return Err(format!(
                "aggregate feature `{name}`: function {:?} yields {want}, but dtype is {}",
                self.function, spec.dtype
            ));
        }
        Ok(())
    }

    /// Checks that `source` can feed this aggregate.
    pub fn check_source(&self, spec: &FeatureSpec, source: &FeatureSpec) -> Result<(), String> {
        let name = &spec.name;
        if source.aggregate.is_some() {
            return Err(format!(
                "aggregate feature `{name}`: source `{}` is itself an aggregate",
                self.source
            ));
        }
        if source.entity_type != spec.entity_type {
            return Err(format!(
                "aggregate feature `{name}`: source `{}` describes `{}`, not `{}`",
                self.source, source.entity_type, spec.entity_type
            ));
        }
        let numeric = matches!(
            source.dtype,
            DType::Int64 | DType::Float64 | DType::Float32 | DType::Bool
        );
        if self.function != AggregateFunction::Count && !numeric {
            return Err(format!(
                "aggregate feature `{name}`: source `{}` is {}; {:?} needs int64, float64, float32 or bool",
                self.source, source.dtype, self.function
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(window: u64, resolution: Option<u64>) -> AggregateSpec {
        AggregateSpec {
            source: "clicks".into(),
            function: AggregateFunction::Count,
            window: Some(Duration::from_secs(window)),
            resolution: resolution.map(Duration::from_secs),
        }
    }

    #[test]
    fn window_tiles_cover_the_window_to_its_resolution() {
        let a = agg(300, Some(60));
        // now = 10:30.5 (in s): tiles 6:00 .. 10:00 are covered (end 11:00 exclusive).
        let (first, end) = a.window_tiles(630_500);
        assert_eq!((first, end), (360_000, 660_000));
        assert_eq!(a.retention_ms(), 360_000);
        assert_eq!(agg(300, None).resolution_ms(), 5_000);
        assert_eq!(a.tile_start(-1), -60_000);
    }
}
