//! The server's resource bounds and timeouts ([`ServerConfig`]), with sidecar defaults.
//!
//! Every bound here is enforced by one module: request memory by [`super::budget`],
//! admission (queueing time, concurrency, deadlines) by [`super::admission`], the
//! connection cap and the health reserve by [`super::connections`], the drain bound by
//! [`super::run_with`]. Access control (the token file, running open) is
//! `crate::auth` and [`super::access`]; the import and export directories bound the
//! files HTTP requests may read and write (`super::files`). The README's "Limits and load shedding" section documents what
//! each refusal looks like on the wire.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of one server. [`Default`] is the sidecar profile; [`ServerConfig::validate`]
/// checks a hand-made one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Memory all in-flight request bodies may take together: their bytes plus an
    /// estimate of what decoding them costs. A request that does not fit waits up to
    /// [`memory_wait`](Self::memory_wait), then gets 503. At least
    /// `max_body_bytes x (1 + the largest decode factor)`, so the largest body fits.
    pub request_memory_bytes: usize,
    /// How long a request waits for room in the memory budget.
    pub memory_wait: Duration,
    /// A body must arrive whole within this time of its request head (408 beyond).
    pub body_timeout: Duration,
    /// A request head must arrive whole within this time; also how long an idle
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// A request that waited longer than this to be started, in the runtime's queue
    /// behind other connections or for a concurrency slot, is refused with 503 (on the
    /// conditions of `super::admission`). `None`: never refused for waiting.
    pub max_queue_time: Option<Duration>,
    /// Requests in their work phase at once (after the body is read); more wait for a
    /// slot up to `max_queue_time`.
    pub max_concurrent_requests: usize,
    /// Connections served at once. `None`: derived from the descriptor limit at start
    /// (`super::connections::auto_max_connections`).
    pub max_connections: Option<usize>,
    /// Connections accepted beyond `max_connections` that may only ask `/healthz`,
    /// `/readyz` and `/metrics` (anything else gets 503); beyond these, connections are
    /// closed at once. Also the cap of the health listener's connections.
    pub health_connections: usize,
    /// How long in-flight requests may run after shutdown begins (SIGTERM, SIGINT)
    /// before their connections are dropped.
    pub shutdown_grace: Duration,
    /// The token file (`crate::auth`): with one, every request needs a token whose
    /// rules allow it; reloaded when it changes. `None`: no access control.
    pub token_file: Option<PathBuf>,
    /// Without a token file, serve a non-loopback address anyway (everyone who can
    /// reach the port may read, push and change everything).
    pub insecure_open: bool,
    /// Directories HTTP loads may read input files from (`POST /v1/groups/{g}/loads`
    /// with `"input"`); empty: only uploaded bodies are loaded over HTTP.
    pub import_dirs: Vec<PathBuf>,
    /// Directories serving-log exports over HTTP may write to; empty: none.
    pub export_dirs: Vec<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 16 << 20,
            request_memory_bytes: 512 << 20,
            memory_wait: Duration::from_millis(500),
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            max_queue_time: Some(Duration::from_millis(1)),
            max_concurrent_requests: 256,
            max_connections: None,
            health_connections: 16,
            shutdown_grace: Duration::from_secs(10),
            token_file: None,
            insecure_open: false,
            import_dirs: Vec::new(),
            export_dirs: Vec::new(),
        }
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Names the setting and the rule it breaks.
    #[error("invalid server setting `{setting}`: {reason}")]
    Invalid {
        /// The setting (its CLI flag without dashes).
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

impl ServerConfig {
    /// The least `request_memory_bytes` for this `max_body_bytes`: the largest body
    /// and its decoded estimate.
    pub fn min_request_memory_bytes(&self) -> usize {
        self.max_body_bytes
            .saturating_mul(1 + super::budget::MAX_DECODE_FACTOR)
    }

    /// Checks every bound: positive sizes and times, and a memory budget that can hold
    /// the largest body with its decoded estimate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(invalid("max-body-bytes", "must be at least 1"));
        }
        if self.request_memory_bytes < self.min_request_memory_bytes() {
            return Err(invalid(
                "request-memory-bytes",
                format!(
                    "{} is less than {} (max-body-bytes {} with its decoded estimate): the largest body could never be read",
                    self.request_memory_bytes,
                    self.min_request_memory_bytes(),
                    self.max_body_bytes
                ),
            ));
        }
        for (setting, value) in [
            ("body-timeout", self.body_timeout),
            ("header-timeout", self.header_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(setting, "must be longer than 0"));
            }
        }
        if self.max_queue_time.is_some_and(|d| d.is_zero()) {
            return Err(invalid(
                "max-queue-time",
                "must be longer than 0 (or off: never refuse for waiting)",
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(invalid("max-concurrent-requests", "must be at least 1"));
        }
        if self.max_connections == Some(0) {
            return Err(invalid("max-connections", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ServerConfig::default().validate().expect("valid defaults");
    }

    #[test]
    fn bad_settings_are_named() {
        type Change = fn(&mut ServerConfig);
        let cases: [(&str, Change); 6] = [
            ("max-body-bytes", |c| c.max_body_bytes = 0),
            ("request-memory-bytes", |c| {
                c.request_memory_bytes = c.min_request_memory_bytes() - 1;
            }),
            ("body-timeout", |c| c.body_timeout = Duration::ZERO),
            ("max-queue-time", |c| {
                c.max_queue_time = Some(Duration::ZERO)
            }),
            ("max-concurrent-requests", |c| c.max_concurrent_requests = 0),
            ("max-connections", |c| c.max_connections = Some(0)),
        ];
        for (setting, change) in cases {
            let mut config = ServerConfig::default();
            change(&mut config);
            let err = config.validate().expect_err(setting);
            assert!(err.to_string().contains(setting), "{setting}: {err}");
        }
        let off = ServerConfig {
            max_queue_time: None,
            ..ServerConfig::default()
        };
        off.validate().expect("queue-time shedding may be off");
    }
}
