//! Large blocks of a [`SlabAlloc`](crate::SlabAlloc): anything above the
//! largest size class, or aligned above 4096.
//!
//! Blocks up to [`arena::MAX_SPAN`] (32 MiB, alignment slack included) are
//! page-granular spans of an arena ([`arena`]): carved from 64 MiB chunks
//! by address-ordered first fit, coalesced with their free neighbours when
//! freed, grown in place when the span after them is free. A freed span
//! stays *dirty* (its pages resident, counted in `mapped_bytes`) until it
//! has been free for `release_after`, then its pages go back to the OS
//! (`MADV_DONTNEED`; they read zero after) and it stays free as a clean
//! span. The arena is a member of the allocator's budget, whose sweep
//! looks for such spans (and for the size classes' idle regions) on the
//! slow paths of every class and on every large operation, at most twice a
//! period ([`Budget::sweep_if_due`]). So a buffer freed and allocated
//! again, or a vector growing, costs no system call. Between sweeps the
//! free spans keep at most a quarter of the bytes in large blocks dirty,
//! and at least 64 MiB ([`Large::dirty_cap`]): a free past that purges the
//! spans free longest, so a program replacing big buffers does not hold
//! a period's worth of them resident. `trim()` purges every
//! free span and unmaps the chunks left wholly free. Larger blocks get a
//! mapping of their own, returned to the OS when freed and resized with
//! `mremap` where the OS has it. With `huge_pages`, chunks (aligned to
//! 2 MiB) and own mappings ask the OS for huge pages when they are made.
//!
//! The live blocks are kept in a table keyed by the block's address, under
//! a lock: a free or resize of an address that is not a live large block —
//! a double free, a foreign pointer, an interior pointer — is refused and
//! counted without the allocator ever reading the memory, which may be
//! unmapped. No system call runs under the lock: chunks and mappings are
//! made, moved, purged and unmapped outside it (a span being purged is out
//! of the free list, its chunk counted busy, so nothing unmaps it meanwhile).
//!
//! The byte budget is charged for the spans in blocks plus the dirty bytes
//! of free spans, and for each own mapping's address space; a chunk's
//! untouched pages are not charged. Under a `max_bytes` budget a freed span
//! is purged at once, so its room is the classes' again.

use std::time::Instant;

use crate::error::AllocError;
use crate::meta::{mvec, Arc, MVec};
use crate::os::{self, Mapping, PAGE};
use crate::source::{Budget, Idle};
use crate::sync::{AtomicU64, Mutex, Ordering};

mod arena;
mod table;

use arena::{page_up, Arena, Chunk, Span, MAX_SPAN};

/// Dirty bytes the free spans may always keep (see [`Large::dirty_cap`]):
/// a buffer of up to this size freed and allocated again costs no fault.
const DIRTY_FLOOR: usize = 64 << 20;

/// A live large block.
pub(crate) enum Block {
    /// A span of an arena chunk.
    Span { addr: usize, len: usize },
    /// A mapping of its own.
    Own(Mapping),
}

impl Block {
    pub(crate) fn addr(&self) -> usize {
        match self {
            Block::Span { addr, .. } => *addr,
            Block::Own(m) => m.addr(),
        }
    }

    /// Usable bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Block::Span { len, .. } => *len,
            Block::Own(m) => m.len(),
        }
    }
}

struct State {
    /// Live blocks by address.
    blocks: table::Table,
    arena: Arena,
}

/// The large blocks of one allocator.
pub(crate) struct Large {
    state: Mutex<State>,
    /// Charged for the spans and mappings; runs the idle release.
    budget: Arc<Budget>,
    allocs: AtomicU64,
    frees: AtomicU64,
    /// Usable bytes of the live blocks.
    bytes: AtomicU64,
    /// Address space held: the arena's chunks, the own mappings.
    reserved: AtomicU64,
    /// Bytes given back to the OS: purged dirty bytes, own mappings
    /// unmapped or shrunk away.
    released: AtomicU64,
    /// Frees and resizes refused: no live large block there.
    refused: AtomicU64,
    /// Chunks and own mappings ask for huge pages.
    huge: bool,
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
    /// The large blocks of an allocator charged to `budget`, in memory that
    /// asks for huge pages if `huge`.
    pub(crate) fn new(budget: Arc<Budget>, huge: bool) -> Self {
        Self {
            state: Mutex::new(State {
                blocks: table::Table::new(),
                arena: Arena::new(),
            }),
            budget,
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            released: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            huge,
        }
    }

