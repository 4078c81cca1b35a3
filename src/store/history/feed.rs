//! A load's history records: [`HistoryFeed`] takes the batch rows the load writes
//! (one per entity, in key order: `crate::loader::rows`) and merge-joins them with the
//! group's previous recorded version ([`Base`]), writing one row record per entity
//! that changed (its changed values, and an absence for each value of the previous
//! version the new one lacks) into SST files that the commit stage ingests into
//! `history.{group}` (`crate::codec::history`, storage-format.md "History column
//! families").
//!
//! The previous version is read from its batch data (one sequential pass over its
//! rows) when it still exists, else reconstructed from the history family itself
//! (each feature's newest recorded batch record, row records and format-1 per-value
//! records alike); a group without recorded versions has an empty base, so its first
//! version is recorded whole, one row record per entity.
//!
//! A load runs the feed on its own thread ([`run`], through
//! `crate::loader::offthread::OffThreadFn`), which opens its own iterator and SST
//! writer from a [`BaseSpec`], so its work overlaps the load's instead of adding to it
//! on a machine with a spare core.
//!
//! Cost: rows are compared before values. Where the previous version is a batch row
//! of the same schema (a group whose features did not change), equal bytes are equal
//! values (rows are encoded canonically, `featstore_format::codec::row`), so an
//! unchanged entity costs one comparison of its row's bytes; only a row that differs
//! is decoded, on both sides, and compared value by value.
//!
//! Memory: one entity's values of each side (and the previous version's row, held
//! undecoded), one SST file's writer, plus the rows' chunks in flight to the thread
//! (`crate::loader::offthread`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{DB, DBRawIteratorWithThreadMode, Options, ReadOptions, SstFileWriter};

use super::GroupHistory;
use crate::codec::history::{self, HistoryKind, RowRecord, RowRecordWriter};
use crate::codec::key::{FEATURE_ID_LEN, VersionPrefix, decode_key, entity_prefix_len};
use crate::codec::row::{RowRef, RowSchema, SCHEMA_KEY, encode_field, encode_row};
use crate::loader::LoadError;
use crate::loader::sorter::SortedSink;
use crate::store::StoreError;
use crate::types::FeatureId;

/// Bytes read ahead by the iterator over the previous version's batch data.
const BASE_READAHEAD: usize = 2 << 20;

/// Where the previous version's values come from.
pub enum Base<'a> {
    /// No version was recorded: everything is new.
    Empty,
    /// The previous version's batch data: `prefix` in `cf`, rows when `schema` is set.
    Version {
        /// The version's column family.
        cf: Arc<rocksdb::BoundColumnFamily<'a>>,
        /// Its key prefix.
        prefix: VersionPrefix,
        /// Its row schema (layout 3), or `None` (one key per value).
        schema: Option<RowSchema>,
    },
    /// The history family itself: each key's newest recorded batch record.
    History {
        /// `history.{group}`.
        cf: Arc<rocksdb::BoundColumnFamily<'a>>,
        /// What counts as recorded.
        group: GroupHistory,
    },
}

/// Where the previous version's values come from, by name: what a load hands the
/// feed's thread, which resolves it into a [`Base`] with its own handles.
#[derive(Debug, Clone)]
pub enum BaseSpec {
    /// No version was recorded.
    Empty,
    /// The previous version's batch data: `prefix` in the family `family`.
    Version {
        /// The versions column family's name.
        family: String,
        /// The version's key prefix.
        prefix: VersionPrefix,
        /// Its row schema (layout 3), or `None` (one key per value).
        schema: Option<RowSchema>,
    },
    /// The history family `family` itself.
    History {
        /// `history.{group}`.
        family: String,
        /// What counts as recorded.
        group: GroupHistory,
    },
}

impl BaseSpec {
    /// The base in `db`.
    pub fn resolve(self, db: &DB) -> Result<Base<'_>, StoreError> {
        let handle = |name: &str| {
            db.cf_handle(name).ok_or_else(|| {
                StoreError::Internal(format!(
                    "column family {name} of the history's base vanished"
                ))
            })
        };
        Ok(match self {
            BaseSpec::Empty => Base::Empty,
            BaseSpec::Version {
                family,
                prefix,
                schema,
            } => Base::Version {
                cf: handle(&family)?,
                prefix,
                schema,
            },
            BaseSpec::History { family, group } => Base::History {
                cf: handle(&family)?,
                group,
            },
        })
    }
}

