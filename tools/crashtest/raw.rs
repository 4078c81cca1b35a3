//! Checks of the data directory itself, between a kill and the next start, against the
//! layout storage-format.md documents: RocksDB is opened read-only and the manifest,
//! the `versions.{group}` column families and the `segments/` and `tmp/` directories are
//! compared with each other and with the inputs of the loads.
//!
//! * Every ready version the manifest names lives in its group's `versions.{group}`
//!   family, under the 8-byte big-endian version prefix, and holds exactly its input's
//!   cells (entity key, feature id, tag, event time, payload).
//! * A version's key range that the manifest does not name may survive only until the
//!   next open: one that was already unnamed before a server life whose open completed,
//!   and is still there after it, is a violation (so is a segment file in that case).
//! * After a life that opened the store and did nothing else, the directory is exactly
//!   the manifest: no unnamed ranges, no `loading` entries, no `tmp/`, only named
//!   segment files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{DB, Options};
use serde_json::Value as Json;

use crate::data::{Cell, Group, POOL, load_from_source, load_time};
use crate::model::GroupModel;

/// One key of a versions column family: entity id, feature id, value bytes.
pub type RawKey = (Vec<u8>, u32, Vec<u8>);

/// What one group's part of the directory holds.
#[derive(Debug, Clone, Default)]
pub struct RawGroup {
    /// The manifest's `next_version` (0 if the group has no entry).
    pub next_version: u64,
    /// Versions the manifest names: state and segment file.
    pub named: BTreeMap<u64, (String, Option<String>, Option<String>)>,
    /// Keys present in `versions.{group}`, by version prefix.
    pub present: BTreeMap<u64, Vec<RawKey>>,
    /// Keys too short to carry a version prefix and an entity key.
    pub malformed: usize,
    /// The load each named version's load record names.
    pub sources: BTreeMap<u64, u64>,
}

impl RawGroup {
    /// Whether `version` was allocated before this snapshot and is not a version the
    /// next open keeps: unnamed, or named `loading` (which open removes). Its keys and
    /// segment must be gone once such an open completed.
    fn unnamed_or_loading(&self, version: u64) -> bool {
        version < self.next_version
            && self
                .named
                .get(&version)
                .is_none_or(|(state, _, _)| state == "loading")
    }
}

/// A snapshot of the data directory.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per batch group.
    pub groups: BTreeMap<Group, RawGroup>,
    /// Files in `segments/`.
    pub segment_files: BTreeSet<String>,
    /// Whether `tmp/` exists.
    pub tmp_exists: bool,
    /// Column families of layout 1 (`batch.*`), which a new store never creates.
    pub layout1_families: Vec<String>,
}

/// Reads the directory (an empty snapshot if the store was never created).
pub fn inspect(data: &Path) -> Result<Snapshot> {
    let db_path = data.join("db");
    let mut snapshot = Snapshot {
        tmp_exists: data.join("tmp").exists(),
        ..Snapshot::default()
    };
    if let Ok(entries) = std::fs::read_dir(data.join("segments")) {
        for entry in entries.flatten() {
            snapshot
                .segment_files
                .insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    if !db_path.join("CURRENT").exists() {
        return Ok(snapshot);
    }
    let names = DB::list_cf(&Options::default(), &db_path).context("listing column families")?;
    let db = DB::open_cf_for_read_only(&Options::default(), &db_path, &names, false)
        .context("opening the database read-only")?;
    snapshot.layout1_families = names
        .iter()
        .filter(|n| n.starts_with("batch."))
        .cloned()
        .collect();
    let meta = db.cf_handle("meta").context("no meta column family")?;
    let manifest: Json = match db.get_cf(&meta, b"manifest")? {
        Some(bytes) => serde_json::from_slice(&bytes).context("manifest is not JSON")?,
        None => Json::Null,
    };
    for group in Group::ALL {
        let mut raw = RawGroup::default();
        if let Some(gm) = manifest.get("groups").and_then(|g| g.get(group.name())) {
            raw.next_version = gm.get("next_version").and_then(Json::as_u64).unwrap_or(0);
            for entry in gm
                .get("versions")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let Some(version) = entry.get("version").and_then(Json::as_u64) else {
                    continue;
                };
                let state = entry
                    .get("state")
                    .and_then(Json::as_str)
                    .unwrap_or("?")
                    .to_owned();
                let family = entry
                    .get("family")
                    .and_then(Json::as_str)
                    .map(str::to_owned);
                let segment = entry
                    .get("segment")
                    .and_then(|s| s.get("file"))
                    .and_then(Json::as_str)
                    .map(str::to_owned);
                raw.named.insert(version, (state, family, segment));
                let key = format!("load/{}/{version:020}", group.name());
                if let Some(record) = db.get_cf(&meta, key.as_bytes())?
                    && let Ok(record) = serde_json::from_slice::<Json>(&record)
                    && let Some((_, load)) = record
                        .get("source")
                        .and_then(Json::as_str)
                        .and_then(load_from_source)
                {
                    raw.sources.insert(version, load);
                }
            }
        }
        let family = format!("versions.{}", group.name());
        if let Some(cf) = db.cf_handle(&family) {
            let mut opts = rocksdb::ReadOptions::default();
            opts.set_total_order_seek(true);
            let mut iter = db.raw_iterator_cf_opt(&cf, opts);
            iter.seek_to_first();
            // Layout 3: a version's schema record comes first, then one row per entity,
            // expanded here into the values it holds.
            let mut schemas: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
                match split_row_key(key) {
                    Some((version, None)) => {
                        schemas.insert(version, value.to_vec());
                        raw.present.entry(version).or_default();
                    }
                    Some((version, Some(entity))) => {
                        match schemas
                            .get(&version)
                            .and_then(|schema| expand_row(schema, value))
                        {
                            Some(values) => {
                                raw.present.entry(version).or_default().extend(
                                    values
                                        .into_iter()
                                        .map(|(feature, bytes)| (entity.to_vec(), feature, bytes)),
                                );
                            }
                            None => raw.malformed += 1,
                        }
                    }
                    None => match split_key(key) {
                        Some((version, entity, feature)) => raw
                            .present
                            .entry(version)
                            .or_default()
                            .push((entity.to_vec(), feature, value.to_vec())),
                        None => raw.malformed += 1,
                    },
                }
                iter.next();
            }
            iter.status().context("scanning a versions column family")?;
        }
        snapshot.groups.insert(group, raw);
    }
    Ok(snapshot)
}

