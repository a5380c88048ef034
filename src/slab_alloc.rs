//! The untyped, size-classed allocator: [`SlabAlloc`], behind
//! allocator-api2's `Allocator` (the 0.2 line that hashbrown and bumpalo
//! use), on the same core as [`Pool`](crate::Pool).
//!
//! All the size classes ([`crate::class`]) are served by one pool core: a
//! thread takes one heap set for them all (one thread-context entry, one
//! exit hook), a slab factory per class, one overflow tier, one byte
//! budget — with the core's remote frees held in magazines and sent home
//! grouped by slab, hardening, refusals, trim and idle release. Large blocks ([`crate::large`]) are
//! spans of an arena, or mappings of their own when larger than 32 MiB.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError as ApiAllocError, Allocator};

use crate::class::{self, SlotDiv, CLASSES};
use crate::error::AllocError;
use crate::large::Large;
use crate::meta::Arc;
use crate::pool_core::{alloc_owned, PoolCore};
use crate::slab::{Resolved, Shape, Slab, FRESH};
use crate::source::Budget;
use crate::stats::Stats;
use crate::sync::{AtomicU64, Ordering};
use crate::thread::EntryAt;

mod builder;
#[cfg(not(loom))]
mod raw;
pub use builder::SlabAllocBuilder;
#[cfg(not(loom))]
pub(crate) use raw::{Home, Tagged};

/// A size-classed allocator for any layout: `Vec`, `String`, `HashMap` and
/// friends through [`allocator_api2`](crate::allocator_api2), with
/// per-thread owner heaps and lock-free frees from any thread.
///
/// Cheap to clone (an `Arc`); every clone is the same allocator, and a block
/// may be freed through any clone, on any thread. Blocks stay valid until
/// they are freed, even after the last clone is gone. A clone and its drop
/// are two atomic read-modify-writes: collections made and dropped in a hot
/// loop can hold `&SlabAlloc` instead (allocator-api2 implements
/// `Allocator` for references), or a `&'static SlabAlloc` from
/// `Box::leak`, which copy a pointer.
///
/// - **Classes**: 16-byte steps to 128 bytes, then four per doubling to
///   256 KiB (52 classes; at most 25% rounding above 128 bytes). A class's
///   blocks are aligned to the largest power of two dividing its size (up
///   to 4096); a stronger alignment takes the first class that has it.
///   `allocate` returns the class size as the slice length. Each class's
///   slabs are regions aligned to their size: 16 to 64 KiB for the
///   classes up to 7 KiB, then 16 times the power of two at or below the
///   class size (128 KiB for 8–14 KiB, 512 KiB for 32–56 KiB, 1 MiB for
///   64–112 KiB, 2 MiB for 128–224 KiB, 4 MiB for 256 KiB), 9 to 15
///   blocks each. A region's pages become resident as its blocks are
///   used; its whole size counts in `mapped_bytes` (the least `max_bytes`
///   is one 4 MiB region). Each thread keeps up to `retained_empty_slabs`
///   empty slabs per class (default 4: up to 16 MiB for the 256 KiB class)
///   until it calls `trim()` or exits; further empty slabs go back to
///   their class's page source, which gives their pages to the OS once
///   idle for `release_after` (or on `trim()`). The idle release is
///   allocator-wide: the slow path of any class (taking or returning a
///   slab) or any large operation looks for idle memory in every class and
///   the large arena, at most twice a period, so what one class freed goes
///   back while the program uses only other sizes.
/// - **Large blocks** (above 256 KiB, or aligned above 4096): up to 32 MiB,
///   spans of an arena of 64 MiB chunks, reused and coalesced when freed,
///   grown and shrunk in place where the next span is free; freed spans
///   keep their pages until unused for `release_after` (released by the
///   same allocator-wide idle release) or `trim()` (at once if `max_bytes`
///   is set), at most a quarter of the live large bytes (and at least
///   64 MiB) of them: past that, the spans free longest are purged. Larger
///   blocks get a mapping each, unmapped when freed, resized with `mremap`
///   where the OS has it. Both ask Linux for transparent huge pages
///   ([`SlabAllocBuilder::huge_pages`]).
/// - **Refusals**: a `deallocate` of a pointer that is not a live block of
///   this allocator (another allocator's, a double free, a corrupted one)
///   is refused and counted in [`Stats::double_frees`] or
///   [`Stats::foreign_frees`], never acted on. The region a class
///   pointer masks to (16 KiB–4 MiB, by class) must be readable memory (the
///   header check reads it); large pointers are looked up, never read.
///
/// ```
/// use homeslab::allocator_api2::vec::Vec;
/// use homeslab::SlabAlloc;
///
/// let a = SlabAlloc::new();
/// let mut v = Vec::new_in(a.clone());
/// v.extend_from_slice(b"hello");
/// let t = std::thread::spawn(move || v.len()); // freed on another thread
/// assert_eq!(t.join().unwrap(), 5);
/// assert_eq!(a.stats().live_blocks, 0);
/// ```
#[derive(Clone)]
pub struct SlabAlloc {
    inner: Arc<Inner>,
}

