//! `featstore export-history`: the history as partitioned Parquet, for engines that
//! build training sets when a team outgrows one machine (the PySpark job in
//! `tools/spark/`, DuckDB). The layout and columns are specified in
//! `docs/history-export.md`.
//!
//! It owns the export's files: one directory per (group, feature version),
//! `group={g}/feature={name}/version={v}/part-00000.parquet`, and `_manifest.json`
//! describing the groups (versions, activations), the features (dtype, TTL, SLO,
//! default) and the files. Each row is one value a point-in-time question can return
//! ([`crate::store::history::servable`]): a training row at `ts` sees, per feature, the
//! row with the greatest `(event_time, source = stream, batch_version or known_at)` among
//! those with `event_time <= ts` (and `known_at <= ts` when as known at), then TTL,
//! freshness SLO and default as `featstore training-set` applies them.
//!
//! Invariants:
//! * Nothing partial is visible at `out`: files are written under a sibling
//!   `{out}.partial` directory, which is renamed to `out` when every file is closed
//!   (and removed on failure).
//! * One RocksDB snapshot per group: a group's files agree with one moment.
//! * Memory is bounded by the open writers of one group: each buffers
//!   [`BATCH_ROWS`](super::BATCH_ROWS) rows and a row group sized so that all of a
//!   group's writers hold about [`ROW_GROUP_BUDGET_ROWS`] rows together.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::codec::value::decode_value;
use crate::registry::FeatureDefinition;
use crate::registry::entity::split_composite_id;
use crate::servelog::export::{Values, arrow_type};
use crate::store::FeatureStore;
use crate::store::error::ReadError;
use crate::store::history::GroupHistory;
use crate::store::history::read::KeyHistory;
use crate::store::history::servable::{EntityVisitor, Servable, Source, servable_among};
use crate::types::{FeatureId, TimestampMs};

/// The version of the export's layout and columns (`format` in the manifest).
pub const EXPORT_FORMAT: u32 = 1;

/// The manifest's file name in the export directory.
pub const MANIFEST: &str = "_manifest.json";

