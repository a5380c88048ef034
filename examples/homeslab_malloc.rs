//! homeslab as a C `malloc` library: build with
//!
//! ```sh
//! RUSTFLAGS="-Z tls-model=initial-exec" cargo +nightly build --release --example homeslab_malloc
//! LD_PRELOAD=target/release/examples/libhomeslab_malloc.so some-program
//! ```
//!
//! The nightly flag makes the thread context an initial-exec thread-local:
//! one load relative to the thread pointer per access instead of a
//! `__tls_get_addr` call.
//! That suits a library loaded at start-up (`LD_PRELOAD`, or linked); one
//! `dlopen`ed later may fail with "cannot allocate memory in static TLS
//! block" once the loader's static TLS surplus is used up. A stable
//! `cargo build` (general-dynamic model) works too, slower.
//!
//! Exports `malloc`, `free`, `calloc`, `realloc`, `reallocarray`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc` and
//! `malloc_usable_size` over [`homeslab::Global`] (and, on 64-bit
//! targets, every replaceable C++ `operator new` and `operator delete`:
//! `homeslab_malloc/cxx.rs`), with C semantics:
//! `free(NULL)` does nothing, `realloc(NULL, n)` is `malloc(n)`,
//! `realloc(p, 0)` frees `p` and returns NULL (as glibc), `malloc(0)`
//! returns a unique minimal block, a size overflow in `calloc` or
//! `reallocarray` is `ENOMEM`, every failure sets `errno` (`ENOMEM`), and
//! an invalid alignment is `EINVAL` (returned by `posix_memalign`, in
//! `errno` for the others).
//!
//! **Pointers that are not ours** (allocated before the library was loaded,
//! e.g. by the dynamic loader, or not from any allocator): found out from
//! the page map without touching their memory. `free` refuses them (the
//! block leaks, the program goes on; counted, see
//! `homeslab_foreign_frees`), `realloc` returns NULL with `errno = ENOMEM`
//! and leaves them as they were, `malloc_usable_size` returns 0.
//!
//! Its own entry points are declared in `include/homeslab.h`:
//! `homeslab_stats`, `homeslab_print_stats`, `homeslab_trim`,
//! `homeslab_foreign_frees`. Read once when the library is loaded (an
//! `.init_array` constructor, with `getenv`, which allocates nothing):
//! `HOMESLAB_SHOW_STATS=1` prints the stats to stderr at exit (a
//! `.fini_array` destructor; formatted on the stack, written with
//! `write`), `HOMESLAB_VERBOSE=1` prints a line for each refused free or
//! realloc (the first [`VERBOSE_LINES`]) and warns of invalid values, and
//! `HOMESLAB_PURGE_DELAY_MS` and `HOMESLAB_HUGE_PAGES` (read by
//! [`homeslab::Global`] itself) set the idle release period and whether
//! large blocks ask for huge pages.
//!
//! The library's own Rust code allocates through the same core
//! (`#[global_allocator]`), never through the C symbols it exports.
//!
//! Linux only (glibc's symbols and `LD_PRELOAD`); elsewhere the library
//! builds empty.
#![cfg(target_os = "linux")]

use core::ffi::c_void;
use core::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use homeslab::Global;

#[cfg(target_pointer_width = "64")]
#[path = "homeslab_malloc/cxx.rs"]
mod cxx;

#[global_allocator]
static GLOBAL: Global = Global;

/// What `malloc` guarantees: alignment for any C type (`max_align_t`).
const MIN_ALIGN: usize = 16;
const PAGE: usize = 4096;

fn set_errno(e: i32) {
    // SAFETY: the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

fn ok_or_enomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `malloc`, `calloc` and the aligned allocations: the inline path, else
/// [`malloc_slow`].
#[inline(always)]
fn alloc(size: usize, align: usize, zero: bool) -> *mut c_void {
    match Global.malloc_inline(size, align, zero) {
        Some(p) => p.cast(),
        None => malloc_slow(size, align, zero),
    }
}

/// [`alloc`] but its inline path, `errno` included. `extern "C"` (no
/// unwind), so that the C entry points, which may not unwind either, jump
/// to it and keep no frame.
#[cold]
#[inline(never)]
extern "C" fn malloc_slow(size: usize, align: usize, zero: bool) -> *mut c_void {
    ok_or_enomem(Global.malloc_after_inline(size, align, zero))
}

/// # Safety
/// C `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, MIN_ALIGN, false)
}

/// # Safety
/// C `free`: `p` is NULL, a live block of this library, or (refused) not
/// ours.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if VERBOSE.load(Ordering::Relaxed) {
        // SAFETY: per the contract.
        return unsafe { free_verbose(p) };
    }
    // SAFETY: per the contract.
    unsafe { Global.free(p.cast()) }
}

