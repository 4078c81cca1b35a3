//! Byte encodings of the stream column families (`stream.{group}`, `stream_events`):
//! tile keys and tile values of windowed aggregates, and event-id markers.
//!
//! A stream column family holds two kinds of keys, told apart by what follows the entity
//! key: 4 bytes (a feature id: the latest value, encoded as in [`super::value`]) or 12
//! bytes (a feature id and a tile start: one tile of a windowed aggregate). See
//! storage-format.md, "Stream column families".

// Tile starts are big-endian inside keys so that byte order equals time order.
#![expect(
    clippy::big_endian_bytes,
    reason = "RocksDB keys sort bytewise; big-endian keeps numeric order"
)]

use super::CodecError;
use super::key::{EntityKey, FEATURE_ID_LEN, entity_prefix_len};
use crate::types::{FeatureId, TimestampMs};

/// Bytes of a tile start inside a tile key.
pub const TILE_START_LEN: usize = size_of::<u64>();
/// Bytes of an encoded tile value.
pub const TILE_VALUE_LEN: usize = 32;

/// What a key of a stream column family names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKey {
    /// The latest value of a feature.
    Value(FeatureId),
    /// One tile of a windowed aggregate, starting at `start` (ms).
    Tile(FeatureId, TimestampMs),
}

/// Maps a signed time to an unsigned one with the same order (sign bit flipped).
fn order_preserving(t: TimestampMs) -> u64 {
    t.cast_unsigned() ^ (1 << 63)
}

fn from_order_preserving(u: u64) -> TimestampMs {
    (u ^ (1 << 63)).cast_signed()
}

/// The key of the tile of aggregate `feature` starting at `start`.
pub fn tile_key(entity: &EntityKey, feature: FeatureId, start: TimestampMs) -> Vec<u8> {
    let mut key = Vec::with_capacity(entity.as_bytes().len() + FEATURE_ID_LEN + TILE_START_LEN);
    key.extend_from_slice(entity.as_bytes());
    key.extend_from_slice(&feature.to_be_bytes());
    key.extend_from_slice(&order_preserving(start).to_be_bytes());
    key
}

/// Classifies a key of a stream column family.
pub fn decode_stream_key(key: &[u8]) -> Result<StreamKey, CodecError> {
    let prefix = entity_prefix_len(key).ok_or(CodecError::Truncated {
        what: "stream key entity prefix",
        needed: 2,
        have: key.len(),
    })?;
    let rest = key.get(prefix..).unwrap_or_default();
    let fid = |bytes: &[u8]| -> Result<FeatureId, CodecError> {
        let raw: [u8; FEATURE_ID_LEN] = bytes
            .get(..FEATURE_ID_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(CodecError::Truncated {
                what: "stream key feature id",
                needed: FEATURE_ID_LEN,
                have: bytes.len(),
            })?;
        Ok(FeatureId::from_be_bytes(raw))
    };
    match rest.len() {
        FEATURE_ID_LEN => Ok(StreamKey::Value(fid(rest)?)),
        n if n == FEATURE_ID_LEN + TILE_START_LEN => {
            let raw: [u8; TILE_START_LEN] = rest
                .get(FEATURE_ID_LEN..)
                .and_then(|b| b.try_into().ok())
                .ok_or(CodecError::Truncated {
                    what: "tile start",
                    needed: TILE_START_LEN,
                    have: n - FEATURE_ID_LEN,
                })?;
            Ok(StreamKey::Tile(
                fid(rest)?,
                from_order_preserving(u64::from_be_bytes(raw)),
            ))
        }
        n => Err(CodecError::Invalid {
            what: "stream key",
            detail: format!("{n} bytes follow the entity key, expected 4 or 12"),
        }),
    }
}

/// The partial aggregate of the events of one tile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    /// Events counted.
    pub count: u64,
    /// Sum of their values.
    pub sum: f64,
    /// Event time of the newest event (`i64::MIN` when `count` is 0).
    pub last_time: TimestampMs,
    /// Value of the newest event (on equal times, the larger value).
    pub last: f64,
}

impl Default for Tile {
    fn default() -> Self {
        Tile {
            count: 0,
            sum: 0.0,
            last_time: i64::MIN,
            last: 0.0,
        }
    }
}

