//! The single-entity read answer (`GET /v1/features/{entity_type}/{entity_id}`), as a
//! client decodes it. The server writes it with [`super::json::encode_feature_vector`]
//! (the hot path, no intermediate tree); this type is its reading side.
//!
//! The JSON answer carries no dtypes, so a value stays a JSON value until the caller
//! names the feature's dtype ([`Reading::value_as`]): an integer-valued float and an
//! int64, or a hex bytes value and a string, look alike on the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::registry::defaults::parse_default;
use crate::types::{DType, FeatureStatus, TimestampMs, Value};

/// One requested feature of a read answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The name as requested (`name` or `name@version`).
    pub name: String,
    /// What was found.
    pub status: FeatureStatus,
    /// The value as JSON (`null` when the status carries none, and for non-finite
    /// floats).
    pub value: serde_json::Value,
    /// Event time of the stored value, when one was found.
    pub event_time: Option<TimestampMs>,
    /// Age of the stored value at read time, when one was found.
    pub age_ms: Option<i64>,
}

impl Reading {
    /// The value as a `dtype` value (JSON `null`: [`Value::Null`]), or why it is not
    /// one.
    pub fn value_as(&self, dtype: DType) -> Result<Value, String> {
        match &self.value {
            serde_json::Value::Null => Ok(Value::Null),
            literal => parse_default(literal, dtype),
        }
    }
}

/// Answer of `GET /v1/features/{entity_type}/{entity_id}?names=..`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureAnswer {
    /// Entity type of the request.
    pub entity_type: String,
    /// Entity id of the request.
    pub entity_id: String,
    /// One reading per requested name, in request order.
    pub features: Vec<Reading>,
    /// Batch version served for each group read.
    pub versions: BTreeMap<String, u64>,
}

impl FeatureAnswer {
    /// The reading of `name` as requested, if it was.
    pub fn get(&self, name: &str) -> Option<&Reading> {
        self.features.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::encode_feature_vector;
    use crate::store::{FeatureReading, FeatureVector};

    #[test]
    fn the_encoded_answer_decodes_to_what_was_read() {
        let values = [
            (DType::Int64, Value::Int64(i64::MIN)),
            (DType::Float64, Value::Float64(0.1)),
            (DType::Float32, Value::Float32(0.1)),
            (DType::Bool, Value::Bool(false)),
            (DType::String, Value::String("a\"b\n0a".into())),
            (DType::Bytes, Value::Bytes(vec![0x0a, 0xff])),
            (
                DType::Float32Vector { dim: 2 },
                Value::Float32Vector(vec![0.5, -2.25]),
            ),
        ];
        let mut features: Vec<FeatureReading> = values
            .iter()
            .enumerate()
            .map(|(i, (_, v))| FeatureReading {
                name: format!("f{i}").into(),
                status: FeatureStatus::Present,
                value: Some(v.clone()),
                event_time: Some(1_700_000_000_000),
                age_ms: Some(5),
            })
            .collect();
        features.push(FeatureReading {
            name: "missing@2".into(),
            status: FeatureStatus::NotFound,
            value: None,
            event_time: None,
            age_ms: None,
        });
        let vector = FeatureVector {
            entity_type: "product".into(),
            entity_id: "p/1".into(),
            features,
            versions: BTreeMap::from([("g".to_owned(), 3)]),
        };
        let bytes = encode_feature_vector(&vector).expect("encodes");
        let answer: FeatureAnswer = serde_json::from_slice(&bytes).expect("decodes");
        assert_eq!(answer.entity_id, "p/1");
        assert_eq!(answer.versions, vector.versions);
        for (i, (dtype, value)) in values.iter().enumerate() {
            let reading = answer.get(&format!("f{i}")).expect("asked");
            assert_eq!(reading.status, FeatureStatus::Present);
            assert_eq!(reading.value_as(*dtype).as_ref(), Ok(value), "{dtype}");
            assert_eq!(reading.event_time, Some(1_700_000_000_000));
        }
        let missing = answer.get("missing@2").expect("asked");
        assert_eq!(missing.status, FeatureStatus::NotFound);
        assert_eq!(missing.value_as(DType::Int64), Ok(Value::Null));
        assert_eq!(missing.age_ms, None);
        // Re-encoding the decoded answer gives the server's bytes back.
        assert_eq!(serde_json::to_vec(&answer).expect("encodes"), bytes);
    }
}
