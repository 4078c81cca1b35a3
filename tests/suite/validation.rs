//! Load-time validation: each rule holds back a crafted bad version (loaded, ready, not
//! activated) and lets good ones through; a forced activation is recorded; the
//! statistics and the verdicts are listed over HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use featstore::loader::{LoadError, LoadRequest};
use featstore::registry::file::parse_features_toml;
use featstore::store::StoreError;
use featstore::types::Value;
use featstore::validate::Level;
use featstore::{FeatureStore, LoadRecord};

use super::common::{TestServer, get, json, post, small_config};

const GOOD_ENTITIES: u64 = 2_000;

fn store(dir: &Path) -> FeatureStore {
    let config = featstore::StoreConfig {
        keep_versions: 20,
        ..small_config()
    };
    let store = FeatureStore::open(dir.join("store"), config).expect("open");
    let specs = parse_features_toml(
        r#"
        [[feature]]
        name = "score"
        entity_type = "item"
        group = "scores"
        owner = "tests"
        dtype = "float64"
        [feature.validation]
        min = 0.0
        max = 1000.0

        [[feature]]
        name = "clicks"
        entity_type = "item"
        group = "scores"
        owner = "tests"
        dtype = "int64"
        "#,
        "specs",
    )
    .expect("specs");
    store.apply(specs).expect("apply");
    store
}

