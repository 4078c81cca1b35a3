//! Batch input readers: turns one CSV or Parquet file into a stream of
//! (entity, feature, event time, value) [`Record`]s for the loader.
//!
//! This module owns format and layout detection, header/schema resolution against the
//! group's features, the conversion of cells to [`Value`]s of the feature's dtype, and
//! the error type every reader reports through. The format-specific streaming lives in
//! the `csv` and `parquet` submodules.
//!
//! # Layouts
//!
//! * **long**: columns `entity_id`, `feature_name`, `event_time`, `value`; one record per
//!   row.
//! * **wide**: an `entity_id` column, an optional `event_time` column and one column per
//!   feature, named after the feature; one record per feature column per row.
//!
//! Null or empty cells become [`Value::Null`] records (they are still emitted). Readers
//! stream with bounded memory and call the sink once per record; the first error (from
//! the file or from the sink) stops the read.

pub mod checksum;
mod csv;
mod parquet;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::{DType, FeatureId, TimestampMs, Value, parse_timestamp_ms};

/// The file format of a batch input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// Comma-separated text with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl InputFormat {
    /// The lower-case name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Csv => "csv",
            InputFormat::Parquet => "parquet",
        }
    }

    /// Detects the format from a file extension (`.csv`, `.parquet`, `.pq`; any case).
    pub fn from_path(path: &Path) -> Option<InputFormat> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("csv") {
            Some(InputFormat::Csv)
        } else if ext.eq_ignore_ascii_case("parquet") || ext.eq_ignore_ascii_case("pq") {
            Some(InputFormat::Parquet)
        } else {
            None
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("csv") {
            Ok(InputFormat::Csv)
        } else if s.eq_ignore_ascii_case("parquet") || s.eq_ignore_ascii_case("pq") {
            Ok(InputFormat::Parquet)
        } else {
            Err(format!(
                "unknown input format `{s}`: expected csv or parquet"
            ))
        }
    }
}

/// How features are laid out in a batch input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One row per value: `entity_id`, `feature_name`, `event_time`, `value`.
    Long,
    /// One row per entity: `entity_id`, optional `event_time`, one column per feature.
    Wide,
}

impl Layout {
    /// The lower-case name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Long => "long",
            Layout::Wide => "wide",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("long") {
            Ok(Layout::Long)
        } else if s.eq_ignore_ascii_case("wide") {
            Ok(Layout::Wide)
        } else {
            Err(format!("unknown layout `{s}`: expected long or wide"))
        }
    }
}

/// How to read one input file. The default detects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputOptions {
    /// Overrides the format detected from the file extension.
    pub format: Option<InputFormat>,
    /// Overrides the layout detected from the columns (long if it has `feature_name` and
    /// `value`, else wide).
    pub layout: Option<Layout>,
    /// Event time for rows without one: used when the file has no `event_time` column
    /// and for null/empty `event_time` cells. Without it those are errors.
    pub default_event_time: Option<TimestampMs>,
    /// Skip columns that are neither a known column nor a registered feature instead of
    /// failing.
    pub ignore_unknown_columns: bool,
}

/// A feature a file may contain: its id and dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureColumn {
    /// The registry's id of the (feature, version).
    pub id: FeatureId,
    /// The dtype values are converted to.
    pub dtype: DType,
}

/// One value read from an input file, handed to the sink. It borrows the reader's
/// buffers: copy what must outlive the sink call.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// 1-based data row number (the first row after a CSV header is row 1).
    pub row: u64,
    /// The entity key, as bytes (integer Parquet ids are written in decimal).
    pub entity_id: &'a [u8],
    /// The feature the value belongs to.
    pub feature: FeatureId,
    /// Event time in milliseconds since the epoch.
    pub event_time: TimestampMs,
    /// The value, of the feature's dtype, or [`Value::Null`].
    pub value: &'a Value,
}

/// What [`read_input`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSummary {
    /// The format used.
    pub format: InputFormat,
    /// The layout used.
    pub layout: Layout,
    /// Data rows read (header excluded).
    pub rows: u64,
    /// Records handed to the sink (nulls included).
    pub records: u64,
}

