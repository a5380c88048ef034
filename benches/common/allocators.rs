//! The untyped allocators under test, behind `allocator_api2::alloc::Allocator`
//! (the 0.2 line, which hashbrown's `allocator-api2` feature and homeslab's
//! `SlabAlloc` use), so that every collection workload is written once and
//! instantiated per allocator.
//!
//! The peers are `GlobalAlloc`s (the system allocator, mimalloc, jemalloc),
//! none of which is the global allocator of the bench binaries: each is
//! wrapped in [`ViaGlobal`], which calls its `GlobalAlloc` impl directly.
//!
//! The list of subjects is [`each_allocator`]: one line per allocator.
//! These benches name the `allocator-api2` dev-dependency directly; any 0.2.x
//! that homeslab depends on (and re-exports as `homeslab::allocator_api2`)
//! resolves to the same crate, so `SlabAlloc`'s impl is this `Allocator`.

use core::ptr::NonNull;
use std::alloc::{GlobalAlloc, Layout};

pub use allocator_api2::alloc::{AllocError, Allocator};

/// What a collection workload needs of an allocator: the `Allocator` trait,
/// cheap handles (`Clone`) and use from any thread (`Send + Sync`).
pub trait AllocSubject: Allocator + Clone + Send + Sync + 'static {}

impl<A: Allocator + Clone + Send + Sync + 'static> AllocSubject for A {}

/// Receives each allocator in turn, by value (generic, so each call is
/// monomorphised).
pub trait AllocVisitor {
    /// Called once per subject; `name` is its report name.
    fn visit<A: AllocSubject>(&mut self, name: &'static str, a: A);
}

/// Builds every allocator (fresh, in report order) and hands each to `v`.
/// One more allocator is one more line here.
pub fn each_allocator<V: AllocVisitor>(v: &mut V) {
    v.visit("homeslab", homeslab::SlabAlloc::new());
    // The same allocator by reference: collections then carry a `&'static`
    // (cloned by copy) instead of the `Arc` handle (two atomic operations
    // per collection made and dropped).
    static SHARED: std::sync::OnceLock<homeslab::SlabAlloc> = std::sync::OnceLock::new();
    v.visit("homeslab-ref", SHARED.get_or_init(homeslab::SlabAlloc::new));
    v.visit("system", ViaGlobal::<std::alloc::System>::new());
    v.visit("mimalloc", ViaGlobal::<mimalloc::MiMalloc>::new());
    v.visit("jemalloc", ViaGlobal::<tikv_jemallocator::Jemalloc>::new());
}

/// The subjects' names, in [`each_allocator`]'s order.
pub fn names() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    impl AllocVisitor for Names {
        fn visit<A: AllocSubject>(&mut self, name: &'static str, _: A) {
            self.0.push(name);
        }
    }
    let mut n = Names(Vec::new());
    each_allocator(&mut n);
    n.0
}

/// A `GlobalAlloc` without state: every value of it is the same allocator,
/// so [`ViaGlobal`] can make one out of nothing (`mimalloc::MiMalloc` is not
/// `Clone`).
pub trait Stateless: GlobalAlloc + Send + Sync + 'static {
    /// The allocator.
    const IT: Self;
}

impl Stateless for std::alloc::System {
    const IT: Self = std::alloc::System;
}

impl Stateless for mimalloc::MiMalloc {
    const IT: Self = mimalloc::MiMalloc;
}

impl Stateless for tikv_jemallocator::Jemalloc {
    const IT: Self = tikv_jemallocator::Jemalloc;
}

/// A `GlobalAlloc` as an `Allocator`: `allocate` / `deallocate` / `grow` /
/// `shrink` call its `alloc` / `dealloc` / `realloc` directly (the same
/// shape as allocator-api2's own `Global`). Zero-size layouts never reach
/// the allocator: they get a dangling pointer aligned to the layout.
/// Zero-sized, like the allocators it wraps.
pub struct ViaGlobal<G>(G);

impl<G: Stateless> ViaGlobal<G> {
    /// The wrapper.
    pub fn new() -> Self {
        Self(G::IT)
    }
}

