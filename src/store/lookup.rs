//! Stored-value lookup: the values of some features of one group for a batch of
//! entities, from that group's active sources.
//!
//! This is the seam every read path goes through (one entity's vector, a ranking
//! request's hundreds of candidates): it answers "what is stored", never "what does the
//! caller see" (TTL, freshness and defaults are decided above, in the query layer:
//! [`crate::query`]).
//!
//! Invariants:
//! - Results go to a [`StoredSink`], addressed by (entity index, column): the
//!   entity-major [`RowMajor`] buffer of single reads or the columnar
//!   [`ColumnSink`] of ranking answers; columns not named in `wanted` are left
//!   untouched.
//! - A source is asked once per batch, never once per feature: the hot segment first,
//!   then, for the entities the segment does not hold, one batched RocksDB MultiGet of
//!   their rows (batch layout 3: one key per entity). Versions written before layout 3
//!   (one key per value) are read with one MultiGet over (entity, feature) keys (few
//!   features) or one prefix scan per entity (many).
//! - Streamed values are merged in here, so every read path sees them: one MultiGet
//!   over every (entity, feature) key of the group's stream column family, newest
//!   event time winning (ties: the streamed value); windowed aggregates are evaluated
//!   from their tiles (see [`super::stream::merge`]).

use std::sync::Arc;

use rocksdb::ReadOptions;

use featstore_format::codec::row::{RowRef, RowSchema, encode_field};
use featstore_format::segment::FieldValue;

use super::error::ReadError;
pub use super::history::read::HistoryRead;
use super::stream::merge::merge_stream;
use super::view::{ActiveVersion, ReadView};
use crate::codec::key::{EntityKey, VersionPrefix, decode_key, entity_prefix_len};
use crate::codec::value::decode_value;
use crate::query::answer::ColumnValues;
use crate::registry::FeatureDefinition;
use crate::types::{FeatureId, TimestampMs, Value};

/// A stored value and its event time, or nothing stored.
pub type Stored = Option<(Value, TimestampMs)>;

/// Where a lookup records what is stored, per (entity index, column).
pub trait StoredSink {
    /// Records a field borrowed from the hot segment.
    fn put_field(&mut self, entity: usize, column: usize, field: FieldValue<'_>);
    /// Records one field of every found row (`rows[i]` for entity `first + i`, read
    /// with `field_of`; `None`: not found, left untouched) into `column`.
    #[inline]
    fn put_rows<'v, T>(
        &mut self,
        column: usize,
        first: usize,
        rows: &[Option<T>],
        mut field_of: impl FnMut(&T) -> FieldValue<'v>,
    ) {
        for (i, row) in rows.iter().enumerate() {
            if let Some(row) = row {
                self.put_field(first + i, column, field_of(row));
            }
        }
    }
    /// Records an owned stored value (RocksDB, the stream); `None`: nothing stored.
    fn put_stored(&mut self, entity: usize, column: usize, stored: Stored);
    /// The event time of what is recorded for (entity, column), value or null.
    fn stored_time(&self, entity: usize, column: usize) -> Option<TimestampMs>;
}

/// Columnar values: entity `e` is row `e` of every column. A stored value whose type
/// is not its column's dtype is left out and remembered in `mismatch` (the column),
/// for the caller to report: the loader and pushes check types, so one means damage.
pub struct ColumnSink<'a> {
    /// One column per lookup column.
    pub columns: &'a mut [ColumnValues],
    /// The first column that received a value of another type.
    pub mismatch: Option<usize>,
}

impl StoredSink for ColumnSink<'_> {
    #[inline]
    fn put_field(&mut self, entity: usize, column: usize, field: FieldValue<'_>) {
        if let Some(c) = self.columns.get_mut(column)
            && !c.put_field(entity, field)
        {
            self.mismatch.get_or_insert(column);
        }
    }

    #[inline]
    fn put_rows<'v, T>(
        &mut self,
        column: usize,
        first: usize,
        rows: &[Option<T>],
        field_of: impl FnMut(&T) -> FieldValue<'v>,
    ) {
        if let Some(c) = self.columns.get_mut(column)
            && !c.put_rows(first, rows, field_of)
        {
            self.mismatch.get_or_insert(column);
        }
    }

    fn put_stored(&mut self, entity: usize, column: usize, stored: Stored) {
        if let Some(c) = self.columns.get_mut(column)
            && !c.put_stored(entity, stored)
        {
            self.mismatch.get_or_insert(column);
        }
    }

    fn stored_time(&self, entity: usize, column: usize) -> Option<TimestampMs> {
        self.columns.get(column)?.stored_time(entity)
    }
}

