//! [`Global`]: homeslab as the process's allocator — one process-wide
//! [`SlabAlloc`] core behind `#[global_allocator]` (and behind the C
//! `malloc` library, `examples/homeslab_malloc.rs`).
//!
//! - **Bootstrap.** The core is built on the first call (the runtime
//!   allocates before `main`): one thread wins a compare-and-swap and
//!   builds it in meta memory, others wait for it; building allocates
//!   nothing through the global allocator (every pool core, registry and
//!   table lives in meta memory), and a call into the allocator from the
//!   builder itself gets null rather than a deadlock. Then the `fork`
//!   handlers are registered.
//! - **Frees without trust in the layout.** A block's class is read from
//!   the page map ([`crate::pagemap`]), not from the layout, so `realloc`
//!   may keep a block in place when the new size is at least half of its
//!   class, and C's `free(p)` needs no size.
//! - **fork** (Unix; [`fork`]). `pthread_atfork` handlers take every lock
//!   of the allocator before the fork (each class's magazine-sweep and
//!   tier locks, the budget's member list, each class's page source, the
//!   large table, the registry ids, the meta allocator, in lock order) and
//!   release them
//!   after it, in the parent and in the child: the child never inherits a
//!   lock held by a thread that does not exist in it.
//! - **Out of memory** is a null pointer, never a panic or an abort.
//! - **Options** (Unix): `HOMESLAB_PURGE_DELAY_MS` sets the core's
//!   `release_after` ([`purge_delay_env`]), `HOMESLAB_HUGE_PAGES=0` turns
//!   its `huge_pages` off ([`huge_pages_env`]); both read with `getenv`
//!   (which neither allocates nor locks) when the core is built.

use core::alloc::{GlobalAlloc, Layout};

use crate::meta;
use crate::slab_alloc::{SlabAlloc, Tagged};
use crate::stats::Stats;
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// homeslab as the global allocator: a unit struct over one process-wide
/// [`SlabAlloc`] core, built on first use.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: homeslab::Global = homeslab::Global;
///
/// let v: Vec<u64> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u64>(), 499_500);
/// assert!(homeslab::Global.stats().allocs > 0);
/// ```
///
/// Nothing on its paths calls the global allocator: thread contexts are
/// `const` thread-locals without destructors, a thread's exit runs from a
/// `pthread` key destructor (an `FlsAlloc` callback on Windows), and all
/// bookkeeping lives in memory mapped for it. Allocation works before
/// `main`, in thread-local destructors, after `main` returns (`atexit`),
/// and on Unix in a child after `fork`.
///
/// On Unix the environment variable `HOMESLAB_PURGE_DELAY_MS` sets the
/// core's idle release period in milliseconds (`release_after`; default
/// 5000, `0`: off), and `HOMESLAB_HUGE_PAGES` (`1`, the default, or `0`)
/// whether its large blocks ask for huge pages
/// ([`SlabAllocBuilder::huge_pages`](crate::SlabAllocBuilder::huge_pages)),
/// read once when the core is built; an invalid value is ignored
/// ([`Global::purge_delay_ignored`], [`Global::huge_pages_ignored`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

/// The core, once built.
static CORE: AtomicPtr<SlabAlloc> = AtomicPtr::new(core::ptr::null_mut());
/// 0: not built; 1: being built; 2: built; 3: could not be built.
static STATE: AtomicUsize = AtomicUsize::new(0);
/// The thread building the core ([`crate::sync::exit::thread_id`]).
static BUILDER: AtomicUsize = AtomicUsize::new(0);

const UNBUILT: usize = 0;
const BUILDING: usize = 1;
const BUILT: usize = 2;
const FAILED: usize = 3;

fn me() -> usize {
    crate::sync::exit::thread_id()
}

/// The core: one load once built.
#[inline(always)]
fn core() -> Option<&'static SlabAlloc> {
    built().or_else(build)
}

