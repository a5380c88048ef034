//! `local`, `xthread` and `larson` in the shape a program gives them
//! (issue #23): the subject in an `Arc` that every worker holds its own
//! clone of, each block read before it is freed, batches freed last
//! allocated first. Each of the three is a switch of [`Shape`], so that
//! every combination can be measured and each factor A/B'd on its own.
//!
//! With every switch off ([`Shape::BENCH`]) these are the workloads of
//! [`super::workloads`] (same batch sizes, live sets, seeds, elements per
//! iteration), written once more so that those stay exactly as they were.

use core::marker::PhantomData;
use std::hint::black_box;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::harness::{recv_spin, ring, run, Body, Gate, Rng};
use super::subjects::{Obj, Subject};
use super::workloads::{LARSON_LIVE, LARSON_REPLACE, LOCAL_BATCH, XTHREAD_BATCH, XTHREAD_PER_ITER};

/// How the workers hold the subject and what they do with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Each worker holds its own clone of an `Arc` the subject lives in (as
    /// a program shares a pool with its threads) and reaches the subject
    /// through it at every call; off, workers share a plain reference.
    pub arc: bool,
    /// Each block's first word is read (summed into an accumulator given
    /// to `black_box`) just before the block is freed.
    pub read: bool,
    /// `local` and `xthread` free a batch last allocated first; off, in
    /// allocation order. (`larson` frees at random either way.)
    pub reverse: bool,
}

impl Shape {
    /// The shape of [`super::workloads`]: every switch off.
    pub const BENCH: Shape = Shape {
        arc: false,
        read: false,
        reverse: false,
    };

    /// The shape of issue #23's program: every switch on.
    pub const USER: Shape = Shape {
        arc: true,
        read: true,
        reverse: true,
    };

    /// The switches' names, in [`Shape::name`]'s order.
    pub const FACTORS: [&'static str; 3] = ["arc", "read", "reverse"];

    /// `bench`, `user`, or the switches that are on joined by `+`.
    pub fn name(&self) -> String {
        match *self {
            Self::BENCH => "bench".into(),
            Self::USER => "user".into(),
            _ => {
                let on = [self.arc, self.read, self.reverse];
                let names: Vec<&str> = Self::FACTORS
                    .iter()
                    .zip(on)
                    .filter_map(|(n, on)| on.then_some(*n))
                    .collect();
                names.join("+")
            }
        }
    }

    /// Parses [`Shape::name`]'s forms (`bench`, `user`, `arc+reverse`, …).
    pub fn parse(s: &str) -> Result<Shape, String> {
        match s {
            "bench" => return Ok(Self::BENCH),
            "user" => return Ok(Self::USER),
            _ => {}
        }
        let mut shape = Self::BENCH;
        for f in s.split('+') {
            match f {
                "arc" => shape.arc = true,
                "read" => shape.read = true,
                "reverse" => shape.reverse = true,
                _ => return Err(format!("unknown shape factor {f} (arc, read, reverse)")),
            }
        }
        Ok(shape)
    }

    /// This shape with `factor` (one of [`Shape::FACTORS`]) set to `on`.
    pub fn with(mut self, factor: &str, on: bool) -> Shape {
        match factor {
            "arc" => self.arc = on,
            "read" => self.read = on,
            "reverse" => self.reverse = on,
            _ => {}
        }
        self
    }

    /// Every combination of the switches, `bench` first; without
    /// `reverse` when `ordered` is false (a workload whose frees have no
    /// order).
    pub fn all(ordered: bool) -> Vec<Shape> {
        let n = if ordered { 8 } else { 4 };
        (0..n)
            .map(|i| Shape {
                arc: i & 1 != 0,
                read: i & 2 != 0,
                reverse: i & 4 != 0,
            })
            .collect()
    }
}

/// How one worker reaches the subject.
pub trait Reach<'s, S>: Send + 's {
    /// The subject.
    fn get(&self) -> &'s S;
}

impl<'s, S: Sync> Reach<'s, S> for &'s S {
    #[inline(always)]
    fn get(&self) -> &'s S {
        self
    }
}

/// A worker's own clone of the `Arc` the subject lives in.
pub struct ArcClone<'s, S> {
    arc: Arc<S>,
    _from: PhantomData<&'s Arc<S>>,
}

impl<'s, S> ArcClone<'s, S> {
    /// A clone of `arc`.
    pub fn of(arc: &'s Arc<S>) -> Self {
        Self {
            arc: Arc::clone(arc),
            _from: PhantomData,
        }
    }
}

impl<'s, S: Send + Sync> Reach<'s, S> for ArcClone<'s, S> {
    #[inline(always)]
    fn get(&self) -> &'s S {
        // SAFETY: `self.arc` and the `&'s Arc<S>` it was cloned from (`of`)
        // point to the same `S`, which that `Arc` keeps alive for all of
        // `'s`; only shared references to it are ever made.
        unsafe { &*Arc::as_ptr(&self.arc) }
    }
}