/// A class's geometry as its paths need it, the same in every allocator:
/// a constant ([`GEOMS`]), so the process-wide allocator's paths read it
/// without reaching their core.
#[derive(Clone, Copy)]
pub(crate) struct Geom {
    shape: Shape,
    /// `!(region size - 1)`: finds a block's slab.
    mask: usize,
    /// The header check's value for this class ([`Slab::magic_tag`]).
    tag: usize,
    /// Finds a block's slot ([`SlotDiv::slot`]).
    div: SlotDiv,
}

/// Every class's [`Geom`], one to a line (so that the index is a shift).
static GEOMS: [Line<Geom>; CLASSES] = geoms();

/// A value alone on its cache line.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Line<T>(T);

const fn geoms() -> [Line<Geom>; CLASSES] {
    const fn of(c: usize) -> Geom {
        let g = class::geometry(c);
        Geom {
            shape: g.shape(),
            mask: !(g.region - 1),
            tag: Slab::magic_tag(g.shape()),
            div: SlotDiv::new(g.stride, g.capacity),
        }
    }
    let mut t = [Line(of(0)); CLASSES];
    let mut c = 1;
    while c < CLASSES {
        t[c] = Line(of(c));
        c += 1;
    }
    t
}

/// Class `c`'s [`Geom`]; `c` came from [`class::class_of`],
/// [`class::plain_class`] or a page-map tag.
#[inline(always)]
fn geom(c: usize) -> &'static Geom {
    debug_assert!(c < CLASSES);
    // SAFETY: per the contract, `c < CLASSES`.
    unsafe { &GEOMS.get_unchecked(c).0 }
}

impl Geom {
    /// The class's slab shape, its caching mark a constant `false` (no
    /// class caches objects) and its colored mark a constant `true` (every
    /// class's header is colored), so that the checks object pools need
    /// and the branches on the color compile away.
    #[inline(always)]
    fn shape(&self) -> Shape {
        Shape {
            caching: false,
            colored: true,
            ..self.shape
        }
    }

    /// [`Geom::shape`] on the process-wide allocator's paths, which know
    /// its slabs are plain ([`Shape::plain`]; its core is never hardened:
    /// [`SlabAllocBuilder::build_global`]).
    #[cfg_attr(loom, allow(dead_code))]
    #[inline(always)]
    fn global_shape(&self) -> Shape {
        Shape {
            plain: true,
            ..self.shape()
        }
    }

    /// [`Slab::resolve`] for a block of this class: a slab of this class's
    /// shape and, if `pool` is given, of that pool, and a slot of it.
    ///
    /// # Safety
    /// The header of `addr`'s region (of this class's size) is readable.
    #[inline(always)]
    unsafe fn resolve(&self, addr: usize, pool: Option<*const ()>) -> Resolved {
        let div = self.div;
        // The slot count bounds the offset: no need of the slab's span.
        let index = |off: usize, _span: usize| div.slot(off);
        // SAFETY: forwarded.
        unsafe { Slab::resolve(addr, self.mask, self.tag, pool, self.shape(), index) }
    }
}

/// What the fast paths need of one class, packed in one line.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Class {
    /// The core's thread-context entry and id (the same in every class:
    /// kept here so the fast path reads one line).
    at: EntryAt,
    id: u64,
    geom: Geom,
}

const _: () = assert!(core::mem::size_of::<Class>() == 64);

impl Class {
    #[inline(always)]
    fn shape(&self) -> Shape {
        self.geom.shape()
    }
}

struct Inner {
    classes: [Class; CLASSES],
    core: Arc<PoolCore>,
    large: Large,
    budget: Arc<Budget>,
    /// Class frees refused before reaching a core (no header of this class).
    foreign: AtomicU64,
}

// SAFETY: `Class::core` points to `Inner::core`, which `Inner` owns; the
// core is `Sync` and everything else is atomic or locked.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last clone: the core closes (its slabs stay until their
        // last block is freed).
        self.core.drop_handle();
    }
}

impl Default for SlabAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SlabAlloc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabAlloc")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The dangling, aligned pointer of a zero-size block.
fn dangling(align: usize) -> NonNull<u8> {
    // SAFETY: an alignment is never 0. The pointer is never dereferenced.
    unsafe { NonNull::new_unchecked(core::ptr::null_mut::<u8>().wrapping_add(align)) }
}

