//! Bugs the crash test (`tools/crashtest`, issue 12) found, each turned into a plain test.

use featstore::store::options::EngineOptions;
use featstore::store::stream::EVENTS_CF;
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
