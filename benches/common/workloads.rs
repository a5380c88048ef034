//! The workloads (mimalloc-bench style, ported to typed pools), each written
//! once against [`Subject`] and run for every subject.
//!
//! One *iteration* is one round of the workload on every thread; a
//! workload's [`Workload::elements`] is the number of blocks allocated (and
//! freed) per iteration, summed over threads, so criterion's throughput is
//! alloc+free pairs per second.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::harness::{recv_spin, ring, run, Body, Gate, Rng};
use super::subjects::{Family, Kind, Line, Obj, Subject};

/// A benchmark workload for objects of type `T`.
pub trait Workload<T: Obj>: Sync {
    /// Blocks allocated and freed per iteration (all threads).
    fn elements(&self) -> u64;
    /// Runs `iters` iterations on `s` and returns the measured time.
    fn run<S: Subject<T>>(&self, s: &S, iters: u64) -> Duration;
}

/// Blocks each thread allocates, then frees, per `local` round.
pub const LOCAL_BATCH: usize = 1024;

/// `local` (threadtest): each thread allocates [`LOCAL_BATCH`] blocks, then
/// frees them in allocation order. Every free is local.
pub struct Local {
    /// Worker threads.
    pub threads: usize,
}

fn local_round<'s, T: Obj, S: Subject<T>>(s: &'s S, v: &mut Vec<S::Handle<'s>>) {
    for i in 0..LOCAL_BATCH {
        v.push(s.alloc(T::make(i as u64)));
    }
    for h in v.drain(..) {
        s.free(h);
    }
}

impl<T: Obj> Workload<T> for Local {
    fn elements(&self) -> u64 {
        (self.threads * LOCAL_BATCH) as u64
    }

    fn run<S: Subject<T>>(&self, s: &S, iters: u64) -> Duration {
        let bodies: Vec<Body<'_>> = (0..self.threads)
            .map(|_| {
                Box::new(move |g: &Gate| {
                    let mut v = Vec::with_capacity(LOCAL_BATCH);
                    local_round::<T, S>(s, &mut v); // warm this thread up
                    g.start();
                    for _ in 0..iters {
                        local_round::<T, S>(s, &mut v);
                    }
                    g.stop();
                }) as Body<'_>
            })
            .collect();
        run(bodies)
    }
}

/// `local_pools_k`: one thread allocates [`LOCAL_BATCH`] blocks from the `K`
/// pools of `L` (one per type, all 64 bytes) in turn, block `i` from pool
/// `i % K`, then frees them in allocation order. Only the number of pools
/// the thread switches between changes with `K`, not the object size.
pub struct LocalPools<L>(PhantomData<fn(L) -> L>);

impl<L: Kinds> LocalPools<L> {
    /// The workload.
    pub fn new() -> Self {
        Self(PhantomData)
    }

    /// Blocks allocated and freed per iteration.
    pub fn elements(&self) -> u64 {
        LOCAL_BATCH as u64
    }

    /// Runs `iters` iterations on `pools` (from [`Kinds::build`]) and returns
    /// the measured time.
    pub fn run<F: Family>(&self, pools: &L::Pools<F>, iters: u64) -> Duration {
        let body = Box::new(move |g: &Gate| {
            let mut lanes = L::lanes::<F>(pools, LOCAL_BATCH.div_ceil(L::K));
            let mut round = || {
                let mut i = 0;
                while lanes.alloc_step(&mut i) {}
                let mut d = lanes.drains();
                while d.free_step() {}
            };
            round(); // warm this thread up
            g.start();
            for _ in 0..iters {
                round();
            }
            g.stop();
        }) as Body<'_>;
        run(vec![body])
    }
}

/// A list of object types, `(Kind<0>, (Kind<1>, ()))`: one pool each.
pub trait Kinds: 'static {
    /// Types (pools) in the list.
    const K: usize;
    /// One subject of family `F` per type.
    type Pools<F: Family>: Sync;
    /// A thread's view of the pools: each with the blocks it holds.
    type Lanes<'s, F: Family>: Lanes;
    /// Fresh pools.
    fn build<F: Family>(f: &F) -> Self::Pools<F>;
    /// Lanes over `p`, holding no blocks (room for `cap` each).
    fn lanes<F: Family>(p: &Self::Pools<F>, cap: usize) -> Self::Lanes<'_, F>;
}

impl Kinds for () {
    const K: usize = 0;
    type Pools<F: Family> = ();
    type Lanes<'s, F: Family> = ();
    fn build<F: Family>(_: &F) {}
    fn lanes<F: Family>(_: &(), _: usize) {}
}

