//! CSV input: streams a comma-separated file with a header row through one reused
//! [`ByteRecord`], resolving columns once from the header and parsing every cell with
//! [`Value::parse_text`] semantics for the feature's dtype.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use csv::{ByteRecord, ReaderBuilder};

use super::{
    EVENT_TIME, EmptyText, FEATURE_NAME, FeatureCache, FeatureColumn, InputError, InputFormat,
    InputOptions, InputSummary, Plan, Record, TimeCache, VALUE, plan_columns, set_from_text,
};
use crate::types::Value;

/// Reads buffer size: large enough that the per-record cost is parsing, not syscalls.
const BUFFER_CAPACITY: usize = 1 << 16;

/// Reads a CSV file; see [`super::read_input`].
pub(super) fn read_csv(
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
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(BUFFER_CAPACITY)
        .from_reader(super::checksum::ChecksummedRead::new(
            file,
            0,
            checksum.clone(),
        ));

    let header = reader
        .byte_headers()
        .map_err(|e| csv_error(&path_s, e, 0, &[]))?;
    let mut names = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw).map_err(|_| InputError::BadSchema {
            path: path_s.clone(),
            reason: format!("header column {} is not valid UTF-8", i + 1),
        })?;
        names.push(name.trim_start_matches('\u{feff}').trim().to_owned());
    }
    let plan = plan_columns(&path_s, &names, options, features)?;
    let layout = plan.layout();

    let bad_row = |row: u64, column: &str, reason: String| InputError::BadRow {
        path: path_s.clone(),
        row,
        column: column.to_owned(),
        reason,
    };
    let default_time = options.default_event_time;
    let mut record = ByteRecord::new();
    let mut slot = Value::Null;
    let mut times = TimeCache::new();
    let mut rows: u64 = 0;
    let mut records: u64 = 0;

    match plan {
        Plan::Long {
            entity,
            feature,
            time,
            value,
        } => {
            let mut lookup = FeatureCache::new(features);
            loop {
                match reader.read_byte_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Err(csv_error(&path_s, e, rows + 1, &names)),
                }
                rows += 1;
                let entity_id = field(&record, entity);
                let fc = lookup
                    .lookup(field(&record, feature))
                    .map_err(|r| bad_row(rows, FEATURE_NAME, r))?;
                let event_time = times
                    .resolve(time.map(|t| field(&record, t)), default_time)
                    .map_err(|r| bad_row(rows, EVENT_TIME, r))?;
                set_from_text(&mut slot, field(&record, value), fc.dtype, EmptyText::Null)
                    .map_err(|r| bad_row(rows, VALUE, r))?;
                sink(Record {
                    row: rows,
                    entity_id,
                    feature: fc.id,
                    event_time,
                    value: &slot,
                })?;
                records += 1;
            }
        }
        Plan::Wide {
            entity,
            time,
            features: columns,
        } => loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(&path_s, e, rows + 1, &names)),
            }
            rows += 1;
            let entity_id = field(&record, entity);
            let event_time = times
                .resolve(time.map(|t| field(&record, t)), default_time)
                .map_err(|r| bad_row(rows, EVENT_TIME, r))?;
            for &(col, fc) in &columns {
                set_from_text(&mut slot, field(&record, col), fc.dtype, EmptyText::Null).map_err(
                    |r| bad_row(rows, names.get(col).map(String::as_str).unwrap_or("?"), r),
                )?;
                sink(Record {
                    row: rows,
                    entity_id,
                    feature: fc.id,
                    event_time,
                    value: &slot,
                })?;
                records += 1;
            }
        },
    }
    Ok(InputSummary {
        format: InputFormat::Csv,
        layout,
        rows,
        records,
    })
}

/// One field of a record; every record has the header's width (the reader is not
/// flexible), so a missing field cannot happen, and reads as empty if it did.
#[inline]
fn field(record: &ByteRecord, i: usize) -> &[u8] {
    record.get(i).unwrap_or(b"")
}

/// Maps a `csv` error on data row `row` (0 for the header) to an [`InputError`].
fn csv_error(path: &str, err: csv::Error, row: u64, names: &[String]) -> InputError {
    let reason = err.to_string();
    match err.into_kind() {
        csv::ErrorKind::Io(source) => InputError::Io {
            path: path.to_owned(),
            source,
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            let column = match usize::try_from(len).ok().and_then(|l| names.get(l)) {
                Some(first_missing) if len < expected_len => first_missing.clone(),
                _ => format!("#{}", expected_len.saturating_add(1)),
            };
            InputError::BadRow {
                path: path.to_owned(),
                row,
                column,
                reason: format!("the row has {len} fields, the header has {expected_len}"),
            }
        }
        _ if row == 0 => InputError::BadSchema {
            path: path.to_owned(),
            reason: format!("cannot read the CSV header: {reason}"),
        },
        _ => InputError::BadRow {
            path: path.to_owned(),
            row,
            column: "*".to_owned(),
            reason,
        },
    }
}
