//! Thread identity, thread-exit hooks, and the per-pool registry of thread
//! heaps.
//!
//! Every thread that touches a pool gets a *serial*: a process-unique,
//! never-reused number (0 means "none yet" or "torn down"). A heap records its
//! owner's serial; "is this my slab?" is one compare against the serial held
//! in a `const` thread-local, so it is valid even while thread-locals are
//! being destroyed.
//!
//! Heaps live in a [`thread_local::ThreadLocal`] inside the pool. That crate
//! hands an exited thread's slot (and so its heap) to the next new thread —
//! free adoption, which homeslab relies on. Exit is seen through a
//! thread-local whose destructor runs each registered [`ExitHook`]: the heap
//! is then orphaned (owner 0) and its slabs stay reachable through the
//! overflow tier. The hooks' thread-local is first touched *after* the
//! `ThreadLocal` slot exists, so its destructor runs before `thread_local`'s
//! own (destructors run in reverse order of registration) and the pool never
//! calls `ThreadLocal` on a torn-down thread.

use core::cell::{Cell, RefCell};

use crate::batch::Batches;
use crate::heap::Heap;
use crate::shared::Shared;
use crate::sync::thread_local_facade;

/// Lifecycle of the current thread, as homeslab sees it.
const FRESH: u8 = 0;
const ACTIVE: u8 = 1;
const DEAD: u8 = 2;

/// What the hot paths read from thread-local storage, in one place: the
/// thread's serial and the last pool (by id) whose heap this thread owns.
#[derive(Clone, Copy)]
pub(crate) struct Fast {
    /// This thread's serial (0 until activated and after teardown).
    pub(crate) serial: u64,
    /// Id of the pool whose heap is cached (0: none).
    pub(crate) pool: u64,
    /// That pool's heap, owned by this thread until it exits.
    pub(crate) heap: *const Heap,
    /// Id of the pool whose registry slot (owned or not) is cached for
    /// counting this thread's remote frees (0: none).
    pub(crate) slot_pool: u64,
    /// That slot's heap.
    pub(crate) slot: *const Heap,
}

const EMPTY: Fast = Fast {
    serial: 0,
    pool: 0,
    heap: core::ptr::null(),
    slot_pool: 0,
    slot: core::ptr::null(),
};

thread_local_facade! {
    static FAST: Cell<Fast> = Cell::new(EMPTY);
}
thread_local_facade! {
    static STATE: Cell<u8> = Cell::new(FRESH);
}
thread_local_facade! {
    static HOOKS: Hooks = Hooks {
        list: RefCell::new(Vec::new()),
    };
}
thread_local_facade! {
    static BATCHES: Batches = Batches::new();
}

/// The pool reference a hook keeps: weak, so an idle thread never keeps a
/// dropped pool alive. (loom's `Arc` has no `Weak`; loom threads end within
/// the model, so a strong reference is fine there.)
#[cfg(not(loom))]
pub(crate) type PoolRef = std::sync::Weak<Shared>;
#[cfg(loom)]
pub(crate) type PoolRef = crate::sync::Arc<Shared>;

/// Run at thread exit: hands `heap` back to its pool.
pub(crate) struct ExitHook {
    pub(crate) pool: PoolRef,
    pub(crate) heap: *const Heap,
}

/// The thread-local with a destructor: the exit hooks. It also publishes
/// the remote-free batches, before anything else.
struct Hooks {
    list: RefCell<Vec<ExitHook>>,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| s.set(DEAD));
        let _ = BATCHES.try_with(|b| b.flush());
        let hooks = core::mem::take(&mut *self.list.borrow_mut());
        for hook in hooks {
            #[cfg(not(loom))]
            let pool = hook.pool.upgrade();
            #[cfg(loom)]
            let pool = Some(hook.pool);
            if let Some(pool) = pool {
                pool.on_thread_exit(hook.heap);
            }
        }
        let _ = FAST.try_with(|f| f.set(EMPTY));
    }
}

