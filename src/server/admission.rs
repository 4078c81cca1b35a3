//! Admission control: which requests start work, and which are refused fast.
//!
//! Three checks, all before a request does any work:
//!
//! * **Queueing time.** A request's *arrival* is when its connection task was woken to
//!   read it ([`ArrivalClock`]); the time from there to dispatch is how long it waited
//!   in the runtime's queue behind other connections. Reads run inline on connection
//!   tasks, so under overload this queue, not any handler, is where requests wait. A
//!   request that waited longer than `max_queue_time` while at least
//!   [`MIN_QUEUED_TO_SHED`] other connections were waiting too is refused at once with
//!   503: its caller has mostly given up, and serving it would make every request
//!   behind it later too. Refusing is cheap (no body read, no store call), so the
//!   queue drains. The second condition tells our own backlog from a host that starves
//!   the process of CPU: a lone client delayed by the scheduler is still served. And a
//!   late request is refused only while refusing can help: when the connections
//!   waiting ahead, each refused at the measured cost of a refusal, would still take
//!   longer than the bound to get through, refusing every request would serve nobody
//!   and shorten nothing, so the request is served (the queue is then as long as the
//!   connections make it: Little's law).
//!
//!   That judgement is right for clients that send again the moment they are answered
//!   (a closed loop: the queue stays full whatever is refused) and wrong for a backlog
//!   that refusing does drain (an open-loop caller whose due requests wait for a free
//!   connection: every connection stays busy only until the backlog is gone). Both
//!   look alike at one dispatch, so the server tries: when it first judges refusing
//!   useless, it refuses late requests anyway for a *probe* of [`PROBE`]. If the queue
//!   becomes short meanwhile (refusing helps again by the test above), the backlog was
//!   drainable and shedding goes on as usual; if it stays full, late requests are
//!   served for [`SERVE_AFTER_PROBE`] before the next probe. Each probe in a row that
//!   finds the queue full doubles that serving period, up to [`SERVE_AFTER_PROBE_MAX`]
//!   (a short queue sets it back), so a closed loop, where every probe fails, loses
//!   less and less of its time to probes: at most [`PROBE`] of every
//!   `PROBE + SERVE_AFTER_PROBE_MAX` once it has lasted half a minute. Measured
//!   (README, "Limits and load shedding"): with 64 connections and a refusal costing
//!   about 16 us, 63 waiting take about the 1 ms bound, and without the probe an
//!   open-loop overload got stuck serving a backlog it never drained (served p99 0.2 to
//!   1.2 s).
//!
//!   The arrival is only as accurate as the runtime is prompt to notice readable
//!   sockets: it must poll for I/O every few tasks ([`EVENT_INTERVAL`]), not every 61
//!   (tokio's default), or a request can wait unseen in its socket for 61 other
//!   requests first.
//! * **Concurrency.** At most `max_concurrent_requests` requests are in their work
//!   phase at once ([`Admission::enter`]); a request that finds none free waits for one
//!   up to `max_queue_time`, then gets 503. This bounds what waits on the blocking pool
//!   (pushes waiting for their WAL sync, loads, registry changes).
//! * **Deadlines.** A request may carry its caller's deadline: the `X-Featstore-Deadline-Ms`
//!   header on any route, and `deadline_ms` in a ranking body, both counted from
//!   arrival. One that is already past when its work would start is refused with 503
//!   without doing the work.
//!
//! `/healthz`, `/readyz` and `/metrics` skip all three
//! ([`Route::is_health_check`](super::router::Route::is_health_check)):
//! they are answered whatever the load.
//!
//! Thread-safety contract: [`Admission`] is shared by every connection (a tokio
//! semaphore, fair, so waiters are served in order); an [`ArrivalClock`] belongs to one
//! connection and is written only by its task and by whoever wakes that task (atomics
//! and a `parking_lot` mutex held for a waker swap, never across a poll).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::refusal::{Refusal, Refused};

/// Header with the caller's deadline in milliseconds from arrival.
pub const DEADLINE_HEADER: &str = "x-featstore-deadline-ms";

