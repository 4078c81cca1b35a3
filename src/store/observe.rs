//! Observer hooks of the facade: every answered read, every push, every load and every
//! activation is reported to the observers registered on the store, whoever called it
//! (an HTTP handler or a ranking host embedding the store). Metrics subscribe here; the
//! serving log and the audit log are the next subscribers.
//!
//! Owns [`Observer`], the event types and [`Observers`] (the registered list).
//!
//! Contract:
//! * Observers are called synchronously on the caller's thread, after the operation
//!   finished and outside every engine lock: a read's answer is complete and its view
//!   released from the critical section before any observer runs. An observer must be
//!   cheap (atomic counters, a bounded channel send); anything slow belongs on its own
//!   thread fed by a queue, never in the callback.
//! * An observer never changes the outcome: callbacks return nothing and cannot fail
//!   the operation. A panicking observer is a bug in the observer; it propagates.
//! * With no observer registered, the cost on the hot path is one atomic load.
//! * Events of one operation arrive in order (a load's activation after its load
//!   event); events of concurrent operations interleave in no defined order.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::stream::{PushError, PushOutcome};
use crate::loader::LoadRecord;
use crate::query::EntityAnswer;
use crate::query::rank::RankResponse;
use crate::types::TimestampMs;

/// The answer a read returned.
#[derive(Debug, Clone, Copy)]
pub enum ReadAnswer<'a> {
    /// A single-entity read. Shared like a ranking answer, so the serving log keeps a
    /// reference to what the client got instead of a copy of its 50-odd columns.
    Entity(&'a Arc<EntityAnswer>),
    /// A ranking read: the context once and one row per candidate. Shared, so an
    /// observer that keeps the answer (the serving log) takes a reference, not a copy.
    Ranking(&'a Arc<RankResponse>),
}

/// Who asked for a read: the request id and route of an HTTP request, or nothing for
/// an embedded caller ([`ReadContext::EMBEDDED`]). Borrowed, so passing it costs
/// nothing when no observer is registered.
#[derive(Clone, Copy)]
pub struct ReadContext<'a> {
    /// The request's id (`X-Request-Id`), when the caller has one.
    pub request_id: Option<&'a str>,
    /// The route or caller kind (`get`, `rank`, `embedded`...).
    pub route: &'a str,
    /// The check every planned read of this caller passes (`crate::query::guard`);
    /// `None`: every read is allowed.
    pub guard: Option<&'a dyn crate::query::guard::ReadGuard>,
}

impl std::fmt::Debug for ReadContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadContext")
            .field("request_id", &self.request_id)
            .field("route", &self.route)
            .field("guarded", &self.guard.is_some())
            .finish()
    }
}

impl ReadContext<'_> {
    /// A read by a host that embeds the store and gave no context.
    pub const EMBEDDED: ReadContext<'static> = ReadContext {
        request_id: None,
        route: "embedded",
        guard: None,
    };
}

/// One answered read.
#[derive(Debug, Clone, Copy)]
pub struct ReadEvent<'a> {
    /// What was answered.
    pub answer: ReadAnswer<'a>,
    /// Who asked.
    pub context: ReadContext<'a>,
    /// The request time the answer was judged at (ms since the epoch).
    pub at_ms: TimestampMs,
    /// Time the engine took to answer.
    pub elapsed: Duration,
}

/// One push, answered or refused.
#[derive(Debug, Clone, Copy)]
pub struct PushReport<'a> {
    /// Events in the request.
    pub events: usize,
    /// What became of them.
    pub result: Result<&'a PushOutcome, &'a PushError>,
    /// Time from the call to durability (or refusal).
    pub elapsed: Duration,
}

/// One batch load, finished or failed.
#[derive(Debug, Clone, Copy)]
pub struct LoadEvent<'a> {
    /// Group loaded.
    pub group: &'a str,
    /// Its load record (the version and what the load did), or the error's message.
    pub result: Result<&'a LoadRecord, &'a str>,
    /// Time the load took.
    pub elapsed: Duration,
    /// The version's validation report: of the record, or of the error when the gate
    /// held the version back ([`crate::LoadError::Held`]).
    pub validation: Option<&'a crate::validate::ValidationReport>,
}

