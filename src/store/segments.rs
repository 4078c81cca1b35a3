//! Hot segments in the engine: their sizing policy ([`Sizing`]), assembling a
//! version's rows ([`SegmentFeed`]: fed by a load from its sorted stream, or by
//! [`build`] from a scan of the version when a segment is rebuilt), mapping them, and
//! answering reads from them.
//!
//! A segment is a cache of one immutable version: it holds the full rows of the
//! entities it covers, so for those entities it answers exactly what RocksDB would.
//! Which entities: all of them when the version fits the group's memory budget,
//! otherwise the most-read ones by the persisted access counts. Files live in
//! `{data dir}/segments/`, are written to a temp file, fsynced and renamed, never
//! modified afterwards, and validated in full before they serve (see
//! `featstore_format::segment`).
//!
//! Thread-safety contract: a [`HotSegment`] is immutable and shared by `Arc` between
//! read views; the mapping is released when the last view holding it is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use featstore_format::segment::{
    FieldInput, FieldSpec, MappedSegment, Row, Segment, SegmentWriter,
};
use memmap2::Mmap;
use rocksdb::{BoundColumnFamily, DB, ReadOptions};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::codec::key::{EntityKey, VersionPrefix, decode_key, encode_key_into, entity_prefix_len};
use crate::codec::value::decode_value;
use crate::types::{DType, FeatureId, TimestampMs, Value};
use featstore_format::codec::row::{RowRef, SCHEMA_KEY, encode_field};

/// Where a version's segment is, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// File name inside `{data dir}/segments/`.
    pub file: String,
    /// Entities it holds.
    pub entities: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether it holds only the hottest entities (the version did not fit the budget).
    pub hot_only: bool,
}

/// The file name of the segment of the version stored in column family `cf_name`.
pub fn file_name(cf_name: &str) -> String {
    super::keyspace::segment_file_name(cf_name)
}

/// Which entities a segment build takes.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every entity of the version.
    All,
    /// These entity ids (the hottest), in any order; ids absent from the version are
    /// skipped.
    Only(Vec<Vec<u8>>),
}

/// A mapped, validated segment of one version.
pub struct HotSegment {
    segment: Segment<Mmap>,
    path: PathBuf,
}

impl std::fmt::Debug for HotSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotSegment")
            .field("path", &self.path)
            .field("entities", &self.segment.entity_count())
            .finish()
    }
}

fn segment_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Segment(format!("{}: {e}", path.display()))
}