/// Why reading an input failed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The columns do not fit: missing or unknown columns, unsupported column types.
    #[error("{path}: {reason}")]
    BadSchema {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// One cell could not be read or converted.
    #[error("{path}: row {row}, column `{column}`: {reason}")]
    BadRow {
        /// The file.
        path: String,
        /// 1-based data row number (header excluded).
        row: u64,
        /// The column's name.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The Parquet file is corrupt or could not be decoded.
    #[error("{path}: bad Parquet file: {reason}")]
    Parquet {
        /// The file.
        path: String,
        /// The decoder's message.
        reason: String,
    },
    /// The sink asked to stop; the message is the sink's.
    #[error("{0}")]
    Sink(String),
}

/// Reads `path` and calls `sink` once per record, in file order (for wide Parquet: per
/// batch of ~8192 rows, column by column).
///
/// `features` maps every accepted feature name (the loader passes both `name` and
/// `name@version`) to its id and dtype. Unknown feature names in long rows are
/// [`InputError::BadRow`] errors ("feature `x` is not registered in this group"); unknown
/// columns in either layout are [`InputError::BadSchema`] errors unless
/// [`InputOptions::ignore_unknown_columns`].
pub fn read_input(
    path: &Path,
    options: &InputOptions,
    features: &HashMap<String, FeatureColumn>,
    sink: &mut dyn FnMut(Record<'_>) -> Result<(), InputError>,
) -> Result<InputSummary, InputError> {
    read_input_checksummed(path, None, options, features, sink).map(|(summary, ..)| summary)
}

/// [`read_input`], also returning the file's size and CRC-32, computed from the bytes
/// read (see [`checksum`]): the file is read once.
pub fn read_input_checksummed(
    path: &Path,
    format: Option<InputFormat>,
    options: &InputOptions,
    features: &HashMap<String, FeatureColumn>,
    sink: &mut dyn FnMut(Record<'_>) -> Result<(), InputError>,
) -> Result<(InputSummary, u64, u32), InputError> {
    let format = match format.or(options.format) {
        Some(format) => format,
        None => InputFormat::from_path(path).ok_or_else(|| InputError::BadSchema {
            path: path.display().to_string(),
            reason: "cannot tell the format from the file extension: expected .csv, \
                     .parquet or .pq, or set the format explicitly"
                .to_owned(),
        })?,
    };
    let io = |source| InputError::Io {
        path: path.display().to_string(),
        source,
    };
    let checksum = checksum::FileChecksum::open(path).map_err(io)?;
    let summary = match format {
        InputFormat::Csv => csv::read_csv(path, options, features, &checksum, sink),
        InputFormat::Parquet => parquet::read_parquet(path, options, features, &checksum, sink),
    }?;
    let (bytes, crc) = checksum.finish().map_err(io)?;
    Ok((summary, bytes, crc))
}

// ---------------------------------------------------------------------------------------
// Shared by the readers.

pub(crate) const ENTITY_ID: &str = "entity_id";
pub(crate) const FEATURE_NAME: &str = "feature_name";
pub(crate) const EVENT_TIME: &str = "event_time";
pub(crate) const VALUE: &str = "value";

/// Which header column plays which part, resolved once per file.
#[derive(Debug)]
pub(crate) enum Plan {
    Long {
        entity: usize,
        feature: usize,
        /// `None`: every row uses the default event time.
        time: Option<usize>,
        value: usize,
    },
    Wide {
        entity: usize,
        /// `None`: every row uses the default event time.
        time: Option<usize>,
        /// (column index, feature), in column order.
        features: Vec<(usize, FeatureColumn)>,
    },
}

impl Plan {
    pub(crate) fn layout(&self) -> Layout {
        match self {
            Plan::Long { .. } => Layout::Long,
            Plan::Wide { .. } => Layout::Wide,
        }
    }

    /// The column indices the plan reads, ascending.
    pub(crate) fn used_columns(&self) -> Vec<usize> {
        let mut used = match self {
            Plan::Long {
                entity,
                feature,
                time,
                value,
            } => {
                let mut v = vec![*entity, *feature, *value];
                v.extend(*time);
                v
            }
            Plan::Wide {
                entity,
                time,
                features,
            } => {
                let mut v = vec![*entity];
                v.extend(*time);
                v.extend(features.iter().map(|(i, _)| *i));
                v
            }
        };
        used.sort_unstable();
        used
    }
}

/// Resolves a header (column names, in order) to a [`Plan`].
pub(crate) fn plan_columns(
    path: &str,
    names: &[String],
    options: &InputOptions,
    features: &HashMap<String, FeatureColumn>,
) -> Result<Plan, InputError> {
    let bad = |reason: String| InputError::BadSchema {
        path: path.to_owned(),
        reason,
    };
    // Duplicate names would make the plan ambiguous.
    let mut seen = HashSet::with_capacity(names.len());
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(bad(format!("column `{name}` appears more than once")));
        }
    }
    let find = |want: &str| names.iter().position(|n| n == want);
    let layout = options.layout.unwrap_or_else(|| {
        if find(FEATURE_NAME).is_some() && find(VALUE).is_some() {
            Layout::Long
        } else {
            Layout::Wide
        }
    });
    let entity = find(ENTITY_ID);
    let time = find(EVENT_TIME);
    if time.is_none() && options.default_event_time.is_none() {
        let what = if entity.is_none() {
            format!("has no `{ENTITY_ID}` and no `{EVENT_TIME}` column")
        } else {
            format!("has no `{EVENT_TIME}` column")
        };
        return Err(bad(format!(
            "the file {what} and no default event time was given; columns: {}",
            list_names(names)
        )));
    }
    let entity = entity.ok_or_else(|| {
        bad(format!(
            "missing column `{ENTITY_ID}`; columns: {}",
            list_names(names)
        ))
    })?;
    match layout {
        Layout::Long => {
            let mut missing = Vec::new();
            let feature = find(FEATURE_NAME);
            let value = find(VALUE);
            if feature.is_none() {
                missing.push(FEATURE_NAME);
            }
            if value.is_none() {
                missing.push(VALUE);
            }
            let (Some(feature), Some(value)) = (feature, value) else {
                return Err(bad(format!(
                    "long layout needs columns `{ENTITY_ID}`, `{FEATURE_NAME}`, `{EVENT_TIME}` \
                     and `{VALUE}`; missing {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if !options.ignore_unknown_columns {
                let unknown: Vec<&str> = names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| ![ENTITY_ID, FEATURE_NAME, EVENT_TIME, VALUE].contains(n))
                    .collect();
                if !unknown.is_empty() {
                    return Err(bad(format!(
                        "unknown column(s) {} in a long-layout file (expected only \
                         `{ENTITY_ID}`, `{FEATURE_NAME}`, `{EVENT_TIME}`, `{VALUE}`)",
                        quote_list(&unknown)
                    )));
                }
            }
            Ok(Plan::Long {
                entity,
                feature,
                time,
                value,
            })
        }
        Layout::Wide => {
            let mut cols: Vec<(usize, FeatureColumn)> = Vec::new();
            let mut unknown = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if i == entity || Some(i) == time {
                    continue;
                }
                match features.get(name.as_str()) {
                    Some(fc) => {
                        if let Some(&(j, _)) = cols.iter().find(|(_, c)| c.id == fc.id) {
                            return Err(bad(format!(
                                "columns `{}` and `{name}` are the same feature",
                                names.get(j).map(String::as_str).unwrap_or("?")
                            )));
                        }
                        cols.push((i, *fc));
                    }
                    None => unknown.push(name.as_str()),
                }
            }
            if !unknown.is_empty() && !options.ignore_unknown_columns {
                return Err(bad(format!(
                    "column(s) {} are not features registered in this group (nor `{ENTITY_ID}` \
                     or `{EVENT_TIME}`)",
                    quote_list(&unknown)
                )));
            }
            if cols.is_empty() {
                return Err(bad(format!(
                    "no feature columns: a wide-layout file needs `{ENTITY_ID}` and one column \
                     per feature; columns: {}",
                    list_names(names)
                )));
            }
            Ok(Plan::Wide {
                entity,
                time,
                features: cols,
            })
        }
    }
}

fn quote_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_names(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".to_owned();
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    quote_list(&refs)
}

/// Caches the last feature-name lookup of a long file (rows usually come grouped).
pub(crate) struct FeatureCache<'f> {
    features: &'f HashMap<String, FeatureColumn>,
    last_name: Vec<u8>,
    last: Option<FeatureColumn>,
}

impl<'f> FeatureCache<'f> {
    pub(crate) fn new(features: &'f HashMap<String, FeatureColumn>) -> Self {
        FeatureCache {
            features,
            last_name: Vec::new(),
            last: None,
        }
    }

    /// Resolves a `feature_name` cell.
    pub(crate) fn lookup(&mut self, name: &[u8]) -> Result<FeatureColumn, String> {
        if let Some(fc) = self.last
            && self.last_name == name
        {
            return Ok(fc);
        }
        let text = std::str::from_utf8(name)
            .map_err(|_| "feature name is not valid UTF-8".to_owned())?
            .trim();
        if text.is_empty() {
            return Err("feature name is empty".to_owned());
        }
        let fc = *self
            .features
            .get(text)
            .ok_or_else(|| format!("feature `{text}` is not registered in this group"))?;
        self.last_name.clear();
        self.last_name.extend_from_slice(name);
        self.last = Some(fc);
        Ok(fc)
    }
}

/// Caches the last textual event time (files usually share one or a few).
pub(crate) struct TimeCache {
    last_text: Vec<u8>,
    last: Option<TimestampMs>,
}

impl TimeCache {
    pub(crate) fn new() -> Self {
        TimeCache {
            last_text: Vec::new(),
            last: None,
        }
    }

    /// Parses an `event_time` cell: epoch milliseconds or RFC 3339. `Ok(None)` when empty.
    pub(crate) fn parse(&mut self, text: &[u8]) -> Result<Option<TimestampMs>, String> {
        if let Some(ms) = self.last
            && self.last_text == text
        {
            return Ok(Some(ms));
        }
        let s = std::str::from_utf8(text)
            .map_err(|_| "event time is not valid UTF-8".to_owned())?
            .trim();
        if s.is_empty() {
            return Ok(None);
        }
        let ms = parse_timestamp_ms(s).map_err(|e| e.to_string())?;
        self.last_text.clear();
        self.last_text.extend_from_slice(text);
        self.last = Some(ms);
        Ok(Some(ms))
    }

    /// The event time of a row: its `event_time` cell if the file has the column and the
    /// cell is not empty, else `default`; an error when neither is there.
    pub(crate) fn resolve(
        &mut self,
        cell: Option<&[u8]>,
        default: Option<TimestampMs>,
    ) -> Result<TimestampMs, String> {
        let parsed = match cell {
            Some(text) => self.parse(text)?,
            None => None,
        };
        parsed.or(default).ok_or_else(no_event_time)
    }
}

/// The error for a row with neither an event time nor a default.
pub(crate) fn no_event_time() -> String {
    "event_time is empty and no default event time was given".to_owned()
}

/// What an empty text cell of a `string` feature means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptyText {
    /// Null: CSV has no other way to write one.
    Null,
    /// The empty string: Parquet has real nulls.
    Value,
}

