//! [`SegmentWriter`]: builds a segment in memory, then streams it out.
//!
//! Owns the write path: encoding pushed rows, building the index, choosing whether the
//! values section is compressed, and the durable file protocol (temp file in the target
//! directory, fsync, rename, fsync of the directory).
//!
//! Invariants: the writer emits only what [`Segment::open`](super::Segment::open)
//! accepts: canonical rows (absent slots zero, null values zero), at most
//! [`MAX_PROBE`](super::layout::MAX_PROBE) probes per entity, unique ids. Each section's
//! crc32 is computed by [`CrcWriter`] over exactly the bytes the underlying writer
//! accepted (`&buf[..n]`), so a short write cannot make the stored checksum disagree
//! with the file.
//!
//! Thread safety: a writer is a plain owned value; build one per thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::SegmentError;
use super::index::{self, hash64};
use super::layout::{
    EVENT_TIME_LEN, FLAG_VALUES_ZSTD, HEADER_LEN, Header, MAX_ENTITIES, MAX_ZSTD_EXPANSION,
    ROW_KEY_LEN_OFFSET, ROW_KEY_OFFSET_OFFSET, ROW_KEY_PREFIX_OFFSET, SECTION_COUNT, Section,
    SectionEntry,
};
use super::row::{key_ref, prefix_of};
use super::schema::{
    FieldSpec, RowLayout, check_fields, check_group_name, encode_section, fingerprint,
};
use crate::codec::MAX_ENTITY_ID_LEN;
use crate::types::{DType, TimestampMs, Value};

/// zstd level for the values section: segments are built offline, once per version.
const ZSTD_LEVEL: i32 = 9;

/// One field value handed to [`SegmentWriter::push`]; borrowed, so pushing copies the
/// bytes once, into the segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldInput<'a> {
    /// An explicit null.
    Null,
    /// For an int64 field.
    Int64(i64),
    /// For a float64 field.
    Float64(f64),
    /// For a float32 field.
    Float32(f32),
    /// For a bool field.
    Bool(bool),
    /// For a string field.
    Str(&'a str),
    /// For a bytes field.
    Bytes(&'a [u8]),
    /// For a float32 vector field; the length must equal the dimension.
    F32Vector(&'a [f32]),
}

impl FieldInput<'_> {
    /// The input's type name, for errors.
    fn type_name(&self) -> &'static str {
        match self {
            FieldInput::Null => "null",
            FieldInput::Int64(_) => "int64",
            FieldInput::Float64(_) => "float64",
            FieldInput::Float32(_) => "float32",
            FieldInput::Bool(_) => "bool",
            FieldInput::Str(_) => "string",
            FieldInput::Bytes(_) => "bytes",
            FieldInput::F32Vector(_) => "float32 vector",
        }
    }
}

impl<'a> From<&'a Value> for FieldInput<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => FieldInput::Null,
            Value::Int64(v) => FieldInput::Int64(*v),
            Value::Float64(v) => FieldInput::Float64(*v),
            Value::Float32(v) => FieldInput::Float32(*v),
            Value::Bool(v) => FieldInput::Bool(*v),
            Value::String(v) => FieldInput::Str(v),
            Value::Bytes(v) => FieldInput::Bytes(v),
            Value::Float32Vector(v) => FieldInput::F32Vector(v),
        }
    }
}

/// Whether the writer compresses the values section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValuesCompression {
    /// Compress when it saves at least 25% and expands at most
    /// [`MAX_ZSTD_EXPANSION`] times.
    #[default]
    Auto,
    /// Never compress.
    Never,
    /// Compress whenever the expansion limit allows (tests and fuzz seeds).
    Always,
}

