//! A slab: one region of equal-size slots for a given (size, align), with its
//! header at or near the start of the region — the untyped core.
//!
//! Region layout: `[Slab header][slot words][slots…]`, or, for a size
//! class's slab ([`Shape::colored`]), `[color gap][Slab header][slot
//! words][slots…]`: the header sits a *color* past the base (0 to 896
//! bytes in steps of 128, a hash of the base: see `resolve`). The region is
//! aligned to its own size, so `ptr & !(region - 1)` finds the base of any
//! block's region in O(1), and the header from it. Slots count from the
//! base, after the largest color's header and words, so every slab of one
//! geometry has the same slot offsets.
//!
//! Each slot has one 16-bit *slot word*, outside the block: [`ALLOCATED`]
//! while the slot is handed out, otherwise its freelist link (the next free
//! slot's index + 1; 0 ends a list). One word is both the double-free check
//! and the link, so a free — local or remote — reads and writes one cache
//! line of metadata and never the block: a block freed on another thread
//! stays in its owner's cache, and a use-after-free write cannot reach a
//! link. In an object pool's slab ([`Shape::caching`]) the word also says
//! whether the slot holds a constructed object ([`CONSTRUCTED`]): a
//! handed-out slot's word is `ALLOCATED | CONSTRUCTED` until its holder
//! gives the object up ([`Slab::unconstruct`]), and every free carries the
//! mark from the word it checks into the link (or `HELD` word) it stores.
//!
//! Who touches what (see docs/ARCHITECTURE.md):
//! - immutable after [`Slab::init`]: `magic`, `pool`, geometry, `key`;
//! - owner only (plain memory in an `UnsafeCell`): [`Local`] — the local
//!   freelist head, the bump frontier, the live count, list links;
//! - any thread: `remote` (the MPSC list), `next_returned`, and the slot
//!   words (the owner stores; the holder of a handed-out slot may clear its
//!   constructed mark; a remote freer replaces the handed-out word with a
//!   link and holds the slot until it publishes it).
//!
//! Hardening: links are stored as `next ^ key ^ slot` (14 bits) with a
//! random per-slab key and checked on every pop (and on a drain that
//! walks); a link that decodes to anything but a free slot below the bump
//! frontier is counted as corruption and the rest of that list is abandoned
//! (its slots come back when the region is released and initialised again).
//! Double frees and foreign pointers are caught by the slot words, the
//! header check (magic and shape) and the slot-index check in every mode
//! (plain mode checks a remote free with a load and a store, hardened mode
//! with a CAS, which also catches two threads freeing one block at the same
//! instant).

use core::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::remote::RemoteStack;
use crate::sync::{bump, AtomicPtr, AtomicU16, AtomicU64, Ordering, UnsafeCell};

/// The top bit of a handed-out slot's word: the whole word, or with
/// [`CONSTRUCTED`] in an object pool's slab. Every other value is a free
/// slot's link (encoded when hardened) or `HELD`, always below this bit.
pub(crate) const ALLOCATED: u16 = 0x8000;
/// Set in a slot's word while the slot holds a constructed object: in an
/// [`ObjectPool`](crate::ObjectPool)'s slab, every handed-out slot until
/// its holder gives the object up ([`Slab::unconstruct`]), and a free slot
/// that keeps its object (the pool's cache). Never set by other pools.
/// Also what [`Slab::pop_fresh`] reports for a slot that kept its object.
pub(crate) const CONSTRUCTED: u16 = 0x4000;
/// The link bits of a free slot's word.
const LINK: u16 = CONSTRUCTED - 1;
/// What [`Slab::pop_fresh`] reports for a slot that still reads zero.
pub(crate) const FRESH: u16 = 1;

/// True if `word` marks a handed-out slot: its top bit is set (a sign test,
/// one instruction fewer than comparing with [`ALLOCATED`]; no link has it,
/// and it covers the constructed mark).
#[inline(always)]
const fn handed_out(word: u16) -> bool {
    (word as i16) < 0
}

const MAGIC: usize = 0x686f_6d65_736c_6162; // "homeslab"

/// One slot's word: [`ALLOCATED`] (with [`CONSTRUCTED`] in an object
/// pool), or the free slot's link (the next free slot's index + 1, 0: end;
/// encoded when hardened; with `CONSTRUCTED` if it keeps its object).
type SlotWord = AtomicU16;

mod geometry;
pub(crate) use geometry::{Geometry, Shape, MAX_ALIGN, MAX_SIZE};

