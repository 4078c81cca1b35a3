//! Stored keys: `entity key ‖ feature id`, so one entity's features are contiguous and a
//! prefix scan over the entity key returns them in feature-id order.
//!
//! Entity key: `u16` big-endian length, then the entity id's bytes. Feature id: `u32`
//! big-endian. Big-endian makes byte order equal numeric order, which RocksDB's bytewise
//! comparator relies on.
//!
//! In a group's versions column family (`versions.{group}`) every key starts with the
//! [`VersionPrefix`] of the batch version it belongs to: `u64` big-endian version ‖
//! entity key ‖ feature id, so each version is one contiguous key range that a drop
//! removes with one range deletion.

// Keys are big-endian by design: RocksDB compares keys bytewise, and big-endian makes
// byte order equal numeric order. This is the only place the project uses big-endian.
#![expect(
    clippy::big_endian_bytes,
    reason = "RocksDB keys sort bytewise; big-endian keeps numeric order"
)]

use super::CodecError;
use crate::types::FeatureId;

/// Longest entity id accepted, in bytes.
pub const MAX_ENTITY_ID_LEN: usize = 1024;
/// Bytes of the entity id length prefix.
pub const ENTITY_LEN_PREFIX: usize = size_of::<u16>();
/// Bytes of the feature id suffix.
pub const FEATURE_ID_LEN: usize = size_of::<u32>();

/// Bytes of the version prefix of keys in a versions column family.
pub const VERSION_PREFIX_LEN: usize = size_of::<u64>();

/// The key prefix of one batch version inside its group's versions column family, or
/// the empty prefix of a version stored in a column family of its own (layout 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionPrefix {
    bytes: [u8; VERSION_PREFIX_LEN],
    len: u8,
}

impl VersionPrefix {
    /// The prefix of `version`: its number, big-endian.
    pub fn of(version: u64) -> Self {
        VersionPrefix {
            bytes: version.to_be_bytes(),
            len: VERSION_PREFIX_LEN as u8,
        }
    }

    /// No prefix: the version owns its column family.
    pub fn none() -> Self {
        VersionPrefix {
            bytes: [0; VERSION_PREFIX_LEN],
            len: 0,
        }
    }

    /// The prefix bytes (empty for [`VersionPrefix::none`]).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The exclusive upper bound of the version's key range: the next version's prefix,
    /// or `None` for the empty prefix and for `u64::MAX`.
    pub fn upper_bound(&self) -> Option<[u8; VERSION_PREFIX_LEN]> {
        if self.len == 0 {
            return None;
        }
        let version = u64::from_be_bytes(self.bytes);
        version.checked_add(1).map(u64::to_be_bytes)
    }

    /// `key` without this prefix, or `None` if it does not start with it.
    pub fn strip<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        key.strip_prefix(self.as_bytes())
    }
}

/// The version of a key in a versions column family, or `None` if it is too short.
pub fn version_of_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; VERSION_PREFIX_LEN] = key.get(..VERSION_PREFIX_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Length of the version prefix plus entity key of a key in a versions column family,
/// or `None` if `key` is too short. The versions column families' prefix extractor.
pub fn versioned_entity_prefix_len(key: &[u8]) -> Option<usize> {
    let rest = key.get(VERSION_PREFIX_LEN..)?;
    entity_prefix_len(rest).map(|n| VERSION_PREFIX_LEN + n)
}

/// An encoded entity key (length prefix + id bytes), the common prefix of an entity's rows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey(Vec<u8>);

impl EntityKey {
    /// Encodes `entity_id`; fails if it is empty or longer than [`MAX_ENTITY_ID_LEN`].
    pub fn new(entity_id: &[u8]) -> Result<Self, CodecError> {
        let mut bytes = Vec::with_capacity(ENTITY_LEN_PREFIX + entity_id.len() + FEATURE_ID_LEN);
        encode_entity_into(entity_id, &mut bytes)?;
        Ok(EntityKey(bytes))
    }

    /// The encoded prefix.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The entity id, without its length prefix.
    pub fn id(&self) -> &[u8] {
        &self.0[ENTITY_LEN_PREFIX..]
    }

    /// The stored key of `feature` for this entity under a version prefix (see
    /// [`VersionPrefix`]; empty for a layout-1 column family).
    pub fn feature_key_under(&self, prefix: &[u8], feature: FeatureId) -> Vec<u8> {
        let mut key = Vec::with_capacity(prefix.len() + self.0.len() + FEATURE_ID_LEN);
        key.extend_from_slice(prefix);
        key.extend_from_slice(&self.0);
        key.extend_from_slice(&feature.to_be_bytes());
        key
    }

    /// The full stored key of `feature` for this entity.
    pub fn feature_key(&self, feature: FeatureId) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.0.len() + FEATURE_ID_LEN);
        key.extend_from_slice(&self.0);
        key.extend_from_slice(&feature.to_be_bytes());
        key
    }
}

/// Checks an entity id's length against the format's 1..=[`MAX_ENTITY_ID_LEN`].
fn check_entity_id(entity_id: &[u8]) -> Result<(), CodecError> {
    if entity_id.is_empty() || entity_id.len() > MAX_ENTITY_ID_LEN {
        return Err(CodecError::Invalid {
            what: "entity id",
            detail: format!(
                "length {} is outside 1..={MAX_ENTITY_ID_LEN} bytes",
                entity_id.len()
            ),
        });
    }
    Ok(())
}