/// Connections that must be waiting for a worker besides a late request's own before
/// it is refused for its queueing time (see the module docs).
pub const MIN_QUEUED_TO_SHED: usize = 8;

/// Tasks a runtime serving the API runs between two polls for I/O (tokio's
/// `event_interval`; its default is 61): how late, at most, a readable connection is
/// noticed, and so how much of a request's wait its arrival misses (see the module
/// docs). An I/O poll costs about a microsecond; a read, tens.
pub const EVENT_INTERVAL: u32 = 2;

/// The cost of a refusal assumed until one is measured, ns.
const REFUSAL_NS_INITIAL: u64 = 10_000;

/// The least refusal cost the estimate may fall to, ns.
const REFUSAL_NS_MIN: u64 = 1_000;

/// How long late requests are refused although refusing looked unable to help, to see
/// whether refusing empties the queue (see the module docs).
pub const PROBE: Duration = Duration::from_millis(50);

/// How long late requests are served after a probe that left the queue full.
pub const SERVE_AFTER_PROBE: Duration = Duration::from_secs(1);

/// The longest serving period after probes that kept finding the queue full.
pub const SERVE_AFTER_PROBE_MAX: Duration = Duration::from_secs(16);

/// The shared admission state of one server.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    max_queue_time: Option<Duration>,
    queue: Arc<Queue>,
}

/// What the admission of one server and its connections' clocks share.
#[derive(Debug)]
struct Queue {
    /// Connection tasks woken and not yet polled, over all connections.
    waiting: AtomicUsize,
    /// What refusing a request costs, ns: a running average over the connection polls
    /// that refused one for its queueing time (the whole poll: head parsed, answer
    /// written), each sample capped at 4x the average so a poll the OS interrupted
    /// moves it little.
    refusal_ns: AtomicU64,
    /// End of the current probe ([`mono_ns`]; 0: none yet).
    probe_until: AtomicU64,
    /// End of the serving period after a probe that left the queue full ([`mono_ns`];
    /// 0: none, the next useless-looking refusal starts a probe).
    serve_until: AtomicU64,
    /// The serving period after the next failed probe (ns): [`SERVE_AFTER_PROBE`],
    /// doubled by each failed probe in a row up to [`SERVE_AFTER_PROBE_MAX`].
    serve_ns: AtomicU64,
}

impl Queue {
    fn new() -> Self {
        Queue {
            waiting: AtomicUsize::new(0),
            refusal_ns: AtomicU64::new(REFUSAL_NS_INITIAL),
            probe_until: AtomicU64::new(0),
            serve_until: AtomicU64::new(0),
            serve_ns: AtomicU64::new(nanos(SERVE_AFTER_PROBE)),
        }
    }

    /// True when refusing a late request at `now` ([`mono_ns`]) can bring the wait of
    /// those behind under `limit`: the `ahead` connections waiting, each refused, take
    /// less than it; or, when they would not, during a probe (see the module docs).
    /// When it answers false the estimate is lowered a little, so an estimate grown too
    /// large is tried again. Racy between threads, which only blurs the estimate and
    /// the probe's edges.
    fn refusing_helps(&self, ahead: usize, limit: Duration, now: u64) -> bool {
        let cost = self.refusal_ns.load(Ordering::Relaxed);
        let limit = nanos(limit);
        if (ahead as u64).saturating_mul(cost) < limit {
            // The queue is short enough for refusals to help: whatever a probe found
            // before, the next full queue is probed afresh, and served for the first
            // period if that probe fails.
            if self.serve_until.load(Ordering::Relaxed) != 0 {
                self.serve_until.store(0, Ordering::Relaxed);
                self.serve_ns
                    .store(nanos(SERVE_AFTER_PROBE), Ordering::Relaxed);
            }
            return true;
        }
        if now < self.probe_until.load(Ordering::Relaxed) {
            return true;
        }
        let serve_until = self.serve_until.load(Ordering::Relaxed);
        if now >= serve_until {
            // No probe since the queue was last short, or the serving period is over.
            // After a serving period, the probe before it failed: the next period is
            // twice as long.
            let mut serve = self.serve_ns.load(Ordering::Relaxed);
            if serve_until != 0 {
                serve = serve.saturating_mul(2).min(nanos(SERVE_AFTER_PROBE_MAX));
                self.serve_ns.store(serve, Ordering::Relaxed);
            }
            let probe_end = now.saturating_add(nanos(PROBE));
            self.probe_until.store(probe_end, Ordering::Relaxed);
            self.serve_until
                .store(probe_end.saturating_add(serve), Ordering::Relaxed);
            return true;
        }
        self.refusal_ns
            .store((cost - cost / 64).max(REFUSAL_NS_MIN), Ordering::Relaxed);
        false
    }