/// This thread's serial; 0 if it has none (fresh or torn down).
#[inline(always)]
pub(crate) fn serial() -> u64 {
    fast().serial
}

/// The hot-path thread-local state.
#[inline(always)]
pub(crate) fn fast() -> Fast {
    FAST.try_with(|f| f.get()).unwrap_or(EMPTY)
}

/// Caches `heap` as this thread's heap of pool `pool` (the thread owns it).
pub(crate) fn cache_heap(pool: u64, heap: *const Heap) {
    let _ = FAST.try_with(|f| {
        let mut v = f.get();
        if v.serial != 0 {
            v.pool = pool;
            v.heap = heap;
            f.set(v);
        }
    });
}

/// True unless the thread is being torn down.
pub(crate) fn may_activate() -> bool {
    STATE.try_with(|s| s.get() != DEAD).unwrap_or(false)
}

/// Gives the thread a serial and arms its exit hooks. Call only after the
/// thread's `ThreadLocal` slot exists (see the module docs). False during
/// teardown.
pub(crate) fn activate() -> bool {
    match STATE.try_with(|s| s.get()) {
        Ok(ACTIVE) => return true,
        Ok(FRESH) => {}
        _ => return false,
    }
    if HOOKS.try_with(|h| h.list.borrow().len()).is_err() {
        return false;
    }
    let serial = crate::shared::next_serial();
    let _ = FAST.try_with(|f| f.set(Fast { serial, ..EMPTY }));
    STATE.try_with(|s| s.set(ACTIVE)).is_ok()
}

/// Caches `slot` as this thread's registry slot of pool `pool`.
pub(crate) fn cache_slot(pool: u64, slot: *const Heap) {
    let _ = FAST.try_with(|f| {
        let mut v = f.get();
        if v.serial != 0 {
            v.slot_pool = pool;
            v.slot = slot;
            f.set(v);
        }
    });
}

/// Runs `f` on this thread's remote-free batches. `None` unless the thread
/// is active: before, no exit hook would publish them; once it is being
/// torn down, they were published and must not take more.
#[inline(always)]
pub(crate) fn with_batches<R>(f: impl FnOnce(&Batches) -> R) -> Option<R> {
    if !matches!(STATE.try_with(|s| s.get()), Ok(ACTIVE)) {
        return None;
    }
    BATCHES.try_with(|b| f(b)).ok()
}

/// Registers `hook` to run when this thread exits. False during teardown.
pub(crate) fn on_exit(hook: ExitHook) -> bool {
    HOOKS
        .try_with(|h| {
            let mut list = h.list.borrow_mut();
            #[cfg(not(loom))]
            if list.len() >= 8 && list.len().is_power_of_two() {
                // Forget pools that are gone, so a thread that creates many
                // pools does not accumulate dead hooks.
                list.retain(|h| h.pool.strong_count() > 0);
            }
            list.push(hook);
        })
        .is_ok()
}

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
    #[inline(always)]
    pub(crate) fn get(&self, _pool: *const Shared) -> Option<&Heap> {
        self.heaps.get()
    }

    /// This thread's heap, created if needed. Not on a torn-down thread.
    pub(crate) fn get_or_create(&self, _pool: *const Shared) -> &Heap {
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
thread_local_facade! {
    static CACHE: RefCell<Vec<(usize, usize)>> = RefCell::new(Vec::new());
}

#[cfg(loom)]
impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            heaps: crate::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn get(&self, pool: *const Shared) -> Option<&Heap> {
        let key = pool as usize;
        let found = CACHE
            .try_with(|c| c.borrow().iter().find(|e| e.0 == key).map(|e| e.1))
            .ok()
            .flatten();
        // SAFETY: cached pointers are boxes owned by `self.heaps`, which never
        // drops a heap before the registry itself.
        found.map(|p| unsafe { &*(p as *const Heap) })
    }

    pub(crate) fn get_or_create(&self, pool: *const Shared) -> &Heap {
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
