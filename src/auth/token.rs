//! Bearer tokens: their text, how a new one is made, and the digest the token file
//! keeps instead of the secret.
//!
//! A token is `fst.<principal id>.<secret>`, the secret 64 hex digits (256 random bits
//! from the operating system's generator, through `rand`'s thread generator). The
//! token file keeps `SHA-256(token)` in hex. SHA-256 rather than a password hash
//! (argon2, PBKDF2): the secret is machine-made with 256 bits of entropy, so there is
//! no dictionary to slow down, and a password hash's deliberate milliseconds would be
//! paid on every request. The id in the token's text finds the principal in O(1); the
//! digests are then compared in constant time (`subtle`), so the comparison's timing
//! says nothing about the secret.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every token.
pub const PREFIX: &str = "fst";

/// Hex digits of a generated secret.
pub const SECRET_HEX_DIGITS: usize = 64;

/// A token's SHA-256.
pub type TokenDigest = [u8; 32];

/// The digest kept in the token file for `token`.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two digests.
pub fn digests_equal(a: &TokenDigest, b: &TokenDigest) -> bool {
    a.ct_eq(b).into()
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The 32 bytes of a 64-digit hex digest.
pub fn digest_from_hex(text: &str) -> Result<TokenDigest, String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!(
            "a SHA-256 digest is 64 hex digits, not {}",
            text.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let nibble = |c: u8| -> Result<u8, String> {
            char::from(c)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
                .ok_or_else(|| "a SHA-256 digest holds only hex digits".to_owned())
        };
        if let (Some(slot), [hi, lo]) = (out.get_mut(i), pair) {
            *slot = (nibble(*hi)? << 4) | nibble(*lo)?;
        }
    }
    Ok(out)
}

/// The principal id a token names, when it has the token syntax.
pub fn principal_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?.strip_prefix('.')?;
    let (id, secret) = rest.rsplit_once('.')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// A new token for principal `id`.
pub fn generate(id: &str) -> String {
    use rand::RngCore;
    let mut secret = [0u8; SECRET_HEX_DIGITS / 2];
    rand::rng().fill_bytes(&mut secret);
    format!("{PREFIX}.{id}.{}", to_hex(&secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_name_their_principal_and_differ() {
        let a = generate("ranker");
        let b = generate("ranker");
        assert_ne!(a, b);
        assert_eq!(principal_of(&a), Some("ranker"));
        assert_eq!(a.len(), "fst.ranker.".len() + SECRET_HEX_DIGITS);
        assert!(digests_equal(&digest(&a), &digest(&a)));
        assert!(!digests_equal(&digest(&a), &digest(&b)));
    }

    #[test]
    fn malformed_tokens_name_no_principal() {
        for bad in [
            "", "fst", "fst.", "fst.x", "fst..abc", "fst.x.", "abc.x.y", "x",
        ] {
            assert_eq!(principal_of(bad), None, "{bad}");
        }
        assert_eq!(principal_of("fst.a.b.c"), Some("a.b"));
    }

    #[test]
    fn hex_round_trips() {
        let d = digest("fst.x.y");
        assert_eq!(digest_from_hex(&to_hex(&d)), Ok(d));
        assert!(digest_from_hex("abc").is_err());
        assert!(digest_from_hex(&"g".repeat(64)).is_err());
        // SHA-256("abc"), the FIPS 180-2 example.
        assert_eq!(
            to_hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
