//! `codec_value`: see `featstore_fuzz::codec_value` (fuzz/src/lib.rs) for what it checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| featstore_fuzz::codec_value(data));
