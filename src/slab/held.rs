//! Slots held in a magazine ([`crate::magazine`]): freed by the program but
//! kept off every freelist by the thread that freed them, for reuse.
//!
//! A held slot's word is [`HELD`] (with the constructed mark if the slot
//! keeps its object): not handed out, so a second free of the block is
//! refused as a double free, and no freelist ever names it. The slot still
//! counts as in use in its slab, so the slab (and its pool) stays alive
//! while a magazine holds it. A held slot leaves the state either by
//! [`Slab::unhold`] (handed out again) or by [`Slab::link_held`] (linked into
//! a chain that goes home on the slab's remote list).

use core::ptr::NonNull;

use super::{
    geometry, handed_out, resolve::MAX_COLOR, DoubleFree, Popped, Shape, Slab, CONSTRUCTED, LINK,
};
use crate::sync::{bump, AtomicU64, Ordering};

/// The word of a held slot (plus [`CONSTRUCTED`] if it keeps its object).
/// All link bits set: past every slab's capacity, so it is no link.
pub(crate) const HELD: u16 = LINK;
const _: () = assert!(!handed_out(HELD) && !handed_out(HELD | CONSTRUCTED));

/// A magazine entry: the region's base with, in its low bits (regions are
/// aligned to at least [`geometry::MIN_REGION`]), the header's color over
/// [`COLOR_SHIFT`] and the slot index below (indices stay below 2^11:
/// `geometry`). An uncolored header is the base, so its entry is the
/// header's address with the index; a colored one is found without
/// recomputing the color. Sorting entries groups them by slab.
pub(crate) type Entry = usize;
/// The region base's bits, the rest of an entry.
const BASE: usize = !(geometry::MIN_REGION - 1);
/// Where an entry keeps the color (in steps of 128 bytes: `resolve`).
const COLOR_SHIFT: u32 = 11;
/// The color's bits of a header address: 7 to 9 (its offset from the
/// base, a multiple of 128 below 1024).
const COLOR: usize = MAX_COLOR;
const INDEX: usize = (1 << COLOR_SHIFT) - 1;
const _: () = assert!(core::mem::align_of::<Slab>() == 1 << 7);
const _: () = assert!((MAX_COLOR + (1 << 7)).is_power_of_two());
const _: () = assert!(COLOR << (COLOR_SHIFT - 7) < geometry::MIN_REGION);

impl Slab {
    /// The entry of slot `idx`; `colored` is this slab's shape's.
    #[inline(always)]
    pub(crate) fn entry(&self, idx: usize, colored: bool) -> Entry {
        debug_assert!(idx <= INDEX && idx < self.capacity as usize);
        let at = self as *const Slab as usize;
        if colored {
            at & BASE | (at & COLOR) << (COLOR_SHIFT - 7) | idx
        } else {
            at | idx
        }
    }

    /// The slab and slot an entry names, for a slab whose shape's
    /// `colored` is `colored`.
    #[inline(always)]
    pub(crate) fn of_entry(e: Entry, colored: bool) -> (*mut Slab, usize) {
        if colored {
            Self::of_any_entry(e)
        } else {
            ((e & BASE) as *mut Slab, e & INDEX)
        }
    }

    /// The slab and slot an entry names, colored or not.
    #[inline(always)]
    pub(crate) fn of_any_entry(e: Entry) -> (*mut Slab, usize) {
        let header = e & BASE | (e >> (COLOR_SHIFT - 7)) & COLOR;
        (header as *mut Slab, e & INDEX)
    }

    /// The base of the region of an entry's slab: the same for all the
    /// slab's entries, and for no other slab's.
    #[inline(always)]
    pub(crate) fn entry_base(e: Entry) -> usize {
        e & BASE
    }

    /// The slot an entry names.
    #[inline(always)]
    pub(crate) fn entry_index(e: Entry) -> usize {
        e & INDEX
    }

    /// A thread that does not own the slab: the free of slot `idx` (from
    /// [`Slab::slot_index`]) into its magazine. Replaces the handed-out
    /// word with [`HELD`], keeping its constructed mark; refuses a slot
    /// that is not handed out. A load and a store; hardened, a CAS (as
    /// [`Slab::mark_remote`] does: [`Slab::release_word`]).
    #[inline(always)]
    pub(crate) fn hold(&self, idx: usize) -> Result<(), DoubleFree> {
        self.release_word(idx, HELD)
    }

