//! The serving log (issue 13): a recorded run of GETs and ranking reads (defaults,
//! on-demand values, expired values, a version swap in the middle) read back and
//! exported, compared value by value with what the caller got; sampling by request id;
//! queue overflow counted; a damaged file loses only its damaged blocks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use featstore::api::{get_json, rank_json};
use featstore::loader::LoadRequest;
use featstore::query::Names;
use featstore::query::rank::{FeatureSelection, RankRequest};
use featstore::servelog::reader::{Selection, read_all};
use featstore::servelog::request_id::generate;
use featstore::servelog::writer::list_files;
use featstore::servelog::{DropReason, Sampler, ServeLog, ServeLogConfig};
use featstore::{FeatureStore, ReadContext};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::common::small_config;
use super::ranking::ranking_store;

fn config(rate: f64) -> ServeLogConfig {
    ServeLogConfig {
        enabled: true,
        sample_rate: rate,
        flush_interval_ms: 20,
        ..ServeLogConfig::default()
    }
}

fn rank_request(service: bool) -> RankRequest {
    RankRequest {
        context: vec![("user".into(), "u1".into())],
        candidate_type: "product".into(),
        candidates: vec!["p3".into(), "p1".into(), "nope".into(), "p2".into()],
        features: if service {
            FeatureSelection::Service("ranker_v3".into())
        } else {
            FeatureSelection::Names(vec![
                "product_price".into(),
                "user_age".into(),
                "up_affinity".into(),
                "product_promo".into(),
                "user_product_sim".into(),
            ])
        },
        deadline: None,
    }
}

/// The body each read's client got, by request id.
type Served = Vec<(String, Vec<u8>)>;

fn run(store: &FeatureStore, dir: &std::path::Path, served: &mut Served, round: usize) {
    for i in 0..20 {
        let id = format!("r{round}-get-{i}");
        let entity = ["p1", "p2", "p3", "missing"][i % 4];
        let answer = store
            .get_entity_in(
                ReadContext {
                    request_id: Some(&id),
                    route: "get",
                    guard: None,
                },
                "product",
                entity,
                Names::Text("product_price,product_promo,product_clicks"),
            )
            .expect("get");
        served.push((id, get_json::encode_entity(&answer)));
        let id = format!("r{round}-rank-{i}");
        let answer = store
            .rank_in(
                ReadContext {
                    request_id: Some(&id),
                    route: "rank",
                    guard: None,
                },
                rank_request(i % 2 == 0),
            )
            .expect("rank");
        served.push((id, rank_json::encode_json(&answer)));
    }
    let _ = dir;
}

#[test]
fn a_recorded_run_replays_and_exports_exactly_what_was_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let log_dir = dir.path().join("log");
    let log = ServeLog::start(&store, &config(1.0), &log_dir).expect("start");
    let mut served = Served::new();
    run(&store, dir.path(), &mut served, 0);
    // A new version of the products in the middle of the run.
    let path = dir.path().join("products-v2.csv");
    std::fs::write(
        &path,
        "entity_id,event_time,product_price,product_clicks,product_views,product_emb,product_promo\n\
         p1,1700000000000,11.5,6,100,1 1 0,0.8\n\
         p2,1700000000000,21,1,0,0 1 0,0.2\n",
    )
    .expect("write");
    store
        .load(&LoadRequest::new("products", &path), &|_| {})
        .expect("load v2");
    run(&store, dir.path(), &mut served, 1);
    let metrics = log.metrics().clone();
    log.close();
    assert_eq!(metrics.records_written.load(Ordering::Relaxed), 80);
    assert_eq!(metrics.dropped(DropReason::QueueFull), 0);

    let (records, report) = read_all(&log_dir, &Selection::default()).expect("read");
    assert_eq!(report.corruptions, 0);
    assert_eq!(report.unclosed_files, 0);
    assert_eq!(records.len(), served.len());
    for (record, (id, body)) in records.iter().zip(&served) {
        assert_eq!(&record.request_id, id);
        assert_eq!(
            record.replay_json().expect("replay"),
            *body,
            "request {id}: the log replays other bytes than were served"
        );
    }
    let versions: Vec<u64> = records
        .iter()
        .filter_map(|r| r.answer.versions.get("products").copied())
        .collect();
    assert!(
        versions.first() < versions.last(),
        "the swap is in the log: {versions:?}"
    );

    // Export: every product_price value and status as served.
    let out = dir.path().join("export");
    let selection = Selection {
        service: Some("ranker_v3".into()),
        ..Selection::default()
    };
    let summary = featstore::servelog::export::export(&log_dir, &selection, &out).expect("export");
    assert_eq!(summary.records, 20);
    assert_eq!(summary.files.len(), 1);
    let file = std::fs::File::open(&summary.files[0]).expect("open parquet");
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("batches");
    let mut expected = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.service_name() == Some("ranker_v3"))
    {
        let c = r
            .answer
            .columns
            .iter()
            .position(|c| c.name == "product_price")
            .expect("column");
        for row in 0..r.answer.candidates.len() {
            let cell = r.answer.cell(row, c);
            let value = match cell.value {
                Some(featstore::Value::Float64(v)) => Some(v),
                _ => None,
            };
            expected.push((
                r.request_id.clone(),
                r.answer.candidates[row].clone(),
                value,
                cell.status.as_str().to_owned(),
            ));
        }
    }
    let mut got = Vec::new();
    for b in &batches {
        let ids = b
            .column_by_name("__request_id")
            .expect("request id")
            .as_string::<i32>();
        let products = b
            .column_by_name("product")
            .expect("product")
            .as_string::<i32>();
        let prices = b
            .column_by_name("products__product_price")
            .expect("price")
            .as_primitive::<Float64Type>();
        let feast = b
            .column_by_name("products__product_price__status")
            .expect("status")
            .as_primitive::<Int32Type>();
        let status = arrow_cast_status(
            b.column_by_name("products__product_price__featstore_status")
                .expect("status"),
        );
        for (i, status) in status.into_iter().enumerate() {
            let value = (!prices.is_null(i)).then(|| prices.value(i));
            got.push((
                ids.value(i).to_owned(),
                products.value(i).to_owned(),
                value,
                status,
            ));
            assert!((1..=4).contains(&feast.value(i)));
        }
        for name in ["__log_timestamp", "__log_date", "user", "users__user_age"] {
            assert!(b.column_by_name(name).is_some(), "no column {name}");
        }
    }
    assert_eq!(got, expected);
}

