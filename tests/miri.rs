//! Tests sized for Miri (`cargo +nightly miri test --test miri`), which
//! checks the unsafe code for undefined behaviour: out-of-bounds and
//! use-after-free accesses, misaligned or dangling pointers, data races
//! between threads, and memory leaked at exit. Under `cfg(miri)` the page
//! source is heap-backed, and the loops below run a few dozen operations
//! instead of thousands. The same tests run (bigger) in a normal
//! `cargo test`.
//!
//! Every block is stamped with an id and a checksum when allocated and
//! checked when freed.

use std::sync::mpsc;
use std::thread;

use homeslab::{Pool, PoolBox};

/// Scales an operation count down under Miri.
const fn ops(normal: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        normal
    }
}

/// An id and a checksum derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    id: u64,
    check: u64,
}

fn checksum(id: u64) -> u64 {
    let x = id ^ 0x9e37_79b9_7f4a_7c15;
    let x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

impl Stamp {
    fn new(id: u64) -> Self {
        Self {
            id,
            check: checksum(id),
        }
    }

    #[track_caller]
    fn verify(&self, id: u64) {
        assert_eq!(*self, Stamp::new(id), "block corrupted or handed out twice");
    }
}

fn small_pool() -> Pool<Stamp> {
    Pool::<Stamp>::builder().slab_capacity(4).build().unwrap()
}

#[track_caller]
fn assert_clean<T>(pool: &Pool<T>) {
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    assert_eq!(s.allocs, s.frees, "{s:?}");
    assert_eq!(s.double_frees, 0, "{s:?}");
    assert_eq!(s.foreign_frees, 0, "{s:?}");
    assert_eq!(s.corruption_events, 0, "{s:?}");
}

/// Owner-only alloc/free cycles across several slabs, in both link modes:
/// pops, local pushes, bump allocation, slab turnover and empty-slab caching.
#[test]
fn local_alloc_free_cycles() {
    for hardened in [false, true] {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(4)
            .hardened(hardened)
            .build()
            .unwrap();
        let mut live: Vec<(PoolBox<Stamp>, u64)> = Vec::new();
        let mut id = 0;
        for round in 0..ops(200, 40) {
            for _ in 0..(round % 7 + 1) {
                id += 1;
                live.push((pool.alloc(Stamp::new(id)).unwrap(), id));
            }
            // Free every other block, oldest first: holes in several slabs.
            let mut keep = Vec::new();
            for (i, (b, id)) in live.drain(..).enumerate() {
                if i % 2 == 0 {
                    b.verify(id);
                } else {
                    keep.push((b, id));
                }
            }
            live = keep;
        }
        for (b, id) in live {
            b.verify(id);
        }
        assert_clean(&pool);
    }
}

/// Values with destructors and heap buffers: each dropped exactly once,
/// whether freed on the owner, remotely, or moved out with `into_inner`.
#[test]
fn drop_values_local_remote_and_into_inner() {
    let pool = Pool::<String>::builder().slab_capacity(2).build().unwrap();
    let n = ops(100, 40);
    let mut boxes: Vec<PoolBox<String>> =
        (0..n).map(|i| pool.alloc(i.to_string()).unwrap()).collect();
    let remote: Vec<PoolBox<String>> = boxes.split_off(n / 2);
    let moved = PoolBox::into_inner(boxes.pop().unwrap());
    assert_eq!(moved, (n / 2 - 1).to_string());
    thread::spawn(move || {
        for (i, b) in remote.into_iter().enumerate() {
            assert_eq!(*b, (n / 2 + i).to_string());
        }
    })
    .join()
    .unwrap();
    drop(boxes);
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    assert_eq!(s.remote_frees, (n - n / 2) as u64, "{s:?}");
}

/// Producer/consumer: blocks allocated on two threads and freed on a third
/// (every free remote, racing with the owners' drains). Miri's data-race
/// detector checks the hand-off of links and slot states.
#[test]
fn remote_frees_race_owner_drains() {
    let pool = Pool::<Stamp>::builder()
        .slab_capacity(4)
        .hardened(true)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<(PoolBox<Stamp>, u64)>();
    let per = ops(2_000, 200) as u64;
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let pool = pool.clone();
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..per {
                    let id = p * per + i;
                    tx.send((pool.alloc(Stamp::new(id)).unwrap(), id)).unwrap();
                    // Keep allocating while the consumer frees: drains race
                    // with pushes.
                    let local = pool.alloc(Stamp::new(u64::MAX - id)).unwrap();
                    local.verify(u64::MAX - id);
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = thread::spawn(move || {
        let mut n = 0;
        for (b, id) in rx {
            b.verify(id);
            n += 1;
        }
        n
    });
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 2 * per);
    let s = pool.stats();
    assert_clean(&pool);
    // Remote unless the consumer adopted an exited producer's heap.
    assert!(s.remote_frees <= 2 * per, "{s:?}");
}

/// Full slabs with remote frees: the owner detaches a dry slab and a remote
/// freer hands it back through the returned queue. (No magazine: it would
/// serve the next allocations from the blocks freed last round.)
#[test]
fn full_slab_returned_by_remote_free() {
    let pool = Pool::<Stamp>::builder()
        .magazine(0)
        .slab_capacity(1)
        .max_thread_slabs(2)
        .build()
        .unwrap();
    for round in 0..ops(50, 20) as u64 {
        let a = pool.alloc(Stamp::new(round)).unwrap();
        let b = pool.alloc(Stamp::new(round + 1000)).unwrap();
        // Both slabs full: this one detaches them and goes to the tier.
        let c = pool.alloc(Stamp::new(round + 2000)).unwrap();
        thread::spawn(move || {
            a.verify(round);
            b.verify(round + 1000);
        })
        .join()
        .unwrap();
        // Both home slots come back (no new slab, no tier allocation).
        let before = pool.stats().overflow_allocs;
        let d = pool.alloc(Stamp::new(1)).unwrap();
        let e = pool.alloc(Stamp::new(2)).unwrap();
        assert_eq!(pool.stats().overflow_allocs, before);
        c.verify(round + 2000);
        d.verify(1);
        e.verify(2);
    }
    assert_clean(&pool);
}

/// Owners exit while other threads still hold their blocks; the late frees
/// land in orphaned heaps, and the pool ends clean (Miri also reports any
/// memory leaked at exit).
#[test]
fn owners_exit_with_live_blocks() {
    let pool = small_pool();
    let mut held = Vec::new();
    for t in 0..ops(8, 6) as u64 {
        let p = pool.clone();
        let blocks = thread::spawn(move || {
            (0..6u64)
                .map(|i| (p.alloc(Stamp::new(t * 100 + i)).unwrap(), t * 100 + i))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        held.extend(blocks);
    }
    let half = held.split_off(held.len() / 2);
    let freer = thread::spawn(move || {
        for (b, id) in half {
            b.verify(id);
        }
    });
    for (b, id) in held {
        b.verify(id);
    }
    freer.join().unwrap();
    assert_clean(&pool);
    // The orphans' free slots serve new threads.
    let p = pool.clone();
    thread::spawn(move || {
        let v: Vec<_> = (0..8).map(|i| p.alloc(Stamp::new(i)).unwrap()).collect();
        for (i, b) in v.iter().enumerate() {
            b.verify(i as u64);
        }
    })
    .join()
    .unwrap();
    assert_clean(&pool);
    pool.trim();
}

/// Every thread allocates from the shared overflow tier (locked growth,
/// lock-free frees), two threads at once.
#[test]
fn overflow_tier_two_threads() {
    let pool = Pool::<Stamp>::builder()
        .slab_capacity(2)
        .max_thread_heaps(0)
        .build()
        .unwrap();
    let n = ops(300, 100) as u64;
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            let pool = pool.clone();
            thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..n {
                    mine.push((pool.alloc(Stamp::new(t << 32 | i)).unwrap(), t << 32 | i));
                    if i % 3 == 2 {
                        let (b, id) = mine.swap_remove(0);
                        b.verify(id);
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().unwrap());
    }
    for (b, id) in all {
        b.verify(id);
    }
    let s = pool.stats();
    assert_eq!(s.overflow_allocs, 2 * n, "{s:?}");
    assert_eq!(s.thread_heaps, 0, "{s:?}");
    assert_clean(&pool);
}

/// `trim()` on one thread while others allocate and free: released regions
/// are never touched again, and a final trim gives everything back.
#[test]
fn trim_races_allocation() {
    let pool = Pool::<Stamp>::builder()
        .slab_capacity(2)
        .max_thread_heaps(1)
        .build()
        .unwrap();
    let n = ops(200, 60) as u64;
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            let pool = pool.clone();
            thread::spawn(move || {
                for i in 0..n {
                    let v: Vec<_> = (0..3)
                        .map(|k| pool.alloc(Stamp::new(t * n + i * 3 + k)).unwrap())
                        .collect();
                    for (k, b) in v.into_iter().enumerate() {
                        b.verify(t * n + i * 3 + k as u64);
                    }
                }
            })
        })
        .collect();
    let trimmer = {
        let pool = pool.clone();
        thread::spawn(move || {
            for _ in 0..ops(50, 20) {
                pool.trim();
                thread::yield_now();
            }
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    trimmer.join().unwrap();
    assert_clean(&pool);
}

/// Blocks outlive every pool handle: the pool closes when its last block goes
/// (freed on the owner and on another thread).
#[test]
fn blocks_outlive_the_pool() {
    let pool = small_pool();
    let a = pool.alloc(Stamp::new(1)).unwrap();
    let b = pool.alloc(Stamp::new(2)).unwrap();
    drop(pool);
    a.verify(1);
    thread::spawn(move || b.verify(2)).join().unwrap();
}

/// Raw round trips, foreign pointers and double frees through `from_raw_in`
/// are refused and counted, never dereferenced out of bounds.
#[test]
fn raw_pointers_checked() {
    let pool = small_pool();
    let other = small_pool();
    let a = pool.alloc(Stamp::new(7)).unwrap();
    let raw = PoolBox::into_raw(a);
    // SAFETY: `raw` came from `into_raw` and no box owns it.
    let back = unsafe { PoolBox::from_raw_in(&pool, raw) }.unwrap();
    back.verify(7);
    let keep = other.alloc(Stamp::new(8)).unwrap();
    let foreign = PoolBox::into_raw(keep);
    // SAFETY: `foreign` is not a block of `pool`: refused and counted.
    assert!(unsafe { PoolBox::from_raw_in(&pool, foreign) }.is_err());
    let stale = PoolBox::into_raw(back);
    // SAFETY: reclaiming our own block once.
    drop(unsafe { PoolBox::from_raw_in(&pool, stale) }.unwrap());
    // SAFETY: the block is free now: refused, not freed twice.
    assert!(unsafe { PoolBox::from_raw_in(&pool, stale) }.is_err());
    assert_eq!(pool.stats().foreign_frees, 2);
    // SAFETY: `foreign` is `other`'s live block, owned by no box.
    drop(unsafe { PoolBox::from_raw_in(&other, foreign) }.unwrap());
    assert_clean(&other);
}

/// `SlabAlloc` under Miri: blocks of several classes and alignments and a
/// large block, written, grown, shrunk, freed on another thread; a double
/// free refused. Checks the size-classed paths (run-time slot division,
/// in-place resizing, the large table) for undefined behaviour.
#[test]
fn slab_alloc_classes_large_and_remote_frees() {
    use homeslab::allocator_api2::alloc::{Allocator, Layout};
    use homeslab::SlabAlloc;
    let a = SlabAlloc::new();
    // The last is large (aligned above 4096); 40 000 bytes a medium class.
    let layouts = [
        (24, 8),
        (100, 64),
        (700, 256),
        (5000, 4096),
        (40_000, 8),
        (64, 8192),
    ];
    let mut blocks = Vec::new();
    for (i, &(size, align)) in layouts.iter().enumerate() {
        let l = Layout::from_size_align(size, align).unwrap();
        let p = a.allocate_zeroed(l).unwrap().cast::<u8>();
        // SAFETY: the block is ours, at least `size` bytes, zeroed.
        unsafe {
            assert_eq!(*p.as_ptr().add(size - 1), 0);
            p.as_ptr().write_bytes(i as u8 + 1, size);
        }
        blocks.push((p, l, i as u8 + 1));
    }
    // Grow the first within its class (in place) and the second across.
    let (p0, l0, t0) = blocks[0];
    let l0b = Layout::from_size_align(30, 8).unwrap();
    // SAFETY: `p0` was allocated with `l0`; `l0b` is larger.
    let g = unsafe { a.grow(p0, l0, l0b) }.unwrap().cast::<u8>();
    assert_eq!(g, p0, "24 → 30 bytes stays in the 32-byte class");
    // SAFETY: the block is ours, now 30 bytes.
    unsafe { g.as_ptr().add(24).write_bytes(t0, 6) };
    blocks[0] = (g, l0b, t0);
    let (p1, l1, t1) = blocks[1];
    let l1b = Layout::from_size_align(300, 64).unwrap();
    // SAFETY: as above.
    let g = unsafe { a.grow(p1, l1, l1b) }.unwrap().cast::<u8>();
    // SAFETY: the first 100 bytes were kept.
    assert_eq!(unsafe { *g.as_ptr().add(99) }, t1);
    // SAFETY: the grown tail is ours.
    unsafe { g.as_ptr().add(100).write_bytes(t1, 200) };
    blocks[1] = (g, l1b, t1);
    let b = a.clone();
    let sent: Vec<(usize, Layout, u8)> = blocks
        .iter()
        .map(|&(p, l, t)| (p.as_ptr() as usize, l, t))
        .collect();
    thread::spawn(move || {
        for (addr, l, t) in sent {
            let p = addr as *mut u8;
            // SAFETY: a live block of `b`'s allocator, `l.size()` bytes.
            unsafe {
                assert!(core::slice::from_raw_parts(p, l.size())
                    .iter()
                    .all(|&x| x == t));
                b.deallocate(core::ptr::NonNull::new(p).unwrap(), l);
            }
        }
    })
    .join()
    .unwrap();
    let s = a.stats();
    assert_eq!((s.live_blocks, s.large_blocks), (0, 0), "{s:?}");
    // A double free of a large block is refused without reading it.
    let l = Layout::from_size_align(100, 8192).unwrap();
    let p = a.allocate(l).unwrap().cast::<u8>();
    // SAFETY: allocated with `l`; the second free is refused by design.
    unsafe {
        a.deallocate(p, l);
        a.deallocate(p, l);
    }
    assert_eq!(a.stats().foreign_frees, 1);
    assert!(a.trim() > 0);
}

/// `ObjectPool` under Miri: objects with heap buffers got, reused,
/// released on another thread, refused by `keep_if`, and dropped when the
/// pool closes (Miri's leak check at exit sees any buffer left behind).
#[test]
fn object_pool_reuse_and_remote_release() {
    use homeslab::ObjectPool;
    let p: ObjectPool<Vec<u8>> = ObjectPool::builder(|| Vec::with_capacity(32))
        .reset(|v: &mut Vec<u8>| v.clear())
        .keep_if(|v: &Vec<u8>| v.capacity() <= 64)
        .slab_capacity(4)
        .build()
        .unwrap();
    let mut held = Vec::new();
    for i in 0..ops(64, 6) {
        let mut v = p.get().unwrap();
        assert!(v.is_empty());
        v.extend_from_slice(&(i as u64).to_le_bytes());
        if i % 3 == 0 {
            v.reserve(200); // refused on release
        }
        held.push(v);
    }
    let q = p.clone();
    thread::spawn(move || {
        drop(held);
        let again = q.get().unwrap();
        assert!(again.is_empty());
    })
    .join()
    .unwrap();
    let s = p.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    assert_eq!(
        s.objects_constructed,
        s.objects_destroyed + s.objects_cached,
        "{s:?}"
    );
    drop(p);
}
