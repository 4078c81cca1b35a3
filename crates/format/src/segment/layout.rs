//! Byte positions of a segment file and the fixed header's codec.
//!
//! Owns every offset and width that `storage-format.md` ("Hot segment files") documents.
//! Offsets are derived from each other, never written as bare numbers, and a test
//! compares them with the tables in the document. Nothing here interprets section
//! contents; `schema`, `index` and `reader` do.
//!
//! Invariants: [`Header::encode`] writes fields in the order their offsets are derived,
//! so `Header::decode(&h.encode()) == h`; the header checksum covers every header byte
//! before it.

use super::error::SegmentError;

/// First bytes of every segment file: `\x89 F S S E G \r \n`.
///
/// PNG's reasoning: the high-bit first byte catches 7-bit transports and stops the file
/// being taken for text, and `\r\n` catches line-ending conversion.
pub const MAGIC: [u8; 8] = *b"\x89FSSEG\r\n";
/// The format version this library writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 2;

/// Offset of [`MAGIC`].
pub const MAGIC_OFFSET: usize = 0;
/// Offset of the format version (u32).
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
/// Offset of the header length (u32), always [`HEADER_LEN`] in version 2.
pub const HEADER_LEN_OFFSET: usize = VERSION_OFFSET + size_of::<u32>();
/// Offset of the flags (u32); see [`FLAG_VALUES_ZSTD`].
pub const FLAGS_OFFSET: usize = HEADER_LEN_OFFSET + size_of::<u32>();
/// Offset of the field count (u32).
pub const FIELD_COUNT_OFFSET: usize = FLAGS_OFFSET + size_of::<u32>();
/// Offset of the feature group's batch version (u64).
pub const GROUP_VERSION_OFFSET: usize = FIELD_COUNT_OFFSET + size_of::<u32>();
/// Offset of the schema fingerprint (u64).
pub const FINGERPRINT_OFFSET: usize = GROUP_VERSION_OFFSET + size_of::<u64>();
/// Offset of the entity count (u32).
pub const ENTITY_COUNT_OFFSET: usize = FINGERPRINT_OFFSET + size_of::<u64>();
/// Offset of the row width in bytes (u32).
pub const ROW_WIDTH_OFFSET: usize = ENTITY_COUNT_OFFSET + size_of::<u32>();
/// Offset of the number of event-time slots per row (u32).
pub const TIME_SLOTS_OFFSET: usize = ROW_WIDTH_OFFSET + size_of::<u32>();
/// Offset of four reserved bytes, zero in version 2.
pub const HEADER_RESERVED_OFFSET: usize = TIME_SLOTS_OFFSET + size_of::<u32>();
/// Offset of the index slot count (u64).
pub const SLOT_COUNT_OFFSET: usize = HEADER_RESERVED_OFFSET + size_of::<u32>();
/// Offset of the uncompressed length of the values section (u64).
pub const VALUES_RAW_LEN_OFFSET: usize = SLOT_COUNT_OFFSET + size_of::<u64>();
/// Offset of the section table.
pub const SECTION_TABLE_OFFSET: usize = VALUES_RAW_LEN_OFFSET + size_of::<u64>();
/// Bytes of one section table entry: offset u64, length u64, crc32 u32.
pub const SECTION_ENTRY_LEN: usize = size_of::<u64>() + size_of::<u64>() + size_of::<u32>();
/// Number of sections, in file order.
pub const SECTION_COUNT: usize = Section::ALL.len();
/// Offset of the header's own crc32 (u32), over bytes `0..HEADER_CRC_OFFSET`.
pub const HEADER_CRC_OFFSET: usize = SECTION_TABLE_OFFSET + SECTION_COUNT * SECTION_ENTRY_LEN;
/// Length of the fixed header; the schema section starts here.
pub const HEADER_LEN: usize = HEADER_CRC_OFFSET + size_of::<u32>();

