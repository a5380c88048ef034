//! Per-thread batches of remote frees.
//!
//! A thread that frees a block owned by another thread marks the block free
//! at once (so double frees are caught at the call), links it into a small
//! per-thread chain for the block's slab, and publishes the whole chain on
//! the slab's remote list with one CAS ([`crate::remote::RemoteStack::push`]).
//! The freer writes each slot's link into the slot's word (outside the
//! block) with a relaxed store, and pays one locked instruction per chain
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

use crate::shared::Shared;
use crate::slab::{Chain, Slab};

/// Entries in a thread's table.
pub(crate) const WAYS: usize = 8;
/// Blocks an entry gathers before it is published.
pub(crate) const MAX_CHAIN: usize = 32;

/// One thread's table (lives in the thread-local whose destructor runs the
/// exit hooks, see [`crate::thread`]). Fully associative: the slab pointers
/// fill one cache line and are scanned in order; a slab that finds no entry
/// takes an empty one, else evicts (publishes) the next in round-robin order.
pub(crate) struct Batches {
    /// The slab each entry gathers for (null: empty).
    slabs: [Cell<*mut Slab>; WAYS],
    chains: [Cell<Chain>; WAYS],
    /// The next entry to evict.
    victim: Cell<usize>,
}

impl Batches {
    pub(crate) const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const S: Cell<*mut Slab> = Cell::new(core::ptr::null_mut());
        #[allow(clippy::declare_interior_mutable_const)]
        const C: Cell<Chain> = Cell::new(Chain::one(0));
        Self {
            slabs: [S; WAYS],
            chains: [C; WAYS],
            victim: Cell::new(0),
        }
    }

    /// Adds slot `idx` of `slab`, which this thread holds (marked by
    /// [`Slab::mark_remote`], not yet published).
    ///
    /// # Safety
    /// As stated: the caller holds the slot, and `slab` is live.
    #[inline]
    pub(crate) unsafe fn add(&self, slab: *mut Slab, idx: usize) {
        let mut empty = WAYS;
        for w in 0..WAYS {
            let s = self.slabs[w].get();
            if s == slab {
                let mut c = self.chains[w].get();
                // SAFETY: we hold `idx` and the chain's first slot, both of
                // `slab`; the link makes `idx` the chain's new first.
                unsafe { (*slab).link_held(idx, c.first) };
                c.first = idx;
                c.count += 1;
                if c.count < MAX_CHAIN {
                    self.chains[w].set(c);
                } else {
                    self.slabs[w].set(core::ptr::null_mut());
                    // SAFETY: the chain's blocks are held, so `slab` is live.
                    unsafe { Shared::publish(slab, &c) };
                }
                return;
            }
            if s.is_null() && empty == WAYS {
                empty = w;
            }
        }
        let w = if empty < WAYS {
            empty
        } else {
            let w = self.victim.get();
            self.victim.set((w + 1) % WAYS);
            w
        };
        let old = self.slabs[w].replace(slab);
        let old_chain = self.chains[w].replace(Chain::one(idx));
        if !old.is_null() {
            // SAFETY: the evicted chain's blocks are held, so its slab is live.
            unsafe { Shared::publish(old, &old_chain) };
        }
    }

    /// Publishes every entry.
    pub(crate) fn flush(&self) {
        for w in 0..WAYS {
            let slab = self.slabs[w].replace(core::ptr::null_mut());
            if !slab.is_null() {
                // SAFETY: as in `add`.
                unsafe { Shared::publish(slab, &self.chains[w].get()) };
            }
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.flush();
    }
}
