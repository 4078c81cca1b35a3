//! Point-in-time training sets: a spine of (entity keys, timestamp, labels) rows in,
//! one Parquet file out, each row with the feature values it would have seen at its
//! timestamp, never later.
//!
//! It owns reading the spine (Parquet or CSV), turning each row into a point-in-time
//! ranking read of the query layer (`crate::query::rank::rank_in` with
//! [`HistoryQuery::PointInTime`]), and writing the answer. Everything above the stored
//! values is the online read path's own code: TTL judged at the row's timestamp
//! (`timestamp - event_time <= TTL`, as Feast does), defaults, on-demand features. What
//! a row sees is defined in `crate::store::history::read`.
//!
//! Spine: a timestamp column (`--timestamp-column`, default `event_timestamp`: epoch
//! ms integers, Parquet timestamps, or epoch-ms/RFC 3339 text), entity key columns and
//! label columns. An entity type `t` is keyed by a column `t_id` or `t`; a composite
//! type by one such column per component (joined as its composite id). Every entity
//! type with a key column takes part in the read; every other column is a label. Labels
//! and keys pass through unchanged, then per feature three columns: the value, `{name}__status`
//! (`present`, `expired`, `not_found`, ...) and `{name}__event_time` (ms).
//!
//! Memory: the spine is read and written in batches of [`BATCH_ROWS`] rows, at most
//! two per thread in flight; nothing else grows with it.
//!
//! Threads: the caller's thread reads the spine and writes the output in spine order;
//! batches are answered on [`TrainingJob::threads`] scoped workers (rows are
//! independent reads of one store). The output is written to a hidden `.partial`
//! sibling and renamed into place, so a failed job leaves no file.
//!
//! [`history_export`] writes the history itself as partitioned Parquet, for engines
//! that build the same training sets off this machine (`tools/spark/`).

pub mod history_export;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::query::rank::{FeatureSelection, RankError, RankRequest, RankResponse};
use crate::registry::Registry;
use crate::registry::entity::composite_id;
use crate::servelog::export::{Values, arrow_type};
use crate::store::FeatureStore;
use crate::store::history::read::HistoryQuery;
use crate::types::{DType, TimestampMs, parse_timestamp_ms};

/// Rows read and written per batch.
pub const BATCH_ROWS: usize = 4096;

/// The default name of the spine's timestamp column (Feast's).
pub const DEFAULT_TIMESTAMP_COLUMN: &str = "event_timestamp";

/// A training set to build.
#[derive(Debug, Clone)]
pub struct TrainingJob {
    /// The spine file (`.parquet`, else CSV with a header row).
    pub spine: PathBuf,
    /// The features, or a service.
    pub features: FeatureSelection,
    /// The spine's timestamp column.
    pub timestamp_column: String,
    /// Only values featstore knew at the row's timestamp.
    pub as_known_at: bool,
    /// The Parquet file written.
    pub out: PathBuf,
    /// Who asks: every feature of the set, and every input of its on-demand features,
    /// must be readable by it (`None`: a local job, all allowed).
    pub guard: Option<std::sync::Arc<dyn crate::query::guard::ReadGuard>>,
    /// Threads answering spine batches (0: one per core).
    pub threads: usize,
}

/// What a job wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrainingSummary {
    /// Spine rows written.
    pub rows: u64,
    /// Feature values answered (rows x features).
    pub values: u64,
    /// Values found and within their TTL.
    pub present: u64,
    /// The entity key columns used, in spine order.
    pub key_columns: Vec<String>,
    /// The file written.
    pub out: PathBuf,
}

/// A training set could not be built; nothing usable was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainingError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Parquet reading or writing failed.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building a batch failed.
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The CSV spine is malformed.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: csv::Error,
    },
    /// The spine does not fit the features (a missing column, a bad value).
    #[error("spine {path}: {message}")]
    Spine {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the row and column).
        message: String,
    },
    /// The job's worker threads ended before the spine was answered (a worker
    /// panicked).
    #[error("the training-set workers ended before the spine was answered")]
    WorkersEnded,
    /// A row's read was refused.
    #[error("spine row {row}: {source}")]
    Read {
        /// The row (0-based, data rows).
        row: u64,
        /// Why.
        #[source]
        source: RankError,
    },
}

