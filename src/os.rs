//! The operating system's memory, and the one place that asks for it:
//! anonymous mappings (memmap2) for the page source's chunks and for large
//! blocks, raw page mappings for the meta allocator (which cannot own a
//! mapping object: it is where bookkeeping lives), and the advice that
//! gives pages back. Under Miri and loom, which model no `mmap`, a mapping
//! is a zeroed heap allocation and giving pages back zeroes them.

use crate::error::AllocError;

/// The page granularity mappings are rounded to.
pub(crate) const PAGE: usize = 4096;

/// Bytes a page source maps at a time by default, carving regions out of
/// them (0: each region its own mapping, where memory comes from the heap
/// under Miri and loom, so a chunk would only be a large allocation).
pub(crate) const DEFAULT_CHUNK_BYTES: usize = if cfg!(any(miri, loom)) { 0 } else { 1 << 20 };

/// Memory from the OS, owned: dropping it gives it back.
pub(crate) enum Backing {
    #[cfg(not(any(miri, loom)))]
    Mmap(memmap2::MmapMut),
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
            let map = memmap2::MmapMut::map_anon(reserved).map_err(|_| AllocError::OutOfMemory)?;
            let start = map.as_ptr() as usize;
            let base = (start + align - 1) & !(align - 1);
            Ok((Backing::Mmap(map), base, reserved))
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

    /// Gives the pages of `addr..addr + len` back to the OS
    /// (`MADV_DONTNEED`): they read zero afterwards.
    ///
    /// # Safety
    /// The range lies inside this memory, page-aligned, and nothing reads
    /// or writes it meanwhile.
    pub(crate) unsafe fn release(&self, addr: usize, len: usize) {
        #[cfg(not(any(miri, loom)))]
        {
            let Backing::Mmap(map) = self;
            let offset = addr - map.as_ptr() as usize;
            // SAFETY: per the contract; DONTNEED only makes the pages read
            // back as zeroes.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            };
        }
        // No OS to ask: zero the range, as `MADV_DONTNEED` would.
        #[cfg(any(miri, loom))]
        // SAFETY: per the contract.
        unsafe {
            core::ptr::write_bytes(addr as *mut u8, 0, len)
        };
    }
}

/// Maps `len` bytes (a multiple of [`PAGE`]), zeroed; null if the OS
/// refuses. For the meta allocator, which keeps no mapping object.
#[cfg(not(any(miri, loom)))]
pub(crate) fn map_raw(len: usize) -> *mut u8 {
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
#[cfg(not(any(miri, loom)))]
pub(crate) unsafe fn unmap_raw(p: *mut u8, len: usize) {
    // SAFETY: per the contract.
    unsafe { libc::munmap(p.cast(), len) };
}

mod mapping;
pub(crate) use mapping::Mapping;
