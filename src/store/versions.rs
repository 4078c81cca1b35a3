//! Batch version management: the writers' copy of the manifest and of what it names
//! (mapped hot segments, layout-2 key ranges), and every change to them: recovery at
//! open, allocation and completion of a load's version, activation, rollback, drops.
//!
//! Owns [`VersionSet`]. The store holds one under its admin lock; each method stages
//! the next manifest, persists it (synced, in the `meta` column family) and only then
//! makes it the set's own, so a failed write changes nothing. Publishing a read view of
//! the result is the caller's job (the facade does it right after, under the same
//! lock), because a view also carries the registry and the streamed-feature sets.
//!
//! Invariants:
//! * Every version the manifest names as `ready` has its data ingested; a `loading`
//!   version is never active and is removed by [`VersionSet::open`] after a crash.
//! * The active version of a group is `ready`, and is never dropped.
//! * A dropped version's keys and segment file go only after the manifest without it is
//!   durable (a crash in between leaves orphans that the next open deletes), and a
//!   reader holding an older view keeps reading the dropped version whole (its
//!   [`VersionRange`] and segment mapping live until the last view lets go).
//! * A segment file that does not open (corrupt, missing, another format) is never
//!   mapped; its version is served from RocksDB with identical answers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::DB;

use super::StoreError;
use super::keyspace::{self, FamilyRole, batch_cf_name, versions_cf_name};
use super::manifest::{GroupManifest, Manifest, VersionEntry, VersionState};
use super::meta;
use super::segments::{HotSegment, SegmentInfo};
use super::version_range::VersionRange;
use super::version_range::read_row_schema;
use crate::codec::key::{VersionPrefix, version_of_key};
use crate::loader::LoadRecord;
use crate::types::now_ms;
use featstore_format::codec::row::RowSchema;

/// A version allocated for a load, before its data exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    /// The new version number.
    pub version: u64,
    /// Its name (`batch.{group}.v{version}`): manifest entry, segment file, view maps.
    pub name: String,
    /// The group's versions column family, which receives the data.
    pub family: String,
    /// The key prefix of every key of the version in `family`.
    pub prefix: VersionPrefix,
}

/// A built and mapped hot segment, ready to attach to its version.
pub type BuiltSegment = (SegmentInfo, Arc<HotSegment>);

/// The writers' view of the batch versions; see the module docs.
pub struct VersionSet {
    db: Arc<DB>,
    segments_dir: PathBuf,
    manifest: Manifest,
    /// Mapped hot segments, by version name.
    segments: HashMap<String, Arc<HotSegment>>,
    /// Key ranges of the layout-2 versions the manifest names, by version name.
    ranges: HashMap<String, Arc<VersionRange>>,
}