impl<const N: usize, R: Kinds> Kinds for (Kind<N>, R) {
    const K: usize = 1 + R::K;
    type Pools<F: Family> = (F::Of<Kind<N>>, R::Pools<F>);
    type Lanes<'s, F: Family> = (Lane<'s, Kind<N>, F::Of<Kind<N>>>, R::Lanes<'s, F>);
    fn build<F: Family>(f: &F) -> Self::Pools<F> {
        (f.build(), R::build(f))
    }
    fn lanes<F: Family>(p: &Self::Pools<F>, cap: usize) -> Self::Lanes<'_, F> {
        let held = Vec::with_capacity(cap);
        (Lane { s: &p.0, held }, R::lanes::<F>(&p.1, cap))
    }
}

/// One type: the `local_pools_k` baseline.
pub type Kinds1 = (Kind<0>, ());
/// Two types.
pub type Kinds2 = (Kind<0>, (Kind<1>, ()));
/// Three types.
pub type Kinds3 = (Kind<0>, (Kind<1>, (Kind<2>, ())));
/// Eight types.
pub type Kinds8 = (
    Kind<0>,
    (
        Kind<1>,
        (
            Kind<2>,
            (Kind<3>, (Kind<4>, (Kind<5>, (Kind<6>, (Kind<7>, ()))))),
        ),
    ),
);

/// One pool of a [`LocalPools`] round and the blocks it holds.
pub struct Lane<'s, T: Obj, S: Subject<T>> {
    s: &'s S,
    held: Vec<S::Handle<'s>>,
}

/// The lanes of a [`LocalPools`] round, a list like [`Kinds`]. A step visits
/// every lane once, first to last, so block `i` goes to lane `i % K`. (Plain
/// recursion, no closures: it must inline into one loop at every `K`, or
/// the workload's own cost would grow with `K`.)
pub trait Lanes {
    /// The lanes' blocks, being freed.
    type Drains<'a>: Drains
    where
        Self: 'a;
    /// Allocates block `*i` (then `*i + 1`, …) from each lane in turn;
    /// false once [`LOCAL_BATCH`] blocks are allocated.
    fn alloc_step(&mut self, i: &mut usize) -> bool;
    /// Starts freeing every block held.
    fn drains(&mut self) -> Self::Drains<'_>;
}

/// The blocks of [`Lanes`], freed in allocation order.
pub trait Drains {
    /// Frees the next block of each lane in turn; false once none is left.
    fn free_step(&mut self) -> bool;
}

/// One lane's blocks, being freed.
pub struct LaneDrain<'a, 's, T: Obj, S: Subject<T>> {
    s: &'s S,
    d: std::vec::Drain<'a, S::Handle<'s>>,
}

impl Lanes for () {
    type Drains<'a> = ();
    #[inline(always)]
    fn alloc_step(&mut self, _: &mut usize) -> bool {
        true
    }
    #[inline(always)]
    fn drains(&mut self) {}
}

impl Drains for () {
    #[inline(always)]
    fn free_step(&mut self) -> bool {
        true
    }
}

impl<'s, T: Obj, S: Subject<T>, R: Lanes> Lanes for (Lane<'s, T, S>, R) {
    type Drains<'a>
        = (LaneDrain<'a, 's, T, S>, R::Drains<'a>)
    where
        Self: 'a;
    #[inline(always)]
    fn alloc_step(&mut self, i: &mut usize) -> bool {
        if *i == LOCAL_BATCH {
            return false;
        }
        let lane = &mut self.0;
        lane.held.push(lane.s.alloc(T::make(*i as u64)));
        *i += 1;
        self.1.alloc_step(i)
    }
    #[inline(always)]
    fn drains(&mut self) -> Self::Drains<'_> {
        let d = LaneDrain {
            s: self.0.s,
            d: self.0.held.drain(..),
        };
        (d, self.1.drains())
    }
}

impl<T: Obj, S: Subject<T>, R: Drains> Drains for (LaneDrain<'_, '_, T, S>, R) {
    // Lane counts differ by at most one and never grow down the list, so the
    // first lane found empty ends the round with every lane drained.
    #[inline(always)]
    fn free_step(&mut self) -> bool {
        match self.0.d.next() {
            Some(h) => {
                self.0.s.free(h);
                self.1.free_step()
            }
            None => false,
        }
    }
}

