//! JSON encoding of responses, written straight into a byte buffer.
//!
//! The feature read response is the hot path: [`encode_feature_vector`] serializes a
//! [`FeatureVector`] through borrowing `Serialize` wrappers into one pre-sized
//! `Vec<u8>`, with no intermediate `serde_json::Value`.
//!
//! Value mapping:
//!
//! * `int64` -> JSON number (exact; clients parsing JSON numbers as doubles lose
//!   precision beyond 2^53).
//! * `float64`, `float32` -> JSON number; NaN and ±infinity have no JSON form and are
//!   written `null`, while the reading keeps its status (`present`).
//! * `bool` -> `true`/`false`; `string` -> JSON string.
//! * `bytes` -> lowercase hex string (`"0a0b"`), the same text form batch inputs use.
//! * `float32_vector` -> array of numbers (non-finite components as `null`).
//! * no value (`not_found`, `expired`, `null`) -> `null`.
//!
//! Stateless; safe from any thread.

use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use crate::store::{FeatureReading, FeatureVector};
use crate::types::Value;

/// Serializes a [`FeatureVector`] as the read response body.
pub struct FeatureVectorJson<'a>(pub &'a FeatureVector);

struct ReadingJson<'a>(&'a FeatureReading);

/// Serializes one [`Value`] per the mapping in the module docs.
pub struct ValueJson<'a>(pub &'a Value);

/// Writes bytes as lowercase hex through `collect_str`, without an intermediate string.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for FeatureVectorJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let vector = self.0;
        let mut out = serializer.serialize_struct("FeatureVector", 4)?;
        out.serialize_field("entity_type", &vector.entity_type)?;
        out.serialize_field("entity_id", &vector.entity_id)?;
        out.serialize_field("features", &Readings(&vector.features))?;
        out.serialize_field("versions", &vector.versions)?;
        out.end()
    }
}

struct Readings<'a>(&'a [FeatureReading]);

impl Serialize for Readings<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ReadingJson))
    }
}

impl Serialize for ReadingJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let reading = self.0;
        let mut out = serializer.serialize_struct("FeatureReading", 5)?;
        out.serialize_field("name", &*reading.name)?;
        out.serialize_field("status", reading.status.as_str())?;
        out.serialize_field("value", &reading.value.as_ref().map(ValueJson))?;
        out.serialize_field("event_time", &reading.event_time)?;
        out.serialize_field("age_ms", &reading.age_ms)?;
        out.end()
    }
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // serde_json writes non-finite floats as `null`.
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Int64(v) => serializer.serialize_i64(*v),
            Value::Float64(v) => serializer.serialize_f64(*v),
            Value::Float32(v) => serializer.serialize_f32(*v),
            Value::Bool(v) => serializer.serialize_bool(*v),
            Value::String(v) => serializer.serialize_str(v),
            Value::Bytes(v) => serializer.collect_str(&Hex(v)),
            Value::Float32Vector(v) => serializer.collect_seq(v.iter()),
        }
    }
}

/// A generous guess of the encoded size, so the buffer rarely grows.
fn estimated_len(vector: &FeatureVector) -> usize {
    let values: usize = vector
        .features
        .iter()
        .map(|r| {
            let value = match &r.value {
                Some(Value::String(s)) => s.len() + 8,
                Some(Value::Bytes(b)) => 2 * b.len() + 2,
                Some(Value::Float32Vector(v)) => 16 * v.len() + 2,
                _ => 24,
            };
            r.name.len() + value + 80
        })
        .sum();
    let versions: usize = vector.versions.keys().map(|g| g.len() + 24).sum();
    96 + vector.entity_type.len() + vector.entity_id.len() + values + versions
}

