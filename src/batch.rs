//! Per-thread batches of remote frees.
//!
//! A thread that frees a block owned by another thread marks the block free
//! at once (so double frees are caught at the call), links it into a small
//! per-thread chain for the block's slab, and publishes the whole chain on
//! the slab's remote list with one CAS ([`crate::remote::RemoteStack::push`]).
//! The freer writes each slot's link (outside the block, beside the slot's
//! state byte) with a plain store, and pays one locked instruction per chain
//! instead of one per block.
//!
//! The table has [`WAYS`] entries, direct-mapped by slab address; each holds
//! at most [`MAX_CHAIN`] blocks of one slab. An entry is published when it
//! fills, when a block of another slab needs its way, when the thread takes an
//! allocation slow path or calls [`Pool::trim`](crate::Pool::trim) or
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

#[derive(Clone, Copy)]
struct Entry {
    /// The slab (null: the entry is empty).
    slab: *mut Slab,
    chain: Chain,
}

const EMPTY: Entry = Entry {
    slab: core::ptr::null_mut(),
    chain: Chain::one(0),
};

/// One thread's table (lives in the thread-local whose destructor runs the
/// exit hooks, see [`crate::thread`]).
pub(crate) struct Batches {
    ways: [Cell<Entry>; WAYS],
}

impl Batches {
    pub(crate) const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const E: Cell<Entry> = Cell::new(EMPTY);
        Self { ways: [E; WAYS] }
    }

    /// Adds slot `idx` of `slab`, which this thread holds (marked by
    /// [`Slab::mark_remote`], not yet published).
    ///
    /// # Safety
    /// As stated: the caller holds the slot, and `slab` is live.
    #[inline]
    pub(crate) unsafe fn add(&self, slab: *mut Slab, idx: usize) {
        // Regions are at least 16 KiB and aligned to their size.
        let way = &self.ways[((slab as usize >> 14) ^ (slab as usize >> 20)) % WAYS];
        let mut e = way.get();
        if e.slab == slab {
            // SAFETY: we hold `idx` and the chain's first slot, both of
            // `slab`; the link makes `idx` the chain's new first.
            unsafe { (*slab).link_held(idx, e.chain.first) };
            e.chain.first = idx;
            e.chain.count += 1;
            if e.chain.count < MAX_CHAIN {
                way.set(e);
                return;
            }
            way.set(EMPTY);
        } else {
            way.set(Entry {
                slab,
                chain: Chain::one(idx),
            });
        }
        if !e.slab.is_null() {
            // SAFETY: the entry's blocks are held, so its slab is live.
            unsafe { Shared::publish(e.slab, &e.chain) };
        }
    }

    /// Publishes every entry.
    pub(crate) fn flush(&self) {
        for way in &self.ways {
            let e = way.replace(EMPTY);
            if !e.slab.is_null() {
                // SAFETY: as in `add`.
                unsafe { Shared::publish(e.slab, &e.chain) };
            }
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.flush();
    }
}
