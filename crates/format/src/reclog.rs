//! Record log files: an append-only sequence of checksummed records grouped into
//! (optionally zstd-compressed) blocks, with a file header and a clean end marker. The
//! serving log is written in this framing (`storage-format.md`, "Serving log files").
//!
//! Owns the byte layout only: [`BlockBuilder`] turns records into one block's bytes,
//! [`file_header`] and [`end_marker`] frame a file, and [`LogReader`] reads a file's
//! bytes back. Files, rotation and what a record means belong to the caller.
//!
//! Reader contract:
//! * A record is returned only from a block whose checksum matched and whose record
//!   framing and record checksum hold: a corrupt record is reported in [`ReadReport`],
//!   never returned.
//! * After a damaged region the reader resynchronises on the next block whose header
//!   and payload check; the bytes skipped are reported as a corruption, or, when no valid
//!   block follows, as a torn tail (a crash while a block was being appended).
//! * Every length read from the file is checked against the bytes present and against
//!   [`MAX_BLOCK_BYTES`] before it is used, so hostile input costs at most one block's
//!   worth of memory and never panics.
//!
//! Thread-safety: plain data; a [`LogReader`] borrows its bytes.

use crc32fast::Hasher;

/// First bytes of every record log file: `\x89` (not text, as in PNG), `FSLOG`, then
/// `\r\n` so that a text-mode transfer that rewrites line ends is detected.
pub const MAGIC: [u8; 8] = *b"\x89FSLOG\r\n";
/// The format version this build writes; it reads this one and every one back to
/// [`OLDEST_VERSION`]. The framing is the same in all; a newer version marks files
/// whose records may use encodings an older reader does not know, so that such a reader
/// refuses the file instead of failing record by record: version 2, the serving log's
/// column sets; version 3, its one-byte repeats of a read's shared status and event
/// time.
pub const VERSION: u32 = 3;
/// The oldest format version this build reads.
pub const OLDEST_VERSION: u32 = 1;

/// Offset of the version in the file header.
pub const VERSION_OFFSET: usize = MAGIC.len();
/// Offset of the creation time (ms since the epoch, i64) in the file header.
pub const CREATED_OFFSET: usize = VERSION_OFFSET + size_of::<u32>();
/// Offset of the file's id (u64, random per file), which every block checksum covers.
pub const FILE_ID_OFFSET: usize = CREATED_OFFSET + size_of::<i64>();
/// Offset of the header's crc32 (over the bytes before it).
pub const HEADER_CRC_OFFSET: usize = FILE_ID_OFFSET + size_of::<u64>();
/// Bytes in the file header.
pub const HEADER_LEN: usize = HEADER_CRC_OFFSET + size_of::<u32>();

/// The 4 bytes that open every block, where the reader resynchronises ("FSB" and a
/// byte that is not ASCII).
pub const BLOCK_SYNC: [u8; 4] = *b"FSB\xb1";
/// Offset of the block kind within a block header.
pub const KIND_OFFSET: usize = BLOCK_SYNC.len();
/// Offset of the stored (possibly compressed) payload length.
pub const STORED_LEN_OFFSET: usize = KIND_OFFSET + size_of::<u8>();
/// Offset of the raw (uncompressed) payload length.
pub const RAW_LEN_OFFSET: usize = STORED_LEN_OFFSET + size_of::<u32>();
/// Offset of the block's record count (for the end marker: the file's record count).
pub const COUNT_OFFSET: usize = RAW_LEN_OFFSET + size_of::<u32>();
/// Offset of the block's crc32: over the file id, the block's own offset in the file
/// (u64), then the kind, the lengths, the count and the stored payload. Covering the id
/// and the offset means bytes inside a record that look like a block (a copy of one,
/// or one crafted into a string value) never pass for a block when the reader
/// resynchronises.
pub const BLOCK_CRC_OFFSET: usize = COUNT_OFFSET + size_of::<u32>();
/// Bytes in a block header.
pub const BLOCK_HEADER_LEN: usize = BLOCK_CRC_OFFSET + size_of::<u32>();
/// Bytes in a record's header (length and crc32).
pub const RECORD_HEADER_LEN: usize = 2 * size_of::<u32>();

