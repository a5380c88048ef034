//! Property test: random `allocate` / `allocate_zeroed` / `grow` /
//! `grow_zeroed` / `shrink` / `deallocate` sequences on a `SlabAlloc` with
//! arbitrary layouts (sizes 0 – 600 000 bytes, weighted toward small;
//! alignments 1 – 8192), checked against a model of the live blocks.
//!
//! The model keeps each live block's pointer, layout, returned length and
//! the seed of the pattern that fills its whole returned length. After every
//! operation: the block is aligned and at least as long as asked, overlaps
//! no other live block, kept its first min(old, new) bytes across a resize,
//! reads zero past the old size for the zeroed variants, and the allocator's
//! `live_blocks` / `large_blocks` agree with the model. Some blocks are freed
//! on another thread at the end (remote frees); then nothing is live.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::SlabAlloc;
use proptest::prelude::*;

const MAX_SIZE: usize = 600_000;

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size: usize,
        align_log: u8,
        zeroed: bool,
    },
    Grow {
        idx: usize,
        extra: usize,
        /// `None`: keep the block's alignment.
        align_log: Option<u8>,
        zeroed: bool,
        /// Name the returned length (not the requested size) as the old
        /// layout's size: the allocator-api2 "fit" rule allows either.
        fit: bool,
    },
    Shrink {
        idx: usize,
        to: usize,
        align_log: Option<u8>,
        fit: bool,
    },
    Dealloc {
        idx: usize,
        fit: bool,
    },
    /// Freed on another thread at the end of the case.
    Elsewhere {
        idx: usize,
    },
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        8 => 1..=256usize,
        4 => 257..=4096usize,
        2 => 4097..=40_000usize,
        1 => 40_001..=262_144usize,
        1 => 262_145..=MAX_SIZE,
    ]
}

fn align_log() -> impl Strategy<Value = u8> {
    prop_oneof![10 => 0u8..=6, 3 => 7u8..=12, 1 => Just(13u8)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (size(), align_log(), any::<bool>())
            .prop_map(|(size, align_log, zeroed)| Op::Alloc { size, align_log, zeroed }),
        3 => (any::<usize>(), size(), prop::option::weighted(0.3, align_log()), any::<bool>(), any::<bool>())
            .prop_map(|(idx, extra, align_log, zeroed, fit)| Op::Grow { idx, extra, align_log, zeroed, fit }),
        2 => (any::<usize>(), any::<usize>(), prop::option::weighted(0.3, align_log()), any::<bool>())
            .prop_map(|(idx, to, align_log, fit)| Op::Shrink { idx, to, align_log, fit }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(idx, fit)| Op::Dealloc { idx, fit }),
        1 => any::<usize>().prop_map(|idx| Op::Elsewhere { idx }),
    ]
}

// ---------------------------------------------------------------- pattern

fn word(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

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
        if c != word(seed, k).to_le_bytes() {
            return Some(k * 8);
        }
    }
    let want = word(seed, n).to_le_bytes();
    tail.iter()
        .zip(want)
        .position(|(a, b)| *a != b)
        .map(|i| n * 8 + i)
}

/// True if the documented rule makes `l` a large block (a mapping of its
/// own): above 256 KiB, or aligned above 4096 (zero-size layouts are no
/// block at all).
fn is_large(l: Layout) -> bool {
    l.size() > 0 && (l.size() > 256 * 1024 || l.align() > 4096)
}

// ---------------------------------------------------------------- model

/// A live block as the allocator returned it; its whole `len` holds the
/// pattern of `seed`.
struct Live {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    seed: u64,
}

// SAFETY: a live block is plain memory reached only through this value; a
// `SlabAlloc` block may be freed on any thread.
unsafe impl Send for Live {}

impl Live {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the block is live, `len` bytes long (as returned), and
        // reached only through this value.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn check_stamp(&self, upto: usize, what: &str) -> Result<(), TestCaseError> {
        if let Some(i) = mismatch(&self.bytes()[..upto], self.seed) {
            return Err(TestCaseError::fail(format!(
                "{what}: byte {i} of {upto} kept of {:?} at {:p} lost its contents",
                self.layout, self.ptr
            )));
        }
        Ok(())
    }
}

