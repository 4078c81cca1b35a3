//! Parquet export of the serving log in Feast's logging schema, and training sets: the
//! log joined with labels.
//!
//! One row per (request, candidate); a GET is one row. Columns, in order:
//! * the entity key columns, named by entity type: each context entity, then the
//!   candidate (or the GET's entity);
//! * per feature, context features first: `{group}__{feature}` (the value served, null
//!   where its status carries none), `{group}__{feature}__timestamp` (event time, µs
//!   UTC), `{group}__{feature}__status` (Feast's int32 `FieldStatus`: 1 PRESENT for
//!   present and stale values, 2 NULL_VALUE, 3 NOT_FOUND for not_found, defaulted and
//!   not_fetched, 4 OUTSIDE_MAX_AGE for expired), and
//!   `{group}__{feature}__featstore_status` (featstore's exact status, dictionary
//!   encoded). On-demand features use the group `on_demand`;
//! * `__version__{group}` per group read: the batch version served (null: streamed);
//! * `__log_timestamp` (µs UTC), `__log_date` (date32), `__request_id`, then `__route`.
//!
//! Reads of different shapes (service, entity types, features) go to different files:
//! `OUT/<shape>/part-NNNNN.parquet`, `<shape>` the service name (or `get-<entity
//! type>`/`rank-<candidate type>`) and a hash of the column list.
//!
//! Memory: records are buffered per shape and written as a row group every
//! [`BATCH_VALUES`] values.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, ListBuilder, StringBuilder, StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::Int8Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;

use super::reader::{ScanReport, Selection, scan};
use super::record::{ReadKind, Record};
use crate::query::answer::{ColumnData, ColumnValues};
use crate::types::{DType, FeatureStatus, Value};

/// Values buffered per shape before a row group is written.
pub const BATCH_VALUES: usize = 1 << 20;

/// An export or training-set failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the log.
    #[error(transparent)]
    Log(#[from] super::ServeLogError),
    /// Writing Parquet.
    #[error("writing {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building a batch.
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The labels or the join cannot be used.
    #[error("{0}")]
    Labels(String),
    /// The caller may not read a feature of a selected record (see
    /// [`export_admitted`]); what was written is removed.
    #[error("{0}")]
    Denied(String),
}

/// A caller's check of each exported record: `Err` names the feature it may not read.
pub type RecordCheck<'a> = &'a dyn Fn(&Record) -> Result<(), String>;

/// What an export wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExportSummary {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Rows written.
    pub rows: u64,
    /// Feature values written.
    pub values: u64,
    /// Records exported.
    pub records: u64,
    /// Damaged regions skipped while reading.
    pub corruptions: u64,
    /// Files that ended in a torn block.
    pub torn_files: u64,
}

fn feast_status(s: FeatureStatus) -> i32 {
    match s {
        FeatureStatus::Present | FeatureStatus::Stale => 1,
        FeatureStatus::Null => 2,
        FeatureStatus::NotFound | FeatureStatus::Defaulted | FeatureStatus::NotFetched => 3,
        FeatureStatus::Expired => 4,
    }
}

fn carries_value(s: FeatureStatus) -> bool {
    matches!(
        s,
        FeatureStatus::Present | FeatureStatus::Stale | FeatureStatus::Defaulted
    )
}