/// The process-wide core if it is built (one load).
#[inline(always)]
fn built() -> Option<&'static SlabAlloc> {
    let p = CORE.load(Ordering::Acquire);
    // SAFETY: published once built, never freed or moved.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// [`GlobalAlloc::alloc`] but its inline fast path.
#[cold]
#[inline(never)]
fn alloc_slow(layout: Layout, zero: bool) -> *mut u8 {
    match core() {
        Some(c) => c.alloc_after_inline(layout.size(), layout.align(), zero),
        None => core::ptr::null_mut(),
    }
}

/// [`Global::malloc`] but its inline fast path.
#[cold]
#[inline(never)]
fn malloc_slow(size: usize, align: usize, zero: bool) -> *mut u8 {
    match core() {
        Some(c) => c.alloc_after_inline(size, align, zero),
        None => core::ptr::null_mut(),
    }
}

/// [`Global::free`] but a class block: a large block, or a pointer that is
/// not ours (refused and counted; before the core is built nothing is
/// ours, and building it counts the refusal). `extern "C"` as the free
/// path's other out-of-line parts (`pool_core/free.rs`).
#[cold]
#[inline(never)]
extern "C" fn free_slow(ptr: *mut u8) {
    // Null comes here (the page map has no region at 0): nothing to free,
    // and no core to build for it.
    if ptr.is_null() {
        return;
    }
    if let Some(c) = core() {
        c.free_raw(ptr);
    }
}

#[cold]
#[inline(never)]
fn build() -> Option<&'static SlabAlloc> {
    loop {
        match STATE.compare_exchange(UNBUILT, BUILDING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(BUILT) => {
                // SAFETY: published before `BUILT`, never freed.
                return Some(unsafe { &*CORE.load(Ordering::Acquire) });
            }
            Err(FAILED) => return None,
            // A call from inside the build itself: no core yet.
            Err(_) if BUILDER.load(Ordering::Relaxed) == me() => return None,
            Err(_) => std::thread::yield_now(),
        }
    }
    BUILDER.store(me(), Ordering::Relaxed);
    let mut builder = SlabAlloc::builder();
    match purge_delay_env() {
        EnvValue::Unset => {}
        EnvValue::Set(delay) => builder = builder.release_after(delay),
        EnvValue::Invalid => PURGE_DELAY_IGNORED.store(true, Ordering::Relaxed),
    }
    match huge_pages_env() {
        EnvValue::Unset => {}
        EnvValue::Set(on) => builder = builder.huge_pages(on),
        EnvValue::Invalid => HUGE_PAGES_IGNORED.store(true, Ordering::Relaxed),
    }
    let built = builder.build_global().ok().and_then(|a| {
        let layout = Layout::new::<SlabAlloc>();
        let at = meta::alloc(layout, false)?.as_ptr().cast::<SlabAlloc>();
        a.tag_pages();
        // SAFETY: fresh meta memory for one `SlabAlloc`.
        unsafe { at.write(a) };
        Some(at)
    });
    BUILDER.store(0, Ordering::Relaxed);
    let Some(at) = built else {
        STATE.store(FAILED, Ordering::Release);
        return None;
    };
    CORE.store(at, Ordering::Release);
    STATE.store(BUILT, Ordering::Release);
    fork::register();
    // SAFETY: just published, never freed.
    Some(unsafe { &*at })
}

mod fork;

/// True if `HOMESLAB_PURGE_DELAY_MS` was set but not valid when the core
/// was built (it was then ignored).
static PURGE_DELAY_IGNORED: AtomicBool = AtomicBool::new(false);
/// True if `HOMESLAB_HUGE_PAGES` was set but not valid when the core was
/// built (it was then ignored).
static HUGE_PAGES_IGNORED: AtomicBool = AtomicBool::new(false);

/// What the environment says.
enum EnvValue<T> {
    Unset,
    Set(T),
    Invalid,
}