/// Largest raw payload of one block (and so the largest record, less its header); a
/// reader refuses a longer declared length without allocating it.
pub const MAX_BLOCK_BYTES: usize = 32 << 20;
/// Largest record a block can hold.
pub const MAX_RECORD_BYTES: usize = MAX_BLOCK_BYTES - RECORD_HEADER_LEN;

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockKind {
    /// Records, stored as they are.
    Plain = 1,
    /// Records, compressed as one zstd frame.
    Zstd = 2,
    /// The clean end marker: no payload; its count is the file's record count.
    End = 0xff,
}

impl BlockKind {
    fn of(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(BlockKind::Plain),
            2 => Some(BlockKind::Zstd),
            0xff => Some(BlockKind::End),
            _ => None,
        }
    }
}

/// A file that is not a record log this build reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Shorter than a file header.
    #[error("truncated record log: the header needs {HEADER_LEN} bytes, the file has {have}")]
    Truncated {
        /// Bytes in the file.
        have: usize,
    },
    /// Does not start with [`MAGIC`].
    #[error("not a featstore record log: starts with {found:02x?}")]
    BadMagic {
        /// The first bytes of the file.
        found: Vec<u8>,
    },
    /// The header's crc32 does not match.
    #[error("record log header checksum mismatch: stored {expected:#010x}, computed {got:#010x}")]
    HeaderChecksum {
        /// Stored.
        expected: u32,
        /// Computed.
        got: u32,
    },
    /// Written by another format version.
    #[error(
        "record log format version {found} is not supported (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion {
        /// In the file.
        found: u32,
        /// Read by this build.
        supported: u32,
    },
    /// A record longer than [`MAX_RECORD_BYTES`] was given to a [`BlockBuilder`].
    #[error("record of {len} bytes is longer than the largest record ({MAX_RECORD_BYTES} bytes)")]
    RecordTooLarge {
        /// Its length.
        len: usize,
    },
    /// zstd failed to compress a block.
    #[error("compressing a block: {0}")]
    Compress(String),
}

