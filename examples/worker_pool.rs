//! A server-shaped workload on homeslab's three kinds of pool — typed
//! `Pool`s, an `ObjectPool` of constructed buffers and the size-classed
//! `SlabAlloc` behind per-request collections — run once on homeslab and
//! once on `Box` and `Vec` (the system allocator), with side-by-side tables
//! at the end.
//!
//! ```text
//! cargo run --release --example worker_pool
//! cargo run --release --example worker_pool -- --threads 8 --seconds 5 --object-size 256
//! cargo run --release --example worker_pool -- --json
//! ```
//!
//! What each request takes, as a server keeps it (homeslab / `Box` run):
//!
//! - *request*, `--object-size` bytes (16, 64, 256 or 1024; default 64), in
//!   a `homeslab::Pool` / a `Box`: the acceptors allocate them, the workers
//!   free them;
//! - *headers*, a `Vec<u64>` of 2 to 12 words (16–96 bytes) built by the
//!   acceptor with `allocator_api2`'s `Vec::with_capacity_in`, in one
//!   `homeslab::SlabAlloc` that every thread shares / in `Global` (the
//!   system allocator): the worker reads and verifies them and drops them
//!   with the request — or, for a long-lived request, whichever thread
//!   evicts it from the cache later. Each vector holds a `&SlabAlloc` (a
//!   clone per vector would bump one shared reference count from every
//!   thread);
//! - *response*, a `Vec<u8>` buffer: on homeslab a constructed one from an
//!   `ObjectPool<Vec<u8>>` (built with `Vec::with_capacity(512)`, reset with
//!   `clear()`, kept only while its capacity is at most 1 KiB), so a reused
//!   get allocates nothing; on `Box` a fresh `Vec::with_capacity(512)` per
//!   response, as a program without an object pool does. The worker gets
//!   one and fills it — 512 bytes, except one response in 64, which is
//!   4 KiB and grows its buffer (the object pool then drops that buffer
//!   instead of caching it) — and the acceptor verifies and drops it, so
//!   every buffer is released on another thread;
//! - *session*, 32 bytes of per-request metadata in a `homeslab::Pool` /
//!   a `Box`: the acceptors allocate and free them, the workers read them.
//!
//! The threads:
//!
//! - *Acceptor* threads allocate requests, each with its session and
//!   headers, in bursts of 16, and hand each burst to a worker slot (round
//!   robin).
//! - *Worker* threads verify each request's stamp and that its session and
//!   headers are the request's, get a response buffer and fill it, send the
//!   responses with their sessions back to the acceptor (which verifies and
//!   frees both), and free the request and its headers — except one in 32,
//!   which a worker keeps with its headers in its slot's long-lived cache
//!   (up to 2048 per slot, oldest freed first).
//! - Workers come and go: each serves its slot for a random number of bursts,
//!   then exits; the supervisor starts a new thread on the same slot, which
//!   inherits the long-lived cache. So blocks outlive the threads that
//!   allocated them and are freed by threads that did not exist then.
//! - Acceptors keep at most 4096 requests outstanding (back-pressure), so
//!   live memory is bounded.
//!
//! Every block carries a stamp (its sequence number and a checksum over its
//! kind, the sequence number and the payload) that the freeing thread
//! verifies — a response buffer's bytes and a header vector's words too,
//! whose lengths must also be the ones their sequence number calls for; a
//! response, a session and the headers must carry their request's sequence
//! number. Mismatches are counted and must be 0, every block must be freed,
//! and homeslab's pools and allocator must all end with no live block (the
//! exit code is 1 otherwise). One operation in 64 on average, at
//! random intervals, is timed with `Instant` into an HDR histogram per pool
//! (so the latencies include the ~20–40 ns of reading the clock): for
//! responses the `get` (or `Vec::with_capacity`) and the drop, for headers
//! the `with_capacity_in` and the drop.

#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use homeslab::allocator_api2::alloc::{Allocator, Global};
use homeslab::allocator_api2::vec::Vec as AVec;
use homeslab::{ObjectPool, Pooled, SlabAlloc, Stats};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use common::harness::{rss_bytes, Rng};
use common::subjects::{Homeslab, Obj, Subject, SystemBox};

const USAGE: &str = "\
usage: worker_pool [--threads N] [--seconds S] [--object-size BYTES] [--json]

Runs the workload on homeslab (requests and sessions in homeslab::Pools,
response buffers from a homeslab::ObjectPool<Vec<u8>>, per-request header
vectors in a shared homeslab::SlabAlloc), then on Box, a fresh Vec per
response and allocator-api2's Global, and compares.

  --threads N          total threads: max(1, N/3) acceptors, the rest workers (N >= 2; default 4)
  --seconds S          run time per allocator (default 3; 0 < S <= 3600)
  --object-size BYTES  request size: 16, 64, 256 or 1024 (default 64);
                       sessions are 32 bytes, headers 16-96, responses 512
                       (one in 64: 4096) in Vec<u8> buffers of capacity 512
  --json               machine-readable output on stdout, no progress bar
  -h, --help           this text";

/// Requests per burst (one channel message).
const BURST: usize = 16;
/// Requests an acceptor may have in flight.
const MAX_OUTSTANDING: usize = 4096;
/// Long-lived requests a worker slot keeps.
const CACHE_CAP: usize = 2048;
/// One request in `KEEP` goes to the long-lived cache.
const KEEP: usize = 32;
/// Bursts a worker serves before it exits: uniform in this range.
const LIFETIME: (usize, usize) = (500, 5000);
/// One operation in `SAMPLE` (on average) is timed.
const SAMPLE: u64 = 64;

