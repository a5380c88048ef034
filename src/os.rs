//! The operating system's memory, and the one place that asks for it:
//! anonymous mappings for the page source's chunks and for large blocks,
//! raw page mappings for the meta allocator (which cannot own a mapping
//! object: it is where bookkeeping lives), asking for huge pages, and
//! giving pages back. The
//! platform's half is `sys`: memmap2 and `mmap` on Unix
//! (`src/os/unix.rs`), `VirtualAlloc`/`VirtualFree` on Windows
//! (`src/os/windows.rs`). Under Miri and loom, which model no `mmap`, a
//! mapping is a zeroed heap allocation and giving pages back zeroes them.

use crate::error::AllocError;

/// The page granularity mappings are rounded to.
pub(crate) const PAGE: usize = 4096;

/// The transparent huge page of x86-64 and aarch64 Linux (with 4 KiB base
/// pages): what a large-block chunk is aligned to when it asks for them.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Bytes a page source maps at a time by default, carving regions out of
/// them (0: each region its own mapping, where memory comes from the heap
/// under Miri and loom, so a chunk would only be a large allocation).
pub(crate) const DEFAULT_CHUNK_BYTES: usize = if cfg!(any(miri, loom)) { 0 } else { 1 << 20 };

/// Memory from the OS, owned: dropping it gives it back.
pub(crate) enum Backing {
    #[cfg(not(any(miri, loom)))]
    Os(sys::Pages),
    #[cfg(any(miri, loom))]
    Heap {
        ptr: *mut u8,
        layout: std::alloc::Layout,
    },
}

impl Drop for Backing {
    fn drop(&mut self) {
        #[cfg(any(miri, loom))]
        {
            let Backing::Heap { ptr, layout } = *self;
            // SAFETY: `ptr` came from `std::alloc::alloc_zeroed(layout)` in
            // `Backing::map` and is freed exactly once, here.
            unsafe { std::alloc::dealloc(ptr, layout) };
        }
    }
}

impl Backing {
    /// Maps `len` bytes (a multiple of [`PAGE`]), zeroed, with an
    /// `align`-aligned start (a power of two) somewhere inside (over-mapped
    /// by `align - PAGE`: the OS aligns to a page).
    /// Returns the memory, its first `align`-aligned address (at least
    /// `len` bytes follow it) and the bytes of address space it holds.
    pub(crate) fn map(len: usize, align: usize) -> Result<(Backing, usize, usize), AllocError> {
        #[cfg(not(any(miri, loom)))]
        {
            // The OS aligns to a page: over-map so that an aligned start fits.
            let reserved = len
                .checked_add(align.saturating_sub(PAGE))
                .ok_or(AllocError::OutOfMemory)?;
            let pages = sys::Pages::map(reserved).ok_or(AllocError::OutOfMemory)?;
            let start = pages.addr();
            let base = (start + align - 1) & !(align - 1);
            Ok((Backing::Os(pages), base, reserved))
        }
        #[cfg(any(miri, loom))]
        {
            // The heap aligns as asked: nothing to over-allocate.
            let layout = std::alloc::Layout::from_size_align(len.max(1), align.max(PAGE))
                .map_err(|_| AllocError::OutOfMemory)?;
            // SAFETY: the layout has a non-zero size. Zeroed, as fresh OS
            // pages are.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            if ptr.is_null() {
                return Err(AllocError::OutOfMemory);
            }
            Ok((Backing::Heap { ptr, layout }, ptr as usize, layout.size()))
        }
    }

    /// Asks the OS to back the memory with huge pages where it can: on
    /// Linux `MADV_HUGEPAGE` (one call), which lets the kernel fault in a
    /// whole 2 MiB page at a time in every aligned 2 MiB of the memory (and
    /// its `khugepaged` merge small pages there); a hint, nothing elsewhere
    /// or under Miri and loom. The pages go back as before
    /// ([`Backing::release`] splits a huge page it covers only in part).
    pub(crate) fn prefer_huge_pages(&self) {
        #[cfg(all(target_os = "linux", not(any(miri, loom))))]
        {
            let Backing::Os(pages) = self;
            pages.prefer_huge_pages();
        }
    }

    /// Gives the pages of `addr..addr + len` back to the OS: they read
    /// zero afterwards.
    ///
    /// # Safety
    /// The range lies inside this memory, page-aligned, and nothing reads
    /// or writes it meanwhile.
    pub(crate) unsafe fn release(&self, addr: usize, len: usize) {
        // SAFETY: per the contract, a range of memory we own.
        unsafe { release(addr, len) };
    }

    /// Resizes the memory to `len` bytes (a multiple of [`PAGE`]), moving
    /// it if it must; the contents move with it and grown bytes read zero.
    /// Its new address, or `None` where the OS cannot (then nothing
    /// changed).
    ///
    /// # Safety
    /// Nothing refers into the memory across the call (it may move).
    pub(crate) unsafe fn remap(&mut self, len: usize) -> Option<usize> {
        #[cfg(not(any(miri, loom)))]
        {
            let Backing::Os(pages) = self;
            // SAFETY: per the contract.
            unsafe { pages.remap(len) }.then(|| pages.addr())
        }
        #[cfg(any(miri, loom))]
        {
            let _ = len;
            None
        }
    }
}

