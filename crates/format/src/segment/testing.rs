//! Helpers for tests and fuzzers that need segments which pass the checksums but break
//! a deeper rule. Not for production paths: they make corrupt bytes look intact.

use super::layout::{HEADER_CRC_OFFSET, HEADER_LEN, SECTION_ENTRY_LEN, Section, read_u64};

/// Recomputes every section checksum whose section lies within `bytes`, then the
/// header checksum, in place. Returns false (and changes nothing) when `bytes` is
/// shorter than a header.
pub fn reseal(bytes: &mut [u8]) -> bool {
    if bytes.len() < HEADER_LEN {
        return false;
    }
    for section in Section::ALL {
        let at = section.entry_offset();
        let (Some(offset), Some(len)) = (read_u64(bytes, at), read_u64(bytes, at + 8)) else {
            continue;
        };
        let body = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?));
        if let Some(body) = body {
            let crc = crc32fast::hash(body).to_le_bytes();
            let crc_at = at + SECTION_ENTRY_LEN - crc.len();
            if let Some(dst) = bytes.get_mut(crc_at..crc_at + crc.len()) {
                dst.copy_from_slice(&crc);
            }
        }
    }
    let crc = bytes
        .get(..HEADER_CRC_OFFSET)
        .map(crc32fast::hash)
        .unwrap_or_default()
        .to_le_bytes();
    if let Some(dst) = bytes.get_mut(HEADER_CRC_OFFSET..HEADER_LEN) {
        dst.copy_from_slice(&crc);
    }
    true
}