/// What a finished feed wrote.
#[derive(Debug, Default)]
pub struct FeedOutcome {
    /// The SST files (none when nothing changed).
    pub files: Vec<PathBuf>,
    /// Row records written.
    pub rows: u64,
    /// Values recorded: changed or new values and absences.
    pub changed: u64,
    /// Absences recorded.
    pub absent: u64,
    /// Entities of the previous version with no change at all.
    pub unchanged: u64,
}

/// The body of a load's history thread: resolves `spec` in `db`, feeds a
/// [`HistoryFeed`] of `version` (rows of `schema`) every row of `records` and
/// finishes it.
pub fn run(
    db: &DB,
    spec: BaseSpec,
    schema: RowSchema,
    options: &Options,
    dir: &Path,
    version: u64,
    records: &mut crate::loader::offthread::Records,
) -> Result<FeedOutcome, StoreError> {
    let base = spec.resolve(db)?;
    let mut feed = HistoryFeed::new(db, &base, schema, options, dir, version)?;
    records.feed(&mut feed).map_err(StoreError::Load)?;
    let (rows, changed, absent, unchanged) = (feed.rows, feed.changed, feed.absent, feed.unchanged);
    let files = feed.finish()?;
    Ok(FeedOutcome {
        files,
        rows,
        changed,
        absent,
        unchanged,
    })
}

/// One entity's values: its encoded key and `(feature id, stored value)` in ascending
/// id order, the values in one buffer (reused from entity to entity). A base entity
/// read from a batch row (layout 3) holds the row's bytes as stored in `row` until it
/// is [`EntityValues::decode`]d: an entity whose new values encode to the same row
/// bytes is unchanged without a value of it being decoded.
#[derive(Debug, Default)]
struct EntityValues {
    entity: Vec<u8>,
    ids: Vec<(FeatureId, usize, usize)>,
    bytes: Vec<u8>,
    /// The batch row not yet decoded into `ids`/`bytes`, when `encoded`.
    row: Vec<u8>,
    encoded: bool,
}

impl EntityValues {
    fn clear(&mut self) {
        self.entity.clear();
        self.ids.clear();
        self.bytes.clear();
        self.row.clear();
        self.encoded = false;
    }

    fn push(&mut self, feature: FeatureId, value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ids.push((feature, start, self.bytes.len()));
    }

    fn value(&self, at: usize) -> Option<(FeatureId, &[u8])> {
        let &(id, start, end) = self.ids.get(at)?;
        Some((id, self.bytes.get(start..end).unwrap_or_default()))
    }

    /// Decodes a held batch row of `schema` into the values (its present fields).
    fn decode(&mut self, schema: Option<&RowSchema>) -> Result<(), StoreError> {
        if !self.encoded {
            return Ok(());
        }
        self.encoded = false;
        let schema = schema.ok_or_else(|| {
            StoreError::Internal("a batch row of the history's base without its schema".into())
        })?;
        read_row(
            schema,
            &self.row,
            "a batch row of the previous version",
            &mut self.ids,
            &mut self.bytes,
        )
    }
}

fn corrupt(what: &str, source: crate::codec::CodecError) -> StoreError {
    StoreError::CorruptValue {
        what: what.to_owned(),
        source,
    }
}

/// The entity key and feature id of a stream key (`entity key ‖ feature id`).
#[expect(
    clippy::big_endian_bytes,
    reason = "the feature id of a key is big-endian, so keys sort by it"
)]
fn split_feature_key(key: &[u8]) -> Option<(&[u8], FeatureId)> {
    let entity = entity_prefix_len(key)?;
    let (entity_key, fid) = key.split_at(entity);
    let fid: [u8; FEATURE_ID_LEN] = fid.try_into().ok()?;
    Some((entity_key, FeatureId::from_be_bytes(fid)))
}

/// Walks a [`Base`] in key order, one entity at a time.
struct Cursor<'a> {
    iter: Option<DBRawIteratorWithThreadMode<'a, DB>>,
    base: &'a Base<'a>,
}

