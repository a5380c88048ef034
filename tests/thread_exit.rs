//! Thread exit: short-lived threads, owners that exit while their blocks are
//! still being freed elsewhere, heap reuse by new threads, boxes that outlive
//! every pool handle, and allocation from thread-local destructors.
//!
//! Every block is stamped with a unique id and a checksum when allocated and
//! checked when freed (see `Ledger`): zero lost, duplicated or corrupted.
//!
//! The tests in this file run one at a time (`serial`): several of them
//! bound memory by the number of threads alive at once, and thread ids (hence
//! heap slots) are shared by every thread of the process.

use std::cell::RefCell;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use homeslab::Pool;

mod common;
use common::*;

/// Runs this file's tests one at a time, each on a thread of its own that
/// is joined (so done with its process-wide thread slot) before the next
/// test starts.
fn serial(body: fn()) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(panic) = std::thread::spawn(body).join() {
        std::panic::resume_unwind(panic);
    }
}

// ------------------------------------------------------ short-lived threads

#[test]
fn ten_thousand_short_lived_threads_stay_bounded() {
    serial(ten_thousand_short_lived_threads_stay_bounded_body);
}

fn ten_thousand_short_lived_threads_stay_bounded_body() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    const THREADS: usize = 10_000;
    /// Workers alive at once.
    const WAVE: usize = 4;
    const PER_THREAD: usize = 4;
    /// Blocks queued to the freer at most.
    const IN_FLIGHT: usize = 64;

    let start = Instant::now();
    let pool = Pool::<Item>::new();
    let ledger = Ledger::new(&DROPS);
    let slab = pool.stats().slab_bytes;
    let capacity = pool.stats().slab_capacity as usize;
    // Blocks live at any moment: those the workers hold, those queued, and
    // the one the freer holds.
    assert!(WAVE * PER_THREAD + IN_FLIGHT + 1 < capacity);
    // The bound. At most WAVE workers and the freer touch the pool at once
    // (and, the tests being serial, no other thread of the process holds a
    // thread slot), so at most WAVE + 1 thread slots, hence heaps, are ever
    // used: a new worker takes over an exited thread's slot and heap, slab
    // included. The freer never allocates, but the slot it takes may hold an
    // exited worker's heap and slab (it stays an orphan, reachable by the
    // tier and by trim). Since fewer blocks are live than a slab holds, a
    // slab never runs dry after draining its remote frees: each heap needs
    // one slab. So mapped_bytes <= (WAVE + 1) * slab_bytes, against up to
    // THREADS * slab_bytes if exited threads' slabs were stranded.
    let bound = (WAVE as u64 + 1) * slab;

    let (tx, rx) = mpsc::sync_channel::<Msg>(IN_FLIGHT);
    let freer = {
        let ledger = ledger.clone();
        std::thread::spawn(move || {
            for m in rx {
                ledger.retire(m);
            }
        })
    };
    for _ in 0..THREADS / WAVE {
        let wave: Vec<_> = (0..WAVE)
            .map(|_| {
                let (pool, ledger, tx) = (pool.clone(), ledger.clone(), tx.clone());
                std::thread::spawn(move || {
                    for _ in 0..PER_THREAD {
                        tx.send(ledger.alloc(&pool).unwrap()).unwrap();
                    }
                })
            })
            .collect();
        for h in wave {
            h.join().unwrap();
        }
        let s = pool.stats();
        assert!(
            s.mapped_bytes <= bound,
            "mapped {} > bound {bound}: {s:?}",
            s.mapped_bytes
        );
        // Only the freer is alive: at most the heap it takes, at its first
        // free, to hold its frees.
        assert!(s.thread_heaps <= 1, "{s:?}");
    }
    drop(tx);
    freer.join().unwrap();

    let s = pool.stats();
    println!(
        "{THREADS} threads in {:?}; peak mapped {} (bound {bound}); {s:?}",
        start.elapsed(),
        s.peak_mapped_bytes
    );
    ledger.assert_clean();
    assert!(s.peak_mapped_bytes <= bound);
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.allocs, (THREADS * PER_THREAD) as u64);
    // Every free was remote unless the freer, taking a heap at its first
    // free, adopted an exited owner's orphan (its registry slot's heap).
    assert!(s.remote_frees <= s.allocs, "{s:?}");
    assert_eq!(s.thread_heaps, 0);
    assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0, "{:?}", pool.stats());
}

