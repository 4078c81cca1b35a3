//! Batch loading: a Parquet or CSV export becomes SST files for a new group version.
//!
//! [`build_files`] reads the input once (validated against the registry; its size and
//! CRC-32 are computed from the same read, `input::checksum`), encodes keys and values
//! on a reader thread, sorts them with bounded memory on the calling one and writes SST
//! files. It touches no live
//! state: the engine's load pipeline (`store::load`) allocates the version, ingests the
//! files and commits it only after everything succeeded.
//!
//! The sorted stream has more than one consumer: the SST writer, and whatever the
//! pipeline passes as `consumers` (the hot segment's row feed; the version statistics,
//! on their own thread through [`offthread::OffThread`]). Each sees every unique record
//! once, in ascending key order, while the SST files are written, so nothing re-reads
//! the version afterwards.

pub mod input;
pub mod offthread;
pub mod rows;
pub mod sorter;
pub mod sst;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::codec::key::encode_key_into;
use crate::codec::value::encode_value;
use crate::registry::Registry;
use crate::registry::entity::EntityIdRule;
use crate::types::{TimestampMs, now_ms};
use featstore_format::codec::row::RowSchema;
use featstore_format::segment::FieldSpec;
use input::{FeatureColumn, InputError, InputFormat, InputOptions, Layout, read_input_checksummed};
use rows::RowWriter;
use sorter::{ExternalSorter, SortedSink, Streamed};
use sst::SstSetWriter;

/// A batch load failed. Nothing of it became visible, except for [`LoadError::Held`]
/// (loaded, not activated).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The input is unreadable or has a bad row (the message names file, row, reason).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The input holds no records.
    #[error("{0}: the input has no rows; refusing to create an empty version")]
    EmptyInput(String),
    /// A scratch-file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing an SST file failed.
    #[error("writing SST file: {0}")]
    Sst(String),
    /// The load's gate refused the finished version; nothing of it became visible.
    #[error("load of {group} v{version} refused by the {gate} gate: {reason}")]
    Refused {
        /// Which gate.
        gate: String,
        /// Group loaded.
        group: String,
        /// Version refused.
        version: u64,
        /// The gate's reason.
        reason: String,
    },
    /// The version was loaded and committed `ready`, but its gate (validation) held it
    /// back: it is not active. Its record carries the validation report; activating it
    /// needs a forced activation.
    #[error(
        "{} v{} loaded but not activated: the {gate} gate failed it: {}",
        record.group,
        record.version,
        record.validation.as_ref().map(|r| r.describe_failures()).unwrap_or_default()
    )]
    Held {
        /// Which gate.
        gate: String,
        /// The version's load record, with its report.
        record: Box<LoadRecord>,
    },
    /// A single record or buffer exceeds 4 GiB.
    #[error("a record or sort buffer exceeds 4 GiB")]
    TooLarge,
    /// A consumer of the sorted stream running on its own thread stopped.
    #[error("a consumer of the sorted stream failed: {0}")]
    Consumer(String),
}

impl LoadError {
    pub(crate) fn io(context: String, source: std::io::Error) -> Self {
        LoadError::Io { context, source }
    }
}

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// Feature group to load a new version of.
    pub group: String,
    /// Parquet or CSV file.
    pub input: PathBuf,
    /// Format and layout overrides.
    pub options: InputOptions,
    /// Activate the new version once it is ingested (the default).
    pub activate: bool,
}

impl LoadRequest {
    /// Loads `input` into `group` and activates it, with detected format and layout.
    pub fn new(group: impl Into<String>, input: impl Into<PathBuf>) -> Self {
        LoadRequest {
            group: group.into(),
            input: input.into(),
            options: InputOptions::default(),
            activate: true,
        }
    }
}

