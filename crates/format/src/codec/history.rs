//! Byte encodings of the history column families (`history.{group}`): every value of a
//! group that was ever servable, from batch versions (changes only) and from pushes.
//!
//! Key: `entity key ‖ feature id ‖ kind u8 ‖ order`, where `kind` is
//! [`KIND_BATCH`] (`order` = `!version`, u64 big-endian: newest version first) or
//! [`KIND_STREAM`] (`order` = `!event time ‖ !write time`, each order-preserving u64
//! big-endian, inverted: newest event first, then latest write first). So one
//! (entity, feature)'s batch records precede its stream records, and a forward scan
//! meets each kind's newest record first.
//!
//! Value: `state u8 ‖ rest`. State [`STATE_VALUE`]: `rest` is the value in the stored
//! value encoding ([`super::value`]: tag, event time, payload). State [`STATE_ABSENT`]
//! (batch records only): `rest` is empty; the version no longer holds the feature for
//! that entity. Stream records also carry their write time in the key; batch records
//! take theirs from the version's record in `meta`. See storage-format.md, "History
//! column families".

#![expect(
    clippy::big_endian_bytes,
    reason = "RocksDB keys sort bytewise; big-endian keeps numeric order"
)]

use super::CodecError;
use super::key::{FEATURE_ID_LEN, entity_prefix_len};
use crate::types::{FeatureId, TimestampMs};

/// Kind byte of a batch record.
pub const KIND_BATCH: u8 = 0;
/// Kind byte of a stream record.
pub const KIND_STREAM: u8 = 1;
/// Bytes after the feature id in a batch record's key: kind + inverted version.
pub const BATCH_SUFFIX_LEN: usize = 1 + size_of::<u64>();
/// Bytes after the feature id in a stream record's key: kind + event time + write time.
pub const STREAM_SUFFIX_LEN: usize = 1 + 2 * size_of::<u64>();
/// State byte of a record holding a value.
pub const STATE_VALUE: u8 = 1;
/// State byte of a batch record saying the version holds no value.
pub const STATE_ABSENT: u8 = 0;

/// Maps a signed time to an unsigned one with the same order (sign bit flipped).
fn order_preserving(t: TimestampMs) -> u64 {
    t.cast_unsigned() ^ (1 << 63)
}

fn from_order_preserving(u: u64) -> TimestampMs {
    (u ^ (1 << 63)).cast_signed()
}

/// What a history key names, after its `entity key ‖ feature id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKind {
    /// A batch version's value (or absence).
    Batch {
        /// The version.
        version: u64,
    },
    /// A pushed value that became the latest.
    Stream {
        /// Its event time.
        event_time: TimestampMs,
        /// When it became readable.
        write_time: TimestampMs,
    },
}

/// `entity key ‖ feature id`: the prefix of every history record of that entity and
/// feature (`entity_key` already encoded, length prefix included).
pub fn feature_key_of(entity_key: &[u8], feature: FeatureId) -> Vec<u8> {
    let mut key = Vec::with_capacity(entity_key.len() + FEATURE_ID_LEN + STREAM_SUFFIX_LEN);
    key.extend_from_slice(entity_key);
    key.extend_from_slice(&feature.to_be_bytes());
    key
}

/// Appends the key of a batch record of `version` to `feature_key` (`entity key ‖
/// feature id`).
pub fn batch_key(feature_key: &[u8], version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(feature_key.len() + BATCH_SUFFIX_LEN);
    key.extend_from_slice(feature_key);
    key.push(KIND_BATCH);
    key.extend_from_slice(&(!version).to_be_bytes());
    key
}

/// Appends the key of a stream record to `feature_key` (`entity key ‖ feature id`).
pub fn stream_key(feature_key: &[u8], event_time: TimestampMs, write_time: TimestampMs) -> Vec<u8> {
    let mut key = Vec::with_capacity(feature_key.len() + STREAM_SUFFIX_LEN);
    key.extend_from_slice(feature_key);
    key.push(KIND_STREAM);
    key.extend_from_slice(&(!order_preserving(event_time)).to_be_bytes());
    key.extend_from_slice(&(!order_preserving(write_time)).to_be_bytes());
    key
}