// ------------------------------------------- owner exit, remote frees later

/// An owner thread allocates `n` blocks on small slabs (so some are full and
/// detached), deals them to `freers` threads, and exits. With `wait`, the
/// freers start only after the owner has been joined; without it they free
/// while the owner is still allocating and exiting.
fn owner_exits_before_frees(rounds: usize, n: usize, freers: usize, wait: bool) {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let pool = Pool::<Item>::builder().slab_capacity(16).build().unwrap();
    let ledger = Ledger::new(&DROPS);
    for _ in 0..rounds {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..freers).map(|_| mpsc::channel::<Msg>()).unzip();
        let (go_txs, go_rxs): (Vec<_>, Vec<_>) = (0..freers).map(|_| mpsc::channel::<()>()).unzip();
        let freer_handles: Vec<_> = rxs
            .into_iter()
            .zip(go_rxs)
            .map(|(rx, go)| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    if wait {
                        go.recv().unwrap();
                    }
                    for m in rx {
                        ledger.retire(m);
                    }
                })
            })
            .collect();
        let owner = {
            let (pool, ledger) = (pool.clone(), ledger.clone());
            std::thread::spawn(move || {
                for i in 0..n {
                    txs[i % txs.len()]
                        .send(ledger.alloc(&pool).unwrap())
                        .unwrap();
                }
                // Exits holding nothing; its slabs hold `n` live blocks.
            })
        };
        owner.join().unwrap();
        if wait {
            for go in go_txs {
                go.send(()).unwrap();
            }
        }
        for h in freer_handles {
            h.join().unwrap();
        }
    }
    ledger.assert_clean();
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    assert_eq!(s.allocs, (rounds * n) as u64);
    // A freer that takes a heap may adopt an exited owner's orphan (its
    // registry slot's heap) and free into it as the owner.
    assert!(s.remote_frees <= s.allocs, "{s:?}");
    assert_eq!(s.thread_heaps, 0);
    assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
    let released = pool.trim();
    let after = pool.stats();
    println!("rounds {rounds} wait {wait}: trim released {released}; {after:?}");
    assert_eq!(after.mapped_bytes, 0, "orphaned slabs came back: {after:?}");
}

#[test]
fn owner_exits_before_its_blocks_are_freed() {
    serial(owner_exits_before_its_blocks_are_freed_body);
}

fn owner_exits_before_its_blocks_are_freed_body() {
    owner_exits_before_frees(1, 2_000, 2, true);
}

#[test]
fn owner_exits_while_remote_frees_race() {
    serial(owner_exits_while_remote_frees_race_body);
}

fn owner_exits_while_remote_frees_race_body() {
    // Each round's owner likely takes over the previous owner's heap while
    // its remote frees are still arriving.
    owner_exits_before_frees(20, 500, 3, false);
}

// ----------------------------------------------------------- heap reuse

#[test]
fn new_threads_reuse_exited_heaps() {
    serial(new_threads_reuse_exited_heaps_body);
}

fn new_threads_reuse_exited_heaps_body() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    const THREADS: usize = 200;
    let pool = Pool::<Item>::new();
    let ledger = Ledger::new(&DROPS);
    let slab = pool.stats().slab_bytes;
    assert!(THREADS < pool.stats().slab_capacity as usize);
    let mut kept = Vec::new();
    for _ in 0..THREADS {
        let (pool2, ledger2) = (pool.clone(), ledger.clone());
        let m = std::thread::spawn(move || {
            let m = ledger2.alloc(&pool2).unwrap();
            // Some local churn too.
            for _ in 0..10 {
                let x = ledger2.alloc(&pool2).unwrap();
                ledger2.retire(x);
            }
            assert_eq!(
                pool2.stats().thread_heaps,
                1,
                "only this thread owns a heap"
            );
            m
        })
        .join()
        .unwrap();
        kept.push(m);
        let s = pool.stats();
        assert_eq!(s.thread_heaps, 0, "{s:?}");
        // Each thread left a live block behind. Had it not inherited the
        // previous thread's heap (and slab), each would have mapped a slab.
        assert_eq!(s.mapped_bytes, slab, "{s:?}");
    }
    for m in kept {
        ledger.retire(m);
    }
    ledger.assert_clean();
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.peak_mapped_bytes, slab, "{s:?}");
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0);
}