struct Model {
    a: SlabAlloc,
    live: Vec<Live>,
    /// Start → end of every live block with a non-zero length.
    ranges: BTreeMap<usize, usize>,
    elsewhere: Vec<Live>,
    next_seed: u64,
}

impl Model {
    fn seed(&mut self) -> u64 {
        self.next_seed += 1;
        self.next_seed.wrapping_mul(0xd134_2543_de82_ef95)
    }

    /// Checks a block the allocator just returned for `layout` and enters
    /// it (stamped with a fresh seed) into the model.
    fn enter(&mut self, p: NonNull<[u8]>, layout: Layout) -> Result<Live, TestCaseError> {
        let ptr = p.cast::<u8>();
        let len = p.len();
        prop_assert_eq!(
            ptr.as_ptr() as usize % layout.align(),
            0,
            "{:?} misaligned at {:p}",
            layout,
            ptr
        );
        prop_assert!(len >= layout.size(), "{:?}: only {} bytes", layout, len);
        if len > 0 {
            let (start, end) = (ptr.as_ptr() as usize, ptr.as_ptr() as usize + len);
            if let Some((&s, &e)) = self.ranges.range(..end).next_back() {
                prop_assert!(
                    e <= start,
                    "{:?} at [{:#x}, {:#x}) overlaps live [{:#x}, {:#x})",
                    layout,
                    start,
                    end,
                    s,
                    e
                );
            }
            self.ranges.insert(start, end);
        }
        Ok(Live {
            ptr,
            len,
            layout,
            seed: 0,
        })
    }

    fn leave(&mut self, b: &Live) {
        if b.len > 0 {
            assert_eq!(
                self.ranges.remove(&(b.ptr.as_ptr() as usize)),
                Some(b.ptr.as_ptr() as usize + b.len)
            );
        }
    }

    fn restamp(&mut self, mut b: Live) {
        let seed = self.seed();
        b.seed = seed;
        stamp(b.bytes_mut(), seed);
        self.live.push(b);
    }

    fn check_stats(&self) -> Result<(), TestCaseError> {
        let s = self.a.stats();
        let blocks = self.live.iter().chain(&self.elsewhere);
        let live = blocks.clone().filter(|b| b.layout.size() > 0).count() as u64;
        let large = blocks.filter(|b| is_large(b.layout)).count() as u64;
        prop_assert_eq!(s.live_blocks, live, "{:?}", s);
        prop_assert_eq!(s.large_blocks, large, "{:?}", s);
        prop_assert_eq!(s.double_frees + s.foreign_frees, 0, "{:?}", s);
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Alloc {
                size,
                align_log,
                zeroed,
            } => {
                let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
                let got = if zeroed {
                    self.a.allocate_zeroed(layout)
                } else {
                    self.a.allocate(layout)
                };
                let p = got.map_err(|_| TestCaseError::fail(format!("allocate {layout:?}")))?;
                let b = self.enter(p, layout)?;
                if zeroed {
                    let nz = b.bytes().iter().position(|&x| x != 0);
                    prop_assert!(nz.is_none(), "allocate_zeroed {:?}: byte {:?}", layout, nz);
                }
                self.restamp(b);
            }
            Op::Grow {
                idx,
                extra,
                align_log,
                zeroed,
                fit,
            } if !self.live.is_empty() => {
                let b = self.live.swap_remove(idx % self.live.len());
                let old = Layout::from_size_align(
                    if fit { b.len } else { b.layout.size() },
                    b.layout.align(),
                )
                .unwrap();
                let size = (old.size() + extra).min(MAX_SIZE).max(old.size());
                let align = align_log.map_or(b.layout.align(), |l| 1 << l);
                let new = Layout::from_size_align(size, align).unwrap();
                // SAFETY: `b` is live in `a`, `old` fits it (its alignment,
                // a size between requested and returned), and
                // `new.size() >= old.size()`.
                let got = unsafe {
                    if zeroed {
                        self.a.grow_zeroed(b.ptr, old, new)
                    } else {
                        self.a.grow(b.ptr, old, new)
                    }
                };
                let p = got.map_err(|_| TestCaseError::fail(format!("grow {old:?} -> {new:?}")))?;
                self.leave(&b);
                let mut nb = self.enter(p, new)?;
                nb.seed = b.seed;
                nb.check_stamp(old.size(), "grow")?;
                if zeroed {
                    let nz = nb.bytes()[old.size()..].iter().position(|&x| x != 0);
                    prop_assert!(
                        nz.is_none(),
                        "grow_zeroed {:?} -> {:?}: byte {:?} past the old size",
                        old,
                        new,
                        nz
                    );
                }
                self.restamp(nb);
            }
            Op::Shrink {
                idx,
                to,
                align_log,
                fit,
            } if !self.live.is_empty() => {
                let b = self.live.swap_remove(idx % self.live.len());
                let old = Layout::from_size_align(
                    if fit { b.len } else { b.layout.size() },
                    b.layout.align(),
                )
                .unwrap();
                let align = align_log.map_or(b.layout.align(), |l| 1 << l);
                let new = Layout::from_size_align(to % (old.size() + 1), align).unwrap();
                // SAFETY: as for grow, with `new.size() <= old.size()`.
                let got = unsafe { self.a.shrink(b.ptr, old, new) };
                let p =
                    got.map_err(|_| TestCaseError::fail(format!("shrink {old:?} -> {new:?}")))?;
                self.leave(&b);
                let mut nb = self.enter(p, new)?;
                nb.seed = b.seed;
                nb.check_stamp(new.size(), "shrink")?;
                self.restamp(nb);
            }
            Op::Dealloc { idx, fit } if !self.live.is_empty() => {
                let b = self.live.swap_remove(idx % self.live.len());
                b.check_stamp(b.len, "before free")?;
                self.leave(&b);
                let size = if fit { b.len } else { b.layout.size() };
                let l = Layout::from_size_align(size, b.layout.align()).unwrap();
                // SAFETY: `b` is live in `a` and `l` fits it.
                unsafe { self.a.deallocate(b.ptr, l) };
            }
            Op::Elsewhere { idx } if !self.live.is_empty() => {
                let b = self.live.swap_remove(idx % self.live.len());
                b.check_stamp(b.len, "before handing over")?;
                // Stays in `ranges`: it is live until the other thread frees it.
                self.elsewhere.push(b);
            }
            _ => {}
        }
        self.check_stats()
    }
}