/// `HOMESLAB_PURGE_DELAY_MS`: a whole number of milliseconds, the idle
/// period after which held blocks and cached memory go back (the
/// builder's `release_after`); `0` turns the idle release off. Anything
/// else is invalid.
fn purge_delay_env() -> EnvValue<Option<core::time::Duration>> {
    match env_var(b"HOMESLAB_PURGE_DELAY_MS\0") {
        None => EnvValue::Unset,
        Some(v) => match parse_ms(v) {
            Some(0) => EnvValue::Set(None),
            Some(ms) => EnvValue::Set(Some(core::time::Duration::from_millis(ms))),
            None => EnvValue::Invalid,
        },
    }
}

/// `HOMESLAB_HUGE_PAGES`: `1` or `0`, whether large blocks ask for huge
/// pages (the builder's `huge_pages`). Anything else is invalid.
fn huge_pages_env() -> EnvValue<bool> {
    match env_var(b"HOMESLAB_HUGE_PAGES\0") {
        None => EnvValue::Unset,
        Some(b"1") => EnvValue::Set(true),
        Some(b"0") => EnvValue::Set(false),
        Some(_) => EnvValue::Invalid,
    }
}

/// A whole number of milliseconds: 1 to 12 decimal digits (no sign, no
/// blanks).
fn parse_ms(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 12 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// The value of the environment variable `name` (NUL-terminated), without
/// allocating: glibc's and the BSDs' `getenv` only scan `environ`.
#[cfg(all(unix, not(miri)))]
fn env_var(name: &'static [u8]) -> Option<&'static [u8]> {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is NUL-terminated. The result, if not null, points
    // into the environment block, which nothing in this crate changes; a
    // program that calls `setenv` on the variable while the core is being
    // built races with this read, as with any `getenv`.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `getenv` returned a NUL-terminated string. It stays valid
    // until the program changes the variable; the callers
    // (`purge_delay_env`, `huge_pages_env`, while the core is built) parse
    // it at once.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// No environment under Miri, nor on Windows.
#[cfg(not(all(unix, not(miri))))]
fn env_var(_name: &'static [u8]) -> Option<&'static [u8]> {
    None
}

// SAFETY: blocks come from the core and stay valid until freed; `dealloc`
// and `realloc` find a block's class from its address (the page map), so
// any layout the caller holds is fine; alignment is that of the layout
// (classes and large mappings honour it); failure is null.
unsafe impl GlobalAlloc for Global {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // A class block on a thread that owns its class's heap: inline.
        if let Some((p, _)) = SlabAlloc::alloc_global_inline(layout.size(), layout.align()) {
            return p;
        }
        alloc_slow(layout, false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.malloc(layout.size(), layout.align(), true)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: per the trait's contract.
        unsafe { self.free(ptr) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match core() {
            // SAFETY: per the trait's contract, `ptr` is a block of ours
            // that the caller holds, and `new_size` is not 0.
            Some(c) => unsafe { c.realloc_raw(ptr, layout.align(), Some(layout.size()), new_size) },
            None => core::ptr::null_mut(),
        }
    }
}

/// The C library's entry points (`examples/homeslab_malloc.rs`): sizes and
/// frees without a layout. A pointer that is not homeslab's is never read
/// or written: `free` refuses it (counted in [`Stats::foreign_frees`]),
/// `realloc_unsized` returns null and leaves it alone, and `usable_size`
/// says 0.
impl Global {
    /// A snapshot of the process-wide core's counters (see
    /// [`SlabAlloc::stats`]).
    pub fn stats(&self) -> Stats {
        core().map(SlabAlloc::stats).unwrap_or_default()
    }

    /// True if `HOMESLAB_PURGE_DELAY_MS` held an invalid value when the
    /// core was built (it was ignored). Builds the core if need be.
    pub fn purge_delay_ignored(&self) -> bool {
        let _ = core();
        PURGE_DELAY_IGNORED.load(Ordering::Relaxed)
    }

    /// True if `HOMESLAB_HUGE_PAGES` held an invalid value (not `0` or
    /// `1`) when the core was built (it was ignored). Builds the core if
    /// need be.
    pub fn huge_pages_ignored(&self) -> bool {
        let _ = core();
        HUGE_PAGES_IGNORED.load(Ordering::Relaxed)
    }

    /// Double frees refused so far by every pool and allocator of the
    /// process (one load; [`Stats::double_frees`] counts per allocator).
    pub fn double_frees_seen(&self) -> u64 {
        crate::sync::unmodelled::double_frees()
    }

    /// Gives memory back to the OS (see [`SlabAlloc::trim`]); the bytes
    /// released.
    pub fn trim(&self) -> u64 {
        core().map_or(0, SlabAlloc::trim)
    }

    /// `size` bytes (at least 1) aligned to `align` (a power of two), zeroed
    /// if `zero`; null when out of memory or the request is invalid.
    #[inline(always)]
    pub fn malloc(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        match self.malloc_inline(size, align, zero) {
            Some(p) => p,
            None => malloc_slow(size, align, zero),
        }
    }

    /// [`Global::malloc`]'s inline path alone: a block of the calling
    /// thread's heap of a class, or `None` for the rest, which
    /// [`Global::malloc_after_inline`] serves. Calls nothing, so that a
    /// caller whose own out-of-line path holds the rest (a C `malloc`
    /// setting `errno`, a C++ `operator new` calling the next one) keeps
    /// no stack frame on its fast path.
    #[inline(always)]
    pub fn malloc_inline(&self, size: usize, align: usize, zero: bool) -> Option<*mut u8> {
        // A class block on a thread that owns its class's heap.
        let (p, fresh) = SlabAlloc::alloc_global_inline(size, align)?;
        if zero && !fresh {
            // SAFETY: the block is ours, at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        Some(p)
    }

    /// [`Global::malloc`] after [`Global::malloc_inline`] returned `None`
    /// for the same request (it does not try that path again).
    #[inline(always)]
    pub fn malloc_after_inline(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        malloc_slow(size, align, zero)
    }

    /// Frees `ptr` (null: nothing). A pointer that is not a live block of
    /// this allocator is refused and counted, never read.
    ///
    /// # Safety
    /// If `ptr` is a block of this allocator, the caller holds it and does
    /// not use it after.
    #[inline(always)]
    pub unsafe fn free(&self, ptr: *mut u8) {
        // A class block: inline, found by the page map alone. Null is
        // untagged and goes to `free_slow`, which ignores it.
        if SlabAlloc::free_tagged(ptr) != Tagged::Freed {
            free_slow(ptr);
        }
    }

    /// Resizes `ptr` (not null) to `size` bytes (at least 1) aligned to
    /// `align`, keeping its contents up to the smaller size: in place when
    /// the size still fits the block's class and is not below half of it;
    /// large blocks grow with `mremap` where they can; else a copy. Null
    /// when out of memory or `ptr` is not ours; the old block is then left
    /// as it was.
    ///
    /// # Safety
    /// As [`Global::free`].
    pub unsafe fn realloc_unsized(&self, ptr: *mut u8, size: usize, align: usize) -> *mut u8 {
        match core() {
            // SAFETY: per the contract.
            Some(c) => unsafe { c.realloc_raw(ptr, align, None, size.max(1)) },
            None => core::ptr::null_mut(),
        }
    }

    /// The usable bytes of the block at `ptr`: its class size, or its large
    /// mapping's length; 0 for null or a pointer that is not ours.
    pub fn usable_size(&self, ptr: *const u8) -> usize {
        use crate::slab_alloc::Home;
        if ptr.is_null() {
            return 0;
        }
        match core().map(|c| c.home(ptr.cast_mut())) {
            Some(Home::Class(c)) => crate::class::SIZES[c],
            Some(Home::Large(len)) => len,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn purge_delays_parse_as_whole_milliseconds() {
        assert_eq!(parse_ms(b"0"), Some(0));
        assert_eq!(parse_ms(b"250"), Some(250));
        assert_eq!(parse_ms(b"999999999999"), Some(999_999_999_999));
        for bad in [&b""[..], b"-1", b"1.5", b" 5", b"5ms", b"1000000000000"] {
            assert_eq!(parse_ms(bad), None, "{bad:?}");
        }
    }
}
