//! The exit hook a pool core registers with a thread that takes one of
//! its heaps: a plain record of functions over a type-erased pool
//! reference (see [`crate::thread::Hook`]), built without allocating.

use crate::heap::{Heap, HeapSet};
use crate::thread;

use super::PoolCore;

/// The pool reference a hook keeps: weak, so an idle thread never keeps a
/// dropped pool alive.
pub(super) type PoolRef = crate::meta::Weak<PoolCore>;

/// The exit hook handing the heap set `set` back to `pool`: a plain record
/// (see [`thread::Hook`]), the reference type-erased.
pub(super) fn exit_hook(pool: PoolRef, set: HeapSet) -> thread::Hook {
    /// # Safety
    /// `p` is a reference from `PoolRef::into_raw`, still owned.
    unsafe fn alive(p: *const ()) -> bool {
        // SAFETY: per the contract; given back without dropping it.
        let pool = core::mem::ManuallyDrop::new(unsafe { PoolRef::from_raw(p.cast()) });
        pool.strong_count() > 0
    }
    /// # Safety
    /// As `alive`; the reference is consumed.
    unsafe fn exit(p: *const (), heap: *const Heap) {
        // SAFETY: per the contract.
        let pool = unsafe { PoolRef::from_raw(p.cast()) };
        if let Some(pool) = pool.upgrade() {
            // SAFETY: the set lives in the pool's registry (the pool is
            // held), and the hook was made with its pointer.
            pool.abandon(unsafe { HeapSet::from_raw(heap) });
        }
    }
    /// # Safety
    /// As `exit`.
    unsafe fn forget(p: *const ()) {
        // SAFETY: per the contract.
        drop(unsafe { PoolRef::from_raw(p.cast()) });
    }
    /// # Safety
    /// As `alive`.
    unsafe fn flush(p: *const (), heap: *const Heap) {
        // SAFETY: per the contract; given back without dropping it.
        let pool = core::mem::ManuallyDrop::new(unsafe { PoolRef::from_raw(p.cast()) });
        // Held across the flush: the heap lives in the pool's registry.
        if let Some(pool) = pool.upgrade() {
            // SAFETY: as above.
            pool.flush_owned(unsafe { HeapSet::from_raw(heap) });
        }
    }
    thread::Hook {
        pool: PoolRef::into_raw(pool).cast(),
        heap: set.as_ptr(),
        alive,
        exit,
        forget,
        flush,
    }
}
