//! Writes a sorted record stream into SST files of a target size, ready for ingestion.
//!
//! Files are written with the batch column family's own options, so their filters and
//! prefix extractor match the column family they are ingested into. Keys arrive strictly
//! increasing, so consecutive files never overlap and all land in the bottommost level.
//! Every key is written under the version's key prefix (layout 2), so the files of one
//! load hold exactly one version's key range.

use std::path::{Path, PathBuf};

use rocksdb::{Options, SstFileWriter};

use super::LoadError;
use super::sorter::SortedSink;
use crate::codec::key::entity_prefix_len;

/// Totals of what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SstStats {
    /// Unique (entity, feature) records written.
    pub records: u64,
    /// Distinct entities.
    pub entities: u64,
    /// Bytes of the finished files.
    pub bytes: u64,
}

/// Rotating SST writer.
pub struct SstSetWriter<'o> {
    options: &'o Options,
    dir: PathBuf,
    target_bytes: u64,
    current: Option<SstFileWriter<'o>>,
    files: Vec<PathBuf>,
    last_entity: Vec<u8>,
    stats: SstStats,
    on_record: Option<Box<dyn FnMut(u64) + 'o>>,
    /// The version prefix, then the key being written.
    prefixed: Vec<u8>,
    prefix_len: usize,
}

impl<'o> SstSetWriter<'o> {
    /// Writes files `{dir}/{n:05}.sst` of about `target_bytes` each.
    pub fn new(options: &'o Options, dir: &Path, target_bytes: u64) -> Self {
        SstSetWriter {
            options,
            dir: dir.to_path_buf(),
            target_bytes: target_bytes.max(1 << 20),
            current: None,
            files: Vec::new(),
            last_entity: Vec::new(),
            stats: SstStats::default(),
            on_record: None,
            prefixed: Vec::new(),
            prefix_len: 0,
        }
    }

    /// Writes every key under `prefix` (the version's [`crate::codec::key::VersionPrefix`]).
    pub fn with_key_prefix(mut self, prefix: &[u8]) -> Self {
        self.prefixed = prefix.to_vec();
        self.prefix_len = prefix.len();
        self
    }

    /// Calls `f(records written)` every 1,048,576 records (progress reporting).
    pub fn with_progress(mut self, f: impl FnMut(u64) + 'o) -> Self {
        self.on_record = Some(Box::new(f));
        self
    }

    fn finish_current(&mut self) -> Result<(), LoadError> {
        if let Some(mut writer) = self.current.take() {
            writer.finish().map_err(|e| LoadError::Sst(e.to_string()))?;
            self.stats.bytes += writer.file_size();
        }
        Ok(())
    }

    /// Finishes the last file; returns the files (ascending key ranges) and totals.
    pub fn finish(mut self) -> Result<(Vec<PathBuf>, SstStats), LoadError> {
        self.finish_current()?;
        Ok((std::mem::take(&mut self.files), self.stats))
    }
}

impl SstSetWriter<'_> {
    /// Writes a record that is not an entity's (the version's schema record): not
    /// counted in [`SstStats`].
    pub fn put_uncounted(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let before = self.stats;
        self.put(key, value)?;
        self.stats.records = before.records;
        self.stats.entities = before.entities;
        self.last_entity.clear();
        Ok(())
    }
}

impl SortedSink for SstSetWriter<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let entity = entity_prefix_len(key)
            .and_then(|n| key.get(..n))
            .unwrap_or(key);
        let new_entity = entity != self.last_entity.as_slice();
        // Rotate only between entities, so one entity's rows stay in one file.
        if new_entity
            && let Some(writer) = &self.current
            && writer.file_size() >= self.target_bytes
        {
            self.finish_current()?;
        }
        if self.current.is_none() {
            let path = self.dir.join(format!("{:05}.sst", self.files.len()));
            let writer = SstFileWriter::create(self.options);
            writer
                .open(&path)
                .map_err(|e| LoadError::Sst(format!("open {}: {e}", path.display())))?;
            self.files.push(path);
            self.current = Some(writer);
        }
        if let Some(writer) = self.current.as_mut() {
            self.prefixed.truncate(self.prefix_len);
            self.prefixed.extend_from_slice(key);
            writer
                .put(&self.prefixed, value)
                .map_err(|e| LoadError::Sst(e.to_string()))?;
        }
        if new_entity {
            self.stats.entities += 1;
            self.last_entity.clear();
            self.last_entity.extend_from_slice(entity);
        }
        self.stats.records += 1;
        if self.stats.records.is_multiple_of(1 << 20)
            && let Some(f) = self.on_record.as_mut()
        {
            f(self.stats.records);
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        // Unfinished: dropped, then deleted with the finished ones.
        self.current = None;
        for path in self.files.drain(..) {
            std::fs::remove_file(&path)
                .map_err(|e| LoadError::io(format!("remove {}", path.display()), e))?;
        }
        self.last_entity.clear();
        self.stats = SstStats::default();
        Ok(())
    }
}