impl std::fmt::Debug for VersionSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionSet")
            .field("groups", &self.manifest.groups.len())
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl VersionSet {
    /// Reads the manifest of the store in `dir` and recovers from a crash: versions
    /// left `loading` and legacy column families the manifest does not name are
    /// dropped, key ranges of unnamed versions deleted, segment files the manifest no
    /// longer names removed, and the active versions' segments mapped. `cf_names` are
    /// the column families the database holds.
    pub fn open(db: Arc<DB>, dir: &Path, cf_names: &[String]) -> Result<Self, StoreError> {
        let mut manifest = meta::read_manifest(&db)?;
        if Self::recover(&db, cf_names, &mut manifest)? {
            meta::write_manifest(&db, &manifest, None)?;
        }
        Self::delete_orphan_ranges(&db, cf_names, &manifest)?;
        let mut ranges = HashMap::new();
        for entry in manifest.groups.values().flat_map(|g| g.versions.iter()) {
            let Some(family) = entry.family.as_ref() else {
                continue;
            };
            let prefix = VersionPrefix::of(entry.version);
            let schema = if entry.rows && entry.state == VersionState::Ready {
                Some(require_row_schema(&db, family, prefix)?)
            } else {
                None
            };
            ranges.insert(
                entry.cf_name.clone(),
                VersionRange::new(db.clone(), family, prefix, schema),
            );
        }
        let segments_dir = keyspace::segments_dir(dir);
        let segments = Self::map_active_segments(&segments_dir, &manifest);
        Ok(VersionSet {
            db,
            segments_dir,
            manifest,
            segments,
            ranges,
        })
    }

    /// The manifest as last persisted.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Mapped hot segments, by version name.
    pub fn segments(&self) -> &HashMap<String, Arc<HotSegment>> {
        &self.segments
    }

    /// Key ranges of the layout-2 versions, by version name.
    pub fn ranges(&self) -> &HashMap<String, Arc<VersionRange>> {
        &self.ranges
    }

    /// The manifest of `group`, if it ever had a version.
    pub fn group(&self, group: &str) -> Option<&GroupManifest> {
        self.manifest.groups.get(group)
    }

    /// The manifest of `group`, or [`StoreError::UnknownGroup`].
    pub fn require_group(&self, group: &str) -> Result<&GroupManifest, StoreError> {
        self.group(group)
            .ok_or_else(|| StoreError::UnknownGroup(group.to_owned()))
    }

    /// Bytes of the mapped hot segments.
    pub fn mapped_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.mapped_bytes()).sum()
    }

    /// Batch versions the manifest names, over all groups.
    pub fn version_count(&self) -> u64 {
        self.manifest
            .groups
            .values()
            .map(|g| g.versions.len() as u64)
            .sum()
    }

    /// Active versions whose segment exists in the manifest but is not mapped (it did
    /// not open): these are rebuilt from their data.
    pub fn unmapped_active(&self) -> Vec<(String, u64)> {
        self.manifest
            .groups
            .iter()
            .filter_map(|(group, gm)| {
                let entry = gm.entry(gm.active?)?;
                entry.segment.as_ref()?;
                let missing = !self.segments.contains_key(&entry.cf_name);
                missing.then(|| (group.clone(), entry.version))
            })
            .collect()
    }

    /// Where `version` of `group` keeps its data: its column family and key prefix.
    pub fn location(
        &self,
        group: &str,
        version: u64,
    ) -> Result<(String, VersionPrefix), StoreError> {
        let entry = self
            .group(group)
            .and_then(|gm| gm.entry(version))
            .ok_or_else(|| StoreError::UnknownVersion {
                group: group.to_owned(),
                version,
            })?;
        let (family, prefix) = entry.location();
        Ok((family.to_owned(), prefix))
    }

    /// Persists `next` (with an optional load record) and makes it the set's manifest.
    /// Nothing changes if the write fails.
    fn commit(&mut self, next: Manifest, record: Option<&LoadRecord>) -> Result<(), StoreError> {
        meta::write_manifest(&self.db, &next, record)?;
        self.manifest = next;
        Ok(())
    }

    /// Allocates the next version of `group` for a load and persists it as `loading`,
    /// creating the group's versions column family (with `family_options`) on its
    /// first load.
    pub fn allocate(
        &mut self,
        group: &str,
        family_options: &rocksdb::Options,
    ) -> Result<Allocated, StoreError> {
        let mut next = self.manifest.clone();
        let gm = next.groups.entry(group.to_owned()).or_default();
        let version = gm.next_version.max(1);
        gm.next_version = version + 1;
        let name = batch_cf_name(group, version);
        let family = versions_cf_name(group);
        if self.db.cf_handle(&family).is_none() {
            self.db.create_cf(&family, family_options)?;
        }
        gm.versions.push(VersionEntry {
            version,
            cf_name: name.clone(),
            family: Some(family.clone()),
            rows: true,
            state: VersionState::Loading,
            created_at_ms: now_ms(),
            segment: None,
        });
        self.commit(next, None)?;
        Ok(Allocated {
            version,
            name,
            family,
            prefix: VersionPrefix::of(version),
        })
    }

    /// Marks a loaded version `ready` with its segment and load record, activating it
    /// when `activate`. The data must be ingested.
    pub fn complete(
        &mut self,
        group: &str,
        allocated: &Allocated,
        segment: Option<BuiltSegment>,
        record: &LoadRecord,
        activate: bool,
    ) -> Result<(), StoreError> {
        let mut next = self.manifest.clone();
        let gm = next.groups.entry(group.to_owned()).or_default();
        if let Some(entry) = gm
            .versions
            .iter_mut()
            .find(|v| v.version == allocated.version)
        {
            entry.state = VersionState::Ready;
            entry.segment = segment.as_ref().map(|(info, _)| info.clone());
        }
        if activate {
            gm.activate(allocated.version);
        }
        self.commit(next, Some(record))?;
        if let Some((_, mapped)) = segment {
            self.segments.insert(allocated.name.clone(), mapped);
        }
        let schema = require_row_schema(&self.db, &allocated.family, allocated.prefix)?;
        self.ranges.insert(
            allocated.name.clone(),
            VersionRange::new(
                self.db.clone(),
                &allocated.family,
                allocated.prefix,
                Some(schema),
            ),
        );
        Ok(())
    }

    /// Removes a failed load's version from the manifest and deletes its keys and
    /// segment file. Failures are logged: what is left is deleted at the next open.
    pub fn abandon(&mut self, group: &str, allocated: &Allocated) {
        let segment = self
            .segments_dir
            .join(keyspace::segment_file_name(&allocated.name));
        if segment.exists() {
            let _ = std::fs::remove_file(&segment);
        }
        let mut next = self.manifest.clone();
        if let Some(gm) = next.groups.get_mut(group) {
            gm.remove(allocated.version);
        }
        let version = allocated.version;
        if let Err(e) = self.commit(next, None) {
            tracing::error!(group, version, error = %e, "could not remove failed version; it is dropped at next open");
            return;
        }
        self.ranges.remove(&allocated.name);
        if let Err(e) = meta::delete_stats(&self.db, group, version) {
            tracing::warn!(group, version, error = %e, "could not delete statistics of failed load");
        }
        if let Err(e) = VersionRange::delete_now(&self.db, &allocated.family, allocated.prefix) {
            tracing::error!(group, version, error = %e, "could not delete keys of failed load; they are deleted at next open");
        }
    }

    /// Makes `version` of `group` active. Returns true when its segment file is
    /// unusable and must be rebuilt (the version is then served from RocksDB).
    pub fn activate(&mut self, group: &str, version: u64) -> Result<bool, StoreError> {
        let entry = self.require_group(group)?.entry(version).ok_or_else(|| {
            StoreError::UnknownVersion {
                group: group.to_owned(),
                version,
            }
        })?;
        if entry.state != VersionState::Ready {
            return Err(StoreError::VersionNotReady {
                group: group.to_owned(),
                version,
            });
        }
        let entry = entry.clone();
        let rebuild = self.ensure_segment(&entry);
        let mut next = self.manifest.clone();
        if let Some(gm) = next.groups.get_mut(group) {
            gm.activate(version);
        }
        self.commit(next, None)?;
        Ok(rebuild)
    }

    /// Re-activates the version active before the current one. Returns it, and whether
    /// its segment must be rebuilt (as [`activate`](Self::activate)).
    pub fn rollback(&mut self, group: &str) -> Result<(u64, bool), StoreError> {
        let mut next = self.manifest.clone();
        let gm = next
            .groups
            .get_mut(group)
            .ok_or_else(|| StoreError::UnknownGroup(group.to_owned()))?;
        let target = gm
            .rollback()
            .ok_or_else(|| StoreError::NoPreviousVersion(group.to_owned()))?;
        let rebuild = match gm.entry(target).cloned() {
            Some(entry) => self.ensure_segment(&entry),
            None => false,
        };
        self.commit(next, None)?;
        Ok((target, rebuild))
    }

    /// Drops all but the newest `keep` versions of `group` (never the active one).
    /// Returns the versions dropped; a group without versions drops nothing.
    pub fn drop_old(&mut self, group: &str, keep: usize) -> Result<Vec<u64>, StoreError> {
        let Some(gm) = self.manifest.groups.get(group) else {
            return Ok(Vec::new());
        };
        let doomed = gm.versions_to_drop(keep);
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let doomed_entries: Vec<VersionEntry> = doomed
            .iter()
            .filter_map(|v| gm.entry(*v).cloned())
            .collect();
        let mut next = self.manifest.clone();
        if let Some(gm) = next.groups.get_mut(group) {
            for v in &doomed {
                gm.remove(*v);
            }
        }
        // Manifest first: a crash before the drops leaves orphans that open() drops.
        self.commit(next, None)?;
        for entry in doomed_entries {
            // Readers still holding an older view keep the mapping (and the column
            // family handle) alive; unlinking a mapped file is safe.
            self.segments.remove(&entry.cf_name);
            if let Some(info) = &entry.segment {
                let path = self.segments_dir.join(&info.file);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not delete segment");
                }
            }
            match self.ranges.remove(&entry.cf_name) {
                // Deleted now, or when the last view reading it is released.
                Some(range) => range.doom(),
                None if entry.family.is_none() => self.db.drop_cf(&entry.cf_name)?,
                None => {}
            }
        }
        Ok(doomed)
    }

    /// Attaches a rebuilt segment to `version` of `group` and persists that. Returns
    /// false when the version was dropped meanwhile (nothing to attach it to).
    pub fn attach_segment(
        &mut self,
        group: &str,
        version: u64,
        built: Option<BuiltSegment>,
    ) -> Result<bool, StoreError> {
        self.set_segment(group, version, built, true)
    }

    /// Names `built` as the segment of `version` of `group` in the manifest (persisted
    /// first), then maps it when `map`. False when the version was dropped meanwhile.
    fn set_segment(
        &mut self,
        group: &str,
        version: u64,
        built: Option<BuiltSegment>,
        map: bool,
    ) -> Result<bool, StoreError> {
        let mut next = self.manifest.clone();
        let Some(entry) = next
            .groups
            .get_mut(group)
            .and_then(|gm| gm.versions.iter_mut().find(|e| e.version == version))
        else {
            return Ok(false);
        };
        let name = entry.cf_name.clone();
        entry.segment = built.as_ref().map(|(info, _)| info.clone());
        self.commit(next, None)?;
        if let Some((_, segment)) = built
            && map
        {
            self.segments.insert(name, segment);
        }
        Ok(true)
    }

    /// Removes the hot segment of `version` of `group` from the manifest (persisted
    /// first), unmaps it from the set and unlinks its file, so that no named or new
    /// mapping holds what the file holds (a per-entity deletion, `super::erase`);
    /// readers still holding an older view keep their mapping until they finish.
    /// Returns false when the version has no segment.
    pub fn detach_segment(&mut self, group: &str, version: u64) -> Result<bool, StoreError> {
        let mut next = self.manifest.clone();
        let Some(entry) = next
            .groups
            .get_mut(group)
            .and_then(|gm| gm.versions.iter_mut().find(|e| e.version == version))
        else {
            return Ok(false);
        };
        let Some(info) = entry.segment.take() else {
            return Ok(false);
        };
        let name = entry.cf_name.clone();
        self.commit(next, None)?;
        self.segments.remove(&name);
        let path = self.segments_dir.join(&info.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    context: format!("delete {}", path.display()),
                    source,
                });
            }
        }
        Ok(true)
    }

    /// Attaches a segment rebuilt after [`detach_segment`](Self::detach_segment),
    /// mapping it only when the version is active (a kept version maps its segment
    /// when activated). Returns false when the version was dropped meanwhile; the
    /// caller then deletes the file.
    pub fn reattach_segment(
        &mut self,
        group: &str,
        version: u64,
        built: Option<BuiltSegment>,
    ) -> Result<bool, StoreError> {
        let active = self.group(group).and_then(|gm| gm.active) == Some(version);
        self.set_segment(group, version, built, active)
    }

    /// Maps the segment of `entry`, about to be activated, if it has one and it is not
    /// mapped yet. Returns true when the file is unusable (corrupt, missing, another
    /// format): the version then activates without it, and the caller rebuilds it once
    /// the activation is committed. A corrupt segment is never mapped.
    fn ensure_segment(&mut self, entry: &VersionEntry) -> bool {
        let Some(info) = &entry.segment else {
            return false;
        };
        if self.segments.contains_key(&entry.cf_name) {
            return false;
        }
        match HotSegment::open(&self.segments_dir.join(&info.file)) {
            Ok(segment) => {
                self.segments
                    .insert(entry.cf_name.clone(), Arc::new(segment));
                false
            }
            Err(e) => {
                tracing::error!(
                    cf = entry.cf_name.as_str(),
                    error = %e,
                    "hot segment unusable; activating the version from RocksDB and rebuilding the segment"
                );
                true
            }
        }
    }

    /// Drops what an interrupted load left behind. Returns whether the manifest changed.
    fn recover(db: &DB, cf_names: &[String], manifest: &mut Manifest) -> Result<bool, StoreError> {
        let mut changed = false;
        for (group, gm) in manifest.groups.iter_mut() {
            let stale: Vec<u64> = gm
                .versions
                .iter()
                .filter(|v| v.state == VersionState::Loading)
                .map(|v| v.version)
                .collect();
            for version in stale {
                tracing::warn!(
                    group,
                    version,
                    "removing version left loading by an interrupted load"
                );
                gm.remove(version);
                changed = true;
            }
        }
        for name in cf_names
            .iter()
            .filter(|n| keyspace::family_role(n) == FamilyRole::LegacyBatch)
        {
            let known = manifest
                .groups
                .values()
                .flat_map(|g| g.versions.iter())
                .any(|v| &v.cf_name == name);
            if !known {
                tracing::warn!(
                    cf = name.as_str(),
                    "dropping column family not named by the manifest"
                );
                db.drop_cf(name)?;
            }
        }
        Ok(changed)
    }

    /// Deletes the key ranges of versions that a versions column family holds but the
    /// manifest does not name (a load or a drop interrupted by a crash). Finds them with
    /// one seek per version present, never a scan.
    fn delete_orphan_ranges(
        db: &DB,
        cf_names: &[String],
        manifest: &Manifest,
    ) -> Result<(), StoreError> {
        for family in cf_names
            .iter()
            .filter(|n| matches!(keyspace::family_role(n), FamilyRole::Versions(_)))
        {
            let Some(cf) = db.cf_handle(family) else {
                continue;
            };
            let named: HashSet<u64> = manifest
                .groups
                .values()
                .flat_map(|g| g.versions.iter())
                .filter(|v| v.family.as_deref() == Some(family.as_str()))
                .map(|v| v.version)
                .collect();
            let mut orphans = Vec::new();
            {
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_total_order_seek(true);
                let mut iter = db.raw_iterator_cf_opt(&cf, opts);
                iter.seek_to_first();
                while let Some(version) = iter.key().and_then(version_of_key) {
                    if !named.contains(&version) {
                        orphans.push(version);
                    }
                    match VersionPrefix::of(version).upper_bound() {
                        Some(next) => iter.seek(next),
                        None => break,
                    }
                }
                iter.status()?;
            }
            for version in orphans {
                tracing::warn!(
                    family = family.as_str(),
                    version,
                    "deleting keys of a version the manifest does not name"
                );
                VersionRange::delete_now(db, family, VersionPrefix::of(version))?;
            }
        }
        Ok(())
    }

    /// Maps the segments of active versions, and deletes segment files the manifest no
    /// longer names. A corrupt segment is left out (reads of that version go to
    /// RocksDB, with identical results) and logged.
    fn map_active_segments(
        seg_dir: &Path,
        manifest: &Manifest,
    ) -> HashMap<String, Arc<HotSegment>> {
        let named: HashSet<&str> = manifest
            .groups
            .values()
            .flat_map(|g| g.versions.iter())
            .filter_map(|v| v.segment.as_ref().map(|s| s.file.as_str()))
            .collect();
        if let Ok(entries) = std::fs::read_dir(seg_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !named.contains(name.as_str()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut mapped = HashMap::new();
        for gm in manifest.groups.values() {
            let Some(entry) = gm.active.and_then(|v| gm.entry(v)) else {
                continue;
            };
            let Some(info) = &entry.segment else { continue };
            match HotSegment::open(&seg_dir.join(&info.file)) {
                Ok(segment) => {
                    mapped.insert(entry.cf_name.clone(), Arc::new(segment));
                }
                Err(e) => {
                    tracing::error!(error = %e, "hot segment unusable; serving that version from RocksDB")
                }
            }
        }
        mapped
    }
}

/// The row schema of the layout-3 version under `prefix` in `family`: a missing record
/// is a corrupt store, reported as such.
fn require_row_schema(
    db: &DB,
    family: &str,
    prefix: VersionPrefix,
) -> Result<Arc<RowSchema>, StoreError> {
    let missing = |reason: &str| StoreError::CorruptMeta {
        key: format!(
            "{family}: schema record of version {}",
            version_of_key(prefix.as_bytes()).unwrap_or_default()
        ),
        reason: reason.to_owned(),
    };
    let cf = db
        .cf_handle(family)
        .ok_or_else(|| missing("the column family is missing"))?;
    read_row_schema(db, &cf, prefix)?
        .map(Arc::new)
        .ok_or_else(|| missing("missing"))
}
