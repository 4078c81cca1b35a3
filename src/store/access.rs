//! Access counts per entity type: which entities the ranking hosts read most, so the
//! nightly segment build can put the hottest ones in the memory-mapped hot segment.
//!
//! Thread-safety contract: [`AccessCounter::record`] is called on the read path and never
//! blocks: it samples one read in [`SAMPLE_EVERY`] (a thread-local countdown), and a
//! sampled read that finds its shard's lock taken is dropped rather than waited for.
//! Memory is bounded: each shard stops admitting new entities at its capacity (known
//! entities keep counting). Counts are persisted in the `meta` column family (see
//! storage-format.md, "Access counts") and halved when loaded, so yesterday's traffic
//! still counts today but fades.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use parking_lot::Mutex;

/// One read in this many is counted.
pub const SAMPLE_EVERY: u32 = 8;
const SHARDS: usize = 16;

thread_local! {
    static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
}

/// Sampled, bounded access counts of one entity type.
pub struct AccessCounter {
    shards: Vec<Mutex<HashMap<Box<[u8]>, u32>>>,
    capacity_per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for AccessCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCounter")
            .field("capacity_per_shard", &self.capacity_per_shard)
            .finish()
    }
}

impl AccessCounter {
    /// A counter remembering at most about `capacity` distinct entities.
    pub fn new(capacity: usize) -> Self {
        AccessCounter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            capacity_per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, entity_id: &[u8]) -> &Mutex<HashMap<Box<[u8]>, u32>> {
        let mut h = self.hasher.build_hasher();
        h.write(entity_id);
        let index = (h.finish() as usize) % SHARDS;
        &self.shards[index]
    }

    fn add(&self, entity_id: &[u8], count: u32, wait: bool) {
        let shard = self.shard(entity_id);
        let guard = if wait {
            Some(shard.lock())
        } else {
            shard.try_lock()
        };
        let Some(mut map) = guard else { return };
        if let Some(c) = map.get_mut(entity_id) {
            *c = c.saturating_add(count);
        } else if map.len() < self.capacity_per_shard {
            map.insert(entity_id.into(), count);
        }
    }

    /// Counts one read of `entity_id` (sampled; never blocks).
    pub fn record(&self, entity_id: &[u8]) {
        let sampled = COUNTDOWN.with(|c| {
            let left = c.get();
            if left == 0 {
                c.set(SAMPLE_EVERY - 1);
                true
            } else {
                c.set(left - 1);
                false
            }
        });
        if sampled {
            self.add(entity_id, 1, false);
        }
    }

    /// Adds `count` for `entity_id` (loading persisted counts; waits for the lock).
    pub fn add_count(&self, entity_id: &[u8], count: u32) {
        self.add(entity_id, count, true);
    }

    /// Forgets the counts of `entity_ids` (a per-entity deletion).
    pub fn forget(&self, entity_ids: &[Vec<u8>]) {
        for id in entity_ids {
            self.shard(id).lock().remove(id.as_slice());
        }
    }

    /// The `k` most-read entities, most-read first (ties by id, for determinism).
    pub fn top(&self, k: usize) -> Vec<(Vec<u8>, u32)> {
        let mut all: Vec<(Vec<u8>, u32)> = Vec::new();
        for shard in &self.shards {
            let map = shard.lock();
            all.extend(map.iter().map(|(id, c)| (id.to_vec(), *c)));
        }
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }
}

/// Encodes counts for the meta column family: repeated `count u32 LE, len u16 LE, id`.
pub fn encode_counts(counts: &[(Vec<u8>, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(counts.len() * 16);
    for (id, count) in counts {
        let Ok(len) = u16::try_from(id.len()) else {
            continue;
        };
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(id);
    }
    out
}

/// Decodes [`encode_counts`]; stops at the first truncated entry.
pub fn decode_counts(mut bytes: &[u8]) -> Vec<(Vec<u8>, u32)> {
    let mut out = Vec::new();
    while let (Some(count), Some(len)) = (bytes.get(0..4), bytes.get(4..6)) {
        let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let Some(id) = bytes.get(6..6 + len) else {
            break;
        };
        out.push((id.to_vec(), count));
        bytes = bytes.get(6 + len..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_hottest_entities_within_capacity() {
        let counter = AccessCounter::new(64);
        for i in 0..10u32 {
            counter.add_count(format!("e{i}").as_bytes(), i);
        }
        for _ in 0..SAMPLE_EVERY * 100 {
            counter.record(b"e0");
        }
        let top = counter.top(3);
        assert_eq!(top[0].0, b"e0".to_vec());
        assert_eq!(top[0].1, 100);
        assert_eq!(top[1].0, b"e9".to_vec());
        let bounded = AccessCounter::new(16);
        for i in 0..10_000u32 {
            bounded.add_count(&i.to_le_bytes(), 1);
        }
        assert!(bounded.top(usize::MAX).len() <= 16);
    }

    #[test]
    fn persisted_counts_round_trip() {
        let counts = vec![
            (b"p1".to_vec(), 7),
            (Vec::new(), 0),
            (b"xyz".to_vec(), u32::MAX),
        ];
        assert_eq!(decode_counts(&encode_counts(&counts)), counts);
        let encoded = encode_counts(&counts);
        let truncated = decode_counts(&encoded[..encoded.len() - 1]);
        assert_eq!(truncated.len(), 2);
    }
}
