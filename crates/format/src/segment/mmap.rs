//! [`MappedSegment`]: opens a segment file by memory-mapping it. The only module that
//! owns an `Mmap`, and the only `unsafe` in this crate.
//!
//! Contract (`storage-format.md`, "Hot segment files", "Writing"): a segment file is
//! written to a temp file, fsynced, renamed into place, and never modified, truncated or
//! appended to afterwards, by featstore or anyone else. Replacing it is a rename, which
//! leaves existing maps on the old inode. Under that contract the mapped bytes never
//! change, which is what [`Segment`]'s validate-once design needs.
//!
//! Counter-argument, taken seriously: redb removed mmap (0.14.0) because its soundness
//! cannot be proven from inside the process. If another process truncates a mapped
//! file, reads past the new end raise SIGBUS; if it rewrites bytes, we read values that
//! were never validated (still bounds-checked, so wrong answers, not memory errors in
//! our code, but Rust's aliasing rules for `&[u8]` are broken all the same).
//!
//! Thread safety: a `Segment<Mmap>` is `Send + Sync`; probe it from any thread.

use std::fs::File;
use std::path::Path;

use memmap2::{Advice, Mmap};

use super::error::SegmentError;
use super::layout::HEADER_LEN;
use super::reader::Segment;

/// Opens segment files by mapping them; see the module doc for the contract.
#[derive(Debug)]
pub struct MappedSegment {
    _no_instances: (),
}

impl MappedSegment {
    /// Maps the segment file at `path` read-only and validates all of it
    /// ([`Segment::open`]). Readahead is sequential while validating, then random for
    /// probes.
    pub fn open(path: impl AsRef<Path>) -> Result<Segment<Mmap>, SegmentError> {
        let path = path.as_ref();
        let io = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| SegmentError::Io { what, path, source }
        };
        let file = File::open(path).map_err(io("open segment"))?;
        let len = file.metadata().map_err(io("stat segment"))?.len();
        if len < HEADER_LEN as u64 {
            return Err(SegmentError::Truncated {
                what: "header",
                needed: HEADER_LEN as u64,
                have: len,
            });
        }
        // SAFETY: `Mmap::map` is unsafe because the mapped file may change underneath
        // the `&[u8]` it hands out. featstore never writes a segment file after the
        // rename that publishes it (SegmentWriter::finish_to_path builds a temp file,
        // fsyncs and renames it), and nothing else may touch the data directory. This
        // holds only by that convention: another process truncating or rewriting the
        // file would be undefined behaviour, so treat this reasoning as suspect if
        // segment files are ever shared or edited in place.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(io("map segment"))?;
        // Advice only tunes readahead; failure to apply it changes nothing else.
        let _ = map.advise(Advice::Sequential);
        let segment = Segment::open(map)?;
        let _ = segment.data().advise(Advice::Random);
        Ok(segment)
    }
}
