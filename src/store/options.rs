//! RocksDB options by column family role, and the shared memory budgets.
//!
//! Roles (see `storage-format.md`, "Column families"):
//! * **batch** (`versions.{group}`, one per group; and layout-1 `batch.{group}.v{n}`,
//!   one per version, read until dropped): written only by SST ingestion (files land in
//!   the bottommost level, non-overlapping), read by point lookups and entity scans.
//!   Their memtables stay empty, so they get the smallest write buffer and no memtable
//!   bloom filter: with RocksDB's default 64 MiB write buffer and a prefix bloom ratio of
//!   0.1, each empty memtable allocated a 6.4 MiB bloom filter at creation, and 1,200
//!   kept versions held 7.7 GB for no data (`featstore-bench-scale`, README "Memory").
//! * **stream** (`stream.{group}`, `stream_events`): written through the WAL and
//!   memtables. Every memtable of the database draws on one **write buffer manager**
//!   (`write_buffer_bytes`, stalling writers beyond it), so 400 pushed groups cannot hold
//!   400 x 64 MiB; no memtable bloom either, since an empty bloom costs its full size in
//!   every stream family whether or not it is pushed to.
//! * **meta**: small, written rarely.
//!
//! Shared by every role:
//! * **One block cache** (`block_cache_bytes`), RocksDB's HyperClockCache (lock-free
//!   lookups; the LRU cache's shard mutexes and list updates were about 10% of a cold
//!   ranking read's CPU, and replacing it halved `rank/rocksdb/500x(50+2)`, 5.2 to 2.6
//!   ms, `cargo bench --bench ranking`), for data blocks **and** index and
//!   filter blocks. Indexes and filters are **partitioned** (4 KiB partitions behind a
//!   small top-level index that stays pinned), cached with high priority: a read loads
//!   one 4 KiB filter partition and one index partition, never a whole multi-megabyte
//!   filter, so their memory is bounded by the cache instead of growing with the number
//!   of keys (at 100M entities x 50 features, whole filters would be about 6 GB per
//!   version outside any budget). An earlier layout kept whole, unpartitioned filters
//!   in the cache and uniform random reads evicted and re-read them at 14 ms a read;
//!   partitioning is what makes caching them affordable.
//! * **Bloom filters (10 bits/key, ~1% false positives) on whole keys and on the entity
//!   prefix**: a read of an entity missing from a version costs a filter probe, no data
//!   block (except in the versions families, below, whose reads skip the filter).
//! * **Entity-key prefix extractor** (`codec::key::entity_prefix_len`; in versions
//!   families the version prefix plus the entity key,
//!   `codec::key::versioned_entity_prefix_len`): an entity scan uses the prefix bloom
//!   and stops at the entity's last key.
//! * **Hash index inside data blocks** (`BinaryAndHash`): a point lookup inside a block
//!   is one hash probe rather than a binary search over restart points.
//! * **4 KiB blocks, LZ4** (versions families: 16 KiB, below): one entity's 50
//!   features (~1.5 KiB) fit in one block; LZ4 decompresses faster than the read costs
//!   otherwise (zstd, measured on the versions families, is in the README, "Cold
//!   reads"). Keys share the entity prefix, so RocksDB's delta encoding stores the
//!   entity id about once per restart interval.
//! * **versions families** (rows, batch layout 3) differ in three settings, measured
//!   on `rank` of 500 candidates from RocksDB at 1M products with a warm cache
//!   (paired per request in one process, medians of paired ratios): a restart point
//!   per row (`block_restart_interval` 1, so the block's hash index lands on the row
//!   instead of a scan of up to 16 rows), **16 KiB** blocks (an index a quarter the
//!   size, so its partitions stay in the CPU caches), and `optimize_filters_for_hits`
//!   (every file of a version is in the bottommost level, so reads skip the filter:
//!   ranking candidates are nearly always present). Together 0.74x the time (3.77 to
//!   2.82 ms median). The cost: a read of an entity absent from the version pays an
//!   index and data block lookup instead of a filter probe, and a block-cache miss
//!   reads 16 KiB instead of 4. And a **sparse in-block hash table**
//!   (`data_block_hash_table_util_ratio` 0.25, RocksDB's default 0.75): a block holds
//!   about 40 rows, and at 0.75 about half the lookups collided in the table and fell
//!   back to a binary search over the block's restart points; at 0.25 a fifth do. The
//!   binary search went from 10.8% to 5.2% of a cold ranking read's CPU, for about 1%
//!   more bytes per block, at most (README, "Cold reads").
//!
//! Invariant: the options a column family is opened with depend only on its name and
//! the [`EngineOptions`], so SST files written by the loader (with
//! [`EngineOptions::versions_cf`]) always match the family they are ingested into.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, DataBlockIndexType, Options,
    SliceTransform, WriteBufferManager,
};

