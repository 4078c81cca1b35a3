//! Engine configuration, with defaults sized for a ranking-host sidecar.

use serde::{Deserialize, Serialize};

/// Tunables of a [`crate::FeatureStore`]. `Default` is what `featstore serve` uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// RocksDB block cache shared by every column family, in bytes.
    pub block_cache_bytes: usize,
    /// Batch versions kept per group after a successful load (the active one always stays).
    pub keep_versions: usize,
    /// Memory the loader may use for sorting before it spills sorted runs to disk.
    pub load_memory_bytes: usize,
    /// Target size of one SST file written by the loader.
    pub sst_target_bytes: u64,
    /// Memory budget of one group version's hot segment, in bytes. A version that fits
    /// is held whole; otherwise the most-read entities are. 0 disables hot segments.
    pub hot_segment_bytes: u64,
    /// Distinct entities whose reads are counted, per entity type.
    pub access_tracking_entities: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            block_cache_bytes: 512 << 20,
            keep_versions: 3,
            load_memory_bytes: 512 << 20,
            sst_target_bytes: 256 << 20,
            hot_segment_bytes: 1 << 30,
            access_tracking_entities: 1 << 20,
        }
    }
}