/// AddressSanitizer's manual poisoning, under `--cfg homeslab_asan` (the
/// ASan run of `.ci/sanitizers.sh` sets it with `-Zsanitizer=address`):
/// regions are homeslab's own mappings, which ASan takes for ordinary
/// memory, so a free slot is poisoned (at init and at every free, local or
/// remote) and unpoisoned when it is handed out, and a use after free of a
/// pooled block is reported. The allocator never touches a slot's bytes
/// (links live in the slot words, outside the slots), and slots start on
/// 8 bytes with a stride that is a multiple of 8 (ASan's granule), so no
/// two slots share a shadow byte: a thread writes only the shadow of
/// blocks it holds. Without the cfg these are empty.
mod asan {
    #[cfg(homeslab_asan)]
    extern "C" {
        fn __asan_poison_memory_region(addr: *const u8, size: usize);
        fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
    }

    /// Marks `len` bytes at `p` (8-aligned, in a region of ours)
    /// unaddressable (`poison`) or addressable again.
    #[inline(always)]
    pub(super) fn mark(p: *const u8, len: usize, poison: bool) {
        debug_assert!(p as usize % 8 == 0 && len % 8 == 0);
        #[cfg(homeslab_asan)]
        // SAFETY: these only write ASan's shadow of memory this process
        // mapped; the caller holds the slots (see above).
        unsafe {
            if poison {
                __asan_poison_memory_region(p, len)
            } else {
                __asan_unpoison_memory_region(p, len)
            }
        }
        #[cfg(not(homeslab_asan))]
        let _ = (p, len, poison);
    }
}

/// Where a list-managed slab sits, from its owner's point of view. A byte:
/// an argument of the `extern "C"` list upkeep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ListState {
    /// The heap's current slab (or being set up).
    Current,
    /// On the heap's partial list.
    Partial,
    /// On the heap's empty cache.
    Empty,
    /// Full and off every list; the remote tag is (or was) set.
    Detached,
}

/// Taken from [`Local::count`] while the slab is detached: above any slot
/// count (slots stay below [`ALLOCATED`]), so the count is negative then,
/// and "not above zero" after a free means "now empty or detached: upkeep".
const DETACHED_BIAS: usize = 1 << 20;
const _: () = assert!((ALLOCATED as usize) < DETACHED_BIAS);

/// Owner-only state.
#[derive(Debug)]
pub(crate) struct Local {
    /// First slot of the local freelist, as index + 1 (0: none).
    free: usize,
    /// Slots below this index have been handed out at least once.
    bump: usize,
    /// Blocks handed out and not yet freed back to this slab's local list,
    /// less [`DETACHED_BIAS`] (wrapping) while `list` is `Detached`.
    count: usize,
    list: ListState,
    pub(crate) prev: *mut Slab,
    pub(crate) next: *mut Slab,
}

impl Local {
    /// Blocks handed out and not yet freed back to this slab's local list.
    pub(crate) fn used(&self) -> usize {
        self.count & (DETACHED_BIAS - 1)
    }

    pub(crate) fn list(&self) -> ListState {
        self.list
    }

    /// Moves the slab to `list` (keeping the detached bias in step).
    pub(crate) fn set_list(&mut self, list: ListState) {
        let was = self.list == ListState::Detached;
        let is = list == ListState::Detached;
        if is && !was {
            self.count = self.count.wrapping_sub(DETACHED_BIAS);
        } else if was && !is {
            self.count = self.count.wrapping_add(DETACHED_BIAS);
        }
        self.list = list;
    }
}

/// The header at the start of every slab region.
///
/// Three cache-line groups, so that remote freers (which read the first and
/// write the third) never share a line with the owner's hot `local` state.
/// The first group fits one 64-byte line: every alloc and free reads it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Slab {
    // Read-mostly: fixed while the slab is in use.
    magic: usize,
    /// The pool this slab belongs to (opaque; the pool layer casts it).
    pub(crate) pool: *const (),
    /// The owning heap (opaque here: the heap layer above names its type).
    pub(crate) heap: AtomicPtr<()>,
    // `u32` suffices: a region is at most 1 GiB (`MAX_SIZE` × `MIN_SLOTS`
    // rounded up; asserted in `geometry`).
    /// Stride and offset of slot 0.
    shape: Shape,
    /// `capacity * stride`: the bytes the slots span.
    span: u32,
    capacity: u32,
    /// Link key (0 when not hardened); below [`CONSTRUCTED`], like links.
    key: u16,
    hardened: bool,
    /// The region read zero when the slab was made: slots past the bump
    /// frontier still do.
    zeroed: bool,
    // Owner only.
    local: CachePadded<UnsafeCell<Local>>,
    // Written by remote freers.
    remote: CachePadded<RemoteStack>,
    /// Link in a heap's returned queue.
    pub(crate) next_returned: AtomicPtr<Slab>,
}

