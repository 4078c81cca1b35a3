//! File writers: wide Parquet, wide CSV, long CSV and the features TOML document.
//!
//! Writers stream rows in batches, so memory stays bounded whatever the row count.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, ListBuilder,
    StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::registry::{FeatureSpec, Sensitivity};
use crate::types::{DType, TimestampMs, Value};

/// Rows per Arrow record batch (and per CSV flush granule).
const BATCH_ROWS: u64 = 16_384;
/// Rows per Parquet row group: bounds the writer's buffered column chunks (about 15 MB
/// for 50 float columns).
const ROW_GROUP_ROWS: usize = 65_536;

/// A feature column of a wide table.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) dtype: DType,
    pub(super) nullable: bool,
}

/// A table with one row per entity and one column per feature, generated on demand.
pub(super) trait WideTable {
    /// Feature columns, in file order (after `entity_id` and `event_time`).
    fn columns(&self) -> &[Column];
    /// Number of rows.
    fn rows(&self) -> u64;
    /// Entity id of a row.
    fn entity_id(&self, row: u64) -> String;
    /// Event time of a row.
    fn event_time(&self, row: u64) -> TimestampMs;
    /// Value of a cell (`Value::Null` for an empty cell).
    fn cell(&self, row: u64, column: usize) -> Value;
}

pub(super) fn io_other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn mismatch(column: &Column, row: u64, value: &Value) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "generated value {value:?} for column `{}` row {row} is not a {}",
            column.name, column.dtype
        ),
    )
}

fn vector_item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, false))
}

/// The Arrow type a feature of type `dtype` is written as.
pub(super) fn arrow_type(dtype: DType) -> DataType {
    match dtype {
        DType::Int64 => DataType::Int64,
        DType::Float64 => DataType::Float64,
        DType::Float32 => DataType::Float32,
        DType::Bool => DataType::Boolean,
        DType::String => DataType::Utf8,
        DType::Bytes => DataType::Binary,
        DType::Float32Vector { .. } => DataType::List(vector_item_field()),
    }
}

fn wide_schema(table: &dyn WideTable) -> SchemaRef {
    let mut fields = vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("event_time", DataType::Int64, false),
    ];
    fields.extend(
        table
            .columns()
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.dtype), c.nullable)),
    );
    Arc::new(Schema::new(fields))
}

macro_rules! scalar_column {
    ($table:expr, $col:expr, $column:expr, $rows:expr, $builder:ty, $variant:ident) => {{
        let mut builder = <$builder>::with_capacity($rows.clone().count());
        for row in $rows {
            match $table.cell(row, $col) {
                Value::$variant(v) => builder.append_value(v),
                Value::Null => builder.append_null(),
                other => return Err(mismatch($column, row, &other)),
            }
        }
        Arc::new(builder.finish()) as ArrayRef
    }};
}

fn build_column(
    table: &dyn WideTable,
    col: usize,
    column: &Column,
    rows: std::ops::Range<u64>,
) -> io::Result<ArrayRef> {
    let n = (rows.end - rows.start) as usize;
    Ok(match column.dtype {
        DType::Int64 => scalar_column!(table, col, column, rows, Int64Builder, Int64),
        DType::Float64 => scalar_column!(table, col, column, rows, Float64Builder, Float64),
        DType::Float32 => scalar_column!(table, col, column, rows, Float32Builder, Float32),
        DType::Bool => scalar_column!(table, col, column, rows, BooleanBuilder, Bool),
        DType::String => {
            let mut builder = StringBuilder::with_capacity(n, n * 8);
            for row in rows {
                match table.cell(row, col) {
                    Value::String(v) => builder.append_value(v),
                    Value::Null => builder.append_null(),
                    other => return Err(mismatch(column, row, &other)),
                }
            }
            Arc::new(builder.finish())
        }
        DType::Bytes => {
            let mut builder = BinaryBuilder::with_capacity(n, n * 8);
            for row in rows {
                match table.cell(row, col) {
                    Value::Bytes(v) => builder.append_value(v),
                    Value::Null => builder.append_null(),
                    other => return Err(mismatch(column, row, &other)),
                }
            }
            Arc::new(builder.finish())
        }
        DType::Float32Vector { dim } => {
            let values = Float32Builder::with_capacity(n * dim as usize);
            let mut builder = ListBuilder::with_capacity(values, n).with_field(vector_item_field());
            for row in rows {
                match table.cell(row, col) {
                    Value::Float32Vector(v) if v.len() == dim as usize => {
                        builder.values().append_slice(&v);
                        builder.append(true);
                    }
                    Value::Null => builder.append_null(),
                    other => return Err(mismatch(column, row, &other)),
                }
            }
            Arc::new(builder.finish())
        }
    })
}

