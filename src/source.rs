//! The page source: regions aligned to their own power-of-two size, carved
//! from large chunks, released back to the OS and reused.
//!
//! A chunk is one mapping from [`crate::os`], over-mapped so that an
//! aligned run of regions fits.
//! Regions are handed to slabs; a free region is either *warm* (its pages may
//! be resident) or *cold* (never touched, or released with `MADV_DONTNEED`).
//! `mapped_bytes` counts regions in use plus warm free regions: the memory
//! that may be resident. No syscall runs under the source's lock.

use std::time::{Duration, Instant};

use crate::error::AllocError;
use crate::meta::{mvec, Arc, MVec};
use crate::os::Backing;
use crate::pagemap;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// A `max_bytes` budget and the bytes charged to it: the regions in use or
/// warm of every page source (and the large mappings) of one pool or
/// allocator. Charged and refunded only on slow paths.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    mapped: AtomicU64,
    peak: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            mapped: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Charges `n` bytes, or refuses if that would pass the limit.
    pub(crate) fn charge(&self, n: u64) -> Result<(), AllocError> {
        let mut cur = self.mapped.load(Ordering::Relaxed);
        loop {
            let new = cur
                .checked_add(n)
                .filter(|&v| v <= self.limit)
                .ok_or(AllocError::MemoryLimit { limit: self.limit })?;
            match self
                .mapped
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(new, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Gives back `n` charged bytes.
    pub(crate) fn refund(&self, n: u64) {
        self.mapped.fetch_sub(n, Ordering::Relaxed);
    }

    /// True if `n` more bytes would fit now.
    pub(crate) fn fits(&self, n: u64) -> bool {
        self.mapped.load(Ordering::Relaxed).saturating_add(n) <= self.limit
    }

    /// The limit in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged now.
    pub(crate) fn mapped(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }

    /// The most bytes ever charged at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// One mapping from the OS.
struct Chunk {
    /// Owns the mapping (dropping it unmaps).
    backing: Backing,
    /// First region-aligned address inside the mapping.
    base: usize,
    /// Regions carved from it.
    regions: usize,
    /// Of those, how many sit in the free list.
    free: usize,
    /// Bytes of address space the mapping holds.
    len: usize,
}

#[derive(Clone, Copy)]
struct FreeRegion {
    addr: usize,
    /// `Some(when it became free)` if its pages may be resident.
    warm_since: Option<Instant>,
}

struct SourceState {
    chunks: MVec<Chunk>,
    free: MVec<FreeRegion>,
    last_sweep: Instant,
}

// SAFETY: a chunk's memory is owned by the chunk alone (under Miri and loom
// through a raw pointer that only frees it); nothing aliases it across
// threads.
unsafe impl Send for SourceState {}

/// Hands out `region_bytes`-aligned regions of `region_bytes` each.
pub(crate) struct PageSource {
    region_bytes: usize,
    chunk_bytes: usize,
    /// Charged for every region in use or warm (shared with the other
    /// sources of a size-classed allocator).
    budget: Arc<Budget>,
    release_after: Option<Duration>,
    state: Mutex<SourceState>,
    /// Regions in use plus warm free regions, in bytes.
    mapped: AtomicU64,
    /// Address space held from the OS, in bytes.
    reserved: AtomicU64,
    /// Bytes given back to the OS so far (cumulative).
    released: AtomicU64,
    /// Fault injection: the next `n` chunk mappings fail.
    fail_maps: AtomicUsize,
    /// The tag this source's regions carry in the page map (0: none).
    tag: AtomicUsize,
}

impl PageSource {
    /// A source of `region_bytes` regions (a power of two, at least a page),
    /// mapping at least `chunk_bytes` at a time.
    #[cfg(test)]
    pub(crate) fn new(
        region_bytes: usize,
        chunk_bytes: usize,
        max_bytes: u64,
        release_after: Option<Duration>,
    ) -> Self {
        let budget = Arc::new(Budget::new(max_bytes));
        Self::with_budget(region_bytes, chunk_bytes, budget, release_after)
    }

    /// A source charging `budget` for what it maps.
    pub(crate) fn with_budget(
        region_bytes: usize,
        chunk_bytes: usize,
        budget: Arc<Budget>,
        release_after: Option<Duration>,
    ) -> Self {
        debug_assert!(region_bytes.is_power_of_two());
        let chunk_bytes = chunk_bytes.max(region_bytes) / region_bytes * region_bytes;
        Self {
            region_bytes,
            chunk_bytes,
            budget,
            release_after,
            state: Mutex::new(SourceState {
                chunks: mvec(),
                free: mvec(),
                last_sweep: Instant::now(),
            }),
            mapped: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            released: AtomicU64::new(0),
            fail_maps: AtomicUsize::new(0),
            tag: AtomicUsize::new(0),
        }
    }

    /// Tags the regions of chunks mapped from now on in the page map.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn set_tag(&self, tag: u8) {
        self.tag.store(tag as usize, Ordering::Relaxed);
    }

    /// The source's lock word, for the `fork` handlers.
    #[cfg(not(loom))]
    pub(crate) fn raw_lock(&self) -> &crate::sync::lock::RawLock {
        self.state.raw()
    }

    /// Makes the next `n` chunk mappings fail, as if the OS refused them.
    pub(crate) fn inject_map_failures(&self, n: usize) {
        self.fail_maps.store(n, Ordering::Relaxed);
    }

    /// Takes a free region, mapping a new chunk when none is free.
    #[cfg(test)]
    pub(crate) fn acquire(&self) -> Result<usize, AllocError> {
        self.acquire_region().map(|(addr, _)| addr)
    }

    /// Takes a free region, mapping a new chunk when none is free; true if
    /// its bytes all read zero (a cold region: never touched, or released).
    pub(crate) fn acquire_region(&self) -> Result<(usize, bool), AllocError> {
        loop {
            let mut st = self.state.lock();
            if let Some(got) = self.take_free(&mut st)? {
                let cutoff = self.sweep_due(&mut st, None);
                drop(st);
                self.sweep(cutoff);
                return Ok(got);
            }
            drop(st);
            if !self.budget.fits(self.region_bytes as u64) {
                return Err(AllocError::MemoryLimit {
                    limit: self.budget.limit(),
                });
            }
            // Map outside the lock; a racing thread may map too, which at
            // worst leaves one extra chunk of cold regions per racer.
            let chunk = self.map_chunk()?;
            let mut st = self.state.lock();
            for i in 0..chunk.regions {
                st.free.push(FreeRegion {
                    addr: chunk.base + i * self.region_bytes,
                    warm_since: None,
                });
            }
            st.chunks.push(chunk);
        }
    }

    /// Picks a warm region first (no new memory), else a cold (zero) one
    /// if the `max_bytes` budget allows it. `Ok(None)`: nothing free.
    fn take_free(&self, st: &mut SourceState) -> Result<Option<(usize, bool)>, AllocError> {
        if let Some(i) = st.free.iter().rposition(|r| r.warm_since.is_some()) {
            let r = st.free.swap_remove(i);
            self.chunk_of(st, r.addr).free -= 1;
            return Ok(Some((r.addr, false)));
        }
        if st.free.is_empty() {
            return Ok(None);
        }
        self.budget.charge(self.region_bytes as u64)?;
        let r = st.free.pop().expect("checked non-empty");
        self.chunk_of(st, r.addr).free -= 1;
        self.mapped
            .fetch_add(self.region_bytes as u64, Ordering::Relaxed);
        Ok(Some((r.addr, true)))
    }

    fn chunk_of<'a>(&self, st: &'a mut SourceState, addr: usize) -> &'a mut Chunk {
        let span = |c: &Chunk| c.base..c.base + c.regions * self.region_bytes;
        st.chunks
            .iter_mut()
            .find(|c| span(c).contains(&addr))
            .expect("a free region belongs to a chunk")
    }

    /// Returns a region; its pages stay warm until released.
    pub(crate) fn release(&self, addr: usize) {
        let now = Instant::now();
        let mut st = self.state.lock();
        self.chunk_of(&mut st, addr).free += 1;
        st.free.push(FreeRegion {
            addr,
            warm_since: Some(now),
        });
        let cutoff = self.sweep_due(&mut st, Some(now));
        drop(st);
        self.sweep(cutoff);
    }

    /// True if `addr` lies inside one of this source's chunks.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        let st = self.state.lock();
        st.chunks
            .iter()
            .any(|c| (c.base..c.base + c.regions * self.region_bytes).contains(&addr))
    }

    /// The working-set policy: warm free regions idle for a whole period go
    /// back to the OS. Runs on the slow paths that already reach the source,
    /// under the lock they hold, with one clock read (`now`, if the caller
    /// has read it): if half a period passed since the last sweep, starts
    /// one and returns its cutoff for [`PageSource::sweep`].
    fn sweep_due(&self, st: &mut SourceState, now: Option<Instant>) -> Option<Instant> {
        let period = self.release_after?;
        let now = now.unwrap_or_else(Instant::now);
        if now.duration_since(st.last_sweep) < period / 2 {
            return None;
        }
        st.last_sweep = now;
        now.checked_sub(period)
    }

    /// Releases the warm regions free since before `cutoff` (outside the lock).
    fn sweep(&self, cutoff: Option<Instant>) {
        if let Some(cutoff) = cutoff {
            self.release_warm(|since| since <= cutoff);
        }
    }

    /// Releases every warm free region and unmaps chunks left wholly free.
    /// Returns the bytes given back.
    pub(crate) fn trim(&self) -> u64 {
        let mut bytes = self.release_warm(|_| true);
        let dead: MVec<Chunk> = {
            let mut st = self.state.lock();
            let rb = self.region_bytes;
            let mut dead = mvec();
            let mut i = 0;
            while i < st.chunks.len() {
                if st.chunks[i].free == st.chunks[i].regions {
                    dead.push(st.chunks.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            let in_dead = |a: usize| {
                dead.iter()
                    .any(|c| (c.base..c.base + c.regions * rb).contains(&a))
            };
            // A region released since `release_warm` may still be warm.
            let warm = st
                .free
                .iter()
                .filter(|r| r.warm_since.is_some() && in_dead(r.addr))
                .count() as u64
                * rb as u64;
            st.free.retain(|r| !in_dead(r.addr));
            self.mapped.fetch_sub(warm, Ordering::Relaxed);
            self.budget.refund(warm);
            bytes += warm;
            dead
        };
        let span: usize = dead.iter().map(|c| c.len).sum();
        self.reserved.fetch_sub(span as u64, Ordering::Relaxed);
        let tag = self.tag.load(Ordering::Relaxed);
        if tag != 0 {
            for c in &dead {
                pagemap::set(c.base, c.regions * self.region_bytes, 0);
            }
        }
        // Unmapping happens here, outside the lock.
        drop(dead);
        bytes
    }

    /// Moves the chosen warm regions out of the free list, advises the OS
    /// outside the lock, and puts them back cold.
    fn release_warm(&self, pick: impl Fn(Instant) -> bool) -> u64 {
        let taken: MVec<FreeRegion> = {
            let mut st = self.state.lock();
            let mut taken = mvec();
            st.free.retain(|r| match r.warm_since {
                Some(t) if pick(t) => {
                    taken.push(*r);
                    false
                }
                _ => true,
            });
            // While they are advised, the taken regions count as in use in
            // their chunks, so a concurrent `trim` never finds such a chunk
            // wholly free and unmaps it under us.
            for r in &taken {
                self.chunk_of(&mut st, r.addr).free -= 1;
            }
            taken
        };
        if taken.is_empty() {
            return 0;
        }
        for r in &taken {
            self.advise_dont_need(r.addr);
        }
        let bytes = (taken.len() * self.region_bytes) as u64;
        let mut st = self.state.lock();
        for r in &taken {
            self.chunk_of(&mut st, r.addr).free += 1;
        }
        st.free.extend(taken.iter().map(|r| FreeRegion {
            addr: r.addr,
            warm_since: None,
        }));
        self.mapped.fetch_sub(bytes, Ordering::Relaxed);
        self.budget.refund(bytes);
        self.released.fetch_add(bytes, Ordering::Relaxed);
        drop(st);
        bytes
    }

    fn advise_dont_need(&self, addr: usize) {
        let st = self.state.lock();
        let chunk = st
            .chunks
            .iter()
            .find(|c| (c.base..c.base + c.regions * self.region_bytes).contains(&addr));
        if let Some(c) = chunk {
            // SAFETY: the region is in no slab (we took it out of the free
            // list), so nothing reads its old contents, and lies in `c`.
            unsafe { c.backing.release(addr, self.region_bytes) };
        }
    }

    fn map_chunk(&self) -> Result<Chunk, AllocError> {
        let injected = self.fail_maps.load(Ordering::Relaxed);
        if injected > 0 {
            self.fail_maps.store(injected - 1, Ordering::Relaxed);
            return Err(AllocError::OutOfMemory);
        }
        let rb = self.region_bytes;
        let (backing, base, len) = Backing::map(self.chunk_bytes, rb)?;
        self.reserved.fetch_add(len as u64, Ordering::Relaxed);
        let tag = self.tag.load(Ordering::Relaxed);
        if tag != 0 && !pagemap::set(base, self.chunk_bytes, tag as u8) {
            // No room for the page map's leaf: the chunk could not be
            // found from its blocks. Dropping it unmaps it.
            self.reserved.fetch_sub(len as u64, Ordering::Relaxed);
            return Err(AllocError::OutOfMemory);
        }
        Ok(Chunk {
            backing,
            base,
            regions: self.chunk_bytes / rb,
            free: self.chunk_bytes / rb,
            len,
        })
    }

    /// Regions in use plus warm free regions, in bytes.
    pub(crate) fn mapped_bytes(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }
    /// Highest `mapped_bytes` of the budget seen.
    pub(crate) fn peak_mapped_bytes(&self) -> u64 {
        self.budget.peak()
    }
    /// Address space held from the OS.
    pub(crate) fn reserved_bytes(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }
    /// Bytes given back to the OS so far.
    pub(crate) fn released_bytes(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
