//! Tests of the batch input readers: both formats, both layouts, conversions, nulls,
//! event times, error positions and hostile files.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, DictionaryArray, Float32Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use proptest::prelude::*;

use super::*;
use crate::types::{DType, Value};

/// A record copied out of the sink.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    row: u64,
    entity: String,
    feature: FeatureId,
    time: TimestampMs,
    value: Value,
}

fn rec(row: u64, entity: &str, feature: FeatureId, time: TimestampMs, value: Value) -> Rec {
    Rec {
        row,
        entity: entity.to_owned(),
        feature,
        time,
        value,
    }
}

const CLICKS: FeatureId = 1;
const CTR: FeatureId = 2;
const EMB: FeatureId = 3;
const NAME: FeatureId = 4;
const ACTIVE: FeatureId = 5;
const BLOB: FeatureId = 6;
const SCORE: FeatureId = 7;

/// The group's features, under `name` and `name@1` like the loader passes them.
fn features() -> HashMap<String, FeatureColumn> {
    let mut map = HashMap::new();
    for (name, id, dtype) in [
        ("clicks", CLICKS, DType::Int64),
        ("ctr", CTR, DType::Float32),
        ("emb", EMB, DType::Float32Vector { dim: 2 }),
        ("name", NAME, DType::String),
        ("active", ACTIVE, DType::Bool),
        ("blob", BLOB, DType::Bytes),
        ("score", SCORE, DType::Float64),
    ] {
        let fc = FeatureColumn { id, dtype };
        map.insert(name.to_owned(), fc);
        map.insert(format!("{name}@1"), fc);
    }
    map
}

fn read(path: &Path, options: &InputOptions) -> Result<(InputSummary, Vec<Rec>), InputError> {
    let mut out = Vec::new();
    let summary = read_input(path, options, &features(), &mut |r: Record<'_>| {
        out.push(Rec {
            row: r.row,
            entity: String::from_utf8(r.entity_id.to_vec()).unwrap(),
            feature: r.feature,
            time: r.event_time,
            value: r.value.clone(),
        });
        Ok(())
    })?;
    assert_eq!(summary.records, out.len() as u64);
    Ok((summary, out))
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn write_parquet(dir: &Path, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    let path = dir.join(name);
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer =
        ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

fn bad_row(err: InputError) -> (u64, String, String) {
    match err {
        InputError::BadRow {
            row,
            column,
            reason,
            ..
        } => (row, column, reason),
        other => panic!("expected BadRow, got {other:?}"),
    }
}

// ---- CSV -------------------------------------------------------------------------------

#[test]
fn csv_long_reads_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,feature_name,event_time,value\n\
         u1,clicks,1000,42\n\
         u1,ctr@1,1000,0.25\n\
         u2,emb,2000,\"[1, 2.5]\"\n\
         u2,name,2000,  alice \n\
         u3,active,3000,true\n\
         u3,blob,3000,0a0b\n",
    );
    let (summary, recs) = read(&path, &InputOptions::default()).unwrap();
    assert_eq!(
        summary,
        InputSummary {
            format: InputFormat::Csv,
            layout: Layout::Long,
            rows: 6,
            records: 6
        }
    );
    assert_eq!(
        recs,
        vec![
            rec(1, "u1", CLICKS, 1000, Value::Int64(42)),
            rec(2, "u1", CTR, 1000, Value::Float32(0.25)),
            rec(3, "u2", EMB, 2000, Value::Float32Vector(vec![1.0, 2.5])),
            rec(4, "u2", NAME, 2000, Value::String("  alice ".to_owned())),
            rec(5, "u3", ACTIVE, 3000, Value::Bool(true)),
            rec(6, "u3", BLOB, 3000, Value::Bytes(vec![10, 11])),
        ]
    );
}

#[test]
fn csv_wide_reads_every_feature_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.CSV",
        "entity_id,event_time,clicks,ctr@1,name\n\
         u1,1000,1,0.5,a\n\
         u2,2000,2,,b\n",
    );
    let (summary, recs) = read(&path, &InputOptions::default()).unwrap();
    assert_eq!(summary.layout, Layout::Wide);
    assert_eq!((summary.rows, summary.records), (2, 6));
    assert_eq!(
        recs,
        vec![
            rec(1, "u1", CLICKS, 1000, Value::Int64(1)),
            rec(1, "u1", CTR, 1000, Value::Float32(0.5)),
            rec(1, "u1", NAME, 1000, Value::String("a".to_owned())),
            rec(2, "u2", CLICKS, 2000, Value::Int64(2)),
            rec(2, "u2", CTR, 2000, Value::Null),
            rec(2, "u2", NAME, 2000, Value::String("b".to_owned())),
        ]
    );
}

