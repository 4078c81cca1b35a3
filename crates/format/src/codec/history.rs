//! Byte encodings of the history column families (`history.{group}`): every value of a
//! group that was ever servable, from batch versions (changes only) and from pushes.
//!
//! Record format 2 writes a batch version's changes as **row records**, one per changed
//! entity: key `entity key ‖ 00 00 00 00 ‖` [`KIND_ROW`] `‖ !version` (feature id 0,
//! which the registry never assigns, so an entity's row records sort before its
//! feature records), value [`ROW_FORMAT`] ‖ row time (i64 LE: the first value's event
//! time) then the changed features in ascending id order, each `id delta (LEB128) ‖ n
//! (LEB128) ‖ body`: `n = 0` an absence (no body); else `n = len << 1 | own`, with a
//! body of `len` bytes, the whole stored value encoding when `own` is 1, or its tag
//! and payload without the event time (which is the row time) when `own` is 0.
//! [`RowRecord`] reads one, [`RowRecordWriter`] writes one.
//!
//! Per-value records (format 1, still read; batch records are no longer written):
//! key `entity key ‖ feature id ‖ kind u8 ‖ order`, where `kind` is
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
use super::value::{EVENT_TIME_OFFSET, PAYLOAD_OFFSET};
use crate::types::{FeatureId, TimestampMs};

/// Kind byte of a batch record.
pub const KIND_BATCH: u8 = 0;
/// Kind byte of a stream record.
pub const KIND_STREAM: u8 = 1;
/// Kind byte of a row record (format 2): one batch version's changes to one entity.
pub const KIND_ROW: u8 = 2;
/// The feature id slot of a row record's key: 0, an id the registry never assigns.
pub const ROW_FEATURE_ID: FeatureId = 0;
/// Bytes after the entity key in a row record's key: feature id 0, kind, inverted
/// version.
pub const ROW_SUFFIX_LEN: usize = FEATURE_ID_LEN + 1 + size_of::<u64>();
/// First byte of a row record's value.
pub const ROW_FORMAT: u8 = 1;
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

/// `entity key ‖ 00 00 00 00 ‖ 02`: the prefix of every row record of an entity.
pub fn row_prefix(entity_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(entity_key.len() + ROW_SUFFIX_LEN);
    key.extend_from_slice(entity_key);
    key.extend_from_slice(&ROW_FEATURE_ID.to_be_bytes());
    key.push(KIND_ROW);
    key
}

/// The key of `version`'s row record of the entity `entity_key` (encoded, length
/// prefix included).
pub fn row_key(entity_key: &[u8], version: u64) -> Vec<u8> {
    let mut key = row_prefix(entity_key);
    key.extend_from_slice(&(!version).to_be_bytes());
    key
}

/// Splits a row record's key into its entity key and version; `None` when `key` is
/// not a row record's key (a per-value record's, or malformed).
pub fn decode_row_key(key: &[u8]) -> Option<(&[u8], u64)> {
    let entity = entity_prefix_len(key)?;
    if key.len() != entity + ROW_SUFFIX_LEN {
        return None;
    }
    let (entity_key, rest) = key.split_at(entity);
    let (fid, rest) = rest.split_at(FEATURE_ID_LEN);
    if fid != ROW_FEATURE_ID.to_be_bytes() || rest.first() != Some(&KIND_ROW) {
        return None;
    }
    let version: [u8; 8] = rest.get(1..)?.try_into().ok()?;
    Some((entity_key, !u64::from_be_bytes(version)))
}

fn put_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 varint of at most 10 bytes from the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Writes one row record's value, feature by feature in ascending id order.
#[derive(Debug, Default)]
pub struct RowRecordWriter {
    bytes: Vec<u8>,
    last: FeatureId,
    entries: usize,
    /// The record's row time, once a value set it.
    row_time: Option<TimestampMs>,
}

