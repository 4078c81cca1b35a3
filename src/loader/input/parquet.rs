//! Parquet input: streams record batches of [`BATCH_SIZE`] rows from
//! [`ParquetRecordBatchReaderBuilder`], reading only the planned columns, and walks the
//! Arrow arrays through typed, null-aware views (no per-cell allocation for numbers;
//! string, bytes and vector values reuse the one [`Value`] slot's buffer).
//!
//! Long files are read row by row; wide files column by column within each batch, so
//! records of one batch come feature after feature. Panics raised by the Parquet decoder
//! on malformed files are caught and reported as [`InputError::Parquet`].

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use arrow_array::array::{
    Array, BinaryArray, BinaryViewArray, BooleanArray, FixedSizeBinaryArray, LargeBinaryArray,
    LargeStringArray, StringArray, StringViewArray,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{
    ENTITY_ID, EVENT_TIME, EmptyText, FEATURE_NAME, FeatureCache, FeatureColumn, InputError,
    InputFormat, InputOptions, InputSummary, Plan, Record, TimeCache, VALUE, no_event_time,
    plan_columns, set_bytes, set_from_binary, set_from_bool, set_from_float, set_from_int,
    set_from_text, set_vector,
};
use crate::types::{DType, TimestampMs, Value};

/// Rows per decoded record batch: bounds memory to a few MB per column.
pub(crate) const BATCH_SIZE: usize = 8192;

const MS_PER_DAY: i64 = 86_400_000;

/// Reads a Parquet file; see [`super::read_input`].
pub(super) fn read_parquet(
    path: &Path,
    options: &InputOptions,
    features: &HashMap<String, FeatureColumn>,
    checksum: &std::sync::Arc<super::checksum::FileChecksum>,
    sink: &mut dyn FnMut(Record<'_>) -> Result<(), InputError>,
) -> Result<InputSummary, InputError> {
    let path_s = path.display().to_string();
    let file = File::open(path).map_err(|source| InputError::Io {
        path: path_s.clone(),
        source,
    })?;
    let builder = guarded(&path_s, || {
        let file = super::checksum::ChecksummedFile::new(file, checksum.clone());
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(&path_s, e))
    })?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().trim().to_owned())
        .collect();
    let plan = plan_columns(&path_s, &names, options, features)?;
    let layout = plan.layout();

    // Decode only the columns the plan reads. Batch column `j` is file column `used[j]`.
    let used = plan.used_columns();
    let roots = builder.parquet_schema().root_schema().get_fields().len();
    if roots != names.len() {
        return Err(InputError::Parquet {
            path: path_s.clone(),
            reason: format!(
                "the Arrow schema has {} columns but the Parquet schema {roots}",
                names.len()
            ),
        });
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), used.iter().copied());
    let mut reader = guarded(&path_s, || {
        builder
            .with_projection(mask)
            .with_batch_size(BATCH_SIZE)
            .build()
            .map_err(|e| parquet_error(&path_s, e))
    })?;
    let position = |col: usize| used.binary_search(&col).unwrap_or(usize::MAX);

    let mut state = State {
        path: &path_s,
        names: &names,
        default_time: options.default_event_time,
        slot: Value::Null,
        times: TimeCache::new(),
        entity_text: Vec::new(),
        entity_ends: Vec::new(),
        event_times: Vec::new(),
        rows: 0,
        records: 0,
    };
    let mut lookup = FeatureCache::new(features);
    loop {
        let next = guarded(&path_s, || Ok(reader.next()))?;
        let batch = match next {
            None => break,
            Some(Ok(batch)) => batch,
            Some(Err(e)) => {
                return Err(InputError::Parquet {
                    path: path_s.clone(),
                    reason: e.to_string(),
                });
            }
        };
        if batch.num_columns() != used.len() {
            return Err(InputError::Parquet {
                path: path_s.clone(),
                reason: format!(
                    "decoded {} columns, expected {}",
                    batch.num_columns(),
                    used.len()
                ),
            });
        }
        match &plan {
            Plan::Long {
                entity,
                feature,
                time,
                value,
            } => state.long_batch(
                &batch,
                [position(*entity), position(*feature), position(*value)],
                [*entity, *feature, *value],
                time.map(|t| (position(t), t)),
                &mut lookup,
                sink,
            )?,
            Plan::Wide {
                entity,
                time,
                features: columns,
            } => {
                let columns: Vec<(usize, usize, FeatureColumn)> = columns
                    .iter()
                    .map(|&(col, fc)| (position(col), col, fc))
                    .collect();
                state.wide_batch(
                    &batch,
                    (position(*entity), *entity),
                    time.map(|t| (position(t), t)),
                    &columns,
                    sink,
                )?
            }
        }
        state.rows += batch.num_rows() as u64;
    }
    Ok(InputSummary {
        format: InputFormat::Parquet,
        layout,
        rows: state.rows,
        records: state.records,
    })
}

