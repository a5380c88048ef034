//! The magazine layer: what a thread holds back (bounded, counted), reuse
//! of other threads' blocks, double frees of held blocks, and every
//! way held blocks go home — flush, trim and the close from other threads,
//! the idle sweep, thread exit — with stamped blocks checked throughout.

mod common;

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{assert_distinct, Item, Ledger};
use homeslab::{ObjectPool, Pool, PoolBox};

static NO_DROPS: AtomicUsize = AtomicUsize::new(0);

fn pool(magazine: usize, hardened: bool) -> Pool<Item> {
    Pool::builder()
        .magazine(magazine)
        .hardened(hardened)
        .build()
        .unwrap()
}

fn addr<T>(b: &PoolBox<T>) -> usize {
    &**b as *const T as usize
}

/// Blocks a magazine of `cap` holds after `n` frees by a thread that
/// allocated before them, not between: the first time it is full it keeps
/// its newer half (the thread allocated since its heap was new); after
/// that, nothing allocated since, it sends all of it home.
fn held_after(n: usize, cap: usize) -> usize {
    if cap == 0 {
        return 0;
    }
    let mut held = 0;
    let mut first = true;
    for _ in 0..n {
        if held == cap {
            held -= if first { cap.div_ceil(2) } else { cap };
            first = false;
        }
        held += 1;
    }
    held
}

#[test]
fn a_thread_holds_at_most_its_magazine_and_reuses_the_newest() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let ledger = Ledger::new(&DROPS);
    for cap in [0, 1, 8, 64] {
        let p = pool(cap, false);
        // An owner's own frees go back to their slab, but for the first,
        // which its hot slot keeps (none when holding is off) until the
        // flush puts it back.
        let own: Vec<_> = (0..100).map(|_| ledger.alloc(&p).unwrap()).collect();
        own.into_iter().for_each(|m| ledger.retire(m));
        let hot = u64::from(cap != 0);
        assert_eq!(p.stats().held_blocks, hot, "{:?}", p.stats());
        homeslab::flush_remote_frees();
        assert_eq!(p.stats().held_blocks, 0, "{:?}", p.stats());
        let blocks: Vec<_> = (0..500).map(|_| ledger.alloc(&p).unwrap()).collect();
        let freed: Vec<usize> = blocks.iter().map(common::addr).collect();
        thread::scope(|s| {
            s.spawn(|| {
                // A heap in the pool, so the frees below can be held.
                let warm = ledger.alloc(&p).unwrap();
                for m in blocks {
                    ledger.retire(m);
                }
                let s = p.stats();
                let held = held_after(500, cap);
                assert!(held <= cap);
                assert_eq!(s.held_blocks, held as u64, "{s:?}");
                assert_eq!(s.live_blocks, 1, "held blocks count as freed: {s:?}");
                // The magazine kept the newest frees (the older went home);
                // the next allocation takes the newest, the ones after it
                // the thread's own slab while that has room.
                let again: Vec<_> = (0..3).map(|_| ledger.alloc(&p).unwrap()).collect();
                let got: Vec<usize> = again.iter().map(common::addr).collect();
                let reused = usize::from(held != 0);
                assert_eq!(got[..reused], freed[499..499 + reused]);
                assert!(got[reused..].iter().all(|a| !freed.contains(a)), "{got:?}");
                assert_eq!(p.stats().held_blocks, (held - reused) as u64);
                for m in again {
                    ledger.retire(m);
                }
                ledger.retire(warm);
                homeslab::flush_remote_frees();
                let s = p.stats();
                assert_eq!((s.held_blocks, s.live_blocks), (0, 0), "{s:?}");
            });
        });
        p.trim();
        // Every slab but this thread's current one went back: none stayed
        // pinned by a held block.
        let s = p.stats();
        assert!(
            s.mapped_bytes <= s.slab_bytes,
            "flushed blocks went home: {s:?}"
        );
    }
    ledger.assert_clean();
}

#[test]
fn the_magazine_setting_is_checked() {
    assert!(Pool::<u64>::builder().magazine(64).build().is_ok());
    let err = Pool::<u64>::builder().magazine(65).build().unwrap_err();
    assert!(err.to_string().contains("magazine"), "{err}");
}