impl<'a> Cursor<'a> {
    fn new(db: &'a DB, base: &'a Base<'a>) -> Self {
        let iter = match base {
            Base::Empty => None,
            Base::Version { cf, prefix, .. } => {
                // One sequential pass: no caching, large reads.
                let mut opts = ReadOptions::default();
                opts.fill_cache(false);
                opts.set_readahead_size(BASE_READAHEAD);
                if let Some(upper) = prefix.upper_bound() {
                    opts.set_iterate_upper_bound(upper.to_vec());
                }
                let mut iter = db.raw_iterator_cf_opt(cf, opts);
                iter.seek(prefix.as_bytes());
                Some(iter)
            }
            Base::History { cf, .. } => {
                let mut opts = ReadOptions::default();
                opts.fill_cache(false);
                opts.set_total_order_seek(true);
                let mut iter = db.raw_iterator_cf_opt(cf, opts);
                iter.seek_to_first();
                Some(iter)
            }
        };
        Cursor { iter, base }
    }

    /// Reads the next entity with at least one value (or a batch row, which may hold
    /// none) into `out`; false at the end.
    fn next(&mut self, out: &mut EntityValues) -> Result<bool, StoreError> {
        loop {
            out.clear();
            let Some(iter) = self.iter.as_mut() else {
                return Ok(false);
            };
            if !iter.valid() {
                iter.status()?;
                return Ok(false);
            }
            match self.base {
                Base::Empty => return Ok(false),
                Base::Version { prefix, schema, .. } => {
                    let Some(key) = iter.key().and_then(|k| prefix.strip(k)) else {
                        return Ok(false);
                    };
                    match schema {
                        Some(_) => {
                            if key != SCHEMA_KEY {
                                // Decoded only when the new version's row differs.
                                out.entity.extend_from_slice(key);
                                out.row.extend_from_slice(iter.value().unwrap_or_default());
                                out.encoded = true;
                            }
                            iter.next();
                        }
                        None => read_value_keys(iter, prefix, out),
                    }
                }
                Base::History { group, .. } => read_history_entity(iter, group, out)?,
            }
            if out.encoded || !out.ids.is_empty() {
                return Ok(true);
            }
        }
    }
}

/// The present fields of a batch row (`what`, for errors), appended to `ids` and
/// `bytes`.
fn read_row(
    schema: &RowSchema,
    value: &[u8],
    what: &str,
    ids: &mut Vec<(FeatureId, usize, usize)>,
    bytes: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let row = RowRef::parse(schema, value).map_err(|e| corrupt(what, e))?;
    for (pos, field) in schema.fields().iter().enumerate() {
        let value = row.get(pos).map_err(|e| corrupt(what, e))?;
        let start = bytes.len();
        if encode_field(value, bytes) {
            ids.push((field.feature_id, start, bytes.len()));
        }
    }
    Ok(())
}

/// One entity's keys of a one-key-per-value version (layout 1 and 2).
fn read_value_keys(
    iter: &mut DBRawIteratorWithThreadMode<'_, DB>,
    prefix: &VersionPrefix,
    out: &mut EntityValues,
) {
    while iter.valid() {
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            break;
        };
        let Some(key) = prefix.strip(key) else { break };
        if decode_key(key).is_ok()
            && let Some((entity, fid)) = split_feature_key(key)
        {
            if out.ids.is_empty() && out.entity.is_empty() {
                out.entity.extend_from_slice(entity);
            } else if entity != out.entity.as_slice() {
                break;
            }
            out.push(fid, value);
        }
        iter.next();
    }
}