/// Durable record of one load, kept in the meta column family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// Group loaded.
    pub group: String,
    /// Version created.
    pub version: u64,
    /// Input file as given.
    pub source: String,
    /// Input size in bytes.
    pub source_bytes: u64,
    /// CRC-32 (IEEE polynomial) of the input file.
    pub source_crc32: u32,
    /// Detected or given input format.
    pub format: InputFormat,
    /// Detected or given layout.
    pub layout: Layout,
    /// Data rows read.
    pub rows: u64,
    /// Values read (a wide row holds several).
    pub values_read: u64,
    /// Values stored after de-duplication.
    pub values_stored: u64,
    /// Values replaced by a newer duplicate of the same entity and feature.
    pub duplicates: u64,
    /// Explicit nulls among the values read.
    pub nulls: u64,
    /// Distinct entities stored.
    pub entities: u64,
    /// SST files ingested.
    pub sst_files: usize,
    /// Their total size in bytes.
    pub sst_bytes: u64,
    /// Load start, ms since epoch.
    pub started_at_ms: TimestampMs,
    /// Milliseconds spent reading, sorting and writing SST files.
    pub build_ms: u64,
    /// Milliseconds spent ingesting into RocksDB.
    pub ingest_ms: u64,
    /// Milliseconds spent building and validating the hot segment.
    #[serde(default)]
    pub segment_ms: u64,
    /// Whether the version was activated by the load.
    pub activated: bool,
    /// The version's validation (absent for loads made without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<crate::validate::ValidationReport>,
}

/// Where [`build_files`]' SST files go: the options of the column family they are
/// ingested into, and the key prefix of the version inside it.
#[derive(Clone, Copy)]
pub struct SstTarget<'o> {
    /// The target column family's options (filters and prefix extractor must match).
    pub options: &'o rocksdb::Options,
    /// Prefix of every key ([`crate::codec::key::VersionPrefix`]).
    pub key_prefix: &'o [u8],
}

/// Result of [`build_files`]: SST files ready to ingest and the facts for the record.
#[derive(Debug)]
pub struct BuiltFiles {
    /// SST files, ascending, non-overlapping.
    pub files: Vec<PathBuf>,
    /// Milliseconds spent reading the input and sorting (spilling runs); the rest of
    /// `record.build_ms` merged the stream into the SST files and the consumers.
    pub read_ms: u64,
    /// The load record, without version, ingest time and activation.
    pub record: LoadRecord,
}

/// Progress of a running load, reported every million values.
#[derive(Debug, Clone, Copy)]
pub struct LoadProgress {
    /// Phase: `"read"` (parsing and sorting), `"write"` (SST files and the hot
    /// segment's rows, from the sorted stream), then once each, when the stage ends,
    /// `"ingest"`, `"segment"` (writing and validating the hot segment) and `"commit"`.
    pub phase: &'static str,
    /// Values processed in this phase.
    pub values: u64,
    /// Seconds since the load started.
    pub elapsed_secs: f64,
}

/// Encoded records handed from the input reader's thread to the sorting one.
struct Chunk {
    /// Repeated `key_len u32 LE, value_len u32 LE, key, value`.
    bytes: Vec<u8>,
}

/// Bytes of encoded records per [`Chunk`].
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight between the threads: the reader runs at most this far ahead.
const CHUNKS_IN_FLIGHT: usize = 4;

impl Chunk {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
    }

    fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let (header, tail) = rest.split_first_chunk::<8>()?;
            let key_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let value_len =
                u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let (key, tail) = tail.split_at_checked(key_len)?;
            let (value, tail) = tail.split_at_checked(value_len)?;
            rest = tail;
            Some((key, value))
        })
    }
}

/// What [`read_encoded`] read.
struct ReadInput {
    summary: input::InputSummary,
    values: u64,
    nulls: u64,
    /// The input's size and CRC-32, from the same read.
    source_bytes: u64,
    source_crc32: u32,
}