/// The file header of a log created at `created_ms` with id `file_id` (pick it at
/// random: see [`BLOCK_CRC_OFFSET`]).
pub fn file_header(created_ms: i64, file_id: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..VERSION_OFFSET].copy_from_slice(&MAGIC);
    header[VERSION_OFFSET..CREATED_OFFSET].copy_from_slice(&VERSION.to_le_bytes());
    header[CREATED_OFFSET..FILE_ID_OFFSET].copy_from_slice(&created_ms.to_le_bytes());
    header[FILE_ID_OFFSET..HEADER_CRC_OFFSET].copy_from_slice(&file_id.to_le_bytes());
    let crc = crc32fast::hash(&header[..HEADER_CRC_OFFSET]);
    header[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Where a block goes: the file's id and the block's offset in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPlace {
    /// The id in the file's header.
    pub file_id: u64,
    /// Offset of the block's first byte in the file.
    pub offset: u64,
}

/// The clean end marker of a file that holds `records` records, at `place`.
pub fn end_marker(place: BlockPlace, records: u32) -> [u8; BLOCK_HEADER_LEN] {
    let mut out = [0u8; BLOCK_HEADER_LEN];
    write_block_header(&mut out, place, BlockKind::End, 0, 0, records, &[]);
    out
}

fn write_block_header(
    out: &mut [u8; BLOCK_HEADER_LEN],
    place: BlockPlace,
    kind: BlockKind,
    stored_len: u32,
    raw_len: u32,
    count: u32,
    payload: &[u8],
) {
    out[..KIND_OFFSET].copy_from_slice(&BLOCK_SYNC);
    out[KIND_OFFSET] = kind as u8;
    out[STORED_LEN_OFFSET..RAW_LEN_OFFSET].copy_from_slice(&stored_len.to_le_bytes());
    out[RAW_LEN_OFFSET..COUNT_OFFSET].copy_from_slice(&raw_len.to_le_bytes());
    out[COUNT_OFFSET..BLOCK_CRC_OFFSET].copy_from_slice(&count.to_le_bytes());
    let crc = block_crc(place, &out[KIND_OFFSET..BLOCK_CRC_OFFSET], payload);
    out[BLOCK_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
}

fn block_crc(place: BlockPlace, header_fields: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = Hasher::new();
    hasher.update(&place.file_id.to_le_bytes());
    hasher.update(&place.offset.to_le_bytes());
    hasher.update(header_fields);
    hasher.update(payload);
    hasher.finalize()
}

/// Collects records into one block (see the module docs).
#[derive(Debug, Default)]
pub struct BlockBuilder {
    raw: Vec<u8>,
    records: u32,
    /// The zstd context and output buffer, kept from block to block: a fresh context
    /// per block allocated (and the kernel zeroed) its tables every time.
    zstd: Zstd,
    /// The finished block's bytes, kept from block to block for the same reason: a
    /// fresh buffer per block cost the writer a page fault on fresh (often huge) pages.
    framed: Vec<u8>,
}

/// A reused zstd compression context with the level it is set to, and the buffer a
/// block is compressed into.
#[derive(Default)]
struct Zstd {
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Zstd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zstd")
            .field("level", &self.compressor.as_ref().map(|(l, _)| *l))
            .finish_non_exhaustive()
    }
}

impl Zstd {
    /// Compresses `raw` at `level` into the buffer and returns it.
    fn compress(&mut self, raw: &[u8], level: i32) -> Result<&[u8], LogError> {
        let compress = |e: std::io::Error| LogError::Compress(e.to_string());
        let compressor = match &mut self.compressor {
            Some((current, compressor)) if *current == level => compressor,
            slot => {
                let compressor = zstd::bulk::Compressor::new(level).map_err(compress)?;
                &mut slot.insert((level, compressor)).1
            }
        };
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        compressor
            .compress_to_buffer(raw, &mut self.out)
            .map_err(compress)?;
        Ok(&self.out)
    }
}

impl BlockBuilder {
    /// An empty block.
    pub fn new() -> Self {
        BlockBuilder::default()
    }

    /// Bytes the block's records take uncompressed, headers included.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Records in the block.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// True when the block holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Whether `len` more record bytes still fit in this block.
    pub fn fits(&self, len: usize) -> bool {
        self.raw.len() + RECORD_HEADER_LEN + len <= MAX_BLOCK_BYTES
    }

    /// Appends one record. The caller checks [`fits`](Self::fits) first and finishes
    /// the block when it does not; a record that fits no block is refused.
    pub fn add(&mut self, record: &[u8]) -> Result<(), LogError> {
        if record.len() > MAX_RECORD_BYTES || !self.fits(record.len()) {
            return Err(LogError::RecordTooLarge { len: record.len() });
        }
        let len = record.len() as u32;
        self.raw.extend_from_slice(&len.to_le_bytes());
        self.raw
            .extend_from_slice(&crc32fast::hash(record).to_le_bytes());
        self.raw.extend_from_slice(record);
        self.records += 1;
        Ok(())
    }

    /// The block's bytes (header, then payload) for `place`, compressed with zstd at
    /// `level` when `Some` and when that makes it smaller; the builder is emptied for the
    /// next block, and the bytes stay valid until the builder is used again.
    pub fn finish(&mut self, place: BlockPlace, level: Option<i32>) -> Result<&[u8], LogError> {
        let raw_len = self.raw.len() as u32;
        let count = self.records;
        let compressed = match level {
            Some(level) => Some(self.zstd.compress(&self.raw, level)?),
            None => None,
        };
        let (kind, payload) = match compressed {
            Some(c) if c.len() < self.raw.len() => (BlockKind::Zstd, c),
            _ => (BlockKind::Plain, self.raw.as_slice()),
        };
        let mut header = [0u8; BLOCK_HEADER_LEN];
        write_block_header(
            &mut header,
            place,
            kind,
            payload.len() as u32,
            raw_len,
            count,
            payload,
        );
        self.framed.clear();
        self.framed.extend_from_slice(&header);
        self.framed.extend_from_slice(payload);
        self.raw.clear();
        self.records = 0;
        Ok(&self.framed)
    }
}

/// Why bytes were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptionKind {
    /// A region that is no valid block (bad sync bytes, a header or payload checksum
    /// mismatch, a length beyond the file), followed by a valid block.
    BadBlock,
    /// A block whose checksum matched but whose payload does not decode (zstd, record
    /// framing, record count): a writer bug or a collision, never returned.
    BadPayload,
    /// One record whose crc32 does not match, inside an otherwise valid block.
    BadRecord,
    /// Bytes after the clean end marker.
    AfterEnd,
}