/// Reader state kept across batches (buffers are reused).
struct State<'p> {
    path: &'p str,
    names: &'p [String],
    default_time: Option<TimestampMs>,
    /// The one value slot every record borrows.
    slot: Value,
    times: TimeCache,
    /// Decimal text of integer entity ids of the current batch (wide layout).
    entity_text: Vec<u8>,
    /// End offset in `entity_text` of each row's id.
    entity_ends: Vec<usize>,
    /// Event time of each row of the current batch (wide layout).
    event_times: Vec<TimestampMs>,
    /// Rows of the batches before the current one.
    rows: u64,
    records: u64,
}

impl State<'_> {
    fn bad_row(&self, i: usize, col: usize, reason: String) -> InputError {
        self.bad_cell(
            i,
            self.names.get(col).map(String::as_str).unwrap_or("?"),
            reason,
        )
    }

    fn bad_cell(&self, i: usize, column: &str, reason: String) -> InputError {
        InputError::BadRow {
            path: self.path.to_owned(),
            row: self.rows + i as u64 + 1,
            column: column.to_owned(),
            reason,
        }
    }

    fn bad_type(&self, col: usize, data_type: &DataType, role: &str) -> InputError {
        InputError::BadSchema {
            path: self.path.to_owned(),
            reason: format!(
                "column `{}` has type {data_type}, which is not supported for {role}",
                self.names.get(col).map(String::as_str).unwrap_or("?")
            ),
        }
    }

    fn column<'b>(&self, batch: &'b RecordBatch, pos: usize) -> Result<&'b dyn Array, InputError> {
        batch
            .columns()
            .get(pos)
            .map(|c| c.as_ref())
            .ok_or_else(|| InputError::Parquet {
                path: self.path.to_owned(),
                reason: format!("decoded batch lacks column {pos}"),
            })
    }

    /// One batch of a long file: one record per row.
    fn long_batch(
        &mut self,
        batch: &RecordBatch,
        [entity_pos, feature_pos, value_pos]: [usize; 3],
        [entity_col, feature_col, value_col]: [usize; 3],
        time: Option<(usize, usize)>,
        lookup: &mut FeatureCache<'_>,
        sink: &mut dyn FnMut(Record<'_>) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        let arr = self.column(batch, entity_pos)?;
        let entities = EntityCol::new(arr)
            .ok_or_else(|| self.bad_type(entity_col, arr.data_type(), ENTITY_ID))?;
        let arr = self.column(batch, feature_pos)?;
        let names = TextCol::new(arr)
            .filter(|t| t.is_utf8())
            .ok_or_else(|| self.bad_type(feature_col, arr.data_type(), FEATURE_NAME))?;
        let arr = self.column(batch, value_pos)?;
        let values =
            ValueCol::new(arr).ok_or_else(|| self.bad_type(value_col, arr.data_type(), VALUE))?;
        let times = match time {
            Some((pos, col)) => {
                let arr = self.column(batch, pos)?;
                Some((
                    TimeCol::new(arr)
                        .ok_or_else(|| self.bad_type(col, arr.data_type(), EVENT_TIME))?,
                    col,
                ))
            }
            None => None,
        };
        let mut entity_buf = Vec::new();
        for i in 0..batch.num_rows() {
            let entity_id = entities
                .get(i, &mut entity_buf)
                .map_err(|r| self.bad_row(i, entity_col, r))?;
            let name = names
                .get(i)
                .ok_or_else(|| self.bad_row(i, feature_col, "feature_name is null".to_owned()))?;
            let fc = lookup
                .lookup(name)
                .map_err(|r| self.bad_row(i, feature_col, r))?;
            let event_time = match &times {
                Some((t, col)) => t
                    .get(i, &mut self.times)
                    .map_err(|r| self.bad_row(i, *col, r))?
                    .or(self.default_time)
                    .ok_or_else(|| self.bad_row(i, *col, no_event_time()))?,
                None => self
                    .default_time
                    .ok_or_else(|| self.bad_cell(i, EVENT_TIME, no_event_time()))?,
            };
            if let Err(r) = values.set(i, &mut self.slot, fc.dtype) {
                return Err(self.bad_row(i, value_col, r));
            }
            sink(Record {
                row: self.rows + i as u64 + 1,
                entity_id,
                feature: fc.id,
                event_time,
                value: &self.slot,
            })?;
            self.records += 1;
        }
        Ok(())
    }

    /// One batch of a wide file: entity ids and event times are resolved once per row,
    /// then each feature column is walked top to bottom.
    fn wide_batch(
        &mut self,
        batch: &RecordBatch,
        (entity_pos, entity_col): (usize, usize),
        time: Option<(usize, usize)>,
        columns: &[(usize, usize, FeatureColumn)],
        sink: &mut dyn FnMut(Record<'_>) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        let n = batch.num_rows();
        let arr = self.column(batch, entity_pos)?;
        let entities = EntityCol::new(arr)
            .ok_or_else(|| self.bad_type(entity_col, arr.data_type(), ENTITY_ID))?;
        // Validate entity ids; integer ids are rendered once into `entity_text`.
        self.entity_text.clear();
        self.entity_ends.clear();
        let mut scratch = Vec::new();
        for i in 0..n {
            let id = entities
                .get(i, &mut scratch)
                .map_err(|r| self.bad_row(i, entity_col, r))?;
            if entities.is_int() {
                self.entity_text.extend_from_slice(id);
                self.entity_ends.push(self.entity_text.len());
            }
        }
        self.event_times.clear();
        match time {
            Some((pos, col)) => {
                let arr = self.column(batch, pos)?;
                let times = TimeCol::new(arr)
                    .ok_or_else(|| self.bad_type(col, arr.data_type(), EVENT_TIME))?;
                for i in 0..n {
                    let t = times
                        .get(i, &mut self.times)
                        .map_err(|r| self.bad_row(i, col, r))?
                        .or(self.default_time)
                        .ok_or_else(|| self.bad_row(i, col, no_event_time()))?;
                    self.event_times.push(t);
                }
            }
            None => {
                let t = self
                    .default_time
                    .ok_or_else(|| self.bad_cell(0, EVENT_TIME, no_event_time()))?;
                self.event_times.resize(n, t);
            }
        }

        for &(pos, col, fc) in columns {
            let arr = self.column(batch, pos)?;
            let values = ValueCol::new(arr)
                .ok_or_else(|| self.bad_type(col, arr.data_type(), "a feature"))?;
            let mut start = 0;
            for i in 0..n {
                let entity_id: &[u8] = if entities.is_int() {
                    let end = self.entity_ends.get(i).copied().unwrap_or(start);
                    let id = self.entity_text.get(start..end).unwrap_or_default();
                    start = end;
                    id
                } else {
                    entities.text_at(i)
                };
                if let Err(r) = values.set(i, &mut self.slot, fc.dtype) {
                    return Err(self.bad_row(i, col, r));
                }
                sink(Record {
                    row: self.rows + i as u64 + 1,
                    entity_id,
                    feature: fc.id,
                    event_time: self.event_times.get(i).copied().unwrap_or_default(),
                    value: &self.slot,
                })?;
                self.records += 1;
            }
        }
        Ok(())
    }
}

/// Runs a decoder step, turning a panic inside the Parquet/Arrow code (malformed input)
/// into an error instead of unwinding through the loader.
fn guarded<T>(path: &str, f: impl FnOnce() -> Result<T, InputError>) -> Result<T, InputError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown failure".to_owned());
            Err(InputError::Parquet {
                path: path.to_owned(),
                reason: format!("the decoder failed on malformed data: {message}"),
            })
        }
    }
}