#[test]
fn csv_bad_value_names_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,event_time,clicks,ctr\nu1,1,1,0.5\nu2,1,2,0.5\nu3,1,3,zero\n",
    );
    let err = read(&path, &InputOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}: row 3, column `ctr`: ", path.display())),
        "{message}"
    );
    let (row, column, reason) = bad_row(err);
    assert_eq!((row, column.as_str()), (3, "ctr"));
    assert!(reason.contains("`zero` is not a float32"), "{reason}");

    let path = write_file(
        dir.path(),
        "long.csv",
        "entity_id,feature_name,event_time,value\nu1,clicks,1,1\nu1,clicks,1,1.5\n",
    );
    let (row, column, _) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (2, "value"));
}

#[test]
fn csv_unknown_feature_in_long_row_is_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,feature_name,event_time,value\nu1,clicks,1,1\nu1,nope,1,1\n",
    );
    let (row, column, reason) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (2, "feature_name"));
    assert_eq!(reason, "feature `nope` is not registered in this group");
}

#[test]
fn csv_unknown_wide_columns_are_named_or_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,event_time,clicks,mystery,other\nu1,1,1,x,y\n",
    );
    let err = read(&path, &InputOptions::default()).unwrap_err();
    assert!(matches!(err, InputError::BadSchema { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`mystery`") && message.contains("`other`"),
        "{message}"
    );

    let options = InputOptions {
        ignore_unknown_columns: true,
        ..InputOptions::default()
    };
    let (_, recs) = read(&path, &options).unwrap();
    assert_eq!(recs, vec![rec(1, "u1", CLICKS, 1, Value::Int64(1))]);
}

#[test]
fn wide_without_event_time_needs_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "in.csv", "entity_id,clicks\nu1,7\n");
    let err = read(&path, &InputOptions::default()).unwrap_err();
    assert!(matches!(err, InputError::BadSchema { .. }), "{err:?}");
    assert!(err.to_string().contains("event_time"), "{err}");

    let options = InputOptions {
        default_event_time: Some(555),
        ..InputOptions::default()
    };
    let (_, recs) = read(&path, &options).unwrap();
    assert_eq!(recs, vec![rec(1, "u1", CLICKS, 555, Value::Int64(7))]);
}

#[test]
fn empty_event_time_cells_use_the_default_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,event_time,clicks\nu1,5,1\nu2,,2\n",
    );
    let (row, column, _) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (2, "event_time"));
    let options = InputOptions {
        default_event_time: Some(9),
        ..InputOptions::default()
    };
    let (_, recs) = read(&path, &options).unwrap();
    assert_eq!(recs[1], rec(2, "u2", CLICKS, 9, Value::Int64(2)));
}

#[test]
fn csv_nulls_are_emitted_and_strings_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,feature_name,event_time,value\nu1,clicks,1,\nu1,name,1,\"  \"\nu1,emb,1,\n\
         u1,name,2,  padded  \nu1,name,3,\"  quoted, padded  \"\nu1,clicks,4, 7 \nu1,name,5,\n",
    );
    let (_, recs) = read(&path, &InputOptions::default()).unwrap();
    assert_eq!(
        recs,
        vec![
            rec(1, "u1", CLICKS, 1, Value::Null),
            // Issue 12: a string is what the cell holds, spaces included; only an
            // empty cell is null.
            rec(2, "u1", NAME, 1, Value::String("  ".into())),
            rec(3, "u1", EMB, 1, Value::Null),
            rec(4, "u1", NAME, 2, Value::String("  padded  ".into())),
            rec(5, "u1", NAME, 3, Value::String("  quoted, padded  ".into())),
            // Numbers ignore surrounding spaces (documented in README, "Input files").
            rec(6, "u1", CLICKS, 4, Value::Int64(7)),
            rec(7, "u1", NAME, 5, Value::Null),
        ]
    );
}

