//! The data model shared by every layer: feature data types, values, timestamps and the
//! per-value read status.
//!
//! Nothing here knows about bytes on disk or HTTP; `codec` turns these into bytes and
//! `server` into JSON. Timestamps are milliseconds since the Unix epoch, UTC, everywhere.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch (UTC). Event times and write times use it.
pub type TimestampMs = i64;

/// Dense id the registry assigns to each (feature name, version); part of every stored key.
pub type FeatureId = u32;

/// Largest dimension accepted for a `float32_vector` feature.
pub const MAX_VECTOR_DIM: u32 = 65_536;

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

pub use crate::time::{TimestampError, parse_timestamp_ms};

/// The type of a feature's values, fixed per (feature, version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// Signed 64-bit integer.
    Int64,
    /// IEEE 754 double.
    Float64,
    /// IEEE 754 single.
    Float32,
    /// true / false.
    Bool,
    /// UTF-8 text.
    String,
    /// Opaque bytes (base64 in JSON).
    Bytes,
    /// Embedding of exactly `dim` float32 components.
    Float32Vector {
        /// Number of components, 1..=[`MAX_VECTOR_DIM`].
        dim: u32,
    },
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::Int64 => f.write_str("int64"),
            DType::Float64 => f.write_str("float64"),
            DType::Float32 => f.write_str("float32"),
            DType::Bool => f.write_str("bool"),
            DType::String => f.write_str("string"),
            DType::Bytes => f.write_str("bytes"),
            DType::Float32Vector { dim } => write!(f, "float32_vector[{dim}]"),
        }
    }
}

impl FromStr for DType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "int64" => Ok(DType::Int64),
            "float64" => Ok(DType::Float64),
            "float32" => Ok(DType::Float32),
            "bool" => Ok(DType::Bool),
            "string" => Ok(DType::String),
            "bytes" => Ok(DType::Bytes),
            other => {
                let dim = other
                    .strip_prefix("float32_vector[")
                    .and_then(|rest| rest.strip_suffix(']'))
                    .ok_or_else(|| {
                        format!(
                            "unknown dtype `{other}`: expected int64, float64, float32, bool, \
                             string, bytes or float32_vector[DIM]"
                        )
                    })?;
                let dim: u32 = dim
                    .parse()
                    .map_err(|_| format!("bad vector dimension in `{other}`"))?;
                if dim == 0 || dim > MAX_VECTOR_DIM {
                    return Err(format!(
                        "vector dimension {dim} is outside 1..={MAX_VECTOR_DIM}"
                    ));
                }
                Ok(DType::Float32Vector { dim })
            }
        }
    }
}

impl Serialize for DType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One feature value. `Null` is a value the source explicitly left empty.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Explicitly empty.
    Null,
    /// See [`DType::Int64`].
    Int64(i64),
    /// See [`DType::Float64`].
    Float64(f64),
    /// See [`DType::Float32`].
    Float32(f32),
    /// See [`DType::Bool`].
    Bool(bool),
    /// See [`DType::String`].
    String(String),
    /// See [`DType::Bytes`].
    Bytes(Vec<u8>),
    /// See [`DType::Float32Vector`].
    Float32Vector(Vec<f32>),
}

impl Value {
    /// True when this value may be stored for a feature of type `dtype` (nulls always may).
    pub fn matches(&self, dtype: DType) -> bool {
        match (self, dtype) {
            (Value::Null, _)
            | (Value::Int64(_), DType::Int64)
            | (Value::Float64(_), DType::Float64)
            | (Value::Float32(_), DType::Float32)
            | (Value::Bool(_), DType::Bool)
            | (Value::String(_), DType::String)
            | (Value::Bytes(_), DType::Bytes) => true,
            (Value::Float32Vector(v), DType::Float32Vector { dim }) => v.len() == dim as usize,
            _ => false,
        }
    }

    /// Parses the textual form of a value of type `dtype` (CSV cells, query strings).
    ///
    /// An empty cell is `Null`. A string is taken exactly as written, spaces included.
    /// Other types ignore surrounding whitespace (a blank cell is `Null`): a number has
    /// one meaning however it is padded. Vectors are written `[0.1, 0.2]` or `0.1 0.2`;
    /// bytes as hex. Floats must be finite or NaN; `inf` is accepted as written.
    pub fn parse_text(text: &str, dtype: DType) -> Result<Value, String> {
        if dtype == DType::String {
            return Ok(if text.is_empty() {
                Value::Null
            } else {
                Value::String(text.to_owned())
            });
        }
        let text = text.trim();
        if text.is_empty() {
            return Ok(Value::Null);
        }
        match dtype {
            DType::Int64 => text
                .parse()
                .map(Value::Int64)
                .map_err(|_| format!("`{text}` is not an int64")),
            DType::Float64 => text
                .parse()
                .map(Value::Float64)
                .map_err(|_| format!("`{text}` is not a float64")),
            DType::Float32 => text
                .parse()
                .map(Value::Float32)
                .map_err(|_| format!("`{text}` is not a float32")),
            DType::Bool => match text {
                "true" | "1" | "TRUE" | "True" => Ok(Value::Bool(true)),
                "false" | "0" | "FALSE" | "False" => Ok(Value::Bool(false)),
                _ => Err(format!("`{text}` is not a bool")),
            },
            DType::String => Ok(Value::String(text.to_owned())),
            DType::Bytes => decode_hex(text).map(Value::Bytes),
            DType::Float32Vector { dim } => {
                let inner = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .unwrap_or(text);
                let parts: Result<Vec<f32>, String> = inner
                    .split(|c: char| c == ',' || c.is_whitespace() || c == ';')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<f32>()
                            .map_err(|_| format!("vector component `{p}` is not a float32"))
                    })
                    .collect();
                let parts = parts?;
                if parts.len() != dim as usize {
                    return Err(format!(
                        "vector has {} components, the feature's dimension is {dim}",
                        parts.len()
                    ));
                }
                Ok(Value::Float32Vector(parts))
            }
        }
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err(format!("`{text}` is not hex: odd number of digits"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("`{text}` is not hex"))
        })
        .collect()
}