    /// Adds one measured refusal of `ns`.
    fn record_refusal(&self, ns: u64) {
        let cost = self.refusal_ns.load(Ordering::Relaxed);
        let sample = ns.min(cost.saturating_mul(4));
        let next = (cost * 15 + sample) / 16;
        self.refusal_ns
            .store(next.max(REFUSAL_NS_MIN), Ordering::Relaxed);
    }
}

/// A work slot, given back on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    /// Admission with `max_concurrent` work slots and the queueing bound.
    pub fn new(max_concurrent: usize, max_queue_time: Option<Duration>) -> Self {
        let max_concurrent = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_queue_time,
            queue: Arc::new(Queue::new()),
        }
    }

    /// The clock of a newly accepted connection, counted in [`Admission::waiting`].
    pub fn clock(&self) -> Arc<ArrivalClock> {
        ArrivalClock::new(self.queue.clone())
    }

    /// Connection tasks woken and waiting for a worker thread now.
    pub fn waiting(&self) -> usize {
        self.queue.waiting.load(Ordering::Relaxed)
    }

    /// The estimated cost of refusing one request: the queue-time check multiplies it
    /// by the connections waiting to judge whether refusing can help.
    pub fn refusal_cost(&self) -> Duration {
        Duration::from_nanos(self.queue.refusal_ns.load(Ordering::Relaxed))
    }

    /// Requests in their work phase now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.slots.available_permits())
    }

    /// The check at dispatch, `now` being the dispatch time: refuses a request that
    /// waited too long since `arrival` behind others, or whose deadline has passed.
    pub fn check_queue(
        &self,
        arrival: Arrival,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), Refused> {
        let waited = now.saturating_duration_since(arrival.at);
        if let Some(limit) = self.max_queue_time
            && waited > limit
            && arrival.behind >= MIN_QUEUED_TO_SHED
            && self
                .queue
                .refusing_helps(arrival.behind, limit, mono_of(now))
        {
            return Err(Refused {
                reason: Refusal::QueueTime,
                message: format!(
                    "overloaded: the request waited {} us to be started, more than the {} us allowed; retry later",
                    waited.as_micros(),
                    limit.as_micros()
                ),
            });
        }
        check_deadline(deadline, now)
    }

    /// Takes a work slot, waiting at most `max_queue_time` and never past `deadline`.
    pub async fn enter(&self, deadline: Option<Instant>) -> Result<Slot, Refused> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let now = Instant::now();
        check_deadline(deadline, now)?;
        let limit = self.max_queue_time.map(|d| now + d);
        let until = match (limit, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let acquire = self.slots.clone().acquire_owned();
        let permit = match until {
            Some(until) => tokio::time::timeout_at(until.into(), acquire).await.ok(),
            None => Some(acquire.await),
        };
        match permit {
            // The semaphore is never closed.
            Some(Ok(permit)) => Ok(Slot { _permit: permit }),
            _ => {
                check_deadline(deadline, Instant::now())?;
                Err(Refused {
                    reason: Refusal::Concurrency,
                    message: format!(
                        "overloaded: all {} request slots stayed busy; retry later",
                        self.max_concurrent
                    ),
                })
            }
        }
    }
}

