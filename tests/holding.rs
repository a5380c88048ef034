//! The holding contract (src/magazine.rs, src/pool_core/home.rs): a free
//! of another thread's block is refused at once if double, else counted as
//! freed and held in the freeing thread's magazine of the pool (a thread
//! that never allocated there takes a heap for it). A full magazine sends
//! home, grouped by slab, its older half — or all of it if the thread
//! allocated nothing since it last made room; the rest comes home on
//! `flush_remote_frees()`, `trim()`, or thread exit. A thread never holds
//! more than its magazine's cap. Every block is stamped and checked.

use std::sync::mpsc;
use std::thread;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::{flush_remote_frees, Pool, PoolBox, SlabAlloc};

/// Blocks a magazine holds by default.
const CAP: usize = 32;
/// What a full magazine of a thread that only frees sends home: all of it.
const SENT: usize = CAP;

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

/// Checks that every freed block of `pool` is home: `n` blocks fit again in
/// what is mapped (none stranded), no slot is handed out twice, and each
/// keeps what it was given.
fn assert_all_home(pool: &Pool<[u64; 8]>, n: usize, what: &str) {
    let mapped = pool.stats().mapped_bytes;
    let again: Vec<_> = (0..n as u64)
        .map(|i| pool.alloc(stamp(i)).unwrap())
        .collect();
    let mut distinct = addrs(&again);
    distinct.dedup();
    assert_eq!(distinct.len(), n, "{what}a slot was handed out twice");
    assert_eq!(
        pool.stats().mapped_bytes,
        mapped,
        "{what}blocks were stranded"
    );
    for (i, b) in again.iter().enumerate() {
        assert_eq!(**b, stamp(i as u64), "{what}block {i}");
    }
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
fn a_thread_that_only_frees_sends_its_full_magazine_home_and_the_rest_on_flush() {
    let n = CAP + 8;
    let pool = one_slab_pool(n);
    let blocks: Vec<_> = (0..n as u64)
        .map(|i| pool.alloc(stamp(i)).unwrap())
        .collect();
    let older: Vec<usize> = blocks[..SENT]
        .iter()
        .map(|b| &**b as *const _ as usize)
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
        go_rx.recv().unwrap(); // stay alive, holding the rest
        flush_remote_frees();
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    let s = pool.stats();
    // Every free is counted at once; the freer holds what it did not send
    // home: 40 frees, of which the 33rd found the magazine full and, the
    // thread having allocated nothing, sent all 32 home.
    assert_eq!(
        (s.remote_frees, s.live_blocks, s.held_blocks),
        (n as u64, 0, (n - SENT) as u64),
        "{s:?}"
    );
    let first: Vec<_> = (0..SENT as u64)
        .map(|i| pool.alloc(stamp(100 + i)).unwrap())
        .collect();
    assert_eq!(pool.stats().overflow_allocs, 0, "the first 32 are home");
    let mut got = addrs(&first);
    let mut want = older.clone();
    want.sort_unstable();
    assert_eq!(got, want, "exactly the oldest frees came home");
    let extra = pool.alloc(stamp(999)).unwrap();
    assert_eq!(
        pool.stats().overflow_allocs,
        1,
        "held blocks must not come home yet"
    );
    go_tx.send(()).unwrap();
    done_rx.recv().unwrap();
    assert_eq!(pool.stats().held_blocks, 0, "the flush sent everything");
    let rest: Vec<_> = (0..(n - SENT) as u64)
        .map(|i| pool.alloc(stamp(200 + i)).unwrap())
        .collect();
    assert_eq!(pool.stats().overflow_allocs, 1, "flushed frees are home");
    let mut all: Vec<_> = first.into_iter().chain(rest).collect();
    got = addrs(&all);
    assert_eq!(got, home, "every home slot back, none twice");
    for (i, b) in all.iter().enumerate() {
        let id = if i < SENT { 100 + i } else { 200 + i - SENT };
        assert_eq!(**b, stamp(id as u64));
    }
    all.clear();
    // The first of those (this thread's own) frees stays in its hot slot.
    // An overflow block freed here: this thread owns a heap of the pool, so
    // it holds the block, counted as freed at once.
    drop(extra);
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.held_blocks), (0, 2), "{s:?}");
    go_tx.send(()).unwrap();
    freer.join().unwrap();
    assert_eq!(pool.stats().live_blocks, 0);
}

