//! Settings and failed allocations: invalid builder settings, the
//! `max_bytes` budget, injected mapping failures and impossible requests
//! are each an `Err`, never a panic, and the allocator keeps working.

use std::time::Duration;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::allocator_api2::vec::Vec as AVec;
use homeslab::{ConfigError, SlabAlloc};

use crate::blocks::{assert_quiet, assert_stamped, layout, stamp, still_works, Block, KIB, MIB};

#[track_caller]
fn assert_invalid(r: Result<SlabAlloc, ConfigError>, setting: &str) {
    match &r {
        Err(e @ ConfigError::InvalidSetting { name, .. }) => {
            assert_eq!(*name, setting);
            let msg = e.to_string();
            assert!(msg.contains(setting), "{msg}");
        }
        other => panic!("{setting}: expected InvalidSetting, got {other:?}"),
    }
}

#[test]
fn builder_rejects_invalid_settings() {
    let b = SlabAlloc::builder;
    assert_invalid(b().max_thread_slabs(0).build(), "max_thread_slabs");
    assert_invalid(b().chunk_bytes(3 << 20).build(), "chunk_bytes");
    assert_invalid(b().chunk_bytes((1 << 20) + 4096).build(), "chunk_bytes");
    assert_invalid(b().chunk_bytes(32 * KIB).build(), "chunk_bytes");
    assert_invalid(
        b().release_after(Some(Duration::ZERO)).build(),
        "release_after",
    );
    // The 256 KiB class needs at least eight blocks per slab: one 4 MiB
    // region (its header leaves room for seven in 2 MiB).
    for n in [0, 1, 4096, 256 * KIB as u64, 4 * MIB as u64 - 1] {
        assert_invalid(b().max_bytes(n).build(), "max_bytes");
    }
    assert!(b().max_bytes(4 * MIB as u64).build().is_ok());
    // Valid edges build and serve.
    for a in [
        b().max_thread_slabs(1).build(),
        b().chunk_bytes(64 * KIB).build(),
        b().chunk_bytes(4 * MIB).build(),
        b().release_after(Some(Duration::from_millis(1))).build(),
        b().release_after(None).build(),
        b().max_bytes(64 * MIB as u64).build(),
        b().max_thread_heaps(0).retained_empty_slabs(0).build(),
        b().hardened(true).build(),
    ] {
        let a = a.unwrap();
        still_works(&a, 200, &[]);
        assert_quiet(&a);
    }
}

/// `max_bytes` caps class slabs and large mappings together: allocations
/// past it fail with `Err` (no panic), and succeed again once memory is
/// freed (large blocks at once, class slabs after `trim`).
#[test]
fn max_bytes_caps_classes_and_large_blocks_together() {
    let limit = 4 * MIB;
    let a = SlabAlloc::builder()
        .max_bytes(limit as u64)
        .release_after(None)
        .build()
        .unwrap();
    let big = layout(MIB, 8);
    let mut larges: Vec<Block> = Vec::new();
    while let Some(b) = Block::try_new(&a, big) {
        larges.push(b);
        assert!(larges.len() <= 4, "past the budget: {:?}", a.stats());
    }
    assert_eq!(larges.len(), 4, "{:?}", a.stats());
    assert_eq!(a.stats().mapped_bytes, limit as u64);
    // No room for a class slab either.
    assert!(a.allocate(layout(64, 8)).is_err());
    assert!(a.allocate_zeroed(layout(5000, 8)).is_err());
    // A large block that cannot grow keeps its contents.
    let mut g = larges.pop().unwrap();
    stamp(g.bytes_mut(), 5);
    assert!(g.resize(&a, MIB, layout(2 * MIB, 8), false).is_err());
    assert!(g.resize(&a, MIB, layout(2 * MIB, 8), true).is_err());
    assert_stamped(g.bytes(), 5, "failed grow");
    // A Vec reports the failure as an error, not a panic.
    let mut v: AVec<u8, SlabAlloc> = AVec::new_in(a.clone());
    assert!(v.try_reserve(10).is_err());
    g.free(&a);

    // One mapping's worth of room: class slabs fill it.
    let l = layout(4096, 4096);
    let mut smalls: Vec<Block> = Vec::new();
    while let Some(mut b) = Block::try_new(&a, l) {
        stamp(b.bytes_mut(), smalls.len() as u64);
        smalls.push(b);
        assert!(a.stats().mapped_bytes <= limit as u64, "{:?}", a.stats());
        assert!(smalls.len() < 1000, "the budget never bit");
    }
    assert!(!smalls.is_empty());
    assert!(Block::try_new(&a, big).is_none(), "{:?}", a.stats());
    assert!(v.try_reserve(100).is_err());
    // Freeing a large block makes room at once.
    larges.pop().unwrap().free(&a);
    let again = Block::new(&a, big);
    assert!(Block::try_new(&a, big).is_none());
    again.free(&a);
    // Freed class blocks stay mapped in their slabs until trimmed.
    for (i, b) in smalls.into_iter().enumerate() {
        assert_stamped(b.bytes(), i as u64, "block under the budget");
        b.free(&a);
    }
    assert!(a.trim() > 0);
    // Two large blocks are live: room for one more and a small slab, and
    // then, together, for nothing of either kind.
    assert_eq!(larges.len(), 2);
    larges.push(Block::new(&a, big));
    v.try_reserve(100).unwrap();
    v.extend_from_slice(&[1; 100]);
    assert!(Block::try_new(&a, big).is_none(), "{:?}", a.stats());
    let s = a.stats();
    assert!(s.peak_mapped_bytes <= limit as u64, "{s:?}");
    assert!(s.mapped_bytes <= limit as u64, "{s:?}");
    assert!(v.iter().all(|&x| x == 1));
    drop(v);
    for b in larges {
        b.free(&a);
    }
    assert_quiet(&a);
}

