//! Engine configuration, with defaults sized for a ranking-host sidecar.

use serde::{Deserialize, Serialize};

/// Tunables of a [`crate::FeatureStore`]. `Default` is what `featstore serve` uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// RocksDB block cache shared by every column family, in bytes: data blocks and the
    /// index and filter partitions of every SST file.
    pub block_cache_bytes: usize,
    /// Budget of all memtables together (stream and meta writes), in bytes. Writes
    /// stall briefly beyond it until a flush frees memory.
    pub write_buffer_bytes: usize,
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
    /// The serving log (`[serving_log]`), started by the server when enabled.
    pub serving_log: crate::servelog::ServeLogConfig,
    /// The history store (`[history]`): whether it records, and its retention.
    pub history: super::history::HistoryConfig,
    /// The background parity sampler (`[parity]`), started by the server.
    pub parity: crate::parity::sampler::ParitySamplerConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            block_cache_bytes: 512 << 20,
            write_buffer_bytes: 128 << 20,
            keep_versions: 3,
            load_memory_bytes: 512 << 20,
            sst_target_bytes: 256 << 20,
            hot_segment_bytes: 1 << 30,
            access_tracking_entities: 1 << 20,
            serving_log: crate::servelog::ServeLogConfig::default(),
            history: super::history::HistoryConfig::default(),
            parity: crate::parity::sampler::ParitySamplerConfig::default(),
        }
    }
}

/// Smallest accepted `write_buffer_bytes`: one stream memtable's minimum.
const MIN_WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Smallest accepted `block_cache_bytes`: index and filter partitions live in the cache,
/// so a cache too small to hold the partitions one read touches thrashes.
const MIN_BLOCK_CACHE_BYTES: usize = 1 << 20;

impl StoreConfig {
    /// Checks that every budget is usable; the store refuses to open otherwise.
    pub fn validate(&self) -> Result<(), super::StoreError> {
        let invalid = |m: String| Err(super::StoreError::InvalidConfig(m));
        if self.block_cache_bytes < MIN_BLOCK_CACHE_BYTES {
            return invalid(format!(
                "block_cache_bytes = {} is below the minimum of {MIN_BLOCK_CACHE_BYTES} (1 MiB)",
                self.block_cache_bytes
            ));
        }
        if self.write_buffer_bytes < MIN_WRITE_BUFFER_BYTES {
            return invalid(format!(
                "write_buffer_bytes = {} is below the minimum of {MIN_WRITE_BUFFER_BYTES} (1 MiB)",
                self.write_buffer_bytes
            ));
        }
        if let Err(e) = self.parity.validate() {
            return invalid(e.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_tiny_budgets_are_refused() {
        assert!(StoreConfig::default().validate().is_ok());
        for config in [
            StoreConfig {
                write_buffer_bytes: 0,
                ..StoreConfig::default()
            },
            StoreConfig {
                block_cache_bytes: 4096,
                ..StoreConfig::default()
            },
        ] {
            let err = config.validate().expect_err("refused").to_string();
            assert!(err.starts_with("invalid store config"), "{err}");
        }
    }

    #[test]
    fn a_partial_toml_file_keeps_the_other_defaults() {
        let config: StoreConfig =
            toml::from_str("write_buffer_bytes = 33554432\n").expect("parses");
        assert_eq!(config.write_buffer_bytes, 32 << 20);
        assert_eq!(
            config.block_cache_bytes,
            StoreConfig::default().block_cache_bytes
        );
        assert!(toml::from_str::<StoreConfig>("write_bufer_bytes = 1\n").is_err());
    }
}
