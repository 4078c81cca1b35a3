//! Access control: who may call the HTTP API, and for which features.
//!
//! It owns the token file ([`file`](mod@file)), the tokens' text and digests ([`token`]), the
//! principals and their rules ([`principal`]), the name patterns ([`pattern`]) and
//! [`Auth`], the server's live copy of the token file, reloaded when the file changes.
//! It is not a user directory or an identity provider: a principal is a line of the
//! token file, and the file is the whole truth.
//!
//! The model (README, "Security model"):
//! - with a token file, every request but `/healthz`, `/readyz`, `/metrics` and
//!   `/openapi.json` needs `Authorization: Bearer <token>` of an unexpired principal
//!   holding the route's scope ([`Scope`]); reads and pushes are further limited to
//!   the features the principal's patterns match, and reads to its highest
//!   sensitivity class. Nothing is allowed unless a rule allows it;
//! - without one, the server serves everyone, and refuses to bind a non-loopback
//!   address unless told to run open (`--insecure-open`).
//!
//! Invariants:
//! - the secret is never stored: the file holds `SHA-256(token)`; digests are compared
//!   in constant time;
//! - a reload swaps the whole token set atomically; a file that fails to parse keeps
//!   the set in force (the failure is logged and counted, never half-applied);
//! - authentication is one hash-map lookup and one SHA-256 per request.
//!
//! Thread-safety: [`Auth`] is `Send + Sync`; the set in force is an `ArcSwap` read
//! without locking; [`Auth::poll`] is called from one task at a time (a mutex guards
//! the file's last seen stamp).

pub mod file;
pub mod pattern;
pub mod principal;
pub mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use file::{PrincipalEntry, TokenSet};
pub use principal::{Principal, Scope};

use crate::types::TimestampMs;

/// How often the server looks at the token file for a change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why a request was not authenticated (a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Missing,
    /// The header is not `Bearer <token>` or the token not `fst.<id>.<secret>`.
    #[error("malformed credentials: expected `Authorization: Bearer fst.<id>.<secret>`")]
    Malformed,
    /// No principal has this token (unknown id or wrong secret; which is not said).
    #[error("invalid token")]
    Invalid,
    /// The principal's token expired.
    #[error("token of principal `{0}` expired")]
    Expired(String),
}

/// The token file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// Reading it failed.
    #[error("reading token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Its contents are not a valid token file.
    #[error("token file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What the file looked like when last read: a change of any part is a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp_of(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// What a poll of the token file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file changed and its new principals are in force.
    Applied {
        /// Principals now listed.
        principals: usize,
    },
    /// The file changed but could not be used; the previous principals stay in force.
    Rejected {
        /// Why (names the problem, never quotes a digest).
        reason: String,
    },
}

/// The server's live copy of its token file.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    current: ArcSwap<TokenSet>,
    /// The stamp of the file when last read, good or bad.
    seen: Mutex<Option<Stamp>>,
    applied: AtomicU64,
    rejected: AtomicU64,
}

impl Auth {
    /// Reads the token file at `path`; a file that is missing or invalid at start is
    /// an error (the server does not start).
    pub fn open(path: &Path) -> Result<Auth, TokenFileError> {
        let stamp = stamp_of(path).map_err(|source| TokenFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let set = read_set(path)?;
        Ok(Auth {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(set),
            seen: Mutex::new(Some(stamp)),
            applied: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// The token file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The principals in force.
    pub fn tokens(&self) -> Arc<TokenSet> {
        self.current.load_full()
    }

    /// The principal of an `Authorization` header value at `now`.
    pub fn authenticate(
        &self,
        header: Option<&[u8]>,
        now: TimestampMs,
    ) -> Result<Arc<Principal>, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        let id = token::principal_of(token).ok_or(AuthError::Malformed)?;
        let set = self.current.load();
        let digest = token::digest(token);
        let principal = set.get(id).ok_or(AuthError::Invalid)?;
        if !token::digests_equal(&digest, &principal.digest) {
            return Err(AuthError::Invalid);
        }
        if principal.expired(now) {
            return Err(AuthError::Expired(principal.id.clone()));
        }
        Ok(principal.clone())
    }

    /// Looks at the file: when it changed since last read, reads it and swaps in its
    /// principals, or keeps the ones in force when it cannot be used. `None` when it
    /// has not changed.
    pub fn poll(&self) -> Option<Reload> {
        let mut seen = self.seen.lock();
        let outcome = match stamp_of(&self.path) {
            Ok(stamp) if Some(stamp) == *seen => return None,
            Ok(stamp) => {
                *seen = Some(stamp);
                match read_set(&self.path) {
                    Ok(set) => {
                        let principals = set.len();
                        self.current.store(Arc::new(set));
                        Reload::Applied { principals }
                    }
                    Err(e) => Reload::Rejected {
                        reason: e.to_string(),
                    },
                }
            }
            Err(e) => {
                // A missing file (a rename in progress, or removed) keeps the set;
                // reported once until the file is back.
                if seen.is_none() {
                    return None;
                }
                *seen = None;
                Reload::Rejected {
                    reason: format!("reading token file {}: {e}", self.path.display()),
                }
            }
        };
        match &outcome {
            Reload::Applied { principals } => {
                self.applied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %self.path.display(), principals, "token file reloaded");
            }
            Reload::Rejected { reason } => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    path = %self.path.display(),
                    error = %reason,
                    "token file not reloaded; the previous principals stay in force"
                );
            }
        }
        Some(outcome)
    }

