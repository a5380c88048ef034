//! From an address to a slab and a slot: the region mask, the header's
//! color, the header check (magic, shape, pool) and the slot index every
//! free and check goes through ([`Slab::resolve`]).
//!
//! A size class's slab header is *colored* ([`Shape::colored`]): it sits
//! [`color`]`(base)` bytes past its region's base, a function of the base
//! alone, so that the headers of many slabs (every region base is a
//! multiple of 16 KiB) do not all fall in the same few L1 sets. A typed
//! pool's header sits at the base: its slabs are of one size, few per
//! thread, and the color's arithmetic would cost every one of its paths.

use super::{geometry::MIN_REGION, handed_out, Shape, Slab, MAGIC};
use crate::sync::Ordering;

/// log2 of the number of header colors.
const COLOR_BITS: u32 = 3;
/// Distance between two colors: the header's alignment.
const COLOR_STEP: usize = core::mem::align_of::<Slab>();
/// The largest color: the room a colored region keeps in front of its
/// header.
pub(super) const MAX_COLOR: usize = ((1 << COLOR_BITS) - 1) * COLOR_STEP;
// The base is the header with its low bits cleared ([`Slab::base_of`]).
const _: () = assert!(MAX_COLOR < MIN_REGION);

/// The offset of a colored header in the region based at `base`: one of
/// 2^[`COLOR_BITS`] multiples of [`COLOR_STEP`], from the top bits of a
/// multiplicative (Fibonacci) hash of the base, which spreads neighbouring
/// regions over all colors.
#[inline(always)]
pub(super) const fn color(base: usize) -> usize {
    (base.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as usize) >> (usize::BITS - COLOR_BITS))
        * COLOR_STEP
}

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
    /// The header of the region holding `addr`, of a slab of `shape`.
    #[inline(always)]
    pub(crate) fn of(addr: usize, region: usize, shape: Shape) -> *mut Slab {
        Self::of_masked(addr, !(region - 1), shape)
    }

    /// [`Slab::of`] with the region mask (`!(region - 1)`) given.
    #[inline(always)]
    pub(crate) fn of_masked(addr: usize, mask: usize, shape: Shape) -> *mut Slab {
        Self::at_base(addr & mask, shape.colored)
    }

    /// The header of the region based at `base`.
    #[inline(always)]
    pub(crate) fn at_base(base: usize, colored: bool) -> *mut Slab {
        if colored {
            (base + color(base)) as *mut Slab
        } else {
            base as *mut Slab
        }
    }

    /// The base of the region whose header is at `header`, colored or not
    /// (a color is below [`MIN_REGION`], and every region is a multiple of
    /// it, aligned to its size).
    #[inline(always)]
    pub(crate) fn base_of(header: *const Slab) -> usize {
        header as usize & !(MIN_REGION - 1)
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
        debug_assert_eq!(self.shape, shape.stored());
        let off = addr
            .wrapping_sub(self.base(shape) as usize)
            .wrapping_sub(shape.slots_off as usize);
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
    /// is given, of that pool; then `addr` must start a slot: `index(off,
    /// span)` is the slot starting `off` bytes past slot 0, if one does
    /// among the `span` bytes of slots (a compare, a mask and a shift, or a
    /// multiply, when the stride is a constant; `off` wraps to a huge value
    /// below slot 0). Slot offsets count from the region's base, not from a
    /// colored header.
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
        index: impl FnOnce(usize, usize) -> Option<usize>,
    ) -> Resolved {
        let base = addr & mask;
        let slab = Self::at_base(base, shape.colored);
        // SAFETY: per the contract.
        let s = unsafe { &*slab };
        if !s.header_ok_tag(tag) || pool.is_some_and(|p| !core::ptr::eq(s.pool, p)) {
            return Resolved::NotASlab;
        }
        // `addr - base` is `addr ^ base`: the base is `addr` with its low
        // bits cleared.
        let off = (addr ^ base).wrapping_sub(shape.slots_off as usize);
        match index(off, s.span as usize) {
            Some(idx) => Resolved::Slot(slab, idx),
            None => Resolved::NotASlot(slab),
        }
    }
}
