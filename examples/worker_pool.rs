//! A server-shaped workload on three pools, run once on homeslab and once on
//! `Box` (the system allocator), with side-by-side tables at the end.
//!
//! ```text
//! cargo run --release --example worker_pool
//! cargo run --release --example worker_pool -- --threads 8 --seconds 5 --object-size 256
//! cargo run --release --example worker_pool -- --json
//! ```
//!
//! One pool per object type, as a server keeps them:
//!
//! - *requests*, `--object-size` bytes (16, 64, 256 or 1024; default 64):
//!   the acceptors allocate them, the workers free them;
//! - *responses*, 512-byte buffers: the workers allocate them, the acceptors
//!   free them;
//! - *sessions*, 32 bytes of per-request metadata: the acceptors allocate and
//!   free them, the workers read them.
//!
//! The threads:
//!
//! - *Acceptor* threads allocate requests, each with its session, in bursts
//!   of 16, and hand each burst to a worker slot (round robin).
//! - *Worker* threads verify each request's stamp and that its session is
//!   the request's, allocate a response, send the responses with their
//!   sessions back to the acceptor (which verifies and frees both), and free
//!   the request — except one in 32, which a worker keeps in its slot's
//!   long-lived cache (up to 2048 per slot, oldest freed first).
//! - Workers come and go: each serves its slot for a random number of bursts,
//!   then exits; the supervisor starts a new thread on the same slot, which
//!   inherits the long-lived cache. So blocks outlive the threads that
//!   allocated them and are freed by threads that did not exist then.
//! - Acceptors keep at most 4096 requests outstanding (back-pressure), so
//!   live memory is bounded.
//!
//! The `Box` run allocates the same three types at the same places.
//!
//! Every block carries a stamp (its sequence number and a checksum over its
//! kind, the sequence number and the payload) that the freeing thread
//! verifies; a response and a session must carry their request's sequence
//! number. Mismatches are counted and must be 0, and every block must be
//! freed (the exit code is 1 otherwise). One operation in 64 on average, at
//! random intervals, is timed with `Instant` into an HDR histogram per pool
//! (so the latencies include the ~20–40 ns of reading the clock).

#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::mem::size_of;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use common::harness::{rss_bytes, Rng};
use common::subjects::{Homeslab, Obj, Subject, SystemBox};

const USAGE: &str = "\
usage: worker_pool [--threads N] [--seconds S] [--object-size BYTES] [--json]

  --threads N          total threads: max(1, N/3) acceptors, the rest workers (N >= 2; default 4)
  --seconds S          run time per allocator (default 3; 0 < S <= 3600)
  --object-size BYTES  request size: 16, 64, 256 or 1024 (default 64);
                       responses are 512 bytes, sessions 32
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

// ---------------------------------------------------------------------------
// Stamped objects, one type per pool

/// The request pool's index (in [`POOLS`] and every per-pool array).
const REQUEST: usize = 0;
/// The response pool's index.
const RESPONSE: usize = 1;
/// The session pool's index.
const SESSION: usize = 2;
/// The pools' names, by index.
const POOLS: [&str; 3] = ["request", "response", "session"];

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
/// A response buffer: 512 bytes.
type Response = Msg<RESPONSE, 62>;
/// Per-request session metadata: 32 bytes.
type Session = Msg<SESSION, 2>;

#[inline(always)]
fn fill(seq: u64, i: usize) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

#[inline(always)]
fn checksum(kind: usize, seq: u64, payload: &[u64]) -> u64 {
    let mut h = seq ^ 0x243f_6a88_85a3_08d3;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    for &w in [kind as u64].iter().chain(payload) {
        h = (h ^ w).rotate_left(23).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    }
    h ^ (h >> 29)
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
        let sum = checksum(K, seq, &payload);
        Msg { seq, sum, payload }
    }

    #[inline]
    fn verify(&self) -> Option<u64> {
        let ok = checksum(K, self.seq, &self.payload) == self.sum
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
    pools: [PoolMeter; 3],
    /// Operations until the next timed one.
    countdown: u64,
    rng: Rng,
    mismatches: u64,
    requests: u64,
}