fn arrow_cast_status(array: &arrow_array::ArrayRef) -> Vec<String> {
    let dict = array.as_dictionary::<arrow_array::types::Int8Type>();
    let values = dict.values().as_string::<i32>();
    dict.keys()
        .iter()
        .map(|k| values.value(k.unwrap_or(0) as usize).to_owned())
        .collect()
}

#[test]
fn sampling_logs_exactly_the_requests_its_hash_keeps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let log_dir = dir.path().join("log");
    let log = ServeLog::start(&store, &config(0.3), &log_dir).expect("start");
    let ids: Vec<String> = (0..300).map(|_| generate()).collect();
    for id in &ids {
        store
            .rank_in(
                ReadContext {
                    request_id: Some(id),
                    route: "rank",
                    guard: None,
                },
                rank_request(false),
            )
            .expect("rank");
    }
    log.close();
    let (records, _) = read_all(&log_dir, &Selection::default()).expect("read");
    let logged: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    let kept: Vec<&str> = ids
        .iter()
        .filter(|id| Sampler::keep(id, 0.3))
        .map(String::as_str)
        .collect();
    assert_eq!(logged, kept);
    assert!(!kept.is_empty() && kept.len() < ids.len());
}

#[test]
fn a_full_queue_drops_and_counts_every_record_it_cannot_take() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let log_dir = dir.path().join("log");
    let tiny = ServeLogConfig {
        queue_capacity: 1,
        ..config(1.0)
    };
    let log = ServeLog::start(&store, &tiny, &log_dir).expect("start");
    let reads = 2_000u64;
    std::thread::scope(|s| {
        for t in 0..2 {
            let store = &store;
            s.spawn(move || {
                for i in 0..reads / 2 {
                    let id = format!("t{t}-{i}");
                    store
                        .rank_in(
                            ReadContext {
                                request_id: Some(&id),
                                route: "rank",
                                guard: None,
                            },
                            rank_request(false),
                        )
                        .expect("rank");
                }
            });
        }
    });
    let metrics = log.metrics().clone();
    log.close();
    let written = metrics.records_written.load(Ordering::Relaxed);
    let dropped = metrics.dropped(DropReason::QueueFull);
    assert_eq!(written + dropped, reads, "every read is written or counted");
    let (records, _) = read_all(&log_dir, &Selection::default()).expect("read");
    assert_eq!(records.len() as u64, written);
}

