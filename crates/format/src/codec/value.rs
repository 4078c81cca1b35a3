//! Stored values: `tag (1 byte) ‖ event time (i64 LE, ms) ‖ payload`.
//!
//! The tag makes each value self-describing, so a reader can reject bytes that do not
//! match the feature's registered dtype instead of misreading them.

use super::CodecError;
use crate::types::{TimestampMs, Value};

/// Value tags, as written in byte 0 of a stored value.
pub mod tag {
    /// Explicit null; empty payload.
    pub const NULL: u8 = 0;
    /// i64 LE, 8 bytes.
    pub const INT64: u8 = 1;
    /// f64 LE, 8 bytes.
    pub const FLOAT64: u8 = 2;
    /// f32 LE, 4 bytes.
    pub const FLOAT32: u8 = 3;
    /// One byte, 0 or 1.
    pub const BOOL: u8 = 4;
    /// UTF-8, the rest of the value.
    pub const STRING: u8 = 5;
    /// Raw bytes, the rest of the value.
    pub const BYTES: u8 = 6;
    /// f32 LE components, the rest of the value (a multiple of 4 bytes).
    pub const FLOAT32_VECTOR: u8 = 7;
}

/// The value tag of a non-null value of `dtype` (also the type tag of segment field
/// records and row schemas).
pub fn tag_of(dtype: crate::types::DType) -> u8 {
    use crate::types::DType;
    match dtype {
        DType::Int64 => tag::INT64,
        DType::Float64 => tag::FLOAT64,
        DType::Float32 => tag::FLOAT32,
        DType::Bool => tag::BOOL,
        DType::String => tag::STRING,
        DType::Bytes => tag::BYTES,
        DType::Float32Vector { .. } => tag::FLOAT32_VECTOR,
    }
}

/// The dtype a non-null value tag stands for (the inverse of [`tag_of`]); `dim` is the
/// vector dimension, used only for [`tag::FLOAT32_VECTOR`]. `None` for the null tag and
/// unknown tags.
pub fn dtype_of(tag: u8, dim: u32) -> Option<crate::types::DType> {
    use crate::types::DType;
    Some(match tag {
        tag::INT64 => DType::Int64,
        tag::FLOAT64 => DType::Float64,
        tag::FLOAT32 => DType::Float32,
        tag::BOOL => DType::Bool,
        tag::STRING => DType::String,
        tag::BYTES => DType::Bytes,
        tag::FLOAT32_VECTOR => DType::Float32Vector { dim },
        _ => return None,
    })
}

/// Offset of the event time within a stored value.
pub const EVENT_TIME_OFFSET: usize = size_of::<u8>();
/// Offset of the payload within a stored value.
pub const PAYLOAD_OFFSET: usize = EVENT_TIME_OFFSET + size_of::<i64>();

/// A decoded stored value with its event time.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue {
    /// When the fact was true, ms since the epoch.
    pub event_time: TimestampMs,
    /// The value.
    pub value: Value,
}