pub(crate) fn arrow_type(dtype: DType) -> DataType {
    match dtype {
        DType::Int64 => DataType::Int64,
        DType::Float64 => DataType::Float64,
        DType::Float32 => DataType::Float32,
        DType::Bool => DataType::Boolean,
        DType::String => DataType::Utf8,
        DType::Bytes => DataType::Binary,
        DType::Float32Vector { .. } => {
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
        }
    }
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A column of values of one dtype being built (also by point-in-time training
/// sets, `crate::training`).
pub(crate) enum Values {
    I64(Int64Builder),
    F64(Float64Builder),
    F32(Float32Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Vec(ListBuilder<Float32Builder>),
}

impl Values {
    pub(crate) fn new(dtype: DType) -> Self {
        match dtype {
            DType::Int64 => Values::I64(Int64Builder::new()),
            DType::Float64 => Values::F64(Float64Builder::new()),
            DType::Float32 => Values::F32(Float32Builder::new()),
            DType::Bool => Values::Bool(BooleanBuilder::new()),
            DType::String => Values::Str(StringBuilder::new()),
            DType::Bytes => Values::Bin(BinaryBuilder::new()),
            DType::Float32Vector { .. } => Values::Vec(ListBuilder::new(Float32Builder::new())),
        }
    }

    pub(crate) fn push(&mut self, value: Option<&Value>) {
        match (self, value) {
            (Values::I64(b), Some(Value::Int64(x))) => b.append_value(*x),
            (Values::F64(b), Some(Value::Float64(x))) => b.append_value(*x),
            (Values::F32(b), Some(Value::Float32(x))) => b.append_value(*x),
            (Values::Bool(b), Some(Value::Bool(x))) => b.append_value(*x),
            (Values::Str(b), Some(Value::String(x))) => b.append_value(x),
            (Values::Bin(b), Some(Value::Bytes(x))) => b.append_value(x),
            (Values::Vec(b), Some(Value::Float32Vector(x))) => {
                b.values().append_slice(x);
                b.append(true);
            }
            (Values::I64(b), _) => b.append_null(),
            (Values::F64(b), _) => b.append_null(),
            (Values::F32(b), _) => b.append_null(),
            (Values::Bool(b), _) => b.append_null(),
            (Values::Str(b), _) => b.append_null(),
            (Values::Bin(b), _) => b.append_null(),
            (Values::Vec(b), _) => b.append(false),
        }
    }

    /// Appends every row of `column`, nulls where the status carries no value; the
    /// scalar types without building a `Value` per row.
    fn push_column(&mut self, column: &ColumnValues) {
        let statuses = column.statuses();
        match (self, column.data()) {
            (Values::F32(b), ColumnData::Float32(v)) => {
                for (x, s) in v.iter().zip(statuses) {
                    b.append_option(carries_value(*s).then_some(*x));
                }
            }
            (Values::F64(b), ColumnData::Float64(v)) => {
                for (x, s) in v.iter().zip(statuses) {
                    b.append_option(carries_value(*s).then_some(*x));
                }
            }
            (Values::I64(b), ColumnData::Int64(v)) => {
                for (x, s) in v.iter().zip(statuses) {
                    b.append_option(carries_value(*s).then_some(*x));
                }
            }
            (this, _) => {
                for row in 0..column.len() {
                    this.push(column.value(row).as_ref());
                }
            }
        }
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            Values::I64(mut b) => Arc::new(b.finish()),
            Values::F64(mut b) => Arc::new(b.finish()),
            Values::F32(mut b) => Arc::new(b.finish()),
            Values::Bool(mut b) => Arc::new(b.finish()),
            Values::Str(mut b) => Arc::new(b.finish()),
            Values::Bin(mut b) => Arc::new(b.finish()),
            Values::Vec(mut b) => Arc::new(b.finish()),
        }
    }
}

/// One feature's four columns being built.
struct FeatureColumns {
    values: Values,
    times: TimestampMicrosecondBuilder,
    feast: Int32Builder,
    status: StringDictionaryBuilder<Int8Type>,
}

impl FeatureColumns {
    fn new(dtype: DType) -> Self {
        FeatureColumns {
            values: Values::new(dtype),
            times: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            feast: Int32Builder::new(),
            status: StringDictionaryBuilder::new(),
        }
    }

    fn push_meta(&mut self, status: FeatureStatus, time: Option<i64>) {
        self.times
            .append_option(time.map(|t| t.saturating_mul(1000)));
        self.feast.append_value(feast_status(status));
        // Seven distinct statuses fit an Int8 dictionary.
        let _ = self.status.append(status.as_str());
    }
}

/// The column layout of one read shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape {
    kind: u8,
    service: Option<String>,
    context_types: Vec<String>,
    candidate_type: String,
    /// `(column name, dtype)` of context features, then candidate features.
    context_features: Vec<(String, DType)>,
    features: Vec<(String, DType)>,
    groups: Vec<String>,
}

fn feature_column_name(group: &str, feature: &str, on_demand: bool) -> String {
    let base = feature.split_once('@').map_or(feature, |(n, _)| n);
    let group = if group.is_empty() || on_demand {
        "on_demand"
    } else {
        group
    };
    format!("{group}__{base}")
}

fn dedupe(names: &mut [(String, DType)], taken: &mut Vec<String>) {
    for (name, _) in names.iter_mut() {
        let mut candidate = name.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{name}__{n}");
            n += 1;
        }
        taken.push(candidate.clone());
        *name = candidate;
    }
}