/// Bytes of a response.
const RESPONSE_LEN: usize = 512;
/// Bytes of a large response: one request in [`LARGE_EVERY`] (by sequence
/// number) gets one.
const LARGE_RESPONSE_LEN: usize = 4096;
/// See [`LARGE_RESPONSE_LEN`].
const LARGE_EVERY: u64 = 64;
/// The capacity a response buffer starts with: a typical response fits
/// without growing it.
const RESPONSE_CAPACITY: usize = RESPONSE_LEN;
/// The object pool caches a released buffer only up to this capacity: one
/// that a large response grew is dropped rather than kept (its 4 KiB would
/// stay pinned in the cache).
const RESPONSE_KEEP_CAP: usize = 1024;
/// Header words per request: uniform in this range (by sequence number).
const HEADER_WORDS: (usize, usize) = (2, 12);

// ---------------------------------------------------------------------------
// Stamped objects, one type per pool

/// The request pool's index (in [`POOLS`] and every per-pool array).
const REQUEST: usize = 0;
/// The response buffers' index.
const RESPONSE: usize = 1;
/// The session pool's index.
const SESSION: usize = 2;
/// The header vectors' index.
const HEADER: usize = 3;
/// The pools' names, by index.
const POOLS: [&str; 4] = ["request", "response", "session", "headers"];

/// A message of kind `K` (a pool index) and `16 + 8 * P` bytes: a sequence
/// number, a checksum over the kind, the sequence number and the payload, and
/// the payload.
#[repr(C)]
struct Msg<const K: usize, const P: usize> {
    seq: u64,
    sum: u64,
    payload: [u64; P],
}

/// A request of `16 + 8 * P` bytes (`--object-size`).
type Request<const P: usize> = Msg<REQUEST, P>;
/// Per-request session metadata: 32 bytes.
type Session = Msg<SESSION, 2>;

#[inline(always)]
fn fill(seq: u64, i: usize) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

#[inline(always)]
fn checksum(kind: usize, seq: u64, payload: impl IntoIterator<Item = u64>) -> u64 {
    let mut h = seq ^ 0x243f_6a88_85a3_08d3;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    for w in std::iter::once(kind as u64).chain(payload) {
        h = (h ^ w).rotate_left(23).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    }
    h ^ (h >> 29)
}

/// Writes a stamp of `n >= 2` words with `put`: the sequence number, the
/// checksum, then `n - 2` payload words (as a [`Msg`] lays them out).
#[inline(always)]
fn stamp_words(kind: usize, seq: u64, n: usize, mut put: impl FnMut(u64)) {
    let payload = (0..n - 2).map(move |i| fill(seq, i));
    put(seq);
    put(checksum(kind, seq, payload.clone()));
    payload.for_each(put);
}

/// The sequence number of `n` words that [`stamp_words`] wrote, if they
/// check out and `n` is the `words(seq)` their sequence number calls for.
#[inline(always)]
fn verify_words(
    kind: usize,
    mut it: impl Iterator<Item = u64> + Clone,
    n: usize,
    words: fn(u64) -> usize,
) -> Option<u64> {
    let seq = it.next()?;
    let sum = it.next()?;
    let ok = n == words(seq)
        && it.clone().enumerate().all(|(i, w)| w == fill(seq, i))
        && checksum(kind, seq, it) == sum;
    ok.then_some(seq)
}

/// The length in words of the response to request `seq`.
fn response_words(seq: u64) -> usize {
    if seq % LARGE_EVERY == 0 {
        LARGE_RESPONSE_LEN / 8
    } else {
        RESPONSE_LEN / 8
    }
}

/// Fills the (empty) buffer with the response to request `seq`: its
/// stamp's words, little-endian.
#[inline]
fn write_response(buf: &mut Vec<u8>, seq: u64) {
    stamp_words(RESPONSE, seq, response_words(seq), |w| {
        buf.extend_from_slice(&w.to_le_bytes())
    });
}

/// The request a response answers, if its stamp checks out.
#[inline]
fn verify_response(buf: &[u8]) -> Option<u64> {
    if buf.len() % 8 != 0 {
        return None;
    }
    let words = buf
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
    verify_words(RESPONSE, words, buf.len() / 8, response_words)
}

/// The number of header words of request `seq`.
fn header_words(seq: u64) -> usize {
    let span = (HEADER_WORDS.1 - HEADER_WORDS.0 + 1) as u64;
    HEADER_WORDS.0 + (fill(seq, usize::MAX) % span) as usize
}

/// The request some headers belong to, if their stamp checks out.
#[inline]
fn verify_headers<H: Allocator>(h: &AVec<u64, H>) -> Option<u64> {
    verify_words(HEADER, h.iter().copied(), h.len(), header_words)
}

/// What the example needs of a message type.
trait Stamped: Obj {
    /// Its pool's index.
    const POOL: usize;
    /// A stamped message.
    fn stamp(seq: u64) -> Self;
    /// The sequence number, if the stamp checks out.
    fn verify(&self) -> Option<u64>;
}

impl<const K: usize, const P: usize> Obj for Msg<K, P> {
    #[inline]
    fn make(seed: u64) -> Self {
        Self::stamp(seed)
    }
    #[inline]
    fn first(&self) -> u64 {
        self.seq
    }
}

impl<const K: usize, const P: usize> Stamped for Msg<K, P> {
    const POOL: usize = K;

    #[inline]
    fn stamp(seq: u64) -> Self {
        let mut payload = [0u64; P];
        for (i, w) in payload.iter_mut().enumerate() {
            *w = fill(seq, i);
        }
        let sum = checksum(K, seq, payload.iter().copied());
        Msg { seq, sum, payload }
    }

    #[inline]
    fn verify(&self) -> Option<u64> {
        let ok = checksum(K, self.seq, self.payload.iter().copied()) == self.sum
            && self
                .payload
                .iter()
                .enumerate()
                .all(|(i, &w)| w == fill(self.seq, i));
        ok.then_some(self.seq)
    }
}

// ---------------------------------------------------------------------------
// Per-thread metering

