//! Constructed-object caching (Bonwick style): pools that hand out a
//! `Vec<u8>` of 4 KiB capacity already built, against building one each time.
//!
//! ```text
//! cargo bench --bench objects                  # the call counts, then the timed rows
//! cargo bench --bench objects -- objects_t1    # a criterion filter (counts first)
//! cargo bench --bench objects -- --count       # the call counts only
//! cargo bench --bench objects -- --burst       # the memory row only
//! ```
//!
//! One *pair* is: get a buffer (empty, capacity ≥ 4 KiB), fill it with
//! 4 KiB (`extend_from_slice`), release it. Rows:
//! - `objects_t1`: one thread, pairs back to back;
//! - `objects_t2`: two threads doing that independently on one shared subject;
//! - `objects_forward`: one thread gets and fills, hands the buffers in
//!   batches to another thread, which releases them (the `xthread` hand-off of
//!   `benches/common/workloads.rs`: recycled batch vectors);
//! - `objects_burst` (`--burst`, not criterion): each subject in a process of
//!   its own holds [`BURST_LIVE`] filled buffers at once, releases them all,
//!   and the resident memory is printed after release, after an idle wait of
//!   2 × the homeslab `release_after` used there ([`BURST_RELEASE_AFTER`]),
//!   after one more pair (policies that run on the next operation), after the
//!   subject's trim where it has one, and after dropping the subject.
//!
//! Before the timed rows, the binary prints each subject's allocator calls
//! per warm pair (one thread; this binary's global allocator is the system
//! allocator behind a counter).
//!
//! Subjects: `homeslab::ObjectPool` (not in the tree yet: `mod homeslab_objects`,
//! compiled out), `lockfree-object-pool` (`SpinLockObjectPool`
//! and `LinearObjectPool`), `sharded-slab`'s `Pool`, the `object-pool` crate,
//! `homeslab::Pool<Vec<u8>>` without caching (a fresh `Vec` moved into a
//! `PoolBox` every time: the buffer comes from the global allocator), and a
//! fresh `Vec` from mimalloc and from the system allocator.

#[allow(dead_code)]
mod common;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};

use common::harness::{recv_spin, rss_bytes, run, Body, Gate};

/// Capacity of every buffer, and bytes written into it per pair.
const CAP: usize = 4096;

/// What every pair writes.
static DATA: [u8; CAP] = [0xa5; CAP];

// --- counting --------------------------------------------------------------

/// Counting is on (only while [`count_calls`] runs, on one thread).
static COUNTING: AtomicBool = AtomicBool::new(false);
/// `alloc`, `alloc_zeroed` and `realloc` calls while counting.
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// `dealloc` calls while counting.
static FREES: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
fn count(c: &AtomicU64) {
    // Off: one relaxed load of a line nobody writes, so the timed rows
    // (two threads included) pay next to nothing for it.
    if COUNTING.load(Ordering::Relaxed) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// This binary's global allocator: `System`, counted.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only static atomics (it never
// allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCS);
        // SAFETY: our caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCS);
        // SAFETY: our caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&ALLOCS);
        // SAFETY: our caller's contract is `System`'s (`ptr` came from it).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(&FREES);
        // SAFETY: our caller's contract is `System`'s (`ptr` came from it).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// mimalloc called directly (it is not the global allocator here), as an
/// `allocator_api2` allocator for `Vec<u8, Mi>`; counted like the global one.
#[derive(Clone, Copy, Debug)]
struct Mi;

/// `layout` with a size of at least 1 (mimalloc's `GlobalAlloc` wants a
/// non-zero size; `Vec` never asks for zero bytes, but an allocator must
/// serve them).
fn non_zero(layout: Layout) -> Layout {
    match Layout::from_size_align(layout.size().max(1), layout.align()) {
        Ok(l) => l,
        Err(_) => unreachable!("size 1 fits any alignment"),
    }
}

// SAFETY: blocks come from `MiMalloc` (one process-wide heap: `Mi` is a unit,
// so any copy frees any other's blocks), with at least the size and the
// alignment asked for, and stay valid until `deallocate`.
unsafe impl allocator_api2::alloc::Allocator for Mi {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        count(&ALLOCS);
        // SAFETY: `non_zero` gives a non-zero size.
        let p = unsafe { mimalloc::MiMalloc.alloc(non_zero(layout)) };
        match NonNull::new(p) {
            Some(p) => Ok(NonNull::slice_from_raw_parts(p, layout.size())),
            None => Err(allocator_api2::alloc::AllocError),
        }
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        count(&FREES);
        // SAFETY: our caller passes a block of this allocator with the layout
        // it was allocated with, so `MiMalloc.alloc(non_zero(layout))` made it.
        unsafe { mimalloc::MiMalloc.dealloc(ptr.as_ptr(), non_zero(layout)) }
    }
}

