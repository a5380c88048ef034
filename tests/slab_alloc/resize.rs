//! `grow`, `shrink` and `grow_zeroed`: in place within a class, moving
//! across classes and between classes and large blocks (`mremap`, and the
//! copy path of over-aligned mappings), contents kept and new tails zeroed.

use homeslab::SlabAlloc;

use crate::blocks::{
    assert_quiet, assert_stamped, assert_zero, is_large, layout, stamp, Block, KIB, MAX_CLASS,
    MAX_CLASS_ALIGN, MIB,
};
use crate::common::mix;

/// Within a class, `grow` and `shrink` return the same pointer and keep
/// the contents; `grow_zeroed` zeroes everything past the old size.
#[test]
fn resize_within_a_class_stays_in_place() {
    let a = SlabAlloc::new();
    let mut prev = 0;
    for (c, &cs) in SlabAlloc::class_sizes().iter().enumerate() {
        let lo = prev + 1;
        prev = cs;
        let seed = mix(c as u64);
        let mut b = Block::stamped(&a, layout(lo, 1), seed);
        let at = b.addr();
        b.resize(&a, lo, layout(cs, 1), false).unwrap();
        assert_eq!((b.addr(), b.len), (at, cs), "grow {lo} -> {cs}");
        assert_stamped(&b.bytes()[..lo], seed, "grown in place");
        stamp(b.bytes_mut(), seed);
        b.resize(&a, cs, layout(lo, 1), false).unwrap();
        assert_eq!((b.addr(), b.len), (at, cs), "shrink {cs} -> {lo}");
        assert_stamped(&b.bytes()[..lo], seed, "shrunk in place");
        // grow_zeroed: the whole block was stamped, so its tail is dirty.
        stamp(b.bytes_mut(), !seed);
        let mid = (lo + cs) / 2;
        b.resize(&a, lo, layout(mid.max(lo), 1), true).unwrap();
        assert_eq!(b.addr(), at, "grow_zeroed {lo} -> {mid}");
        assert_stamped(&b.bytes()[..lo], !seed, "grow_zeroed kept");
        assert_zero(&b.bytes()[lo..], "grow_zeroed tail within the class");
        // A stronger alignment the class already has: still in place.
        let natural = (1usize << cs.trailing_zeros()).min(MAX_CLASS_ALIGN);
        b.resize(&a, b.layout.size(), layout(cs, natural), false)
            .unwrap();
        assert_eq!(b.addr(), at, "realign to {natural} within class {cs}");
        b.free(&a);
    }
    // Large blocks shrink in place (mremap never moves a shrinking mapping).
    let mut b = Block::stamped(&a, layout(2 * MIB, 8), 7);
    let at = b.addr();
    b.resize(&a, 2 * MIB, layout(MIB + 100, 8), false).unwrap();
    assert_eq!(b.addr(), at, "large shrink moved");
    assert_eq!(b.len, MIB + 4096);
    assert_stamped(&b.bytes()[..MIB + 100], 7, "large shrink");
    assert_eq!(a.stats().large_bytes, (MIB + 4096) as u64);
    b.free(&a);
    assert_quiet(&a);
}

/// Across classes and between classes and large blocks, `grow` and
/// `shrink` move (the new class's length, a new address) and keep
/// min(old, new) bytes; large blocks grow with mremap and keep theirs.
#[test]
#[cfg_attr(miri, ignore)]
fn resize_across_classes_and_large_moves_and_keeps_contents() {
    let a = SlabAlloc::new();
    let sizes = SlabAlloc::class_sizes();
    // Class to class, every pair of neighbours and some long jumps.
    let mut pairs: Vec<(usize, usize)> = sizes.windows(2).map(|w| (w[0], w[1])).collect();
    pairs.extend([(16, MAX_CLASS), (112, 5120), (1024, 24_576)]);
    for (i, &(small, big)) in pairs.iter().enumerate() {
        let seed = mix(i as u64);
        let mut b = Block::stamped(&a, layout(small, 8), seed);
        let at = b.addr();
        b.resize(&a, small, layout(big, 8), false).unwrap();
        assert_ne!(b.addr(), at, "grow {small} -> {big} stayed in place");
        assert_eq!(b.len, big);
        assert_stamped(&b.bytes()[..small], seed, "grown across classes");
        stamp(b.bytes_mut(), seed);
        let at = b.addr();
        b.resize(&a, big, layout(small, 8), false).unwrap();
        assert_ne!(b.addr(), at, "shrink {big} -> {small} stayed in place");
        assert_eq!(b.len, small);
        assert_stamped(b.bytes(), seed, "shrunk across classes");
        b.free(&a);
        assert_eq!(a.stats().live_blocks, 0);
    }
    // Class <-> large, large <-> large (mremap, and the copy path for
    // over-aligned mappings), with both alignments kept.
    let chain: &[(usize, usize)] = &[
        (1000, 8),
        (100 * KIB, 8),
        (3 * MIB, 8),
        (40 * KIB, 8),
        (20, 8),
        (60 * KIB, 8192),
        (700 * KIB, 8192),
        (70 * KIB, 8192),
        (100, 8192),
        (5000, 65536),
        (MIB, 65536),
        (30, 16),
    ];
    let mut b = Block::stamped(&a, layout(chain[0].0, chain[0].1), 1);
    for (i, w) in chain.windows(2).enumerate() {
        let ((from, _), (to, align)) = (w[0], w[1]);
        let seed = 1 + i as u64;
        b.resize(&a, from, layout(to, align), false).unwrap();
        assert_stamped(&b.bytes()[..from.min(to)], seed, "resized");
        let s = a.stats();
        assert_eq!(s.live_blocks, 1, "{from} -> {to}: {s:?}");
        assert_eq!(s.large_blocks, u64::from(is_large(b.layout)), "{s:?}");
        stamp(b.bytes_mut(), seed + 1);
    }
    b.free(&a);
    assert_quiet(&a);
}