fn parquet_error(path: &str, e: parquet::errors::ParquetError) -> InputError {
    InputError::Parquet {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Typed, null-aware views of one batch's arrays.

/// An Arrow validity bitmap (bit set = valid), read with bounds checks.
#[derive(Clone, Copy)]
struct Validity<'a> {
    bits: &'a [u8],
    /// Bit offset of element 0.
    offset: usize,
}

impl<'a> Validity<'a> {
    /// The array's bitmap; `None` when it has no nulls.
    fn of<A: Array + ?Sized>(array: &'a A) -> Option<Self> {
        array.nulls().map(|n| Validity {
            bits: n.validity(),
            offset: n.offset(),
        })
    }

    /// True when element `i` is null (or outside the bitmap).
    #[inline]
    fn is_null(&self, i: usize) -> bool {
        let bit = self.offset.saturating_add(i);
        self.bits
            .get(bit >> 3)
            .is_none_or(|byte| byte & (1 << (bit & 7)) == 0)
    }
}

/// A primitive column: its values and validity.
struct Prim<'a, T> {
    values: &'a [T],
    nulls: Option<Validity<'a>>,
}

impl<T: Copy> Prim<'_, T> {
    /// The value at `i`, `None` when null.
    #[inline]
    fn get(&self, i: usize) -> Option<T> {
        if self.nulls.is_some_and(|n| n.is_null(i)) {
            return None;
        }
        self.values.get(i).copied()
    }
}