/// Builds one segment file. Push rows, then call a `finish_*` method.
///
/// Everything is kept in memory until `finish`: the header, written first, holds
/// counts and checksums of the sections after it.
#[derive(Debug)]
pub struct SegmentWriter {
    group: String,
    group_version: u64,
    fields: Vec<FieldSpec>,
    /// The layout of staged rows: no event-time table (see `times`).
    layout: RowLayout,
    compression: ValuesCompression,
    /// Staged rows, `layout.width` bytes each, in push order: row header, bitmaps and
    /// values. `finish` inserts each row's event-time table and time indexes, once the
    /// widest table is known.
    rows: Vec<u8>,
    /// Each row's distinct event times, ascending, concatenated in push order.
    times: Vec<TimestampMs>,
    /// How many of `times` each row has.
    time_counts: Vec<u32>,
    /// For rows with more than one distinct time: each field's index into the row's
    /// times (0 for absent fields), concatenated in push order.
    time_indexes: Vec<u16>,
    /// Scratch for one row's distinct times.
    row_times: Vec<TimestampMs>,
    /// Entity ids, concatenated in push order.
    keys: Vec<u8>,
    /// Variable-width values, each distinct value stored once.
    values: ValueStore,
    entity_count: u32,
}

impl SegmentWriter {
    /// A writer for rows of `fields` from batch version `group_version` of `group`.
    pub fn new(
        group: &str,
        group_version: u64,
        fields: Vec<FieldSpec>,
    ) -> Result<SegmentWriter, SegmentError> {
        check_group_name(group).map_err(|detail| SegmentError::InvalidSchema { detail })?;
        check_fields(&fields)?;
        let layout = RowLayout::new(&fields, 0)?;
        Ok(SegmentWriter {
            group: group.to_owned(),
            group_version,
            fields,
            layout,
            compression: ValuesCompression::Auto,
            rows: Vec::new(),
            times: Vec::new(),
            time_counts: Vec::new(),
            time_indexes: Vec::new(),
            row_times: Vec::new(),
            keys: Vec::new(),
            values: ValueStore::default(),
            entity_count: 0,
        })
    }

    /// Sets when the values section is compressed (default [`ValuesCompression::Auto`]).
    pub fn compression(mut self, mode: ValuesCompression) -> SegmentWriter {
        self.compression = mode;
        self
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.entity_count as usize
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.entity_count == 0
    }

