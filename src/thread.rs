//! The thread context: one `const` thread-local per thread that finds the
//! thread's heap of *any* pool in O(1), the thread's serial and lifecycle,
//! and its exit hooks.
//!
//! Every thread that touches a pool gets a *serial*: a process-unique,
//! never-reused number (0 means "none yet" or "torn down"). A heap records its
//! owner's serial; "is this my slab?" is one compare against the serial held
//! here, valid even while thread-locals are being destroyed.
//!
//! **The table.** Each pool claims a small dense *index* when it is built
//! ([`claim_index`]; released when it closes, then reused) and has a
//! process-unique id (never reused). The context keeps a table index →
//! (pool id, heap this thread owns in that pool). A lookup is one load of
//! the entry and one compare of the id: no hashing, no lock, no
//! `ThreadLocal::get`. A stale entry — its pool closed and its index now
//! belongs to a newer pool — carries the old id, so it never matches and is
//! overwritten by the next slow path. Pools built while every index is
//! taken share the last entry, [`SHARED_ENTRY`]: a one-entry cache keyed by
//! the id, in front of the registry lookup.
//!
//! **Exit.** The exit hooks live in a thread-local with a destructor, touched
//! first *after* the pool's registry slot exists, so it runs before the
//! `thread_local` crate's own destructor (destructors run in reverse order
//! of registration): the pool never calls `ThreadLocal` on a torn-down
//! thread. It first runs the flush handed to [`activate`] (the remote-free
//! batches), then each hook, then clears the context.

use core::cell::{Cell, RefCell};

use crate::heap::Heap;
use crate::sync::{thread_local_facade, unmodelled};

/// Lifecycle of the current thread, as homeslab sees it.
const FRESH: u8 = 0;
const ACTIVE: u8 = 1;
const DEAD: u8 = 2;

/// Entries in a thread's table (the index is a `u8`: no bounds check).
pub(crate) const TABLE: usize = 256;
/// The entry shared by pools that got no index of their own.
pub(crate) const SHARED_ENTRY: u8 = (TABLE - 1) as u8;

/// One entry: the id of the pool whose heap it holds (0: none) and that
/// heap, owned by this thread until it exits.
#[derive(Clone, Copy)]
struct Entry {
    pool: u64,
    heap: *const Heap,
}

const NONE: Entry = Entry {
    pool: 0,
    heap: core::ptr::null(),
};

/// The per-thread context. All zeros when fresh, so it costs new threads
/// nothing, and without a destructor, so reaching it costs no state check.
struct Ctx {
    /// This thread's serial (0 until activated and after teardown).
    serial: Cell<u64>,
    state: Cell<u8>,
    /// Pool index → the heap this thread owns there.
    table: [Cell<Entry>; TABLE],
    /// The registry heap (owned or not) last used to count this thread's
    /// remote frees in a pool whose table entry does not hold it.
    slot: Cell<Entry>,
}

impl Ctx {
    const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const E: Cell<Entry> = Cell::new(NONE);
        Self {
            serial: Cell::new(0),
            state: Cell::new(FRESH),
            table: [E; TABLE],
            slot: E,
        }
    }

    fn clear(&self) {
        self.serial.set(0);
        for e in &self.table {
            e.set(NONE);
        }
        self.slot.set(NONE);
    }
}

thread_local_facade! {
    static CTX: Ctx = Ctx::new();
}
thread_local_facade! {
    static HOOKS: Hooks = Hooks {
        flush: Cell::new(None),
        list: RefCell::new(Vec::new()),
    };
}

/// What a pool registers to run when a thread that owns one of its heaps
/// exits. The pool implements it; this layer never names the pool.
pub(crate) trait ThreadExit {
    /// False once the pool is gone (the hook is then forgotten).
    fn alive(&self) -> bool;
    /// Hands the heap back to its pool.
    fn exit(self: Box<Self>);
    /// Sends home what the thread holds for its pool (while it lives on).
    fn flush(&self);
}

/// The thread-local with a destructor: the flush, then the exit hooks.
struct Hooks {
    flush: Cell<Option<fn()>>,
    list: RefCell<Vec<Box<dyn ThreadExit>>>,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        let _ = CTX.try_with(|c| c.state.set(DEAD));
        if let Some(flush) = self.flush.get() {
            flush();
        }
        let hooks = core::mem::take(&mut *self.list.borrow_mut());
        for hook in hooks {
            hook.exit();
        }
        let _ = CTX.try_with(Ctx::clear);
    }
}

/// This thread's serial; 0 if it has none (fresh or torn down).
#[inline(always)]
pub(crate) fn serial() -> u64 {
    CTX.try_with(|c| c.serial.get()).unwrap_or(0)
}

/// Where a pool's entry sits in the table: its byte offset, so that the
/// lookup is one load addressed from the thread pointer (an index would
/// need a shift first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryAt(usize);