use super::keyspace::{BATCH_CF_PREFIX, EVENTS_CF, STREAM_CF_PREFIX, VERSIONS_CF_PREFIX};
use super::memory::MemoryUsage;
use super::stream::retention::{
    FilterKind, RetentionFilterFactory, RetentionTable, SharedRetention,
};
use crate::codec::key::{entity_prefix_len, versioned_entity_prefix_len};

/// Write buffer of a batch column family. Nothing writes to it (ingestion bypasses the
/// memtable), so the smallest size RocksDB handles well: its arena blocks are an eighth.
const BATCH_WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Write buffer of the meta column family (a few small records per registry change or
/// load).
const META_WRITE_BUFFER_BYTES: usize = 4 << 20;
/// Largest write buffer of one stream column family; smaller budgets give each an
/// eighth of the budget, so several groups can fill before the manager flushes.
const STREAM_WRITE_BUFFER_MAX_BYTES: usize = 64 << 20;
/// Smallest write buffer of one stream column family.
const STREAM_WRITE_BUFFER_MIN_BYTES: usize = 1 << 20;
/// Database options set by name (see [`EngineOptions::db`]). Background opening
/// requires that table statistics are not read at open.
const ASYNC_OPEN_OPTIONS: &str = "open_files_async=true;skip_stats_update_on_db_open=true";
/// Data block size of the versions families (rows of one entity, ~450 bytes for 50
/// floats and a 32-float embedding).
const VERSIONS_BLOCK_BYTES: usize = 16 << 10;
/// Size of an index or filter partition.
const METADATA_BLOCK_BYTES: u64 = 4 << 10;

fn versioned_entity_prefix(key: &[u8]) -> &[u8] {
    match versioned_entity_prefix_len(key) {
        Some(len) => key.get(..len).unwrap_or(key),
        None => key,
    }
}

fn in_versioned_entity_domain(key: &[u8]) -> bool {
    versioned_entity_prefix_len(key).is_some()
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

/// Options shared by every column family open in one engine: the block cache, the write
/// buffer manager, and the retention table of the compaction filters.
pub struct EngineOptions {
    cache: Cache,
    block_cache_bytes: usize,
    write_buffers: WriteBufferManager,
    write_buffer_bytes: usize,
    /// Retention limits read by the stream column families' compaction filters.
    retention: SharedRetention,
    /// History facts read by the history column families' compaction filters.
    history: super::history::SharedHistory,
    /// Row schemas of the batch versions, read by the versions families' filters.
    schemas: super::version_retention::SharedSchemas,
}

impl EngineOptions {
    /// Creates the shared block cache of `block_cache_bytes` and the write buffer
    /// manager that bounds all memtables together to `write_buffer_bytes` (writers stall
    /// beyond it until a flush frees memory).
    pub fn new(block_cache_bytes: usize, write_buffer_bytes: usize) -> Self {
        EngineOptions {
            cache: Cache::new_hyper_clock_cache(block_cache_bytes, 0),
            block_cache_bytes,
            write_buffers: WriteBufferManager::new_write_buffer_manager(write_buffer_bytes, true),
            write_buffer_bytes,
            // Removes nothing until the store installs the registry's limits.
            retention: Arc::new(ArcSwap::from_pointee(RetentionTable::default())),
            // Drops nothing until the store installs the table read from `meta`.
            history: Arc::new(ArcSwap::from_pointee(
                super::history::HistoryTable::default(),
            )),
            // Removes nothing until the store publishes the schemas it names.
            schemas: Arc::new(ArcSwap::from_pointee(std::collections::HashMap::new())),
        }
    }

    /// The row schemas shared with the versions families' compaction filters.
    pub fn schemas(&self) -> &super::version_retention::SharedSchemas {
        &self.schemas
    }

    /// The history facts shared with the history families' compaction filters.
    pub fn history(&self) -> &super::history::SharedHistory {
        &self.history
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
        opts.set_write_buffer_manager(&self.write_buffers);
        // Tickers only (block cache hits and misses for `/metrics`): no histograms or
        // timers, which would cost the read path a clock read per operation.
        opts.enable_statistics();
        opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);
        // The default column family holds nothing; it still has a memtable.
        opts.set_write_buffer_size(BATCH_WRITE_BUFFER_BYTES);
        // Open SST files in the background after `DB::open` returns instead of before
        // (every file is kept open, `max_open_files` -1): at 1,200 files the RocksDB part
        // of a restart fell from 0.73 to 0.22 s (`featstore-bench-scale`). A file that
        // fails to open then surfaces as a read error of that version rather than a
        // failed open. Not exposed by the Rust binding, hence the options string; the
        // C++ objects set above (write buffer manager) are shared, not copied.
        match opts.get_options_from_string(ASYNC_OPEN_OPTIONS) {
            Ok(with_async_open) => with_async_open,
            Err(e) => {
                tracing::warn!(error = %e, "RocksDB refused background file opening; opening files before serving");
                opts
            }
        }
    }

    /// Table options every role shares: the one block cache, partitioned index and
    /// filters charged to it (see the module docs).
    fn table(&self) -> BlockBasedOptions {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_block_size(4 << 10);
        table.set_format_version(5);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(METADATA_BLOCK_BYTES as usize);
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_optimize_filters_for_memory(true);
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
        table
    }

    /// Point reads by entity key and entity scans: table options, LZ4, and a prefix
    /// extractor that cuts a key after its entity key.
    fn entity_keyed(
        &self,
        table: &BlockBasedOptions,
        write_buffer_bytes: usize,
        extractor: SliceTransform,
    ) -> Options {
        let mut opts = Options::default();
        opts.set_block_based_table_factory(table);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_prefix_extractor(extractor);
        opts.set_memtable_prefix_bloom_ratio(0.0);
        opts.set_write_buffer_size(write_buffer_bytes);
        opts.set_level_compaction_dynamic_level_bytes(true);
        opts
    }

    /// Options of the `meta` column family: small, written rarely.
    pub fn meta_cf(&self) -> Options {
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&self.table());
        opts.set_write_buffer_size(META_WRITE_BUFFER_BYTES);
        opts
    }

    /// The prefix extractor of stream and layout-1 batch families: the entity key.
    fn entity_extractor() -> SliceTransform {
        SliceTransform::create(
            "featstore.entity_prefix.v1",
            entity_prefix,
            Some(in_entity_domain),
        )
    }

    /// Options of a group's versions column family (`versions.{group}`), and of the
    /// SST files the loader writes for it (the two must agree so the files' filters
    /// match the family's prefix extractor: version prefix + entity key).
    pub fn versions_cf(&self) -> Options {
        let extractor = SliceTransform::create(
            "featstore.versioned_entity_prefix.v1",
            versioned_entity_prefix,
            Some(in_versioned_entity_domain),
        );
        // Rows are point-read (see the module docs, "versions families"): 16 KiB
        // blocks with a restart point per row, and no filter probe at the bottommost
        // level, where ingestion puts every file.
        let mut table = self.table();
        table.set_block_size(VERSIONS_BLOCK_BYTES);
        table.set_block_restart_interval(1);
        // Fewer collisions in the block's hash table: see the module docs.
        table.set_data_block_hash_ratio(0.25);
        let mut opts = self.entity_keyed(&table, BATCH_WRITE_BUFFER_BYTES, extractor);
        opts.set_max_write_buffer_number(2);
        opts.set_optimize_filters_for_hits(true);
        opts
    }

    /// Options of `group`'s versions column family as created: [`versions_cf`](Self::versions_cf)
    /// with the batch retention compaction filter (`super::version_retention`).
    pub fn versions_family(&self, group: &str) -> Options {
        let mut opts = self.versions_cf();
        opts.set_compaction_filter_factory(super::version_retention::VersionRetentionFactory::new(
            super::keyspace::versions_cf_name(group),
            self.schemas.clone(),
            self.retention.clone(),
        ));
        opts
    }

    /// Options of a layout-1 batch column family (`batch.{group}.v{version}`, one per
    /// version), opened to serve stores written before layout 2.
    pub fn batch_cf(&self) -> Options {
        let mut opts = self.entity_keyed(
            &self.table(),
            BATCH_WRITE_BUFFER_BYTES,
            Self::entity_extractor(),
        );
        opts.set_max_write_buffer_number(2);
        opts
    }

    /// The write buffer of one stream column family under the shared budget.
    fn stream_write_buffer_bytes(&self) -> usize {
        (self.write_buffer_bytes / 8)
            .clamp(STREAM_WRITE_BUFFER_MIN_BYTES, STREAM_WRITE_BUFFER_MAX_BYTES)
    }

    /// Options of a `stream.{group}` column family: point reads by entity key and
    /// prefix scans of tiles, written through the memtable and WAL under the shared write
    /// buffer budget, with the retention compaction filter.
    pub fn stream_cf(&self) -> Options {
        let mut opts = self.entity_keyed(
            &self.table(),
            self.stream_write_buffer_bytes(),
            Self::entity_extractor(),
        );
        opts.set_compaction_filter_factory(RetentionFilterFactory::new(
            self.retention.clone(),
            FilterKind::Stream,
        ));
        opts
    }

    /// Options of the `stream_events` column family (event-id markers), written on
    /// every push like the stream families.
    pub fn events_cf(&self) -> Options {
        let mut opts = self.meta_cf();
        opts.set_write_buffer_size(self.stream_write_buffer_bytes());
        opts.set_compaction_filter_factory(RetentionFilterFactory::new(
            self.retention.clone(),
            FilterKind::Markers,
        ));
        opts
    }

    /// Options of a `history.{group}` column family, and of the SST files a load
    /// writes for it: entity-keyed like the stream families, with the history
    /// retention compaction filter.
    pub fn history_cf(&self, group: &str) -> Options {
        let mut opts = self.entity_keyed(
            &self.table(),
            self.stream_write_buffer_bytes(),
            Self::entity_extractor(),
        );
        opts.set_compaction_filter_factory(super::history::rows::HistoryRetentionFactory::new(
            self.history.clone(),
            self.retention.clone(),
            group,
        ));
        opts
    }

    /// Reads RocksDB's memory accounting for `db` (opened with these options).
    pub fn memory_usage(
        &self,
        db: &rocksdb::DB,
        hot_segments_mapped: u64,
        batch_versions: u64,
    ) -> MemoryUsage {
        let stats = rocksdb::perf::get_memory_usage_stats(Some(&[db]), None);
        let (memtables, memtables_unflushed, table_readers) = match stats {
            Ok(s) => (
                s.mem_table_total,
                s.mem_table_unflushed,
                s.mem_table_readers_total,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "RocksDB memory usage unavailable");
                (0, 0, 0)
            }
        };
        MemoryUsage {
            block_cache_capacity: self.block_cache_bytes as u64,
            block_cache_usage: self.cache.get_usage() as u64,
            block_cache_pinned: self.cache.get_pinned_usage() as u64,
            write_buffer_budget: self.write_buffer_bytes as u64,
            write_buffer_usage: self.write_buffers.get_usage() as u64,
            memtables,
            memtables_unflushed,
            table_readers,
            hot_segments_mapped,
            batch_versions,
        }
    }

    /// Options for a column family found on disk at open, chosen by its name.
    pub fn for_existing_cf(&self, name: &str) -> Options {
        if let Some(group) = name.strip_prefix(VERSIONS_CF_PREFIX) {
            self.versions_family(group)
        } else if name.starts_with(BATCH_CF_PREFIX) {
            self.batch_cf()
        } else if name.starts_with(STREAM_CF_PREFIX) {
            self.stream_cf()
        } else if name == EVENTS_CF {
            self.events_cf()
        } else if let Some(group) = name.strip_prefix(super::keyspace::HISTORY_CF_PREFIX) {
            self.history_cf(group)
        } else {
            self.meta_cf()
        }
    }
}
