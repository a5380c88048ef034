//! Frees the allocator refuses and counts, never acting on them: double
//! frees (local, still held, sent home, from a third thread), blocks of
//! other allocators, pools and classes, interior and header pointers, and
//! large-block double frees and bogus pointers.

use std::collections::HashSet;
use std::ptr::NonNull;
use std::thread;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::{flush_remote_frees, Pool, PoolBox, SlabAlloc};

use crate::blocks::{assert_quiet, assert_stamped, layout, still_works, Block, KIB, MIB};

/// A double free of a class block is refused and counted, and the block is
/// never handed out twice: while its slab has other live blocks, when it
/// was the slab's last block (the slab cached empty), and when the empty
/// slab went back to the page source.
#[test]
fn double_free_of_a_class_block_is_refused() {
    for hardened in [false, true] {
        for retained in [4, 0] {
            let a = SlabAlloc::builder()
                .hardened(hardened)
                .retained_empty_slabs(retained)
                .release_after(None)
                .build()
                .unwrap();
            let what = format!("hardened {hardened} retained {retained}");
            // The slab keeps another live block.
            let l = layout(48, 8);
            let keep = Block::stamped(&a, l, 1);
            let b = Block::stamped(&a, l, 2);
            let (p, bl) = (b.ptr, b.layout);
            b.free(&a);
            // SAFETY: `p` is a freed block of `a` whose slab is still in use
            // (`keep` lives): a double free, refused without acting on it.
            unsafe { a.deallocate(p, bl) };
            assert_eq!(a.stats().double_frees, 1, "{what}");
            assert_eq!(a.stats().live_blocks, 1, "{what}");
            // The only block of its slab (a class used by nothing else).
            let l2 = layout(20_000, 8);
            let c = Block::stamped(&a, l2, 3);
            let q = c.ptr;
            c.free(&a);
            // SAFETY: `q`'s slab is empty, cached or back in the page
            // source, but its region stays mapped (nothing was trimmed): the
            // header check reads it and refuses the double free.
            unsafe { a.deallocate(q, l2) };
            let s = a.stats();
            assert_eq!(s.double_frees + s.foreign_frees, 2, "{what}: {s:?}");
            assert_eq!(s.live_blocks, 1, "{what}: {s:?}");
            // Neither block comes out twice.
            for (l, p) in [(l, p.as_ptr() as usize), (l2, q.as_ptr() as usize)] {
                let blocks: Vec<Block> = (0..600).map(|i| Block::stamped(&a, l, i)).collect();
                let addrs: HashSet<usize> = blocks.iter().map(Block::addr).collect();
                assert_eq!(
                    addrs.len(),
                    blocks.len(),
                    "{what}: a block was handed out twice"
                );
                assert!(
                    !addrs.contains(&keep.addr()),
                    "{what}: a live block was handed out"
                );
                assert!(
                    addrs.contains(&p),
                    "{what}: the freed block was never reused"
                );
                for (i, b) in blocks.into_iter().enumerate() {
                    assert_stamped(b.bytes(), i as u64, &what);
                    b.free(&a);
                }
            }
            assert_stamped(keep.bytes(), 1, &what);
            keep.free(&a);
            let s = a.stats();
            assert_eq!(
                (s.live_blocks, s.double_frees + s.foreign_frees),
                (0, 2),
                "{what}: {s:?}"
            );
            still_works(&a, 400, &[]);
        }
    }
}