fn build_batch(
    table: &dyn WideTable,
    schema: &SchemaRef,
    rows: std::ops::Range<u64>,
) -> io::Result<RecordBatch> {
    let n = (rows.end - rows.start) as usize;
    let mut ids = StringBuilder::with_capacity(n, n * 8);
    let mut times = Int64Builder::with_capacity(n);
    for row in rows.clone() {
        ids.append_value(table.entity_id(row));
        times.append_value(table.event_time(row));
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(times.finish())];
    for (col, column) in table.columns().iter().enumerate() {
        arrays.push(build_column(table, col, column, rows.clone())?);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(io_other)
}

/// Writes `table` as Snappy-compressed Parquet: `entity_id` (Utf8), `event_time` (Int64
/// epoch millis), then one column per feature in its natural Arrow type.
pub(super) fn write_wide_parquet(path: &Path, table: &dyn WideTable) -> io::Result<()> {
    let schema = wide_schema(table);
    // Dictionary encoding only pays for repetitive strings (not the unique entity ids):
    // on random floats it triples the write time and grows the file by half before
    // falling back to plain encoding.
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .set_dictionary_enabled(false);
    for column in table.columns() {
        if column.dtype == DType::String {
            props =
                props.set_column_dictionary_enabled(ColumnPath::from(column.name.as_str()), true);
        }
    }
    let props = props.build();
    let file = File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(io_other)?;
    let total = table.rows();
    let mut start = 0;
    while start < total {
        let end = total.min(start + BATCH_ROWS);
        let batch = build_batch(table, &schema, start..end)?;
        writer.write(&batch).map_err(io_other)?;
        start = end;
    }
    writer.close().map_err(io_other)?;
    Ok(())
}

/// Writes `table` as CSV with a header `entity_id,event_time,<feature>...`; event times
/// are epoch milliseconds and null cells are empty.
pub(super) fn write_wide_csv(path: &Path, table: &dyn WideTable) -> io::Result<()> {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record(
        ["entity_id", "event_time"]
            .into_iter()
            .chain(table.columns().iter().map(|c| c.name.as_str())),
    )?;
    let mut text = String::new();
    for row in 0..table.rows() {
        writer.write_field(table.entity_id(row))?;
        writer.write_field(table.event_time(row).to_string())?;
        for col in 0..table.columns().len() {
            text.clear();
            write_value_text(&mut text, &table.cell(row, col));
            writer.write_field(&text)?;
        }
        writer.write_record(None::<&[u8]>)?;
    }
    writer.flush()
}

/// Appends the textual form of `value` that `Value::parse_text` reads back exactly:
/// Rust's `{}` for numbers (shortest round-trip form), `[a, b, ...]` for vectors, hex
/// for bytes and nothing for null.
pub(super) fn write_value_text(out: &mut String, value: &Value) {
    // Writing into a String cannot fail.
    let _ = match value {
        Value::Null => Ok(()),
        Value::Int64(v) => write!(out, "{v}"),
        Value::Float64(v) => write!(out, "{v}"),
        Value::Float32(v) => write!(out, "{v}"),
        Value::Bool(v) => write!(out, "{v}"),
        Value::String(v) => write!(out, "{v}"),
        Value::Bytes(v) => v.iter().try_for_each(|b| write!(out, "{b:02x}")),
        Value::Float32Vector(v) => {
            out.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{x}");
            }
            out.push(']');
            Ok(())
        }
    };
}