/// (version, entity id, feature id) of a key of a versions column family, decoded as
/// storage-format.md documents it (independently of the engine's codec).
#[expect(
    clippy::big_endian_bytes,
    reason = "keys are big-endian on disk (storage-format.md, \"Keys\")"
)]
fn split_key(key: &[u8]) -> Option<(u64, &[u8], u32)> {
    let (version, rest) = key.split_first_chunk::<8>()?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len == 0 || rest.len() != len + 4 {
        return None;
    }
    let (entity, feature) = rest.split_at(len);
    let feature: [u8; 4] = feature.try_into().ok()?;
    Some((
        u64::from_be_bytes(*version),
        entity,
        u32::from_be_bytes(feature),
    ))
}

/// (version, entity id) of a row key of a versions column family (batch layout 3),
/// `None` as the entity for the version's schema record (entity id length 0); `None`
/// for a key of another shape.
#[expect(
    clippy::big_endian_bytes,
    reason = "keys are big-endian on disk (storage-format.md, \"Keys\")"
)]
fn split_row_key(key: &[u8]) -> Option<(u64, Option<&[u8]>)> {
    let (version, rest) = key.split_first_chunk::<8>()?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() != len {
        return None;
    }
    Some((u64::from_be_bytes(*version), (len > 0).then_some(rest)))
}

/// The values of one batch row, each in the per-value encoding (tag, event time,
/// payload), decoded from the bytes as storage-format.md ("Batch rows") documents
/// them, independently of the engine's codec. `None` for bytes that break the format.
fn expand_row(schema: &[u8], row: &[u8]) -> Option<Vec<(u32, Vec<u8>)>> {
    let le32 = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    if *schema.first()? != 1 {
        return None;
    }
    let n = le32(schema, 1)? as usize;
    let mut fields = Vec::with_capacity(n);
    for i in 0..n {
        let at = 5 + 9 * i;
        fields.push((
            le32(schema, at)?,
            *schema.get(at + 4)?,
            le32(schema, at + 5)?,
        ));
    }
    if *row.first()? != 1 {
        return None;
    }
    let t = usize::from(u16::from_le_bytes(row.get(1..3)?.try_into().ok()?));
    let times: Vec<i64> = (0..t)
        .map(|k| {
            Some(i64::from_le_bytes(
                row.get(3 + 8 * k..11 + 8 * k)?.try_into().ok()?,
            ))
        })
        .collect::<Option<_>>()?;
    let bitmap = n.div_ceil(8);
    let presence = 3 + 8 * t;
    let nulls = presence + bitmap;
    let indexes = nulls + bitmap;
    let width = match t {
        0 | 1 => 0,
        2..=256 => 1,
        _ => 2,
    };
    let values = indexes + n * width;
    let slot_width = |tag: u8| match tag {
        1 | 2 => 8,
        3 => 4,
        4 => 1,
        _ => 8,
    };
    let tail = values + fields.iter().map(|f| slot_width(f.1)).sum::<usize>();
    let tail_bytes = row.get(tail..)?;
    let mut out = Vec::new();
    let mut slot = values;
    for (i, &(feature, tag, _dim)) in fields.iter().enumerate() {
        let bit = 1u8 << (i % 8);
        let here = slot;
        slot += slot_width(tag);
        if row.get(presence + i / 8)? & bit == 0 {
            continue;
        }
        let index = match width {
            0 => 0,
            1 => usize::from(*row.get(indexes + i)?),
            _ => usize::from(u16::from_le_bytes(
                row.get(indexes + 2 * i..indexes + 2 * i + 2)?
                    .try_into()
                    .ok()?,
            )),
        };
        let time = *times.get(index)?;
        let (tag, payload) = if row.get(nulls + i / 8)? & bit != 0 {
            (0, Vec::new())
        } else {
            match tag {
                5..=7 => {
                    let offset = le32(row, here)? as usize;
                    let len = le32(row, here + 4)? as usize;
                    (
                        tag,
                        tail_bytes.get(offset..offset.checked_add(len)?)?.to_vec(),
                    )
                }
                _ => (tag, row.get(here..here + slot_width(tag))?.to_vec()),
            }
        };
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&time.to_le_bytes());
        bytes.extend_from_slice(&payload);
        out.push((feature, bytes));
    }
    Some(out)
}

