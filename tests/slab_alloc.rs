//! `SlabAlloc` through allocator-api2: collections that cross threads,
//! mixed sizes and alignments freed remotely, the layout-fit rules of
//! `deallocate`, zeroed allocation on reused memory, in-place and moving
//! `grow` / `shrink`, zero-size layouts, refused frees (double, foreign,
//! interior, large), builder validation, the `max_bytes` budget and
//! injected mapping failures.
//!
//! Every block is stamped with a pattern derived from its id over its whole
//! returned length and checked before it is freed; live blocks are kept in
//! an address-ordered map so that any overlap is caught when it is handed
//! out.

use std::alloc::Layout;
use std::collections::{BTreeMap, HashSet};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::allocator_api2::boxed::Box as ABox;
use homeslab::allocator_api2::vec::Vec as AVec;
use homeslab::{flush_remote_frees, ConfigError, Pool, PoolBox, SlabAlloc};

mod common;
use common::mix;

// ---------------------------------------------------------------- stamping

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// The largest size class (documented: classes go up to 32 KiB).
const MAX_CLASS: usize = 32 * KIB;
/// The strongest alignment a class serves (documented: up to 4096).
const MAX_CLASS_ALIGN: usize = 4096;

/// Word `k` of the pattern of `seed`.
fn word(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64 + 1).wrapping_mul(GOLDEN)
}

/// Fills `buf` with the pattern of `seed` (byte `i` depends on `seed` and
/// `i` only, so a prefix of a stamp is the stamp of the prefix).
fn stamp(buf: &mut [u8], seed: u64) {
    let n = buf.len() / 8;
    let (words, tail) = buf.split_at_mut(n * 8);
    for (k, c) in words.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&word(seed, k).to_le_bytes());
    }
    tail.copy_from_slice(&word(seed, n).to_le_bytes()[..tail.len()]);
}

/// The first byte of `buf` that does not hold the pattern of `seed`.
fn mismatch(buf: &[u8], seed: u64) -> Option<usize> {
    let n = buf.len() / 8;
    let (words, tail) = buf.split_at(n * 8);
    for (k, c) in words.chunks_exact(8).enumerate() {
        let want = word(seed, k).to_le_bytes();
        if c != want {
            return Some(k * 8 + c.iter().zip(want).position(|(a, b)| *a != b).unwrap());
        }
    }
    let want = word(seed, n).to_le_bytes();
    tail.iter()
        .zip(want)
        .position(|(a, b)| *a != b)
        .map(|i| n * 8 + i)
}

#[track_caller]
fn assert_stamped(buf: &[u8], seed: u64, what: &str) {
    if let Some(i) = mismatch(buf, seed) {
        panic!(
            "{what}: byte {i} of {} lost its stamp (seed {seed:#x})",
            buf.len()
        );
    }
}