#[test]
fn entity_ids_reach_the_sink_untouched() {
    // The readers hand ids over exactly; the loader checks them (one check for every
    // path, `EntityIdRule::check`), empty and non-UTF-8 ones included.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.csv");
    std::fs::write(
        &path,
        b"entity_id,event_time,clicks\n u1 ,1,1\n,1,2\np\xff,1,3\n".as_slice(),
    )
    .unwrap();
    let mut ids: Vec<Vec<u8>> = Vec::new();
    read_input(&path, &InputOptions::default(), &features(), &mut |r| {
        ids.push(r.entity_id.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(ids, vec![b" u1 ".to_vec(), Vec::new(), b"p\xff".to_vec()]);
}

#[test]
fn parquet_strings_are_exact_and_empty_strings_are_not_null() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        dir.path(),
        "strings.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u1", "u2", "u3"])) as ArrayRef,
            ),
            ("event_time", Arc::new(Int64Array::from(vec![1, 1, 1]))),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("  padded  "), Some(""), None])),
            ),
        ],
    );
    let (_, recs) = read(&path, &InputOptions::default()).unwrap();
    assert_eq!(
        recs,
        vec![
            rec(1, "u1", NAME, 1, Value::String("  padded  ".into())),
            rec(2, "u2", NAME, 1, Value::String(String::new())),
            rec(3, "u3", NAME, 1, Value::Null),
        ]
    );
}

#[test]
fn text_event_times_apply_their_offsets_in_csv_and_parquet() {
    // Issue 12: `+02:00` with a fraction was read as `Z`; without a fraction, and
    // `-05:30`, were refused.
    let base: TimestampMs = 1_763_789_600_000; // 2025-11-22T05:33:20Z
    let hour: TimestampMs = 3_600_000;
    let texts = [
        "2025-11-22T05:33:20.123+02:00",
        "2025-11-22T05:33:20+09:00",
        "2025-11-22T05:33:20-05:30",
        "2025-11-22T05:33:20.5z",
    ];
    let want = [
        base - 2 * hour + 123,
        base - 9 * hour,
        base + 5 * hour + hour / 2,
        base + 500,
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("entity_id,event_time,clicks\n");
    for (i, t) in texts.iter().enumerate() {
        csv.push_str(&format!("u{i},{t},1\n"));
    }
    let path = write_file(dir.path(), "times.csv", &csv);
    let (_, recs) = read(&path, &InputOptions::default()).unwrap();
    let times: Vec<TimestampMs> = recs.iter().map(|r| r.time).collect();
    assert_eq!(times, want);

    let path = write_parquet(
        dir.path(),
        "times.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u0", "u1", "u2", "u3"])) as ArrayRef,
            ),
            ("event_time", Arc::new(StringArray::from(texts.to_vec()))),
            ("clicks", Arc::new(Int64Array::from(vec![1, 1, 1, 1]))),
        ],
    );
    let (_, recs) = read(&path, &InputOptions::default()).unwrap();
    let times: Vec<TimestampMs> = recs.iter().map(|r| r.time).collect();
    assert_eq!(times, want);

    let path = write_file(
        dir.path(),
        "naive.csv",
        "entity_id,event_time,clicks\nu1,2025-11-22T05:33:20,1\n",
    );
    let (row, column, reason) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (1, "event_time"));
    assert!(reason.contains("no UTC offset"), "{reason}");
}

#[test]
fn csv_event_times_accept_rfc3339() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,event_time,clicks\n\
         u1,1970-01-01T00:00:01Z,1\n\
         u2,1970-01-01T00:00:01Z,2\n\
         u3,2026-11-21T00:00:00.250Z,3\n\
         u4,1500,4\n\
         u5,last tuesday,5\n",
    );
    let (row, column, reason) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (5, "event_time"));
    assert!(reason.contains("last tuesday"), "{reason}");

    let path = write_file(
        dir.path(),
        "ok.csv",
        "entity_id,event_time,clicks\n\
         u1,1970-01-01T00:00:01Z,1\n\
         u2,1970-01-01T00:00:01Z,2\n\
         u3,2026-11-21T00:00:00.250Z,3\n\
         u4,1500,4\n",
    );
    let (_, recs) = read(&path, &InputOptions::default()).unwrap();
    let times: Vec<TimestampMs> = recs.iter().map(|r| r.time).collect();
    assert_eq!(times, vec![1000, 1000, 1_795_219_200_250, 1500]);
}

