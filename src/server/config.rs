//! The server's resource bounds ([`ServerConfig`]), with sidecar defaults.
//!
//! Every bound here is enforced by one module: request memory by [`super::budget`].
//! The README's "Limits and load shedding" section documents what each refusal looks
//! like on the wire.

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 16 << 20,
            request_memory_bytes: 512 << 20,
            memory_wait: Duration::from_millis(500),
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

    /// Checks every bound: positive sizes, and a memory budget that can hold the
    /// largest body with its decoded estimate.
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
        let cases: [(&str, Change); 2] = [
            ("max-body-bytes", |c| c.max_body_bytes = 0),
            ("request-memory-bytes", |c| {
                c.request_memory_bytes = c.min_request_memory_bytes() - 1;
            }),
        ];
        for (setting, change) in cases {
            let mut config = ServerConfig::default();
            change(&mut config);
            let err = config.validate().expect_err(setting);
            assert!(err.to_string().contains(setting), "{setting}: {err}");
        }
    }
}
