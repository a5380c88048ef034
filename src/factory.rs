//! The slab factory: fresh slabs carved from the page source and stamped
//! for their pool, and empty slabs retired to it. It sits below the heaps:
//! a heap asks it for a slab and hands it the slabs it no longer needs,
//! with the pool's limits on how many to keep.
//!
//! Every slab it makes keeps its pool alive (a strong reference, taken
//! here and given back at retirement), so a block freed after the last
//! handle went still finds its pool.

use core::ptr::NonNull;

use crate::config::Config;
use crate::error::AllocError;
use crate::meta::{Arc, StrongCount};
use crate::objects::Objects;
use crate::slab::{Geometry, Mode, Shape, Slab};
use crate::source::{Budget, PageSource};
use crate::sync::{AtomicPtr, AtomicU64, Ordering};

/// Makes and retires the slabs of one pool.
pub(crate) struct SlabFactory {
    source: PageSource,
    geometry: Geometry,
    /// The shape of every slab (caching for an object pool).
    shape: Shape,
    hardened: bool,
    retained_empty: usize,
    max_thread_slabs: usize,
    seed: u64,
    made: AtomicU64,
    /// Constructed-object caching (an object pool's only): a retired slab's
    /// cached objects are dropped.
    objects: Option<Objects>,
    /// The pool each slab names in its header ([`SlabFactory::bind`]).
    pool: AtomicPtr<()>,
    /// That pool's strong count, one per slab in use.
    keep: StrongCount,
}

impl SlabFactory {
    /// A factory for `config`'s slabs, charging `budget` for what it maps;
    /// `seed` randomises the hardened link keys.
    pub(crate) fn new(
        config: &Config,
        budget: Arc<Budget>,
        objects: Option<Objects>,
        seed: u64,
    ) -> Self {
        let plain = config.geometry.shape();
        Self {
            source: PageSource::with_budget(config.geometry.region, config.chunk_bytes, budget),
            geometry: config.geometry,
            shape: if objects.is_some() {
                plain.caching()
            } else {
                plain
            },
            hardened: config.hardened,
            retained_empty: config.retained_empty,
            max_thread_slabs: config.max_thread_slabs,
            seed,
            made: AtomicU64::new(0),
            objects,
            pool: AtomicPtr::new(core::ptr::null_mut()),
            keep: StrongCount::unbound(),
        }
    }

    /// Binds the factory to the pool it lives in (at `pool`, in `arc`);
    /// called once, before the first slab.
    pub(crate) fn bind<T>(&self, pool: *const T, arc: &Arc<T>) {
        self.pool.store(pool.cast_mut().cast(), Ordering::Relaxed);
        self.keep.bind(arc);
    }

    /// The shape every slab of this pool has.
    #[inline(always)]
    pub(crate) fn shape(&self) -> Shape {
        self.shape
    }

    /// Empty slabs a heap keeps cached.
    pub(crate) fn retained_empty(&self) -> usize {
        self.retained_empty
    }

    /// Slabs a heap may own before it spills to the overflow tier.
    pub(crate) fn max_thread_slabs(&self) -> usize {
        self.max_thread_slabs
    }

    /// The page source (for trimming, statistics and tagging).
    pub(crate) fn source(&self) -> &PageSource {
        &self.source
    }

    /// Constructed-object caching (object pools only).
    pub(crate) fn objects(&self) -> Option<&Objects> {
        self.objects.as_ref()
    }

    /// A fresh slab for `heap` (an opaque pointer the slab records), which
    /// then adopts it. Counted as a strong reference to the pool.
    ///
    /// The caller keeps the pool alive across the call (it holds a handle
    /// or its thread's hook does).
    pub(crate) fn make(&self, heap: *const ()) -> Result<NonNull<Slab>, AllocError> {
        let (region, zeroed) = self.source.acquire_region()?;
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let key = splitmix(self.seed ^ region as u64 ^ n.rotate_left(32)) as usize;
        // SAFETY: the source handed us this region exclusively, aligned to its
        // size, which is `geometry.region`.
        let slab = unsafe {
            Slab::init(
                region,
                &self.geometry,
                self.pool.load(Ordering::Relaxed).cast_const(),
                heap,
                Mode {
                    key,
                    hardened: self.hardened,
                    zeroed,
                    caching: self.objects.is_some(),
                },
            )
        };
        // SAFETY: bound at the pool's construction; the caller keeps the
        // pool alive.
        unsafe { self.keep.retain() };
        Ok(slab)
    }

    /// Gives an empty slab's region back and drops its pool reference.
    ///
    /// # Safety
    /// `slab` came from [`SlabFactory::make`], is empty and on no list, and
    /// nobody uses it again. The caller keeps the pool alive across the call
    /// (a handle, a hook's upgrade, or the free path's keep-alive), so the
    /// reference given back is not the last.
    pub(crate) unsafe fn retire(&self, slab: *mut Slab) {
        if let Some(objects) = &self.objects {
            // SAFETY: the slab is empty and on no list: its free slots'
            // objects are nobody's; each is taken (and dropped) once.
            unsafe { (*slab).take_constructed(|p| objects.destroy(p)) };
        }
        // SAFETY: per the contract, nobody uses the slab.
        unsafe { Slab::destroy(NonNull::new_unchecked(slab)) };
        self.source.release(Slab::base_of(slab));
        // SAFETY: balances the `retain` in `make`; the caller holds another
        // reference.
        unsafe { self.keep.release() };
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