/// One entity's batch values as of the newest recorded version, from its history
/// records: per feature, the recorded batch record (row record or per-value record)
/// of the greatest version.
fn read_history_entity(
    iter: &mut DBRawIteratorWithThreadMode<'_, DB>,
    group: &GroupHistory,
    out: &mut EntityValues,
) -> Result<(), StoreError> {
    let Some(entity_len) = iter.key().and_then(entity_prefix_len) else {
        // Not an entity's record: nothing of ours; step over it.
        iter.next();
        return Ok(());
    };
    let entity = iter
        .key()
        .and_then(|k| k.get(..entity_len))
        .unwrap_or_default()
        .to_vec();
    // feature -> (version, value or absence)
    let mut best: BTreeMap<FeatureId, (u64, Option<Vec<u8>>)> = BTreeMap::new();
    let mut per_value_seen: Vec<FeatureId> = Vec::new();
    while iter.valid() {
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            break;
        };
        if entity_prefix_len(key) != Some(entity_len) || !key.starts_with(&entity) {
            break;
        }
        if let Some((_, version)) = history::decode_row_key(key) {
            if group.is_recorded(version) {
                let record = RowRecord::parse(value).map_err(|e| corrupt("a row record", e))?;
                for entry in record.iter() {
                    let (fid, value) = entry.map_err(|e| corrupt("a row record", e))?;
                    best.entry(fid)
                        .and_modify(|b| {
                            if b.0 < version {
                                *b = (version, value.map(|v| v.to_stored()));
                            }
                        })
                        .or_insert_with(|| (version, value.map(|v| v.to_stored())));
                }
            }
        } else {
            let (_, fid, kind) =
                history::decode_history_key(key).map_err(|e| corrupt("a history key", e))?;
            if let HistoryKind::Batch { version } = kind
                && group.is_recorded(version)
                && per_value_seen.last() != Some(&fid)
            {
                // A feature's per-value records are newest first: the first recorded
                // one is its newest.
                per_value_seen.push(fid);
                let record =
                    history::decode_record(value).map_err(|e| corrupt("a history record", e))?;
                let newer = best.get(&fid).is_none_or(|b| b.0 < version);
                if newer {
                    best.insert(fid, (version, record.map(<[u8]>::to_vec)));
                }
            }
        }
        iter.next();
    }
    out.entity = entity;
    for (fid, (_, value)) in best {
        if let Some(value) = value {
            out.push(fid, &value);
        }
    }
    Ok(())
}

/// Writes a load's history records (see the module doc). As a [`SortedSink`] it takes
/// the new version's batch rows: key the entity key, value the row's bytes, of the
/// schema given to [`HistoryFeed::new`]. Errors are kept and reported by
/// [`HistoryFeed::finish`], like the segment stage's.
///
/// Each entity is diffed against its previous version: a batch row of the same
/// schema by its bytes first; a batch row of another schema (features added or
/// removed) by encoding the new values into a row of the previous schema and
/// comparing bytes; else, and whenever the bytes differ, value by value.
pub struct HistoryFeed<'a> {
    db: &'a DB,
    base: &'a Base<'a>,
    /// The new version's row schema.
    schema: RowSchema,
    /// Whether the base is batch rows of `schema` itself.
    same_schema: bool,
    options: &'a Options,
    dir: PathBuf,
    version: u64,
    cursor: Option<Cursor<'a>>,
    /// The base entity the cursor stands on (not yet matched), when `has_head`.
    head: EntityValues,
    has_head: bool,
    /// The new version's entity being diffed: its key and values.
    current: EntityValues,
    /// Whether the head is the open entity's previous version.
    matched: bool,
    /// The open entity's values encoded as a row of the base's schema (when the
    /// schemas differ).
    encoded: Vec<u8>,
    record: RowRecordWriter,
    writer: Option<SstFileWriter<'a>>,
    files: Vec<PathBuf>,
    /// Row records written.
    pub rows: u64,
    /// Values recorded: changed or new values and absences.
    pub changed: u64,
    /// Absences recorded.
    pub absent: u64,
    /// Entities of the previous version with no change at all.
    pub unchanged: u64,
    error: Option<StoreError>,
}

impl std::fmt::Debug for HistoryFeed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryFeed")
            .field("version", &self.version)
            .field("rows", &self.rows)
            .field("changed", &self.changed)
            .finish()
    }
}