fn check_deadline(deadline: Option<Instant>, now: Instant) -> Result<(), Refused> {
    match deadline {
        Some(deadline) if now >= deadline => Err(Refused {
            reason: Refusal::Deadline,
            message: "the request's deadline passed before it could be started".into(),
        }),
        _ => Ok(()),
    }
}

/// The deadline a request's `X-Featstore-Deadline-Ms` header sets, from `arrived`.
/// A header that is not a number of milliseconds is an error naming it.
pub fn header_deadline(headers: &HeaderMap, arrived: Instant) -> Result<Option<Instant>, String> {
    let Some(value) = headers.get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    let ms = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            format!("header {DEADLINE_HEADER} must be a whole number of milliseconds")
        })?;
    Ok(Some(arrived + Duration::from_millis(ms)))
}

/// When a request arrived and by when its caller wants it: set at dispatch, kept in
/// the request's extensions for handlers that check again later (after reading a
/// body) or pass the rest of the deadline on (ranking).
#[derive(Debug, Clone, Copy)]
pub struct RequestTiming {
    /// When the connection task was woken to read the request.
    pub arrived: Instant,
    /// The header deadline, if any.
    pub deadline: Option<Instant>,
}

/// The origin of [`mono_ns`].
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Monotonic nanoseconds since [`base`], plus one (0 means "none").
fn mono_ns() -> u64 {
    mono_of(Instant::now())
}

/// The [`mono_ns`] reading of `at`.
fn mono_of(at: Instant) -> u64 {
    nanos(at.saturating_duration_since(base())).saturating_add(1)
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

/// The instant of a [`mono_ns`] reading.
fn from_mono_ns(ns: u64) -> Instant {
    base() + Duration::from_nanos(ns.saturating_sub(1))
}

/// When a request arrived, as its connection's [`ArrivalClock`] saw it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the connection task was woken to read the request.
    pub at: Instant,
    /// Other connection tasks that were woken and waiting for a worker when this one
    /// was polled.
    pub behind: usize,
}

/// `woken` of a connection whose task has ended: later wakes are not counted.
const ENDED: u64 = u64::MAX;

/// When a connection's task was last woken, as seen by the request it then reads.
///
/// The connection's future is polled through [`Timed`], which hands it a waker that
/// records the first wake since the last poll before waking the task. At each poll the
/// record becomes the poll's *arrival*: anything the task reads in that poll (a
/// request head) was ready at least since then, so `dispatch time - arrival` is the
/// time it waited for a worker thread. Each recorded wake also counts the task in the
/// server's `waiting` count until its poll, so a poll knows how many connections were
/// waiting with it.
#[derive(Debug)]
pub struct ArrivalClock {
    /// First wake since the last poll, [`mono_ns`]; 0: none; [`ENDED`]: task ended.
    woken: AtomicU64,
    /// Arrival of the current poll, [`mono_ns`].
    current: AtomicU64,
    /// Others waiting when the current poll began.
    behind: AtomicUsize,
    /// When the current poll began, [`mono_ns`].
    poll_started: AtomicU64,
    /// Set by [`ArrivalClock::note_refusal`] during a poll, taken at its end.
    refused: AtomicBool,
    /// The server's count of woken, not yet polled connection tasks, and its refusal
    /// cost.
    queue: Arc<Queue>,
    /// The task's own waker, called after the record.
    task: Mutex<Option<Waker>>,
}

impl ArrivalClock {
    /// A clock whose first poll counts from now (the accept); the new task counts as
    /// waiting until then.
    fn new(queue: Arc<Queue>) -> Arc<Self> {
        queue.waiting.fetch_add(1, Ordering::Relaxed);
        Arc::new(ArrivalClock {
            woken: AtomicU64::new(mono_ns()),
            current: AtomicU64::new(0),
            behind: AtomicUsize::new(0),
            poll_started: AtomicU64::new(0),
            refused: AtomicBool::new(false),
            queue,
            task: Mutex::new(None),
        })
    }