/// One thread's counters and sampled latencies for one pool.
struct PoolMeter {
    alloc_ns: Histogram<u64>,
    free_ns: Histogram<u64>,
    allocs: u64,
    frees: u64,
    /// Frees of blocks another thread allocated.
    cross_frees: u64,
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
struct Meter {
    pools: [PoolMeter; 4],
    /// Operations until the next timed one.
    countdown: u64,
    rng: Rng,
    mismatches: u64,
    requests: u64,
    /// Response buffers released grown past [`RESPONSE_KEEP_CAP`] (those
    /// the object pool's `keep_if` refuses).
    grown: u64,
}

impl Meter {
    fn new(seed: u64) -> Self {
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
    fn alloc_with<H>(&mut self, pool: usize, f: impl FnOnce() -> H) -> H {
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
    fn free_with(&mut self, pool: usize, ok: bool, cross: bool, f: impl FnOnce()) {
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
    fn alloc<'s, T: Stamped, S: Subject<T>>(&mut self, s: &'s S, v: T) -> S::Handle<'s> {
        self.alloc_with(T::POOL, || s.alloc(v))
    }

    /// Verifies the stamp, then frees (`cross`: a block another thread
    /// allocated).
    #[inline]
    fn free<'s, T: Stamped, S: Subject<T>>(
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
    fn release<'s, T: Stamped, S: Subject<T>>(
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
    fn headers<'h, H: Allocator>(&mut self, heap: &'h H, seq: u64) -> AVec<u64, &'h H> {
        let n = header_words(seq);
        let mut h = self.alloc_with(HEADER, || AVec::with_capacity_in(n, heap));
        stamp_words(HEADER, seq, n, |w| h.push(w));
        h
    }

    /// Drops headers of another thread's whose stamp was checked already
    /// (`ok`: it matched).
    #[inline]
    fn release_headers<H: Allocator>(&mut self, h: AVec<u64, H>, ok: bool) {
        self.free_with(HEADER, ok, true, || drop(h));
    }

    /// Verifies and frees a long-lived request and its headers (both
    /// allocated by another thread).
    fn free_kept<'s, R: Stamped, S: Subject<R>, H: Allocator>(
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

    fn merge(&mut self, o: &Meter) {
        for (p, q) in self.pools.iter_mut().zip(&o.pools) {
            p.merge(q);
        }
        self.mismatches += o.mismatches;
        self.requests += o.requests;
        self.grown += o.grown;
    }

    /// The sum over the pools of `f`.
    fn total(&self, f: impl Fn(&PoolMeter) -> u64) -> u64 {
        self.pools.iter().map(f).sum()
    }

    /// One histogram of every pool's `f`.
    fn merged(&self, f: impl Fn(&PoolMeter) -> &Histogram<u64>) -> Histogram<u64> {
        let mut h = Histogram::new(3).expect("histogram");
        for p in &self.pools {
            h.add(f(p)).expect("histogram merge");
        }
        h
    }
}

// ---------------------------------------------------------------------------
// The workload

/// The allocators of one run: a subject per message type, a source of
/// response buffers, and the allocator of the per-request collections.
trait Alloc: 'static {
    /// The subject for `T`.
    type Pool<T: Stamped>: Subject<T> + 'static;
    /// Where response buffers come from.
    type Buffers: Sync + 'static;
    /// A response buffer in flight (released on any thread).
    type Buf: Send + DerefMut<Target = Vec<u8>>;
    /// The allocator of the header vectors (shared by reference).
    type Heap: Allocator + Sync + 'static;
    /// What serves each pool, by pool index (the tables' "via" column).
    const VIA: [&'static str; 4];

    /// A fresh subject.
    fn pool<T: Stamped>() -> Self::Pool<T>;
    /// A fresh buffer source.
    fn buffers() -> Self::Buffers;
    /// An empty buffer of at least [`RESPONSE_CAPACITY`] bytes.
    fn get(b: &Self::Buffers) -> Self::Buf;
    /// The buffer source's homeslab counters (`None` for `Vec`).
    fn buffer_stats(b: &Self::Buffers) -> Option<Stats>;
    /// A fresh collection allocator.
    fn heap() -> Self::Heap;
    /// Its homeslab counters (`None` for `Global`).
    fn heap_stats(h: &Self::Heap) -> Option<Stats>;
}

/// A `homeslab::Pool` per message type, an `ObjectPool<Vec<u8>>` of
/// response buffers, a `SlabAlloc` for the headers.
struct OnHomeslab;