/// Splits a history key into its `entity key ‖ feature id`, the feature id and what
/// the record is.
pub fn decode_history_key(key: &[u8]) -> Result<(&[u8], FeatureId, HistoryKind), CodecError> {
    let truncated = |needed| CodecError::Truncated {
        what: "history key",
        needed,
        have: key.len(),
    };
    let entity = entity_prefix_len(key).ok_or(truncated(2))?;
    let fk_len = entity + FEATURE_ID_LEN;
    let fid_bytes: [u8; FEATURE_ID_LEN] = key
        .get(entity..fk_len)
        .and_then(|b| b.try_into().ok())
        .ok_or(truncated(fk_len + 1))?;
    let feature_key = key.get(..fk_len).ok_or(truncated(fk_len))?;
    let u64_at = |at: usize| -> Result<u64, CodecError> {
        key.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or(truncated(at + 8))
    };
    let kind = match key.get(fk_len).copied() {
        Some(KIND_BATCH) if key.len() == fk_len + BATCH_SUFFIX_LEN => HistoryKind::Batch {
            version: !u64_at(fk_len + 1)?,
        },
        Some(KIND_STREAM) if key.len() == fk_len + STREAM_SUFFIX_LEN => HistoryKind::Stream {
            event_time: from_order_preserving(!u64_at(fk_len + 1)?),
            write_time: from_order_preserving(!u64_at(fk_len + 9)?),
        },
        Some(kind) => {
            return Err(CodecError::Invalid {
                what: "history key",
                detail: format!("kind {kind} with {} bytes", key.len()),
            });
        }
        None => return Err(truncated(fk_len + 1)),
    };
    Ok((feature_key, u32::from_be_bytes(fid_bytes), kind))
}

/// Appends a record value holding `encoded` (a stored value encoding) to `out`.
pub fn encode_present(encoded: &[u8], out: &mut Vec<u8>) {
    out.push(STATE_VALUE);
    out.extend_from_slice(encoded);
}

/// The value of an absence record.
pub const ABSENT_VALUE: &[u8] = &[STATE_ABSENT];

/// The stored value encoding a record holds, or `None` for an absence record.
pub fn decode_record(value: &[u8]) -> Result<Option<&[u8]>, CodecError> {
    match value.split_first() {
        Some((&STATE_VALUE, rest)) => Ok(Some(rest)),
        Some((&STATE_ABSENT, [])) => Ok(None),
        Some((state, rest)) => Err(CodecError::Invalid {
            what: "history record",
            detail: format!("state {state} with {} bytes", rest.len()),
        }),
        None => Err(CodecError::Truncated {
            what: "history record",
            needed: 1,
            have: 0,
        }),
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: none, the
/// prefix is all 0xff). Deleting `[prefix, successor)` removes every key under it.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != u8::MAX {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EntityKey;

    #[test]
    fn keys_round_trip_and_sort_newest_first() {
        let e = EntityKey::new(b"u1").expect("entity");
        let fk = e.feature_key(7);
        let v3 = batch_key(&fk, 3);
        let v9 = batch_key(&fk, 9);
        assert!(v9 < v3, "newer version first");
        assert_eq!(
            decode_history_key(&v3).expect("decode"),
            (&fk[..], 7, HistoryKind::Batch { version: 3 })
        );
        let s_old = stream_key(&fk, -5, 100);
        let s_new = stream_key(&fk, 10, 50);
        let s_new_later = stream_key(&fk, 10, 60);
        assert!(v3 < s_new_later && s_new_later < s_new && s_new < s_old);
        assert_eq!(
            decode_history_key(&s_old).expect("decode").2,
            HistoryKind::Stream {
                event_time: -5,
                write_time: 100
            }
        );
        // Another feature of the entity sorts after every record of this one.
        assert!(s_old < batch_key(&e.feature_key(8), u64::MAX));
        assert!(decode_history_key(&fk).is_err());
        assert!(decode_history_key(&v3[..v3.len() - 1]).is_err());
    }

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        encode_present(b"abc", &mut out);
        assert_eq!(decode_record(&out).expect("decode"), Some(&b"abc"[..]));
        assert_eq!(decode_record(ABSENT_VALUE).expect("decode"), None);
        assert!(decode_record(&[0, 1]).is_err());
        assert!(decode_record(&[]).is_err());
        assert!(decode_record(&[9]).is_err());
    }

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor(&[0, 2, 7]), Some(vec![0, 2, 8]));
        assert_eq!(prefix_successor(&[0, 0xff]), Some(vec![1]));
        assert_eq!(prefix_successor(&[0xff]), None);
    }
}
