use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::registry::file::parse_features_toml;
use crate::types::parse_timestamp_ms;

fn tiny() -> Dataset {
    Dataset::new(DatasetConfig::tiny())
}

fn dtypes(dataset: &Dataset) -> HashMap<String, DType> {
    dataset
        .specs()
        .into_iter()
        .map(|s| (s.name, s.dtype))
        .collect()
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).expect("open parquet");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet metadata")
        .build()
        .expect("parquet reader")
        .collect::<Result<_, _>>()
        .expect("parquet batches")
}

/// Converts one Arrow cell back into a value, independently of the writer's code.
fn arrow_value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int64 => Value::Int64(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Value::Float64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Value::Float32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            Value::Float32Vector(list.as_primitive::<Float32Type>().values().to_vec())
        }
        other => panic!("unexpected arrow type {other}"),
    }
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).expect("open csv");
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("csv record").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn values_are_deterministic_and_pinned() {
    let a = tiny();
    let b = tiny();
    for spec in a.specs() {
        for id in a.entity_ids(&spec.entity_type) {
            assert_eq!(
                a.expected(&spec.entity_type, &id, &spec.name),
                b.expected(&spec.entity_type, &id, &spec.name)
            );
        }
    }
    // Pinned values: a change here changes every data set on every machine.
    let pinned = [
        float_matrix_value(7, 0, 0).to_bits(),
        float_matrix_value(7, 999_999, 49).to_bits(),
        float_matrix_value(8, 0, 0).to_bits(),
    ];
    assert_eq!(pinned, [1_057_248_198, 3_197_862_984, 3_204_568_616]);
    let (value, time) = a.expected("product", "p1", "product_f00").expect("present");
    assert_eq!(value, Value::Float32(f32::from_bits(0x3f27_0c64)));
    assert_eq!(time, 1_795_188_454_635);

    // A different seed changes the values.
    let other = Dataset::new(DatasetConfig {
        seed: 43,
        ..DatasetConfig::tiny()
    });
    assert_ne!(
        a.expected("product", "p1", "product_f00"),
        other.expected("product", "p1", "product_f00")
    );
}

#[test]
fn written_files_are_byte_identical_across_runs() {
    let one = tempfile::tempdir().expect("tempdir");
    let two = tempfile::tempdir().expect("tempdir");
    let a = tiny().write(one.path()).expect("write");
    let b = tiny().write(two.path()).expect("write");
    let read = |p: &Path| std::fs::read(p).expect("read back");
    assert_eq!(read(&a.features_toml), read(&b.features_toml));
    assert_eq!(a.loads.len(), 3);
    for (x, y) in a.loads.iter().zip(&b.loads) {
        assert_eq!(x.group, y.group);
        assert_eq!(read(&x.path), read(&y.path), "{}", x.group);
    }
}

#[test]
fn features_toml_round_trips() {
    for config in [DatasetConfig::tiny(), DatasetConfig::demo()] {
        let dataset = Dataset::new(config);
        let parsed =
            parse_features_toml(&dataset.features_toml(), "features.toml").expect("parses");
        assert_eq!(parsed, dataset.specs());
    }
}

#[test]
fn specs_are_valid_and_consistent() {
    let dataset = tiny();
    let specs = dataset.specs();
    assert_eq!(specs.len(), 50 + 5 + 8 + 6);
    let mut names = BTreeSet::new();
    for spec in &specs {
        spec.validate().expect("valid spec");
        assert!(names.insert(spec.name.clone()), "duplicate {}", spec.name);
        assert!(!spec.description.is_empty(), "{}", spec.name);
        let expected_entity = match spec.group.as_str() {
            PRODUCT_GROUP => "product",
            USER_GROUP => "user",
            RETAILER_GROUP => "retailer",
            other => panic!("unexpected group {other}"),
        };
        assert_eq!(spec.entity_type, expected_entity, "{}", spec.name);
    }
    let short = specs
        .iter()
        .find(|s| s.name == SHORT_TTL_FEATURE)
        .expect("short-ttl feature");
    assert_eq!(short.ttl, Some(std::time::Duration::from_secs(3_600)));
    assert_eq!(short.group, USER_GROUP);
    // Every spec resolves back to a cell generator.
    for spec in &specs {
        let first = dataset
            .entity_ids(&spec.entity_type)
            .next()
            .expect("an entity");
        let _ = dataset.expected(&spec.entity_type, &first, &spec.name);
    }
}