#[track_caller]
fn assert_zero(buf: &[u8], what: &str) {
    if let Some(i) = buf.iter().position(|&b| b != 0) {
        panic!(
            "{what}: byte {i} of {} reads {:#x}, not 0",
            buf.len(),
            buf[i]
        );
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// True if the documented rule sends `l` to a mapping of its own.
fn is_large(l: Layout) -> bool {
    l.size() > MAX_CLASS || l.align() > MAX_CLASS_ALIGN
}

// ---------------------------------------------------------------- blocks

/// A live block of a `SlabAlloc`, exactly as `allocate` (or a resize)
/// returned it, held by this value alone.
struct Block {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: a block is plain memory reached only through this handle, and a
// `SlabAlloc` block may be freed on any thread.
unsafe impl Send for Block {}

impl Block {
    fn from_slice(p: NonNull<[u8]>, layout: Layout) -> Block {
        let b = Block {
            ptr: p.cast(),
            len: p.len(),
            layout,
        };
        b.check_shape();
        b
    }

    fn try_new(a: &SlabAlloc, layout: Layout) -> Option<Block> {
        a.allocate(layout)
            .ok()
            .map(|p| Block::from_slice(p, layout))
    }

    #[track_caller]
    fn new(a: &SlabAlloc, layout: Layout) -> Block {
        Block::try_new(a, layout).unwrap_or_else(|| panic!("allocate {layout:?} failed"))
    }

    #[track_caller]
    fn zeroed(a: &SlabAlloc, layout: Layout) -> Block {
        let p = a
            .allocate_zeroed(layout)
            .unwrap_or_else(|_| panic!("allocate_zeroed {layout:?} failed"));
        let b = Block::from_slice(p, layout);
        assert_zero(b.bytes(), "allocate_zeroed");
        b
    }

    /// A block with `len` stamped bytes of `seed`.
    #[track_caller]
    fn stamped(a: &SlabAlloc, layout: Layout, seed: u64) -> Block {
        let mut b = Block::new(a, layout);
        stamp(b.bytes_mut(), seed);
        b
    }

    #[track_caller]
    fn check_shape(&self) {
        assert_eq!(
            self.ptr.as_ptr() as usize % self.layout.align(),
            0,
            "{:?} misaligned at {:p}",
            self.layout,
            self.ptr
        );
        assert!(
            self.len >= self.layout.size(),
            "{:?}: only {} bytes",
            self.layout,
            self.len
        );
    }

    fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the block is live, `len` bytes long (what the allocator
        // returned), and reached only through this handle.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Frees the block with the layout it was allocated with.
    fn free(self, a: &SlabAlloc) {
        let l = self.layout;
        self.free_with(a, l.size());
    }

    /// Frees the block with a layout of `size` (between the requested and
    /// the returned length) and the same alignment.
    #[track_caller]
    fn free_with(self, a: &SlabAlloc, size: usize) {
        assert!((self.layout.size()..=self.len).contains(&size));
        // SAFETY: the block is a live block of `a` (or of a clone of it),
        // and `size` lies between the requested and the returned length
        // with the same alignment, so the layout fits it.
        unsafe { a.deallocate(self.ptr, layout(size, self.layout.align())) };
    }

    /// `grow`, `grow_zeroed` or `shrink` to `new`, taking `old_size` (between
    /// the requested and the returned length) as the old layout's size.
    /// `Err` leaves the block as it was.
    fn resize(
        &mut self,
        a: &SlabAlloc,
        old_size: usize,
        new: Layout,
        zero: bool,
    ) -> Result<(), ()> {
        assert!((self.layout.size()..=self.len).contains(&old_size));
        let old = layout(old_size, self.layout.align());
        // SAFETY: the block is live in `a`, `old` fits it (see above), and
        // the direction matches the method.
        let got = unsafe {
            if new.size() >= old.size() {
                if zero {
                    a.grow_zeroed(self.ptr, old, new)
                } else {
                    a.grow(self.ptr, old, new)
                }
            } else {
                a.shrink(self.ptr, old, new)
            }
        };
        let p = got.map_err(|_| ())?;
        *self = Block::from_slice(p, new);
        Ok(())
    }
}

/// The live blocks of a test, by address: every insertion checks that the
/// new block overlaps no live one.
#[derive(Default)]
struct LiveSet {
    blocks: Mutex<BTreeMap<usize, (usize, u64)>>,
}

impl LiveSet {
    #[track_caller]
    fn insert(&self, b: &Block, id: u64) {
        if b.len == 0 {
            return;
        }
        let (start, end) = (b.addr(), b.addr() + b.len);
        // Decide under the lock, assert after it (a failed assertion must
        // not poison the set for the other threads' reports).
        let clash = {
            let mut m = self.blocks.lock().unwrap();
            match m.range(..end).next_back() {
                Some((&s, &(e, other))) if e > start => Some((s, e, other)),
                _ => {
                    m.insert(start, (end, id));
                    None
                }
            }
        };
        if let Some((s, e, other)) = clash {
            panic!(
                "block {id} [{start:#x}, {end:#x}) overlaps live block {other} [{s:#x}, {e:#x})"
            );
        }
    }

    #[track_caller]
    fn remove(&self, b: &Block, id: u64) {
        if b.len == 0 {
            return;
        }
        let got = self.blocks.lock().unwrap().remove(&b.addr());
        assert_eq!(got, Some((b.addr() + b.len, id)), "block {id} not live");
    }

    fn len(&self) -> usize {
        self.blocks.lock().unwrap().len()
    }
}

/// The allocator has nothing live and refused nothing.
#[track_caller]
fn assert_quiet(a: &SlabAlloc) {
    let s = a.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    assert_eq!(s.large_blocks, 0, "{s:?}");
    assert_eq!(s.large_bytes, 0, "{s:?}");
    assert_eq!(s.allocs, s.frees, "{s:?}");
    assert_eq!(s.double_frees, 0, "{s:?}");
    assert_eq!(s.foreign_frees, 0, "{s:?}");
    assert_eq!(s.corruption_events, 0, "{s:?}");
}

/// Allocates `n` stamped blocks of mixed sizes (class and large), checks
/// they are distinct and none is `avoid`, verifies and frees them all: the
/// allocator still works after whatever the caller did.
#[track_caller]
fn still_works(a: &SlabAlloc, n: u64, avoid: &[usize]) {
    let live = LiveSet::default();
    let blocks: Vec<(u64, Block)> = (0..n)
        .map(|id| {
            let r = mix(id ^ 0x5eed);
            let size = match r % 10 {
                0 => 32 * KIB + 1 + (r >> 8) as usize % (200 * KIB),
                1..=3 => 1 + (r >> 8) as usize % MAX_CLASS,
                _ => 1 + (r >> 8) as usize % 512,
            };
            let b = Block::stamped(a, layout(size, 1 << ((r >> 40) % 8)), mix(id));
            live.insert(&b, id);
            (id, b)
        })
        .collect();
    for (_, b) in &blocks {
        assert!(
            !avoid.contains(&b.addr()),
            "a refused pointer was handed out while live"
        );
    }
    for (id, b) in blocks {
        assert_stamped(b.bytes(), mix(id), "block after refusals");
        live.remove(&b, id);
        b.free(a);
    }
}

// ---------------------------------------------------------------- classes

#[test]
fn class_table_and_returned_lengths() {
    let sizes = SlabAlloc::class_sizes();
    assert_eq!(sizes.len(), 40);
    assert_eq!(&sizes[..8], &[16, 32, 48, 64, 80, 96, 112, 128]);
    // Four per doubling from 128 to 32 KiB.
    let mut base = 128;
    for quad in sizes[8..].chunks(4) {
        let step = base / 4;
        assert_eq!(
            quad,
            &[base + step, base + 2 * step, base + 3 * step, 2 * base]
        );
        base *= 2;
    }
    assert_eq!(*sizes.last().unwrap(), MAX_CLASS);

    let a = SlabAlloc::new();
    let mut prev = 0;
    for &cs in sizes {
        // The smallest and largest request of each class get the class size.
        for size in [prev + 1, (prev + cs) / 2 + 1, cs] {
            let b = Block::new(&a, layout(size, 1));
            assert_eq!(b.len, cs, "size {size}");
            b.free(&a);
        }
        // A class's blocks are aligned to the largest power of two that
        // divides its size (up to 4096): that alignment costs nothing more.
        let natural = (1usize << cs.trailing_zeros()).min(MAX_CLASS_ALIGN);
        let b = Block::new(&a, layout(prev + 1, natural));
        assert_eq!(b.len, cs, "size {} align {natural}", prev + 1);
        b.free(&a);
        prev = cs;
    }
    // A stronger alignment takes the first class that has it.
    for (size, align, want) in [
        (100, 64, 128),
        (130, 128, 256),
        (200, 64, 256),
        (5000, 4096, 8192),
        (20_000, 4096, 20_480),
        (1, 4096, 4096),
        (4097, 2048, 6144),
    ] {
        let b = Block::new(&a, layout(size, align));
        assert_eq!(b.len, want, "size {size} align {align}");
        b.free(&a);
    }
    // Past 32 KiB or 4096-byte alignment: whole pages of a mapping.
    for (size, align) in [
        (MAX_CLASS + 1, 1),
        (100 * KIB + 3, 8),
        (16, 8192),
        (3 * MIB, 4096),
        (MIB + 1, 65536),
    ] {
        let b = Block::new(&a, layout(size, align));
        assert_eq!(b.len % 4096, 0, "size {size} align {align}: {}", b.len);
        assert!(b.len < size + 4096, "size {size} align {align}: {}", b.len);
        assert_eq!(a.stats().large_blocks, 1);
        b.free(&a);
    }
    assert_quiet(&a);
}

// ---------------------------------------------------------------- collections

type Map = hashbrown::HashMap<u64, u64, hashbrown::DefaultHashBuilder, SlabAlloc>;

fn val(seed: u64, k: u64) -> u64 {
    mix(seed ^ k.wrapping_mul(GOLDEN))
}

/// Collections of one allocator, with what they must hold.
struct Bundle {
    seed: u64,
    /// The map holds exactly these keys, `k → val(seed, k)`.
    keys: std::ops::Range<u64>,
    map: Map,
    /// `vec[i] == val(seed + 1, i)`.
    vec: AVec<u64, SlabAlloc>,
    /// Stamped with `seed`.
    bytes: ABox<[u8; 3000], SlabAlloc>,
    /// `slice[i] == val(seed + 2, i)`; large (a mapping of its own).
    slice: ABox<[u64], SlabAlloc>,
    /// `strings[i]` is the decimal of `val(seed + 3, i)`.
    strings: AVec<AVec<u8, SlabAlloc>, SlabAlloc>,
}

impl Bundle {
    fn new(a: &SlabAlloc, seed: u64) -> Bundle {
        let mut map = Map::new_in(a.clone());
        for k in 0..500 {
            map.insert(k, val(seed, k));
        }
        // Grows through the classes into a large block.
        let mut vec = AVec::new_in(a.clone());
        for i in 0..10_000 {
            vec.push(val(seed + 1, i));
        }
        let mut bytes = ABox::new_in([0u8; 3000], a.clone());
        stamp(&mut bytes[..], seed);
        // 320 000 bytes shrunk to 240 000 by `into_boxed_slice` (mremap).
        let mut sv = AVec::with_capacity_in(40_000, a.clone());
        sv.extend((0..30_000).map(|i| val(seed + 2, i)));
        let slice = sv.into_boxed_slice();
        let mut strings = AVec::new_in(a.clone());
        for i in 0..200 {
            let mut s = AVec::new_in(a.clone());
            s.extend_from_slice(val(seed + 3, i).to_string().as_bytes());
            strings.push(s);
        }
        Bundle {
            seed,
            keys: 0..500,
            map,
            vec,
            bytes,
            slice,
            strings,
        }
    }

    #[track_caller]
    fn verify(&self, stage: &str) {
        let s = self.seed;
        assert_eq!(
            self.map.len() as u64,
            self.keys.end - self.keys.start,
            "{stage}"
        );
        for k in self.keys.clone() {
            assert_eq!(self.map.get(&k), Some(&val(s, k)), "{stage}: key {k}");
        }
        for (i, v) in self.vec.iter().enumerate() {
            assert_eq!(*v, val(s + 1, i as u64), "{stage}: vec[{i}]");
        }
        assert_stamped(&self.bytes[..], s, stage);
        assert_eq!(self.slice.len(), 30_000, "{stage}");
        for (i, v) in self.slice.iter().enumerate() {
            assert_eq!(*v, val(s + 2, i as u64), "{stage}: slice[{i}]");
        }
        for (i, st) in self.strings.iter().enumerate() {
            assert_eq!(
                &st[..],
                val(s + 3, i as u64).to_string().as_bytes(),
                "{stage}: string {i}"
            );
        }
    }

    /// Stage 1: everything grows.
    fn grow(&mut self) {
        for k in self.keys.end..self.keys.end + 4000 {
            assert!(self.map.insert(k, val(self.seed, k)).is_none());
        }
        self.keys.end += 4000;
        let n = self.vec.len() as u64;
        for i in n..4 * n {
            self.vec.push(val(self.seed + 1, i));
        }
        for (i, st) in self.strings.iter_mut().enumerate() {
            // Grow each string and cut it back: contents kept across both.
            let len = st.len();
            st.resize(len + 1000 + i, b'x');
            st.truncate(len);
        }
        for i in self.strings.len() as u64..2000 {
            let mut s = AVec::new_in(self.map.allocator().clone());
            s.extend_from_slice(val(self.seed + 3, i).to_string().as_bytes());
            self.strings.push(s);
        }
    }

    /// Stage 2: everything shrinks to fit.
    fn shrink(&mut self) {
        let keep = self.keys.end - 100;
        for k in self.keys.start..keep {
            assert_eq!(self.map.remove(&k), Some(val(self.seed, k)));
        }
        self.keys.start = keep;
        self.map.shrink_to_fit();
        self.vec.truncate(777);
        self.vec.shrink_to_fit();
        assert_eq!(self.vec.capacity(), 777);
        self.strings.truncate(50);
        self.strings.shrink_to_fit();
        for st in self.strings.iter_mut() {
            st.shrink_to_fit();
            assert_eq!(st.capacity(), st.len());
        }
    }
}

/// hashbrown maps, `Vec`s and `Box`es built on one thread, grown on a
/// second, shrunk (shrink_to_fit) on a third and dropped on a fourth, all
/// at once and in a ring; contents checked at every step. Then nothing is
/// live and `trim` gives the memory back.
#[test]
#[cfg_attr(miri, ignore)]
fn collections_cross_threads_then_trim() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 3;
    let a = SlabAlloc::builder().release_after(None).build().unwrap();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<(u32, Bundle)>())
        .unzip();
    let dropped = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % THREADS].clone();
            let a = a.clone();
            let dropped = dropped.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let b = Bundle::new(&a, mix((t as u64) << 32 | i));
                    b.verify("built");
                    next.send((1, b)).unwrap();
                }
                // Each thread grows, shrinks and drops PER_THREAD bundles
                // of its three predecessors.
                for _ in 0..3 * PER_THREAD {
                    let (stage, mut b) = rx.recv().unwrap();
                    b.verify("received");
                    match stage {
                        1 => {
                            b.grow();
                            b.verify("grown");
                        }
                        2 => {
                            b.shrink();
                            b.verify("shrunk");
                        }
                        _ => {
                            drop(b);
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    next.send((stage + 1, b)).unwrap();
                }
            })
        })
        .collect();
    drop(txs);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        THREADS * PER_THREAD as usize
    );
    let s = a.stats();
    assert_quiet(&a);
    assert!(s.remote_frees > 0, "{s:?}");
    assert!(s.allocs > 10_000, "{s:?}");
    assert!(s.peak_mapped_bytes >= s.mapped_bytes, "{s:?}");
    let before = s.mapped_bytes;
    assert!(before > 0, "empty slabs stay mapped until trimmed: {s:?}");
    let released = a.trim();
    let after = a.stats();
    assert!(released > 0, "trim released nothing: {after:?}");
    assert!(
        after.mapped_bytes < before,
        "mapped {before} -> {}",
        after.mapped_bytes
    );
    // Every thread that held slabs has exited and every block is free.
    assert_eq!(after.mapped_bytes, 0, "{after:?}");
    // The allocator is still usable after trim.
    still_works(&a, 300, &[]);
}

