//! Pages on Unix: memmap2's anonymous mappings (`mremap` for a resize on
//! Linux; `MADV_HUGEPAGE` through memmap2's `advise` where huge pages are
//! asked for), raw `mmap` for the meta allocator. Giving pages back is
//! `MADV_DONTNEED` on Linux, where it makes them read zero; elsewhere (macOS)
//! `MADV_DONTNEED` keeps the contents, so fresh zero pages are mapped over
//! the range instead (`MAP_FIXED`). Where the OS refuses either (a range
//! not aligned to its pages, if they are larger than 4 KiB), the range is
//! zeroed by hand.

use crate::sync::{AtomicU64, Ordering};

/// Calls of the `mmap` family made so far (map, unmap, remap, advise).
static CALLS: AtomicU64 = AtomicU64::new(0);

fn count() {
    CALLS.fetch_add(1, Ordering::Relaxed);
}

/// The `mmap`-family calls made so far by the process's homeslab.
pub(crate) fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// An anonymous private mapping, unmapped when dropped.
pub(crate) struct Pages(memmap2::MmapMut);

impl Drop for Pages {
    fn drop(&mut self) {
        // The mapping itself is unmapped by memmap2 right after.
        count();
    }
}

impl Pages {
    /// Maps `len` bytes, zeroed, page-aligned; `None` if the OS refuses.
    pub(crate) fn map(len: usize) -> Option<Pages> {
        count();
        memmap2::MmapMut::map_anon(len).ok().map(Pages)
    }

    /// Asks the kernel to back the mapping with transparent huge pages
    /// (`MADV_HUGEPAGE`): a hint, ignored where the kernel has none.
    #[cfg(target_os = "linux")]
    pub(crate) fn prefer_huge_pages(&self) {
        count();
        let _ = self.0.advise(memmap2::Advice::HugePage);
    }

    /// The first address.
    pub(crate) fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// Gives the pages of `offset..offset + len` back: they read zero
    /// afterwards.
    ///
    /// # Safety
    /// The range lies inside the mapping, page-aligned, and nothing reads
    /// or writes it meanwhile.
    #[cfg(test)]
    pub(crate) unsafe fn release(&self, offset: usize, len: usize) {
        // SAFETY: per the contract.
        unsafe { release(self.addr() + offset, len) };
    }

    /// Resizes the mapping to `len` bytes, moving it if it must; false if
    /// the OS cannot (then nothing changed).
    ///
    /// # Safety
    /// Nothing refers into the mapping across the call (it may move).
    pub(crate) unsafe fn remap(&mut self, len: usize) -> bool {
        #[cfg(target_os = "linux")]
        {
            count();
            // SAFETY: per the contract.
            unsafe {
                self.0
                    .remap(len, memmap2::RemapOptions::new().may_move(true))
            }
            .is_ok()
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = len;
            false
        }
    }
}

/// Gives the pages of `addr..addr + len` back: they read zero afterwards.
///
/// # Safety
/// The range lies inside a private read-write anonymous mapping of ours,
/// page-aligned, and nothing reads or writes it meanwhile.
pub(crate) unsafe fn release(addr: usize, len: usize) {
    count();
    #[cfg(target_os = "linux")]
    {
        // SAFETY: per the contract; DONTNEED only makes the pages of our
        // own mapping read back as zeroes.
        let advised = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if advised != 0 {
            // A range the kernel takes no advice on (not aligned to
            // larger pages than `PAGE`): zero it by hand.
            // SAFETY: per the contract.
            unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    // SAFETY: per the contract.
    unsafe {
        zero_pages(addr, len)
    };
}

/// Replaces the pages of `addr..addr + len` with fresh zero pages of the
/// same protection (the old ones go back to the OS); zeroes them by hand if
/// the OS refuses.
///
/// # Safety
/// The range lies inside a private read-write anonymous mapping of ours,
/// page-aligned, and nothing reads or writes it meanwhile.
#[cfg(any(test, not(target_os = "linux")))]
unsafe fn zero_pages(addr: usize, len: usize) {
    // SAFETY: `MAP_FIXED` over a range of our own mapping only replaces
    // its pages, which nobody uses (per the contract).
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p != addr as *mut libc::c_void {
        // SAFETY: the range is ours, writable and unused, per the contract.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len) };
    }
}

/// Maps `len` bytes, zeroed; null if the OS refuses.
pub(crate) fn map_raw(len: usize) -> *mut u8 {
    count();
    // SAFETY: an anonymous private mapping at an address of the OS's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        core::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Unmaps what [`map_raw`] mapped.
///
/// # Safety
/// `p..p + len` is a mapping from [`map_raw`] that nobody uses any more.
pub(crate) unsafe fn unmap_raw(p: *mut u8, len: usize) {
    count();
    // SAFETY: per the contract.
    unsafe { libc::munmap(p.cast(), len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = crate::os::PAGE;

    #[test]
    fn zero_pages_maps_fresh_zero_pages() {
        let pages = Pages::map(3 * PAGE).unwrap();
        let at = pages.addr() as *mut u8;
        // SAFETY: the mapping is ours and three pages long.
        unsafe { core::ptr::write_bytes(at, 0xCD, 3 * PAGE) };
        // SAFETY: the middle page of our read-write anonymous mapping.
        unsafe { zero_pages(pages.addr() + PAGE, PAGE) };
        // SAFETY: as above.
        let bytes = unsafe { core::slice::from_raw_parts_mut(at, 3 * PAGE) };
        assert!(bytes[..PAGE].iter().all(|&b| b == 0xCD));
        assert!(bytes[PAGE..2 * PAGE].iter().all(|&b| b == 0));
        assert!(bytes[2 * PAGE..].iter().all(|&b| b == 0xCD));
        bytes[PAGE + 7] = 9;
        assert_eq!(bytes[PAGE + 7], 9);
    }

    #[test]
    fn raw_mappings_are_zeroed() {
        let p = map_raw(2 * PAGE);
        assert!(!p.is_null());
        // SAFETY: a fresh two-page mapping.
        let bytes = unsafe { core::slice::from_raw_parts(p, 2 * PAGE) };
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: ours, unused from here.
        unsafe { unmap_raw(p, 2 * PAGE) };
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn remap_grows_and_keeps_contents() {
        let mut pages = Pages::map(PAGE).unwrap();
        // SAFETY: one page, ours.
        unsafe { (pages.addr() as *mut u8).write(42) };
        // SAFETY: no reference into the mapping is held.
        assert!(unsafe { pages.remap(3 * PAGE) });
        // SAFETY: now three pages, ours.
        let bytes = unsafe { core::slice::from_raw_parts(pages.addr() as *const u8, 3 * PAGE) };
        assert_eq!(bytes[0], 42);
        assert!(bytes[PAGE..].iter().all(|&b| b == 0));
    }
}
