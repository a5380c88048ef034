//! The per-pool registry of thread heaps: every heap a thread ever had in
//! one pool, found again by the thread that has it.
//!
//! Heaps live in a [`thread_local::ThreadLocal`] inside the pool. That crate
//! hands an exited thread's slot (and so its heap) to the next new thread —
//! free adoption, which homeslab relies on. The fast path never comes here:
//! the thread context ([`crate::thread`]) caches the heap a thread owns.

use crate::heap::Heap;

/// The per-pool set of thread heaps.
#[cfg(not(loom))]
pub(crate) struct Registry {
    heaps: thread_local::ThreadLocal<Heap>,
}

#[cfg(not(loom))]
impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            heaps: thread_local::ThreadLocal::new(),
        }
    }

    /// This thread's heap, if it has one. Only on an active thread.
    /// `_pool` keys the loom variant.
    #[inline(always)]
    pub(crate) fn get(&self, _pool: *const ()) -> Option<&Heap> {
        self.heaps.get()
    }

    /// This thread's heap, created if needed. Not on a torn-down thread.
    pub(crate) fn get_or_create(&self, _pool: *const ()) -> &Heap {
        let created = self.heaps.get_or(Heap::new);
        // On first insertion `get_or` returns a reborrow of a `&mut` it held;
        // later accesses through `get` are foreign to it, so Miri (Tree
        // Borrows) rejects any use of that first reference after another
        // thread-local access wrote the heap. Hand out the shared path's.
        self.heaps.get().unwrap_or(created)
    }

    /// Every heap ever created for this pool.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Heap)) {
        for h in self.heaps.iter() {
            f(h)
        }
    }
}

/// Under loom: heaps are boxed in a mutex-guarded list, found through a loom
/// thread-local cache (so the lookup adds no modelled operations).
#[cfg(loom)]
pub(crate) struct Registry {
    // Boxed: heaps must not move when the list grows.
    #[allow(clippy::vec_box)]
    heaps: crate::sync::Mutex<Vec<Box<Heap>>>,
}

#[cfg(loom)]
crate::sync::thread_local_facade! {
    static CACHE: core::cell::RefCell<Vec<(usize, usize)>> =
        core::cell::RefCell::new(Vec::new());
}

#[cfg(loom)]
impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            heaps: crate::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn get(&self, pool: *const ()) -> Option<&Heap> {
        let key = pool as usize;
        let found = CACHE
            .try_with(|c| c.borrow().iter().find(|e| e.0 == key).map(|e| e.1))
            .ok()
            .flatten();
        // SAFETY: cached pointers are boxes owned by `self.heaps`, which never
        // drops a heap before the registry itself.
        found.map(|p| unsafe { &*(p as *const Heap) })
    }

    pub(crate) fn get_or_create(&self, pool: *const ()) -> &Heap {
        if let Some(h) = self.get(pool) {
            return h;
        }
        let heap = Box::new(Heap::new());
        let ptr = &*heap as *const Heap;
        self.heaps.lock().push(heap);
        let _ = CACHE.try_with(|c| c.borrow_mut().push((pool as usize, ptr as usize)));
        // SAFETY: the box lives in `self.heaps` until the registry drops.
        unsafe { &*ptr }
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&Heap)) {
        let ptrs: Vec<*const Heap> = self
            .heaps
            .lock()
            .iter()
            .map(|b| &**b as *const Heap)
            .collect();
        for p in ptrs {
            // SAFETY: as in `get_or_create`.
            f(unsafe { &*p })
        }
    }
}
