//! Candidates against `point_in_time` on random histories: the greatest-ordered
//! candidate visible at `ts` is what a training row at `ts` sees.

use proptest::prelude::*;

use super::*;
use crate::codec::value::encode_value;
use crate::store::history::Activation;
use crate::store::history::read::point_in_time;
use crate::types::Value;

fn stored(v: i64, t: TimestampMs) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(&Value::Int64(v), t, &mut out);
    out
}

/// The candidate a row at `ts` picks.
fn pick<'h>(cands: &[Servable<'h>], ts: TimestampMs, as_known_at: bool) -> Option<&'h [u8]> {
    cands
        .iter()
        .filter(|c| c.event_time <= ts && (!as_known_at || c.known_at <= ts))
        .max_by_key(|c| c.order())
        .map(|c| c.stored)
}

fn history_strategy() -> impl Strategy<Value = (GroupHistory, KeyHistory)> {
    (
        // Per version 1..=6: recorded?, record (None: no record; Some(None): absence).
        prop::collection::vec(
            (
                any::<bool>(),
                prop::option::of(prop::option::of((0i64..5, 0i64..40))),
            ),
            6,
        ),
        // Activations: (time step, version), in time order after sorting.
        prop::collection::vec((0i64..40, 1u64..=6), 0..8),
        // Pushes: (event time, write time, value).
        prop::collection::vec((0i64..40, 0i64..40, 0i64..5), 0..5),
    )
        .prop_map(|(versions, activations, pushes)| {
            let mut g = GroupHistory {
                retention_ms: i64::MAX,
                ..GroupHistory::default()
            };
            let mut h = KeyHistory::default();
            for (i, (recorded, record)) in versions.into_iter().enumerate() {
                let version = i as u64 + 1;
                if recorded || version == 1 {
                    g.versions.insert(version, 0);
                }
                if let Some(record) = record {
                    h.batch
                        .push((version, record.map(|(v, t)| stored(v * 100 + t, t))));
                }
            }
            h.batch.reverse();
            let mut activations = activations;
            activations.sort_by_key(|a| a.0);
            g.activations = activations
                .into_iter()
                .map(|(at_ms, version)| Activation { at_ms, version })
                .collect();
            let mut pushes = pushes;
            pushes.sort_by_key(|&(e, w, _)| (std::cmp::Reverse(e), std::cmp::Reverse(w)));
            pushes.dedup_by_key(|p| (p.0, p.1));
            h.stream = pushes
                .into_iter()
                .map(|(e, w, v)| (e, w, stored(1000 + v, e)))
                .collect();
            (g, h)
        })
}

proptest! {
    #[test]
    fn the_greatest_visible_candidate_is_what_point_in_time_answers(
        (g, h) in history_strategy()
    ) {
        let mut cands = Vec::new();
        servable(&g, &h, &mut cands);
        for ts in -1..45 {
            for as_known_at in [false, true] {
                prop_assert_eq!(
                    pick(&cands, ts, as_known_at),
                    point_in_time(&g, &h, ts, as_known_at),
                    "ts {} as_known_at {}", ts, as_known_at
                );
            }
        }
    }
}

#[test]
fn a_record_read_by_several_versions_is_one_candidate_known_from_the_first() {
    // v1 holds 10@5, v2 changes nothing (no record), v3 drops it; served v2 at 20
    // first, v1 at 30 (a rollback).
    let h = KeyHistory {
        batch: vec![(3, None), (1, Some(stored(10, 5)))],
        stream: vec![],
    };
    let g = GroupHistory {
        versions: [(1, 0), (2, 0), (3, 0)].into_iter().collect(),
        activations: vec![
            Activation {
                at_ms: 20,
                version: 2,
            },
            Activation {
                at_ms: 30,
                version: 1,
            },
            Activation {
                at_ms: 40,
                version: 3,
            },
        ],
        retention_ms: i64::MAX,
    };
    let mut cands = Vec::new();
    servable(&g, &h, &mut cands);
    assert_eq!(cands.len(), 1, "{cands:?}");
    assert_eq!(cands[0].known_at, 20);
    assert_eq!(cands[0].source, Source::Batch { version: 1 });
    assert_eq!(cands[0].event_time, 5);
}