impl Alloc for OnHomeslab {
    type Pool<T: Stamped> = Homeslab<T>;
    type Buffers = ObjectPool<Vec<u8>>;
    type Buf = Pooled<Vec<u8>>;
    type Heap = SlabAlloc;
    const VIA: [&'static str; 4] = ["Pool", "ObjectPool<Vec<u8>>", "Pool", "SlabAlloc"];

    fn pool<T: Stamped>() -> Homeslab<T> {
        Homeslab::new(false)
    }

    fn buffers() -> ObjectPool<Vec<u8>> {
        ObjectPool::builder(|| Vec::with_capacity(RESPONSE_CAPACITY))
            .reset(|v: &mut Vec<u8>| v.clear())
            .keep_if(|v: &Vec<u8>| v.capacity() <= RESPONSE_KEEP_CAP)
            .build()
            .expect("object pool config")
    }

    #[inline(always)]
    fn get(b: &ObjectPool<Vec<u8>>) -> Pooled<Vec<u8>> {
        match b.get() {
            Ok(v) => v,
            Err(e) => panic!("homeslab object pool get failed: {e}"),
        }
    }

    fn buffer_stats(b: &ObjectPool<Vec<u8>>) -> Option<Stats> {
        Some(b.stats())
    }

    fn heap() -> SlabAlloc {
        SlabAlloc::new()
    }

    fn heap_stats(h: &SlabAlloc) -> Option<Stats> {
        Some(h.stats())
    }
}

/// `Box` (the system allocator) for every message type, a fresh `Vec` per
/// response, allocator-api2's `Global` for the headers.
struct OnBox;

/// A response buffer of the `Box` run: a plain `Vec`, fresh per response.
struct Fresh(Vec<u8>);

impl Deref for Fresh {
    type Target = Vec<u8>;
    #[inline(always)]
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Fresh {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Alloc for OnBox {
    type Pool<T: Stamped> = SystemBox<T>;
    type Buffers = ();
    type Buf = Fresh;
    type Heap = Global;
    const VIA: [&'static str; 4] = ["Box", "Vec::with_capacity", "Box", "Global"];

    fn pool<T: Stamped>() -> SystemBox<T> {
        SystemBox::new()
    }

    fn buffers() {}

    #[inline(always)]
    fn get(_: &()) -> Fresh {
        Fresh(Vec::with_capacity(RESPONSE_CAPACITY))
    }

    fn buffer_stats(_: &()) -> Option<Stats> {
        None
    }

    fn heap() -> Global {
        Global
    }

    fn heap_stats(_: &Global) -> Option<Stats> {
        None
    }
}

/// The pools of one run; `R` is the request type.
struct Pools<A: Alloc, R: Stamped> {
    req: A::Pool<R>,
    resp: A::Buffers,
    sess: A::Pool<Session>,
    heap: A::Heap,
}

impl<A: Alloc, R: Stamped> Pools<A, R> {
    fn new() -> Self {
        Self {
            req: A::pool(),
            resp: A::buffers(),
            sess: A::pool(),
            heap: A::heap(),
        }
    }

    fn name(&self) -> &'static str {
        self.req.name()
    }

    /// homeslab's counters, by pool index (`None` for `Box`).
    fn stats(&self) -> [Option<Stats>; 4] {
        [
            self.req.stats(),
            A::buffer_stats(&self.resp),
            self.sess.stats(),
            A::heap_stats(&self.heap),
        ]
    }
}

/// A block of `A`'s pool for `T`.
type Handle<'s, A, T> = <<A as Alloc>::Pool<T> as Subject<T>>::Handle<'s>;

/// A request's headers, in `A`'s collection allocator.
type Headers<'s, A> = AVec<u64, &'s <A as Alloc>::Heap>;

/// A slot's long-lived requests, with their headers, oldest first.
type Kept<'s, A, R> = VecDeque<(Handle<'s, A, R>, Headers<'s, A>)>;

/// A request on its way to a worker, with its session and headers.
struct Job<'s, A: Alloc, R: Stamped> {
    req: Handle<'s, A, R>,
    sess: Handle<'s, A, Session>,
    headers: Headers<'s, A>,
}

/// A response on its way back to the acceptor, with its request's session.
struct Reply<'s, A: Alloc> {
    resp: A::Buf,
    sess: Handle<'s, A, Session>,
}

struct Burst<T> {
    acceptor: usize,
    items: Vec<T>,
}

/// What a worker slot keeps between worker threads.
struct Slot<'s, A: Alloc, R: Stamped> {
    rx: Receiver<Burst<Job<'s, A, R>>>,
    /// Long-lived requests, with their headers.
    cache: Kept<'s, A, R>,
    rng: Rng,
    /// The acceptors have all gone and the queue is drained.
    finished: bool,
}

fn acceptor<'s, A: Alloc, R: Stamped>(
    p: &'s Pools<A, R>,
    id: usize,
    slots: Vec<Sender<Burst<Job<'s, A, R>>>>,
    replies: Receiver<Burst<Reply<'s, A>>>,
    stop: &AtomicBool,
    completed: &AtomicU64,
) -> Meter {
    let mut m = Meter::new(0xacce_97ed ^ id as u64);
    let mut seq = (id as u64) << 48;
    let mut outstanding = 0usize;
    let mut next = id;
    let take = |m: &mut Meter, b: Burst<Reply<'s, A>>, outstanding: &mut usize| {
        let n = b.items.len();
        for Reply { resp, sess } in b.items {
            let answered = verify_response(&resp);
            m.grown += u64::from(resp.capacity() > RESPONSE_KEEP_CAP);
            m.free_with(RESPONSE, answered.is_some(), true, || drop(resp));
            let asked = m.free(&p.sess, sess, false);
            if answered.is_some() && asked.is_some() && answered != asked {
                m.mismatches += 1; // the response must answer the session's request
            }
        }
        *outstanding -= n;
        m.requests += n as u64;
        completed.fetch_add(n as u64, Ordering::Relaxed);
    };
    while !stop.load(Ordering::Relaxed) {
        loop {
            match replies.try_recv() {
                Ok(b) => take(&mut m, b, &mut outstanding),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => unreachable!("the supervisor holds a sender"),
            }
        }
        if outstanding + BURST > MAX_OUTSTANDING {
            if let Ok(b) = replies.recv_timeout(Duration::from_millis(1)) {
                take(&mut m, b, &mut outstanding);
            }
            continue;
        }
        let mut items = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            seq += 1;
            let req = m.alloc(&p.req, R::stamp(seq));
            let sess = m.alloc(&p.sess, Session::stamp(seq));
            let headers = m.headers(&p.heap, seq);
            items.push(Job { req, sess, headers });
        }
        outstanding += BURST;
        let slot = next % slots.len();
        next += 1;
        if slots[slot]
            .send(Burst {
                acceptor: id,
                items,
            })
            .is_err()
        {
            unreachable!("worker slots outlive the acceptors");
        }
    }
    while outstanding > 0 {
        match replies.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => take(&mut m, b, &mut outstanding),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("the supervisor holds a sender"),
        }
    }
    m
}

