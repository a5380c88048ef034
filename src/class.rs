//! The size classes of [`SlabAlloc`](crate::SlabAlloc): which class serves a
//! (size, align), each class's slab geometry, and the division that finds a
//! block's slot when the stride is not a compile-time constant.
//!
//! The table: 16-byte steps up to 128 bytes (8 classes), then four classes
//! per doubling up to 256 KiB (44 classes): 160, 192, 224, 256, 320, …,
//! 32 768, 40 960, …, 229 376, 262 144. A request wastes at most 15 bytes
//! below 128 and at most 25% above (12.5% on average over a doubling, as
//! mimalloc and jemalloc). A class's blocks are aligned to the largest
//! power of two dividing its size, up to 4096 (so 64 → 64, 192 → 64, 4096
//! and 40 960 → 4096): a request with a stronger alignment takes the first
//! class above it that has it. Anything larger than 256 KiB, or aligned
//! above 4096, is a large block.
//!
//! Regions ([`Geometry::of`]) run from 16 KiB to 4 MiB. From 8 KiB up,
//! a class's region is the smallest power of two that holds eight blocks
//! after the header: the classes from 2^k to below 2^(k+1) bytes have
//! regions of 16 × 2^k bytes, holding 9 to 15 blocks (fifteen for 2^k
//! itself, whose header leaves room for only seven in half that): 512 KiB
//! for 32–56 KiB, 1 MiB for 64–112 KiB, 2 MiB for 128–224 KiB, 4 MiB for
//! 256 KiB. Header and unused tail take at most a sixteenth of a region.

use crate::slab::{Geometry, MAX_ALIGN};

/// Number of size classes.
pub(crate) const CLASSES: usize = 52;
/// The largest class size.
pub(crate) const MAX_CLASS: usize = 256 * 1024;

/// Block size of each class.
pub(crate) const SIZES: [usize; CLASSES] = sizes();

const fn sizes() -> [usize; CLASSES] {
    let mut s = [0; CLASSES];
    let mut i = 0;
    while i < 8 {
        s[i] = 16 * (i + 1);
        i += 1;
    }
    let mut base = 128;
    while i < CLASSES {
        let step = base / 4;
        let mut j = 1;
        while j <= 4 {
            s[i] = base + j * step;
            i += 1;
            j += 1;
        }
        base *= 2;
    }
    s
}

/// The alignment a class's blocks have: the largest power of two dividing
/// its size, up to [`MAX_ALIGN`].
pub(crate) const fn natural_align(size: usize) -> usize {
    let a = 1 << size.trailing_zeros();
    if a > MAX_ALIGN {
        MAX_ALIGN
    } else {
        a
    }
}

/// The slab geometry of class `c`.
pub(crate) const fn geometry(c: usize) -> Geometry {
    Geometry::colored(SIZES[c], natural_align(SIZES[c]))
}

/// Class of each size up to 1024 in 16-byte steps: `SMALL[(size + 15) / 16]`.
const SMALL: [u8; 65] = small();

const fn small() -> [u8; 65] {
    let mut t = [0u8; 65];
    let mut i = 1;
    while i < 65 {
        t[i] = class_by_size(i * 16) as u8;
        i += 1;
    }
    t
}

/// The smallest class whose size is at least `size` (1 ≤ size ≤ [`MAX_CLASS`]).
const fn class_by_size(size: usize) -> usize {
    if size <= 128 {
        return size.div_ceil(16) - 1;
    }
    // 2^k < size ≤ 2^(k+1), four classes of 2^(k-2) each in that doubling.
    let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    let step = 1 << (k - 2);
    let within = (size - (1 << k)).div_ceil(step) - 1;
    8 + 4 * (k - 7) + within
}

/// The class serving `size` bytes aligned to `align` (a power of two), or
/// `None`: a large block. `size` is not 0.
#[inline(always)]
pub(crate) fn class_of(size: usize, align: usize) -> Option<usize> {
    plain_class(size, align).or_else(|| class_of_aligned(size, align))
}

/// [`class_of`] for a request aligned to at most 16, which every class is:
/// one table load up to 1024 bytes, a few shifts above (size 0 gets the
/// smallest class); `None` for anything larger or more aligned.
#[inline(always)]
pub(crate) fn plain_class(size: usize, align: usize) -> Option<usize> {
    if align > 16 || size > MAX_CLASS {
        None
    } else if size <= 1024 {
        Some(SMALL[(size + 15) >> 4] as usize)
    } else {
        Some(class_by_size(size))
    }
}

#[inline]
fn class_of_aligned(size: usize, align: usize) -> Option<usize> {
    let need = if size > align { size } else { align };
    if need > MAX_CLASS || align > MAX_ALIGN {
        return None;
    }
    // Each doubling ends in a power of two, aligned to at least `need`'s
    // doubling: at most four steps.
    let mut c = class_by_size(need);
    while natural_align(SIZES[c]) < align {
        c += 1;
    }
    Some(c)
}

