//! homeslab as a C `malloc` library: build with
//!
//! ```sh
//! cargo build --release --example homeslab_malloc
//! LD_PRELOAD=target/release/examples/libhomeslab_malloc.so some-program
//! ```
//!
//! Exports `malloc`, `free`, `calloc`, `realloc`, `reallocarray`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc` and
//! `malloc_usable_size` over [`homeslab::Global`], with C semantics:
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
//! The library's own Rust code allocates through the same core
//! (`#[global_allocator]`), never through the C symbols it exports.
//!
//! Linux only (glibc's symbols and `LD_PRELOAD`); elsewhere the library
//! builds empty.
#![cfg(target_os = "linux")]

use core::ffi::c_void;

use homeslab::Global;

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

/// # Safety
/// C `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    ok_or_enomem(Global.malloc(size, MIN_ALIGN, false))
}

/// # Safety
/// C `free`: `p` is NULL, a live block of this library, or (refused) not
/// ours.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: per the contract.
    unsafe { Global.free(p.cast()) }
}

/// # Safety
/// C `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => ok_or_enomem(Global.malloc(total, MIN_ALIGN, true)),
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
        unsafe { Global.free(p.cast()) };
        return core::ptr::null_mut();
    }
    // SAFETY: per the contract.
    ok_or_enomem(unsafe { Global.realloc_unsized(p.cast(), size, MIN_ALIGN) })
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
    ok_or_enomem(Global.malloc(size, align.max(MIN_ALIGN), false))
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