fn worker<'s, A: Alloc, R: Stamped>(
    p: &'s Pools<A, R>,
    mut slot: Slot<'s, A, R>,
    replies: &[Sender<Burst<Reply<'s, A>>>],
) -> (Slot<'s, A, R>, Meter) {
    let mut m = Meter::new(slot.rng.next_u64());
    let budget = LIFETIME.0 + slot.rng.below(LIFETIME.1 - LIFETIME.0);
    let mut served = 0;
    while served < budget {
        let burst = match slot.rx.recv_timeout(Duration::from_millis(10)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                slot.finished = true;
                break;
            }
        };
        let mut out = Vec::with_capacity(burst.items.len());
        for Job { req, sess, headers } in burst.items {
            let seq = p.req.with(&req, |r| r.verify());
            if seq.is_some() && p.sess.with(&sess, |s| s.verify()) != seq {
                m.mismatches += 1; // the session must be the request's
            }
            let heads = verify_headers(&headers);
            if seq.is_some() && heads.is_some() && heads != seq {
                m.mismatches += 1; // the headers must be the request's
            }
            let mut resp = m.alloc_with(RESPONSE, || A::get(&p.resp));
            write_response(&mut resp, seq.unwrap_or(0));
            out.push(Reply { resp, sess });
            if seq.is_none() {
                m.release(&p.req, req, false, true);
                m.release_headers(headers, heads.is_some());
            } else if slot.rng.below(KEEP) == 0 {
                slot.cache.push_back((req, headers));
                if slot.cache.len() > CACHE_CAP {
                    if let Some((old, old_headers)) = slot.cache.pop_front() {
                        m.free_kept(&p.req, old, old_headers);
                    }
                }
            } else {
                m.release(&p.req, req, true, true);
                m.release_headers(headers, heads.is_some());
            }
        }
        // The acceptor waits for every response, so it is still there.
        let _ = replies[burst.acceptor].send(Burst {
            acceptor: burst.acceptor,
            items: out,
        });
        served += 1;
    }
    (slot, m)
}

struct Config {
    threads: usize,
    seconds: f64,
    /// The request size.
    object_size: usize,
    json: bool,
}

impl Config {
    /// The smallest and the largest block (or response) of each pool, in
    /// bytes, by pool index.
    fn sizes(&self) -> [(usize, usize); 4] {
        [
            (self.object_size, self.object_size),
            (RESPONSE_LEN, LARGE_RESPONSE_LEN),
            (size_of::<Session>(), size_of::<Session>()),
            (8 * HEADER_WORDS.0, 8 * HEADER_WORDS.1),
        ]
    }

    /// Pool `i`'s sizes, for the tables.
    fn size_label(&self, i: usize) -> String {
        match (i, self.sizes()[i]) {
            (RESPONSE, (small, large)) => format!("{small} B (1 in {LARGE_EVERY}: {large} B)"),
            (_, (a, b)) if a == b => format!("{a} B"),
            (_, (a, b)) => format!("{a}–{b} B"),
        }
    }
}

/// One allocator's results.
struct Report {
    allocator: &'static str,
    wall: Duration,
    meter: Meter,
    respawns: u64,
    peak_rss_delta: u64,
    /// What served each pool.
    via: [&'static str; 4],
    /// homeslab's counters at the end, by pool (`None` for `Box`).
    stats: [Option<Stats>; 4],
    /// The most live blocks `stats()` showed while running, by pool.
    peak_live: [u64; 4],
}

impl Report {
    /// The sum over the pools of a homeslab counter (`None` for `Box`).
    fn total(&self, f: impl Fn(&Stats) -> u64) -> Option<u64> {
        self.stats.iter().map(|s| s.as_ref().map(&f)).sum()
    }
}

fn run<A: Alloc, R: Stamped>(p: &Pools<A, R>, cfg: &Config, bar: &ProgressBar) -> Report {
    let acceptors = (cfg.threads / 3).max(1);
    let workers = cfg.threads - acceptors;
    let stop = AtomicBool::new(false);
    let completed = AtomicU64::new(0);
    let rss_base = rss_bytes();
    let mut peak_rss = rss_base;
    let mut peak_live = [0u64; 4];
    let mut total = Meter::new(0);
    let mut respawns = 0u64;
    let limit = Duration::from_secs_f64(cfg.seconds);

    let mut slot_txs = Vec::new();
    let mut slots = Vec::new();
    for w in 0..workers {
        let (tx, rx) = mpsc::channel();
        slot_txs.push(tx);
        slots.push(Slot::<A, R> {
            rx,
            cache: VecDeque::new(),
            rng: Rng::new(0x5eed + w as u64),
            finished: false,
        });
    }
    let mut reply_txs = Vec::new();
    let mut reply_rxs = Vec::new();
    for _ in 0..acceptors {
        let (tx, rx) = mpsc::channel();
        reply_txs.push(tx);
        reply_rxs.push(rx);
    }

    bar.reset();
    bar.set_prefix(p.name());
    let start = Instant::now();
    let mut leftovers: Vec<Kept<'_, A, R>> = Vec::new();
    std::thread::scope(|sc| {
        let (stop, completed) = (&stop, &completed);
        let reply_txs = &reply_txs;
        let mut acc: Vec<_> = reply_rxs
            .into_iter()
            .enumerate()
            .map(|(id, rx)| {
                let txs = slot_txs.clone();
                Some(sc.spawn(move || acceptor::<A, R>(p, id, txs, rx, stop, completed)))
            })
            .collect();
        drop(slot_txs);
        let mut wrk: Vec<_> = slots
            .into_iter()
            .map(|slot| Some(sc.spawn(move || worker::<A, R>(p, slot, reply_txs))))
            .collect();
        let mut last_tick = Instant::now();
        let mut last_done = 0u64;
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let elapsed = start.elapsed();
            if elapsed >= limit && !stop.load(Ordering::Relaxed) {
                stop.store(true, Ordering::Relaxed);
            }
            for a in acc.iter_mut() {
                if a.as_ref().is_some_and(|h| h.is_finished()) {
                    let m = a.take().map(|h| h.join().expect("acceptor panicked"));
                    total.merge(&m.expect("joined"));
                }
            }
            for w in wrk.iter_mut() {
                if w.as_ref().is_some_and(|h| h.is_finished()) {
                    let (slot, m) = w
                        .take()
                        .map(|h| h.join().expect("worker panicked"))
                        .expect("joined");
                    total.merge(&m);
                    if slot.finished {
                        leftovers.push(slot.cache);
                    } else {
                        respawns += 1;
                        *w = Some(sc.spawn(move || worker::<A, R>(p, slot, reply_txs)));
                    }
                }
            }
            peak_rss = peak_rss.max(rss_bytes());
            for (peak, st) in peak_live.iter_mut().zip(p.stats()) {
                if let Some(st) = st {
                    *peak = (*peak).max(st.live_blocks);
                }
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                let done = completed.load(Ordering::Relaxed);
                let rate = (done - last_done) as f64 / last_tick.elapsed().as_secs_f64();
                last_done = done;
                last_tick = Instant::now();
                bar.set_position(elapsed.min(limit).as_millis() as u64);
                bar.set_message(format!(
                    "{:5.2} Mreq/s, {:4} respawns, {:5.1} MiB RSS{}",
                    rate / 1e6,
                    respawns,
                    peak_rss as f64 / (1 << 20) as f64,
                    if stop.load(Ordering::Relaxed) {
                        ", draining"
                    } else {
                        ""
                    }
                ));
            }
            if acc.iter().all(|a| a.is_none()) && wrk.iter().all(|w| w.is_none()) {
                break;
            }
        }
    });
    let wall = start.elapsed();
    // The long-lived requests still cached, with their headers: verified
    // and freed here.
    let mut m = Meter::new(1);
    for cache in leftovers {
        for (req, headers) in cache {
            m.free_kept(&p.req, req, headers);
        }
    }
    total.merge(&m);
    // Worker threads may still be in their thread-local destructors.
    let t = Instant::now();
    while p.stats().iter().flatten().any(|st| st.thread_heaps > 0)
        && t.elapsed() < Duration::from_secs(1)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    Report {
        allocator: p.name(),
        wall,
        meter: total,
        respawns,
        peak_rss_delta: peak_rss.saturating_sub(rss_base),
        via: A::VIA,
        stats: p.stats(),
        peak_live,
    }
}