impl Tile {
    /// Adds one event. Order-independent: counts and sums commute, and `last` is the
    /// maximum of `(event time, value)`.
    pub fn add(&mut self, value: f64, event_time: TimestampMs) {
        self.merge(&Tile {
            count: 1,
            sum: value,
            last_time: event_time,
            last: value,
        });
    }

    /// Combines another tile into this one (for a window spanning tiles).
    pub fn merge(&mut self, other: &Tile) {
        let was_empty = self.count == 0;
        self.count += other.count;
        self.sum += other.sum;
        let newer = other.last_time > self.last_time
            || (other.last_time == self.last_time && other.last.total_cmp(&self.last).is_gt());
        if other.count > 0 && (was_empty || newer) {
            self.last_time = other.last_time;
            self.last = other.last;
        }
    }

    /// `count ‖ sum ‖ last_time ‖ last`, little-endian, 32 bytes.
    pub fn encode(&self) -> [u8; TILE_VALUE_LEN] {
        let mut out = [0u8; TILE_VALUE_LEN];
        out[0..8].copy_from_slice(&self.count.to_le_bytes());
        out[8..16].copy_from_slice(&self.sum.to_le_bytes());
        out[16..24].copy_from_slice(&self.last_time.to_le_bytes());
        out[24..32].copy_from_slice(&self.last.to_le_bytes());
        out
    }

    /// Decodes [`Tile::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Tile, CodecError> {
        let raw: &[u8; TILE_VALUE_LEN] = bytes.try_into().map_err(|_| CodecError::Invalid {
            what: "tile value",
            detail: format!("{} bytes, expected {TILE_VALUE_LEN}", bytes.len()),
        })?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&raw[i * 8..i * 8 + 8]);
            w
        };
        Ok(Tile {
            count: u64::from_le_bytes(word(0)),
            sum: f64::from_le_bytes(word(1)),
            last_time: i64::from_le_bytes(word(2)),
            last: f64::from_le_bytes(word(3)),
        })
    }
}

/// The key of an event-id marker in `stream_events`:
/// `entity type length (u8) ‖ entity type ‖ entity key ‖ event id`.
pub fn event_marker_key(
    entity_type: &str,
    entity: &EntityKey,
    event_id: &str,
) -> Result<Vec<u8>, CodecError> {
    let len = u8::try_from(entity_type.len()).map_err(|_| CodecError::Invalid {
        what: "entity type",
        detail: format!("{} bytes, at most 255", entity_type.len()),
    })?;
    let mut key =
        Vec::with_capacity(1 + entity_type.len() + entity.as_bytes().len() + event_id.len());
    key.push(len);
    key.extend_from_slice(entity_type.as_bytes());
    key.extend_from_slice(entity.as_bytes());
    key.extend_from_slice(event_id.as_bytes());
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_storage_format_doc() {
        // storage-format.md, "Stream column families": entity `u7`, feature 5, tile 1000.
        let entity = EntityKey::new(b"u7").expect("valid");
        assert_eq!(
            tile_key(&entity, 5, 1000),
            [
                0, 2, b'u', b'7', 0, 0, 0, 5, 0x80, 0, 0, 0, 0, 0, 0x03, 0xe8
            ]
        );
        assert_eq!(
            decode_stream_key(&tile_key(&entity, 5, 1000)),
            Ok(StreamKey::Tile(5, 1000))
        );
        assert_eq!(
            decode_stream_key(&entity.feature_key(5)),
            Ok(StreamKey::Value(5))
        );
        assert!(decode_stream_key(&[0, 2, b'u', b'7', 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn tile_keys_sort_by_time(a: i64, b: i64) {
            let entity = EntityKey::new(b"e").expect("valid");
            prop_assert_eq!(tile_key(&entity, 1, a).cmp(&tile_key(&entity, 1, b)), a.cmp(&b));
            prop_assert_eq!(decode_stream_key(&tile_key(&entity, 1, a)), Ok(StreamKey::Tile(1, a)));
        }

        #[test]
        fn tiles_round_trip(count: u64, sum in -1e12f64..1e12, last_time: i64, last in -1e6f64..1e6) {
            let tile = Tile { count, sum, last_time, last };
            prop_assert_eq!(Tile::decode(&tile.encode()), Ok(tile));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_stream_key(&bytes);
            let _ = Tile::decode(&bytes);
        }
    }
}