/// One damaged region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// What was wrong.
    pub kind: CorruptionKind,
    /// Offset of the region in the file.
    pub offset: u64,
    /// Bytes skipped.
    pub len: u64,
}

/// Most corruptions a [`ReadReport`] lists one by one (all are counted).
pub const MAX_LISTED_CORRUPTIONS: usize = 64;

/// What a [`LogReader`] found besides records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Valid blocks read.
    pub blocks: u64,
    /// Records returned.
    pub records: u64,
    /// Damaged regions, the first [`MAX_LISTED_CORRUPTIONS`].
    pub corruptions: Vec<Corruption>,
    /// Damaged regions in all.
    pub corruption_count: u64,
    /// Records known to be lost inside valid blocks (bad record checksums, undecodable
    /// payloads with their declared count).
    pub corrupt_records: u64,
    /// Bytes at the end that hold no valid block (a torn append), 0 when none.
    pub torn_tail_bytes: u64,
    /// True when the file ends with the clean end marker.
    pub clean_end: bool,
    /// The record count the end marker declares, when there is one.
    pub declared_records: Option<u32>,
}

impl ReadReport {
    fn corrupt(&mut self, kind: CorruptionKind, offset: usize, len: usize) {
        self.corruption_count += 1;
        if self.corruptions.len() < MAX_LISTED_CORRUPTIONS {
            self.corruptions.push(Corruption {
                kind,
                offset: offset as u64,
                len: len as u64,
            });
        }
    }

    /// True when nothing was skipped and the file ended cleanly.
    pub fn is_clean(&self) -> bool {
        self.corruption_count == 0 && self.torn_tail_bytes == 0 && self.clean_end
    }
}

/// One valid block's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Offset of the block in the file.
    pub offset: u64,
    raw: Vec<u8>,
    /// Byte ranges of the valid records within `raw`.
    ranges: Vec<(usize, usize)>,
}

impl Block {
    /// The block's valid records, in the order written.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges
            .iter()
            .filter_map(|&(start, end)| self.raw.get(start..end))
    }

    /// Number of valid records.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when the block returned no record.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Reads a record log's bytes block by block (see the module docs).
#[derive(Debug)]
pub struct LogReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    created_ms: i64,
    file_id: u64,
    report: ReadReport,
    done: bool,
}

