//! The hash index: the hash function, slot packing, the writer's table build and the
//! probe both the reader's validation and `Segment::find` run.
//!
//! An index is `slot_count` u64 slots, `slot_count` a power of two at least twice the
//! entity count (load factor <= 0.5). A slot is 0 when empty, otherwise
//! `(hash >> 32) << 32 | (row + 1)`. An entity's home slot is `hash & (slot_count - 1)`;
//! linear probing moves to the next slot, wrapping.
//!
//! Invariants (the writer builds them, the reader checks them at open): every entity is
//! stored at most [`MAX_PROBE`]` - 1` slots after its home slot, with no empty slot in
//! between, and is the first slot on its probe path whose tag and key match. So a lookup
//! examines at most [`MAX_PROBE`] slots, and stops early at an empty slot.

use super::error::SegmentError;
use super::layout::{MAX_PROBE, SLOT_LEN, read_u64};

/// FNV-1a 64 offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// How many times the writer doubles a table whose probe paths are too long.
const MAX_GROWTHS: u32 = 3;

/// The index hash of an entity id: FNV-1a 64 over the bytes, then the splitmix64
/// finalizer (`storage-format.md`, "Hash function").
///
/// FNV-1a alone has weak low bits for short, similar ids (`user1`, `user2`); the
/// finalizer spreads every input bit over the low bits that pick the home slot and the
/// high bits kept as the tag.
#[inline]
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The tag of a hash: its high 32 bits.
#[inline]
fn tag(hash: u64) -> u64 {
    hash >> 32
}

/// The slot holding row `row` of an entity whose id hashes to `hash`.
#[inline]
fn pack(hash: u64, row: u32) -> u64 {
    (tag(hash) << 32) | (u64::from(row) + 1)
}

/// The row stored in an occupied slot, or `None` for an empty one.
#[inline]
pub(crate) fn slot_row(slot: u64) -> Option<u32> {
    // Low 32 bits: row + 1.
    let stored = (slot & 0xffff_ffff) as u32;
    stored.checked_sub(1)
}

/// The tag stored in a slot.
#[inline]
pub(crate) fn slot_tag(slot: u64) -> u64 {
    slot >> 32
}

/// Slots in a fresh table for `entities` entities: the smallest power of two at least
/// twice the count (and at least 1).
pub(crate) fn initial_slot_count(entities: usize) -> Option<usize> {
    entities.checked_mul(2)?.max(1).checked_next_power_of_two()
}

/// Builds the table for `entities` rows whose ids `key(row)` returns. Fails on a
/// duplicate id, or when probe paths stay longer than [`MAX_PROBE`] after growing the
/// table [`MAX_GROWTHS`] times.
pub(crate) fn build<'k>(
    entities: u32,
    key: impl Fn(u32) -> &'k [u8],
) -> Result<Vec<u64>, SegmentError> {
    let n = entities as usize;
    let mut slot_count = initial_slot_count(n).ok_or(SegmentError::IndexTooClustered {
        entities: u64::from(entities),
        max_probe: MAX_PROBE,
    })?;
    for _ in 0..=MAX_GROWTHS {
        if let Some(slots) = try_build(slot_count, entities, &key)? {
            return Ok(slots);
        }
        slot_count = slot_count.saturating_mul(2);
    }
    Err(SegmentError::IndexTooClustered {
        entities: u64::from(entities),
        max_probe: MAX_PROBE,
    })
}

/// One build attempt; `Ok(None)` when some entity lands [`MAX_PROBE`] or more slots
/// from home.
fn try_build<'k>(
    slot_count: usize,
    entities: u32,
    key: &impl Fn(u32) -> &'k [u8],
) -> Result<Option<Vec<u64>>, SegmentError> {
    let mask = slot_count - 1;
    let mut slots = vec![0u64; slot_count];
    for row in 0..entities {
        let id = key(row);
        let hash = hash64(id);
        let mut pos = (hash as usize) & mask;
        let mut placed = false;
        for _ in 0..MAX_PROBE {
            let Some(slot) = slots.get_mut(pos) else {
                break;
            };
            match slot_row(*slot) {
                None => {
                    *slot = pack(hash, row);
                    placed = true;
                    break;
                }
                Some(other) if slot_tag(*slot) == tag(hash) && key(other) == id => {
                    return Err(SegmentError::DuplicateEntity {
                        entity_id: id.to_vec(),
                        first: u64::from(other),
                        second: u64::from(row),
                    });
                }
                Some(_) => pos = (pos + 1) & mask,
            }
        }
        if !placed {
            return Ok(None);
        }
    }
    Ok(Some(slots))
}

/// Probes `index` (the index section's bytes, `mask + 1` slots) for an entity whose id
/// hashes to `hash`. `is_match(row)` compares the candidate row's id with the one sought;
/// it runs only for slots whose tag matches. Returns the first matching (slot, row).
#[inline]
pub(crate) fn probe(
    index: &[u8],
    mask: usize,
    hash: u64,
    mut is_match: impl FnMut(u32) -> bool,
) -> Option<(usize, u32)> {
    let want = tag(hash);
    let mut pos = (hash as usize) & mask;
    for _ in 0..MAX_PROBE {
        let slot = read_u64(index, pos.checked_mul(SLOT_LEN)?)?;
        let row = slot_row(slot)?;
        if slot_tag(slot) == want && is_match(row) {
            return Some((pos, row));
        }
        pos = pos.wrapping_add(1) & mask;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors quoted in `storage-format.md`, "Hash function".
    #[test]
    fn hash_matches_documented_vectors() {
        assert_eq!(hash64(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(hash64(b"u7"), 0xc12e_8662_d1e8_67b9);
    }

    #[test]
    fn slots_pack_tag_and_row() {
        let slot = pack(0xaabb_ccdd_1122_3344, 5);
        assert_eq!(slot, 0xaabb_ccdd_0000_0006);
        assert_eq!(slot_row(slot), Some(5));
        assert_eq!(slot_row(0), None);
        assert_eq!(initial_slot_count(0), Some(1));
        assert_eq!(initial_slot_count(3), Some(8));
        assert_eq!(initial_slot_count(4), Some(8));
    }

    #[test]
    fn build_then_probe_finds_every_row() {
        let ids: Vec<Vec<u8>> = (0..1000u32).map(|i| format!("e{i}").into_bytes()).collect();
        let slots = build(1000, |r| &ids[r as usize]).expect("builds");
        assert_eq!(slots.len(), 2048);
        let bytes: Vec<u8> = slots.iter().flat_map(|s| s.to_le_bytes()).collect();
        for (row, id) in ids.iter().enumerate() {
            let found = probe(&bytes, slots.len() - 1, hash64(id), |r| {
                ids[r as usize] == *id
            });
            assert_eq!(found.map(|(_, r)| r as usize), Some(row));
        }
        assert!(probe(&bytes, slots.len() - 1, hash64(b"absent"), |_| false).is_none());
    }

    #[test]
    fn build_rejects_duplicates() {
        let ids = [b"a".as_slice(), b"b", b"a"];
        let err = build(3, |r| ids[r as usize]).expect_err("duplicate");
        assert!(matches!(
            err,
            SegmentError::DuplicateEntity {
                first: 0,
                second: 2,
                ..
            }
        ));
    }
}