/// xorshift64 in [0, 1).
fn uniform(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    ((*seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller).
fn normal(seed: &mut u64) -> f64 {
    let (u, v) = (uniform(seed), uniform(seed));
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// How a crafted version departs from the good ones.
#[derive(Clone, Copy)]
enum Shape {
    /// Normal, mean 100, std 10, 1% nulls.
    Good,
    /// 40% nulls.
    Nulls,
    /// Mean 103.
    ShiftedMean,
    /// One value of 5,000, above the declared max.
    OutOfRange,
    /// Two spikes at 90 and 110: the same mean and std, another distribution.
    Bimodal,
}

fn write_version(dir: &Path, name: &str, entities: u64, shape: Shape, seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}.csv"));
    let mut seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut text = String::from("entity_id,event_time,score,clicks\n");
    for n in 0..entities {
        let z = normal(&mut seed);
        let null_share = match shape {
            Shape::Nulls => 0.4,
            _ => 0.01,
        };
        let score = match shape {
            _ if uniform(&mut seed) < null_share => String::new(),
            Shape::ShiftedMean => format!("{}", 103.0 + 10.0 * z),
            Shape::OutOfRange if n == 7 => "5000".to_owned(),
            Shape::Bimodal => {
                if n % 2 == 0 {
                    "90".to_owned()
                } else {
                    "110".to_owned()
                }
            }
            _ => format!("{}", 100.0 + 10.0 * z),
        };
        let clicks = (uniform(&mut seed) * 50.0) as i64;
        text.push_str(&format!("i{n:05},1700000000000,{score},{clicks}\n"));
    }
    std::fs::write(&path, text).expect("write csv");
    path
}

fn load(store: &FeatureStore, path: PathBuf) -> Result<LoadRecord, StoreError> {
    store.load(&LoadRequest::new("scores", path), &|_| {})
}

/// The held record of a load that must fail its validation.
fn held(result: Result<LoadRecord, StoreError>) -> LoadRecord {
    match result {
        Err(StoreError::Load(LoadError::Held { record, .. })) => *record,
        other => panic!("expected a held version, got {other:?}"),
    }
}

fn failed_rules(record: &LoadRecord) -> Vec<(String, String)> {
    record
        .validation
        .as_ref()
        .expect("report")
        .findings
        .iter()
        .filter(|f| f.level == Level::Fail)
        .map(|f| (f.feature.clone(), f.rule.clone()))
        .collect()
}

fn active(store: &FeatureStore) -> Option<u64> {
    store.versions("scores").expect("versions").active
}

/// Three good versions: the history the bad ones are held against.
fn good_history(dir: &Path, store: &FeatureStore) {
    for v in 1..=3u64 {
        let path = write_version(dir, &format!("good{v}"), GOOD_ENTITIES, Shape::Good, v);
        let record = load(store, path).expect("a good version passes");
        let report = record.validation.as_ref().expect("report");
        assert!(report.passed, "{report:?}");
        assert!(record.activated);
        assert_eq!(active(store), Some(v));
    }
}

#[test]
fn each_rule_holds_back_its_bad_version_and_good_ones_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    good_history(dir.path(), &store);

    let cases: [(&str, u64, Shape, (&str, &str)); 5] = [
        (
            "nulls",
            GOOD_ENTITIES,
            Shape::Nulls,
            ("score", "null_rate_increase"),
        ),
        (
            "mean",
            GOOD_ENTITIES,
            Shape::ShiftedMean,
            ("score", "mean_z"),
        ),
        (
            "range",
            GOOD_ENTITIES,
            Shape::OutOfRange,
            ("score", "range_max"),
        ),
        (
            "half",
            GOOD_ENTITIES / 2 - 10,
            Shape::Good,
            ("*", "row_count"),
        ),
        ("bimodal", GOOD_ENTITIES, Shape::Bimodal, ("score", "psi")),
    ];
    let mut version = 3;
    for (name, entities, shape, (feature, rule)) in cases {
        version += 1;
        let path = write_version(dir.path(), name, entities, shape, 100 + version);
        let record = held(load(&store, path));
        assert_eq!(record.version, version);
        assert!(!record.activated);
        let failed = failed_rules(&record);
        assert!(
            failed.contains(&(feature.to_owned(), rule.to_owned())),
            "{name}: {failed:?}"
        );
        // Loaded and ready, but version 3 is still served.
        assert_eq!(active(&store), Some(3), "{name}");
        let listed = store.versions("scores").expect("versions");
        let entry = listed
            .versions
            .iter()
            .find(|v| v.version == version)
            .expect("listed");
        let report = entry
            .load
            .as_ref()
            .and_then(|l| l.validation.as_ref())
            .expect("listed report");
        assert!(!report.passed);
        let finding = report
            .findings
            .iter()
            .find(|f| f.rule == rule && f.feature == feature)
            .expect("finding listed");
        // The figures: what was measured, and the threshold it broke.
        assert_eq!(finding.level, Level::Fail);
        assert!(finding.value.is_finite() && finding.threshold.is_finite());
        assert_ne!(finding.value, finding.threshold, "{finding:?}");
        // A plain activation is refused; the figures are in the message.
        match store.activate("scores", version) {
            Err(StoreError::ValidationFailed { failures, .. }) => {
                assert!(failures.contains(rule), "{failures}")
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
    // The halved version also fails the feature-level row counts.
    let half = store.versions("scores").expect("versions").versions[6]
        .load
        .clone()
        .expect("record");
    assert!(failed_rules(&half).contains(&("score".to_owned(), "row_count".to_owned())));

    // The held versions are no baseline: a good version still passes against 1..3.
    let path = write_version(dir.path(), "good4", GOOD_ENTITIES, Shape::Good, 4);
    let record = load(&store, path).expect("good again");
    let report = record.validation.expect("report");
    assert!(report.passed, "{report:?}");
    assert_eq!(report.compared_with, [3, 2, 1]);
    assert_eq!(active(&store), Some(version + 1));
    let read = store
        .get_features("item", "i00001", &["clicks"])
        .expect("read");
    assert!(matches!(read.features[0].value, Some(Value::Int64(_))));
}

#[test]
fn a_forced_activation_is_recorded_and_makes_the_version_a_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    good_history(dir.path(), &store);
    let path = write_version(dir.path(), "mean", GOOD_ENTITIES, Shape::ShiftedMean, 9);
    let record = held(load(&store, path));
    assert!(matches!(
        store.activate_forced("scores", 4, "  ", "why"),
        Err(StoreError::ForceNeedsReason)
    ));
    store
        .activate_forced("scores", 4, "alice", "the upstream price fix is real")
        .expect("forced");
    assert_eq!(active(&store), Some(record.version));
    let listed = store.versions("scores").expect("versions");
    let forced = listed.versions[3]
        .load
        .as_ref()
        .and_then(|l| l.validation.as_ref())
        .and_then(|v| v.forced.clone())
        .expect("forced recorded");
    assert_eq!(forced.by, "alice");
    assert_eq!(forced.reason, "the upstream price fix is real");
    assert!(forced.at_ms > 0);
    // Its statistics are now a baseline: the next version is compared with it.
    assert!(store.version_stats("scores", 4).expect("stats").accepted);
    let path = write_version(dir.path(), "mean2", GOOD_ENTITIES, Shape::ShiftedMean, 10);
    let record = match load(&store, path) {
        Ok(record) => record,
        Err(StoreError::Load(LoadError::Held { record, .. })) => *record,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        record.validation.expect("report").compared_with.first(),
        Some(&4)
    );
}

#[test]
fn statistics_and_verdicts_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store(dir.path()));
    let server = TestServer::start_importing(store.clone(), dir.path());
    for v in 1..=3u64 {
        let path = write_version(
            dir.path(),
            &format!("good{v}"),
            GOOD_ENTITIES,
            Shape::Good,
            v,
        );
        let body = format!(r#"{{"input": {:?}}}"#, path.display().to_string());
        let (status, text) = post(&server.url("/v1/groups/scores/loads"), &body);
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = get(&server.url("/v1/groups/scores/versions/2/stats"));
    assert_eq!(status, 200, "{text}");
    let stats = json(&text);
    assert_eq!(stats["entities"], GOOD_ENTITIES);
    let score = &stats["features"]["score"];
    let mean = score["mean"].as_f64().expect("mean");
    assert!((mean - 100.0).abs() < 1.0, "{mean}");
    assert_eq!(score["quantiles"].as_array().map(Vec::len), Some(21));
    assert!(score["null_rate"].as_f64().expect("null rate") < 0.03);

    let path = write_version(dir.path(), "range", GOOD_ENTITIES, Shape::OutOfRange, 4);
    let body = format!(r#"{{"input": {:?}}}"#, path.display().to_string());
    let (status, text) = post(&server.url("/v1/groups/scores/loads"), &body);
    assert_eq!(status, 422, "{text}");
    let answer = json(&text);
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("range_max")
    );
    let findings = answer["load"]["validation"]["findings"]
        .as_array()
        .expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["rule"] == "range_max" && f["value"] == 5000.0)
    );

    let activate = server.url("/v1/groups/scores/versions/4/activate");
    let (status, text) = post(&activate, "");
    assert_eq!(status, 422, "{text}");
    let (status, text) = post(&activate, r#"{"force": true}"#);
    assert_eq!(status, 400, "{text}");
    let (status, text) = post(
        &activate,
        r#"{"force": true, "by": "bob", "reason": "known outlier"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (_, text) = get(&server.url("/v1/groups/scores/versions"));
    let listed = json(&text);
    assert_eq!(listed["active"], 4, "{listed}");
    let v4 = listed["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version"] == 4)
        .expect("v4")
        .clone();
    assert_eq!(v4["load"]["validation"]["forced"]["by"], "bob", "{v4}");
    let (status, _) = get(&server.url("/v1/groups/scores/versions/99/stats"));
    assert_eq!(status, 404);
}

#[test]
fn the_shadow_check_compares_the_entities_traffic_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let v1 = write_version(dir.path(), "good1", GOOD_ENTITIES, Shape::Good, 1);
    let record = load(&store, v1.clone()).expect("v1");
    assert!(
        record.validation.expect("report").shadow.is_none(),
        "nothing active to compare with"
    );
    // Live traffic reads 50 entities; one read in `SAMPLE_EVERY` (8) is counted, so
    // 8 reads in a row of each count it once.
    for n in 0..50 {
        for _ in 0..8 {
            store
                .get_features("item", &format!("i{n:05}"), &["score"])
                .expect("read");
        }
    }
    let record = load(&store, v1).expect("the same data again");
    let shadow = record
        .validation
        .expect("report")
        .shadow
        .expect("shadow check");
    assert_eq!((shadow.active_version, shadow.entities), (1, 50));
    assert_eq!(shadow.features.len(), 2);
    for f in &shadow.features {
        assert_eq!((f.compared, f.changed, f.appeared), (50, 0, 0), "{f:?}");
    }
    // The same draws, every score 3 higher (a third of its std): a changed share of
    // all non-null scores, clicks unchanged. The version is held (mean_z), and the
    // shadow check is part of its report.
    let shifted = write_version(dir.path(), "shifted", GOOD_ENTITIES, Shape::ShiftedMean, 1);
    let record = held(load(&store, shifted));
    let shadow = record
        .validation
        .expect("report")
        .shadow
        .expect("shadow check");
    assert_eq!(shadow.active_version, 2);
    let score = shadow
        .features
        .iter()
        .find(|f| f.feature == "score")
        .expect("score");
    assert!(score.changed >= 45, "{score:?}");
    assert!(score.changed_share > 0.9, "{score:?}");
    let shift = score.mean_shift.expect("mean shift");
    assert!((0.2..0.45).contains(&shift), "{score:?}");
    let clicks = shadow
        .features
        .iter()
        .find(|f| f.feature == "clicks")
        .expect("clicks");
    assert_eq!(clicks.changed, 0, "{clicks:?}");
}