fn prim<'a, P: ArrowPrimitiveType>(array: &'a dyn Array) -> Option<Prim<'a, P::Native>> {
    let array = array.as_primitive_opt::<P>()?;
    Some(Prim {
        values: array.values(),
        nulls: Validity::of(array),
    })
}

/// A string or binary column (dictionary-encoded or not).
enum TextCol<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Binary(&'a BinaryArray),
    LargeBinary(&'a LargeBinaryArray),
    BinaryView(&'a BinaryViewArray),
    FixedBinary(&'a FixedSizeBinaryArray),
    Dict {
        keys: &'a dyn Array,
        index: Vec<usize>,
        values: Box<TextCol<'a>>,
    },
    /// A column of nulls (Null type, or a dictionary with no values).
    AllNull {
        utf8: bool,
    },
}

impl<'a> TextCol<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Utf8 => TextCol::Utf8(array.as_string_opt::<i32>()?),
            DataType::LargeUtf8 => TextCol::LargeUtf8(array.as_string_opt::<i64>()?),
            DataType::Utf8View => TextCol::Utf8View(array.as_string_view_opt()?),
            DataType::Binary => TextCol::Binary(array.as_binary_opt::<i32>()?),
            DataType::LargeBinary => TextCol::LargeBinary(array.as_binary_opt::<i64>()?),
            DataType::BinaryView => TextCol::BinaryView(array.as_binary_view_opt()?),
            DataType::FixedSizeBinary(_) => TextCol::FixedBinary(array.as_fixed_size_binary_opt()?),
            DataType::Null => TextCol::AllNull { utf8: true },
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary_opt()?;
                let values = TextCol::new(dict.values().as_ref())?;
                if dict.values().is_empty() {
                    TextCol::AllNull {
                        utf8: values.is_utf8(),
                    }
                } else {
                    TextCol::Dict {
                        keys: dict.keys(),
                        index: dict.normalized_keys(),
                        values: Box::new(values),
                    }
                }
            }
            _ => return None,
        })
    }

    /// True when the cells are UTF-8 text (not opaque bytes).
    fn is_utf8(&self) -> bool {
        match self {
            TextCol::Utf8(_) | TextCol::LargeUtf8(_) | TextCol::Utf8View(_) => true,
            TextCol::Binary(_)
            | TextCol::LargeBinary(_)
            | TextCol::BinaryView(_)
            | TextCol::FixedBinary(_) => false,
            TextCol::Dict { values, .. } => values.is_utf8(),
            TextCol::AllNull { utf8 } => *utf8,
        }
    }

    /// The cell at `i` as bytes, `None` when null.
    #[inline]
    fn get(&self, i: usize) -> Option<&'a [u8]> {
        match self {
            TextCol::Utf8(a) => (!a.is_null(i)).then(|| a.value(i).as_bytes()),
            TextCol::LargeUtf8(a) => (!a.is_null(i)).then(|| a.value(i).as_bytes()),
            TextCol::Utf8View(a) => (!a.is_null(i)).then(|| a.value(i).as_bytes()),
            TextCol::Binary(a) => (!a.is_null(i)).then(|| a.value(i)),
            TextCol::LargeBinary(a) => (!a.is_null(i)).then(|| a.value(i)),
            TextCol::BinaryView(a) => (!a.is_null(i)).then(|| a.value(i)),
            TextCol::FixedBinary(a) => (!a.is_null(i)).then(|| a.value(i)),
            TextCol::Dict {
                keys,
                index,
                values,
            } => {
                if keys.is_null(i) {
                    None
                } else {
                    values.get(*index.get(i)?)
                }
            }
            TextCol::AllNull { .. } => None,
        }
    }
}

