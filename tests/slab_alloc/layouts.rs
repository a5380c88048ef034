//! What `allocate`, `allocate_zeroed` and `deallocate` promise for a
//! layout: the class table and the lengths returned, the layout-fit rule
//! of `deallocate`, zeroed memory on reused blocks, zero-size layouts.

use std::alloc::Layout;
use std::collections::HashSet;
use std::ptr::NonNull;
use std::thread;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::SlabAlloc;

use crate::blocks::{
    assert_quiet, assert_zero, layout, stamp, Block, KIB, MAX_CLASS, MAX_CLASS_ALIGN, MIB,
};

#[test]
fn class_table_and_returned_lengths() {
    let sizes = SlabAlloc::class_sizes();
    assert_eq!(sizes.len(), 52);
    assert_eq!(&sizes[..8], &[16, 32, 48, 64, 80, 96, 112, 128]);
    // Four per doubling from 128 bytes to 256 KiB.
    let mut base = 128;
    for quad in sizes[8..].chunks(4) {
        let step = base / 4;
        assert_eq!(
            quad,
            &[base + step, base + 2 * step, base + 3 * step, 2 * base]
        );
        base *= 2;
    }
    assert_eq!(*sizes.last().unwrap(), MAX_CLASS);

    let a = SlabAlloc::new();
    let mut prev = 0;
    for &cs in sizes {
        // The smallest and largest request of each class get the class size.
        for size in [prev + 1, (prev + cs) / 2 + 1, cs] {
            let b = Block::new(&a, layout(size, 1));
            assert_eq!(b.len, cs, "size {size}");
            b.free(&a);
        }
        // A class's blocks are aligned to the largest power of two that
        // divides its size (up to 4096): that alignment costs nothing more.
        let natural = (1usize << cs.trailing_zeros()).min(MAX_CLASS_ALIGN);
        let b = Block::new(&a, layout(prev + 1, natural));
        assert_eq!(b.len, cs, "size {} align {natural}", prev + 1);
        b.free(&a);
        prev = cs;
    }
    // A stronger alignment takes the first class that has it.
    for (size, align, want) in [
        (100, 64, 128),
        (130, 128, 256),
        (200, 64, 256),
        (5000, 4096, 8192),
        (20_000, 4096, 20_480),
        (1, 4096, 4096),
        (4097, 2048, 6144),
    ] {
        let b = Block::new(&a, layout(size, align));
        assert_eq!(b.len, want, "size {size} align {align}");
        b.free(&a);
    }
    // Past 256 KiB or 4096-byte alignment: whole pages of a mapping.
    for (size, align) in [
        (MAX_CLASS + 1, 1),
        (300 * KIB + 3, 8),
        (16, 8192),
        (3 * MIB, 4096),
        (MIB + 1, 65536),
    ] {
        let b = Block::new(&a, layout(size, align));
        assert_eq!(b.len % 4096, 0, "size {size} align {align}: {}", b.len);
        assert!(b.len < size + 4096, "size {size} align {align}: {}", b.len);
        assert_eq!(a.stats().large_blocks, 1);
        b.free(&a);
    }
    assert_quiet(&a);
}

/// `deallocate` accepts every size between the requested and the returned
/// length (the allocator-api2 "fit" rule): each such free is a real free
/// of the right class, never a refusal.
#[test]
#[cfg_attr(miri, ignore)]
fn deallocate_accepts_every_size_up_to_the_returned_length() {
    let a = SlabAlloc::new();
    let mut frees = 0u64;
    let mut check = |l: Layout, step: usize| {
        let probe = Block::new(&a, l);
        let len = probe.len;
        probe.free(&a);
        frees += 1;
        let mut sizes: Vec<usize> = (l.size()..=len).step_by(step).collect();
        sizes.push(len);
        for size in sizes {
            let mut b = Block::new(&a, l);
            assert_eq!(b.len, len, "{l:?}");
            stamp(&mut b.bytes_mut()[..len.min(256)], size as u64);
            b.free_with(&a, size);
            frees += 1;
        }
        let s = a.stats();
        assert_eq!(s.live_blocks, 0, "{l:?}: {s:?}");
        assert_eq!(s.frees, frees, "{l:?}: {s:?}");
        assert_eq!(s.foreign_frees + s.double_frees, 0, "{l:?}: {s:?}");
    };
    // Every class, from its smallest request, every size.
    let mut prev = 0;
    for &cs in SlabAlloc::class_sizes() {
        check(layout(prev + 1, 1), 1);
        prev = cs;
    }
    // Aligned requests that take a larger class than their size needs.
    for align in [32, 64, 128, 256, 512, 1024, 2048, 4096] {
        for size in [1, align / 2 + 1, align + 1, 3 * align / 2, 5000, 20_000] {
            check(layout(size, align), 1);
        }
    }
    // Large blocks: the page-rounded tail, and over-aligned small ones.
    check(layout(MAX_CLASS + 1, 1), 3);
    check(layout(100, 8192), 7);
    check(layout(MIB + 5, 65536), 11);
    assert_quiet(&a);
}