/// Flag bit: the values section is one zstd frame, `values_raw_len` bytes once
/// decompressed. Every other flag bit must be zero.
pub const FLAG_VALUES_ZSTD: u32 = 1;
/// All flag bits version 2 knows.
pub const KNOWN_FLAGS: u32 = FLAG_VALUES_ZSTD;

/// Offset, inside a row, of the entity id's offset in the keys section (u64).
pub const ROW_KEY_OFFSET_OFFSET: usize = 0;
/// Offset, inside a row, of the entity id's length (u32).
pub const ROW_KEY_LEN_OFFSET: usize = ROW_KEY_OFFSET_OFFSET + size_of::<u64>();
/// Offset, inside a row, of the entity id's first [`KEY_PREFIX_LEN`] bytes (zero-padded),
/// so that a lookup of a short id never reads the keys section.
pub const ROW_KEY_PREFIX_OFFSET: usize = ROW_KEY_LEN_OFFSET + size_of::<u32>();
/// Bytes of the inline entity id prefix.
pub const KEY_PREFIX_LEN: usize = 16;
/// Offset, inside a row, of the presence bitmap; the null bitmap follows it.
pub const ROW_PRESENCE_OFFSET: usize = ROW_KEY_PREFIX_OFFSET + KEY_PREFIX_LEN;
/// Bytes of one entry of a row's event-time table (i64, ms).
pub const EVENT_TIME_LEN: usize = size_of::<i64>();
/// Most event-time slots per row: a field's time index is at most a u16.
pub const MAX_TIME_SLOTS: u32 = 1 << 16;
/// Bytes of a variable-width value reference: offset u64 + length u32 into the values
/// section.
pub const VAR_REF_LEN: usize = size_of::<u64>() + size_of::<u32>();

/// Bytes of one field record in the schema section.
pub const FIELD_RECORD_LEN: usize = 16;
/// Offset, inside a field record, of the feature id (u32).
pub const FIELD_ID_OFFSET: usize = 0;
/// Offset, inside a field record, of the type tag (u8); three zero bytes follow.
pub const FIELD_TYPE_OFFSET: usize = FIELD_ID_OFFSET + size_of::<u32>();
/// Offset, inside a field record, of the vector dimension (u32, 0 for other types).
pub const FIELD_DIM_OFFSET: usize = FIELD_TYPE_OFFSET + size_of::<u8>() + 3;
/// Offset, inside a field record, of the field's value offset within a row's value
/// area (u32).
pub const FIELD_SLOT_OFFSET: usize = FIELD_DIM_OFFSET + size_of::<u32>();
const _: () = assert!(FIELD_SLOT_OFFSET + size_of::<u32>() == FIELD_RECORD_LEN);

/// Bytes of one index slot (u64: hash tag in the high 32 bits, row number + 1 in the low
/// 32 bits; 0 = empty).
pub const SLOT_LEN: usize = size_of::<u64>();
/// Most slots a lookup examines: an entity is stored at most `MAX_PROBE - 1` slots after
/// its home slot. Writers that cannot meet this grow the table; readers reject files
/// that break it.
pub const MAX_PROBE: usize = 1024;

/// Most entities in one segment (row numbers + 1 must fit the slot's low 32 bits).
pub const MAX_ENTITIES: u32 = u32::MAX - 1;
/// Most fields in one segment.
pub const MAX_FIELDS: u32 = 65_536;
/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 128;
/// Largest accepted ratio of `values_raw_len` to the compressed values section length.
/// Bounds what a hostile file can make the reader allocate; a writer whose data would
/// compress better stores it uncompressed.
pub const MAX_ZSTD_EXPANSION: u64 = 256;

/// The sections of a segment file, in the order they appear in the section table and in
/// the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Field records and the group name.
    Schema,
    /// The open-addressing hash index.
    Index,
    /// Fixed-width rows, one per entity.
    Rows,
    /// Entity ids, referenced by rows.
    Keys,
    /// Variable-width values (string, bytes, float32 vector), maybe zstd-compressed.
    Values,
}

