//! Request memory: one budget shared by every connection, and the bounded reading of
//! a request body against it.
//!
//! Before a body is read, its request reserves `body bytes x (1 + decode factor)` of
//! the budget ([`MemoryBudget`]): the bytes themselves plus an estimate of what
//! decoding them costs until the answer is made (the factor is measured per route,
//! [`decode_factor`]). The reservation is held until the handler is done. A request
//! that does not fit waits up to `memory_wait` for others to finish, then is refused
//! with 503 and `Retry-After`; one that could never fit (the estimate alone exceeds
//! the budget) is 413. A body without `Content-Length` reserves as its chunks arrive.
//!
//! A body must also arrive whole within `body_timeout` of the head being read (408
//! beyond, and the connection is closed), so a client that stalls mid-body holds its
//! connection and its reservation for a bounded time.
//!
//! Thread-safety contract: the budget is a tokio [`Semaphore`] (fair: a large request
//! waiting is not overtaken forever by small ones) counted in KiB; the in-flight byte
//! count is an atomic. Both are shared by all connection tasks; nothing here blocks a
//! thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::admission::Slot;
use super::handlers::ApiError;
use super::refusal::Refusal;
use super::router::Route;

/// The budget is counted in units of this many bytes (a semaphore takes at most
/// `u32::MAX` permits at once).
const UNIT: usize = 1024;

/// Reservation step of a body without `Content-Length`.
const CHUNKED_STEP: usize = 256 * 1024;

/// Bytes of decoded state per body byte, for each route that reads a body: the peak
/// growth of the process (RSS high-water mark, `featstore-push-memory`) per body byte,
/// less the body itself, rounded up. A push of float features holds its validated
/// writes (keys and encoded values, about 5x the JSON), the committer's maps and write
/// batch, and the memtable it fills: about 20x in all.
pub fn decode_factor(route: Route) -> usize {
    match route {
        // Feast's push bodies are parsed into a document tree first (`api::feast_push`);
        // not measured separately: bounded here by the push's factor.
        Route::Push | Route::FeastPush | Route::FeastWriteToOnlineStore => PUSH_DECODE_FACTOR,
        // Feast's read body is a document tree of entity ids (about 8x the text), not
        // measured separately.
        Route::FeastGetOnlineFeatures => 8,
        // A ranking request or registry objects: strings and small vectors.
        _ => 3,
    }
}

/// [`decode_factor`] of a push.
const PUSH_DECODE_FACTOR: usize = 19;

/// The largest [`decode_factor`] of any route.
pub const MAX_DECODE_FACTOR: usize = PUSH_DECODE_FACTOR;

/// The request memory budget shared by all connections.
#[derive(Debug)]
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    total_units: usize,
    /// Body bytes received and not yet released, over all requests.
    body_bytes: AtomicUsize,
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