// ---------------------------------------------------------------- mixed traffic

/// A layout from `r`: sizes 1 B – 3 MiB weighted toward small, alignments
/// 1 – 4096, and now and then 8192 or 65536.
fn mixed_layout(r: u64) -> Layout {
    let r2 = mix(r);
    let size = match r % 100 {
        0..=54 => 1 + r2 as usize % 256,
        55..=79 => 257 + r2 as usize % (4096 - 256),
        80..=92 => 4097 + r2 as usize % (MAX_CLASS - 4096),
        93..=97 => MAX_CLASS + 1 + r2 as usize % (256 * KIB),
        _ => 256 * KIB + 1 + r2 as usize % (3 * MIB - 256 * KIB),
    };
    let align = match (r2 >> 32) % 100 {
        0 => 8192,
        1 => 65536,
        x => 1 << (x % 13),
    };
    layout(size, align)
}

/// Four threads allocate mixed layouts, stamp each block over its whole
/// length, keep a window of them live, and send each to the next thread,
/// which checks the stamp and frees it (a remote free). No two live blocks
/// of any thread ever overlap.
#[test]
#[cfg_attr(miri, ignore)]
fn mixed_sizes_freed_remotely_never_overlap() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 700;
    const WINDOW: usize = 48;
    let a = SlabAlloc::new();
    let live = Arc::new(LiveSet::default());
    let large = Arc::new(AtomicUsize::new(0));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<(u64, Block)>())
        .unzip();
    let workers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % THREADS].clone();
            let (a, live, large) = (a.clone(), live.clone(), large.clone());
            thread::spawn(move || {
                let retire = |id: u64, b: Block| {
                    b.check_shape();
                    assert_eq!(b.layout, mixed_layout(mix(id)), "block {id}");
                    assert_stamped(b.bytes(), mix(id), "received block");
                    live.remove(&b, id);
                    // Every other block is freed with its returned length.
                    let size = if id % 2 == 0 { b.layout.size() } else { b.len };
                    b.free_with(&a, size);
                };
                let mut mine = std::collections::VecDeque::new();
                let mut inbox = Vec::new();
                for i in 0..PER_THREAD {
                    let id = (t as u64) << 32 | i;
                    let l = mixed_layout(mix(id));
                    if is_large(l) {
                        large.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut b = Block::new(&a, l);
                    live.insert(&b, id);
                    stamp(b.bytes_mut(), mix(id));
                    mine.push_back((id, b));
                    if mine.len() > WINDOW {
                        next.send(mine.pop_front().unwrap()).unwrap();
                    }
                    inbox.extend(rx.try_iter());
                    while inbox.len() > WINDOW {
                        let k = mix(id) as usize % inbox.len();
                        let (id, b) = inbox.swap_remove(k);
                        retire(id, b);
                    }
                }
                for m in mine {
                    next.send(m).unwrap();
                }
                drop(next);
                for (id, b) in inbox.into_iter().chain(rx) {
                    retire(id, b);
                }
            })
        })
        .collect();
    drop(txs);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(live.len(), 0);
    let total = THREADS as u64 * PER_THREAD;
    let large = large.load(Ordering::Relaxed) as u64;
    let s = a.stats();
    assert_quiet(&a);
    assert_eq!(s.allocs, total, "{s:?}");
    assert!(large > 0 && large < total);
    assert_eq!(s.frees, total, "{s:?}");
    // Most class blocks were freed by a thread that does not own their
    // slab (a magazine lets a block be reused on the thread that freed it,
    // so some trips end at home).
    assert!(s.remote_frees > (total - large) / 2, "{s:?}");
    assert!(s.remote_frees <= total - large, "{s:?}");
}

// ---------------------------------------------------------------- layout fit

