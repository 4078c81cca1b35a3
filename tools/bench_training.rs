//! Measures point-in-time training sets: loads DAYS daily versions of ENTITIES x
//! FEATURES float32 values (CHANGE percent of the entities changing a day) plus a day's
//! pushes (1% of the entities, one feature each, an hour after the day's batch), with
//! the history on; then builds a training set for a spine of SPINE rows (random
//! entities, random times over the days) with `featstore::training::build`, and
//! exports the history with `featstore::training::history_export`. Prints one JSON
//! object: timings, values per second, peak RSS and the paths, which
//! `tools/bench-training.sh` hands to DuckDB's ASOF JOIN over the same export.
//!
//! `featstore-bench-training ENTITIES FEATURES DAYS CHANGE SPINE DIR [THREADS]`
//! (defaults 100000 50 30 5 100000, THREADS 0: one per core; DIR is kept: the spine,
//! the export and featstore's training set stay there).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use featstore::datagen::write_float_matrix;
use featstore::loader::LoadRequest;
use featstore::store::AcceptAll;
use featstore::training::history_export::{HistoryExportJob, export};
use featstore::training::{TrainingJob, build};
use featstore::{FeatureSelection, FeatureStore, PushEvent, StoreConfig, Value};
use rand::{Rng, SeedableRng};

#[path = "daily_versions.rs"]
mod daily_versions;
#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;

use daily_versions::{BASE_MS, DAY_MS, write_day};

/// Resets the process's peak RSS (Linux `clear_refs`; ignored elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS in MiB since the last reset (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> Result<u64> {
        args.get(i)
            .map(|a| {
                a.parse::<u64>()
                    .with_context(|| format!("argument {}: {a}", i + 1))
            })
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let entities = num(0, 100_000)?;
    let features = num(1, 50)? as usize;
    let days = num(2, 30)?;
    let change = num(3, 5)?;
    let spine_rows = num(4, 100_000)?;
    let Some(dir) = args.get(5).map(PathBuf::from) else {
        bail!("usage: featstore-bench-training ENTITIES FEATURES DAYS CHANGE SPINE DIR [THREADS]");
    };
    let threads = num(6, 0)? as usize;
    if dir.join("store").exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let specs = write_float_matrix(&dir.join("specs.csv"), "matrix", 1, features, 1)?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let entity_type = specs
        .first()
        .map(|s| s.entity_type.clone())
        .unwrap_or_default();
    let store = FeatureStore::open(dir.join("store"), StoreConfig::default())?;
    store.apply(specs)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let started = Instant::now();
    let mut pushed = 0u64;
    for day in 0..days {
        let path = dir.join("day.parquet");
        write_day(&path, (entities, features), (day, change, false))?;
        store.load_gated(&LoadRequest::new("matrix", &path), &AcceptAll, &|_| {})?;
        let at = BASE_MS + day as i64 * DAY_MS + 3_600_000;
        let mut events = Vec::new();
        for i in 0..entities / 100 {
            let e = rng.random_range(0..entities);
            let k = rng.random_range(0..features);
            events.push(PushEvent {
                entity_type: entity_type.clone(),
                entity_id: format!("e{e}"),
                // Each push its own millisecond: no two values of a key tie, so an
                // ASOF JOIN (which breaks ties arbitrarily) must agree exactly.
                event_time: at + i as i64,
                features: vec![(names[k].clone(), Value::Float32(rng.random::<f32>()))],
                event_id: None,
            });
            if events.len() == 1000 {
                pushed += events.len() as u64;
                store.push(std::mem::take(&mut events))?;
            }
        }
        pushed += events.len() as u64;
        if !events.is_empty() {
            store.push(events)?;
        }
    }
    let load_secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(dir.join("day.parquet"))?;

    // The spine: random entities (one in a hundred unknown), random times over the days.
    let spine = dir.join("spine.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new(format!("{entity_type}_id"), DataType::Utf8, false),
        Field::new("event_timestamp", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
    ]));
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&spine)?, schema.clone(), None)?;
    let mut written = 0;
    while written < spine_rows {
        let n = (spine_rows - written).min(65_536);
        let mut ids = StringBuilder::new();
        let mut times = Int64Builder::new();
        let mut labels = Int64Builder::new();
        for i in 0..n {
            ids.append_value(format!(
                "e{}",
                rng.random_range(0..entities + entities / 100)
            ));
            times.append_value(BASE_MS + rng.random_range(0..days as i64 * DAY_MS));
            labels.append_value((written + i) as i64);
        }
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(times.finish()),
            Arc::new(labels.finish()),
        ];
        writer.write(&RecordBatch::try_new(schema.clone(), arrays)?)?;
        written += n;
    }
    writer.close()?;

    let rss_before = measure::rss_mib();
    reset_peak_rss();
    let cpu_before = measure::process_cpu_secs();
    let started = Instant::now();
    let summary = build(
        &store,
        &TrainingJob {
            spine: spine.clone(),
            features: FeatureSelection::Names(names.clone()),
            timestamp_column: "event_timestamp".into(),
            as_known_at: false,
            out: dir.join("featstore-train.parquet"),
            guard: None,
            threads,
        },
    )?;
    let train_secs = started.elapsed().as_secs_f64();
    let train_cpu = measure::process_cpu_secs()
        .zip(cpu_before)
        .map_or(f64::NAN, |(a, b)| a - b);
    let rss_peak = peak_rss_mib();

    let started = Instant::now();
    let exported = export(
        &store,
        &HistoryExportJob {
            out: dir.join("export"),
            groups: vec!["matrix".into()],
            features: Vec::new(),
        },
        None,
    )?;
    let export_secs = started.elapsed().as_secs_f64();
    let history_bytes: u64 = store
        .view()
        .db()
        .live_files()?
        .iter()
        .filter(|f| f.column_family_name == "history.matrix")
        .map(|f| f.size as u64)
        .sum();
    let report = serde_json::json!({
        "entities": entities,
        "features": features,
        "days": days,
        "change_percent": change,
        "pushes": pushed,
        "spine_rows": spine_rows,
        "load_secs": load_secs,
        "history_bytes": history_bytes,
        "featstore_threads": threads,
        "featstore_train_secs": train_secs,
        "featstore_train_cpu_secs": train_cpu,
        "featstore_values": summary.values,
        "featstore_values_per_sec": summary.values as f64 / train_secs,
        "featstore_rss_mib_before": rss_before,
        "featstore_rss_mib_peak": rss_peak,
        "export_secs": export_secs,
        "export_rows": exported.values,
        "entity_column": format!("{entity_type}_id"),
        "feature_names": names,
        "spine": spine,
        "export": dir.join("export"),
        "featstore_out": dir.join("featstore-train.parquet"),
    });
    println!("{report}");
    Ok(())
}