/// Why a reservation was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetError {
    /// More than the whole budget: it could never be granted.
    TooLarge,
    /// Not granted within the wait.
    Busy,
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub fn new(bytes: usize) -> Self {
        let total_units = units(bytes).min(Semaphore::MAX_PERMITS);
        MemoryBudget {
            units: Arc::new(Semaphore::new(total_units)),
            total_units,
            body_bytes: AtomicUsize::new(0),
        }
    }

    /// Reserves `bytes`, waiting at most until `until`.
    pub async fn reserve(&self, bytes: usize, until: Instant) -> Result<Reservation, BudgetError> {
        let mut reservation = Reservation {
            permit: None,
            bytes: 0,
        };
        self.grow(&mut reservation, bytes, until).await?;
        Ok(reservation)
    }

    /// Adds `bytes` to `reservation`, waiting at most until `until`.
    pub async fn grow(
        &self,
        reservation: &mut Reservation,
        bytes: usize,
        until: Instant,
    ) -> Result<(), BudgetError> {
        let wanted = units(reservation.bytes.saturating_add(bytes));
        let held = reservation.permit.as_ref().map_or(0, |p| p.num_permits());
        let more = wanted.saturating_sub(held);
        if wanted > self.total_units {
            return Err(BudgetError::TooLarge);
        }
        if more > 0 {
            let more = u32::try_from(more).map_err(|_| BudgetError::TooLarge)?;
            let permit = match self.units.clone().try_acquire_many_owned(more) {
                Ok(permit) => permit,
                Err(_) => tokio::time::timeout_at(
                    until.into(),
                    self.units.clone().acquire_many_owned(more),
                )
                .await
                .map_err(|_| BudgetError::Busy)?
                // The semaphore is never closed.
                .map_err(|_| BudgetError::Busy)?,
            };
            match &mut reservation.permit {
                Some(held) => held.merge(permit),
                None => reservation.permit = Some(permit),
            }
        }
        reservation.bytes = reservation.bytes.saturating_add(bytes);
        Ok(())
    }

    /// Bytes reserved now, over all requests.
    pub fn reserved_bytes(&self) -> usize {
        self.total_units
            .saturating_sub(self.units.available_permits())
            .saturating_mul(UNIT)
    }

    /// Body bytes received and held now, over all requests.
    pub fn body_bytes(&self) -> usize {
        self.body_bytes.load(Ordering::Relaxed)
    }

    /// The whole budget, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.total_units.saturating_mul(UNIT)
    }
}

/// Part of the budget, given back on drop.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Reservation {
    /// Bytes reserved.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What one body read may use: the shared budget and the limits that apply to it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body (413 beyond).
    pub max_bytes: usize,
    /// Decoded bytes per body byte for this route.
    pub decode_factor: usize,
    /// Longest wait for room in the budget.
    pub memory_wait: Duration,
    /// The whole body must have arrived by then.
    pub deadline: Instant,
}

/// A request body read whole, with the budget it holds until dropped.
#[derive(Debug)]
pub struct Body {
    bytes: Bytes,
    _reservation: Reservation,
    /// The work slot taken after the body was read (see [`super::admission`]).
    _slot: Option<Slot>,
    budget: Arc<MemoryBudget>,
}

impl Body {
    /// Keeps `slot` for as long as the body lives.
    pub fn with_slot(mut self, slot: Slot) -> Self {
        self._slot = Some(slot);
        self
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.budget
            .body_bytes
            .fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// Counts received body bytes until the read ends (then [`Body`] takes them over).
struct Receiving<'a> {
    budget: &'a MemoryBudget,
    bytes: usize,
}

impl Receiving<'_> {
    fn add(&mut self, n: usize) {
        self.bytes += n;
        self.budget.body_bytes.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.budget
            .body_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {max} bytes"),
    )
    .refused(Refusal::BodyTooLarge)
}

fn budget_error(e: BudgetError, needed: usize, budget: &MemoryBudget) -> ApiError {
    match e {
        BudgetError::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "decoding this body would take about {needed} bytes, more than the server's request memory ({} bytes)",
                budget.total_bytes()
            ),
        )
        .refused(Refusal::BodyTooLarge),
        BudgetError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server's request memory is in use by other requests; retry later",
        )
        .refused(Refusal::Memory),
    }
}

