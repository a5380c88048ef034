//! A heap: the slabs one owner allocates from — a current slab, a partial
//! list, a small cache of empty slabs — plus the queue through which remote
//! freers hand back slabs that were full.
//!
//! Who owns a heap is its `owner` word ([`owner`]): a thread, or whoever
//! holds the pool's tier lock. Only the owner touches [`Core`]. Full slabs
//! are on no list: they are *detached* (tagged in their remote list) and
//! come back either when the owner frees into one or when a remote freer
//! claims the tag and pushes the slab onto `returned`.

use core::ptr;

use crossbeam_utils::CachePadded;

use crate::error::AllocError;
use crate::factory::SlabFactory;
use crate::magazine::Magazine;
use crate::remote::SlabQueue;
use crate::slab::{Entry, ListState, Popped, Shape, Slab};
use crate::sync::{bump, AtomicU64, AtomicUsize, Ordering, UnsafeCell};

/// Slow paths per tick ([`Heap::tick`]).
pub(crate) const TICK: u32 = 8;

/// The hot slot holds no block and may take one. No entry is this small:
/// an entry is a slab's (aligned, non-null) address with an index.
const HOT_EMPTY: Entry = 0;
/// The hot slot is off: the heap's holding is off (the `magazine` knob is
/// 0, or the heap is not a thread's). A free sees it as taken, an
/// allocation as empty.
const HOT_OFF: Entry = 1;

/// Counters written only by the heap's thread (load + store, no RMW) and
/// summed by `Pool::stats`.
#[derive(Debug, Default)]
pub(crate) struct HeapStats {
    pub(crate) allocs: AtomicU64,
    pub(crate) local_frees: AtomicU64,
    pub(crate) remote_frees: AtomicU64,
    pub(crate) corruption: AtomicU64,
}

/// An intrusive doubly linked list of slabs (links in each slab's `Local`).
#[derive(Debug)]
struct List {
    head: *mut Slab,
    /// The oldest slab (pushed first).
    tail: *mut Slab,
    len: usize,
}

impl List {
    const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// # Safety
    /// The caller owns `s`, which is on no list.
    unsafe fn push(&mut self, s: *mut Slab, state: ListState) {
        let old = self.head;
        // SAFETY: the caller owns `s` and every slab on this list.
        unsafe {
            (*s).local(|l| {
                l.set_list(state);
                l.prev = ptr::null_mut();
                l.next = old;
            });
            if !old.is_null() {
                (*old).local(|l| l.prev = s);
            }
        }
        if old.is_null() {
            self.tail = s;
        }
        self.head = s;
        self.len += 1;
    }

    /// # Safety
    /// The caller owns `s`, which is on this list.
    unsafe fn remove(&mut self, s: *mut Slab) {
        // SAFETY: the caller owns `s` and its neighbours.
        unsafe {
            let (prev, next) = (*s).local(|l| (l.prev, l.next));
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).local(|l| l.next = next);
            }
            if !next.is_null() {
                (*next).local(|l| l.prev = prev);
            } else {
                self.tail = prev;
            }
            (*s).local(|l| {
                l.prev = ptr::null_mut();
                l.next = ptr::null_mut();
                l.set_list(ListState::Current);
            });
        }
        self.len -= 1;
    }

    /// Takes the newest slab.
    ///
    /// # Safety
    /// The caller owns the list's slabs.
    unsafe fn pop(&mut self) -> Option<*mut Slab> {
        let s = self.head;
        if s.is_null() {
            return None;
        }
        // SAFETY: forwarded.
        unsafe { self.remove(s) };
        Some(s)
    }

    /// Takes the oldest slab: on the partial list, the one that has had the
    /// longest to gather frees since it got its first one back.
    ///
    /// # Safety
    /// The caller owns the list's slabs.
    unsafe fn pop_oldest(&mut self) -> Option<*mut Slab> {
        let s = self.tail;
        if s.is_null() {
            return None;
        }
        // SAFETY: forwarded.
        unsafe { self.remove(s) };
        Some(s)
    }
}

/// Owner-only heap state (`current` first: see [`Heap`]'s layout).
#[derive(Debug)]
#[repr(C)]
struct Core {
    current: *mut Slab,
    partial: List,
    empty: List,
    /// Slabs this heap owns (current, partial, empty, detached).
    slabs: usize,
    /// Slow paths taken (for periodic work: see [`Heap::tick`]).
    ticks: u32,
    /// `stats.allocs` when the magazine last made room ([`Heap::reusing`]).
    allocs_at_room: u64,
    /// `stats.allocs` when the magazine last held a block
    /// ([`Heap::freed_last`]).
    held_at: u64,
}