/// Appends the encoding of `value` at `event_time` to `out`.
pub fn encode_value(value: &Value, event_time: TimestampMs, out: &mut Vec<u8>) {
    let tag = match value {
        Value::Null => tag::NULL,
        Value::Int64(_) => tag::INT64,
        Value::Float64(_) => tag::FLOAT64,
        Value::Float32(_) => tag::FLOAT32,
        Value::Bool(_) => tag::BOOL,
        Value::String(_) => tag::STRING,
        Value::Bytes(_) => tag::BYTES,
        Value::Float32Vector(_) => tag::FLOAT32_VECTOR,
    };
    out.push(tag);
    out.extend_from_slice(&event_time.to_le_bytes());
    match value {
        Value::Null => {}
        Value::Int64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Float64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Float32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(v) => out.extend_from_slice(v.as_bytes()),
        Value::Bytes(v) => out.extend_from_slice(v),
        Value::Float32Vector(v) => {
            out.reserve(v.len() * 4);
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// Reads only the event time of a stored value.
pub fn decode_event_time(bytes: &[u8]) -> Result<TimestampMs, CodecError> {
    let raw: [u8; 8] = bytes
        .get(EVENT_TIME_OFFSET..PAYLOAD_OFFSET)
        .and_then(|b| b.try_into().ok())
        .ok_or(CodecError::Truncated {
            what: "value header",
            needed: PAYLOAD_OFFSET,
            have: bytes.len(),
        })?;
    Ok(i64::from_le_bytes(raw))
}

fn fixed<const N: usize>(payload: &[u8], what: &'static str) -> Result<[u8; N], CodecError> {
    payload.try_into().map_err(|_| CodecError::Invalid {
        what,
        detail: format!("payload is {} bytes, expected {N}", payload.len()),
    })
}

/// Decodes a stored value.
pub fn decode_value(bytes: &[u8]) -> Result<StoredValue, CodecError> {
    let event_time = decode_event_time(bytes)?;
    let tag = bytes.first().copied().unwrap_or(tag::NULL);
    let payload = bytes.get(PAYLOAD_OFFSET..).unwrap_or_default();
    let value = match tag {
        tag::NULL if payload.is_empty() => Value::Null,
        tag::NULL => {
            return Err(CodecError::Invalid {
                what: "null value",
                detail: format!("{} payload bytes, expected 0", payload.len()),
            });
        }
        tag::INT64 => Value::Int64(i64::from_le_bytes(fixed(payload, "int64 value")?)),
        tag::FLOAT64 => Value::Float64(f64::from_le_bytes(fixed(payload, "float64 value")?)),
        tag::FLOAT32 => Value::Float32(f32::from_le_bytes(fixed(payload, "float32 value")?)),
        tag::BOOL => match payload {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => {
                return Err(CodecError::Invalid {
                    what: "bool value",
                    detail: format!("payload {payload:?}, expected [0] or [1]"),
                });
            }
        },
        tag::STRING => Value::String(
            std::str::from_utf8(payload)
                .map_err(|e| CodecError::Invalid {
                    what: "string value",
                    detail: e.to_string(),
                })?
                .to_owned(),
        ),
        tag::BYTES => Value::Bytes(payload.to_vec()),
        tag::FLOAT32_VECTOR => {
            if payload.len() % 4 != 0 {
                return Err(CodecError::Invalid {
                    what: "float32 vector",
                    detail: format!("payload of {} bytes is not a multiple of 4", payload.len()),
                });
            }
            Value::Float32Vector(
                payload
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        other => return Err(CodecError::UnknownTag(other)),
    };
    Ok(StoredValue { event_time, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_storage_format_doc() {
        // storage-format.md, "Values": 03 | e8 03 00 00 00 00 00 00 | 00 00 c0 3f
        let mut out = Vec::new();
        encode_value(&Value::Float32(1.5), 1000, &mut out);
        assert_eq!(out, [3, 0xe8, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0x3f]);
        assert_eq!(PAYLOAD_OFFSET, 9);
    }

    #[test]
    fn rejects_malformed_values() {
        assert!(decode_value(&[]).is_err());
        assert!(decode_value(&[tag::INT64, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(decode_value(&[tag::BOOL, 0, 0, 0, 0, 0, 0, 0, 0, 2]).is_err());
        assert!(decode_value(&[99, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_value(&[tag::STRING, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]).is_err());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int64),
            any::<f64>()
                .prop_filter("NaN != NaN", |f| !f.is_nan())
                .prop_map(Value::Float64),
            any::<f32>()
                .prop_filter("NaN != NaN", |f| !f.is_nan())
                .prop_map(Value::Float32),
            any::<bool>().prop_map(Value::Bool),
            ".{0,40}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            proptest::collection::vec(-1e6f32..1e6, 0..40).prop_map(Value::Float32Vector),
        ]
    }

    proptest! {
        #[test]
        fn values_round_trip(value in any_value(), event_time: i64) {
            let mut out = Vec::new();
            encode_value(&value, event_time, &mut out);
            let decoded = decode_value(&out).expect("decodes");
            prop_assert_eq!(decoded.event_time, event_time);
            prop_assert_eq!(decoded.value, value);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_value(&bytes);
        }
    }
}
