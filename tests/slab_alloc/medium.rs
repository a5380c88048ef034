//! Medium blocks, above 32 KiB up to 256 KiB: size classes served from
//! slabs like the small ones, not from the large blocks' arena. Each class's
//! blocks, stamped with their identity, survive and free locally and on
//! another thread; the slabs have the documented regions; once warm, no
//! block costs a mapping; 256 KiB is the last class size, a byte more is a
//! large block.

use std::thread;

use homeslab::SlabAlloc;

use crate::blocks::{
    assert_quiet, assert_stamped, layout, Block, LiveSet, KIB, MAX_CLASS, MAX_CLASS_ALIGN,
};
use crate::common::mix;

/// The classes above 32 KiB, with the size just above the class below.
fn medium_classes() -> Vec<(usize, usize)> {
    let sizes = SlabAlloc::class_sizes();
    sizes
        .windows(2)
        .filter(|w| w[0] >= 32 * KIB)
        .map(|w| (w[0] + 1, w[1]))
        .collect()
}

#[test]
fn there_are_twelve_medium_classes_up_to_256_kib() {
    let got: Vec<usize> = medium_classes().iter().map(|&(_, cs)| cs).collect();
    let want: Vec<usize> = [40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256]
        .iter()
        .map(|k| k * KIB)
        .collect();
    assert_eq!(got, want);
    assert_eq!(*SlabAlloc::class_sizes().last().unwrap(), MAX_CLASS);
}

/// Every medium class: more blocks than a slab holds, of sizes across the
/// class, each stamped with its identity over its whole length; half freed
/// here, half sent to another thread that checks and frees them (remote
/// frees). None is a large block; at the end nothing is live.
#[test]
#[cfg_attr(miri, ignore)]
fn medium_blocks_keep_their_stamps_and_free_here_and_remotely() {
    for hardened in [false, true] {
        let a = SlabAlloc::builder().hardened(hardened).build().unwrap();
        let live = LiveSet::default();
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for (c, &(lo, cs)) in medium_classes().iter().enumerate() {
            for i in 0..20u64 {
                let id = (c as u64) << 32 | i;
                // From the smallest to the largest size the class serves.
                let size = lo + (mix(id) as usize % (cs - lo + 1));
                let b = Block::stamped(&a, layout(size, 1 << (i % 13)), mix(id));
                assert_eq!(b.len, cs, "size {size}");
                live.insert(&b, id);
                if i % 2 == 0 {
                    mine.push((id, b));
                } else {
                    theirs.push((id, b));
                }
            }
        }
        let s = a.stats();
        assert_eq!((s.large_blocks, s.large_bytes), (0, 0), "{s:?}");
        assert_eq!(s.live_blocks, 12 * 20, "{s:?}");
        for (id, b) in &mine {
            assert_stamped(b.bytes(), mix(*id), "medium block");
        }
        for (id, b) in &theirs {
            live.remove(b, *id);
        }
        let freer = a.clone();
        let sent: Vec<(u64, Block)> = theirs;
        let remote = thread::spawn(move || {
            for (id, b) in sent {
                assert_stamped(b.bytes(), mix(id), "medium block on another thread");
                b.free(&freer);
            }
            homeslab::flush_remote_frees();
        });
        for (id, b) in mine {
            assert_stamped(b.bytes(), mix(id), "medium block before its free");
            live.remove(&b, id);
            b.free(&a);
        }
        remote.join().unwrap();
        let s = a.stats();
        assert!(s.remote_frees >= 12 * 10, "{s:?}");
        assert_quiet(&a);
        // The freed slabs serve again.
        for &(lo, cs) in &medium_classes() {
            let b = Block::stamped(&a, layout(lo, 8), 7);
            assert_eq!(b.len, cs);
            b.free(&a);
        }
        assert_quiet(&a);
    }
}

