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
//! the id, in front of the registry lookup. The first entry,
//! [`GLOBAL_ENTRY`], is kept for the process-wide allocator's core
//! ([`crate::Global`]): as nothing else writes it, its fast paths read the
//! heap there with no id to compare.
//!
//! **Exit.** Nothing here allocates from the global allocator, so that
//! homeslab can be it. The exit state — the exit hooks, plain records
//! ([`Hook`]) in an array of meta memory ([`crate::meta`]), and the
//! thread's registry id — is a thread-local of its own whose exit runs
//! through [`crate::sync::exit`] (a `pthread` key destructor, armed when the
//! thread first needs it, after the thread's `thread_local!` destructors,
//! which may still allocate and free through the thread's heaps; on Windows
//! an `FlsAlloc` callback). It runs
//! each hook, then clears the context and gives the registry id
//! ([`registry_id`]) back for reuse — the next new thread takes the
//! smallest free id and, with it, the exited thread's heaps (adoption).

use core::alloc::Layout;
use core::cell::Cell;

use crate::heap::Heap;
use crate::meta;
use crate::sync::exit::{exit_local, OnExit};
use crate::sync::{thread_local_facade, unmodelled};

/// Lifecycle of the current thread, as homeslab sees it.
const FRESH: u8 = 0;
const ACTIVE: u8 = 1;
const DEAD: u8 = 2;

/// Entries in a thread's table (the index is a `u8`: no bounds check).
pub(crate) const TABLE: usize = 256;
/// The entry shared by pools that got no index of their own.
pub(crate) const SHARED_ENTRY: u8 = (TABLE - 1) as u8;
/// The entry of the process-wide allocator's core ([`claim_global_index`]):
/// no other pool writes it, so [`global_heap`] reads it without an id.
pub(crate) const GLOBAL_ENTRY: u8 = 0;

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
    /// True once the exit is armed.
    armed: Cell<bool>,
}

impl Ctx {
    const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const E: Cell<Entry> = Cell::new(NONE);
        Self {
            serial: Cell::new(0),
            state: Cell::new(FRESH),
            table: [E; TABLE],
            armed: Cell::new(false),
        }
    }

    fn clear(&self) {
        self.serial.set(0);
        for e in &self.table {
            e.set(NONE);
        }
    }
}

thread_local_facade! {
    static CTX: Ctx = Ctx::new();
}
/// What a pool registers to run when a thread that owns one of its heaps
/// exits: a plain record (no `Box`), the pool's reference type-erased in
/// `pool` with the functions that use it. This layer never names the pool.
#[derive(Clone, Copy)]
pub(crate) struct Hook {
    /// The pool's reference (owned by the hook).
    pub(crate) pool: *const (),
    /// The heap to hand back.
    pub(crate) heap: *const Heap,
    /// False once the pool is gone (the hook is then forgotten).
    pub(crate) alive: unsafe fn(*const ()) -> bool,
    /// Hands the heap back to its pool and drops the reference.
    pub(crate) exit: unsafe fn(*const (), *const Heap),
    /// Drops the reference.
    pub(crate) forget: unsafe fn(*const ()),
    /// Sends home what the thread holds for the pool (while it lives on).
    pub(crate) flush: unsafe fn(*const (), *const Heap),
}

/// The exit state, handed to the exit as it runs ([`run_exit`]).
struct Exit {
    /// The exit hooks: `hooks_len` records at `hooks` (meta memory, room
    /// for `hooks_cap`).
    hooks: Cell<*mut Hook>,
    hooks_len: Cell<usize>,
    hooks_cap: Cell<usize>,
    /// This thread's registry id plus one (0: none).
    id: Cell<usize>,
}

impl Exit {
    const fn new() -> Self {
        Self {
            hooks: Cell::new(core::ptr::null_mut()),
            hooks_len: Cell::new(0),
            hooks_cap: Cell::new(0),
            id: Cell::new(0),
        }
    }
}

impl OnExit for Exit {
    fn on_exit(&self) {
        run_exit(self);
    }
}

exit_local! {
    static EXIT: Exit = Exit::new();
}

/// Runs `f` on this thread's exit state; `None` once it is gone.
#[inline(always)]
fn with_exit<R>(f: impl FnOnce(&Exit) -> R) -> Option<R> {
    EXIT.try_with(f)
}

