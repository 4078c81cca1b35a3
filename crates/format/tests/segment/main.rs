//! Integration tests of hot segment files (`featstore_format::segment`), one binary:
//!
//! * `model` — property tests: random schemas and rows round-trip against a model.
//! * `batch` — `Segment::find_batch` answers as `find` does.
//! * `corruption` — truncation, bit flips, hostile headers and resealed deep damage.
//! * `fixture` — the checked-in `tests/fixtures/segment_v2*.seg` files still open, hold
//!   what they held, and are what the writer produces.
//! * `doc_example` — the worked example of `storage-format.md` is byte-exact.
//! * `fuzz_replay` — the fuzz targets' bodies (`fuzz/src/lib.rs`) over the fixtures and
//!   generated and mutated inputs, so CI exercises them without libFuzzer.
//! * `regressions` — one test per fuzz or review find.

mod batch;
mod common;
mod corruption;
mod doc_example;
mod fixture;
#[path = "../../../../fuzz/src/lib.rs"]
mod fuzz_bodies;
mod fuzz_replay;
mod model;
mod regressions;
