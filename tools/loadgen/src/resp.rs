//! RESP2, the Redis protocol: encoding commands and parsing replies.
//!
//! A command is an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`). Replies are
//! simple strings (`+OK`), errors (`-ERR ..`), integers (`:1`), bulk strings (`$3\r\nabc`,
//! `$-1` for nil) and arrays (`*2 ..`, `*-1` for nil) of replies.
//!
//! Two parsers share one grammar: [`decode`] builds a [`Reply`] (tests, loading), and
//! [`scan`] only measures one reply and notes whether it holds an error, allocating
//! nothing (the load path, where a ranking pipeline returns 101 arrays of 50 values).
//! Both return `Ok(None)` when the buffer holds only part of a reply, so a reader can
//! append more bytes and retry. Stateless; safe from any thread.

/// Largest bulk string or array length accepted (Redis's own limit is 512 MB).
pub const MAX_LEN: i64 = 512 * 1024 * 1024;

/// A malformed reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespError {
    /// An unknown type byte.
    #[error("RESP: unexpected type byte 0x{0:02x}")]
    BadType(u8),
    /// A length or integer that is not a number, or out of range.
    #[error("RESP: bad length or integer `{0}`")]
    BadNumber(String),
    /// A bulk string not followed by CRLF.
    #[error("RESP: bulk string not terminated by CRLF")]
    MissingCrlf,
    /// Arrays nested too deeply.
    #[error("RESP: arrays nested deeper than {0}")]
    TooDeep(usize),
}

/// One parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-text`.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n` bytes, `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` replies, `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

/// What [`scan`] learns about one reply without building it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes the reply takes.
    pub len: usize,
    /// Whether it is, or contains, an error reply.
    pub error: bool,
}

/// Deepest array nesting accepted.
const MAX_DEPTH: usize = 8;

/// Appends `args` as one command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    push_header(out, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        push_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The line starting at `pos` (without CRLF) and the position after its CRLF.
fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((rest.get(..end)?, pos + end + 2))
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| RespError::BadNumber(String::from_utf8_lossy(text).into_owned()))
}

fn length(text: &[u8]) -> Result<i64, RespError> {
    let n = number(text)?;
    if !(-1..=MAX_LEN).contains(&n) {
        return Err(RespError::BadNumber(n.to_string()));
    }
    Ok(n)
}

/// A reply parsed either into a [`Reply`] or just measured.
trait Sink: Sized {
    fn simple(text: &[u8]) -> Self;
    fn error(text: &[u8]) -> Self;
    fn integer(n: i64) -> Self;
    fn bulk(bytes: Option<&[u8]>) -> Self;
    fn array(items: Option<Vec<Self>>) -> Self;
    /// Whether array items must be kept (false: only their error flags count).
    const KEEP: bool;
    fn is_error(&self) -> bool;
}

impl Sink for Reply {
    fn simple(text: &[u8]) -> Self {
        Reply::Simple(String::from_utf8_lossy(text).into_owned())
    }
    fn error(text: &[u8]) -> Self {
        Reply::Error(String::from_utf8_lossy(text).into_owned())
    }
    fn integer(n: i64) -> Self {
        Reply::Integer(n)
    }
    fn bulk(bytes: Option<&[u8]>) -> Self {
        Reply::Bulk(bytes.map(<[u8]>::to_vec))
    }
    fn array(items: Option<Vec<Self>>) -> Self {
        Reply::Array(items)
    }
    const KEEP: bool = true;
    fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// The error flag alone.
struct Flag(bool);

impl Sink for Flag {
    fn simple(_: &[u8]) -> Self {
        Flag(false)
    }
    fn error(_: &[u8]) -> Self {
        Flag(true)
    }
    fn integer(_: i64) -> Self {
        Flag(false)
    }
    fn bulk(_: Option<&[u8]>) -> Self {
        Flag(false)
    }
    fn array(_: Option<Vec<Self>>) -> Self {
        Flag(false)
    }
    const KEEP: bool = false;
    fn is_error(&self) -> bool {
        self.0
    }
}

/// Parses one reply at `pos`: the value and the position after it.
fn parse<S: Sink>(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(S, usize)>, RespError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, pos + 1) else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((S::simple(text), next))),
        b'-' => Ok(Some((S::error(text), next))),
        b':' => Ok(Some((S::integer(number(text)?), next))),
        b'$' => {
            let n = length(text)?;
            if n < 0 {
                return Ok(Some((S::bulk(None), next)));
            }
            let end = next + n as usize;
            let (Some(bytes), Some(crlf)) = (buf.get(next..end), buf.get(end..end + 2)) else {
                return Ok(None);
            };
            if crlf != b"\r\n" {
                return Err(RespError::MissingCrlf);
            }
            Ok(Some((S::bulk(Some(bytes)), end + 2)))
        }
        b'*' => {
            let n = length(text)?;
            if n < 0 {
                return Ok(Some((S::array(None), next)));
            }
            if depth >= MAX_DEPTH {
                return Err(RespError::TooDeep(MAX_DEPTH));
            }
            let mut items = Vec::new();
            let mut error = false;
            let mut at = next;
            for _ in 0..n {
                let Some((item, after)) = parse::<S>(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                error |= item.is_error();
                if S::KEEP {
                    items.push(item);
                }
                at = after;
            }
            let value = if error && !S::KEEP {
                S::error(b"")
            } else {
                S::array(Some(items))
            };
            Ok(Some((value, at)))
        }
        other => Err(RespError::BadType(other)),
    }
}

