//! The page source: regions aligned to their own power-of-two size, carved
//! from large chunks, released back to the OS and reused.
//!
//! A chunk is one OS mapping (memmap2 anonymous, over-mapped so that an
//! aligned run of regions fits) or, under miri and loom, one heap allocation.
//! Regions are handed to slabs; a free region is either *warm* (its pages may
//! be resident) or *cold* (never touched, or released with `MADV_DONTNEED`).
//! `mapped_bytes` counts regions in use plus warm free regions: the memory
//! that may be resident. No syscall runs under the source's lock.

use std::time::{Duration, Instant};

use crate::error::AllocError;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// One mapping from the OS (or the heap, under miri/loom).
struct Chunk {
    /// Owns the mapping (dropping it unmaps); read to advise the OS.
    #[cfg_attr(any(miri, loom), allow(dead_code))]
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

enum Backing {
    #[cfg(not(any(miri, loom)))]
    Mmap(#[allow(dead_code)] memmap2::MmapMut),
    #[cfg(any(miri, loom))]
    Heap {
        ptr: *mut u8,
        layout: std::alloc::Layout,
    },
}

impl Drop for Backing {
    fn drop(&mut self) {
        #[cfg(any(miri, loom))]
        {
            let Backing::Heap { ptr, layout } = *self;
            // SAFETY: `ptr` came from `std::alloc::alloc(layout)` in `map_chunk`
            // and is freed exactly once, here.
            unsafe { std::alloc::dealloc(ptr, layout) };
        }
    }
}

#[derive(Clone, Copy)]
struct FreeRegion {
    addr: usize,
    /// `Some(when it became free)` if its pages may be resident.
    warm_since: Option<Instant>,
}

struct SourceState {
    chunks: Vec<Chunk>,
    free: Vec<FreeRegion>,
    last_sweep: Instant,
}

// SAFETY: the raw pointer inside `Backing::Heap` is owned by the chunk and only
// used to free it; nothing aliases it across threads.
unsafe impl Send for SourceState {}

/// Hands out `region_bytes`-aligned regions of `region_bytes` each.
pub(crate) struct PageSource {
    region_bytes: usize,
    chunk_bytes: usize,
    max_bytes: u64,
    release_after: Option<Duration>,
    state: Mutex<SourceState>,
    /// Regions in use plus warm free regions, in bytes.
    mapped: AtomicU64,
    /// Address space held from the OS, in bytes.
    reserved: AtomicU64,
    /// Bytes given back to the OS so far (cumulative).
    released: AtomicU64,
    peak_mapped: AtomicU64,
    /// Fault injection: the next `n` chunk mappings fail.
    fail_maps: AtomicUsize,
}

impl PageSource {
    /// A source of `region_bytes` regions (a power of two, at least a page),
    /// mapping at least `chunk_bytes` at a time.
    pub(crate) fn new(
        region_bytes: usize,
        chunk_bytes: usize,
        max_bytes: u64,
        release_after: Option<Duration>,
    ) -> Self {
        debug_assert!(region_bytes.is_power_of_two());
        let chunk_bytes = chunk_bytes.max(region_bytes) / region_bytes * region_bytes;
        Self {
            region_bytes,
            chunk_bytes,
            max_bytes,
            release_after,
            state: Mutex::new(SourceState {
                chunks: Vec::new(),
                free: Vec::new(),
                last_sweep: Instant::now(),
            }),
            mapped: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            released: AtomicU64::new(0),
            peak_mapped: AtomicU64::new(0),
            fail_maps: AtomicUsize::new(0),
        }
    }

    /// Makes the next `n` chunk mappings fail, as if the OS refused them.
    pub(crate) fn inject_map_failures(&self, n: usize) {
        self.fail_maps.store(n, Ordering::Relaxed);
    }