#[test]
fn ids_and_names_must_be_canonical() {
    let dataset = tiny();
    assert!(dataset.expected("product", "p0", "product_f00").is_some());
    assert!(dataset.expected("product", "p199", "product_f49").is_some());
    for (entity_type, id, feature) in [
        ("product", "p200", "product_f00"),
        ("product", "p01", "product_f00"),
        ("product", "p+1", "product_f00"),
        ("product", "p", "product_f00"),
        ("product", "u1", "product_f00"),
        ("product", "p1", "product_f50"),
        ("product", "p1", "product_f0"),
        ("product", "p1", "product_f001"),
        ("product", "p1", "user_segment"),
        ("user", "u1", "product_price"),
        ("shop", "s1", "product_price"),
    ] {
        assert_eq!(
            dataset.expected(entity_type, id, feature),
            None,
            "{id} {feature}"
        );
    }
    assert_eq!(dataset.entity_ids("user").count(), 50);
    assert_eq!(dataset.entity_ids("product").count(), 200);
    assert_eq!(dataset.entity_ids("retailer").count(), 20);
    assert_eq!(dataset.entity_ids("shop").count(), 0);
    assert_eq!(
        dataset.entity_ids("retailer").take(3).collect::<Vec<_>>(),
        ["r0", "r1", "r2"]
    );
}

#[test]
fn parquet_file_matches_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dataset = tiny();
    let files = dataset.write(dir.path()).expect("write");
    let load = &files.loads[0];
    assert_eq!(load.group, PRODUCT_GROUP);
    assert_eq!(
        load.path.extension().and_then(|e| e.to_str()),
        Some("parquet")
    );

    let product_features: Vec<String> = dataset
        .specs()
        .into_iter()
        .filter(|s| s.group == PRODUCT_GROUP)
        .map(|s| s.name)
        .collect();
    let mut seen = BTreeSet::new();
    let mut nulls = 0;
    for batch in read_parquet(&load.path) {
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[..2], ["entity_id", "event_time"]);
        assert_eq!(
            names[2..],
            product_features
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Int64);
        let ids = batch.column(0).as_string::<i32>();
        let times = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            assert!(seen.insert(id.to_owned()), "duplicate {id}");
            for (col, name) in product_features.iter().enumerate() {
                let value = arrow_value(batch.column(col + 2).as_ref(), row);
                nulls += usize::from(value == Value::Null);
                assert_eq!(
                    dataset.expected("product", id, name),
                    Some((value, times.value(row))),
                    "{id} {name}"
                );
            }
        }
    }
    assert_eq!(seen, dataset.entity_ids("product").collect());
    // product_price (4), product_embedding (2) and product_f02 (1).
    assert_eq!(nulls, 7);
}

