//! Large blocks of a [`SlabAlloc`](crate::SlabAlloc): anything above the
//! largest size class, or aligned above 4096, gets a mapping of its own,
//! returned to the OS when the block is freed.
//!
//! The live mappings are kept in a table keyed by the block's address,
//! under a lock. Every large operation is a system call anyway (`mmap`,
//! `mremap`, `munmap`), so the lock costs nothing that shows; in exchange a
//! free or resize of an address that is not a live large block — a double
//! free, a foreign pointer — is refused and counted without the allocator
//! ever reading the memory, which may be unmapped. Mappings are made, moved
//! and unmapped outside the lock.

use std::collections::HashMap;

use crate::error::AllocError;
use crate::os::{Budget, Mapping, PAGE};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// The large blocks of one allocator.
pub(crate) struct Large {
    blocks: Mutex<HashMap<usize, Mapping>>,
    budget: Arc<Budget>,
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
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Self {
            blocks: Mutex::new(HashMap::new()),
            budget,
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            released: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A zeroed block of at least `size` bytes aligned to `align`; returns
    /// its address and usable length.
    pub(crate) fn alloc(&self, size: usize, align: usize) -> Result<(usize, usize), AllocError> {
        let map = Mapping::new(size, align)?;
        let reserved = map.reserved() as u64;
        // Refused past the budget: the mapping is dropped (unmapped) again.
        self.budget.charge(reserved)?;
        let (addr, len) = (map.addr(), map.len());
        self.reserved.fetch_add(reserved, Ordering::Relaxed);
        self.allocs.fetch_add(1, Ordering::Relaxed);
        self.put(map);
        Ok((addr, len))
    }

    /// Frees the block at `addr`. False: no live large block there.
    pub(crate) fn free(&self, addr: usize) -> bool {
        let Some(map) = self.take(addr) else {
            return false;
        };
        let reserved = map.reserved() as u64;
        self.reserved.fetch_sub(reserved, Ordering::Relaxed);
        self.budget.refund(reserved);
        self.released.fetch_add(reserved, Ordering::Relaxed);
        self.frees.fetch_add(1, Ordering::Relaxed);
        // Unmapped here, outside the lock.
        drop(map);
        true
    }

    /// The usable length of the live block at `addr`.
    pub(crate) fn len_of(&self, addr: usize) -> Option<usize> {
        self.blocks.lock().get(&addr).map(Mapping::len)
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
            self.put(map);
            return Ok(None);
        }
        if !map.remap(size) {
            self.budget.refund(charge);
            self.put(map);
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
        self.put(map);
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
        let map = self.blocks.lock().remove(&addr)?;
        self.bytes.fetch_sub(map.len() as u64, Ordering::Relaxed);
        Some(map)
    }

    /// Puts a block (back) into the table.
    fn put(&self, map: Mapping) {
        self.bytes.fetch_add(map.len() as u64, Ordering::Relaxed);
        self.blocks.lock().insert(map.addr(), map);
    }
}