impl<'a> HistoryFeed<'a> {
    /// A feed of `version`, whose rows are of `schema`, diffed against `base`,
    /// writing SST files with `options` (the history family's) into `dir`.
    pub fn new(
        db: &'a DB,
        base: &'a Base<'a>,
        schema: RowSchema,
        options: &'a Options,
        dir: &Path,
        version: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("create {}", dir.display()),
            source,
        })?;
        let same_schema = matches!(base, Base::Version { schema: Some(b), .. } if *b == schema);
        Ok(HistoryFeed {
            db,
            base,
            schema,
            same_schema,
            options,
            dir: dir.to_path_buf(),
            version,
            cursor: None,
            head: EntityValues::default(),
            has_head: false,
            current: EntityValues::default(),
            matched: false,
            encoded: Vec::new(),
            record: RowRecordWriter::default(),
            writer: None,
            files: Vec::new(),
            rows: 0,
            changed: 0,
            absent: 0,
            unchanged: 0,
            error: None,
        })
    }

    /// The schema of the base's batch rows, if they are rows.
    fn base_schema(&self) -> Option<&'a RowSchema> {
        match self.base {
            Base::Version { schema, .. } => schema.as_ref(),
            Base::Empty | Base::History { .. } => None,
        }
    }

    fn advance(&mut self) -> Result<(), StoreError> {
        let cursor = self
            .cursor
            .get_or_insert_with(|| Cursor::new(self.db, self.base));
        self.has_head = cursor.next(&mut self.head)?;
        Ok(())
    }

    /// Writes the row record built in `self.record` for `entity`, if it has entries.
    fn write_record(&mut self, entity: &[u8]) -> Result<(), StoreError> {
        if self.record.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            let path = self
                .dir
                .join(format!("history-{:04}.sst", self.files.len()));
            let writer = SstFileWriter::create(self.options);
            writer.open(&path)?;
            self.files.push(path);
            self.writer = Some(writer);
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| StoreError::Internal("history writer vanished".into()))?;
        writer.put(history::row_key(entity, self.version), self.record.bytes())?;
        self.rows += 1;
        Ok(())
    }

    fn push(&mut self, feature: FeatureId, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.record
            .push(feature, value)
            .map_err(|e| corrupt("a history row record", e))?;
        self.changed += 1;
        if value.is_none() {
            self.absent += 1;
        }
        Ok(())
    }

    /// Records the head entity of the base as gone: an absence for each of its values.
    fn write_head_gone(&mut self) -> Result<(), StoreError> {
        self.head.decode(self.base_schema())?;
        self.record.clear();
        let head = std::mem::take(&mut self.head);
        let mut pushed = Ok(());
        for at in 0..head.ids.len() {
            if let Some((fid, _)) = head.value(at) {
                pushed = self.push(fid, None);
                if pushed.is_err() {
                    break;
                }
            }
        }
        let written = pushed.and_then(|()| self.write_record(&head.entity));
        self.head = head;
        written
    }

    /// Starts the new version's entity `entity`: base entities before it are missing
    /// from the new version; the base entity equal to it, if any, is diffed against.
    fn open_entity(&mut self, entity: &[u8]) -> Result<(), StoreError> {
        if self.cursor.is_none() {
            self.advance()?;
        }
        while self.has_head && self.head.entity.as_slice() < entity {
            self.write_head_gone()?;
            self.advance()?;
        }
        self.current.clear();
        self.current.entity.extend_from_slice(entity);
        self.matched = self.has_head && self.head.entity.as_slice() == entity;
        Ok(())
    }

    /// Whether the open entity's values, encoded as a row of the base's schema, are
    /// the head's batch row byte for byte (false when the head is not a held row, or
    /// a value does not fit the schema: then the values decide).
    fn same_row(&mut self) -> bool {
        let Some(schema) = self.base_schema().filter(|_| self.head.encoded) else {
            return false;
        };
        let fields = schema.fields();
        let mut values = Vec::with_capacity(self.current.ids.len());
        let mut pos = 0;
        for &(fid, start, end) in &self.current.ids {
            while fields.get(pos).is_some_and(|f| f.feature_id < fid) {
                pos += 1;
            }
            let (Some(field), Some(value)) = (fields.get(pos), self.current.bytes.get(start..end))
            else {
                return false;
            };
            if field.feature_id != fid {
                return false;
            }
            values.push((pos, value));
        }
        self.encoded.clear();
        encode_row(schema, &values, &mut self.encoded).is_ok() && self.encoded == self.head.row
    }

    /// Builds the open entity's record: against the head's values when `matched`
    /// (ids ascend on both sides), its values that differ or are new and an absence
    /// for each head value it lacks; else all its values.
    fn diff_values(&mut self) -> Result<(), StoreError> {
        let HistoryFeed {
            head,
            current,
            matched,
            record,
            changed,
            absent,
            ..
        } = self;
        let mut push = |fid: FeatureId, value: Option<&[u8]>| -> Result<(), StoreError> {
            record
                .push(fid, value)
                .map_err(|e| corrupt("a history row record", e))?;
            *changed += 1;
            if value.is_none() {
                *absent += 1;
            }
            Ok(())
        };
        let (mut old_at, mut new_at) = (0, 0);
        loop {
            let old = if *matched { head.value(old_at) } else { None };
            match (old, current.value(new_at)) {
                (None, None) => return Ok(()),
                (Some((old, _)), None) => {
                    push(old, None)?;
                    old_at += 1;
                }
                (Some((old, _)), Some((fid, _))) if old < fid => {
                    push(old, None)?;
                    old_at += 1;
                }
                (Some((old, before)), Some((fid, value))) if old == fid => {
                    if before != value {
                        push(fid, Some(value))?;
                    }
                    old_at += 1;
                    new_at += 1;
                }
                (_, Some((fid, value))) => {
                    push(fid, Some(value))?;
                    new_at += 1;
                }
            }
        }
    }

    /// Takes the new version's row of `entity`: diffs it against its previous
    /// version, if any (see [`HistoryFeed`]), and writes its record.
    fn take_row(&mut self, entity: &[u8], row: &[u8]) -> Result<(), StoreError> {
        self.open_entity(entity)?;
        self.record.clear();
        // A row of the same schema: its bytes decide whether anything changed.
        let bytes_decide = self.matched && self.head.encoded && self.same_schema;
        let unchanged = if bytes_decide && self.head.row == row {
            true
        } else {
            read_row(
                &self.schema,
                row,
                "a batch row of the new version",
                &mut self.current.ids,
                &mut self.current.bytes,
            )?;
            if self.matched && !bytes_decide && self.same_row() {
                true
            } else {
                if self.matched {
                    self.head.decode(self.base_schema())?;
                }
                self.diff_values()?;
                self.matched && self.record.is_empty()
            }
        };
        if unchanged {
            self.unchanged += 1;
        } else {
            let entity = std::mem::take(&mut self.current.entity);
            let written = self.write_record(&entity);
            self.current.entity = entity;
            written?;
        }
        self.current.clear();
        if self.matched {
            self.matched = false;
            self.advance()?;
        }
        Ok(())
    }

    /// Records absences for what is left of the base, and closes the files; returns
    /// them (none when nothing changed).
    pub fn finish(mut self) -> Result<Vec<PathBuf>, StoreError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.cursor.is_none() {
            self.advance()?;
        }
        while self.has_head {
            self.write_head_gone()?;
            self.advance()?;
        }
        if let Some(mut writer) = self.writer.take() {
            writer.finish()?;
        }
        Ok(self.files)
    }
}