/// Rows recorded column by column at a time (see `lookup_batch`).
const ROW_BLOCK: usize = 32;

/// Up to this many features of one group are fetched with MultiGet; more use a scan.
const MULTI_GET_MAX: usize = 4;

/// What one [`lookup_group`] call asks for.
pub struct GroupLookup<'a> {
    /// The feature group.
    pub group: &'a str,
    /// `(feature id, column)` pairs, sorted by feature id.
    pub wanted: &'a [(FeatureId, usize)],
    /// Definitions by column, to name a feature in errors.
    pub defs: &'a [&'a Arc<FeatureDefinition>],
    /// The read's time (ms): windowed aggregates are evaluated at it, the same instant
    /// the caller's TTL and freshness checks use.
    pub now: TimestampMs,
    /// Read from the history instead of the live sources (as-of and point-in-time
    /// reads at `now`); `None` for live reads.
    pub history: Option<HistoryRead<'a>>,
}

/// Records in `out` the stored values of `request.wanted` for every entity of
/// `entities`: the active batch version's, merged with the group's streamed values.
/// Returns the batch version read, or `None` when the group has no active version.
pub fn lookup_group(
    view: &ReadView,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    out: &mut impl StoredSink,
) -> Result<Option<u64>, ReadError> {
    if let Some(history) = request.history {
        return super::history::read::lookup(
            view,
            history.table,
            history.query,
            request,
            entities,
            out,
        );
    }
    let version = lookup_batch(view, request, entities, out)?;
    if let Some(cf) = view.stream(request.group) {
        merge_stream(view, cf, request, entities, out)?;
    }
    Ok(version)
}