/// `free` under `HOMESLAB_VERBOSE`: says so when the free is refused.
/// `extern "C"` (no unwind) so that `free` jumps to it without a frame.
///
/// # Safety
/// As `free`.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_verbose(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let foreign = Global.usable_size(p.cast()) == 0;
    let doubles = Global.double_frees_seen();
    // SAFETY: per the contract.
    unsafe { Global.free(p.cast()) };
    if foreign {
        refusal("free", p, "not a homeslab block");
    } else if Global.double_frees_seen() != doubles {
        // Another thread's refusal at the same moment would count too: the
        // line names this call's pointer.
        refusal("free", p, "double free");
    }
}

/// # Safety
/// C `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => alloc(total, MIN_ALIGN, true),
        None => ok_or_enomem(core::ptr::null_mut()),
    }
}

/// # Safety
/// C `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: forwarded.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // SAFETY: per the contract.
        unsafe { free(p) };
        return core::ptr::null_mut();
    }
    // SAFETY: per the contract.
    let q = unsafe { Global.realloc_unsized(p.cast(), size, MIN_ALIGN) };
    if q.is_null() && VERBOSE.load(Ordering::Relaxed) && Global.usable_size(p.cast()) == 0 {
        refusal("realloc", p, "not a homeslab block");
    }
    ok_or_enomem(q)
}

/// # Safety
/// C `reallocarray`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc(p, total) },
        None => ok_or_enomem(core::ptr::null_mut()),
    }
}

fn valid_align(align: usize) -> bool {
    align.is_power_of_two()
}

/// # Safety
/// C `posix_memalign`: `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !valid_align(align) || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let p = Global.malloc(size, align.max(MIN_ALIGN), false);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: per the contract.
    unsafe { *out = p.cast() };
    0
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    if !valid_align(align) {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    alloc(size, align.max(MIN_ALIGN), false)
}

/// # Safety
/// C11 `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// # Safety
/// `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// # Safety
/// `valloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(PAGE, size)
}

/// # Safety
/// `pvalloc`: the size rounded up to whole pages.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match size.checked_add(PAGE - 1) {
        Some(s) => aligned(PAGE, (s & !(PAGE - 1)).max(PAGE)),
        None => ok_or_enomem(core::ptr::null_mut()),
    }
}

/// # Safety
/// `malloc_usable_size`: 0 for NULL or a pointer that is not ours.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    Global.usable_size(p.cast())
}

/// Frees and reallocs refused so far because the pointer was not ours
/// (homeslab's own symbol: a program can check the library is loaded).
#[no_mangle]
pub extern "C" fn homeslab_foreign_frees() -> u64 {
    Global.stats().foreign_frees
}

/// Gives free memory back to the OS; the bytes released.
#[no_mangle]
pub extern "C" fn homeslab_trim() -> u64 {
    Global.trim()
}

/// `struct homeslab_stats` (`include/homeslab.h`): the process-wide
/// counters of [`homeslab::Stats`], field for field, in this order.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Default)]
pub struct homeslab_stats {
    live_blocks: u64,
    allocs: u64,
    frees: u64,
    mapped_bytes: u64,
    peak_mapped_bytes: u64,
    reserved_bytes: u64,
    released_bytes: u64,
    thread_heaps: u64,
    remote_frees: u64,
    held_blocks: u64,
    corruption_events: u64,
    double_frees: u64,
    foreign_frees: u64,
    overflow_allocs: u64,
    large_blocks: u64,
    large_bytes: u64,
}

impl homeslab_stats {
    fn now() -> Self {
        let s = Global.stats();
        Self {
            live_blocks: s.live_blocks,
            allocs: s.allocs,
            frees: s.frees,
            mapped_bytes: s.mapped_bytes,
            peak_mapped_bytes: s.peak_mapped_bytes,
            reserved_bytes: s.reserved_bytes,
            released_bytes: s.released_bytes,
            thread_heaps: s.thread_heaps,
            remote_frees: s.remote_frees,
            held_blocks: s.held_blocks,
            corruption_events: s.corruption_events,
            double_frees: s.double_frees,
            foreign_frees: s.foreign_frees,
            overflow_allocs: s.overflow_allocs,
            large_blocks: s.large_blocks,
            large_bytes: s.large_bytes,
        }
    }

