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
//! This file is the server: what serves each kind of block (`OnHomeslab`,
//! `OnBox`), and the acceptor and worker threads. The harness is beside
//! it: `args` (the options), `stamp` (the stamps that the freeing threads
//! check), `meter` (counters and sampled latencies), `supervisor` (one
//! timed run: the threads started, replaced and joined) and `report` (the
//! tables, or JSON).
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

#[allow(dead_code)]
#[path = "../../benches/common/mod.rs"]
mod common;

mod args;
mod meter;
mod report;
mod stamp;
mod supervisor;

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

use homeslab::allocator_api2::alloc::{Allocator, Global};
use homeslab::allocator_api2::vec::Vec as AVec;
use homeslab::{ObjectBox, ObjectPool, SlabAlloc, Stats};

use args::{parse_args, USAGE};
use common::harness::Rng;
use common::subjects::{Homeslab, Subject, SystemBox};
use meter::Meter;
use report::{json, table};
use stamp::{verify_headers, verify_response, write_response, Msg, Stamped};
use supervisor::run_both;

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

/// Runs the workload on homeslab, then on `Box`, and prints the tables (or
/// JSON). A response, a session and the headers must carry their request's
/// sequence number: mismatches are counted and must be 0, every block must
/// be freed, and homeslab's pools and allocator must all end with no live
/// block (the exit code is 1 otherwise).
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

// ---------------------------------------------------------------------------
// The pools, and the messages of the typed ones

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

/// A request of `16 + 8 * P` bytes (`--object-size`).
type Request<const P: usize> = Msg<REQUEST, P>;
/// Per-request session metadata: 32 bytes.
type Session = Msg<SESSION, 2>;

// ---------------------------------------------------------------------------
// The workload
//
// What each request takes, as a server keeps it (homeslab / `Box` run):
//
// - *request*, `--object-size` bytes (16, 64, 256 or 1024; default 64), in
//   a `homeslab::Pool` / a `Box`: the acceptors allocate them, the workers
//   free them;
// - *headers*, a `Vec<u64>` of 2 to 12 words (16–96 bytes) built by the
//   acceptor with `allocator_api2`'s `Vec::with_capacity_in`, in one
//   `homeslab::SlabAlloc` that every thread shares / in `Global` (the
//   system allocator): the worker reads and verifies them and drops them
//   with the request — or, for a long-lived request, whichever thread
//   evicts it from the cache later. Each vector holds a `&SlabAlloc` (a
//   clone per vector would bump one shared reference count from every
//   thread);
// - *response*, a `Vec<u8>` buffer: on homeslab a constructed one from an
//   `ObjectPool<Vec<u8>>` (built with `Vec::with_capacity(512)`, reset with
//   `clear()`, kept only while its capacity is at most 1 KiB), so a reused
//   get allocates nothing; on `Box` a fresh `Vec::with_capacity(512)` per
//   response, as a program without an object pool does. The worker gets
//   one and fills it — 512 bytes, except one response in 64, which is
//   4 KiB and grows its buffer (the object pool then drops that buffer
//   instead of caching it) — and the acceptor verifies and drops it, so
//   every buffer is released on another thread;
// - *session*, 32 bytes of per-request metadata in a `homeslab::Pool` /
//   a `Box`: the acceptors allocate and free them, the workers read them.

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
    type Buf = ObjectBox<Vec<u8>>;
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
    fn get(b: &ObjectPool<Vec<u8>>) -> ObjectBox<Vec<u8>> {
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
