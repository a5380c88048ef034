//! Pool statistics, summed from per-thread counters when asked.

/// A snapshot of a pool's counters. Summed from per-thread counters only when
/// [`Pool::stats`](crate::Pool::stats) is called (nothing shared is touched per
/// operation); exact when the pool is quiescent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Blocks allocated and not yet freed.
    pub live_blocks: u64,
    /// Allocations so far (thread heaps and the overflow tier).
    pub allocs: u64,
    /// Frees so far (local and remote).
    pub frees: u64,
    /// Bytes of slab regions in use or cached warm, and of large blocks and
    /// the free large spans not yet released: memory that may be resident.
    pub mapped_bytes: u64,
    /// The highest `mapped_bytes` seen.
    pub peak_mapped_bytes: u64,
    /// Address space held from the OS (mapped chunks).
    pub reserved_bytes: u64,
    /// Bytes handed back to the OS so far (`MADV_DONTNEED` or unmapped).
    pub released_bytes: u64,
    /// Threads currently owning a heap in this pool: those that allocated
    /// from it, and those that freed other threads' blocks into it (the
    /// heap holds their magazine; not in a pool built with `magazine(0)`).
    pub thread_heaps: u64,
    /// Frees made by a thread other than the block's owner. Counted (and
    /// counted in `frees`, so no longer in `live_blocks`) at the free: the
    /// freeing thread holds the block in its magazine (see `held_blocks`),
    /// or sends it home at once.
    pub remote_frees: u64,
    /// Freed blocks that threads' magazines hold for their next
    /// allocations: counted as freed (not in `live_blocks`), still in use
    /// in their slabs. Exact when the pool is quiescent.
    pub held_blocks: u64,
    /// Corrupted freelist links detected (hardened pools).
    pub corruption_events: u64,
    /// Double frees detected and refused.
    pub double_frees: u64,
    /// Frees of pointers that are not blocks of this pool, refused.
    pub foreign_frees: u64,
    /// Allocations served by the shared overflow tier.
    pub overflow_allocs: u64,
    /// Segments the overflow tier has mapped for itself.
    pub overflow_segments: u64,
    /// Bytes of one slab region.
    pub slab_bytes: u64,
    /// Slots per slab.
    pub slab_capacity: u64,
    /// Live large blocks ([`SlabAlloc`](crate::SlabAlloc) only; counted in
    /// `live_blocks` too).
    pub large_blocks: u64,
    /// Usable bytes of the live large blocks (their spans or mappings are
    /// counted in `mapped_bytes`).
    pub large_bytes: u64,
    /// Objects an [`ObjectPool`](crate::ObjectPool) constructed (its `init`
    /// ran).
    pub objects_constructed: u64,
    /// Gets that handed out a cached, already constructed object.
    pub objects_reused: u64,
    /// Objects destroyed (dropped): refused by `keep_if`, discarded, or
    /// cached in a slab whose memory was reclaimed.
    pub objects_destroyed: u64,
    /// Constructed objects sitting in free slots (exact when quiescent:
    /// constructed − destroyed − live).
    pub objects_cached: u64,
}