#[test]
fn csv_ragged_row_is_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,event_time,clicks\nu1,1,1\nu2,1\n",
    );
    let (row, column, reason) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (2, "clicks"));
    assert!(reason.contains("2 fields"), "{reason}");
}

#[test]
fn long_layout_reports_missing_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,feature_name,event_time\nu1,clicks,1\n",
    );
    let options = InputOptions {
        layout: Some(Layout::Long),
        ..InputOptions::default()
    };
    let err = read(&path, &options).unwrap_err();
    assert!(matches!(err, InputError::BadSchema { .. }), "{err:?}");
    assert!(err.to_string().contains("`value`"), "{err}");
    // Detected as wide instead, `feature_name` is an unknown column.
    let err = read(&path, &InputOptions::default()).unwrap_err();
    assert!(err.to_string().contains("`feature_name`"), "{err}");
}

#[test]
fn empty_and_header_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "empty.csv", "");
    assert!(matches!(
        read(&path, &InputOptions::default()),
        Err(InputError::BadSchema { .. })
    ));
    let path = write_file(dir.path(), "header.csv", "entity_id,event_time,clicks\n");
    let (summary, recs) = read(&path, &InputOptions::default()).unwrap();
    assert_eq!((summary.rows, summary.records, recs.len()), (0, 0, 0));
}

#[test]
fn duplicate_columns_are_schema_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "a.csv",
        "entity_id,event_time,clicks,clicks\nu,1,1,1\n",
    );
    assert!(matches!(
        read(&path, &InputOptions::default()),
        Err(InputError::BadSchema { .. })
    ));
    let path = write_file(
        dir.path(),
        "b.csv",
        "entity_id,event_time,clicks,clicks@1\nu,1,1,1\n",
    );
    assert!(matches!(
        read(&path, &InputOptions::default()),
        Err(InputError::BadSchema { .. })
    ));
}

#[test]
fn sink_errors_stop_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.csv",
        "entity_id,event_time,clicks\nu1,1,1\nu2,1,2\n",
    );
    let mut seen = 0;
    let err = read_input(&path, &InputOptions::default(), &features(), &mut |_| {
        seen += 1;
        Err(InputError::Sink("full".to_owned()))
    })
    .unwrap_err();
    assert!(matches!(err, InputError::Sink(ref m) if m == "full"));
    assert_eq!(seen, 1);
}

#[test]
fn format_detection_and_override() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "in.txt",
        "entity_id,event_time,clicks\nu1,1,1\n",
    );
    let err = read(&path, &InputOptions::default()).unwrap_err();
    assert!(matches!(err, InputError::BadSchema { .. }), "{err:?}");
    let options = InputOptions {
        format: Some(InputFormat::Csv),
        ..InputOptions::default()
    };
    assert_eq!(read(&path, &options).unwrap().1.len(), 1);

    // A CSV named .parquet is a Parquet error, not a panic.
    let path = write_file(
        dir.path(),
        "in.parquet",
        "entity_id,event_time,clicks\nu1,1,1\n",
    );
    assert!(matches!(
        read(&path, &InputOptions::default()),
        Err(InputError::Parquet { .. })
    ));
    let missing = dir.path().join("missing.csv");
    assert!(matches!(
        read(&missing, &InputOptions::default()),
        Err(InputError::Io { .. })
    ));
}

#[test]
fn format_and_layout_names() {
    assert_eq!("csv".parse::<InputFormat>(), Ok(InputFormat::Csv));
    assert_eq!("Parquet".parse::<InputFormat>(), Ok(InputFormat::Parquet));
    assert_eq!("pq".parse::<InputFormat>(), Ok(InputFormat::Parquet));
    assert!("json".parse::<InputFormat>().is_err());
    assert_eq!("wide".parse::<Layout>(), Ok(Layout::Wide));
    assert!("tall".parse::<Layout>().is_err());
    assert_eq!(
        serde_json::to_string(&InputFormat::Parquet).unwrap(),
        "\"parquet\""
    );
    assert_eq!(
        serde_json::from_str::<Layout>("\"long\"").unwrap(),
        Layout::Long
    );
    assert_eq!(
        InputFormat::from_path(Path::new("a/b.PQ")),
        Some(InputFormat::Parquet)
    );
}

