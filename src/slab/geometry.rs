//! Where a slab's parts sit in its region, for one (size, align): the
//! region size, the slot stride and capacity, and the offset of slot 0 from
//! the region's base (the slot words sit right after the header; a colored
//! geometry's header sits at its color past the base, and slot 0 after the
//! largest color's words). Computed at compile time per type.

use super::{resolve::MAX_COLOR, Slab, SlotWord, ALLOCATED, CONSTRUCTED};

/// Offset of slot 0's word from the header: right after it, in every slab.
pub(super) const WORDS_OFF: usize = core::mem::size_of::<Slab>();
const _: () = assert!(WORDS_OFF % core::mem::align_of::<SlotWord>() == 0);

/// Smallest region; also the granularity of `MADV_DONTNEED`.
pub(super) const MIN_REGION: usize = 16 * 1024;
/// A region grows until it holds at least this many slots.
pub(super) const MIN_SLOTS: usize = 8;
/// Below this many slots a region also grows, up to [`GROWN_REGION`]: a
/// slab of few slots sends every few allocations to the slow path.
pub(super) const TARGET_SLOTS: usize = 64;
/// Largest region grown for [`TARGET_SLOTS`].
pub(super) const GROWN_REGION: usize = 64 * 1024;
/// Largest supported alignment.
pub(crate) const MAX_ALIGN: usize = 4096;
/// Largest supported object.
pub(crate) const MAX_SIZE: usize = 64 << 20;

// A link (slot index + 1, or that XOR a key below the same bound) must stay
// below `CONSTRUCTED`, the slot word's second bit (and so below `ALLOCATED`,
// the top one): a region only grows past `MIN_REGION` while it holds fewer
// than `TARGET_SLOTS` slots, so no slab has more than
// `max(MIN_REGION / 10, 2 * TARGET_SLOTS + 1)` slots (8-byte stride + word),
// which fit 11 bits.
const _: () = assert!(MIN_REGION / 10 < 1 << 11);
const _: () = assert!(2 * TARGET_SLOTS + 1 < 1 << 11);
const _: () = assert!((1 << 11) <= CONSTRUCTED as usize && CONSTRUCTED < ALLOCATED);
// The header keeps stride and span as `u32`: the largest region (a
// `MAX_SIZE` object, grown to `MIN_SLOTS` slots) stays below 4 GiB.
const _: () = assert!(2 * MAX_SIZE * MIN_SLOTS <= u32::MAX as usize);
// The shape's tag keeps the stride below its colored mark.
const _: () = assert!(MAX_SIZE < 1 << 30);

/// What a free needs of a slab's geometry to find a block's slot: the stride
/// and where slot 0 starts. Every slab header keeps its own; the pool passes
/// its type's, a compile-time constant, so the division by the stride is a
/// shift or a multiply by a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Shape {
    pub(crate) stride: u32,
    pub(crate) slots_off: u32,
    /// An object pool's slab: free slots may keep constructed objects (a
    /// constant of the typed layer, so the checks it needs compile away in
    /// every other pool).
    pub(crate) caching: bool,
    /// A size class's slab: the header sits at its color past the region's
    /// base (`resolve`). A constant where the shape is one (false for every
    /// typed pool, true for a `SlabAlloc`'s classes), so the color's
    /// arithmetic is absent from the paths of the other kind.
    pub(crate) colored: bool,
    /// Slabs of this shape are known to be plain, never hardened: a
    /// constant `true` on the process-wide allocator's inline paths (its
    /// core is never hardened), so the mode's branches compile away there;
    /// `false` everywhere else, where the slab's own mode decides. Not
    /// part of the slab's [`Shape::tag`] or of what it stores.
    pub(crate) plain: bool,
}

impl Shape {
    /// The fields in one word, mixed into the slab's magic so that one
    /// compare checks "a slab, of this shape" (on 32-bit targets only the
    /// stride and the two marks are kept; strides stay below 2^30).
    pub(crate) const fn tag(self) -> usize {
        (self.stride as u64
            | (self.colored as u64) << 30
            | (self.caching as u64) << 31
            | (self.slots_off as u64) << 32) as usize
    }

    /// The shape as a slab stores it (what [`Shape::plain`] knows of the
    /// caller's slabs dropped), for the checks that a caller's shape is
    /// the slab's.
    pub(crate) const fn stored(self) -> Shape {
        Shape {
            plain: false,
            ..self
        }
    }