/// Double frees on another thread: the second free of a block still held
/// in that thread's magazine, again after it went home, and again from a
/// third thread. All refused; the block comes back once.
#[test]
fn remote_double_free_is_refused() {
    for hardened in [false, true] {
        let a = SlabAlloc::builder().hardened(hardened).build().unwrap();
        let l = layout(64, 8);
        let keep = Block::stamped(&a, l, 1);
        let b = Block::stamped(&a, l, 2);
        let (p, bl) = (b.addr(), b.layout);
        let freer = a.clone();
        thread::spawn(move || {
            b.free(&freer);
            let p = NonNull::new(p as *mut u8).unwrap();
            // SAFETY: `p` was just freed on this thread and is held in its
            // magazine (its slab lives: `keep`): a double free, refused.
            unsafe { freer.deallocate(p, bl) };
            flush_remote_frees();
            // SAFETY: as above, after the block went home.
            unsafe { freer.deallocate(p, bl) };
        })
        .join()
        .unwrap();
        let s = a.stats();
        assert_eq!(s.double_frees, 2, "hardened {hardened}: {s:?}");
        assert_eq!((s.live_blocks, s.remote_frees), (1, 1), "{s:?}");
        let other = a.clone();
        thread::spawn(move || {
            let p = NonNull::new(p as *mut u8).unwrap();
            // SAFETY: as above; the slab's region is mapped and in use.
            unsafe { other.deallocate(p, bl) };
        })
        .join()
        .unwrap();
        let s = a.stats();
        assert_eq!(s.double_frees, 3, "{s:?}");
        assert_eq!(s.live_blocks, 1, "{s:?}");
        let blocks: Vec<Block> = (0..2000).map(|i| Block::stamped(&a, l, i)).collect();
        let addrs: HashSet<usize> = blocks.iter().map(Block::addr).collect();
        assert_eq!(addrs.len(), blocks.len(), "a block was handed out twice");
        assert!(!addrs.contains(&keep.addr()));
        assert!(addrs.contains(&p), "the freed block never came back");
        for (i, b) in blocks.into_iter().enumerate() {
            assert_stamped(b.bytes(), i as u64, "after remote double frees");
            b.free(&a);
        }
        assert_stamped(keep.bytes(), 1, "kept block");
        keep.free(&a);
        assert_eq!(a.stats().live_blocks, 0);
        still_works(&a, 300, &[]);
    }
}

/// A block of another `SlabAlloc` (same class), of a `Pool`, or of another
/// class of the same allocator, freed here: refused and counted in
/// `foreign_frees`; the block stays intact and usable by its owner.
#[test]
fn pointers_of_another_allocator_or_class_are_refused() {
    let a = SlabAlloc::new();
    let b = SlabAlloc::new();
    let l = layout(256, 16);
    let mine = Block::stamped(&a, l, 1);
    let theirs = Block::stamped(&b, l, 2);
    // SAFETY: `theirs` is a live block of `b`, not `a`; its slab region is
    // mapped, so `a` reads the header, sees another allocator's slab, and
    // refuses.
    unsafe { a.deallocate(theirs.ptr, l) };
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.foreign_frees, 1, "{sa:?}");
    assert_eq!((sa.live_blocks, sa.frees), (1, 0), "{sa:?}");
    assert_eq!(
        (sb.foreign_frees, sb.live_blocks, sb.frees),
        (0, 1, 0),
        "{sb:?}"
    );
    // `theirs` is still `b`'s: never handed out again while live.
    let more: Vec<Block> = (0..500).map(|i| Block::stamped(&b, l, 100 + i)).collect();
    assert!(more.iter().all(|m| m.addr() != theirs.addr()));
    assert_stamped(theirs.bytes(), 2, "the other allocator's block");
    for (i, m) in more.into_iter().enumerate() {
        assert_stamped(m.bytes(), 100 + i as u64, "other allocator");
        m.free(&b);
    }
    theirs.free(&b);
    assert_quiet(&b);

    // A `Pool` block of the same size.
    let pool = Pool::<[u64; 32]>::new();
    let pb = pool.alloc([7; 32]).unwrap();
    let raw = PoolBox::into_raw(pb);
    // SAFETY: a live pool block (its region is mapped): not `a`'s, refused.
    unsafe { a.deallocate(raw.cast(), l) };
    assert_eq!(a.stats().foreign_frees, 2);
    // SAFETY: `raw` came from `into_raw` of `pool` and nothing freed it.
    let pb = unsafe { PoolBox::from_raw_in(&pool, raw) }.unwrap();
    assert_eq!(*pb, [7; 32]);
    drop(pb);
    assert_eq!(pool.stats().live_blocks, 0);

    // A block of this allocator freed with another class's layout (both
    // classes use 16 KiB regions, so the header read stays in the region).
    let c = Block::stamped(&a, layout(64, 8), 3);
    // SAFETY: `c` is live in `a` but of the 64-byte class, not the 16-byte
    // one: the class's header check refuses it.
    unsafe { a.deallocate(c.ptr, layout(16, 8)) };
    let s = a.stats();
    assert_eq!((s.foreign_frees, s.live_blocks), (3, 2), "{s:?}");
    assert_stamped(c.bytes(), 3, "block freed with the wrong class");
    still_works(&a, 400, &[c.addr(), mine.addr()]);
    c.free(&a);
    assert_stamped(mine.bytes(), 1, "own block");
    mine.free(&a);
    let s = a.stats();
    assert_eq!(
        (s.live_blocks, s.double_frees, s.foreign_frees),
        (0, 0, 3),
        "{s:?}"
    );
}