impl Shape {
    fn of(r: &Record) -> Shape {
        let a = &r.answer;
        let mut taken: Vec<String> = a.context.iter().map(|(t, _)| t.clone()).collect();
        taken.push(a.candidate_type.clone());
        let mut context_features: Vec<(String, DType)> = a
            .context_columns
            .iter()
            .zip(&r.context_groups)
            .map(|(c, g)| (feature_column_name(g, &c.feature, c.on_demand), c.dtype))
            .collect();
        let mut features: Vec<(String, DType)> = a
            .columns
            .iter()
            .zip(&r.groups)
            .map(|(c, g)| (feature_column_name(g, &c.feature, c.on_demand), c.dtype))
            .collect();
        dedupe(&mut context_features, &mut taken);
        dedupe(&mut features, &mut taken);
        let mut groups: Vec<String> = a.versions.keys().cloned().collect();
        groups.sort();
        Shape {
            kind: u8::from(r.kind == ReadKind::Ranking),
            service: r.service_name().map(str::to_owned),
            context_types: a.context.iter().map(|(t, _)| t.clone()).collect(),
            candidate_type: a.candidate_type.clone(),
            context_features,
            features,
            groups,
        }
    }

    /// A file-system-safe directory name: the service or route and entity type, and a
    /// hash of the layout.
    fn dir_name(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        let base = match &self.service {
            Some(s) => s.clone(),
            None if self.kind == 0 => format!("get-{}", self.candidate_type),
            None => format!("rank-{}", self.candidate_type),
        };
        let safe: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{safe}-{:08x}", h.finish() as u32)
    }

    fn schema(&self) -> Schema {
        let mut fields = Vec::new();
        for t in &self.context_types {
            fields.push(Field::new(t, DataType::Utf8, false));
        }
        fields.push(Field::new(&self.candidate_type, DataType::Utf8, false));
        for (name, dtype) in self.context_features.iter().chain(&self.features) {
            fields.push(Field::new(name, arrow_type(*dtype), true));
            fields.push(Field::new(
                format!("{name}__timestamp"),
                timestamp_type(),
                true,
            ));
            fields.push(Field::new(
                format!("{name}__status"),
                DataType::Int32,
                false,
            ));
            fields.push(Field::new(
                format!("{name}__featstore_status"),
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
                false,
            ));
        }
        for g in &self.groups {
            fields.push(Field::new(format!("__version__{g}"), DataType::Int64, true));
        }
        fields.push(Field::new("__log_timestamp", timestamp_type(), false));
        fields.push(Field::new("__log_date", DataType::Date32, false));
        fields.push(Field::new("__request_id", DataType::Utf8, false));
        fields.push(Field::new("__route", DataType::Utf8, false));
        Schema::new(fields)
    }

