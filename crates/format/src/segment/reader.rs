//! [`Segment`]: opening (full validation, once) and the probe path.
//!
//! Owns the reader's trust boundary. [`Segment::open`] checks, in order: the header
//! (magic, version, length, checksum), flags, section placement and bounds (lengths
//! before checksums), every section checksum, the schema, the counts against the
//! section lengths, the values section (decompressed if flagged), every index slot,
//! every row (entity id and value references in bounds, the inline id prefix, UTF-8,
//! vector lengths, bool bytes, time indexes inside the row's time table, zeroed absent
//! fields), and finally that each entity is found by its own probe
//! and that no id appears twice. Every count is bounded by the file's length before it
//! sizes an allocation, and all arithmetic on stored numbers is checked.
//!
//! After open, `find`, `find_batch`, `Row::get` and `iter` trust those checks but still
//! read through bounds-checked `get`s: no `unsafe`, no unchecked indexing, no
//! allocation.
//!
//! Thread safety: a `Segment` is immutable after open; it is `Send`/`Sync` when `D` is,
//! and any number of threads may probe it at once without locks.

#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::ops::Range;

use super::error::SegmentError;
use super::index::{hash64, probe, slot_row};
use super::layout::{
    FLAG_VALUES_ZSTD, HEADER_LEN, Header, KEY_PREFIX_LEN, KNOWN_FLAGS, MAX_ENTITIES,
    MAX_ZSTD_EXPANSION, SECTION_COUNT, SLOT_LEN, Section,
};
use super::row::{Row, key_prefix, key_ref, prefix_of};
use super::schema::{FieldLayout, FieldSpec, Kind, RowLayout, decode_section};
use crate::codec::MAX_ENTITY_ID_LEN;
use crate::types::FeatureId;

/// A validated, read-only segment over bytes `D` (a `Vec<u8>`, a `&[u8]`, or an `Mmap`
/// from [`MappedSegment`](super::MappedSegment)).
pub struct Segment<D> {
    /// The whole file. Never changes while the segment lives (see `mmap` for files).
    data: D,
    /// Decompressed values section, when the file stores it compressed.
    values_owned: Option<Vec<u8>>,
    /// Where the values section lies in `data`, when it is stored uncompressed.
    values: Range<usize>,
    index: Range<usize>,
    rows: Range<usize>,
    keys: Range<usize>,
    /// `index_slot_count - 1`.
    mask: usize,
    row_width: usize,
    entity_count: u32,
    fields: Vec<FieldSpec>,
    layout: RowLayout,
    /// (feature id, schema position), sorted by feature id.
    by_feature: Vec<(FeatureId, usize)>,
    group: String,
    group_version: u64,
    fingerprint: u64,
}

/// The borrowed sections of a segment: what `find`, `iter` and validation read.
#[derive(Clone, Copy)]
struct View<'a> {
    index: &'a [u8],
    rows: &'a [u8],
    keys: &'a [u8],
    values: &'a [u8],
    layout: &'a RowLayout,
    row_width: usize,
    mask: usize,
}