/// Remotely freed slots of one slab (indices), linked `first → … → last`,
/// held by the thread that freed them until it publishes them. Slot
/// indices stay below 2¹⁵ (see `geometry`), so the chain fits one register.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain {
    pub(crate) first: u16,
    pub(crate) last: u16,
    pub(crate) count: u16,
}

impl Chain {
    /// The chain of one slot.
    pub(crate) const fn one(idx: usize) -> Chain {
        Chain {
            first: idx as u16,
            last: idx as u16,
            count: 1,
        }
    }
}

/// A block handed out, and what its slot held ([`Slab::pop_fresh`]).
pub(crate) type Popped = (NonNull<u8>, u16);

/// A free of a slot that was not allocated: refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DoubleFree;

/// What a free found (the unit tests' summary of one).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freed {
    /// Freed; for a remote free, `claimed` says this push took the detached
    /// tag and the caller must return the slab to its heap.
    Ok { claimed: bool },
    /// The slot was not allocated: a double free, refused.
    DoubleFree,
}

/// How a new slab behaves (see the header's fields of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    /// Random bits for the link key (used when hardened).
    pub(crate) key: usize,
    pub(crate) hardened: bool,
    /// The region reads zero.
    pub(crate) zeroed: bool,
    /// An object pool's slab (its shape says so: [`Shape::caching`]).
    pub(crate) caching: bool,
}

impl Slab {
    /// Writes a fresh header into `region` (at its color, if the geometry
    /// is colored) and returns it.
    ///
    /// # Safety
    /// `region` is `geo.region` bytes, aligned to `geo.region`, writable, and
    /// used by nothing else.
    pub(crate) unsafe fn init(
        region: usize,
        geo: &Geometry,
        pool: *const (),
        heap: *const (),
        mode: Mode,
    ) -> NonNull<Slab> {
        let Mode {
            key,
            hardened,
            zeroed,
            caching,
        } = mode;
        let slab = Slab::at_base(region, geo.colored);
        let shape = if caching {
            geo.shape().caching()
        } else {
            geo.shape()
        };
        let header = Slab {
            magic: MAGIC ^ slab as usize ^ shape.tag(),
            pool,
            shape,
            capacity: geo.capacity as u32,
            span: (geo.capacity * geo.stride) as u32,
            key: if hardened { (key as u16 | 1) & LINK } else { 0 },
            hardened,
            zeroed,
            local: CachePadded::new(UnsafeCell::new(Local {
                free: 0,
                bump: 0,
                count: 0,
                list: ListState::Current,
                prev: core::ptr::null_mut(),
                next: core::ptr::null_mut(),
            })),
            heap: AtomicPtr::new(heap.cast_mut()),
            remote: CachePadded::new(RemoteStack::new()),
            next_returned: AtomicPtr::new(core::ptr::null_mut()),
        };
        // SAFETY: the caller gives us the whole region; the header (at any
        // color) and the slot words fit before `slots_off` by construction
        // of `Geometry`.
        unsafe {
            slab.write(header);
            let words = (slab as usize + geometry::WORDS_OFF) as *mut SlotWord;
            for i in 0..geo.capacity {
                words.add(i).write(SlotWord::new(0));
            }
            asan::mark(
                (region + geo.slots_off) as *const u8,
                geo.capacity * geo.stride,
                true,
            );
            NonNull::new_unchecked(slab)
        }
    }

    /// Tears down what `init` built (loom tracks its objects; elsewhere the
    /// header is plain memory and this only checks quiescence in debug).
    ///
    /// # Safety
    /// No thread uses the slab any more.
    pub(crate) unsafe fn destroy(slab: NonNull<Slab>) {
        // The region goes back to the page source (and maybe the OS): no
        // poisoned shadow of ours may outlive the slab.
        // SAFETY: per the contract the header is intact and unused.
        let s = unsafe { slab.as_ref() };
        asan::mark(s.slot(0), s.span as usize, false);
        let capacity = s.capacity as usize;
        let s = slab.as_ptr();
        let words = (s as usize + geometry::WORDS_OFF) as *mut SlotWord;
        // SAFETY: per the contract nobody uses the slab: its slot words and
        // header, which `init` wrote, end here, once.
        unsafe {
            crate::sync::forget_in_place(words, capacity);
            crate::sync::forget_in_place(s, 1);
        }
    }

