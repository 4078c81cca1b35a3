//! What a run drives: an HTTP server (featstore or the floor) or Redis, always at a
//! loopback address.
//!
//! Invariant: a [`Target`] only ever holds a loopback socket address. Every name a host
//! resolves to must be loopback, or the target is refused: the load generator is a
//! benchmark for this machine and must never flood a remote host by mistake.

use std::net::{SocketAddr, ToSocketAddrs};

/// Why a target was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// Not `http://host:port` or `redis://host:port`.
    #[error("target `{0}`: expected http://HOST:PORT or redis://HOST:PORT")]
    Syntax(String),
    /// The host did not resolve.
    #[error("target `{target}`: cannot resolve: {reason}")]
    Resolve {
        /// The target as given.
        target: String,
        /// The resolver's message.
        reason: String,
    },
    /// The host resolves to a non-loopback address.
    #[error(
        "target `{target}` resolves to {addr}, which is not a loopback address; loadgen only drives this machine"
    )]
    NotLoopback {
        /// The target as given.
        target: String,
        /// The offending address.
        addr: SocketAddr,
    },
}

/// The protocol a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (featstore or the floor).
    Http,
    /// RESP (Redis).
    Redis,
}

/// A loopback endpoint and its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Protocol.
    pub protocol: Protocol,
    /// Socket address; always loopback.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses `http://HOST:PORT` or `redis://HOST:PORT` (a trailing `/` is allowed) and
    /// resolves it, refusing any host that resolves to a non-loopback address.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        let syntax = || TargetError::Syntax(text.to_owned());
        let (protocol, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (Protocol::Http, rest)
        } else if let Some(rest) = text.strip_prefix("redis://") {
            (Protocol::Redis, rest)
        } else {
            return Err(syntax());
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(syntax());
        }
        let addr = loopback_addr(authority).map_err(|e| match e {
            TargetError::Syntax(_) => syntax(),
            TargetError::Resolve { reason, .. } => TargetError::Resolve {
                target: text.to_owned(),
                reason,
            },
            TargetError::NotLoopback { addr, .. } => TargetError::NotLoopback {
                target: text.to_owned(),
                addr,
            },
        })?;
        Ok(Target { protocol, addr })
    }

    /// `http://addr` or `redis://addr`.
    pub fn url(&self) -> String {
        match self.protocol {
            Protocol::Http => format!("http://{}", self.addr),
            Protocol::Redis => format!("redis://{}", self.addr),
        }
    }
}

/// Resolves `HOST:PORT` and returns its first address if every address it resolves to
/// is loopback.
pub fn loopback_addr(authority: &str) -> Result<SocketAddr, TargetError> {
    if !authority.contains(':') {
        return Err(TargetError::Syntax(authority.to_owned()));
    }
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| TargetError::Resolve {
            target: authority.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(TargetError::NotLoopback {
            target: authority.to_owned(),
            addr: *bad,
        });
    }
    addrs.first().copied().ok_or_else(|| TargetError::Resolve {
        target: authority.to_owned(),
        reason: "no address".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        let t = Target::parse("http://127.0.0.1:7070").expect("ok");
        assert_eq!(t.protocol, Protocol::Http);
        assert_eq!(t.addr, "127.0.0.1:7070".parse().expect("addr"));
        let t = Target::parse("redis://127.0.0.1:6379/").expect("ok");
        assert_eq!(t.protocol, Protocol::Redis);
        assert_eq!(t.url(), "redis://127.0.0.1:6379");
        assert!(Target::parse("http://[::1]:80").is_ok());
        assert!(Target::parse("http://127.8.9.10:80").is_ok());
        assert!(Target::parse("http://localhost:7070").is_ok());
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        for text in [
            "http://10.0.0.1:80",
            "http://192.168.1.2:7070",
            "redis://8.8.8.8:6379",
            "http://[2001:db8::1]:80",
            "http://0.0.0.0:7070",
        ] {
            match Target::parse(text) {
                Err(TargetError::NotLoopback { .. }) => {}
                other => panic!("{text}: expected NotLoopback, got {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_targets_are_refused() {
        for text in [
            "127.0.0.1:7070",
            "https://127.0.0.1:443",
            "http://127.0.0.1",
            "http://",
            "http://127.0.0.1:7070/v1/features",
            "http://user@127.0.0.1:7070",
            "ftp://127.0.0.1:21",
        ] {
            assert!(
                matches!(Target::parse(text), Err(TargetError::Syntax(_))),
                "{text}: {:?}",
                Target::parse(text)
            );
        }
    }
}