/// `deallocate` accepts every size between the requested and the returned
/// length (the allocator-api2 "fit" rule): each such free is a real free
/// of the right class, never a refusal.
#[test]
#[cfg_attr(miri, ignore)]
fn deallocate_accepts_every_size_up_to_the_returned_length() {
    let a = SlabAlloc::new();
    let mut frees = 0u64;
    let mut check = |l: Layout, step: usize| {
        let probe = Block::new(&a, l);
        let len = probe.len;
        probe.free(&a);
        frees += 1;
        let mut sizes: Vec<usize> = (l.size()..=len).step_by(step).collect();
        sizes.push(len);
        for size in sizes {
            let mut b = Block::new(&a, l);
            assert_eq!(b.len, len, "{l:?}");
            stamp(&mut b.bytes_mut()[..len.min(256)], size as u64);
            b.free_with(&a, size);
            frees += 1;
        }
        let s = a.stats();
        assert_eq!(s.live_blocks, 0, "{l:?}: {s:?}");
        assert_eq!(s.frees, frees, "{l:?}: {s:?}");
        assert_eq!(s.foreign_frees + s.double_frees, 0, "{l:?}: {s:?}");
    };
    // Every class, from its smallest request, every size.
    let mut prev = 0;
    for &cs in SlabAlloc::class_sizes() {
        check(layout(prev + 1, 1), 1);
        prev = cs;
    }
    // Aligned requests that take a larger class than their size needs.
    for align in [32, 64, 128, 256, 512, 1024, 2048, 4096] {
        for size in [1, align / 2 + 1, align + 1, 3 * align / 2, 5000, 20_000] {
            check(layout(size, align), 1);
        }
    }
    // Large blocks: the page-rounded tail, and over-aligned small ones.
    check(layout(MAX_CLASS + 1, 1), 3);
    check(layout(100, 8192), 7);
    check(layout(MIB + 5, 65536), 11);
    assert_quiet(&a);
}

// ---------------------------------------------------------------- zeroed

/// `allocate_zeroed` reads zero on blocks that were used and dirtied
/// before: reused from the local freelist, from remote frees, from a reused
/// empty slab, from the overflow tier, and after a trim.
#[test]
#[cfg_attr(miri, ignore)]
fn allocate_zeroed_reads_zero_on_reused_blocks() {
    for (a, owned) in [
        (SlabAlloc::new(), true),
        (SlabAlloc::builder().hardened(true).build().unwrap(), true),
        // Every thread allocates from the shared tier, whose frees are all
        // remote (batched) and whose slabs hand out their frontier first.
        (
            SlabAlloc::builder().max_thread_heaps(0).build().unwrap(),
            false,
        ),
        // Empty slabs go back to the page source warm: a new slab on a
        // dirty region.
        (
            SlabAlloc::builder()
                .retained_empty_slabs(0)
                .release_after(None)
                .build()
                .unwrap(),
            true,
        ),
    ] {
        // Every class, freed and reallocated zeroed in place many times.
        for &cs in SlabAlloc::class_sizes() {
            let l = layout(cs, 1);
            let mut dirtied = HashSet::new();
            let mut reused = 0;
            for round in 0..12u8 {
                let blocks: Vec<Block> = (0..3)
                    .map(|_| {
                        let mut b = Block::new(&a, l);
                        b.bytes_mut().fill(0xa5 ^ round);
                        dirtied.insert(b.addr());
                        b
                    })
                    .collect();
                for b in blocks {
                    b.free(&a);
                }
                let blocks: Vec<Block> = (0..3).map(|_| Block::zeroed(&a, l)).collect();
                for mut b in blocks {
                    reused += usize::from(dirtied.contains(&b.addr()));
                    b.bytes_mut().fill(0x5a);
                    b.free(&a);
                }
            }
            assert!(!owned || reused > 0, "class {cs}: no block was reused");
        }

        // Remote frees of dirtied blocks, drained by the owner.
        let l = layout(64, 8);
        let blocks: Vec<Block> = (0..3000).map(|_| Block::new(&a, l)).collect();
        let dirtied: HashSet<usize> = blocks.iter().map(Block::addr).collect();
        let freer = a.clone();
        thread::spawn(move || {
            for mut b in blocks {
                b.bytes_mut().fill(0xee);
                b.free(&freer);
            }
        })
        .join()
        .unwrap();
        let blocks: Vec<Block> = (0..3000).map(|_| Block::zeroed(&a, l)).collect();
        let reused = blocks
            .iter()
            .filter(|b| dirtied.contains(&b.addr()))
            .count();
        assert!(reused > 0, "no remotely freed block was reused");
        for mut b in blocks {
            b.bytes_mut().fill(0x77);
            b.free(&a);
        }

        // After a trim (cold regions) and again after reuse.
        a.trim();
        for round in 0..3 {
            let blocks: Vec<Block> = (0..500)
                .map(|i| Block::zeroed(&a, layout(1 + (i * 37) % 2000, 8)))
                .collect();
            for mut b in blocks {
                b.bytes_mut().fill(0x11 + round);
                b.free(&a);
            }
        }

        // Large blocks.
        for size in [MAX_CLASS + 1, 300 * KIB] {
            for _ in 0..4 {
                let mut b = Block::zeroed(&a, layout(size, 16));
                b.bytes_mut().fill(0xcc);
                b.free(&a);
            }
        }
        assert_quiet(&a);
    }
}

// ---------------------------------------------------------------- resize

/// Within a class, `grow` and `shrink` return the same pointer and keep
/// the contents; `grow_zeroed` zeroes everything past the old size.
#[test]
fn resize_within_a_class_stays_in_place() {
    let a = SlabAlloc::new();
    let mut prev = 0;
    for (c, &cs) in SlabAlloc::class_sizes().iter().enumerate() {
        let lo = prev + 1;
        prev = cs;
        let seed = mix(c as u64);
        let mut b = Block::stamped(&a, layout(lo, 1), seed);
        let at = b.addr();
        b.resize(&a, lo, layout(cs, 1), false).unwrap();
        assert_eq!((b.addr(), b.len), (at, cs), "grow {lo} -> {cs}");
        assert_stamped(&b.bytes()[..lo], seed, "grown in place");
        stamp(b.bytes_mut(), seed);
        b.resize(&a, cs, layout(lo, 1), false).unwrap();
        assert_eq!((b.addr(), b.len), (at, cs), "shrink {cs} -> {lo}");
        assert_stamped(&b.bytes()[..lo], seed, "shrunk in place");
        // grow_zeroed: the whole block was stamped, so its tail is dirty.
        stamp(b.bytes_mut(), !seed);
        let mid = (lo + cs) / 2;
        b.resize(&a, lo, layout(mid.max(lo), 1), true).unwrap();
        assert_eq!(b.addr(), at, "grow_zeroed {lo} -> {mid}");
        assert_stamped(&b.bytes()[..lo], !seed, "grow_zeroed kept");
        assert_zero(&b.bytes()[lo..], "grow_zeroed tail within the class");
        // A stronger alignment the class already has: still in place.
        let natural = (1usize << cs.trailing_zeros()).min(MAX_CLASS_ALIGN);
        b.resize(&a, b.layout.size(), layout(cs, natural), false)
            .unwrap();
        assert_eq!(b.addr(), at, "realign to {natural} within class {cs}");
        b.free(&a);
    }
    // Large blocks shrink in place (mremap never moves a shrinking mapping).
    let mut b = Block::stamped(&a, layout(2 * MIB, 8), 7);
    let at = b.addr();
    b.resize(&a, 2 * MIB, layout(MIB + 100, 8), false).unwrap();
    assert_eq!(b.addr(), at, "large shrink moved");
    assert_eq!(b.len, MIB + 4096);
    assert_stamped(&b.bytes()[..MIB + 100], 7, "large shrink");
    assert_eq!(a.stats().large_bytes, (MIB + 4096) as u64);
    b.free(&a);
    assert_quiet(&a);
}