#[test]
fn a_thread_never_holds_more_than_its_magazine() {
    for cap in [0, 1, 5, CAP, 64] {
        let pool: Pool<[u64; 8]> = Pool::builder()
            .slab_capacity(16)
            .magazine(cap)
            .build()
            .unwrap();
        let n = 16 * 12;
        let blocks: Vec<_> = (0..n as u64)
            .map(|i| pool.alloc(stamp(i)).unwrap())
            .collect();
        let p = pool.clone();
        thread::spawn(move || {
            // Interleaving the slabs, so what goes home spans several.
            let mut order: Vec<_> = blocks.into_iter().enumerate().collect();
            order.sort_by_key(|(i, _)| (i % 16, *i));
            for (k, (i, b)) in order.into_iter().enumerate() {
                assert_eq!(*b, stamp(i as u64));
                drop(b);
                let s = p.stats();
                assert!(s.held_blocks as usize <= cap, "cap {cap}: {s:?}");
                assert_eq!(s.remote_frees, k as u64 + 1, "cap {cap}: {s:?}");
            }
            flush_remote_frees();
            assert_eq!(p.stats().held_blocks, 0);
        })
        .join()
        .unwrap();
        let s = pool.stats();
        assert_eq!((s.live_blocks, s.held_blocks), (0, 0), "cap {cap}: {s:?}");
        assert_all_home(&pool, n, &format!("cap {cap}: "));
    }
}

#[test]
fn held_frees_come_home_at_thread_exit() {
    let pool = one_slab_pool(5);
    let blocks: Vec<_> = (0..5u64).map(|i| pool.alloc(stamp(i)).unwrap()).collect();
    let home = addrs(&blocks);
    thread::spawn(move || drop(blocks)).join().unwrap();
    let again: Vec<_> = (0..5u64).map(|i| pool.alloc(stamp(i)).unwrap()).collect();
    assert_eq!(pool.stats().overflow_allocs, 0, "the exit sent them home");
    assert_eq!(addrs(&again), home);
}

#[test]
fn trim_sends_home_what_the_calling_thread_holds() {
    let pool: Pool<[u64; 8]> = Pool::builder().slab_capacity(CAP).build().unwrap();
    // This thread takes its heap first (else, its registry slot being the
    // exited worker's, it would adopt the worker's heap and free as owner).
    let warm = pool.alloc(stamp(u64::MAX)).unwrap();
    // A worker allocates less than a magazine's worth (so nothing is sent
    // home on the way) and exits: its heap is orphaned with one slab in use.
    let p = pool.clone();
    let blocks = thread::spawn(move || {
        (0..CAP as u64 - 1)
            .map(|i| p.alloc(stamp(i)).unwrap())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    for (i, b) in blocks.into_iter().enumerate() {
        assert_eq!(*b, stamp(i as u64));
        drop(b); // remote, held in this thread's magazine
    }
    let s = pool.stats();
    assert_eq!(
        (s.remote_frees, s.live_blocks, s.held_blocks),
        (CAP as u64 - 1, 1, CAP as u64 - 1),
        "counted as freed, held: {s:?}"
    );
    assert_eq!(s.mapped_bytes, 2 * s.slab_bytes, "{s:?}");
    pool.trim();
    let s = pool.stats();
    assert_eq!(
        (s.mapped_bytes, s.live_blocks, s.held_blocks),
        (s.slab_bytes, 1, 0),
        "trim sent them home, then released the orphan's slab: {s:?}"
    );
    assert_eq!(*warm, stamp(u64::MAX));
    drop(warm);
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0);
}

#[test]
fn frees_across_many_slabs_and_double_free_while_held() {
    // More slabs and more blocks than a magazine holds: every block comes
    // back exactly once; a double free of a held block is refused.
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
    // thread-local destructors (which send their magazines home) have run,
    // so scoped threads flush explicitly.
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
            free(raw[1]); // still held in this thread's magazine: refused
            raw.iter().skip(3).step_by(2).for_each(|&a| free(a));
            flush_remote_frees();
        });
    });
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.double_frees), (0, 1), "{s:?}");
    // A double free that got through would put one slot on a freelist twice.
    assert_all_home(&pool, n, "");
}