// --- subjects ----------------------------------------------------------------

/// A source of 4 KiB `Vec<u8>` buffers under test.
trait Buffers: Sync {
    /// Owns one buffer; may be released on any thread.
    type Handle<'a>: Send
    where
        Self: 'a;

    /// Short name used as the criterion benchmark id.
    fn name(&self) -> &'static str;

    /// Gets an empty buffer of capacity ≥ [`CAP`] and fills it with `data`.
    fn get_filled(&self, data: &[u8]) -> Self::Handle<'_>;

    /// Releases the buffer (reset and cached, or freed), on any thread.
    fn release<'a>(&'a self, h: Self::Handle<'a>);

    /// The subject's own trim, if it has one (bytes it says it released,
    /// where it says).
    fn trim(&self) -> Option<u64> {
        None
    }

    /// A line of the subject's own counters for the burst report.
    fn report(&self) -> Option<String> {
        None
    }
}

/// How the homeslab subjects are built.
#[derive(Clone, Copy, Debug, Default)]
struct Setup {
    /// `release_after` for homeslab (`None`: its default).
    release_after: Option<Duration>,
}

/// Fills an empty buffer (checks that it was reset and is big enough: a
/// subject that handed out a full or small one would reallocate here).
#[inline(always)]
fn fill(v: &mut Vec<u8>, data: &[u8]) {
    assert!(v.is_empty() && v.capacity() >= CAP, "buffer not reset");
    v.extend_from_slice(data);
    // The bytes may be read: they must be written.
    black_box(v.as_mut_slice());
}

// homeslab's `ObjectPool`.
mod homeslab_objects {
    use super::{fill, Buffers, Setup, CAP};

    /// `homeslab::ObjectPool<Vec<u8>>`: each buffer built once, `clear`ed on
    /// release, kept while its capacity is at most 1 MiB.
    pub struct HomeslabObjects(homeslab::ObjectPool<Vec<u8>>);

    impl HomeslabObjects {
        /// A pool with `setup`'s `release_after`.
        pub fn new(setup: Setup) -> Self {
            let b = homeslab::ObjectPool::builder(|| Vec::with_capacity(CAP))
                .reset(|v: &mut Vec<u8>| v.clear())
                .keep_if(|v: &Vec<u8>| v.capacity() <= 1 << 20);
            let b = match setup.release_after {
                Some(d) => b.release_after(Some(d)),
                None => b,
            };
            Self(b.build().expect("homeslab object pool config"))
        }
    }

    impl Buffers for HomeslabObjects {
        type Handle<'a> = homeslab::ObjectBox<Vec<u8>>;

        fn name(&self) -> &'static str {
            "homeslab-objectpool"
        }

        #[inline(always)]
        fn get_filled(&self, data: &[u8]) -> homeslab::ObjectBox<Vec<u8>> {
            let mut b = match self.0.get() {
                Ok(b) => b,
                Err(e) => panic!("homeslab object pool get failed: {e}"),
            };
            fill(&mut b, data);
            b
        }

        #[inline(always)]
        fn release(&self, h: homeslab::ObjectBox<Vec<u8>>) {
            drop(h)
        }

        fn trim(&self) -> Option<u64> {
            Some(self.0.trim())
        }