/// The `entity_id` column: text/binary, or integers rendered in decimal.
enum EntityCol<'a> {
    Text(TextCol<'a>),
    Int(Prim<'a, i64>),
    Int32(Prim<'a, i32>),
    UInt64(Prim<'a, u64>),
    UInt32(Prim<'a, u32>),
}

impl<'a> EntityCol<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Int64 => EntityCol::Int(prim::<Int64Type>(array)?),
            DataType::Int32 => EntityCol::Int32(prim::<Int32Type>(array)?),
            DataType::UInt64 => EntityCol::UInt64(prim::<UInt64Type>(array)?),
            DataType::UInt32 => EntityCol::UInt32(prim::<UInt32Type>(array)?),
            _ => EntityCol::Text(TextCol::new(array)?),
        })
    }

    fn is_int(&self) -> bool {
        !matches!(self, EntityCol::Text(_))
    }

    /// The id at `i`; integers are written into `buf`. Null ids are errors; the loader
    /// checks the rest (`EntityIdRule::check`).
    fn get<'s>(&'s self, i: usize, buf: &'s mut Vec<u8>) -> Result<&'s [u8], String> {
        fn render(buf: &mut Vec<u8>, v: impl std::fmt::Display) -> &[u8] {
            buf.clear();
            // Writing into a Vec cannot fail.
            let _ = write!(buf, "{v}");
            buf
        }
        let id: Option<&[u8]> = match self {
            EntityCol::Text(t) => t.get(i),
            EntityCol::Int(p) => p.get(i).map(|v| render(buf, v)),
            EntityCol::Int32(p) => p.get(i).map(|v| render(buf, v)),
            EntityCol::UInt64(p) => p.get(i).map(|v| render(buf, v)),
            EntityCol::UInt32(p) => p.get(i).map(|v| render(buf, v)),
        };
        match id {
            None => Err("entity_id is null".to_owned()),
            Some(id) => Ok(id),
        }
    }

    /// The text id at `i` of a column already validated by [`EntityCol::get`].
    #[inline]
    fn text_at(&self, i: usize) -> &'a [u8] {
        match self {
            EntityCol::Text(t) => t.get(i).unwrap_or_default(),
            _ => &[],
        }
    }
}

/// The `event_time` column.
enum TimeCol<'a> {
    Millis(Prim<'a, i64>),
    Seconds(Prim<'a, i64>),
    Micros(Prim<'a, i64>),
    Nanos(Prim<'a, i64>),
    Days(Prim<'a, i32>),
    Text(TextCol<'a>),
}

impl<'a> TimeCol<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Int64 => TimeCol::Millis(prim::<Int64Type>(array)?),
            DataType::Date64 => TimeCol::Millis(prim::<Date64Type>(array)?),
            DataType::Date32 => TimeCol::Days(prim::<Date32Type>(array)?),
            DataType::Timestamp(TimeUnit::Second, _) => {
                TimeCol::Seconds(prim::<TimestampSecondType>(array)?)
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                TimeCol::Millis(prim::<TimestampMillisecondType>(array)?)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                TimeCol::Micros(prim::<TimestampMicrosecondType>(array)?)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                TimeCol::Nanos(prim::<TimestampNanosecondType>(array)?)
            }
            _ => {
                let text = TextCol::new(array)?;
                if !text.is_utf8() {
                    return None;
                }
                TimeCol::Text(text)
            }
        })
    }

    /// The event time at `i` in milliseconds; `None` when null or empty.
    #[inline]
    fn get(&self, i: usize, cache: &mut TimeCache) -> Result<Option<TimestampMs>, String> {
        Ok(match self {
            TimeCol::Millis(p) => p.get(i),
            TimeCol::Seconds(p) => match p.get(i) {
                Some(s) => Some(
                    s.checked_mul(1000)
                        .ok_or_else(|| format!("{s} seconds is out of range"))?,
                ),
                None => None,
            },
            TimeCol::Micros(p) => p.get(i).map(|us| us.div_euclid(1000)),
            TimeCol::Nanos(p) => p.get(i).map(|ns| ns.div_euclid(1_000_000)),
            TimeCol::Days(p) => p.get(i).map(|d| i64::from(d) * MS_PER_DAY),
            TimeCol::Text(t) => match t.get(i) {
                Some(text) => cache.parse(text)?,
                None => None,
            },
        })
    }
}

/// Where a vector cell's components lie in the child array.
enum Bounds<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
    Fixed(usize),
}