    /// A clock of its own, counted nowhere: for connections served outside the API's
    /// runtime (the health listener), whose requests skip admission. Its arrival is
    /// always the dispatch time.
    pub fn detached() -> Arc<Self> {
        ArrivalClock::new(Arc::new(Queue::new()))
    }

    /// Records that the current poll refused a request for its queueing time: the
    /// poll's duration is a sample of what a refusal costs.
    pub fn note_refusal(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }

    /// The arrival of the request being dispatched in the current poll.
    pub fn arrival(&self) -> Arrival {
        Arrival {
            at: match self.current.load(Ordering::Relaxed) {
                0 => Instant::now(),
                ns => from_mono_ns(ns),
            },
            behind: self.behind.load(Ordering::Relaxed),
        }
    }

    /// Called at the start of each poll: takes the recorded wake.
    fn begin_poll(&self) {
        let now = mono_ns();
        self.poll_started.store(now, Ordering::Relaxed);
        let woken = self.woken.swap(0, Ordering::Relaxed);
        let arrival = match woken {
            // No wake recorded (a poll nobody asked for): count from now.
            0 | ENDED => now,
            ns => {
                let left = self.queue.waiting.fetch_sub(1, Ordering::Relaxed);
                self.behind.store(left.saturating_sub(1), Ordering::Relaxed);
                ns
            }
        };
        self.current.store(arrival, Ordering::Relaxed);
    }

    /// Called at the end of each poll: a poll that refused a request is a sample of
    /// the refusal cost.
    fn end_poll(&self) {
        if self.refused.swap(false, Ordering::Relaxed) {
            let started = self.poll_started.load(Ordering::Relaxed);
            self.queue.record_refusal(mono_ns().saturating_sub(started));
        }
    }