/// What an owner's free did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalFree {
    /// Freed; nothing else to do.
    Done,
    /// Freed; the slab's list placement must be updated.
    Upkeep(ListState, usize),
    /// Refused: the block was not allocated (a double free).
    DoubleFree,
}

/// One owner's heap.
///
/// `owner` is read by every free (any thread) and `returned` written by remote
/// freers; each sits on its own cache line, apart from the owner's hot `core`
/// and counters.
///
/// The owner's fields are laid out in the order its fast paths read them
/// (`repr(C)`): the hot slot, the counters and the current slab share one
/// cache line, the magazine's counts start the next.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Heap {
    /// The owner's serial or a reserved state ([`owner`]).
    pub(crate) owner: CachePadded<AtomicU64>,
    /// Slabs that were detached full and got a remote free.
    returned: CachePadded<SlabQueue<Slab>>,
    /// The block of its own the owner freed last, kept for its next
    /// allocation ([`HOT_EMPTY`], [`HOT_OFF`], or a held slot's [`Entry`]).
    /// Written by the owner only; an atomic so that `stats` may read it.
    hot: AtomicUsize,
    pub(crate) stats: HeapStats,
    core: UnsafeCell<Core>,
    /// Blocks the owner freed and keeps for reuse.
    pub(crate) mag: Magazine,
    /// The size class this heap serves: its index in its set (see
    /// [`crate::registry`]).
    class: usize,
    /// In a set's first heap: the classes its owner has taken into use
    /// (their words its own, holding on); written by the owner, read by
    /// thieves and the close.
    pub(crate) active: AtomicU64,
    /// In a set's first heap: the classes whose heaps may hold slabs, for
    /// whoever owns the set (the owner, or the tier lock's holder).
    pub(crate) used: AtomicU64,
}

/// One owner's heaps in one pool core, one per size class, contiguous:
/// class `c`'s heap is the first plus `c`. A thread takes, owns and gives
/// up a set as a whole. A raw pointer (not a reference to the first heap),
/// so that reaching the others stays within its provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeapSet(*const Heap);

impl HeapSet {
    /// The set whose first heap `first` points to.
    ///
    /// # Safety
    /// `first` points to a set of heaps that lives as long as it is used,
    /// with a provenance that covers the whole set.
    pub(crate) const unsafe fn from_raw(first: *const Heap) -> Self {
        Self(first)
    }

    /// The pointer to the first heap.
    pub(crate) const fn as_ptr(self) -> *const Heap {
        self.0
    }

    /// Class `c`'s heap.
    ///
    /// # Safety
    /// `c` is below the set's length, and the set lives for `'a`.
    #[inline(always)]
    pub(crate) unsafe fn class<'a>(self, c: usize) -> &'a Heap {
        // SAFETY: per the contract and `from_raw`'s.
        unsafe { &*self.0.add(c) }
    }
}

/// What [`Heap::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The block is in the magazine.
    Yes,
    /// The magazine is full (or off): free it the other way.
    Full,
    /// Refused: the block was not allocated (a double free).
    DoubleFree,
}

// SAFETY: `core` is touched only by the owner (the protocol in the module
// docs); everything else is atomic.
unsafe impl Sync for Heap {}
// SAFETY: as above; raw slab pointers are owned through the protocol.
unsafe impl Send for Heap {}

impl Heap {
    /// Class `class`'s heap of a set nobody owns yet (an orphan, for the
    /// first thread to adopt).
    pub(crate) fn new(class: usize) -> Self {
        Self::with_owner(owner::ORPHAN, class)
    }

    pub(crate) fn with_owner(owner: u64, class: usize) -> Self {
        Self {
            class,
            active: AtomicU64::new(0),
            used: AtomicU64::new(0),
            owner: CachePadded::new(AtomicU64::new(owner)),
            returned: CachePadded::new(SlabQueue::new()),
            core: UnsafeCell::new(Core {
                current: ptr::null_mut(),
                partial: List::new(),
                empty: List::new(),
                slabs: 0,
                ticks: 0,
                allocs_at_room: 0,
                held_at: 0,
            }),
            hot: AtomicUsize::new(HOT_OFF),
            stats: HeapStats::default(),
            mag: Magazine::new(),
        }
    }

    /// The size class this heap serves.
    #[inline(always)]
    pub(crate) fn class_index(&self) -> usize {
        self.class
    }

