//! The shared overflow tier: [`OverflowTier`], a set of heaps (one per
//! size class) whose owner is whoever holds its mutex.
//!
//! It serves threads past `max_thread_heaps`, heaps past `max_thread_slabs`,
//! and threads in teardown. It also keeps the *orphans* — heap sets of exited
//! threads that no new thread has taken over — and, as their owner while it
//! holds its lock ([`crate::heap::owner`]), lets their free slots serve
//! other threads before anything new is mapped.
//!
//! How it grows and serves:
//! - growth happens outside the lock (the mapping never runs under it); each
//!   racing grower adds at most one segment per attempt, so over-growth is
//!   bounded by the number of racing threads;
//! - the first-open hint is the heap's current slab and partial list: the
//!   next allocation goes straight to a segment with room;
//! - frees never take the lock: a segment is a slab, found from the block
//!   address in O(1), and a free into it is a remote free (lock-free push);
//! - empty segments go back to the page source (and from there to the OS).
//!
//! Lock order: tier lock, then the page source's lock. The owner fast path
//! never touches the tier.

use crate::error::AllocError;
use crate::factory::SlabFactory;
use crate::heap::{owner, Heap, HeapSet};
use crate::meta::{mvec, MVec};
use crate::slab::Popped;
use crate::sync::{bump, AtomicU64, Mutex, MutexGuard, Ordering};

/// State guarded by the tier lock.
struct TierState {
    /// Heap sets of exited threads not yet taken over by a new thread.
    orphans: MVec<HeapSet>,
}

// SAFETY: the orphans are heap sets owned by the pool's registry, which
// outlives the tier; they are only dereferenced under the lock.
unsafe impl Send for TierState {}

/// The mutex-guarded, growable shared tier.
pub(crate) struct OverflowTier {
    /// One heap per class ([`OverflowTier::heaps`]).
    heaps: MVec<Heap>,
    lock: Mutex<TierState>,
    /// Allocations served (written under the lock).
    allocs: AtomicU64,
    /// Segments mapped for the tier itself (written under the lock).
    grown: AtomicU64,
    /// The classes whose tier heap may hold segments (written under the
    /// lock).
    used: AtomicU64,
}

/// Proof that the tier lock is held.
pub(crate) struct TierGuard<'a> {
    tier: &'a OverflowTier,
    state: MutexGuard<'a, TierState>,
}

impl OverflowTier {
    /// A tier for `classes` size classes.
    pub(crate) fn new(classes: usize) -> Self {
        let mut heaps = mvec();
        heaps.extend((0..classes.max(1)).map(|c| Heap::with_owner(owner::TIER, c)));
        Self {
            heaps,
            lock: Mutex::new(TierState { orphans: mvec() }),
            allocs: AtomicU64::new(0),
            grown: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> TierGuard<'_> {
        TierGuard {
            tier: self,
            state: self.lock.lock(),
        }
    }

    /// The tier's lock word, for the `fork` handlers.
    #[cfg(not(loom))]
    pub(crate) fn raw_lock(&self) -> &crate::sync::lock::RawLock {
        self.lock.raw()
    }

    /// The tier's own heaps (owner [`owner::TIER`], [`owner::DEAD`] once
    /// the pool closed).
    pub(crate) fn heaps(&self) -> HeapSet {
        // SAFETY: the vector's pointer covers every heap; they live as long
        // as the tier, and the vector never grows after `new`.
        unsafe { HeapSet::from_raw(self.heaps.as_ptr()) }
    }

    /// Every heap of the tier.
    pub(crate) fn each_heap(&self) -> impl Iterator<Item = &Heap> {
        self.heaps.iter()
    }

    /// Allocations the tier has served.
    pub(crate) fn allocs(&self) -> u64 {
        self.allocs.load(Ordering::Relaxed)
    }

    /// Segments the tier has grown by.
    pub(crate) fn grown(&self) -> u64 {
        self.grown.load(Ordering::Relaxed)
    }

    /// Allocates a block of class `c` (made by `f`) from the tier: its own
    /// segments, then orphans' free slots, then a new segment mapped
    /// outside the lock.
    pub(crate) fn alloc(&self, c: usize, f: &SlabFactory) -> Result<Popped, AllocError> {
        let heap = &self.heaps[c];
        let mut g = self.lock();
        loop {
            if let Some(p) = g.try_alloc(c, f)? {
                bump(&self.allocs, 1);
                return Ok(p);
            }
            drop(g);
            let slab = f.make((heap as *const Heap).cast());
            g = self.lock();
            let slab = slab?;
            // SAFETY: the lock is held, so we stand for the tier heap's owner.
            unsafe { heap.adopt(slab.as_ptr()) };
            bump(&self.grown, 1);
            let used = self.used.load(Ordering::Relaxed);
            self.used.store(used | 1 << c, Ordering::Relaxed);
        }
    }
}

impl TierGuard<'_> {
    /// Class `c` without growing: the tier's segments, then each orphan's.
    fn try_alloc(&mut self, c: usize, f: &SlabFactory) -> Result<Option<Popped>, AllocError> {
        let heap = &self.tier.heaps[c];
        // SAFETY: the lock is held: we are the tier heap's owner.
        unsafe {
            if let Some(p) = heap.alloc_fast(f.shape()) {
                return Ok(Some(p));
            }
            if let Some(p) = heap.alloc_slow(f, false)? {
                return Ok(Some(p));
            }
        }
        let mut i = 0;
        while i < self.state.orphans.len() {
            let orphan = self.state.orphans[i];
            if Self::orphan_used(orphan) & 1 << c == 0 {
                i += 1;
                continue;
            }
            let got = self.borrow(orphan, c, |h| {
                // SAFETY: `borrow` made us the orphan's owner.
                unsafe { h.alloc_slow(f, false) }
            })?;
            if got.is_some() {
                return Ok(got);
            }
            if self.slabs_of(orphan) == 0 {
                self.state.orphans.swap_remove(i);
            } else {
                i += 1;
            }
        }
        Ok(None)
    }

