//! Proof that the AddressSanitizer run (`.ci/sanitizers.sh`) sees inside
//! homeslab's own mappings. Each test makes one mistake that ASan (or
//! LeakSanitizer) must report; the script runs each alone, built with
//! `-Zsanitizer=address --cfg homeslab_asan`, and requires it to *fail*
//! with the report it names in its `ignore` reason. Ignored everywhere
//! else: without ASan these mistakes go unseen (which is the point).

use std::ptr::{read_volatile, write_volatile, NonNull};

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::{Pool, PoolBox, SlabAlloc};

type Block = [u64; 8];

/// Reads the first word of a block that is no longer ours.
fn touch(p: NonNull<Block>) -> u64 {
    // SAFETY: none: this is the mistake ASan must catch.
    unsafe { read_volatile(p.as_ptr().cast::<u64>()) }
}

#[test]
#[ignore = "expects ASan: use-after-poison"]
fn use_after_local_free_is_reported() {
    let pool = Pool::<Block>::new();
    let p = PoolBox::into_raw(pool.alloc([1; 8]).unwrap());
    // SAFETY: `p` came from `into_raw`; freed once, on its owner thread.
    drop(unsafe { PoolBox::from_raw(p) });
    println!("read {} after free: NOT DETECTED", touch(p));
}

#[test]
#[ignore = "expects ASan: use-after-poison"]
fn use_after_remote_free_is_reported() {
    let pool = Pool::<Block>::new();
    let b = pool.alloc([2; 8]).unwrap();
    let p = NonNull::from(&*b);
    // Freed on another thread: a remote free (published at its exit).
    std::thread::spawn(move || drop(b)).join().unwrap();
    println!("read {} after a remote free: NOT DETECTED", touch(p));
}

#[test]
#[ignore = "expects ASan: use-after-poison"]
fn write_into_the_next_free_slot_is_reported() {
    let pool = Pool::<Block>::new();
    let b = pool.alloc([3; 8]).unwrap();
    let next = NonNull::from(&*b).as_ptr().wrapping_add(1);
    // SAFETY: none: one block past the end, a slot never handed out.
    unsafe { write_volatile(next.cast::<u64>(), 7) };
    println!("wrote past a block: NOT DETECTED");
}

#[test]
#[ignore = "expects ASan: use-after-poison"]
fn slab_alloc_use_after_free_is_reported() {
    let a = SlabAlloc::new();
    let l = std::alloc::Layout::from_size_align(48, 8).unwrap();
    let p = a.allocate(l).unwrap().cast::<u8>();
    // SAFETY: a live block and its layout.
    unsafe { a.deallocate(p, l) };
    println!("read {} after free: NOT DETECTED", touch(p.cast()));
}
