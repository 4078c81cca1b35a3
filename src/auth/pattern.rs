//! Name patterns of a principal's read and push rules, compiled once when the token
//! file is read.
//!
//! A pattern is a feature-name glob (`user_*`, `*_ctr`, `*`, `product_price`) or, with
//! the prefix `group:`, a glob over the feature's group (`group:product_daily`). `*`
//! matches any run of characters, `?` none; there is no other syntax, so a pattern
//! never needs escaping (registry names are `[a-z0-9_.]`).
//!
//! Stateless once built; safe from any thread.

/// What a pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The feature's name (without `@version`).
    Feature,
    /// The feature's group.
    Group,
}

/// One compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Glob {
    /// `*`.
    Any,
    /// No `*`.
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
    /// Anything else: the literal pieces between the `*`s, first and last anchored.
    Pieces(Vec<String>),
}

impl Glob {
    fn compile(text: &str) -> Glob {
        let stars = text.matches('*').count();
        if text == "*" || (stars > 0 && text.chars().all(|c| c == '*')) {
            return Glob::Any;
        }
        match stars {
            0 => Glob::Exact(text.to_owned()),
            1 if text.ends_with('*') => Glob::Prefix(text.trim_end_matches('*').to_owned()),
            1 if text.starts_with('*') => Glob::Suffix(text.trim_start_matches('*').to_owned()),
            _ => Glob::Pieces(text.split('*').map(str::to_owned).collect()),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(e) => name == e,
            Glob::Prefix(p) => name.starts_with(p.as_str()),
            Glob::Suffix(s) => name.ends_with(s.as_str()),
            Glob::Pieces(pieces) => {
                let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
                    return true;
                };
                let Some(mut rest) = name.strip_prefix(first.as_str()) else {
                    return false;
                };
                let middle = pieces.get(1..pieces.len().saturating_sub(1)).unwrap_or(&[]);
                for piece in middle {
                    match rest.find(piece.as_str()) {
                        Some(at) => rest = &rest[at + piece.len()..],
                        None => return false,
                    }
                }
                rest.len() >= last.len() && rest.ends_with(last.as_str())
            }
        }
    }
}

/// One rule: a glob over feature names or group names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    target: Target,
    glob: Glob,
    text: String,
}

impl Pattern {
    /// Compiles `text` (`glob` or `group:glob`). Refuses an empty glob and characters
    /// no registry name holds.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (target, glob) = match text.strip_prefix("group:") {
            Some(glob) => (Target::Group, glob),
            None => (Target::Feature, text),
        };
        if glob.is_empty() {
            return Err(format!("pattern `{text}` is empty"));
        }
        if let Some(c) = glob
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.*".contains(*c)))
        {
            return Err(format!(
                "pattern `{text}` holds `{c}`: use lowercase letters, digits, `_`, `.` and `*`"
            ));
        }
        Ok(Pattern {
            target,
            glob: Glob::compile(glob),
            text: text.to_owned(),
        })
    }

    /// True when the pattern matches a feature `name` of `group`.
    pub fn matches(&self, name: &str, group: &str) -> bool {
        match self.target {
            Target::Feature => self.glob.matches(name),
            Target::Group => self.glob.matches(group),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A principal's patterns for one kind of access; empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns(Vec<Pattern>);

impl Patterns {
    /// Compiles every pattern, naming the first bad one.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Patterns, String> {
        texts
            .iter()
            .map(|t| Pattern::parse(t.as_ref()))
            .collect::<Result<_, _>>()
            .map(Patterns)
    }

    /// True when some pattern matches feature `name` of `group`.
    pub fn allows(&self, name: &str, group: &str) -> bool {
        self.0.iter().any(|p| p.matches(name, group))
    }

    /// True when there is no pattern (nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, name: &str, group: &str) -> bool {
        Pattern::parse(pattern)
            .expect("pattern")
            .matches(name, group)
    }

    #[test]
    fn globs_match_as_documented() {
        let g = "product_daily";
        for (pattern, name, want) in [
            ("*", "anything", true),
            ("**", "anything", true),
            ("product_ctr", "product_ctr", true),
            ("product_ctr", "product_ctr2", false),
            ("product_*", "product_ctr", true),
            ("product_*", "user_age", false),
            ("*_ctr", "product_ctr", true),
            ("*_ctr", "product_ctr_7d", false),
            ("p*_c*r", "product_ctr", true),
            ("p*_c*r", "product_cvx", false),
            ("p*_c*r", "user_ctr", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("u*r*e", "user_age", true),
        ] {
            assert_eq!(allows(pattern, name, g), want, "{pattern} vs {name}");
        }
        assert!(allows("group:product_*", "x", "product_daily"));
        assert!(!allows("group:product_*", "product_ctr", "user_daily"));
        assert!(
            !allows("product_daily", "x", "product_daily"),
            "names, not groups"
        );
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in ["", "group:", "User_*", "a b", "a/b", "group:x?"] {
            let err = Pattern::parse(bad).expect_err(bad);
            assert!(err.contains("pattern"), "{bad}: {err}");
        }
        assert!(Patterns::default().is_empty());
        assert!(
            !Patterns::default().allows("a", "b"),
            "no pattern allows nothing"
        );
    }
}
