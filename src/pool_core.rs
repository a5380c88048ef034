//! The state every handle of one pool shares, and the untyped allocation
//! routing: owner heap first, the overflow tier when no heap may serve (the
//! free routing is in [`free`]).
//!
//! A core serves one or more size classes (one for a `Pool`, one per class
//! for a `SlabAlloc`): a slab factory per class, and one registry, tier,
//! thread-context entry and exit hook for them all. A thread's heaps in the
//! core form one [`HeapSet`], class `c`'s heap the set's `c`th: a thread
//! that touches any class takes the whole set, once.
//!
//! Lifetime: `PoolCore` sits in an `Arc`. Each `Pool` handle holds a strong
//! reference and so does every slab in use (the [`SlabFactory`] takes it
//! when it makes the slab), so a block keeps its pool alive
//! without touching any counter per allocation. When the last handle goes the
//! pool *closes* ([`lifecycle`]): every heap is abandoned, empty slabs are
//! released as they are found, and the `Arc` drops once the last slab is
//! gone.

use crate::config::Config;
use crate::error::AllocError;
use crate::factory::SlabFactory;
use crate::heap::{Heap, HeapSet};
use crate::meta::{mvec, Arc, MVec};
use crate::objects::Objects;
use crate::overflow::OverflowTier;
use crate::registry::Registry;
use crate::slab::{Popped, Shape};
use crate::source::Budget;
use crate::stats::Stats;
use crate::sync::{bump, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::thread::{self, EntryAt};

mod free;
mod global;
mod home;
mod hook;
mod lifecycle;

use hook::PoolRef;

/// A fresh, never-reused number (pool ids, thread serials).
fn next_serial() -> u64 {
    crate::sync::unmodelled::next_serial()
}

/// One pool's shared state. Aligned to 128 bytes so that the `Arc`'s
/// reference counts, which every remote publish increments and decrements,
/// do not share a cache line (or the adjacent-line prefetch pair) with the
/// fields every allocation reads, such as `id`.
#[repr(align(128))]
pub(crate) struct PoolCore {
    pub(crate) config: Config,
    /// Process-unique id, never reused: what a thread context's entry
    /// must match.
    id: u64,
    /// This pool's entry in every thread context (reused after close).
    at: EntryAt,
    /// Its index (given back at close).
    index: u8,
    /// Each class's slab factory (one for a pool); the heaps are handed
    /// their class's.
    factories: MVec<SlabFactory>,
    registry: Registry,
    tier: OverflowTier,
    live_heaps: AtomicUsize,
    /// When the magazines were last swept ([`PoolCore::sweep_if_due`]).
    last_sweep: AtomicU64,
    /// Held by the thread stealing this pool's magazines.
    sweeping: Mutex<()>,
    handles: AtomicUsize,
    double_frees: AtomicU64,
    foreign_frees: AtomicU64,
    /// Remote frees by threads without a heap to count them in (in
    /// teardown, past the heap limit, after the close, or in a pool
    /// without magazines).
    stray_frees: AtomicU64,
    /// `Arc::as_ptr` of the `Arc` this lives in (see [`PoolCore::set_this`]).
    this: AtomicPtr<PoolCore>,
}

impl PoolCore {
    /// A pool core of one class per `configs` entry (the first one's knobs
    /// rule the core), charging `budget` for what it maps, with the
    /// thread-context entry `index` (claimed for it).
    fn new(configs: &[Config], budget: Arc<Budget>, objects: Option<Objects>, index: u8) -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(next_serial());
        let mut factories = mvec();
        let mut objects = objects;
        for (c, config) in configs.iter().enumerate() {
            let seed = seed.wrapping_add(c as u64);
            factories.push(SlabFactory::new(
                config,
                budget.clone(),
                objects.take(),
                seed,
            ));
        }
        let classes = factories.len();
        Self {
            factories,
            id: next_serial(),
            at: EntryAt::new(index),
            index,
            registry: Registry::new(classes),
            tier: OverflowTier::new(classes),
            live_heaps: AtomicUsize::new(0),
            last_sweep: AtomicU64::new(crate::sync::unmodelled::now_nanos()),
            sweeping: Mutex::new(()),
            handles: AtomicUsize::new(1),
            double_frees: AtomicU64::new(0),
            foreign_frees: AtomicU64::new(0),
            stray_frees: AtomicU64::new(0),
            this: AtomicPtr::new(core::ptr::null_mut()),
            config: configs[0].clone(),
        }
    }

    /// A pool core of one class in its `Arc`, ready to share.
    pub(crate) fn build(
        config: Config,
        budget: Arc<Budget>,
        objects: Option<Objects>,
    ) -> Arc<PoolCore> {
        Self::build_classes(&[config], budget, objects, false)
    }

    /// A pool core of one class per `configs` entry (at least one) in its
    /// `Arc`, ready to share. `global`: the process-wide allocator's core,
    /// which takes the thread-context entry kept for it
    /// ([`thread::GLOBAL_ENTRY`]).
    pub(crate) fn build_classes(
        configs: &[Config],
        budget: Arc<Budget>,
        objects: Option<Objects>,
        global: bool,
    ) -> Arc<PoolCore> {
        let index = if global {
            thread::claim_global_index()
        } else {
            thread::claim_index()
        };
        let shared = Arc::new(PoolCore::new(configs, budget, objects, index));
        PoolCore::set_this(&shared);
        shared
    }

    /// Records the `Arc` that `shared` lives in; called once, right after
    /// `Arc::new`, before the pool is shared. `Arc::increment_strong_count`
    /// and `Arc::from_raw` need a pointer whose provenance covers the `Arc`'s
    /// counts: one made from `&self` covers only `PoolCore`, which Miri reports
    /// as undefined behaviour (Stacked Borrows).
    fn set_this(shared: &Arc<PoolCore>) {
        shared
            .this
            .store(Arc::as_ptr(shared).cast_mut(), Ordering::Relaxed);
        for f in shared.factories.iter() {
            f.bind(Arc::as_ptr(shared), shared);
            // SAFETY: the source lives in the core, which stays in its `Arc`
            // until dropped there.
            unsafe { f.source().join() };
        }
    }

    /// Class `c`'s slab factory.
    #[inline(always)]
    fn factory(&self, c: usize) -> &SlabFactory {
        &self.factories[c]
    }

    /// The number of classes.
    pub(crate) fn classes(&self) -> usize {
        self.factories.len()
    }

    /// This pool, as the pointer `Arc::as_ptr` gave (see [`PoolCore::set_this`]).
    fn as_ptr(&self) -> *const PoolCore {
        self.this.load(Ordering::Relaxed)
    }

    /// This pool's thread-context entry and id (see [`alloc_owned`]).
    pub(crate) fn context_key(&self) -> (EntryAt, u64) {
        (self.at, self.id)
    }

    /// Everything but the fast path, for class `c`.
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_slow(&self, c: usize) -> Result<Popped, AllocError> {
        if let Some(set) = thread::owned_heap(self.at, self.id) {
            // SAFETY: an entry with this pool's id holds only a set this
            // thread owns, of this live pool (see `alloc_owned`).
            let set = unsafe { HeapSet::from_raw(set) };
            if self.take_class(set, c) {
                // SAFETY: `c` is one of the set's classes.
                return self.alloc_owned_slow(unsafe { set.class(c) }, c);
            }
        }
        self.alloc_uncached(thread::serial(), c)
    }

    /// The set is not in the thread's context (first use, or the entry is
    /// shared with other pools).
    #[cold]
    fn alloc_uncached(&self, me: u64, c: usize) -> Result<Popped, AllocError> {
        if me != 0 {
            if let Some(set) = self.registry.get() {
                if self.word(set) == me && self.take_class(set, c) {
                    // SAFETY: `c` is one of this core's classes.
                    let heap = unsafe { set.class(c) };
                    thread::cache_heap(self.at, self.id, set.as_ptr());
                    // SAFETY: this thread owns `heap`.
                    if let Some(p) = unsafe { heap.alloc_fast(self.factory(c).shape()) } {
                        bump(&heap.stats.allocs, 1);
                        return Ok(p);
                    }
                    return self.alloc_owned_slow(heap, c);
                }
            }
        }
        self.alloc_cold(c)
    }

    #[cold]
    fn alloc_owned_slow(&self, heap: &Heap, c: usize) -> Result<Popped, AllocError> {
        let f = self.factory(c);
        // SAFETY: the caller checked that this thread owns `heap`.
        if let Some(p) = unsafe { heap.alloc_held(f.shape()) } {
            bump(&heap.stats.allocs, 1);
            return Ok(p);
        }
        self.sweep_if_due(heap);
        // SAFETY: as above.
        let got = match unsafe { heap.alloc_slow(f, false) }? {
            Some(p) => Some(p),
            // Other heaps' held blocks before a new slab.
            // SAFETY: as above.
            None => match unsafe { heap.alloc_magazine(f.shape()) } {
                Some(p) => Some(p),
                // SAFETY: as above.
                None => unsafe { heap.alloc_slow(f, true) }?,
            },
        };
        match got {
            Some(p) => {
                bump(&heap.stats.allocs, 1);
                Ok(p)
            }
            None => self.tier.alloc(c, f),
        }
    }

    /// First use on this thread, a set still held by a dying thread, the
    /// heap limit, or teardown.
    #[cold]
    fn alloc_cold(&self, c: usize) -> Result<Popped, AllocError> {
        if let Some(set) = self.take_heaps().filter(|&set| self.take_class(set, c)) {
            // SAFETY: `c` is one of this core's classes.
            let heap = unsafe { set.class(c) };
            // SAFETY: `take_heaps` made this thread the owner.
            if let Some(p) = unsafe { heap.alloc_fast(self.factory(c).shape()) } {
                bump(&heap.stats.allocs, 1);
                return Ok(p);
            }
            return self.alloc_owned_slow(heap, c);
        }
        self.tier.alloc(c, self.factory(c))
    }

    /// This thread's registry set, made its own and cached in its context
    /// (see [`PoolCore::acquire`]); `None` in teardown, past the heap
    /// limit, or once the pool has closed.
    #[cold]
    fn take_heaps(&self) -> Option<HeapSet> {
        if !thread::may_activate() {
            return None;
        }
        // The registry slot first, then our exit hooks: see `thread`.
        let set = self.registry.get_or_create(Heap::new)?;
        if !self.acquire(set) {
            return None;
        }
        thread::cache_heap(self.at, self.id, set.as_ptr());
        Some(set)
    }

    fn pool_ref(&self) -> PoolRef {
        // SAFETY: `self` lives in an `Arc` (pools are only built that way) and
        // the caller holds a reference, so the count is at least one.
        let arc = unsafe {
            Arc::increment_strong_count(self.as_ptr());
            Arc::from_raw(self.as_ptr())
        };
        Arc::downgrade(&arc)
    }

    /// True if `addr` lies in memory this pool mapped.
    pub(crate) fn owns_address(&self, addr: usize) -> bool {
        self.factories.iter().any(|f| f.source().contains(addr))
    }

    /// A new handle.
    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a handle; the last one closes the pool.
    pub(crate) fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }

    /// Releases every empty slab this thread's heap, the tier and the orphans
    /// hold, then unmaps what the page source no longer needs.
    pub(crate) fn trim(&self) -> u64 {
        let mine = self.my_heaps();
        let active = mine.map_or(0, |set| self.head(set).active.load(Ordering::Relaxed));
        if let Some(set) = mine {
            // SAFETY: this thread owns the set.
            unsafe { self.each_in(set, active, |h, _| home::flush_magazine(h)) };
        }
        self.sweep_magazines(mine);
        if let Some(set) = mine {
            // SAFETY: this thread owns the set.
            unsafe { self.each_in(set, active, |h, f| h.release_empty(f)) };
        }
        // What the heaps release becomes warm free regions in the sources,
        // which their trims hand to the OS and count.
        self.tier.lock().release_empty(&self.factories);
        self.factories.iter().map(|f| f.source().trim()).sum()
    }

    /// The calling thread's set, if it owns one.
    fn my_heaps(&self) -> Option<HeapSet> {
        let me = thread::serial();
        let set = self.registry.get()?;
        (me != 0 && self.word(set) == me).then_some(set)
    }

    /// The object caching state (object pools only).
    pub(crate) fn objects(&self) -> Option<&Objects> {
        self.factory(0).objects()
    }

    /// Makes the next `n` OS mappings of every class fail.
    pub(crate) fn inject_map_failures(&self, n: usize) {
        for f in self.factories.iter() {
            f.source().inject_map_failures(n);
        }
    }

    /// Sums the per-thread counters.
    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let mut frees = 0u64;
        self.registry.for_each(|h| {
            let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
            s.allocs += l(&h.stats.allocs);
            frees += l(&h.stats.local_frees) + l(&h.stats.remote_frees);
            s.remote_frees += l(&h.stats.remote_frees);
            s.corruption_events += l(&h.stats.corruption);
            s.held_blocks += (h.mag.held() + h.hot_held()) as u64;
        });
        for h in self.tier.each_heap() {
            s.corruption_events += h.stats.corruption.load(Ordering::Relaxed);
        }
        let stray = self.stray_frees.load(Ordering::Relaxed);
        s.remote_frees += stray;
        s.overflow_allocs = self.tier.allocs();
        s.allocs += s.overflow_allocs;
        s.frees = frees + stray;
        s.live_blocks = s.allocs.saturating_sub(s.frees);
        s.overflow_segments = self.tier.grown();
        s.thread_heaps = self.live_heaps.load(Ordering::Relaxed) as u64;
        s.double_frees = self.double_frees.load(Ordering::Relaxed);
        s.foreign_frees = self.foreign_frees.load(Ordering::Relaxed);
        for f in self.factories.iter() {
            let src = f.source();
            s.mapped_bytes += src.mapped_bytes();
            s.peak_mapped_bytes += src.peak_mapped_bytes();
            s.reserved_bytes += src.reserved_bytes();
            s.released_bytes += src.released_bytes();
        }
        if self.classes() == 1 {
            s.slab_bytes = self.config.geometry.region as u64;
            s.slab_capacity = self.config.geometry.capacity as u64;
        }
        if let Some(o) = self.objects() {
            o.add_counts(&mut s);
        }
        s
    }
}

