//! Per-thread batches of remote frees.
//!
//! A thread that frees a block owned by another thread marks the block free
//! at once (so double frees are caught at the call) by writing, into the
//! slot's word (outside the block), its link in a small per-thread chain for
//! the block's slab — one store checks and links — and publishes the whole
//! chain on the slab's remote list with one CAS
//! ([`crate::remote::RemoteStack::push`]): one locked instruction per chain
//! instead of one per block.
//!
//! The table has [`WAYS`] entries (fully associative, round-robin eviction);
//! each holds at most [`MAX_CHAIN`] blocks of one slab. An entry is published
//! when it fills, when a block of another slab needs its entry, when the
//! thread is about to map a new slab or use the overflow tier, when it calls
//! [`Pool::trim`](crate::Pool::trim) or
//! [`flush_remote_frees`](crate::flush_remote_frees), and at thread exit. So
//! a thread holds back at most `WAYS × MAX_CHAIN` blocks, and only until it
//! next does one of those things: a thread that frees remote blocks and then
//! blocks for a long time should call `flush_remote_frees` first.
//!
//! Held blocks still count as in use in their slab, so a slab (and its pool)
//! stays alive while a batch holds part of it.

use core::cell::Cell;

use crate::slab::{Chain, Slab};

/// Publishes a held chain on its slab's remote list: the pool's routine,
/// handed down when the table is declared (the batch layer never names the
/// pool).
///
/// # Safety (of a call)
/// The caller holds every block of the chain, so the slab is live.
pub(crate) type Publish = unsafe fn(*mut Slab, Chain);

/// Entries in a thread's table.
pub(crate) const WAYS: usize = 8;
/// Blocks an entry gathers before it is published.
pub(crate) const MAX_CHAIN: usize = 32;

/// One thread's table (a thread-local of its own, published by the exit
/// hooks, see [`crate::thread`]). Fully associative: the slab pointers
/// fill one cache line and are scanned in order; a slab that finds no entry
/// takes an empty one, else evicts (publishes) the next in round-robin order.
pub(crate) struct Batches {
    /// The slab each entry gathers for (null: empty).
    slabs: [Cell<*mut Slab>; WAYS],
    chains: [Cell<Chain>; WAYS],
    /// The next entry to evict.
    victim: Cell<usize>,
    /// The entry used last (tried first).
    hint: Cell<usize>,
    publish: Publish,
}

const _: () = assert!(WAYS.is_power_of_two());

impl Batches {
    pub(crate) const fn new(publish: Publish) -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const S: Cell<*mut Slab> = Cell::new(core::ptr::null_mut());
        #[allow(clippy::declare_interior_mutable_const)]
        const C: Cell<Chain> = Cell::new(Chain::one(0));
        Self {
            slabs: [S; WAYS],
            chains: [C; WAYS],
            victim: Cell::new(0),
            hint: Cell::new(0),
            publish,
        }
    }

    /// Where a remotely freed block of `slab` goes: the entry gathering
    /// for `slab` (the last one used is tried first), else the first empty
    /// one (or none: evict). Read-only, so the caller can mark the block
    /// with the link the spot gives before anything changes.
    #[inline(always)]
    pub(crate) fn find(&self, slab: *mut Slab) -> Spot {
        let h = self.hint.get() & (WAYS - 1);
        if self.slabs[h].get() == slab {
            return self.hit(h);
        }
        for w in 0..WAYS {
            if self.slabs[w].get() == slab {
                return self.hit(w);
            }
        }
        self.miss()
    }

    #[inline(always)]
    fn hit(&self, w: usize) -> Spot {
        Spot {
            way: w,
            next: self.chains[w].get().first as usize + 1,
        }
    }

    /// No entry gathers for the slab: the first empty one, if any.
    #[inline(never)]
    fn miss(&self) -> Spot {
        let way = (0..WAYS)
            .find(|&w| self.slabs[w].get().is_null())
            .unwrap_or(WAYS);
        Spot { way, next: 0 }
    }

    /// Adds slot `idx` of `slab` at `spot`; publishes the entry if it
    /// fills, or the entry it evicts.
    ///
    /// # Safety
    /// `spot` came from [`Batches::find`] for `slab` with no change to the
    /// table since, and the caller holds slot `idx` (marked by
    /// [`Slab::mark_remote`] with the link `spot.next()`), which keeps
    /// `slab` live.
    #[inline(always)]
    pub(crate) unsafe fn put(&self, slab: *mut Slab, idx: usize, spot: Spot) {
        if spot.next != 0 {
            let w = spot.way & (WAYS - 1);
            self.hint.set(w);
            let mut c = self.chains[w].get();
            c.first = idx as u16;
            c.count += 1;
            if (c.count as usize) < MAX_CHAIN {
                self.chains[w].set(c);
            } else {
                self.slabs[w].set(core::ptr::null_mut());
                // SAFETY: the chain's blocks are held, so `slab` is live.
                unsafe { (self.publish)(slab, c) };
            }
            return;
        }
        let w = if spot.way < WAYS {
            spot.way
        } else {
            let w = self.victim.get();
            self.victim.set((w + 1) % WAYS);
            w
        };
        self.hint.set(w);
        let old = self.slabs[w].replace(slab);
        let old_chain = self.chains[w].replace(Chain::one(idx));
        if !old.is_null() {
            // SAFETY: the evicted chain's blocks are held, so its slab is live.
            unsafe { (self.publish)(old, old_chain) };
        }
    }

    /// Publishes every entry.
    pub(crate) fn flush(&self) {
        for w in 0..WAYS {
            let slab = self.slabs[w].replace(core::ptr::null_mut());
            if !slab.is_null() {
                // SAFETY: as in `put`.
                unsafe { (self.publish)(slab, self.chains[w].get()) };
            }
        }
    }
}

// In std the table is a thread-local without a destructor (so reaching it
// costs no lazy-registration check; the pool checks that the thread is
// active instead); the exit hooks' flush publishes it. loom's thread-locals may
// be torn down in any order, so there the table also publishes on drop.
#[cfg(loom)]
impl Drop for Batches {
    fn drop(&mut self) {
        self.flush();
    }
}

/// An entry of the table, found by [`Batches::find`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spot {
    /// The entry (`WAYS`: none empty, evict one).
    way: usize,
    /// Link for the freed slot: the entry's first slot + 1 when the entry
    /// already gathers for this slab, else 0 (the end of a new chain).
    next: usize,
}

impl Spot {
    /// The link the freed slot takes (see [`crate::slab::Slab::mark_remote`]).
    #[inline(always)]
    pub(crate) fn next(self) -> usize {
        self.next
    }
}
