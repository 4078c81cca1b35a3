//! Request ids: taken from a client's `X-Request-Id` when it is valid, generated
//! otherwise, and returned in the response so that a ranking host can join labels to
//! what was served.
//!
//! A generated id is 32 lower-case hex digits: 12 of the millisecond clock, 8 of a
//! per-process random tag, 12 of a per-process counter. Ids of one process sort by
//! generation order; ids of different processes sort by millisecond, then by process.
//! A client's id is accepted when it has 1 to [`MAX_LEN`] bytes, each printable ASCII
//! other than space (`!`..=`~`).
//!
//! Thread-safety: the counter is an atomic; safe from any thread.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header that carries the id, both ways.
pub const HEADER: &str = "x-request-id";
/// Longest accepted client id, in bytes.
pub const MAX_LEN: usize = 128;

/// The id of one HTTP request, as the server put it into the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Why a client's id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestIdError {
    /// Empty or longer than [`MAX_LEN`].
    #[error("X-Request-Id must have 1 to {MAX_LEN} bytes, it has {0}")]
    Length(usize),
    /// A byte outside `!`..=`~`.
    #[error("X-Request-Id may hold only printable ASCII without spaces; byte {byte:#04x} at {at}")]
    Byte {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
}

/// Checks a client's id.
pub fn validate(id: &[u8]) -> Result<&str, RequestIdError> {
    if id.is_empty() || id.len() > MAX_LEN {
        return Err(RequestIdError::Length(id.len()));
    }
    if let Some(at) = id.iter().position(|b| !(b'!'..=b'~').contains(b)) {
        return Err(RequestIdError::Byte {
            byte: id.get(at).copied().unwrap_or(0),
            at,
        });
    }
    // Printable ASCII is UTF-8.
    std::str::from_utf8(id).map_err(|_| RequestIdError::Length(id.len()))
}

fn process_tag() -> u32 {
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(rand::random::<u32>)
}

/// A new id (see the module docs).
pub fn generate() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = crate::types::now_ms().max(0) as u64 & 0xffff_ffff_ffff;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff;
    format!("{ms:012x}{:08x}{n:012x}", process_tag())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_valid_and_sorted() {
        let ids: Vec<String> = (0..1000).map(|_| generate()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "unique and in generation order");
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(validate(id.as_bytes()).is_ok());
        }
    }

    #[test]
    fn client_ids_are_bounded_and_printable() {
        assert_eq!(validate(b"abc-123_X.y"), Ok("abc-123_X.y"));
        assert_eq!(validate(b""), Err(RequestIdError::Length(0)));
        assert!(validate(&[b'a'; MAX_LEN]).is_ok());
        assert!(validate(&[b'a'; MAX_LEN + 1]).is_err());
        assert!(matches!(
            validate(b"a b"),
            Err(RequestIdError::Byte { at: 1, .. })
        ));
        assert!(validate("é".as_bytes()).is_err());
        assert!(validate(b"a\nb").is_err());
    }
}
