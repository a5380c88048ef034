//! Heap sets changing hands (the states are in [`crate::heap::owner`]): a
//! thread adopts a set, and abandons it — at its exit, or after the pool
//! closed — through one routine, [`PoolCore::abandon`]. The close abandons
//! what no thread owns and marks the rest, so each owner abandons its set
//! itself at its next free, flush or exit in the pool; from then on every
//! free into the set's slabs goes home through their remote lists.
//!
//! Each heap of a set has its own owner word (a free reads its slab's
//! heap's). A set's first heap keeps two masks of classes: `used`, the
//! heaps that may hold slabs, and `active`, the heaps the owner has taken
//! into use (see [`PoolCore::take_class`]), always a superset of `used`
//! while the set is owned. Transitions write the words of those classes
//! only, so that taking and giving up a set costs the classes a thread
//! touched, not all of them; class 0's word, always written, stands for
//! the set.

use crate::heap::{owner, Heap, HeapSet};
use crate::sync::{fence, Ordering};
use crate::thread;

use super::hook::exit_hook;
use super::PoolCore;

/// Class `c`'s bit in a set's masks.
pub(super) const fn bit(c: usize) -> u64 {
    1 << c
}

impl PoolCore {
    /// `set`'s first heap, which keeps the set's masks. `set` is one of
    /// this core's (its registry's or its tier's).
    pub(super) fn head(&self, set: HeapSet) -> &Heap {
        // SAFETY: a set has a class 0, and this core's sets live as long as
        // its registry and tier.
        unsafe { set.class(0) }
    }

    /// The owner word of `set` (class 0's), one of this core's.
    pub(super) fn word(&self, set: HeapSet) -> u64 {
        self.head(set).owner.load(Ordering::Relaxed)
    }

    /// Writes the owner word of each class of `set` in `mask` (and of class
    /// 0). The caller holds the tier lock.
    fn set_word(set: HeapSet, mask: u64, word: u64, order: Ordering) {
        each_bit(mask | 1, |c| {
            // SAFETY: every bit of a mask is one of the set's classes.
            unsafe { set.class(c) }.owner.store(word, order)
        });
    }

    /// Runs `f` on each heap of `set` whose class is in `mask`, with its
    /// class's factory.
    ///
    /// # Safety
    /// Whatever `f` requires of the heaps (usually: the caller owns them).
    pub(super) unsafe fn each_in(
        &self,
        set: HeapSet,
        mask: u64,
        mut f: impl FnMut(&Heap, &crate::factory::SlabFactory),
    ) {
        each_bit(mask, |c| {
            // SAFETY: every bit of a mask is one of the set's classes.
            f(unsafe { set.class(c) }, self.factory(c))
        });
    }