fn run(hardened: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let a = SlabAlloc::builder().hardened(hardened).build().unwrap();
    let mut m = Model {
        a: a.clone(),
        live: Vec::new(),
        ranges: BTreeMap::new(),
        elsewhere: Vec::new(),
        next_seed: 0,
    };
    for op in ops {
        m.step(op)?;
    }
    for b in &m.live {
        b.check_stamp(b.len, "at the end")?;
    }
    // Remote frees: checked and freed on another thread.
    let elsewhere = std::mem::take(&mut m.elsewhere);
    let freer = a.clone();
    let bad = std::thread::spawn(move || {
        let mut bad = Vec::new();
        for b in elsewhere {
            if let Some(i) = mismatch(b.bytes(), b.seed) {
                bad.push((b.layout, i));
            }
            // SAFETY: `b` is live in `freer` (a clone of `a`) with the
            // layout it was allocated or resized with.
            unsafe { freer.deallocate(b.ptr, b.layout) };
        }
        bad
    })
    .join()
    .unwrap();
    prop_assert!(
        bad.is_empty(),
        "blocks freed elsewhere lost contents: {:?}",
        bad
    );
    for b in std::mem::take(&mut m.live) {
        m.leave(&b);
        // SAFETY: `b` is live in `a` with the layout it was allocated or
        // resized with.
        unsafe { a.deallocate(b.ptr, b.layout) };
    }
    let s = a.stats();
    prop_assert_eq!(s.live_blocks, 0, "{:?}", s);
    prop_assert_eq!(s.large_blocks, 0, "{:?}", s);
    prop_assert_eq!(s.large_bytes, 0, "{:?}", s);
    prop_assert_eq!(s.allocs, s.frees, "{:?}", s);
    prop_assert_eq!(
        s.double_frees + s.foreign_frees + s.corruption_events,
        0,
        "{:?}",
        s
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    #[cfg_attr(miri, ignore)]
    fn slab_alloc_matches_model(
        hardened in any::<bool>(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run(hardened, &ops)?;
    }
}