#[test]
fn long_csv_matches_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dataset = tiny();
    let files = dataset.write(dir.path()).expect("write");
    let load = &files.loads[1];
    assert_eq!(load.group, USER_GROUP);
    let dtypes = dtypes(&dataset);

    let (header, rows) = csv_rows(&load.path);
    assert_eq!(header, ["entity_id", "feature_name", "event_time", "value"]);
    let (mut rfc3339, mut millis, mut nulls) = (0, 0, 0);
    let mut cells = BTreeSet::new();
    for row in &rows {
        let [id, feature, time, text] = row.as_slice() else {
            panic!("bad row {row:?}");
        };
        if time.parse::<i64>().is_ok() {
            millis += 1;
        } else {
            rfc3339 += 1;
        }
        let time = parse_timestamp_ms(time).expect("event time");
        let value = Value::parse_text(text, dtypes[feature.as_str()]).expect("value");
        nulls += usize::from(value == Value::Null);
        assert_eq!(
            dataset.expected("user", id, feature),
            Some((value, time)),
            "{id} {feature}"
        );
        assert!(
            cells.insert((id.clone(), feature.clone())),
            "duplicate {id} {feature}"
        );
    }
    assert!(
        rfc3339 > 0 && millis > 0,
        "{rfc3339} rfc3339, {millis} millis"
    );
    assert_eq!(nulls, 1, "u3 has a null conversion rate");

    // Every cell expected() reports is in the file, and the rest are absent.
    let mut absent = HashMap::<String, usize>::new();
    for spec in dataset.specs().iter().filter(|s| s.group == USER_GROUP) {
        for id in dataset.entity_ids("user") {
            let in_file = cells.contains(&(id.clone(), spec.name.clone()));
            assert_eq!(
                dataset.expected("user", &id, &spec.name).is_some(),
                in_file,
                "{id} {}",
                spec.name
            );
            if !in_file {
                *absent.entry(spec.name.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(absent["user_cart_adds_1h"], 13);
    assert_eq!(absent["user_avg_order_value_30d"], 7);
    assert_eq!(absent["user_embedding"], 5);
    assert_eq!(absent.len(), 3);
}

#[test]
fn wide_csv_matches_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dataset = tiny();
    let files = dataset.write(dir.path()).expect("write");
    let load = &files.loads[2];
    assert_eq!(load.group, RETAILER_GROUP);
    let dtypes = dtypes(&dataset);

    let (header, rows) = csv_rows(&load.path);
    assert_eq!(header[..2], ["entity_id", "event_time"]);
    assert_eq!(header.len(), 2 + 6);
    assert_eq!(rows.len(), 20);
    let mut nulls = 0;
    for row in &rows {
        let id = &row[0];
        let time = parse_timestamp_ms(&row[1]).expect("event time");
        for (name, text) in header[2..].iter().zip(&row[2..]) {
            let value = Value::parse_text(text, dtypes[name.as_str()]).expect("value");
            nulls += usize::from(value == Value::Null);
            assert_eq!(
                dataset.expected("retailer", id, name),
                Some((value, time)),
                "{id} {name}"
            );
        }
    }
    assert_eq!(nulls, 1, "r11 has a null rating");
}

#[test]
fn event_times_and_expiry() {
    let dataset = tiny();
    let base = dataset.config.base_time_ms;
    let day = 86_400_000;
    let (mut expired, mut present) = (0, 0);
    for spec in dataset.specs() {
        for id in dataset.entity_ids(&spec.entity_type) {
            let Some((_, time)) = dataset.expected(&spec.entity_type, &id, &spec.name) else {
                continue;
            };
            assert!(
                time <= base && time > base - day,
                "{id} {} at {time}",
                spec.name
            );
            let at_base = dataset.expected_status(&spec.entity_type, &id, &spec.name, base);
            let later =
                dataset.expected_status(&spec.entity_type, &id, &spec.name, base + 3 * 3_600_000);
            if spec.name == SHORT_TTL_FEATURE {
                assert_ne!((time - base) % 1_000, 0);
                assert!(time > base - 2 * 3_600_000);
                match at_base {
                    FeatureStatus::Expired => expired += 1,
                    FeatureStatus::Present => present += 1,
                    other => panic!("{id}: {other:?}"),
                }
                assert_eq!(later, FeatureStatus::Expired);
            } else {
                assert_ne!(at_base, FeatureStatus::Expired, "{id} {}", spec.name);
                assert_eq!(at_base, later, "{id} {}", spec.name);
            }
        }
    }
    assert!(
        expired > 5 && present > 5,
        "{expired} expired, {present} present"
    );
    assert_eq!(
        dataset.expected_status("user", "u1", SHORT_TTL_FEATURE, base),
        FeatureStatus::NotFound
    );
    assert_eq!(
        dataset.expected_status("user", "u3", "user_conversion_rate_30d", base),
        FeatureStatus::Null
    );
}

#[test]
fn float_matrix_parquet_and_csv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parquet_path = dir.path().join("matrix.parquet");
    let specs = write_float_matrix(&parquet_path, "bench_items", 40_000, 5, 9).expect("parquet");
    assert_eq!(specs.len(), 5);
    assert_eq!(specs[3].name, "f03");
    assert!(
        specs
            .iter()
            .all(|s| s.entity_type == "item" && s.group == "bench_items")
    );
    let batches = read_parquet(&parquet_path);
    assert!(batches.len() > 1, "streamed in several batches");
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 40_000);
    let mut next = 0u64;
    for batch in &batches {
        let ids = batch.column(0).as_string::<i32>();
        let times = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            assert_eq!(ids.value(row), format!("e{next}"));
            assert_eq!(times.value(row), FLOAT_MATRIX_EVENT_TIME_MS);
            for f in 0..5 {
                let got = batch.column(f + 2).as_primitive::<Float32Type>().value(row);
                assert_eq!(got.to_bits(), float_matrix_value(9, next, f).to_bits());
            }
            next += 1;
        }
    }

    let csv_path = dir.path().join("matrix.csv");
    write_float_matrix(&csv_path, "bench_items", 1_000, 3, 9).expect("csv");
    let (header, rows) = csv_rows(&csv_path);
    assert_eq!(header, ["entity_id", "event_time", "f00", "f01", "f02"]);
    assert_eq!(rows.len(), 1_000);
    for (e, row) in rows.iter().enumerate() {
        assert_eq!(row[0], format!("e{e}"));
        for f in 0..3 {
            let got: f32 = row[f + 2].parse().expect("float");
            assert_eq!(got.to_bits(), float_matrix_value(9, e as u64, f).to_bits());
        }
    }

    let bad = write_float_matrix(&dir.path().join("matrix.json"), "bench_items", 1, 1, 9);
    assert_eq!(
        bad.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::InvalidInput)
    );
}