/// Parses the reply at the start of `buf`: the reply and the bytes it took, or `None`
/// if `buf` holds only part of it.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    parse::<Reply>(buf, 0, 0)
}

/// Measures the reply at the start of `buf` without building it; `None` if `buf`
/// holds only part of it.
pub fn scan(buf: &[u8]) -> Result<Option<Scanned>, RespError> {
    Ok(parse::<Flag>(buf, 0, 0)?.map(|(flag, len)| Scanned { len, error: flag.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &["HMGET", "product:p1", "f00"]);
        assert_eq!(
            out,
            b"*3\r\n$5\r\nHMGET\r\n$10\r\nproduct:p1\r\n$3\r\nf00\r\n".to_vec()
        );
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET".as_slice(), b"", b"a\r\nb"]);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n".to_vec()
        );
    }

    #[test]
    fn every_reply_type_decodes() {
        let cases: Vec<(&[u8], Reply)> = vec![
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (b"-ERR wrong\r\n", Reply::Error("ERR wrong".into())),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$3\r\nabc\r\n", Reply::Bulk(Some(b"abc".to_vec()))),
            (b"$0\r\n\r\n", Reply::Bulk(Some(Vec::new()))),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"$4\r\na\r\nb\r\n", Reply::Bulk(Some(b"a\r\nb".to_vec()))),
            (b"*-1\r\n", Reply::Array(None)),
            (b"*0\r\n", Reply::Array(Some(vec![]))),
            (
                b"*3\r\n$3\r\n0.5\r\n$-1\r\n*1\r\n:7\r\n",
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"0.5".to_vec())),
                    Reply::Bulk(None),
                    Reply::Array(Some(vec![Reply::Integer(7)])),
                ])),
            ),
        ];
        for (bytes, want) in cases {
            let mut buf = bytes.to_vec();
            buf.extend_from_slice(b"+NEXT\r\n");
            let (got, used) = decode(&buf).expect("valid").expect("complete");
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(used, bytes.len());
            let scanned = scan(&buf).expect("valid").expect("complete");
            assert_eq!(scanned.len, bytes.len());
            assert_eq!(scanned.error, matches!(want, Reply::Error(_)));
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let reply = b"*2\r\n$5\r\nhello\r\n*2\r\n:1\r\n-ERR x\r\n";
        for cut in 0..reply.len() {
            assert_eq!(decode(&reply[..cut]), Ok(None), "cut {cut}");
            assert_eq!(scan(&reply[..cut]), Ok(None), "cut {cut}");
        }
        let scanned = scan(reply).expect("valid").expect("complete");
        assert_eq!(scanned.len, reply.len());
        assert!(scanned.error, "an error nested in an array is reported");
    }

    #[test]
    fn encoded_commands_decode_back() {
        let args = ["HSET", "user:u1", "uf00", "0.25", "uf01", "-1"];
        let mut out = Vec::new();
        encode_command(&mut out, &args);
        let (reply, used) = decode(&out).expect("valid").expect("complete");
        assert_eq!(used, out.len());
        let want = Reply::Array(Some(
            args.iter()
                .map(|a| Reply::Bulk(Some(a.as_bytes().to_vec())))
                .collect(),
        ));
        assert_eq!(reply, want);
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert_eq!(decode(b"?x\r\n"), Err(RespError::BadType(b'?')));
        assert!(matches!(decode(b":abc\r\n"), Err(RespError::BadNumber(_))));
        assert!(matches!(decode(b"$-2\r\n"), Err(RespError::BadNumber(_))));
        assert!(matches!(
            decode(b"$99999999999\r\n"),
            Err(RespError::BadNumber(_))
        ));
        assert_eq!(decode(b"$3\r\nabcXY"), Err(RespError::MissingCrlf));
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert_eq!(decode(deep.as_bytes()), Err(RespError::TooDeep(MAX_DEPTH)));
        assert_eq!(scan(b"?x\r\n"), Err(RespError::BadType(b'?')));
    }
}