impl RowRecordWriter {
    /// Forgets the record being written.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.bytes.push(ROW_FORMAT);
        self.bytes.extend_from_slice(&0i64.to_le_bytes());
        self.last = ROW_FEATURE_ID;
        self.entries = 0;
        self.row_time = None;
    }

    /// Adds `feature`'s stored value (`None`: an absence). Ids must ascend and a
    /// stored value must hold at least its tag and event time; both are checked.
    pub fn push(&mut self, feature: FeatureId, value: Option<&[u8]>) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            self.clear();
        }
        if feature <= self.last {
            return Err(CodecError::Invalid {
                what: "row record",
                detail: format!("feature {feature} after {}", self.last),
            });
        }
        let time = match value {
            None => None,
            Some(value) => Some(
                value
                    .get(EVENT_TIME_OFFSET..PAYLOAD_OFFSET)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(i64::from_le_bytes)
                    .ok_or_else(|| CodecError::Invalid {
                        what: "row record",
                        detail: format!(
                            "feature {feature}: a stored value of {} bytes",
                            value.len()
                        ),
                    })?,
            ),
        };
        put_varint(u64::from(feature - self.last), &mut self.bytes);
        match (value, time) {
            (Some(value), Some(time)) => {
                let row_time = *self.row_time.get_or_insert_with(|| {
                    if let Some(slot) = self.bytes.get_mut(1..1 + 8) {
                        slot.copy_from_slice(&time.to_le_bytes());
                    }
                    time
                });
                if time == row_time {
                    // tag ‖ payload; the event time is the row time.
                    let tag = value.get(..EVENT_TIME_OFFSET).unwrap_or_default();
                    let payload = value.get(PAYLOAD_OFFSET..).unwrap_or_default();
                    put_varint(((tag.len() + payload.len()) as u64) << 1, &mut self.bytes);
                    self.bytes.extend_from_slice(tag);
                    self.bytes.extend_from_slice(payload);
                } else {
                    put_varint(((value.len() as u64) << 1) | 1, &mut self.bytes);
                    self.bytes.extend_from_slice(value);
                }
            }
            _ => put_varint(0, &mut self.bytes),
        }
        self.last = feature;
        self.entries += 1;
        Ok(())
    }

    /// Entries added since the last [`RowRecordWriter::clear`].
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The record's value.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Bytes before a row record's first entry: format and row time.
pub const ROW_HEADER_LEN: usize = 1 + size_of::<i64>();

/// A row record's value, checked whole by [`RowRecord::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRecord<'a> {
    row_time: TimestampMs,
    entries: &'a [u8],
}

/// One value of a row record: a stored value, maybe without its event time (then the
/// record's row time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowValue<'a> {
    row_time: TimestampMs,
    /// Whether `body` is the whole stored value (else tag ‖ payload).
    own_time: bool,
    body: &'a [u8],
}

impl RowValue<'_> {
    /// Appends the stored value encoding ([`super::value`]) to `out`.
    pub fn write_stored(&self, out: &mut Vec<u8>) {
        if self.own_time {
            out.extend_from_slice(self.body);
        } else {
            let (tag, payload) = self.body.split_at(EVENT_TIME_OFFSET.min(self.body.len()));
            out.extend_from_slice(tag);
            out.extend_from_slice(&self.row_time.to_le_bytes());
            out.extend_from_slice(payload);
        }
    }

    /// The stored value encoding.
    pub fn to_stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 8);
        self.write_stored(&mut out);
        out
    }
}