/// Reads the whole body of `req` within `limits`, holding its share of `budget`.
pub async fn read_body(
    budget: &Arc<MemoryBudget>,
    limits: BodyLimits,
    req: Request<Incoming>,
) -> Result<Body, ApiError> {
    let cost = |bytes: usize| bytes.saturating_mul(1 + limits.decode_factor);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large(limits.max_bytes));
    }
    // Fits: checked against max_bytes, a usize.
    let declared = declared.map(|n| n as usize);
    let wait_until = Instant::now() + limits.memory_wait;
    let first = declared.unwrap_or(CHUNKED_STEP.min(limits.max_bytes));
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut body = req.into_body();
    let mut reservation = match budget
        .reserve(cost(first), wait_until.min(limits.deadline))
        .await
    {
        Ok(reservation) => reservation,
        Err(e) => {
            // A client still sending would see its connection closed, not the 503: read
            // the body to its end first, keeping none of it (a client that waits for
            // `100 Continue` has sent nothing, and is answered at once).
            if e == BudgetError::Busy && !expects_continue {
                discard(&mut body, limits.deadline, limits.max_bytes).await;
            }
            return Err(budget_error(e, cost(first), budget));
        }
    };
    let mut covered = first;
    let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
    let mut receiving = Receiving { budget, bytes: 0 };
    let timed_out = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )
        .refused(Refusal::BodyTimeout)
    };
    loop {
        let frame = match tokio::time::timeout_at(limits.deadline.into(), body.frame()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(format!("reading request body: {e}")));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len() + data.len();
        if len > limits.max_bytes {
            return Err(too_large(limits.max_bytes));
        }
        if len > covered {
            let step = (len - covered)
                .max(CHUNKED_STEP)
                .min(limits.max_bytes - covered);
            let until = (Instant::now() + limits.memory_wait).min(limits.deadline);
            budget
                .grow(&mut reservation, cost(step), until)
                .await
                .map_err(|e| budget_error(e, cost(covered + step), budget))?;
            covered += step;
        }
        buf.extend_from_slice(&data);
        receiving.add(data.len());
    }
    // The body now owns the in-flight count.
    receiving.bytes = 0;
    drop(receiving);
    Ok(Body {
        bytes: Bytes::from(buf),
        _reservation: reservation,
        _slot: None,
        budget: budget.clone(),
    })
}

/// Reads `body` to its end by `deadline`, dropping its bytes, so the connection can
/// carry the answer; gives up (the connection then closes) past the deadline or after
/// `max` bytes.
async fn discard(body: &mut Incoming, deadline: Instant, max: usize) {
    let mut seen = 0usize;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline.into(), body.frame()).await {
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > max {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(20)
    }

    #[tokio::test]
    async fn reservations_share_the_budget_and_return_on_drop() {
        let budget = MemoryBudget::new(10 * UNIT);
        let a = budget.reserve(6 * UNIT, soon()).await.expect("fits");
        assert_eq!(budget.reserved_bytes(), 6 * UNIT);
        assert_eq!(
            budget.reserve(5 * UNIT, soon()).await.err(),
            Some(BudgetError::Busy)
        );
        let b = budget.reserve(4 * UNIT, soon()).await.expect("fits");
        drop(a);
        assert_eq!(budget.reserved_bytes(), 4 * UNIT);
        drop(b);
        assert_eq!(budget.reserved_bytes(), 0);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_too_large() {
        let budget = MemoryBudget::new(10 * UNIT);
        assert_eq!(
            budget.reserve(10 * UNIT + 1, soon()).await.err(),
            Some(BudgetError::TooLarge)
        );
        let mut r = budget.reserve(8 * UNIT, soon()).await.expect("fits");
        assert_eq!(
            budget.grow(&mut r, 3 * UNIT, soon()).await,
            Err(BudgetError::TooLarge)
        );
        budget.grow(&mut r, 2 * UNIT, soon()).await.expect("fits");
        assert_eq!(r.bytes(), 10 * UNIT);
        assert_eq!(budget.reserved_bytes(), 10 * UNIT);
    }

    #[tokio::test]
    async fn a_waiting_reservation_is_granted_when_room_is_freed() {
        let budget = Arc::new(MemoryBudget::new(4 * UNIT));
        let held = budget.reserve(4 * UNIT, soon()).await.expect("fits");
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .reserve(2 * UNIT, Instant::now() + Duration::from_secs(60))
                    .await
                    .map(|r| r.bytes())
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiter.await.expect("task"), Ok(2 * UNIT));
    }
}
