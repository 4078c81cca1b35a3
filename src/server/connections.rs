//! The connection cap and the health reserve.
//!
//! A server holds at most `max_connections` connections of its own; connections
//! accepted beyond that, up to `health_connections` more, are *health-only*: they may
//! ask `/healthz`, `/readyz` and `/metrics` (a probe keeps working while clients fill
//! every normal slot), anything else is answered 503 and the connection closed, and
//! they are closed after one request or a short header timeout. Beyond both, a new
//! connection is closed as soon as it is accepted. The cap stays below the descriptor
//! limit ([`auto_max_connections`]), so accepting never fails for want of descriptors
//! and the store keeps room to open files.
//!
//! Thread-safety contract: one [`ConnectionLimiter`] per server, shared by the accept
//! loop and every connection task (one atomic count); an [`OpenConnection`] is held by
//! its connection's task and gives its slot back on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Header timeout of a health-only connection: a probe sends its request at once.
pub const HEALTH_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The default cap never exceeds this: a sidecar serves one host's connections.
pub const AUTO_MAX_CONNECTIONS: usize = 4096;

/// The fewest connections an automatic cap allows.
const AUTO_MIN_CONNECTIONS: usize = 16;

/// Descriptors the automatic cap leaves free for the store (RocksDB keeps its table
/// files open), logs and loads: at least this many, or a quarter of the limit.
const FD_HEADROOM: u64 = 256;

/// The connection cap for a soft descriptor limit of `soft` when `open` descriptors are
/// in use already: what is left after 256 descriptors (or a quarter of the limit,
/// whichever is more) and the health reserve, within 16..=[`AUTO_MAX_CONNECTIONS`].
pub fn auto_max_connections(soft: u64, open: usize, health_connections: usize) -> usize {
    let headroom = FD_HEADROOM.max(soft / 4);
    let free = soft
        .saturating_sub(open as u64)
        .saturating_sub(headroom)
        .saturating_sub(health_connections as u64);
    usize::try_from(free)
        .unwrap_or(usize::MAX)
        .clamp(AUTO_MIN_CONNECTIONS, AUTO_MAX_CONNECTIONS)
}

/// What a newly accepted connection may do.
#[derive(Debug)]
pub enum Admit {
    /// A normal connection.
    Serve(OpenConnection),
    /// Beyond the cap: health checks only.
    HealthOnly(OpenConnection),
    /// Beyond the cap and the reserve: close it now.
    Refuse,
}

/// Counts open connections against the cap.
#[derive(Debug)]
pub struct ConnectionLimiter {
    open: Arc<AtomicUsize>,
    max: usize,
    reserve: usize,
}

/// One open connection's slot, given back on drop.
#[derive(Debug)]
pub struct OpenConnection {
    open: Arc<AtomicUsize>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionLimiter {
    /// A limiter of `max` normal connections and `reserve` health-only ones.
    pub fn new(max: usize, reserve: usize) -> Self {
        ConnectionLimiter {
            open: Arc::new(AtomicUsize::new(0)),
            max: max.max(1),
            reserve,
        }
    }

    /// Decides for one accepted connection. Only the accept loop calls this, so the
    /// count cannot move up between the check and the increment.
    pub fn admit(&self) -> Admit {
        let open = self.open.load(Ordering::Relaxed);
        if open >= self.max.saturating_add(self.reserve) {
            return Admit::Refuse;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        let slot = OpenConnection {
            open: self.open.clone(),
        };
        if open < self.max {
            Admit::Serve(slot)
        } else {
            Admit::HealthOnly(slot)
        }
    }

    /// Connections open now (normal and health-only).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The cap of normal connections.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_cap_health_only_then_refused() {
        let limiter = ConnectionLimiter::new(2, 1);
        let a = limiter.admit();
        let b = limiter.admit();
        assert!(matches!(a, Admit::Serve(_)));
        assert!(matches!(b, Admit::Serve(_)));
        let c = limiter.admit();
        assert!(matches!(c, Admit::HealthOnly(_)));
        assert!(matches!(limiter.admit(), Admit::Refuse));
        assert_eq!(limiter.open(), 3);
        drop(a);
        assert_eq!(limiter.open(), 2);
        // One count for both kinds: with b and c open, the next is the third.
        let d = limiter.admit();
        assert!(matches!(d, Admit::HealthOnly(_)));
        drop((b, c, d));
        assert_eq!(limiter.open(), 0);
        assert!(matches!(limiter.admit(), Admit::Serve(_)));
    }

    #[test]
    fn the_automatic_cap_leaves_descriptors_free() {
        // The common default of 1,024: 1024 - 40 open - 256 headroom - 16 reserve.
        assert_eq!(auto_max_connections(1024, 40, 16), 712);
        // A raised limit: a quarter stays free, then the ceiling applies.
        assert_eq!(auto_max_connections(4096, 100, 16), 2956);
        assert_eq!(auto_max_connections(1 << 20, 100, 16), AUTO_MAX_CONNECTIONS);
        // Nearly exhausted: still a few connections.
        assert_eq!(auto_max_connections(300, 250, 16), AUTO_MIN_CONNECTIONS);
        for soft in [64, 256, 1024, 4096, 65_536] {
            let cap = auto_max_connections(soft, 50, 16);
            assert!(
                soft < 400 || (cap + 16 + 50) as u64 <= soft - FD_HEADROOM,
                "{soft}: {cap}"
            );
        }
    }
}
