//! Model check of featstore's version swap protocol under `--cfg loom`.
//!
//! The protocol: a read view owns its versions' resources (here a `Segment` standing for
//! a mapped hot segment file). A reader loads the current view, reads the segment, and
//! drops the view. A writer publishes a new view, then retires the old version: it
//! deletes the file, which is harmless while mapped, and the mapping itself ends only
//! when the last `Arc` of the old view is dropped. The properties checked in every
//! interleaving:
//!
//! 1. a reader never reads a segment that was unmapped (no use after unmap);
//! 2. every segment is unmapped exactly once, after the last reader is done (no leak);
//! 3. a reader sees one version for all its reads (never a mix).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p featstore-swap --release --test loom_swap`.

#![cfg(loom)]

use std::sync::Arc;

use featstore_swap::SnapshotCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

/// Stands for a mapped segment: reading it after unmapping is the bug we look for.
struct Segment {
    version: u64,
    mapped: AtomicBool,
    unmaps: Arc<AtomicUsize>,
}

impl Segment {
    fn read(&self) -> u64 {
        assert!(self.mapped.load(Ordering::SeqCst), "read after unmap");
        self.version
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.mapped.store(false, Ordering::SeqCst);
        self.unmaps.fetch_add(1, Ordering::SeqCst);
    }
}

/// Stands for a read view: two groups, each with its active version's segment.
struct View {
    a: Arc<Segment>,
    b: Arc<Segment>,
}

fn segment(version: u64, unmaps: &Arc<AtomicUsize>) -> Arc<Segment> {
    Arc::new(Segment {
        version,
        mapped: AtomicBool::new(true),
        unmaps: unmaps.clone(),
    })
}

#[test]
fn swap_never_unmaps_under_a_reader_and_never_mixes_versions() {
    loom::model(|| {
        let unmaps = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(SnapshotCell::new(View {
            a: segment(1, &unmaps),
            b: segment(1, &unmaps),
        }));

        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let view = cell.load();
                let first = view.a.read();
                let second = view.b.read();
                assert_eq!(first, second, "one view, one version");
                drop(view);
                cell.with(|v| v.a.read())
            })
        };

        // Writer: publish version 2 of both groups, then release the old view.
        cell.store(Arc::new(View {
            a: segment(2, &unmaps),
            b: segment(2, &unmaps),
        }));
        let seen_after = reader.join().expect("reader");
        assert!(seen_after == 1 || seen_after == 2);

        // The old view's two segments are unmapped once its last reader is done.
        assert_eq!(unmaps.load(Ordering::SeqCst), 2);
        drop(cell);
        assert_eq!(
            unmaps.load(Ordering::SeqCst),
            4,
            "each segment unmapped exactly once"
        );
    });
}

#[test]
fn two_swaps_with_two_readers() {
    loom::model(|| {
        let unmaps = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(SnapshotCell::new(View {
            a: segment(1, &unmaps),
            b: segment(1, &unmaps),
        }));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let cell = cell.clone();
                thread::spawn(move || {
                    let view = cell.load();
                    assert_eq!(view.a.read(), view.b.read());
                })
            })
            .collect();
        for version in 2..=3 {
            cell.store(Arc::new(View {
                a: segment(version, &unmaps),
                b: segment(version, &unmaps),
            }));
        }
        for r in readers {
            r.join().expect("reader");
        }
        assert_eq!(unmaps.load(Ordering::SeqCst), 4);
    });
}

/// The model is not vacuous: unmapping at swap time, instead of when the last reader
/// lets go, is caught as a read after unmap.
#[test]
#[should_panic(expected = "read after unmap")]
fn unmapping_at_swap_time_is_caught() {
    loom::model(|| {
        let unmaps = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(SnapshotCell::new(View {
            a: segment(1, &unmaps),
            b: segment(1, &unmaps),
        }));
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let view = cell.load();
                view.a.read();
            })
        };
        let old = cell.load();
        cell.store(Arc::new(View {
            a: segment(2, &unmaps),
            b: segment(2, &unmaps),
        }));
        old.a.mapped.store(false, Ordering::SeqCst); // the bug: eager unmap
        reader.join().expect("reader");
    });
}
