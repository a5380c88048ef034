//! A mapping of its own per large block (see [`crate::large`]).

use super::{Backing, PAGE};
use crate::error::AllocError;

/// A mapping of its own, for one large block: zeroed when made, returned to
/// the OS when dropped.
pub(crate) struct Mapping {
    /// Owns the memory (dropping it unmaps).
    backing: Backing,
    /// The block: the first `align`-aligned address of the memory.
    addr: usize,
    /// Usable bytes from `addr` (a multiple of [`PAGE`]).
    len: usize,
    /// Address space held.
    reserved: usize,
}

// SAFETY: the memory is owned by the mapping alone; the raw pointer inside
// `Backing::Heap` only frees it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps at least `size` bytes aligned to `align` (a power of two),
    /// asking for huge pages if `huge` ([`Backing::prefer_huge_pages`]).
    pub(crate) fn new(size: usize, align: usize, huge: bool) -> Result<Mapping, AllocError> {
        let len = size.checked_add(PAGE - 1).ok_or(AllocError::OutOfMemory)? & !(PAGE - 1);
        let (backing, addr, reserved) = Backing::map(len, align)?;
        if huge {
            backing.prefer_huge_pages();
        }
        Ok(Mapping {
            backing,
            addr,
            len,
            reserved,
        })
    }

    /// The block's address.
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// Usable bytes at [`Mapping::addr`].
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Address space the mapping holds.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    /// Resizes the mapping to at least `size` bytes (`mremap` on Linux),
    /// moving it if it must (the contents move with it; grown bytes read
    /// zero). False if it cannot (not a page-aligned mapping of its own, a
    /// platform without `mremap`, or the OS said no): the caller copies
    /// instead.
    pub(crate) fn remap(&mut self, size: usize) -> bool {
        let Some(len) = size.checked_add(PAGE - 1).map(|n| n & !(PAGE - 1)) else {
            return false;
        };
        if self.reserved != self.len {
            return false;
        }
        // SAFETY: the caller holds the block exclusively (a grow or
        // shrink of it), and takes the new address from `addr()`: no
        // reference into the old place survives the move.
        let Some(addr) = (unsafe { self.backing.remap(len) }) else {
            return false;
        };
        self.addr = addr;
        self.len = len;
        self.reserved = len;
        true
    }
}
