//! `batch_row`: see `featstore_fuzz::batch_row` (fuzz/src/lib.rs) for what it checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| featstore_fuzz::batch_row(data));