/// A block header whose fields were read, not yet checked against its payload.
struct Header {
    kind: u8,
    stored_len: usize,
    raw_len: usize,
    count: u32,
    crc: u32,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn header_at(bytes: &[u8], at: usize) -> Option<Header> {
    let h = bytes.get(at..at.checked_add(BLOCK_HEADER_LEN)?)?;
    if h.get(..KIND_OFFSET)? != BLOCK_SYNC {
        return None;
    }
    Some(Header {
        kind: *h.get(KIND_OFFSET)?,
        stored_len: u32_at(h, STORED_LEN_OFFSET)? as usize,
        raw_len: u32_at(h, RAW_LEN_OFFSET)? as usize,
        count: u32_at(h, COUNT_OFFSET)?,
        crc: u32_at(h, BLOCK_CRC_OFFSET)?,
    })
}

/// The header at `at` and its payload, when both check: sync bytes, a known kind,
/// lengths within the file and [`MAX_BLOCK_BYTES`], and the crc32.
fn valid_block_at(bytes: &[u8], file_id: u64, at: usize) -> Option<(Header, &[u8])> {
    let header = header_at(bytes, at)?;
    let kind = BlockKind::of(header.kind)?;
    if header.raw_len > MAX_BLOCK_BYTES || header.stored_len > MAX_BLOCK_BYTES {
        return None;
    }
    let start = at.checked_add(BLOCK_HEADER_LEN)?;
    let payload = bytes.get(start..start.checked_add(header.stored_len)?)?;
    let fields = bytes.get(at + KIND_OFFSET..at + BLOCK_CRC_OFFSET)?;
    let place = BlockPlace {
        file_id,
        offset: at as u64,
    };
    if block_crc(place, fields, payload) != header.crc {
        return None;
    }
    let consistent = match kind {
        BlockKind::Plain => header.stored_len == header.raw_len,
        BlockKind::Zstd => true,
        BlockKind::End => header.stored_len == 0 && header.raw_len == 0,
    };
    consistent.then_some((header, payload))
}

impl<'a> LogReader<'a> {
    /// Checks the file header of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, LogError> {
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or(LogError::Truncated { have: bytes.len() })?;
        if header.get(..VERSION_OFFSET) != Some(&MAGIC[..]) {
            return Err(LogError::BadMagic {
                found: header.get(..MAGIC.len()).unwrap_or(header).to_vec(),
            });
        }
        let expected = u32_at(header, HEADER_CRC_OFFSET).unwrap_or(0);
        let got = crc32fast::hash(header.get(..HEADER_CRC_OFFSET).unwrap_or(&[]));
        if expected != got {
            return Err(LogError::HeaderChecksum { expected, got });
        }
        let version = u32_at(header, VERSION_OFFSET).unwrap_or(0);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(LogError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let created_ms = header
            .get(CREATED_OFFSET..FILE_ID_OFFSET)
            .and_then(|b| b.try_into().ok())
            .map_or(0, i64::from_le_bytes);
        let file_id = header
            .get(FILE_ID_OFFSET..HEADER_CRC_OFFSET)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        Ok(LogReader {
            bytes,
            pos: HEADER_LEN,
            created_ms,
            file_id,
            report: ReadReport::default(),
            done: false,
        })
    }

    /// The creation time the header holds (ms since the epoch).
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// What was found so far (complete once [`next_block`](Self::next_block) returned
    /// `None`).
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    /// Reads every block, calling `f` on each valid record, and returns the report.
    pub fn for_each_record(mut self, mut f: impl FnMut(&[u8])) -> ReadReport {
        while let Some(block) = self.next_block() {
            for record in block.records() {
                f(record);
            }
        }
        self.report
    }

    /// The next valid block with at least one valid record, skipping (and reporting)
    /// damaged regions; `None` at the end of the file or after the end marker.
    pub fn next_block(&mut self) -> Option<Block> {
        while !self.done {
            let at = self.pos;
            if at >= self.bytes.len() {
                self.done = true;
                break;
            }
            let Some((header, payload)) = valid_block_at(self.bytes, self.file_id, at) else {
                self.resync(at);
                continue;
            };
            self.pos = at + BLOCK_HEADER_LEN + payload.len();
            let block = match BlockKind::of(header.kind) {
                Some(BlockKind::End) => {
                    self.report.clean_end = true;
                    self.report.declared_records = Some(header.count);
                    let rest = self.bytes.len() - self.pos;
                    if rest > 0 {
                        self.report
                            .corrupt(CorruptionKind::AfterEnd, self.pos, rest);
                    }
                    self.done = true;
                    return None;
                }
                Some(BlockKind::Plain) => self.decode(at, &header, payload.to_vec()),
                Some(BlockKind::Zstd) => match zstd::bulk::decompress(payload, header.raw_len) {
                    Ok(raw) if raw.len() == header.raw_len => self.decode(at, &header, raw),
                    _ => {
                        self.bad_payload(at, &header, payload.len());
                        continue;
                    }
                },
                None => None,
            };
            if let Some(block) = block
                && !block.is_empty()
            {
                return Some(block);
            }
        }
        None
    }

    fn bad_payload(&mut self, at: usize, header: &Header, stored: usize) {
        self.report
            .corrupt(CorruptionKind::BadPayload, at, BLOCK_HEADER_LEN + stored);
        self.report.corrupt_records += u64::from(header.count);
    }

