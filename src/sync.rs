//! The synchronisation facade: every atomic, `UnsafeCell`, lock, spin hint,
//! thread-local and thread-exit hook used by the crate comes from here.
//!
//! Normally these are `core`/`std` atomics, the crate's `Mutex` ([`lock`]:
//! a futex on Linux, never allocating; [`StaticMutex`] for a `static`),
//! `std::thread_local!` and the platform's thread-exit destructor
//! ([`exit`]). The platform's parts live here too: [`lock`]'s sleep,
//! [`exit`]'s destructor and thread identity, and the process-wide fence
//! behind [`heavy_fence`] (`process_fence`). Compiled
//! with `RUSTFLAGS="--cfg loom"` they are loom's, so loom model-checks the
//! production code rather than a copy of it.
//! `tests/facade.rs` fails if another module imports `std::sync::atomic` or
//! `core::cell::UnsafeCell` directly.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
};

pub(crate) use core::sync::atomic::Ordering;

pub(crate) mod exit;
pub(crate) mod lock;
pub(crate) mod static_mutex;

pub(crate) use static_mutex::{static_mutex, StaticMutex};

/// Makes each of `n` values at `p`, in freshly zeroed memory, equal to
/// `fresh()`. Normally that is already so (all-zero bytes are the facade's
/// atomics at 0, `false` or null) and nothing is written, so no page is
/// touched; loom's atomics exist only once made, so under loom each value
/// is written.
///
/// # Safety
/// `p` is valid for writes of `n` `T`s and zeroed, and outside loom all-zero
/// bytes are a valid `T` equal to `fresh()`.
#[inline]
pub(crate) unsafe fn init_zeroed<T>(p: *mut T, n: usize, fresh: impl Fn() -> T) {
    #[cfg(loom)]
    for i in 0..n {
        // SAFETY: in bounds per the contract; the zeroed value is
        // overwritten, not dropped.
        unsafe { p.add(i).write(fresh()) };
    }
    #[cfg(not(loom))]
    let _ = (p, n, fresh);
}

/// Ends the life of the `n` values at `p` before their memory is reused
/// raw, the converse of [`init_zeroed`]: the facade's atomics and cells
/// need no drop, so normally nothing happens; loom tracks each of its own
/// until it is dropped, so under loom each is dropped in place.
///
/// # Safety
/// `p` is valid for `n` `T`s that nobody uses any more; none is used after.
#[inline]
pub(crate) unsafe fn forget_in_place<T>(p: *mut T, n: usize) {
    #[cfg(loom)]
    for i in 0..n {
        // SAFETY: per the contract: in bounds, unused, dropped once.
        unsafe { core::ptr::drop_in_place(p.add(i)) };
    }
    #[cfg(not(loom))]
    let _ = (p, n);
}

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

/// The cheap half of an asymmetric fence pair (see [`heavy_fence`]): a
/// compiler fence normally, a `SeqCst` fence under loom and Miri (which
/// model the pair as two ordinary fences, what the heavy one makes of it;
/// neither has a process-wide fence).
#[inline(always)]
pub(crate) fn light_fence() {
    #[cfg(not(any(loom, miri)))]
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    #[cfg(any(loom, miri))]
    fence(Ordering::SeqCst);
}

/// The expensive half: a process-wide fence ([`process_fence`]: `membarrier` on
/// Linux, `FlushProcessWriteBuffers` on Windows), which makes every thread
/// of the process that is running execute a full fence (one that is not
/// running passed one when it was switched out). So a store before a
/// [`light_fence`] on one thread and a load after this call on another
/// cannot both miss each other, as if both were `SeqCst` fences.
/// False if the platform has none (macOS) or the OS refuses the call: the
/// caller must then do without.
#[cold]
pub(crate) fn heavy_fence() -> bool {
    #[cfg(any(loom, miri))]
    {
        fence(Ordering::SeqCst);
        true
    }
    #[cfg(not(any(loom, miri)))]
    process_fence::run()
}

#[cfg(not(any(loom, miri)))]
mod process_fence;

/// Waiting in a spin loop: crossbeam's backoff (spin, then yield to the
/// scheduler) normally, a yield under loom (so the model lets the awaited
/// thread run).
pub(crate) struct Spin {
    #[cfg(not(loom))]
    backoff: crossbeam_utils::Backoff,
}