/// Blocks per producer per `xthread` iteration.
pub const XTHREAD_PER_ITER: usize = 1024;
/// Blocks per hand-off batch.
pub const XTHREAD_BATCH: usize = 256;
/// Batches in flight per producer/consumer pair (bounds live memory).
const XTHREAD_INFLIGHT: usize = 4;

/// `xthread` (xmalloc-test / producer–consumer): each producer allocates
/// batches of [`XTHREAD_BATCH`] blocks and hands them to its consumer, which
/// frees them. Every free is remote. Batch vectors are recycled, so the
/// hand-off itself allocates nothing.
pub struct XThread {
    /// Producer/consumer pairs (threads = 2 × pairs).
    pub pairs: usize,
}

impl<T: Obj> Workload<T> for XThread {
    fn elements(&self) -> u64 {
        (self.pairs * XTHREAD_PER_ITER) as u64
    }

    fn run<S: Subject<T>>(&self, s: &S, iters: u64) -> Duration {
        let batches = iters as usize * (XTHREAD_PER_ITER / XTHREAD_BATCH);
        let mut bodies: Vec<Body<'_>> = Vec::new();
        for _ in 0..self.pairs {
            let (full_tx, full_rx) = mpsc::channel::<Vec<S::Handle<'_>>>();
            let (empty_tx, empty_rx) = mpsc::channel::<Vec<S::Handle<'_>>>();
            for _ in 0..XTHREAD_INFLIGHT {
                empty_tx
                    .send(Vec::with_capacity(XTHREAD_BATCH))
                    .expect("channel");
            }
            let produce = move |n: usize| {
                for _ in 0..n {
                    let mut v = recv_spin(&empty_rx);
                    for i in 0..XTHREAD_BATCH {
                        v.push(s.alloc(T::make(i as u64)));
                    }
                    full_tx.send(v).expect("consumer alive");
                }
            };
            let consume = move |n: usize| {
                for _ in 0..n {
                    let mut v = recv_spin(&full_rx);
                    for h in v.drain(..) {
                        s.free(h);
                    }
                    // The producer may have finished and gone: fine.
                    let _ = empty_tx.send(v);
                }
            };
            bodies.push(Box::new(move |g: &Gate| {
                produce(XTHREAD_INFLIGHT); // warm-up, untimed
                g.start();
                produce(batches);
                g.stop();
            }));
            bodies.push(Box::new(move |g: &Gate| {
                consume(XTHREAD_INFLIGHT);
                g.start();
                consume(batches);
                g.stop();
            }));
        }
        run(bodies)
    }
}

/// Live blocks per `larson` thread.
pub const LARSON_LIVE: usize = 1000;
/// Replacements per `larson` thread per round (iteration).
pub const LARSON_REPLACE: usize = 1000;

/// `larson`: each thread keeps [`LARSON_LIVE`] live blocks and replaces random
/// ones (free, then allocate); after each round of [`LARSON_REPLACE`]
/// replacements it passes its whole live set to the next thread in a ring and
/// takes the previous thread's, so most frees are of blocks another thread
/// allocated (about 63% with these numbers).
pub struct Larson {
    /// Worker threads.
    pub threads: usize,
}

/// One larson round on a live set.
#[inline]
pub fn larson_round<'s, T: Obj, S: Subject<T>>(
    s: &'s S,
    set: &mut [Option<S::Handle<'s>>],
    rng: &mut Rng,
    replacements: usize,
) {
    for _ in 0..replacements {
        let i = rng.below(set.len());
        if let Some(old) = set[i].take() {
            s.free(old);
        }
        set[i] = Some(s.alloc(T::make(i as u64)));
    }
}

/// Larson parameters.
#[derive(Clone, Copy, Debug)]
pub struct LarsonParams {
    /// Worker threads.
    pub threads: usize,
    /// Live blocks per thread.
    pub live: usize,
    /// Replacements per thread per round.
    pub replace: usize,
    /// Rounds (the benchmark's iterations).
    pub rounds: u64,
}

