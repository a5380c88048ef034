//! The heap's side of its magazine: blocks its owner holds for reuse (see
//! [`crate::magazine`]) — handing them out, holding freed ones, and the
//! owner's paths that put them back on a slab (its flush, and frees once
//! the pool has closed).

use super::{Heap, Held, LocalFree};
use crate::magazine::Room;
use crate::slab::{DoubleFree, ListState, Popped, Shape, Slab};
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
        match self.mag.room() {
            Room::Yes => {}
            Room::Full => return Held::Full,
            Room::Closed => return Held::Closed,
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

    /// After an owner's free into `slab` once the pool has closed: takes in
    /// what other threads sent home (a closing sweep pushes the blocks it
    /// took from magazines onto their slabs' remote lists), so the slab is
    /// found empty, and released, as soon as it is.
    ///
    /// # Safety
    /// The caller is the owner and `slab` one of its slabs.
    #[cold]
    pub(crate) unsafe fn drain_after_close(&self, slab: *mut Slab, freed: LocalFree) -> LocalFree {
        // SAFETY: per the contract.
        unsafe {
            let s = &*slab;
            let list = s.local(|l| l.list());
            if matches!(freed, LocalFree::DoubleFree) || list == ListState::Detached {
                return freed;
            }
            s.drain(&self.stats.corruption);
            match (freed, s.used()) {
                (LocalFree::Upkeep(..), used) | (LocalFree::Done, used @ 0) => {
                    LocalFree::Upkeep(list, used)
                }
                (other, _) => other,
            }
        }
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