    /// The same shape for an object pool's slab.
    pub(crate) const fn caching(self) -> Shape {
        Shape {
            caching: true,
            ..self
        }
    }

    /// The word a pop stores in a slot of this shape: [`ALLOCATED`], with
    /// [`CONSTRUCTED`] in an object pool's slab, which hands out only
    /// constructed objects (the pop's caller constructs into a slot that
    /// held none). A constant where the shape is one.
    #[inline(always)]
    pub(super) const fn handed_out_word(self) -> u16 {
        if self.caching {
            ALLOCATED | CONSTRUCTED
        } else {
            ALLOCATED
        }
    }

    /// Whether the heaps of slabs of this shape keep a hot slot (the
    /// owner's last free, for its next allocation): a typed pool's, of one
    /// block size. A size class's heap (`colored`) keeps none: where frees
    /// and allocations alternate between classes at random, each class's
    /// slot would be full or empty at random — a branch the processor
    /// mispredicts, on every free and allocation. A constant where the
    /// shape is one, so the other kind's paths have no test of the slot.
    #[inline(always)]
    pub(crate) const fn hot_slot(self) -> bool {
        !self.colored
    }
}

/// Geometry of a slab for one (size, align).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) region: usize,
    pub(crate) stride: usize,
    pub(crate) capacity: usize,
    pub(super) slots_off: usize,
    /// The header is colored ([`Shape::colored`]).
    pub(crate) colored: bool,
}

const fn round_up(x: usize, to: usize) -> usize {
    (x + to - 1) & !(to - 1)
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

impl Geometry {
    /// The geometry for objects of `size` and `align` (a power of two,
    /// at most [`MAX_ALIGN`]; `size` at most [`MAX_SIZE`]). Depends on nothing
    /// else, so a block's region size is known from its type alone. The
    /// header sits at the region's base.
    pub(crate) const fn of(size: usize, align: usize) -> Geometry {
        Self::sized(size, align, false)
    }

    /// [`Geometry::of`] with a colored header: the region keeps the room
    /// of the largest color in front of it.
    pub(crate) const fn colored(size: usize, align: usize) -> Geometry {
        Self::sized(size, align, true)
    }

    const fn sized(size: usize, align: usize, colored: bool) -> Geometry {
        let slot_align = max(align, 8);
        let stride = round_up(max(size, 8), slot_align);
        let mut region = MIN_REGION;
        loop {
            let g = Self::fit(region, stride, slot_align, colored);
            let few = g.capacity < TARGET_SLOTS && region < GROWN_REGION;
            if g.capacity >= MIN_SLOTS && !few {
                return g;
            }
            region *= 2;
        }
    }

    /// The most slots a `region` holds, header (at the largest color, if
    /// colored) and metadata included.
    const fn fit(region: usize, stride: usize, slot_align: usize, colored: bool) -> Geometry {
        let header = if colored { MAX_COLOR } else { 0 } + WORDS_OFF;
        let word = core::mem::size_of::<SlotWord>();
        let mut cap = if region > header {
            (region - header) / (stride + word)
        } else {
            0
        };
        loop {
            // Place slot 0 so that slots start on the strongest boundary
            // the stride keeps (up to a cache line): 64-byte objects then
            // never straddle two lines.
            let stride_pow2 = 1 << stride.trailing_zeros();
            let place = max(slot_align, if stride_pow2 < 64 { stride_pow2 } else { 64 });
            let slots_off = round_up(header + cap * word, place);
            if cap == 0 || slots_off + cap * stride <= region {
                return Geometry {
                    region,
                    stride,
                    capacity: cap,
                    slots_off,
                    colored,
                };
            }
            cap -= 1;
        }
    }

    /// The stride and slot offset, as slab headers keep them (both fit `u32`:
    /// asserted above for the stride, and `slots_off` < region < 4 GiB).
    pub(crate) const fn shape(&self) -> Shape {
        Shape {
            stride: self.stride as u32,
            slots_off: self.slots_off as u32,
            caching: false,
            colored: self.colored,
            plain: false,
        }
    }

    /// The same region, using at most `limit` slots (the slots stay put).
    pub(crate) fn limited(mut self, limit: usize) -> Geometry {
        if limit < self.capacity {
            self.capacity = limit.max(1);
        }
        self
    }
}
const _: () = assert!(1 << 11 <= MIN_REGION);