/// Pointers into the middle of a block, or at its slab's header, are
/// refused as foreign; the block stays live and intact.
#[test]
fn interior_and_header_pointers_are_refused() {
    for hardened in [false, true] {
        let a = SlabAlloc::builder().hardened(hardened).build().unwrap();
        let mut refused = 0;
        // 48 bytes: a stride that is not a power of two; 64: one that is.
        for size in [48, 64] {
            let l = layout(size, 8);
            let b = Block::stamped(&a, l, size as u64);
            let neighbour = Block::stamped(&a, l, 1000 + size as u64);
            let mut bad: Vec<usize> = [1, 8, 16, size - 1].iter().map(|d| b.addr() + d).collect();
            // The slab header: both classes use 16 KiB regions.
            bad.push(b.addr() & !(16 * KIB - 1));
            let frees = a.stats().frees;
            for p in bad {
                // SAFETY: `p` lies inside a mapped slab region of `a` but
                // is not the start of a block: refused as foreign.
                unsafe { a.deallocate(NonNull::new(p as *mut u8).unwrap(), l) };
                refused += 1;
                let s = a.stats();
                assert_eq!(
                    s.foreign_frees,
                    refused,
                    "size {size} +{:#x}: {s:?}",
                    p - b.addr()
                );
                assert_eq!(s.frees, frees, "{s:?}");
            }
            assert_stamped(b.bytes(), size as u64, "block after interior frees");
            assert_stamped(neighbour.bytes(), 1000 + size as u64, "neighbour");
            still_works(&a, 300, &[b.addr(), neighbour.addr()]);
            b.free(&a);
            neighbour.free(&a);
        }
        let s = a.stats();
        assert_eq!((s.live_blocks, s.double_frees), (0, 0), "{s:?}");
    }
}

/// Large blocks: a double free, a pointer no mapping starts at, a pointer
/// into a live mapping, and a class block freed with a large layout are
/// all refused (looked up, never read) and counted in `foreign_frees`.
#[test]
fn large_double_free_and_bogus_pointers_are_refused() {
    let a = SlabAlloc::new();
    let l = layout(300 * KIB, 8);
    let b = Block::stamped(&a, l, 1);
    let p = b.ptr;
    b.free(&a);
    // SAFETY: `p` was a large block of `a`, already freed: the table has no
    // mapping there, so the free is refused; the memory is not read.
    unsafe { a.deallocate(p, l) };
    let s = a.stats();
    assert_eq!(
        (s.foreign_frees, s.large_blocks, s.live_blocks),
        (1, 0, 0),
        "{s:?}"
    );

    let live = Block::stamped(&a, layout(400 * KIB, 8), 2);
    let small = Block::stamped(&a, layout(64, 8), 3);
    let bogus = [
        (0x7f00_dead_0000, layout(MIB, 8)),
        (0x7f00_dead_0000, layout(16, 8192)),
        (live.addr() + 4096, layout(400 * KIB, 8)),
        (live.addr() + 8, layout(400 * KIB, 8)),
        (small.addr(), layout(300 * KIB, 8)),
    ];
    for (i, &(p, l)) in bogus.iter().enumerate() {
        // SAFETY: no large block of `a` starts at `p`: looked up in the
        // table and refused, never dereferenced.
        unsafe { a.deallocate(NonNull::new(p as *mut u8).unwrap(), l) };
        let s = a.stats();
        assert_eq!(s.foreign_frees, 2 + i as u64, "{p:#x} {l:?}: {s:?}");
        assert_eq!((s.live_blocks, s.large_blocks), (2, 1), "{s:?}");
    }
    assert_stamped(live.bytes(), 2, "live large block");
    assert_stamped(small.bytes(), 3, "class block freed as large");
    still_works(&a, 300, &[live.addr(), small.addr()]);
    live.free(&a);
    small.free(&a);
    let s = a.stats();
    assert_eq!(
        (s.live_blocks, s.large_blocks, s.large_bytes),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!((s.double_frees, s.foreign_frees), (0, 6), "{s:?}");
}