/// The components of a list column.
enum Components<'a> {
    F32(Prim<'a, f32>),
    F64(Prim<'a, f64>),
}

/// A List/LargeList/FixedSizeList column of Float32 or Float64.
struct VectorCol<'a> {
    bounds: Bounds<'a>,
    nulls: Option<Validity<'a>>,
    components: Components<'a>,
}

impl<'a> VectorCol<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        let (bounds, child): (Bounds<'a>, &'a dyn Array) = match array.data_type() {
            DataType::List(_) => {
                let list = array.as_list_opt::<i32>()?;
                (Bounds::I32(list.value_offsets()), list.values().as_ref())
            }
            DataType::LargeList(_) => {
                let list = array.as_list_opt::<i64>()?;
                (Bounds::I64(list.value_offsets()), list.values().as_ref())
            }
            DataType::FixedSizeList(_, _) => {
                let list = array.as_fixed_size_list_opt()?;
                let len = usize::try_from(list.value_length()).ok()?;
                (Bounds::Fixed(len), list.values().as_ref())
            }
            _ => return None,
        };
        let components = match child.data_type() {
            DataType::Float32 => Components::F32(prim::<Float32Type>(child)?),
            DataType::Float64 => Components::F64(prim::<Float64Type>(child)?),
            _ => return None,
        };
        Some(VectorCol {
            bounds,
            nulls: Validity::of(array),
            components,
        })
    }

    fn set(&self, i: usize, slot: &mut Value, dtype: DType) -> Result<(), String> {
        if self.nulls.is_some_and(|n| n.is_null(i)) {
            *slot = Value::Null;
            return Ok(());
        }
        let DType::Float32Vector { dim } = dtype else {
            return Err(format!("a list cannot be stored as {dtype}"));
        };
        let bad = || "malformed list offsets".to_owned();
        let (start, end) = match self.bounds {
            Bounds::I32(offsets) => {
                let s = usize::try_from(*offsets.get(i).ok_or_else(bad)?).map_err(|_| bad())?;
                let e = usize::try_from(*offsets.get(i + 1).ok_or_else(bad)?).map_err(|_| bad())?;
                (s, e)
            }
            Bounds::I64(offsets) => {
                let s = usize::try_from(*offsets.get(i).ok_or_else(bad)?).map_err(|_| bad())?;
                let e = usize::try_from(*offsets.get(i + 1).ok_or_else(bad)?).map_err(|_| bad())?;
                (s, e)
            }
            Bounds::Fixed(len) => {
                let s = i.checked_mul(len).ok_or_else(bad)?;
                (s, s.checked_add(len).ok_or_else(bad)?)
            }
        };
        let null_component =
            |nulls: Option<Validity<'_>>| nulls.is_some_and(|n| (start..end).any(|j| n.is_null(j)));
        match &self.components {
            Components::F32(p) => {
                let values = p.values.get(start..end).ok_or_else(bad)?;
                if null_component(p.nulls) {
                    return Err("the vector has a null component".to_owned());
                }
                set_vector(slot, values.iter().copied(), dim)
            }
            Components::F64(p) => {
                let values = p.values.get(start..end).ok_or_else(bad)?;
                if null_component(p.nulls) {
                    return Err("the vector has a null component".to_owned());
                }
                if let Some(v) = values
                    .iter()
                    .find(|v| v.is_finite() && !(**v as f32).is_finite())
                {
                    return Err(format!("vector component {v} is out of float32 range"));
                }
                set_vector(slot, values.iter().map(|&v| v as f32), dim)
            }
        }
    }
}

