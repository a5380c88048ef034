//! Blocks a heap's owner holds for reuse: the *hot slot* — the one block
//! of its own it freed last, if the slot was empty — and the magazine (see
//! [`crate::magazine`]) of other heaps' blocks. Handing them out, holding
//! freed ones, and putting the hot block back on its slab.
//!
//! The hot slot is the owner's alone (no thief takes it), and its block is
//! of the owner's own slabs, which the heap holds anyway: it pins nothing
//! more. A free followed by an allocation — the common pattern of a server
//! replacing one object — hands back the block just freed, hot in cache,
//! without touching a freelist. Its slot word is `HELD` (so a second free is
//! refused), as in a magazine.

use super::{Heap, Held, HOT_EMPTY, HOT_OFF};
use crate::factory::SlabFactory;
use crate::slab::{DoubleFree, Popped, Shape, Slab};
use crate::sync::{bump, Ordering};

impl Heap {
    /// The owner's inline allocation: the hot block (if the heap keeps a
    /// hot slot: [`Shape::hot_slot`]), else — unless the
    /// magazine's newest block was held since the last allocation
    /// ([`Heap::freed_last`]) — a pop from the current slab. Calls nothing,
    /// so the caller's fast path saves no registers. `None`: take the slow
    /// path, which starts with [`Heap::alloc_held`] (a corrupted hot block
    /// is counted and given up there, that newest block taken).
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn alloc_inline(&self, shape: Shape) -> Option<Popped> {
        // A heap without the slot reads nothing of it.
        if shape.hot_slot() {
            let hot = self.hot.load(Ordering::Relaxed);
            if hot > HOT_OFF {
                let (slab, idx) = Slab::of_entry(hot, shape.colored);
                // SAFETY: the hot block is ours, held, of our live slab.
                let p = unsafe { (*slab).try_unhold(idx, shape) }?;
                self.hot.store(HOT_EMPTY, Ordering::Relaxed);
                return Some(p);
            }
        }
        // SAFETY: the caller is the owner.
        if !self.mag.is_empty() && unsafe { self.freed_last() } {
            return None;
        }
        // SAFETY: the caller is the owner.
        unsafe { self.alloc_fast(shape) }
    }

    /// The hot block, else the magazine's newest block if this heap
    /// allocated nothing since it was held (hardened: skipping entries
    /// whose word was corrupted). `shape` is the pool's.
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn alloc_held(&self, shape: Shape) -> Option<Popped> {
        let hot = self.hot.load(Ordering::Relaxed);
        if hot > HOT_OFF {
            self.hot.store(HOT_EMPTY, Ordering::Relaxed);
            let (slab, idx) = Slab::of_entry(hot, shape.colored);
            // SAFETY: the hot block is ours, held, of our live slab.
            unsafe {
                if let Some(p) = (*slab).unhold(idx, shape, &self.stats.corruption) {
                    return Some(p);
                }
                // Corrupted (counted): the slot is given up so that it pins
                // nothing. The list upkeep that may call for waits for the
                // slab's next free or the heap's next release of empties.
                (*slab).forsake(idx);
            }
        }
        // SAFETY: the caller is the owner.
        if unsafe { self.freed_last() } {
            // SAFETY: as above.
            return unsafe { self.alloc_magazine(shape) };
        }
        None
    }

    /// True if the magazine's newest block was held after this heap's last
    /// allocation. Only such a block serves the next allocation: a thread
    /// that took over another's blocks and reused each held one would free
    /// it again as another heap's, for as long as it runs; the rest wait
    /// for a full magazine to send them home, or for the slabs to run out.
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    unsafe fn freed_last(&self) -> bool {
        let allocs = self.stats.allocs.load(Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { self.core(|c| c.held_at) == allocs }
    }

    /// The magazine's newest block, if any (hardened: skipping entries
    /// whose word was corrupted). `shape` is the pool's.
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn alloc_magazine(&self, shape: Shape) -> Option<Popped> {
        loop {
            // SAFETY: the caller is the owner.
            let e = unsafe { self.mag.pop() }?;
            let (slab, idx) = Slab::of_entry(e, shape.colored);
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
    /// and `idx` came from its [`Slab::slot_index`]; `colored` is the
    /// slab's shape's.
    #[inline(always)]
    pub(crate) unsafe fn hold(&self, slab: *mut Slab, idx: usize, colored: bool) -> Held {
        // SAFETY: per the contract.
        let s = unsafe { &*slab };
        // SAFETY: the caller is the owner.
        match unsafe {
            self.mag
                .push(|| s.hold(idx).map(|()| s.entry(idx, colored)))
        } {
            Ok(true) => {}
            Ok(false) => return Held::Full,
            Err(DoubleFree) => return Held::DoubleFree,
        }
        let allocs = self.stats.allocs.load(Ordering::Relaxed);
        // SAFETY: the caller is the owner.
        unsafe { self.core(|c| c.held_at = allocs) };
        bump(&self.stats.remote_frees, 1);
        Held::Yes
    }

    /// Turns holding on with a magazine of `cap` entries (and the hot slot
    /// with it if `hot`), or off (`cap` 0), when a thread takes the heap or
    /// gives it up. Off, nothing may be held: [`Heap::flush_hot`] and the
    /// magazine's flush come first.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn set_holding(&self, cap: usize, hot: bool) {
        debug_assert!(self.hot.load(Ordering::Relaxed) <= HOT_OFF);
        let hot = if cap == 0 || !hot { HOT_OFF } else { HOT_EMPTY };
        self.hot.store(hot, Ordering::Relaxed);
        // SAFETY: per the contract.
        unsafe { self.mag.set_cap(cap) };
    }

    /// Puts the hot block, if any, back on its slab's freelist (with the
    /// list upkeep a free may need, through `f`). The caller keeps the pool
    /// alive across the call.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn flush_hot(&self, f: &SlabFactory) {
        let hot = self.hot.load(Ordering::Relaxed);
        if hot <= HOT_OFF {
            return;
        }
        self.hot.store(HOT_EMPTY, Ordering::Relaxed);
        // SAFETY: per the contract; the hot block is held, of our own live
        // slab.
        unsafe {
            let (slab, idx) = Slab::of_any_entry(hot);
            let s = &*slab;
            if s.free_held_local(idx, &self.stats.corruption) {
                let (list, used) = s.local(|l| (l.list(), l.used()));
                self.after_free(f, slab, list, used);
            }
        }
    }

    /// 1 if the hot slot holds a block (for `held_blocks`; any thread, a
    /// snapshot).
    pub(crate) fn hot_held(&self) -> usize {
        usize::from(self.hot.load(Ordering::Relaxed) > HOT_OFF)
    }
}