/// Encodes the read response for `vector`:
/// `{"entity_type","entity_id","features":[{"name","status","value","event_time","age_ms"}..],"versions":{group: version}}`.
pub fn encode_feature_vector(vector: &FeatureVector) -> Result<Vec<u8>, serde_json::Error> {
    let mut buf = Vec::with_capacity(estimated_len(vector));
    serde_json::to_writer(&mut buf, &FeatureVectorJson(vector))?;
    Ok(buf)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// Encodes `{"error": message}`.
pub fn error_body(message: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(message.len() + 16);
    if serde_json::to_writer(&mut buf, &ErrorBody { error: message }).is_err() {
        // Serializing a struct of one string into a Vec cannot fail; stay valid JSON anyway.
        buf = br#"{"error":"internal error"}"#.to_vec();
    }
    buf
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::types::FeatureStatus;

    fn reading(name: &str, status: FeatureStatus, value: Option<Value>) -> FeatureReading {
        let event_time = match status {
            FeatureStatus::NotFound => None,
            _ => Some(1_763_700_000_000),
        };
        FeatureReading {
            name: name.into(),
            status,
            value,
            event_time,
            age_ms: event_time.map(|_| 5),
        }
    }

    fn vector(features: Vec<FeatureReading>) -> FeatureVector {
        FeatureVector {
            entity_type: "product".to_owned(),
            entity_id: "p1".to_owned(),
            features,
            versions: BTreeMap::from([("product_daily".to_owned(), 3)]),
        }
    }

    fn encode(v: &FeatureVector) -> String {
        String::from_utf8(encode_feature_vector(v).expect("encodes")).expect("utf-8")
    }

    #[test]
    fn read_response_has_the_documented_shape() {
        let v = vector(vec![
            reading("a", FeatureStatus::Present, Some(Value::Float64(1.5))),
            reading("b", FeatureStatus::NotFound, None),
        ]);
        assert_eq!(
            encode(&v),
            r#"{"entity_type":"product","entity_id":"p1","features":[{"name":"a","status":"present","value":1.5,"event_time":1763700000000,"age_ms":5},{"name":"b","status":"not_found","value":null,"event_time":null,"age_ms":null}],"versions":{"product_daily":3}}"#
        );
    }

    #[test]
    fn every_value_type_maps_to_json() {
        let v = vector(vec![
            reading("i", FeatureStatus::Present, Some(Value::Int64(i64::MIN))),
            reading("f32", FeatureStatus::Present, Some(Value::Float32(0.1))),
            reading("t", FeatureStatus::Present, Some(Value::Bool(true))),
            reading(
                "s",
                FeatureStatus::Present,
                Some(Value::String("a\"b\n".into())),
            ),
            reading(
                "by",
                FeatureStatus::Present,
                Some(Value::Bytes(vec![0x0a, 0xff, 0x00])),
            ),
            reading(
                "vec",
                FeatureStatus::Present,
                Some(Value::Float32Vector(vec![0.5, -2.0, f32::NAN])),
            ),
            reading("e", FeatureStatus::Expired, None),
            reading("n", FeatureStatus::Null, None),
        ]);
        let parsed: serde_json::Value = serde_json::from_str(&encode(&v)).expect("valid JSON");
        let features = &parsed["features"];
        assert_eq!(features[0]["value"], serde_json::json!(i64::MIN));
        assert_eq!(features[1]["value"].to_string(), "0.1");
        assert_eq!(features[2]["value"], serde_json::json!(true));
        assert_eq!(features[3]["value"], serde_json::json!("a\"b\n"));
        assert_eq!(features[4]["value"], serde_json::json!("0aff00"));
        assert_eq!(features[5]["value"], serde_json::json!([0.5, -2.0, null]));
        assert_eq!(features[6]["status"], serde_json::json!("expired"));
        assert_eq!(features[6]["value"], serde_json::Value::Null);
        assert_eq!(
            features[6]["event_time"],
            serde_json::json!(1_763_700_000_000_i64)
        );
        assert_eq!(features[7]["status"], serde_json::json!("null"));
        assert_eq!(features[7]["value"], serde_json::Value::Null);
    }

    #[test]
    fn non_finite_floats_are_null_and_keep_their_status() {
        let v = vector(vec![
            reading(
                "nan",
                FeatureStatus::Present,
                Some(Value::Float64(f64::NAN)),
            ),
            reading(
                "inf",
                FeatureStatus::Present,
                Some(Value::Float32(f32::INFINITY)),
            ),
            reading(
                "ninf",
                FeatureStatus::Present,
                Some(Value::Float64(f64::NEG_INFINITY)),
            ),
        ]);
        let parsed: serde_json::Value = serde_json::from_str(&encode(&v)).expect("valid JSON");
        for i in 0..3 {
            assert_eq!(parsed["features"][i]["status"], "present");
            assert_eq!(parsed["features"][i]["value"], serde_json::Value::Null);
        }
    }

    #[test]
    fn empty_vector_and_order_are_kept() {
        let mut v = vector(vec![]);
        v.versions.clear();
        assert_eq!(
            encode(&v),
            r#"{"entity_type":"product","entity_id":"p1","features":[],"versions":{}}"#
        );
        let v = vector(vec![
            reading("z", FeatureStatus::NotFound, None),
            reading("a", FeatureStatus::NotFound, None),
        ]);
        let text = encode(&v);
        let z = text.find(r#""name":"z""#).expect("z");
        let a = text.find(r#""name":"a""#).expect("a");
        assert!(z < a, "{text}");
    }

    #[test]
    fn error_bodies_are_escaped() {
        assert_eq!(
            error_body("unknown feature `a\"b`"),
            br#"{"error":"unknown feature `a\"b`"}"#.to_vec()
        );
    }
}
