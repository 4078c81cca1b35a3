//! The snapshot cell through which featstore publishes read views.
//!
//! A [`SnapshotCell`] holds an `Arc<T>`. Readers [`load`](SnapshotCell::load) the current
//! value without taking a lock that a writer holds; a writer [`store`](SnapshotCell::store)s
//! a new one atomically. Whatever the old value owns (column family handles, a mapped
//! hot segment) is released only when the last reader that loaded it drops its `Arc`:
//! that is the swap protocol of featstore's versions.
//!
//! It is not a lock-free algorithm of its own: in normal builds it is `arc_swap::ArcSwap`.
//! Under `--cfg loom` it is a `loom` mutex around the `Arc`, which has the same
//! linearizable load/store semantics, so loom can explore every interleaving of the
//! protocol built on top (publish, read, retire, release) — see `tests/loom_swap.rs`.
//! arc-swap's own lock-freedom is taken from its test suite, not re-proven here.

use std::sync::Arc;

#[cfg(not(loom))]
mod imp {
    use std::sync::Arc;

    /// See the crate documentation.
    pub struct Inner<T>(arc_swap::ArcSwap<T>);

    impl<T> Inner<T> {
        pub fn new(value: Arc<T>) -> Self {
            Inner(arc_swap::ArcSwap::new(value))
        }
        pub fn load(&self) -> Arc<T> {
            self.0.load_full()
        }
        pub fn store(&self, value: Arc<T>) {
            self.0.store(value);
        }
        pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            f(&self.0.load())
        }
    }
}

#[cfg(loom)]
mod imp {
    use loom::sync::{Arc as LoomArc, Mutex};
    use std::sync::Arc;

    /// See the crate documentation.
    pub struct Inner<T>(LoomArc<Mutex<Arc<T>>>);

    impl<T> Inner<T> {
        pub fn new(value: Arc<T>) -> Self {
            Inner(LoomArc::new(Mutex::new(value)))
        }
        pub fn load(&self) -> Arc<T> {
            self.0
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|p| p.into_inner().clone())
        }
        pub fn store(&self, value: Arc<T>) {
            let old = match self.0.lock() {
                Ok(mut g) => std::mem::replace(&mut *g, value),
                Err(p) => std::mem::replace(&mut *p.into_inner(), value),
            };
            // The old value is released outside the critical section, like arc-swap.
            drop(old);
        }
        pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            f(&self.load())
        }
    }
}

/// An atomically replaceable `Arc<T>`: lock-free loads, atomic stores.
pub struct SnapshotCell<T> {
    inner: imp::Inner<T>,
}

impl<T> SnapshotCell<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Self {
        SnapshotCell {
            inner: imp::Inner::new(Arc::new(value)),
        }
    }

    /// The current value; keeps it alive for as long as the caller holds it.
    pub fn load(&self) -> Arc<T> {
        self.inner.load()
    }

    /// Runs `f` on the current value without cloning the `Arc` (the cheapest read).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.inner.with(f)
    }

    /// Publishes `value`; readers that loaded the previous value keep it until they drop it.
    pub fn store(&self, value: Arc<T>) {
        self.inner.store(value);
    }
}

impl<T> std::fmt::Debug for SnapshotCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotCell")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_the_old_value_alive_after_a_swap() {
        let cell = SnapshotCell::new(1u32);
        let old = cell.load();
        cell.store(Arc::new(2));
        assert_eq!(*old, 1);
        assert_eq!(*cell.load(), 2);
        assert_eq!(cell.with(|v| *v), 2);
        assert_eq!(
            Arc::strong_count(&old),
            1,
            "the cell let go of the old value"
        );
    }
}