fn slice(p: NonNull<u8>, len: usize) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(p, len)
}

impl SlabAlloc {
    /// An allocator with the default configuration.
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(a) => a,
            // The defaults always validate.
            Err(e) => panic!("{e}"),
        }
    }

    /// A builder to configure and validate an allocator.
    pub fn builder() -> SlabAllocBuilder {
        SlabAllocBuilder::new()
    }

    /// The block sizes of the size classes, smallest first.
    pub fn class_sizes() -> &'static [usize] {
        &class::SIZES
    }

    /// A snapshot of the counters, summed over the classes and the large
    /// blocks (exact when the allocator is quiescent). `slab_bytes` and
    /// `slab_capacity` are 0 (they differ by class); `thread_heaps` counts
    /// the threads owning a heap set (one for all classes).
    pub fn stats(&self) -> Stats {
        let inner = &*self.inner;
        let mut s = inner.core.stats();
        let l = inner.large.stats();
        s.allocs += l.allocs;
        s.frees += l.frees;
        s.large_blocks = l.allocs.saturating_sub(l.frees);
        s.live_blocks += s.large_blocks;
        s.large_bytes = l.bytes;
        s.reserved_bytes += l.reserved;
        s.released_bytes += l.released;
        s.foreign_frees += l.refused + inner.foreign.load(Ordering::Relaxed);
        s.mapped_bytes = inner.budget.mapped();
        s.peak_mapped_bytes = inner.budget.peak();
        s
    }

    /// Gives memory back to the OS: every empty slab of every class held by
    /// this thread's heaps, the overflow tiers and exited threads' heaps,
    /// every idle region, the pages of every free large span, and the large
    /// arena's chunks left wholly free.
    /// Returns the bytes released.
    pub fn trim(&self) -> u64 {
        self.inner.core.trim() + self.inner.large.trim()
    }

    /// Testing aid: makes the next `n` OS mappings of every class fail.
    pub fn inject_map_failures(&self, n: usize) {
        self.inner.core.inject_map_failures(n);
    }

    /// One block of class `c`: the owner fast path inline, the rest out of
    /// line. Also says whether the block still reads zero.
    #[inline(always)]
    fn alloc_class(&self, c: usize) -> Result<(NonNull<u8>, bool), AllocError> {
        let d = self.class(c);
        let (p, info) = match alloc_owned(d.at, d.id, c, d.shape()) {
            Some(got) => got,
            None => self.inner.core.alloc_slow(c)?,
        };
        Ok((p, info == FRESH))
    }

    /// Frees a block of class `c`, refusing (and counting) anything that is
    /// not a block of this allocator's class: a slab of the class's shape
    /// and of this allocator's core (another allocator's block of the class
    /// is refused, not freed into its home).
    ///
    /// # Safety
    /// `ptr`'s region (of the class's region size) is readable.
    #[inline(always)]
    unsafe fn free_class(&self, c: usize, ptr: NonNull<u8>) {
        let d = self.class(c);
        let core = Arc::as_ptr(&self.inner.core).cast();
        // SAFETY: per the contract.
        match unsafe { d.geom.resolve(ptr.as_ptr() as usize, Some(core)) } {
            Resolved::NotASlab => self.refuse(),
            // SAFETY: the header is a live slab of this class's core.
            Resolved::NotASlot(slab) => unsafe { PoolCore::refuse_foreign(slab) },
            // SAFETY: as above; `idx` is a slot of `slab`.
            Resolved::Slot(slab, idx) => unsafe { PoolCore::free_block(slab, idx, d.shape()) },
        }
    }

    /// Class `c`'s descriptor; `c` came from [`class::class_of`] or [`class::plain_class`].
    #[inline(always)]
    fn class(&self, c: usize) -> &Class {
        debug_assert!(c < CLASSES);
        // SAFETY: `class_of` returns only indices below `CLASSES`.
        unsafe { self.inner.classes.get_unchecked(c) }
    }

    #[cold]
    fn refuse(&self) {
        self.inner.foreign.fetch_add(1, Ordering::Relaxed);
    }

    #[inline(always)]
    fn alloc_layout(&self, layout: Layout, zero: bool) -> Result<NonNull<[u8]>, AllocError> {
        let size = layout.size();
        if size == 0 {
            return Ok(slice(dangling(layout.align()), 0));
        }
        match class::class_of(size, layout.align()) {
            Some(c) => {
                let (p, fresh) = self.alloc_class(c)?;
                let len = class::SIZES[c];
                if zero && !fresh {
                    // SAFETY: the block is ours, `len` bytes.
                    unsafe { p.as_ptr().write_bytes(0, len) };
                }
                Ok(slice(p, len))
            }
            None => self.alloc_large(layout, zero),
        }
    }

    #[cold]
    #[inline(never)]
    fn alloc_large(&self, layout: Layout, zero: bool) -> Result<NonNull<[u8]>, AllocError> {
        let large = &self.inner.large;
        let (addr, len) = large.alloc(layout.size(), layout.align(), zero)?;
        // SAFETY: a mapping is never at address 0.
        Ok(slice(
            unsafe { NonNull::new_unchecked(addr as *mut u8) },
            len,
        ))
    }

    /// Frees `ptr`, allocated with a layout that `layout` fits.
    ///
    /// # Safety
    /// As [`Allocator::deallocate`], but a pointer that breaks it is refused
    /// when its class region is readable (see the type's docs).
    #[inline(always)]
    unsafe fn free_layout(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        match class::class_of(layout.size(), layout.align()) {
            // SAFETY: per the contract.
            Some(c) => unsafe { self.free_class(c, ptr) },
            None => self.free_large(ptr),
        }
    }

    #[cold]
    #[inline(never)]
    fn free_large(&self, ptr: NonNull<u8>) {
        if !self.inner.large.free(ptr.as_ptr() as usize) {
            self.inner.large.refuse();
        }
    }

    /// Resizes in place when the class stays the same, or the block is
    /// large both before and after and its mapping can follow; else moves.
    ///
    /// # Safety
    /// As [`Allocator::grow`] / [`Allocator::shrink`] (the caller checked
    /// the direction).
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.alloc_layout(new, zero);
        }
        if new.size() == 0 {
            // SAFETY: per the contract.
            unsafe { self.free_layout(ptr, old) };
            return Ok(slice(dangling(new.align()), 0));
        }
        let from = class::class_of(old.size(), old.align());
        let to = class::class_of(new.size(), new.align());
        let keep = old.size().min(new.size());
        match (from, to) {
            (Some(a), Some(b)) if a == b => {
                let len = class::SIZES[a];
                if zero {
                    // SAFETY: the block is ours, `len` bytes.
                    unsafe { ptr.as_ptr().add(keep).write_bytes(0, len - keep) };
                }
                return Ok(slice(ptr, len));
            }
            // In place in the arena, or `mremap` for a mapping of its own.
            (None, None) if old.align() == new.align() => {
                let addr = ptr.as_ptr() as usize;
                let old_len = self.inner.large.len_of(addr);
                if let Ok(Some((at, len))) = self.inner.large.resize(addr, new.size(), zero) {
                    if zero {
                        // Grown bytes read zero; those past `old.size()`
                        // in the old block may not.
                        let dirty = old_len.unwrap_or(len).min(len);
                        // SAFETY: the block is ours, `len` bytes.
                        unsafe { (at as *mut u8).add(keep).write_bytes(0, dirty - keep) };
                    }
                    // SAFETY: a mapping is never at address 0.
                    return Ok(slice(unsafe { NonNull::new_unchecked(at as *mut u8) }, len));
                }
            }
            _ => {}
        }
        let fresh = self.alloc_layout(new, zero)?;
        // SAFETY: both blocks are ours, distinct, and at least `keep` long;
        // then the old one is freed per the contract.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep);
            self.free_layout(ptr, old);
        }
        Ok(fresh)
    }
}

// SAFETY: blocks stay valid until deallocated (slabs keep their class core
// alive; large mappings live in the table until freed), a clone shares the
// same `Inner`, and every method honours the layout-fit rules: a block
// freed or resized with any size between the requested and the returned
// length maps to the same class (classes are chosen by the smallest size
// that fits, so every size in that range picks the same one).
unsafe impl Allocator for SlabAlloc {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        self.alloc_layout(layout, false).map_err(|_| ApiAllocError)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        self.alloc_layout(layout, true).map_err(|_| ApiAllocError)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the trait's contract.
        unsafe { self.free_layout(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        debug_assert!(new.size() >= old.size());
        // SAFETY: per the trait's contract.
        unsafe { self.resize(ptr, old, new, false) }.map_err(|_| ApiAllocError)
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        debug_assert!(new.size() >= old.size());
        // SAFETY: per the trait's contract.
        unsafe { self.resize(ptr, old, new, true) }.map_err(|_| ApiAllocError)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        debug_assert!(new.size() <= old.size());
        // SAFETY: per the trait's contract.
        unsafe { self.resize(ptr, old, new, false) }.map_err(|_| ApiAllocError)
    }
}