/// The slot starting at a byte offset from slot 0, for a stride and a slot
/// count fixed at run time: `off = q × stride` with `q < capacity`, or
/// nothing — the alignment check, the bound and the division in one
/// multiply, one rotate and one compare. With `stride = odd × 2^k`,
/// `(off × odd⁻¹ mod 2⁶⁴)` rotated right by `k` is `q` when `off` is such a
/// multiple; otherwise it is at least `2⁶⁴ / stride`, above any slot count:
/// an `off` with a low bit below `2^k` set keeps it (the inverse is odd),
/// and the rotation lifts it to the top; an `off = m × 2^k` with `m` not a
/// multiple of `odd` maps above `(2^(64−k) − 1) / odd` (Granlund and
/// Montgomery, "Division by invariant integers using multiplication",
/// 1994). An offset below slot 0 wraps to a huge `off` and is refused the
/// same way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotDiv {
    /// The inverse of the stride's odd part, modulo 2⁶⁴.
    inv: u64,
    /// The stride's trailing zero bits.
    shift: u32,
    capacity: u32,
}

impl SlotDiv {
    pub(crate) const fn new(stride: usize, capacity: usize) -> SlotDiv {
        let shift = stride.trailing_zeros();
        let odd = (stride >> shift) as u64;
        // Newton's iteration: `odd` is its own inverse modulo 2³ (every odd
        // square is 1 mod 8), and each step doubles the correct bits.
        let mut inv = odd;
        let mut i = 0;
        while i < 5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
            i += 1;
        }
        SlotDiv {
            inv,
            shift,
            capacity: capacity as u32,
        }
    }

    /// The slot starting `off` bytes past slot 0, if one does.
    #[inline(always)]
    pub(crate) fn slot(self, off: usize) -> Option<usize> {
        let q = (off as u64).wrapping_mul(self.inv).rotate_right(self.shift);
        (q < u64::from(self.capacity)).then_some(q as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_increasing_and_ends_at_256k() {
        assert_eq!(SIZES[0], 16);
        assert_eq!(SIZES[7], 128);
        assert_eq!(&SIZES[8..12], &[160, 192, 224, 256]);
        assert_eq!(SIZES[39], 32 * 1024);
        assert_eq!(&SIZES[40..44], &[40 << 10, 48 << 10, 56 << 10, 64 << 10]);
        assert_eq!(SIZES[CLASSES - 1], MAX_CLASS);
        assert!(SIZES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    #[cfg_attr(miri, ignore = "exhaustive: minutes under Miri")]
    fn every_size_and_align_gets_the_smallest_fitting_class() {
        let mut align = 1;
        while align <= 2 * MAX_ALIGN {
            for size in (1..=MAX_CLASS + 1)
                .step_by(7)
                .chain([1, 16, 17, 1024, 1025, 4096])
            {
                let want =
                    (0..CLASSES).find(|&c| SIZES[c] >= size && natural_align(SIZES[c]) >= align);
                let want = if align > MAX_ALIGN { None } else { want };
                assert_eq!(class_of(size, align), want, "size {size} align {align}");
            }
            align *= 2;
        }
    }

    #[test]
    fn class_geometries_hold_enough_blocks_aligned() {
        for (c, &size) in SIZES.iter().enumerate() {
            let g = geometry(c);
            assert!(g.capacity >= 8, "class {c}: {g:?}");
            assert_eq!(g.stride, size, "class {c}");
            let a = natural_align(size);
            assert_eq!(g.shape().slots_off as usize % a, 0, "class {c}");
        }
    }

    /// The regions the module's docs state, from 8 KiB up: 16 × 2^k bytes
    /// for the classes from 2^k to below 2^(k+1), at most a sixteenth of
    /// it header or unused tail.
    #[test]
    fn medium_class_regions_are_sixteen_times_their_doubling() {
        for (c, &size) in SIZES.iter().enumerate().filter(|&(_, &s)| s >= 8192) {
            let g = geometry(c);
            let doubling = 1 << (usize::BITS - 1 - size.leading_zeros());
            assert_eq!(g.region, 16 * doubling, "class {c} ({size} B)");
            assert!((9..=15).contains(&g.capacity), "class {c}: {g:?}");
            assert!(g.region - g.capacity * size <= g.region / 16, "{g:?}");
        }
        assert_eq!(geometry(CLASSES - 1).region, 4 << 20);
        assert_eq!(geometry(CLASSES - 1).capacity, 15);
    }

    /// Every offset in and around each class's slots — every byte below
    /// 64 KiB past slot 0 and a spread above, offsets below slot 0 (which
    /// wrap), the last slot and past it — gets the slot starting there, or
    /// none.
    #[test]
    #[cfg_attr(miri, ignore = "exhaustive: minutes under Miri")]
    fn slot_division_is_exact_and_bounded_for_every_class() {
        for c in 0..CLASSES {
            let g = geometry(c);
            let d = SlotDiv::new(g.stride, g.capacity);
            let end = g.capacity * g.stride;
            let near = (0..end.min(1 << 16) + g.stride).chain((0..2 * end).step_by(g.stride / 8));
            let edges = [
                end - g.stride,
                end,
                end + 1,
                g.region,
                usize::MAX,
                0usize.wrapping_sub(g.stride),
            ];
            let below = (1..4096).map(|x: usize| 0usize.wrapping_sub(x));
            for off in near.chain(edges).chain(below) {
                let want = (off < end && off % g.stride == 0).then(|| off / g.stride);
                assert_eq!(d.slot(off), want, "stride {} off {off:#x}", g.stride);
            }
        }
    }
}