// ------------------------------------------------ boxes outlive the pool

#[test]
fn boxes_outlive_every_pool_handle() {
    serial(boxes_outlive_every_pool_handle_body);
}

fn boxes_outlive_every_pool_handle_body() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let unowned = Pool::<Item>::unowned_frees();
    let ledger = Ledger::new(&DROPS);

    // Allocated here; the pool (both handles) dropped; then the boxes are
    // used and freed here (owner-local frees into a closed pool) and on
    // another thread (remote frees).
    let pool = Pool::<Item>::builder().slab_capacity(32).build().unwrap();
    let other = pool.clone();
    let mut mine: Vec<Msg> = (0..1_000).map(|_| ledger.alloc(&pool).unwrap()).collect();
    let theirs = mine.split_off(500);
    drop(pool);
    drop(other);
    for (id, b) in &mut mine {
        assert!(b.is_intact(*id));
        b.words[0] ^= 1; // still writable
        b.words[0] ^= 1;
    }
    let l2 = ledger.clone();
    let remote = std::thread::spawn(move || {
        for m in theirs {
            l2.retire(m);
        }
    });
    for m in mine.drain(..250) {
        ledger.retire(m);
    }
    remote.join().unwrap();
    for m in mine {
        ledger.retire(m);
    }

    // The owner thread drops the pool and exits; the boxes are freed after.
    let (pool2, l2) = (Pool::<Item>::new(), ledger.clone());
    let boxes = std::thread::spawn(move || {
        let v: Vec<Msg> = (0..300).map(|_| l2.alloc(&pool2).unwrap()).collect();
        drop(pool2);
        v
    })
    .join()
    .unwrap();
    let (a, b): (Vec<_>, Vec<_>) = boxes.into_iter().partition(|m| m.0 % 2 == 0);
    let l3 = ledger.clone();
    let t = std::thread::spawn(move || a.into_iter().for_each(|m| l3.retire(m)));
    b.into_iter().for_each(|m| ledger.retire(m));
    t.join().unwrap();

    ledger.assert_clean();
    assert_eq!(
        Pool::<Item>::unowned_frees(),
        unowned,
        "every free reached its pool"
    );
}

// --------------------------------------------- allocation during teardown

/// A user thread-local whose destructor frees the boxes it owns and
/// allocates from the pool clone it holds, sending the new blocks out.
struct Teardown {
    pool: Option<Pool<Item>>,
    ledger: Option<Arc<Ledger>>,
    held: Vec<Msg>,
    out: Option<Sender<Msg>>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let (Some(pool), Some(ledger), Some(out)) =
            (self.pool.take(), self.ledger.take(), self.out.take())
        else {
            return;
        };
        for m in self.held.drain(..) {
            ledger.retire(m);
        }
        for _ in 0..16 {
            let m = ledger.alloc(&pool).expect("allocation in a TLS destructor");
            out.send(m).unwrap();
        }
    }
}

thread_local! {
    static TEARDOWN: RefCell<Teardown> = const {
        RefCell::new(Teardown { pool: None, ledger: None, held: Vec::new(), out: None })
    };
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// The user TLS is registered before the pool's thread state, so its
    /// destructor runs after the pool has let go of this thread.
    UserFirst,
    /// The pool's state first: the user destructor runs while the thread
    /// still owns its heap.
    PoolFirst,
    /// The thread never touched the pool before its destructor ran.
    OnlyInTeardown,
}