/// JSON form: null, number, bool, string, lowercase hex string for bytes, array for
/// vectors. Non-finite floats become null (JSON has no NaN).
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Int64(v) => s.serialize_i64(*v),
            Value::Float64(v) if v.is_finite() => s.serialize_f64(*v),
            Value::Float32(v) if v.is_finite() => s.serialize_f32(*v),
            Value::Float64(_) | Value::Float32(_) => s.serialize_none(),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(v) => s.collect_str(&HexBytes(v)),
            Value::Float32Vector(v) => {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    if x.is_finite() {
                        seq.serialize_element(x)?;
                    } else {
                        seq.serialize_element(&None::<f32>)?;
                    }
                }
                seq.end()
            }
        }
    }
}

struct HexBytes<'a>(&'a [u8]);

impl fmt::Display for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a read found for one feature. Every read path reports through this one enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureStatus {
    /// A value was found and is within its TTL.
    Present,
    /// The stored value is an explicit null.
    Null,
    /// Nothing is stored for this entity and feature in the active version.
    NotFound,
    /// A value is stored but is older than the feature's TTL; it is not returned.
    Expired,
    /// A value is returned but is older than the feature's freshness SLO.
    Stale,
    /// No usable value (not found, null, expired, or an on-demand feature's input
    /// missing): the definition's default is returned instead.
    Defaulted,
    /// The request's deadline passed before this value was fetched; no value.
    NotFetched,
}

impl FeatureStatus {
    /// The status name used in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureStatus::Present => "present",
            FeatureStatus::Null => "null",
            FeatureStatus::NotFound => "not_found",
            FeatureStatus::Expired => "expired",
            FeatureStatus::Stale => "stale",
            FeatureStatus::Defaulted => "defaulted",
            FeatureStatus::NotFetched => "not_fetched",
        }
    }
}

/// Serde helper: durations as humantime strings (`"7d"`, `"1h 30m"`) in files and JSON.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some(d)` as e.g. `"7days"`, `None` as null.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads `"7d"`, `"36h"`, `"90s"`...; rejects zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => {
                let parsed = humantime::parse_duration(&t).map_err(|e| {
                    serde::de::Error::custom(format!("bad duration `{t}`: {e} (try `7d`, `1h`)"))
                })?;
                if parsed.is_zero() {
                    return Err(serde::de::Error::custom(
                        "a duration of zero is not allowed",
                    ));
                }
                Ok(Some(parsed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_round_trips_through_text() {
        for dtype in [
            DType::Int64,
            DType::Float64,
            DType::Float32,
            DType::Bool,
            DType::String,
            DType::Bytes,
            DType::Float32Vector { dim: 16 },
        ] {
            assert_eq!(dtype.to_string().parse::<DType>(), Ok(dtype));
        }
        assert!("float32_vector[0]".parse::<DType>().is_err());
        assert!("float16".parse::<DType>().is_err());
    }

    #[test]
    fn text_values_parse_per_dtype() {
        assert_eq!(Value::parse_text("42", DType::Int64), Ok(Value::Int64(42)));
        assert_eq!(Value::parse_text("", DType::Int64), Ok(Value::Null));
        assert!(Value::parse_text("4.2", DType::Int64).is_err());
        assert_eq!(
            Value::parse_text("[1, 2.5]", DType::Float32Vector { dim: 2 }),
            Ok(Value::Float32Vector(vec![1.0, 2.5]))
        );
        assert!(Value::parse_text("[1]", DType::Float32Vector { dim: 2 }).is_err());
        assert_eq!(
            Value::parse_text("0a0B", DType::Bytes),
            Ok(Value::Bytes(vec![10, 11]))
        );
        assert!(Value::parse_text("0a0", DType::Bytes).is_err());
    }

    #[test]
    fn text_strings_are_exact_and_numbers_ignore_padding() {
        assert_eq!(
            Value::parse_text("  padded  ", DType::String),
            Ok(Value::String("  padded  ".into()))
        );
        assert_eq!(
            Value::parse_text(" ", DType::String),
            Ok(Value::String(" ".into()))
        );
        assert_eq!(Value::parse_text("", DType::String), Ok(Value::Null));
        assert_eq!(
            Value::parse_text(" 42 ", DType::Int64),
            Ok(Value::Int64(42))
        );
        assert_eq!(
            Value::parse_text("\t1.5 ", DType::Float64),
            Ok(Value::Float64(1.5))
        );
        assert_eq!(
            Value::parse_text(" true", DType::Bool),
            Ok(Value::Bool(true))
        );
        assert_eq!(Value::parse_text("   ", DType::Float32), Ok(Value::Null));
    }
}