/// A fresh allocator's first blocks of a medium class fill one slab: a
/// region of 16 × 2^k bytes for the classes from 2^k to below 2^(k+1),
/// aligned to its size, whose first page is the header and the rest
/// slots (as `SlabAlloc`'s docs say: 9 to 15 blocks). The next block is
/// in another region.
#[test]
#[cfg_attr(miri, ignore)]
fn medium_slabs_have_the_documented_regions() {
    let a = SlabAlloc::new();
    for &(_, cs) in &medium_classes() {
        let doubling = 1 << (usize::BITS - 1 - cs.leading_zeros());
        let region = 16 * doubling;
        let capacity = (region - 4096) / cs;
        assert!((9..=15).contains(&capacity), "{cs}: {capacity}");
        let blocks: Vec<Block> = (0..=capacity)
            .map(|_| Block::new(&a, layout(cs, 8)))
            .collect();
        let base = blocks[0].addr() & !(region - 1);
        for (i, b) in blocks[..capacity].iter().enumerate() {
            assert_eq!(b.addr() & !(region - 1), base, "class {cs} block {i}");
            assert!(b.addr() >= base + 4096 && b.addr() + cs <= base + region);
        }
        let next = blocks[capacity].addr();
        assert_ne!(next & !(region - 1), base, "class {cs}: {capacity} + 1 fit");
        for b in blocks {
            b.free(&a);
        }
    }
    assert_quiet(&a);
}

/// Once each class has a slab, medium blocks come and go without a new
/// mapping or a release: the allocator's reserved, mapped and released
/// bytes stay put (the per-allocator view of `homeslab::os_calls`, which
/// `tests/os_calls.rs` checks in a binary of its own), and none is a
/// large block.
#[test]
#[cfg_attr(miri, ignore)]
fn warm_medium_blocks_need_no_new_mapping() {
    let a = SlabAlloc::builder().release_after(None).build().unwrap();
    let sizes = [32 * KIB + 1, 40 * KIB, 100 * KIB + 3, 200 * KIB, MAX_CLASS];
    // Warm: eight live blocks of each size, then freed.
    let warm: Vec<Block> = sizes
        .iter()
        .flat_map(|&n| (0..8).map(move |_| n))
        .map(|n| Block::new(&a, layout(n, 8)))
        .collect();
    for b in warm {
        b.free(&a);
    }
    let before = a.stats();
    for round in 0..20u64 {
        let blocks: Vec<(u64, Block)> = sizes
            .iter()
            .flat_map(|&n| (0..8u64).map(move |i| (n, i)))
            .map(|(n, i)| {
                let id = mix((round << 8 | i) ^ n as u64);
                (id, Block::stamped(&a, layout(n, 8), id))
            })
            .collect();
        assert_eq!(a.stats().large_blocks, 0);
        for (id, b) in blocks {
            assert_stamped(b.bytes(), id, "warm medium block");
            b.free(&a);
        }
    }
    let after = a.stats();
    assert_eq!(after.reserved_bytes, before.reserved_bytes, "{after:?}");
    assert_eq!(after.mapped_bytes, before.mapped_bytes, "{after:?}");
    assert_eq!(after.released_bytes, before.released_bytes, "{after:?}");
    assert_eq!(after.allocs, before.allocs + 20 * 8 * sizes.len() as u64);
    assert_quiet(&a);
}

/// The edges: just above 32 KiB and exactly 256 KiB (also aligned to
/// 4096) are class blocks of the class size; a byte more than 256 KiB, or
/// an alignment above 4096, is a large block of whole pages.
#[test]
fn the_largest_class_is_256_kib_and_a_byte_more_is_large() {
    let a = SlabAlloc::new();
    for (size, align, len) in [
        (32 * KIB + 1, 1, 40 * KIB),
        (MAX_CLASS, 1, MAX_CLASS),
        (MAX_CLASS, MAX_CLASS_ALIGN, MAX_CLASS),
        (MAX_CLASS - 1, 16, MAX_CLASS),
    ] {
        let b = Block::stamped(&a, layout(size, align), 1);
        assert_eq!(b.len, len, "size {size} align {align}");
        let s = a.stats();
        assert_eq!((s.live_blocks, s.large_blocks), (1, 0), "{size}: {s:?}");
        b.free(&a);
    }
    for (size, align) in [(MAX_CLASS + 1, 1), (MAX_CLASS, 8192), (40 * KIB, 8192)] {
        let b = Block::stamped(&a, layout(size, align), 2);
        assert_eq!(b.len % 4096, 0, "size {size} align {align}: {}", b.len);
        assert!(b.len < size + 4096, "size {size} align {align}: {}", b.len);
        let s = a.stats();
        assert_eq!((s.live_blocks, s.large_blocks), (1, 1), "{size}: {s:?}");
        b.free(&a);
    }
    assert_quiet(&a);
}