impl Section {
    /// Every section, in file order.
    pub const ALL: [Section; 5] = [
        Section::Schema,
        Section::Index,
        Section::Rows,
        Section::Keys,
        Section::Values,
    ];

    /// The section's name, as used in errors and the document.
    pub fn name(self) -> &'static str {
        match self {
            Section::Schema => "schema section",
            Section::Index => "index section",
            Section::Rows => "rows section",
            Section::Keys => "keys section",
            Section::Values => "values section",
        }
    }

    /// Offset of this section's entry in the header.
    pub fn entry_offset(self) -> usize {
        SECTION_TABLE_OFFSET + self as usize * SECTION_ENTRY_LEN
    }
}

/// One section table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SectionEntry {
    /// Offset of the section from the start of the file.
    pub offset: u64,
    /// Stored length in bytes (compressed length for a compressed values section).
    pub len: u64,
    /// crc32 (IEEE) of the stored bytes.
    pub crc: u32,
}

/// The decoded fixed header. Field meanings are in `storage-format.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Flag bits; only [`KNOWN_FLAGS`] may be set.
    pub flags: u32,
    /// Number of fields in the schema.
    pub field_count: u32,
    /// Batch version of the feature group the rows come from.
    pub group_version: u64,
    /// Fingerprint of the field records (see `schema::fingerprint`).
    pub schema_fingerprint: u64,
    /// Number of rows (entities).
    pub entity_count: u32,
    /// Bytes per row.
    pub row_width: u32,
    /// Event-time slots per row, `1..=MAX_TIME_SLOTS`.
    pub time_slots: u32,
    /// Slots in the index; a power of two.
    pub index_slot_count: u64,
    /// Length of the values section once decompressed.
    pub values_raw_len: u64,
    /// Section table, in [`Section::ALL`] order.
    pub sections: [SectionEntry; SECTION_COUNT],
}

impl Header {
    /// The entry of `section`.
    pub fn section(&self, section: Section) -> SectionEntry {
        self.sections
            .get(section as usize)
            .copied()
            .unwrap_or_default()
    }

