//! Cross-thread stress: several threads allocate, free locally, pass blocks
//! to each other through channels and free them remotely, at random.
//!
//! Every block is stamped with a unique id and a checksum when allocated and
//! checked when freed; a shared bitmap records each id's free. At the end:
//! zero lost, zero duplicated, zero corrupted, `T::drop` ran exactly once per
//! block, and the pool's counters agree (`live_blocks == 0`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use homeslab::{Pool, PoolBox};

// ---------------------------------------------------------------- stamping

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const POISON: u64 = 0xdead_dead_dead_dead;

/// A 64-byte block: id, payload derived from the id, checksum, and the drop
/// counter of its test.
struct Item {
    id: u64,
    words: [u64; 5],
    check: u64,
    drops: &'static AtomicUsize,
}

impl Item {
    fn new(id: u64, drops: &'static AtomicUsize) -> Self {
        let mut words = [0; 5];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mix(id ^ ((i as u64 + 1) << 56));
        }
        let check = words.iter().fold(mix(id), |a, &w| a.rotate_left(9) ^ w);
        Self {
            id,
            words,
            check,
            drops,
        }
    }

    /// True if the block still holds exactly what `Item::new(id)` wrote.
    fn is_intact(&self, id: u64) -> bool {
        let fresh = Item::new(id, self.drops);
        let ok = self.id == id && self.words == fresh.words && self.check == fresh.check;
        std::mem::forget(fresh);
        ok
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        // Poison, so a stale holder of this block would see a mismatch.
        self.id = POISON;
        self.check = !self.check;
    }
}

/// Records every retired id; counts corrupted and duplicated frees.
struct Tracker {
    per_thread: u64,
    seen: Vec<AtomicU64>,
    corrupted: AtomicUsize,
    duplicated: AtomicUsize,
}