impl Meter {
    fn new(seed: u64) -> Self {
        let mut m = Self {
            pools: [PoolMeter::new(), PoolMeter::new(), PoolMeter::new()],
            countdown: 1,
            rng: Rng::new(seed),
            mismatches: 0,
            requests: 0,
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

    #[inline]
    fn alloc<'s, T: Stamped, S: Subject<T>>(&mut self, s: &'s S, v: T) -> S::Handle<'s> {
        let timed = self.timed();
        let p = &mut self.pools[T::POOL];
        p.allocs += 1;
        if timed {
            let t = Instant::now();
            let h = s.alloc(v);
            p.alloc_ns.saturating_record(t.elapsed().as_nanos() as u64);
            h
        } else {
            s.alloc(v)
        }
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
        if !ok {
            self.mismatches += 1;
        }
        let timed = self.timed();
        let p = &mut self.pools[T::POOL];
        p.frees += 1;
        p.cross_frees += u64::from(cross);
        if timed {
            let t = Instant::now();
            s.free(h);
            p.free_ns.saturating_record(t.elapsed().as_nanos() as u64);
        } else {
            s.free(h);
        }
    }

    fn merge(&mut self, o: &Meter) {
        for (p, q) in self.pools.iter_mut().zip(&o.pools) {
            p.merge(q);
        }
        self.mismatches += o.mismatches;
        self.requests += o.requests;
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

/// The allocator of one run: a subject per object type.
trait Alloc {
    /// The subject for `T`.
    type Pool<T: Stamped>: Subject<T> + 'static;
    /// A fresh one.
    fn pool<T: Stamped>() -> Self::Pool<T>;
}

/// A `homeslab::Pool` per type.
struct OnHomeslab;

impl Alloc for OnHomeslab {
    type Pool<T: Stamped> = Homeslab<T>;
    fn pool<T: Stamped>() -> Homeslab<T> {
        Homeslab::new(false)
    }
}

/// `Box` (the system allocator) for every type.
struct OnBox;

impl Alloc for OnBox {
    type Pool<T: Stamped> = SystemBox<T>;
    fn pool<T: Stamped>() -> SystemBox<T> {
        SystemBox::new()
    }
}

/// The three pools of one run; `R` is the request type.
struct Pools<A: Alloc, R: Stamped> {
    req: A::Pool<R>,
    resp: A::Pool<Response>,
    sess: A::Pool<Session>,
}

impl<A: Alloc, R: Stamped> Pools<A, R> {
    fn new() -> Self {
        Self {
            req: A::pool(),
            resp: A::pool(),
            sess: A::pool(),
        }
    }

    fn name(&self) -> &'static str {
        self.req.name()
    }

    /// homeslab's counters, by pool index (`None` for `Box`).
    fn stats(&self) -> [Option<homeslab::Stats>; 3] {
        [self.req.stats(), self.resp.stats(), self.sess.stats()]
    }
}

/// A block of `A`'s pool for `T`.
type Handle<'s, A, T> = <<A as Alloc>::Pool<T> as Subject<T>>::Handle<'s>;

/// A request on its way to a worker, with its session.
struct Job<'s, A: Alloc, R: Stamped> {
    req: Handle<'s, A, R>,
    sess: Handle<'s, A, Session>,
}

/// A response on its way back to the acceptor, with its request's session.
struct Reply<'s, A: Alloc> {
    resp: Handle<'s, A, Response>,
    sess: Handle<'s, A, Session>,
}

struct Burst<T> {
    acceptor: usize,
    items: Vec<T>,
}