    /// Name and value of each field, in order.
    fn fields(&self) -> [(&'static str, u64); 16] {
        [
            ("live_blocks", self.live_blocks),
            ("allocs", self.allocs),
            ("frees", self.frees),
            ("mapped_bytes", self.mapped_bytes),
            ("peak_mapped_bytes", self.peak_mapped_bytes),
            ("reserved_bytes", self.reserved_bytes),
            ("released_bytes", self.released_bytes),
            ("thread_heaps", self.thread_heaps),
            ("remote_frees", self.remote_frees),
            ("held_blocks", self.held_blocks),
            ("corruption_events", self.corruption_events),
            ("double_frees", self.double_frees),
            ("foreign_frees", self.foreign_frees),
            ("overflow_allocs", self.overflow_allocs),
            ("large_blocks", self.large_blocks),
            ("large_bytes", self.large_bytes),
        ]
    }
}

/// Fills `*out` with a snapshot of the counters (exact when no other
/// thread is allocating); 0, or -1 if `out` is NULL.
///
/// # Safety
/// `out` is NULL or writable for one `struct homeslab_stats`.
#[no_mangle]
pub unsafe extern "C" fn homeslab_stats(out: *mut homeslab_stats) -> i32 {
    if out.is_null() {
        return -1;
    }
    // SAFETY: per the contract.
    unsafe { out.write(homeslab_stats::now()) };
    0
}

/// Prints the counters to stderr, one `homeslab: name value` line each,
/// without allocating.
#[no_mangle]
pub extern "C" fn homeslab_print_stats() {
    let mut line = Line::new();
    let _ = writeln!(line, "homeslab: stats");
    line.flush();
    for (name, value) in homeslab_stats::now().fields() {
        let _ = writeln!(line, "homeslab: {name} {value}");
        line.flush();
    }
}

/// A line of text on the stack, written to stderr with `write` (no
/// allocation, no stdio lock); what does not fit is cut.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Self {
            buf: [0; 160],
            len: 0,
        }
    }

    fn flush(&mut self) {
        let mut at = 0;
        while at < self.len {
            // SAFETY: the bytes `at..len` of `buf` are initialised.
            let n = unsafe { libc::write(2, self.buf[at..].as_ptr().cast(), self.len - at) };
            if n <= 0 {
                break;
            }
            at += n as usize;
        }
        self.len = 0;
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// `HOMESLAB_VERBOSE=1`: a line on each refused free, and warnings.
static VERBOSE: AtomicBool = AtomicBool::new(false);
/// `HOMESLAB_SHOW_STATS=1`: the stats printed at exit.
static SHOW_STATS: AtomicBool = AtomicBool::new(false);
/// Refusal lines printed so far.
static LINES: AtomicU32 = AtomicU32::new(0);
/// Refusal lines printed at most; one more says the rest are not.
const VERBOSE_LINES: u32 = 100;

/// One refusal line (`call` refused `p` because of `what`), while under
/// the cap.
fn refusal(call: &str, p: *mut c_void, what: &str) {
    let n = LINES.fetch_add(1, Ordering::Relaxed);
    let mut line = Line::new();
    if n < VERBOSE_LINES {
        let _ = writeln!(line, "homeslab: {call}({p:p}) refused: {what}");
    } else if n == VERBOSE_LINES {
        let _ = writeln!(line, "homeslab: more refusals, not shown");
    }
    line.flush();
}

/// `name` (NUL-terminated) from the environment: `Some(true)` for "1",
/// `Some(false)` for "0" or unset, `None` for anything else.
fn env_flag(name: &'static [u8]) -> Option<bool> {
    // SAFETY: `name` is NUL-terminated; `getenv` reads the environment
    // block, which nothing changes while the loader runs constructors.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return Some(false);
    }
    // SAFETY: `getenv` returned a NUL-terminated string.
    match unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes() {
        b"1" => Some(true),
        b"0" => Some(false),
        _ => None,
    }
}

/// Reads the options (the loader runs it when the library is loaded).
extern "C" fn init() {
    let verbose = env_flag(b"HOMESLAB_VERBOSE\0");
    let show = env_flag(b"HOMESLAB_SHOW_STATS\0");
    VERBOSE.store(verbose == Some(true), Ordering::Relaxed);
    SHOW_STATS.store(show == Some(true), Ordering::Relaxed);
    if verbose != Some(true) {
        return;
    }
    let mut line = Line::new();
    if show.is_none() {
        let _ = writeln!(line, "homeslab: HOMESLAB_SHOW_STATS ignored (not 0 or 1)");
        line.flush();
    }
    if Global.purge_delay_ignored() {
        let _ = writeln!(
            line,
            "homeslab: HOMESLAB_PURGE_DELAY_MS ignored (not a whole number of milliseconds)"
        );
        line.flush();
    }
    if Global.huge_pages_ignored() {
        let _ = writeln!(line, "homeslab: HOMESLAB_HUGE_PAGES ignored (not 0 or 1)");
        line.flush();
    }
}

/// Prints the stats if asked (the loader runs it at exit).
extern "C" fn fini() {
    if SHOW_STATS.load(Ordering::Relaxed) {
        homeslab_print_stats();
    }
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;