impl<G: Stateless> Clone for ViaGlobal<G> {
    fn clone(&self) -> Self {
        Self(G::IT)
    }
}

impl<G: Stateless> Default for ViaGlobal<G> {
    fn default() -> Self {
        Self::new()
    }
}

/// A dangling pointer aligned to `align` (what zero-size layouts get).
#[inline(always)]
fn dangling(align: usize) -> NonNull<u8> {
    // `align` is a power of two, so not zero. (`ptr::without_provenance_mut`
    // would say this better, but it is newer than the crate's rust-version.)
    match NonNull::new(align as *mut u8) {
        Some(p) => p,
        None => unreachable!("alignments are non-zero"),
    }
}

impl<G: Stateless> ViaGlobal<G> {
    #[inline(always)]
    fn alloc_impl(&self, layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(NonNull::slice_from_raw_parts(dangling(layout.align()), 0));
        }
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe {
            if zeroed {
                self.0.alloc_zeroed(layout)
            } else {
                self.0.alloc(layout)
            }
        };
        let p = NonNull::new(p).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    /// `grow` and `shrink`: `realloc` when the alignment stays, else a new
    /// block, a copy and a free.
    ///
    /// # Safety
    ///
    /// As for `Allocator::grow` (`new.size() >= old.size()`) or
    /// `Allocator::shrink` (`new.size() <= old.size()`).
    #[inline(always)]
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero_tail: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.alloc_impl(new, zero_tail);
        }
        if new.size() == 0 {
            // A shrink to nothing.
            // SAFETY: `ptr` is a live block of this allocator with layout
            // `old` (the caller's contract), of non-zero size.
            unsafe { self.0.dealloc(ptr.as_ptr(), old) };
            return Ok(NonNull::slice_from_raw_parts(dangling(new.align()), 0));
        }
        if old.align() == new.align() {
            // SAFETY: `ptr` is a live block with layout `old` (the caller's
            // contract); `new.size()` is non-zero and, being a `Layout`'s
            // size at `old`'s alignment, does not overflow `isize` when
            // rounded up.
            let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
            let p = NonNull::new(p).ok_or(AllocError)?;
            if zero_tail && new.size() > old.size() {
                // SAFETY: the block has `new.size()` bytes; the tail past
                // `old.size()` is in it.
                unsafe {
                    p.as_ptr()
                        .add(old.size())
                        .write_bytes(0, new.size() - old.size())
                };
            }
            return Ok(NonNull::slice_from_raw_parts(p, new.size()));
        }
        let fresh = self.alloc_impl(new, zero_tail)?;
        // SAFETY: both blocks are live and distinct and hold at least the
        // smaller size; then the old one (layout `old`) is freed.
        unsafe {
            core::ptr::copy_nonoverlapping(
                ptr.as_ptr(),
                fresh.as_ptr().cast::<u8>(),
                old.size().min(new.size()),
            );
            self.0.dealloc(ptr.as_ptr(), old);
        }
        Ok(fresh)
    }
}

// SAFETY: blocks come from `G`'s `GlobalAlloc` (or are dangling, for zero
// sizes, and never freed), stay valid until `deallocate`d with their layout,
// and any value of a `Stateless` `G` is the same allocator, so clones free
// each other's blocks; `resize` keeps the contents as `grow`/`shrink` must.
unsafe impl<G: Stateless> Allocator for ViaGlobal<G> {
    #[inline(always)]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.alloc_impl(layout, false)
    }

    #[inline(always)]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.alloc_impl(layout, true)
    }

    #[inline(always)]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: a live block of this allocator with this layout (the
            // caller's contract), of non-zero size, so it came from `G`.
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    #[inline(always)]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new.size() >= old.size());
        // SAFETY: `grow`'s contract is `resize`'s.
        unsafe { self.resize(ptr, old, new, false) }
    }

    #[inline(always)]
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new.size() >= old.size());
        // SAFETY: `grow_zeroed`'s contract is `resize`'s.
        unsafe { self.resize(ptr, old, new, true) }
    }

    #[inline(always)]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new.size() <= old.size());
        // SAFETY: `shrink`'s contract is `resize`'s.
        unsafe { self.resize(ptr, old, new, false) }
    }
}
