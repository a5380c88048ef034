//! The remote-free batching contract (src/batch.rs): a remote free is
//! refused at once if double, but its block reaches the owner — and is
//! counted as freed — only when the freeing thread publishes its batch:
//! when a chain fills (32 blocks), on `flush_remote_frees()`, `trim()`, an
//! allocation slow path, or thread exit. Every block is stamped and checked.

use std::sync::mpsc;
use std::thread;

use homeslab::{flush_remote_frees, Pool, PoolBox};

/// Blocks a batch entry gathers before it publishes itself.
const CHAIN: usize = 32;

fn stamp(id: u64) -> [u64; 8] {
    let mut v = [0u64; 8];
    for (i, w) in v.iter_mut().enumerate() {
        *w = id.rotate_left(i as u32 * 8) ^ 0xa5a5_5a5a_0f0f_f0f0;
    }
    v
}

fn addrs(v: &[PoolBox<[u64; 8]>]) -> Vec<usize> {
    let mut a: Vec<usize> = v.iter().map(|b| &**b as *const _ as usize).collect();
    a.sort_unstable();
    a
}

/// One slab of `cap` slots per heap, so that any allocation the home slab
/// cannot serve shows up as an overflow allocation.
fn one_slab_pool(cap: usize) -> Pool<[u64; 8]> {
    Pool::builder()
        .slab_capacity(cap)
        .max_thread_slabs(1)
        .build()
        .unwrap()
}

