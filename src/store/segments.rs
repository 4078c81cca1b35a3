//! Hot segments in the engine: building the segment of a new batch version from its
//! column family, mapping it, and answering reads from it.
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
use crate::codec::key::{EntityKey, VersionPrefix, decode_key, entity_prefix_len};
use crate::codec::value::decode_value;
use crate::types::{DType, FeatureId, TimestampMs, Value};

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

/// Builds the segment of one version from its keys (under `version_prefix` in `cf`)
/// into `dir/{file}`. Returns `None` when the selection holds no entity.
pub fn build(
    db: &DB,
    cf: &Arc<BoundColumnFamily<'_>>,
    version_prefix: VersionPrefix,
    target: &SegmentTarget<'_>,
    fields: Vec<FieldSpec>,
    selection: &Selection,
) -> Result<Option<SegmentInfo>, StoreError> {
    let SegmentTarget {
        group,
        version,
        dir,
        file,
    } = *target;
    let path = dir.join(file);
    let positions: std::collections::HashMap<FeatureId, usize> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.feature_id, i))
        .collect();
    let field_of = |fid: FeatureId| positions.get(&fid).copied();
    let mut writer =
        SegmentWriter::new(group, version, fields.clone()).map_err(|e| segment_error(&path, e))?;
    let mut row: Vec<Option<(TimestampMs, Value)>> = vec![None; fields.len()];
    let push = |writer: &mut SegmentWriter,
                entity: &[u8],
                row: &mut Vec<Option<(TimestampMs, Value)>>|
     -> Result<(), StoreError> {
        let inputs: Vec<Option<(TimestampMs, FieldInput<'_>)>> = row
            .iter()
            .map(|f| f.as_ref().map(|(t, v)| (*t, FieldInput::from(v))))
            .collect();
        writer
            .push(entity, &inputs)
            .map_err(|e| segment_error(&path, e))?;
        row.iter_mut().for_each(|f| *f = None);
        Ok(())
    };
    let corrupt = |source: crate::codec::CodecError| StoreError::CorruptValue {
        what: format!("a batch row of {group} v{version}"),
        source,
    };

    // The version's key range only, in total order (entities cross prefixes).
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    if let Some(upper) = version_prefix.upper_bound() {
        opts.set_iterate_lower_bound(version_prefix.as_bytes().to_vec());
        opts.set_iterate_upper_bound(upper.to_vec());
    }
    let mut iter = db.raw_iterator_cf_opt(cf, opts);
    let scan_entity = |iter: &mut rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
                       writer: &mut SegmentWriter,
                       row: &mut Vec<Option<(TimestampMs, Value)>>,
                       only_prefix: Option<&[u8]>|
     -> Result<bool, StoreError> {
        // Reads the entity the iterator is on; leaves the iterator on the next one.
        let Some(first) = iter.key().and_then(|k| version_prefix.strip(k)) else {
            return Ok(false);
        };
        let prefix_len = entity_prefix_len(first).unwrap_or(first.len());
        let prefix = first.get(..prefix_len).unwrap_or(first).to_vec();
        if only_prefix.is_some_and(|p| p != prefix.as_slice()) {
            return Ok(false);
        }
        let (entity, _) = decode_key(first).map_err(corrupt)?;
        let entity = entity.to_vec();
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let Some(key) = version_prefix.strip(key) else {
                break;
            };
            if !key.starts_with(&prefix) || entity_prefix_len(key) != Some(prefix_len) {
                break;
            }
            let (_, fid) = decode_key(key).map_err(corrupt)?;
            if let Some(i) = field_of(fid) {
                let stored = decode_value(value).map_err(corrupt)?;
                if let Some(slot) = row.get_mut(i) {
                    *slot = Some((stored.event_time, stored.value));
                }
            }
            iter.next();
        }
        push(writer, &entity, row)?;
        Ok(true)
    };

    match selection {
        Selection::All => {
            iter.seek(version_prefix.as_bytes());
            while iter.valid() {
                if !scan_entity(&mut iter, &mut writer, &mut row, None)? {
                    break;
                }
            }
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
                if iter.valid() {
                    scan_entity(&mut iter, &mut writer, &mut row, Some(key.as_bytes()))?;
                }
            }
        }
    }
    iter.status()?;
    if writer.is_empty() {
        return Ok(None);
    }
    let entities = writer.len() as u64;
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        context: format!("create {}", dir.display()),
        source,
    })?;
    writer
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
        hot_only: matches!(selection, Selection::Only(_)),
    }))
}