/// The exit of the current thread: hooks, clear, id back.
fn run_exit(e: &Exit) {
    let _ = CTX.try_with(|c| c.state.set(DEAD));
    let hooks = e.hooks.replace(core::ptr::null_mut());
    let len = e.hooks_len.replace(0);
    let cap = e.hooks_cap.replace(0);
    for i in 0..len {
        // SAFETY: the first `len` records were written by `on_exit`, and
        // each is run (and its reference consumed) once, here.
        unsafe {
            let h = hooks.add(i).read();
            (h.exit)(h.pool, h.heap);
        }
    }
    if !hooks.is_null() {
        // SAFETY: the array came from `meta::alloc` with this layout.
        unsafe {
            meta::free(
                core::ptr::NonNull::new_unchecked(hooks.cast()),
                hooks_layout(cap),
            )
        };
    }
    let _ = CTX.try_with(Ctx::clear);
    let id = e.id.replace(0);
    if id != 0 {
        ids::release(id - 1);
    }
}

fn hooks_layout(cap: usize) -> Layout {
    // `cap` is small (a hook per pool this thread owns a heap in).
    Layout::array::<Hook>(cap).unwrap_or(Layout::new::<Hook>())
}

/// Arms the exit of this thread (once). False if it cannot be.
fn arm() -> bool {
    match CTX.try_with(|c| c.armed.get()) {
        Ok(true) => return true,
        Ok(false) => {}
        Err(_) => return false,
    }
    // Marked first: should arming itself allocate (glibc's
    // `pthread_setspecific` does for keys past the 32nd, and under the C
    // library that is a call into us), the nested call must not arm again.
    if CTX.try_with(|c| c.armed.set(true)).is_err() {
        return false;
    }
    if !EXIT.arm() {
        let _ = CTX.try_with(|c| c.armed.set(false));
        return false;
    }
    true
}

mod ids {
    //! Registry ids: dense, reused smallest first (a bitmap under a lock
    //! taken once per thread start and exit), so a new thread takes an
    //! exited thread's id and with it its heaps.

    use crate::sync::static_mutex;

    const WORDS: usize = 1024; // 65 536 live threads with a reusable id

    static_mutex! {
        pub(super) static IDS: [u64; WORDS] = [0; WORDS];
    }

    pub(super) fn claim() -> Option<usize> {
        IDS.with(|bits| {
            let w = bits.iter().position(|&w| w != u64::MAX)?;
            let b = (!bits[w]).trailing_zeros() as usize;
            bits[w] |= 1 << b;
            Some(w * 64 + b)
        })
    }

    pub(super) fn release(id: usize) {
        IDS.with(|bits| bits[id / 64] &= !(1 << (id % 64)));
    }
}

/// The `fork` handlers' access to the registry-id lock.
#[allow(dead_code)] // called by the fork handlers (`crate::global`), which loom builds leave out
pub(crate) fn ids_lock() -> &'static crate::sync::lock::RawLock {
    ids::IDS.raw()
}

/// This thread's registry id (dense, reused after the thread exits),
/// claimed now if need be; `None` in teardown or when none is free.
pub(crate) fn registry_id() -> Option<usize> {
    match with_exit(|e| e.id.get())? {
        0 => {}
        id => return Some(id - 1),
    }
    if !may_activate() || !arm() {
        return None;
    }
    let id = ids::claim()?;
    if with_exit(|e| e.id.set(id + 1)).is_none() {
        ids::release(id);
        return None;
    }
    Some(id)
}

