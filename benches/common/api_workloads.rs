//! The collection workloads, each written once against [`AllocSubject`]
//! (an `allocator_api2` `Allocator + Clone + Send + Sync`) and run for every
//! allocator of [`each_allocator`](super::allocators::each_allocator).
//!
//! One *iteration* is one round of the workload (on every thread); a
//! workload's [`ApiWorkload::elements`] is what criterion's throughput counts
//! per iteration: operations, elements pushed or replacements (see each).
//! Setup (building the live set) and teardown are outside the measured time
//! ([`run`]).

use core::ptr::NonNull;
use std::alloc::{handle_alloc_error, Layout};
use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::time::Duration;

use allocator_api2::vec::Vec as AVec;

use super::allocators::AllocSubject;
use super::harness::{recv_spin, ring, run, Body, Gate, Rng};

/// A collection workload.
pub trait ApiWorkload: Sync {
    /// What one iteration counts for criterion's throughput.
    fn elements(&self) -> u64;
    /// Runs `iters` iterations on `a` and returns the measured time.
    fn run<A: AllocSubject>(&self, a: &A, iters: u64) -> Duration;
}

/// A fixed-seed hasher for `u64` keys: one 64×64→128-bit multiply, folded
/// (foldhash's mix, without its per-map random seed, so every run and every
/// subject sees the same table layout).
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedState;

/// The hasher of [`FixedState`].
pub struct FoldHasher(u64);