/// A free of another thread's block lands in the freeing thread's magazine
/// (counted as a remote free): the block freed last serves that thread's
/// next allocation, the others its allocations once its slabs are full,
/// before it takes a new one.
#[test]
fn a_remote_free_is_reused_by_the_thread_that_freed_it() {
    let p = Arc::new(
        Pool::builder()
            .magazine(8)
            .slab_capacity(2)
            .max_thread_slabs(1)
            .build()
            .unwrap(),
    );
    let mine: Vec<PoolBox<Item>> = (0..4)
        .map(|i| p.alloc(Item::new(i, &NO_DROPS)).unwrap())
        .collect();
    let addrs: Vec<usize> = mine.iter().map(addr).collect();
    let p2 = Arc::clone(&p);
    let reused = thread::spawn(move || {
        // Own a heap first, so the frees below can be held; its slab keeps
        // one free slot.
        let warm = p2.alloc(Item::new(99, &NO_DROPS)).unwrap();
        drop(mine);
        let s = p2.stats();
        assert_eq!((s.held_blocks, s.remote_frees), (4, 4), "{s:?}");
        let again: Vec<_> = (0..5)
            .map(|i| p2.alloc(Item::new(10 + i, &NO_DROPS)).unwrap())
            .collect();
        let got: Vec<usize> = again.iter().map(addr).collect();
        drop((warm, again));
        got
    })
    .join()
    .unwrap();
    assert_eq!(reused[0], addrs[3], "the block freed last, at once");
    assert!(!addrs.contains(&reused[1]), "then the thread's own slab");
    let rest: HashSet<usize> = reused[2..].iter().copied().collect();
    assert_eq!(
        rest,
        addrs[..3].iter().copied().collect(),
        "then the magazine"
    );
    let s = p.stats();
    assert_eq!(
        (s.live_blocks, s.held_blocks),
        (0, 0),
        "exit flushed: {s:?}"
    );
}

/// A block in a magazine is not free to be freed again: the second free is
/// refused and counted whichever thread makes it, in both modes.
#[test]
fn a_held_block_cannot_be_freed_again() {
    for hardened in [false, true] {
        let p = Arc::new(Pool::<u64>::builder().hardened(hardened).build().unwrap());
        let keep = p.alloc(1).unwrap();
        for (first_remote, second_remote) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let raw = PoolBox::into_raw(p.alloc(7).unwrap()).as_ptr() as usize;
            let free = |remote: bool| {
                let p = Arc::clone(&p);
                let f = move || {
                    let _warm = p.alloc(0).unwrap(); // a heap, so a magazine
                                                     // SAFETY: `u64` has no drop glue; the second free is the
                                                     // double free under test, which must be refused.
                    drop(unsafe { PoolBox::from_raw(NonNull::new(raw as *mut u64).unwrap()) });
                    homeslab::flush_remote_frees();
                };
                if remote {
                    thread::spawn(f).join().unwrap();
                } else {
                    f();
                }
            };
            let before = p.stats().double_frees;
            free(first_remote);
            free(second_remote);
            let s = p.stats();
            assert_eq!(
                s.double_frees,
                before + 1,
                "{hardened} {first_remote} {second_remote}: {s:?}"
            );
            assert_eq!(s.live_blocks, 1, "{s:?}");
            // And the pool still hands out distinct blocks.
            let blocks: Vec<_> = (0..200).map(|i| p.alloc(i).unwrap()).collect();
            let set: HashSet<usize> = blocks.iter().map(addr).collect();
            assert_eq!(set.len(), blocks.len());
        }
        assert_eq!(*keep, 1);
    }
}

/// An idle thread's magazine is taken by another thread's `trim`; the idle
/// thread then carries on with a consistent magazine.
#[test]
fn trim_on_another_thread_takes_an_idle_threads_magazine() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let p = Arc::new(pool(32, false));
    let ledger = Ledger::new(&DROPS);
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (blocks_tx, blocks_rx) = mpsc::channel();
    let worker = {
        let (p, ledger) = (Arc::clone(&p), Arc::clone(&ledger));
        thread::spawn(move || {
            let warm = ledger.alloc(&p).unwrap();
            // Blocks of the main thread's heap: held here.
            let blocks: Vec<_> = blocks_rx.recv().unwrap();
            blocks.into_iter().for_each(|m| ledger.retire(m));
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap(); // idle while the main thread trims
            let blocks: Vec<_> = (0..100).map(|_| ledger.alloc(&p).unwrap()).collect();
            assert_distinct(&blocks);
            blocks.into_iter().for_each(|m| ledger.retire(m));
            ledger.retire(warm);
        })
    };
    // As many as the magazine holds: none takes the remote path.
    let blocks: Vec<_> = (0..32).map(|_| ledger.alloc(&p).unwrap()).collect();
    blocks_tx.send(blocks).unwrap();
    held_rx.recv().unwrap();
    assert_eq!(p.stats().held_blocks, 32);
    p.trim();
    let s = p.stats();
    assert_eq!((s.held_blocks, s.live_blocks), (0, 1), "{s:?}");
    go_tx.send(()).unwrap();
    worker.join().unwrap();
    ledger.assert_clean();
    let s = p.stats();
    assert_eq!((s.held_blocks, s.live_blocks), (0, 0), "{s:?}");
}

