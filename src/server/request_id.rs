//! The request id of each request: the client's `X-Request-Id` when valid, a generated
//! one otherwise (see `crate::servelog::request_id`); returned in the response header
//! by `dispatch`, and given to the store's observers with the reads it made.

use super::handlers::ApiError;
use crate::servelog::request_id::{HEADER, RequestId, generate, validate};

/// The id of a request with `headers`, or the 400 refusing a malformed one.
pub fn of(headers: &hyper::HeaderMap) -> Result<RequestId, ApiError> {
    match headers.get(HEADER) {
        None => Ok(RequestId(generate())),
        Some(value) => validate(value.as_bytes())
            .map(|id| RequestId(id.to_owned()))
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}