/// A workload that runs in any [`Shape`].
pub trait Shaped<T: Obj>: Sync {
    /// Blocks allocated and freed per iteration (all threads).
    fn elements(&self) -> u64;
    /// The shape it runs in.
    fn shape(&self) -> Shape;
    /// Runs `iters` iterations, each worker reaching the subject through
    /// its own `reach()`, and returns the measured time.
    fn run_via<'s, S: Subject<T> + 's, R: Reach<'s, S>>(
        &self,
        reach: &(dyn Fn() -> R + Sync),
        iters: u64,
    ) -> Duration;
}

/// Runs `w` on the subject in `s`: its workers hold clones of `s` or share
/// a reference, as `w`'s shape says.
pub fn run_shaped<T: Obj, W: Shaped<T>, S: Subject<T>>(w: &W, s: &Arc<S>, iters: u64) -> Duration {
    if w.shape().arc {
        w.run_via::<S, _>(&|| ArcClone::of(s), iters)
    } else {
        let r: &S = s;
        w.run_via::<S, _>(&|| r, iters)
    }
}

/// Calls `$f::<…, READ, REVERSE>($args)` with the shape's two switches as
/// constants, so that every combination is its own loop.
macro_rules! by_switches {
    ($shape:expr, $f:ident::<$($g:ty),*>($($a:expr),*)) => {
        match ($shape.read, $shape.reverse) {
            (false, false) => $f::<$($g,)* false, false>($($a),*),
            (true, false) => $f::<$($g,)* true, false>($($a),*),
            (false, true) => $f::<$($g,)* false, true>($($a),*),
            (true, true) => $f::<$($g,)* true, true>($($a),*),
        }
    };
}

/// Frees every block of `v`, in the order `REVERSE` says, reading each
/// first if `READ`; returns the sum of what was read.
#[inline(always)]
fn free_batch<
    's,
    T: Obj,
    S: Subject<T> + 's,
    R: Reach<'s, S>,
    const READ: bool,
    const REVERSE: bool,
>(
    r: &R,
    v: &mut Vec<S::Handle<'s>>,
) -> u64 {
    let mut sum = 0u64;
    let mut free = |h: S::Handle<'s>| {
        if READ {
            sum = sum.wrapping_add(r.get().with(&h, T::first));
        }
        r.get().free(h);
    };
    if REVERSE {
        while let Some(h) = v.pop() {
            free(h);
        }
    } else {
        for h in v.drain(..) {
            free(h);
        }
    }
    sum
}

/// `local` in a [`Shape`]: each thread allocates [`LOCAL_BATCH`] blocks,
/// then frees them. Every free is local.
pub struct ShapedLocal {
    /// Worker threads.
    pub threads: usize,
    /// The shape.
    pub shape: Shape,
}

#[inline(always)]
fn local_round<
    's,
    T: Obj,
    S: Subject<T> + 's,
    R: Reach<'s, S>,
    const READ: bool,
    const REVERSE: bool,
>(
    r: &R,
    v: &mut Vec<S::Handle<'s>>,
) {
    for i in 0..LOCAL_BATCH {
        v.push(r.get().alloc(T::make(i as u64)));
    }
    black_box(free_batch::<T, S, R, READ, REVERSE>(r, v));
}

fn local_run<
    's,
    T: Obj,
    S: Subject<T> + 's,
    R: Reach<'s, S>,
    const READ: bool,
    const REVERSE: bool,
>(
    threads: usize,
    reach: &(dyn Fn() -> R + Sync),
    iters: u64,
) -> Duration {
    let bodies: Vec<Body<'s>> = (0..threads)
        .map(|_| {
            let r = reach();
            Box::new(move |g: &Gate| {
                let mut v = Vec::with_capacity(LOCAL_BATCH);
                local_round::<T, S, R, READ, REVERSE>(&r, &mut v); // warm-up
                g.start();
                for _ in 0..iters {
                    local_round::<T, S, R, READ, REVERSE>(&r, &mut v);
                }
                g.stop();
            }) as Body<'s>
        })
        .collect();
    run(bodies)
}

impl<T: Obj> Shaped<T> for ShapedLocal {
    fn elements(&self) -> u64 {
        (self.threads * LOCAL_BATCH) as u64
    }
    fn shape(&self) -> Shape {
        self.shape
    }
    fn run_via<'s, S: Subject<T> + 's, R: Reach<'s, S>>(
        &self,
        reach: &(dyn Fn() -> R + Sync),
        iters: u64,
    ) -> Duration {
        by_switches!(self.shape, local_run::<T, S, R>(self.threads, reach, iters))
    }
}

/// `xthread` in a [`Shape`]: a producer allocates batches of
/// [`XTHREAD_BATCH`] blocks and hands them to its consumer, which frees
/// them (every free remote; read and order apply to the consumer).
pub struct ShapedXThread {
    /// Producer/consumer pairs (threads = 2 × pairs).
    pub pairs: usize,
    /// The shape.
    pub shape: Shape,
}

/// Batches in flight per pair, as in [`super::workloads::XThread`].
const XTHREAD_INFLIGHT: usize = 4;