impl<'a> RowRecord<'a> {
    /// Checks `value` (format byte, row time, every entry's bounds and ascending ids).
    pub fn parse(value: &'a [u8]) -> Result<RowRecord<'a>, CodecError> {
        match value.split_first() {
            Some((&ROW_FORMAT, rest)) => {
                let time: [u8; 8] =
                    rest.get(..8)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(CodecError::Truncated {
                            what: "row record",
                            needed: ROW_HEADER_LEN,
                            have: value.len(),
                        })?;
                let record = RowRecord {
                    row_time: i64::from_le_bytes(time),
                    entries: rest.get(8..).unwrap_or_default(),
                };
                for entry in record.iter() {
                    entry?;
                }
                Ok(record)
            }
            Some((format, _)) => Err(CodecError::Invalid {
                what: "row record",
                detail: format!("format {format}"),
            }),
            None => Err(CodecError::Truncated {
                what: "row record",
                needed: ROW_HEADER_LEN,
                have: 0,
            }),
        }
    }

    /// The entries: `(feature id, value or None for an absence)`, ids ascending.
    pub fn iter(&self) -> RowEntries<'a> {
        RowEntries {
            rest: self.entries,
            last: ROW_FEATURE_ID,
            row_time: self.row_time,
        }
    }

    /// `feature`'s entry: `None` when the record does not name it, `Some(None)` for
    /// its absence.
    pub fn get(&self, feature: FeatureId) -> Option<Option<RowValue<'a>>> {
        for entry in self.iter() {
            let Ok((id, value)) = entry else { return None };
            if id == feature {
                return Some(value);
            }
            if id > feature {
                return None;
            }
        }
        None
    }
}

/// The entries of a [`RowRecord`].
#[derive(Debug, Clone)]
pub struct RowEntries<'a> {
    rest: &'a [u8],
    last: FeatureId,
    row_time: TimestampMs,
}