    /// The start of the region (the header, or below it by its color if
    /// `shape`, this slab's, is colored), cast from the address (exposed
    /// provenance), so that it reaches the slots, not just the header
    /// `&self` covers.
    #[inline(always)]
    fn base(&self, shape: Shape) -> *mut u8 {
        if shape.colored {
            Self::base_of(self) as *mut u8
        } else {
            self.header()
        }
    }

    /// The header's address as a pointer that reaches the slot words after
    /// it (exposed provenance, as [`Slab::base`]).
    #[inline(always)]
    fn header(&self) -> *mut u8 {
        self as *const Slab as usize as *mut u8
    }

    /// The first byte of slot `idx` (or the end of the slots, at `capacity`).
    #[inline(always)]
    fn slot(&self, idx: usize) -> *mut u8 {
        let at = self.shape.slots_off as usize + idx * self.shape.stride as usize;
        self.base(self.shape).wrapping_add(at)
    }

    /// Slot `idx`'s word, at a fixed offset from the header.
    #[inline(always)]
    fn word(&self, idx: usize) -> &SlotWord {
        // SAFETY: `idx < capacity` (callers check via `slot_index` or `bump`,
        // or hold the slot), and `init` constructed `capacity` words there.
        unsafe {
            &*self
                .header()
                .add(geometry::WORDS_OFF)
                .cast::<SlotWord>()
                .add(idx)
        }
    }

    /// Encodes the link of slot `idx` to `next` (index + 1, or 0): below
    /// [`CONSTRUCTED`] in both modes, as `next`, `key` and `idx` are.
    #[inline(always)]
    fn encode(&self, idx: usize, next: usize) -> u16 {
        self.encode_in(idx, next, self.hardened)
    }

    /// [`Slab::encode`] in the mode `hardened` ([`Slab::hardened_in`]).
    #[inline(always)]
    fn encode_in(&self, idx: usize, next: usize, hardened: bool) -> u16 {
        if hardened {
            (next ^ self.key as usize ^ idx) as u16
        } else {
            next as u16
        }
    }

    /// This slab's mode, as a caller whose slabs have `shape` sees it: a
    /// constant `false` where the shape knows its slabs are plain.
    #[inline(always)]
    fn hardened_in(&self, shape: Shape) -> bool {
        !shape.plain && self.hardened
    }

    /// Stores the encoded link `raw` of slot `idx`, which the caller holds
    /// as free (the word is not handed out again until the owner pops it).
    #[inline(always)]
    fn write_link(&self, idx: usize, raw: u16) {
        self.word(idx).store(raw, Ordering::Relaxed);
    }

    /// Reads the encoded link of slot `idx`, which the caller holds as free.
    #[inline(always)]
    fn read_link(&self, idx: usize) -> u16 {
        self.word(idx).load(Ordering::Relaxed)
    }

