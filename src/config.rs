//! Configuration: the settings every builder shares ([`Knobs`], with their
//! setters in [`knob_setters`]), their validation, and the validated
//! [`Config`] of one pool core.

use std::time::Duration;

use crate::error::ConfigError;
use crate::magazine::CAPACITY as MAGAZINE_CAPACITY;
use crate::slab::Geometry;

/// Blocks a thread's magazine holds by default, per pool (or class).
const DEFAULT_MAGAZINE: usize = 32;

/// Validated configuration of one pool core.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) geometry: Geometry,
    pub(crate) hardened: bool,
    pub(crate) retained_empty: usize,
    pub(crate) max_thread_slabs: usize,
    pub(crate) max_thread_heaps: usize,
    pub(crate) chunk_bytes: usize,
    pub(crate) release_after: Option<Duration>,
    pub(crate) magazine: usize,
}

/// The settings of a pool or allocator builder, before validation.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub(crate) hardened: bool,
    pub(crate) retained_empty: usize,
    pub(crate) max_thread_heaps: usize,
    pub(crate) max_thread_slabs: usize,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) chunk_bytes: usize,
    pub(crate) release_after: Option<Duration>,
    pub(crate) magazine: usize,
}

impl Knobs {
    /// The defaults.
    pub(crate) fn new() -> Self {
        Self {
            hardened: false,
            retained_empty: 4,
            max_thread_heaps: usize::MAX,
            max_thread_slabs: usize::MAX,
            max_bytes: None,
            chunk_bytes: crate::os::DEFAULT_CHUNK_BYTES,
            release_after: Some(Duration::from_secs(5)),
            magazine: DEFAULT_MAGAZINE,
        }
    }

    /// Checks every setting; `min_bytes` is the least `max_bytes` that can
    /// serve anything. Returns the byte budget.
    pub(crate) fn check(&self, min_bytes: usize) -> Result<u64, ConfigError> {
        let invalid = |name, requirement| ConfigError::InvalidSetting { name, requirement };
        if self.max_thread_slabs == 0 {
            return Err(invalid("max_thread_slabs", "must be at least 1"));
        }
        let max_bytes = self.max_bytes.unwrap_or(u64::MAX);
        if max_bytes < min_bytes as u64 {
            return Err(invalid(
                "max_bytes",
                "must be at least one slab region (Stats::slab_bytes)",
            ));
        }
        let chunk = self.chunk_bytes;
        if chunk != 0 && (!chunk.is_power_of_two() || chunk < 64 * 1024) {
            return Err(invalid(
                "chunk_bytes",
                "must be a power of two of at least 64 KiB",
            ));
        }
        if self.release_after == Some(Duration::ZERO) {
            return Err(invalid(
                "release_after",
                "must be longer than zero (or None)",
            ));
        }
        if self.magazine > MAGAZINE_CAPACITY {
            return Err(invalid("magazine", "must be at most 64 blocks"));
        }
        Ok(max_bytes)
    }

    /// The core configuration for slabs of `geometry` (after [`Knobs::check`]).
    pub(crate) fn config(&self, geometry: Geometry) -> Config {
        Config {
            geometry,
            hardened: self.hardened,
            retained_empty: self.retained_empty,
            max_thread_slabs: self.max_thread_slabs,
            max_thread_heaps: self.max_thread_heaps,
            chunk_bytes: self.chunk_bytes.max(geometry.region),
            release_after: self.release_after,
            magazine: self.magazine,
        }
    }
}

/// The setters of the shared settings, for a builder with a `knobs: Knobs`
/// field.
macro_rules! knob_setters {
    () => {
        /// Encoded, checked freelist links (default off). Double frees and
        /// foreign pointers are refused in either mode.
        pub fn hardened(mut self, on: bool) -> Self {
            self.knobs.hardened = on;
            self
        }

        /// Empty slabs each thread heap keeps for reuse (default 4: a run of
        /// blocks that spans a few slabs is freed and reallocated without
        /// going back to the shared page source).
        pub fn retained_empty_slabs(mut self, n: usize) -> Self {
            self.knobs.retained_empty = n;
            self
        }

        /// Threads beyond `n` live heaps allocate from the shared tier
        /// (default: unlimited; 0 sends every thread to the tier).
        pub fn max_thread_heaps(mut self, n: usize) -> Self {
            self.knobs.max_thread_heaps = n;
            self
        }

        /// A heap owning `n` slabs spills further allocations to the shared
        /// tier (≥ 1; default unlimited).
        pub fn max_thread_slabs(mut self, n: usize) -> Self {
            self.knobs.max_thread_slabs = n;
            self
        }

        /// Caps `mapped_bytes`; past it allocations fail with
        /// [`AllocError::MemoryLimit`](crate::AllocError::MemoryLimit)
        /// (must fit at least one slab).
        pub fn max_bytes(mut self, n: u64) -> Self {
            self.knobs.max_bytes = Some(n);
            self
        }

        /// Bytes mapped from the OS at a time (a power of two ≥ 64 KiB, or 0
        /// for one slab region per mapping; default 1 MiB; rounded up to
        /// one slab region).
        pub fn chunk_bytes(mut self, n: usize) -> Self {
            self.knobs.chunk_bytes = n;
            self
        }

        /// Idle free regions are released to the OS after `period`
        /// (`None`: only on `trim()`; default 5 s). The release runs on slow
        /// paths (a slab taken from or returned to the page source; for a
        /// [`SlabAlloc`](crate::SlabAlloc), those of every size class and
        /// every large operation), at most twice a period, and covers all
        /// the memory of the pool or allocator: what one size class freed
        /// is released on another's slow path. Without slow paths nothing
        /// runs: a program that stopped allocating keeps its idle memory
        /// until `trim()`.
        pub fn release_after(mut self, period: Option<std::time::Duration>) -> Self {
            self.knobs.release_after = period;
            self
        }

        /// Blocks each thread keeps, per pool (per size class for a
        /// [`SlabAlloc`](crate::SlabAlloc)), of those it freed that other
        /// threads allocated, for reuse (the one freed last by its next
        /// allocation, the others before a new slab): its magazine (0 to
        /// 64; default 32; 0 turns holding off). Its own blocks go back
        /// to their slabs, but for one in a [`Pool`](crate::Pool) or
        /// [`ObjectPool`](crate::ObjectPool): the last it freed, if it kept
        /// none, waits for its next allocation (the hot slot; off with 0
        /// too, and always off in a `SlabAlloc`, whose classes would find
        /// it full or empty at random).
        /// A thread holds back at most this many freed blocks of other
        /// threads, pinning at most as many slabs, until it allocates them
        /// again or its magazine is flushed (`trim`,
        /// [`crate::flush_remote_frees`], thread exit, the pool's close,
        /// and every `release_after`).
        pub fn magazine(mut self, blocks: usize) -> Self {
            self.knobs.magazine = blocks;
            self
        }
    };
}
pub(crate) use knob_setters;