/// Why a version became active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationCause {
    /// A load activated the version it loaded.
    Load,
    /// An explicit activation.
    Activate,
    /// A rollback to the previous version.
    Rollback,
}

impl ActivationCause {
    /// Lower-case name, for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationCause::Load => "load",
            ActivationCause::Activate => "activate",
            ActivationCause::Rollback => "rollback",
        }
    }
}

/// A version became the one served.
#[derive(Debug, Clone, Copy)]
pub struct ActivationEvent<'a> {
    /// Group.
    pub group: &'a str,
    /// The version now active.
    pub version: u64,
    /// Why.
    pub cause: ActivationCause,
}

/// Streamed values became readable: `event_times` of values of `group`, readable from
/// `readable_ms`. Reported by the stream committer's thread after each durable commit.
#[derive(Debug, Clone, Copy)]
pub struct StreamCommitEvent<'a> {
    /// Group written.
    pub group: &'a str,
    /// Event times of the values written.
    pub event_times: &'a [TimestampMs],
    /// When they became readable (ms since the epoch).
    pub readable_ms: TimestampMs,
}

/// Something that wants to hear about the store's operations; see the module docs for
/// the contract. Every method defaults to doing nothing.
pub trait Observer: Send + Sync {
    /// A read was answered.
    fn on_read(&self, _event: &ReadEvent<'_>) {}
    /// A push was answered or refused.
    fn on_push(&self, _event: &PushReport<'_>) {}
    /// A load finished or failed.
    fn on_load(&self, _event: &LoadEvent<'_>) {}
    /// A version became active.
    fn on_activation(&self, _event: &ActivationEvent<'_>) {}
    /// Streamed values became readable.
    fn on_stream_commit(&self, _event: &StreamCommitEvent<'_>) {}
}

/// Names one registration, to remove it again ([`Observers::remove`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

type Registered = Vec<(ObserverId, Arc<dyn Observer>)>;

/// The registered observers: a copy-on-write list, loaded with one atomic load.
#[derive(Default)]
pub struct Observers {
    list: ArcSwap<Registered>,
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observers")
            .field("count", &self.list.load().len())
            .finish()
    }
}

impl Observers {
    /// Registers `observer`; it hears every operation from now on.
    pub fn add(&self, observer: Arc<dyn Observer>) -> ObserverId {
        let id = ObserverId(
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        self.list.rcu(|list| {
            let mut next = (**list).clone();
            next.push((id, observer.clone()));
            next
        });
        id
    }

    /// Unregisters `id`; operations that already loaded the list may still call it
    /// once. Unknown ids are ignored.
    pub fn remove(&self, id: ObserverId) {
        self.list.rcu(|list| {
            let mut next = (**list).clone();
            next.retain(|(registered, _)| *registered != id);
            next
        });
    }

    /// Calls `f` on every observer (nothing when none is registered).
    pub fn each(&self, f: impl Fn(&dyn Observer)) {
        let list = self.list.load();
        for (_, observer) in list.iter() {
            f(observer.as_ref());
        }
    }

    /// Whether any observer is registered.
    pub fn is_empty(&self) -> bool {
        self.list.load().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicU64);

    impl Observer for Count {
        fn on_activation(&self, event: &ActivationEvent<'_>) {
            self.0.fetch_add(event.version, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_registered_observer_hears_each_event() {
        let observers = Observers::default();
        assert!(observers.is_empty());
        let a = Arc::new(Count::default());
        let b = Arc::new(Count::default());
        observers.add(a.clone());
        let second = observers.add(b.clone());
        let event = ActivationEvent {
            group: "g",
            version: 3,
            cause: ActivationCause::Activate,
        };
        observers.each(|o| o.on_activation(&event));
        observers.each(|o| {
            o.on_load(&LoadEvent {
                group: "g",
                result: Err("refused"),
                elapsed: Duration::ZERO,
                validation: None,
            })
        });
        assert_eq!(a.0.load(Ordering::Relaxed), 3);
        assert_eq!(b.0.load(Ordering::Relaxed), 3);
        observers.remove(second);
        observers.each(|o| o.on_activation(&event));
        assert_eq!(a.0.load(Ordering::Relaxed), 6);
        assert_eq!(
            b.0.load(Ordering::Relaxed),
            3,
            "removed: hears nothing more"
        );
    }
}
