//! What the process-wide allocator ([`crate::global`]) needs of a
//! [`SlabAlloc`] beyond the `Allocator` trait: frees and sizes without a
//! layout (found through the page map), `realloc` in place, the page-map
//! tags and the locks for `fork`. Kept apart from the trait's code.

use core::alloc::Layout;
use core::ptr::NonNull;

use super::{geom, SlabAlloc};
use crate::class::{self, CLASSES, MAX_CLASS};
use crate::os::PAGE;
use crate::pagemap;
use crate::pool_core::{alloc_global, PoolCore};
use crate::slab::{Resolved, Slab, FRESH};

/// What [`SlabAlloc::free_tagged`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tagged {
    /// Freed, or refused and counted in the slab's pool.
    Freed,
    /// Tagged, but no live slab there: to be refused by the allocator.
    NotASlab,
    /// Not in a tagged region: a large block, or not ours.
    Untagged,
}

/// Where a pointer lives, as the page map and the large table say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// A block of size class `c`.
    Class(usize),
    /// A live large block of this many usable bytes.
    Large(usize),
    /// Not a block of this allocator.
    Foreign,
}

/// [`Home`] with a class block's slab and slot, for the caller that frees
/// it next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Slot `idx` of `slab`, a slab of size class `c`.
    Slot(usize, *mut Slab, usize),
    /// A live large block of this many usable bytes.
    Large(usize),
    /// Not a block of this allocator.
    Foreign,
}

impl SlabAlloc {
    /// Tags every class core's chunks in the page map with its class + 1,
    /// so [`SlabAlloc::home`] finds them. For the one global allocator.
    pub(crate) fn tag_pages(&self) {
        for c in 0..CLASSES {
            self.inner.core.set_page_tag(c, c as u8 + 1);
        }
    }

    /// A block of the process-wide allocator (built by
    /// [`SlabAllocBuilder::build_global`](super::SlabAllocBuilder::build_global))
    /// for `size` bytes aligned to at most 16 (0 takes the smallest class)
    /// from the calling thread's own heap of its class, inline and without
    /// reaching the core, and whether it still reads zero; `None` for a
    /// large or more aligned request, a slow path, or before that core is
    /// built (the caller takes [`SlabAlloc::alloc_raw`]).
    #[inline(always)]
    pub(crate) fn alloc_global_inline(size: usize, align: usize) -> Option<(*mut u8, bool)> {
        let c = class::plain_class(size, align)?;
        // SAFETY: the core at the global entry is the process-wide
        // allocator's (a `SlabAlloc`'s, whose classes are `GEOMS`'), never
        // dropped.
        let (p, info) = unsafe { alloc_global(c, geom(c).global_shape()) }?;
        Some((p.as_ptr(), info == FRESH))
    }

    /// [`SlabAlloc::alloc_raw`] of `size` bytes aligned to `align` for a
    /// request [`SlabAlloc::alloc_global_inline`] did not serve, zeroed if
    /// `zero`: a class it could have served goes straight to the core's
    /// slow path (the inline path has just missed), anything else through
    /// the whole dispatch. Null when out of memory or the layout is
    /// invalid.
    #[inline(always)]
    pub(crate) fn alloc_after_inline(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        if let Some(c) = class::plain_class(size, align) {
            return match self.inner.core.alloc_slow(c) {
                Ok((p, info)) => {
                    if zero && info != FRESH {
                        // SAFETY: the block is ours, at least `size` bytes.
                        unsafe { p.as_ptr().write_bytes(0, size) };
                    }
                    p.as_ptr()
                }
                Err(_) => core::ptr::null_mut(),
            };
        }
        match Layout::from_size_align(size.max(1), align) {
            Ok(layout) => self.alloc_raw(layout, zero),
            Err(_) => core::ptr::null_mut(),
        }
    }

    /// Allocates `layout` (not zero-size); null when out of memory.
    #[inline(always)]
    pub(crate) fn alloc_raw(&self, layout: Layout, zero: bool) -> *mut u8 {
        match self.alloc_layout(layout, zero) {
            Ok(p) => p.cast::<u8>().as_ptr(),
            Err(_) => core::ptr::null_mut(),
        }
    }

    /// Where `ptr` lives. Reads the page map, and for a class pointer the
    /// header of its region (our memory); never the memory of a pointer
    /// that is not ours. Here and below, `self` is the allocator that
    /// tagged the page map ([`SlabAlloc::tag_pages`]): a tag names one of
    /// its classes, so the slab's pool is not checked again.
    #[inline]
    pub(crate) fn home(&self, ptr: *mut u8) -> Home {
        match self.find(ptr) {
            Found::Slot(c, ..) => Home::Class(c),
            Found::Large(len) => Home::Large(len),
            Found::Foreign => Home::Foreign,
        }
    }

    /// [`SlabAlloc::home`], with a class block's slab and slot.
    #[inline(always)]
    fn find(&self, ptr: *mut u8) -> Found {
        let addr = ptr as usize;
        let tag = pagemap::get(addr) as usize;
        if tag != 0 && tag <= CLASSES {
            let c = tag - 1;
            // SAFETY: the page map says the region is a mapped chunk of a
            // class core: readable.
            return match unsafe { geom(c).resolve(addr, None) } {
                Resolved::Slot(slab, idx) => Found::Slot(c, slab, idx),
                _ => Found::Foreign,
            };
        }
        match self.inner.large.len_of(addr) {
            Some(len) => Found::Large(len),
            None => Found::Foreign,
        }
    }

