//! RocksDB options, tuned for point reads of immutable batch data.
//!
//! Why each choice:
//! * **One shared LRU block cache** for all column families, so hundreds of group
//!   versions share one memory budget instead of each growing its own.
//! * **Bloom filters (10 bits/key, ~1% false positives) on whole keys and on the entity
//!   prefix**: a read of an entity missing from a version costs a filter probe, no data
//!   block. Index and filter blocks stay resident in the table readers, outside the
//!   block cache: a batch version is larger than the cache, and when index and filter
//!   blocks competed with data blocks for it, uniform random reads evicted them and every
//!   read re-loaded a multi-megabyte filter (14 ms per read in `benches/read_path.rs`
//!   with 1M entities, against microseconds with them resident). Their memory is about
//!   1.5 bytes per key.
//! * **Entity-key prefix extractor** (`codec::key::entity_prefix_len`): an entity scan
//!   uses the prefix bloom and stops at the entity's last key.
//! * **Hash index inside data blocks** (`BinaryAndHash`): a point lookup inside a block
//!   is one hash probe rather than a binary search over restart points.
//! * **4 KiB blocks, LZ4**: one entity's 50 features (~1.5 KiB) fit in one block; LZ4
//!   decompresses faster than the read costs otherwise. Keys share the entity prefix, so
//!   RocksDB's delta encoding stores the entity id about once per restart interval.
//! * Batch column families are written only by SST ingestion (files land in the
//!   bottommost level, non-overlapping), so their memtables stay empty.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, DataBlockIndexType, Options,
    SliceTransform,
};

use super::stream::retention::{FilterKind, RetentionFilterFactory, SharedRetention};
use super::stream::{EVENTS_CF, STREAM_CF_PREFIX};
use crate::codec::key::entity_prefix_len;

/// Name of the column family holding the registry, manifest and load records.
pub const META_CF: &str = "meta";
/// Prefix of batch column family names: `batch.{group}.v{version}`.
pub const BATCH_CF_PREFIX: &str = "batch.";

/// The column family that holds `version` of `group`.
pub fn batch_cf_name(group: &str, version: u64) -> String {
    format!("{BATCH_CF_PREFIX}{group}.v{version}")
}

fn entity_prefix(key: &[u8]) -> &[u8] {
    match entity_prefix_len(key) {
        Some(len) => key.get(..len).unwrap_or(key),
        None => key,
    }
}

fn in_entity_domain(key: &[u8]) -> bool {
    entity_prefix_len(key).is_some()
}

/// Options shared by every column family open in one engine.
pub struct EngineOptions {
    cache: Cache,
    /// Retention limits read by the stream column families' compaction filters.
    retention: SharedRetention,
}

impl EngineOptions {
    /// Creates the shared block cache.
    pub fn new(block_cache_bytes: usize) -> Self {
        EngineOptions {
            cache: Cache::new_lru_cache(block_cache_bytes),
            retention: Arc::new(ArcSwap::from_pointee(Default::default())),
        }
    }

    /// The retention table shared with the compaction filters.
    pub fn retention(&self) -> &SharedRetention {
        &self.retention
    }

    /// Options for opening the database itself.
    pub fn db(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_max_open_files(-1);
        opts.set_keep_log_file_num(5);
        opts.set_bytes_per_sync(1 << 20);
        opts
    }

    /// Options of the `meta` column family: small, written rarely, default tuning.
    pub fn meta_cf(&self) -> Options {
        let mut opts = Options::default();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        opts.set_block_based_table_factory(&table);
        opts
    }

    /// Options of a batch column family, and of the SST files written for it (the two
    /// must agree so the files' filters match the column family's prefix extractor).
    pub fn batch_cf(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_block_size(4 << 10);
        table.set_format_version(5);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_cache_index_and_filter_blocks(false);
        table.set_index_type(BlockBasedIndexType::BinarySearch);
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);

        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_prefix_extractor(SliceTransform::create(
            "featstore.entity_prefix.v1",
            entity_prefix,
            Some(in_entity_domain),
        ));
        opts.set_memtable_prefix_bloom_ratio(0.1);
        opts.set_level_compaction_dynamic_level_bytes(true);
        opts
    }

    /// Options of a `stream.{group}` column family: the batch tuning (point reads by
    /// entity key, prefix scans of tiles), written through the memtable and WAL, with
    /// the retention compaction filter.
    pub fn stream_cf(&self) -> Options {
        let mut opts = self.batch_cf();
        opts.set_compaction_filter_factory(RetentionFilterFactory::new(
            self.retention.clone(),
            FilterKind::Stream,
        ));
        opts
    }

    /// Options of the `stream_events` column family (event-id markers).
    pub fn events_cf(&self) -> Options {
        let mut opts = self.meta_cf();
        opts.set_compaction_filter_factory(RetentionFilterFactory::new(
            self.retention.clone(),
            FilterKind::Markers,
        ));
        opts
    }

    /// Options for a column family found on disk at open, chosen by its name.
    pub fn for_existing_cf(&self, name: &str) -> Options {
        if name.starts_with(BATCH_CF_PREFIX) {
            self.batch_cf()
        } else if name.starts_with(STREAM_CF_PREFIX) {
            self.stream_cf()
        } else if name == EVENTS_CF {
            self.events_cf()
        } else {
            self.meta_cf()
        }
    }
}