/// Rows the row groups of one group's open writers hold together, at most (each
/// writer's row group is this divided by the group's features, at least 1,024).
pub const ROW_GROUP_BUDGET_ROWS: usize = 1 << 20;

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct HistoryExportJob {
    /// The directory to create (it must not exist, or be empty).
    pub out: PathBuf,
    /// Groups to export (empty: every group).
    pub groups: Vec<String>,
    /// Features (`name` or `name@version`) to export (empty: every feature version of
    /// the groups).
    pub features: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HistoryExportSummary {
    /// The export directory.
    pub out: PathBuf,
    /// Groups exported.
    pub groups: u64,
    /// Feature versions exported (one directory each).
    pub features: u64,
    /// Entities with history records.
    pub entities: u64,
    /// Rows written (values a point-in-time question can return).
    pub values: u64,
    /// Entities left out because their id cannot be written as text (not UTF-8, or a
    /// composite id that does not split into its type's components).
    pub skipped_entities: u64,
}

/// A feature a caller may not read: `Err` with the reason.
pub type FeatureCheck<'a> = &'a dyn Fn(&FeatureDefinition) -> Result<(), String>;

/// The export failed; nothing was left at `out`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryExportError {
    /// The job names something that does not exist, or `out` is in use.
    #[error("{0}")]
    Job(String),
    /// The caller may not read a selected feature.
    #[error("{0}")]
    Denied(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Parquet writing failed.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building a batch failed.
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Reading the history failed.
    #[error("reading the history of group `{group}`: {source}")]
    Read {
        /// The group.
        group: String,
        /// Why.
        #[source]
        source: ReadError,
    },
}

/// One group's description in the manifest.
#[derive(Debug, Serialize)]
struct ManifestGroup {
    name: String,
    entity_type: String,
    /// The component types of a composite entity type (each a `{component}_id`
    /// column), else empty.
    entity_components: Vec<String>,
    retention_ms: i64,
    /// Recorded versions: `(version, recorded_at_ms)`.
    versions: Vec<ManifestVersion>,
    activations: Vec<ManifestActivation>,
    features: Vec<ManifestFeature>,
}

#[derive(Debug, Serialize)]
struct ManifestVersion {
    version: u64,
    recorded_at_ms: TimestampMs,
}

#[derive(Debug, Serialize)]
struct ManifestActivation {
    at_ms: TimestampMs,
    version: u64,
}

#[derive(Debug, Serialize)]
struct ManifestFeature {
    name: String,
    version: u32,
    /// True for the version a plain `name` resolves to (the newest).
    current: bool,
    dtype: String,
    ttl_ms: Option<i64>,
    freshness_slo_ms: Option<i64>,
    retention_ms: Option<i64>,
    /// The default served when nothing usable is found, as JSON.
    default: Option<serde_json::Value>,
    /// The feature's directory, relative to the export's.
    path: String,
    rows: u64,
}

#[derive(Debug, Serialize)]
struct Manifest {
    format: u32,
    exported_at_ms: TimestampMs,
    groups: Vec<ManifestGroup>,
}

fn ms(d: Option<std::time::Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The columns of one feature's file: `entity_id`, one `{component}_id` per component
/// of a composite type, `value`, `event_time`, `known_at`, `source`, `batch_version` (not `version`, which
/// a Hive-partitioned reader takes from the directory name).
fn schema(def: &FeatureDefinition, components: &[String]) -> Arc<Schema> {
    let time = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = vec![Field::new("entity_id", DataType::Utf8, false)];
    for c in components {
        fields.push(Field::new(format!("{c}_id"), DataType::Utf8, false));
    }
    fields.extend([
        Field::new("value", arrow_type(def.spec.dtype), true),
        Field::new("event_time", time(), false),
        Field::new("known_at", time(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("batch_version", DataType::Int64, true),
    ]);
    Arc::new(Schema::new(fields))
}

/// One feature version's file being written.
struct FeatureFile {
    def: Arc<FeatureDefinition>,
    path: PathBuf,
    schema: Arc<Schema>,
    writer: ArrowWriter<File>,
    entity: StringBuilder,
    components: Vec<StringBuilder>,
    values: Values,
    event: TimestampMillisecondBuilder,
    known: TimestampMillisecondBuilder,
    source: StringBuilder,
    version: Int64Builder,
    pending: usize,
    rows: u64,
}

impl FeatureFile {
    fn create(
        def: Arc<FeatureDefinition>,
        path: PathBuf,
        components: &[String],
        row_group: usize,
    ) -> Result<Self, HistoryExportError> {
        let schema = schema(&def, components);
        let file = File::create(&path).map_err(|source| HistoryExportError::Io {
            path: path.clone(),
            source,
        })?;
        let props = WriterProperties::builder()
            .set_max_row_group_size(row_group)
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
            HistoryExportError::Parquet {
                path: path.clone(),
                source,
            }
        })?;
        let utc = || Some(Arc::<str>::from("UTC"));
        Ok(FeatureFile {
            values: Values::new(def.spec.dtype),
            def,
            path,
            schema,
            writer,
            entity: StringBuilder::new(),
            components: components.iter().map(|_| StringBuilder::new()).collect(),
            event: TimestampMillisecondBuilder::new().with_timezone_opt(utc()),
            known: TimestampMillisecondBuilder::new().with_timezone_opt(utc()),
            source: StringBuilder::new(),
            version: Int64Builder::new(),
            pending: 0,
            rows: 0,
        })
    }

    fn push(
        &mut self,
        id: &str,
        parts: &[String],
        candidate: &Servable<'_>,
    ) -> Result<(), HistoryExportError> {
        let corrupt = |source| HistoryExportError::Read {
            group: self.def.spec.group.clone(),
            source: ReadError::Corrupt {
                feature: self.def.qualified_name(),
                source,
            },
        };
        let stored = decode_value(candidate.stored).map_err(corrupt)?;
        if !stored.value.matches(self.def.spec.dtype) {
            return Err(corrupt(crate::codec::CodecError::Invalid {
                what: "history value",
                detail: format!(
                    "{:?} for a feature of type {}",
                    stored.value, self.def.spec.dtype
                ),
            }));
        }
        self.entity.append_value(id);
        for (builder, part) in self.components.iter_mut().zip(parts) {
            builder.append_value(part);
        }
        self.values.push(Some(&stored.value));
        self.event.append_value(candidate.event_time);
        self.known.append_value(candidate.known_at);
        match candidate.source {
            Source::Batch { version } => {
                self.source.append_value("batch");
                self.version
                    .append_value(i64::try_from(version).unwrap_or(i64::MAX));
            }
            Source::Stream { .. } => {
                self.source.append_value("stream");
                self.version.append_null();
            }
        }
        self.pending += 1;
        if self.pending >= super::BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), HistoryExportError> {
        if self.pending == 0 {
            return Ok(());
        }
        let values = std::mem::replace(&mut self.values, Values::new(self.def.spec.dtype));
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.entity.finish())];
        for c in &mut self.components {
            arrays.push(Arc::new(c.finish()));
        }
        arrays.push(values.finish());
        arrays.push(Arc::new(self.event.finish()));
        arrays.push(Arc::new(self.known.finish()));
        arrays.push(Arc::new(self.source.finish()));
        arrays.push(Arc::new(self.version.finish()));
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.writer
            .write(&batch)
            .map_err(|source| HistoryExportError::Parquet {
                path: self.path.clone(),
                source,
            })?;
        self.rows += self.pending as u64;
        self.pending = 0;
        Ok(())
    }

    fn close(mut self) -> Result<u64, HistoryExportError> {
        self.flush()?;
        self.writer
            .close()
            .map_err(|source| HistoryExportError::Parquet {
                path: self.path.clone(),
                source,
            })?;
        Ok(self.rows)
    }
}