/// `grow_zeroed` zeroes every byte past the old size: across classes (into
/// a dirtied, reused block), for large blocks grown with mremap (the
/// page-rounded tail of the old mapping is dirty), after a large shrink, and
/// on the copy path of an over-aligned mapping.
#[test]
#[cfg_attr(miri, ignore)]
fn grow_zeroed_zeroes_the_new_tail() {
    let a = SlabAlloc::new();
    // Across classes, into a block that was just dirtied and freed.
    for (from, to) in [(16, 48), (100, 1000), (3000, 20_000), (8000, MAX_CLASS)] {
        let mut dirty = Block::new(&a, layout(to, 8));
        dirty.bytes_mut().fill(0xee);
        dirty.free(&a);
        let mut b = Block::new(&a, layout(from, 8));
        b.bytes_mut().fill(0xdd);
        stamp(&mut b.bytes_mut()[..from], 3);
        b.resize(&a, from, layout(to, 8), true).unwrap();
        assert_stamped(&b.bytes()[..from], 3, "grow_zeroed kept");
        assert_zero(&b.bytes()[from..], "grow_zeroed tail across classes");
        b.free(&a);
    }
    // Class to large and large to large (and medium classes between).
    for (from, to, align) in [
        (1000, 300 * KIB, 8),
        (40_000, 100_000, 8),
        (100_000, 2 * MIB + 3, 16),
        (300_000, 600_000, 8),
        (40_000, 300_000, 8192),
        (5000, 200_000, 65536),
    ] {
        let mut b = Block::new(&a, layout(from, align));
        b.bytes_mut().fill(0xdd);
        stamp(&mut b.bytes_mut()[..from], 4);
        b.resize(&a, from, layout(to, align), true).unwrap();
        assert_stamped(&b.bytes()[..from], 4, "grow_zeroed kept");
        assert_zero(&b.bytes()[from..], "grow_zeroed large tail");
        b.free(&a);
    }
    // A large block shrunk (its page-rounded tail keeps old bytes), then
    // grown zeroed from its new size.
    let mut b = Block::new(&a, layout(600_000, 8));
    b.bytes_mut().fill(0xdd);
    b.resize(&a, 600_000, layout(300_000, 8), false).unwrap();
    stamp(&mut b.bytes_mut()[..300_000], 5);
    b.resize(&a, 300_000, layout(450_000, 8), true).unwrap();
    assert_stamped(&b.bytes()[..300_000], 5, "kept after shrink + grow_zeroed");
    assert_zero(&b.bytes()[300_000..], "grow_zeroed after a large shrink");
    // The fit rule: the old layout may name the returned length.
    let len = b.len;
    b.bytes_mut().fill(0xdd);
    b.resize(&a, len, layout(len + 5000, 8), true).unwrap();
    assert!(b.bytes()[..len].iter().all(|&x| x == 0xdd));
    assert_zero(&b.bytes()[len..], "grow_zeroed from the returned length");
    b.free(&a);
    assert_quiet(&a);
}

/// A block grown step by step across the medium classes' edges — from the
/// small classes past 32 KiB, through the medium classes to 256 KiB, past
/// it into a large block — and shrunk back the same way keeps its
/// contents at every step, plain and zeroed (the new tail reads zero),
/// and is a large block exactly when above 256 KiB.
#[test]
#[cfg_attr(miri, ignore)]
fn resize_across_the_medium_edges_keeps_contents() {
    let a = SlabAlloc::new();
    let up = [
        16 * KIB,
        32 * KIB,
        32 * KIB + 1,
        64 * KIB,
        200 * KIB,
        MAX_CLASS,
        MAX_CLASS + 1,
        MIB,
    ];
    for zero in [false, true] {
        let mut b = Block::stamped(&a, layout(up[0], 8), 0);
        let mut sizes: Vec<(usize, usize)> = up.windows(2).map(|w| (w[0], w[1])).collect();
        sizes.extend(up.windows(2).rev().map(|w| (w[1], w[0])));
        for (i, &(from, to)) in sizes.iter().enumerate() {
            let seed = i as u64;
            b.resize(&a, from, layout(to, 8), zero && to > from)
                .unwrap();
            assert_stamped(&b.bytes()[..from.min(to)], seed, "resized");
            if zero && to > from {
                assert_zero(&b.bytes()[from..], "grow_zeroed tail");
            }
            let s = a.stats();
            assert_eq!(s.live_blocks, 1, "{from} -> {to}: {s:?}");
            assert_eq!(s.large_blocks, u64::from(to > MAX_CLASS), "{to}: {s:?}");
            assert_eq!(is_large(b.layout), to > MAX_CLASS);
            stamp(b.bytes_mut(), seed + 1);
        }
        b.free(&a);
    }
    assert_quiet(&a);
}