/// Reads, validates and encodes the input on a second thread while `take` sorts the
/// encoded records on this one, chunk by chunk. Returns `None` when `take` asked for
/// a restart (the reader is stopped). `progress(values)` is called every 2^20 values.
fn read_encoded(
    request: &LoadRequest,
    columns: &HashMap<String, FeatureColumn>,
    ids: EntityIdRule<'_>,
    mut take: impl FnMut(&Chunk) -> Result<Streamed, LoadError>,
    progress: &dyn Fn(u64),
) -> Result<Option<ReadInput>, LoadError> {
    let path_text = request.input.display().to_string();
    let (full_tx, full_rx) = crossbeam::channel::bounded::<(Chunk, u64, u64)>(CHUNKS_IN_FLIGHT);
    let (free_tx, free_rx) = crossbeam::channel::bounded::<Chunk>(CHUNKS_IN_FLIGHT + 1);
    std::thread::scope(|scope| {
        let path_text = &path_text;
        let reader = scope.spawn(
            move || -> Result<(input::InputSummary, u64, u32), InputError> {
                let stopped = || InputError::Sink("the load stopped reading its input".into());
                let fresh = || Chunk {
                    bytes: Vec::with_capacity(CHUNK_BYTES + 4096),
                };
                let mut chunk = fresh();
                let (mut records, mut nulls) = (0u64, 0u64);
                let mut key = Vec::with_capacity(64);
                let mut value = Vec::with_capacity(64);
                let read = read_input_checksummed(
                    &request.input,
                    None,
                    &request.options,
                    columns,
                    &mut |record| {
                        key.clear();
                        value.clear();
                        ids.check(record.entity_id)
                            .map_err(|e| InputError::BadRow {
                                path: path_text.clone(),
                                row: record.row,
                                column: "entity_id".into(),
                                reason: e.to_string(),
                            })?;
                        encode_key_into(record.entity_id, record.feature, &mut key).map_err(
                            |e| InputError::BadRow {
                                path: path_text.clone(),
                                row: record.row,
                                column: "entity_id".into(),
                                reason: e.to_string(),
                            },
                        )?;
                        encode_value(record.value, record.event_time, &mut value);
                        if *record.value == crate::types::Value::Null {
                            nulls += 1;
                        }
                        chunk.push(&key, &value);
                        records += 1;
                        if chunk.bytes.len() >= CHUNK_BYTES {
                            let mut next = free_rx.try_recv().unwrap_or_else(|_| fresh());
                            next.bytes.clear();
                            let full = std::mem::replace(&mut chunk, next);
                            full_tx
                                .send((full, records, nulls))
                                .map_err(|_| stopped())?;
                            (records, nulls) = (0, 0);
                        }
                        Ok(())
                    },
                )?;
                if !chunk.bytes.is_empty() {
                    full_tx
                        .send((chunk, records, nulls))
                        .map_err(|_| stopped())?;
                }
                Ok(read)
            },
        );
        let (mut values, mut nulls) = (0u64, 0u64);
        let mut taken: Result<Streamed, LoadError> = Ok(Streamed::Continue);
        for (chunk, chunk_values, chunk_nulls) in full_rx.iter() {
            taken = take(&chunk);
            if !matches!(taken, Ok(Streamed::Continue)) {
                break;
            }
            let before = values;
            values += chunk_values;
            nulls += chunk_nulls;
            for step in (before >> 20) + 1..=(values >> 20) {
                progress(step << 20);
            }
            let _ = free_tx.try_send(chunk);
        }
        // Stops the reader if it is still running (its next send fails).
        drop(full_rx);
        let summary = reader
            .join()
            .unwrap_or_else(|_| Err(InputError::Sink("the input reader thread panicked".into())));
        match taken? {
            Streamed::Restart => Ok(None),
            Streamed::Continue => {
                let (summary, source_bytes, source_crc32) = summary?;
                Ok(Some(ReadInput {
                    summary,
                    values,
                    nulls,
                    source_bytes,
                    source_crc32,
                }))
            }
        }
    })
}

/// Hands each record to two sinks, in order.
struct Tee<'a, 'b> {
    first: &'a mut dyn SortedSink,
    second: &'b mut dyn SortedSink,
}

impl SortedSink for Tee<'_, '_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        self.first.put(key, value)?;
        self.second.put(key, value)
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        self.first.restart()?;
        self.second.restart()
    }
}

/// A stream consumer that takes nothing.
impl SortedSink for () {
    fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), LoadError> {
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        Ok(())
    }
}

/// The feature names a load of `group` accepts: every registered version as
/// `name@version`, and the bare name for the newest version.
pub fn group_columns(registry: &Registry, group: &str) -> HashMap<String, FeatureColumn> {
    let mut columns = HashMap::new();
    if let Some(info) = registry.group(group) {
        for id in &info.features {
            let Some(def) = registry.by_id(*id) else {
                continue;
            };
            let column = FeatureColumn {
                id: def.id,
                dtype: def.spec.dtype,
            };
            columns.insert(def.qualified_name(), column);
            let newest = registry
                .resolve(&def.spec.name)
                .is_some_and(|latest| latest.id == def.id);
            if newest {
                columns.insert(def.spec.name.clone(), column);
            }
        }
    }
    columns
}

/// The row schema (batch layout 3) of a version loaded with `columns`: each feature
/// once, by id.
pub fn version_schema(columns: &HashMap<String, FeatureColumn>) -> Result<RowSchema, LoadError> {
    // Several column names may name one feature (`name` and `name@version`).
    let features: std::collections::BTreeMap<_, _> =
        columns.values().map(|c| (c.id, c.dtype)).collect();
    RowSchema::new(
        features
            .into_iter()
            .map(|(feature_id, field_type)| FieldSpec {
                feature_id,
                field_type,
            })
            .collect(),
    )
    .map_err(|e| LoadError::Sst(format!("the version's row schema: {e}")))
}