impl EntryAt {
    /// The entry of table `index`.
    pub(crate) const fn new(index: u8) -> EntryAt {
        EntryAt(index as usize * core::mem::size_of::<Cell<Entry>>())
    }

    /// The entry in `table`.
    #[inline(always)]
    fn of(self, table: &[Cell<Entry>; TABLE]) -> &Cell<Entry> {
        // SAFETY: `new` made the offset of entry `index < TABLE`, which lies
        // inside the table and is aligned for an entry.
        unsafe {
            &*table
                .as_ptr()
                .cast::<u8>()
                .add(self.0)
                .cast::<Cell<Entry>>()
        }
    }
}

/// The heap this thread owns in the pool with `id` and entry `at`, if the
/// table holds it: one load and one compare.
#[inline(always)]
pub(crate) fn owned_heap(at: EntryAt, id: u64) -> Option<*const Heap> {
    let e = CTX.try_with(|c| at.of(&c.table).get()).unwrap_or(NONE);
    (e.pool == id).then_some(e.heap)
}

/// Records `heap` (which this thread owns) as its heap of the pool with
/// `id` and entry `at`.
pub(crate) fn cache_heap(at: EntryAt, id: u64, heap: *const Heap) {
    let _ = CTX.try_with(|c| {
        if c.serial.get() != 0 {
            at.of(&c.table).set(Entry { pool: id, heap });
        }
    });
}

/// The registry heap cached for counting remote frees in the pool with
/// `id` and entry `at`: the owned heap of the table, else the one-entry
/// slot cache.
#[inline]
pub(crate) fn counting_heap(at: EntryAt, id: u64) -> Option<*const Heap> {
    let (t, s) = CTX
        .try_with(|c| (at.of(&c.table).get(), c.slot.get()))
        .unwrap_or((NONE, NONE));
    if t.pool == id {
        Some(t.heap)
    } else {
        (s.pool == id).then_some(s.heap)
    }
}

/// Caches `slot` as this thread's registry heap of the pool with `id`, for
/// counting remote frees.
pub(crate) fn cache_slot(id: u64, slot: *const Heap) {
    let _ = CTX.try_with(|c| {
        if c.serial.get() != 0 {
            c.slot.set(Entry {
                pool: id,
                heap: slot,
            });
        }
    });
}

/// True unless the thread is being torn down.
pub(crate) fn may_activate() -> bool {
    CTX.try_with(|c| c.state.get() != DEAD).unwrap_or(false)
}

/// True while the thread is active: it has a serial and its exit hooks
/// are armed (not before, not in teardown).
#[inline(always)]
pub(crate) fn is_active() -> bool {
    matches!(CTX.try_with(|c| c.state.get()), Ok(ACTIVE))
}

/// Gives the thread a serial and arms its exit hooks, which first run
/// `flush`. Call only after the thread's registry slot exists (see the
/// module docs). False during teardown.
pub(crate) fn activate(flush: fn()) -> bool {
    match CTX.try_with(|c| c.state.get()) {
        Ok(ACTIVE) => return true,
        Ok(FRESH) => {}
        _ => return false,
    }
    if HOOKS.try_with(|h| h.flush.set(Some(flush))).is_err() {
        return false;
    }
    let serial = unmodelled::next_serial();
    CTX.try_with(|c| {
        c.serial.set(serial);
        c.state.set(ACTIVE);
    })
    .is_ok()
}

/// Registers `hook` to run when this thread exits. False during teardown.
pub(crate) fn on_exit(hook: Box<dyn ThreadExit>) -> bool {
    HOOKS
        .try_with(|h| {
            let mut list = h.list.borrow_mut();
            if list.len() >= 8 && list.len().is_power_of_two() {
                // Forget pools that are gone, so a thread that creates many
                // pools does not accumulate dead hooks.
                list.retain(|h| h.alive());
            }
            list.push(hook);
        })
        .is_ok()
}

/// Runs every exit hook's [`ThreadExit::flush`] (not during teardown).
pub(crate) fn flush_hooks() {
    let _ = HOOKS.try_with(|h| {
        if let Ok(list) = h.list.try_borrow() {
            for hook in list.iter() {
                hook.flush();
            }
        }
    });
}

/// Claims a table index for a new pool; [`SHARED_ENTRY`] when all are taken.
pub(crate) fn claim_index() -> u8 {
    unmodelled::claim_index(SHARED_ENTRY as usize).map_or(SHARED_ENTRY, |i| i as u8)
}

/// Gives back an index from [`claim_index`] once its pool has closed (no
/// allocation through it can follow; stale entries never match a new id).
pub(crate) fn release_index(index: u8) {
    if index != SHARED_ENTRY {
        unmodelled::release_index(index as usize);
    }
}