    /// The header's bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.field_count.to_le_bytes());
        out.extend_from_slice(&self.group_version.to_le_bytes());
        out.extend_from_slice(&self.schema_fingerprint.to_le_bytes());
        out.extend_from_slice(&self.entity_count.to_le_bytes());
        out.extend_from_slice(&self.row_width.to_le_bytes());
        out.extend_from_slice(&self.time_slots.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.index_slot_count.to_le_bytes());
        out.extend_from_slice(&self.values_raw_len.to_le_bytes());
        for entry in &self.sections {
            out.extend_from_slice(&entry.offset.to_le_bytes());
            out.extend_from_slice(&entry.len.to_le_bytes());
            out.extend_from_slice(&entry.crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks the header at the start of `file`: magic, version, length, then
    /// checksum. Section bounds are the reader's job.
    pub fn decode(file: &[u8]) -> Result<Header, SegmentError> {
        let have = file.len() as u64;
        let magic_prefix = file.get(..MAGIC.len()).unwrap_or(file);
        if magic_prefix != MAGIC.get(..magic_prefix.len()).unwrap_or(&MAGIC) {
            return Err(SegmentError::BadMagic {
                found: magic_prefix.to_vec(),
            });
        }
        if let Some(version) = read_u32(file, VERSION_OFFSET)
            && version != FORMAT_VERSION
        {
            return Err(SegmentError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if file.len() < HEADER_LEN {
            return Err(SegmentError::Truncated {
                what: "header",
                needed: HEADER_LEN as u64,
                have,
            });
        }
        let field = |offset| read_u32(file, offset).unwrap_or_default();
        let field64 = |offset| read_u64(file, offset).unwrap_or_default();
        let header_len = field(HEADER_LEN_OFFSET);
        if header_len as usize != HEADER_LEN {
            return Err(SegmentError::Corrupt {
                what: "header length",
                detail: format!("{header_len}, version {FORMAT_VERSION} has {HEADER_LEN}"),
            });
        }
        let covered = file.get(..HEADER_CRC_OFFSET).unwrap_or_default();
        let expected = field(HEADER_CRC_OFFSET);
        let got = crc32fast::hash(covered);
        if expected != got {
            return Err(SegmentError::ChecksumMismatch {
                what: "header",
                expected,
                got,
            });
        }
        let reserved = field(HEADER_RESERVED_OFFSET);
        if reserved != 0 {
            return Err(SegmentError::Corrupt {
                what: "header reserved bytes",
                detail: format!("{reserved:#x}, version {FORMAT_VERSION} requires zero"),
            });
        }
        let mut sections = [SectionEntry::default(); SECTION_COUNT];
        for (section, entry) in Section::ALL.iter().zip(sections.iter_mut()) {
            let at = section.entry_offset();
            *entry = SectionEntry {
                offset: field64(at),
                len: field64(at + size_of::<u64>()),
                crc: field(at + 2 * size_of::<u64>()),
            };
        }
        Ok(Header {
            flags: field(FLAGS_OFFSET),
            field_count: field(FIELD_COUNT_OFFSET),
            group_version: field64(GROUP_VERSION_OFFSET),
            schema_fingerprint: field64(FINGERPRINT_OFFSET),
            entity_count: field(ENTITY_COUNT_OFFSET),
            row_width: field(ROW_WIDTH_OFFSET),
            time_slots: field(TIME_SLOTS_OFFSET),
            index_slot_count: field64(SLOT_COUNT_OFFSET),
            values_raw_len: field64(VALUES_RAW_LEN_OFFSET),
            sections,
        })
    }
}

/// The little-endian u32 at `offset`, if `bytes` holds it.
#[inline]
pub fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(size_of::<u32>())?)?;
    raw.try_into().ok().map(u32::from_le_bytes)
}

/// The little-endian u64 at `offset`, if `bytes` holds it.
#[inline]
pub fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let raw = bytes.get(offset..offset.checked_add(size_of::<u64>())?)?;
    raw.try_into().ok().map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            flags: FLAG_VALUES_ZSTD,
            field_count: 3,
            group_version: 7,
            schema_fingerprint: 0x0123_4567_89ab_cdef,
            entity_count: 2,
            row_width: 70,
            time_slots: 1,
            index_slot_count: 4,
            values_raw_len: 9,
            sections: [
                SectionEntry {
                    offset: 168,
                    len: 1,
                    crc: 2,
                },
                SectionEntry {
                    offset: 169,
                    len: 3,
                    crc: 4,
                },
                SectionEntry {
                    offset: 172,
                    len: 5,
                    crc: 6,
                },
                SectionEntry {
                    offset: 177,
                    len: 7,
                    crc: 8,
                },
                SectionEntry {
                    offset: 184,
                    len: 9,
                    crc: 10,
                },
            ],
        }
    }

    #[test]
    fn header_round_trips_and_fields_sit_at_their_offsets() {
        let header = sample();
        let bytes = header.encode();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(Header::decode(&bytes).expect("decodes"), header);
        assert_eq!(read_u32(&bytes, FIELD_COUNT_OFFSET), Some(3));
        assert_eq!(read_u64(&bytes, GROUP_VERSION_OFFSET), Some(7));
        assert_eq!(read_u32(&bytes, ROW_WIDTH_OFFSET), Some(70));
        assert_eq!(
            read_u64(&bytes, Section::Values.entry_offset() + 8),
            Some(9)
        );
    }

    /// Parses the "offset | size | field" tables of the "Hot segment files" section of
    /// `storage-format.md` and checks every constant against them.
    #[test]
    fn layout_matches_storage_format_doc() {
        let doc = include_str!("../../../../storage-format.md");
        let hot = doc
            .split_once("## Hot segment files")
            .map(|(_, rest)| rest)
            .expect("storage-format.md has a \"Hot segment files\" section");
        let table = |title: &str| -> Vec<(usize, usize, String)> {
            let start = hot
                .find(title)
                .unwrap_or_else(|| panic!("doc table {title:?} missing"));
            hot[start..]
                .lines()
                .skip_while(|l| !l.starts_with('|'))
                .take_while(|l| l.starts_with('|'))
                .filter_map(|l| {
                    let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                    let offset = cells.get(1)?.parse().ok()?;
                    let size = cells.get(2)?.parse().ok()?;
                    Some((offset, size, (*cells.get(3)?).to_owned()))
                })
                .collect()
        };
        let expect = |rows: &[(usize, usize, String)], name: &str, offset: usize, size: usize| {
            let row = rows
                .iter()
                .find(|(_, _, field)| field.starts_with(name))
                .unwrap_or_else(|| panic!("doc has no row for {name:?}"));
            assert_eq!((row.0, row.1), (offset, size), "{name}");
        };

        let header = table("Header fields:");
        expect(&header, "magic", MAGIC_OFFSET, 8);
        expect(&header, "format version", VERSION_OFFSET, 4);
        expect(&header, "header length", HEADER_LEN_OFFSET, 4);
        expect(&header, "flags", FLAGS_OFFSET, 4);
        expect(&header, "field count", FIELD_COUNT_OFFSET, 4);
        expect(&header, "group version", GROUP_VERSION_OFFSET, 8);
        expect(&header, "schema fingerprint", FINGERPRINT_OFFSET, 8);
        expect(&header, "entity count", ENTITY_COUNT_OFFSET, 4);
        expect(&header, "row width", ROW_WIDTH_OFFSET, 4);
        expect(&header, "time slots", TIME_SLOTS_OFFSET, 4);
        expect(&header, "reserved", HEADER_RESERVED_OFFSET, 4);
        expect(&header, "index slot count", SLOT_COUNT_OFFSET, 8);
        expect(&header, "values raw length", VALUES_RAW_LEN_OFFSET, 8);
        expect(
            &header,
            "section table",
            SECTION_TABLE_OFFSET,
            SECTION_COUNT * SECTION_ENTRY_LEN,
        );
        expect(&header, "header crc32", HEADER_CRC_OFFSET, 4);
        assert_eq!(header.len(), 15, "every header row is checked");
        let last = header.last().expect("rows");
        assert_eq!(last.0 + last.1, HEADER_LEN);

        let entry = table("Section table entry:");
        expect(&entry, "offset", 0, 8);
        expect(&entry, "length", 8, 8);
        expect(&entry, "crc32", 16, 4);
        assert_eq!(entry.len(), 3);
        assert_eq!(SECTION_ENTRY_LEN, 20);

        let record = table("Field record:");
        expect(&record, "feature id", FIELD_ID_OFFSET, 4);
        expect(&record, "type tag", FIELD_TYPE_OFFSET, 1);
        expect(&record, "reserved", FIELD_TYPE_OFFSET + 1, 3);
        expect(&record, "vector dim", FIELD_DIM_OFFSET, 4);
        expect(&record, "value offset", FIELD_SLOT_OFFSET, 4);
        assert_eq!(record.len(), 5);

        let row = table("Row header:");
        expect(&row, "key offset", ROW_KEY_OFFSET_OFFSET, 8);
        expect(&row, "key length", ROW_KEY_LEN_OFFSET, 4);
        expect(&row, "key prefix", ROW_KEY_PREFIX_OFFSET, KEY_PREFIX_LEN);
        assert_eq!(row.len(), 3);
        assert_eq!(ROW_PRESENCE_OFFSET, 28);
        assert_eq!(HEADER_LEN, 176);
    }
}