    /// Makes this thread the owner of `set` if it is an orphan, the heap
    /// limit allows it and the pool is open.
    pub(super) fn acquire(&self, set: HeapSet) -> bool {
        if !thread::activate() {
            return false;
        }
        let me = thread::serial();
        if self.word(set) == me {
            return true;
        }
        let mut g = self.tier.lock();
        // The close drops the last handle before it takes the lock to mark
        // every set: a set taken under the lock before that is marked, and
        // after it the count reads 0 (a thread that frees into a closed pool
        // takes no set there).
        let head = self.head(set);
        if head.owner.load(Ordering::Acquire) != owner::ORPHAN
            || self.live_heaps.load(Ordering::Relaxed) >= self.config.max_thread_heaps
            || self.handles.load(Ordering::Relaxed) == 0
        {
            return false;
        }
        if !thread::on_exit(exit_hook(self.pool_ref(), set)) {
            return false;
        }
        g.remove_orphan(set);
        let used = head.used.load(Ordering::Relaxed) | 1;
        Self::set_word(set, used, me, Ordering::Relaxed);
        // SAFETY: this thread owns the set now.
        unsafe {
            self.each_in(set, used, |h, _| {
                h.set_holding(
                    self.config.magazine,
                    self.config.geometry.shape().hot_slot(),
                )
            })
        };
        head.active.store(used, Ordering::Release);
        self.live_heaps.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Takes class `c` of `set`, which this thread owns, into use: its
    /// heap's word becomes the set's and its holding is turned on. False if
    /// the pool has closed (the set's word is closing): the class is not
    /// taken, and the caller should abandon the set.
    #[inline]
    pub(super) fn take_class(&self, set: HeapSet, c: usize) -> bool {
        let head = self.head(set);
        let active = head.active.load(Ordering::Relaxed);
        if active & bit(c) != 0 {
            return true;
        }
        self.take_class_slow(set, c, active)
    }

    #[cold]
    fn take_class_slow(&self, set: HeapSet, c: usize, active: u64) -> bool {
        let head = self.head(set);
        let word = head.owner.load(Ordering::Relaxed);
        if word != thread::serial() {
            return false;
        }
        // SAFETY: `c` is one of the set's classes.
        let heap = unsafe { set.class(c) };
        // Nobody reads this word: the heap holds no slab, so no free comes.
        heap.owner.store(word, Ordering::Relaxed);
        // SAFETY: this thread owns the set, so the heap.
        unsafe {
            heap.set_holding(
                self.config.magazine,
                self.config.geometry.shape().hot_slot(),
            )
        };
        let used = head.used.load(Ordering::Relaxed);
        head.used.store(used | bit(c), Ordering::Relaxed);
        head.active.store(active | bit(c), Ordering::Release);
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
        if !owner::is_thread(self.word(set)) {
            return;
        }
        let head = self.head(set);
        let active = head.active.load(Ordering::Relaxed);
        // SAFETY: this thread owns the set (a close may mark it closing
        // meanwhile; only this thread moves it on from there).
        unsafe {
            self.each_in(set, active, |h, f| {
                super::home::flush_magazine(h);
                h.flush_hot(f);
                h.set_holding(0, false);
            })
        };
        head.active.store(0, Ordering::Relaxed);
        thread::uncache_heap(self.at, self.id);
        let mut g = self.tier.lock();
        // Read again under the lock: the close writes it under the lock too.
        let dead = self.word(set) & owner::CLOSING != 0;
        // From here the tier lock stands for the owner. A publisher that
        // pushes into one of the set's slabs after this store sees its heap
        // dead and collects it; one that pushed before is seen by the
        // release below (the fences pair as in `publish`).
        let next = if dead { owner::DEAD } else { owner::ORPHAN };
        Self::set_word(set, active, next, Ordering::Release);
        fence(Ordering::SeqCst);
        let keep = match self.objects() {
            Some(_) if !dead => self.config.retained_empty,
            _ => 0,
        };
        let mut used = 0;
        // SAFETY: the tier lock is held and no thread owns the set.
        unsafe {
            self.each_in(set, active, |h, f| {
                h.release_empty_but(f, keep);
                if h.slab_count() > 0 {
                    used |= bit(h.class_index());
                }
            })
        };
        head.used.store(used, Ordering::Relaxed);
        self.live_heaps.fetch_sub(1, Ordering::Relaxed);
        if !dead && used != 0 {
            g.add_orphan(set);
        }
    }

    /// An owner's flush of `set` (its exit hook's, for
    /// [`flush_thread`](super::flush_thread)): its magazines sent home, or
    /// the set abandoned if the pool has closed.
    pub(super) fn flush_owned(&self, set: HeapSet) {
        let me = thread::serial();
        let word = self.word(set);
        if me != 0 && word == me {
            let active = self.head(set).active.load(Ordering::Relaxed);
            // SAFETY: this thread owns the set.
            unsafe {
                self.each_in(set, active, |h, f| {
                    super::home::flush_magazine(h);
                    h.flush_hot(f);
                })
            };
        } else if me != 0 && word == owner::closing(me) {
            self.abandon(set);
        }
    }

    /// Abandons this thread's set of the pool, whose class heap `heap` is,
    /// if the pool has closed (a free found its magazine off).
    #[cold]
    pub(super) fn abandon_if_closing(&self, heap: &Heap) {
        if heap.owner.load(Ordering::Relaxed) == owner::closing(thread::serial()) {
            if let Some(set) = self.registry.get() {
                self.abandon(set);
            }
        }
    }

    /// The close, by the last handle: no allocation can follow. Every
    /// set's words move to their closed state (see [`crate::heap::owner`]),
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
                let head = self.head(set);
                let word = self.word(set);
                if owner::is_thread(word) {
                    let active = head.active.load(Ordering::Acquire);
                    Self::set_word(set, active, owner::closing(word), Ordering::Relaxed);
                } else if word == owner::ORPHAN {
                    let used = head.used.load(Ordering::Relaxed);
                    Self::set_word(set, used, owner::DEAD, Ordering::Relaxed);
                }
            });
            Self::set_word(self.tier.heaps(), g.used(), owner::DEAD, Ordering::Relaxed);
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

/// Runs `f` on the index of each bit set in `mask`, lowest first.
pub(super) fn each_bit(mut mask: u64, mut f: impl FnMut(usize)) {
    while mask != 0 {
        f(mask.trailing_zeros() as usize);
        mask &= mask - 1;
    }
}