/// One user handle of a pool core (what `Pool` and `ObjectPool` hold): the
/// core, and its thread-context key kept beside it, so the fast path reads
/// the key from the handle instead of loading the core first. Clones count
/// as handles; the last one dropped closes the core.
pub(crate) struct Handle {
    core: Arc<PoolCore>,
    at: EntryAt,
    id: u64,
}

impl Handle {
    pub(crate) fn new(core: Arc<PoolCore>) -> Self {
        let (at, id) = core.context_key();
        Self { core, at, id }
    }

    /// Allocates one block of `shape` (the core's, of one class): the
    /// fast path inline, the rest out of line.
    #[inline(always)]
    pub(crate) fn alloc(&self, shape: Shape) -> Result<Popped, AllocError> {
        match alloc_owned(self.at, self.id, 0, shape) {
            Some(p) => Ok(p),
            None => self.core.alloc_slow(0),
        }
    }
}

impl core::ops::Deref for Handle {
    type Target = PoolCore;

    fn deref(&self) -> &PoolCore {
        &self.core
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.core.add_handle();
        Self {
            core: self.core.clone(),
            at: self.at,
            id: self.id,
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.drop_handle();
    }
}

/// The owner fast path of class `c` (of slab `shape`) of the pool with
/// thread-context entry `at` and `id` (its [`PoolCore::context_key`]): this
/// thread's heap set from its context's table, then the class heap's hot
/// block or a pop from its current slab ([`Heap::alloc_inline`]). Also
/// says what the slot held ([`Slab::pop_fresh`]). `None`: take
/// [`PoolCore::alloc_slow`].
#[inline(always)]
pub(crate) fn alloc_owned(at: EntryAt, id: u64, c: usize, shape: Shape) -> Option<Popped> {
    let set = thread::owned_heap(at, id)?;
    // SAFETY: an entry with this pool's id holds only a set this thread
    // owns, of this (live: the caller holds a handle) pool, whose classes
    // include `c`; ownership ends only when the thread exits, which clears
    // the context.
    unsafe { alloc_in_set(set, c, shape) }
}

/// [`alloc_owned`] for the core at [`thread::GLOBAL_ENTRY`] (the
/// process-wide allocator's), whose entry needs no id check.
///
/// # Safety
/// That core has class `c`, of slab `shape`, and lives as long as the
/// process.
#[cfg_attr(loom, allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn alloc_global(c: usize, shape: Shape) -> Option<Popped> {
    let set = thread::global_heap()?;
    // SAFETY: only that core writes its entry, with a set this thread owns
    // (until it exits, which clears the context); per the contract.
    unsafe { alloc_in_set(set, c, shape) }
}

/// The owner fast path in this thread's heap set `set`.
///
/// # Safety
/// This thread owns `set`, of a live pool with class `c` of slab `shape`.
#[inline(always)]
unsafe fn alloc_in_set(set: *const Heap, c: usize, shape: Shape) -> Option<Popped> {
    // SAFETY: per the contract.
    let heap = unsafe { HeapSet::from_raw(set).class(c) };
    // SAFETY: this thread owns `heap`.
    let got = unsafe { heap.alloc_inline(shape) }?;
    bump(&heap.stats.allocs, 1);
    Some(got)
}

/// Sends home what this thread's magazines hold (all pools), and gives up
/// its heaps of pools that have closed.
pub(crate) fn flush_thread() {
    thread::flush_hooks();
}
