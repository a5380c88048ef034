//! The shared overflow tier: threads past `max_thread_heaps`, heaps past
//! `max_thread_slabs`, concurrent growth of the tier, and frees into tier
//! segments from any thread.
//!
//! Every block is stamped with a unique id and a checksum when allocated and
//! checked when freed (see `Ledger`): zero lost, duplicated or corrupted.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use homeslab::Pool;

mod common;
use common::*;

// ------------------------------------------------- past the heap limit

#[test]
fn sixty_four_threads_over_a_two_heap_limit() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    const THREADS: usize = 64;
    let rounds = if cfg!(debug_assertions) { 200 } else { 1000 };
    let pool = Pool::<Item>::builder().max_thread_heaps(2).build().unwrap();
    let ledger = Ledger::new(&DROPS);
    let barrier = Arc::new(Barrier::new(THREADS));
    // A ring: each thread sends half of what it allocates to the next one.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Msg>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % THREADS].clone();
            let (pool, ledger, barrier) = (pool.clone(), ledger.clone(), barrier.clone());
            std::thread::spawn(move || {
                // All 64 alive at once, so at least 62 of them must use the tier.
                barrier.wait();
                for _ in 0..rounds {
                    let mut got: Vec<Msg> = (0..16).map(|_| ledger.alloc(&pool).unwrap()).collect();
                    assert_distinct(&got);
                    for m in got.drain(8..) {
                        next.send(m).unwrap();
                    }
                    for m in got {
                        ledger.retire(m);
                    }
                    while let Ok(m) = rx.try_recv() {
                        ledger.retire(m);
                    }
                    let heaps = pool.stats().thread_heaps;
                    assert!(heaps <= 2, "{heaps} thread heaps over a limit of 2");
                }
                drop(next);
                barrier.wait();
                for m in rx {
                    ledger.retire(m);
                }
            })
        })
        .collect();
    drop(txs);
    for h in handles {
        h.join().unwrap();
    }
    ledger.assert_clean();
    let s = pool.stats();
    println!("{s:?}");
    assert_eq!(s.allocs, (THREADS * rounds * 16) as u64);
    assert!(s.overflow_allocs > 0, "{s:?}");
    assert!(s.overflow_allocs < s.allocs, "two threads had heaps: {s:?}");
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.thread_heaps, 0);
    assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0, "{:?}", pool.stats());
}

// ------------------------------------------------- past the slab limit

#[test]
fn a_heap_at_its_slab_cap_spills_to_the_tier() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    const CAP: usize = 8;
    const N: usize = 100;
    // No magazine: the counts below assume each round allocates from the
    // slabs (a magazine would serve it from blocks the last round freed).
    let pool = Pool::<Item>::builder()
        .magazine(0)
        .max_thread_slabs(1)
        .slab_capacity(CAP)
        .build()
        .unwrap();
    let ledger = Ledger::new(&DROPS);
    let spill = (N - CAP) as u64;
    let segments = spill.div_ceil(CAP as u64);
    for round in 1..=3u64 {
        let blocks: Vec<Msg> = (0..N).map(|_| ledger.alloc(&pool).unwrap()).collect();
        assert_distinct(&blocks);
        let s = pool.stats();
        // One slab of the heap, the rest from the tier; the later rounds
        // reuse the tier's segments.
        assert_eq!(s.overflow_allocs, round * spill, "{s:?}");
        assert_eq!(s.overflow_segments, segments, "{s:?}");
        assert_eq!(s.mapped_bytes, (1 + segments) * s.slab_bytes, "{s:?}");
        assert_eq!(s.live_blocks, N as u64);
        // Free half here, half on another thread.
        let mut blocks = blocks;
        let theirs = blocks.split_off(N / 2);
        let l2 = ledger.clone();
        std::thread::spawn(move || theirs.into_iter().for_each(|m| l2.retire(m)))
            .join()
            .unwrap();
        blocks.into_iter().for_each(|m| ledger.retire(m));
        assert_eq!(pool.stats().live_blocks, 0);
    }
    ledger.assert_clean();
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0, "{:?}", pool.stats());
}

// ------------------------------------------------- concurrent tier growth