    /// One batch of `records` (all of this shape).
    fn batch(&self, records: &[Record]) -> Result<RecordBatch, ExportError> {
        let mut keys: Vec<StringBuilder> = (0..=self.context_types.len())
            .map(|_| StringBuilder::new())
            .collect();
        let mut context: Vec<FeatureColumns> = self
            .context_features
            .iter()
            .map(|(_, d)| FeatureColumns::new(*d))
            .collect();
        let mut features: Vec<FeatureColumns> = self
            .features
            .iter()
            .map(|(_, d)| FeatureColumns::new(*d))
            .collect();
        let mut versions: Vec<Int64Builder> =
            self.groups.iter().map(|_| Int64Builder::new()).collect();
        let mut log_ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut log_date = Date32Builder::new();
        let mut request_ids = StringBuilder::new();
        let mut routes = StringBuilder::new();
        for r in records {
            let a = &r.answer;
            let rows = a.candidates.len();
            for row in 0..rows {
                for (k, (_, id)) in keys.iter_mut().zip(&a.context) {
                    k.append_value(id);
                }
                if let Some(k) = keys.last_mut()
                    && let Some(id) = a.candidates.get(row)
                {
                    k.append_value(id);
                }
                for (b, cell) in context.iter_mut().zip(&a.context_cells) {
                    b.values.push(cell.value.as_ref());
                    b.push_meta(cell.status, cell.event_time);
                }
                for (b, g) in versions.iter_mut().zip(&self.groups) {
                    b.append_option(a.versions.get(g).and_then(|v| i64::try_from(*v).ok()));
                }
                log_ts.append_value(r.log_ms().saturating_mul(1000));
                log_date.append_value(r.log_ms().div_euclid(86_400_000) as i32);
                request_ids.append_value(&r.request_id);
                routes.append_value(&r.route);
            }
            for (b, column) in features.iter_mut().zip(&a.values) {
                b.values.push_column(column);
                for row in 0..column.len() {
                    b.push_meta(column.status(row), column.event_time(row));
                }
            }
        }
        let mut arrays: Vec<ArrayRef> = keys
            .into_iter()
            .map(|mut k| Arc::new(k.finish()) as ArrayRef)
            .collect();
        for mut f in context.into_iter().chain(features) {
            arrays.push(f.values.finish());
            arrays.push(Arc::new(f.times.finish()));
            arrays.push(Arc::new(f.feast.finish()));
            arrays.push(Arc::new(f.status.finish()));
        }
        for mut v in versions {
            arrays.push(Arc::new(v.finish()));
        }
        arrays.push(Arc::new(log_ts.finish()));
        arrays.push(Arc::new(log_date.finish()));
        arrays.push(Arc::new(request_ids.finish()));
        arrays.push(Arc::new(routes.finish()));
        Ok(RecordBatch::try_new(Arc::new(self.schema()), arrays)?)
    }
}

struct ShapeOut {
    shape: Shape,
    dir: PathBuf,
    writer: Option<(PathBuf, ArrowWriter<File>)>,
    pending: Vec<Record>,
    pending_values: usize,
    parts: usize,
}

impl ShapeOut {
    fn flush(&mut self, summary: &mut ExportSummary) -> Result<(), ExportError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = self.shape.batch(&self.pending)?;
        if self.writer.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(|source| ExportError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let path = self.dir.join(format!("part-{:05}.parquet", self.parts));
            self.parts += 1;
            let file = File::create(&path).map_err(|source| ExportError::Io {
                path: path.clone(),
                source,
            })?;
            let writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(|source| {
                ExportError::Parquet {
                    path: path.clone(),
                    source,
                }
            })?;
            summary.files.push(path.clone());
            self.writer = Some((path, writer));
        }
        if let Some((path, writer)) = self.writer.as_mut() {
            writer
                .write(&batch)
                .map_err(|source| ExportError::Parquet {
                    path: path.clone(),
                    source,
                })?;
        }
        summary.rows += batch.num_rows() as u64;
        summary.values += self.pending_values as u64;
        self.pending.clear();
        self.pending_values = 0;
        Ok(())
    }

    fn close(&mut self) -> Result<(), ExportError> {
        if let Some((path, writer)) = self.writer.take() {
            writer
                .close()
                .map_err(|source| ExportError::Parquet { path, source })?;
        }
        Ok(())
    }
}

/// Exports the records of `log_dir` that `selection` picks into `out` (see the module
/// docs for the layout).
pub fn export(
    log_dir: &Path,
    selection: &Selection,
    out: &Path,
) -> Result<ExportSummary, ExportError> {
    export_admitted(log_dir, selection, out, None)
}