impl Spin {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            backoff: crossbeam_utils::Backoff::new(),
        }
    }

    /// One wait.
    pub(crate) fn wait(&self) {
        #[cfg(not(loom))]
        self.backoff.snooze();
        #[cfg(loom)]
        loom::thread::yield_now();
    }
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

/// A mutex: [`lock::RawLock`] (a word that never allocates; a futex on Linux)
/// normally, loom's under `--cfg loom`.
#[cfg(not(loom))]
pub(crate) struct Mutex<T> {
    raw: lock::RawLock,
    value: core::cell::UnsafeCell<T>,
}

// SAFETY: the lock hands out the value to one thread at a time.
#[cfg(not(loom))]
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl<T: Send> Sync for Mutex<T> {}

#[cfg(not(loom))]
impl<T> core::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Mutex")
    }
}

/// The guard of a facade [`Mutex`].
#[cfg(not(loom))]
pub(crate) struct MutexGuard<'a, T> {
    lock: &'a Mutex<T>,
}

#[cfg(not(loom))]
impl<T> Mutex<T> {
    /// Wraps `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            raw: lock::RawLock::new(),
            value: core::cell::UnsafeCell::new(value),
        }
    }

    /// Locks. No poisoning: a panic under the lock cannot happen on our
    /// paths (they do not call user code).
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.lock();
        MutexGuard { lock: self }
    }

    /// The lock word itself, for the `fork` handlers (which take every
    /// lock before a fork and release them after, in parent and child).
    pub(crate) fn raw(&self) -> &lock::RawLock {
        &self.raw
    }
}

#[cfg(not(loom))]
impl<T> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

#[cfg(not(loom))]
impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.lock.value.get() }
    }
}

#[cfg(not(loom))]
impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock.
        unsafe { self.lock.raw.force_unlock() }
    }
}

/// A mutex: loom's under `--cfg loom`.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Mutex<T> {
    inner: loom::sync::Mutex<T>,
}

/// The guard of a facade [`Mutex`].
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(loom)]
impl<T> Mutex<T> {
    /// Wraps `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Locks; loom's poison is unwrapped.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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

    /// A cell for state guarded by a lock loom never sees (the meta
    /// allocator's, which loom and Miri replace with `std::alloc`).
    #[cfg(not(any(loom, miri)))]
    pub(crate) use core::cell::UnsafeCell as StdUnsafeCell;
    /// Atomics for process-wide tables loom need not model (the page map).
    pub(crate) use std::sync::atomic::{AtomicPtr as StdAtomicPtr, AtomicU8 as StdAtomicU8};

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

    static DOUBLE_FREES: AtomicU64 = AtomicU64::new(0);

    /// Counts a refused double free, in any pool of the process.
    pub(crate) fn count_double_free() {
        DOUBLE_FREES.fetch_add(1, Ordering::Relaxed);
    }

    /// Double frees refused so far, in every pool of the process.
    #[cfg(not(loom))]
    pub(crate) fn double_frees() -> u64 {
        DOUBLE_FREES.load(Ordering::Relaxed)
    }

    /// The thread-context indices in use, one bit each (taken only when a
    /// pool is built or closes).
    static INDICES: std::sync::Mutex<[u64; 4]> = std::sync::Mutex::new([0; 4]);

    /// Claims the smallest free index in `from..limit` (`limit` ≤ 256), if
    /// any.
    pub(crate) fn claim_index(from: usize, limit: usize) -> Option<usize> {
        let mut bits = INDICES.lock().unwrap_or_else(|e| e.into_inner());
        let i = (from..limit).find(|&i| bits[i / 64] & (1 << (i % 64)) == 0)?;
        bits[i / 64] |= 1 << (i % 64);
        Some(i)
    }

    /// Nanoseconds since the first call (a monotonic clock for periodic
    /// work; never 0).
    #[cfg(not(loom))]
    pub(crate) fn now_nanos() -> u64 {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let epoch = *EPOCH.get_or_init(std::time::Instant::now);
        epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Under loom time stands still: loom does not model the clock, and
    /// periodic work that a real clock started would make executions differ.
    #[cfg(loom)]
    pub(crate) fn now_nanos() -> u64 {
        1
    }

    /// Gives back an index from [`claim_index`].
    pub(crate) fn release_index(i: usize) {
        let mut bits = INDICES.lock().unwrap_or_else(|e| e.into_inner());
        bits[i / 64] &= !(1 << (i % 64));
    }
}
