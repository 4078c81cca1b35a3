//! Error bodies and the error of a request that does not parse.
//!
//! Every failed request is answered `{"error": "<message>"}` ([`ErrorBody`], encoded by
//! [`super::json::error_body`]), except a push refused for its events, answered
//! `{"error", "rejected": [{"index", "reason"}..]}` ([`PushErrorBody`]). The status
//! belongs to the server (its error-to-status mapping); a [`BadRequest`] from a parser
//! here is always a 400.

use serde::{Deserialize, Serialize};

use crate::store::stream::Rejection;

/// A request body, path parameter or query value that does not parse: answered 400
/// with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl BadRequest {
    /// A bad request with this message.
    pub fn new(message: impl Into<String>) -> Self {
        BadRequest(message.into())
    }
}

/// The body of every error answer: `{"error": "<message>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable reason, naming the offending thing.
    pub error: String,
}

/// One refused event of a push: its position in the request and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// Position of the event in the request, from 0.
    pub index: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The body of a failed push: `{"error", "rejected": [..]}`; `rejected` is empty
/// unless the push was refused for its events (then it lists every bad one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushErrorBody {
    /// What failed.
    pub error: String,
    /// Every refused event, in request order.
    pub rejected: Vec<RejectedEvent>,
}

/// Encodes a failed push's body straight from the store's rejections: a document tree
/// of a large refused push would cost several times the answer.
pub fn push_error_body(
    message: &str,
    rejected: &[Rejection],
) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        error: &'a str,
        rejected: Vec<RejectedRef<'a>>,
    }
    #[derive(Serialize)]
    struct RejectedRef<'a> {
        index: usize,
        reason: &'a str,
    }
    let body = Borrowed {
        error: message,
        rejected: rejected
            .iter()
            .map(|r| {
                let Rejection { index, reason } = r;
                RejectedRef {
                    index: *index,
                    reason,
                }
            })
            .collect(),
    };
    serde_json::to_vec(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_error_bodies_round_trip() {
        let rejected = vec![
            Rejection {
                index: 1,
                reason: "unknown feature `x`".into(),
            },
            Rejection {
                index: 4,
                reason: "bad \"value\"".into(),
            },
        ];
        let bytes = push_error_body("2 of 5 events rejected", &rejected).expect("encodes");
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf-8"),
            r#"{"error":"2 of 5 events rejected","rejected":[{"index":1,"reason":"unknown feature `x`"},{"index":4,"reason":"bad \"value\""}]}"#
        );
        let decoded: PushErrorBody = serde_json::from_slice(&bytes).expect("decodes");
        assert_eq!(decoded.rejected.len(), 2);
        assert_eq!(decoded.rejected[1].index, 4);
        assert_eq!(serde_json::to_vec(&decoded).expect("encodes"), bytes);
    }

    #[test]
    fn error_bodies_round_trip() {
        let bytes = super::super::json::error_body("no such group `g`");
        let decoded: ErrorBody = serde_json::from_slice(&bytes).expect("decodes");
        assert_eq!(decoded.error, "no such group `g`");
        assert_eq!(serde_json::to_vec(&decoded).expect("encodes"), bytes);
    }
}