    /// Called when the task ends: a pending record leaves the count, later wakes are
    /// ignored.
    fn end(&self) {
        let woken = self.woken.swap(ENDED, Ordering::Relaxed);
        if woken != 0 && woken != ENDED {
            self.queue.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Wake for ArrivalClock {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Only the first wake since the last poll counts: the task has been runnable
        // since then.
        if self
            .woken
            .compare_exchange(0, mono_ns(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.queue.waiting.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(task) = self.task.lock().as_ref() {
            task.wake_by_ref();
        }
    }
}

/// A connection future polled with an [`ArrivalClock`] (see there).
pub struct Timed<F> {
    inner: Pin<Box<F>>,
    clock: Arc<ArrivalClock>,
    waker: Waker,
}

impl<F: Future> Timed<F> {
    /// Wraps `inner`, recording its wakes on `clock`.
    pub fn new(inner: F, clock: Arc<ArrivalClock>) -> Self {
        Timed {
            inner: Box::pin(inner),
            waker: Waker::from(clock.clone()),
            clock,
        }
    }
}

impl<F> Drop for Timed<F> {
    fn drop(&mut self) {
        self.clock.end();
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.clock.begin_poll();
        {
            let mut task = this.clock.task.lock();
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let done = this
            .inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker));
        this.clock.end_poll();
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_instants_round_trip() {
        let before = Instant::now();
        let ns = mono_ns();
        let back = from_mono_ns(ns);
        let after = Instant::now();
        assert!(
            back + Duration::from_micros(1) >= before,
            "{back:?} {before:?}"
        );
        assert!(
            back <= after + Duration::from_micros(1),
            "{back:?} {after:?}"
        );
    }

    #[test]
    fn waiting_longer_than_the_bound_behind_others_is_refused() {
        let admission = Admission::new(4, Some(Duration::from_millis(2)));
        let now = Instant::now();
        let late = Arrival {
            at: now.checked_sub(Duration::from_millis(3)).expect("past"),
            behind: MIN_QUEUED_TO_SHED,
        };
        let refused = admission.check_queue(late, now, None).expect_err("late");
        assert_eq!(refused.reason, Refusal::QueueTime);
        let on_time = Arrival { at: now, ..late };
        admission
            .check_queue(on_time, now, None)
            .expect("no wait is fine");
        let alone = Arrival {
            behind: MIN_QUEUED_TO_SHED - 1,
            ..late
        };
        admission
            .check_queue(alone, now, None)
            .expect("late but not behind our own backlog");
        let off = Admission::new(4, None);
        off.check_queue(late, now, None)
            .expect("no bound: never refused for waiting");
    }

    #[test]
    fn a_late_request_is_served_when_refusing_cannot_shorten_the_wait() {
        let admission = Admission::new(4, Some(Duration::from_millis(1)));
        let now = Instant::now();
        let late = |behind| Arrival {
            at: now.checked_sub(Duration::from_millis(3)).expect("past"),
            behind,
        };
        // 10 us a refusal (the initial estimate): 50 ahead take 0.5 ms, under the
        // bound, so refusing helps; 200 ahead would take 2 ms even if all were refused.
        admission
            .check_queue(late(50), now, None)
            .expect_err("shed");
        // The first time it looks useless a probe starts: refused still, all through it.
        admission
            .check_queue(late(200), now, None)
            .expect_err("probe");
        admission
            .check_queue(late(200), now + PROBE / 2, None)
            .expect_err("still probing");
        // The queue stayed full through the probe: served afterwards.
        admission
            .check_queue(late(200), now + PROBE, None)
            .expect("served: refusing cannot bring 200 under 1 ms");
        // Cheaper refusals measured: now refusing 200 helps.
        for _ in 0..200 {
            admission.queue.record_refusal(2_000);
        }
        assert!(admission.refusal_cost() < Duration::from_micros(3));
        admission
            .check_queue(late(200), now + PROBE, None)
            .expect_err("shed");
    }

    #[test]
    fn a_full_queue_is_probed_again_after_serving_and_at_once_after_a_short_one() {
        let queue = Queue::new();
        let limit = Duration::from_millis(1);
        let t0 = mono_ns();
        let at = |d: Duration| t0 + nanos(d);
        // 200 waiting at 10 us a refusal: 2 ms, more than the bound.
        assert!(
            queue.refusing_helps(200, limit, at(Duration::ZERO)),
            "probe"
        );
        assert!(!queue.refusing_helps(200, limit, at(PROBE)), "serve");
        let cost = queue.refusal_ns.load(Ordering::Relaxed);
        assert!(
            !queue.refusing_helps(200, limit, at(PROBE + SERVE_AFTER_PROBE / 2)),
            "still serving"
        );
        // The estimate came down meanwhile; set it back for the figures below.
        assert!(queue.refusal_ns.load(Ordering::Relaxed) < cost);
        queue
            .refusal_ns
            .store(REFUSAL_NS_INITIAL, Ordering::Relaxed);
        let next = PROBE + SERVE_AFTER_PROBE;
        assert!(queue.refusing_helps(200, limit, at(next)), "the next probe");
        assert!(
            !queue.refusing_helps(200, limit, at(next + PROBE)),
            "served"
        );
        // The second failed probe in a row is followed by twice the serving period.
        assert!(
            !queue.refusing_helps(200, limit, at(next + PROBE + SERVE_AFTER_PROBE)),
            "served twice as long"
        );
        queue
            .refusal_ns
            .store(REFUSAL_NS_INITIAL, Ordering::Relaxed);
        let third = next + PROBE + SERVE_AFTER_PROBE * 2;
        assert!(
            queue.refusing_helps(200, limit, at(third)),
            "the third probe"
        );
        // The queue got short (a drained backlog): the next full queue is probed at
        // once rather than served, and the period is back to the first.
        assert!(queue.refusing_helps(20, limit, at(third + PROBE)));
        let fresh = third + PROBE + Duration::from_millis(1);
        assert!(queue.refusing_helps(200, limit, at(fresh)), "probed afresh");
        assert!(!queue.refusing_helps(200, limit, at(fresh + PROBE)));
        queue
            .refusal_ns
            .store(REFUSAL_NS_INITIAL, Ordering::Relaxed);
        assert!(
            queue.refusing_helps(200, limit, at(fresh + PROBE + SERVE_AFTER_PROBE)),
            "the first period again"
        );
    }

    #[test]
    fn the_serving_period_doubles_up_to_its_cap() {
        let queue = Queue::new();
        let limit = Duration::from_millis(1);
        let mut t = mono_ns();
        let mut periods = Vec::new();
        for _ in 0..8 {
            queue
                .refusal_ns
                .store(REFUSAL_NS_INITIAL, Ordering::Relaxed);
            assert!(queue.refusing_helps(200, limit, t), "probe");
            let until = queue.serve_until.load(Ordering::Relaxed);
            periods.push(Duration::from_nanos(until - t) - PROBE);
            t = until;
        }
        let secs: Vec<u64> = periods.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 16, 16, 16]);
        assert_eq!(SERVE_AFTER_PROBE_MAX, Duration::from_secs(16));
    }

    #[test]
    fn one_slow_refusal_moves_the_estimate_little() {
        let queue = Queue::new();
        queue.record_refusal(50_000_000);
        let cost = queue.refusal_ns.load(Ordering::Relaxed);
        assert!(cost <= REFUSAL_NS_INITIAL * 2, "{cost}");
    }

    #[test]
    fn a_passed_deadline_is_refused() {
        let admission = Admission::new(4, None);
        let now = Instant::now();
        let arrival = Arrival { at: now, behind: 0 };
        let refused = admission
            .check_queue(arrival, now, Some(now))
            .expect_err("deadline now");
        assert_eq!(refused.reason, Refusal::Deadline);
        admission
            .check_queue(arrival, now, Some(now + Duration::from_millis(1)))
            .expect("deadline ahead");
    }

    #[tokio::test]
    async fn slots_are_bounded_and_waiters_give_up() {
        let admission = Admission::new(2, Some(Duration::from_millis(10)));
        let a = admission.enter(None).await.expect("free");
        let _b = admission.enter(None).await.expect("free");
        assert_eq!(admission.in_flight(), 2);
        let refused = admission.enter(None).await.expect_err("full");
        assert_eq!(refused.reason, Refusal::Concurrency);
        let refused = admission
            .enter(Some(Instant::now()))
            .await
            .expect_err("deadline now");
        assert_eq!(refused.reason, Refusal::Deadline);
        drop(a);
        let _c = admission.enter(None).await.expect("freed");
        assert_eq!(admission.in_flight(), 2);
    }

    #[test]
    fn deadline_headers_parse() {
        let now = Instant::now();
        let mut headers = HeaderMap::new();
        assert_eq!(header_deadline(&headers, now), Ok(None));
        headers.insert(DEADLINE_HEADER, "25".parse().expect("value"));
        assert_eq!(
            header_deadline(&headers, now),
            Ok(Some(now + Duration::from_millis(25)))
        );
        headers.insert(DEADLINE_HEADER, "soon".parse().expect("value"));
        assert!(header_deadline(&headers, now).is_err());
    }

    #[tokio::test]
    async fn a_wake_is_the_next_polls_arrival() {
        let admission = Admission::new(1, None);
        let clock = admission.clock();
        assert_eq!(
            admission.waiting(),
            1,
            "a new connection waits for its first poll"
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let reader = clock.clone();
            let seen = seen.clone();
            Timed::new(
                async move {
                    seen.lock().push(reader.arrival().at);
                    let _ = rx.await;
                    seen.lock().push(reader.arrival().at);
                },
                clock.clone(),
            )
        };
        let handle = tokio::spawn(task);
        while seen.lock().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.waiting(), 0, "polled, then parked on the channel");
        let before_wake = Instant::now();
        tx.send(()).expect("send");
        handle.await.expect("task");
        assert_eq!(admission.waiting(), 0, "ended: nothing left counted");
        let seen = seen.lock();
        assert_eq!(seen.len(), 2);
        assert!(seen[1] >= seen[0]);
        // The second poll's arrival is the wake (the send), not earlier.
        assert!(seen[1] + Duration::from_micros(1) >= before_wake);
    }
}