/// The batch half of [`lookup_group`]: the active version's values.
fn lookup_batch(
    view: &ReadView,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    out: &mut impl StoredSink,
) -> Result<Option<u64>, ReadError> {
    let Some(active) = view.active(request.group) else {
        return Ok(None);
    };
    let mut misses: Vec<usize> = Vec::new();
    let counters = view.counters();
    counters
        .lookups
        .fetch_add(entities.len() as u64, std::sync::atomic::Ordering::Relaxed);
    match &active.segment {
        Some(segment) => {
            // Field positions are resolved once per call, not per entity.
            let prepared = segment.prepare(request.wanted);
            let id_of = |e: usize| entities.get(e).map_or(&[][..], EntityKey::id);
            let mut rows = Vec::with_capacity(entities.len());
            segment.find_each(entities.len(), id_of, |_, row| rows.push(row));
            // Vectors and strings live outside the row, one more dependent miss each:
            // every row's are touched before any is read, so those misses overlap.
            if !prepared.out_of_line().is_empty() {
                for row in rows.iter().flatten() {
                    for &field in prepared.out_of_line() {
                        row.prefetch_value(field);
                    }
                }
            }
            // Column at a time within blocks of rows: one field of every row of a block,
            // so a columnar sink writes runs of each column with one type dispatch,
            // while the block's rows (5 cache lines each for 50 floats) stay in L1.
            for (b, block) in rows.chunks(ROW_BLOCK).enumerate() {
                for &(field, column) in prepared.pairs() {
                    out.put_rows(column, b * ROW_BLOCK, block, |row| row.get(field));
                }
            }
            misses.extend(
                rows.iter()
                    .enumerate()
                    .filter(|(_, row)| row.is_none())
                    .map(|(e, _)| e),
            );
            counters.segment_hits.fetch_add(
                (entities.len() - misses.len()) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        None => misses.extend(0..entities.len()),
    }
    if misses.is_empty() {
        return Ok(Some(active.version));
    }
    if let Some(schema) = active.range.as_ref().and_then(|r| r.schema()) {
        lookup_rows(view, active, schema, request, entities, &misses, out)?;
    } else if request.wanted.len() <= MULTI_GET_MAX {
        multi_get(view, active, request, entities, &misses, out)?;
    } else {
        // One iterator, re-seeked per entity (each seek sets the prefix bound).
        let mut opts = ReadOptions::default();
        opts.set_prefix_same_as_start(true);
        let mut iter = view.db().raw_iterator_cf_opt(&active.cf, opts);
        for &e in &misses {
            scan_entity(&mut iter, active.prefix, request, &entities[e], e, out)?;
        }
    }
    Ok(Some(active.version))
}

fn decode_into(
    bytes: &[u8],
    (entity, column): (usize, usize),
    defs: &[&Arc<FeatureDefinition>],
    out: &mut impl StoredSink,
) -> Result<(), ReadError> {
    let stored = decode_value(bytes).map_err(|source| ReadError::Corrupt {
        feature: defs[column].qualified_name(),
        source,
    })?;
    out.put_stored(entity, column, Some((stored.value, stored.event_time)));
    Ok(())
}

fn storage(e: rocksdb::Error) -> ReadError {
    ReadError::Storage(e)
}

/// Layout 3: one batched MultiGet of the missed entities' rows (one key each), every
/// wanted field read from the row. Rows are recorded as the hot segment's are: a field
/// of every row of a block at a time, so a column is written in runs.
fn lookup_rows(
    view: &ReadView,
    active: &ActiveVersion<'_>,
    schema: &RowSchema,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    misses: &[usize],
    out: &mut impl StoredSink,
) -> Result<(), ReadError> {
    // Schema positions are resolved once per call, not per entity; fields the version
    // does not hold stay `not_found`.
    let fields: Vec<(usize, usize)> = request
        .wanted
        .iter()
        .filter_map(|&(fid, column)| Some((schema.position(fid)?, column)))
        .collect();
    let corrupt = |column: usize, source| ReadError::Corrupt {
        feature: request.defs[column].qualified_name(),
        source,
    };
    // The keys, in one buffer. They share the version prefix, so they are sorted when
    // the entities are: RocksDB's batched MultiGet is told so only then.
    let prefix = active.prefix.as_bytes();
    let mut key_bytes = Vec::with_capacity(misses.len() * (prefix.len() + 16));
    for &e in misses {
        key_bytes.extend_from_slice(prefix);
        key_bytes.extend_from_slice(entities[e].as_bytes());
    }
    let keys = misses.iter().scan(0, |at, &e| {
        let end = *at + prefix.len() + entities[e].as_bytes().len();
        let key = &key_bytes[*at..end];
        *at = end;
        Some(key)
    });
    let sorted = misses.windows(2).all(|w| entities[w[0]] <= entities[w[1]]);
    let results = view.db().batched_multi_get_cf(&active.cf, keys, sorted);
    // Entity `e`'s row at `rows[e]`, up to the last miss; `None` where the segment
    // answered or nothing is stored.
    let mut rows: Vec<Option<RowRef<'_>>> = vec![None; misses.last().map_or(0, |&e| e + 1)];
    for (result, &e) in results.iter().zip(misses) {
        let Some(bytes) = result.as_ref().map_err(|e| storage(e.clone()))? else {
            continue;
        };
        rows[e] = Some(
            RowRef::parse(schema, bytes)
                .map_err(|source| corrupt(fields.first().map_or(0, |f| f.1), source))?,
        );
    }
    let mut damage = None;
    for (b, block) in rows.chunks(ROW_BLOCK).enumerate() {
        if block.iter().all(Option::is_none) {
            continue;
        }
        for &(pos, column) in &fields {
            out.put_rows(column, b * ROW_BLOCK, block, |row| {
                row.get(pos).unwrap_or_else(|source| {
                    damage.get_or_insert((column, source));
                    FieldValue::Absent
                })
            });
            if let Some((column, source)) = damage.take() {
                return Err(corrupt(column, source));
            }
        }
    }
    Ok(())
}

/// One batched MultiGet over every (missed entity, wanted feature) key.
fn multi_get(
    view: &ReadView,
    active: &ActiveVersion<'_>,
    request: &GroupLookup<'_>,
    entities: &[EntityKey],
    misses: &[usize],
    out: &mut impl StoredSink,
) -> Result<(), ReadError> {
    let cf = &active.cf;
    let prefix = active.prefix.as_bytes();
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(misses.len() * request.wanted.len());
    let mut targets: Vec<(usize, usize)> = Vec::with_capacity(keys.capacity());
    for &e in misses {
        for &(fid, column) in request.wanted {
            keys.push(entities[e].feature_key_under(prefix, fid));
            targets.push((e, column));
        }
    }
    // Keys are sorted when entities are: RocksDB's batched MultiGet is told so only
    // then.
    let sorted = keys.windows(2).all(|w| w[0] <= w[1]);
    let results = view.db().batched_multi_get_cf(cf, keys.iter(), sorted);
    for (result, (e, column)) in results.into_iter().zip(targets) {
        if let Some(bytes) = result.map_err(storage)? {
            decode_into(&bytes, (e, column), request.defs, out)?;
        }
    }
    Ok(())
}

/// One prefix scan over the entity's keys, picking the wanted features.
fn scan_entity(
    iter: &mut rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB>,
    version: VersionPrefix,
    request: &GroupLookup<'_>,
    entity: &EntityKey,
    e: usize,
    out: &mut impl StoredSink,
) -> Result<(), ReadError> {
    let wanted = request.wanted;
    let Some(&(first_fid, _)) = wanted.first() else {
        return Ok(());
    };
    iter.seek(entity.feature_key_under(version.as_bytes(), first_fid));
    let prefix_len = entity.as_bytes().len();
    let mut next = 0;
    while iter.valid() && next < wanted.len() {
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            break;
        };
        let Some(key) = version.strip(key) else {
            break;
        };
        if entity_prefix_len(key) != Some(prefix_len) || !key.starts_with(entity.as_bytes()) {
            break;
        }
        let Ok((_, fid)) = decode_key(key) else {
            break;
        };
        while next < wanted.len() && wanted[next].0 < fid {
            next += 1;
        }
        while next < wanted.len() && wanted[next].0 == fid {
            decode_into(value, (e, wanted[next].1), request.defs, out)?;
            next += 1;
        }
        iter.next();
    }
    iter.status().map_err(storage)
}

/// The stored values of `features` x `entities` in one version (its family `cf` and
/// key `prefix`), in the per-value encoding ([`crate::codec::value`]), feature-major
/// (`features[i]` of `entities[e]` at `i * entities.len() + e`); `None`: nothing stored.
/// Reads rows (layout 3: one batched MultiGet of the entities' rows) or, for versions
/// written before, one key per value. An id too long to be a key is stored nowhere.
/// For checks outside the read path (the shadow check of a new version).
pub(crate) fn stored_values(
    db: &rocksdb::DB,
    cf: &Arc<rocksdb::BoundColumnFamily<'_>>,
    prefix: crate::codec::key::VersionPrefix,
    entities: &[&[u8]],
    features: &[FeatureId],
) -> Result<Vec<Option<Vec<u8>>>, super::StoreError> {
    let per = entities.len();
    let mut out = vec![None; per * features.len()];
    let schema = super::version_range::read_row_schema(db, cf, prefix)?;
    let key_of = |entity: &[u8], feature: Option<FeatureId>| -> Option<Vec<u8>> {
        let mut key = prefix.as_bytes().to_vec();
        let done = match feature {
            Some(f) => crate::codec::key::encode_key_into(entity, f, &mut key),
            None => crate::codec::key::encode_entity_into(entity, &mut key),
        };
        done.ok().map(|()| key)
    };
    match schema {
        Some(schema) => {
            let keys: Vec<Vec<u8>> = entities
                .iter()
                .map(|e| key_of(e, None).unwrap_or_default())
                .collect();
            let rows = db.batched_multi_get_cf(cf, keys.iter(), false);
            for (e, row) in rows.into_iter().enumerate() {
                let Some(bytes) = row? else { continue };
                let row = RowRef::parse(&schema, &bytes).map_err(|source| {
                    super::StoreError::CorruptValue {
                        what: "a batch row".into(),
                        source,
                    }
                })?;
                for (i, &fid) in features.iter().enumerate() {
                    let Some(pos) = schema.position(fid) else {
                        continue;
                    };
                    let field = row
                        .get(pos)
                        .map_err(|source| super::StoreError::CorruptValue {
                            what: "a batch row".into(),
                            source,
                        })?;
                    let mut encoded = Vec::new();
                    if encode_field(field, &mut encoded) {
                        out[i * per + e] = Some(encoded);
                    }
                }
            }
        }
        None => {
            let keys: Vec<Vec<u8>> = features
                .iter()
                .flat_map(|&f| entities.iter().map(move |e| (e, f)))
                .map(|(e, f)| key_of(e, Some(f)).unwrap_or_default())
                .collect();
            let values = db.batched_multi_get_cf(cf, keys.iter(), false);
            for (slot, value) in out.iter_mut().zip(values) {
                *slot = value?.map(|v| v.to_vec());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::query::rank::{FeatureSelection, RankRequest};
    use crate::store::test_store::item_specs;
    use crate::store::{FeatureStore, StoreConfig};
    use crate::types::{FeatureStatus, Value};
    use featstore_format::codec::key::EntityKey;

    /// `a` (float32) and `label` (string) of `items`, read from RocksDB only; `n`
    /// items `e000000..` loaded, every third one without `label`.
    fn store_without_segment(dir: &std::path::Path, n: u64) -> FeatureStore {
        let config = StoreConfig {
            hot_segment_bytes: 0,
            ..StoreConfig::default()
        };
        let store = FeatureStore::open(dir.join("store"), config).expect("open");
        store
            .apply(item_specs(&[("a", "float32"), ("label", "string")]))
            .expect("apply");
        let mut text = String::from("entity_id,feature_name,event_time,value\n");
        for e in 0..n {
            text.push_str(&format!("e{e:06},a,{},{e}.5\n", 1000 + e));
            if e % 3 != 0 {
                text.push_str(&format!("e{e:06},label,2000,l{e}\n"));
            }
        }
        let path = dir.join("items.csv");
        std::fs::write(&path, text).expect("write");
        store
            .load(&crate::loader::LoadRequest::new("items", &path), &|_| {})
            .expect("load");
        store
    }

    fn rank(store: &FeatureStore, candidates: &[String]) -> crate::query::rank::RankResponse {
        store
            .rank(RankRequest {
                context: vec![],
                candidate_type: "item".into(),
                candidates: candidates.to_vec(),
                features: FeatureSelection::Names(vec!["a".into(), "label".into()]),
                deadline: None,
            })
            .expect("rank")
    }

    /// Rows are recorded a block of 32 at a time: candidates spanning several blocks,
    /// in any order, with absent entities and absent fields among them, answer what
    /// was loaded, row by row.
    #[test]
    fn rows_from_rocksdb_answer_every_candidate_of_every_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_without_segment(dir.path(), 100);
        let ids: Vec<u64> = (0..130).map(|i| (i * 37) % 140).collect();
        let candidates: Vec<String> = ids.iter().map(|e| format!("e{e:06}")).collect();
        let answer = rank(&store, &candidates);
        let (a, label) = (&answer.values[0], &answer.values[1]);
        for (row, &e) in ids.iter().enumerate() {
            if e >= 100 {
                assert_eq!(a.status(row), FeatureStatus::NotFound, "e{e}");
                assert_eq!(label.status(row), FeatureStatus::NotFound, "e{e}");
                continue;
            }
            assert_eq!(a.value(row), Some(Value::Float32(e as f32 + 0.5)), "e{e}");
            assert_eq!(a.event_time(row), Some(1000 + e as i64), "e{e}");
            if e % 3 == 0 {
                assert_eq!(label.status(row), FeatureStatus::NotFound, "e{e}");
            } else {
                assert_eq!(label.value(row), Some(Value::String(format!("l{e}"))));
                assert_eq!(label.event_time(row), Some(2000));
            }
        }
    }

    /// A damaged row that still parses (a field marked null but absent) is an error
    /// naming the feature, not a value; the other rows read as before.
    #[test]
    fn a_damaged_row_is_an_error_naming_the_feature() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_without_segment(dir.path(), 40);
        let view = store.view();
        let active = view.active("items").expect("active");
        let entity = EntityKey::new(b"e000035").expect("key");
        let key = [active.prefix.as_bytes(), entity.as_bytes()].concat();
        let mut row = view
            .db()
            .get_cf(&active.cf, &key)
            .expect("get")
            .expect("row");
        // Two distinct event times: the header, 16 bytes of times, then the presence
        // and null bitmaps of one byte each (storage-format.md, "Batch rows").
        let presence = 3 + 16;
        assert_eq!(row[presence], 0b11);
        row[presence] = 0;
        row[presence + 1] = 0b11;
        view.db().put_cf(&active.cf, &key, &row).expect("put");
        drop(view);

        let candidates: Vec<String> = (0..40).map(|e| format!("e{e:06}")).collect();
        let err = store
            .rank(RankRequest {
                context: vec![],
                candidate_type: "item".into(),
                candidates: candidates.clone(),
                features: FeatureSelection::Names(vec!["a".into(), "label".into()]),
                deadline: None,
            })
            .expect_err("damaged");
        assert!(
            err.to_string()
                .contains("corrupt value for feature `a@1`: invalid batch row"),
            "{err}"
        );
        let err = store
            .get_features("item", "e000035", &["label"])
            .expect_err("damaged");
        assert!(
            err.to_string()
                .contains("corrupt value for feature `label@1`"),
            "{err}"
        );
        let fine = rank(&store, &candidates[..35]);
        assert_eq!(fine.values[0].value(34), Some(Value::Float32(34.5)));
    }
}