/// Gives the pages of `addr..addr + len` back to the OS: they read zero
/// afterwards. Needs only the range, so a caller may do it outside the
/// lock that guards the memory's owner.
///
/// # Safety
/// The range lies inside a [`Backing`] that stays alive across the call,
/// page-aligned, and nothing reads or writes it meanwhile.
pub(crate) unsafe fn release(addr: usize, len: usize) {
    #[cfg(not(any(miri, loom)))]
    // SAFETY: per the contract.
    unsafe {
        sys::release(addr, len)
    };
    // No OS to ask: zero the range, as the OS would.
    #[cfg(any(miri, loom))]
    // SAFETY: per the contract.
    unsafe {
        core::ptr::write_bytes(addr as *mut u8, 0, len)
    };
}

/// The calls of the `mmap` family (map, unmap, remap, advise; on Windows
/// `VirtualAlloc`/`VirtualFree`) homeslab made so far in this process; 0
/// under Miri and loom, where no OS is asked.
pub(crate) fn calls() -> u64 {
    #[cfg(not(any(miri, loom)))]
    return sys::calls();
    #[cfg(any(miri, loom))]
    0
}

/// Maps `len` bytes (a multiple of [`PAGE`]), zeroed; null if the OS
/// refuses. For the meta allocator, which keeps no mapping object.
#[cfg(not(any(miri, loom)))]
pub(crate) fn map_raw(len: usize) -> *mut u8 {
    sys::map_raw(len)
}

/// Unmaps what [`map_raw`] mapped.
///
/// # Safety
/// `p..p + len` is a mapping from [`map_raw`] that nobody uses any more.
#[cfg(not(any(miri, loom)))]
pub(crate) unsafe fn unmap_raw(p: *mut u8, len: usize) {
    // SAFETY: per the contract.
    unsafe { sys::unmap_raw(p, len) };
}

mod mapping;
pub(crate) use mapping::Mapping;

#[cfg(all(unix, not(any(miri, loom))))]
#[path = "os/unix.rs"]
mod sys;
#[cfg(all(windows, not(any(miri, loom))))]
#[path = "os/windows.rs"]
mod sys;

#[cfg(all(test, not(any(miri, loom))))]
mod tests {
    use super::{sys::Pages, PAGE};

    /// Every platform's release: the range reads zero, its neighbours keep
    /// their bytes, and the pages stay usable.
    #[test]
    fn released_pages_read_zero_and_stay_usable() {
        let pages = Pages::map(4 * PAGE).unwrap();
        let at = pages.addr() as *mut u8;
        // SAFETY: the mapping is ours and four pages long.
        unsafe { core::ptr::write_bytes(at, 0xAB, 4 * PAGE) };
        // SAFETY: pages 1 and 2, inside the mapping, unused meanwhile.
        unsafe { pages.release(PAGE, 2 * PAGE) };
        // SAFETY: as above; the mapping is still ours.
        let bytes = unsafe { core::slice::from_raw_parts_mut(at, 4 * PAGE) };
        assert!(bytes[..PAGE].iter().all(|&b| b == 0xAB));
        assert!(bytes[PAGE..3 * PAGE].iter().all(|&b| b == 0));
        assert!(bytes[3 * PAGE..].iter().all(|&b| b == 0xAB));
        bytes[PAGE] = 1;
        assert_eq!(bytes[PAGE], 1);
    }
}