// ---- Parquet ---------------------------------------------------------------------------

#[test]
fn parquet_long_with_text_and_typed_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        dir.path(),
        "text.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u1", "u1", "u2"])) as ArrayRef,
            ),
            (
                "feature_name",
                Arc::new(StringArray::from(vec!["clicks", "emb", "name@1"])),
            ),
            (
                "event_time",
                Arc::new(StringArray::from(vec![
                    "1970-01-01T00:00:02Z",
                    "3000",
                    "4000",
                ])),
            ),
            (
                "value",
                Arc::new(StringArray::from(vec![Some("5"), Some("1 2"), None])),
            ),
        ],
    );
    let (summary, recs) = read(&path, &InputOptions::default()).unwrap();
    assert_eq!(
        (summary.format, summary.layout),
        (InputFormat::Parquet, Layout::Long)
    );
    assert_eq!(
        recs,
        vec![
            rec(1, "u1", CLICKS, 2000, Value::Int64(5)),
            rec(2, "u1", EMB, 3000, Value::Float32Vector(vec![1.0, 2.0])),
            rec(3, "u2", NAME, 4000, Value::Null),
        ]
    );

    // Float64 values convert to int64 when integral, else the row is bad.
    let path = write_parquet(
        dir.path(),
        "float.pq",
        vec![
            (
                "entity_id",
                Arc::new(Int64Array::from(vec![10, 11, 12])) as ArrayRef,
            ),
            (
                "feature_name",
                Arc::new(StringArray::from(vec!["ctr", "clicks", "clicks"])),
            ),
            ("event_time", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("value", Arc::new(Float64Array::from(vec![0.5, 3.0, 3.5]))),
        ],
    );
    let mut got = Vec::new();
    let err = read_input(&path, &InputOptions::default(), &features(), &mut |r| {
        got.push((r.entity_id.to_vec(), r.value.clone()));
        Ok(())
    })
    .unwrap_err();
    assert_eq!(
        got,
        vec![
            (b"10".to_vec(), Value::Float32(0.5)),
            (b"11".to_vec(), Value::Int64(3))
        ]
    );
    let (row, column, reason) = bad_row(err);
    assert_eq!((row, column.as_str()), (3, "value"));
    assert!(reason.contains("integral"), "{reason}");
}

#[test]
fn parquet_long_unknown_feature_and_dictionary_names() {
    let dir = tempfile::tempdir().unwrap();
    let names: DictionaryArray<Int32Type> = vec!["clicks", "clicks", "nope"].into_iter().collect();
    let path = write_parquet(
        dir.path(),
        "dict.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            ),
            ("feature_name", Arc::new(names)),
            ("event_time", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("value", Arc::new(Int32Array::from(vec![1, 2, 3]))),
        ],
    );
    let (row, column, reason) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (3, "feature_name"));
    assert_eq!(reason, "feature `nope` is not registered in this group");
}

#[test]
fn parquet_wide_with_typed_columns_and_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let mut emb = ListBuilder::new(Float32Builder::new());
    emb.values().append_slice(&[1.0, 2.0]);
    emb.append(true);
    emb.append(false);
    let path = write_parquet(
        dir.path(),
        "wide.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u1", "u2"])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_000_999, 2_000_000])
                        .with_timezone("+02:00"),
                ),
            ),
            ("clicks", Arc::new(Int64Array::from(vec![Some(3), None]))),
            (
                "ctr@1",
                Arc::new(Float32Array::from(vec![None, Some(0.75)])),
            ),
            ("score", Arc::new(Int32Array::from(vec![7, -1]))),
            (
                "active",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
            ),
            ("name", Arc::new(StringArray::from(vec![Some("x"), None]))),
            (
                "blob",
                Arc::new(BinaryArray::from(vec![
                    Some(&b"\x00\xff"[..]),
                    Some(&b""[..]),
                ])),
            ),
            ("emb", Arc::new(emb.finish())),
        ],
    );
    let (summary, recs) = read(&path, &InputOptions::default()).unwrap();
    assert_eq!(
        (summary.layout, summary.rows, summary.records),
        (Layout::Wide, 2, 14)
    );
    // Column by column within a batch.
    assert_eq!(
        recs,
        vec![
            rec(1, "u1", CLICKS, 1000, Value::Int64(3)),
            rec(2, "u2", CLICKS, 2000, Value::Null),
            rec(1, "u1", CTR, 1000, Value::Null),
            rec(2, "u2", CTR, 2000, Value::Float32(0.75)),
            rec(1, "u1", SCORE, 1000, Value::Float64(7.0)),
            rec(2, "u2", SCORE, 2000, Value::Float64(-1.0)),
            rec(1, "u1", ACTIVE, 1000, Value::Bool(true)),
            rec(2, "u2", ACTIVE, 2000, Value::Bool(false)),
            rec(1, "u1", NAME, 1000, Value::String("x".to_owned())),
            rec(2, "u2", NAME, 2000, Value::Null),
            rec(1, "u1", BLOB, 1000, Value::Bytes(vec![0, 255])),
            rec(2, "u2", BLOB, 2000, Value::Bytes(vec![])),
            rec(1, "u1", EMB, 1000, Value::Float32Vector(vec![1.0, 2.0])),
            rec(2, "u2", EMB, 2000, Value::Null),
        ]
    );
}