        fn report(&self) -> Option<String> {
            let s = self.0.stats();
            Some(format!(
                "constructed {} reused {} destroyed {} cached {}, mapped {} KiB",
                s.objects_constructed,
                s.objects_reused,
                s.objects_destroyed,
                s.objects_cached,
                s.mapped_bytes >> 10
            ))
        }
    }
}

/// `homeslab::Pool<Vec<u8>>`, no caching: a fresh `Vec` (its buffer from the
/// global allocator) moved into a `PoolBox` per pair, dropped on release.
struct HomeslabFresh(homeslab::Pool<Vec<u8>>);

impl HomeslabFresh {
    fn new(setup: Setup) -> Self {
        let b = homeslab::Pool::builder();
        let b = match setup.release_after {
            Some(d) => b.release_after(Some(d)),
            None => b,
        };
        Self(b.build().expect("homeslab pool config"))
    }
}

impl Buffers for HomeslabFresh {
    type Handle<'a> = homeslab::PoolBox<Vec<u8>>;

    fn name(&self) -> &'static str {
        "homeslab-pool-nocache"
    }

    #[inline(always)]
    fn get_filled(&self, data: &[u8]) -> homeslab::PoolBox<Vec<u8>> {
        let mut b = match self.0.alloc(Vec::with_capacity(CAP)) {
            Ok(b) => b,
            Err(e) => panic!("homeslab alloc failed: {e}"),
        };
        fill(&mut b, data);
        b
    }

    #[inline(always)]
    fn release(&self, h: homeslab::PoolBox<Vec<u8>>) {
        drop(h)
    }

    fn trim(&self) -> Option<u64> {
        Some(self.0.trim())
    }

    fn report(&self) -> Option<String> {
        let s = self.0.stats();
        Some(format!(
            "pool of Vec headers: mapped {} KiB, released {} KiB (buffers: global allocator)",
            s.mapped_bytes >> 10,
            s.released_bytes >> 10
        ))
    }
}

/// `lockfree_object_pool::SpinLockObjectPool<Vec<u8>>` (`pull`; its reset,
/// `clear`, runs when an object is pulled again).
struct LockfreeSpin(lockfree_object_pool::SpinLockObjectPool<Vec<u8>>);

impl LockfreeSpin {
    fn new() -> Self {
        Self(lockfree_object_pool::SpinLockObjectPool::new(
            || Vec::with_capacity(CAP),
            |v| v.clear(),
        ))
    }
}

impl Buffers for LockfreeSpin {
    type Handle<'a> = lockfree_object_pool::SpinLockReusable<'a, Vec<u8>>;

    fn name(&self) -> &'static str {
        "lockfree-object-pool"
    }

    #[inline(always)]
    fn get_filled(&self, data: &[u8]) -> Self::Handle<'_> {
        let mut r = self.0.pull();
        fill(&mut r, data);
        r
    }

    #[inline(always)]
    fn release<'a>(&'a self, h: Self::Handle<'a>) {
        drop(h)
    }
}

/// `lockfree_object_pool::LinearObjectPool<Vec<u8>>` (same init and reset).
struct LockfreeLinear(lockfree_object_pool::LinearObjectPool<Vec<u8>>);

impl LockfreeLinear {
    fn new() -> Self {
        Self(lockfree_object_pool::LinearObjectPool::new(
            || Vec::with_capacity(CAP),
            |v| v.clear(),
        ))
    }
}

impl Buffers for LockfreeLinear {
    type Handle<'a> = lockfree_object_pool::LinearReusable<'a, Vec<u8>>;

    fn name(&self) -> &'static str {
        "lockfree-object-pool-linear"
    }

    #[inline(always)]
    fn get_filled(&self, data: &[u8]) -> Self::Handle<'_> {
        let mut r = self.0.pull();
        fill(&mut r, data);
        r
    }

    #[inline(always)]
    fn release<'a>(&'a self, h: Self::Handle<'a>) {
        drop(h)
    }
}

/// A `Vec<u8>` whose `Default` has [`CAP`] capacity, for `sharded_slab::Pool`
/// (which builds slots with `Default` and resets them with `Clear`).
struct Buf(Vec<u8>);

impl Default for Buf {
    fn default() -> Self {
        Self(Vec::with_capacity(CAP))
    }
}

