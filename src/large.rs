//! Large blocks of a [`SlabAlloc`](crate::SlabAlloc): anything above the
//! largest size class, or aligned above 4096, gets a mapping of its own,
//! returned to the OS when the block is freed.
//!
//! The live mappings are kept in a table keyed by the block's address,
//! under a lock: a free or resize of an address that is not a live large
//! block — a double free, a foreign pointer — is refused and counted without
//! the allocator ever reading the memory, which may be unmapped. Mappings
//! are made, moved and unmapped outside the lock.
//!
//! A few freed mappings are kept for reuse (at most [`CACHE_SLOTS`] of at
//! most [`CACHE_MAX_LEN`] bytes, [`CACHE_BYTES`] in all): a block that
//! grows and shrinks, or a buffer freed and allocated again, then costs
//! neither a system call nor the page faults of fresh memory. They count in
//! `mapped_bytes`, go back to the OS on `trim()`, and when they stayed
//! unused for `release_after` (checked on the next large operation). Under
//! a `max_bytes` budget nothing is cached: a freed block's room is the
//! classes' at once.

use std::time::{Duration, Instant};

use crate::error::AllocError;
use crate::meta::{mvec, Arc, MVec};
use crate::os::{Mapping, PAGE};
use crate::source::Budget;
use crate::sync::{AtomicU64, Mutex, Ordering};

mod table;

/// Freed mappings kept for reuse, at most.
pub(crate) const CACHE_SLOTS: usize = 8;
/// Largest mapping kept for reuse.
pub(crate) const CACHE_MAX_LEN: usize = 4 << 20;
/// Bytes of freed mappings kept for reuse, at most.
pub(crate) const CACHE_BYTES: usize = 16 << 20;

struct State {
    /// Live blocks by address.
    blocks: table::Table,
    /// Freed mappings kept for reuse, oldest first, with when they were freed.
    cache: MVec<(Mapping, Instant)>,
    cached_bytes: usize,
}

/// The large blocks of one allocator.
pub(crate) struct Large {
    state: Mutex<State>,
    budget: Arc<Budget>,
    release_after: Option<Duration>,
    allocs: AtomicU64,
    frees: AtomicU64,
    /// Usable bytes of the live blocks.
    bytes: AtomicU64,
    /// Address space the live blocks hold.
    reserved: AtomicU64,
    /// Bytes given back to the OS (unmapped or shrunk away).
    released: AtomicU64,
    /// Frees and resizes refused: no live large block there.
    refused: AtomicU64,
}

/// What the large path reports for the stats.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LargeStats {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) bytes: u64,
    pub(crate) reserved: u64,
    pub(crate) released: u64,
    pub(crate) refused: u64,
}

