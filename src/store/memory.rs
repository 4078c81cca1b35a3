//! The store's memory model: the budgets that bound what the engine holds, and what it
//! holds now.
//!
//! Owns [`MemoryUsage`], one reading of every budgeted pool, taken from RocksDB's own
//! accounting (`GetApproximateMemoryUsageByType`, the block cache's and the write buffer
//! manager's counters) and from the mapped hot segments. The pools:
//!
//! | pool | bounded by | notes |
//! |---|---|---|
//! | block cache | `block_cache_bytes` | data blocks, and the index and filter partitions of every SST file (charged to the cache, high priority) |
//! | memtables | `write_buffer_bytes` | one write buffer manager for every column family: stream, meta and (empty) batch memtables |
//! | table readers | number of SST files | what a table reader keeps outside the cache: a few hundred bytes per file (footer, pinned top-level index) |
//! | hot segments | `hot_segment_bytes` per group version | file-backed `mmap`; pages are reclaimable by the kernel |
//!
//! Invariant: nothing here changes state; a reading is a snapshot of counters that move
//! independently, so its parts need not sum to the process's resident size (the
//! allocator, thread stacks and the registry are outside these pools).

use std::fmt;

use serde::Serialize;

/// One reading of the store's memory pools, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MemoryUsage {
    /// Configured block cache capacity.
    pub block_cache_capacity: u64,
    /// Bytes held by the block cache (data, index and filter blocks).
    pub block_cache_usage: u64,
    /// Part of the block cache pinned by readers or by the pinning options.
    pub block_cache_pinned: u64,
    /// Configured budget of all memtables together.
    pub write_buffer_budget: u64,
    /// Bytes the write buffer manager counts (arena memory of every memtable).
    pub write_buffer_usage: u64,
    /// Memtables, mutable and immutable, of every column family.
    pub memtables: u64,
    /// Memtables not yet flushed.
    pub memtables_unflushed: u64,
    /// Table readers' memory outside the block cache.
    pub table_readers: u64,
    /// Bytes of mapped hot segment files (file-backed, reclaimable).
    pub hot_segments_mapped: u64,
    /// Batch versions the manifest names (kept for rollback or active).
    pub batch_versions: u64,
}

impl MemoryUsage {
    /// Everything counted here that is not reclaimable page cache: block cache, memtables
    /// and table readers.
    pub fn engine_total(&self) -> u64 {
        self.block_cache_usage + self.memtables + self.table_readers
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

impl fmt::Display for MemoryUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "block cache {:.1}/{:.0} MiB (pinned {:.1}), memtables {:.1} MiB (write buffers {:.1}/{:.0} MiB), table readers {:.1} MiB, hot segments {:.1} MiB mapped, {} batch versions",
            mib(self.block_cache_usage),
            mib(self.block_cache_capacity),
            mib(self.block_cache_pinned),
            mib(self.memtables),
            mib(self.write_buffer_usage),
            mib(self.write_buffer_budget),
            mib(self.table_readers),
            mib(self.hot_segments_mapped),
            self.batch_versions,
        )
    }
}

/// The process's resident set size, from `VmRSS` in `/proc/self/status` (Linux); `None`
/// where that file does not exist.
pub fn process_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