/// Appends the entity key of `entity_id` to `out`.
pub fn encode_entity_into(entity_id: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    check_entity_id(entity_id)?;
    let len = u16::try_from(entity_id.len()).map_err(|_| CodecError::Invalid {
        what: "entity id",
        detail: "too long".into(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(entity_id);
    Ok(())
}

/// Appends the full stored key (entity key + feature id) to `out`.
pub fn encode_key_into(
    entity_id: &[u8],
    feature: FeatureId,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    encode_entity_into(entity_id, out)?;
    out.extend_from_slice(&feature.to_be_bytes());
    Ok(())
}

/// Length of the entity-key prefix of a stored key, or `None` if `key` is too short to
/// hold one. Used as RocksDB's prefix extractor.
pub fn entity_prefix_len(key: &[u8]) -> Option<usize> {
    let len_bytes: [u8; ENTITY_LEN_PREFIX] = key.get(..ENTITY_LEN_PREFIX)?.try_into().ok()?;
    let total = ENTITY_LEN_PREFIX + usize::from(u16::from_be_bytes(len_bytes));
    (key.len() >= total).then_some(total)
}

/// Splits a stored key into (entity id bytes, feature id).
pub fn decode_key(key: &[u8]) -> Result<(&[u8], FeatureId), CodecError> {
    let prefix = entity_prefix_len(key).ok_or(CodecError::Truncated {
        what: "key entity prefix",
        needed: ENTITY_LEN_PREFIX,
        have: key.len(),
    })?;
    let rest = key.get(prefix..).unwrap_or_default();
    let fid: [u8; FEATURE_ID_LEN] = rest.try_into().map_err(|_| CodecError::Invalid {
        what: "key feature id",
        detail: format!("{} bytes follow the entity key, expected 4", rest.len()),
    })?;
    let entity = key.get(ENTITY_LEN_PREFIX..prefix).unwrap_or_default();
    check_entity_id(entity)?;
    Ok((entity, FeatureId::from_be_bytes(fid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_storage_format_doc() {
        // storage-format.md, "Keys": 00 02 'u' '7' | 00 00 00 05
        let mut key = Vec::new();
        encode_key_into(b"u7", 5, &mut key).expect("valid");
        assert_eq!(key, [0, 2, b'u', b'7', 0, 0, 0, 5]);
        assert_eq!(entity_prefix_len(&key), Some(4));
    }

    #[test]
    fn rejects_empty_and_oversized_ids() {
        assert!(EntityKey::new(b"").is_err());
        assert!(EntityKey::new(&[b'x'; MAX_ENTITY_ID_LEN + 1]).is_err());
        assert!(EntityKey::new(&[b'x'; MAX_ENTITY_ID_LEN]).is_ok());
    }

    #[test]
    fn version_prefix_layout_matches_storage_format_doc() {
        // storage-format.md, "Keys": version 3 of a versions column family.
        let prefix = VersionPrefix::of(3);
        let mut key = prefix.as_bytes().to_vec();
        encode_key_into(b"u7", 5, &mut key).expect("valid");
        assert_eq!(key, [0, 0, 0, 0, 0, 0, 0, 3, 0, 2, b'u', b'7', 0, 0, 0, 5]);
        assert_eq!(versioned_entity_prefix_len(&key), Some(12));
        assert_eq!(version_of_key(&key), Some(3));
        assert_eq!(prefix.strip(&key), Some(&key[8..]));
        assert_eq!(prefix.upper_bound(), Some(4u64.to_be_bytes()));
        assert_eq!(VersionPrefix::of(u64::MAX).upper_bound(), None);
        assert_eq!(VersionPrefix::none().as_bytes(), b"");
        assert_eq!(VersionPrefix::none().strip(&key), Some(&key[..]));
    }

    proptest! {
        #[test]
        fn versions_are_contiguous_ranges(v in 0u64..u64::MAX, id in proptest::collection::vec(any::<u8>(), 1..16), fid: u32) {
            let mut key = VersionPrefix::of(v).as_bytes().to_vec();
            encode_key_into(&id, fid, &mut key).expect("valid");
            prop_assert!(key.as_slice() >= VersionPrefix::of(v).as_bytes());
            if let Some(upper) = VersionPrefix::of(v).upper_bound() {
                prop_assert!(key.as_slice() < &upper[..]);
            }
        }

        #[test]
        fn keys_round_trip(id in proptest::collection::vec(any::<u8>(), 1..64), fid: u32) {
            let mut key = Vec::new();
            encode_key_into(&id, fid, &mut key).expect("valid");
            let (got_id, got_fid) = decode_key(&key).expect("decodes");
            prop_assert_eq!(got_id, &id[..]);
            prop_assert_eq!(got_fid, fid);
        }

        #[test]
        fn same_entity_keys_sort_by_feature_id(id in proptest::collection::vec(any::<u8>(), 1..16), a: u32, b: u32) {
            let entity = EntityKey::new(&id).expect("valid");
            prop_assert_eq!(entity.feature_key(a).cmp(&entity.feature_key(b)), a.cmp(&b));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = decode_key(&bytes);
        }
    }
}
