//! One test per find, named after it, each saying what broke.

use featstore_format::codec::key::decode_key;

/// Found by the `codec_key` fuzz target's round-trip oracle (crash input
/// `00 00 00 00 10 00`): `decode_key` accepts an entity-id length of 0, and of more
/// than 1024, although `storage-format.md` ("Keys": L is 1..=1024) and
/// `encode_key_into` reject them, so a key it decodes could not be re-encoded. Fixed in
/// `crates/format/src/codec/key.rs`: `decode_key` now checks the range.
#[test]
fn decode_key_accepts_ids_encode_rejects() {
    assert!(decode_key(&[0, 0, 0, 0, 0x10, 0]).is_err(), "empty id");
    let mut long = vec![0x04, 0x01]; // L = 1025, big-endian
    long.extend([b'x'; 1025]);
    long.extend([0, 0, 0, 1]);
    assert!(decode_key(&long).is_err(), "1025-byte id");
}