    /// Appends the row of `entity_id`: one entry per schema field, `None` for absent,
    /// `Some((event_time_ms, value))` otherwise ([`FieldInput::Null`] for a null).
    ///
    /// The whole row is checked before anything is stored, so a rejected row leaves the
    /// writer as it was. Duplicate ids are detected at `finish`, when the index is
    /// built.
    pub fn push(
        &mut self,
        entity_id: &[u8],
        fields: &[Option<(TimestampMs, FieldInput<'_>)>],
    ) -> Result<(), SegmentError> {
        let row = u64::from(self.entity_count);
        self.check_row(row, entity_id, fields)?;
        self.encode_row(entity_id, fields);
        self.keys.extend_from_slice(entity_id);
        self.entity_count += 1;
        Ok(())
    }

    /// Every way a pushed row can be rejected.
    fn check_row(
        &self,
        row: u64,
        entity_id: &[u8],
        fields: &[Option<(TimestampMs, FieldInput<'_>)>],
    ) -> Result<(), SegmentError> {
        let invalid = |detail: String| SegmentError::InvalidRow { row, detail };
        if self.entity_count >= MAX_ENTITIES {
            return Err(invalid(format!(
                "a segment holds at most {MAX_ENTITIES} entities"
            )));
        }
        if entity_id.is_empty() || entity_id.len() > MAX_ENTITY_ID_LEN {
            return Err(invalid(format!(
                "entity id length {} is outside 1..={MAX_ENTITY_ID_LEN}",
                entity_id.len()
            )));
        }
        if fields.len() != self.fields.len() {
            return Err(invalid(format!(
                "{} values for {} fields",
                fields.len(),
                self.fields.len()
            )));
        }
        for (spec, input) in self.fields.iter().zip(fields) {
            let Some((_, input)) = input else {
                continue;
            };
            let var_len = match (spec.field_type, *input) {
                (_, FieldInput::Null)
                | (DType::Int64, FieldInput::Int64(_))
                | (DType::Float64, FieldInput::Float64(_))
                | (DType::Float32, FieldInput::Float32(_))
                | (DType::Bool, FieldInput::Bool(_)) => None,
                (DType::String, FieldInput::Str(v)) => Some(v.len()),
                (DType::Bytes, FieldInput::Bytes(v)) => Some(v.len()),
                (DType::Float32Vector { dim }, FieldInput::F32Vector(v)) => {
                    if v.len() != dim as usize {
                        return Err(invalid(format!(
                            "feature {}: vector of {} components, dimension {dim}",
                            spec.feature_id,
                            v.len()
                        )));
                    }
                    Some(size_of_val(v))
                }
                _ => {
                    return Err(SegmentError::TypeMismatch {
                        row,
                        feature_id: spec.feature_id,
                        expected: spec.field_type,
                        got: input.type_name(),
                    });
                }
            };
            if var_len.is_some_and(|len| u32::try_from(len).is_err()) {
                return Err(invalid(format!(
                    "feature {}: a value of {var_len:?} bytes exceeds u32::MAX",
                    spec.feature_id
                )));
            }
        }
        Ok(())
    }

    /// Appends a row that [`Self::check_row`] accepted.
    fn encode_row(&mut self, entity_id: &[u8], fields: &[Option<(TimestampMs, FieldInput<'_>)>]) {
        let start = self.rows.len();
        self.rows.resize(start + self.layout.width, 0);
        let Some(bytes) = self.rows.get_mut(start..) else {
            return;
        };
        put(
            bytes,
            ROW_KEY_OFFSET_OFFSET,
            &(self.keys.len() as u64).to_le_bytes(),
        );
        put(
            bytes,
            ROW_KEY_LEN_OFFSET,
            &(entity_id.len() as u32).to_le_bytes(),
        );
        put(
            bytes,
            ROW_KEY_PREFIX_OFFSET,
            &prefix_of(entity_id).to_le_bytes(),
        );
        let mut vector = Vec::new();
        for (layout, input) in self.layout.fields.iter().zip(fields) {
            let Some((_, input)) = input else {
                continue;
            };
            set_bit(bytes, layout.presence_byte, layout.mask);
            let at = layout.value_at;
            match *input {
                FieldInput::Null => set_bit(bytes, layout.null_byte, layout.mask),
                FieldInput::Int64(v) => put(bytes, at, &v.to_le_bytes()),
                FieldInput::Float64(v) => put(bytes, at, &v.to_le_bytes()),
                FieldInput::Float32(v) => put(bytes, at, &v.to_le_bytes()),
                FieldInput::Bool(v) => put(bytes, at, &[u8::from(v)]),
                FieldInput::Str(v) => self.values.put_ref(bytes, at, v.as_bytes()),
                FieldInput::Bytes(v) => self.values.put_ref(bytes, at, v),
                FieldInput::F32Vector(v) => {
                    vector.clear();
                    vector.extend(v.iter().flat_map(|x| x.to_le_bytes()));
                    self.values.put_ref(bytes, at, &vector);
                }
            }
        }
        self.stage_times(fields);
    }

    /// Records the row's distinct event times (ascending) and, when there are several,
    /// each field's index into them.
    fn stage_times(&mut self, fields: &[Option<(TimestampMs, FieldInput<'_>)>]) {
        self.row_times.clear();
        self.row_times
            .extend(fields.iter().flatten().map(|(time, _)| *time));
        self.row_times.sort_unstable();
        self.row_times.dedup();
        self.times.extend_from_slice(&self.row_times);
        // At most one distinct time per field, and fields are at most MAX_FIELDS.
        self.time_counts.push(self.row_times.len() as u32);
        if self.row_times.len() > 1 {
            let row_times = &self.row_times;
            self.time_indexes
                .extend(fields.iter().map(|field| match field {
                    Some((time, _)) => row_times.binary_search(time).unwrap_or(0) as u16,
                    None => 0,
                }));
        }
    }

    /// Writes the segment to `path` durably: a temp file in the same directory,
    /// fsynced, renamed over `path`, then the directory fsynced. A file already at
    /// `path` is replaced; maps of it stay valid, as rename never changes its inode.
    pub fn finish_to_path(self, path: impl AsRef<Path>) -> Result<(), SegmentError> {
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| SegmentError::Io { what, path, source }
        };
        let temp = tempfile::Builder::new()
            .prefix(".segment-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io("create temp file in", &dir))?;
        let temp_path = temp.path().to_path_buf();
        let mut out = BufWriter::with_capacity(1 << 20, temp.as_file());
        self.write_into(&mut out, &temp_path)?;
        out.flush().map_err(io("write", &temp_path))?;
        drop(out);
        temp.as_file().sync_all().map_err(io("fsync", &temp_path))?;
        temp.persist(path).map_err(|e| SegmentError::Io {
            what: "rename temp file to",
            path: path.to_path_buf(),
            source: e.error,
        })?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", &dir))?;
        Ok(())
    }

    /// The segment's bytes (tests, fuzz seeds, small segments).
    pub fn finish_to_vec(self) -> Result<Vec<u8>, SegmentError> {
        let mut out = Cursor::new(Vec::new());
        self.write_into(&mut out, Path::new(""))?;
        Ok(out.into_inner())
    }

    /// Streams the segment into `out` (at its current end): a placeholder header, each
    /// section through a [`CrcWriter`], then the real header over the placeholder.
    pub fn finish_to_writer<W: Write + Seek>(self, mut out: W) -> Result<W, SegmentError> {
        self.write_into(&mut out, Path::new(""))?;
        Ok(out)
    }

    fn write_into<W: Write + Seek>(mut self, out: &mut W, path: &Path) -> Result<(), SegmentError> {
        let io = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| SegmentError::Io { what, path, source }
        };
        let (rows, keys, width) = (&self.rows, &self.keys, self.layout.width);
        let time_slots = self.time_counts.iter().copied().max().unwrap_or(0).max(1) as usize;
        let final_layout = RowLayout::new(&self.fields, time_slots)?;
        let key_of = |row: u32| -> &[u8] {
            let start = row as usize * width;
            rows.get(start..start + width)
                .and_then(key_ref)
                .and_then(|(offset, len)| keys.get(offset as usize..offset as usize + len as usize))
                .unwrap_or_default()
        };
        let slots = index::build(self.entity_count, key_of)?;
        let index: Vec<u8> = slots.iter().flat_map(|s| s.to_le_bytes()).collect();
        let schema = encode_section(&self.fields, &self.layout, &self.group);
        let values_raw_len = self.values.bytes.len() as u64;
        let (values, flags) = match self.compress_values()? {
            Some(compressed) => (compressed, FLAG_VALUES_ZSTD),
            None => (std::mem::take(&mut self.values.bytes), 0),
        };

        let base = out.stream_position().map_err(io("seek"))?;
        out.write_all(&[0; HEADER_LEN])
            .map_err(io("write header"))?;
        let mut sections = [SectionEntry::default(); SECTION_COUNT];
        let mut offset = HEADER_LEN as u64;
        let bodies: [&[u8]; SECTION_COUNT] = [&schema, &index, &[], keys, &values];
        for ((section, entry), body) in Section::ALL.iter().zip(&mut sections).zip(bodies) {
            let mut crc_out = CrcWriter::new(&mut *out);
            if *section == Section::Rows {
                self.write_rows(&final_layout, &mut crc_out)
                    .map_err(io(section.name()))?;
            } else {
                crc_out.write_all(body).map_err(io(section.name()))?;
            }
            *entry = SectionEntry {
                offset,
                len: crc_out.written,
                crc: crc_out.hasher.finalize(),
            };
            offset += entry.len;
        }
        let header = Header {
            flags,
            field_count: self.fields.len() as u32,
            group_version: self.group_version,
            schema_fingerprint: fingerprint(&self.fields)?,
            entity_count: self.entity_count,
            row_width: final_layout.width as u32,
            time_slots: time_slots as u32,
            index_slot_count: slots.len() as u64,
            values_raw_len,
            sections,
        };
        out.seek(SeekFrom::Start(base)).map_err(io("seek"))?;
        out.write_all(&header.encode())
            .map_err(io("write header"))?;
        out.seek(SeekFrom::Start(base + offset))
            .map_err(io("seek"))?;
        Ok(())
    }

    /// Writes the staged rows in their final layout: each gets the event-time table of
    /// `layout.time_slots` entries (its distinct times ascending, then zeros) and, when
    /// the table has several slots, one time index per field.
    fn write_rows(&self, layout: &RowLayout, out: &mut impl Write) -> io::Result<()> {
        let staged = &self.layout;
        let fixed = staged.time_table_at;
        let mut row = vec![0u8; layout.width];
        let mut times = self.times.iter();
        let mut indexes = self.time_indexes.chunks_exact(layout.fields.len().max(1));
        for (staged_row, &count) in self.rows.chunks_exact(staged.width).zip(&self.time_counts) {
            row.fill(0);
            put(&mut row, 0, staged_row.get(..fixed).unwrap_or_default());
            for (k, time) in times.by_ref().take(count as usize).enumerate() {
                let at = layout.time_table_at + k * EVENT_TIME_LEN;
                put(&mut row, at, &time.to_le_bytes());
            }
            if count > 1
                && let Some(row_indexes) = indexes.next()
            {
                for (field, &index) in layout.fields.iter().zip(row_indexes) {
                    let bytes = index.to_le_bytes();
                    let used = bytes.get(..layout.time_index_width).unwrap_or_default();
                    put(&mut row, field.time_index_at, used);
                }
            }
            let values = staged_row.get(staged.value_area_at..).unwrap_or_default();
            put(&mut row, layout.value_area_at, values);
            out.write_all(&row)?;
        }
        Ok(())
    }

    /// The compressed values section, if the compression mode and the data call for it.
    fn compress_values(&self) -> Result<Option<Vec<u8>>, SegmentError> {
        let values = &self.values.bytes;
        if self.compression == ValuesCompression::Never || values.is_empty() {
            return Ok(None);
        }
        let compressed =
            zstd::bulk::compress(values, ZSTD_LEVEL).map_err(|e| SegmentError::Zstd {
                what: "compress",
                detail: e.to_string(),
            })?;
        let raw = values.len() as u64;
        let stored = compressed.len() as u64;
        let within_limit = raw <= stored.saturating_mul(MAX_ZSTD_EXPANSION);
        let pays = stored.saturating_mul(4) <= raw.saturating_mul(3);
        let wanted = match self.compression {
            ValuesCompression::Always => true,
            ValuesCompression::Auto => pays,
            ValuesCompression::Never => false,
        };
        Ok((within_limit && wanted).then_some(compressed))
    }
}

/// Copies `bytes` into `buf` at `at`; callers pass offsets from the row layout, which
/// always fit the row.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn set_bit(buf: &mut [u8], at: usize, mask: u8) {
    if let Some(byte) = buf.get_mut(at) {
        *byte |= mask;
    }
}

/// The values section under construction. Equal values are stored once and shared by
/// every row that holds them (categories, defaults, repeated embeddings), which saves
/// memory in the mapped file as well as on disk.
#[derive(Debug, Default)]
struct ValueStore {
    bytes: Vec<u8>,
    /// hash64 of a value -> (offset, length) of each distinct value with that hash.
    seen: HashMap<u64, Vec<(u64, u32)>>,
}

impl ValueStore {
    /// Stores `value` (or finds an equal one) and writes its reference (offset u64,
    /// length u32) at `at` in `row`. The caller checked that the length fits a u32.
    fn put_ref(&mut self, row: &mut [u8], at: usize, value: &[u8]) {
        let len = value.len() as u32;
        let candidates = self.seen.entry(hash64(value)).or_default();
        let existing = candidates.iter().copied().find(|&(offset, l)| {
            l == len
                && self
                    .bytes
                    .get(offset as usize..offset as usize + value.len())
                    .is_some_and(|stored| stored == value)
        });
        let offset = existing.map_or_else(
            || {
                let offset = self.bytes.len() as u64;
                self.bytes.extend_from_slice(value);
                candidates.push((offset, len));
                offset
            },
            |(offset, _)| offset,
        );
        put(row, at, &offset.to_le_bytes());
        put(row, at + size_of::<u64>(), &len.to_le_bytes());
    }
}

/// A writer that counts and checksums exactly the bytes its inner writer accepts.
pub struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> CrcWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> CrcWriter<W> {
        CrcWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
            written: 0,
        }
    }

    /// crc32 of the bytes written so far.
    pub fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash what was written, not what was offered: a short write leaves the rest
        // for the next call.
        let done = buf
            .get(..n)
            .ok_or_else(|| io::Error::other("writer reported more bytes than it was given"))?;
        self.hasher.update(done);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::Segment;

    /// Accepts at most 3 bytes per call, like a pipe under pressure.
    struct Trickle(Cursor<Vec<u8>>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for Trickle {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.0.seek(pos)
        }
    }

    fn writer() -> SegmentWriter {
        let mut w = SegmentWriter::new(
            "g",
            1,
            vec![
                FieldSpec {
                    feature_id: 1,
                    field_type: DType::String,
                },
                FieldSpec {
                    feature_id: 2,
                    field_type: DType::Int64,
                },
            ],
        )
        .expect("schema");
        for i in 0..20 {
            let s = format!("value number {i}");
            w.push(
                format!("e{i}").as_bytes(),
                &[
                    Some((i, FieldInput::Str(&s))),
                    Some((i, FieldInput::Int64(i))),
                ],
            )
            .expect("push");
        }
        w
    }

    /// style.md section 3: a writer that hashed all of `buf` before a short write would
    /// store checksums the reader rejects.
    #[test]
    fn short_writes_keep_checksums_true() {
        let out = writer()
            .finish_to_writer(Trickle(Cursor::new(Vec::new())))
            .expect("writes");
        let bytes = out.0.into_inner();
        assert_eq!(bytes, writer().finish_to_vec().expect("vec"));
        let segment = Segment::open(bytes).expect("opens");
        assert_eq!(segment.entity_count(), 20);
    }

    #[test]
    fn rejected_rows_leave_the_writer_unchanged() {
        let mut w = writer();
        let before = w.values.bytes.len();
        let err = w
            .push(
                b"bad",
                &[
                    Some((0, FieldInput::Str("kept?"))),
                    Some((0, FieldInput::Bool(true))),
                ],
            )
            .expect_err("type mismatch");
        assert!(
            matches!(err, SegmentError::TypeMismatch { feature_id: 2, .. }),
            "{err}"
        );
        assert_eq!(w.values.bytes.len(), before);
        assert_eq!(w.len(), 20);
        assert!(w.push(b"", &[None, None]).is_err());
        assert!(w.push(b"x", &[None]).is_err());
        let segment = Segment::open(w.finish_to_vec().expect("vec")).expect("opens");
        assert!(segment.find(b"bad").is_none());
    }

    #[test]
    fn duplicate_ids_fail_at_finish() {
        let mut w = writer();
        w.push(b"e3", &[None, None]).expect("push");
        let err = w.finish_to_vec().expect_err("duplicate");
        assert!(
            matches!(&err, SegmentError::DuplicateEntity { entity_id, first: 3, second: 20 } if entity_id == b"e3"),
            "{err}"
        );
    }

    #[test]
    fn equal_values_are_stored_once() {
        let mut w = SegmentWriter::new(
            "g",
            1,
            vec![FieldSpec {
                feature_id: 1,
                field_type: DType::String,
            }],
        )
        .expect("schema")
        .compression(ValuesCompression::Never);
        for (id, category) in [(b"a", "books"), (b"b", "toys"), (b"c", "books")] {
            w.push(id, &[Some((0, FieldInput::Str(category)))])
                .expect("push");
        }
        assert_eq!(w.values.bytes, b"bookstoys");
        let segment = Segment::open(w.finish_to_vec().expect("vec")).expect("opens");
        let read = |id: &[u8]| match segment.find(id).expect("found").get(0) {
            crate::segment::FieldValue::Present {
                value: crate::segment::ValueRef::Str(s),
                ..
            } => s.to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(read(b"a"), "books");
        assert_eq!(read(b"b"), "toys");
        assert_eq!(read(b"c"), "books");
    }

    #[test]
    fn finish_to_path_renames_into_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.v1.seg");
        writer().finish_to_path(&path).expect("writes");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            [std::ffi::OsString::from("g.v1.seg")],
            "no temp file left"
        );
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes, writer().finish_to_vec().expect("vec"));
    }
}