/// Runs larson. After every round, thread 0 calls `between(round)`; when it
/// returns false the run ends a few rounds later (every thread stops at the
/// same round, so the ring stays consistent). Returns the measured time and
/// the rounds run.
pub fn larson_run<T: Obj, S: Subject<T>>(
    s: &S,
    p: LarsonParams,
    between: &(dyn Fn(u64) -> bool + Sync),
) -> (Duration, u64) {
    let threads = p.threads;
    let stop_at = AtomicU64::new(p.rounds);
    let stop_at = &stop_at;
    let bodies: Vec<Body<'_>> = ring::<Vec<Option<S::Handle<'_>>>>(threads)
        .into_iter()
        .enumerate()
        .map(|(t, (tx, rx))| {
            Box::new(move |g: &Gate| {
                let mut rng = Rng::new(t as u64 + 1);
                let mut set: Vec<Option<S::Handle<'_>>> = (0..p.live)
                    .map(|i| Some(s.alloc(T::make(i as u64))))
                    .collect();
                larson_round::<T, S>(s, &mut set, &mut rng, p.replace);
                g.start();
                let mut r = 0;
                // A thread is at most `threads - 1` rounds ahead of thread 0,
                // so a stop round set `threads` rounds ahead is seen by all
                // before they reach it.
                while r < stop_at.load(Ordering::Acquire) {
                    larson_round::<T, S>(s, &mut set, &mut rng, p.replace);
                    if threads > 1 {
                        tx.send(core::mem::take(&mut set)).expect("ring");
                        set = recv_spin(&rx);
                    }
                    if t == 0 && !between(r) {
                        stop_at.fetch_min(r + threads as u64, Ordering::AcqRel);
                    }
                    r += 1;
                }
                g.stop();
                for h in set.into_iter().flatten() {
                    s.free(h);
                }
            }) as Body<'_>
        })
        .collect();
    let d = run(bodies);
    (d, stop_at.load(Ordering::Acquire))
}

impl<T: Obj> Workload<T> for Larson {
    fn elements(&self) -> u64 {
        (self.threads * LARSON_REPLACE) as u64
    }

    fn run<S: Subject<T>>(&self, s: &S, iters: u64) -> Duration {
        let p = LarsonParams {
            threads: self.threads,
            live: LARSON_LIVE,
            replace: LARSON_REPLACE,
            rounds: iters,
        };
        larson_run::<T, S>(s, p, &|_| true).0
    }
}

/// Write passes over the 8 words of a block per `cache_scratch` round.
pub const SCRATCH_PASSES: u64 = 4000;

/// `cache_scratch`: each round, every thread allocates a block and hands it
/// to the next thread in a ring; it frees the block it received (a remote
/// free), allocates a block of its own and writes it hard
/// ([`SCRATCH_PASSES`] × 8 stores), then frees it. An allocator that places
/// blocks written by different threads in one cache line (for example by
/// handing a thread a slot next to one another thread is using) makes the
/// writes false-share.
///
/// The two switches give the controls: without the hand-off, each thread
/// only allocates, writes and frees its own block (no cross-thread traffic
/// at all); without the writes, what is left is the cost of the hand-off.
#[derive(Clone, Copy, Debug)]
pub struct CacheScratch {
    /// Worker threads.
    pub threads: usize,
    /// Hand a block to the next thread every round.
    pub hand_off: bool,
    /// Write the thread's own block hard every round.
    pub write: bool,
}

#[inline]
fn scratch(line: &Line, seed: u64) -> u64 {
    // An opaque pointer: the stores must reach memory even when the block
    // lives on this thread's stack (lockfree-object-pool's guard holds the
    // object by value).
    let line = std::hint::black_box(line);
    for p in 0..SCRATCH_PASSES {
        for (w, word) in line.0.iter().enumerate() {
            word.store(seed ^ p ^ w as u64, Ordering::Relaxed);
        }
    }
    line.first()
}

impl Workload<Line> for CacheScratch {
    fn elements(&self) -> u64 {
        self.threads as u64
    }

    fn run<S: Subject<Line>>(&self, s: &S, iters: u64) -> Duration {
        let mut txs = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..self.threads {
            let (tx, rx) = mpsc::channel::<S::Handle<'_>>();
            txs.push(tx);
            rxs.push(rx);
        }
        txs.rotate_right(1);
        let (hand_off, write) = (self.hand_off, self.write);
        let bodies: Vec<Body<'_>> = txs
            .into_iter()
            .zip(rxs)
            .map(|(tx, rx)| {
                Box::new(move |g: &Gate| {
                    let mut sink = 0u64;
                    let mut round = |r: u64| {
                        if hand_off {
                            tx.send(s.alloc(Line::make(r))).expect("ring");
                            s.free(recv_spin(&rx));
                        }
                        let mine = s.alloc(Line::make(r));
                        if write {
                            sink = sink.wrapping_add(s.with(&mine, |l| scratch(l, r)));
                        }
                        s.free(mine);
                    };
                    round(0);
                    g.start();
                    for r in 0..iters {
                        round(r);
                    }
                    g.stop();
                    std::hint::black_box(sink);
                }) as Body<'_>
            })
            .collect();
        run(bodies)
    }
}