impl Tracker {
    fn new(threads: usize, per_thread: u64) -> Self {
        let bits = threads as u64 * per_thread;
        Self {
            per_thread,
            seen: (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            corrupted: AtomicUsize::new(0),
            duplicated: AtomicUsize::new(0),
        }
    }

    fn id(&self, thread: usize, seq: u64) -> u64 {
        assert!(seq < self.per_thread);
        (thread as u64) << 32 | seq
    }

    fn index(&self, id: u64) -> u64 {
        (id >> 32) * self.per_thread + (id & 0xffff_ffff)
    }

    /// Checks the block against the id it was handed out with, marks the id
    /// freed, and frees the block.
    fn retire(&self, id: u64, b: PoolBox<Item>) {
        if !b.is_intact(id) {
            self.corrupted.fetch_add(1, Ordering::Relaxed);
        }
        let i = self.index(id);
        let bit = 1u64 << (i % 64);
        if self.seen[(i / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        drop(b);
    }

    /// Ids allocated (thread `t` allocated `allocated[t]`) but never retired.
    fn lost(&self, allocated: &[u64]) -> u64 {
        let mut lost = 0;
        for (t, &n) in allocated.iter().enumerate() {
            for seq in 0..n {
                let i = self.index(self.id(t, seq));
                if self.seen[(i / 64) as usize].load(Ordering::Relaxed) & (1 << (i % 64)) == 0 {
                    lost += 1;
                }
            }
        }
        lost
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ---------------------------------------------------------------- workload

type Msg = (u64, PoolBox<Item>);

#[derive(Default, Debug, Clone, Copy)]
struct Report {
    allocs: u64,
    local_frees: u64,
    sends: u64,
    received: u64,
    received_frees: u64,
}

impl Report {
    fn ops(&self) -> u64 {
        self.allocs + self.local_frees + self.sends + self.received_frees
    }
}

/// Live blocks a worker keeps at most.
const MAX_LIVE: usize = 512;

#[allow(clippy::too_many_arguments)]
fn worker(
    t: usize,
    pool: Pool<Item>,
    rx: Receiver<Msg>,
    peers: Vec<Sender<Msg>>,
    iterations: usize,
    tracker: &Tracker,
    drops: &'static AtomicUsize,
) -> Report {
    let mut rng = Rng(mix(t as u64 + 1) | 1);
    let mut live: Vec<Msg> = Vec::with_capacity(MAX_LIVE);
    let mut r = Report::default();
    for _ in 0..iterations {
        match rng.below(100) {
            0..=44 => {
                if live.len() < MAX_LIVE {
                    let id = tracker.id(t, r.allocs);
                    let b = pool.alloc(Item::new(id, drops)).expect("alloc failed");
                    r.allocs += 1;
                    live.push((id, b));
                } else {
                    let i = rng.below(live.len());
                    let (id, b) = live.swap_remove(i);
                    tracker.retire(id, b);
                    r.local_frees += 1;
                }
            }
            45..=69 => {
                if !live.is_empty() {
                    let i = rng.below(live.len());
                    let (id, b) = live.swap_remove(i);
                    tracker.retire(id, b);
                    r.local_frees += 1;
                }
            }
            70..=89 => {
                if !live.is_empty() {
                    let i = rng.below(live.len());
                    let m = live.swap_remove(i);
                    peers[rng.below(peers.len())].send(m).expect("peer alive");
                    r.sends += 1;
                }
            }
            _ => {
                // Take what arrived: free half at once (remote frees), keep
                // the rest, to be freed or forwarded later.
                for _ in 0..32 {
                    let Ok((id, b)) = rx.try_recv() else { break };
                    r.received += 1;
                    if rng.below(2) == 0 || live.len() >= MAX_LIVE {
                        tracker.retire(id, b);
                        r.received_frees += 1;
                    } else {
                        live.push((id, b));
                    }
                }
            }
        }
    }
    for (id, b) in live.drain(..) {
        tracker.retire(id, b);
        r.local_frees += 1;
    }
    // No more sends from us; then free whatever the others still send.
    drop(peers);
    for (id, b) in rx {
        r.received += 1;
        tracker.retire(id, b);
        r.received_frees += 1;
    }
    r
}

fn run(pool: Pool<Item>, threads: usize, iterations: usize, drops: &'static AtomicUsize) -> u64 {
    let start = Instant::now();
    let drops_before = drops.load(Ordering::Relaxed);
    let tracker = Arc::new(Tracker::new(threads, iterations as u64));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Msg>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let peers: Vec<_> = txs
                .iter()
                .enumerate()
                .filter(|&(p, _)| p != t)
                .map(|(_, tx)| tx.clone())
                .collect();
            let pool = pool.clone();
            let tracker = tracker.clone();
            std::thread::spawn(move || worker(t, pool, rx, peers, iterations, &tracker, drops))
        })
        .collect();
    drop(txs);
    let reports: Vec<Report> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let allocated: Vec<u64> = reports.iter().map(|r| r.allocs).collect();
    let total_allocs: u64 = allocated.iter().sum();
    let ops: u64 = reports.iter().map(Report::ops).sum();
    let sends: u64 = reports.iter().map(|r| r.sends).sum();
    let received: u64 = reports.iter().map(|r| r.received).sum();
    let lost = tracker.lost(&allocated);
    let corrupted = tracker.corrupted.load(Ordering::Relaxed);
    let duplicated = tracker.duplicated.load(Ordering::Relaxed);
    let dropped = (drops.load(Ordering::Relaxed) - drops_before) as u64;
    let s = pool.stats();
    println!(
        "{threads} threads, {ops} ops ({total_allocs} allocs, {sends} hand-offs) in {:?}: \
         lost {lost}, duplicated {duplicated}, corrupted {corrupted}\n{s:?}",
        start.elapsed()
    );

    assert_eq!(sends, received, "every hand-off arrived");
    assert_eq!(lost, 0, "blocks allocated but never freed");
    assert_eq!(duplicated, 0, "blocks freed twice");
    assert_eq!(corrupted, 0, "blocks whose stamp changed while live");
    assert_eq!(dropped, total_allocs, "T::drop ran once per block");
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.allocs, total_allocs);
    assert_eq!(s.frees, total_allocs);
    assert!(s.remote_frees > 0, "the workload frees remotely");
    assert_eq!(s.double_frees, 0);
    assert_eq!(s.foreign_frees, 0);
    assert_eq!(s.corruption_events, 0);
    assert_eq!(s.thread_heaps, 0, "every worker has exited");

    // Every worker exited, so every slab is an orphan's or the tier's:
    // trim gives all of it back.
    let released = pool.trim();
    let after = pool.stats();
    println!(
        "trim released {released} bytes; mapped now {}",
        after.mapped_bytes
    );
    assert_eq!(after.mapped_bytes, 0, "{after:?}");
    ops
}

/// Iterations per worker: about one op (alloc, free, hand-off) per
/// iteration, so four workers make 1.3M+ ops.
const ITERATIONS: usize = 320_000;

#[test]
fn cross_thread_stress() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let pool = Pool::<Item>::builder().build().unwrap();
    let ops = run(pool, 4, ITERATIONS, &DROPS);
    assert!(ops >= 1_000_000, "only {ops} ops");
}

#[test]
fn cross_thread_stress_hardened() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let pool = Pool::<Item>::builder().hardened(true).build().unwrap();
    let ops = run(pool, 4, ITERATIONS, &DROPS);
    assert!(ops >= 1_000_000, "only {ops} ops");
}

#[test]
fn cross_thread_stress_small_slabs_and_tier() {
    // Tiny slabs (many detach/return cycles) and a heap cap that sends the
    // excess to the shared tier, with six threads over a two-heap limit.
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let pool = Pool::<Item>::builder()
        .slab_capacity(8)
        .max_thread_heaps(2)
        .max_thread_slabs(4)
        .retained_empty_slabs(0)
        .build()
        .unwrap();
    run(pool.clone(), 6, ITERATIONS / 8, &DROPS);
    assert!(pool.stats().overflow_allocs > 0);
}

#[test]
fn cross_thread_stress_tiny_slabs_hardened() {
    // Four-slot slabs and no retained empties: slabs go full and detach, come
    // back through remote frees, empty out and return to the page source, and
    // their regions are reused by other threads' heaps, all the time.
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let pool = Pool::<Item>::builder()
        .hardened(true)
        .slab_capacity(4)
        .retained_empty_slabs(0)
        .build()
        .unwrap();
    run(pool, 4, ITERATIONS / 2, &DROPS);
}