    /// Splits a valid block's raw payload into records, checking each record's crc32.
    fn decode(&mut self, at: usize, header: &Header, raw: Vec<u8>) -> Option<Block> {
        let mut ranges = Vec::new();
        let mut pos = 0usize;
        let mut bad = 0u64;
        let mut found = 0u32;
        while pos < raw.len() {
            let (Some(len), Some(crc)) = (u32_at(&raw, pos), u32_at(&raw, pos + 4)) else {
                break;
            };
            let start = pos + RECORD_HEADER_LEN;
            let Some(end) = start
                .checked_add(len as usize)
                .filter(|&end| end <= raw.len())
            else {
                break;
            };
            found += 1;
            if raw.get(start..end).map(crc32fast::hash) == Some(crc) {
                ranges.push((start, end));
            } else {
                bad += 1;
                self.report.corrupt(
                    CorruptionKind::BadRecord,
                    at,
                    RECORD_HEADER_LEN + len as usize,
                );
            }
            pos = end;
        }
        if pos != raw.len() || found != header.count {
            // The framing does not add up: trust no record of the block.
            self.bad_payload(at, header, header.stored_len);
            return None;
        }
        self.report.corrupt_records += bad;
        self.report.blocks += 1;
        self.report.records += ranges.len() as u64;
        Some(Block {
            offset: at as u64,
            raw,
            ranges,
        })
    }

