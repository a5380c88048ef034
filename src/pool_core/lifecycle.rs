//! Heaps changing hands (the states are in [`crate::heap::owner`]): a
//! thread adopts a heap, and abandons it — at its exit, or after the pool
//! closed — through one routine, [`PoolCore::abandon`]. The close abandons
//! what no thread owns and marks the rest, so each owner abandons its heap
//! itself at its next free, flush or exit in the pool; from then on every
//! free into the heap's slabs goes home through their remote lists.

use crate::heap::{owner, Heap};
use crate::sync::{fence, Ordering};
use crate::thread;

use super::hook::exit_hook;
use super::PoolCore;

impl PoolCore {
    /// Makes this thread the owner of `heap` if it is an orphan, the heap
    /// limit allows it and the pool is open.
    pub(super) fn acquire(&self, heap: &Heap) -> bool {
        if !thread::activate() {
            return false;
        }
        let me = thread::serial();
        if heap.owner.load(Ordering::Relaxed) == me {
            return true;
        }
        let mut g = self.tier.lock();
        // The close drops the last handle before it takes the lock to mark
        // every heap: a heap taken under the lock before that is marked, and
        // after it the count reads 0 (a thread that frees into a closed pool
        // takes no heap there).
        if heap.owner.load(Ordering::Acquire) != owner::ORPHAN
            || self.live_heaps.load(Ordering::Relaxed) >= self.config.max_thread_heaps
            || self.handles.load(Ordering::Relaxed) == 0
        {
            return false;
        }
        if !thread::on_exit(exit_hook(self.pool_ref(), heap)) {
            return false;
        }
        g.remove_orphan(heap);
        heap.owner.store(me, Ordering::Relaxed);
        // SAFETY: this thread owns the heap now.
        unsafe { heap.set_holding(self.config.magazine) };
        self.live_heaps.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Gives `heap` up: sends its magazine home, makes it an orphan (the
    /// pool is open) or dead (the pool closed), and releases its empty
    /// slabs — an object pool's orphan keeps its retained ones, with their
    /// cached objects, for the thread that adopts it. Does nothing if the
    /// heap was abandoned already.
    ///
    /// The calling thread owns `heap` or has abandoned it (then no other
    /// thread owns it: only an orphan is adopted, and only this thread's
    /// exit makes one of it). The caller keeps the pool alive across the
    /// call (a handle, a block of the pool, or the exit hook's upgraded
    /// reference).
    pub(super) fn abandon(&self, heap: &Heap) {
        // Not the thread's serial: in teardown it may be gone already.
        if !owner::is_thread(heap.owner.load(Ordering::Relaxed)) {
            return;
        }
        // SAFETY: this thread owns `heap` (a close may mark it closing
        // meanwhile; only this thread moves it on from there).
        unsafe {
            super::home::flush_magazine(heap);
            heap.flush_hot(&self.factory);
            heap.set_holding(0);
        }
        thread::uncache_heap(self.at, self.id);
        let mut g = self.tier.lock();
        // Read again under the lock: the close writes it under the lock too.
        let dead = heap.owner.load(Ordering::Relaxed) & owner::CLOSING != 0;
        // From here the tier lock stands for the owner. A publisher that
        // pushes into one of the heap's slabs after this store sees the heap
        // dead and collects it; one that pushed before is seen by the
        // release below (the fences pair as in `publish`).
        let next = if dead { owner::DEAD } else { owner::ORPHAN };
        heap.owner.store(next, Ordering::Release);
        fence(Ordering::SeqCst);
        let keep = match self.factory.objects() {
            Some(_) if !dead => self.config.retained_empty,
            _ => 0,
        };
        // SAFETY: the tier lock is held and no thread owns the heap.
        unsafe { heap.release_empty_but(&self.factory, keep) };
        self.live_heaps.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: as above, read under the lock.
        if !dead && unsafe { heap.slab_count() } > 0 {
            g.add_orphan(heap);
        }
    }

    /// An owner's flush of `heap` (its exit hook's, for
    /// [`flush_thread`](super::flush_thread)): its magazine sent home, or
    /// the heap abandoned if the pool has closed.
    pub(super) fn flush_owned(&self, heap: &Heap) {
        let me = thread::serial();
        let word = heap.owner.load(Ordering::Relaxed);
        if me != 0 && word == me {
            // SAFETY: this thread owns `heap`.
            unsafe {
                super::home::flush_magazine(heap);
                heap.flush_hot(&self.factory);
            }
        } else if me != 0 && word == owner::closing(me) {
            self.abandon(heap);
        }
    }

    /// Abandons `heap`, this thread's heap of the pool, if the pool has
    /// closed (a free found its magazine off).
    #[cold]
    pub(super) fn abandon_if_closing(&self, heap: &Heap) {
        if heap.owner.load(Ordering::Relaxed) == owner::closing(thread::serial()) {
            self.abandon(heap);
        }
    }

    /// The close, by the last handle: no allocation can follow. Every
    /// heap's word moves to its closed state (see [`crate::heap::owner`]),
    /// the tier's and the orphans' empty slabs are released, this thread's
    /// heap is abandoned, and every other thread's magazine is turned off
    /// and sent home (so the blocks it held let their slabs empty).
    pub(super) fn close(&self) {
        // The index may serve a new pool; entries holding this id never
        // match it.
        thread::release_index(self.index);
        let me = thread::serial();
        let mine = self
            .registry
            .get()
            .filter(|h| me != 0 && h.owner.load(Ordering::Relaxed) == me);
        {
            let mut g = self.tier.lock();
            self.registry.for_each(|h| {
                let word = h.owner.load(Ordering::Relaxed);
                if owner::is_thread(word) {
                    h.owner.store(owner::closing(word), Ordering::Relaxed);
                } else if word == owner::ORPHAN {
                    h.owner.store(owner::DEAD, Ordering::Relaxed);
                }
            });
            self.tier.heap().owner.store(owner::DEAD, Ordering::Relaxed);
            // Pairs with the fence in `publish`: a publisher into a slab of
            // the tier or an orphan sees it dead and collects it, or this
            // release sees its push.
            fence(Ordering::SeqCst);
            g.release_empty(&self.factory);
        }
        if let Some(h) = mine {
            self.abandon(h);
        }
        self.close_magazines(mine);
        self.factory.source().trim();
    }
}