/// Across classes and between classes and large blocks, `grow` and
/// `shrink` move (the new class's length, a new address) and keep
/// min(old, new) bytes; large blocks grow with mremap and keep theirs.
#[test]
#[cfg_attr(miri, ignore)]
fn resize_across_classes_and_large_moves_and_keeps_contents() {
    let a = SlabAlloc::new();
    let sizes = SlabAlloc::class_sizes();
    // Class to class, every pair of neighbours and some long jumps.
    let mut pairs: Vec<(usize, usize)> = sizes.windows(2).map(|w| (w[0], w[1])).collect();
    pairs.extend([(16, MAX_CLASS), (112, 5120), (1024, 24_576)]);
    for (i, &(small, big)) in pairs.iter().enumerate() {
        let seed = mix(i as u64);
        let mut b = Block::stamped(&a, layout(small, 8), seed);
        let at = b.addr();
        b.resize(&a, small, layout(big, 8), false).unwrap();
        assert_ne!(b.addr(), at, "grow {small} -> {big} stayed in place");
        assert_eq!(b.len, big);
        assert_stamped(&b.bytes()[..small], seed, "grown across classes");
        stamp(b.bytes_mut(), seed);
        let at = b.addr();
        b.resize(&a, big, layout(small, 8), false).unwrap();
        assert_ne!(b.addr(), at, "shrink {big} -> {small} stayed in place");
        assert_eq!(b.len, small);
        assert_stamped(b.bytes(), seed, "shrunk across classes");
        b.free(&a);
        assert_eq!(a.stats().live_blocks, 0);
    }
    // Class <-> large, large <-> large (mremap, and the copy path for
    // over-aligned mappings), with both alignments kept.
    let chain: &[(usize, usize)] = &[
        (1000, 8),
        (100 * KIB, 8),
        (3 * MIB, 8),
        (40 * KIB, 8),
        (20, 8),
        (60 * KIB, 8192),
        (700 * KIB, 8192),
        (70 * KIB, 8192),
        (100, 8192),
        (5000, 65536),
        (MIB, 65536),
        (30, 16),
    ];
    let mut b = Block::stamped(&a, layout(chain[0].0, chain[0].1), 1);
    for (i, w) in chain.windows(2).enumerate() {
        let ((from, _), (to, align)) = (w[0], w[1]);
        let seed = 1 + i as u64;
        b.resize(&a, from, layout(to, align), false).unwrap();
        assert_stamped(&b.bytes()[..from.min(to)], seed, "resized");
        let s = a.stats();
        assert_eq!(s.live_blocks, 1, "{from} -> {to}: {s:?}");
        assert_eq!(s.large_blocks, u64::from(is_large(b.layout)), "{s:?}");
        stamp(b.bytes_mut(), seed + 1);
    }
    b.free(&a);
    assert_quiet(&a);
}

/// `grow_zeroed` zeroes every byte past the old size: across classes (into
/// a dirtied, reused block), for large blocks grown with mremap (the
/// page-rounded tail of the old mapping is dirty), after a large shrink, and
/// on the copy path of an over-aligned mapping.
#[test]
#[cfg_attr(miri, ignore)]
fn grow_zeroed_zeroes_the_new_tail() {
    let a = SlabAlloc::new();
    // Across classes, into a block that was just dirtied and freed.
    for (from, to) in [(16, 48), (100, 1000), (3000, 20_000), (8000, MAX_CLASS)] {
        let mut dirty = Block::new(&a, layout(to, 8));
        dirty.bytes_mut().fill(0xee);
        dirty.free(&a);
        let mut b = Block::new(&a, layout(from, 8));
        b.bytes_mut().fill(0xdd);
        stamp(&mut b.bytes_mut()[..from], 3);
        b.resize(&a, from, layout(to, 8), true).unwrap();
        assert_stamped(&b.bytes()[..from], 3, "grow_zeroed kept");
        assert_zero(&b.bytes()[from..], "grow_zeroed tail across classes");
        b.free(&a);
    }
    // Class to large and large to large.
    for (from, to, align) in [
        (1000, 100 * KIB, 8),
        (40_000, 100_000, 8),
        (100_000, 2 * MIB + 3, 16),
        (40_000, 300_000, 8192),
        (5000, 200_000, 65536),
    ] {
        let mut b = Block::new(&a, layout(from, align));
        b.bytes_mut().fill(0xdd);
        stamp(&mut b.bytes_mut()[..from], 4);
        b.resize(&a, from, layout(to, align), true).unwrap();
        assert_stamped(&b.bytes()[..from], 4, "grow_zeroed kept");
        assert_zero(&b.bytes()[from..], "grow_zeroed large tail");
        b.free(&a);
    }
    // A large block shrunk (its page-rounded tail keeps old bytes), then
    // grown zeroed from its new size.
    let mut b = Block::new(&a, layout(200_000, 8));
    b.bytes_mut().fill(0xdd);
    b.resize(&a, 200_000, layout(50_000, 8), false).unwrap();
    stamp(&mut b.bytes_mut()[..50_000], 5);
    b.resize(&a, 50_000, layout(150_000, 8), true).unwrap();
    assert_stamped(&b.bytes()[..50_000], 5, "kept after shrink + grow_zeroed");
    assert_zero(&b.bytes()[50_000..], "grow_zeroed after a large shrink");
    // The fit rule: the old layout may name the returned length.
    let len = b.len;
    b.bytes_mut().fill(0xdd);
    b.resize(&a, len, layout(len + 5000, 8), true).unwrap();
    assert!(b.bytes()[..len].iter().all(|&x| x == 0xdd));
    assert_zero(&b.bytes()[len..], "grow_zeroed from the returned length");
    b.free(&a);
    assert_quiet(&a);
}

/// Zero-size layouts never touch memory: dangling aligned pointers, no
/// counts, nothing mapped; growing from zero allocates, shrinking to zero
/// frees.
#[test]
fn zero_size_layouts_touch_nothing() {
    let a = SlabAlloc::new();
    for shift in 0..=16 {
        let l = layout(0, 1 << shift);
        for p in [a.allocate(l).unwrap(), a.allocate_zeroed(l).unwrap()] {
            assert_eq!(p.len(), 0);
            assert_eq!(p.cast::<u8>().as_ptr() as usize % l.align(), 0, "{l:?}");
            // SAFETY: a zero-size block of `a` with layout `l`.
            unsafe { a.deallocate(p.cast(), l) };
        }
        // SAFETY: zero-size to zero-size, the block is the dangling one.
        let p = unsafe { a.grow(NonNull::dangling(), layout(0, 1), l) }.unwrap();
        assert_eq!(p.len(), 0);
        // SAFETY: as above.
        let p = unsafe { a.shrink(p.cast(), l, layout(0, 1)) }.unwrap();
        assert_eq!(p.len(), 0);
    }
    let s = a.stats();
    assert_eq!((s.allocs, s.frees, s.live_blocks), (0, 0, 0), "{s:?}");
    assert_eq!(s.mapped_bytes, 0, "zero-size blocks mapped memory: {s:?}");

    for (size, align, zero) in [
        (100, 8, false),
        (5000, 8, true),
        (100 * KIB, 8, true),
        (64, 8192, false),
    ] {
        let l = layout(size, align);
        let z = a.allocate(layout(0, align)).unwrap();
        let mut b = Block {
            ptr: z.cast(),
            len: 0,
            layout: layout(0, align),
        };
        b.resize(&a, 0, l, zero).unwrap();
        if zero {
            assert_zero(b.bytes(), "grow_zeroed from zero");
        }
        stamp(b.bytes_mut(), 9);
        assert_eq!(a.stats().live_blocks, 1);
        b.resize(&a, size, layout(0, align), false).unwrap();
        assert_eq!(b.len, 0);
        let s = a.stats();
        assert_eq!((s.live_blocks, s.large_blocks), (0, 0), "{size}: {s:?}");
        b.free(&a);
    }
    assert_quiet(&a);
    assert_eq!(a.stats().allocs, 4);
}

// ---------------------------------------------------------------- refusals

