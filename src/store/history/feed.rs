//! A load's history records: [`HistoryFeed`] takes the load's sorted stream and
//! merge-joins it, in key order, with the group's previous recorded version
//! ([`Base`]), writing only the changes (and absence records) into SST files that the
//! commit stage ingests into `history.{group}`.
//!
//! The previous version is read from its batch data (one sequential pass over its
//! rows) when it still exists, else reconstructed from the history family itself
//! (each key's newest recorded batch record); a group without recorded versions has an
//! empty base, so its first version is recorded whole.
//!
//! Memory: one decoded row of the previous version and one SST file's writer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{DB, DBRawIteratorWithThreadMode, Options, ReadOptions, SstFileWriter};

use super::GroupHistory;
use crate::codec::history::{self, ABSENT_VALUE, HistoryKind};
use crate::codec::key::{VersionPrefix, decode_key, entity_prefix_len};
use crate::codec::row::{RowRef, RowSchema, SCHEMA_KEY, encode_field};
use crate::loader::LoadError;
use crate::loader::sorter::SortedSink;
use crate::store::StoreError;

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

/// A base value: `(entity key ‖ feature id, stored value)`.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Walks a [`Base`] in key order, one `(entity key ‖ feature id, stored value)` at a
/// time.
struct Cursor<'a> {
    iter: Option<DBRawIteratorWithThreadMode<'a, DB>>,
    base: &'a Base<'a>,
    pending: VecDeque<KeyValue>,
}

fn corrupt(what: &str, source: crate::codec::CodecError) -> StoreError {
    StoreError::CorruptValue {
        what: what.to_owned(),
        source,
    }
}

impl<'a> Cursor<'a> {
    fn new(db: &'a DB, base: &'a Base<'a>) -> Self {
        let iter = match base {
            Base::Empty => None,
            Base::Version { cf, prefix, .. } => {
                let mut opts = ReadOptions::default();
                opts.fill_cache(false);
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
                let mut iter = db.raw_iterator_cf_opt(cf, opts);
                iter.seek_to_first();
                Some(iter)
            }
        };
        Cursor {
            iter,
            base,
            pending: VecDeque::new(),
        }
    }

    /// The next base value, or `None` at the end.
    fn next(&mut self) -> Result<Option<KeyValue>, StoreError> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Ok(Some(next));
            }
            let Some(iter) = self.iter.as_mut() else {
                return Ok(None);
            };
            if !iter.valid() {
                iter.status()?;
                return Ok(None);
            }
            match self.base {
                Base::Empty => return Ok(None),
                Base::Version { prefix, schema, .. } => {
                    let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                        return Ok(None);
                    };
                    let Some(key) = prefix.strip(key) else {
                        return Ok(None);
                    };
                    match schema {
                        Some(schema) => {
                            if key != SCHEMA_KEY {
                                let row = RowRef::parse(schema, value).map_err(|e| {
                                    corrupt("a batch row of the previous version", e)
                                })?;
                                for (pos, field) in schema.fields().iter().enumerate() {
                                    let value = row.get(pos).map_err(|e| {
                                        corrupt("a batch row of the previous version", e)
                                    })?;
                                    let mut encoded = Vec::new();
                                    if encode_field(value, &mut encoded) {
                                        let fk = history::feature_key_of(key, field.feature_id);
                                        self.pending.push_back((fk, encoded));
                                    }
                                }
                            }
                        }
                        None => {
                            if decode_key(key).is_ok() {
                                self.pending.push_back((key.to_vec(), value.to_vec()));
                            }
                        }
                    }
                    iter.next();
                }
                Base::History { group, .. } => {
                    // The first recorded batch record of each feature key.
                    let Some(key) = iter.key() else {
                        return Ok(None);
                    };
                    let (fk, _, _) = history::decode_history_key(key)
                        .map_err(|e| corrupt("a history key", e))?;
                    let fk = fk.to_vec();
                    let mut found: Option<Option<Vec<u8>>> = None;
                    while iter.valid() {
                        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                            break;
                        };
                        if !key.starts_with(&fk) {
                            break;
                        }
                        if found.is_none()
                            && let Ok((_, _, HistoryKind::Batch { version })) =
                                history::decode_history_key(key)
                            && group.is_recorded(version)
                        {
                            let record = history::decode_record(value)
                                .map_err(|e| corrupt("a history record", e))?;
                            found = Some(record.map(<[u8]>::to_vec));
                        }
                        iter.next();
                    }
                    if let Some(Some(value)) = found {
                        self.pending.push_back((fk, value));
                    }
                }
            }
        }
    }
}