#[test]
fn a_torn_and_bit_flipped_file_loses_only_damaged_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let log_dir = dir.path().join("log");
    let small_blocks = ServeLogConfig {
        block_bytes: 2_000,
        ..config(1.0)
    };
    let log = ServeLog::start(&store, &small_blocks, &log_dir).expect("start");
    let mut served = Served::new();
    run(&store, dir.path(), &mut served, 0);
    log.close();
    let files = list_files(&log_dir).expect("files");
    let path = files.last().expect("a file");
    let mut bytes = std::fs::read(path).expect("read");
    // Cut into the end marker (a torn tail), and flip a bit inside some block.
    let len = bytes.len();
    bytes.truncate(len - 3);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(path, &bytes).expect("write");
    let (records, report) = read_all(&log_dir, &Selection::default()).expect("read");
    assert!(report.corruptions >= 1, "{report:?}");
    assert_eq!(report.torn_files, 1, "{report:?}");
    assert!(!records.is_empty() && records.len() < served.len());
    for r in &records {
        let (_, body) = served
            .iter()
            .find(|(id, _)| *id == r.request_id)
            .expect("a logged request");
        assert_eq!(&r.replay_json().expect("replay"), body);
    }
}

/// A `featstore serve` child, killed (SIGKILL) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &std::path::Path, config: &std::path::Path) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_featstore"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--store-config")
        .arg(config)
        .arg("--export-dir")
        .arg(data.parent().unwrap_or(data))
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn featstore serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("featstore serving on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let child = Child(child);
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("server did not report its address");
    (child, addr)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build()
        .into()
}

/// GETs with request ids from 4 threads until `stop`; the (id, body) of every 200.
fn get_load(base: &str, prefix: &str, stop: std::time::Instant) -> Served {
    let served = std::sync::Mutex::new(Served::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let served = &served;
            s.spawn(move || {
                let agent = agent();
                for i in 0.. {
                    if std::time::Instant::now() >= stop {
                        break;
                    }
                    let id = format!("{prefix}-{t}-{i}");
                    let url = format!(
                        "{base}/v1/features/item/i{}?names=item_a,item_label,item_b",
                        i % 60
                    );
                    let Ok(mut response) = agent.get(&url).header("x-request-id", &id).call()
                    else {
                        break;
                    };
                    assert_eq!(
                        response
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok()),
                        Some(id.as_str()),
                        "the request id comes back"
                    );
                    if response.status() == 200 {
                        let body = response.body_mut().read_to_vec().expect("body");
                        served.lock().expect("lock").push((id, body));
                    }
                }
            });
        }
    });
    served.into_inner().expect("lock")
}

