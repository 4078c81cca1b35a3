//! The token file: TOML, one `[[principal]]` table per principal.
//!
//! ```toml
//! [[principal]]
//! id = "ranker"                     # [a-z0-9_-], the middle part of its token
//! team = "ranking"
//! token_sha256 = "9f86d0...(64 hex digits)"
//! scopes = ["read"]                 # read, push, admin
//! read = ["product_*", "group:user_daily"]
//! push = []
//! max_sensitivity = "internal"      # public, internal, confidential, pii
//! expires = "2027-06-30T00:00:00Z"  # RFC 3339 or epoch ms; absent: never
//! ```
//!
//! `featstore token new --id ranker --team ranking ...` prints a new token and its
//! table. Unknown keys are refused, so a misspelt rule never silently allows nothing
//! or everything. Reading a file never logs or echoes a digest.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::pattern::Patterns;
use super::principal::{Principal, Scope};
use super::token;
use crate::registry::Sensitivity;

/// One `[[principal]]` table as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    /// Principal id.
    pub id: String,
    /// Team.
    pub team: String,
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Read patterns.
    #[serde(default)]
    pub read: Vec<String>,
    /// Push patterns.
    #[serde(default)]
    pub push: Vec<String>,
    /// Highest sensitivity class readable (default `internal`).
    #[serde(default)]
    pub max_sensitivity: Sensitivity,
    /// Expiry, RFC 3339 or epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

/// The principals of one version of the token file, by id.
#[derive(Debug, Default)]
pub struct TokenSet {
    by_id: HashMap<String, Arc<Principal>, ahash::RandomState>,
}

impl TokenSet {
    /// Parses a token file's text. The error names the principal and the field, never
    /// a digest.
    pub fn parse(text: &str) -> Result<TokenSet, String> {
        let body: FileBody = toml::from_str(text).map_err(|e| {
            // toml's message quotes the offending line; keep only its first line,
            // which names the key and position.
            let message = e.message().to_owned();
            match e.span() {
                Some(span) => format!("{message} (at byte {})", span.start),
                None => message,
            }
        })?;
        let mut by_id: HashMap<String, Arc<Principal>, ahash::RandomState> = HashMap::default();
        for entry in body.principal {
            let id = entry.id.clone();
            let principal = build(entry).map_err(|e| format!("principal `{id}`: {e}"))?;
            if by_id.insert(id.clone(), Arc::new(principal)).is_some() {
                return Err(format!("principal `{id}` is listed twice"));
            }
        }
        Ok(TokenSet { by_id })
    }

    /// The principal of `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Principal>> {
        self.by_id.get(id)
    }

    /// Principals listed.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no principal is listed (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// True for a valid principal id: `[a-z0-9_-]`, 1 to 64 bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn build(entry: PrincipalEntry) -> Result<Principal, String> {
    if !valid_id(&entry.id) {
        return Err("the id must be 1 to 64 of [a-z0-9_-]".into());
    }
    if entry.team.trim().is_empty() {
        return Err("team must not be empty".into());
    }
    let digest =
        token::digest_from_hex(&entry.token_sha256).map_err(|e| format!("token_sha256: {e}"))?;
    let read = Patterns::parse(&entry.read).map_err(|e| format!("read: {e}"))?;
    let push = Patterns::parse(&entry.push).map_err(|e| format!("push: {e}"))?;
    let expires_ms = entry
        .expires
        .as_deref()
        .map(crate::types::parse_timestamp_ms)
        .transpose()
        .map_err(|e| format!("expires: {e}"))?;
    Ok(Principal::new(
        entry.id,
        entry.team,
        digest,
        entry.scopes,
        read,
        push,
        entry.max_sensitivity,
        expires_ms,
    ))
}

/// The `[[principal]]` table of `entry`, as the CLI prints it.
pub fn entry_toml(entry: &PrincipalEntry) -> Result<String, String> {
    #[derive(Serialize)]
    struct One<'a> {
        principal: [&'a PrincipalEntry; 1],
    }
    toml::to_string(&One { principal: [entry] }).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> String {
        format!(
            "[[principal]]\nid = \"{id}\"\nteam = \"t\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\nread = [\"*\"]\n",
            token::to_hex(&token::digest("fst.x.y"))
        )
    }

    #[test]
    fn a_file_lists_principals() {
        let set = TokenSet::parse(&format!("{}{}", entry("a"), entry("b"))).expect("parses");
        assert_eq!(set.len(), 2);
        let a = set.get("a").expect("a");
        assert!(a.has(Scope::Read) && !a.has(Scope::Admin));
        assert_eq!(
            a.max_sensitivity,
            Sensitivity::Internal,
            "the default class"
        );
        assert!(TokenSet::parse("").expect("empty file").is_empty());
    }

    #[test]
    fn bad_files_are_refused_naming_the_problem() {
        let digest = token::to_hex(&token::digest("fst.x.y"));
        for (text, want) in [
            (format!("{}{}", entry("a"), entry("a")), "listed twice"),
            (entry("A"), "the id must be"),
            (entry("a").replace(&digest, "abc"), "token_sha256"),
            (entry("a").replace("\"*\"", "\"a b\""), "read: pattern"),
            (format!("{}expires = \"soon\"\n", entry("a")), "expires"),
            (format!("{}reed = []\n", entry("a")), "unknown field"),
            (
                entry("a").replace("\"read\"]", "\"root\"]"),
                "unknown variant",
            ),
            ("[[principal]\n".to_owned(), "at byte"),
        ] {
            let err = TokenSet::parse(&text).expect_err(want);
            assert!(err.contains(want), "{want}: {err}");
            assert!(!err.contains(&digest), "never echoes a digest: {err}");
        }
    }

    #[test]
    fn printed_entries_read_back() {
        let e = PrincipalEntry {
            id: "ranker".into(),
            team: "ranking".into(),
            token_sha256: token::to_hex(&token::digest("fst.ranker.s")),
            scopes: vec![Scope::Read, Scope::Push],
            read: vec!["product_*".into()],
            push: vec!["group:clicks".into()],
            max_sensitivity: Sensitivity::Confidential,
            expires: Some("2030-01-01T00:00:00Z".into()),
        };
        let text = entry_toml(&e).expect("encodes");
        let set = TokenSet::parse(&text).expect("reads back");
        let p = set.get("ranker").expect("ranker");
        assert_eq!(p.scopes, vec![Scope::Read, Scope::Push]);
        assert_eq!(p.max_sensitivity, Sensitivity::Confidential);
        assert!(p.expires_ms.is_some());
    }
}