/// Writes a load's history records (see the module doc). Errors are kept and
/// reported by [`HistoryFeed::finish`], like the segment stage's.
pub struct HistoryFeed<'a> {
    db: &'a DB,
    base: &'a Base<'a>,
    options: &'a Options,
    dir: PathBuf,
    version: u64,
    cursor: Option<Cursor<'a>>,
    /// The base value the cursor stands on (not yet matched).
    head: Option<KeyValue>,
    writer: Option<SstFileWriter<'a>>,
    files: Vec<PathBuf>,
    /// Records written: changed values and absences.
    pub changed: u64,
    /// Absence records written.
    pub absent: u64,
    /// Values equal to the previous version's (not written).
    pub unchanged: u64,
    error: Option<StoreError>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for HistoryFeed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryFeed")
            .field("version", &self.version)
            .field("changed", &self.changed)
            .finish()
    }
}

impl<'a> HistoryFeed<'a> {
    /// A feed of `version`, diffed against `base`, writing SST files with `options`
    /// (the history family's) into `dir`.
    pub fn new(
        db: &'a DB,
        base: &'a Base<'a>,
        options: &'a Options,
        dir: &Path,
        version: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("create {}", dir.display()),
            source,
        })?;
        Ok(HistoryFeed {
            db,
            base,
            options,
            dir: dir.to_path_buf(),
            version,
            cursor: None,
            head: None,
            writer: None,
            files: Vec::new(),
            changed: 0,
            absent: 0,
            unchanged: 0,
            error: None,
            scratch: Vec::new(),
        })
    }

    fn advance(&mut self) -> Result<(), StoreError> {
        let cursor = self
            .cursor
            .get_or_insert_with(|| Cursor::new(self.db, self.base));
        self.head = cursor.next()?;
        Ok(())
    }

    fn write(&mut self, feature_key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        if self.writer.is_none() {
            let path = self
                .dir
                .join(format!("history-{:04}.sst", self.files.len()));
            let writer = SstFileWriter::create(self.options);
            writer.open(&path)?;
            self.files.push(path);
            self.writer = Some(writer);
        }
        let key = history::batch_key(feature_key, self.version);
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| StoreError::Internal("history writer vanished".into()))?;
        match value {
            Some(encoded) => {
                self.scratch.clear();
                history::encode_present(encoded, &mut self.scratch);
                writer.put(&key, &self.scratch)?;
            }
            None => {
                writer.put(&key, ABSENT_VALUE)?;
                self.absent += 1;
            }
        }
        self.changed += 1;
        Ok(())
    }

    fn take(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if self.cursor.is_none() {
            self.advance()?;
        }
        // Base values before `key` are missing from the new version.
        while let Some((base_key, _)) = &self.head
            && base_key.as_slice() < key
        {
            let base_key = base_key.clone();
            self.write(&base_key, None)?;
            self.advance()?;
        }
        let same = match &self.head {
            Some((base_key, base_value)) if base_key.as_slice() == key => {
                let same = base_value.as_slice() == value;
                self.advance()?;
                same
            }
            _ => false,
        };
        if same {
            self.unchanged += 1;
            Ok(())
        } else {
            self.write(key, Some(value))
        }
    }

    /// Writes absence records for what is left of the base and closes the files;
    /// returns them (none when nothing changed).
    pub fn finish(mut self) -> Result<Vec<PathBuf>, StoreError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.cursor.is_none() {
            self.advance()?;
        }
        while let Some((base_key, _)) = self.head.take() {
            self.write(&base_key, None)?;
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
            && entity_prefix_len(key).is_some()
            && let Err(e) = self.take(key, value)
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
        self.head = None;
        self.changed = 0;
        self.absent = 0;
        self.unchanged = 0;
        self.error = None;
        Ok(())
    }
}
