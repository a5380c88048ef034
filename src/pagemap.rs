//! The process-wide page map: one byte per 16 KiB granule of the address
//! space, saying which size class of the global allocator
//! ([`crate::Global`]) owns the region there (0: none of its classes).
//!
//! `free(p)` in C carries no size: the map turns `p` into its class in two
//! loads (a top-level table of leaves, 1 GiB each, then the leaf byte),
//! without reading the memory at `p` — so a pointer that is not ours (from
//! before the library was loaded, or foreign) is recognised, never
//! dereferenced. A granule is no larger than any region (16 KiB to
//! 4 MiB, aligned to their size), so it lies in at most one region.
//!
//! Written when a tagged page source maps a chunk (and cleared before it
//! unmaps one), read by any thread. Leaves come from meta memory and are
//! never freed; untouched parts of the 1 MiB top table cost nothing.

use crate::meta;
use crate::sync::unmodelled::{StdAtomicPtr, StdAtomicU8};
use crate::sync::Ordering;

/// Granule: the smallest region.
const GRANULE_SHIFT: usize = 14;
/// A leaf covers 1 GiB.
const LEAF_SHIFT: usize = 30;
const LEAF_LEN: usize = 1 << (LEAF_SHIFT - GRANULE_SHIFT);
/// Bits of a user address: 48 on aarch64 Linux (its 4-level tables give
/// user space 2^48 bytes, and `mmap` maps from the top down), 47 elsewhere
/// (the user half of x86-64; macOS and Windows map no higher unasked).
/// Anything above is nobody's.
const ADDRESS_BITS: usize = if cfg!(all(target_arch = "aarch64", target_os = "linux")) {
    48
} else {
    47
};
const TOP_LEN: usize = 1 << (ADDRESS_BITS - LEAF_SHIFT);

#[allow(clippy::declare_interior_mutable_const)]
const NULL: StdAtomicPtr<StdAtomicU8> = StdAtomicPtr::new(core::ptr::null_mut());
static TOP: [StdAtomicPtr<StdAtomicU8>; TOP_LEN] = [NULL; TOP_LEN];

fn leaf_layout() -> core::alloc::Layout {
    core::alloc::Layout::new::<[u8; LEAF_LEN]>()
}

/// The leaf for `addr`, created if `create`.
fn leaf(addr: usize, create: bool) -> Option<*const StdAtomicU8> {
    let slot = TOP.get(addr >> LEAF_SHIFT)?;
    let l = slot.load(Ordering::Acquire);
    if !l.is_null() || !create {
        return (!l.is_null()).then_some(l.cast_const());
    }
    let fresh = meta::alloc(leaf_layout(), true)?
        .as_ptr()
        .cast::<StdAtomicU8>();
    match slot.compare_exchange(
        core::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Some(fresh),
        Err(won) => {
            // SAFETY: ours, never published.
            unsafe {
                meta::free(
                    core::ptr::NonNull::new_unchecked(fresh.cast()),
                    leaf_layout(),
                )
            };
            Some(won)
        }
    }
}

/// Tags the granules of `addr .. addr + len` (granule-aligned) with
/// `tag`. False if a leaf could not be allocated.
pub(crate) fn set(addr: usize, len: usize, tag: u8) -> bool {
    let mut a = addr;
    while a < addr + len {
        let Some(l) = leaf(a, tag != 0) else {
            if tag == 0 {
                a = (a | ((1 << LEAF_SHIFT) - 1)) + 1;
                continue;
            }
            return false;
        };
        // SAFETY: a leaf holds `LEAF_LEN` bytes; the index is below that.
        unsafe { &*l.add((a >> GRANULE_SHIFT) & (LEAF_LEN - 1)) }.store(tag, Ordering::Release);
        a += 1 << GRANULE_SHIFT;
    }
    true
}

/// The tag of the granule holding `addr` (0: none).
#[cfg_attr(loom, allow(dead_code))]
#[inline(always)]
pub(crate) fn get(addr: usize) -> u8 {
    // Inline and without the creating path of `leaf`: every `free` comes here.
    let Some(slot) = TOP.get(addr >> LEAF_SHIFT) else {
        return 0;
    };
    let l = slot.load(Ordering::Acquire);
    if l.is_null() {
        return 0;
    }
    // SAFETY: as in `set`.
    let byte = unsafe { &*l.add((addr >> GRANULE_SHIFT) & (LEAF_LEN - 1)) };
    byte.load(Ordering::Acquire)
}

#[cfg(all(test, not(any(miri, loom))))]
mod tests {
    use super::*;

    /// The map covers where the OS puts mappings (on aarch64 Linux, near
    /// 2^48).
    #[test]
    fn mappings_lie_in_the_mapped_range() {
        let len = 1 << GRANULE_SHIFT;
        let p = crate::os::map_raw(len);
        assert!(!p.is_null());
        assert!((p as usize) >> ADDRESS_BITS == 0, "{p:p}");
        // SAFETY: ours, unused.
        unsafe { crate::os::unmap_raw(p, len) };
    }
}