/// Sets `slot` from a text cell (CSV, Utf8 Parquet) per `dtype`, reusing the slot's
/// string buffer for `string` features. Strings are kept exactly, spaces included, so
/// a value reads back as a push of the same string would; an empty string cell is
/// null or `""` per `empty`. Other dtypes follow [`Value::parse_text`] (surrounding
/// whitespace ignored, blank is null).
pub(crate) fn set_from_text(
    slot: &mut Value,
    text: &[u8],
    dtype: DType,
    empty: EmptyText,
) -> Result<(), String> {
    let text = std::str::from_utf8(text).map_err(|_| "value is not valid UTF-8".to_owned())?;
    if dtype == DType::String {
        if text.is_empty() && empty == EmptyText::Null {
            *slot = Value::Null;
        } else if let Value::String(buf) = slot {
            buf.clear();
            buf.push_str(text);
        } else {
            *slot = Value::String(text.to_owned());
        }
        return Ok(());
    }
    *slot = Value::parse_text(text, dtype)?;
    Ok(())
}

/// Sets `slot` to bytes, reusing its buffer.
pub(crate) fn set_bytes(slot: &mut Value, bytes: &[u8]) {
    if let Value::Bytes(buf) = slot {
        buf.clear();
        buf.extend_from_slice(bytes);
    } else {
        *slot = Value::Bytes(bytes.to_vec());
    }
}