impl<'a> Iterator for RowEntries<'a> {
    type Item = Result<(FeatureId, Option<RowValue<'a>>), CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let bad = |detail: &str| CodecError::Invalid {
            what: "row record",
            detail: detail.to_owned(),
        };
        let mut rest = self.rest;
        let entry = (|| {
            let delta = take_varint(&mut rest).ok_or_else(|| bad("truncated feature id"))?;
            let id = u64::from(self.last)
                .checked_add(delta)
                .filter(|_| delta > 0)
                .and_then(|id| FeatureId::try_from(id).ok())
                .ok_or_else(|| bad("feature ids do not ascend"))?;
            let n = take_varint(&mut rest).ok_or_else(|| bad("truncated length"))?;
            if n == 0 {
                return Ok((id, None));
            }
            let own_time = n & 1 == 1;
            let len = usize::try_from(n >> 1)
                .ok()
                .filter(|&len| len <= rest.len())
                .ok_or_else(|| bad("value past the record's end"))?;
            let least = if own_time {
                PAYLOAD_OFFSET
            } else {
                EVENT_TIME_OFFSET
            };
            if len < least {
                return Err(bad("a value shorter than its tag and time"));
            }
            let (body, after) = rest.split_at(len);
            rest = after;
            Ok((
                id,
                Some(RowValue {
                    row_time: self.row_time,
                    own_time,
                    body,
                }),
            ))
        })();
        match entry {
            Ok((id, value)) => {
                self.rest = rest;
                self.last = id;
                Some(Ok((id, value)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
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
    fn row_records_round_trip_and_sort_before_the_entitys_feature_records() {
        let e = EntityKey::new(b"u7").expect("entity");
        let k3 = row_key(e.as_bytes(), 3);
        assert_eq!(decode_row_key(&k3), Some((e.as_bytes(), 3)));
        assert!(row_key(e.as_bytes(), 9) < k3, "newer version first");
        assert!(k3 < batch_key(&e.feature_key(1), u64::MAX));
        assert!(k3.starts_with(&row_prefix(e.as_bytes())));
        assert_eq!(decode_row_key(&batch_key(&e.feature_key(1), 3)), None);
        assert!(decode_history_key(&k3).is_err(), "not a per-value record");
        // The worked example of storage-format.md.
        assert_eq!(
            k3,
            [
                0, 2, b'u', b'7', 0, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc
            ]
        );

        let stored = |v: i64, t: TimestampMs| {
            let mut out = Vec::new();
            crate::codec::value::encode_value(&crate::types::Value::Int64(v), t, &mut out);
            out
        };
        let (a, b, c) = (stored(1, 100), stored(2, 100), stored(3, -7));
        let mut w = RowRecordWriter::default();
        w.clear();
        w.push(5, Some(&a)).expect("push");
        w.push(300, None).expect("push");
        w.push(301, Some(&b)).expect("push");
        w.push(302, Some(&c)).expect("push");
        assert_eq!(w.len(), 4);
        assert!(w.push(302, Some(&a)).is_err(), "ids ascend");
        assert!(
            w.push(400, Some(b"x")).is_err(),
            "a stored value has a time"
        );
        let bytes = w.bytes().to_vec();
        // Format, row time 100, then feature 5: delta 5, 9 bytes (tag ‖ payload) without
        // its time.
        assert_eq!(
            &bytes[..ROW_HEADER_LEN],
            &[ROW_FORMAT, 100, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            &bytes[ROW_HEADER_LEN..ROW_HEADER_LEN + 3],
            &[5, 9 << 1, a[0]]
        );
        let record = RowRecord::parse(&bytes).expect("parse");
        let entries: Vec<_> = record
            .iter()
            .map(|e| {
                e.map(|(id, v)| (id, v.map(|v| v.to_stored())))
                    .expect("entry")
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                (5, Some(a.clone())),
                (300, None),
                (301, Some(b)),
                (302, Some(c))
            ]
        );
        assert_eq!(record.get(300), Some(None));
        assert_eq!(record.get(5).flatten().map(|v| v.to_stored()), Some(a));
        assert_eq!(record.get(6), None);
        // Every truncation and a bad format are refused, never a panic.
        let ends = [ROW_HEADER_LEN, ROW_HEADER_LEN + 11, ROW_HEADER_LEN + 14];
        for end in 0..bytes.len() {
            let at_entry_end = ends.contains(&end) || end == ROW_HEADER_LEN + 25;
            assert_eq!(
                RowRecord::parse(&bytes[..end]).is_ok(),
                at_entry_end,
                "cut at {end}"
            );
        }
        assert!(RowRecord::parse(&bytes).is_ok());
        assert!(RowRecord::parse(&[9]).is_err());
        assert!(RowRecord::parse(&[]).is_err());
        let header = [ROW_FORMAT, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(
            RowRecord::parse(&[&header[..], &[0, 0]].concat()).is_err(),
            "delta 0"
        );
        assert!(
            RowRecord::parse(&[&header[..], &[1, 1, 0]].concat()).is_err(),
            "own time, too short"
        );
        assert_eq!(RowRecord::parse(&header).expect("empty").iter().count(), 0);
    }

    #[test]
    fn the_row_record_example_of_storage_format_md() {
        let stored = |v: f32, t: TimestampMs| {
            let mut out = Vec::new();
            crate::codec::value::encode_value(&crate::types::Value::Float32(v), t, &mut out);
            out
        };
        let mut w = RowRecordWriter::default();
        w.clear();
        w.push(5, Some(&stored(0.5, 1_764_600_000_000)))
            .expect("push");
        w.push(6, None).expect("push");
        w.push(9, Some(&stored(2.0, 1_764_500_000_000)))
            .expect("push");
        let expected: &[u8] = &[
            0x01, 0x00, 0x2e, 0x5b, 0xda, 0x9a, 0x01, 0x00, 0x00, 0x05, 0x0a, 0x03, 0x00, 0x00,
            0x00, 0x3f, 0x01, 0x00, 0x03, 0x1b, 0x03, 0x00, 0x4d, 0x65, 0xd4, 0x9a, 0x01, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x40,
        ];
        assert_eq!(w.bytes(), expected);
    }

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor(&[0, 2, 7]), Some(vec![0, 2, 8]));
        assert_eq!(prefix_successor(&[0, 0xff]), Some(vec![1]));
        assert_eq!(prefix_successor(&[0xff]), None);
    }
}