impl Large {
    pub(crate) fn new(budget: Arc<Budget>, release_after: Option<Duration>) -> Self {
        Self {
            state: Mutex::new(State {
                blocks: table::Table::new(),
                cache: mvec(),
                cached_bytes: 0,
            }),
            budget,
            release_after,
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            released: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A block of at least `size` bytes aligned to `align` (zeroed if
    /// `zero`); returns its address and usable length.
    pub(crate) fn alloc(
        &self,
        size: usize,
        align: usize,
        zero: bool,
    ) -> Result<(usize, usize), AllocError> {
        if let Some(got) = self.alloc_cached(size, align, zero) {
            return Ok(got);
        }
        let map = Mapping::new(size, align)?;
        let reserved = map.reserved() as u64;
        // Refused past the budget: the mapping is dropped (unmapped) again.
        self.budget.charge(reserved)?;
        let (addr, len) = (map.addr(), map.len());
        self.reserved.fetch_add(reserved, Ordering::Relaxed);
        self.allocs.fetch_add(1, Ordering::Relaxed);
        if let Err(map) = self.put(map) {
            self.frees.fetch_add(1, Ordering::Relaxed);
            self.unmap_one(map);
            return Err(AllocError::OutOfMemory);
        }
        Ok((addr, len))
    }

    /// A cached mapping for at least `size` bytes aligned to `align`, if
    /// one fits (no system call, memory already resident): its address and
    /// length, zeroed if `zero`.
    pub(crate) fn alloc_cached(
        &self,
        size: usize,
        align: usize,
        zero: bool,
    ) -> Option<(usize, usize)> {
        let map = self.reuse(size, align)?;
        let (addr, len) = (map.addr(), map.len());
        if zero {
            // SAFETY: the mapping is ours alone (out of the cache, not yet
            // in the table), `len` bytes at `addr`.
            unsafe { (addr as *mut u8).write_bytes(0, len) };
        }
        self.allocs.fetch_add(1, Ordering::Relaxed);
        if let Err(map) = self.put(map) {
            self.frees.fetch_add(1, Ordering::Relaxed);
            self.unmap_one(map);
            return None;
        }
        Some((addr, len))
    }

    /// Frees the block at `addr` (into the cache, or back to the OS).
    /// False: no live large block there.
    pub(crate) fn free(&self, addr: usize) -> bool {
        let Some(map) = self.take(addr) else {
            return false;
        };
        self.frees.fetch_add(1, Ordering::Relaxed);
        let len = map.len();
        let mut gone = mvec();
        // Under a `max_bytes` budget a freed block gives its room back at
        // once: a cached mapping would hold it from the classes.
        let unlimited = self.budget.limit() == u64::MAX;
        let mut st = self.state.lock();
        if unlimited
            && map.reserved() == len
            && len <= CACHE_MAX_LEN
            && st.cache.try_reserve(1).is_ok()
            && gone.try_reserve(CACHE_SLOTS + 1).is_ok()
        {
            st.cache.push((map, Instant::now()));
            st.cached_bytes += len;
            while st.cache.len() > CACHE_SLOTS || st.cached_bytes > CACHE_BYTES {
                let (old, _) = st.cache.remove(0);
                st.cached_bytes -= old.len();
                gone.push(old);
            }
            drop(st);
        } else {
            drop(st);
            self.unmap_one(map);
        }
        self.unmap(gone);
        true
    }

    /// True if a cached mapping would serve `size` bytes aligned to `align`.
    pub(crate) fn cache_fits(&self, size: usize, align: usize) -> bool {
        align <= PAGE && Self::best_fit(&self.state.lock(), size).is_some()
    }

    /// The smallest cached mapping that fits `size` (at most twice as long).
    fn best_fit(st: &State, size: usize) -> Option<usize> {
        st.cache
            .iter()
            .enumerate()
            .filter(|(_, (m, _))| m.len() >= size && m.len() / 2 <= size)
            .min_by_key(|(_, (m, _))| m.len())
            .map(|(i, _)| i)
    }

    /// A cached mapping that fits `size` (at most twice as long), if any,
    /// after releasing those idle for `release_after`.
    fn reuse(&self, size: usize, align: usize) -> Option<Mapping> {
        if align > PAGE {
            return None;
        }
        let mut st = self.state.lock();
        let expired = self.expire(&mut st);
        let best = Self::best_fit(&st, size);
        let got = best.map(|i| {
            let (m, _) = st.cache.remove(i);
            st.cached_bytes -= m.len();
            m
        });
        drop(st);
        self.unmap(expired);
        got
    }

    /// Takes the cached mappings idle for a whole `release_after` out.
    fn expire(&self, st: &mut State) -> MVec<Mapping> {
        let mut gone = mvec();
        let Some(period) = self.release_after else {
            return gone;
        };
        let now = Instant::now();
        while gone.try_reserve(1).is_ok()
            && st
                .cache
                .first()
                .is_some_and(|(_, at)| now.duration_since(*at) >= period)
        {
            let (m, _) = st.cache.remove(0);
            st.cached_bytes -= m.len();
            gone.push(m);
        }
        gone
    }

    /// Returns every cached mapping to the OS; the bytes released.
    pub(crate) fn trim(&self) -> u64 {
        let gone = {
            let mut st = self.state.lock();
            st.cached_bytes = 0;
            core::mem::replace(&mut st.cache, mvec())
        };
        let bytes = gone.iter().map(|(m, _)| m.reserved() as u64).sum();
        for (m, _) in gone {
            self.unmap_one(m);
        }
        bytes
    }

    /// Unmaps `maps` (outside the lock), refunding and counting them.
    fn unmap(&self, maps: MVec<Mapping>) {
        for map in maps {
            self.unmap_one(map);
        }
    }

    /// Unmaps `map` (outside the lock), refunding and counting it.
    fn unmap_one(&self, map: Mapping) {
        let reserved = map.reserved() as u64;
        self.reserved.fetch_sub(reserved, Ordering::Relaxed);
        self.budget.refund(reserved);
        self.released.fetch_add(reserved, Ordering::Relaxed);
        drop(map);
    }

    /// The usable length of the live block at `addr`.
    pub(crate) fn len_of(&self, addr: usize) -> Option<usize> {
        self.state.lock().blocks.get(addr).map(Mapping::len)
    }

    /// Resizes the block at `addr` to at least `size` bytes in its own
    /// mapping (`mremap`, which may move it; grown bytes read zero).
    /// `Ok(None)`: it cannot (the caller copies); `Err`: no live large block
    /// there.
    pub(crate) fn resize(&self, addr: usize, size: usize) -> Result<Option<(usize, usize)>, ()> {
        let Some(mut map) = self.take(addr) else {
            return Err(());
        };
        let before = map.reserved() as u64;
        let want = (size.saturating_add(PAGE - 1) & !(PAGE - 1)) as u64;
        let charge = want.saturating_sub(before);
        if charge > 0 && self.budget.charge(charge).is_err() {
            self.put_back(map);
            return Ok(None);
        }
        if !map.remap(size) {
            self.budget.refund(charge);
            self.put_back(map);
            return Ok(None);
        }
        let after = map.reserved() as u64;
        if after < before {
            self.budget.refund(before - after);
            self.released.fetch_add(before - after, Ordering::Relaxed);
        }
        self.reserved.fetch_add(after, Ordering::Relaxed);
        self.reserved.fetch_sub(before, Ordering::Relaxed);
        let got = (map.addr(), map.len());
        self.put_back(map);
        Ok(Some(got))
    }

    /// Counts a refused free or resize.
    pub(crate) fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> LargeStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LargeStats {
            allocs: l(&self.allocs),
            frees: l(&self.frees),
            bytes: l(&self.bytes),
            reserved: l(&self.reserved),
            released: l(&self.released),
            refused: l(&self.refused),
        }
    }

    /// Takes the live block at `addr` out of the table (uncounting its bytes).
    fn take(&self, addr: usize) -> Option<Mapping> {
        let map = self.state.lock().blocks.remove(addr)?;
        self.bytes.fetch_sub(map.len() as u64, Ordering::Relaxed);
        Some(map)
    }

    /// Puts a block (back) into the table.
    /// Gives it back if the table has no room (no memory to grow).
    fn put(&self, map: Mapping) -> Result<(), Mapping> {
        let len = map.len() as u64;
        self.state.lock().blocks.insert(map)?;
        self.bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Puts a block taken out by [`Large::take`] back: its room is still
    /// there (the table never shrinks), so this cannot fail; were it to,
    /// the mapping would leak rather than be unmapped under its user.
    fn put_back(&self, map: Mapping) {
        if let Err(m) = self.put(map) {
            core::mem::forget(m);
        }
    }

    /// The lock word, for the `fork` handlers.
    #[cfg(not(loom))]
    pub(crate) fn raw_lock(&self) -> &crate::sync::lock::RawLock {
        self.state.raw()
    }
}