fn run_both<R: Stamped>(cfg: &Config) -> Vec<Report> {
    // indicatif draws only when stderr is a terminal.
    let bar = if cfg.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            Some((cfg.seconds * 1000.0) as u64),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:16}] {elapsed:>3} {msg}")
                .expect("progress template")
                .progress_chars("=> "),
        );
        b
    };
    let mut out = Vec::new();
    {
        let hs = Pools::<OnHomeslab, R>::new();
        out.push(run(&hs, cfg, &bar));
        bar.println(format!("{:>10} done", hs.name()));
    }
    {
        let bx = Pools::<OnBox, R>::new();
        out.push(run(&bx, cfg, &bar));
        bar.println(format!("{:>10} done", bx.name()));
    }
    bar.finish_and_clear();
    out
}

// ---------------------------------------------------------------------------
// Output

fn pct(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn bytes(b: u64) -> String {
    if b >= 10 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} KiB", b as f64 / 1024.0)
    }
}

/// Prints a Markdown table, the first `left` columns left-aligned.
fn print_table(head: &[&str], rows: &[Vec<String>], left: usize) {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        println!("| {} |", s.join(" | "));
    };
    line(&head.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    println!(
        "|{}|",
        widths
            .iter()
            .enumerate()
            .map(|(i, w)| if i < left {
                format!(":{}", "-".repeat(w + 1))
            } else {
                format!("{}:", "-".repeat(w + 1))
            })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(r);
    }
}