impl sharded_slab::Clear for Buf {
    fn clear(&mut self) {
        self.0.clear()
    }
}

/// `sharded_slab::Pool<Buf>`: `create` (filled through its guard), `clear`
/// by key on release; the handle is the key.
struct ShardedPool(sharded_slab::Pool<Buf>);

impl Buffers for ShardedPool {
    type Handle<'a> = usize;

    fn name(&self) -> &'static str {
        "sharded-slab-pool"
    }

    #[inline(always)]
    fn get_filled(&self, data: &[u8]) -> usize {
        let Some(mut r) = self.0.create() else {
            panic!("sharded-slab pool: shard full")
        };
        fill(&mut r.0, data);
        r.key()
    }

    #[inline(always)]
    fn release(&self, key: usize) {
        let cleared = self.0.clear(key);
        debug_assert!(cleared);
    }
}

/// Objects the `object-pool` crate's pool is built with (it builds more
/// through `pull`'s fallback when empty, and keeps all that come back).
const OBJECT_POOL_PREFILL: usize = 64;

/// `object_pool::Pool<Vec<u8>>`: `pull` (a fresh `Vec` when empty), reset by
/// hand (`clear`) before the guard goes back.
struct ObjectPoolCrate(object_pool::Pool<Vec<u8>>);

impl ObjectPoolCrate {
    fn new() -> Self {
        Self(object_pool::Pool::new(OBJECT_POOL_PREFILL, || {
            Vec::with_capacity(CAP)
        }))
    }
}

impl Buffers for ObjectPoolCrate {
    type Handle<'a> = object_pool::Reusable<'a, Vec<u8>>;

    fn name(&self) -> &'static str {
        "object-pool"
    }

    #[inline(always)]
    fn get_filled(&self, data: &[u8]) -> Self::Handle<'_> {
        let mut r = self.0.pull(|| Vec::with_capacity(CAP));
        fill(&mut r, data);
        r
    }

    #[inline(always)]
    fn release<'a>(&'a self, mut h: Self::Handle<'a>) {
        h.clear();
        drop(h)
    }
}

/// A fresh `Vec<u8, Mi>` per pair: the buffer from mimalloc, freed on release.
struct VecMimalloc;

/// [`fill`] for a `Vec<u8, Mi>`: one `memcpy`, as `std`'s `extend_from_slice`
/// does for bytes (allocator-api2's copies byte by byte on stable, about ten
/// times slower here).
#[inline(always)]
fn fill_mi(v: &mut allocator_api2::vec::Vec<u8, Mi>, data: &[u8]) {
    assert!(
        v.is_empty() && v.capacity() >= data.len(),
        "buffer not reset"
    );
    // SAFETY: the buffer is empty with room for `data.len()` bytes (checked
    // above) and is not `data`'s memory; all bytes below the new length are
    // then initialised.
    unsafe {
        core::ptr::copy_nonoverlapping(data.as_ptr(), v.as_mut_ptr(), data.len());
        v.set_len(data.len());
    }
    black_box(v.as_mut_slice());
}

extern "C" {
    /// mimalloc's own collection (linked in by the `mimalloc` crate).
    fn mi_collect(force: bool);
}

impl Buffers for VecMimalloc {
    type Handle<'a> = allocator_api2::vec::Vec<u8, Mi>;

    fn name(&self) -> &'static str {
        "vec-mimalloc"
    }

    #[inline(always)]
    fn get_filled(&self, data: &[u8]) -> allocator_api2::vec::Vec<u8, Mi> {
        let mut v = allocator_api2::vec::Vec::with_capacity_in(CAP, Mi);
        fill_mi(&mut v, data);
        v
    }

    #[inline(always)]
    fn release(&self, h: allocator_api2::vec::Vec<u8, Mi>) {
        drop(h)
    }

    /// `mi_collect(true)`.
    fn trim(&self) -> Option<u64> {
        // SAFETY: `mi_collect` takes no pointers and may be called at any
        // time from any thread.
        unsafe { mi_collect(true) };
        Some(0)
    }
}