/// This thread's registry id if it has one.
#[inline]
pub(crate) fn registry_id_if_any() -> Option<usize> {
    with_exit(|e| e.id.get()).unwrap_or(0).checked_sub(1)
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

/// The heap (set) this thread owns in the pool core at [`GLOBAL_ENTRY`],
/// if the table holds one: one load.
#[cfg_attr(loom, allow(dead_code))]
#[inline(always)]
pub(crate) fn global_heap() -> Option<*const Heap> {
    let heap = CTX
        .try_with(|c| c.table[GLOBAL_ENTRY as usize].get().heap)
        .unwrap_or(core::ptr::null());
    (!heap.is_null()).then_some(heap)
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

/// Forgets this thread's heap of the pool with `id` and entry `at` (the
/// thread gave it up).
pub(crate) fn uncache_heap(at: EntryAt, id: u64) {
    let _ = CTX.try_with(|c| {
        let e = at.of(&c.table);
        if e.get().pool == id {
            e.set(NONE);
        }
    });
}

/// True unless the thread is being torn down.
pub(crate) fn may_activate() -> bool {
    CTX.try_with(|c| c.state.get() != DEAD).unwrap_or(false)
}

/// Gives the thread a serial and arms its exit hooks. Call only after the
/// thread's registry slot exists (see the module docs). False during
/// teardown.
pub(crate) fn activate() -> bool {
    match CTX.try_with(|c| c.state.get()) {
        Ok(ACTIVE) => return true,
        Ok(FRESH) => {}
        _ => return false,
    }
    if !arm() {
        return false;
    }
    let serial = unmodelled::next_serial();
    CTX.try_with(|c| {
        c.serial.set(serial);
        c.state.set(ACTIVE);
    })
    .is_ok()
}

/// Registers `hook` to run when this thread exits. False during teardown
/// or if no memory is left for it (the hook is then forgotten).
pub(crate) fn on_exit(hook: Hook) -> bool {
    let dead = CTX.try_with(|c| c.state.get() == DEAD).unwrap_or(true);
    let ok = !dead
        && with_exit(|c| {
            let (mut p, mut len, cap) = (c.hooks.get(), c.hooks_len.get(), c.hooks_cap.get());
            if len >= 8 && len.is_power_of_two() {
                // Forget pools that are gone, so a thread that creates many
                // pools does not accumulate dead hooks.
                let mut kept = 0;
                for i in 0..len {
                    // SAFETY: the first `len` records are live; each is
                    // moved or forgotten once.
                    unsafe {
                        let h = p.add(i).read();
                        if (h.alive)(h.pool) {
                            p.add(kept).write(h);
                            kept += 1;
                        } else {
                            (h.forget)(h.pool);
                        }
                    }
                }
                len = kept;
                c.hooks_len.set(len);
            }
            if len == cap {
                let new_cap = (cap * 2).max(4);
                let Some(q) = meta::alloc(hooks_layout(new_cap), false) else {
                    return false;
                };
                let q = q.as_ptr().cast::<Hook>();
                if !p.is_null() {
                    // SAFETY: both arrays hold at least `len` records and
                    // do not overlap; the old one came from `meta::alloc`.
                    unsafe {
                        core::ptr::copy_nonoverlapping(p, q, len);
                        meta::free(
                            core::ptr::NonNull::new_unchecked(p.cast()),
                            hooks_layout(cap),
                        );
                    }
                }
                p = q;
                c.hooks.set(q);
                c.hooks_cap.set(new_cap);
            }
            // SAFETY: `len < cap` records fit.
            unsafe { p.add(len).write(hook) };
            c.hooks_len.set(len + 1);
            true
        })
        .unwrap_or(false);
    if !ok {
        // SAFETY: the hook was not stored: its reference is dropped once.
        unsafe { (hook.forget)(hook.pool) };
    }
    ok
}

/// Runs every exit hook's `flush` (not during teardown, when there are none).
pub(crate) fn flush_hooks() {
    let Some((hooks, len)) = with_exit(|e| (e.hooks.get(), e.hooks_len.get())) else {
        return;
    };
    for i in 0..len {
        // SAFETY: the first `len` records were written by `on_exit` and stay
        // until the exit; a flush registers no hook.
        unsafe {
            let h = hooks.add(i).read();
            (h.flush)(h.pool, h.heap);
        }
    }
}

/// Claims a table index for a new pool; [`SHARED_ENTRY`] when all are taken.
pub(crate) fn claim_index() -> u8 {
    unmodelled::claim_index(GLOBAL_ENTRY as usize + 1, SHARED_ENTRY as usize)
        .map_or(SHARED_ENTRY, |i| i as u8)
}

/// [`GLOBAL_ENTRY`] for the process-wide allocator's core, or, should it
/// be taken (a second such core), an index as [`claim_index`] gives.
pub(crate) fn claim_global_index() -> u8 {
    unmodelled::claim_index(GLOBAL_ENTRY as usize, GLOBAL_ENTRY as usize + 1)
        .map_or_else(claim_index, |i| i as u8)
}

/// Gives back an index from [`claim_index`] once its pool has closed (no
/// allocation through it can follow; stale entries never match a new id).
pub(crate) fn release_index(index: u8) {
    if index != SHARED_ENTRY {
        unmodelled::release_index(index as usize);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// No pool but the process-wide allocator's core takes the global
    /// entry; a second such core gets an ordinary index. (The library's
    /// unit tests build no `Global` core.)
    #[test]
    fn the_global_entry_is_kept_for_the_global_core() {
        let ordinary: Vec<u8> = (0..8).map(|_| claim_index()).collect();
        assert!(ordinary.iter().all(|&i| i != GLOBAL_ENTRY), "{ordinary:?}");
        let global = claim_global_index();
        assert_eq!(global, GLOBAL_ENTRY);
        let second = claim_global_index();
        assert_ne!(second, GLOBAL_ENTRY);
        for i in ordinary.into_iter().chain([global, second]) {
            release_index(i);
        }
    }
}