/// The stored encoding of a value (storage-format.md, "Values").
fn encode(cell: &Cell, time: i64) -> Vec<u8> {
    let (tag, payload): (u8, Vec<u8>) = match cell {
        Cell::Null => (0, Vec::new()),
        Cell::Int(n) => (1, n.to_le_bytes().to_vec()),
        Cell::Float(x) => (2, x.to_le_bytes().to_vec()),
        Cell::Str(s) => (5, s.as_bytes().to_vec()),
        Cell::Vec2(v) => (7, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let mut out = vec![tag];
    out.extend_from_slice(&time.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// How the server life between the previous snapshot and this one went.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastLife {
    /// Its open completed (it printed its address).
    pub listened: bool,
    /// It was killed right after opening, having done nothing.
    pub idle: bool,
    /// A fault was injected in it.
    pub faulted: bool,
}

/// Checks `now` (taken after a kill) given the snapshot taken before that life
/// started. Returns the violations found.
pub fn verify(
    now: &Snapshot,
    before: Option<&Snapshot>,
    last: LastLife,
    feature_ids: &BTreeMap<u32, (Group, usize)>,
    groups: &BTreeMap<Group, GroupModel>,
) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    if !now.layout1_families.is_empty() {
        found.push((
            "state",
            format!(
                "layout-1 column families in a new store: {:?}",
                now.layout1_families
            ),
        ));
    }
    let mut named_segments = BTreeSet::new();
    for (group, raw) in &now.groups {
        let name = group.name();
        let family = format!("versions.{name}");
        if raw.malformed > 0 {
            found.push((
                "partial",
                format!(
                    "{family}: {} keys without a version prefix and entity key",
                    raw.malformed
                ),
            ));
        }
        let prior = before.and_then(|b| b.groups.get(group));
        for (version, (state, fam, segment)) in &raw.named {
            if let Some(file) = segment {
                named_segments.insert(file.clone());
            }
            if state == "loading" {
                if last.idle {
                    found.push((
                        "orphan",
                        format!("{name} v{version} is still `loading` after an open"),
                    ));
                }
                continue;
            }
            if fam.as_deref() != Some(family.as_str()) {
                found.push((
                    "state",
                    format!("{name} v{version} is not in {family} (family {fam:?})"),
                ));
                continue;
            }
            // The load the version holds: its load record, else what the model learned.
            let load = raw
                .sources
                .get(version)
                .copied()
                .or_else(|| groups.get(group)?.load_of.get(version).copied());
            let input = load.and_then(|l| groups.get(group)?.inputs.get(&l));
            let Some(input) = input else {
                found.push((
                    "phantom",
                    format!(
                        "{name} v{version} is ready, but holds no load the test sent ({load:?})"
                    ),
                ));
                continue;
            };
            let keys = raw.present.get(version).map_or(&[][..], Vec::as_slice);
            if let Some(problem) = whole(*group, input, keys, feature_ids) {
                found.push((
                    "partial",
                    format!("{name} v{version} (load {}): {problem}", input.load),
                ));
            }
            if let Some(file) = segment
                && !last.faulted
                && !now.segment_files.contains(file)
            {
                found.push((
                    "partial",
                    format!(
                        "{name} v{version}: the manifest names segment {file}, which is missing"
                    ),
                ));
            }
        }
        for version in raw.present.keys() {
            if raw.named.contains_key(version) {
                continue;
            }
            if last.idle {
                found.push((
                    "orphan",
                    format!("{name} v{version}: keys of an unnamed version remain after an open"),
                ));
            } else if last.listened
                && let Some(prior) = prior
                && prior.unnamed_or_loading(*version)
                && prior.present.contains_key(version)
            {
                found.push((
                    "orphan",
                    format!(
                        "{name} v{version}: keys of a version the manifest no longer named survived an open"
                    ),
                ));
            }
        }
    }
    if last.idle && now.tmp_exists {
        found.push(("orphan", "tmp/ survived an open".to_owned()));
    }
    for file in &now.segment_files {
        if named_segments.contains(file) {
            continue;
        }
        let stray = || format!("segment file {file} is not named by the manifest");
        if last.idle {
            found.push(("orphan", format!("{} after an open", stray())));
            continue;
        }
        if !last.listened {
            continue;
        }
        // batch.{group}.v{version}.seg: a file of a version that was already unnamed
        // before the life (and not new in it) must be gone after its open.
        let parsed = file
            .strip_prefix("batch.")
            .and_then(|f| f.strip_suffix(".seg"))
            .and_then(|f| f.rsplit_once(".v"))
            .and_then(|(g, v)| Some((Group::by_name(g)?, v.parse::<u64>().ok()?)));
        if let Some((group, version)) = parsed
            && let Some(prior) = before.and_then(|b| b.groups.get(&group))
            && prior.unnamed_or_loading(version)
            && before.is_some_and(|b| b.segment_files.contains(file))
        {
            found.push(("orphan", format!("{} and survived an open", stray())));
        }
    }
    found
}

/// Whether a version's keys are exactly its input's cells; a description if not.
fn whole(
    group: Group,
    input: &crate::data::LoadInput,
    keys: &[RawKey],
    feature_ids: &BTreeMap<u32, (Group, usize)>,
) -> Option<String> {
    let mut seen: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (entity, feature, value) in keys {
        let Some(&(g, f)) = feature_ids.get(feature) else {
            return Some(format!("a key of unknown feature id {feature}"));
        };
        if g != group {
            return Some(format!("a key of feature id {feature} of another group"));
        }
        let Some(e) = std::str::from_utf8(entity)
            .ok()
            .and_then(|s| s.strip_prefix('e'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|e| *e < POOL)
        else {
            return Some(format!(
                "a key of unknown entity {:?}",
                String::from_utf8_lossy(entity)
            ));
        };
        let Some(expected) = input.expected(e, f) else {
            return Some(format!("e{e} is stored but not in the input"));
        };
        if *value != encode(&expected, load_time(input.load)) {
            return Some(format!(
                "e{e} feature {f}: stored {value:02x?}, expected {expected:?}"
            ));
        }
        seen.insert((e, f));
    }
    let wanted = input.stored_values() as usize;
    if seen.len() != wanted || keys.len() != wanted {
        return Some(format!(
            "{} keys ({} distinct) stored, the input has {wanted} values",
            keys.len(),
            seen.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::LoadInput;
    use rand::SeedableRng;

    #[test]
    fn a_version_is_whole_only_with_every_cell_exactly() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let input = LoadInput::generate(Group::B1, 4, &mut rng);
        let ids: BTreeMap<u32, (Group, usize)> =
            BTreeMap::from([(7, (Group::B1, 0)), (8, (Group::B1, 1))]);
        let mut keys: Vec<RawKey> = Vec::new();
        for e in input.entities.iter() {
            for (f, id) in [(0, 7u32), (1, 8u32)] {
                let cell = input.expected(e, f).expect("in the input");
                keys.push((
                    format!("e{e}").into_bytes(),
                    id,
                    encode(&cell, load_time(4)),
                ));
            }
        }
        assert_eq!(whole(Group::B1, &input, &keys, &ids), None);
        let mut missing = keys.clone();
        missing.pop();
        assert!(whole(Group::B1, &input, &missing, &ids).is_some());
        let mut wrong = keys.clone();
        wrong[0].2 = encode(&Cell::Int(-1), load_time(4));
        assert!(whole(Group::B1, &input, &wrong, &ids).is_some());
        let mut foreign = keys;
        foreign.push((b"e999".to_vec(), 7, encode(&Cell::Null, 0)));
        assert!(whole(Group::B1, &input, &foreign, &ids).is_some());
    }

    #[test]
    fn keys_split_as_documented() {
        // storage-format.md: version 3, entity `u7`, feature 5.
        let key = [0, 0, 0, 0, 0, 0, 0, 3, 0, 2, 0x75, 0x37, 0, 0, 0, 5];
        assert_eq!(split_key(&key), Some((3, &b"u7"[..], 5)));
        assert_eq!(split_key(&key[..12]), None);
    }
}
