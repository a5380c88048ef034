//! The shared overflow tier: [`OverflowTier`], a heap whose owner is
//! whoever holds its mutex.
//!
//! It serves threads past `max_thread_heaps`, heaps past `max_thread_slabs`,
//! and threads in teardown. It also keeps the *orphans* — heaps of exited
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
use crate::heap::{owner, Heap};
use crate::meta::{mvec, MVec};
use crate::slab::Popped;
use crate::sync::{bump, AtomicU64, Mutex, MutexGuard, Ordering};

/// State guarded by the tier lock.
struct TierState {
    /// Heaps of exited threads not yet taken over by a new thread.
    orphans: MVec<*const Heap>,
}

// SAFETY: the orphan pointers are heaps owned by the pool's registry, which
// outlives the tier; they are only dereferenced under the lock.
unsafe impl Send for TierState {}

/// The mutex-guarded, growable shared tier.
pub(crate) struct OverflowTier {
    heap: Heap,
    lock: Mutex<TierState>,
    /// Allocations served (written under the lock).
    allocs: AtomicU64,
    /// Segments mapped for the tier itself (written under the lock).
    grown: AtomicU64,
}

/// Proof that the tier lock is held.
pub(crate) struct TierGuard<'a> {
    tier: &'a OverflowTier,
    state: MutexGuard<'a, TierState>,
}

impl OverflowTier {
    pub(crate) fn new() -> Self {
        Self {
            heap: Heap::with_owner(owner::TIER),
            lock: Mutex::new(TierState { orphans: mvec() }),
            allocs: AtomicU64::new(0),
            grown: AtomicU64::new(0),
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

    /// The tier's own heap (owner [`owner::TIER`], [`owner::DEAD`] once
    /// the pool closed).
    pub(crate) fn heap(&self) -> &Heap {
        &self.heap
    }

    /// Allocations the tier has served.
    pub(crate) fn allocs(&self) -> u64 {
        self.allocs.load(Ordering::Relaxed)
    }

    /// Segments the tier has grown by.
    pub(crate) fn grown(&self) -> u64 {
        self.grown.load(Ordering::Relaxed)
    }

    /// Allocates from the tier: its own segments, then orphans' free slots,
    /// then a new segment mapped outside the lock.
    pub(crate) fn alloc(&self, f: &SlabFactory) -> Result<Popped, AllocError> {
        let mut g = self.lock();
        loop {
            if let Some(p) = g.try_alloc(f)? {
                bump(&self.allocs, 1);
                return Ok(p);
            }
            drop(g);
            let slab = f.make((&self.heap as *const Heap).cast());
            g = self.lock();
            let slab = slab?;
            // SAFETY: the lock is held, so we stand for the tier heap's owner.
            unsafe { self.heap.adopt(slab.as_ptr()) };
            bump(&self.grown, 1);
        }
    }
}

impl TierGuard<'_> {
    /// Without growing: the tier's segments, then each orphan's.
    fn try_alloc(&mut self, f: &SlabFactory) -> Result<Option<Popped>, AllocError> {
        let heap = &self.tier.heap;
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
            let got = self.borrow(orphan, |h| {
                // SAFETY: `borrow` made us the orphan's owner.
                unsafe { h.alloc_slow(f, false) }
            })?;
            if got.is_some() {
                return Ok(got);
            }
            // SAFETY: as above.
            let slabs = self.borrow(orphan, |h| unsafe { h.slab_count() });
            if slabs == 0 {
                self.state.orphans.swap_remove(i);
            } else {
                i += 1;
            }
        }
        Ok(None)
    }

    /// Runs `f` as the owner of the orphan `heap` (the lock's holder is;
    /// adoption also takes the lock).
    fn borrow<R>(&mut self, heap: *const Heap, f: impl FnOnce(&Heap) -> R) -> R {
        // SAFETY: orphans are heaps of the registry, alive as long as the pool.
        f(unsafe { &*heap })
    }

    /// Adds an orphaned heap.
    pub(crate) fn add_orphan(&mut self, heap: *const Heap) {
        self.state.orphans.push(heap);
    }

    /// Removes `heap` from the orphans (a new thread took it over).
    pub(crate) fn remove_orphan(&mut self, heap: *const Heap) {
        self.state.orphans.retain(|&h| h != heap);
    }

    /// Releases the empty segments of the tier and of every orphan; drops
    /// orphans left with nothing.
    pub(crate) fn release_empty(&mut self, f: &SlabFactory) {
        // SAFETY: the lock is held: we are the tier heap's owner.
        unsafe { self.tier.heap.release_empty(f) };
        let orphans = core::mem::replace(&mut self.state.orphans, mvec());
        for o in orphans {
            // SAFETY: `borrow` makes us the owner.
            let left = self.borrow(o, |h| unsafe {
                h.release_empty(f);
                h.slab_count()
            });
            if left > 0 {
                self.state.orphans.push(o);
            }
        }
    }
}
