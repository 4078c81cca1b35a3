//! The process's file-descriptor limit (`RLIMIT_NOFILE`): raised at start, read to
//! size the connection cap. The only `unsafe` of the server: two libc calls on a
//! stack value.

use std::io;

/// Soft limits are never raised above this, even when the hard limit is unlimited
/// (Linux refuses a soft limit above `fs.nr_open`, 1,048,576 by default).
pub const RAISE_CEILING: u64 = 1 << 20;

/// A soft and a hard descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The limit in force.
    pub soft: u64,
    /// How far an unprivileged process may raise it.
    pub hard: u64,
}

/// The current limits.
#[cfg(unix)]
pub fn current() -> io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, writable stack
    // value of exactly that type; RLIMIT_NOFILE is a valid resource.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FdLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Raises the soft limit toward the hard one (at most `RAISE_CEILING`); returns the
/// limits in force afterwards. Lowering never happens; a refusal by the system leaves
/// the limit as it was and is an error.
#[cfg(unix)]
pub fn raise() -> io::Result<FdLimit> {
    let now = current()?;
    let target = now.hard.min(RAISE_CEILING);
    if target <= now.soft {
        return Ok(now);
    }
    let limit = libc::rlimit {
        rlim_cur: target,
        rlim_max: now.hard,
    };
    // SAFETY: setrlimit reads one `rlimit` through a pointer to a live stack value of
    // exactly that type; RLIMIT_NOFILE is a valid resource.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    current()
}

/// The current limits (not available on this platform).
#[cfg(not(unix))]
pub fn current() -> io::Result<FdLimit> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Raising the limit (not available on this platform).
#[cfg(not(unix))]
pub fn raise() -> io::Result<FdLimit> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Descriptors open in this process now, where the system says (`/proc/self/fd`).
pub fn open_descriptors() -> Option<usize> {
    // The directory handle itself is one of the entries.
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count().saturating_sub(1))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_stays_within_the_hard_limit() {
        let before = current().expect("getrlimit");
        let after = raise().expect("setrlimit toward the hard limit is allowed");
        assert!(after.soft >= before.soft);
        assert!(after.soft <= after.hard);
        assert_eq!(after.hard, before.hard);
        assert_eq!(raise().expect("again"), after);
    }
}
