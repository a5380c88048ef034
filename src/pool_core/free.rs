//! The untyped free routing: an owner's free into its own slab (and the
//! list upkeep it may need), a remote free into this thread's batch, the
//! publication of a batch on its slab's remote list, and the counts of
//! refused frees. A block's slab names its pool, so nothing here needs a
//! pool handle.

use crate::batch::Batches;
use crate::heap::{owner, Heap, Held, LocalFree};
use crate::meta::Arc;
use crate::slab::{Chain, ListState, Slab};
use crate::sync::{bump, fence, thread_local_facade, Ordering};
use crate::thread;

use super::PoolCore;

thread_local_facade! {
    /// This thread's remote-free batches, for every pool.
    static BATCHES: Batches = Batches::new(PoolCore::publish);
}

/// Runs `f` on this thread's remote-free batches. `None` unless the thread
/// is active: before, no exit hook would publish them; once it is being
/// torn down, they were published and must not take more.
#[inline(always)]
pub(super) fn with_batches<R>(f: impl FnOnce(&Batches) -> R) -> Option<R> {
    if !thread::is_active() {
        return None;
    }
    BATCHES.try_with(|b| f(b)).ok()
}

/// The thread's exit flush (handed to [`thread::activate`]): publishes the
/// batches although the thread is no longer active.
pub(super) fn flush_at_exit() {
    let _ = BATCHES.try_with(|b| b.flush());
}