/// `t` as RFC 3339 text with milliseconds (`2026-11-20T13:04:05.500Z`), or `None`
/// where that form cannot express it (before 1970 or after 9999).
pub(super) fn rfc3339_millis(t: TimestampMs) -> Option<String> {
    const YEAR_10000_MS: i64 = 253_402_300_800_000;
    if !(0..YEAR_10000_MS).contains(&t) {
        return None;
    }
    let time = UNIX_EPOCH + Duration::from_millis(t as u64);
    Some(humantime::format_rfc3339_millis(time).to_string())
}

/// One row of a long CSV file.
pub(super) struct LongRow<'a> {
    pub(super) entity_id: &'a str,
    pub(super) feature: &'a str,
    pub(super) event_time: TimestampMs,
    pub(super) rfc3339: bool,
    pub(super) value: &'a Value,
}

/// Streams a long CSV file: `entity_id,feature_name,event_time,value`.
pub(super) struct LongCsvWriter {
    writer: csv::Writer<File>,
    text: String,
}

impl LongCsvWriter {
    pub(super) fn create(path: &Path) -> io::Result<Self> {
        let mut writer = csv::Writer::from_path(path)?;
        writer.write_record(["entity_id", "feature_name", "event_time", "value"])?;
        Ok(LongCsvWriter {
            writer,
            text: String::new(),
        })
    }

    pub(super) fn write(&mut self, row: &LongRow<'_>) -> io::Result<()> {
        let time = row
            .rfc3339
            .then(|| rfc3339_millis(row.event_time))
            .flatten()
            .unwrap_or_else(|| row.event_time.to_string());
        self.text.clear();
        write_value_text(&mut self.text, row.value);
        self.writer
            .write_record([row.entity_id, row.feature, &time, &self.text])?;
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// A TOML basic string, escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn sensitivity_text(sensitivity: Sensitivity) -> &'static str {
    match sensitivity {
        Sensitivity::Public => "public",
        Sensitivity::Internal => "internal",
        Sensitivity::Confidential => "confidential",
        Sensitivity::Pii => "pii",
    }
}

/// Renders specs as `[[feature]]` tables, the format `registry::file` parses.
pub(super) fn render_features_toml(header: &str, specs: &[FeatureSpec]) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    for spec in specs {
        let _ = render_spec(&mut out, spec);
    }
    out
}

fn render_spec(out: &mut String, spec: &FeatureSpec) -> std::fmt::Result {
    writeln!(out, "\n[[feature]]")?;
    writeln!(out, "name = {}", toml_string(&spec.name))?;
    writeln!(out, "version = {}", spec.version)?;
    writeln!(out, "entity_type = {}", toml_string(&spec.entity_type))?;
    writeln!(out, "group = {}", toml_string(&spec.group))?;
    writeln!(out, "owner = {}", toml_string(&spec.owner))?;
    writeln!(out, "dtype = {}", toml_string(&spec.dtype.to_string()))?;
    if let Some(transform) = &spec.transform_ref {
        writeln!(out, "transform_ref = {}", toml_string(transform))?;
    }
    if let Some(slo) = spec.freshness_slo {
        let text = humantime::format_duration(slo).to_string();
        writeln!(out, "freshness_slo = {}", toml_string(&text))?;
    }
    if let Some(ttl) = spec.ttl {
        let text = humantime::format_duration(ttl).to_string();
        writeln!(out, "ttl = {}", toml_string(&text))?;
    }
    writeln!(
        out,
        "sensitivity = {}",
        toml_string(sensitivity_text(spec.sensitivity))
    )?;
    writeln!(out, "description = {}", toml_string(&spec.description))?;
    let tags: Vec<String> = spec.tags.iter().map(|t| toml_string(t)).collect();
    writeln!(out, "tags = [{}]", tags.join(", "))
}