impl HotSegment {
    /// Maps and fully validates the file; a corrupt or hostile file is an error.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let segment = MappedSegment::open(path).map_err(|e| segment_error(path, e))?;
        Ok(HotSegment {
            segment,
            path: path.to_path_buf(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entities held.
    pub fn entity_count(&self) -> usize {
        self.segment.entity_count()
    }

    /// Bytes of the mapped file.
    pub fn mapped_bytes(&self) -> u64 {
        self.segment.as_bytes().len() as u64
    }
}

/// The segment's field positions of a lookup's wanted features, resolved once per
/// batch of entities (see [`HotSegment::prepare`]).
#[derive(Debug, Clone)]
pub struct PreparedFields {
    pairs: Vec<(usize, usize)>,
    out_of_line: Vec<usize>,
}

impl PreparedFields {
    /// `(segment field, slot)` pairs, for [`Row::get`].
    pub fn pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// The segment fields among them whose values are stored out of line (strings,
    /// bytes, vectors), for [`Row::prefetch_value`].
    pub fn out_of_line(&self) -> &[usize] {
        &self.out_of_line
    }
}

impl HotSegment {
    /// Resolves `(feature, slot)` pairs to `(segment field, slot)` once, so a batch of
    /// lookups does no per-entity, per-feature search. Features the segment does not
    /// hold are left out (their slots are never written).
    pub fn prepare(&self, wanted: &[(FeatureId, usize)]) -> PreparedFields {
        let pairs: Vec<(usize, usize)> = wanted
            .iter()
            .filter_map(|&(feature, slot)| {
                self.segment.field_index(feature).map(|field| (field, slot))
            })
            .collect();
        let fields = self.segment.fields();
        let out_of_line = pairs
            .iter()
            .map(|&(field, _)| field)
            .filter(|&field| {
                fields.get(field).is_some_and(|f| {
                    matches!(
                        f.field_type,
                        DType::String | DType::Bytes | DType::Float32Vector { .. }
                    )
                })
            })
            .collect();
        PreparedFields { pairs, out_of_line }
    }

    /// Looks up `count` entity ids (`id_of(i)`) and calls `visit(i, row)` for each, in
    /// order, with `None` for ids the segment does not hold. The memory accesses of
    /// several ids overlap (see `Segment::find_batch`).
    #[inline]
    pub fn find_each<'s, 'k>(
        &'s self,
        count: usize,
        id_of: impl Fn(usize) -> &'k [u8],
        visit: impl FnMut(usize, Option<Row<'s>>),
    ) {
        self.segment.find_batch(count, id_of, visit);
    }
}

/// Which version a segment is built for, and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct SegmentTarget<'a> {
    /// Feature group.
    pub group: &'a str,
    /// Its batch version.
    pub version: u64,
    /// The segments directory.
    pub dir: &'a Path,
    /// File name inside `dir`.
    pub file: &'a str,
}

/// The sizing policy: the bytes one entity is charged against the hot segment budget.
///
/// Fixed-width rows ([`featstore_format::segment::fixed_bytes_per_entity`]) plus, for
/// groups with variable-width values (strings, bytes, vectors), the version's stored
/// bytes per entity, an upper bound of ids beyond the inline prefix and out-of-line
/// values; otherwise 16 bytes for the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Fixed bytes per entity (row and index slots), at least 1.
    fixed: u64,
    /// Whether some field is variable-width.
    variable: bool,
}

impl Sizing {
    /// The sizing of a segment of `fields`.
    pub fn new(group: &str, fields: &[FieldSpec]) -> Result<Sizing, StoreError> {
        let fixed = featstore_format::segment::fixed_bytes_per_entity(fields, 1)
            .map_err(|e| StoreError::Segment(format!("{group}: {e}")))?;
        let variable = fields.iter().any(|f| {
            matches!(
                f.field_type,
                DType::String | DType::Bytes | DType::Float32Vector { .. }
            )
        });
        Ok(Sizing {
            fixed: fixed.max(1),
            variable,
        })
    }

    /// Whether the per-entity charge is known before the version is written (no
    /// variable-width field): then the number of hot entities is too.
    pub fn is_fixed(&self) -> bool {
        !self.variable
    }

    /// Bytes charged per entity for a version of `entities` whose SST files hold
    /// `sst_bytes`.
    pub fn per_entity(&self, entities: u64, sst_bytes: u64) -> u64 {
        self.fixed
            + if self.variable {
                sst_bytes / entities.max(1)
            } else {
                16
            }
    }

    /// Whether a version of `entities` (holding `sst_bytes`) fits `budget` whole.
    pub fn fits(&self, entities: u64, sst_bytes: u64, budget: u64) -> bool {
        entities.saturating_mul(self.per_entity(entities, sst_bytes)) <= budget
    }

    /// True when no version that has at least `entities` entities can fit `budget`
    /// whole, whatever its final size: `entities * per_entity` only grows as entities
    /// and SST bytes are added (for variable-width groups, `per_entity >= fixed`).
    pub fn cannot_fit(&self, entities: u64, budget: u64) -> bool {
        let least = if self.variable {
            self.fixed
        } else {
            self.fixed + 16
        };
        entities.saturating_mul(least) > budget
    }

    /// How many of the hottest entities a version that does not fit takes.
    pub fn hot_count(&self, entities: u64, sst_bytes: u64, budget: u64) -> usize {
        usize::try_from(budget / self.per_entity(entities, sst_bytes)).unwrap_or(usize::MAX)
    }
}

/// Assembles segment rows from one version's records, fed in ascending key order
/// (keys without the version prefix), and writes the segment at the end.
///
/// Both builds use it: a load feeds it from its sorted stream while it writes the SST
/// files (no read of the column family), and the rebuild of an unusable segment feeds
/// it from a scan of the version's key range. The rows are identical either way: one
/// row per entity, in key order, holding the entity's values of the segment's fields.
///
/// Memory: the segment under construction (`SegmentWriter` stages every row until
/// `finish`), about the size of the finished file; [`SegmentFeed::staged_bytes`] is an
/// upper bound of it, so a caller can stop a build that outgrows its budget.
pub struct SegmentFeed {
    group: String,
    version: u64,
    writer: SegmentWriter,
    /// Field index of each feature id.
    positions: std::collections::HashMap<FeatureId, usize>,
    /// Feature id of each field.
    field_ids: Vec<FeatureId>,
    /// The field the next record most likely is.
    next_field: usize,
    /// The entity being assembled: its values, one slot per field.
    row: Vec<Option<(TimestampMs, Value)>>,
    /// Encoded entity key of the entity being assembled; empty before the first record.
    current: Vec<u8>,
    /// Its id.
    entity: Vec<u8>,
    /// Whether the current entity goes into the segment.
    taking: bool,
    /// Encoded entity keys to take; `None`: every entity.
    only: Option<std::collections::HashSet<Vec<u8>>>,
    /// Upper bound of the writer's staged bytes (rows, ids, out-of-line values).
    staged: u64,
    row_bytes: u64,
}

impl std::fmt::Debug for SegmentFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFeed")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("entities", &self.writer.len())
            .finish()
    }
}