impl<'a> View<'a> {
    /// Row `index`'s bytes, if they lie within the rows section.
    #[inline]
    fn row_bytes(&self, index: u32) -> Option<&'a [u8]> {
        let start = (index as usize).checked_mul(self.row_width)?;
        self.rows.get(start..start.checked_add(self.row_width)?)
    }

    /// A row over `bytes` (row `index`), if its entity id lies within the keys section.
    /// Slices the id without reading it.
    #[inline]
    fn row_at(&self, bytes: &'a [u8], index: u32) -> Option<Row<'a>> {
        let (key_offset, key_len) = key_ref(bytes)?;
        let key_offset = usize::try_from(key_offset).ok()?;
        let entity_id = self
            .keys
            .get(key_offset..key_offset.checked_add(key_len as usize)?)?;
        Some(Row::new(bytes, entity_id, self.values, self.layout, index))
    }

    /// Row `index`, if its bytes and entity id lie within their sections.
    #[inline]
    fn row(&self, index: u32) -> Option<Row<'a>> {
        self.row_at(self.row_bytes(index)?, index)
    }

    /// The row of `entity_id`: one probe sequence. On a tag match the candidate row's
    /// cache lines are warmed and its inline id prefix and length compared; only ids
    /// longer than the prefix read the keys section. (Open checked that each prefix
    /// equals its id's first bytes.)
    #[inline]
    fn find(&self, entity_id: &[u8]) -> Option<Row<'a>> {
        self.find_hashed(entity_id, hash64(entity_id))
    }

    /// [`find`](Self::find) with the id's `hash64` already computed.
    #[inline]
    fn find_hashed(&self, entity_id: &[u8], hash: u64) -> Option<Row<'a>> {
        let want_prefix = prefix_of(entity_id);
        let mut found = None;
        probe(self.index, self.mask, hash, |index| {
            let Some(bytes) = self.row_bytes(index) else {
                return false;
            };
            warm(bytes);
            if key_prefix(bytes) != Some(want_prefix) {
                return false;
            }
            let Some(row) = self.row_at(bytes, index) else {
                return false;
            };
            let stored = row.entity_id();
            let same = stored.len() == entity_id.len()
                && (entity_id.len() <= KEY_PREFIX_LEN
                    || stored.get(KEY_PREFIX_LEN..) == entity_id.get(KEY_PREFIX_LEN..));
            if same {
                found = Some(row);
            }
            same
        })?;
        found
    }

    /// See [`Segment::find_batch`]. Per chunk of [`BATCH_CHUNK`] ids: (1) hash every id,
    /// then touch every home slot in a tight loop; (2) follow each hash to the first
    /// slot whose tag matches and warm that row, without comparing ids; (3) the exact
    /// `find_hashed` per id, in order, over lines now cached or in flight. Passes 1 and
    /// 2 only read: a wrong or missing candidate costs a wasted fetch, never an answer.
    #[inline]
    fn find_batch<'k>(
        &self,
        count: usize,
        id_of: impl Fn(usize) -> &'k [u8],
        mut visit: impl FnMut(usize, Option<Row<'a>>),
    ) {
        let mut start = 0usize;
        while start < count {
            let len = count.saturating_sub(start).min(BATCH_CHUNK);
            let mut ids: [&'k [u8]; BATCH_CHUNK] = [&[]; BATCH_CHUNK];
            let mut hashes = [0u64; BATCH_CHUNK];
            // Pass 1a: the ids and hashes (CPU only). Kept apart from 1b so that the
            // slot loads below are a few instructions apart and all fit the CPU's
            // out-of-order window together.
            for (j, (id, hash)) in ids.iter_mut().zip(hashes.iter_mut()).take(len).enumerate() {
                *id = id_of(start.wrapping_add(j));
                *hash = hash64(id);
            }
            // Pass 1b: touch every home slot.
            let mut acc = 0u8;
            for hash in hashes.iter().take(len) {
                let at = ((*hash as usize) & self.mask).wrapping_mul(SLOT_LEN);
                acc ^= self.index.get(at).copied().unwrap_or_default();
            }
            std::hint::black_box(acc);
            // Pass 2: warm each id's first candidate row.
            for hash in hashes.iter().take(len) {
                if let Some(bytes) = probe(self.index, self.mask, *hash, |_| true)
                    .and_then(|(_, row)| self.row_bytes(row))
                {
                    warm(bytes);
                }
            }
            // Pass 3: the exact lookups.
            for (j, (id, hash)) in ids.iter().zip(hashes.iter()).take(len).enumerate() {
                visit(start.wrapping_add(j), self.find_hashed(id, *hash));
            }
            start = start.wrapping_add(len);
        }
    }
}

/// Ids [`Segment::find_batch`] hashes and prefetches together before reading any of
/// them: enough to keep the core's line fill buffers (16 on recent Intel cores) busy
/// with two lines per id, few enough that a chunk's slots and rows (about 16 x 5 lines)
/// stay in L1 until pass 3 reads them.
const BATCH_CHUNK: usize = 16;