/// Injected mapping failures make allocations that need a new mapping fail
/// with `Err`; a class whose slab has room keeps serving; then everything
/// recovers.
#[test]
fn injected_map_failures_are_errors_and_the_allocator_recovers() {
    let a = SlabAlloc::new();
    let warm = Block::stamped(&a, layout(64, 8), 1);
    a.inject_map_failures(2);
    // The 64-byte class has a slab with room: no mapping needed.
    let served = Block::stamped(&a, layout(64, 8), 2);
    // A class never used needs one: refused twice, then served.
    let l = layout(1000, 8);
    assert!(a.allocate(l).is_err());
    assert!(a.allocate_zeroed(l).is_err());
    let s = a.stats();
    assert_eq!((s.allocs, s.live_blocks), (2, 2), "{s:?}");
    let third = Block::stamped(&a, l, 3);
    // grow into an unused class fails like allocate, keeping the block.
    a.inject_map_failures(1);
    let mut g = Block::stamped(&a, layout(1000, 8), 4);
    assert!(g.resize(&a, 1000, layout(3000, 8), false).is_err());
    assert_stamped(g.bytes(), 4, "failed grow");
    g.resize(&a, 1000, layout(3000, 8), false).unwrap();
    assert_stamped(&g.bytes()[..1000], 4, "grown after the failure");
    // A Vec whose first allocation needs a mapping (the 8 KiB class).
    let mut v: AVec<u64, SlabAlloc> = AVec::new_in(a.clone());
    a.inject_map_failures(1);
    assert!(v.try_reserve_exact(1000).is_err());
    v.try_reserve_exact(1000).unwrap();
    v.extend(0..1000);
    assert!(v.iter().copied().eq(0..1000));
    // Cancel what is left pending in the other classes.
    a.inject_map_failures(0);
    still_works(&a, 500, &[]);
    for (b, seed) in [(warm, 1), (served, 2), (third, 3)] {
        assert_stamped(b.bytes(), seed, "block across injected failures");
        b.free(&a);
    }
    g.free(&a);
    drop(v);
    assert_quiet(&a);
}

/// An impossible request fails with `Err`, not a panic or an abort.
#[test]
fn impossible_requests_fail_with_err() {
    let a = SlabAlloc::new();
    for l in [
        layout(isize::MAX as usize - 8191, 4096),
        // More than the whole user address space.
        layout(1 << 48, 8),
        layout(1 << 20, 1 << 47),
    ] {
        assert!(a.allocate(l).is_err(), "{l:?}");
    }
    let mut b = Block::stamped(&a, layout(100 * KIB, 8), 1);
    assert!(b
        .resize(&a, 100 * KIB, layout(isize::MAX as usize - 8191, 8), false)
        .is_err());
    assert_stamped(b.bytes(), 1, "failed huge grow");
    b.free(&a);
    assert_quiet(&a);
}