/// A double free of a class block is refused and counted, and the block is
/// never handed out twice: while its slab has other live blocks, when it
/// was the slab's last block (the slab cached empty), and when the empty
/// slab went back to the page source.
#[test]
fn double_free_of_a_class_block_is_refused() {
    for hardened in [false, true] {
        for retained in [4, 0] {
            let a = SlabAlloc::builder()
                .hardened(hardened)
                .retained_empty_slabs(retained)
                .release_after(None)
                .build()
                .unwrap();
            let what = format!("hardened {hardened} retained {retained}");
            // The slab keeps another live block.
            let l = layout(48, 8);
            let keep = Block::stamped(&a, l, 1);
            let b = Block::stamped(&a, l, 2);
            let (p, bl) = (b.ptr, b.layout);
            b.free(&a);
            // SAFETY: `p` is a freed block of `a` whose slab is still in use
            // (`keep` lives): a double free, refused without acting on it.
            unsafe { a.deallocate(p, bl) };
            assert_eq!(a.stats().double_frees, 1, "{what}");
            assert_eq!(a.stats().live_blocks, 1, "{what}");
            // The only block of its slab (a class used by nothing else).
            let l2 = layout(20_000, 8);
            let c = Block::stamped(&a, l2, 3);
            let q = c.ptr;
            c.free(&a);
            // SAFETY: `q`'s slab is empty, cached or back in the page
            // source, but its region stays mapped (nothing was trimmed): the
            // header check reads it and refuses the double free.
            unsafe { a.deallocate(q, l2) };
            let s = a.stats();
            assert_eq!(s.double_frees + s.foreign_frees, 2, "{what}: {s:?}");
            assert_eq!(s.live_blocks, 1, "{what}: {s:?}");
            // Neither block comes out twice.
            for (l, p) in [(l, p.as_ptr() as usize), (l2, q.as_ptr() as usize)] {
                let blocks: Vec<Block> = (0..600).map(|i| Block::stamped(&a, l, i)).collect();
                let addrs: HashSet<usize> = blocks.iter().map(Block::addr).collect();
                assert_eq!(
                    addrs.len(),
                    blocks.len(),
                    "{what}: a block was handed out twice"
                );
                assert!(
                    !addrs.contains(&keep.addr()),
                    "{what}: a live block was handed out"
                );
                assert!(
                    addrs.contains(&p),
                    "{what}: the freed block was never reused"
                );
                for (i, b) in blocks.into_iter().enumerate() {
                    assert_stamped(b.bytes(), i as u64, &what);
                    b.free(&a);
                }
            }
            assert_stamped(keep.bytes(), 1, &what);
            keep.free(&a);
            let s = a.stats();
            assert_eq!(
                (s.live_blocks, s.double_frees + s.foreign_frees),
                (0, 2),
                "{what}: {s:?}"
            );
            still_works(&a, 400, &[]);
        }
    }
}

/// Double frees on another thread: the second free of a block still held
/// in that thread's batch, again after the batch is published, and again
/// from a third thread. All refused; the block comes back once.
#[test]
fn remote_double_free_is_refused() {
    for hardened in [false, true] {
        let a = SlabAlloc::builder().hardened(hardened).build().unwrap();
        let l = layout(64, 8);
        let keep = Block::stamped(&a, l, 1);
        let b = Block::stamped(&a, l, 2);
        let (p, bl) = (b.addr(), b.layout);
        let freer = a.clone();
        thread::spawn(move || {
            b.free(&freer);
            let p = NonNull::new(p as *mut u8).unwrap();
            // SAFETY: `p` was just freed on this thread and is held in its
            // batch (its slab lives: `keep`): a double free, refused.
            unsafe { freer.deallocate(p, bl) };
            flush_remote_frees();
            // SAFETY: as above, after the batch went home.
            unsafe { freer.deallocate(p, bl) };
        })
        .join()
        .unwrap();
        let s = a.stats();
        assert_eq!(s.double_frees, 2, "hardened {hardened}: {s:?}");
        assert_eq!((s.live_blocks, s.remote_frees), (1, 1), "{s:?}");
        let other = a.clone();
        thread::spawn(move || {
            let p = NonNull::new(p as *mut u8).unwrap();
            // SAFETY: as above; the slab's region is mapped and in use.
            unsafe { other.deallocate(p, bl) };
        })
        .join()
        .unwrap();
        let s = a.stats();
        assert_eq!(s.double_frees, 3, "{s:?}");
        assert_eq!(s.live_blocks, 1, "{s:?}");
        let blocks: Vec<Block> = (0..2000).map(|i| Block::stamped(&a, l, i)).collect();
        let addrs: HashSet<usize> = blocks.iter().map(Block::addr).collect();
        assert_eq!(addrs.len(), blocks.len(), "a block was handed out twice");
        assert!(!addrs.contains(&keep.addr()));
        assert!(addrs.contains(&p), "the freed block never came back");
        for (i, b) in blocks.into_iter().enumerate() {
            assert_stamped(b.bytes(), i as u64, "after remote double frees");
            b.free(&a);
        }
        assert_stamped(keep.bytes(), 1, "kept block");
        keep.free(&a);
        assert_eq!(a.stats().live_blocks, 0);
        still_works(&a, 300, &[]);
    }
}

/// A block of another `SlabAlloc` (same class), of a `Pool`, or of another
/// class of the same allocator, freed here: refused and counted in
/// `foreign_frees`; the block stays intact and usable by its owner.
#[test]
fn pointers_of_another_allocator_or_class_are_refused() {
    let a = SlabAlloc::new();
    let b = SlabAlloc::new();
    let l = layout(256, 16);
    let mine = Block::stamped(&a, l, 1);
    let theirs = Block::stamped(&b, l, 2);
    // SAFETY: `theirs` is a live block of `b`, not `a`; its slab region is
    // mapped, so `a` reads the header, sees another allocator's slab, and
    // refuses.
    unsafe { a.deallocate(theirs.ptr, l) };
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.foreign_frees, 1, "{sa:?}");
    assert_eq!((sa.live_blocks, sa.frees), (1, 0), "{sa:?}");
    assert_eq!(
        (sb.foreign_frees, sb.live_blocks, sb.frees),
        (0, 1, 0),
        "{sb:?}"
    );
    // `theirs` is still `b`'s: never handed out again while live.
    let more: Vec<Block> = (0..500).map(|i| Block::stamped(&b, l, 100 + i)).collect();
    assert!(more.iter().all(|m| m.addr() != theirs.addr()));
    assert_stamped(theirs.bytes(), 2, "the other allocator's block");
    for (i, m) in more.into_iter().enumerate() {
        assert_stamped(m.bytes(), 100 + i as u64, "other allocator");
        m.free(&b);
    }
    theirs.free(&b);
    assert_quiet(&b);

    // A `Pool` block of the same size.
    let pool = Pool::<[u64; 32]>::new();
    let pb = pool.alloc([7; 32]).unwrap();
    let raw = PoolBox::into_raw(pb);
    // SAFETY: a live pool block (its region is mapped): not `a`'s, refused.
    unsafe { a.deallocate(raw.cast(), l) };
    assert_eq!(a.stats().foreign_frees, 2);
    // SAFETY: `raw` came from `into_raw` of `pool` and nothing freed it.
    let pb = unsafe { PoolBox::from_raw_in(&pool, raw) }.unwrap();
    assert_eq!(*pb, [7; 32]);
    drop(pb);
    assert_eq!(pool.stats().live_blocks, 0);

    // A block of this allocator freed with another class's layout (both
    // classes use 16 KiB regions, so the header read stays in the region).
    let c = Block::stamped(&a, layout(64, 8), 3);
    // SAFETY: `c` is live in `a` but of the 64-byte class, not the 16-byte
    // one: the class's header check refuses it.
    unsafe { a.deallocate(c.ptr, layout(16, 8)) };
    let s = a.stats();
    assert_eq!((s.foreign_frees, s.live_blocks), (3, 2), "{s:?}");
    assert_stamped(c.bytes(), 3, "block freed with the wrong class");
    still_works(&a, 400, &[c.addr(), mine.addr()]);
    c.free(&a);
    assert_stamped(mine.bytes(), 1, "own block");
    mine.free(&a);
    let s = a.stats();
    assert_eq!(
        (s.live_blocks, s.double_frees, s.foreign_frees),
        (0, 0, 3),
        "{s:?}"
    );
}