impl PoolCore {
    /// Frees slot `idx` of `slab`; `mark` is [`CONSTRUCTED`](crate::slab::CONSTRUCTED) if the slot
    /// keeps its object (an object pool's cache), else 0. Counts and
    /// refuses double frees. The pool is read from the slab only on the
    /// cold paths.
    ///
    /// # Safety
    /// `slab` passed [`Slab::header_ok`], so its `pool` is a live pool (the
    /// block's slab holds a reference to it); `idx` came from
    /// [`Slab::slot_index`].
    #[inline(always)]
    pub(crate) unsafe fn free_block(slab: *mut Slab, idx: usize, mark: u16) {
        // SAFETY: a slab in use keeps its heap pointer fixed and valid.
        let heap = unsafe { &*Heap::of_slab(&*slab, Ordering::Relaxed) };
        // No owner word is 0, the serial of a thread that has none.
        let me = thread::serial();
        let word = heap.owner.load(Ordering::Relaxed);
        if word == me {
            // SAFETY: this thread owns the heap and the slab is its.
            return unsafe { Self::after_local_free(heap, slab, heap.free_local(slab, idx, mark)) };
        }
        // SAFETY: as above.
        unsafe { Self::free_foreign(slab, idx, mark, word == owner::closing(me)) }
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

    /// A free of a block this thread does not own: into its magazine of the
    /// pool if it has a heap there with room, else the remote path. If
    /// the block is of this thread's own heap and the pool has closed
    /// (`closing`), the heap is abandoned first.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`].
    #[inline(never)]
    unsafe fn free_foreign(slab: *mut Slab, idx: usize, mark: u16, closing: bool) {
        // SAFETY: per the contract.
        let sh = unsafe { Self::of_slab(slab) };
        if closing {
            // SAFETY: a slab in use keeps its heap pointer fixed and valid;
            // the block (not yet freed) keeps the pool alive.
            sh.abandon(unsafe { &*Heap::of_slab(&*slab, Ordering::Relaxed) });
        }
        if let Some(mine) = thread::owned_heap(sh.at, sh.id) {
            // SAFETY: an entry with this pool's id holds a heap this thread
            // owns, of this (live: the slab holds it) pool.
            let mine = unsafe { &*mine };
            // SAFETY: as above.
            match unsafe { mine.hold(slab, idx, mark) } {
                Held::Yes => return,
                Held::DoubleFree => return sh.count_double_free(),
                // Off once the pool has closed.
                Held::Full => sh.abandon_if_closing(mine),
            }
        }
        // SAFETY: per the contract.
        unsafe { Self::free_remote(slab, idx, mark) }
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
    unsafe fn refuse_double_free(slab: *const Slab) {
        // SAFETY: per the contract.
        unsafe { Self::of_slab(slab) }.count_double_free();
    }

    /// Counts a refused free of a pointer into `slab` that is no slot.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`] (without the slot).
    #[cold]
    pub(crate) unsafe fn refuse_foreign(slab: *const Slab) {
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
    unsafe fn upkeep(heap: *const Heap, slab: *mut Slab, list: ListState, used: usize) {
        // SAFETY: the slab (still counted) keeps the pool alive.
        let pool = unsafe { Self::pool_of(slab) };
        if used != 0 {
            // Nothing is released: the slab keeps the pool alive throughout.
            // SAFETY: this thread owns `heap`; the slab is its.
            return unsafe { (*heap).after_free(&*pool, slab, list, used) };
        }
        // SAFETY: as above.
        let keep = unsafe { keep_alive(pool) };
        // SAFETY: this thread owns `heap`; the slab is its. The reference
        // made for the call ends with it, before the drop.
        unsafe { (*heap).after_free(&*keep.0, slab, list, used) };
        drop(keep);
    }

    /// The remote path: mark the block free and linked (refusing double
    /// frees at once) and hand it to this thread's batch for its slab, to be
    /// counted when the batch publishes it; during teardown, publish it at
    /// once.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`].
    #[cold]
    unsafe fn free_remote(slab: *mut Slab, idx: usize, mark: u16) {
        // SAFETY: per the contract.
        let batched = with_batches(|b| unsafe { Self::free_batched(b, slab, idx, mark) });
        if batched.is_none() {
            // SAFETY: per the contract.
            unsafe { Self::free_unbatched(slab, idx, mark) }
        }
    }

    /// [`PoolCore::free_remote`] into `b`. Nothing here touches the pool
    /// after the batch may publish (see [`PoolCore::publish`]).
    ///
    /// # Safety
    /// As [`PoolCore::free_block`].
    #[inline(always)]
    unsafe fn free_batched(b: &Batches, slab: *mut Slab, idx: usize, mark: u16) {
        // SAFETY: per the contract.
        let (sh, s) = unsafe { (Self::of_slab(slab), &*slab) };
        let spot = b.find(slab);
        if s.mark_remote(idx, spot.next(), mark).is_err() {
            return sh.count_double_free();
        }
        // SAFETY: the mark made this thread the block's holder, linked as
        // `spot` says, and the block (counted in use until published) keeps
        // its slab live.
        unsafe { b.put(slab, idx, spot) }
    }

    /// [`PoolCore::free_remote`] without a batch: a chain of one.
    ///
    /// # Safety
    /// As [`PoolCore::free_block`].
    #[cold]
    unsafe fn free_unbatched(slab: *mut Slab, idx: usize, mark: u16) {
        // SAFETY: per the contract.
        let (sh, s) = unsafe { (Self::of_slab(slab), &*slab) };
        // A thread's first free (before it ever allocated) activates it,
        // which arms the exit hook that publishes its batch.
        if sh.this_heap().is_some() {
            // SAFETY: per the contract.
            let batched = with_batches(|b| unsafe { Self::free_batched(b, slab, idx, mark) });
            if batched.is_some() {
                return;
            }
        }
        if s.mark_remote(idx, 0, mark).is_err() {
            return sh.count_double_free();
        }
        // SAFETY: the mark made this thread the block's holder.
        unsafe { Self::publish(slab, Chain::one(idx)) };
    }

    /// Publishes a chain of held blocks on `slab`'s remote list and counts
    /// them as this thread's remote frees. After the push the owner may
    /// drain and release the slab, and with it the pool's last reference,
    /// so the pool is kept alive across; then, after a SeqCst fence, if the
    /// heap is dead ([`owner::DEAD`]), the publisher collects its empty
    /// slabs itself. Whoever makes a heap dead (an abandoning owner, the
    /// close) fences between that store and releasing its empty slabs:
    /// whichever fence comes first, the other side sees its write, so the
    /// last of them to touch the slab releases it.
    ///
    /// # Safety
    /// The caller holds every block of the chain, so `slab` is live.
    pub(crate) unsafe fn publish(slab: *mut Slab, chain: Chain) {
        // SAFETY: per the contract.
        unsafe { Self::publish_chain(slab, chain, true) }
    }

    /// [`PoolCore::publish`] for blocks a magazine held: their frees were
    /// counted when they were held.
    ///
    /// # Safety
    /// As [`PoolCore::publish`].
    pub(crate) unsafe fn publish_held(slab: *mut Slab, chain: Chain) {
        // SAFETY: per the contract.
        unsafe { Self::publish_chain(slab, chain, false) }
    }

    /// [`PoolCore::publish`], counting the frees if `count`.
    ///
    /// # Safety
    /// As [`PoolCore::publish`].
    unsafe fn publish_chain(slab: *mut Slab, chain: Chain, count: bool) {
        // SAFETY: a live slab's pool is live (the slab holds a reference).
        let s = unsafe { &*slab };
        let pool = s.pool as *const PoolCore;
        // SAFETY: as above.
        let sh = unsafe { &*pool };
        let heap = Heap::of_slab(s, Ordering::Acquire);
        if count {
            sh.count_remote(u64::from(chain.count));
        }
        // SAFETY: the pool is alive (the block's slab holds it).
        let keep = unsafe { keep_alive(pool) };
        // SAFETY: per the contract.
        if unsafe { s.push_chain(chain) } {
            // SAFETY: a slab's heap outlives the slab.
            unsafe { (*heap).push_returned(slab) };
        }
        fence(Ordering::SeqCst);
        // SAFETY: a slab's heap lives as long as its pool (kept alive).
        if unsafe { (*heap).owner.load(Ordering::Relaxed) } == owner::DEAD {
            keep.0.collect(heap);
        }
    }

    /// Counts `n` remote frees in this thread's heap of this pool (or, if
    /// the thread can have none, as stray).
    #[inline]
    fn count_remote(&self, n: u64) {
        if let Some(heap) = thread::counting_heap(self.at, self.id) {
            // SAFETY: the cached heap is this thread's registry heap of this
            // (live) pool; only this thread writes its counters.
            return bump(unsafe { &(*heap).stats.remote_frees }, n);
        }
        self.count_remote_slow(n);
    }

    #[cold]
    fn count_remote_slow(&self, n: u64) {
        match self.this_heap() {
            Some(heap) => bump(&heap.stats.remote_frees, n),
            None => {
                self.stray_frees.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// This thread's registry heap of this pool (created and the thread
    /// activated if need be, and cached); `None` during teardown.
    #[cold]
    fn this_heap(&self) -> Option<&Heap> {
        if thread::may_activate() {
            let heap = self.registry.get_or_create(self.key())?;
            if thread::activate(flush_at_exit) {
                thread::cache_slot(self.id, heap);
                return Some(heap);
            }
        }
        None
    }

    #[cold]
    fn count_double_free(&self) {
        self.double_frees.fetch_add(1, Ordering::Relaxed);
    }

    /// Releases what the dead `heap` holds empty.
    fn collect(&self, heap: *const Heap) {
        let _g = self.tier.lock();
        // SAFETY: a heap of this pool (alive); dead for good, so the tier
        // lock's holder owns it.
        unsafe { (*heap).release_empty(self) };
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
