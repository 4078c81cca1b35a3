//! `segment_open`: see `featstore_fuzz::segment_open` (fuzz/src/lib.rs) for what it checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| featstore_fuzz::segment_open(data));