/// The hot slot: a thread's own free that finds the slot empty is kept for
/// its next allocation (before the magazine and the slabs); a second free
/// of that block, on this thread or another, is refused; the flush, `trim`
/// and the thread's exit put it back on its slab; a pool without holding
/// (`magazine(0)`) has no hot slot.
#[test]
fn the_hot_slot_keeps_the_last_own_free_and_refuses_it_twice() {
    let addr = |b: &PoolBox<[u64; 8]>| &**b as *const _ as usize;
    for hardened in [false, true] {
        let pool = Pool::<[u64; 8]>::builder()
            .hardened(hardened)
            .build()
            .unwrap();
        let a = pool.alloc(stamp(1)).unwrap();
        let b = pool.alloc(stamp(2)).unwrap();
        let at = addr(&a);
        let raw = PoolBox::into_raw(a);
        let free = |p: usize| {
            let p = core::ptr::NonNull::new(p as *mut [u64; 8]).unwrap();
            // SAFETY: a block of `pool`, given up by `into_raw`; frees after
            // the first are the double frees under test, which are refused.
            drop(unsafe { PoolBox::from_raw(p) });
        };
        free(raw.as_ptr() as usize);
        let s = pool.stats();
        assert_eq!((s.live_blocks, s.held_blocks), (1, 1), "{s:?}");
        free(at);
        thread::scope(|sc| {
            sc.spawn(|| {
                free(at);
                flush_remote_frees();
            });
        });
        let s = pool.stats();
        assert_eq!(
            (s.live_blocks, s.held_blocks, s.double_frees),
            (1, 1, 2),
            "{s:?}"
        );
        // The next allocation takes the hot block back.
        let c = pool.alloc(stamp(3)).unwrap();
        assert_eq!(addr(&c), at);
        assert_eq!(*c, stamp(3));
        assert_eq!(pool.stats().held_blocks, 0);
        // The flush puts a hot block back on its slab: a slot is handed
        // out once, whatever the order.
        drop(b);
        assert_eq!(pool.stats().held_blocks, 1);
        flush_remote_frees();
        assert_eq!(pool.stats().held_blocks, 0);
        let again: Vec<_> = (0..500u64).map(|i| pool.alloc(stamp(i)).unwrap()).collect();
        let mut all: Vec<usize> = again.iter().map(addr).chain([addr(&c)]).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 501, "a slot handed out twice");
        drop(again);
        drop(c);
        // `trim` puts it back too, and then every slab can go.
        assert_eq!(pool.stats().held_blocks, 1);
        pool.trim();
        let s = pool.stats();
        assert_eq!(
            (s.held_blocks, s.live_blocks, s.mapped_bytes),
            (0, 0, 0),
            "{s:?}"
        );
        // A thread that exits with a hot block leaves nothing held (`join`
        // waits for its exit, thread-local destructors included).
        let p = pool.clone();
        thread::spawn(move || drop(p.alloc(stamp(9)).unwrap()))
            .join()
            .unwrap();
        let s = pool.stats();
        assert_eq!((s.held_blocks, s.live_blocks), (0, 0), "{s:?}");
        pool.trim();
        assert_eq!(pool.stats().mapped_bytes, 0);
    }
    let off = Pool::<[u64; 8]>::builder().magazine(0).build().unwrap();
    drop(off.alloc(stamp(1)).unwrap());
    assert_eq!(off.stats().held_blocks, 0, "{:?}", off.stats());
}

/// A `SlabAlloc`'s heaps keep no hot slot: an owner's free goes straight
/// back to its slab's freelist (nothing held), the next allocation of the
/// class takes it from there, and a second free of it is refused.
#[test]
fn a_slab_alloc_owner_free_goes_straight_to_its_slab() {
    for hardened in [false, true] {
        let a = SlabAlloc::builder().hardened(hardened).build().unwrap();
        let l = std::alloc::Layout::from_size_align(64, 8).unwrap();
        let keep = a.allocate(l).unwrap().cast::<u8>();
        let p = a.allocate(l).unwrap().cast::<u8>();
        // SAFETY: a block of `a` with layout `l`, freed once here.
        unsafe { a.deallocate(p, l) };
        let s = a.stats();
        assert_eq!((s.live_blocks, s.held_blocks), (1, 0), "{s:?}");
        // SAFETY: the same block again: the double free under test, refused.
        unsafe { a.deallocate(p, l) };
        assert_eq!(a.stats().double_frees, 1);
        let q = a.allocate(l).unwrap().cast::<u8>();
        assert_eq!(q, p, "the slab's freelist is last in, first out");
        // SAFETY: live blocks of `a` with layout `l`.
        unsafe {
            a.deallocate(q, l);
            a.deallocate(keep, l);
        }
        let s = a.stats();
        assert_eq!((s.live_blocks, s.held_blocks), (0, 0), "{s:?}");
    }
}