    /// Joins the budget's idle release (see [`Budget::sweep_if_due`]); it
    /// leaves when dropped.
    ///
    /// # Safety
    /// The arena is not moved from here on (it is dropped in place).
    pub(crate) unsafe fn join(&self) {
        // SAFETY: per the contract; `Drop` leaves.
        unsafe { self.budget.join(self) };
    }

    /// A block of at least `size` bytes aligned to `align` (zeroed if
    /// `zero`); returns its address and usable length.
    pub(crate) fn alloc(
        &self,
        size: usize,
        align: usize,
        zero: bool,
    ) -> Result<(usize, usize), AllocError> {
        self.budget.sweep_if_due();
        let len = page_up(size).ok_or(AllocError::OutOfMemory)?;
        if len.saturating_add(align.max(PAGE) - PAGE) <= MAX_SPAN {
            self.alloc_span(len, align, zero)
        } else {
            self.alloc_own(size, align)
        }
    }

    /// A span of `len` bytes (a multiple of [`PAGE`]) from the arena,
    /// mapping a chunk when no free span fits.
    fn alloc_span(
        &self,
        len: usize,
        align: usize,
        zero: bool,
    ) -> Result<(usize, usize), AllocError> {
        loop {
            let mut st = self.state.lock();
            let got = st.arena.carve(len, align, |n| self.budget.charge(n));
            let got = match got {
                Ok(Some(c)) => match st.blocks.insert(Block::Span {
                    addr: c.addr,
                    len: c.len,
                }) {
                    Ok(()) => Ok(Some(c)),
                    Err(_) => {
                        // No room in the table: the span goes back, its
                        // bytes charged as dirty ones.
                        let _ = st.arena.give(c.addr, c.len, c.len, Instant::now());
                        Err(AllocError::OutOfMemory)
                    }
                },
                other => other,
            };
            drop(st);
            if let Some(c) = got? {
                self.allocs.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(c.len as u64, Ordering::Relaxed);
                if zero && !c.zeroed {
                    // SAFETY: the span is ours alone (nobody else has its
                    // address yet), `c.len` bytes of a live chunk.
                    unsafe { (c.addr as *mut u8).write_bytes(0, c.len) };
                }
                return Ok((c.addr, c.len));
            }
            if !self.budget.fits(len as u64) {
                return Err(AllocError::MemoryLimit {
                    limit: self.budget.limit(),
                });
            }
            // Map outside the lock; a racing thread may map too, which at
            // worst leaves a free chunk until `trim()`.
            let chunk = Chunk::map(self.huge)?;
            let reserved = chunk.reserved() as u64;
            let added = self.state.lock().arena.add_chunk(chunk, Instant::now());
            if let Err(chunk) = added {
                drop(chunk);
                return Err(AllocError::OutOfMemory);
            }
            self.reserved.fetch_add(reserved, Ordering::Relaxed);
        }
    }

    /// A block in a mapping of its own.
    fn alloc_own(&self, size: usize, align: usize) -> Result<(usize, usize), AllocError> {
        let map = Mapping::new(size, align, self.huge)?;
        let reserved = map.reserved() as u64;
        // Refused past the budget: the mapping is dropped (unmapped) again.
        self.budget.charge(reserved)?;
        let (addr, len) = (map.addr(), map.len());
        self.reserved.fetch_add(reserved, Ordering::Relaxed);
        if let Err(Block::Own(map)) = self.put(Block::Own(map)) {
            self.unmap_one(map);
            return Err(AllocError::OutOfMemory);
        }
        self.allocs.fetch_add(1, Ordering::Relaxed);
        Ok((addr, len))
    }

