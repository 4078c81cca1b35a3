//! Percent-decoding of path segments and parsing of query strings (RFC 3986, with the
//! `application/x-www-form-urlencoded` `+` rule for queries).
//!
//! Pure functions over `&str`; no state, safe from any thread. Decoding happens after
//! the path is split on `/`, so an escaped slash (`%2F`) stays inside its segment.

use std::fmt;

/// A path segment or query component that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    /// A `%` not followed by two hex digits, at this byte offset of the component.
    BadEscape {
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::BadEscape { offset } => write!(
                f,
                "bad percent-escape at byte {offset}: `%` must be followed by two hex digits"
            ),
            UrlError::NotUtf8 => f.write_str("percent-decoded text is not UTF-8"),
        }
    }
}

impl std::error::Error for UrlError {}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes in `input`; with `plus_as_space`, `+` becomes a space (query
/// strings). Path segments keep `+` as written.
pub fn percent_decode(input: &str, plus_as_space: bool) -> Result<String, UrlError> {
    let bytes = input.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'%' || (plus_as_space && b == b'+'))
    {
        return Ok(input.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_digit);
                let lo = bytes.get(i + 2).copied().and_then(hex_digit);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(UrlError::BadEscape { offset: i });
                };
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::NotUtf8)
}

/// Splits a query string into decoded `(key, value)` pairs, in order. Empty pairs
/// (`a=1&&b=2`) are skipped; a key without `=` has an empty value. Keys may repeat.
pub fn parse_query(query: Option<&str>) -> Result<Vec<(String, String)>, UrlError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok::<_, UrlError>((percent_decode(key, true)?, percent_decode(value, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(percent_decode("p1", false), Ok("p1".to_owned()));
        assert_eq!(percent_decode("", true), Ok(String::new()));
    }

    #[test]
    fn escapes_decode_in_either_case() {
        assert_eq!(percent_decode("a%2Fb%2fc", false), Ok("a/b/c".to_owned()));
        assert_eq!(percent_decode("%20x%41", false), Ok(" xA".to_owned()));
        assert_eq!(percent_decode("caf%C3%A9", false), Ok("café".to_owned()));
    }

    #[test]
    fn plus_is_a_space_only_in_queries() {
        assert_eq!(percent_decode("a+b", false), Ok("a+b".to_owned()));
        assert_eq!(percent_decode("a+b", true), Ok("a b".to_owned()));
        assert_eq!(percent_decode("a%2Bb", true), Ok("a+b".to_owned()));
    }

    #[test]
    fn bad_escapes_are_refused_with_their_offset() {
        assert_eq!(
            percent_decode("ab%", false),
            Err(UrlError::BadEscape { offset: 2 })
        );
        assert_eq!(
            percent_decode("%4", false),
            Err(UrlError::BadEscape { offset: 0 })
        );
        assert_eq!(
            percent_decode("x%zz", false),
            Err(UrlError::BadEscape { offset: 1 })
        );
        // A multi-byte character after `%` must not be sliced.
        assert_eq!(
            percent_decode("%é", false),
            Err(UrlError::BadEscape { offset: 0 })
        );
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(percent_decode("%FF", false), Err(UrlError::NotUtf8));
        assert_eq!(percent_decode("%C3", true), Err(UrlError::NotUtf8));
    }

    #[test]
    fn queries_split_into_decoded_pairs() {
        assert_eq!(parse_query(None), Ok(vec![]));
        assert_eq!(parse_query(Some("")), Ok(vec![]));
        let pairs = parse_query(Some("names=a,b&&x&tag=hello+world&k%3D=v%26")).expect("parses");
        assert_eq!(
            pairs,
            vec![
                ("names".to_owned(), "a,b".to_owned()),
                ("x".to_owned(), String::new()),
                ("tag".to_owned(), "hello world".to_owned()),
                ("k=".to_owned(), "v&".to_owned()),
            ]
        );
        assert_eq!(
            parse_query(Some("a=%G0")),
            Err(UrlError::BadEscape { offset: 0 })
        );
    }
}
