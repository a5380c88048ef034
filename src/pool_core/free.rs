//! The untyped free routing: an owner's free into its own slab (and the
//! list upkeep it may need), a free of another heap's block into this
//! thread's magazine (or, when the thread can hold nothing, straight home),
//! the publication of a chain on its slab's remote list, and the counts of
//! refused frees. A block's slab names its pool, so nothing here needs a
//! pool handle.
//!
//! The out-of-line parts of a free (`free_foreign`, `upkeep`, the
//! refusals) are `extern "C"`: they cannot unwind (a panic there aborts),
//! so a caller that may not unwind either — the C library's `free` —
//! jumps to them as its last act instead of calling them inside a frame
//! that would catch the unwind.

use crate::heap::{owner, Heap, HeapSet, Held, LocalFree};
use crate::magazine::CAPACITY;
use crate::meta::Arc;
use crate::slab::{Chain, ListState, Shape, Slab};
use crate::sync::{bump, fence, Ordering};
use crate::thread;

use super::{home, PoolCore};

impl PoolCore {
    /// Frees slot `idx` of `slab` (in an object pool, keeping its object
    /// if the slot's word says it holds one). Counts and refuses double
    /// frees. The pool is read from the slab only on the cold paths.
    ///
    /// # Safety
    /// `slab` passed [`Slab::header_ok`], so its `pool` is a live pool (the
    /// block's slab holds a reference to it); `idx` came from
    /// [`Slab::slot_index`]; `shape` is the slab's (a constant of the
    /// caller's).
    #[inline(always)]
    pub(crate) unsafe fn free_block(slab: *mut Slab, idx: usize, shape: Shape) {
        // SAFETY: a slab in use keeps its heap pointer fixed and valid.
        let heap = unsafe { &*Heap::of_slab(&*slab, Ordering::Relaxed) };
        // No owner word is 0, the serial of a thread that has none.
        let me = thread::serial();
        let word = heap.owner.load(Ordering::Relaxed);
        if word == me {
            // SAFETY: this thread owns the heap and the slab is its.
            return unsafe {
                Self::after_local_free(heap, slab, heap.free_local(slab, idx, shape))
            };
        }
        let closing = word == owner::closing(me);
        // SAFETY: as above.
        unsafe {
            if shape.colored {
                Self::free_foreign::<true>(slab, idx, closing)
            } else {
                Self::free_foreign::<false>(slab, idx, closing)
            }
        }
    }

    /// What an owner's free into its own slab leaves to do. `heap` is a
    /// pointer, not a reference, here and below: the upkeep may drop the
    /// pool's last reference, and with it the heap, and a reference
    /// argument would be live across that.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`]; this thread owns `heap`, whose slab
    /// `slab` is.
    #[inline(always)]
    pub(super) unsafe fn after_local_free(heap: *const Heap, slab: *mut Slab, freed: LocalFree) {
        match freed {
            LocalFree::Done => {}
            // SAFETY: per the contract.
            LocalFree::DoubleFree => unsafe { Self::refuse_double_free(slab) },
            // The current slab ran empty: it stays current.
            LocalFree::Upkeep(ListState::Current, 0) => {}
            // SAFETY: per the contract.
            LocalFree::Upkeep(list, used) => unsafe { Self::upkeep(heap, slab, list, used) },
        }
    }

    /// A free of a block this thread does not own: held in this thread's
    /// magazine of the pool (taking a heap there first if it has none; a
    /// full magazine sends older blocks home), or, if the thread can hold
    /// nothing (or the pool has no magazines), published at once. If the
    /// block is of this thread's own heap and the pool has closed
    /// (`closing`), the thread's set is abandoned first.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`], `COLORED` the slab's shape's.
    #[inline(never)]
    unsafe extern "C" fn free_foreign<const COLORED: bool>(
        slab: *mut Slab,
        idx: usize,
        closing: bool,
    ) {
        // SAFETY: per the contract.
        let sh = unsafe { Self::of_slab(slab) };
        // SAFETY: a slab in use keeps its heap pointer fixed and valid; the
        // block (not yet freed) keeps the pool alive.
        let c = unsafe { (*Heap::of_slab(&*slab, Ordering::Relaxed)).class_index() };
        if closing {
            if let Some(set) = sh.registry.get() {
                sh.abandon(set);
            }
        }
        let mine = match thread::owned_heap(sh.at, sh.id) {
            Some(set) => {
                // SAFETY: an entry with this pool's id holds a set this
                // thread owns, of this (live: the slab holds it) pool, whose
                // classes include the slab's.
                let set = unsafe { HeapSet::from_raw(set) };
                if !sh.take_class(set, c) {
                    // The pool closed: nothing is held any more.
                    sh.abandon(set);
                    // SAFETY: per the contract.
                    return unsafe { Self::free_at_once(slab, idx, None) };
                }
                // SAFETY: as above.
                unsafe { set.class(c) }
            }
            // SAFETY: per the contract.
            None => match unsafe { sh.holder_for(slab, c) } {
                Holder::Heap(h) => h,
                // SAFETY: per the contract.
                Holder::Owner(h) => unsafe {
                    return Self::after_local_free(
                        h,
                        slab,
                        h.free_local(slab, idx, (*slab).shape()),
                    );
                },
                // SAFETY: per the contract.
                Holder::None => return unsafe { Self::free_at_once(slab, idx, None) },
            },
        };
        loop {
            // SAFETY: this thread owns `mine`, a heap of the slab's pool.
            match unsafe { mine.hold(slab, idx, COLORED) } {
                Held::Yes => return,
                Held::DoubleFree => return sh.count_double_free(),
                // SAFETY: as above.
                Held::Full if mine.mag.cap() != 0 => unsafe { home::send_oldest_home(mine) },
                // Off: by the knob, or since the pool closed.
                Held::Full => {
                    sh.abandon_if_closing(mine);
                    // SAFETY: per the contract.
                    return unsafe { Self::free_at_once(slab, idx, Some(mine)) };
                }
            }
        }
    }