/// Pointers into the middle of a block, or at its slab's header, are
/// refused as foreign; the block stays live and intact.
#[test]
fn interior_and_header_pointers_are_refused() {
    for hardened in [false, true] {
        let a = SlabAlloc::builder().hardened(hardened).build().unwrap();
        let mut refused = 0;
        // 48 bytes: a stride that is not a power of two; 64: one that is.
        for size in [48, 64] {
            let l = layout(size, 8);
            let b = Block::stamped(&a, l, size as u64);
            let neighbour = Block::stamped(&a, l, 1000 + size as u64);
            let mut bad: Vec<usize> = [1, 8, 16, size - 1].iter().map(|d| b.addr() + d).collect();
            // The slab header: both classes use 16 KiB regions.
            bad.push(b.addr() & !(16 * KIB - 1));
            let frees = a.stats().frees;
            for p in bad {
                // SAFETY: `p` lies inside a mapped slab region of `a` but
                // is not the start of a block: refused as foreign.
                unsafe { a.deallocate(NonNull::new(p as *mut u8).unwrap(), l) };
                refused += 1;
                let s = a.stats();
                assert_eq!(
                    s.foreign_frees,
                    refused,
                    "size {size} +{:#x}: {s:?}",
                    p - b.addr()
                );
                assert_eq!(s.frees, frees, "{s:?}");
            }
            assert_stamped(b.bytes(), size as u64, "block after interior frees");
            assert_stamped(neighbour.bytes(), 1000 + size as u64, "neighbour");
            still_works(&a, 300, &[b.addr(), neighbour.addr()]);
            b.free(&a);
            neighbour.free(&a);
        }
        let s = a.stats();
        assert_eq!((s.live_blocks, s.double_frees), (0, 0), "{s:?}");
    }
}