impl SegmentFeed {
    /// A feed of version `version` of `group` into a segment of `fields`, taking the
    /// entities `selection` names.
    pub fn new(
        group: &str,
        version: u64,
        fields: Vec<FieldSpec>,
        selection: &Selection,
    ) -> Result<SegmentFeed, StoreError> {
        let row_bytes = featstore_format::segment::fixed_bytes_per_entity(&fields, 1)
            .map_err(|e| StoreError::Segment(format!("{group}: {e}")))?;
        let positions = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.feature_id, i))
            .collect();
        let row = vec![None; fields.len()];
        let field_ids = fields.iter().map(|f| f.feature_id).collect();
        let writer = SegmentWriter::new(group, version, fields)
            .map_err(|e| StoreError::Segment(format!("{group} v{version}: {e}")))?;
        let only = match selection {
            Selection::All => None,
            Selection::Only(ids) => Some(
                ids.iter()
                    .filter_map(|id| EntityKey::new(id).ok())
                    .map(|key| key.as_bytes().to_vec())
                    .collect(),
            ),
        };
        Ok(SegmentFeed {
            group: group.to_owned(),
            version,
            writer,
            positions,
            field_ids,
            next_field: 0,
            row,
            current: Vec::new(),
            entity: Vec::new(),
            taking: false,
            only,
            staged: 0,
            row_bytes,
        })
    }

    fn corrupt(&self, source: crate::codec::CodecError) -> StoreError {
        StoreError::CorruptValue {
            what: format!("a batch row of {} v{}", self.group, self.version),
            source,
        }
    }

    /// Takes the next record; keys (without the version prefix) ascend across calls.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let prefix_len = entity_prefix_len(key).unwrap_or(key.len());
        let prefix = key.get(..prefix_len).unwrap_or(key);
        if self.current.is_empty() || prefix != self.current.as_slice() {
            self.end_entity()?;
            self.current.clear();
            self.current.extend_from_slice(prefix);
            self.next_field = 0;
            self.taking = self.only.as_ref().is_none_or(|only| only.contains(prefix));
            if self.taking {
                let (entity, _) = decode_key(key).map_err(|e| self.corrupt(e))?;
                self.entity.clear();
                self.entity.extend_from_slice(entity);
                self.staged += self.row_bytes + prefix_len as u64;
            }
        }
        if !self.taking {
            return Ok(());
        }
        let (_, fid) = decode_key(key).map_err(|e| self.corrupt(e))?;
        // Rows arrive feature by feature in id order: try the field after the last one.
        let guess = self.next_field;
        let field = if self.field_ids.get(guess) == Some(&fid) {
            Some(guess)
        } else {
            self.positions.get(&fid).copied()
        };
        if let Some(i) = field {
            self.next_field = i + 1;
            let stored = decode_value(value).map_err(|e| self.corrupt(e))?;
            self.staged += match &stored.value {
                Value::String(v) => v.len() as u64,
                Value::Bytes(v) => v.len() as u64,
                Value::Float32Vector(v) => size_of_val(v.as_slice()) as u64,
                _ => 0,
            };
            if let Some(slot) = self.row.get_mut(i) {
                *slot = Some((stored.event_time, stored.value));
            }
        }
        Ok(())
    }

    /// Pushes the row of the entity being assembled, if it is taken.
    fn end_entity(&mut self) -> Result<(), StoreError> {
        if !self.taking {
            return Ok(());
        }
        self.taking = false;
        let inputs: Vec<Option<(TimestampMs, FieldInput<'_>)>> = self
            .row
            .iter()
            .map(|f| f.as_ref().map(|(t, v)| (*t, FieldInput::from(v))))
            .collect();
        let pushed = self.writer.push(&self.entity, &inputs);
        drop(inputs);
        self.row.iter_mut().for_each(|f| *f = None);
        pushed.map_err(|e| StoreError::Segment(format!("{} v{}: {e}", self.group, self.version)))
    }

    /// Entities taken so far.
    pub fn entities(&self) -> u64 {
        self.writer.len() as u64 + u64::from(self.taking)
    }

    /// Upper bound of the bytes staged so far (rows, ids, out-of-line values before
    /// de-duplication): about the memory the feed holds.
    pub fn staged_bytes(&self) -> u64 {
        self.staged
    }

    /// Writes the segment to `dir/{file}` (durably: temp file, fsync, rename). Returns
    /// `None` when no entity was taken.
    pub fn finish(mut self, dir: &Path, file: &str) -> Result<Option<SegmentInfo>, StoreError> {
        self.end_entity()?;
        if self.writer.is_empty() {
            return Ok(None);
        }
        let path = dir.join(file);
        let entities = self.writer.len() as u64;
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("create {}", dir.display()),
            source,
        })?;
        self.writer
            .finish_to_path(&path)
            .map_err(|e| segment_error(&path, e))?;
        let bytes = std::fs::metadata(&path)
            .map_err(|source| StoreError::Io {
                context: format!("stat {}", path.display()),
                source,
            })?
            .len();
        Ok(Some(SegmentInfo {
            file: file.to_owned(),
            entities,
            bytes,
            hot_only: self.only.is_some(),
        }))
    }
}

