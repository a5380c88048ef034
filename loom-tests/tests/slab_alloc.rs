//! Loom models of `SlabAlloc` on the production types: blocks of two size
//! classes freed on the other thread (the class lookup on both sides of a
//! remote free), and the large path — two threads allocating and freeing
//! large blocks while one block is freed twice at once (exactly one free
//! may win, the other is refused and counted).
#![cfg(loom)]

use homeslab::allocator_api2::alloc::{Allocator, Layout};
use homeslab::SlabAlloc;
use loom::thread;

/// loom's model runner with room for a `stats()` call, which reads the
/// counters of all 52 heaps of each heap set (each a branch point for loom).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.check(f);
}

fn allocator() -> SlabAlloc {
    SlabAlloc::builder()
        .max_thread_slabs(1)
        .magazine(0)
        .build()
        .unwrap()
}

/// Allocates `layout`, fills it with `tag`, returns its address.
fn fill(a: &SlabAlloc, layout: Layout, tag: u8) -> usize {
    let p = a.allocate(layout).expect("allocation");
    assert!(p.len() >= layout.size());
    assert_eq!(p.cast::<u8>().as_ptr() as usize % layout.align(), 0);
    // SAFETY: the block is ours, at least `layout.size()` bytes.
    unsafe { p.cast::<u8>().as_ptr().write_bytes(tag, layout.size()) };
    p.cast::<u8>().as_ptr() as usize
}

/// Checks the block at `addr` still holds `tag`, then frees it.
fn check_free(a: &SlabAlloc, addr: usize, layout: Layout, tag: u8) {
    let p = addr as *mut u8;
    // SAFETY: the block is live and ours, `layout.size()` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(p, layout.size()) };
    assert!(bytes.iter().all(|&b| b == tag), "block corrupted");
    // SAFETY: allocated from `a` with `layout`, freed once.
    unsafe { a.deallocate(core::ptr::NonNull::new(p).unwrap(), layout) };
}

#[test]
fn two_classes_freed_across_threads() {
    model(|| {
        let a = allocator();
        let small = Layout::from_size_align(24, 8).unwrap();
        let aligned = Layout::from_size_align(100, 256).unwrap();
        let x = fill(&a, small, 1);
        let b = a.clone();
        let t = thread::spawn(move || {
            let y = fill(&b, aligned, 2);
            // Remote: `x` belongs to the main thread's heap.
            check_free(&b, x, small, 1);
            homeslab::flush_remote_frees();
            y
        });
        let y = t.join().unwrap();
        // Remote the other way.
        check_free(&a, y, aligned, 2);
        homeslab::flush_remote_frees();
        let s = a.stats();
        assert_eq!(
            (s.live_blocks, s.double_frees, s.foreign_frees),
            (0, 0, 0),
            "{s:?}"
        );
    });
}

#[test]
fn large_blocks_race_a_double_free() {
    model(|| {
        let a = allocator();
        // Above the largest class (256 KiB): an arena span.
        let big = Layout::from_size_align(300_000, 8).unwrap();
        let huge_align = Layout::from_size_align(64, 8192).unwrap();
        let x = fill(&a, big, 3);
        let b = a.clone();
        let t = thread::spawn(move || {
            let y = fill(&b, huge_align, 4);
            // SAFETY: `x` is a live large block of this allocator (or was:
            // a second free is refused by the table, not read).
            unsafe { b.deallocate(core::ptr::NonNull::new(x as *mut u8).unwrap(), big) };
            y
        });
        // SAFETY: as above; one of the two frees of `x` must be refused.
        unsafe { a.deallocate(core::ptr::NonNull::new(x as *mut u8).unwrap(), big) };
        let y = t.join().unwrap();
        check_free(&a, y, huge_align, 4);
        let s = a.stats();
        assert_eq!(s.live_blocks, 0, "{s:?}");
        assert_eq!(s.foreign_frees, 1, "exactly one free of x refused: {s:?}");
        assert_eq!((s.large_blocks, s.large_bytes), (0, 0), "{s:?}");
    });
}
