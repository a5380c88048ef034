//! `larson_churn`: larson whose threads do not outlive a round.
//!
//! Every *slot* (one per thread of the workload) owns a live set of
//! [`CHURN_LIVE`] blocks. A round of a slot is one short-lived thread: it
//! receives the set from the slot's previous thread, makes
//! [`CHURN_REPLACE`] replacements in it (free a random block, allocate a new
//! one, as [`larson_round`] does), spawns the slot's next thread, hands it
//! the set and exits. Frees therefore mostly target blocks allocated by
//! threads that have exited (whose slabs, for a per-thread allocator, are
//! orphaned or handed back): with as many replacements as live blocks,
//! about 1 − 1/e ≈ 63% of a thread's frees are of blocks some earlier,
//! dead, thread allocated, the rest of blocks it allocated itself.
//!
//! Slots are independent chains (no barrier between them per round), and the
//! old thread's exit overlaps its successor's work, as in a server that
//! retires worker threads. The cost of spawning and exiting a thread is in
//! the measured time; [`LarsonChurn::spawn_only`] is the same chain with no
//! replacements, to say how much of a round that is.

use std::thread::Scope;
use std::time::Duration;

use super::harness::{run, Body, Gate, Rng};
use super::subjects::{Obj, Subject};
use super::workloads::{larson_round, Workload};

/// Live blocks per `larson_churn` slot.
pub const CHURN_LIVE: usize = 10_000;
/// Replacements per `larson_churn` thread (one thread per slot per round).
pub const CHURN_REPLACE: usize = 10_000;

/// The `larson_churn` workload (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct LarsonChurn {
    /// Slots: threads running at once.
    pub threads: usize,
    /// Live blocks per slot.
    pub live: usize,
    /// Replacements per thread.
    pub replace: usize,
}

impl LarsonChurn {
    /// `threads` slots of [`CHURN_LIVE`] blocks, [`CHURN_REPLACE`]
    /// replacements per thread.
    pub const fn new(threads: usize) -> Self {
        Self {
            threads,
            live: CHURN_LIVE,
            replace: CHURN_REPLACE,
        }
    }

    /// The same chains of threads with no replacements: what spawning,
    /// handing over the set and exiting cost per round.
    pub const fn spawn_only(self) -> Self {
        Self { replace: 0, ..self }
    }
}

/// A slot's set and generator, handed from thread to thread.
struct Baton<H> {
    set: Vec<Option<H>>,
    rng: Rng,
}

/// One timed round of a slot: `left` rounds remain, this one included.
fn generation<'scope, 'env: 'scope, T: Obj, S: Subject<T>>(
    sc: &'scope Scope<'scope, 'env>,
    g: &'env Gate,
    s: &'env S,
    replace: usize,
    mut b: Baton<S::Handle<'env>>,
    left: u64,
) {
    larson_round::<T, S>(s, &mut b.set, &mut b.rng, replace);
    if left > 1 {
        sc.spawn(move || generation::<T, S>(sc, g, s, replace, b, left - 1));
    } else {
        g.stop();
        for h in b.set.into_iter().flatten() {
            s.free(h);
        }
    }
}

impl<T: Obj> Workload<T> for LarsonChurn {
    fn elements(&self) -> u64 {
        (self.threads * self.replace) as u64
    }

    fn run<S: Subject<T>>(&self, s: &S, iters: u64) -> Duration {
        let p = *self;
        let bodies: Vec<Body<'_>> = (0..p.threads)
            .map(|t| {
                Box::new(move |g: &Gate| {
                    // The slot's chain runs in scoped threads of its own; this
                    // thread only waits for it (asleep, not spinning).
                    std::thread::scope(|sc| {
                        sc.spawn(move || {
                            // Round 0, untimed: the set is allocated (and
                            // churned once) by a thread that then exits too.
                            let mut b = Baton {
                                set: (0..p.live)
                                    .map(|i| Some(s.alloc(T::make(i as u64))))
                                    .collect(),
                                rng: Rng::new(t as u64 + 1),
                            };
                            larson_round::<T, S>(s, &mut b.set, &mut b.rng, p.replace);
                            g.start();
                            if iters == 0 {
                                g.stop();
                                for h in b.set.into_iter().flatten() {
                                    s.free(h);
                                }
                                return;
                            }
                            sc.spawn(move || generation::<T, S>(sc, g, s, p.replace, b, iters));
                        });
                    });
                }) as Body<'_>
            })
            .collect();
        run(bodies)
    }
}