/// Builds the segment of one version from its keys (under `version_prefix` in `cf`)
/// into `dir/{file}`: a scan of the version's key range for [`Selection::All`], one
/// seek per entity for [`Selection::Only`]. Returns `None` when the selection holds no
/// entity. Loads feed a [`SegmentFeed`] from their sorted stream instead; this is the
/// rebuild path (a segment missing or unusable at open or activation).
pub fn build(
    db: &DB,
    cf: &Arc<BoundColumnFamily<'_>>,
    version_prefix: VersionPrefix,
    target: &SegmentTarget<'_>,
    fields: Vec<FieldSpec>,
    selection: &Selection,
) -> Result<Option<SegmentInfo>, StoreError> {
    let mut feed = SegmentFeed::new(target.group, target.version, fields, selection)?;
    // The version's key range only, in total order (entities cross prefixes).
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    if let Some(upper) = version_prefix.upper_bound() {
        opts.set_iterate_lower_bound(version_prefix.as_bytes().to_vec());
        opts.set_iterate_upper_bound(upper.to_vec());
    }
    // A layout-3 version starts with its row schema; its rows are fed to the segment
    // as the values they hold, in the order the sorted stream of a load has.
    let schema = super::version_range::read_row_schema(db, cf, version_prefix)?;
    let mut iter = db.raw_iterator_cf_opt(cf, opts);
    let mut record_key = Vec::new();
    let mut record_value = Vec::new();
    // Feeds the records of keys starting with `within` (after the version prefix).
    let mut feed_from = |iter: &mut rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
                         feed: &mut SegmentFeed,
                         within: &[u8]|
     -> Result<(), StoreError> {
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let Some(key) = version_prefix.strip(key) else {
                break;
            };
            if !key.starts_with(within) {
                break;
            }
            if !within.is_empty() && entity_prefix_len(key) != Some(within.len()) {
                break;
            }
            match &schema {
                Some(schema) if key != SCHEMA_KEY => {
                    let row = RowRef::parse(schema, value).map_err(|e| feed.corrupt(e))?;
                    for (pos, spec) in schema.fields().iter().enumerate() {
                        record_value.clear();
                        if !encode_field(
                            row.get(pos).map_err(|e| feed.corrupt(e))?,
                            &mut record_value,
                        ) {
                            continue;
                        }
                        record_key.clear();
                        let id = key.get(2..).unwrap_or_default();
                        encode_key_into(id, spec.feature_id, &mut record_key)
                            .map_err(|e| feed.corrupt(e))?;
                        feed.put(&record_key, &record_value)?;
                    }
                }
                Some(_) => {}
                None => feed.put(key, value)?,
            }
            iter.next();
        }
        Ok(())
    };
    match selection {
        Selection::All => {
            iter.seek(version_prefix.as_bytes());
            feed_from(&mut iter, &mut feed, &[])?;
        }
        Selection::Only(ids) => {
            let mut keys: Vec<EntityKey> = ids
                .iter()
                .filter_map(|id| EntityKey::new(id).ok())
                .collect();
            keys.sort();
            keys.dedup();
            for key in &keys {
                iter.seek([version_prefix.as_bytes(), key.as_bytes()].concat());
                feed_from(&mut iter, &mut feed, key.as_bytes())?;
            }
        }
    }
    iter.status()?;
    feed.finish(target.dir, target.file)
}