#[test]
fn held_frees_come_home_on_flush() {
    let cap = CHAIN + 8;
    let pool = one_slab_pool(cap);
    let blocks: Vec<_> = (0..cap as u64)
        .map(|i| pool.alloc(stamp(i)).unwrap())
        .collect();
    let home = addrs(&blocks);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let freer = thread::spawn(move || {
        for (i, b) in blocks.into_iter().enumerate() {
            assert_eq!(*b, stamp(i as u64), "block {i} corrupted");
            drop(b);
        }
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap(); // stay alive, batch unpublished
        flush_remote_frees();
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    let s = pool.stats();
    // The first full chain (32 blocks) was published; the last 8 are held,
    // still live.
    assert_eq!((s.remote_frees, s.live_blocks), (CHAIN as u64, 8), "{s:?}");
    let first: Vec<_> = (0..CHAIN as u64)
        .map(|i| pool.alloc(stamp(100 + i)).unwrap())
        .collect();
    assert_eq!(
        pool.stats().overflow_allocs,
        0,
        "the published chain is home"
    );
    let extra = pool.alloc(stamp(999)).unwrap();
    assert_eq!(
        pool.stats().overflow_allocs,
        1,
        "held frees must not be visible yet"
    );
    go_tx.send(()).unwrap();
    done_rx.recv().unwrap();
    let s = pool.stats();
    assert_eq!(
        (s.remote_frees, s.live_blocks),
        (cap as u64, CHAIN as u64 + 1),
        "{s:?}"
    );
    let rest: Vec<_> = (0..8u64)
        .map(|i| pool.alloc(stamp(200 + i)).unwrap())
        .collect();
    assert_eq!(pool.stats().overflow_allocs, 1, "flushed frees are home");
    let mut got: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(addrs(&got), home, "every home slot back, none twice");
    for (i, b) in got.iter().enumerate() {
        let id = if i < CHAIN { 100 + i } else { 200 + i - CHAIN };
        assert_eq!(**b, stamp(id as u64));
    }
    got.clear();
    // An overflow block: a remote free, held in this thread's batch, which
    // `stats` publishes first.
    drop(extra);
    assert_eq!(pool.stats().live_blocks, 0);
    go_tx.send(()).unwrap();
    freer.join().unwrap();
    assert_eq!(pool.stats().live_blocks, 0);
}

#[test]
fn held_frees_come_home_at_thread_exit() {
    let pool = one_slab_pool(5);
    let blocks: Vec<_> = (0..5u64).map(|i| pool.alloc(stamp(i)).unwrap()).collect();
    let home = addrs(&blocks);
    thread::spawn(move || drop(blocks)).join().unwrap();
    let again: Vec<_> = (0..5u64).map(|i| pool.alloc(stamp(i)).unwrap()).collect();
    assert_eq!(pool.stats().overflow_allocs, 0, "exit published the batch");
    assert_eq!(addrs(&again), home);
}

#[test]
fn trim_publishes_the_calling_threads_batch() {
    let pool: Pool<[u64; 8]> = Pool::builder().slab_capacity(CHAIN).build().unwrap();
    // A worker allocates a chain's worth less one (so nothing fills a chain)
    // and exits: its heap is orphaned with one slab in use.
    let p = pool.clone();
    let blocks = thread::spawn(move || {
        (0..CHAIN as u64 - 1)
            .map(|i| p.alloc(stamp(i)).unwrap())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    for (i, b) in blocks.into_iter().enumerate() {
        assert_eq!(*b, stamp(i as u64));
        drop(b); // remote, held in this thread's batch
    }
    // Read from another thread: `stats` would publish this thread's batch.
    let s = thread::scope(|sc| sc.spawn(|| pool.stats()).join().unwrap());
    assert_eq!(
        (s.remote_frees, s.live_blocks),
        (0, CHAIN as u64 - 1),
        "held, not yet counted as freed: {s:?}"
    );
    assert!(s.mapped_bytes > 0);
    pool.trim();
    let s = pool.stats();
    assert_eq!(
        (s.mapped_bytes, s.live_blocks, s.remote_frees),
        (0, 0, CHAIN as u64 - 1),
        "trim published the batch, then released the slab: {s:?}"
    );
}

#[test]
fn frees_across_many_slabs_and_double_free_while_held() {
    // More slabs than batch ways and more blocks than a chain: every block
    // comes back exactly once; a double free of a held block is refused.
    let pool: Pool<[u64; 8]> = Pool::builder().slab_capacity(16).build().unwrap();
    let n = 16 * 20; // 20 slabs
    let blocks: Vec<_> = (0..n as u64)
        .map(|i| pool.alloc(stamp(i)).unwrap())
        .collect();
    let raw: Vec<usize> = blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            assert_eq!(*b, stamp(i as u64));
            PoolBox::into_raw(b).as_ptr() as usize
        })
        .collect();
    let free = |a: usize| {
        let p = std::ptr::NonNull::new(a as *mut [u64; 8]).unwrap();
        // SAFETY: `a` came from `into_raw` of this pool; the one deliberate
        // second free below is what the test checks is refused.
        drop(unsafe { PoolBox::from_raw(p) });
    };
    // `thread::scope` returns when the closures return, before the threads'
    // thread-local destructors (which publish their batches) have run, so
    // scoped threads publish explicitly.
    thread::scope(|sc| {
        // Every other block, interleaving the 20 slabs.
        sc.spawn(|| {
            raw.iter().step_by(2).for_each(|&a| free(a));
            flush_remote_frees();
        });
    });
    let s = pool.stats();
    assert_eq!(
        (s.remote_frees, s.live_blocks),
        (n as u64 / 2, n as u64 / 2)
    );
    thread::scope(|sc| {
        sc.spawn(|| {
            free(raw[1]);
            free(raw[1]); // still held in this thread's batch: refused
            raw.iter().skip(3).step_by(2).for_each(|&a| free(a));
            flush_remote_frees();
        });
    });
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.double_frees), (0, 1), "{s:?}");
    // Everything is home: the same number of blocks fits in what is mapped,
    // and no slot is handed out twice (a double free that got through would
    // put one slot on a freelist twice).
    let mapped = s.mapped_bytes;
    let again: Vec<_> = (0..n as u64)
        .map(|i| pool.alloc(stamp(i)).unwrap())
        .collect();
    let got = addrs(&again);
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), n, "a slot was handed out twice");
    assert_eq!(pool.stats().mapped_bytes, mapped, "blocks were stranded");
    for (i, b) in again.iter().enumerate() {
        assert_eq!(**b, stamp(i as u64));
    }
}