    /// A thread without a heap set in `slab`'s pool frees one of its
    /// blocks, of class `c`: the class's heap of the set it can take (which
    /// may be the block's own: its registry slot's orphan), or none (also
    /// when the pool has no magazines).
    ///
    /// # Safety
    /// As [`PoolCore::free_block`].
    #[cold]
    unsafe fn holder_for(&self, slab: *mut Slab, c: usize) -> Holder<'_> {
        // Without magazines a heap would hold nothing.
        if self.config.magazine == 0 {
            return Holder::None;
        }
        let Some(set) = self.take_heaps().filter(|&set| self.take_class(set, c)) else {
            return Holder::None;
        };
        // SAFETY: `c` is one of the set's classes.
        let h = unsafe { set.class(c) };
        // SAFETY: per the contract.
        if core::ptr::eq(Heap::of_slab(unsafe { &*slab }, Ordering::Relaxed), h) {
            Holder::Owner(h)
        } else {
            Holder::Heap(h)
        }
    }

    /// A free that nothing holds: mark the block free (refusing a double
    /// free), count it — in `mine`, this thread's heap, or as stray — and
    /// publish it alone.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`].
    #[cold]
    unsafe fn free_at_once(slab: *mut Slab, idx: usize, mine: Option<&Heap>) {
        // SAFETY: per the contract.
        let (sh, s) = unsafe { (Self::of_slab(slab), &*slab) };
        if s.mark_remote(idx, 0).is_err() {
            return sh.count_double_free();
        }
        // Counted before the publication, after which the pool may go.
        match mine {
            Some(h) => bump(&h.stats.remote_frees, 1),
            None => {
                sh.stray_frees.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: the mark made this thread the block's holder.
        unsafe { Self::publish(slab, Chain::one(idx)) };
    }

    /// The pool of a slab that passed [`Slab::header_ok`]: the pointer
    /// `new_slab` stored, whose provenance covers the `Arc` (see
    /// [`PoolCore::set_this`]).
    ///
    /// # Safety
    /// As stated: the slab is live, and it keeps its pool alive.
    unsafe fn pool_of(slab: *const Slab) -> *const PoolCore {
        // SAFETY: per the contract.
        unsafe { (*slab).pool.cast::<PoolCore>() }
    }

    /// [`PoolCore::pool_of`], borrowed.
    ///
    /// # Safety
    /// As [`PoolCore::pool_of`].
    unsafe fn of_slab<'a>(slab: *const Slab) -> &'a PoolCore {
        // SAFETY: per the contract.
        unsafe { &*Self::pool_of(slab) }
    }

    /// The pool of a live slab that holds a block of the caller's.
    ///
    /// # Safety
    /// `slab` is the (live) slab of a block the caller holds.
    pub(crate) unsafe fn of_live_slab<'a>(slab: *const Slab) -> &'a PoolCore {
        // SAFETY: per the contract: the slab keeps its pool alive.
        unsafe { Self::of_slab(slab) }
    }

    /// Counts a refused double free into `slab`.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`].
    #[cold]
    unsafe extern "C" fn refuse_double_free(slab: *const Slab) {
        // SAFETY: per the contract.
        unsafe { Self::of_slab(slab) }.count_double_free();
    }

    /// Counts a refused free of a pointer into `slab` that is no slot.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`] (without the slot).
    #[cold]
    pub(crate) unsafe extern "C" fn refuse_foreign(slab: *const Slab) {
        // SAFETY: per the contract.
        unsafe { Self::of_slab(slab) }.count_foreign();
    }

    /// List upkeep after an owner's free. An empty slab may be released,
    /// and with it the pool's last reference if the pool closed meanwhile,
    /// so the pool is kept alive across that.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`], and this thread owns `heap`.
    #[cold]
    unsafe extern "C" fn upkeep(heap: *const Heap, slab: *mut Slab, list: ListState, used: usize) {
        // SAFETY: the slab (still counted) keeps the pool alive.
        let pool = unsafe { Self::pool_of(slab) };
        if used != 0 {
            // Nothing is released: the slab keeps the pool alive throughout.
            // SAFETY: this thread owns `heap`; the slab is its.
            return unsafe {
                (*heap).after_free((*pool).factory((*heap).class_index()), slab, list, used)
            };
        }
        // SAFETY: as above.
        let keep = unsafe { keep_alive(pool) };
        // SAFETY: this thread owns `heap`; the slab is its. The reference
        // made for the call ends with it, before the drop.
        unsafe { (*heap).after_free(keep.0.factory((*heap).class_index()), slab, list, used) };
        drop(keep);
    }

    /// Publishes a chain of held blocks on `slab`'s remote list (their
    /// frees were counted when they were held): [`PoolCore::publish_all`]
    /// of one chain.
    ///
    /// # Safety
    /// The caller holds every block of the chain, so `slab` is live.
    pub(crate) unsafe fn publish(slab: *mut Slab, chain: Chain) {
        // SAFETY: per the contract.
        unsafe { Self::publish_all(&[(slab, chain)]) }
    }

    /// Publishes chains of held blocks, each on its slab's remote list
    /// (their frees were counted when they were held); every slab is of
    /// one pool. After a push the owner may drain and release the slab,
    /// and with it the pool's last reference, so the pool is kept alive
    /// across — once for the batch. Then, after one SeqCst fence, each heap
    /// pushed to that is dead ([`owner::DEAD`]) has its empty slabs
    /// collected by the publisher. Whoever makes a heap dead (an abandoning
    /// owner, the close) fences between that store and releasing its empty
    /// slabs: whichever fence comes first, the other side sees its write (a
    /// push before the publisher's fence is before it), so the last of them
    /// to touch a slab releases it.
    ///
    /// # Safety
    /// The caller holds every block of the chains, so their slabs are live;
    /// at most [`CAPACITY`] chains, all of one pool.
    pub(crate) unsafe fn publish_all(chains: &[(*mut Slab, Chain)]) {
        let Some(&(first, _)) = chains.first() else {
            return;
        };
        debug_assert!(chains.len() <= CAPACITY);
        // SAFETY: a live slab's pool is live (the slab holds a reference).
        let pool = unsafe { (*first).pool } as *const PoolCore;
        // SAFETY: as above.
        let keep = unsafe { keep_alive(pool) };
        let mut heaps = [core::ptr::null::<Heap>(); CAPACITY];
        let mut n = 0;
        for &(slab, chain) in chains {
            // SAFETY: per the contract.
            let s = unsafe { &*slab };
            debug_assert!(core::ptr::eq(s.pool, pool.cast()));
            let heap = Heap::of_slab(s, Ordering::Acquire);
            // SAFETY: per the contract.
            if unsafe { s.push_chain(chain) } {
                // SAFETY: a slab's heap lives as long as its pool (kept).
                unsafe { (*heap).push_returned(slab) };
            }
            if !heaps[..n].contains(&heap) && n < CAPACITY {
                heaps[n] = heap;
                n += 1;
            }
        }
        fence(Ordering::SeqCst);
        for &heap in &heaps[..n] {
            // SAFETY: a slab's heap lives as long as its pool (kept alive).
            if unsafe { (*heap).owner.load(Ordering::Relaxed) } == owner::DEAD {
                keep.0.collect(heap);
            }
        }
    }

    #[cold]
    fn count_double_free(&self) {
        self.double_frees.fetch_add(1, Ordering::Relaxed);
        crate::sync::unmodelled::count_double_free();
    }

    /// Releases what the dead `heap` holds empty.
    fn collect(&self, heap: *const Heap) {
        let _g = self.tier.lock();
        // SAFETY: a heap of this pool (alive); dead for good, so the tier
        // lock's holder owns it.
        unsafe { (*heap).release_empty(self.factory((*heap).class_index())) };
    }

    /// Counts a refused free of a pointer that claims this pool.
    #[cold]
    pub(crate) fn count_foreign(&self) {
        self.foreign_frees.fetch_add(1, Ordering::Relaxed);
    }
}

/// A strong reference taken on a path that may release the pool's last slab.
struct KeepAlive(Arc<PoolCore>);

/// # Safety
/// `pool` is alive.
unsafe fn keep_alive(pool: *const PoolCore) -> KeepAlive {
    // SAFETY: per the contract, and pools only live in an `Arc`.
    unsafe {
        Arc::increment_strong_count(pool);
        KeepAlive(Arc::from_raw(pool))
    }
}

/// Where a free by a thread without a heap in the pool goes.
enum Holder<'a> {
    /// The heap the thread took: it holds the block.
    Heap(&'a Heap),
    /// The heap the thread took is the block's own: an owner's free.
    Owner(&'a Heap),
    /// The thread can take none (teardown, the heap limit, the close).
    None,
}