    /// Skips from `at` to the next valid block; reports the region as corrupt, or as a
    /// torn tail when no valid block follows.
    fn resync(&mut self, at: usize) {
        let mut next = at + 1;
        while let Some(found) = find_sync(self.bytes, next) {
            if valid_block_at(self.bytes, self.file_id, found).is_some() {
                self.report
                    .corrupt(CorruptionKind::BadBlock, at, found - at);
                self.pos = found;
                return;
            }
            next = found + 1;
        }
        self.report.torn_tail_bytes = (self.bytes.len() - at) as u64;
        self.pos = self.bytes.len();
        self.done = true;
    }
}

/// The first offset at or after `from` where [`BLOCK_SYNC`] starts.
fn find_sync(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    rest.windows(BLOCK_SYNC.len())
        .position(|w| w == BLOCK_SYNC)
        .map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u64 = 0x5eed;

    fn place(out: &[u8]) -> BlockPlace {
        BlockPlace {
            file_id: ID,
            offset: out.len() as u64,
        }
    }

    fn file(blocks: &[&[&[u8]]], level: Option<i32>, end: bool) -> Vec<u8> {
        let mut out = file_header(1_700_000_000_000, ID).to_vec();
        let mut total = 0;
        for records in blocks {
            let mut b = BlockBuilder::new();
            for r in *records {
                b.add(r).expect("fits");
                total += 1;
            }
            let block = b.finish(place(&out), level).expect("finish");
            out.extend_from_slice(block);
        }
        if end {
            let marker = end_marker(place(&out), total);
            out.extend(marker);
        }
        out
    }

    fn read(bytes: &[u8]) -> (Vec<Vec<u8>>, ReadReport) {
        let mut records = Vec::new();
        let report = LogReader::new(bytes)
            .expect("header")
            .for_each_record(|r| records.push(r.to_vec()));
        (records, report)
    }

    #[test]
    fn offsets_match_the_documented_layout() {
        assert_eq!(
            (
                VERSION_OFFSET,
                CREATED_OFFSET,
                FILE_ID_OFFSET,
                HEADER_CRC_OFFSET,
                HEADER_LEN
            ),
            (8, 12, 20, 28, 32)
        );
        assert_eq!(
            (
                KIND_OFFSET,
                STORED_LEN_OFFSET,
                RAW_LEN_OFFSET,
                COUNT_OFFSET,
                BLOCK_CRC_OFFSET,
                BLOCK_HEADER_LEN
            ),
            (4, 5, 9, 13, 17, 21)
        );
    }

    #[test]
    fn records_round_trip_plain_and_compressed() {
        for level in [None, Some(3)] {
            let bytes = file(&[&[b"a", b"", b"ccc"], &[&[7u8; 1000]]], level, true);
            let (records, report) = read(&bytes);
            assert_eq!(
                records,
                vec![b"a".to_vec(), vec![], b"ccc".to_vec(), vec![7; 1000]]
            );
            assert!(report.is_clean(), "{report:?}");
            assert_eq!(report.declared_records, Some(4));
            assert_eq!(report.blocks, 2);
        }
    }

    #[test]
    fn a_torn_tail_loses_only_the_torn_block() {
        let whole = file(&[&[b"one"], &[b"two", b"three"]], Some(3), false);
        let first_end = HEADER_LEN + BLOCK_HEADER_LEN + RECORD_HEADER_LEN + 3;
        for cut in first_end..whole.len() {
            let (records, report) = read(&whole[..cut]);
            assert_eq!(records, vec![b"one".to_vec()], "cut at {cut}");
            assert_eq!(report.torn_tail_bytes as usize, cut - first_end);
            assert_eq!(report.corruption_count, 0);
            assert!(!report.clean_end);
        }
    }

    #[test]
    fn every_bit_flip_is_reported_never_returned() {
        let records: [&[u8]; 3] = [b"alpha", b"beta", b"gamma"];
        let whole = file(&[&records[..1], &records[1..]], None, true);
        for byte in HEADER_LEN..whole.len() {
            for bit in 0..8 {
                let mut bytes = whole.clone();
                bytes[byte] ^= 1 << bit;
                let (got, report) = read(&bytes);
                for r in &got {
                    assert!(records.contains(&r.as_slice()), "invented {r:?}");
                }
                assert!(
                    !report.is_clean() || got.len() == 3,
                    "flip at {byte}.{bit} went unnoticed: {report:?}"
                );
            }
        }
    }

    #[test]
    fn the_reader_resynchronises_after_a_damaged_block() {
        let mut bytes = file(&[&[b"one"], &[b"two"], &[b"three"]], Some(3), true);
        let second = HEADER_LEN + BLOCK_HEADER_LEN + RECORD_HEADER_LEN + 3;
        bytes[second + BLOCK_HEADER_LEN + 2] ^= 0x40;
        let (records, report) = read(&bytes);
        assert_eq!(records, vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(report.corruption_count, 1);
        assert_eq!(report.corruptions[0].kind, CorruptionKind::BadBlock);
        assert_eq!(report.corruptions[0].offset as usize, second);
        assert!(report.clean_end);
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(matches!(
            LogReader::new(b"short"),
            Err(LogError::Truncated { .. })
        ));
        let mut bytes = file(&[], None, true);
        bytes[HEADER_CRC_OFFSET] ^= 1;
        assert!(matches!(
            LogReader::new(&bytes),
            Err(LogError::HeaderChecksum { .. })
        ));
        let mut other = file_header(0, ID);
        other[VERSION_OFFSET] = 9;
        let crc = crc32fast::hash(&other[..HEADER_CRC_OFFSET]);
        other[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            LogReader::new(&other),
            Err(LogError::UnsupportedVersion { found: 9, .. })
        ));
        // Version 1 and 2 files (same framing) still read; the next version does not.
        for (version, reads) in [(1u8, true), (2, true), (3, true), (4, false)] {
            other[VERSION_OFFSET] = version;
            let crc = crc32fast::hash(&other[..HEADER_CRC_OFFSET]);
            other[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(LogReader::new(&other).is_ok(), reads, "version {version}");
        }
        assert!(matches!(
            LogReader::new(&[0u8; 64]),
            Err(LogError::BadMagic { .. })
        ));
    }

    #[test]
    fn a_block_copied_into_a_record_never_passes_for_one() {
        // A record whose bytes are a whole valid block of this file, then damage just
        // before it: resynchronising must not return the embedded block's record.
        let inner = file(&[&[b"fake"]], None, false);
        let embedded = inner[HEADER_LEN..].to_vec();
        let mut bytes = file(&[&[b"one"], &[&embedded]], None, true);
        let second = HEADER_LEN + BLOCK_HEADER_LEN + RECORD_HEADER_LEN + 3;
        bytes[second] ^= 1;
        let (records, report) = read(&bytes);
        assert_eq!(records, vec![b"one".to_vec()]);
        assert_eq!(report.corruption_count, 1);
    }

    #[test]
    fn bytes_after_the_end_marker_are_reported() {
        let mut bytes = file(&[&[b"x"]], None, true);
        bytes.extend_from_slice(b"junk");
        let (records, report) = read(&bytes);
        assert_eq!(records.len(), 1);
        assert_eq!(report.corruptions[0].kind, CorruptionKind::AfterEnd);
    }
}
