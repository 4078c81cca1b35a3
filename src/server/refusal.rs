//! Why a request was refused without being served: the reasons every resource bound
//! of the server shares, each with its status and its `reason` label in
//! `featstore_http_refused_total` (see README, "Limits and load shedding").

use hyper::StatusCode;

/// Seconds a refused client is asked to wait (`Retry-After`) before retrying.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Why a request was refused without being served: the `reason` label of
/// `featstore_http_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No room in the request memory budget within `memory_wait` (503).
    Memory,
    /// The body, or its decoded estimate, is too large ever to be accepted (413).
    BodyTooLarge,
}

impl Refusal {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Refusal; 2] = [Refusal::Memory, Refusal::BodyTooLarge];

    /// The answer's status.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Memory => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// True when the answer closes the connection (`Connection: close`): a body is
    /// left unread.
    pub fn closes_connection(self) -> bool {
        matches!(self, Refusal::BodyTooLarge)
    }

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Memory => "memory",
            Refusal::BodyTooLarge => "body_too_large",
        }
    }
}

/// A refusal with its message (the status is in [`Refusal`]'s docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Refusal,
    /// For the client.
    pub message: String,
}
