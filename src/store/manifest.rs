//! The manifest: which batch versions exist for each group and which one is active.
//!
//! It is one JSON document under the `manifest` key of the `meta` column family,
//! rewritten whole (synced) on every change, so a change is atomic: after a crash the
//! engine sees either the old manifest or the new one. Versions are never mutated once
//! ready; a reload always allocates a new version number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::key::VersionPrefix;
use crate::types::TimestampMs;

/// Version of the manifest document's shape (see storage-format.md). 2 added
/// [`VersionEntry::family`] (batch layout 2: one column family per group); 3 added
/// [`VersionEntry::rows`] (batch layout 3: one row per entity), which an older build
/// would misread, so it refuses a format-3 manifest.
pub const MANIFEST_FORMAT_VERSION: u32 = 3;
/// Oldest manifest shape this build reads: version 1 entries have no `family` and keep
/// their data in a column family of their own (batch layout 1).
pub const MANIFEST_OLDEST_READABLE: u32 = 1;

/// Lifecycle of one batch version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Allocated; SST files being built or ingested. Never readable. A version found in
    /// this state at open belongs to a load that crashed and is removed.
    Loading,
    /// Fully ingested and readable; may be activated.
    Ready,
}

/// One batch version of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// Version number, unique and increasing within the group.
    pub version: u64,
    /// The version's name, `batch.{group}.v{version}`: the name of its hot segment file,
    /// and, when `family` is absent (layout 1), the column family holding its data.
    pub cf_name: String,
    /// The group's versions column family holding the data (layout 2), under the key
    /// prefix [`VersionPrefix::of`]`(version)`. Absent in entries written by layout 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The version's keys are batch rows (layout 3: one key per entity, under the
    /// version's schema record); absent or false: one key per value (layouts 1 and 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rows: bool,
    /// Lifecycle state.
    pub state: VersionState,
    /// When the version was allocated.
    pub created_at_ms: TimestampMs,
    /// The version's hot segment, if one was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<super::segments::SegmentInfo>,
}

impl VersionEntry {
    /// Where the version's data lives: the column family and the key prefix of every
    /// key of the version inside it.
    pub fn location(&self) -> (&str, VersionPrefix) {
        match &self.family {
            Some(family) => (family, VersionPrefix::of(self.version)),
            None => (&self.cf_name, VersionPrefix::none()),
        }
    }
}

/// Versions of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupManifest {
    /// Next version number to allocate.
    pub next_version: u64,
    /// The version served, if any.
    pub active: Option<u64>,
    /// Versions activated before the current one, oldest first; rollback pops from it.
    pub previous: Vec<u64>,
    /// Versions that exist (loading or ready), ascending.
    pub versions: Vec<VersionEntry>,
}

impl GroupManifest {
    /// The entry of `version`, if it exists.
    pub fn entry(&self, version: u64) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.version == version)
    }

    fn is_ready(&self, version: u64) -> bool {
        self.entry(version)
            .is_some_and(|e| e.state == VersionState::Ready)
    }

    /// Makes `version` active, remembering the current one for rollback.
    pub fn activate(&mut self, version: u64) {
        if self.active == Some(version) {
            return;
        }
        if let Some(current) = self.active.take() {
            self.previous.retain(|v| *v != current && *v != version);
            self.previous.push(current);
        }
        self.previous.retain(|v| *v != version);
        self.active = Some(version);
    }

    /// The version a rollback would activate: the most recent previously active version
    /// that still exists.
    pub fn rollback_target(&self) -> Option<u64> {
        self.previous
            .iter()
            .rev()
            .copied()
            .find(|v| self.is_ready(*v))
    }

    /// Activates the rollback target without remembering the current version (a rolled
    /// back version is not a rollback target itself). Returns the new active version.
    pub fn rollback(&mut self) -> Option<u64> {
        let target = self.rollback_target()?;
        while let Some(v) = self.previous.pop() {
            if v == target {
                break;
            }
        }
        self.active = Some(target);
        Some(target)
    }

    /// Ready versions beyond the newest `keep`, never the active one: the ones to drop.
    pub fn versions_to_drop(&self, keep: usize) -> Vec<u64> {
        let mut ready: Vec<u64> = self
            .versions
            .iter()
            .filter(|v| v.state == VersionState::Ready)
            .map(|v| v.version)
            .collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        ready
            .into_iter()
            .skip(keep)
            .filter(|v| Some(*v) != self.active)
            .collect()
    }

    /// Forgets `version` (after its column family is dropped).
    pub fn remove(&mut self, version: u64) {
        self.versions.retain(|v| v.version != version);
        self.previous.retain(|v| *v != version);
        if self.active == Some(version) {
            self.active = None;
        }
    }
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Per group, by name.
    pub groups: BTreeMap<String, GroupManifest>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            groups: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_with(versions: &[u64]) -> GroupManifest {
        GroupManifest {
            next_version: versions.iter().max().map_or(1, |v| v + 1),
            active: None,
            previous: vec![],
            versions: versions
                .iter()
                .map(|v| VersionEntry {
                    version: *v,
                    cf_name: format!("batch.g.v{v}"),
                    family: Some("versions.g".into()),
                    rows: true,
                    state: VersionState::Ready,
                    created_at_ms: 0,
                    segment: None,
                })
                .collect(),
        }
    }

    #[test]
    fn rollback_returns_to_the_previous_active_version() {
        let mut g = group_with(&[1, 2, 3]);
        g.activate(1);
        g.activate(2);
        g.activate(3);
        assert_eq!(g.rollback(), Some(2));
        assert_eq!(g.rollback(), Some(1));
        assert_eq!(g.rollback(), None);
        assert_eq!(g.active, Some(1));
    }

    #[test]
    fn rollback_skips_dropped_versions() {
        let mut g = group_with(&[1, 2, 3]);
        g.activate(1);
        g.activate(2);
        g.activate(3);
        g.remove(2);
        assert_eq!(g.rollback_target(), Some(1));
    }

    #[test]
    fn drop_keeps_newest_and_active() {
        let mut g = group_with(&[1, 2, 3, 4, 5]);
        g.activate(1);
        assert_eq!(g.versions_to_drop(2), vec![3, 2]);
    }
}