/// [`export`] for a caller whose read rules `admit` judges every selected record:
/// the first record refused fails the export with [`ExportError::Denied`], and the
/// shape directories it had written under `out` are removed, so nothing the caller
/// may not read is left behind.
pub fn export_admitted(
    log_dir: &Path,
    selection: &Selection,
    out: &Path,
    admit: Option<RecordCheck<'_>>,
) -> Result<ExportSummary, ExportError> {
    let mut shapes: HashMap<Shape, ShapeOut> = HashMap::new();
    let mut summary = ExportSummary::default();
    let mut failed: Option<ExportError> = None;
    let report = scan(log_dir, selection, |record| {
        if failed.is_some() {
            return;
        }
        if let Some(admit) = admit
            && let Err(reason) = admit(&record)
        {
            failed = Some(ExportError::Denied(reason));
            return;
        }
        let shape = Shape::of(&record);
        let entry = shapes.entry(shape.clone()).or_insert_with(|| ShapeOut {
            dir: out.join(shape.dir_name()),
            shape,
            writer: None,
            pending: Vec::new(),
            pending_values: 0,
            parts: 0,
        });
        entry.pending_values += record.value_count();
        entry.pending.push(record);
        summary.records += 1;
        if entry.pending_values >= BATCH_VALUES
            && let Err(e) = entry.flush(&mut summary)
        {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        if matches!(e, ExportError::Denied(_)) {
            let dirs: Vec<PathBuf> = shapes.values().map(|s| s.dir.clone()).collect();
            drop(shapes);
            for dir in dirs {
                if let Err(io) = std::fs::remove_dir_all(&dir)
                    && io.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(ExportError::Io {
                        path: dir,
                        source: io,
                    });
                }
            }
        }
        return Err(e);
    }
    for s in shapes.values_mut() {
        s.flush(&mut summary)?;
        s.close()?;
    }
    summary.files.sort();
    summary.corruptions = report.corruptions;
    summary.torn_files = report.torn_files;
    Ok(summary)
}

/// One label column, typed from its file.
enum LabelColumn {
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Str(Vec<Option<String>>),
}

impl LabelColumn {
    fn text(&self, row: usize) -> Option<String> {
        match self {
            LabelColumn::I64(v) => v.get(row).copied().flatten().map(|x| x.to_string()),
            LabelColumn::F64(v) => v.get(row).copied().flatten().map(|x| x.to_string()),
            LabelColumn::Bool(v) => v.get(row).copied().flatten().map(|x| x.to_string()),
            LabelColumn::Str(v) => v.get(row).cloned().flatten(),
        }
    }

    /// The column of the output rows: `rows[i]` is the label row of output row `i`.
    fn take(&self, rows: &[Option<usize>]) -> ArrayRef {
        match self {
            LabelColumn::I64(v) => {
                let mut b = Int64Builder::new();
                for r in rows {
                    b.append_option(r.and_then(|r| v.get(r).copied().flatten()));
                }
                Arc::new(b.finish())
            }
            LabelColumn::F64(v) => {
                let mut b = Float64Builder::new();
                for r in rows {
                    b.append_option(r.and_then(|r| v.get(r).copied().flatten()));
                }
                Arc::new(b.finish())
            }
            LabelColumn::Bool(v) => {
                let mut b = BooleanBuilder::new();
                for r in rows {
                    b.append_option(r.and_then(|r| v.get(r).copied().flatten()));
                }
                Arc::new(b.finish())
            }
            LabelColumn::Str(v) => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(r.and_then(|r| v.get(r).cloned().flatten()));
                }
                Arc::new(b.finish())
            }
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            LabelColumn::I64(_) => DataType::Int64,
            LabelColumn::F64(_) => DataType::Float64,
            LabelColumn::Bool(_) => DataType::Boolean,
            LabelColumn::Str(_) => DataType::Utf8,
        }
    }
}

