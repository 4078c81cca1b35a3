//! Bugs the crash test (`tools/crashtest`, issue 12) found, each turned into a plain test.

use featstore::store::keyspace::EVENTS_CF;
use featstore::store::options::EngineOptions;
use featstore::types::now_ms;
use rocksdb::{ColumnFamilyDescriptor, DB};

/// Found with seed 1 after 8 kills: acknowledged event ids were forgotten after a
/// restart. The compaction filters read a retention table that the store installs only
/// after RocksDB has opened; a compaction that RocksDB started during the open (after
/// the flush of the recovered WAL) used the initial table, whose dedupe horizon was 0,
/// and removed every event-id marker. A replayed event was then accepted and counted
/// again. The initial table must remove nothing.
#[test]
fn event_id_markers_survive_a_compaction_before_the_registry_is_known() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EngineOptions::new(8 << 20, 8 << 20);
    let db = DB::open_cf_descriptors(
        &options.db(),
        dir.path(),
        [ColumnFamilyDescriptor::new(EVENTS_CF, options.events_cf())],
    )
    .expect("open");
    let cf = db.cf_handle(EVENTS_CF).expect("events family");
    let an_hour_ago = now_ms() - 3_600_000;
    for i in 0..4 {
        db.put_cf(&cf, format!("marker{i}"), an_hour_ago.to_le_bytes())
            .expect("put");
        db.flush_cf(&cf).expect("flush");
    }
    db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
    for i in 0..4 {
        assert!(
            db.get_cf(&cf, format!("marker{i}")).expect("get").is_some(),
            "marker{i} was removed by a compaction"
        );
    }
}

/// Found with seed 1 after 5 kills, under a failing WAL fsync (EIO): RocksDB refuses
/// every write after a failed sync with only "Seen error. Skip writing buffer.", and
/// the stream writer replaced its outage reason with each failed probe's error, so
/// `/readyz` and every refused push soon said only that; the fsync failure that caused
/// it was named nowhere. The first failure must stay the reason, later ones beside it.
#[test]
fn the_failure_that_stopped_writes_stays_the_reason_while_probes_fail() {
    use featstore::store::{PushEvent, StreamFault};
    use featstore::types::Value;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        featstore::FeatureStore::open(dir.path().join("store"), super::common::small_config())
            .expect("open");
    store
        .apply(
            featstore::registry::file::parse_features_toml(
                "[[feature]]\nname = \"stock\"\nentity_type = \"product\"\ngroup = \"live\"\nowner = \"t\"\ndtype = \"int64\"\n",
                "specs",
            )
            .expect("specs"),
        )
        .expect("apply");
    let event = |n: i64| PushEvent {
        entity_type: "product".into(),
        entity_id: format!("p{n}"),
        event_time: now_ms() - 1000,
        features: vec![("stock".into(), Value::Int64(n))],
        event_id: None,
    };
    store.inject_stream_fault(Some(StreamFault::Sync(
        "Input/output error (injected)".into(),
    )));
    let err = store.push(vec![event(1)]).expect_err("sync fails");
    assert!(err.to_string().contains("Input/output error"), "{err}");
    store.inject_stream_fault(Some(StreamFault::Sync(
        "Seen error. Skip writing buffer. (injected)".into(),
    )));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = store.stream_writer_health();
        if health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Seen error"))
        {
            assert!(
                health
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("Input/output error")),
                "{health:?}"
            );
            let described = health.describe();
            assert!(described.contains("Input/output error"), "{described}");
            assert!(described.contains("Seen error"), "{described}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed probe: {health:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = store.push(vec![event(2)]).expect_err("refused").to_string();
    assert!(refused.contains("Input/output error"), "{refused}");
    store.inject_stream_fault(None);
    while !store.stream_writer_health().healthy {
        assert!(Instant::now() < deadline, "the writer did not recover");
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = store.stream_writer_health();
    assert_eq!((health.reason, health.last_error), (None, None));
}