#[test]
fn after_sigkill_the_log_holds_only_served_records_and_restarts_cleanly() {
    use super::common::{item_specs, write_items_csv};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("store");
    {
        let store = FeatureStore::open(&data, small_config()).expect("open");
        store.apply(item_specs()).expect("apply");
        let csv = write_items_csv(dir.path(), 1, 50);
        store
            .load(&LoadRequest::new("items", &csv), &|_| {})
            .expect("load");
    }
    let log_dir = dir.path().join("log");
    let config = dir.path().join("store.toml");
    std::fs::write(
        &config,
        format!(
            "[serving_log]\nenabled = true\nflush_interval_ms = 10\nblock_bytes = 4096\ndir = {:?}\n",
            log_dir.display().to_string()
        ),
    )
    .expect("config");

    // Heavy logging, then SIGKILL while the clients are still sending.
    let (mut child, base) = serve(&data, &config);
    let (status, _) = {
        let mut r = agent()
            .get(&format!("{base}/v1/features/item/i1?names=item_a"))
            .header("x-request-id", "not valid")
            .call()
            .expect("GET");
        (r.status().as_u16(), r.body_mut().read_to_string())
    };
    assert_eq!(status, 400, "a request id with a space is refused");
    let stop = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let killer = std::thread::spawn({
        let pid = child.0.id();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(1000));
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let first = get_load(&base, "a", stop);
    killer.join().expect("killer");
    let _ = child.0.wait();
    assert!(!first.is_empty());

    // A restart logs into a new file and closes it cleanly on SIGTERM.
    let (mut child, base) = serve(&data, &config);
    let second = get_load(
        &base,
        "b",
        std::time::Instant::now() + std::time::Duration::from_millis(300),
    );
    // The export job over HTTP sees at least the records of the first run.
    let out = dir.path().join("http-export");
    let job = serde_json::json!({ "out": out, "from": "0" }).to_string();
    let (status, body) = super::common::post(&format!("{base}/v1/serving-log/exports"), &job);
    assert_eq!(status, 200, "{body}");
    let summary = super::common::json(&body);
    assert!(summary["rows"].as_u64().unwrap_or(0) > 0, "{body}");
    assert!(out.read_dir().expect("export dir").next().is_some());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();

    let (records, report) = read_all(&log_dir, &Selection::default()).expect("read");
    assert_eq!(report.files, 2, "{report:?}");
    assert_eq!(
        report.corruptions, 0,
        "only a torn tail may be damaged: {report:?}"
    );
    assert_eq!(report.undecodable, 0);
    assert!(report.unclosed_files <= 1, "{report:?}");
    let served: std::collections::HashMap<&str, &Vec<u8>> = first
        .iter()
        .chain(&second)
        .map(|(id, body)| (id.as_str(), body))
        .collect();
    for r in &records {
        let body = served.get(r.request_id.as_str()).unwrap_or_else(|| {
            panic!("logged a request that was never answered: {}", r.request_id)
        });
        assert_eq!(&&r.replay_json().expect("replay"), body, "{}", r.request_id);
    }
    let logged_second = records
        .iter()
        .filter(|r| r.request_id.starts_with("b-"))
        .count();
    assert_eq!(
        logged_second,
        second.len(),
        "a clean shutdown logs every answered read"
    );
    let logged_first = records
        .iter()
        .filter(|r| r.request_id.starts_with("a-"))
        .count();
    assert!(logged_first > 0 && logged_first <= first.len());
}

#[test]
fn a_training_set_joins_labels_by_request_and_candidate_and_log_show_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(ranking_store(dir.path(), small_config()));
    let log_dir = dir.path().join("log");
    let log = ServeLog::start(&store, &config(1.0), &log_dir).expect("start");
    let mut served = Served::new();
    run(&store, dir.path(), &mut served, 0);
    log.close();
    // Clicks on p1 in the first two service reads, and one label for no served row.
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        "request_id,product,click\nr0-rank-0,p1,1\nr0-rank-2,p1,0\nr0-rank-2,p2,1\nnever,p1,1\n",
    )
    .expect("labels");
    let out = dir.path().join("train.parquet");
    let selection = Selection {
        service: Some("ranker_v3".into()),
        ..Selection::default()
    };
    let summary = featstore::servelog::export::training_set(
        &log_dir,
        &selection,
        &labels,
        &["request_id".to_owned(), "product".to_owned()],
        &out,
    )
    .expect("training set");
    assert_eq!(
        summary.rows,
        10 * 4,
        "every served (request, candidate) of the service"
    );
    assert_eq!(summary.labelled_rows, 3);
    assert_eq!(summary.unmatched_labels, 1);
    let file = std::fs::File::open(&out).expect("open");
    let batch = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .next()
        .expect("a batch")
        .expect("batch");
    let ids = batch
        .column_by_name("__request_id")
        .expect("ids")
        .as_string::<i32>();
    let products = batch
        .column_by_name("product")
        .expect("product")
        .as_string::<i32>();
    let clicks = batch
        .column_by_name("click")
        .expect("click")
        .as_primitive::<arrow_array::types::Int64Type>();
    let mut labelled = Vec::new();
    for i in 0..batch.num_rows() {
        if !clicks.is_null(i) {
            labelled.push((
                ids.value(i).to_owned(),
                products.value(i).to_owned(),
                clicks.value(i),
            ));
        }
    }
    labelled.sort();
    assert_eq!(
        labelled,
        vec![
            ("r0-rank-0".to_owned(), "p1".to_owned(), 1),
            ("r0-rank-2".to_owned(), "p1".to_owned(), 0),
            ("r0-rank-2".to_owned(), "p2".to_owned(), 1),
        ]
    );

    // `featstore log show` prints the bytes the client got.
    for (id, body) in served.iter().step_by(7) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_featstore"))
            .args(["log", "show", id, "--log-dir"])
            .arg(&log_dir)
            .output()
            .expect("featstore log show");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut expected = body.clone();
        expected.push(b'\n');
        assert_eq!(output.stdout, expected, "request {id}");
    }
}

/// A log written by format version 1 (columns inline in every record) reads back as
/// what its clients got: `tests/data/serving-log-v1` holds such a file and, per
/// request id, the body that was served.
#[test]
fn a_version_1_log_still_reads_back_exactly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/serving-log-v1");
    let served = std::fs::read_to_string(dir.join("served.tsv")).expect("served");
    let (records, report) = read_all(&dir, &Selection::default()).expect("read");
    assert_eq!(report.corruptions + report.undecodable, 0);
    let served: Vec<(&str, &str)> = served
        .lines()
        .map(|l| l.split_once('\t').expect("tab"))
        .collect();
    assert_eq!(records.len(), served.len());
    assert_eq!(records.len(), 40);
    for (record, (id, body)) in records.iter().zip(&served) {
        assert_eq!(record.request_id, *id);
        let replay = record.replay_json().expect("replay");
        assert_eq!(
            std::str::from_utf8(&replay).expect("utf8"),
            *body,
            "request {id}"
        );
    }
}
