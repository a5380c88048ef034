//! Large blocks cost few system calls: a vector grown by `realloc` to
//! 8 MiB and a churn of 40 KiB – 2 MiB blocks make a bounded number of
//! `mmap`-family calls (`homeslab::os_calls`) per thousand operations;
//! medium blocks (above 32 KiB up to 256 KiB, size classes) make none
//! once their classes have slabs. One test in its own binary: nothing
//! else counts meanwhile.

use std::alloc::Layout;

use allocator_api2::alloc::Allocator;
use homeslab::SlabAlloc;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// A 64-bit mixer (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `mmap`-family calls `f` makes, and the operations it reports.
fn count(f: impl FnOnce() -> u64) -> (u64, u64) {
    let before = homeslab::os_calls();
    let ops = f();
    (homeslab::os_calls() - before, ops)
}

/// A vector grown by doubling from 64 KiB to 8 MiB, freed, 100 times.
fn vec_growth(a: &SlabAlloc) -> u64 {
    let mut ops = 0;
    for round in 0..100u8 {
        let mut l = Layout::from_size_align(64 * KIB, 8).unwrap();
        let mut p = a.allocate(l).unwrap().cast::<u8>();
        ops += 1;
        // SAFETY: the block is ours, at least `l.size()` bytes.
        unsafe { p.as_ptr().write(round) };
        while l.size() < 8 * MIB {
            let n = Layout::from_size_align(l.size() * 2, 8).unwrap();
            // SAFETY: `p` is ours with layout `l`; `n` is larger.
            p = unsafe { a.grow(p, l, n) }.unwrap().cast();
            // SAFETY: as above, now `n.size()` bytes.
            unsafe {
                assert_eq!(p.as_ptr().read(), round);
                p.as_ptr().add(n.size() - 1).write(round);
            }
            l = n;
            ops += 1;
        }
        // SAFETY: ours, with layout `l`.
        unsafe { a.deallocate(p, l) };
        ops += 1;
    }
    ops
}

/// 4000 blocks of 40 KiB – 2 MiB, a window of 16 live.
fn churn(a: &SlabAlloc) -> u64 {
    let mut live = std::collections::VecDeque::new();
    let mut ops = 0;
    for i in 0..4000u64 {
        let size = 40 * KIB + mix(i) as usize % (2 * MIB - 40 * KIB);
        let l = Layout::from_size_align(size, 8).unwrap();
        let p = a.allocate(l).unwrap().cast::<u8>();
        // SAFETY: the block is ours, at least `size` bytes.
        unsafe { p.as_ptr().write(1) };
        live.push_back((p, l));
        ops += 1;
        if live.len() > 16 {
            let (p, l) = live.pop_front().unwrap();
            // SAFETY: ours, with layout `l`.
            unsafe { a.deallocate(p, l) };
            ops += 1;
        }
    }
    for (p, l) in live {
        // SAFETY: as above.
        unsafe { a.deallocate(p, l) };
        ops += 1;
    }
    ops
}

/// Blocks of every medium class (32 KiB + 1 to 256 KiB), 16 live at a
/// time, then all freed, `rounds` times.
fn medium_churn(a: &SlabAlloc, rounds: u64) -> u64 {
    let mut ops = 0;
    for r in 0..rounds {
        let blocks: Vec<_> = (0..16u64)
            .map(|i| {
                let size = 32 * KIB + 1 + mix(r << 8 | i) as usize % (224 * KIB);
                let l = Layout::from_size_align(size, 8).unwrap();
                let p = a.allocate(l).unwrap().cast::<u8>();
                // SAFETY: the block is ours, at least `size` bytes.
                unsafe { p.as_ptr().add(size - 1).write(1) };
                (p, l)
            })
            .collect();
        for (p, l) in blocks {
            // SAFETY: ours, with layout `l`.
            unsafe { a.deallocate(p, l) };
        }
        ops += 32;
    }
    ops
}

/// At most this many calls per thousand operations.
const BOUND: u64 = 10;

#[test]
#[cfg_attr(miri, ignore)]
fn large_blocks_make_few_os_calls() {
    let a = SlabAlloc::new();
    let (calls, ops) = count(|| vec_growth(&a));
    println!("vec growth to 8 MiB: {calls} calls for {ops} operations");
    let (calls2, ops2) = count(|| churn(&a));
    println!("40 KiB - 2 MiB churn: {calls2} calls for {ops2} operations");
    assert!(calls * 1000 <= BOUND * ops, "{calls} calls");
    assert!(calls2 * 1000 <= BOUND * ops2, "{calls2} calls");

    // Medium blocks: slabs of their classes, mapped while warming up
    // (`release_after(None)`: no idle release meanwhile), none after.
    let m = SlabAlloc::builder().release_after(None).build().unwrap();
    let (warmup, _) = count(|| medium_churn(&m, 20));
    let (calls3, ops3) = count(|| medium_churn(&m, 200));
    println!("medium blocks: {warmup} calls warming up, then {calls3} for {ops3} operations");
    assert!(m.stats().large_blocks == 0);
    assert_eq!(calls3, 0, "medium blocks made system calls once warm");
}