/// Reads one byte of every cache line of `bytes`, so that the CPU starts fetching all
/// of a row's lines at once instead of a few at a time as field reads reach them. A
/// prefetch in safe code: `black_box` keeps the loads from being optimised away.
#[inline]
pub(crate) fn warm(bytes: &[u8]) {
    const LINE: usize = 64;
    let mut acc = bytes.last().copied().unwrap_or_default();
    let mut at = 0;
    while let Some(b) = bytes.get(at) {
        acc ^= b;
        at = at.saturating_add(LINE);
    }
    std::hint::black_box(acc);
}

impl<D: AsRef<[u8]>> Segment<D> {
    /// Validates `data` as a segment file (see the module doc for the checks) and
    /// returns a segment ready to probe.
    pub fn open(data: D) -> Result<Segment<D>, SegmentError> {
        let file = data.as_ref();
        let file_len = file.len() as u64;
        let header = Header::decode(file)?;
        if header.flags & !KNOWN_FLAGS != 0 {
            return Err(SegmentError::UnknownFlags {
                flags: header.flags,
                known: KNOWN_FLAGS,
            });
        }

        // Placement and bounds, before any checksum.
        let mut ranges: [Range<usize>; SECTION_COUNT] = Default::default();
        let mut expected = HEADER_LEN as u64;
        for (section, range) in Section::ALL.iter().zip(ranges.iter_mut()) {
            let entry = header.section(*section);
            if entry.offset != expected {
                return Err(SegmentError::SectionPlacement {
                    what: section.name(),
                    offset: entry.offset,
                    expected,
                });
            }
            let end = entry.offset.checked_add(entry.len).ok_or_else(|| {
                SegmentError::corrupt(section.name(), format!("length {} overflows", entry.len))
            })?;
            if end > file_len {
                return Err(SegmentError::Truncated {
                    what: section.name(),
                    needed: end,
                    have: file_len,
                });
            }
            // Both ends are <= the file's length, so they fit a usize.
            *range = usize::try_from(entry.offset).unwrap_or(usize::MAX)
                ..usize::try_from(end).unwrap_or(usize::MAX);
            expected = end;
        }
        if expected != file_len {
            return Err(SegmentError::TrailingBytes {
                expected,
                have: file_len,
            });
        }
        let [schema_at, index_at, rows_at, keys_at, values_at] = ranges;
        let section_bytes = |range: &Range<usize>| file.get(range.clone()).unwrap_or_default();

        for (section, range) in Section::ALL
            .iter()
            .zip([&schema_at, &index_at, &rows_at, &keys_at, &values_at])
        {
            let expected = header.section(*section).crc;
            let got = crc32fast::hash(section_bytes(range));
            if expected != got {
                return Err(SegmentError::ChecksumMismatch {
                    what: section.name(),
                    expected,
                    got,
                });
            }
        }

        let schema = decode_section(
            section_bytes(&schema_at),
            header.field_count,
            header.time_slots,
        )?;
        if schema.fingerprint != header.schema_fingerprint {
            return Err(SegmentError::corrupt(
                "schema fingerprint",
                format!(
                    "header says {:#018x}, the field records hash to {:#018x}",
                    header.schema_fingerprint, schema.fingerprint
                ),
            ));
        }
        let row_width = schema.layout.width;
        if header.row_width as usize != row_width {
            return Err(SegmentError::corrupt(
                "row width",
                format!(
                    "header says {}, the schema implies {row_width}",
                    header.row_width
                ),
            ));
        }
        let entity_count = header.entity_count;
        if entity_count > MAX_ENTITIES {
            return Err(SegmentError::corrupt(
                "entity count",
                format!("{entity_count} exceeds {MAX_ENTITIES}"),
            ));
        }
        let slot_count = header.index_slot_count;
        let min_slots = u64::from(entity_count).saturating_mul(2).max(1);
        if !slot_count.is_power_of_two() || slot_count < min_slots {
            return Err(SegmentError::corrupt(
                "index slot count",
                format!(
                    "{slot_count} for {entity_count} entities: must be a power of two >= \
                     {min_slots}"
                ),
            ));
        }
        check_len(
            Section::Index,
            index_at.len(),
            slot_count.checked_mul(SLOT_LEN as u64),
        )?;
        check_len(
            Section::Rows,
            rows_at.len(),
            u64::from(entity_count).checked_mul(row_width as u64),
        )?;
        // Fits a usize: the index section (slot_count * 8 bytes) lies inside the file.
        let mask = usize::try_from(slot_count.saturating_sub(1)).unwrap_or(usize::MAX);

        let values_owned = if header.flags & FLAG_VALUES_ZSTD != 0 {
            Some(decompress_values(
                section_bytes(&values_at),
                header.values_raw_len,
            )?)
        } else {
            check_len(
                Section::Values,
                values_at.len(),
                Some(header.values_raw_len),
            )?;
            None
        };

        let by_feature = {
            let mut pairs: Vec<(FeatureId, usize)> = schema
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.feature_id, i))
                .collect();
            pairs.sort_unstable();
            pairs
        };
        let segment = Segment {
            values_owned,
            values: values_at,
            index: index_at,
            rows: rows_at,
            keys: keys_at,
            mask,
            row_width,
            entity_count,
            fields: schema.fields,
            layout: schema.layout,
            by_feature,
            group: schema.group,
            group_version: header.group_version,
            fingerprint: header.schema_fingerprint,
            data,
        };
        segment.validate_contents()?;
        Ok(segment)
    }

    /// The borrowed sections. `None` only if the ranges found at open no longer fit
    /// the bytes (an `AsRef` that changed its answer).
    #[inline]
    fn view(&self) -> Option<View<'_>> {
        let file = self.data.as_ref();
        let values = match &self.values_owned {
            Some(owned) => owned.as_slice(),
            None => file.get(self.values.clone())?,
        };
        Some(View {
            index: file.get(self.index.clone())?,
            rows: file.get(self.rows.clone())?,
            keys: file.get(self.keys.clone())?,
            values,
            layout: &self.layout,
            row_width: self.row_width,
            mask: self.mask,
        })
    }

    /// The row of `entity_id`, or `None` if the segment does not hold it. One hash probe;
    /// no allocation, no lock.
    #[inline]
    pub fn find(&self, entity_id: &[u8]) -> Option<Row<'_>> {
        self.view()?.find(entity_id)
    }

    /// Finds `count` ids (`id_of(i)` for `i` in `0..count`) and calls `visit(i, row)`
    /// for each, in order `i = 0, 1, ...`, with `None` for ids the segment does not hold.
    /// Same answers as calling [`find`](Self::find) per id, but the index slots and rows
    /// of a chunk of ids are requested before any of them is read, so their cache
    /// misses overlap. No allocation: chunks of 16 ids on the stack. `id_of` is called
    /// once per id.
    ///
    /// Why: a lookup of an entity not in cache is two dependent misses (its index slot,
    /// then its row), each a full memory latency, and a loop of `find` barely overlaps
    /// one id's misses with the next's: reading a row's fields fills the CPU's
    /// out-of-order window before the next id's slot is requested. A ranking request
    /// looks up hundreds of candidate ids at once, and their misses are independent, so
    /// the memory system can serve many at a time (memory-level parallelism): this
    /// method first touches every id's home slot, then every candidate row, and only
    /// then compares and visits, so a chunk costs about two memory latencies instead of
    /// two per id. The touches are plain bounds-checked reads, hints only: the answers
    /// come from the same exact probe as `find`. In `benches/segment_probe.rs`
    /// (`batch500_*`: 500 uniform ids over 1M entities, 50 fields read from each) this
    /// halves the time per id, to near the cost of a lookup that hits the cache.
    pub fn find_batch<'s, 'k>(
        &'s self,
        count: usize,
        id_of: impl Fn(usize) -> &'k [u8],
        mut visit: impl FnMut(usize, Option<Row<'s>>),
    ) {
        match self.view() {
            Some(view) => view.find_batch(count, id_of, visit),
            None => (0..count).for_each(|i| visit(i, None)),
        }
    }

    /// Row `index` (`0..entity_count`), in storage order, its cache lines warmed like
    /// `find`'s.
    pub fn row(&self, index: usize) -> Option<Row<'_>> {
        if index >= self.entity_count() {
            return None;
        }
        let view = self.view()?;
        let index = u32::try_from(index).ok()?;
        warm(view.row_bytes(index)?);
        view.row(index)
    }

    /// Every row, in storage order (for verification and tests; serving uses `find`).
    pub fn iter(&self) -> Rows<'_> {
        let view = self.view();
        Rows {
            end: if view.is_some() { self.entity_count } else { 0 },
            view,
            next: 0,
        }
    }

    /// The schema position of `feature_id`, for [`Row::get`].
    pub fn field_index(&self, feature_id: FeatureId) -> Option<usize> {
        let at = self
            .by_feature
            .binary_search_by_key(&feature_id, |&(id, _)| id)
            .ok()?;
        self.by_feature.get(at).map(|&(_, index)| index)
    }

    /// The fields, in schema (row) order.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// Number of entities (rows).
    pub fn entity_count(&self) -> usize {
        self.entity_count as usize
    }

    /// The feature group the rows belong to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The batch version of the group the rows were taken from.
    pub fn group_version(&self) -> u64 {
        self.group_version
    }

    /// The schema fingerprint (see [`fingerprint`](super::fingerprint)).
    pub fn schema_fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// True when the values section is stored zstd-compressed (and was decompressed
    /// into memory at open).
    pub fn values_compressed(&self) -> bool {
        self.values_owned.is_some()
    }

    /// The whole file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// The bytes the segment was opened over.
    pub(crate) fn data(&self) -> &D {
        &self.data
    }

    /// Checks the index, every row, and that every entity is found by its own probe.
    fn validate_contents(&self) -> Result<(), SegmentError> {
        let view = self
            .view()
            .ok_or_else(|| SegmentError::corrupt("segment", "sections moved during open"))?;
        let n = self.entity_count;

        let mut occupied: u64 = 0;
        for (pos, raw) in view.index.chunks_exact(SLOT_LEN).enumerate() {
            let slot = raw.try_into().map(u64::from_le_bytes).unwrap_or_default();
            match slot_row(slot) {
                None if slot != 0 => {
                    return Err(SegmentError::corrupt(
                        "index slot",
                        format!("slot {pos} ({slot:#018x}) has a tag but no row"),
                    ));
                }
                None => {}
                Some(row) if row >= n => {
                    return Err(SegmentError::corrupt(
                        "index slot",
                        format!("slot {pos} names row {row}, the segment has {n}"),
                    ));
                }
                Some(_) => occupied = occupied.saturating_add(1),
            }
        }
        if occupied != u64::from(n) {
            return Err(SegmentError::corrupt(
                "index",
                format!("{occupied} occupied slots for {n} entities"),
            ));
        }

        for index in 0..n {
            check_row(&view, index)?;
        }

        // With as many occupied slots as rows, all naming rows < n, this makes the
        // slots a bijection onto the rows: each row is reached by its own probe first.
        for index in 0..n {
            let row = view
                .row(index)
                .ok_or_else(|| SegmentError::corrupt("row", format!("row {index} unreadable")))?;
            match view.find(row.entity_id()) {
                Some(found) if found.index() == index as usize => {}
                Some(found) => {
                    return Err(SegmentError::DuplicateEntity {
                        entity_id: row.entity_id().to_vec(),
                        first: found.index() as u64,
                        second: u64::from(index),
                    });
                }
                None => {
                    return Err(SegmentError::corrupt(
                        "index",
                        format!(
                            "row {index} ({:02x?}) is not reachable by its probe",
                            row.entity_id()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Iterator over a segment's rows in storage order; see [`Segment::iter`].
pub struct Rows<'a> {
    view: Option<View<'a>>,
    next: u32,
    end: u32,
}

impl<'a> Iterator for Rows<'a> {
    type Item = Row<'a>;

    fn next(&mut self) -> Option<Row<'a>> {
        while self.next < self.end {
            let index = self.next;
            self.next = self.next.saturating_add(1);
            if let Some(row) = self.view.as_ref().and_then(|v| v.row(index)) {
                return Some(row);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.end.saturating_sub(self.next) as usize))
    }
}

impl<D: AsRef<[u8]>> std::fmt::Debug for Segment<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("group", &self.group)
            .field("group_version", &self.group_version)
            .field("entities", &self.entity_count)
            .field("fields", &self.fields.len())
            .field("bytes", &self.data.as_ref().len())
            .finish_non_exhaustive()
    }
}

/// Fails unless a section holds exactly `want` bytes (`None`: the count overflowed).
fn check_len(section: Section, have: usize, want: Option<u64>) -> Result<(), SegmentError> {
    match want {
        Some(want) if want == have as u64 => Ok(()),
        Some(want) => Err(SegmentError::corrupt(
            section.name(),
            format!("{have} bytes, the header's counts need {want}"),
        )),
        None => Err(SegmentError::corrupt(
            section.name(),
            "the header's counts overflow",
        )),
    }
}

/// Decompresses a zstd values section that must expand to exactly `raw_len` bytes,
/// refusing sizes beyond [`MAX_ZSTD_EXPANSION`] times the stored length.
fn decompress_values(stored: &[u8], raw_len: u64) -> Result<Vec<u8>, SegmentError> {
    let limit = (stored.len() as u64).saturating_mul(MAX_ZSTD_EXPANSION);
    if raw_len > limit {
        return Err(SegmentError::corrupt(
            "values raw length",
            format!(
                "{raw_len} bytes from {} compressed exceeds the {MAX_ZSTD_EXPANSION}x limit",
                stored.len()
            ),
        ));
    }
    let capacity = usize::try_from(raw_len)
        .map_err(|_| SegmentError::corrupt("values raw length", format!("{raw_len}")))?;
    let values = zstd::bulk::decompress(stored, capacity).map_err(|e| SegmentError::Zstd {
        what: "decompress",
        detail: e.to_string(),
    })?;
    if values.len() != capacity {
        return Err(SegmentError::corrupt(
            "values section",
            format!(
                "decompressed to {} bytes, header says {raw_len}",
                values.len()
            ),
        ));
    }
    Ok(values)
}

/// Checks row `index`: its entity id, bitmaps, time indexes and every value.
fn check_row(view: &View<'_>, index: u32) -> Result<(), SegmentError> {
    let layout = view.layout;
    let null_at = layout.null_bitmap_at();
    let bitmap_len = layout.bitmap_len;
    let corrupt = |detail: String| SegmentError::corrupt("row", format!("row {index}: {detail}"));
    let start = (index as usize)
        .checked_mul(view.row_width)
        .ok_or_else(|| corrupt("offset overflows".into()))?;
    let end = start
        .checked_add(view.row_width)
        .ok_or_else(|| corrupt("offset overflows".into()))?;
    let bytes = view
        .rows
        .get(start..end)
        .ok_or_else(|| corrupt("outside the rows section".into()))?;
    let (key_offset, key_len) = key_ref(bytes).ok_or_else(|| corrupt("no row header".into()))?;
    if key_len == 0 || key_len as usize > MAX_ENTITY_ID_LEN {
        return Err(corrupt(format!(
            "entity id length {key_len} is outside 1..={MAX_ENTITY_ID_LEN}"
        )));
    }
    let entity_id = usize::try_from(key_offset)
        .ok()
        .and_then(|start| view.keys.get(start..start.checked_add(key_len as usize)?))
        .ok_or_else(|| {
            corrupt(format!(
                "entity id at {key_offset}+{key_len} is outside the keys section ({} bytes)",
                view.keys.len()
            ))
        })?;
    if key_prefix(bytes) != Some(prefix_of(entity_id)) {
        return Err(corrupt(
            "inline id prefix differs from the id's first bytes (zero-padded)".into(),
        ));
    }

    let presence = bytes
        .get(super::layout::ROW_PRESENCE_OFFSET..null_at)
        .unwrap_or_default();
    let nulls = bytes
        .get(null_at..null_at.saturating_add(bitmap_len))
        .unwrap_or_default();
    let field_count = layout.fields.len();
    for (byte, (&p, &n)) in presence.iter().zip(nulls).enumerate() {
        // Bits past the last field must be clear.
        let first_field = byte.saturating_mul(8);
        let valid: u8 = match field_count.saturating_sub(first_field) {
            0 => 0,
            k if k >= 8 => 0xff,
            k => (1u8 << k).wrapping_sub(1),
        };
        if (p | n) & !valid != 0 {
            return Err(corrupt(format!(
                "bitmap byte {byte} sets bits past the last field"
            )));
        }
        if n & !p != 0 {
            return Err(corrupt(format!(
                "bitmap byte {byte}: null bits {n:#04x} without presence bits {p:#04x}"
            )));
        }
    }

    for (i, field) in layout.fields.iter().enumerate() {
        let present = bytes
            .get(field.presence_byte)
            .is_some_and(|b| b & field.mask != 0);
        let null = bytes
            .get(field.null_byte)
            .is_some_and(|b| b & field.mask != 0);
        let value = bytes
            .get(field.value_at..field.value_end)
            .ok_or_else(|| corrupt(format!("field {i} value outside the row")))?;
        let time_index = match layout.time_index_width {
            0 => 0,
            width => bytes
                .get(field.time_index_at..field.time_index_at.saturating_add(width))
                .map(|b| {
                    b.iter()
                        .rev()
                        .fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
                })
                .ok_or_else(|| corrupt(format!("field {i} time index outside the row")))?,
        };
        if !present {
            if time_index != 0 || value.iter().any(|&b| b != 0) {
                return Err(corrupt(format!(
                    "field {i} is absent but its time index or value is not zero"
                )));
            }
            continue;
        }
        if time_index >= layout.time_slots {
            return Err(corrupt(format!(
                "field {i}: time index {time_index}, the row has {} event-time slots",
                layout.time_slots
            )));
        }
        if null {
            if value.iter().any(|&b| b != 0) {
                return Err(corrupt(format!(
                    "field {i} is null but its value is not zero"
                )));
            }
            continue;
        }
        check_value(view, field, value)
            .map_err(|detail| corrupt(format!("field {i}: {detail}")))?;
    }
    Ok(())
}

/// Checks one present value.
fn check_value(view: &View<'_>, field: &FieldLayout, value: &[u8]) -> Result<(), String> {
    let var = || -> Result<&[u8], String> {
        let offset = super::layout::read_u64(value, 0).unwrap_or_default();
        let len = super::layout::read_u32(value, size_of::<u64>()).unwrap_or_default();
        offset
            .checked_add(u64::from(len))
            .filter(|&end| end <= view.values.len() as u64)
            .and_then(|_| {
                let start = usize::try_from(offset).ok()?;
                view.values.get(start..start.checked_add(len as usize)?)
            })
            .ok_or_else(|| {
                format!(
                    "value at {offset}+{len} is outside the values section ({} bytes)",
                    view.values.len()
                )
            })
    };
    match field.kind {
        Kind::Int64 | Kind::Float64 | Kind::Float32 => Ok(()),
        Kind::Bool => match value.first() {
            Some(0 | 1) => Ok(()),
            other => Err(format!("bool byte {other:?}, expected 0 or 1")),
        },
        Kind::Str => std::str::from_utf8(var()?)
            .map(|_| ())
            .map_err(|e| format!("string is not UTF-8: {e}")),
        Kind::Bytes => var().map(|_| ()),
        Kind::F32Vector => {
            let bytes = var()?;
            let want = u64::from(field.dim).saturating_mul(4);
            if bytes.len() as u64 == want {
                Ok(())
            } else {
                Err(format!(
                    "vector of {} bytes, dimension {} needs {want}",
                    bytes.len(),
                    field.dim
                ))
            }
        }
    }
}