/// What a worker slot keeps between worker threads.
struct Slot<'s, A: Alloc, R: Stamped> {
    rx: Receiver<Burst<Job<'s, A, R>>>,
    /// Long-lived requests.
    cache: VecDeque<Handle<'s, A, R>>,
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
        for r in b.items {
            let answered = m.free(&p.resp, r.resp, true);
            let asked = m.free(&p.sess, r.sess, false);
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
            items.push(Job { req, sess });
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
        for Job { req, sess } in burst.items {
            let seq = p.req.with(&req, |r| r.verify());
            if seq.is_some() && p.sess.with(&sess, |s| s.verify()) != seq {
                m.mismatches += 1; // the session must be the request's
            }
            let resp = m.alloc(&p.resp, Response::stamp(seq.unwrap_or(0)));
            out.push(Reply { resp, sess });
            if seq.is_none() {
                m.release(&p.req, req, false, true);
            } else if slot.rng.below(KEEP) == 0 {
                slot.cache.push_back(req);
                if slot.cache.len() > CACHE_CAP {
                    if let Some(old) = slot.cache.pop_front() {
                        m.free(&p.req, old, true);
                    }
                }
            } else {
                m.release(&p.req, req, true, true);
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
    /// Object sizes, by pool index.
    fn sizes(&self) -> [usize; 3] {
        [
            self.object_size,
            size_of::<Response>(),
            size_of::<Session>(),
        ]
    }
}

/// One allocator's results.
struct Report {
    allocator: &'static str,
    wall: Duration,
    meter: Meter,
    respawns: u64,
    peak_rss_delta: u64,
    /// homeslab's counters at the end, by pool (`None` for `Box`).
    stats: [Option<homeslab::Stats>; 3],
    /// The most live blocks `stats()` showed while running, by pool.
    peak_live: [u64; 3],
}

impl Report {
    /// The sum over the pools of a homeslab counter (`None` for `Box`).
    fn total(&self, f: impl Fn(&homeslab::Stats) -> u64) -> Option<u64> {
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
    let mut peak_live = [0u64; 3];
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
    let mut leftovers: Vec<VecDeque<Handle<'_, A, R>>> = Vec::new();
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
    // The long-lived requests still cached: verified and freed here.
    let mut m = Meter::new(1);
    for cache in leftovers {
        for h in cache {
            m.free(&p.req, h, true);
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
    let [req, resp, sess] = cfg.sizes();
    println!(
        "worker_pool: {} threads ({} acceptor{}, {} worker{} that come and go), \
         {req} B requests, {resp} B responses, {sess} B sessions, {:.1} s per allocator\n",
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
            let or_dash = |f: fn(&homeslab::Stats) -> String| st.as_ref().map_or("–".into(), f);
            rows.push(vec![
                pool.to_string(),
                r.allocator.to_string(),
                format!("{} B", cfg.sizes()[i]),
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
    print_table(&head, &rows, 2);
    println!(
        "\nlatencies: 1 op in {SAMPLE} on average timed with Instant (clock read included); \
         peak mapped (first table): the sum of the pools' peaks; remote frees: homeslab's \
         Stats::remote_frees, (in parentheses) frees the example made of blocks another thread \
         allocated; live at end (in parentheses): the example's allocs minus its frees."
    );
    for r in reports {
        for (pool, s) in POOLS.iter().zip(r.stats) {
            if let Some(s) = s {
                println!(
                    "{} {pool} pool: frees {}, double frees {}, foreign frees {}, corruption {}, overflow segments {}, thread heaps {}",
                    r.allocator, s.frees, s.double_frees, s.foreign_frees, s.corruption_events, s.overflow_segments, s.thread_heaps
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
                    format!(
                        "{{\"pool\":\"{pool}\",\"object_size\":{},\"allocs\":{},\"frees\":{},\
                         \"cross_thread_frees\":{},\"remote_frees\":{},\"live_blocks_at_end\":{},\
                         \"peak_live_blocks\":{},\"mapped_bytes_at_end\":{},\"peak_mapped_bytes\":{},\
                         \"overflow_allocs\":{},\"alloc_ns\":{},\"free_ns\":{}}}",
                        sizes[i],
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
         \"object_sizes\":{{\"request\":{},\"response\":{},\"session\":{}}},\
         \"seconds\":{},\"sample_one_in\":{},\"runs\":[{}]}}",
        cfg.threads,
        acceptors,
        cfg.threads - acceptors,
        cfg.object_size,
        sizes[REQUEST],
        sizes[RESPONSE],
        sizes[SESSION],
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
    // Blocks homeslab still counts live, and blocks the example allocated
    // and never freed (both runs).
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