/// `allocate_zeroed` reads zero on blocks that were used and dirtied
/// before: reused from the local freelist, from remote frees, from a reused
/// empty slab, from the overflow tier, and after a trim.
#[test]
#[cfg_attr(miri, ignore)]
fn allocate_zeroed_reads_zero_on_reused_blocks() {
    for (a, owned) in [
        (SlabAlloc::new(), true),
        (SlabAlloc::builder().hardened(true).build().unwrap(), true),
        // Every thread allocates from the shared tier, whose frees are all
        // remote and whose slabs hand out their frontier first.
        (
            SlabAlloc::builder().max_thread_heaps(0).build().unwrap(),
            false,
        ),
        // Empty slabs go back to the page source warm: a new slab on a
        // dirty region.
        (
            SlabAlloc::builder()
                .retained_empty_slabs(0)
                .release_after(None)
                .build()
                .unwrap(),
            true,
        ),
    ] {
        // Every class, freed and reallocated zeroed in place many times.
        for &cs in SlabAlloc::class_sizes() {
            let l = layout(cs, 1);
            let mut dirtied = HashSet::new();
            let mut reused = 0;
            for round in 0..12u8 {
                let blocks: Vec<Block> = (0..3)
                    .map(|_| {
                        let mut b = Block::new(&a, l);
                        b.bytes_mut().fill(0xa5 ^ round);
                        dirtied.insert(b.addr());
                        b
                    })
                    .collect();
                for b in blocks {
                    b.free(&a);
                }
                let blocks: Vec<Block> = (0..3).map(|_| Block::zeroed(&a, l)).collect();
                for mut b in blocks {
                    reused += usize::from(dirtied.contains(&b.addr()));
                    b.bytes_mut().fill(0x5a);
                    b.free(&a);
                }
            }
            assert!(!owned || reused > 0, "class {cs}: no block was reused");
        }

        // Remote frees of dirtied blocks, drained by the owner.
        let l = layout(64, 8);
        let blocks: Vec<Block> = (0..3000).map(|_| Block::new(&a, l)).collect();
        let dirtied: HashSet<usize> = blocks.iter().map(Block::addr).collect();
        let freer = a.clone();
        thread::spawn(move || {
            for mut b in blocks {
                b.bytes_mut().fill(0xee);
                b.free(&freer);
            }
        })
        .join()
        .unwrap();
        let blocks: Vec<Block> = (0..3000).map(|_| Block::zeroed(&a, l)).collect();
        let reused = blocks
            .iter()
            .filter(|b| dirtied.contains(&b.addr()))
            .count();
        assert!(reused > 0, "no remotely freed block was reused");
        for mut b in blocks {
            b.bytes_mut().fill(0x77);
            b.free(&a);
        }

        // After a trim (cold regions) and again after reuse.
        a.trim();
        for round in 0..3 {
            let blocks: Vec<Block> = (0..500)
                .map(|i| Block::zeroed(&a, layout(1 + (i * 37) % 2000, 8)))
                .collect();
            for mut b in blocks {
                b.bytes_mut().fill(0x11 + round);
                b.free(&a);
            }
        }

        // Large blocks.
        for size in [MAX_CLASS + 1, 300 * KIB] {
            for _ in 0..4 {
                let mut b = Block::zeroed(&a, layout(size, 16));
                b.bytes_mut().fill(0xcc);
                b.free(&a);
            }
        }
        assert_quiet(&a);
    }
}

/// Zero-size layouts never touch memory: dangling aligned pointers, no
/// counts, nothing mapped; growing from zero allocates, shrinking to zero
/// frees.
#[test]
fn zero_size_layouts_touch_nothing() {
    let a = SlabAlloc::new();
    for shift in 0..=16 {
        let l = layout(0, 1 << shift);
        for p in [a.allocate(l).unwrap(), a.allocate_zeroed(l).unwrap()] {
            assert_eq!(p.len(), 0);
            assert_eq!(p.cast::<u8>().as_ptr() as usize % l.align(), 0, "{l:?}");
            // SAFETY: a zero-size block of `a` with layout `l`.
            unsafe { a.deallocate(p.cast(), l) };
        }
        // SAFETY: zero-size to zero-size, the block is the dangling one.
        let p = unsafe { a.grow(NonNull::dangling(), layout(0, 1), l) }.unwrap();
        assert_eq!(p.len(), 0);
        // SAFETY: as above.
        let p = unsafe { a.shrink(p.cast(), l, layout(0, 1)) }.unwrap();
        assert_eq!(p.len(), 0);
    }
    let s = a.stats();
    assert_eq!((s.allocs, s.frees, s.live_blocks), (0, 0, 0), "{s:?}");
    assert_eq!(s.mapped_bytes, 0, "zero-size blocks mapped memory: {s:?}");

    for (size, align, zero) in [
        (100, 8, false),
        (5000, 8, true),
        (100 * KIB, 8, true),
        (64, 8192, false),
    ] {
        let l = layout(size, align);
        let z = a.allocate(layout(0, align)).unwrap();
        let mut b = Block {
            ptr: z.cast(),
            len: 0,
            layout: layout(0, align),
        };
        b.resize(&a, 0, l, zero).unwrap();
        if zero {
            assert_zero(b.bytes(), "grow_zeroed from zero");
        }
        stamp(b.bytes_mut(), 9);
        assert_eq!(a.stats().live_blocks, 1);
        b.resize(&a, size, layout(0, align), false).unwrap();
        assert_eq!(b.len, 0);
        let s = a.stats();
        assert_eq!((s.live_blocks, s.large_blocks), (0, 0), "{size}: {s:?}");
        b.free(&a);
    }
    assert_quiet(&a);
    assert_eq!(a.stats().allocs, 4);
}