/// Reads a labels file (`.parquet`, else CSV with a header) into named columns.
fn read_labels(path: &Path) -> Result<Vec<(String, LabelColumn)>, ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_owned(),
        source,
    };
    if path.extension().is_some_and(|e| e == "parquet") {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
        let file = File::open(path).map_err(io)?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|source| ExportError::Parquet {
                path: path.to_owned(),
                source,
            })?;
        let mut columns: Vec<(String, LabelColumn)> = Vec::new();
        for batch in reader {
            let batch = batch?;
            if columns.is_empty() {
                for f in batch.schema().fields() {
                    let col = match f.data_type() {
                        DataType::Int64 | DataType::Int32 => LabelColumn::I64(Vec::new()),
                        DataType::Float64 | DataType::Float32 => LabelColumn::F64(Vec::new()),
                        DataType::Boolean => LabelColumn::Bool(Vec::new()),
                        DataType::Utf8 | DataType::LargeUtf8 => LabelColumn::Str(Vec::new()),
                        other => {
                            return Err(ExportError::Labels(format!(
                                "label column `{}` has type {other}; expected integers, floats, booleans or strings",
                                f.name()
                            )));
                        }
                    };
                    columns.push((f.name().clone(), col));
                }
            }
            for ((_, col), array) in columns.iter_mut().zip(batch.columns()) {
                let valid = |i: usize| array.is_valid(i);
                match (col, array.data_type()) {
                    (LabelColumn::I64(v), DataType::Int64) => {
                        let a = array.as_primitive::<Int64Type>();
                        v.extend((0..a.len()).map(|i| valid(i).then(|| a.value(i))));
                    }
                    (LabelColumn::I64(v), DataType::Int32) => {
                        let a = array.as_primitive::<Int32Type>();
                        v.extend((0..a.len()).map(|i| valid(i).then(|| i64::from(a.value(i)))));
                    }
                    (LabelColumn::F64(v), DataType::Float64) => {
                        let a = array.as_primitive::<Float64Type>();
                        v.extend((0..a.len()).map(|i| valid(i).then(|| a.value(i))));
                    }
                    (LabelColumn::F64(v), DataType::Float32) => {
                        let a = array.as_primitive::<Float32Type>();
                        v.extend((0..a.len()).map(|i| valid(i).then(|| f64::from(a.value(i)))));
                    }
                    (LabelColumn::Bool(v), _) => {
                        let a = array.as_boolean();
                        v.extend((0..a.len()).map(|i| valid(i).then(|| a.value(i))));
                    }
                    (LabelColumn::Str(v), DataType::Utf8) => {
                        let a = array.as_string::<i32>();
                        v.extend((0..a.len()).map(|i| valid(i).then(|| a.value(i).to_owned())));
                    }
                    (LabelColumn::Str(v), _) => {
                        let a = array.as_string::<i64>();
                        v.extend((0..a.len()).map(|i| valid(i).then(|| a.value(i).to_owned())));
                    }
                    _ => {
                        return Err(ExportError::Labels(
                            "label column types changed between batches".into(),
                        ));
                    }
                }
            }
        }
        return Ok(columns);
    }
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| ExportError::Labels(format!("reading {}: {e}", path.display())))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ExportError::Labels(format!("reading {}: {e}", path.display())))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut text: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for row in reader.records() {
        let row =
            row.map_err(|e| ExportError::Labels(format!("reading {}: {e}", path.display())))?;
        for (col, field) in text.iter_mut().zip(row.iter()) {
            col.push(field.to_owned());
        }
    }
    Ok(headers
        .into_iter()
        .zip(text)
        .map(|(name, col)| {
            fn opt(s: &String) -> Option<&String> {
                (!s.is_empty()).then_some(s)
            }
            let parsed = if col.iter().filter_map(opt).all(|s| s.parse::<i64>().is_ok()) {
                LabelColumn::I64(
                    col.iter()
                        .map(|s| opt(s).and_then(|s| s.parse().ok()))
                        .collect(),
                )
            } else if col.iter().filter_map(opt).all(|s| s.parse::<f64>().is_ok()) {
                LabelColumn::F64(
                    col.iter()
                        .map(|s| opt(s).and_then(|s| s.parse().ok()))
                        .collect(),
                )
            } else if col
                .iter()
                .filter_map(opt)
                .all(|s| s == "true" || s == "false")
            {
                LabelColumn::Bool(col.iter().map(|s| opt(s).map(|s| s == "true")).collect())
            } else {
                LabelColumn::Str(col.iter().map(|s| opt(s).cloned()).collect())
            };
            (name, parsed)
        })
        .collect())
}

/// What a training set holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TrainingSummary {
    /// Rows written: every served (request, candidate) of the selection.
    pub rows: u64,
    /// Rows that found a label row.
    pub labelled_rows: u64,
    /// Label rows that matched no served row.
    pub unmatched_labels: u64,
}