/// A value column (long `value`, or one wide feature column).
enum ValueCol<'a> {
    Text(TextCol<'a>),
    Binary(TextCol<'a>),
    I64(Prim<'a, i64>),
    I32(Prim<'a, i32>),
    I16(Prim<'a, i16>),
    I8(Prim<'a, i8>),
    U64(Prim<'a, u64>),
    U32(Prim<'a, u32>),
    U16(Prim<'a, u16>),
    U8(Prim<'a, u8>),
    F64(Prim<'a, f64>),
    F32(Prim<'a, f32>),
    Bool(&'a BooleanArray),
    Vector(VectorCol<'a>),
}

impl<'a> ValueCol<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Int64 => ValueCol::I64(prim::<Int64Type>(array)?),
            DataType::Int32 => ValueCol::I32(prim::<Int32Type>(array)?),
            DataType::Int16 => ValueCol::I16(prim::<Int16Type>(array)?),
            DataType::Int8 => ValueCol::I8(prim::<Int8Type>(array)?),
            DataType::UInt64 => ValueCol::U64(prim::<UInt64Type>(array)?),
            DataType::UInt32 => ValueCol::U32(prim::<UInt32Type>(array)?),
            DataType::UInt16 => ValueCol::U16(prim::<UInt16Type>(array)?),
            DataType::UInt8 => ValueCol::U8(prim::<UInt8Type>(array)?),
            DataType::Float64 => ValueCol::F64(prim::<Float64Type>(array)?),
            DataType::Float32 => ValueCol::F32(prim::<Float32Type>(array)?),
            DataType::Boolean => ValueCol::Bool(array.as_boolean_opt()?),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
                ValueCol::Vector(VectorCol::new(array)?)
            }
            _ => {
                let text = TextCol::new(array)?;
                if text.is_utf8() {
                    ValueCol::Text(text)
                } else {
                    ValueCol::Binary(text)
                }
            }
        })
    }

    /// Converts the cell at `i` to `dtype` into `slot` (null cells give `Value::Null`).
    #[inline]
    fn set(&self, i: usize, slot: &mut Value, dtype: DType) -> Result<(), String> {
        fn int<T: Copy + Into<i64>>(
            p: &Prim<'_, T>,
            i: usize,
            slot: &mut Value,
            dtype: DType,
        ) -> Result<(), String> {
            match p.get(i) {
                Some(v) => set_from_int(slot, v.into(), dtype),
                None => {
                    *slot = Value::Null;
                    Ok(())
                }
            }
        }
        match self {
            ValueCol::F32(p) => match p.get(i) {
                Some(v) if dtype == DType::Float32 => {
                    *slot = Value::Float32(v);
                    Ok(())
                }
                Some(v) => set_from_float(slot, f64::from(v), dtype),
                None => {
                    *slot = Value::Null;
                    Ok(())
                }
            },
            ValueCol::F64(p) => match p.get(i) {
                Some(v) => set_from_float(slot, v, dtype),
                None => {
                    *slot = Value::Null;
                    Ok(())
                }
            },
            ValueCol::I64(p) => int(p, i, slot, dtype),
            ValueCol::I32(p) => int(p, i, slot, dtype),
            ValueCol::I16(p) => int(p, i, slot, dtype),
            ValueCol::I8(p) => int(p, i, slot, dtype),
            ValueCol::U32(p) => int(p, i, slot, dtype),
            ValueCol::U16(p) => int(p, i, slot, dtype),
            ValueCol::U8(p) => int(p, i, slot, dtype),
            ValueCol::U64(p) => match p.get(i) {
                Some(v) => {
                    let v = i64::try_from(v).map_err(|_| format!("{v} is out of int64 range"))?;
                    set_from_int(slot, v, dtype)
                }
                None => {
                    *slot = Value::Null;
                    Ok(())
                }
            },
            ValueCol::Bool(a) => {
                if a.is_null(i) {
                    *slot = Value::Null;
                    Ok(())
                } else {
                    set_from_bool(slot, a.value(i), dtype)
                }
            }
            ValueCol::Text(t) => match t.get(i) {
                Some(text) => set_from_text(slot, text, dtype, EmptyText::Value),
                None => {
                    *slot = Value::Null;
                    Ok(())
                }
            },
            ValueCol::Binary(t) => match t.get(i) {
                Some(bytes) if dtype == DType::Bytes => {
                    set_bytes(slot, bytes);
                    Ok(())
                }
                Some(bytes) => set_from_binary(slot, bytes, dtype),
                None => {
                    *slot = Value::Null;
                    Ok(())
                }
            },
            ValueCol::Vector(v) => v.set(i, slot, dtype),
        }
    }
}
