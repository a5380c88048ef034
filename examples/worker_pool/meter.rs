//! Each thread's counters and sampled latencies, per pool. One operation
//! in 64 on average, at random intervals, is timed with `Instant` into an
//! HDR histogram per pool (so the latencies include the ~20–40 ns of
//! reading the clock): for responses the `get` (or `Vec::with_capacity`)
//! and the drop, for headers the `with_capacity_in` and the drop.

use std::time::Instant;

use hdrhistogram::Histogram;
use homeslab::allocator_api2::alloc::Allocator;
use homeslab::allocator_api2::vec::Vec as AVec;

use crate::common::harness::Rng;
use crate::common::subjects::Subject;
use crate::stamp::{header_words, stamp_words, verify_headers, Stamped};
use crate::{HEADER, SAMPLE};

/// One thread's counters and sampled latencies for one pool.
pub struct PoolMeter {
    pub alloc_ns: Histogram<u64>,
    pub free_ns: Histogram<u64>,
    pub allocs: u64,
    pub frees: u64,
    /// Frees of blocks another thread allocated.
    pub cross_frees: u64,
}

impl PoolMeter {
    fn new() -> Self {
        Self {
            alloc_ns: Histogram::new(3).expect("histogram"),
            free_ns: Histogram::new(3).expect("histogram"),
            allocs: 0,
            frees: 0,
            cross_frees: 0,
        }
    }

    fn merge(&mut self, o: &PoolMeter) {
        self.alloc_ns.add(&o.alloc_ns).expect("histogram merge");
        self.free_ns.add(&o.free_ns).expect("histogram merge");
        self.allocs += o.allocs;
        self.frees += o.frees;
        self.cross_frees += o.cross_frees;
    }
}

/// Counters and sampled latencies of one thread, per pool.
pub struct Meter {
    pub pools: [PoolMeter; 4],
    /// Operations until the next timed one.
    countdown: u64,
    rng: Rng,
    pub mismatches: u64,
    pub requests: u64,
    /// Response buffers released grown past [`RESPONSE_KEEP_CAP`] (those
    /// the object pool's `keep_if` refuses).
    pub grown: u64,
}

impl Meter {
    pub fn new(seed: u64) -> Self {
        let mut m = Self {
            pools: std::array::from_fn(|_| PoolMeter::new()),
            countdown: 1,
            rng: Rng::new(seed),
            mismatches: 0,
            requests: 0,
            grown: 0,
        };
        m.timed(); // a random first gap
        m
    }

    /// Whether to time this operation: one in [`SAMPLE`] on average, at
    /// random intervals (a fixed stride would keep timing the same place of
    /// a burst, and so the same pool).
    #[inline]
    fn timed(&mut self) -> bool {
        self.countdown -= 1;
        if self.countdown > 0 {
            return false;
        }
        self.countdown = 1 + self.rng.below(2 * SAMPLE as usize - 1) as u64;
        true
    }

    /// Runs `f`, an allocation from pool `pool`, counted (and timed when
    /// sampled).
    #[inline(always)]
    pub fn alloc_with<H>(&mut self, pool: usize, f: impl FnOnce() -> H) -> H {
        let timed = self.timed();
        let p = &mut self.pools[pool];
        p.allocs += 1;
        if timed {
            let t = Instant::now();
            let h = f();
            p.alloc_ns.saturating_record(t.elapsed().as_nanos() as u64);
            h
        } else {
            f()
        }
    }

    /// Runs `f`, a free to pool `pool` of a block whose stamp was checked
    /// already (`ok`: it matched; `cross`: another thread allocated it),
    /// counted (and timed when sampled).
    #[inline(always)]
    pub fn free_with(&mut self, pool: usize, ok: bool, cross: bool, f: impl FnOnce()) {
        if !ok {
            self.mismatches += 1;
        }
        let timed = self.timed();
        let p = &mut self.pools[pool];
        p.frees += 1;
        p.cross_frees += u64::from(cross);
        if timed {
            let t = Instant::now();
            f();
            p.free_ns.saturating_record(t.elapsed().as_nanos() as u64);
        } else {
            f();
        }
    }

    #[inline]
    pub fn alloc<'s, T: Stamped, S: Subject<T>>(&mut self, s: &'s S, v: T) -> S::Handle<'s> {
        self.alloc_with(T::POOL, || s.alloc(v))
    }

    /// Verifies the stamp, then frees (`cross`: a block another thread
    /// allocated).
    #[inline]
    pub fn free<'s, T: Stamped, S: Subject<T>>(
        &mut self,
        s: &'s S,
        h: S::Handle<'s>,
        cross: bool,
    ) -> Option<u64> {
        let seq = s.with(&h, |m| m.verify());
        self.release(s, h, seq.is_some(), cross);
        seq
    }

    /// Frees a block whose stamp was checked already (`ok`: it matched).
    #[inline]
    pub fn release<'s, T: Stamped, S: Subject<T>>(
        &mut self,
        s: &'s S,
        h: S::Handle<'s>,
        ok: bool,
        cross: bool,
    ) {
        self.free_with(T::POOL, ok, cross, || s.free(h));
    }

    /// Request `seq`'s headers, built in `heap` (the allocation counted and
    /// sampled; the words are written after it).
    #[inline]
    pub fn headers<'h, H: Allocator>(&mut self, heap: &'h H, seq: u64) -> AVec<u64, &'h H> {
        let n = header_words(seq);
        let mut h = self.alloc_with(HEADER, || AVec::with_capacity_in(n, heap));
        stamp_words(HEADER, seq, n, |w| h.push(w));
        h
    }

    /// Drops headers of another thread's whose stamp was checked already
    /// (`ok`: it matched).
    #[inline]
    pub fn release_headers<H: Allocator>(&mut self, h: AVec<u64, H>, ok: bool) {
        self.free_with(HEADER, ok, true, || drop(h));
    }

    /// Verifies and frees a long-lived request and its headers (both
    /// allocated by another thread).
    pub fn free_kept<'s, R: Stamped, S: Subject<R>, H: Allocator>(
        &mut self,
        s: &'s S,
        req: S::Handle<'s>,
        headers: AVec<u64, H>,
    ) {
        let heads = verify_headers(&headers);
        let seq = self.free(s, req, true);
        self.release_headers(headers, heads.is_some());
        if seq.is_some() && heads.is_some() && seq != heads {
            self.mismatches += 1; // the headers must be the request's
        }
    }

    pub fn merge(&mut self, o: &Meter) {
        for (p, q) in self.pools.iter_mut().zip(&o.pools) {
            p.merge(q);
        }
        self.mismatches += o.mismatches;
        self.requests += o.requests;
        self.grown += o.grown;
    }

    /// The sum over the pools of `f`.
    pub fn total(&self, f: impl Fn(&PoolMeter) -> u64) -> u64 {
        self.pools.iter().map(f).sum()
    }

    /// One histogram of every pool's `f`.
    pub fn merged(&self, f: impl Fn(&PoolMeter) -> &Histogram<u64>) -> Histogram<u64> {
        let mut h = Histogram::new(3).expect("histogram");
        for p in &self.pools {
            h.add(f(p)).expect("histogram merge");
        }
        h
    }
}
