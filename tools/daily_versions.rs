//! Daily batch versions for the benchmark tools (included with `#[path]`): ENTITIES x
//! FEATURES float32 values where CHANGE percent of the entities change each day (new
//! values, new event time; the others keep theirs), deterministic.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::builder::{Float32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

/// One day in ms.
pub const DAY_MS: i64 = 86_400_000;

/// The event time of day 0.
pub const BASE_MS: i64 = 1_764_000_000_000;

/// The value of entity `e`, feature `k`, last changed on day `day`.
pub fn value(e: u64, k: usize, day: u64) -> f32 {
    let x = e
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add((k as u64) << 32)
        .wrapping_add(day.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// The day entity `e` last changed, on day `day` (`change` percent change a day).
pub fn changed_on(e: u64, day: u64, change: u64) -> u64 {
    (1..=day)
        .rev()
        .find(|d| (e.wrapping_mul(2_654_435_761).wrapping_add(d * 97)) % 100 < change)
        .unwrap_or(0)
}

/// Writes day `day`'s version as wide Parquet (`entity_id`, `event_time`, `f00`..);
/// with `restamp` every row carries the day's event time.
pub fn write_day(
    path: &Path,
    (entities, features): (u64, usize),
    (day, change, restamp): (u64, u64, bool),
) -> Result<()> {
    let mut fields = vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("event_time", DataType::Int64, false),
    ];
    for k in 0..features {
        fields.push(Field::new(format!("f{k:02}"), DataType::Float32, false));
    }
    let schema = Arc::new(Schema::new(fields));
    let file = std::fs::File::create(path)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
    let mut start = 0;
    while start < entities {
        let end = (start + 65_536).min(entities);
        let mut ids = StringBuilder::new();
        let mut times = Int64Builder::new();
        let mut cols: Vec<Float32Builder> = (0..features).map(|_| Float32Builder::new()).collect();
        for e in start..end {
            let last = changed_on(e, day, change);
            ids.append_value(format!("e{e}"));
            let stamp = if restamp { day } else { last };
            times.append_value(BASE_MS + stamp as i64 * DAY_MS);
            for (k, c) in cols.iter_mut().enumerate() {
                c.append_value(value(e, k, last));
            }
        }
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(times.finish())];
        arrays.extend(cols.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef));
        writer.write(&RecordBatch::try_new(schema.clone(), arrays)?)?;
        start = end;
    }
    writer.close()?;
    Ok(())
}
