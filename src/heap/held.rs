//! The heap's side of its magazine: blocks its owner holds for reuse (see
//! [`crate::magazine`]) — handing them out, holding freed ones, and the
//! owner's flush that puts them back on a slab.

use super::{Heap, Held, LocalFree};
use crate::slab::{DoubleFree, Popped, Shape, Slab};
use crate::sync::bump;

impl Heap {
    /// The magazine's newest block, if any (hardened: skipping entries whose
    /// word was corrupted). `shape` is the pool's.
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn alloc_held(&self, shape: Shape) -> Option<Popped> {
        loop {
            // SAFETY: the caller is the owner.
            let e = unsafe { self.mag.pop() }?;
            let (slab, idx) = Slab::of_entry(e);
            // SAFETY: a held block keeps its slab live; we hold the block.
            if let Some(p) = unsafe { (*slab).unhold(idx, shape, &self.stats.corruption) } {
                return Some(p);
            }
        }
    }

    /// A free into this heap's magazine (by its owner) of slot `idx` of
    /// `slab`, another heap's slab of the same pool. Counts the remote free.
    ///
    /// # Safety
    /// The caller is the owner, `slab` is a live slab of this heap's pool
    /// and `idx` came from its [`Slab::slot_index`].
    #[inline(always)]
    pub(crate) unsafe fn hold(&self, slab: *mut Slab, idx: usize, mark: u16) -> Held {
        if !self.mag.has_room() {
            return Held::Full;
        }
        // SAFETY: per the contract.
        let s = unsafe { &*slab };
        // SAFETY: the caller is the owner.
        match unsafe { self.mag.push(|| s.hold(idx, mark).map(|()| s.entry(idx))) } {
            Ok(true) => {}
            Ok(false) => return Held::Full,
            Err(DoubleFree) => return Held::DoubleFree,
        }
        bump(&self.stats.remote_frees, 1);
        Held::Yes
    }

    /// The owner's flush of a block its magazine held, of one of its own
    /// slabs: onto the slab's freelist, as [`Heap::free_local`] (the free
    /// was counted when the block was held).
    ///
    /// # Safety
    /// The caller is the owner and held slot `idx` of `slab`, a slab of
    /// this heap.
    pub(crate) unsafe fn free_held(&self, slab: *mut Slab, idx: usize) -> LocalFree {
        // SAFETY: per the contract.
        unsafe {
            let s = &*slab;
            if !s.free_held(idx) {
                return LocalFree::Done;
            }
            let (list, used) = s.local(|l| (l.list(), l.used()));
            LocalFree::Upkeep(list, used)
        }
    }
}
