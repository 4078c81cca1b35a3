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
    /// Waited in the runtime's queue longer than `max_queue_time` (503).
    QueueTime,
    /// No work slot free within `max_queue_time` (503).
    Concurrency,
    /// The caller's deadline passed before work could start (503).
    Deadline,
    /// No room in the request memory budget within `memory_wait` (503).
    Memory,
    /// The body did not arrive within `body_timeout` (408, connection closed).
    BodyTimeout,
    /// The body, or its decoded estimate, is too large ever to be accepted (413).
    BodyTooLarge,
    /// A request other than a health check on a connection beyond
    /// `max_connections` (503, connection closed).
    ConnectionLimit,
}

impl Refusal {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Refusal; 7] = [
        Refusal::QueueTime,
        Refusal::Concurrency,
        Refusal::Deadline,
        Refusal::Memory,
        Refusal::BodyTimeout,
        Refusal::BodyTooLarge,
        Refusal::ConnectionLimit,
    ];

    /// The answer's status.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::QueueTime
            | Refusal::Concurrency
            | Refusal::Deadline
            | Refusal::Memory
            | Refusal::ConnectionLimit => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// True when the answer closes the connection (`Connection: close`): a body is
    /// left unread, or the connection is one beyond the cap.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            Refusal::BodyTimeout | Refusal::BodyTooLarge | Refusal::ConnectionLimit
        )
    }

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueTime => "queue_time",
            Refusal::Concurrency => "concurrency",
            Refusal::Deadline => "deadline",
            Refusal::Memory => "memory",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::ConnectionLimit => "connection_limit",
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