/// A fresh `Vec<u8>` per pair from the global allocator (the system
/// allocator, behind this binary's counter).
struct VecSystem;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    /// glibc: gives free heap memory back to the OS.
    fn malloc_trim(pad: usize) -> i32;
}

impl Buffers for VecSystem {
    type Handle<'a> = Vec<u8>;

    fn name(&self) -> &'static str {
        "vec-system"
    }

    #[inline(always)]
    fn get_filled(&self, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(CAP);
        fill(&mut v, data);
        v
    }

    #[inline(always)]
    fn release(&self, h: Vec<u8>) {
        drop(h)
    }

    /// glibc's `malloc_trim(0)`.
    fn trim(&self) -> Option<u64> {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: `malloc_trim` takes no pointers and may be called at any
            // time from any thread.
            unsafe { malloc_trim(0) };
            Some(0)
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        None
    }
}

/// Receives each subject in turn, by value.
trait Sink {
    /// Called once per subject.
    fn take<S: Buffers>(&mut self, s: S);
}

/// Builds every subject in report order and hands each to `k` (a subject is
/// dropped before the next is built, unless `k` keeps it).
fn each_subject<K: Sink>(k: &mut K, setup: Setup) {
    // homeslab::ObjectPool goes here (see `mod homeslab_objects`).
    k.take(homeslab_objects::HomeslabObjects::new(setup));
    k.take(HomeslabFresh::new(setup));
    k.take(LockfreeSpin::new());
    k.take(LockfreeLinear::new());
    k.take(ShardedPool(sharded_slab::Pool::new()));
    k.take(ObjectPoolCrate::new());
    k.take(VecMimalloc);
    k.take(VecSystem);
}

/// The subjects' names, in report order.
fn names() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    impl Sink for Names {
        fn take<S: Buffers>(&mut self, s: S) {
            self.0.push(s.name());
        }
    }
    let mut n = Names(Vec::new());
    each_subject(&mut n, Setup::default());
    n.0
}

// --- the timed rows -------------------------------------------------------------

/// A timed row, run for every subject.
trait Row: Sync {
    /// Pairs per iteration (all threads).
    fn elements(&self) -> u64;
    /// Runs `iters` iterations on `s` and returns the measured time.
    fn run<S: Buffers>(&self, s: &S, iters: u64) -> Duration;
}

/// Untimed pairs each thread runs before the clock starts.
const WARM_PAIRS: u64 = 1000;

/// `objects_t1`, `objects_t2`: each thread runs one pair per iteration.
struct Local {
    threads: usize,
}

impl Row for Local {
    fn elements(&self) -> u64 {
        self.threads as u64
    }

    fn run<S: Buffers>(&self, s: &S, iters: u64) -> Duration {
        let bodies: Vec<Body<'_>> = (0..self.threads)
            .map(|_| {
                Box::new(move |g: &Gate| {
                    for _ in 0..WARM_PAIRS {
                        s.release(s.get_filled(&DATA));
                    }
                    g.start();
                    for _ in 0..iters {
                        s.release(s.get_filled(&DATA));
                    }
                    g.stop();
                }) as Body<'_>
            })
            .collect();
        run(bodies)
    }
}

/// Buffers handed over per `objects_forward` iteration.
const FORWARD_PER_ITER: usize = 1024;
/// Buffers per hand-off batch.
const FORWARD_BATCH: usize = 256;
/// Batches in flight (bounds live memory: 4 MiB of buffers).
const FORWARD_INFLIGHT: usize = 4;

/// `objects_forward`: a producer gets and fills buffers, in batches of
/// [`FORWARD_BATCH`], and hands them to a consumer, which releases them
/// (every release on the other thread). Batch vectors are recycled, so the
/// hand-off allocates no batches.
struct Forward;

impl Row for Forward {
    fn elements(&self) -> u64 {
        FORWARD_PER_ITER as u64
    }