/// How the spine's rows key one entity type.
#[derive(Debug, Clone)]
struct KeySpec {
    entity_type: String,
    /// Column indexes: one, or one per component of a composite type.
    columns: Vec<usize>,
}

/// The column keying `name` among `fields`: `{name}_id`, else `{name}`.
fn key_column(fields: &[String], name: &str) -> Option<usize> {
    let with_id = format!("{name}_id");
    fields
        .iter()
        .position(|f| *f == with_id)
        .or_else(|| fields.iter().position(|f| f == name))
}

/// The entity types the spine keys, in spine column order.
fn key_specs(registry: &Registry, fields: &[String], timestamp: usize) -> Vec<KeySpec> {
    let mut specs: Vec<KeySpec> = Vec::new();
    let mut types: Vec<String> = registry
        .groups()
        .iter()
        .map(|g| g.entity_type.clone())
        .collect();
    for composite in registry.catalog().entity_types() {
        types.push(composite.name.clone());
    }
    types.sort();
    types.dedup();
    for t in types {
        let columns = match key_column(fields, &t) {
            Some(c) => vec![c],
            None => match registry.catalog().entity_type(&t) {
                Some(spec) => {
                    let found: Option<Vec<usize>> = spec
                        .components
                        .iter()
                        .map(|c| key_column(fields, c))
                        .collect();
                    match found {
                        Some(columns) => columns,
                        None => continue,
                    }
                }
                None => continue,
            },
        };
        if columns.contains(&timestamp) {
            continue;
        }
        specs.push(KeySpec {
            entity_type: t,
            columns,
        });
    }
    specs.sort_by_key(|s| s.columns.first().copied().unwrap_or(usize::MAX));
    specs
}

/// The text of row `row` of a key column.
fn key_text(array: &ArrayRef, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row).to_owned()),
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(row).to_string()),
        DataType::Int32 => Some(array.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::UInt64 => Some(array.as_primitive::<UInt64Type>().value(row).to_string()),
        _ => None,
    }
}

/// The timestamp (ms) of row `row` of the timestamp column.
fn timestamp_ms(array: &ArrayRef, row: usize) -> Result<Option<TimestampMs>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    Ok(Some(match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().value(row)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .div_euclid(1000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1_000_000),
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1000),
        DataType::Utf8 => {
            parse_timestamp_ms(array.as_string::<i32>().value(row)).map_err(|e| e.to_string())?
        }
        DataType::LargeUtf8 => {
            parse_timestamp_ms(array.as_string::<i64>().value(row)).map_err(|e| e.to_string())?
        }
        other => return Err(format!("type {other} is not a timestamp")),
    }))
}

/// The spine's batches: Parquet as stored, CSV as text columns.
enum SpineReader {
    Parquet(parquet::arrow::arrow_reader::ParquetRecordBatchReader),
    Csv {
        reader: csv::Reader<File>,
        schema: Arc<Schema>,
    },
}

