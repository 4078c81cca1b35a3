//! When each request is meant to be sent, and from when its latency counts.
//!
//! Closed loop: a connection sends its next request as soon as the previous one
//! answered; latency runs from the actual send. Open loop: request `i` (numbered
//! across all connections) is *intended* for `start + i / rate`, whatever happened
//! before; a connection that is still busy sends it late, and its latency still runs
//! from the intended time. This is the coordinated-omission correction (Gil Tene;
//! wrk2): when the server stalls for 100 ms at 1,000 requests/s, the ~100 requests
//! that should have gone out meanwhile each record their wait, instead of one slow
//! sample hiding a queue.
//!
//! The runner's pacer thread releases requests as [`due_by`] says, and each waits
//! for its own intended time. Everything here is arithmetic on offsets from the start
//! of a run, so it is tested with a virtual clock. Stateless; safe from any thread.

use std::time::Duration;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Each connection sends as fast as answers come back.
    Closed,
    /// A fixed total rate in requests per second (> 0), across all connections.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

impl Pacing {
    /// The offset from the run's start at which request `i` is intended to go out, or
    /// `None` in closed loop (send now).
    pub fn intended_offset(&self, i: u64) -> Option<Duration> {
        match *self {
            Pacing::Closed => None,
            Pacing::Open { rate } => Some(Duration::from_secs_f64(i as f64 / rate)),
        }
    }

    /// The request rate, if open loop.
    pub fn rate(&self) -> Option<f64> {
        match *self {
            Pacing::Closed => None,
            Pacing::Open { rate } => Some(rate),
        }
    }
}

/// How many requests are due `elapsed` into the run: those whose intended offset is at
/// most `elapsed` (`floor(elapsed * rate) + 1`); in closed loop, none are scheduled.
pub fn due_by(pacing: &Pacing, elapsed: Duration) -> u64 {
    match *pacing {
        Pacing::Closed => 0,
        Pacing::Open { rate } => (elapsed.as_secs_f64() * rate).floor() as u64 + 1,
    }
}

/// The time a request's latency is measured from: its intended send time in open loop
/// (even if it actually went out later), its actual send time in closed loop.
pub fn latency_origin(pacing: &Pacing, i: u64, actual_send: Duration) -> Duration {
    pacing.intended_offset(i).unwrap_or(actual_send)
}

/// The latency recorded for a request answered at `done`: `done - origin`, zero if the
/// clock says otherwise.
pub fn latency(origin: Duration, done: Duration) -> Duration {
    done.saturating_sub(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn open_loop_offsets_are_evenly_spaced() {
        let pacing = Pacing::Open { rate: 1000.0 };
        assert_eq!(pacing.intended_offset(0), Some(Duration::ZERO));
        assert_eq!(pacing.intended_offset(1), Some(MS));
        assert_eq!(
            pacing.intended_offset(2500),
            Some(Duration::from_millis(2500))
        );
        let pacing = Pacing::Open { rate: 3.0 };
        let third = pacing.intended_offset(1).expect("open");
        assert!((third.as_secs_f64() - 1.0 / 3.0).abs() < 1e-9);
        // Offsets do not drift: request 3,000,000 at 3/s is exactly 1,000,000 s in.
        assert_eq!(
            pacing.intended_offset(3_000_000),
            Some(Duration::from_secs(1_000_000))
        );
        assert_eq!(Pacing::Closed.intended_offset(5), None);
    }

    #[test]
    fn due_counts_agree_with_intended_offsets() {
        let pacing = Pacing::Open { rate: 1000.0 };
        assert_eq!(due_by(&pacing, Duration::ZERO), 1);
        assert_eq!(due_by(&pacing, Duration::from_micros(999)), 1);
        assert_eq!(due_by(&pacing, Duration::from_millis(1)), 2);
        assert_eq!(due_by(&pacing, Duration::from_millis(2500)), 2501);
        for i in [0u64, 1, 7, 999, 123_456] {
            let at = pacing.intended_offset(i).expect("open");
            assert!(
                due_by(&pacing, at) > i,
                "request {i} is due at its own time"
            );
        }
        assert_eq!(due_by(&Pacing::Closed, Duration::from_secs(9)), 0);
    }

    /// One connection, requests every `interval`, each taking `service[i]`: returns the
    /// latencies recorded with `pacing` (virtual clock).
    fn simulate(pacing: &Pacing, service: &[Duration]) -> Vec<Duration> {
        let mut free_at = Duration::ZERO;
        let mut latencies = Vec::new();
        for (i, s) in service.iter().enumerate() {
            let i = i as u64;
            let send = match pacing.intended_offset(i) {
                Some(intended) => intended.max(free_at),
                None => free_at,
            };
            let done = send + *s;
            free_at = done;
            latencies.push(latency(latency_origin(pacing, i, send), done));
        }
        latencies
    }

    #[test]
    fn a_stall_is_charged_to_every_request_that_waited_for_it() {
        // 1,000 requests/s, 0.1 ms each, and one 100 ms stall at request 10.
        let mut service = vec![Duration::from_micros(100); 300];
        service[10] = Duration::from_millis(100);
        let open = simulate(&Pacing::Open { rate: 1000.0 }, &service);
        // The stalled request, the ~100 intended while it ran and the backlog behind
        // them (each later request gains 0.9 ms until the queue is gone, at request
        // 120) all see the queue: 110 requests over 1 ms.
        assert_eq!(open[10], Duration::from_millis(100));
        assert!(open[11] > Duration::from_millis(99), "{:?}", open[11]);
        assert!(open[60] > Duration::from_millis(49), "{:?}", open[60]);
        let over_1ms = open.iter().filter(|l| **l > MS).count();
        assert!((108..=112).contains(&over_1ms), "{over_1ms}");
        // The backlog drains (each request takes 0.1 ms of its 1 ms slot) and latency
        // returns to the service time.
        assert_eq!(open[299], Duration::from_micros(100));

        // The same run measured from the actual send hides it: one slow sample.
        let closed = simulate(&Pacing::Closed, &service);
        assert_eq!(closed.iter().filter(|l| **l > MS).count(), 1);
    }

    #[test]
    fn latency_never_goes_negative() {
        assert_eq!(latency(Duration::from_secs(2), MS), Duration::ZERO);
        assert_eq!(
            latency_origin(&Pacing::Closed, 7, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            latency_origin(&Pacing::Open { rate: 10.0 }, 7, Duration::from_secs(3)),
            Duration::from_millis(700)
        );
    }
}