#[test]
fn parquet_wide_integer_entities_null_times_and_bad_conversions() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        dir.path(),
        "ints.parquet",
        vec![
            (
                "entity_id",
                Arc::new(Int32Array::from(vec![7, -3, 12345])) as ArrayRef,
            ),
            (
                "event_time",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            ),
            ("clicks", Arc::new(Int32Array::from(vec![1, 2, 3]))),
            ("score", Arc::new(Float32Array::from(vec![0.5, 1.5, 2.5]))),
        ],
    );
    let options = InputOptions {
        default_event_time: Some(99),
        ..InputOptions::default()
    };
    let (_, recs) = read(&path, &options).unwrap();
    let got: Vec<(u64, &str, FeatureId, TimestampMs)> = recs
        .iter()
        .map(|r| (r.row, r.entity.as_str(), r.feature, r.time))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "7", CLICKS, 1),
            (2, "-3", CLICKS, 99),
            (3, "12345", CLICKS, 3),
            (1, "7", SCORE, 1),
            (2, "-3", SCORE, 99),
            (3, "12345", SCORE, 3),
        ]
    );
    assert_eq!(recs[4].value, Value::Float64(1.5));
    // Without a default, the null event time is a bad row.
    let (row, column, _) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (2, "event_time"));

    // A boolean column cannot feed a float feature; a null entity is a bad row.
    let path = write_parquet(
        dir.path(),
        "bad.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
            ("event_time", Arc::new(Int64Array::from(vec![1, 2]))),
            ("ctr", Arc::new(BooleanArray::from(vec![true, false]))),
        ],
    );
    let (row, column, _) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (2, "entity_id"));
    let path = write_parquet(
        dir.path(),
        "bool.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            ),
            ("event_time", Arc::new(Int64Array::from(vec![1]))),
            ("ctr", Arc::new(BooleanArray::from(vec![true]))),
        ],
    );
    let (row, column, reason) = bad_row(read(&path, &InputOptions::default()).unwrap_err());
    assert_eq!((row, column.as_str()), (1, "ctr"));
    assert_eq!(reason, "a boolean cannot be stored as float32");
}

#[test]
fn parquet_wide_fixed_size_vectors_check_the_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let mut emb = FixedSizeListBuilder::new(Float32Builder::new(), 3);
    emb.values().append_slice(&[1.0, 2.0, 3.0]);
    emb.append(true);
    let path = write_parquet(
        dir.path(),
        "fixed.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u1"])) as ArrayRef,
            ),
            ("emb", Arc::new(emb.finish())),
        ],
    );
    let options = InputOptions {
        default_event_time: Some(1),
        ..InputOptions::default()
    };
    let (row, column, reason) = bad_row(read(&path, &options).unwrap_err());
    assert_eq!((row, column.as_str()), (1, "emb"));
    assert!(reason.contains("dimension is 2"), "{reason}");
}

#[test]
fn parquet_wide_without_event_time_uses_default_or_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        dir.path(),
        "wide.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u1"])) as ArrayRef,
            ),
            ("clicks", Arc::new(Int64Array::from(vec![1]))),
            ("extra", Arc::new(Int64Array::from(vec![1]))),
        ],
    );
    let options = InputOptions {
        ignore_unknown_columns: true,
        ..InputOptions::default()
    };
    let err = read(&path, &options).unwrap_err();
    assert!(matches!(err, InputError::BadSchema { .. }), "{err:?}");
    let options = InputOptions {
        default_event_time: Some(77),
        ignore_unknown_columns: true,
        ..InputOptions::default()
    };
    let (_, recs) = read(&path, &options).unwrap();
    assert_eq!(recs, vec![rec(1, "u1", CLICKS, 77, Value::Int64(1))]);
}