    /// Frees `ptr` without its layout: a class block, a large block, or a
    /// pointer that is not ours (refused and counted in
    /// `Stats::foreign_frees`, never read).
    #[inline]
    pub(crate) fn free_raw(&self, ptr: *mut u8) {
        match Self::free_tagged(ptr) {
            Tagged::Freed => {}
            Tagged::NotASlab => self.refuse(),
            Tagged::Untagged => {
                if let Some(p) = NonNull::new(ptr) {
                    self.free_large(p);
                }
            }
        }
    }

    /// The process-wide allocator's free of a block in a region the page
    /// map tags as one of its classes', without reaching its core: freed
    /// (or, not at a slot's start, refused and counted in its slab's pool),
    /// or what is left to the caller. Inline: every call it makes is a
    /// tail call. Null is in no tagged region (nothing is mapped at 0):
    /// `Untagged`, with no test of its own.
    #[inline(always)]
    pub(crate) fn free_tagged(ptr: *mut u8) -> Tagged {
        let addr = ptr as usize;
        let tag = pagemap::get(addr) as usize;
        if tag == 0 || tag > CLASSES {
            return Tagged::Untagged;
        }
        let g = geom(tag - 1);
        // SAFETY: the page map says the region is a mapped chunk of the
        // process-wide core's class `tag - 1`: readable, and no other
        // pool's.
        match unsafe { g.resolve(addr, None) } {
            Resolved::NotASlab => Tagged::NotASlab,
            Resolved::NotASlot(slab) => {
                // SAFETY: the header is a live slab of that core.
                unsafe { PoolCore::refuse_foreign(slab) };
                Tagged::Freed
            }
            Resolved::Slot(slab, idx) => {
                // SAFETY: as above; `idx` is a slot of `slab`.
                unsafe { PoolCore::free_block(slab, idx, g.global_shape()) };
                Tagged::Freed
            }
        }
    }

    /// Resizes `ptr` (a block of ours, or a pointer `home` refuses) to
    /// `new` bytes aligned to `align`, keeping the first `keep` bytes
    /// (`None`: as many as the block holds). In place when the new size
    /// still fits the block's class and is not below half of it; large
    /// blocks grow or shrink in place in the arena, or move with `mremap`
    /// where they have a mapping of their own; else a copy into a block
    /// from the calling thread's heap (the inline allocation first), and
    /// the old block is freed through the slab and slot found at the start
    /// (no second lookup). Null when out of memory or `ptr` is not ours
    /// (the old block is left as it was).
    ///
    /// # Safety
    /// `ptr` is not null; if it is ours the caller holds it; `new` ≥ 1.
    pub(crate) unsafe fn realloc_raw(
        &self,
        ptr: *mut u8,
        align: usize,
        keep: Option<usize>,
        new: usize,
    ) -> *mut u8 {
        let (old_len, slot) = match self.find(ptr) {
            Found::Slot(c, slab, idx) => {
                let len = class::SIZES[c];
                if new <= len && new >= len / 2 && (ptr as usize) % align == 0 {
                    return ptr;
                }
                (len, Some((c, slab, idx)))
            }
            Found::Large(len) => {
                if new > MAX_CLASS && align <= PAGE {
                    if new <= len && new >= len / 2 {
                        return ptr;
                    }
                    if let Ok(Some((at, _))) = self.inner.large.resize(ptr as usize, new, false) {
                        return at as *mut u8;
                    }
                }
                (len, None)
            }
            Found::Foreign => {
                self.refuse();
                return core::ptr::null_mut();
            }
        };
        let fresh = match Self::alloc_global_inline(new, align) {
            Some((p, _)) => p,
            None => self.alloc_after_inline(new, align, false),
        };
        if fresh.is_null() {
            return fresh;
        }
        let n = keep.unwrap_or(old_len).min(old_len).min(new);
        // SAFETY: both blocks are ours and distinct, at least `n` long;
        // the caller holds the old one, which is then freed.
        unsafe { core::ptr::copy_nonoverlapping(ptr, fresh, n) };
        match slot {
            // SAFETY: `slab` passed the header check of class `c` of the
            // process-wide core and `idx` is a slot of it, handed out to
            // the caller (so the slab is live until this free).
            Some((c, slab, idx)) => unsafe {
                PoolCore::free_block(slab, idx, geom(c).global_shape())
            },
            // SAFETY: `ptr` is not null (it was found).
            None => self.free_large(unsafe { NonNull::new_unchecked(ptr) }),
        }
        fresh
    }

    /// Runs `f` on every lock of the allocator in lock order: the core's
    /// magazine-sweep and tier locks; the budget's member list (a class's
    /// slow path may run the budget's sweep under those); every class's
    /// page source and the large table (the sweep takes each of them under
    /// the list's lock, one at a time; none is taken under another).
    #[cfg(not(loom))]
    pub(crate) fn for_each_lock(&self, mut f: impl FnMut(&crate::sync::lock::RawLock)) {
        self.inner.core.for_each_lock(&mut f);
        f(self.inner.budget.raw_lock());
        self.inner.core.source_locks(&mut f);
        f(self.inner.large.raw_lock());
    }
}