    /// Frees the block at `addr` (a span back to the arena, a mapping back
    /// to the OS). False: no live large block there.
    pub(crate) fn free(&self, addr: usize) -> bool {
        self.budget.sweep_if_due();
        let mut st = self.state.lock();
        let Some(block) = st.blocks.remove(addr) else {
            return false;
        };
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_sub(block.len() as u64, Ordering::Relaxed);
        match block {
            Block::Own(map) => {
                drop(st);
                self.unmap_one(map);
            }
            Block::Span { addr, len } => {
                let mut purge = mvec();
                self.give(&mut st, addr, len, &mut purge);
                drop(st);
                self.purge(purge);
            }
        }
        true
    }

    /// Frees the span `addr..addr + len` into the arena, dirty; under a
    /// `max_bytes` budget picks every dirty span to purge now (else the
    /// budget's sweep purges them once idle). Should the arena's list have
    /// no room (no memory), the span stays out of it, still charged.
    fn give(&self, st: &mut State, addr: usize, len: usize, purge: &mut MVec<Span>) {
        let _ = st.arena.give(addr, len, len, Instant::now());
        if self.budget.limit() != u64::MAX {
            st.arena.take_dirty(None, purge);
        } else {
            st.arena.take_dirty_over(self.dirty_cap(), purge);
        }
    }

    /// The most dirty bytes free spans keep between idle purges: a quarter
    /// of the bytes in large blocks, and at least [`DIRTY_FLOOR`].
    fn dirty_cap(&self) -> usize {
        let live = self.bytes.load(Ordering::Relaxed) as usize;
        (live / 4).max(DIRTY_FLOOR)
    }

    /// Gives the pages of `spans` (taken out of the arena by
    /// [`Arena::take_dirty`]) back to the OS outside the lock, then returns
    /// them to the arena clean; the bytes refunded.
    fn purge(&self, spans: MVec<Span>) -> u64 {
        if spans.is_empty() {
            return 0;
        }
        for s in &spans {
            // SAFETY: the span is out of the free list and in no block, so
            // nothing reads or writes it; its chunk counts it busy, so it
            // stays mapped until the span is given back below.
            unsafe { os::release(s.addr, s.len) };
        }
        let dirty: u64 = spans.iter().map(|s| s.dirty as u64).sum();
        let mut st = self.state.lock();
        let now = Instant::now();
        for s in &spans {
            // No room: the span stays out of the list (clean, unused).
            let _ = st.arena.give(s.addr, s.len, 0, now);
        }
        drop(st);
        self.budget.refund(dirty);
        self.released.fetch_add(dirty, Ordering::Relaxed);
        dirty
    }

    /// Purges every free span and unmaps the chunks left wholly free; the
    /// bytes released.
    pub(crate) fn trim(&self) -> u64 {
        let mut spans = mvec();
        self.state.lock().arena.take_dirty(None, &mut spans);
        let mut bytes = self.purge(spans);
        let mut dead = mvec();
        // Spans freed since the purge may still be dirty.
        let dirty = self.state.lock().arena.take_empty(&mut dead) as u64;
        self.budget.refund(dirty);
        self.released.fetch_add(dirty, Ordering::Relaxed);
        bytes += dirty;
        let span: u64 = dead.iter().map(|c| c.reserved() as u64).sum();
        self.reserved.fetch_sub(span, Ordering::Relaxed);
        // Unmapped here, outside the lock.
        drop(dead);
        bytes
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
        self.state.lock().blocks.get(addr).map(Block::len)
    }