/// Large blocks: a double free, a pointer no mapping starts at, a pointer
/// into a live mapping, and a class block freed with a large layout are
/// all refused (looked up, never read) and counted in `foreign_frees`.
#[test]
fn large_double_free_and_bogus_pointers_are_refused() {
    let a = SlabAlloc::new();
    let l = layout(100 * KIB, 8);
    let b = Block::stamped(&a, l, 1);
    let p = b.ptr;
    b.free(&a);
    // SAFETY: `p` was a large block of `a`, already freed: the table has no
    // mapping there, so the free is refused; the memory is not read.
    unsafe { a.deallocate(p, l) };
    let s = a.stats();
    assert_eq!(
        (s.foreign_frees, s.large_blocks, s.live_blocks),
        (1, 0, 0),
        "{s:?}"
    );

    let live = Block::stamped(&a, layout(200 * KIB, 8), 2);
    let small = Block::stamped(&a, layout(64, 8), 3);
    let bogus = [
        (0x7f00_dead_0000, layout(MIB, 8)),
        (0x7f00_dead_0000, layout(16, 8192)),
        (live.addr() + 4096, layout(200 * KIB, 8)),
        (live.addr() + 8, layout(200 * KIB, 8)),
        (small.addr(), layout(100 * KIB, 8)),
    ];
    for (i, &(p, l)) in bogus.iter().enumerate() {
        // SAFETY: no large block of `a` starts at `p`: looked up in the
        // table and refused, never dereferenced.
        unsafe { a.deallocate(NonNull::new(p as *mut u8).unwrap(), l) };
        let s = a.stats();
        assert_eq!(s.foreign_frees, 2 + i as u64, "{p:#x} {l:?}: {s:?}");
        assert_eq!((s.live_blocks, s.large_blocks), (2, 1), "{s:?}");
    }
    assert_stamped(live.bytes(), 2, "live large block");
    assert_stamped(small.bytes(), 3, "class block freed as large");
    still_works(&a, 300, &[live.addr(), small.addr()]);
    live.free(&a);
    small.free(&a);
    let s = a.stats();
    assert_eq!(
        (s.live_blocks, s.large_blocks, s.large_bytes),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!((s.double_frees, s.foreign_frees), (0, 6), "{s:?}");
}

// ---------------------------------------------------------------- config

#[track_caller]
fn assert_invalid(r: Result<SlabAlloc, ConfigError>, setting: &str) {
    match &r {
        Err(e @ ConfigError::InvalidSetting { name, .. }) => {
            assert_eq!(*name, setting);
            let msg = e.to_string();
            assert!(msg.contains(setting), "{msg}");
        }
        other => panic!("{setting}: expected InvalidSetting, got {other:?}"),
    }
}

#[test]
fn builder_rejects_invalid_settings() {
    let b = SlabAlloc::builder;
    assert_invalid(b().max_thread_slabs(0).build(), "max_thread_slabs");
    assert_invalid(b().chunk_bytes(3 << 20).build(), "chunk_bytes");
    assert_invalid(b().chunk_bytes((1 << 20) + 4096).build(), "chunk_bytes");
    assert_invalid(b().chunk_bytes(32 * KIB).build(), "chunk_bytes");
    assert_invalid(
        b().release_after(Some(Duration::ZERO)).build(),
        "release_after",
    );
    // The 32 KiB class needs at least eight blocks per slab: more than
    // 256 KiB in one region.
    for n in [0, 1, 4096, 64 * KIB as u64, 256 * KIB as u64] {
        assert_invalid(b().max_bytes(n).build(), "max_bytes");
    }
    // Valid edges build and serve.
    for a in [
        b().max_thread_slabs(1).build(),
        b().chunk_bytes(64 * KIB).build(),
        b().chunk_bytes(4 * MIB).build(),
        b().release_after(Some(Duration::from_millis(1))).build(),
        b().release_after(None).build(),
        b().max_bytes(64 * MIB as u64).build(),
        b().max_thread_heaps(0).retained_empty_slabs(0).build(),
        b().hardened(true).build(),
    ] {
        let a = a.unwrap();
        still_works(&a, 200, &[]);
        assert_quiet(&a);
    }
}

/// `max_bytes` caps class slabs and large mappings together: allocations
/// past it fail with `Err` (no panic), and succeed again once memory is
/// freed (large blocks at once, class slabs after `trim`).
#[test]
fn max_bytes_caps_classes_and_large_blocks_together() {
    let limit = 4 * MIB;
    let a = SlabAlloc::builder()
        .max_bytes(limit as u64)
        .release_after(None)
        .build()
        .unwrap();
    let big = layout(MIB, 8);
    let mut larges: Vec<Block> = Vec::new();
    while let Some(b) = Block::try_new(&a, big) {
        larges.push(b);
        assert!(larges.len() <= 4, "past the budget: {:?}", a.stats());
    }
    assert_eq!(larges.len(), 4, "{:?}", a.stats());
    assert_eq!(a.stats().mapped_bytes, limit as u64);
    // No room for a class slab either.
    assert!(a.allocate(layout(64, 8)).is_err());
    assert!(a.allocate_zeroed(layout(5000, 8)).is_err());
    // A large block that cannot grow keeps its contents.
    let mut g = larges.pop().unwrap();
    stamp(g.bytes_mut(), 5);
    assert!(g.resize(&a, MIB, layout(2 * MIB, 8), false).is_err());
    assert!(g.resize(&a, MIB, layout(2 * MIB, 8), true).is_err());
    assert_stamped(g.bytes(), 5, "failed grow");
    // A Vec reports the failure as an error, not a panic.
    let mut v: AVec<u8, SlabAlloc> = AVec::new_in(a.clone());
    assert!(v.try_reserve(10).is_err());
    g.free(&a);

    // One mapping's worth of room: class slabs fill it.
    let l = layout(4096, 4096);
    let mut smalls: Vec<Block> = Vec::new();
    while let Some(mut b) = Block::try_new(&a, l) {
        stamp(b.bytes_mut(), smalls.len() as u64);
        smalls.push(b);
        assert!(a.stats().mapped_bytes <= limit as u64, "{:?}", a.stats());
        assert!(smalls.len() < 1000, "the budget never bit");
    }
    assert!(!smalls.is_empty());
    assert!(Block::try_new(&a, big).is_none(), "{:?}", a.stats());
    assert!(v.try_reserve(100).is_err());
    // Freeing a large block makes room at once.
    larges.pop().unwrap().free(&a);
    let again = Block::new(&a, big);
    assert!(Block::try_new(&a, big).is_none());
    again.free(&a);
    // Freed class blocks stay mapped in their slabs until trimmed.
    for (i, b) in smalls.into_iter().enumerate() {
        assert_stamped(b.bytes(), i as u64, "block under the budget");
        b.free(&a);
    }
    assert!(a.trim() > 0);
    // Two large blocks are live: room for one more and a small slab, and
    // then, together, for nothing of either kind.
    assert_eq!(larges.len(), 2);
    larges.push(Block::new(&a, big));
    v.try_reserve(100).unwrap();
    v.extend_from_slice(&[1; 100]);
    assert!(Block::try_new(&a, big).is_none(), "{:?}", a.stats());
    let s = a.stats();
    assert!(s.peak_mapped_bytes <= limit as u64, "{s:?}");
    assert!(s.mapped_bytes <= limit as u64, "{s:?}");
    assert!(v.iter().all(|&x| x == 1));
    drop(v);
    for b in larges {
        b.free(&a);
    }
    assert_quiet(&a);
}

/// Injected mapping failures make allocations that need a new mapping fail
/// with `Err`; a class whose slab has room keeps serving; then everything
/// recovers.
#[test]
fn injected_map_failures_are_errors_and_the_allocator_recovers() {
    let a = SlabAlloc::new();
    let warm = Block::stamped(&a, layout(64, 8), 1);
    a.inject_map_failures(2);
    // The 64-byte class has a slab with room: no mapping needed.
    let served = Block::stamped(&a, layout(64, 8), 2);
    // A class never used needs one: refused twice, then served.
    let l = layout(1000, 8);
    assert!(a.allocate(l).is_err());
    assert!(a.allocate_zeroed(l).is_err());
    let s = a.stats();
    assert_eq!((s.allocs, s.live_blocks), (2, 2), "{s:?}");
    let third = Block::stamped(&a, l, 3);
    // grow into an unused class fails like allocate, keeping the block.
    a.inject_map_failures(1);
    let mut g = Block::stamped(&a, layout(1000, 8), 4);
    assert!(g.resize(&a, 1000, layout(3000, 8), false).is_err());
    assert_stamped(g.bytes(), 4, "failed grow");
    g.resize(&a, 1000, layout(3000, 8), false).unwrap();
    assert_stamped(&g.bytes()[..1000], 4, "grown after the failure");
    // A Vec whose first allocation needs a mapping (the 8 KiB class).
    let mut v: AVec<u64, SlabAlloc> = AVec::new_in(a.clone());
    a.inject_map_failures(1);
    assert!(v.try_reserve_exact(1000).is_err());
    v.try_reserve_exact(1000).unwrap();
    v.extend(0..1000);
    assert!(v.iter().copied().eq(0..1000));
    // Cancel what is left pending in the other classes.
    a.inject_map_failures(0);
    still_works(&a, 500, &[]);
    for (b, seed) in [(warm, 1), (served, 2), (third, 3)] {
        assert_stamped(b.bytes(), seed, "block across injected failures");
        b.free(&a);
    }
    g.free(&a);
    drop(v);
    assert_quiet(&a);
}

/// An impossible request fails with `Err`, not a panic or an abort.
#[test]
fn impossible_requests_fail_with_err() {
    let a = SlabAlloc::new();
    for l in [
        layout(isize::MAX as usize - 8191, 4096),
        // More than the whole user address space.
        layout(1 << 48, 8),
        layout(1 << 20, 1 << 47),
    ] {
        assert!(a.allocate(l).is_err(), "{l:?}");
    }
    let mut b = Block::stamped(&a, layout(100 * KIB, 8), 1);
    assert!(b
        .resize(&a, 100 * KIB, layout(isize::MAX as usize - 8191, 8), false)
        .is_err());
    assert_stamped(b.bytes(), 1, "failed huge grow");
    b.free(&a);
    assert_quiet(&a);
}

// ---------------------------------------------------------------- trim races

/// Stamps 16 bytes at the start of every page of `buf` (and its last 16):
/// enough to make every page resident and to catch a block that another
/// one overlaps, cheap enough for many rounds of 32 KiB blocks.
fn stamp_pages(buf: &mut [u8], seed: u64) {
    for o in (0..buf.len()).step_by(4096).chain([buf.len() - 16]) {
        stamp(&mut buf[o..o + 16], seed ^ o as u64);
    }
}

#[track_caller]
fn assert_pages_stamped(buf: &[u8], seed: u64, what: &str) {
    for o in (0..buf.len()).step_by(4096).chain([buf.len() - 16]) {
        assert_stamped(&buf[o..o + 16], seed ^ o as u64, what);
    }
}

/// Several threads allocate, free and `trim()` at the same time: every
/// round each thread fills one 512 KiB slab of the 32 KiB class, frees it
/// and trims, so that whole chunks go free while another thread's trim is
/// advising their regions. No block may be handed out twice (the live set
/// sees any overlap), lose its stamp, or make the page source panic; at the
/// end nothing is live and a final trim empties the allocator.
///
/// Fails at c1f6ec9: `PageSource::release_warm` takes warm regions out of
/// the free list (their chunk still counts them free) and advises them
/// outside the lock; a concurrent `PageSource::trim` meanwhile finds the
/// chunk wholly free, unmaps it, and the first thread then puts the regions
/// back. A later acquire pops such a region: `chunk_of` panics ("a free
/// region belongs to a chunk"), or a new chunk mapped at the same address
/// lists the region twice and two slabs share it (overlapping blocks).
#[test]
#[cfg_attr(miri, ignore)]
fn concurrent_trims_while_allocating() {
    const THREADS: u64 = 3;
    const ROUNDS: u64 = 5000;
    let a = SlabAlloc::builder().release_after(None).build().unwrap();
    let live = Arc::new(LiveSet::default());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (a, live) = (a.clone(), live.clone());
            thread::spawn(move || {
                for r in 0..ROUNDS {
                    let blocks: Vec<(u64, Block)> = (0..8)
                        .map(|i| {
                            let id = t << 40 | r << 8 | i;
                            let mut b = Block::new(&a, layout(MAX_CLASS, 8));
                            live.insert(&b, id);
                            stamp_pages(b.bytes_mut(), mix(id));
                            (id, b)
                        })
                        .collect();
                    for (id, b) in blocks {
                        assert_pages_stamped(b.bytes(), mix(id), "block across trims");
                        live.remove(&b, id);
                        b.free(&a);
                    }
                    a.trim();
                }
            })
        })
        .collect();
    let failed: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().err())
        .map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
        .collect();
    assert!(failed.is_empty(), "workers panicked: {failed:?}");
    assert_quiet(&a);
    a.trim();
    assert_eq!(a.stats().mapped_bytes, 0, "{:?}", a.stats());
}
