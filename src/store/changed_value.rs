//! A compaction filter's replacement value, owned by the filter: the one place that
//! hands RocksDB's binding a changed value.
//!
//! rust-rocksdb's `CompactionDecision::Change` takes a `&'static [u8]`, which would
//! allow only constant replacements. RocksDB's C API copies the new value
//! (`new_value->assign(...)` in `c.cc`) as soon as the filter callback returns, before
//! it calls the filter again. [`ChangedValue`] keeps the bytes in the filter and lends
//! them for exactly that window. The filters that rewrite records (history row records,
//! `history::rows`; batch rows, `version_retention`) use it.
//!
//! Contract (crate-internal, checked by review): return [`ChangedValue::decision`] from
//! the `CompactionFilter::filter` of the filter that owns the value, and change the
//! value only in a later call of that filter.

use rocksdb::CompactionDecision;

/// The bytes a filter replaces a record's value with.
#[derive(Debug, Default)]
pub(crate) struct ChangedValue {
    bytes: Vec<u8>,
}

impl ChangedValue {
    /// The buffer, to write the next replacement into.
    pub(crate) fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// The replacement written last.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The decision that replaces the record's value with [`Self::bytes`] (see the
    /// module's contract).
    pub(crate) fn decision(&self) -> CompactionDecision {
        // SAFETY: by the module's contract this is returned from the owning filter's
        // `filter` callback, and RocksDB's C API copies the new value right after that
        // callback returns, before the next call, the only place that changes
        // `self.bytes`; the bytes live in the filter, which outlives the call. Nothing
        // keeps the `'static` slice beyond that copy.
        #[allow(unsafe_code)]
        let bytes: &'static [u8] =
            unsafe { std::slice::from_raw_parts(self.bytes.as_ptr(), self.bytes.len()) };
        CompactionDecision::Change(bytes)
    }
}