    /// Resizes the block at `addr` to at least `size` bytes: a span in
    /// place (shrunk, or grown into the free span after it; grown bytes
    /// read zero if `zero`), a mapping of its own with `mremap` (which may
    /// move it; grown bytes read zero). `Ok(None)`: it cannot (the caller
    /// moves it); `Err`: no live large block there.
    pub(crate) fn resize(
        &self,
        addr: usize,
        size: usize,
        zero: bool,
    ) -> Result<Option<(usize, usize)>, ()> {
        self.budget.sweep_if_due();
        let mut st = self.state.lock();
        let len = match st.blocks.get(addr) {
            None => return Err(()),
            Some(Block::Own(_)) => {
                drop(st);
                return Ok(self.remap(addr, size));
            }
            Some(b) => b.len(),
        };
        let new = match page_up(size) {
            Some(n) if n <= MAX_SPAN => n,
            _ => return Ok(None),
        };
        if new <= len {
            if new < len {
                self.set_len(&mut st, addr, new);
                let mut purge = mvec();
                self.give(&mut st, addr + new, len - new, &mut purge);
                drop(st);
                self.purge(purge);
            }
            return Ok(Some((addr, new)));
        }
        let grown = st.arena.grow(addr, len, new, |n| self.budget.charge(n));
        let Ok(Some(g)) = grown else {
            return Ok(None);
        };
        self.set_len(&mut st, addr, new);
        drop(st);
        if zero && !g.zeroed {
            // SAFETY: the grown part is the caller's block's now (it holds
            // the block), `g.len` bytes of a live chunk.
            unsafe { (g.addr as *mut u8).write_bytes(0, g.len) };
        }
        Ok(Some((addr, new)))
    }

    /// Sets the length of the live span at `addr`, counting the change.
    fn set_len(&self, st: &mut State, addr: usize, new: usize) {
        if let Some(Block::Span { len, .. }) = st.blocks.get_mut(addr) {
            self.bytes.fetch_add(new as u64, Ordering::Relaxed);
            self.bytes.fetch_sub(*len as u64, Ordering::Relaxed);
            *len = new;
        }
    }

    /// Resizes the block with a mapping of its own at `addr` to at least
    /// `size` bytes (`mremap`); `None` if it cannot.
    fn remap(&self, addr: usize, size: usize) -> Option<(usize, usize)> {
        let Some(Block::Own(mut map)) = self.take(addr) else {
            return None;
        };
        let before = map.reserved() as u64;
        let want = page_up(size).unwrap_or(usize::MAX) as u64;
        let charge = want.saturating_sub(before);
        if charge > 0 && self.budget.charge(charge).is_err() {
            self.put_back(map);
            return None;
        }
        if !map.remap(size) {
            self.budget.refund(charge);
            self.put_back(map);
            return None;
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
        Some(got)
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
    fn take(&self, addr: usize) -> Option<Block> {
        let block = self.state.lock().blocks.remove(addr)?;
        self.bytes.fetch_sub(block.len() as u64, Ordering::Relaxed);
        Some(block)
    }

    /// Puts a block (back) into the table.
    /// Gives it back if the table has no room (no memory to grow).
    fn put(&self, block: Block) -> Result<(), Block> {
        let len = block.len() as u64;
        self.state.lock().blocks.insert(block)?;
        self.bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Puts a mapping taken out by [`Large::take`] back: its room is still
    /// there (the table never shrinks), so this cannot fail; were it to,
    /// the mapping would leak rather than be unmapped under its user.
    fn put_back(&self, map: Mapping) {
        if let Err(b) = self.put(Block::Own(map)) {
            core::mem::forget(b);
        }
    }

    /// The lock word, for the `fork` handlers.
    #[cfg(not(loom))]
    pub(crate) fn raw_lock(&self) -> &crate::sync::lock::RawLock {
        self.state.raw()
    }
}

/// The idle-purge policy: free spans dirty for a whole period give their
/// pages back (the budget's sweep decides when to look).
impl Idle for Large {
    fn release_idle(&self, cutoff: Instant) -> u64 {
        let mut spans = mvec();
        self.state.lock().arena.take_dirty(Some(cutoff), &mut spans);
        self.purge(spans)
    }
}

impl Drop for Large {
    fn drop(&mut self) {
        self.budget.leave(self);
    }
}
