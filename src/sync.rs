//! The synchronisation facade: every atomic, `UnsafeCell`, lock, spin hint and
//! thread-local used by the crate comes from here.
//!
//! Normally these are `core`/`std` atomics, `parking_lot::Mutex` and
//! `std::thread_local!`. Compiled with `RUSTFLAGS="--cfg loom"` they are loom's,
//! so loom model-checks the production code rather than a copy of it.
//! `tests/facade.rs` fails if another module imports `std::sync::atomic` or
//! `core::cell::UnsafeCell` directly.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicUsize,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicUsize,
};

pub(crate) use core::sync::atomic::Ordering;

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

/// Bumps a counter that only one thread writes: a load and a store, never an
/// atomic read-modify-write. Readers on other threads see a value that is
/// exact once the writer is quiescent.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// An `UnsafeCell` with loom's closure API (`with` / `with_mut`), so loom can
/// check who touches owner-only state and when.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T> {
    #[cfg(not(loom))]
    inner: core::cell::UnsafeCell<T>,
    #[cfg(loom)]
    inner: loom::cell::UnsafeCell<T>,
}

impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[cfg_attr(loom, track_caller)]
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(loom))]
        let inner = core::cell::UnsafeCell::new(value);
        #[cfg(loom)]
        let inner = loom::cell::UnsafeCell::new(value);
        Self { inner }
    }

    /// Runs `f` with a shared raw pointer to the value.
    #[inline(always)]
    #[cfg_attr(loom, track_caller)]
    #[allow(dead_code)] // used under loom
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.inner.get());
        #[cfg(loom)]
        return self.inner.with(f);
    }

    /// Runs `f` with a unique raw pointer to the value.
    #[inline(always)]
    #[cfg_attr(loom, track_caller)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.inner.get());
        #[cfg(loom)]
        return self.inner.with_mut(f);
    }
}

/// A mutex: `parking_lot::Mutex` normally, loom's under `--cfg loom`.
#[derive(Debug)]
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard of a facade [`Mutex`].
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
/// The guard of a facade [`Mutex`].
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// Wraps `value`.
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(loom))]
        let inner = parking_lot::Mutex::new(value);
        #[cfg(loom)]
        let inner = loom::sync::Mutex::new(value);
        Self { inner }
    }

    /// Locks. No poisoning: a panic under the lock cannot happen on our paths
    /// (they do not call user code), and loom's poison is unwrapped.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self.inner.lock().unwrap_or_else(|e| e.into_inner());
    }
}

/// Declares a thread-local through std or loom.
macro_rules! thread_local_facade {
    ($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(loom))]
        std::thread_local! { $(#[$attr])* static $name: $t = const { $init }; }
        #[cfg(loom)]
        loom::thread_local! { $(#[$attr])* static $name: $t = $init; }
    };
}
pub(crate) use thread_local_facade;

/// Process-wide counters that loom need not model: they only hand out
/// distinct numbers or count refusals, and order nothing.
pub(crate) mod unmodelled {
    use std::sync::atomic::{AtomicU64, Ordering};

    static SERIALS: AtomicU64 = AtomicU64::new(1);
    static UNOWNED_FREES: AtomicU64 = AtomicU64::new(0);

    /// A fresh, never-reused number (never 0).
    pub(crate) fn next_serial() -> u64 {
        SERIALS.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a free whose pointer has no homeslab slab header.
    pub(crate) fn count_unowned_free() {
        UNOWNED_FREES.fetch_add(1, Ordering::Relaxed);
    }

    /// Frees refused because their pointer had no homeslab slab header.
    pub(crate) fn unowned_frees() -> u64 {
        UNOWNED_FREES.load(Ordering::Relaxed)
    }

    /// The thread-context indices in use, one bit each (taken only when a
    /// pool is built or closes).
    static INDICES: std::sync::Mutex<[u64; 4]> = std::sync::Mutex::new([0; 4]);

    /// Claims the smallest free index below `limit` (≤ 256), if any.
    pub(crate) fn claim_index(limit: usize) -> Option<usize> {
        let mut bits = INDICES.lock().unwrap_or_else(|e| e.into_inner());
        let i = (0..limit).find(|&i| bits[i / 64] & (1 << (i % 64)) == 0)?;
        bits[i / 64] |= 1 << (i % 64);
        Some(i)
    }

    /// Gives back an index from [`claim_index`].
    pub(crate) fn release_index(i: usize) {
        let mut bits = INDICES.lock().unwrap_or_else(|e| e.into_inner());
        bits[i / 64] &= !(1 << (i % 64));
    }
}
