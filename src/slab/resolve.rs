//! From an address to a slab and a slot: the region mask, the header check
//! (magic, shape, pool) and the slot index every free and check goes
//! through ([`Slab::resolve`]).

use super::{handed_out, Shape, Slab, MAGIC};
use crate::sync::Ordering;

/// What [`Slab::resolve`] found at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Not in a live slab of the expected shape (and pool).
    NotASlab,
    /// In such a slab, but not at the start of one of its slots.
    NotASlot(*mut Slab),
    /// Slot `idx` of the slab.
    Slot(*mut Slab, usize),
}

impl Slab {
    /// The header of the region holding `addr`.
    #[inline(always)]
    pub(crate) fn of(addr: usize, region: usize) -> *mut Slab {
        Self::of_masked(addr, !(region - 1))
    }

    /// [`Slab::of`] with the region mask (`!(region - 1)`) given.
    #[inline(always)]
    pub(crate) fn of_masked(addr: usize, mask: usize) -> *mut Slab {
        (addr & mask) as *mut Slab
    }

    /// True if this looks like a live homeslab slab header of `shape`: the
    /// caller's type's, so a slab of another type is refused, not misread.
    #[cfg(test)]
    pub(crate) fn header_ok(&self, shape: Shape) -> bool {
        self.header_ok_tag(Self::magic_tag(shape))
    }

    /// What [`Slab::header_ok`] compares with, for `shape` (precomputed by
    /// callers whose shape is not a compile-time constant).
    pub(crate) const fn magic_tag(shape: Shape) -> usize {
        MAGIC ^ shape.tag()
    }

    /// [`Slab::header_ok`] with the shape's [`Slab::magic_tag`].
    #[inline(always)]
    pub(crate) fn header_ok_tag(&self, tag: usize) -> bool {
        self.magic ^ (self as *const Slab as usize) == tag
    }

    /// This slab's stride and slot offset.
    #[inline(always)]
    pub(crate) fn shape(&self) -> Shape {
        self.shape
    }

    /// Index of the slot starting at `addr`, if there is one. `shape` is
    /// this slab's (checked by [`Slab::header_ok`]) as the pool's type gives
    /// it — a constant, so the division compiles to a shift or a constant
    /// multiply.
    #[cfg(test)]
    pub(crate) fn slot_index(&self, addr: usize, shape: Shape) -> Option<usize> {
        debug_assert_eq!(self.shape, shape);
        // `addr - header` is `addr ^ header`: the header is `addr` with its
        // low bits cleared.
        let off = (addr ^ self as *const Slab as usize).wrapping_sub(shape.slots_off as usize);
        if off >= self.span as usize {
            return None;
        }
        let stride = shape.stride as usize;
        (off % stride == 0).then_some(off / stride)
    }

    /// True if slot `idx` (below the capacity) is handed out now.
    pub(crate) fn is_allocated(&self, idx: usize) -> bool {
        handed_out(self.word(idx).load(Ordering::Relaxed))
    }

    /// From a block's address to its slab and slot: the one way every free
    /// and check takes. The region header (`addr & mask`) must be a live
    /// slab of the shape whose [`Slab::magic_tag`] is `tag` and, if `pool`
    /// is given, of that pool; then `addr` must start a slot: `index(off)`
    /// is the slot starting `off` bytes past slot 0, if one does (a mask
    /// and a shift, or a multiply, when the stride is a constant).
    ///
    /// # Safety
    /// The header of `addr`'s region is readable memory.
    #[inline(always)]
    pub(crate) unsafe fn resolve(
        addr: usize,
        mask: usize,
        tag: usize,
        pool: Option<*const ()>,
        shape: Shape,
        index: impl FnOnce(usize) -> Option<usize>,
    ) -> Resolved {
        let slab = Self::of_masked(addr, mask);
        // SAFETY: per the contract.
        let s = unsafe { &*slab };
        if !s.header_ok_tag(tag) || pool.is_some_and(|p| !core::ptr::eq(s.pool, p)) {
            return Resolved::NotASlab;
        }
        // `addr - header` is `addr ^ header`: the header is `addr` with its
        // low bits cleared.
        let off = (addr ^ slab as usize).wrapping_sub(shape.slots_off as usize);
        match (off < s.span as usize).then(|| index(off)).flatten() {
            Some(idx) => Resolved::Slot(slab, idx),
            None => Resolved::NotASlot(slab),
        }
    }
}