#[test]
fn concurrent_growth_of_the_tier_is_bounded() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    const THREADS: usize = 8;
    const PER_THREAD: usize = 64;
    const CAP: usize = 4;
    let trials = if cfg!(debug_assertions) { 50 } else { 200 };
    let ledger = Ledger::new(&DROPS);
    for _ in 0..trials {
        let pool = Pool::<Item>::builder()
            .max_thread_heaps(0)
            .slab_capacity(CAP)
            .build()
            .unwrap();
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (pool, ledger, barrier) = (pool.clone(), ledger.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..PER_THREAD)
                        .map(|_| ledger.alloc(&pool).unwrap())
                        .collect::<Vec<Msg>>()
                })
            })
            .collect();
        let all: Vec<Msg> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_distinct(&all);
        let s = pool.stats();
        // The bound: a thread maps a segment only after finding every segment
        // full, and has at most one mapping in flight. Take the last moment
        // some thread found the tier full: then all its S0 segments were
        // handed out, so S0 <= N / CAP; after it, only the mappings already
        // in flight (at most one per thread) can add segments. Hence
        // N / CAP <= overflow_segments <= N / CAP + THREADS.
        let needed = (THREADS * PER_THREAD / CAP) as u64;
        assert!(
            (needed..=needed + THREADS as u64).contains(&s.overflow_segments),
            "{} segments for {needed} needed: {s:?}",
            s.overflow_segments
        );
        assert_eq!(s.overflow_allocs, (THREADS * PER_THREAD) as u64);
        assert_eq!(s.thread_heaps, 0);
        assert_eq!(s.mapped_bytes, s.overflow_segments * s.slab_bytes);
        for m in all {
            ledger.retire(m);
        }
        assert_eq!(pool.stats().live_blocks, 0);
    }
    ledger.assert_clean();
}

// --------------------------------------- frees into the tier, from anywhere

#[test]
fn tier_frees_from_any_thread_are_reused() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    const ALLOCATORS: usize = 4;
    const FREERS: usize = 4;
    const PER_THREAD: usize = 96;
    const CAP: usize = 4;
    let pool = Pool::<Item>::builder()
        .max_thread_heaps(0)
        .slab_capacity(CAP)
        .build()
        .unwrap();
    let ledger = Ledger::new(&DROPS);
    let slab = pool.stats().slab_bytes as usize;
    let mut segments_after_first = 0;
    let mut seen_regions = HashSet::new();
    for round in 0..3 {
        // Allocate on some threads...
        let handles: Vec<_> = (0..ALLOCATORS)
            .map(|_| {
                let (pool, ledger) = (pool.clone(), ledger.clone());
                std::thread::spawn(move || {
                    (0..PER_THREAD)
                        .map(|_| ledger.alloc(&pool).unwrap())
                        .collect::<Vec<Msg>>()
                })
            })
            .collect();
        let all: Vec<Msg> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_distinct(&all);
        seen_regions.extend(all.iter().map(|m| addr(m) & !(slab - 1)));
        let s = pool.stats();
        if round == 0 {
            segments_after_first = s.overflow_segments;
        } else {
            // ...the freed slots came back: no growth, and no segment but
            // those mapped in the first round (racing growers may have
            // mapped one that only a later round uses).
            assert_eq!(s.overflow_segments, segments_after_first, "{s:?}");
        }
        assert!(
            seen_regions.len() as u64 <= segments_after_first,
            "blocks from {} segments, {segments_after_first} mapped",
            seen_regions.len()
        );
        assert_eq!(
            s.overflow_allocs,
            ((round + 1) * ALLOCATORS * PER_THREAD) as u64
        );
        // ...and free on others, dealt so that every segment gets frees from
        // several threads.
        let mut hands: Vec<Vec<Msg>> = (0..FREERS).map(|_| Vec::new()).collect();
        for (i, m) in all.into_iter().enumerate() {
            hands[i % FREERS].push(m);
        }
        let freers: Vec<_> = hands
            .into_iter()
            .map(|hand| {
                let ledger = ledger.clone();
                std::thread::spawn(move || hand.into_iter().rev().for_each(|m| ledger.retire(m)))
            })
            .collect();
        for h in freers {
            h.join().unwrap();
        }
        let s = pool.stats();
        assert_eq!(s.live_blocks, 0, "{s:?}");
        assert_eq!(
            s.remote_frees,
            ((round + 1) * ALLOCATORS * PER_THREAD) as u64
        );
    }
    ledger.assert_clean();
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0, "{:?}", pool.stats());
}