/// Writes one group's candidates into its features' files.
struct GroupWriter<'g> {
    history: &'g GroupHistory,
    /// `history.first_activations()`, once for the group.
    first: Vec<(u64, TimestampMs)>,
    components: usize,
    files: HashMap<FeatureId, FeatureFile>,
    entities: u64,
    skipped: u64,
    failed: Option<HistoryExportError>,
}

impl GroupWriter<'_> {
    fn write_entity(
        &mut self,
        id: &[u8],
        keys: &[(FeatureId, KeyHistory)],
    ) -> Result<(), HistoryExportError> {
        let Ok(id) = std::str::from_utf8(id) else {
            self.skipped += 1;
            return Ok(());
        };
        let parts = if self.components > 0 {
            match split_composite_id(id) {
                Some(parts) if parts.len() == self.components => parts,
                _ => {
                    self.skipped += 1;
                    return Ok(());
                }
            }
        } else {
            Vec::new()
        };
        self.entities += 1;
        let mut candidates: Vec<Servable<'_>> = Vec::new();
        for (fid, h) in keys {
            let Some(file) = self.files.get_mut(fid) else {
                continue;
            };
            servable_among(self.history, &self.first, h, &mut candidates);
            for candidate in &candidates {
                file.push(id, &parts, candidate)?;
            }
        }
        Ok(())
    }
}

impl EntityVisitor for GroupWriter<'_> {
    fn entity(&mut self, id: &[u8], keys: &[(FeatureId, KeyHistory)]) -> Result<(), ReadError> {
        if self.failed.is_some() {
            return Ok(());
        }
        if let Err(e) = self.write_entity(id, keys) {
            self.failed = Some(e);
        }
        Ok(())
    }
}

