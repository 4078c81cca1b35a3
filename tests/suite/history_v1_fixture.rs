//! A data directory whose history was written in record format 1 (one batch record
//! per (entity, feature) value, before row records) still opens, answers every as-of
//! question as the store that wrote it answered live, and takes new loads on top
//! (recorded as row records against its format-1 history).
//!
//! The fixture, `tests/data/history-v1/`, was written by `write_history_v1_fixture`
//! below while the store still wrote format 1: two loads (the second changes a value,
//! drops one feature of an entity and a whole entity, adds one), a push, a rollback and
//! an activation, with a live read of every entity after each step; `answers.txt` holds
//! those live answers, one line per read: `time entity reading...`.

use std::path::Path;

use featstore::registry::file::parse_features_toml;
use featstore::store::AcceptAll;
use featstore::store::history::read::HistoryQuery;
use featstore::types::now_ms;
use featstore::{FeatureStore, LoadRequest, PushEvent, Value};

use super::common::small_config;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/history-v1");
const NAMES: [&str; 2] = ["a", "s"];
const ENTITIES: usize = 5;

fn specs() -> Vec<featstore::FeatureSpec> {
    parse_features_toml(
        r#"
        [[feature]]
        name = "a"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "float64"

        [[feature]]
        name = "s"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "string"
        "#,
        "history fixture specs",
    )
    .expect("specs")
}

fn reading(answer: featstore::query::EntityAnswer) -> String {
    answer
        .into_vector()
        .features
        .into_iter()
        .map(|f| format!("{:?}|{:?}|{:?}", f.status, f.value, f.event_time))
        .collect::<Vec<_>>()
        .join(" ")
}

fn wait_past(t: i64) {
    while now_ms() <= t {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

fn live_reads(store: &FeatureStore, out: &mut String) {
    wait_past(now_ms());
    for e in 0..ENTITIES {
        let answer = store
            .get_entity(
                "item",
                &format!("e{e}"),
                featstore::query::Names::List(&NAMES),
            )
            .expect("live read");
        let at = answer.now_ms();
        out.push_str(&format!("{at} e{e} {}\n", reading(answer)));
    }
    wait_past(now_ms());
}

fn load(store: &FeatureStore, dir: &Path, name: &str, csv: &str) -> u64 {
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, csv).expect("write csv");
    store
        .load_gated(&LoadRequest::new("items", &path), &AcceptAll, &|_| {})
        .expect("load")
        .version
}

/// Writes the fixture (run by hand with `--ignored`, with `FEATSTORE_WRITE_FIXTURE`
/// naming the output directory).
#[test]
#[ignore = "writes the fixture; run by hand"]
fn write_history_v1_fixture() {
    let Ok(out) = std::env::var("FEATSTORE_WRITE_FIXTURE") else {
        return;
    };
    let out = Path::new(&out);
    let scratch = tempfile::tempdir().expect("tempdir");
    let store = FeatureStore::open(out.join("store"), small_config()).expect("open");
    store.apply(specs()).expect("apply");
    let t0 = now_ms() - 10_000;
    let mut answers = String::new();
    let header = "entity_id,feature_name,event_time,value\n";
    let v1 = format!(
        "{header}e0,a,{t0},1.5\ne0,s,{t0},x0\ne1,a,{t0},2.5\ne1,s,{t0},x1\n\
         e2,a,{t0},3.5\ne2,s,{t0},x2\ne3,a,{t0},4.5\n"
    );
    load(&store, scratch.path(), "v1", &v1);
    live_reads(&store, &mut answers);
    let t1 = t0 + 1000;
    // e0.a changes, e1 stays, e2 loses s, e3 goes, e4 comes.
    let v2 = format!(
        "{header}e0,a,{t1},1.75\ne0,s,{t0},x0\ne1,a,{t0},2.5\ne1,s,{t0},x1\n\
         e2,a,{t0},3.5\ne4,a,{t1},6.5\ne4,s,{t1},y4\n"
    );
    load(&store, scratch.path(), "v2", &v2);
    live_reads(&store, &mut answers);
    store
        .push(vec![PushEvent {
            entity_type: "item".into(),
            entity_id: "e1".into(),
            event_time: t1 + 500,
            features: vec![("a".into(), Value::Float64(9.25))],
            event_id: None,
        }])
        .expect("push");
    live_reads(&store, &mut answers);
    store.rollback("items").expect("rollback");
    live_reads(&store, &mut answers);
    store.activate("items", 2).expect("activate");
    live_reads(&store, &mut answers);
    drop(store);
    std::fs::write(out.join("answers.txt"), answers).expect("write answers");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn as_of_reading(store: &FeatureStore, entity: &str, at: i64) -> String {
    reading(
        store
            .get_entity_as_of(
                "item",
                entity,
                featstore::query::Names::List(&NAMES),
                at,
                None,
            )
            .expect("as-of read"),
    )
}

#[test]
fn a_format_1_history_answers_as_it_was_served_and_takes_new_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(Path::new(FIXTURE), dir.path());
    let answers = std::fs::read_to_string(dir.path().join("answers.txt")).expect("answers");
    let store = FeatureStore::open(dir.path().join("store"), small_config()).expect("open");
    let recorded: Vec<(i64, String, String)> = answers
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let at = parts.next().and_then(|t| t.parse().ok()).expect("time");
            let entity = parts.next().expect("entity").to_owned();
            (at, entity, parts.next().expect("reading").to_owned())
        })
        .collect();
    assert_eq!(recorded.len(), 5 * ENTITIES, "five steps of reads");
    for (at, entity, expected) in &recorded {
        assert_eq!(
            &as_of_reading(&store, entity, *at),
            expected,
            "{entity} as of {at}"
        );
    }

    // A new version on top: its changes are recorded against the format-1 history,
    // and every earlier answer stays.
    let scratch = tempfile::tempdir().expect("tempdir");
    let t = now_ms() - 1000;
    let version = load(
        &store,
        scratch.path(),
        "v3",
        &format!(
            "entity_id,feature_name,event_time,value\ne0,a,{t},0.5\ne1,a,{t},2.5\ne3,s,{t},z3\n"
        ),
    );
    wait_past(now_ms());
    let now = now_ms();
    let mut after_load = Vec::new();
    for e in 0..ENTITIES {
        let live = store
            .get_entity(
                "item",
                &format!("e{e}"),
                featstore::query::Names::List(&NAMES),
            )
            .expect("live read");
        after_load.push((live.now_ms(), format!("e{e}"), reading(live)));
    }
    wait_past(now_ms());
    for (at, entity, expected) in recorded.iter().chain(&after_load) {
        assert_eq!(
            &as_of_reading(&store, entity, *at),
            expected,
            "{entity} as of {at}, after version {version} (read at {now})"
        );
    }
    // Point in time: e3 had only `a` in version 1 and nothing in version 2; version 3
    // gives it `s`.
    let pit = reading(
        store
            .get_entity_from_history(
                "item",
                "e3",
                featstore::query::Names::List(&NAMES),
                now_ms(),
                HistoryQuery::PointInTime { as_known_at: true },
                None,
            )
            .expect("point in time"),
    );
    assert!(pit.contains("4.5") && pit.contains("z3"), "{pit}");
}