const FOLD_SEED: u64 = 0x243f_6a88_85a3_08d3;
const FOLD_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl FoldHasher {
    #[inline(always)]
    fn mix(&mut self, x: u64) {
        let m = u128::from(self.0 ^ x) * u128::from(FOLD_MUL);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Hasher for FoldHasher {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        self.mix(x);
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for FixedState {
    type Hasher = FoldHasher;

    #[inline(always)]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(FOLD_SEED)
    }
}

/// Live entries of the `hashbrown_churn` map.
pub const CHURN_LIVE: u64 = 100_000;
/// Insert+remove operations per `hashbrown_churn` iteration.
pub const CHURN_OPS: u64 = 1000;
/// Value sizes of `hashbrown_churn`: uniform in `16..=256` bytes.
pub const CHURN_VALUE_MIN: usize = 16;
/// See [`CHURN_VALUE_MIN`].
pub const CHURN_VALUE_MAX: usize = 256;

/// `hashbrown_churn`: a `hashbrown::HashMap<u64, allocator_api2 Vec<u8, A>,
/// FixedState, A>` (the table and every value in the allocator under test)
/// holding [`CHURN_LIVE`] entries under a sliding window of keys: one
/// *operation* inserts the next key, with a fresh value of 16–256 bytes
/// (length from a fixed-seed generator, every byte written), and removes the
/// oldest key, dropping its value. So every operation allocates one block
/// and frees another, and the table itself reallocates or rehashes whenever
/// hashbrown's deleted-slot tombstones fill it. One iteration is
/// [`CHURN_OPS`] operations; one thread.
///
/// The map (capacity hint [`CHURN_LIVE`]) is filled and churned through one
/// full window, so past the table's first growth, before the clock starts.
pub struct HashbrownChurn;

type ChurnMap<A> = hashbrown::HashMap<u64, AVec<u8, A>, FixedState, A>;

#[inline(always)]
fn churn_value<A: AllocSubject>(a: &A, key: u64, rng: &mut Rng) -> AVec<u8, A> {
    let len = CHURN_VALUE_MIN + rng.below(CHURN_VALUE_MAX - CHURN_VALUE_MIN + 1);
    let mut v = AVec::with_capacity_in(len, a.clone());
    v.resize(len, key as u8);
    v
}

/// `ops` churn operations: keys `*next..` go in, `*next - CHURN_LIVE..` out.
#[inline(always)]
fn churn<A: AllocSubject>(map: &mut ChurnMap<A>, a: &A, next: &mut u64, rng: &mut Rng, ops: u64) {
    for _ in 0..ops {
        let k = *next;
        let old = map.insert(k, churn_value(a, k, rng));
        debug_assert!(old.is_none());
        let gone = map.remove(&(k - CHURN_LIVE));
        debug_assert!(gone.is_some());
        *next = k + 1;
    }
}

impl ApiWorkload for HashbrownChurn {
    fn elements(&self) -> u64 {
        CHURN_OPS
    }

    fn run<A: AllocSubject>(&self, a: &A, iters: u64) -> Duration {
        let body = move |g: &Gate| {
            let mut rng = Rng::new(0xc4a2_2b0b);
            let mut map: ChurnMap<A> = hashbrown::HashMap::with_capacity_and_hasher_in(
                CHURN_LIVE as usize,
                FixedState,
                a.clone(),
            );
            for k in 0..CHURN_LIVE {
                map.insert(k, churn_value(a, k, &mut rng));
            }
            let mut next = CHURN_LIVE;
            churn(&mut map, a, &mut next, &mut rng, CHURN_LIVE); // warm-up, untimed
            g.start();
            churn(&mut map, a, &mut next, &mut rng, iters * CHURN_OPS);
            g.stop();
            assert_eq!(map.len() as u64, CHURN_LIVE);
            drop(map);
        };
        run(vec![Box::new(body) as Body<'_>])
    }
}

/// The `vec_push` lengths.
pub const VEC_PUSH_LENS: [usize; 5] = [1, 16, 256, 4096, 65536];

/// `vec_push`: an `allocator_api2` `Vec<u64, A>` grown from empty by `len`
/// pushes (so through every doubling: allocate, then `grow` — `realloc` for
/// the `GlobalAlloc` peers), then dropped. One iteration is one vector;
/// the throughput counts elements pushed. One thread.
#[derive(Clone, Copy, Debug)]
pub struct VecPush {
    /// Elements pushed per vector.
    pub len: usize,
}

#[inline(always)]
fn push_one<A: AllocSubject>(a: &A, len: usize) {
    let mut v: AVec<u64, A> = AVec::new_in(a.clone());
    for i in 0..len {
        v.push(i as u64);
    }
    // Keep the vector (and so its allocation) from being optimised away.
    black_box(&mut v);
}

impl ApiWorkload for VecPush {
    fn elements(&self) -> u64 {
        self.len as u64
    }

    fn run<A: AllocSubject>(&self, a: &A, iters: u64) -> Duration {
        let len = self.len;
        let body = move |g: &Gate| {
            for _ in 0..4 {
                push_one(a, len); // warm-up, untimed
            }
            g.start();
            for _ in 0..iters {
                push_one(a, len);
            }
            g.stop();
        };
        run(vec![Box::new(body) as Body<'_>])
    }
}

/// Live blocks per `larson_mixed` thread.
pub const LARSON_MIXED_LIVE: usize = 1000;
/// Replacements per `larson_mixed` thread per round (iteration).
pub const LARSON_MIXED_REPLACE: usize = 1000;
/// Block sizes of `larson_mixed`: uniform in `16..=1024` bytes.
pub const LARSON_MIXED_MIN: usize = 16;
/// See [`LARSON_MIXED_MIN`].
pub const LARSON_MIXED_MAX: usize = 1024;
/// Alignment of every `larson_mixed` block (that of a struct of words).
pub const LARSON_MIXED_ALIGN: usize = 8;

/// `larson_mixed`: `benches/common/workloads.rs`'s `Larson` with raw
/// `allocate` / `deallocate` of mixed sizes. Each thread keeps
/// [`LARSON_MIXED_LIVE`] live blocks and replaces random ones (free, then
/// allocate a new block of a random size in 16–1024 bytes from a fixed-seed
/// generator, and write its first and last 8 bytes); after each round of
/// [`LARSON_MIXED_REPLACE`] replacements it passes its live set to the next
/// thread in a ring and takes the previous thread's, so most frees are of
/// blocks another thread allocated. Each thread uses its own clone of the
/// allocator. The throughput counts replacements (all threads).
#[derive(Clone, Copy, Debug)]
pub struct LarsonMixed {
    /// Worker threads.
    pub threads: usize,
}

/// One live block: where, and its size (for the layout to free it with).
struct Block {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a `Block` owns its allocation exclusively; the allocators under
// test (`AllocSubject: Send + Sync`) accept frees from any thread.
unsafe impl Send for Block {}

#[inline(always)]
fn mixed_layout(size: usize) -> Layout {
    match Layout::from_size_align(size, LARSON_MIXED_ALIGN) {
        Ok(l) => l,
        Err(_) => unreachable!("larson_mixed sizes are small"),
    }
}

#[inline(always)]
fn mixed_alloc<A: AllocSubject>(a: &A, rng: &mut Rng, seed: u64) -> Block {
    let size = LARSON_MIXED_MIN + rng.below(LARSON_MIXED_MAX - LARSON_MIXED_MIN + 1);
    let layout = mixed_layout(size);
    let ptr = match a.allocate(layout) {
        Ok(p) => p.cast::<u8>(),
        Err(_) => handle_alloc_error(layout),
    };
    // SAFETY: a fresh block of `size >= 16` bytes, aligned to 8: the first
    // and the last 8 bytes are in it.
    unsafe {
        ptr.as_ptr().cast::<u64>().write(seed);
        ptr.as_ptr()
            .add(size - 8)
            .cast::<u64>()
            .write_unaligned(seed);
    }
    Block { ptr, size }
}

#[inline(always)]
fn mixed_free<A: AllocSubject>(a: &A, b: Block) {
    // SAFETY: `b` is a live block of `a` (or of a clone of it: the same
    // allocator) allocated with this layout, freed once (it is moved in).
    unsafe { a.deallocate(b.ptr, mixed_layout(b.size)) }
}

/// One round: [`LARSON_MIXED_REPLACE`] replacements, each a free, then an
/// allocation into the freed slot of the live set.
#[inline]
fn mixed_round<A: AllocSubject>(a: &A, set: &mut [Block], rng: &mut Rng) {
    for r in 0..LARSON_MIXED_REPLACE {
        let i = rng.below(set.len());
        let old = Block {
            ptr: set[i].ptr,
            size: set[i].size,
        };
        mixed_free(a, old);
        // `set[i]` is stale until this store (a `Block` has no `Drop`).
        set[i] = mixed_alloc(a, rng, r as u64);
    }
}

impl ApiWorkload for LarsonMixed {
    fn elements(&self) -> u64 {
        (self.threads * LARSON_MIXED_REPLACE) as u64
    }

    fn run<A: AllocSubject>(&self, a: &A, iters: u64) -> Duration {
        let threads = self.threads;
        let bodies: Vec<Body<'_>> = ring::<Vec<Block>>(threads)
            .into_iter()
            .enumerate()
            .map(|(t, (tx, rx))| {
                let a = a.clone();
                Box::new(move |g: &Gate| {
                    let mut rng = Rng::new(t as u64 + 1);
                    let mut set: Vec<Block> = (0..LARSON_MIXED_LIVE)
                        .map(|i| mixed_alloc(&a, &mut rng, i as u64))
                        .collect();
                    mixed_round(&a, &mut set, &mut rng); // warm-up, untimed
                    g.start();
                    for _ in 0..iters {
                        mixed_round(&a, &mut set, &mut rng);
                        if threads > 1 {
                            tx.send(core::mem::take(&mut set)).expect("ring");
                            set = recv_spin(&rx);
                        }
                    }
                    g.stop();
                    for b in set {
                        mixed_free(&a, b);
                    }
                }) as Body<'_>
            })
            .collect();
        run(bodies)
    }
}
