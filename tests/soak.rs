//! Soak test: 8 worker threads and a stream of short-lived threads hammer one
//! pool with allocations, local frees and cross-thread frees (blocks travel
//! through per-worker mailboxes). Every block carries its id, a checksum and
//! a pattern derived from the id; each free checks them. At the end blocks
//! lost, duplicated and corrupted must all be 0.
//!
//! Ignored by default (it runs for seconds in release). Run it with
//!
//! ```text
//! cargo test --release --test soak -- --ignored --nocapture
//! HOMESLAB_SOAK_OPS=50000000 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! `HOMESLAB_SOAK_OPS` is the total number of allocations and frees
//! (default 10 000 000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use homeslab::{Pool, PoolBox};

const WORKERS: usize = 8;
/// Blocks a worker keeps live at most.
const LIVE_CAP: usize = 512;

/// A stamped block: id, checksum, and a fill derived from the id.
#[derive(Debug, Clone, Copy)]
struct Block {
    id: u64,
    check: u64,
    fill: [u64; 2],
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Block {
    fn new(id: u64) -> Self {
        Self {
            id,
            check: mix(id),
            fill: [!id, id.rotate_left(17)],
        }
    }
}

/// What the checks found.
#[derive(Default)]
struct Tally {
    allocs: AtomicU64,
    frees: AtomicU64,
    /// A free found an intact stamp of another id: the block was handed out
    /// twice while live.
    duplicated: AtomicU64,
    /// A free found a broken stamp.
    corrupted: AtomicU64,
    /// Workers that used up their budget.
    finished: AtomicU64,
}

impl Tally {
    /// Checks `b` (expected to carry `id`), then frees it.
    fn free(&self, b: PoolBox<Block>, id: u64) {
        let got = *b;
        if got.check != mix(got.id) || got.fill != [!got.id, got.id.rotate_left(17)] {
            self.corrupted.fetch_add(1, Ordering::Relaxed);
        } else if got.id != id {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        drop(b);
        self.frees.fetch_add(1, Ordering::Relaxed);
    }

    fn alloc(&self, pool: &Pool<Block>, id: u64) -> (PoolBox<Block>, u64) {
        let b = pool.alloc(Block::new(id)).expect("allocation failed");
        self.allocs.fetch_add(1, Ordering::Relaxed);
        (b, id)
    }
}

type Mailbox = Mutex<Vec<(PoolBox<Block>, u64)>>;

/// A small xorshift generator (deterministic per thread).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn total_ops() -> u64 {
    std::env::var("HOMESLAB_SOAK_OPS")
        .ok()
        .map(|v| {
            v.replace('_', "")
                .parse()
                .expect("HOMESLAB_SOAK_OPS: a number")
        })
        .unwrap_or(10_000_000)
}

/// One worker: `budget` operations, then frees what it holds.
fn worker(
    me: usize,
    budget: u64,
    pool: Pool<Block>,
    boxes: Arc<Vec<Mailbox>>,
    tally: Arc<Tally>,
    next_id: Arc<AtomicU64>,
) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (me as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut live: Vec<(PoolBox<Block>, u64)> = Vec::with_capacity(LIVE_CAP);
    let mut outbox: Vec<(PoolBox<Block>, u64)> = Vec::new();
    let mut ops = 0u64;
    let mut short_lived = 0u64;
    while ops < budget {
        let roll = rng.below(100);
        if roll < 45 && live.len() < LIVE_CAP {
            // Ids come in batches so the shared counter is rarely touched.
            let base = next_id.fetch_add(64, Ordering::Relaxed);
            for k in 0..(1 + rng.below(8)) as u64 {
                live.push(tally.alloc(&pool, base + k));
                ops += 1;
            }
        } else if roll < 75 && !live.is_empty() {
            let i = rng.below(live.len());
            let (b, id) = live.swap_remove(i);
            tally.free(b, id);
            ops += 1;
        } else if roll < 95 && !live.is_empty() {
            // Send a batch to another worker: those frees will be remote.
            for _ in 0..(1 + rng.below(16)).min(live.len()) {
                let i = rng.below(live.len());
                outbox.push(live.swap_remove(i));
            }
            let to = (me + 1 + rng.below(WORKERS - 1)) % WORKERS;
            boxes[to].lock().unwrap().append(&mut outbox);
        } else if roll < 99 {
            // Free what others sent us.
            let mail = std::mem::take(&mut *boxes[me].lock().unwrap());
            for (b, id) in mail {
                tally.free(b, id);
                ops += 1;
            }
        } else if ops / 4096 > short_lived {
            // A short-lived thread: allocates, frees some locally, leaves the
            // rest in a mailbox and exits while its blocks are still live.
            short_lived += 1;
            let (pool, boxes, tally) = (pool.clone(), boxes.clone(), tally.clone());
            let base = next_id.fetch_add(64, Ordering::Relaxed);
            let to = rng.below(WORKERS);
            let done = thread::spawn(move || {
                let mut mine: Vec<_> = (0..32).map(|k| tally.alloc(&pool, base + k)).collect();
                for _ in 0..16 {
                    let (b, id) = mine.pop().unwrap();
                    tally.free(b, id);
                }
                boxes[to].lock().unwrap().append(&mut mine);
                48
            });
            ops += done.join().unwrap();
        }
    }
    for (b, id) in live {
        tally.free(b, id);
        ops += 1;
    }
    // Keep taking mail until every worker is done, so the mailbox of a
    // worker that finished early does not pile up.
    tally.finished.fetch_add(1, Ordering::AcqRel);
    while tally.finished.load(Ordering::Acquire) < WORKERS as u64 {
        let mail = std::mem::take(&mut *boxes[me].lock().unwrap());
        if mail.is_empty() {
            thread::yield_now();
        }
        for (b, id) in mail {
            tally.free(b, id);
            ops += 1;
        }
    }
    ops
}

#[test]
#[ignore = "soak: run with --release -- --ignored --nocapture"]
fn soak() {
    let total = total_ops();
    let pool = Pool::<Block>::builder()
        .hardened(true)
        .slab_capacity(64)
        .max_thread_slabs(16)
        // Two of the eight workers (and the short-lived threads while they
        // are all busy) go to the overflow tier.
        .max_thread_heaps(6)
        .build()
        .unwrap();
    let boxes: Arc<Vec<Mailbox>> = Arc::new((0..WORKERS).map(|_| Mutex::new(Vec::new())).collect());
    let tally = Arc::new(Tally::default());
    let next_id = Arc::new(AtomicU64::new(1));
    let start = Instant::now();
    let handles: Vec<_> = (0..WORKERS)
        .map(|me| {
            let (pool, boxes, tally, next_id) =
                (pool.clone(), boxes.clone(), tally.clone(), next_id.clone());
            thread::spawn(move || worker(me, total / WORKERS as u64, pool, boxes, tally, next_id))
        })
        .collect();
    let mut ops: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Blocks still in mailboxes: freed here, remotely.
    for mailbox in boxes.iter() {
        for (b, id) in std::mem::take(&mut *mailbox.lock().unwrap()) {
            tally.free(b, id);
            ops += 1;
        }
    }
    let elapsed = start.elapsed();
    let allocs = tally.allocs.load(Ordering::Relaxed);
    let frees = tally.frees.load(Ordering::Relaxed);
    let lost = allocs - frees;
    let duplicated = tally.duplicated.load(Ordering::Relaxed);
    let corrupted = tally.corrupted.load(Ordering::Relaxed);
    let s = pool.stats();
    println!(
        "soak: {ops} ops ({allocs} allocs, {frees} frees) on {WORKERS} workers + short-lived threads in {:.2} s ({:.1} Mops/s)",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!("soak: lost {lost}, duplicated {duplicated}, corrupted {corrupted}");
    println!("soak: {s:?}");
    assert!(ops >= total, "ran {ops} of {total} operations");
    assert_eq!(lost, 0, "blocks lost");
    assert_eq!(duplicated, 0, "blocks handed out twice");
    assert_eq!(corrupted, 0, "blocks corrupted");
    assert_eq!(s.live_blocks, 0, "pool counts live blocks: {s:?}");
    assert_eq!(s.allocs, allocs, "{s:?}");
    assert_eq!(s.frees, frees, "{s:?}");
    assert_eq!(s.double_frees, 0, "{s:?}");
    assert_eq!(s.foreign_frees, 0, "{s:?}");
    assert_eq!(s.corruption_events, 0, "{s:?}");
    assert!(s.remote_frees > 0 && s.overflow_allocs > 0, "{s:?}");
}