/// Sets `slot` to a vector, reusing its buffer, after checking the dimension.
pub(crate) fn set_vector(
    slot: &mut Value,
    components: impl ExactSizeIterator<Item = f32>,
    dim: u32,
) -> Result<(), String> {
    if components.len() != dim as usize {
        return Err(format!(
            "vector has {} components, the feature's dimension is {dim}",
            components.len()
        ));
    }
    if let Value::Float32Vector(buf) = slot {
        buf.clear();
        buf.extend(components);
    } else {
        *slot = Value::Float32Vector(components.collect());
    }
    Ok(())
}

/// Sets `slot` from an integer cell. Ints go to int64 and (rounded) floats; 0/1 to bool.
pub(crate) fn set_from_int(slot: &mut Value, v: i64, dtype: DType) -> Result<(), String> {
    *slot = match dtype {
        DType::Int64 => Value::Int64(v),
        DType::Float64 => Value::Float64(v as f64),
        DType::Float32 => Value::Float32(v as f32),
        DType::Bool => match v {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            _ => return Err(format!("integer {v} is not a bool (only 0 and 1 are)")),
        },
        other => return Err(format!("an integer cannot be stored as {other}")),
    };
    Ok(())
}

/// Sets `slot` from a float cell. Floats go to either float dtype (float32 rounds to
/// nearest; finite values out of float32 range are errors) and to int64 when integral.
pub(crate) fn set_from_float(slot: &mut Value, v: f64, dtype: DType) -> Result<(), String> {
    *slot = match dtype {
        DType::Float64 => Value::Float64(v),
        DType::Float32 => {
            let f = v as f32;
            if v.is_finite() && !f.is_finite() {
                return Err(format!("{v} is out of float32 range"));
            }
            Value::Float32(f)
        }
        DType::Int64 => {
            // 2^63 as f64 is exact; every integral f64 in [-2^63, 2^63) fits an i64.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if v.is_finite() && v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                Value::Int64(v as i64)
            } else {
                return Err(format!("{v} is not an integral int64"));
            }
        }
        other => return Err(format!("a float cannot be stored as {other}")),
    };
    Ok(())
}

/// Sets `slot` from a boolean cell; only bool features accept it.
pub(crate) fn set_from_bool(slot: &mut Value, v: bool, dtype: DType) -> Result<(), String> {
    match dtype {
        DType::Bool => {
            *slot = Value::Bool(v);
            Ok(())
        }
        other => Err(format!("a boolean cannot be stored as {other}")),
    }
}

/// Sets `slot` from a binary cell: bytes features copy it as is, string features read
/// it as UTF-8 text (like a Utf8 column).
pub(crate) fn set_from_binary(slot: &mut Value, v: &[u8], dtype: DType) -> Result<(), String> {
    match dtype {
        DType::Bytes => {
            set_bytes(slot, v);
            Ok(())
        }
        DType::String => set_from_text(slot, v, dtype, EmptyText::Value),
        other => Err(format!("a binary value cannot be stored as {other}")),
    }
}

#[cfg(test)]
mod tests;