/// The idle sweep: once `release_after` has passed, a slow path of any
/// thread takes the magazines of the others.
#[test]
fn an_idle_threads_magazine_is_swept_after_release_after() {
    let period = Duration::from_millis(40);
    let p = Arc::new(
        Pool::<[u64; 8]>::builder()
            .release_after(Some(period))
            .build()
            .unwrap(),
    );
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (blocks_tx, blocks_rx) = mpsc::channel();
    let worker = {
        let p = Arc::clone(&p);
        thread::spawn(move || {
            let warm = p.alloc([0; 8]).unwrap();
            // Blocks of the main thread's heap: held here.
            drop(blocks_rx.recv().unwrap());
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop(warm);
        })
    };
    blocks_tx
        .send(
            (0..100)
                .map(|i| p.alloc([i; 8]).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap();
    held_rx.recv().unwrap();
    assert_eq!(p.stats().held_blocks, held_after(100, 32) as u64);
    // Sleep waits at least this long, so the sweep is due below.
    thread::sleep(2 * period);
    // Enough allocations to reach the sweep: a slow path (a new slab) reads
    // the clock every eighth time.
    let capacity = p.stats().slab_capacity as usize;
    let mine: Vec<_> = (0..10 * capacity)
        .map(|i| p.alloc([i as u64; 8]).unwrap())
        .collect();
    let s = p.stats();
    assert_eq!(
        s.held_blocks, 0,
        "the idle thread's magazine was swept: {s:?}"
    );
    drop(mine);
    go_tx.send(()).unwrap();
    worker.join().unwrap();
}

/// After the close, threads' magazines are off: what they free goes home at
/// once and the pool's memory (here, its cached objects) is released.
#[test]
fn the_close_empties_and_turns_off_every_magazine() {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Obj(#[allow(dead_code)] [u64; 4]);
    impl Drop for Obj {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let p: ObjectPool<Obj> = ObjectPool::builder(|| {
        MADE.fetch_add(1, Ordering::Relaxed);
        Obj([0; 4])
    })
    .build()
    .unwrap();
    let start = Arc::new(Barrier::new(2));
    let closed = Arc::new(Barrier::new(2));
    let worker = {
        let (p, start, closed) = (p.clone(), Arc::clone(&start), Arc::clone(&closed));
        thread::spawn(move || {
            let later: Vec<_> = (0..100).map(|_| p.get().unwrap()).collect();
            // Objects of a heap whose thread has exited: freed here, the
            // newest held in this thread's magazine.
            let objs = thread::scope(|s| {
                s.spawn(|| (0..100).map(|_| p.get().unwrap()).collect::<Vec<_>>())
                    .join()
                    .unwrap()
            });
            drop(objs);
            assert_eq!(p.stats().held_blocks, held_after(100, 32) as u64);
            drop(p);
            start.wait();
            closed.wait();
            drop(later); // into a closed pool: straight home
            homeslab::flush_remote_frees();
            // Before this thread exits (which would flush it anyway).
            assert_eq!(
                MADE.load(Ordering::Relaxed),
                DROPPED.load(Ordering::Relaxed),
                "every cached object was dropped: no slab stayed pinned"
            );
        })
    };
    start.wait();
    drop(p); // the last handle: the close
    closed.wait();
    worker.join().unwrap();
    homeslab::flush_remote_frees();
    assert_eq!(
        MADE.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
        "every cached object was dropped: no slab stayed pinned"
    );
}

/// Larson through the magazines, with `trim` stealing from the working
/// threads all along: stamped blocks, none lost, none handed out twice.
fn larson_with_steals(hardened: bool, drops: &'static AtomicUsize) {
    const THREADS: usize = 3;
    const LIVE: usize = 300;
    const ROUNDS: usize = 60;
    let p = Arc::new(pool(16, hardened));
    let ledger = Ledger::new(drops);
    let done = Arc::new(AtomicBool::new(false));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<Vec<common::Msg>>())
        .unzip();
    let mut rxs: Vec<_> = rxs.into_iter().map(Some).collect();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, ledger) = (Arc::clone(&p), Arc::clone(&ledger));
            let tx = txs[(t + 1) % THREADS].clone();
            let rx = rxs[t].take().unwrap();
            thread::spawn(move || {
                let mut rng = common::mix(t as u64 + 1);
                let mut set: Vec<_> = (0..LIVE).map(|_| ledger.alloc(&p).unwrap()).collect();
                for _ in 0..ROUNDS {
                    for _ in 0..LIVE {
                        rng = common::mix(rng);
                        let i = rng as usize % LIVE;
                        let fresh = ledger.alloc(&p).unwrap();
                        ledger.retire(std::mem::replace(&mut set[i], fresh));
                    }
                    assert_distinct(&set);
                    tx.send(set).unwrap();
                    set = rx.recv().unwrap();
                }
                set.into_iter().for_each(|m| ledger.retire(m));
            })
        })
        .collect();
    drop(txs);
    let thief = {
        let (p, done) = (Arc::clone(&p), Arc::clone(&done));
        thread::spawn(move || {
            let mut trims = 0;
            while !done.load(Ordering::Relaxed) {
                p.trim();
                trims += 1;
                thread::yield_now();
            }
            trims
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(thief.join().unwrap() > 0);
    ledger.assert_clean();
    let s = p.stats();
    assert_eq!((s.live_blocks, s.held_blocks), (0, 0), "{s:?}");
    assert_eq!(
        (s.double_frees, s.foreign_frees, s.corruption_events),
        (0, 0, 0),
        "{s:?}"
    );
    p.trim();
    assert_eq!(p.stats().mapped_bytes, 0, "{:?}", p.stats());
}

#[test]
fn larson_with_steals_plain() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    larson_with_steals(false, &DROPS);
}

#[test]
fn larson_with_steals_hardened() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    larson_with_steals(true, &DROPS);
}