impl SortedSink for HistoryFeed<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        if self.error.is_none()
            && let Err(e) = self.take_row(key, value)
        {
            self.error = Some(e);
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        self.writer = None;
        for file in self.files.drain(..) {
            let _ = std::fs::remove_file(file);
        }
        self.cursor = None;
        self.head.clear();
        self.has_head = false;
        self.current.clear();
        self.matched = false;
        self.rows = 0;
        self.changed = 0;
        self.absent = 0;
        self.unchanged = 0;
        self.error = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EntityKey;
    use crate::codec::history::{batch_key, encode_present, row_key, stream_key};
    use crate::codec::value::encode_value;
    use crate::types::Value;

    fn stored(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&Value::Int64(v), 100, &mut out);
        out
    }

    fn present(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_present(&stored(v), &mut out);
        out
    }

    /// A schema of Int64 features `ids`.
    fn int_schema(ids: &[FeatureId]) -> RowSchema {
        let fields = ids
            .iter()
            .map(|&feature_id| featstore_format::segment::FieldSpec {
                feature_id,
                field_type: crate::types::DType::Int64,
            })
            .collect();
        RowSchema::new(fields).expect("schema")
    }

    /// A batch row of `schema`: `(feature, value)` in ascending feature order.
    fn batch_row(schema: &RowSchema, values: &[(FeatureId, i64)]) -> Vec<u8> {
        let stored: Vec<(usize, Vec<u8>)> = values
            .iter()
            .map(|&(f, v)| (schema.position(f).expect("in the schema"), stored(v)))
            .collect();
        let pairs: Vec<(usize, &[u8])> = stored.iter().map(|(p, v)| (*p, v.as_slice())).collect();
        let mut row = Vec::new();
        encode_row(schema, &pairs, &mut row).expect("row");
        row
    }

    fn row(entries: &[(FeatureId, Option<i64>)]) -> Vec<u8> {
        let mut w = RowRecordWriter::default();
        w.clear();
        for &(f, v) in entries {
            w.push(f, v.map(stored).as_deref()).expect("push");
        }
        w.bytes().to_vec()
    }

    /// The previous version rebuilt from the history family, format-1 records and row
    /// records mixed, unrecorded versions ignored; the new version's records hold
    /// exactly its changes.
    #[test]
    fn a_base_from_mixed_history_records_gives_exactly_the_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, dir.path().join("db"), ["h", "out"]).expect("open");
        let h = db.cf_handle("h").expect("cf");
        let (e1, e2, e3) = (
            EntityKey::new(b"e1").expect("e1"),
            EntityKey::new(b"e2").expect("e2"),
            EntityKey::new(b"e3").expect("e3"),
        );
        // Version 1 in format 1: e1 has features 1 and 2.
        db.put_cf(&h, batch_key(&e1.feature_key(1), 1), present(10))
            .expect("put");
        db.put_cf(&h, batch_key(&e1.feature_key(2), 1), present(20))
            .expect("put");
        db.put_cf(&h, stream_key(&e1.feature_key(1), 500, 600), present(99))
            .expect("put");
        // Version 2 in row records: e1's feature 1 changes, e2 comes.
        db.put_cf(&h, row_key(e1.as_bytes(), 2), row(&[(1, Some(11))]))
            .expect("put");
        db.put_cf(&h, row_key(e2.as_bytes(), 2), row(&[(1, Some(30))]))
            .expect("put");
        // Version 3 failed after ingesting: ignored.
        db.put_cf(
            &h,
            row_key(e2.as_bytes(), 3),
            row(&[(1, None), (5, Some(7))]),
        )
        .expect("put");
        let group = GroupHistory {
            versions: [(1, 0), (2, 0)].into_iter().collect(),
            ..GroupHistory::default()
        };
        let base = Base::History {
            cf: h.clone(),
            group,
        };
        let sst = Options::default();
        let schema = int_schema(&[1, 2]);
        let mut feed =
            HistoryFeed::new(&db, &base, schema.clone(), &sst, &dir.path().join("sst"), 4)
                .expect("feed");
        // Version 4: e1 keeps feature 1 (11) and changes 2; e2 goes; e3 comes.
        feed.put(e1.as_bytes(), &batch_row(&schema, &[(1, 11), (2, 21)]))
            .expect("put");
        feed.put(e3.as_bytes(), &batch_row(&schema, &[(1, 40)]))
            .expect("put");
        assert_eq!(feed.unchanged, 0, "e1 changed");
        let files = feed.finish().expect("finish");
        let out = db.cf_handle("out").expect("cf");
        db.ingest_external_file_cf(&out, files).expect("ingest");
        let mut got = Vec::new();
        for item in db.iterator_cf(&out, rocksdb::IteratorMode::Start) {
            let (key, value) = item.expect("item");
            let (entity, version) = history::decode_row_key(&key).expect("a row record");
            let record = RowRecord::parse(&value).expect("parse");
            let entries: Vec<_> = record
                .iter()
                .map(|e| {
                    e.map(|(f, v)| (f, v.map(|v| v.to_stored())))
                        .expect("entry")
                })
                .collect();
            got.push((entity.to_vec(), version, entries));
        }
        assert_eq!(
            got,
            vec![
                (e1.as_bytes().to_vec(), 4, vec![(2, Some(stored(21)))]),
                (e2.as_bytes().to_vec(), 4, vec![(1, None)]),
                (e3.as_bytes().to_vec(), 4, vec![(1, Some(stored(40)))]),
            ]
        );
    }

    /// Rows read back from SST files as (entity, version, entries).
    type Recorded = Vec<(Vec<u8>, u64, Vec<(FeatureId, Option<Vec<u8>>)>)>;

    fn recorded(db: &DB, cf: &str, files: Vec<PathBuf>) -> Recorded {
        let out = db.cf_handle(cf).expect("cf");
        if !files.is_empty() {
            db.ingest_external_file_cf(&out, files).expect("ingest");
        }
        let mut got = Vec::new();
        for item in db.iterator_cf(&out, rocksdb::IteratorMode::Start) {
            let (key, value) = item.expect("item");
            let (entity, version) = history::decode_row_key(&key).expect("a row record");
            let record = RowRecord::parse(&value).expect("parse");
            let entries: Vec<_> = record
                .iter()
                .map(|e| {
                    e.map(|(f, v)| (f, v.map(|v| v.to_stored())))
                        .expect("entry")
                })
                .collect();
            got.push((entity.to_vec(), version, entries));
        }
        got
    }

    /// An entity id and its new row's `(feature, value)`s.
    type NewRow<'a> = (&'a [u8], Vec<(FeatureId, i64)>);

    /// A base of batch rows diffed against new rows of `new_ids`' schema: unchanged
    /// rows give nothing, a row that differs gives exactly its changed values and
    /// absences, gone and new entities are recorded whole. Returns the records and
    /// the unchanged entities.
    fn diff_against_rows(new_ids: &[FeatureId], new: &[NewRow<'_>]) -> (Recorded, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, dir.path().join("db"), ["v", "out"]).expect("open");
        let v = db.cf_handle("v").expect("cf");
        let schema = int_schema(&[1, 2, 3]);
        let prefix = VersionPrefix::of(7);
        let key = |k: &[u8]| [prefix.as_bytes(), k].concat();
        // The next version's prefix: the cursor must stop before it.
        db.put_cf(&v, VersionPrefix::of(8).as_bytes(), b"x")
            .expect("put");
        db.put_cf(&v, key(SCHEMA_KEY), schema.encode())
            .expect("put");
        // a: 1, 2; b: 1, 2, 3; c: 1; d: 1; e: no present field.
        for (id, values) in [
            ("a", &[(1, 1), (2, 2)][..]),
            ("b", &[(1, 1), (2, 2), (3, 3)]),
            ("c", &[(1, 1)]),
            ("d", &[(1, 1)]),
            ("e", &[]),
        ] {
            let entity = EntityKey::new(id.as_bytes()).expect("entity");
            db.put_cf(&v, key(entity.as_bytes()), batch_row(&schema, values))
                .expect("put");
        }
        let base = Base::Version {
            cf: v.clone(),
            prefix,
            schema: Some(schema),
        };
        let sst = Options::default();
        let new_schema = int_schema(new_ids);
        let mut feed = HistoryFeed::new(
            &db,
            &base,
            new_schema.clone(),
            &sst,
            &dir.path().join("sst"),
            8,
        )
        .expect("feed");
        for (id, values) in new {
            let entity = EntityKey::new(id).expect("entity");
            feed.put(entity.as_bytes(), &batch_row(&new_schema, values))
                .expect("put");
        }
        let unchanged = feed.unchanged;
        (
            recorded(&db, "out", feed.finish().expect("finish")),
            unchanged,
        )
    }

    fn entity(id: &str) -> Vec<u8> {
        EntityKey::new(id.as_bytes())
            .expect("entity")
            .as_bytes()
            .to_vec()
    }

    /// Diffs new rows of `new_ids`' schema, in which d gains `d_gains`, against the
    /// base: a, unchanged, gives nothing; b changes 2 and loses 3; c is gone; d, e
    /// and f give exactly what is new.
    fn check_changes(new_ids: &[FeatureId], d_gains: FeatureId) {
        let (got, unchanged) = diff_against_rows(
            new_ids,
            &[
                (b"a", vec![(1, 1), (2, 2)]),
                (b"b", vec![(1, 1), (2, 20)]),
                (b"d", vec![(1, 1), (d_gains, 9)]),
                (b"e", vec![(1, 5)]),
                (b"f", vec![(2, 6)]),
            ],
        );
        assert_eq!(
            got,
            vec![
                (entity("b"), 8, vec![(2, Some(stored(20))), (3, None)]),
                (entity("c"), 8, vec![(1, None)]),
                (entity("d"), 8, vec![(d_gains, Some(stored(9)))]),
                (entity("e"), 8, vec![(1, Some(stored(5)))]),
                (entity("f"), 8, vec![(2, Some(stored(6)))]),
            ]
        );
        assert_eq!(unchanged, 1, "a");
    }

    /// The same schema on both sides: rows compared by their bytes.
    #[test]
    fn rows_of_the_same_schema_give_exactly_the_changes() {
        check_changes(&[1, 2, 3], 3);
    }

    /// A new schema (feature 9 added): a row whose values fit the old schema is
    /// compared as an old row, one with a value outside it value by value.
    #[test]
    fn rows_of_a_new_schema_give_exactly_the_changes() {
        check_changes(&[1, 2, 3, 9], 9);
    }
}