    fn run<S: Buffers>(&self, s: &S, iters: u64) -> Duration {
        let batches = iters as usize * (FORWARD_PER_ITER / FORWARD_BATCH);
        let (full_tx, full_rx) = mpsc::channel::<Vec<S::Handle<'_>>>();
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<S::Handle<'_>>>();
        for _ in 0..FORWARD_INFLIGHT {
            empty_tx
                .send(Vec::with_capacity(FORWARD_BATCH))
                .expect("channel");
        }
        let produce = move |n: usize| {
            for _ in 0..n {
                let mut v = recv_spin(&empty_rx);
                for _ in 0..FORWARD_BATCH {
                    v.push(s.get_filled(&DATA));
                }
                full_tx.send(v).expect("consumer alive");
            }
        };
        let consume = move |n: usize| {
            for _ in 0..n {
                let mut v = recv_spin(&full_rx);
                for h in v.drain(..) {
                    s.release(h);
                }
                // The producer may have finished and gone: fine.
                let _ = empty_tx.send(v);
            }
        };
        let bodies: Vec<Body<'_>> = vec![
            Box::new(move |g: &Gate| {
                produce(FORWARD_INFLIGHT); // warm-up, untimed
                g.start();
                produce(batches);
                g.stop();
            }),
            Box::new(move |g: &Gate| {
                consume(FORWARD_INFLIGHT);
                g.start();
                consume(batches);
                g.stop();
            }),
        ];
        run(bodies)
    }
}

/// Adds one benchmark per subject to a group.
struct PerSubject<'g, 'c, R> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    row: &'g R,
}

impl<R: Row> Sink for PerSubject<'_, '_, R> {
    fn take<S: Buffers>(&mut self, s: S) {
        let row = self.row;
        self.group
            .bench_function(s.name(), |b| b.iter_custom(|iters| row.run(&s, iters)));
    }
}

fn group<R: Row>(c: &mut Criterion, name: &str, row: R) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(row.elements()));
    each_subject(
        &mut PerSubject {
            group: &mut g,
            row: &row,
        },
        Setup::default(),
    );
    g.finish();
}

fn rows(c: &mut Criterion) {
    group(c, "objects_t1", Local { threads: 1 });
    group(c, "objects_t2", Local { threads: 2 });
    group(c, "objects_forward", Forward);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(1000))
        .measurement_time(Duration::from_secs(3))
}

// --- allocator calls per pair ------------------------------------------------------

/// Counted pairs per subject.
const COUNT_PAIRS: u64 = 10_000;

/// Prints each subject's allocator calls per warm pair (this thread only:
/// nothing else runs while counting is on).
fn count_calls() {
    struct Counts;
    impl Sink for Counts {
        fn take<S: Buffers>(&mut self, s: S) {
            for _ in 0..WARM_PAIRS {
                s.release(s.get_filled(&DATA));
            }
            ALLOCS.store(0, Ordering::Relaxed);
            FREES.store(0, Ordering::Relaxed);
            COUNTING.store(true, Ordering::Relaxed);
            for _ in 0..COUNT_PAIRS {
                s.release(s.get_filled(&DATA));
            }
            COUNTING.store(false, Ordering::Relaxed);
            let per = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / COUNT_PAIRS as f64;
            println!(
                "{:<28} {:>8.3} {:>8.3}",
                s.name(),
                per(&ALLOCS),
                per(&FREES)
            );
        }
    }
    println!(
        "allocator calls per get+fill+release, warm ({COUNT_PAIRS} pairs, one thread; \
         the global allocator, and mimalloc for vec-mimalloc)"
    );
    println!("{:<28} {:>8} {:>8}", "subject", "allocs", "frees");
    each_subject(&mut Counts, Setup::default());
    println!("(allocs: alloc + alloc_zeroed + realloc calls; frees: dealloc calls)\n");
}

// --- objects_burst ------------------------------------------------------------

/// Buffers held at once in `objects_burst`.
const BURST_LIVE: usize = 100_000;
/// homeslab's `release_after` in `objects_burst`.
const BURST_RELEASE_AFTER: Duration = Duration::from_millis(200);
/// The idle wait after the release (2 × [`BURST_RELEASE_AFTER`]).
const BURST_WAIT: Duration = Duration::from_millis(400);

const BURST_COLUMNS: [&str; 7] = [
    "subject", "live", "released", "idle", "+1 pair", "trim", "dropped",
];