    /// The owner: the free of slot `idx` of its own slab into its heap's
    /// hot slot. As [`Slab::hold`], but a load and a store in both modes,
    /// as the owner's [`Slab::free_local`] is: an owner's free racing
    /// another thread's free of the same block is a data race in the
    /// program, which hardened mode catches only on the remote side.
    ///
    /// # Safety
    /// The caller is the owner; `idx` came from [`Slab::slot_index`].
    #[inline(always)]
    pub(crate) unsafe fn hold_own(&self, idx: usize) -> Result<(), DoubleFree> {
        let word = self.word(idx);
        let w = word.load(Ordering::Relaxed);
        if !handed_out(w) {
            return Err(DoubleFree);
        }
        word.store(HELD | (w & CONSTRUCTED), Ordering::Relaxed);
        super::asan::mark(self.slot(idx), self.shape.stride as usize, true);
        Ok(())
    }

    /// The holder: hands held slot `idx` out again, saying what it holds
    /// ([`CONSTRUCTED`] or 0, as [`Slab::pop_fresh`], whose handed-out word
    /// it stores). `shape` is the slab's.
    /// Hardened, a word that is no longer [`HELD`] (metadata corruption) is
    /// counted and the slot is left alone (`None`): it stays unusable until
    /// its region is initialised again.
    #[inline(always)]
    pub(crate) fn unhold(
        &self,
        idx: usize,
        shape: Shape,
        corruption: &AtomicU64,
    ) -> Option<Popped> {
        let got = self.try_unhold(idx, shape);
        if got.is_none() {
            bump(corruption, 1);
        }
        got
    }

    /// [`Slab::unhold`] without counting a corrupted word: `None` leaves
    /// the slot and the count to the caller's slow path.
    #[inline(always)]
    pub(crate) fn try_unhold(&self, idx: usize, shape: Shape) -> Option<Popped> {
        debug_assert_eq!(self.shape, shape.stored());
        let word = self.word(idx);
        let mut info = 0;
        if shape.caching || self.hardened {
            let w = word.load(Ordering::Relaxed);
            if self.hardened && w & !CONSTRUCTED != HELD {
                return None;
            }
            if shape.caching {
                info = w & CONSTRUCTED;
            }
        }
        word.store(shape.handed_out_word(), Ordering::Relaxed);
        let at = shape.slots_off as usize + idx * shape.stride as usize;
        let p = self.base(shape).wrapping_add(at);
        super::asan::mark(p, shape.stride as usize, false);
        // SAFETY: a slot of a live slab's region is never null.
        Some((unsafe { NonNull::new_unchecked(p) }, info))
    }

    /// The owner, holding slot `idx` of its own slab: frees it onto the
    /// local freelist, keeping its mark. True: the slab is now empty or
    /// detached (as [`Slab::free_local`]). Hardened, a word that is no
    /// longer [`HELD`] is counted and the slot given up ([`Slab::forsake`]).
    ///
    /// # Safety
    /// The caller is the owner and holds slot `idx`.
    pub(crate) unsafe fn free_held_local(&self, idx: usize, corruption: &AtomicU64) -> bool {
        let w = self.word(idx).load(Ordering::Relaxed);
        if self.hardened && w & !CONSTRUCTED != HELD {
            bump(corruption, 1);
            // SAFETY: per the contract.
            return unsafe { self.forsake(idx) };
        }
        // SAFETY: per the contract.
        unsafe { self.push_local(idx, w & CONSTRUCTED, self.hardened) }
    }

    /// The owner, holding slot `idx` of its own slab, whose word a stray
    /// write changed (the caller's check counted it): gives the slot up.
    /// Its word becomes [`HELD`] again, so no free takes it and no list
    /// names it, and the slab stops counting it as used: the slot is lost
    /// until the region is initialised again, but it pins nothing — the
    /// slab can still empty and go. True: the slab is now empty or detached
    /// (as [`Slab::free_local`]).
    ///
    /// # Safety
    /// The caller is the owner and holds slot `idx`.
    pub(crate) unsafe fn forsake(&self, idx: usize) -> bool {
        self.write_link(idx, HELD);
        // SAFETY: per the contract.
        unsafe {
            self.local(|l| {
                l.count = l.count.wrapping_sub(1);
                l.count as isize <= 0
            })
        }
    }

    /// The holder: links held slot `idx` to `next` (index + 1, 0: end) in a
    /// chain it will publish with [`Slab::push_chain`], keeping its mark.
    #[inline]
    pub(crate) fn link_held(&self, idx: usize, next: usize) {
        let mark = self.read_link(idx) & CONSTRUCTED;
        self.write_link(idx, self.encode(idx, next) | mark);
    }
}