fn table(cfg: &Config, reports: &[Report]) {
    let acceptors = (cfg.threads / 3).max(1);
    let [req, resp, sess, heads] = [REQUEST, RESPONSE, SESSION, HEADER].map(|i| cfg.size_label(i));
    println!(
        "worker_pool: {} threads ({} acceptor{}, {} worker{} that come and go), \
         {req} requests with {heads} headers, {sess} sessions, responses of {resp} in \
         {RESPONSE_CAPACITY} B buffers, {:.1} s per allocator\n",
        cfg.threads,
        acceptors,
        if acceptors == 1 { "" } else { "s" },
        cfg.threads - acceptors,
        if cfg.threads - acceptors == 1 {
            ""
        } else {
            "s"
        },
        cfg.seconds
    );
    let head = [
        "allocator",
        "requests/s",
        "allocs/s",
        "alloc p50",
        "alloc p99",
        "free p50",
        "free p99",
        "peak mapped",
        "peak RSS Δ",
        "remote frees",
        "overflow allocs",
        "respawns",
        "mismatches",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let secs = r.wall.as_secs_f64();
            let m = &r.meter;
            let alloc_ns = m.merged(|p| &p.alloc_ns);
            let free_ns = m.merged(|p| &p.free_ns);
            vec![
                r.allocator.to_string(),
                format!("{:.2} M", m.requests as f64 / secs / 1e6),
                format!("{:.2} M", m.total(|p| p.allocs) as f64 / secs / 1e6),
                format!("{} ns", pct(&alloc_ns, 0.5)),
                format!("{} ns", pct(&alloc_ns, 0.99)),
                format!("{} ns", pct(&free_ns, 0.5)),
                format!("{} ns", pct(&free_ns, 0.99)),
                r.total(|s| s.peak_mapped_bytes).map_or("–".into(), bytes),
                bytes(r.peak_rss_delta),
                match r.total(|s| s.remote_frees) {
                    Some(n) => n.to_string(),
                    None => format!("({})", m.total(|p| p.cross_frees)),
                },
                r.total(|s| s.overflow_allocs)
                    .map_or("–".into(), |n| n.to_string()),
                r.respawns.to_string(),
                m.mismatches.to_string(),
            ]
        })
        .collect();
    print_table(&head, &rows, 1);

    println!();
    let head = [
        "pool",
        "allocator",
        "via",
        "size",
        "allocs",
        "remote frees",
        "peak live",
        "live at end",
        "peak mapped",
        "mapped at end",
        "overflow allocs",
        "alloc p50",
        "free p50",
    ];
    let mut rows = Vec::new();
    for (i, pool) in POOLS.iter().enumerate() {
        for r in reports {
            let m = &r.meter.pools[i];
            let st = r.stats[i];
            let or_dash = |f: fn(&Stats) -> String| st.as_ref().map_or("–".into(), f);
            rows.push(vec![
                pool.to_string(),
                r.allocator.to_string(),
                r.via[i].to_string(),
                cfg.size_label(i),
                st.map_or(m.allocs, |s| s.allocs).to_string(),
                st.map_or(format!("({})", m.cross_frees), |s| {
                    s.remote_frees.to_string()
                }),
                st.map_or("–".into(), |_| r.peak_live[i].to_string()),
                st.map_or(format!("({})", m.allocs.saturating_sub(m.frees)), |s| {
                    s.live_blocks.to_string()
                }),
                or_dash(|s| bytes(s.peak_mapped_bytes)),
                or_dash(|s| bytes(s.mapped_bytes)),
                or_dash(|s| s.overflow_allocs.to_string()),
                format!("{} ns", pct(&m.alloc_ns, 0.5)),
                format!("{} ns", pct(&m.free_ns, 0.5)),
            ]);
        }
    }
    print_table(&head, &rows, 3);

    println!();
    let head = [
        "pool",
        "allocator",
        "via",
        "gets",
        "constructed",
        "reused",
        "destroyed",
        "of which keep_if",
        "cached at end",
        "cached buffers",
        "reused %",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let m = &r.meter.pools[RESPONSE];
            let gets = m.allocs;
            let share = |n: u64| format!("{:.1}%", 100.0 * n as f64 / gets.max(1) as f64);
            let mut row = vec![
                POOLS[RESPONSE].to_string(),
                r.allocator.to_string(),
                r.via[RESPONSE].to_string(),
                gets.to_string(),
            ];
            row.extend(match r.stats[RESPONSE] {
                Some(s) => [
                    s.objects_constructed.to_string(),
                    s.objects_reused.to_string(),
                    s.objects_destroyed.to_string(),
                    format!("({})", r.meter.grown),
                    s.objects_cached.to_string(),
                    bytes(s.objects_cached * RESPONSE_CAPACITY as u64),
                    share(s.objects_reused),
                ],
                // Without an object pool every get constructs a buffer and
                // every release destroys it.
                None => [
                    format!("({gets})"),
                    "(0)".into(),
                    format!("({})", m.frees),
                    "–".into(),
                    "(0)".into(),
                    "–".into(),
                    share(0),
                ],
            });
            row
        })
        .collect();
    print_table(&head, &rows, 3);
    println!(
        "\nlatencies: 1 op in {SAMPLE} on average timed with Instant (clock read included); \
         peak mapped (first table): the sum of the pools' peaks; remote frees: homeslab's \
         Stats::remote_frees, (in parentheses) frees the example made of blocks another thread \
         allocated; live at end (in parentheses): the example's allocs minus its frees.\n\
         response: a get and a release of a Vec<u8> buffer of {RESPONSE_CAPACITY} B; the \
         ObjectPool's slots (its mapped bytes) hold the {}-byte Vec headers, the buffers are \
         system-allocator memory in both runs (RSS counts them); keep_if drops a buffer grown \
         past {RESPONSE_KEEP_CAP} B (of which keep_if: the releases of such buffers the \
         example made; the other destructions are of cached buffers in slabs homeslab \
         reclaimed); cached buffers: the bytes of the buffers the pool holds \
         constructed at the end; (in parentheses) the example's counts. headers: one \
         SlabAlloc shared by every thread, its counters summed over its size classes.",
        size_of::<Vec<u8>>()
    );
    for r in reports {
        for (i, (pool, s)) in POOLS.iter().zip(r.stats).enumerate() {
            if let Some(s) = s {
                println!(
                    "{} {pool} ({}): frees {}, double frees {}, foreign frees {}, corruption {}, overflow segments {}, thread heaps {}",
                    r.allocator, r.via[i], s.frees, s.double_frees, s.foreign_frees, s.corruption_events, s.overflow_segments, s.thread_heaps
                );
            }
        }
    }
}

