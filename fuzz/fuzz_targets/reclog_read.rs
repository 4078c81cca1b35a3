//! `reclog_read`: see `featstore_fuzz::reclog_read` (fuzz/src/lib.rs) for what it checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| featstore_fuzz::reclog_read(data));