    /// # Safety
    /// The caller is the owner and `f` does not re-enter `core`.
    #[inline(always)]
    unsafe fn core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        // SAFETY: per the contract, only the owner is here.
        self.core.with_mut(|c| f(unsafe { &mut *c }))
    }

    /// The fast path: pop from the current slab. `shape` is the pool's (every
    /// slab of a heap has it). Also says what the slot held
    /// ([`Slab::pop_fresh`]).
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn alloc_fast(&self, shape: Shape) -> Option<Popped> {
        // SAFETY: the caller is the owner; `current` is a slab this heap owns.
        unsafe {
            let cur = self.core(|c| c.current);
            if cur.is_null() {
                return None;
            }
            (*cur).pop_fresh(shape, &self.stats.corruption)
        }
    }

    /// The slow path: drain, take returned and partial slabs, reuse a cached
    /// empty slab, and — if `grow` and under the slab cap — map a new one.
    /// `Ok(None)`: nothing without growing past what is allowed.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn alloc_slow(
        &self,
        f: &SlabFactory,
        grow: bool,
    ) -> Result<Option<Popped>, AllocError> {
        // SAFETY: the caller is the owner of this heap and so of its slabs.
        unsafe {
            self.take_returned();
            loop {
                let cur = self.core(|c| c.current);
                if !cur.is_null() {
                    let s = &*cur;
                    // Pop before draining: a drain into an empty freelist
                    // splices the remote chain without walking it.
                    if let Some(p) = s.pop_fresh(s.shape(), &self.stats.corruption) {
                        return Ok(Some(p));
                    }
                    if s.drain(&self.stats.corruption) != 0 {
                        continue;
                    }
                    // Dry: detach it unless a remote free just arrived.
                    if !s.try_detach() {
                        continue;
                    }
                    s.local(|l| l.set_list(ListState::Detached));
                    self.core(|c| c.current = ptr::null_mut());
                }
                let next = self.core(|c| c.partial.pop_oldest().or_else(|| c.empty.pop()));
                if let Some(s) = next {
                    self.core(|c| c.current = s);
                    continue;
                }
                let slabs = self.core(|c| c.slabs);
                if !grow || slabs >= f.max_thread_slabs() {
                    return Ok(None);
                }
                let s = f.make((self as *const Heap).cast())?;
                self.adopt(s.as_ptr());
            }
        }
    }

    /// Moves slabs handed back by remote freers onto the partial list.
    ///
    /// # Safety
    /// The caller is the owner.
    unsafe fn take_returned(&self) {
        let mut s = self.returned.take_all();
        while !s.is_null() {
            // SAFETY: slabs in our returned queue are ours and detached.
            unsafe {
                let next = (*s).next_returned.load(Ordering::Relaxed);
                self.core(|c| c.partial.push(s, ListState::Partial));
                s = next;
            }
        }
    }

    /// The heap `slab` belongs to (its header keeps it opaque).
    #[inline(always)]
    pub(crate) fn of_slab(slab: &Slab, order: Ordering) -> *const Heap {
        slab.heap.load(order).cast_const().cast()
    }

    /// Called by the remote freer that claimed `slab`'s detached tag.
    pub(crate) fn push_returned(&self, slab: *mut Slab) {
        // SAFETY: `slab` is a live slab; its link field is ours to write until
        // the push publishes it.
        self.returned
            .push(slab, |s| unsafe { &(*s).next_returned as *const _ });
    }

    /// A free by the owner of a block of one of its slabs: into the hot
    /// slot if the heap keeps one ([`Shape::hot_slot`]) and it is empty
    /// (`heap/held.rs`), else onto the slab's freelist
    /// ([`Slab::free_local`]). `Upkeep` means the slab was detached (full)
    /// or is now empty: call [`Heap::after_free`].
    ///
    /// # Safety
    /// The caller is the owner, `slab` belongs to this heap and `idx` came
    /// from its [`Slab::slot_index`]; `shape` is the slab's.
    #[inline(always)]
    pub(crate) unsafe fn free_local(&self, slab: *mut Slab, idx: usize, shape: Shape) -> LocalFree {
        // SAFETY: the caller is the owner; `idx` is a slot of `slab`.
        unsafe {
            let s = &*slab;
            if shape.hot_slot() && self.hot.load(Ordering::Relaxed) == HOT_EMPTY {
                if s.hold_own(idx).is_err() {
                    return LocalFree::DoubleFree;
                }
                self.hot
                    .store(s.entry(idx, shape.colored), Ordering::Relaxed);
                bump(&self.stats.local_frees, 1);
                return LocalFree::Done;
            }
            let Ok(upkeep) = s.free_local(idx, shape) else {
                return LocalFree::DoubleFree;
            };
            bump(&self.stats.local_frees, 1);
            if !upkeep {
                return LocalFree::Done;
            }
            let (list, used) = s.local(|l| (l.list(), l.used()));
            LocalFree::Upkeep(list, used)
        }
    }

    /// List upkeep after a free left `slab` non-full or empty.
    ///
    /// # Safety
    /// The caller is the owner.
    #[cold]
    pub(crate) unsafe fn after_free(
        &self,
        f: &SlabFactory,
        slab: *mut Slab,
        list: ListState,
        used: usize,
    ) {
        // SAFETY: the caller is the owner of this heap and its slabs.
        unsafe {
            let s = &*slab;
            let mut list = list;
            if list == ListState::Detached {
                if !s.try_reattach() {
                    // A remote freer claimed it; it comes back via `returned`.
                    return;
                }
                self.core(|c| c.partial.push(slab, ListState::Partial));
                list = ListState::Partial;
            }
            if used != 0 {
                return;
            }
            if list != ListState::Partial {
                return;
            }
            self.core(|c| c.partial.remove(slab));
            let cache = self.core(|c| c.empty.len);
            if cache < f.retained_empty() {
                self.core(|c| c.empty.push(slab, ListState::Empty));
            } else {
                self.core(|c| c.slabs -= 1);
                f.retire(slab);
            }
        }
    }

    /// Drains every slab in hand, takes back returned slabs, and releases
    /// every empty one. Used when a heap is abandoned, trimmed, or collected
    /// after its pool closed.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn release_empty(&self, f: &SlabFactory) {
        // SAFETY: forwarded.
        unsafe { self.release_empty_but(f, 0) }
    }

    /// [`Heap::release_empty`], keeping up to `keep` empty slabs cached.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn release_empty_but(&self, f: &SlabFactory, keep: usize) {
        // SAFETY: the caller is the owner of this heap and its slabs.
        unsafe {
            self.flush_hot(f);
            self.take_returned();
            let mut in_hand: crate::meta::MVec<*mut Slab> = crate::meta::mvec();
            self.core(|c| {
                while let Some(s) = c.partial.pop() {
                    in_hand.push(s);
                }
                while let Some(s) = c.empty.pop() {
                    in_hand.push(s);
                }
                if !c.current.is_null() {
                    in_hand.push(c.current);
                    c.current = ptr::null_mut();
                }
            });
            for s in in_hand {
                (*s).drain(&self.stats.corruption);
                if (*s).used() == 0 && self.core(|c| c.empty.len) < keep {
                    self.core(|c| c.empty.push(s, ListState::Empty));
                } else if (*s).used() == 0 {
                    self.core(|c| c.slabs -= 1);
                    f.retire(s);
                } else if self.core(|c| c.current.is_null()) {
                    self.core(|c| c.current = s);
                } else {
                    self.core(|c| c.partial.push(s, ListState::Partial));
                }
            }
        }
    }

    /// Takes a fresh slab into this heap.
    ///
    /// # Safety
    /// The caller is the owner; `slab` was initialised for this heap.
    pub(crate) unsafe fn adopt(&self, slab: *mut Slab) {
        // SAFETY: the caller is the owner.
        unsafe {
            self.core(|c| {
                c.slabs += 1;
                if c.current.is_null() {
                    c.current = slab;
                } else {
                    c.partial.push(slab, ListState::Partial);
                }
            })
        }
    }

    /// Counts a slow path; true on every [`TICK`]th (periodic work reads
    /// the clock that rarely).
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn tick(&self) -> bool {
        // SAFETY: forwarded.
        unsafe {
            self.core(|c| {
                c.ticks = c.ticks.wrapping_add(1);
                c.ticks % TICK == 0
            })
        }
    }

    /// True if the owner allocated since the last call: its magazine
    /// serves reuse, so a full one keeps its newer half. A thread that only
    /// frees (a consumer) sends all of it home at once instead.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn reusing(&self) -> bool {
        let now = self.stats.allocs.load(Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { self.core(|c| core::mem::replace(&mut c.allocs_at_room, now) != now) }
    }

    /// Slabs this heap owns.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn slab_count(&self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.core(|c| c.slabs) }
    }
}

mod held;
pub(crate) mod owner;