impl SpineReader {
    fn open(path: &Path) -> Result<Self, TrainingError> {
        let file = File::open(path).map_err(|source| TrainingError::Io {
            path: path.to_owned(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "parquet") {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map(|b| b.with_batch_size(BATCH_ROWS))
                .and_then(|b| b.build())
                .map_err(|source| TrainingError::Parquet {
                    path: path.to_owned(),
                    source,
                })?;
            return Ok(SpineReader::Parquet(reader));
        }
        let mut reader = csv::ReaderBuilder::new().from_reader(file);
        let headers = reader.headers().map_err(|source| TrainingError::Csv {
            path: path.to_owned(),
            source,
        })?;
        let fields: Vec<Field> = headers
            .iter()
            .map(|h| Field::new(h.trim(), DataType::Utf8, true))
            .collect();
        Ok(SpineReader::Csv {
            reader,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    fn next(&mut self, path: &Path) -> Result<Option<RecordBatch>, TrainingError> {
        match self {
            SpineReader::Parquet(reader) => reader.next().transpose().map_err(TrainingError::from),
            SpineReader::Csv { reader, schema } => {
                let width = schema.fields().len();
                let mut columns: Vec<StringBuilder> =
                    (0..width).map(|_| StringBuilder::new()).collect();
                let mut rows = 0;
                let mut record = csv::StringRecord::new();
                while rows < BATCH_ROWS {
                    let more =
                        reader
                            .read_record(&mut record)
                            .map_err(|source| TrainingError::Csv {
                                path: path.to_owned(),
                                source,
                            })?;
                    if !more {
                        break;
                    }
                    for (i, column) in columns.iter_mut().enumerate() {
                        match record.get(i) {
                            Some(text) if !text.is_empty() => column.append_value(text),
                            _ => column.append_null(),
                        }
                    }
                    rows += 1;
                }
                if rows == 0 {
                    return Ok(None);
                }
                let arrays: Vec<ArrayRef> = columns
                    .into_iter()
                    .map(|mut c| Arc::new(c.finish()) as ArrayRef)
                    .collect();
                Ok(Some(RecordBatch::try_new(schema.clone(), arrays)?))
            }
        }
    }
}

/// One output feature column: its name and dtype, and its three builders.
struct OutColumn {
    values: Values,
    status: StringBuilder,
    time: Int64Builder,
}

/// How the spine's columns are read, fixed by its first batch.
#[derive(Debug)]
struct Layout {
    /// The timestamp column.
    ts: usize,
    /// The entity types keyed, the first being the read's candidate.
    keys: Vec<KeySpec>,
}

impl Layout {
    fn of(
        job: &TrainingJob,
        registry: &Registry,
        batch: &RecordBatch,
    ) -> Result<(Self, Vec<String>), TrainingError> {
        let fields: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let ts = fields
            .iter()
            .position(|f| *f == job.timestamp_column)
            .ok_or_else(|| {
                spine_error(
                    job,
                    format!(
                        "no timestamp column `{}` (columns: {})",
                        job.timestamp_column,
                        fields.join(", ")
                    ),
                )
            })?;
        let keys = key_specs(registry, &fields, ts);
        if keys.is_empty() {
            return Err(spine_error(
                job,
                format!(
                    "no entity key column (an entity type `t` is keyed by `t_id` or `t`; columns: {})",
                    fields.join(", ")
                ),
            ));
        }
        let mut used: Vec<usize> = keys.iter().flat_map(|k| k.columns.clone()).collect();
        used.sort_unstable();
        used.dedup();
        let key_columns = used.into_iter().map(|c| fields[c].clone()).collect();
        Ok((Layout { ts, keys }, key_columns))
    }
}

fn spine_error(job: &TrainingJob, message: String) -> TrainingError {
    TrainingError::Spine {
        path: job.spine.clone(),
        message,
    }
}

/// One spine batch, answered: the output batch (spine columns, then three per
/// feature) and its counts.
struct Answered {
    batch: RecordBatch,
    values: u64,
    present: u64,
}

/// Answers every row of one spine batch (`row_base`: its first row's number);
/// `None` for a batch without rows.
fn answer_batch(
    store: &FeatureStore,
    job: &TrainingJob,
    layout: &Layout,
    batch: &RecordBatch,
    row_base: u64,
) -> Result<Option<Answered>, TrainingError> {
    let query = HistoryQuery::PointInTime {
        as_known_at: job.as_known_at,
    };
    let ts_array = batch.column(layout.ts);
    let mut answers: Vec<RankResponse> = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let at = |what: &str| format!("row {}: {what}", row_base + row as u64);
        let ts = timestamp_ms(ts_array, row)
            .map_err(|e| spine_error(job, at(&format!("column `{}`: {e}", job.timestamp_column))))?
            .ok_or_else(|| spine_error(job, at(&format!("no `{}`", job.timestamp_column))))?;
        let mut ids: Vec<(String, String)> = Vec::with_capacity(layout.keys.len());
        for spec in &layout.keys {
            let mut parts = Vec::with_capacity(spec.columns.len());
            for &c in &spec.columns {
                let text = key_text(batch.column(c), row).ok_or_else(|| {
                    spine_error(
                        job,
                        at(&format!(
                            "key column `{}` is empty or not a string or integer",
                            batch.schema().field(c).name()
                        )),
                    )
                })?;
                parts.push(text);
            }
            let id = if parts.len() == 1 {
                parts.pop().unwrap_or_default()
            } else {
                composite_id(&parts)
            };
            ids.push((spec.entity_type.clone(), id));
        }
        let (candidate_type, candidate) = ids.remove(0);
        let request = RankRequest {
            context: ids,
            candidate_type,
            candidates: vec![candidate],
            features: job.features.clone(),
            deadline: None,
        };
        let answer = store
            .rank_from_history(request, ts, query, job.guard.as_deref())
            .map_err(|source| TrainingError::Read {
                row: row_base + row as u64,
                source,
            })?;
        answers.push(answer);
    }
    let Some(first) = answers.first() else {
        return Ok(None);
    };
    let columns: Vec<(String, DType)> = first
        .context_columns
        .iter()
        .chain(first.columns.iter())
        .map(|c| (c.name.clone(), c.dtype))
        .collect();
    let mut built: Vec<OutColumn> = columns
        .iter()
        .map(|(_, dtype)| OutColumn {
            values: Values::new(*dtype),
            status: StringBuilder::new(),
            time: Int64Builder::new(),
        })
        .collect();
    let mut present = 0u64;
    for answer in &answers {
        let cells = answer.context_cells.iter().cloned().chain(answer.row(0));
        for (column, cell) in built.iter_mut().zip(cells) {
            present += u64::from(cell.value.is_some());
            column.values.push(cell.value.as_ref());
            column.status.append_value(cell.status.as_str());
            column.time.append_option(cell.event_time);
        }
    }
    let mut out: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (name, dtype) in &columns {
        out.push(Field::new(name, arrow_type(*dtype), true));
        out.push(Field::new(format!("{name}__status"), DataType::Utf8, false));
        out.push(Field::new(
            format!("{name}__event_time"),
            DataType::Int64,
            true,
        ));
    }
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for column in built {
        arrays.push(column.values.finish());
        let mut status = column.status;
        arrays.push(Arc::new(status.finish()) as ArrayRef);
        let mut time = column.time;
        arrays.push(Arc::new(time.finish()) as ArrayRef);
    }
    Ok(Some(Answered {
        batch: RecordBatch::try_new(Arc::new(Schema::new(out)), arrays)?,
        values: (columns.len() * answers.len()) as u64,
        present,
    }))
}

/// The output file while it is written: a hidden sibling of `out`, renamed onto it
/// when the job succeeds and removed when it fails.
fn partial_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.partial"))
}

/// Writes answered batches in spine order to the partial file.
struct OutWriter<'a> {
    job: &'a TrainingJob,
    partial: PathBuf,
    writer: Option<ArrowWriter<File>>,
    summary: TrainingSummary,
}

impl OutWriter<'_> {
    fn write(&mut self, answered: Answered) -> Result<(), TrainingError> {
        let parquet_err = |path: &Path| {
            let path = path.to_owned();
            move |source| TrainingError::Parquet { path, source }
        };
        if self.writer.is_none() {
            let file = File::create(&self.partial).map_err(|source| TrainingError::Io {
                path: self.partial.clone(),
                source,
            })?;
            self.writer = Some(
                ArrowWriter::try_new(file, answered.batch.schema(), None)
                    .map_err(parquet_err(&self.job.out))?,
            );
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(&answered.batch)
                .map_err(parquet_err(&self.job.out))?;
        }
        self.summary.rows += answered.batch.num_rows() as u64;
        self.summary.values += answered.values;
        self.summary.present += answered.present;
        Ok(())
    }

    /// Closes the file and puts it in place.
    fn finish(mut self) -> Result<TrainingSummary, TrainingError> {
        let Some(w) = self.writer.take() else {
            return Err(spine_error(self.job, "the spine has no rows".into()));
        };
        w.close().map_err(|source| TrainingError::Parquet {
            path: self.job.out.clone(),
            source,
        })?;
        std::fs::rename(&self.partial, &self.job.out).map_err(|source| {
            let _ = std::fs::remove_file(&self.partial);
            TrainingError::Io {
                path: self.job.out.clone(),
                source,
            }
        })?;
        Ok(std::mem::take(&mut self.summary))
    }
}

impl Drop for OutWriter<'_> {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            // A failed job: what was written is not a training set.
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// The threads a job answers on: `job.threads`, or one per core.
fn threads_of(job: &TrainingJob) -> usize {
    match job.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Builds `job`'s training set from `store`'s history (see the module doc).
///
/// The calling thread reads the spine and writes the output in spine order; batches
/// are answered on the job's worker threads, at most two per worker in flight (read,
/// answered or waiting to be written), so memory does not grow with the spine.
pub fn build(store: &FeatureStore, job: &TrainingJob) -> Result<TrainingSummary, TrainingError> {
    let registry = store.registry();
    let mut reader = SpineReader::open(&job.spine)?;
    let Some(first) = reader.next(&job.spine)? else {
        return Err(spine_error(job, "the spine has no rows".into()));
    };
    let (layout, key_columns) = Layout::of(job, &registry, &first)?;
    let mut out = OutWriter {
        job,
        partial: partial_path(&job.out),
        writer: None,
        summary: TrainingSummary {
            out: job.out.clone(),
            key_columns,
            ..TrainingSummary::default()
        },
    };
    answer_on_workers(store, job, &layout, first, &mut reader, &mut out)?;
    out.finish()
}

/// [`build`]'s loop: batches numbered in spine order go to the workers; answers come
/// back in any order and are written in order.
fn answer_on_workers(
    store: &FeatureStore,
    job: &TrainingJob,
    layout: &Layout,
    first: RecordBatch,
    reader: &mut SpineReader,
    out: &mut OutWriter<'_>,
) -> Result<(), TrainingError> {
    use crossbeam::channel::{bounded, unbounded};
    type Done = (u64, Result<Option<Answered>, TrainingError>);
    let threads = threads_of(job).max(1);
    let max_in_flight = 2 * threads as u64;
    std::thread::scope(|scope| {
        let (work_tx, work_rx) = bounded::<(u64, u64, RecordBatch)>(threads);
        let (done_tx, done_rx) = unbounded::<Done>();
        for _ in 0..threads {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                for (seq, row_base, batch) in work_rx {
                    let answered = answer_batch(store, job, layout, &batch, row_base);
                    if done_tx.send((seq, answered)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut waiting: BTreeMap<u64, Option<Answered>> = BTreeMap::new();
        let mut sent = 0u64;
        let mut written = 0u64;
        // Files the answer of batch `seq`, then writes every batch now next in order.
        let mut take = |(seq, answered): Done,
                        written: &mut u64,
                        out: &mut OutWriter<'_>|
         -> Result<(), TrainingError> {
            waiting.insert(seq, answered?);
            while let Some(answered) = waiting.remove(written) {
                if let Some(answered) = answered {
                    out.write(answered)?;
                }
                *written += 1;
            }
            Ok(())
        };
        let mut next = Some(first);
        let mut row_base = 0u64;
        while let Some(batch) = next {
            while sent - written >= max_in_flight {
                match done_rx.recv() {
                    Ok(done) => take(done, &mut written, out)?,
                    Err(_) => unreachable_workers()?,
                }
            }
            let rows = batch.num_rows() as u64;
            if work_tx.send((sent, row_base, batch)).is_err() {
                unreachable_workers()?;
            }
            sent += 1;
            row_base += rows;
            while let Ok(done) = done_rx.try_recv() {
                take(done, &mut written, out)?;
            }
            next = reader.next(&job.spine)?;
        }
        drop(work_tx);
        while written < sent {
            match done_rx.recv() {
                Ok(done) => take(done, &mut written, out)?,
                Err(_) => unreachable_workers()?,
            }
        }
        Ok(())
    })
}

/// Every worker has ended while batches were outstanding: only a panicking worker
/// does that, and the scope re-raises its panic.
fn unreachable_workers() -> Result<(), TrainingError> {
    Err(TrainingError::WorkersEnded)
}

impl From<parquet::errors::ParquetError> for TrainingError {
    fn from(source: parquet::errors::ParquetError) -> Self {
        TrainingError::Parquet {
            path: PathBuf::new(),
            source,
        }
    }
}

/// Resolves `name` (a file name, no directories) under `dir`: the only paths an HTTP
/// job may read or write. Refuses absolute paths, `..` and separators.
pub fn confined(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(format!(
            "`{name}` is not a plain file name (letters, digits, `_`, `-`, `.`; no directories)"
        ));
    }
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_paths_stay_in_their_folder() {
        let dir = Path::new("/data/exports");
        assert_eq!(
            confined(dir, "train.parquet"),
            Ok(PathBuf::from("/data/exports/train.parquet"))
        );
        for bad in ["", "../x", "/etc/passwd", "a/b", ".hidden", "a\\b"] {
            assert!(confined(dir, bad).is_err(), "{bad}");
        }
    }
}
