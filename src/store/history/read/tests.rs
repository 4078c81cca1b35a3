//! The history's answers on hand-made records (the brute-force comparison over real
//! runs is in `tests/suite/history.rs`).

use super::*;
use crate::codec::value::encode_value;
use crate::store::history::{Activation, GroupHistory};
use crate::types::Value;

fn stored(v: i64, t: TimestampMs) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(&Value::Int64(v), t, &mut out);
    out
}

fn group(versions: &[u64], activations: &[(TimestampMs, u64)]) -> GroupHistory {
    GroupHistory {
        versions: versions.iter().map(|&v| (v, 0)).collect(),
        activations: activations
            .iter()
            .map(|&(at_ms, version)| Activation { at_ms, version })
            .collect(),
        retention_ms: i64::MAX,
    }
}

#[test]
fn as_of_follows_activations_rollbacks_and_writes() {
    // v1 holds 10@100; v2 drops it; v3 (never recorded: a failed load) holds 30.
    let h = KeyHistory {
        batch: vec![
            (3, Some(stored(30, 300))),
            (2, None),
            (1, Some(stored(10, 100))),
        ],
        stream: vec![(250, 2000, stored(25, 250)), (150, 1500, stored(15, 150))],
    };
    let g = group(&[1, 2], &[(1000, 1), (1200, 2), (1800, 1)]);
    assert_eq!(as_of(&g, &h, 999), None, "nothing served yet");
    assert_eq!(as_of(&g, &h, 1000), Some(&stored(10, 100)[..]));
    assert_eq!(as_of(&g, &h, 1200), None, "v2 dropped the value");
    assert_eq!(
        as_of(&g, &h, 1500),
        Some(&stored(15, 150)[..]),
        "pushed at 1500"
    );
    // Rolled back to v1 (100) while the push (150) is newer: the push wins.
    assert_eq!(as_of(&g, &h, 1800), Some(&stored(15, 150)[..]));
    assert_eq!(as_of(&g, &h, 2000), Some(&stored(25, 250)[..]));
}

#[test]
fn point_in_time_takes_the_newest_event_and_as_known_at_the_known() {
    let h = KeyHistory {
        // v2 is a backfill: older event time, served later.
        batch: vec![(2, Some(stored(20, 50))), (1, Some(stored(10, 100)))],
        stream: vec![(120, 5000, stored(12, 120))],
    };
    let g = group(&[1, 2], &[(1000, 1), (3000, 2)]);
    assert_eq!(point_in_time(&g, &h, 99, false), Some(&stored(20, 50)[..]));
    assert_eq!(
        point_in_time(&g, &h, 99, true),
        None,
        "at 99 nothing was known"
    );
    assert_eq!(
        point_in_time(&g, &h, 2000, true),
        Some(&stored(10, 100)[..])
    );
    assert_eq!(
        point_in_time(&g, &h, 130, false),
        Some(&stored(12, 120)[..])
    );
    assert_eq!(
        point_in_time(&g, &h, 4000, true),
        Some(&stored(10, 100)[..])
    );
    assert_eq!(
        point_in_time(&g, &h, 5000, true),
        Some(&stored(12, 120)[..])
    );
    assert_eq!(
        point_in_time(&g, &h, 49, false),
        None,
        "no value from the future"
    );
}
