//! Pages on Windows: `VirtualAlloc` reserves and commits a region,
//! `VirtualFree` releases it. Giving pages back decommits them and commits
//! them again at once: the physical memory and its contents are gone and
//! the pages read zero, as on Linux. No `mremap`: a large block's resize
//! copies.

use core::ffi::c_void;

use windows_sys::Win32::System::Memory::{
    VirtualAlloc, VirtualFree, MEM_COMMIT, MEM_DECOMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_READWRITE,
};

use crate::sync::{AtomicU64, Ordering};

/// Calls of the `VirtualAlloc` family made so far.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn count() {
    CALLS.fetch_add(1, Ordering::Relaxed);
}

/// The `VirtualAlloc`-family calls made so far by the process's homeslab.
pub(crate) fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// A reserved and committed region, released when dropped.
pub(crate) struct Pages {
    addr: usize,
}

impl Pages {
    /// Reserves and commits `len` bytes, zeroed; `None` if the OS refuses.
    pub(crate) fn map(len: usize) -> Option<Pages> {
        let p = map_raw(len);
        (!p.is_null()).then_some(Pages { addr: p as usize })
    }

    /// The first address.
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// Gives the pages of `offset..offset + len` back: they read zero
    /// afterwards.
    ///
    /// # Safety
    /// The range lies inside the region, page-aligned, and nothing reads
    /// or writes it meanwhile.
    #[cfg(test)]
    pub(crate) unsafe fn release(&self, offset: usize, len: usize) {
        // SAFETY: per the contract.
        unsafe { release(self.addr + offset, len) };
    }

    /// No `mremap` on Windows: always false.
    ///
    /// # Safety
    /// None needed; unsafe as on the other platforms.
    pub(crate) unsafe fn remap(&mut self, _len: usize) -> bool {
        false
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the region came from `map_raw` and is dropped once.
        unsafe { unmap_raw(self.addr as *mut u8, 0) };
    }
}

/// Gives the pages of `addr..addr + len` back: they read zero afterwards.
/// Committing them again fails only at the system's commit limit; the
/// process then aborts, as the pages could not be used.
///
/// # Safety
/// The range lies inside a region of ours, page-aligned, and nothing reads
/// or writes it meanwhile.
pub(crate) unsafe fn release(addr: usize, len: usize) {
    let at = addr as *mut c_void;
    count();
    // SAFETY: per the contract the range is ours and unused; decommit
    // and commit touch nothing else.
    let recommitted = unsafe {
        VirtualFree(at, len, MEM_DECOMMIT) != 0
            && !VirtualAlloc(at, len, MEM_COMMIT, PAGE_READWRITE).is_null()
    };
    if !recommitted {
        std::process::abort();
    }
}

/// Reserves and commits `len` bytes, zeroed; null if the OS refuses.
pub(crate) fn map_raw(len: usize) -> *mut u8 {
    count();
    // SAFETY: a new region at an address of the OS's choosing touches no
    // existing memory.
    unsafe {
        VirtualAlloc(
            core::ptr::null(),
            len,
            MEM_RESERVE | MEM_COMMIT,
            PAGE_READWRITE,
        )
    }
    .cast()
}

/// Releases what [`map_raw`] reserved (`len` is implied by the region).
///
/// # Safety
/// `p` is a region from [`map_raw`] that nobody uses any more.
pub(crate) unsafe fn unmap_raw(p: *mut u8, _len: usize) {
    count();
    // SAFETY: per the contract; `MEM_RELEASE` takes size 0 and the
    // region's base.
    unsafe { VirtualFree(p.cast(), 0, MEM_RELEASE) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = crate::os::PAGE;

    #[test]
    fn raw_regions_are_zeroed() {
        let p = map_raw(2 * PAGE);
        assert!(!p.is_null());
        // SAFETY: a fresh two-page region.
        let bytes = unsafe { core::slice::from_raw_parts(p, 2 * PAGE) };
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: ours, unused from here.
        unsafe { unmap_raw(p, 2 * PAGE) };
    }

    #[test]
    fn no_remap() {
        let mut pages = Pages::map(PAGE).unwrap();
        // SAFETY: nothing refers into the region.
        assert!(!unsafe { pages.remap(2 * PAGE) });
    }
}