    /// Takes a free region, mapping a new chunk when none is free.
    pub(crate) fn acquire(&self) -> Result<usize, AllocError> {
        loop {
            let mut st = self.state.lock();
            if let Some(addr) = self.take_free(&mut st)? {
                let cutoff = self.sweep_due(&mut st, None);
                drop(st);
                self.sweep(cutoff);
                return Ok(addr);
            }
            drop(st);
            if self.mapped.load(Ordering::Relaxed) + self.region_bytes as u64 > self.max_bytes {
                return Err(AllocError::MemoryLimit {
                    limit: self.max_bytes,
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

    /// Picks a warm region first (no new memory), else a cold one if the
    /// `max_bytes` budget allows it. `Ok(None)`: nothing free.
    fn take_free(&self, st: &mut SourceState) -> Result<Option<usize>, AllocError> {
        if let Some(i) = st.free.iter().rposition(|r| r.warm_since.is_some()) {
            let r = st.free.swap_remove(i);
            self.chunk_of(st, r.addr).free -= 1;
            return Ok(Some(r.addr));
        }
        if st.free.is_empty() {
            return Ok(None);
        }
        let mapped = self.mapped.load(Ordering::Relaxed);
        if mapped + self.region_bytes as u64 > self.max_bytes {
            return Err(AllocError::MemoryLimit {
                limit: self.max_bytes,
            });
        }
        let r = st.free.pop().expect("checked non-empty");
        self.chunk_of(st, r.addr).free -= 1;
        let now = mapped + self.region_bytes as u64;
        self.mapped.store(now, Ordering::Relaxed);
        if now > self.peak_mapped.load(Ordering::Relaxed) {
            self.peak_mapped.store(now, Ordering::Relaxed);
        }
        Ok(Some(r.addr))
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
        let dead: Vec<Chunk> = {
            let mut st = self.state.lock();
            let rb = self.region_bytes;
            let (dead, live): (Vec<Chunk>, Vec<Chunk>) = std::mem::take(&mut st.chunks)
                .into_iter()
                .partition(|c| c.free == c.regions);
            st.chunks = live;
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
            bytes += warm;
            dead
        };
        let span: usize = dead.iter().map(|c| c.len).sum();
        self.reserved.fetch_sub(span as u64, Ordering::Relaxed);
        // Unmapping happens here, outside the lock.
        drop(dead);
        bytes
    }

    /// Moves the chosen warm regions out of the free list, advises the OS
    /// outside the lock, and puts them back cold.
    fn release_warm(&self, pick: impl Fn(Instant) -> bool) -> u64 {
        let taken: Vec<FreeRegion> = {
            let mut st = self.state.lock();
            let mut taken = Vec::new();
            st.free.retain(|r| match r.warm_since {
                Some(t) if pick(t) => {
                    taken.push(*r);
                    false
                }
                _ => true,
            });
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
        st.free.extend(taken.iter().map(|r| FreeRegion {
            addr: r.addr,
            warm_since: None,
        }));
        self.mapped.fetch_sub(bytes, Ordering::Relaxed);
        self.released.fetch_add(bytes, Ordering::Relaxed);
        drop(st);
        bytes
    }

    fn advise_dont_need(&self, addr: usize) {
        #[cfg(not(any(miri, loom)))]
        {
            let st = self.state.lock();
            let chunk = st
                .chunks
                .iter()
                .find(|c| (c.base..c.base + c.regions * self.region_bytes).contains(&addr));
            if let Some(Chunk {
                backing: Backing::Mmap(map),
                ..
            }) = chunk
            {
                let offset = addr - map.as_ptr() as usize;
                // SAFETY: the region is in no slab (we took it out of the free
                // list), so nothing reads its old contents; DONTNEED only makes
                // its pages read back as zeroes.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        offset,
                        self.region_bytes,
                    )
                };
            }
        }
        #[cfg(any(miri, loom))]
        let _ = addr;
    }

    fn map_chunk(&self) -> Result<Chunk, AllocError> {
        let injected = self.fail_maps.load(Ordering::Relaxed);
        if injected > 0 {
            self.fail_maps.store(injected - 1, Ordering::Relaxed);
            return Err(AllocError::OutOfMemory);
        }
        let rb = self.region_bytes;
        #[cfg(not(any(miri, loom)))]
        let (backing, base, len) = {
            // Over-map by one region so an aligned run of regions fits.
            let len = self
                .chunk_bytes
                .checked_add(rb)
                .ok_or(AllocError::OutOfMemory)?;
            let map = memmap2::MmapMut::map_anon(len).map_err(|_| AllocError::OutOfMemory)?;
            let start = map.as_ptr() as usize;
            let base = (start + rb - 1) & !(rb - 1);
            (Backing::Mmap(map), base, len)
        };
        #[cfg(any(miri, loom))]
        let (backing, base, len) = {
            let layout = std::alloc::Layout::from_size_align(self.chunk_bytes, rb)
                .map_err(|_| AllocError::OutOfMemory)?;
            // SAFETY: the layout has a non-zero size (at least one region).
            let ptr = unsafe { std::alloc::alloc(layout) };
            if ptr.is_null() {
                return Err(AllocError::OutOfMemory);
            }
            (
                Backing::Heap { ptr, layout },
                ptr as usize,
                self.chunk_bytes,
            )
        };
        self.reserved.fetch_add(len as u64, Ordering::Relaxed);
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
    /// Highest `mapped_bytes` seen.
    pub(crate) fn peak_mapped_bytes(&self) -> u64 {
        self.peak_mapped.load(Ordering::Relaxed)
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
