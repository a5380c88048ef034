//! The page source: regions aligned to their own power-of-two size, carved
//! from large chunks, released back to the OS and reused.
//!
//! A chunk is one mapping from [`crate::os`], over-mapped so that an
//! aligned run of regions fits.
//! Regions are handed to slabs; a free region is either *warm* (its pages may
//! be resident) or *cold* (never touched, or released with `MADV_DONTNEED`).
//! `mapped_bytes` counts regions in use plus warm free regions: the memory
//! that may be resident. No syscall runs under the source's lock.
//!
//! The idle release belongs to the [`Budget`] that the sources of one pool
//! or allocator share: each member ([`Idle`]: every page source, and a
//! `SlabAlloc`'s large arena) calls [`Budget::sweep_if_due`] on its slow
//! paths, and at most once per half `release_after` one of those callers
//! gives back what has been idle for a whole period in *every* member. So
//! what one size class freed goes back to the OS while the program uses
//! only other classes.

use core::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::error::AllocError;
use crate::meta::{mvec, Arc, MVec};
use crate::os::Backing;
use crate::pagemap;
use crate::sync::unmodelled::now_nanos;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// Idle memory charged to a [`Budget`], which the budget's sweep gives back.
pub(crate) trait Idle: Sync {
    /// Gives back to the OS the memory free since before `cutoff`; the bytes
    /// released. Takes the member's own locks, one at a time.
    fn release_idle(&self, cutoff: Instant) -> u64;
}

/// A budget's members ([`Budget::join`]).
#[derive(Debug)]
struct Members(MVec<NonNull<dyn Idle>>);

// SAFETY: each member is `Sync` (the `Idle` bound), so any thread may use
// it; the pointers are only dereferenced under the list's lock, while the
// member has not left.
unsafe impl Send for Members {}

/// A `max_bytes` budget and the bytes charged to it: the regions in use or
/// warm of every page source (and the large mappings) of one pool or
/// allocator. Charged and refunded only on slow paths.
///
/// It also runs its members' idle release (see the module docs). Lock
/// order: the member list's lock comes after every pool core's own locks
/// (a sweep may start on a slow path that holds them) and before every
/// member's locks, which a sweep takes under it one at a time; nothing else
/// is taken under it but the meta allocator's.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    mapped: AtomicU64,
    peak: AtomicU64,
    /// How long memory stays idle before a sweep gives it back (`None`:
    /// only `trim` does).
    release_after: Option<Duration>,
    /// When the last sweep started ([`now_nanos`]).
    last_sweep: AtomicU64,
    members: Mutex<Members>,
}

impl Budget {
    pub(crate) fn new(limit: u64, release_after: Option<Duration>) -> Self {
        Self {
            limit,
            mapped: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            release_after,
            last_sweep: AtomicU64::new(now_nanos()),
            members: Mutex::new(Members(mvec())),
        }
    }

    /// Adds `member` to the sweep. False if there was no memory for it (it
    /// then releases its idle memory only on `trim`).
    ///
    /// # Safety
    /// `member` stays valid at its address until it calls
    /// [`Budget::leave`], which it does before it is dropped.
    pub(crate) unsafe fn join(&self, member: &(dyn Idle + 'static)) -> bool {
        let mut m = self.members.lock();
        if m.0.try_reserve(1).is_err() {
            return false;
        }
        m.0.push(NonNull::from(member));
        true
    }

    /// Takes `member` out of the sweep (if it joined); once this returns, no
    /// sweep uses it.
    pub(crate) fn leave(&self, member: &(dyn Idle + 'static)) {
        let me: *const dyn Idle = member;
        let me = me.cast::<()>();
        self.members
            .lock()
            .0
            .retain(|m| m.as_ptr().cast::<()>().cast_const() != me);
    }

    /// The allocator-wide idle release, called on every member's slow paths
    /// (with none of the member's locks held): if half a `release_after`
    /// passed since the last sweep, the caller that claims this one (a
    /// compare-exchange on the timestamp) gives back, in every member, what
    /// has been idle for a whole period. The bytes released.
    pub(crate) fn sweep_if_due(&self) -> u64 {
        let Some(period) = self.release_after else {
            return 0;
        };
        let now = now_nanos();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < (period / 2).as_nanos() as u64
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return 0;
        }
        let Some(cutoff) = Instant::now().checked_sub(period) else {
            return 0;
        };
        let members = self.members.lock();
        members
            .0
            .iter()
            // SAFETY: a member is valid until it leaves, and leaving takes
            // this lock, held here.
            .map(|m| unsafe { m.as_ref() }.release_idle(cutoff))
            .sum()
    }

    /// The lock of the member list, for the `fork` handlers.
    #[cfg(not(loom))]
    pub(crate) fn raw_lock(&self) -> &crate::sync::lock::RawLock {
        self.members.raw()
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
    /// sources of a size-classed allocator); runs the idle release.
    budget: Arc<Budget>,
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
        let budget = Arc::new(Budget::new(max_bytes, release_after));
        Self::with_budget(region_bytes, chunk_bytes, budget)
    }

    /// A source charging `budget` for what it maps. It takes part in the
    /// budget's idle release once it [`join`](PageSource::join)s.
    pub(crate) fn with_budget(
        region_bytes: usize,
        chunk_bytes: usize,
        budget: Arc<Budget>,
    ) -> Self {
        debug_assert!(region_bytes.is_power_of_two());
        let chunk_bytes = chunk_bytes.max(region_bytes) / region_bytes * region_bytes;
        Self {
            region_bytes,
            chunk_bytes,
            budget,
            state: Mutex::new(SourceState {
                chunks: mvec(),
                free: mvec(),
            }),
            mapped: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            released: AtomicU64::new(0),
            fail_maps: AtomicUsize::new(0),
            tag: AtomicUsize::new(0),
        }
    }

    /// Joins the budget's idle release (see [`Budget::sweep_if_due`]); it
    /// leaves when dropped.
    ///
    /// # Safety
    /// The source is not moved from here on (it is dropped in place).
    pub(crate) unsafe fn join(&self) {
        // SAFETY: per the contract; `Drop` leaves.
        unsafe { self.budget.join(self) };
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
                drop(st);
                self.budget.sweep_if_due();
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
        drop(st);
        self.budget.sweep_if_due();
    }

    /// True if `addr` lies inside one of this source's chunks.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        let st = self.state.lock();
        st.chunks
            .iter()
            .any(|c| (c.base..c.base + c.regions * self.region_bytes).contains(&addr))
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

/// The working-set policy: warm free regions idle for a whole period go
/// back to the OS (the budget's sweep decides when to look).
impl Idle for PageSource {
    fn release_idle(&self, cutoff: Instant) -> u64 {
        self.release_warm(|since| since <= cutoff)
    }
}

impl Drop for PageSource {
    fn drop(&mut self) {
        self.budget.leave(self);
    }
}

#[cfg(test)]
mod tests;