fn json(cfg: &Config, reports: &[Report]) {
    let acceptors = (cfg.threads / 3).max(1);
    let hist = |h: &Histogram<u64>| {
        format!(
            "{{\"samples\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
            h.len(),
            pct(h, 0.5),
            pct(h, 0.99),
            pct(h, 0.999),
            h.max()
        )
    };
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |x| x.to_string());
    let sizes = cfg.sizes();
    let runs: Vec<String> = reports
        .iter()
        .map(|r| {
            let m = &r.meter;
            let secs = r.wall.as_secs_f64();
            let allocs = m.total(|p| p.allocs);
            let pools: Vec<String> = POOLS
                .iter()
                .enumerate()
                .map(|(i, pool)| {
                    let pm = &m.pools[i];
                    let st = r.stats[i];
                    let (min, max) = sizes[i];
                    let objects = match (i, st) {
                        (RESPONSE, Some(s)) => format!(
                            "{{\"constructed\":{},\"reused\":{},\"destroyed\":{},\"cached\":{},\
                             \"released_grown\":{}}}",
                            s.objects_constructed,
                            s.objects_reused,
                            s.objects_destroyed,
                            s.objects_cached,
                            m.grown
                        ),
                        // A fresh buffer per get, destroyed at its release.
                        (RESPONSE, None) => format!(
                            "{{\"constructed\":{},\"reused\":0,\"destroyed\":{},\"cached\":0,\
                             \"released_grown\":{}}}",
                            pm.allocs, pm.frees, m.grown
                        ),
                        _ => "null".into(),
                    };
                    format!(
                        "{{\"pool\":\"{pool}\",\"via\":\"{}\",\"object_size\":{},\"min_bytes\":{min},\
                         \"max_bytes\":{max},\"allocs\":{},\"frees\":{},\
                         \"cross_thread_frees\":{},\"remote_frees\":{},\"live_blocks_at_end\":{},\
                         \"peak_live_blocks\":{},\"mapped_bytes_at_end\":{},\"peak_mapped_bytes\":{},\
                         \"overflow_allocs\":{},\"objects\":{objects},\"alloc_ns\":{},\"free_ns\":{}}}",
                        r.via[i],
                        if min == max || i == RESPONSE {
                            min.to_string()
                        } else {
                            "null".into()
                        },
                        pm.allocs,
                        pm.frees,
                        pm.cross_frees,
                        opt(st.map(|s| s.remote_frees)),
                        opt(st.map(|s| s.live_blocks)),
                        opt(st.map(|_| r.peak_live[i])),
                        opt(st.map(|s| s.mapped_bytes)),
                        opt(st.map(|s| s.peak_mapped_bytes)),
                        opt(st.map(|s| s.overflow_allocs)),
                        hist(&pm.alloc_ns),
                        hist(&pm.free_ns),
                    )
                })
                .collect();
            format!(
                "{{\"allocator\":\"{}\",\"wall_seconds\":{:.6},\"requests\":{},\"requests_per_second\":{:.1},\
                 \"allocs\":{},\"frees\":{},\"allocs_per_second\":{:.1},\"alloc_ns\":{},\"free_ns\":{},\
                 \"peak_mapped_bytes\":{},\"peak_rss_delta_bytes\":{},\"remote_frees\":{},\
                 \"cross_thread_frees\":{},\"overflow_allocs\":{},\"live_blocks_at_end\":{},\
                 \"worker_respawns\":{},\"stamp_mismatches\":{},\"pools\":[{}]}}",
                r.allocator,
                secs,
                m.requests,
                m.requests as f64 / secs,
                allocs,
                m.total(|p| p.frees),
                allocs as f64 / secs,
                hist(&m.merged(|p| &p.alloc_ns)),
                hist(&m.merged(|p| &p.free_ns)),
                opt(r.total(|s| s.peak_mapped_bytes)),
                r.peak_rss_delta,
                opt(r.total(|s| s.remote_frees)),
                m.total(|p| p.cross_frees),
                opt(r.total(|s| s.overflow_allocs)),
                opt(r.total(|s| s.live_blocks)),
                r.respawns,
                m.mismatches,
                pools.join(",")
            )
        })
        .collect();
    println!(
        "{{\"threads\":{},\"acceptors\":{},\"workers\":{},\"object_size\":{},\
         \"object_sizes\":{{\"request\":{},\"response\":{},\"session\":{},\
         \"headers\":{{\"min\":{},\"max\":{}}}}},\"large_response\":{{\"bytes\":{},\"one_in\":{}}},\
         \"response_buffer_capacity\":{RESPONSE_CAPACITY},\"response_keep_capacity\":{RESPONSE_KEEP_CAP},\
         \"seconds\":{},\"sample_one_in\":{},\"runs\":[{}]}}",
        cfg.threads,
        acceptors,
        cfg.threads - acceptors,
        cfg.object_size,
        sizes[REQUEST].0,
        sizes[RESPONSE].0,
        sizes[SESSION].0,
        sizes[HEADER].0,
        sizes[HEADER].1,
        sizes[RESPONSE].1,
        LARGE_EVERY,
        cfg.seconds,
        SAMPLE,
        runs.join(",")
    );
}

// ---------------------------------------------------------------------------
// Arguments

fn parse_args() -> Result<Option<Config>, String> {
    use lexopt::prelude::*;
    let mut cfg = Config {
        threads: 4,
        seconds: 3.0,
        object_size: 64,
        json: false,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("threads") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let n: usize = v.parse().map_err(|e| format!("--threads: {e}"))?;
                if !(2..=1024).contains(&n) {
                    return Err(format!("--threads: {n} is out of range (2..=1024)"));
                }
                cfg.threads = n;
            }
            Long("seconds") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let s: f64 = v.parse().map_err(|e| format!("--seconds: {e}"))?;
                if !(s > 0.0 && s <= 3600.0) {
                    return Err(format!("--seconds: {s} is out of range (0 < S <= 3600)"));
                }
                cfg.seconds = s;
            }
            Long("object-size") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let n: usize = v.parse().map_err(|e| format!("--object-size: {e}"))?;
                if ![16, 64, 256, 1024].contains(&n) {
                    return Err(format!(
                        "--object-size: {n} is not supported (choose 16, 64, 256 or 1024)"
                    ));
                }
                cfg.object_size = n;
            }
            Long("json") => cfg.json = true,
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(cfg))
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("worker_pool: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let reports = match cfg.object_size {
        16 => run_both::<Request<0>>(&cfg),
        64 => run_both::<Request<6>>(&cfg),
        256 => run_both::<Request<30>>(&cfg),
        1024 => run_both::<Request<126>>(&cfg),
        _ => unreachable!("validated in parse_args"),
    };
    if cfg.json {
        json(&cfg, &reports);
    } else {
        table(&cfg, &reports);
    }
    let mismatches: u64 = reports.iter().map(|r| r.meter.mismatches).sum();
    // Blocks homeslab still counts live (its two Pools, the ObjectPool and
    // the SlabAlloc), and blocks the example allocated and never freed (both
    // runs).
    let live: u64 = reports
        .iter()
        .filter_map(|r| r.total(|s| s.live_blocks))
        .sum();
    let unfreed: u64 = reports
        .iter()
        .map(|r| r.meter.total(|p| p.allocs.saturating_sub(p.frees)))
        .sum();
    if mismatches > 0 || live > 0 || unfreed > 0 {
        eprintln!(
            "worker_pool: FAILED: {mismatches} stamp mismatches, {live} homeslab blocks still live, \
             {unfreed} blocks never freed"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