/// Writes `out`: the selected log rows (one read shape: pick one with
/// `selection.service`) with the label columns of `labels` joined by `join`
/// (`request_id`, optionally followed by the candidate's entity column), a left join:
/// every served row is kept, label columns null where no label matched.
pub fn training_set(
    log_dir: &Path,
    selection: &Selection,
    labels: &Path,
    join: &[String],
    out: &Path,
) -> Result<TrainingSummary, ExportError> {
    let mut by_shape: BTreeMap<String, (Shape, Vec<Record>)> = BTreeMap::new();
    let _report: ScanReport = scan(log_dir, selection, |r| {
        let shape = Shape::of(&r);
        by_shape
            .entry(shape.dir_name())
            .or_insert_with(|| (shape, Vec::new()))
            .1
            .push(r);
    })?;
    if by_shape.len() > 1 {
        return Err(ExportError::Labels(format!(
            "the selection holds reads of {} shapes ({}); pick one with --service",
            by_shape.len(),
            by_shape.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let Some((shape, records)) = by_shape.into_values().next() else {
        return Err(ExportError::Labels(
            "the selection holds no logged read".into(),
        ));
    };
    let [request_key, entity_key @ ..] = join else {
        return Err(ExportError::Labels(
            "--join needs request_id[,entity column]".into(),
        ));
    };
    if entity_key.len() > 1 {
        return Err(ExportError::Labels(
            "--join takes at most two columns".into(),
        ));
    }
    let entity_key = entity_key.first();
    if let Some(e) = entity_key
        && *e != shape.candidate_type
    {
        return Err(ExportError::Labels(format!(
            "join column `{e}` is not the candidate column of the log (`{}`)",
            shape.candidate_type
        )));
    }
    let labels = read_labels(labels)?;
    let find = |name: &str| labels.iter().position(|(n, _)| n == name);
    let request_col = find(request_key)
        .or_else(|| find("__request_id"))
        .ok_or_else(|| ExportError::Labels(format!("labels have no column `{request_key}`")))?;
    let entity_col = entity_key
        .map(|e| find(e).ok_or_else(|| ExportError::Labels(format!("labels have no column `{e}`"))))
        .transpose()?;
    let label_rows = labels.first().map_or(0, |(_, c)| match c {
        LabelColumn::I64(v) => v.len(),
        LabelColumn::F64(v) => v.len(),
        LabelColumn::Bool(v) => v.len(),
        LabelColumn::Str(v) => v.len(),
    });
    let mut index: HashMap<(String, Option<String>), usize> = HashMap::with_capacity(label_rows);
    for row in 0..label_rows {
        let Some(rid) = labels.get(request_col).and_then(|(_, c)| c.text(row)) else {
            continue;
        };
        let entity = entity_col
            .and_then(|c| labels.get(c))
            .and_then(|(_, c)| c.text(row));
        index.insert((rid, entity), row);
    }
    let batch = shape.batch(&records)?;
    let mut matched: Vec<Option<usize>> = Vec::with_capacity(batch.num_rows());
    let mut used = vec![false; label_rows];
    for r in &records {
        for c in &r.answer.candidates {
            let key = (r.request_id.clone(), entity_key.map(|_| c.clone()));
            let row = index.get(&key).copied();
            if let Some(row) = row
                && let Some(u) = used.get_mut(row)
            {
                *u = true;
            }
            matched.push(row);
        }
    }
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for (i, (name, col)) in labels.iter().enumerate() {
        if i == request_col || Some(i) == entity_col {
            continue;
        }
        let mut name = name.clone();
        while fields.iter().any(|f| *f.name() == name) {
            name = format!("label__{name}");
        }
        fields.push(Arc::new(Field::new(name, col.data_type(), true)));
        arrays.push(col.take(&matched));
    }
    let joined = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let file = File::create(out).map_err(|source| ExportError::Io {
        path: out.to_owned(),
        source,
    })?;
    let parquet_err = |source| ExportError::Parquet {
        path: out.to_owned(),
        source,
    };
    let mut writer = ArrowWriter::try_new(file, joined.schema(), None).map_err(parquet_err)?;
    writer.write(&joined).map_err(parquet_err)?;
    writer.close().map_err(parquet_err)?;
    Ok(TrainingSummary {
        rows: joined.num_rows() as u64,
        labelled_rows: matched.iter().filter(|m| m.is_some()).count() as u64,
        unmatched_labels: used.iter().filter(|u| !**u).count() as u64,
    })
}