fn mib(bytes: u64, base: u64) -> String {
    format!("{:.1}", (bytes as f64 - base as f64) / (1u64 << 20) as f64)
}

/// One subject's burst, printed as a table row.
fn burst_one<S: Buffers>(s: S) {
    let mut live: Vec<S::Handle<'_>> = Vec::with_capacity(BURST_LIVE);
    // Fault the handle vector in before the baseline, so that it does not
    // count as the subject's memory.
    for slot in live.spare_capacity_mut() {
        *slot = core::mem::MaybeUninit::zeroed();
    }
    black_box(live.spare_capacity_mut());
    let base = rss_bytes();
    for _ in 0..BURST_LIVE {
        live.push(s.get_filled(&DATA));
    }
    let at_live = rss_bytes();
    for h in live.drain(..) {
        s.release(h);
    }
    let released = rss_bytes();
    std::thread::sleep(BURST_WAIT);
    let idle = rss_bytes();
    s.release(s.get_filled(&DATA));
    let after_pair = rss_bytes();
    let trimmed = s.trim().map(|_| rss_bytes());
    let report = s.report();
    let name = s.name();
    // The empty handle vector stays resident, as in every column before; the
    // process ends right after this.
    core::mem::forget(live);
    drop(s);
    let dropped = rss_bytes();
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}   (base {:.1})",
        name,
        mib(at_live, base),
        mib(released, base),
        mib(idle, base),
        mib(after_pair, base),
        trimmed.map_or("-".to_string(), |t| mib(t, base)),
        mib(dropped, base),
        base as f64 / (1u64 << 20) as f64
    );
    if let Some(r) = report {
        println!("{:<28} {r}", "");
    }
}

/// The burst of the subject called `name`, in this process (a child of
/// [`burst_table`]).
fn burst_child(name: &str) -> bool {
    struct Pick<'n> {
        name: &'n str,
        found: bool,
    }
    impl Sink for Pick<'_> {
        fn take<S: Buffers>(&mut self, s: S) {
            if s.name() == self.name {
                self.found = true;
                burst_one(s);
            }
        }
    }
    let mut pick = Pick { name, found: false };
    let setup = Setup {
        release_after: Some(BURST_RELEASE_AFTER),
    };
    each_subject(&mut pick, setup);
    pick.found
}

/// `objects_burst`: every subject's burst, each in a fresh process (so that
/// one subject's freed memory, kept by the system allocator, is not
/// another's baseline).
fn burst_table() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    println!(
        "objects_burst: {BURST_LIVE} buffers of 4 KiB got and filled, then all released; \
         RSS in MiB above the baseline (homeslab release_after {} ms, idle wait {} ms)",
        BURST_RELEASE_AFTER.as_millis(),
        BURST_WAIT.as_millis()
    );
    let c = BURST_COLUMNS;
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    );
    for name in names() {
        let status = std::process::Command::new(&exe)
            .args(["--burst-child", name])
            .status()
            .map_err(|e| format!("{name}: {e}"))?;
        if !status.success() {
            return Err(format!("{name}: burst child failed ({status})"));
        }
    }
    println!(
        "live: all held; released: all released; idle: after the wait; +1 pair: after \
         one more get+release;\ntrim: after the subject's trim (homeslab: trim(); \
         vec-mimalloc: mi_collect(true); vec-system: malloc_trim(0)); dropped: after \
         dropping the subject"
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--burst-child") {
        let Some(name) = args.get(i + 1) else {
            eprintln!("--burst-child needs a subject name");
            std::process::exit(2);
        };
        if !burst_child(name) {
            eprintln!("no subject called {name}");
            std::process::exit(2);
        }
        return;
    }
    if args.iter().any(|a| a == "--burst") {
        if let Err(e) = burst_table() {
            eprintln!("objects_burst: {e}");
            std::process::exit(1);
        }
        return;
    }
    count_calls();
    if args.iter().any(|a| a == "--count") {
        return;
    }
    let mut c = config().configure_from_args();
    rows(&mut c);
    c.final_summary();
}