/// Runs threads that allocate from a TLS destructor; returns the pool stats.
fn teardown_case(order: Order) -> homeslab::Stats {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let pool = Pool::<Item>::builder().slab_capacity(8).build().unwrap();
    let ledger = Ledger::new(&DROPS);
    let (tx, rx) = mpsc::channel::<Msg>();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (pool, ledger, tx) = (pool.clone(), ledger.clone(), tx.clone());
            std::thread::spawn(move || {
                let install = |held: Vec<Msg>| {
                    TEARDOWN.with(|t| {
                        let mut t = t.borrow_mut();
                        t.pool = Some(pool.clone());
                        t.ledger = Some(ledger.clone());
                        t.out = Some(tx.clone());
                        t.held.extend(held);
                    })
                };
                match order {
                    Order::UserFirst => {
                        install(Vec::new());
                        let held = (0..12).map(|_| ledger.alloc(&pool).unwrap()).collect();
                        install(held);
                    }
                    Order::PoolFirst => {
                        let held = (0..12).map(|_| ledger.alloc(&pool).unwrap()).collect();
                        install(held);
                    }
                    Order::OnlyInTeardown => install(Vec::new()),
                }
            })
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    // The senders lived in the destructors, so all blocks have arrived.
    let got: Vec<Msg> = rx.into_iter().collect();
    assert_eq!(got.len(), 8 * 16);
    for m in got {
        ledger.retire(m);
    }
    ledger.assert_clean();
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    // This thread freed the blocks: it took a heap to hold them.
    assert_eq!(s.thread_heaps, 1, "{s:?}");
    assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0, "{:?}", pool.stats());
    s
}

#[test]
fn allocation_in_a_tls_destructor_registered_first_still_uses_the_heap() {
    serial(allocation_in_a_tls_destructor_registered_first_still_uses_the_heap_body);
}

fn allocation_in_a_tls_destructor_registered_first_still_uses_the_heap_body() {
    let s = teardown_case(Order::UserFirst);
    // The thread's exit runs from a pthread key destructor, which glibc
    // runs after every `thread_local!` destructor: whatever order the user's
    // thread-local was registered in, its destructor still finds the
    // thread's own heap (before, the exit hooks were a thread-local too, and
    // a user destructor that ran after them went to the overflow tier).
    #[cfg(target_env = "gnu")]
    assert_eq!(s.overflow_allocs, 0, "{s:?}");
    let _ = s;
}

#[test]
fn allocation_in_a_tls_destructor_before_the_pool_let_go() {
    serial(allocation_in_a_tls_destructor_before_the_pool_let_go_body);
}

fn allocation_in_a_tls_destructor_before_the_pool_let_go_body() {
    teardown_case(Order::PoolFirst);
}

#[test]
fn first_allocation_in_a_tls_destructor() {
    serial(first_allocation_in_a_tls_destructor_body);
}

fn first_allocation_in_a_tls_destructor_body() {
    teardown_case(Order::OnlyInTeardown);
}

#[test]
fn last_pool_handle_dropped_in_a_tls_destructor() {
    serial(last_pool_handle_dropped_in_a_tls_destructor_body);
}

fn last_pool_handle_dropped_in_a_tls_destructor_body() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let ledger = Ledger::new(&DROPS);
    let (tx, rx) = mpsc::channel::<Msg>();
    let l2 = ledger.clone();
    std::thread::spawn(move || {
        // The only handle lives in the TLS value, registered before the
        // pool's own thread state: the pool closes during teardown, after
        // the thread's heap was orphaned, with blocks still live elsewhere.
        let pool = Pool::<Item>::builder().slab_capacity(8).build().unwrap();
        TEARDOWN.with(|t| {
            let mut t = t.borrow_mut();
            t.pool = Some(pool);
            t.ledger = Some(l2.clone());
            t.out = Some(tx.clone());
        });
        TEARDOWN.with(|t| {
            let t = t.borrow();
            let pool = t.pool.as_ref().unwrap();
            for _ in 0..20 {
                tx.send(l2.alloc(pool).unwrap()).unwrap();
            }
        });
        let held: Vec<Msg> = TEARDOWN.with(|t| {
            let t = t.borrow();
            (0..12)
                .map(|_| l2.alloc(t.pool.as_ref().unwrap()).unwrap())
                .collect()
        });
        TEARDOWN.with(|t| t.borrow_mut().held.extend(held));
    })
    .join()
    .unwrap();
    let got: Vec<Msg> = rx.into_iter().collect();
    assert_eq!(got.len(), 20 + 16);
    // Freed on this thread and another, after the pool closed.
    let mut got = got;
    let theirs = got.split_off(18);
    let l3 = ledger.clone();
    let t = std::thread::spawn(move || theirs.into_iter().for_each(|m| l3.retire(m)));
    got.into_iter().for_each(|m| ledger.retire(m));
    t.join().unwrap();
    ledger.assert_clean();
}

