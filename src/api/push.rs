//! Streamed pushes (`POST /v1/push`): the body a client sends and the answer.
//!
//! The server parses the body in one pass with no document tree
//! (`store::stream::body`), typing each value by the feature's registered dtype; the
//! types here are the sending side, so a Rust client need not write the JSON by hand.
//! A refused push is answered with [`super::error::PushErrorBody`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::groups::EventTime;
use crate::store::PushOutcome;

/// One event of a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushEventBody {
    /// Entity type.
    pub entity_type: String,
    /// Entity id.
    pub entity_id: String,
    /// When the values were true: epoch ms (integer or text) or RFC 3339 text.
    pub event_time: EventTime,
    /// `name` or `name@version` to a JSON value of the feature's dtype (hex text for
    /// bytes, an array for a vector, `null` for an explicit null).
    pub features: BTreeMap<String, serde_json::Value>,
    /// Producer-assigned id: a second event with the same entity and id is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// Body of `POST /v1/push`: `{"events": [..]}`, applied all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushBody {
    /// The events, judged in order.
    pub events: Vec<PushEventBody>,
}

/// Answer of a push, sent once it is durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAnswer {
    /// Events applied (all events of the request, less `duplicates`).
    pub accepted: u64,
    /// Feature values ignored because the stored value is as new or newer.
    pub ignored_older: u64,
    /// Feature values that became the stored latest value.
    pub values_written: u64,
    /// Events skipped because their event id was seen before.
    pub duplicates: u64,
    /// Aggregate tiles updated.
    pub aggregate_updates: u64,
    /// Aggregate updates skipped because the event is older than the window allows.
    pub late_for_aggregates: u64,
}

impl From<PushOutcome> for PushAnswer {
    fn from(outcome: PushOutcome) -> Self {
        let PushOutcome {
            accepted,
            ignored_older,
            values_written,
            duplicates,
            aggregate_updates,
            late_for_aggregates,
        } = outcome;
        PushAnswer {
            accepted,
            ignored_older,
            values_written,
            duplicates,
            aggregate_updates,
            late_for_aggregates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_answers_encode_as_the_store_outcome_did() {
        let outcome = PushOutcome {
            accepted: 2,
            ignored_older: 1,
            values_written: 3,
            duplicates: 0,
            aggregate_updates: 4,
            late_for_aggregates: 5,
        };
        let before = serde_json::to_vec(&outcome).expect("encodes");
        assert_eq!(
            serde_json::to_vec(&PushAnswer::from(outcome)).expect("encodes"),
            before
        );
    }

    #[test]
    fn push_bodies_have_the_documented_shape() {
        let body = PushBody {
            events: vec![PushEventBody {
                entity_type: "user".into(),
                entity_id: "u1".into(),
                event_time: EventTime::Millis(1_763_780_000_000),
                features: BTreeMap::from([("user_click".to_owned(), serde_json::json!(1))]),
                event_id: Some("c-981".into()),
            }],
        };
        assert_eq!(
            serde_json::to_string(&body).expect("encodes"),
            r#"{"events":[{"entity_type":"user","entity_id":"u1","event_time":1763780000000,"features":{"user_click":1},"event_id":"c-981"}]}"#
        );
    }
}
