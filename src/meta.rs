//! The meta allocator: memory for the allocator's own bookkeeping (pool
//! cores, registries, page-source tables, exit hooks), taken from the OS
//! directly, never from the global allocator — so homeslab can *be* the
//! global allocator.
//!
//! Power-of-two classes from 16 bytes to 32 KiB, each a free list of
//! blocks carved from 256 KiB mappings; larger requests get a mapping
//! each, unmapped when freed. Small blocks are kept for reuse, never
//! unmapped (the bookkeeping of a process is small and long-lived). One
//! leaf lock ([`META_LOCK`]; nothing else is taken under it). Under Miri
//! and loom, which model no `mmap`, it forwards to `std::alloc`.
//!
//! [`Meta`] is an allocator-api2 `Allocator`, so the containers are
//! allocator-api2's `Vec<T, Meta>` ([`MVec`]); [`Arc`] and [`Weak`] keep
//! their value and counts in meta memory.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};

mod arc;
pub(crate) use arc::{Arc, StrongCount, Weak};

/// The meta allocator (a unit: all state is process-wide).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meta;

/// A vector of bookkeeping, in meta memory.
pub(crate) type MVec<T> = allocator_api2::vec::Vec<T, Meta>;

/// An empty [`MVec`] (allocates nothing).
pub(crate) const fn mvec<T>() -> MVec<T> {
    MVec::new_in(Meta)
}

#[cfg(not(any(miri, loom)))]
mod pages {
    use crate::os::map_raw as map;
    use crate::sync::lock::RawLock;
    use crate::sync::unmodelled::StdUnsafeCell as UnsafeCell;

    /// The meta allocator's lock: a leaf, taken by the `fork` handlers too.
    pub(crate) static META_LOCK: RawLock = RawLock::new();

    const SMALLEST: usize = 4; // 16 bytes
    const CLASSES: usize = 12; // to 32 KiB
    pub(super) const MAX_SMALL: usize = 1 << (SMALLEST + CLASSES - 1);
    const ARENA: usize = 256 << 10;

    struct State {
        free: [*mut u8; CLASSES],
        bump: usize,
        end: usize,
    }

    struct Guarded(UnsafeCell<State>);
    // SAFETY: the state is only touched under `META_LOCK`.
    unsafe impl Sync for Guarded {}

    static STATE: Guarded = Guarded(UnsafeCell::new(State {
        free: [core::ptr::null_mut(); CLASSES],
        bump: 0,
        end: 0,
    }));

    fn class(size: usize, align: usize) -> usize {
        let need = size.max(align).max(1 << SMALLEST).next_power_of_two();
        need.trailing_zeros() as usize - SMALLEST
    }

    /// A block for `size` bytes aligned to `align` (≤ 4096), or null.
    pub(super) fn alloc_small(size: usize, align: usize) -> *mut u8 {
        let c = class(size, align);
        let len = 1usize << (c + SMALLEST);
        META_LOCK.lock();
        // SAFETY: the lock is held.
        let st = unsafe { &mut *STATE.0.get() };
        let head = st.free[c];
        let got = if !head.is_null() {
            // SAFETY: a free block's first word is the next free block.
            st.free[c] = unsafe { head.cast::<*mut u8>().read() };
            head
        } else {
            let a = len.min(4096);
            let mut at = (st.bump + a - 1) & !(a - 1);
            if st.bump == 0 || at + len > st.end {
                let fresh = map(ARENA);
                if fresh.is_null() {
                    // SAFETY: taken above.
                    unsafe { META_LOCK.force_unlock() };
                    return core::ptr::null_mut();
                }
                st.bump = fresh as usize;
                st.end = st.bump + ARENA;
                at = st.bump;
            }
            st.bump = at + len;
            at as *mut u8
        };
        // SAFETY: taken above.
        unsafe { META_LOCK.force_unlock() };
        got
    }

    /// # Safety
    /// `p` came from [`alloc_small`] with the same `size` and `align`.
    pub(super) unsafe fn free_small(p: *mut u8, size: usize, align: usize) {
        let c = class(size, align);
        META_LOCK.lock();
        // SAFETY: the lock is held; the block is ours again and at least
        // a word long and aligned.
        unsafe {
            let st = &mut *STATE.0.get();
            p.cast::<*mut u8>().write(st.free[c]);
            st.free[c] = p;
            META_LOCK.force_unlock();
        }
    }
}

#[cfg(not(any(miri, loom)))]
pub(crate) use pages::META_LOCK;

/// Bytes of a mapping for `size`.
#[cfg(not(any(miri, loom)))]
fn page_len(size: usize) -> Option<usize> {
    size.checked_add(4095).map(|n| n & !4095)
}

/// Allocates raw meta memory; `None` when the OS refuses (or the layout
/// is aligned above 4096). Zeroed if `zero`.
pub(crate) fn alloc(layout: Layout, zero: bool) -> Option<NonNull<u8>> {
    if layout.align() > 4096 {
        return None;
    }
    #[cfg(not(any(miri, loom)))]
    {
        if layout.size() <= pages::MAX_SMALL {
            let p = pages::alloc_small(layout.size(), layout.align());
            if zero && !p.is_null() {
                // SAFETY: the block is ours, at least `size` bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            NonNull::new(p)
        } else {
            NonNull::new(crate::os::map_raw(page_len(layout.size())?))
        }
    }
    #[cfg(any(miri, loom))]
    {
        let layout = Layout::from_size_align(layout.size().max(1), layout.align()).ok()?;
        // SAFETY: the size is not 0.
        NonNull::new(unsafe {
            if zero {
                std::alloc::alloc_zeroed(layout)
            } else {
                std::alloc::alloc(layout)
            }
        })
    }
}

/// Frees meta memory.
///
/// # Safety
/// `p` came from [`alloc`] with `layout`, and is not used after.
pub(crate) unsafe fn free(p: NonNull<u8>, layout: Layout) {
    #[cfg(not(any(miri, loom)))]
    {
        if layout.size() <= pages::MAX_SMALL {
            // SAFETY: per the contract.
            unsafe { pages::free_small(p.as_ptr(), layout.size(), layout.align()) }
        } else if let Some(len) = page_len(layout.size()) {
            // SAFETY: per the contract: a mapping of its own.
            unsafe { crate::os::unmap_raw(p.as_ptr(), len) }
        }
    }
    #[cfg(any(miri, loom))]
    {
        let size = layout.size().max(1);
        // SAFETY: per the contract; `alloc` used the same adjusted layout.
        unsafe {
            std::alloc::dealloc(
                p.as_ptr(),
                Layout::from_size_align_unchecked(size, layout.align()),
            )
        }
    }
}

// SAFETY: blocks stay valid until freed, `Meta` is a unit (every copy is
// the same allocator), and a block is freed with the layout it was
// allocated with, which picks the same class or mapping length.
unsafe impl Allocator for Meta {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            // SAFETY: an alignment is never 0; the pointer is never read.
            let p = unsafe {
                NonNull::new_unchecked(core::ptr::null_mut::<u8>().wrapping_add(layout.align()))
            };
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        let p = alloc(layout, false).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: per the trait's contract.
            unsafe { free(ptr, layout) }
        }
    }
}
