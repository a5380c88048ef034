//! One thread context for every pool: many pools of different types used in
//! turn from several threads, pools created and closed while others are in
//! use (their context entries reused), and more pools than the table holds.
//! Every block carries a stamp of its pool and id, checked when it is freed,
//! and is checked to belong to the pool it was allocated from.

use std::sync::mpsc;
use std::thread;

use homeslab::{Pool, PoolBox};

mod common;
use common::mix;

/// A stamped block; `N` makes a distinct type (and pool) per kind, `W`
/// its size in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp<const N: usize, const W: usize> {
    words: [u64; W],
}

impl<const N: usize, const W: usize> Stamp<N, W> {
    fn new(pool: u64, id: u64) -> Self {
        let mut words = [0; W];
        words[0] = pool;
        words[W - 1] = id;
        for (i, w) in words
            .iter_mut()
            .enumerate()
            .skip(1)
            .take(W.saturating_sub(2))
        {
            *w = mix(pool ^ id.rotate_left(17) ^ i as u64);
        }
        Self { words }
    }

    #[track_caller]
    fn verify(&self, pool: u64, id: u64) {
        assert_eq!(
            *self,
            Self::new(pool, id),
            "block of pool {pool} id {id} corrupted"
        );
    }
}

/// Allocates a stamped block and checks it really is a block of `pool`.
#[track_caller]
fn alloc_checked<const N: usize, const W: usize>(
    pool: &Pool<Stamp<N, W>>,
    tag: u64,
    id: u64,
) -> PoolBox<Stamp<N, W>> {
    let b = pool.alloc(Stamp::new(tag, id)).expect("allocation");
    let raw = PoolBox::into_raw(b);
    // SAFETY: `raw` just came from `into_raw`; if it is a live block of
    // `pool` (what is checked) no other box owns it.
    let b = unsafe { PoolBox::from_raw_in(pool, raw) }.expect("a block of the pool it came from");
    b.verify(tag, id);
    b
}

type A = Stamp<0, 2>;
type B = Stamp<1, 3>;
type C = Stamp<2, 8>;
type D = Stamp<3, 16>;

#[derive(Default)]
struct Bag {
    a: Vec<(u64, PoolBox<A>)>,
    b: Vec<(u64, PoolBox<B>)>,
    c: Vec<(u64, PoolBox<C>)>,
    d: Vec<(u64, PoolBox<D>)>,
}

#[test]
fn many_pools_in_turn_from_several_threads_with_remote_frees() {
    const THREADS: usize = 4;
    const ROUNDS: u64 = 40;
    const PER: u64 = 300;
    let (pa, pb, pc, pd) = (
        Pool::<A>::new(),
        Pool::<B>::new(),
        Pool::<C>::new(),
        Pool::<D>::new(),
    );
    // A ring: each thread sends what it allocated to the next, which
    // verifies and frees it (remote frees, in all four pools).
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Bag>()).unzip();
    let mut rxs: Vec<_> = rxs.into_iter().map(Some).collect();
    thread::scope(|s| {
        for t in 0..THREADS {
            let tx = txs[(t + 1) % THREADS].clone();
            let rx = rxs[t].take().unwrap();
            let (pa, pb, pc, pd) = (&pa, &pb, &pc, &pd);
            s.spawn(move || {
                for r in 0..ROUNDS {
                    let mut bag = Bag::default();
                    for i in 0..PER {
                        let id = ((t as u64) << 40) | (r << 20) | i;
                        // In turn: every allocation switches pools.
                        match i % 4 {
                            0 => bag.a.push((id, alloc_checked(pa, 0, id))),
                            1 => bag.b.push((id, alloc_checked(pb, 1, id))),
                            2 => bag.c.push((id, alloc_checked(pc, 2, id))),
                            _ => bag.d.push((id, alloc_checked(pd, 3, id))),
                        }
                    }
                    tx.send(bag).unwrap();
                    let got = rx.recv().unwrap();
                    got.a.iter().for_each(|(id, b)| b.verify(0, *id));
                    got.b.iter().for_each(|(id, b)| b.verify(1, *id));
                    got.c.iter().for_each(|(id, b)| b.verify(2, *id));
                    got.d.iter().for_each(|(id, b)| b.verify(3, *id));
                }
                homeslab::flush_remote_frees();
            });
        }
    });
    let total = THREADS as u64 * ROUNDS * PER / 4;
    for s in [pa.stats(), pb.stats(), pc.stats(), pd.stats()] {
        assert_eq!(s.live_blocks, 0, "{s:?}");
        assert_eq!(s.allocs, total, "{s:?}");
        assert_eq!(s.frees, total, "{s:?}");
        // Magazines let a block move on: a thread may reuse a block it got
        // from its neighbour, and the free that ends its trip may find it
        // home again. Most frees still cross threads.
        assert!(
            s.remote_frees > total / 2 && s.remote_frees <= total,
            "{s:?}"
        );
        assert_eq!(s.held_blocks, 0, "flushed at the threads' end: {s:?}");
        assert_eq!(
            (s.double_frees, s.foreign_frees, s.corruption_events),
            (0, 0, 0)
        );
    }
}

