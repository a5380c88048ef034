//! The heap's side of its magazine: blocks its owner holds for reuse (see
//! [`crate::magazine`]) — handing them out and holding freed ones.

use super::{Heap, Held};
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
    pub(crate) unsafe fn hold(&self, slab: *mut Slab, idx: usize) -> Held {
        // SAFETY: per the contract.
        let s = unsafe { &*slab };
        // SAFETY: the caller is the owner.
        match unsafe { self.mag.push(|| s.hold(idx).map(|()| s.entry(idx))) } {
            Ok(true) => {}
            Ok(false) => return Held::Full,
            Err(DoubleFree) => return Held::DoubleFree,
        }
        bump(&self.stats.remote_frees, 1);
        Held::Yes
    }
}