/// The feature versions the job selects, by group (every version of each group's
/// features when the job names none).
fn select(
    store: &FeatureStore,
    job: &HistoryExportJob,
) -> Result<BTreeMap<String, Vec<Arc<FeatureDefinition>>>, HistoryExportError> {
    let registry = store.registry();
    let mut out: BTreeMap<String, Vec<Arc<FeatureDefinition>>> = BTreeMap::new();
    for g in &job.groups {
        if registry.group(g).is_none() {
            return Err(HistoryExportError::Job(format!("no group `{g}`")));
        }
    }
    let wanted_group = |g: &str| job.groups.is_empty() || job.groups.iter().any(|w| w == g);
    if job.features.is_empty() {
        for group in registry.groups() {
            if !wanted_group(&group.name) {
                continue;
            }
            let defs = out.entry(group.name.clone()).or_default();
            for id in &group.features {
                if let Some(def) = registry.by_id(*id)
                    && def.spec.aggregate.is_none()
                {
                    defs.push(def.clone());
                }
            }
        }
    } else {
        for name in &job.features {
            let def = registry
                .resolve(name)
                .ok_or_else(|| HistoryExportError::Job(format!("no feature `{name}`")))?;
            if def.spec.aggregate.is_some() {
                return Err(HistoryExportError::Job(format!(
                    "feature `{name}` is a windowed aggregate: its history is not kept"
                )));
            }
            if !wanted_group(&def.spec.group) {
                continue;
            }
            let defs = out.entry(def.spec.group.clone()).or_default();
            if !defs.iter().any(|d| d.id == def.id) {
                defs.push(def.clone());
            }
        }
    }
    out.retain(|_, defs| !defs.is_empty());
    if out.is_empty() {
        return Err(HistoryExportError::Job(
            "the job selects no feature with a history".into(),
        ));
    }
    Ok(out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryExportError + '_ {
    move |source| HistoryExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Exports the history the job selects (see the module doc); `admit` refuses the
/// whole export when the caller may not read one of the selected features.
pub fn export(
    store: &FeatureStore,
    job: &HistoryExportJob,
    admit: Option<FeatureCheck<'_>>,
) -> Result<HistoryExportSummary, HistoryExportError> {
    let selected = select(store, job)?;
    if let Some(admit) = admit {
        for def in selected.values().flatten() {
            admit(def).map_err(HistoryExportError::Denied)?;
        }
    }
    match std::fs::read_dir(&job.out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(HistoryExportError::Job(format!(
                    "{} exists and is not empty",
                    job.out.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&job.out)(e)),
    }
    let mut partial = job.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        // A failed export's leftovers (the process died while writing).
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    match write_all(store, &selected, &partial) {
        Ok(mut summary) => {
            if job.out.exists() {
                std::fs::remove_dir(&job.out).map_err(io(&job.out))?;
            }
            std::fs::rename(&partial, &job.out).map_err(io(&job.out))?;
            summary.out = job.out.clone();
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

fn write_all(
    store: &FeatureStore,
    selected: &BTreeMap<String, Vec<Arc<FeatureDefinition>>>,
    dir: &Path,
) -> Result<HistoryExportSummary, HistoryExportError> {
    let registry = store.registry();
    let table = store.history_table();
    let empty = GroupHistory::default();
    let mut summary = HistoryExportSummary::default();
    let mut manifest = Manifest {
        format: EXPORT_FORMAT,
        exported_at_ms: crate::types::now_ms(),
        groups: Vec::new(),
    };
    for (group, defs) in selected {
        let entity_type = defs
            .first()
            .map(|d| d.spec.entity_type.clone())
            .unwrap_or_default();
        let components: Vec<String> = registry
            .catalog()
            .entity_type(&entity_type)
            .map(|t| t.components.clone())
            .unwrap_or_default();
        if components.iter().any(|c| c == "entity") {
            return Err(HistoryExportError::Job(format!(
                "entity type `{entity_type}` has a component named `entity`, whose column would be `entity_id`"
            )));
        }
        let history = table.group(group).unwrap_or(&empty);
        let row_group = (ROW_GROUP_BUDGET_ROWS / defs.len().max(1)).max(1024);
        let mut files = HashMap::new();
        let mut paths = Vec::new();
        for def in defs {
            let rel = format!(
                "group={group}/feature={}/version={}",
                def.spec.name, def.spec.version
            );
            let feature_dir = dir.join(&rel);
            std::fs::create_dir_all(&feature_dir).map_err(io(&feature_dir))?;
            let file = FeatureFile::create(
                def.clone(),
                feature_dir.join("part-00000.parquet"),
                &components,
                row_group,
            )?;
            files.insert(def.id, file);
            paths.push((def.id, rel));
        }
        let mut writer = GroupWriter {
            history,
            first: history.first_activations(),
            components: components.len(),
            files,
            entities: 0,
            skipped: 0,
            failed: None,
        };
        store
            .scan_history(group, &mut writer)
            .map_err(|source| HistoryExportError::Read {
                group: group.clone(),
                source,
            })?;
        if let Some(e) = writer.failed.take() {
            return Err(e);
        }
        summary.entities += writer.entities;
        summary.skipped_entities += writer.skipped;
        let mut features = Vec::new();
        for (fid, rel) in paths {
            let Some(file) = writer.files.remove(&fid) else {
                continue;
            };
            let def = file.def.clone();
            let rows = file.close()?;
            summary.values += rows;
            summary.features += 1;
            let current = registry
                .resolve(&def.spec.name)
                .is_some_and(|d| d.id == def.id);
            features.push(ManifestFeature {
                name: def.spec.name.clone(),
                version: def.spec.version,
                current,
                dtype: def.spec.dtype.to_string(),
                ttl_ms: ms(def.spec.ttl),
                freshness_slo_ms: ms(def.spec.freshness_slo),
                retention_ms: def.spec.retention_ms(),
                default: def.spec.default.clone(),
                path: rel,
                rows,
            });
        }
        summary.groups += 1;
        manifest.groups.push(ManifestGroup {
            name: group.clone(),
            entity_type,
            entity_components: components,
            retention_ms: history.retention_ms,
            versions: history
                .versions
                .iter()
                .map(|(&version, &recorded_at_ms)| ManifestVersion {
                    version,
                    recorded_at_ms,
                })
                .collect(),
            activations: history
                .activations
                .iter()
                .map(|a| ManifestActivation {
                    at_ms: a.at_ms,
                    version: a.version,
                })
                .collect(),
            features,
        });
    }
    let path = dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| HistoryExportError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(summary)
}