    /// OpenMetrics families of the token file (before `# EOF`).
    pub fn render_metrics(&self) -> String {
        format!(
            "# TYPE featstore_token_file_reloads counter\n\
             # HELP featstore_token_file_reloads Changes of the token file seen, by outcome (rejected: the previous principals stayed in force).\n\
             featstore_token_file_reloads_total{{outcome=\"applied\"}} {}\n\
             featstore_token_file_reloads_total{{outcome=\"rejected\"}} {}\n\
             # TYPE featstore_token_file_principals gauge\n\
             # HELP featstore_token_file_principals Principals of the token file in force.\n\
             featstore_token_file_principals {}\n",
            self.applied.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.current.load().len()
        )
    }
}

fn read_set(path: &Path) -> Result<TokenSet, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    TokenSet::parse(&text).map_err(|reason| TokenFileError::Invalid {
        path: path.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(dir: &Path, entries: &[(&str, &str, Option<&str>)]) -> PathBuf {
        let mut text = String::new();
        for (id, token, expires) in entries {
            text.push_str(&format!(
                "[[principal]]\nid = \"{id}\"\nteam = \"t\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\nread = [\"*\"]\n",
                token::to_hex(&token::digest(token))
            ));
            if let Some(e) = expires {
                text.push_str(&format!("expires = \"{e}\"\n"));
            }
        }
        let path = dir.join("tokens.toml");
        let tmp = dir.join("tokens.toml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        path
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn tokens_authenticate_their_principal_only() {
        let dir = tempfile::tempdir().expect("dir");
        let a = token::generate("a");
        let path = file_with(
            dir.path(),
            &[
                ("a", &a, None),
                ("old", "fst.old.x", Some("2001-01-01T00:00:00Z")),
            ],
        );
        let auth = Auth::open(&path).expect("opens");
        let now = crate::types::now_ms();
        assert_eq!(
            auth.authenticate(Some(&bearer(&a)), now).expect("a").id,
            "a"
        );
        assert_eq!(
            auth.authenticate(Some(format!("bearer  {a} ").as_bytes()), now)
                .expect("scheme is case-insensitive")
                .id,
            "a"
        );
        assert_eq!(
            auth.authenticate(None, now).expect_err("refused"),
            AuthError::Missing
        );
        for malformed in ["Basic abc", "Bearer", "Bearer abc", "Bearer fst.a", "x"] {
            assert_eq!(
                auth.authenticate(Some(malformed.as_bytes()), now)
                    .expect_err("refused"),
                AuthError::Malformed,
                "{malformed}"
            );
        }
        let wrong = format!("{}0", &a[..a.len() - 1]);
        let wrong = if wrong == a {
            format!("{}1", &a[..a.len() - 1])
        } else {
            wrong
        };
        assert_eq!(
            auth.authenticate(Some(&bearer(&wrong)), now)
                .expect_err("refused"),
            AuthError::Invalid
        );
        assert_eq!(
            auth.authenticate(Some(&bearer("fst.nobody.abc")), now)
                .expect_err("refused"),
            AuthError::Invalid
        );
        assert_eq!(
            auth.authenticate(Some(&bearer("fst.old.x")), now)
                .expect_err("refused"),
            AuthError::Expired("old".into())
        );
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().expect("dir");
        let path = file_with(dir.path(), &[("a", "fst.a.1", None)]);
        let auth = Auth::open(&path).expect("opens");
        let now = crate::types::now_ms();
        assert_eq!(auth.poll(), None, "unchanged");
        file_with(dir.path(), &[("b", "fst.b.2", None)]);
        assert_eq!(auth.poll(), Some(Reload::Applied { principals: 1 }));
        assert!(auth.authenticate(Some(&bearer("fst.a.1")), now).is_err());
        assert!(auth.authenticate(Some(&bearer("fst.b.2")), now).is_ok());
        std::fs::write(dir.path().join("tokens.toml.tmp"), "[[principal]\nbroken").expect("w");
        std::fs::rename(dir.path().join("tokens.toml.tmp"), &path).expect("rename");
        assert!(matches!(auth.poll(), Some(Reload::Rejected { .. })));
        assert!(
            auth.authenticate(Some(&bearer("fst.b.2")), now).is_ok(),
            "the previous set stays in force"
        );
        assert_eq!(auth.poll(), None, "a bad file is reported once");
        std::fs::remove_file(&path).expect("rm");
        assert!(matches!(auth.poll(), Some(Reload::Rejected { .. })));
        assert_eq!(auth.poll(), None);
        assert!(auth.authenticate(Some(&bearer("fst.b.2")), now).is_ok());
        let text = auth.render_metrics();
        assert!(text.contains("outcome=\"applied\"} 1"), "{text}");
        assert!(text.contains("outcome=\"rejected\"} 2"), "{text}");
    }

    #[test]
    fn a_missing_or_bad_file_at_start_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(matches!(
            Auth::open(&dir.path().join("none.toml")),
            Err(TokenFileError::Io { .. })
        ));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "principal = 3").expect("write");
        assert!(matches!(
            Auth::open(&bad),
            Err(TokenFileError::Invalid { .. })
        ));
    }
}