#[test]
fn named_float_matrix_uses_its_names_and_the_same_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("products.csv");
    let names = MatrixNames {
        group: "bench_product",
        entity_type: "product",
        id_prefix: "p",
        feature_prefix: "pf",
    };
    let specs = write_named_float_matrix(&path, &names, 20, 3, 11).expect("csv");
    assert_eq!(specs[2].name, "pf02");
    assert!(
        specs
            .iter()
            .all(|s| s.entity_type == "product" && s.group == "bench_product")
    );
    let (header, rows) = csv_rows(&path);
    assert_eq!(header, ["entity_id", "event_time", "pf00", "pf01", "pf02"]);
    assert_eq!(rows[7][0], "p7");
    let got: f32 = rows[7][3].parse().expect("float");
    assert_eq!(got.to_bits(), float_matrix_value(11, 7, 1).to_bits());
    let toml = features_toml_of("bench", &specs);
    assert_eq!(parse_features_toml(&toml, "bench").expect("parses"), specs);

    let bad = MatrixNames {
        feature_prefix: "Pf",
        ..names
    };
    let err = write_named_float_matrix(&path, &bad, 1, 1, 1).expect_err("invalid name");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn rfc3339_text_parses_back() {
    let t = DEFAULT_BASE_TIME_MS - 1_234_567;
    let text = output::rfc3339_millis(t).expect("in range");
    assert!(text.ends_with('Z') && text.contains('.'), "{text}");
    assert_eq!(parse_timestamp_ms(&text), Ok(t));
    assert_eq!(output::rfc3339_millis(-1), None);
}