/// Who sees a build's sorted stream besides its SST files.
pub struct BuildConsumers<'a> {
    /// Every value (keys without the version prefix), while the files are written.
    pub values: &'a mut dyn SortedSink,
    /// Every batch row written, of the schema [`version_schema`] gives (see
    /// [`rows`]: entity key, row bytes).
    pub rows: Option<&'a mut dyn SortedSink>,
}

/// Reads `request.input`, validates every entity id with `ids` and every value against
/// `columns`, and writes sorted SST files for `target` into `scratch`; `consumers` sees
/// the same sorted stream, values and rows, while the files are written. The first
/// bad row fails the whole build.
#[expect(
    clippy::too_many_arguments,
    reason = "the inputs of one build, each from a different owner (request, registry, engine options, config)"
)]
pub fn build_files(
    request: &LoadRequest,
    columns: &HashMap<String, FeatureColumn>,
    ids: EntityIdRule<'_>,
    target: &SstTarget<'_>,
    scratch: &Path,
    memory_budget: usize,
    sst_target_bytes: u64,
    consumers: BuildConsumers<'_>,
    progress: &dyn Fn(LoadProgress),
) -> Result<BuiltFiles, LoadError> {
    let started_at_ms = now_ms();
    let started = Instant::now();
    let path_text = request.input.display().to_string();

    let files = SstSetWriter::new(target.options, scratch, sst_target_bytes)
        .with_key_prefix(target.key_prefix);
    let mut writer = RowWriter::new(files, version_schema(columns)?)?
        .with_progress(|n| {
            progress(LoadProgress {
                phase: "write",
                values: n,
                elapsed_secs: started.elapsed().as_secs_f64(),
            })
        })
        // (A trait object's lifetime shortens at a coercion, not inside an `Option`.)
        .with_rows(consumers.rows.map(|rows| -> &mut dyn SortedSink { rows }));
    let mut sink = Tee {
        first: &mut writer,
        second: consumers.values,
    };
    // A sorted input streams into the sink as it is read (no run files); one that
    // turns out unsorted after records were streamed is read again without streaming.
    let mut streaming = true;
    let (read, read_ms, duplicates) = loop {
        let mut sorter = ExternalSorter::new(memory_budget, scratch);
        let read = read_encoded(
            request,
            columns,
            ids,
            |chunk| {
                for (key, value) in chunk.records() {
                    let pushed = if streaming {
                        sorter.push_streaming(key, value, &mut sink)?
                    } else {
                        sorter.push(key, value).map(|()| Streamed::Continue)?
                    };
                    if pushed == Streamed::Restart {
                        return Ok(Streamed::Restart);
                    }
                }
                Ok(Streamed::Continue)
            },
            &|values| {
                progress(LoadProgress {
                    phase: "read",
                    values,
                    elapsed_secs: started.elapsed().as_secs_f64(),
                })
            },
        )?;
        if let Some(read) = read {
            if read.values == 0 {
                return Err(LoadError::EmptyInput(path_text));
            }
            let read_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let duplicates = if streaming {
                sorter.finish_streaming(&mut sink)?
            } else {
                Some(sorter.finish(&mut sink)?)
            };
            if let Some(duplicates) = duplicates {
                break (read, read_ms, duplicates);
            }
        }
        tracing::info!(
            input = path_text.as_str(),
            "load input is out of key order past the first sort buffer; sorting it again with run files"
        );
        sink.restart()?;
        streaming = false;
    };
    let (files, stats) = writer.finish()?;
    let sst_files = files.len();

    Ok(BuiltFiles {
        files,
        read_ms,
        record: LoadRecord {
            group: request.group.clone(),
            version: 0,
            source: path_text,
            source_bytes: read.source_bytes,
            source_crc32: read.source_crc32,
            format: read.summary.format,
            layout: read.summary.layout,
            rows: read.summary.rows,
            values_read: read.values,
            values_stored: stats.records,
            duplicates,
            nulls: read.nulls,
            entities: stats.entities,
            sst_files,
            sst_bytes: stats.bytes,
            started_at_ms,
            build_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ingest_ms: 0,
            segment_ms: 0,
            activated: false,
            validation: None,
        },
    })
}
