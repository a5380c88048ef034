//! C++'s `operator new` and `operator delete` (every replaceable form:
//! plain, array, sized, aligned, `nothrow`), so that a C++ program's
//! allocations reach homeslab without the C++ runtime's wrappers around
//! `malloc` and `free` (a call, a loop and a jump each way).
//!
//! A failed `new` is handed to the next definition of the same operator
//! (the C++ runtime's, found with `dlsym(RTLD_NEXT)` on the first
//! failure): it allocates through this library's `malloc` again, calls
//! the program's new-handler, and throws `std::bad_alloc` (or, `nothrow`,
//! returns null) as the standard says — which Rust cannot do itself.
//!
//! The names are the Itanium C++ ABI's manglings for a 64-bit `size_t`.

use core::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

use homeslab::Global;

use super::{free, MIN_ALIGN};

/// Where the next definition of one operator was found (null: not yet
/// looked up).
struct Next {
    name: &'static CStr,
    at: AtomicPtr<c_void>,
}

impl Next {
    const fn new(name: &'static CStr) -> Self {
        Self {
            name,
            at: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The next definition. Aborts if there is none: no C++ runtime in
    /// the process, so no C++ caller of this operator could exist.
    fn get(&self) -> *mut c_void {
        let mut p = self.at.load(Ordering::Acquire);
        if p.is_null() {
            // SAFETY: a NUL-terminated symbol name; RTLD_NEXT looks in the
            // objects loaded after this library.
            p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast::<c_char>()) };
            if p.is_null() {
                std::process::abort();
            }
            self.at.store(p, Ordering::Release);
        }
        p
    }
}

/// The next definition of the `operator new` in `next` with its
/// arguments: `align` for the aligned forms, `nothrow` (the tag, never
/// null) for the `nothrow` ones — which together name the form, so its
/// signature.
#[cold]
#[inline(never)]
fn next_new(next: &Next, size: usize, align: Option<usize>, nothrow: *const c_void) -> *mut c_void {
    type P = *mut c_void;
    let f = next.get();
    // SAFETY: the C++ runtime's definition of this very operator, of the
    // signature its arguments tell (the tag is only passed on).
    unsafe {
        match (align, nothrow.is_null()) {
            (None, true) => {
                core::mem::transmute::<P, unsafe extern "C-unwind" fn(usize) -> P>(f)(size)
            }
            (None, false) => core::mem::transmute::<
                P,
                unsafe extern "C-unwind" fn(usize, *const c_void) -> P,
            >(f)(size, nothrow),
            (Some(a), true) => core::mem::transmute::<
                P,
                unsafe extern "C-unwind" fn(usize, usize) -> P,
            >(f)(size, a),
            (Some(a), false) => core::mem::transmute::<
                P,
                unsafe extern "C-unwind" fn(usize, usize, *const c_void) -> P,
            >(f)(size, a, nothrow),
        }
    }
}

/// `new` of `size` bytes (0 is a unique minimal block), else the next
/// definition's answer.
#[inline(always)]
fn new(size: usize, next: &'static Next, nothrow: *const c_void) -> *mut c_void {
    match Global.malloc_inline(size, MIN_ALIGN, false) {
        Some(p) => p.cast(),
        None => new_slow(size, next, nothrow),
    }
}

/// [`new`] but its inline path. `extern "C-unwind"` (as the operators,
/// which jump to it and keep no frame): the next definition may throw.
#[cold]
#[inline(never)]
extern "C-unwind" fn new_slow(
    size: usize,
    next: &'static Next,
    nothrow: *const c_void,
) -> *mut c_void {
    let p = Global.malloc_after_inline(size, MIN_ALIGN, false);
    if p.is_null() {
        return next_new(next, size, None, nothrow);
    }
    p.cast()
}

/// `new` aligned to `align` (a power of two, as C++ requires of
/// `align_val_t`).
#[inline(always)]
fn new_aligned(size: usize, align: usize, next: &Next, nothrow: *const c_void) -> *mut c_void {
    let p = if align.is_power_of_two() {
        Global.malloc(size, align.max(MIN_ALIGN), false)
    } else {
        core::ptr::null_mut()
    };
    if p.is_null() {
        return next_new(next, size, Some(align), nothrow);
    }
    p.cast()
}

macro_rules! operator_new {
    ($($name:ident),*) => {$(
        /// # Safety
        /// A C++ `operator new`.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(size: usize) -> *mut c_void {
            static NEXT: Next = Next::new(
                // SAFETY: the literal ends in its only NUL.
                unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) },
            );
            new(size, &NEXT, core::ptr::null())
        }
    )*};
}

macro_rules! operator_new_nothrow {
    ($($name:ident),*) => {$(
        /// # Safety
        /// A C++ `operator new(size_t, const std::nothrow_t&)`.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(size: usize, tag: *const c_void) -> *mut c_void {
            static NEXT: Next = Next::new(
                // SAFETY: the literal ends in its only NUL.
                unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) },
            );
            // The tag is a reference: never null.
            new(size, &NEXT, tag)
        }
    )*};
}

macro_rules! operator_new_aligned {
    ($($name:ident),*) => {$(
        /// # Safety
        /// A C++ `operator new(size_t, std::align_val_t)`.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(size: usize, align: usize) -> *mut c_void {
            static NEXT: Next = Next::new(
                // SAFETY: the literal ends in its only NUL.
                unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) },
            );
            new_aligned(size, align, &NEXT, core::ptr::null())
        }
    )*};
}

macro_rules! operator_new_aligned_nothrow {
    ($($name:ident),*) => {$(
        /// # Safety
        /// A C++ `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(size: usize, align: usize, tag: *const c_void) -> *mut c_void {
            static NEXT: Next = Next::new(
                // SAFETY: the literal ends in its only NUL.
                unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) },
            );
            new_aligned(size, align, &NEXT, tag)
        }
    )*};
}

operator_new!(_Znwm, _Znam);
operator_new_nothrow!(_ZnwmRKSt9nothrow_t, _ZnamRKSt9nothrow_t);
operator_new_aligned!(_ZnwmSt11align_val_t, _ZnamSt11align_val_t);
operator_new_aligned_nothrow!(
    _ZnwmSt11align_val_tRKSt9nothrow_t,
    _ZnamSt11align_val_tRKSt9nothrow_t
);

/// Every `operator delete` is `free`: a block knows its size and
/// alignment, so the sized and aligned forms' arguments are not needed
/// (a pointer that is not ours is refused and counted, as by `free`).
macro_rules! operator_delete {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        /// # Safety
        /// A C++ `operator delete`: `p` is null or a live block.
        #[no_mangle]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: per the contract.
            unsafe { free(p) }
        }
    )*};
}

operator_delete!(
    _ZdlPv(),
    _ZdaPv(),
    _ZdlPvm(size: usize),
    _ZdaPvm(size: usize),
    _ZdlPvRKSt9nothrow_t(tag: *const c_void),
    _ZdaPvRKSt9nothrow_t(tag: *const c_void),
    _ZdlPvSt11align_val_t(align: usize),
    _ZdaPvSt11align_val_t(align: usize),
    _ZdlPvmSt11align_val_t(size: usize, align: usize),
    _ZdaPvmSt11align_val_t(size: usize, align: usize),
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, tag: *const c_void),
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, tag: *const c_void),
);