#[test]
fn pools_closed_and_rebuilt_while_other_threads_use_other_pools() {
    // Workers keep allocating from long-lived pools while this thread
    // builds, uses and drops short-lived ones: their context entries are
    // given back and reused by newer pools, in this thread's context (a
    // stale entry) and in the workers' (which touched the old pools too).
    let long = Pool::<C>::new();
    let (go_tx, go_rx) = mpsc::channel::<Option<Pool<A>>>();
    let worker = {
        let long = long.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while let Ok(Some(short)) = go_rx.recv() {
                // Use the short-lived pool (this thread's entry now holds
                // it), then the long one, then send the short one away.
                let x = alloc_checked(&short, 7, n);
                let y = alloc_checked(&long, 2, n);
                x.verify(7, n);
                y.verify(2, n);
                n += 1;
                drop((x, y));
            }
            n
        })
    };
    let mut checked = 0;
    for round in 0..200u64 {
        let short = Pool::<A>::new();
        let mine: Vec<_> = (0..50)
            .map(|i| alloc_checked(&short, 7, round << 8 | i))
            .collect();
        go_tx.send(Some(short.clone())).unwrap();
        // A second short-lived pool of another type, built while the first
        // is alive: its entry differs; once both close, both are reused.
        let other = Pool::<B>::new();
        let theirs: Vec<_> = (0..50)
            .map(|i| alloc_checked(&other, 1, round << 8 | i))
            .collect();
        for (i, b) in mine.iter().enumerate() {
            b.verify(7, round << 8 | i as u64);
        }
        for (i, b) in theirs.iter().enumerate() {
            b.verify(1, round << 8 | i as u64);
        }
        let (ss, so) = (short.stats(), other.stats());
        assert_eq!((ss.foreign_frees, so.foreign_frees), (0, 0));
        checked += mine.len() + theirs.len();
        drop((mine, theirs, short, other));
    }
    go_tx.send(None).unwrap();
    let n = worker.join().unwrap();
    assert_eq!(n, 200);
    assert_eq!(checked, 200 * 100);
    assert_eq!(long.stats().live_blocks, 0);
}

#[test]
fn more_pools_than_the_table_holds() {
    // 300 pools of one type, used in turn: past the table's 255 entries
    // pools share the last one, and stay correct (and counted) all the same.
    let pools: Vec<Pool<B>> = (0..300).map(|_| Pool::new()).collect();
    let mut held = Vec::new();
    for round in 0..4u64 {
        for (p, pool) in pools.iter().enumerate() {
            held.push((p, round, alloc_checked(pool, p as u64, round)));
        }
    }
    for (p, round, b) in &held {
        b.verify(*p as u64, *round);
    }
    // Free on another thread: remote frees into 300 pools.
    thread::spawn(move || drop(held)).join().unwrap();
    for (p, pool) in pools.iter().enumerate() {
        let s = pool.stats();
        assert_eq!(
            (s.allocs, s.live_blocks, s.remote_frees),
            (4, 0, 4),
            "pool {p}: {s:?}"
        );
    }
}