#[test]
fn pool_closes_while_blocks_are_freed_everywhere() {
    serial(pool_closes_while_blocks_are_freed_everywhere_body);
}

fn pool_closes_while_blocks_are_freed_everywhere_body() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    const OWNERS: usize = 4;
    const PER_OWNER: usize = 600;
    let rounds = if cfg!(debug_assertions) { 20 } else { 60 };
    let unowned = Pool::<Item>::unowned_frees();
    let ledger = Ledger::new(&DROPS);
    let mut vm_after_warmup = None;
    for round in 0..rounds {
        let pool = Pool::<Item>::builder()
            .slab_capacity(16)
            .max_thread_heaps(3)
            .hardened(round % 2 == 1)
            .build()
            .unwrap();
        // Blocks of an owner that has already exited, dealt to the others.
        let exited: Vec<Msg> = {
            let (pool, ledger) = (pool.clone(), ledger.clone());
            std::thread::spawn(move || {
                (0..PER_OWNER)
                    .map(|_| ledger.alloc(&pool).unwrap())
                    .collect()
            })
            .join()
            .unwrap()
        };
        let mut dealt: Vec<Vec<Msg>> = (0..OWNERS).map(|_| Vec::new()).collect();
        for (i, m) in exited.into_iter().enumerate() {
            dealt[i % OWNERS].push(m);
        }
        // Each owner allocates (three of them on heaps, one from the tier),
        // keeps half and passes half to its neighbour, then waits; the test
        // drops the last pool handle and everyone frees at once.
        let start = Arc::new(std::sync::Barrier::new(OWNERS + 1));
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..OWNERS).map(|_| mpsc::channel::<Vec<Msg>>()).unzip();
        let handles: Vec<_> = rxs
            .into_iter()
            .zip(dealt)
            .enumerate()
            .map(|(t, (rx, dealt))| {
                let next = txs[(t + 1) % OWNERS].clone();
                let (pool, ledger, start) = (pool.clone(), ledger.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut mine: Vec<Msg> = (0..PER_OWNER)
                        .map(|_| ledger.alloc(&pool).unwrap())
                        .collect();
                    next.send(mine.split_off(PER_OWNER / 2)).unwrap();
                    let theirs = rx.recv().unwrap();
                    drop(pool);
                    start.wait();
                    // Interleave owner-local and remote frees.
                    let mut all: Vec<Msg> = Vec::new();
                    let mut lists = [mine.into_iter(), theirs.into_iter(), dealt.into_iter()];
                    loop {
                        let before = all.len();
                        for l in &mut lists {
                            all.extend(l.next());
                        }
                        if all.len() == before {
                            break;
                        }
                    }
                    assert_eq!(all.len(), PER_OWNER + PER_OWNER / 4);
                    for m in all {
                        ledger.retire(m);
                    }
                })
            })
            .collect();
        drop(txs);
        start.wait();
        drop(pool);
        for h in handles {
            h.join().unwrap();
        }
        if round == 1 {
            vm_after_warmup = vm_bytes();
        }
    }
    ledger.assert_clean();
    // Every round's pool closed and gave its mappings back (a pool reserves
    // at least one 1 MiB chunk, so leaked pools would add rounds - 2 MiB).
    if let (Some(before), Some(after)) = (vm_after_warmup, vm_bytes()) {
        let grown = after.saturating_sub(before);
        println!(
            "virtual memory grew by {grown} bytes over {} closed pools",
            rounds - 2
        );
        assert!(grown < 4 << 20, "closed pools kept {grown} bytes mapped");
    }
    assert_eq!(
        Pool::<Item>::unowned_frees(),
        unowned,
        "every free reached its pool"
    );
}

/// The process's virtual memory size (Linux), to see mappings released.
fn vm_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    Some(pages * 4096)
}