#[test]
fn parquet_row_numbers_span_batches() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000usize;
    let entities: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    let mut values: Vec<Option<String>> = (0..n).map(|i| Some(i.to_string())).collect();
    values[17_999] = Some("oops".to_owned());
    values[5] = None;
    let path = write_parquet(
        dir.path(),
        "big.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(entities)) as ArrayRef,
            ),
            ("event_time", Arc::new(Int64Array::from(vec![1; n]))),
            ("clicks", Arc::new(StringArray::from(values))),
        ],
    );
    let mut count = 0u64;
    let err = read_input(&path, &InputOptions::default(), &features(), &mut |r| {
        count += 1;
        assert_eq!(r.row, count);
        assert_eq!(r.entity_id, format!("e{}", count - 1).as_bytes());
        if count == 6 {
            assert_eq!(r.value, &Value::Null);
        }
        Ok(())
    })
    .unwrap_err();
    assert_eq!(count, 17_999);
    let (row, column, _) = bad_row(err);
    assert_eq!((row, column.as_str()), (18_000, "clicks"));
}

#[test]
fn parquet_unsupported_column_type_is_a_schema_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        dir.path(),
        "t.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u1"])) as ArrayRef,
            ),
            ("event_time", Arc::new(Float64Array::from(vec![1.0]))),
            ("clicks", Arc::new(Int64Array::from(vec![1]))),
        ],
    );
    let err = read(&path, &InputOptions::default()).unwrap_err();
    assert!(matches!(err, InputError::BadSchema { .. }), "{err:?}");
    assert!(err.to_string().contains("event_time"), "{err}");
}

#[test]
fn parquet_garbage_and_truncated_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write_file(
        dir.path(),
        "garbage.parquet",
        "PAR1 this is not parquet PAR1",
    );
    assert!(matches!(
        read(&garbage, &InputOptions::default()),
        Err(InputError::Parquet { .. })
    ));

    let good = write_parquet(
        dir.path(),
        "good.parquet",
        vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec!["u1", "u2", "u3"])) as ArrayRef,
            ),
            ("event_time", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            (
                "clicks",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            ),
            ("name", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
        ],
    );
    let bytes = std::fs::read(&good).unwrap();
    assert_eq!(read(&good, &InputOptions::default()).unwrap().1.len(), 6);
    let cut = dir.path().join("cut.parquet");
    for len in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        assert!(
            read(&cut, &InputOptions::default()).is_err(),
            "truncated to {len}"
        );
    }
    // Corrupt single bytes of the data pages (before the footer): an error or, where the
    // byte is slack, a read; never a panic.
    let flipped = dir.path().join("flipped.parquet");
    for at in 4..bytes.len().saturating_sub(8) {
        let mut copy = bytes.clone();
        copy[at] ^= 0x5a;
        std::fs::write(&flipped, &copy).unwrap();
        let _ = read_input(&flipped, &InputOptions::default(), &features(), &mut |_| {
            Ok(())
        });
    }
}

proptest! {
    #[test]
    fn csv_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        let mut text = b"entity_id,feature_name,event_time,value\n".to_vec();
        text.extend_from_slice(&body);
        let path = dir.path().join("fuzz.csv");
        std::fs::write(&path, &text).unwrap();
        let _ = read_input(&path, &InputOptions::default(), &features(), &mut |_| Ok(()));
    }

    #[test]
    fn csv_cells_round_trip(values in proptest::collection::vec(any::<i64>(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("entity_id,event_time,clicks\n");
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("e{i},{i},{v}\n"));
        }
        let path = write_file(dir.path(), "in.csv", &text);
        let (_, recs) = read(&path, &InputOptions::default()).unwrap();
        let got: Vec<Value> = recs.into_iter().map(|r| r.value).collect();
        let want: Vec<Value> = values.into_iter().map(Value::Int64).collect();
        prop_assert_eq!(got, want);
    }
}
