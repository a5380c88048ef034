//! Heap sets changing hands (the states are in [`crate::heap::owner`]): a
//! thread adopts a set, and abandons it — at its exit, or after the pool
//! closed — through one routine, [`PoolCore::abandon`]. The close abandons
//! what no thread owns and marks the rest, so each owner abandons its set
//! itself at its next free, flush or exit in the pool; from then on every
//! free into the set's slabs goes home through their remote lists.
//!
//! Every heap of a set has its own owner word (a free reads its slab's
//! heap's), and every transition writes them all under the tier lock, so
//! the words of one set always agree; class 0's stands for the set.

use crate::heap::{owner, Heap, HeapSet};
use crate::sync::{fence, Ordering};
use crate::thread;

use super::hook::exit_hook;
use super::PoolCore;

impl PoolCore {
    /// The owner word of `set` (class 0's; the others agree).
    fn word(set: HeapSet) -> u64 {
        // SAFETY: a set has a class 0 and lives as long as its registry.
        unsafe { set.class(0) }.owner.load(Ordering::Relaxed)
    }

    /// Writes every owner word of `set`. The caller holds the tier lock.
    fn set_word(&self, set: HeapSet, word: u64, order: Ordering) {
        for c in 0..self.classes() {
            // SAFETY: `c` is one of the set's classes.
            unsafe { set.class(c) }.owner.store(word, order);
        }
    }

    /// Makes this thread the owner of `set` if it is an orphan, the heap
    /// limit allows it and the pool is open.
    pub(super) fn acquire(&self, set: HeapSet) -> bool {
        if !thread::activate() {
            return false;
        }
        let me = thread::serial();
        if Self::word(set) == me {
            return true;
        }
        let mut g = self.tier.lock();
        // The close drops the last handle before it takes the lock to mark
        // every set: a set taken under the lock before that is marked, and
        // after it the count reads 0 (a thread that frees into a closed pool
        // takes no set there).
        // SAFETY: as in `word`.
        if unsafe { set.class(0) }.owner.load(Ordering::Acquire) != owner::ORPHAN
            || self.live_heaps.load(Ordering::Relaxed) >= self.config.max_thread_heaps
            || self.handles.load(Ordering::Relaxed) == 0
        {
            return false;
        }
        if !thread::on_exit(exit_hook(self.pool_ref(), set)) {
            return false;
        }
        g.remove_orphan(set);
        self.set_word(set, me, Ordering::Relaxed);
        // SAFETY: this thread owns the set now.
        unsafe { self.each_heap(set, |h, _| h.set_holding(self.config.magazine)) };
        self.live_heaps.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Gives `set` up: sends its magazines home, makes it an orphan (the
    /// pool is open) or dead (the pool closed), and releases its empty
    /// slabs — an object pool's orphan keeps its retained ones, with their
    /// cached objects, for the thread that adopts it. Does nothing if the
    /// set was abandoned already.
    ///
    /// The calling thread owns `set` or has abandoned it (then no other
    /// thread owns it: only an orphan is adopted, and only this thread's
    /// exit makes one of it). The caller keeps the pool alive across the
    /// call (a handle, a block of the pool, or the exit hook's upgraded
    /// reference).
    pub(super) fn abandon(&self, set: HeapSet) {
        // Not the thread's serial: in teardown it may be gone already.
        if !owner::is_thread(Self::word(set)) {
            return;
        }
        // SAFETY: this thread owns the set (a close may mark it closing
        // meanwhile; only this thread moves it on from there).
        unsafe {
            self.each_heap(set, |h, f| {
                super::home::flush_magazine(h);
                h.flush_hot(f);
                h.set_holding(0);
            })
        };
        thread::uncache_heap(self.at, self.id);
        let mut g = self.tier.lock();
        // Read again under the lock: the close writes it under the lock too.
        let dead = Self::word(set) & owner::CLOSING != 0;
        // From here the tier lock stands for the owner. A publisher that
        // pushes into one of the set's slabs after this store sees its heap
        // dead and collects it; one that pushed before is seen by the
        // release below (the fences pair as in `publish`).
        let next = if dead { owner::DEAD } else { owner::ORPHAN };
        self.set_word(set, next, Ordering::Release);
        fence(Ordering::SeqCst);
        let keep = match self.objects() {
            Some(_) if !dead => self.config.retained_empty,
            _ => 0,
        };
        let mut slabs = 0;
        // SAFETY: the tier lock is held and no thread owns the set.
        unsafe {
            self.each_heap(set, |h, f| {
                h.release_empty_but(f, keep);
                slabs += h.slab_count();
            })
        };
        self.live_heaps.fetch_sub(1, Ordering::Relaxed);
        if !dead && slabs > 0 {
            g.add_orphan(set);
        }
    }

    /// An owner's flush of `set` (its exit hook's, for
    /// [`flush_thread`](super::flush_thread)): its magazines sent home, or
    /// the set abandoned if the pool has closed.
    pub(super) fn flush_owned(&self, set: HeapSet) {
        let me = thread::serial();
        let word = Self::word(set);
        if me != 0 && word == me {
            // SAFETY: this thread owns the set.
            unsafe {
                self.each_heap(set, |h, f| {
                    super::home::flush_magazine(h);
                    h.flush_hot(f);
                })
            };
        } else if me != 0 && word == owner::closing(me) {
            self.abandon(set);
        }
    }

    /// Abandons this thread's set of the pool, whose class heap `heap` is,
    /// if the pool has closed (a free found its magazine off, or a free
    /// into the thread's own slab found the word closing).
    #[cold]
    pub(super) fn abandon_if_closing(&self, heap: &Heap) {
        if heap.owner.load(Ordering::Relaxed) == owner::closing(thread::serial()) {
            if let Some(set) = self.registry.get() {
                self.abandon(set);
            }
        }
    }

    /// The close, by the last handle: no allocation can follow. Every
    /// heap's word moves to its closed state (see [`crate::heap::owner`]),
    /// the tier's and the orphans' empty slabs are released, this thread's
    /// set is abandoned, and every other thread's magazines are turned off
    /// and sent home (so the blocks they held let their slabs empty).
    pub(super) fn close(&self) {
        // The index may serve a new pool; entries holding this id never
        // match it.
        thread::release_index(self.index);
        let mine = self.my_heaps();
        {
            let mut g = self.tier.lock();
            self.registry.for_each_set(|set| {
                let word = Self::word(set);
                if owner::is_thread(word) {
                    self.set_word(set, owner::closing(word), Ordering::Relaxed);
                } else if word == owner::ORPHAN {
                    self.set_word(set, owner::DEAD, Ordering::Relaxed);
                }
            });
            self.set_word(self.tier.heaps(), owner::DEAD, Ordering::Relaxed);
            // Pairs with the fence in `publish`: a publisher into a slab of
            // the tier or an orphan sees it dead and collects it, or this
            // release sees its push.
            fence(Ordering::SeqCst);
            g.release_empty(&self.factories);
        }
        if let Some(set) = mine {
            self.abandon(set);
        }
        self.close_magazines(mine);
        for f in self.factories.iter() {
            f.source().trim();
        }
    }
}
