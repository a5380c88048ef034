//! The untyped half of constructed-object caching: what an object pool's
//! core keeps beside its slabs (see [`crate::object_pool`] for the typed
//! layer and the protocol).

use crate::stats::Stats;
use crate::sync::{AtomicU64, Ordering};

/// What the core of an object pool keeps beside its slabs: how to destroy
/// a cached object when its slab is released, the pool's typed hooks (for
/// the layer above), and the construction counts.
pub(crate) struct Objects {
    /// Drops the object at the pointer (`drop_in_place::<T>`).
    pub(crate) drop_obj: unsafe fn(*mut u8),
    /// The typed layer's hooks (reset, keep_if), found again from a block.
    pub(crate) hooks: Box<dyn core::any::Any + Send + Sync>,
    constructed: AtomicU64,
    destroyed: AtomicU64,
    /// Gets whose construction panicked (neither constructed nor reused).
    failed: AtomicU64,
}

impl Objects {
    pub(crate) fn new(
        drop_obj: unsafe fn(*mut u8),
        hooks: Box<dyn core::any::Any + Send + Sync>,
    ) -> Self {
        Self {
            drop_obj,
            hooks,
            constructed: AtomicU64::new(0),
            destroyed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The typed hooks' address (what `hooks` boxes).
    pub(crate) fn hooks_ptr(&self) -> *const () {
        (&*self.hooks as *const (dyn core::any::Any + Send + Sync)).cast()
    }

    /// Counts an object constructed.
    pub(crate) fn constructed(&self) {
        self.constructed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a get whose construction panicked.
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an object destroyed.
    pub(crate) fn destroyed(&self) {
        self.destroyed.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the cached object at `p`, counting it. A panicking destructor
    /// is contained (the object counts as destroyed): it may run deep in
    /// the pool's slow paths.
    ///
    /// # Safety
    /// `p` holds a constructed object nobody else uses; it is dropped once.
    pub(crate) unsafe fn destroy(&self, p: *mut u8) {
        let drop_obj = self.drop_obj;
        // SAFETY: per the contract.
        let run = core::panic::AssertUnwindSafe(|| unsafe { drop_obj(p) });
        let _ = std::panic::catch_unwind(run);
        self.destroyed();
    }

    /// Fills the object counts of `s`, whose `allocs` and `live_blocks` are
    /// the pool's: reused = gets − constructed − failed, cached =
    /// constructed − destroyed − live.
    pub(crate) fn add_counts(&self, s: &mut Stats) {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.objects_constructed = l(&self.constructed);
        s.objects_destroyed = l(&self.destroyed);
        s.objects_reused = s
            .allocs
            .saturating_sub(s.objects_constructed + l(&self.failed));
        s.objects_cached = s
            .objects_constructed
            .saturating_sub(s.objects_destroyed + s.live_blocks);
    }
}
