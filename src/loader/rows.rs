//! Turns the load's sorted stream of values (`entity key ‖ feature id` → value, one
//! record per value) into batch rows (batch layout 3): one record per entity, its
//! values encoded by [`featstore_format::codec::row`], written into the version's SST
//! files after the version's schema record.
//!
//! Invariants: every value of the stream lands in exactly one row (a value of a
//! feature outside the schema stops the load); rows are written in entity order, the
//! stream's order, so the SST files stay sorted; [`RowWriter::finish`] reports the
//! values written, not the rows, as `records`.
//!
//! A consumer of the rows themselves ([`RowWriter::with_rows`], the history's feed)
//! sees each row as written: a sorted stream whose key is the entity key (without the
//! version prefix) and whose value is the row's bytes, with the writer's restarts.

use std::path::PathBuf;

use featstore_format::codec::row::{RowSchema, SCHEMA_KEY, encode_row};

use super::LoadError;
use super::sorter::SortedSink;
use super::sst::{SstSetWriter, SstStats};
use crate::codec::key::decode_key;

/// Groups records by entity into rows and writes them to an [`SstSetWriter`].
pub struct RowWriter<'o> {
    inner: SstSetWriter<'o>,
    schema: RowSchema,
    /// The current entity's key (`2 + L` bytes); empty before the first record.
    entity: Vec<u8>,
    /// The current entity's value bytes, back to back.
    values: Vec<u8>,
    /// (schema position, end offset in `values`) per value of the current entity.
    spans: Vec<(usize, usize)>,
    row: Vec<u8>,
    values_written: u64,
    on_values: Option<Box<dyn FnMut(u64) + 'o>>,
    rows: Option<&'o mut dyn SortedSink>,
}

impl<'o> RowWriter<'o> {
    /// Rows of `schema` into `inner`; writes the schema record first.
    pub fn new(mut inner: SstSetWriter<'o>, schema: RowSchema) -> Result<Self, LoadError> {
        inner.put_uncounted(SCHEMA_KEY, &schema.encode())?;
        Ok(RowWriter {
            inner,
            schema,
            entity: Vec::new(),
            values: Vec::new(),
            spans: Vec::new(),
            row: Vec::new(),
            values_written: 0,
            on_values: None,
            rows: None,
        })
    }

    /// Hands every row written to `rows` too (see the module doc).
    pub fn with_rows(mut self, rows: Option<&'o mut dyn SortedSink>) -> Self {
        self.rows = rows;
        self
    }

    /// Calls `f(values written)` about every 1,048,576 values (progress reporting).
    pub fn with_progress(mut self, f: impl FnMut(u64) + 'o) -> Self {
        self.on_values = Some(Box::new(f));
        self
    }

    fn flush(&mut self) -> Result<(), LoadError> {
        if self.entity.is_empty() {
            return Ok(());
        }
        let mut start = 0;
        let pairs: Vec<(usize, &[u8])> = self
            .spans
            .iter()
            .map(|&(pos, end)| {
                let bytes = &self.values[start..end];
                start = end;
                (pos, bytes)
            })
            .collect();
        self.row.clear();
        encode_row(&self.schema, &pairs, &mut self.row)
            .map_err(|e| LoadError::Sst(format!("encoding a batch row: {e}")))?;
        self.inner.put(&self.entity, &self.row)?;
        if let Some(rows) = self.rows.as_mut() {
            rows.put(&self.entity, &self.row)?;
        }
        let before = self.values_written;
        self.values_written += pairs.len() as u64;
        if before >> 20 != self.values_written >> 20
            && let Some(f) = self.on_values.as_mut()
        {
            f(self.values_written);
        }
        self.entity.clear();
        self.values.clear();
        self.spans.clear();
        Ok(())
    }

    /// Writes the last row and finishes the files; `records` counts values.
    pub fn finish(mut self) -> Result<(Vec<PathBuf>, SstStats), LoadError> {
        self.flush()?;
        let values = self.values_written;
        let (files, mut stats) = self.inner.finish()?;
        stats.records = values;
        Ok((files, stats))
    }
}

impl SortedSink for RowWriter<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let (id, feature) =
            decode_key(key).map_err(|e| LoadError::Sst(format!("a sorted record's key: {e}")))?;
        let entity = &key[..key.len() - 4];
        debug_assert_eq!(entity.len(), id.len() + 2);
        if entity != self.entity.as_slice() {
            self.flush()?;
            self.entity.extend_from_slice(entity);
        }
        let pos = self.schema.position(feature).ok_or_else(|| {
            LoadError::Sst(format!(
                "feature id {feature} is not in the version's schema"
            ))
        })?;
        self.values.extend_from_slice(value);
        self.spans.push((pos, self.values.len()));
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        self.entity.clear();
        self.values.clear();
        self.spans.clear();
        self.values_written = 0;
        if let Some(rows) = self.rows.as_mut() {
            rows.restart()?;
        }
        self.inner.restart()?;
        self.inner.put_uncounted(SCHEMA_KEY, &self.schema.encode())
    }
}