    /// Runs `f` on the owner-only state.
    ///
    /// # Safety
    /// The caller is the slab's owner (its heap's owner thread, or the holder
    /// of the lock that stands for the owner), and `f` does not re-enter.
    #[inline(always)]
    pub(crate) unsafe fn local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        // SAFETY: per the contract, no other thread touches `local` now.
        self.local.with_mut(|l| f(unsafe { &mut *l }))
    }

    /// Decodes the link read from free slot `idx` into the next slot's
    /// index + 1 (0: end). `None`: corrupt — when hardened, anything but a
    /// free slot below the frontier; in every mode, anything past the slots
    /// (which includes every handed-out word: those are no links).
    #[inline(always)]
    fn decode(&self, idx: usize, raw: u16, bump: usize, caching: bool) -> Option<usize> {
        let next = self.decode_bounded(idx, raw, bump, caching)?;
        if !self.hardened || next == 0 {
            return Some(next);
        }
        (!handed_out(self.read_link(next - 1))).then_some(next)
    }

    /// The pop's check of free slot `idx`, whose word is `raw`: `None` if
    /// the slot is handed out (hardened: the link that named it was
    /// corrupt); else its link as [`Slab::decode_bounded`] decodes it. One
    /// branch on the mode ([`Slab::hardened_in`]), none where the shape
    /// knows its slabs plain.
    #[inline(always)]
    fn decode_pop(&self, idx: usize, raw: u16, bump: usize, shape: Shape) -> Option<Option<usize>> {
        let link = if shape.caching {
            raw & !CONSTRUCTED
        } else {
            raw
        } as usize;
        if !self.hardened_in(shape) {
            return Some((link <= self.capacity as usize).then_some(link));
        }
        if handed_out(raw) {
            return None;
        }
        let next = link ^ self.key as usize ^ idx;
        Some((next <= bump).then_some(next))
    }

    /// [`Slab::decode`] without looking at the slot the link names: only
    /// that it lies below the frontier (hardened) or inside the slab.
    #[inline(always)]
    fn decode_bounded(&self, idx: usize, raw: u16, bump: usize, caching: bool) -> Option<usize> {
        // The constructed mark is no part of the link (a handed-out word
        // keeps its top bit); only caching slabs set it.
        let raw = if caching { raw & !CONSTRUCTED } else { raw };
        if !self.hardened {
            let next = raw as usize;
            return (next <= self.capacity as usize).then_some(next);
        }
        // A handed-out word keeps its top bit through the XOR (key and index
        // are below it) and lands past the frontier.
        let next = raw as usize ^ self.key as usize ^ idx;
        (next <= bump).then_some(next)
    }

    /// Owner: hands out a slot from the local freelist or the bump frontier.
    /// `shape` is this slab's ([`Slab::shape`], or the pool type's constant,
    /// which turns the address arithmetic into a shift and an add).
    ///
    /// # Safety
    /// The caller is the owner.
    #[cfg(test)]
    #[inline(always)]
    pub(crate) unsafe fn pop(&self, shape: Shape, corruption: &AtomicU64) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        unsafe { self.pop_fresh(shape, corruption) }.map(|(p, _)| p)
    }

    /// [`Slab::pop`], also saying what the slot held: [`CONSTRUCTED`] if it
    /// holds a cached object (its free word had the mark), [`FRESH`] if it
    /// came from the frontier of a slab whose region read zero (so it still
    /// reads zero), else 0. The slot's word becomes `shape`'s handed-out
    /// word (with `CONSTRUCTED` in an object pool, whose caller constructs
    /// into a slot that held no object, or gives it up unconstructed).
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn pop_fresh(&self, shape: Shape, corruption: &AtomicU64) -> Option<Popped> {
        debug_assert_eq!(self.shape, shape.stored());
        // SAFETY: the caller is the owner.
        unsafe {
            self.local(|l| {
                let listed = if l.free != 0 {
                    let idx = l.free - 1;
                    let raw = self.read_link(idx);
                    match self.decode_pop(idx, raw, l.bump, shape) {
                        None => {
                            // The link that named this slot was corrupt: it
                            // is handed out. Drop the rest of the list.
                            bump(corruption, 1);
                            l.free = 0;
                            None
                        }
                        Some(next) => {
                            // A (corrupt) link naming this very slot reads
                            // as handed out when the next pop reaches it.
                            self.word(idx)
                                .store(shape.handed_out_word(), Ordering::Relaxed);
                            l.free = next.unwrap_or_else(|| {
                                bump(corruption, 1);
                                0
                            });
                            Some((idx, raw & CONSTRUCTED))
                        }
                    }
                } else {
                    None
                };
                let (idx, info) = match listed {
                    Some(got) => got,
                    None if l.bump < self.capacity as usize => {
                        if shape.caching && self.remote.pending() {
                            // Drain first: those slots keep their objects.
                            return None;
                        }
                        l.bump += 1;
                        self.word(l.bump - 1)
                            .store(shape.handed_out_word(), Ordering::Relaxed);
                        (l.bump - 1, if self.zeroed { FRESH } else { 0 })
                    }
                    None => return None,
                };
                l.count = l.count.wrapping_add(1);
                let slots = self.base(shape).add(shape.slots_off as usize);
                let p = NonNull::new_unchecked(slots.add(idx * shape.stride as usize));
                asan::mark(p.as_ptr(), shape.stride as usize, false);
                Some((p, info))
            })
        }
    }

    /// Owner: blocks handed out and not yet freed locally or drained.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn used(&self) -> usize {
        // SAFETY: the caller is the owner.
        unsafe { self.local(|l| l.used()) }
    }
}

mod free;
mod held;
mod resolve;
pub(crate) use held::Entry;
pub(crate) use resolve::Resolved;
mod reclaim;
#[cfg(test)]
mod tests;