    /// The classes of `set` (an orphan, whose masks the lock's holder owns)
    /// that may hold slabs.
    fn orphan_used(set: HeapSet) -> u64 {
        // SAFETY: a set has a class 0; orphans live as long as the pool.
        unsafe { set.class(0) }.used.load(Ordering::Relaxed)
    }

    /// The classes whose tier heap may hold segments.
    pub(crate) fn used(&self) -> u64 {
        self.tier.used.load(Ordering::Relaxed)
    }

    /// Runs `f` as the owner of class `c`'s heap of the orphan `set` (the
    /// lock's holder is; adoption also takes the lock).
    fn borrow<R>(&mut self, set: HeapSet, c: usize, f: impl FnOnce(&Heap) -> R) -> R {
        // SAFETY: orphans are sets of the registry, alive as long as the
        // pool, of the tier's number of classes.
        f(unsafe { set.class(c) })
    }

    /// The slabs the orphan `set` holds; its `used` mask updated to match.
    fn slabs_of(&mut self, set: HeapSet) -> usize {
        let (mut slabs, mut used) = (0, 0);
        let mut mask = Self::orphan_used(set);
        while mask != 0 {
            let c = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            // SAFETY: `borrow` made us the owner.
            let n = self.borrow(set, c, |h| unsafe { h.slab_count() });
            if n > 0 {
                used |= 1 << c;
            }
            slabs += n;
        }
        // SAFETY: as in `used`.
        unsafe { set.class(0) }.used.store(used, Ordering::Relaxed);
        slabs
    }

    /// Adds an orphaned heap set.
    pub(crate) fn add_orphan(&mut self, set: HeapSet) {
        self.state.orphans.push(set);
    }

    /// Removes `set` from the orphans (a new thread took it over).
    pub(crate) fn remove_orphan(&mut self, set: HeapSet) {
        self.state.orphans.retain(|&h| h != set);
    }

    /// Releases the empty segments of the tier and of every orphan (class
    /// `c`'s made by `fs[c]`); drops orphans left with nothing.
    pub(crate) fn release_empty(&mut self, fs: &[SlabFactory]) {
        for (c, (heap, f)) in self.tier.heaps.iter().zip(fs).enumerate() {
            if self.used() & 1 << c != 0 {
                // SAFETY: the lock is held: we are the tier heaps' owner.
                unsafe { heap.release_empty(f) };
            }
        }
        let orphans = core::mem::replace(&mut self.state.orphans, mvec());
        for o in orphans {
            let mut mask = Self::orphan_used(o);
            while mask != 0 {
                let c = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                // SAFETY: `borrow` makes us the owner.
                self.borrow(o, c, |h| unsafe { h.release_empty(&fs[c]) });
            }
            if self.slabs_of(o) > 0 {
                self.state.orphans.push(o);
            }
        }
    }
}