fn xthread_run<
    's,
    T: Obj,
    S: Subject<T> + 's,
    R: Reach<'s, S>,
    const READ: bool,
    const REVERSE: bool,
>(
    pairs: usize,
    reach: &(dyn Fn() -> R + Sync),
    iters: u64,
) -> Duration {
    let batches = iters as usize * (XTHREAD_PER_ITER / XTHREAD_BATCH);
    let mut bodies: Vec<Body<'s>> = Vec::new();
    for _ in 0..pairs {
        let (full_tx, full_rx) = mpsc::channel::<Vec<S::Handle<'s>>>();
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<S::Handle<'s>>>();
        for _ in 0..XTHREAD_INFLIGHT {
            empty_tx
                .send(Vec::with_capacity(XTHREAD_BATCH))
                .expect("channel");
        }
        let (rp, rc) = (reach(), reach());
        let produce = move |n: usize| {
            for _ in 0..n {
                let mut v = recv_spin(&empty_rx);
                for i in 0..XTHREAD_BATCH {
                    v.push(rp.get().alloc(T::make(i as u64)));
                }
                full_tx.send(v).expect("consumer alive");
            }
        };
        let consume = move |n: usize| {
            for _ in 0..n {
                let mut v = recv_spin(&full_rx);
                black_box(free_batch::<T, S, R, READ, REVERSE>(&rc, &mut v));
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

impl<T: Obj> Shaped<T> for ShapedXThread {
    fn elements(&self) -> u64 {
        (self.pairs * XTHREAD_PER_ITER) as u64
    }
    fn shape(&self) -> Shape {
        self.shape
    }
    fn run_via<'s, S: Subject<T> + 's, R: Reach<'s, S>>(
        &self,
        reach: &(dyn Fn() -> R + Sync),
        iters: u64,
    ) -> Duration {
        by_switches!(self.shape, xthread_run::<T, S, R>(self.pairs, reach, iters))
    }
}

/// `larson` in a [`Shape`]: each thread keeps [`LARSON_LIVE`] live blocks
/// and replaces random ones ([`LARSON_REPLACE`] per round), then passes its
/// set round the ring of threads. `reverse` does not apply.
pub struct ShapedLarson {
    /// Worker threads.
    pub threads: usize,
    /// The shape.
    pub shape: Shape,
}

#[inline(always)]
fn larson_round<'s, T: Obj, S: Subject<T> + 's, R: Reach<'s, S>, const READ: bool>(
    r: &R,
    set: &mut [Option<S::Handle<'s>>],
    rng: &mut Rng,
) {
    let mut sum = 0u64;
    for _ in 0..LARSON_REPLACE {
        let i = rng.below(set.len());
        if let Some(old) = set[i].take() {
            if READ {
                sum = sum.wrapping_add(r.get().with(&old, T::first));
            }
            r.get().free(old);
        }
        set[i] = Some(r.get().alloc(T::make(i as u64)));
    }
    black_box(sum);
}

fn larson_run<
    's,
    T: Obj,
    S: Subject<T> + 's,
    R: Reach<'s, S>,
    const READ: bool,
    const REVERSE: bool,
>(
    threads: usize,
    reach: &(dyn Fn() -> R + Sync),
    iters: u64,
) -> Duration {
    let bodies: Vec<Body<'s>> = ring::<Vec<Option<S::Handle<'s>>>>(threads)
        .into_iter()
        .enumerate()
        .map(|(t, (tx, rx))| {
            let r = reach();
            Box::new(move |g: &Gate| {
                let mut rng = Rng::new(t as u64 + 1);
                let mut set: Vec<Option<S::Handle<'s>>> = (0..LARSON_LIVE)
                    .map(|i| Some(r.get().alloc(T::make(i as u64))))
                    .collect();
                larson_round::<T, S, R, READ>(&r, &mut set, &mut rng); // warm-up
                g.start();
                for _ in 0..iters {
                    larson_round::<T, S, R, READ>(&r, &mut set, &mut rng);
                    if threads > 1 {
                        tx.send(core::mem::take(&mut set)).expect("ring");
                        set = recv_spin(&rx);
                    }
                }
                g.stop();
                for h in set.into_iter().flatten() {
                    r.get().free(h);
                }
            }) as Body<'s>
        })
        .collect();
    run(bodies)
}

impl<T: Obj> Shaped<T> for ShapedLarson {
    fn elements(&self) -> u64 {
        (self.threads * LARSON_REPLACE) as u64
    }
    fn shape(&self) -> Shape {
        self.shape
    }
    fn run_via<'s, S: Subject<T> + 's, R: Reach<'s, S>>(
        &self,
        reach: &(dyn Fn() -> R + Sync),
        iters: u64,
    ) -> Duration {
        // `reverse` is ignored: one loop per `read`.
        let shape = Shape {
            reverse: false,
            ..self.shape
        };
        by_switches!(shape, larson_run::<T, S, R>(self.threads, reach, iters))
    }
}
