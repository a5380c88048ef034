//! What every module here shares: the stamp pattern, `Block` (a live
//! block of a `SlabAlloc`, exactly as returned), the `LiveSet` that catches
//! overlapping blocks, and the end checks `assert_quiet` and `still_works`.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Mutex;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::SlabAlloc;

use crate::common::mix;

// ---------------------------------------------------------------- stamping

pub const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;
/// The largest size class (documented: classes go up to 256 KiB).
pub const MAX_CLASS: usize = 256 * KIB;
/// The strongest alignment a class serves (documented: up to 4096).
pub const MAX_CLASS_ALIGN: usize = 4096;

/// Word `k` of the pattern of `seed`.
fn word(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64 + 1).wrapping_mul(GOLDEN)
}

/// Fills `buf` with the pattern of `seed` (byte `i` depends on `seed` and
/// `i` only, so a prefix of a stamp is the stamp of the prefix).
pub fn stamp(buf: &mut [u8], seed: u64) {
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
pub fn assert_stamped(buf: &[u8], seed: u64, what: &str) {
    if let Some(i) = mismatch(buf, seed) {
        panic!(
            "{what}: byte {i} of {} lost its stamp (seed {seed:#x})",
            buf.len()
        );
    }
}

#[track_caller]
pub fn assert_zero(buf: &[u8], what: &str) {
    if let Some(i) = buf.iter().position(|&b| b != 0) {
        panic!(
            "{what}: byte {i} of {} reads {:#x}, not 0",
            buf.len(),
            buf[i]
        );
    }
}

pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// True if the documented rule sends `l` to a mapping of its own.
pub fn is_large(l: Layout) -> bool {
    l.size() > MAX_CLASS || l.align() > MAX_CLASS_ALIGN
}

// ---------------------------------------------------------------- blocks

/// A live block of a `SlabAlloc`, exactly as `allocate` (or a resize)
/// returned it, held by this value alone.
pub struct Block {
    pub ptr: NonNull<u8>,
    pub len: usize,
    pub layout: Layout,
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

    pub fn try_new(a: &SlabAlloc, layout: Layout) -> Option<Block> {
        a.allocate(layout)
            .ok()
            .map(|p| Block::from_slice(p, layout))
    }

    #[track_caller]
    pub fn new(a: &SlabAlloc, layout: Layout) -> Block {
        Block::try_new(a, layout).unwrap_or_else(|| panic!("allocate {layout:?} failed"))
    }

    #[track_caller]
    pub fn zeroed(a: &SlabAlloc, layout: Layout) -> Block {
        let p = a
            .allocate_zeroed(layout)
            .unwrap_or_else(|_| panic!("allocate_zeroed {layout:?} failed"));
        let b = Block::from_slice(p, layout);
        assert_zero(b.bytes(), "allocate_zeroed");
        b
    }

    /// A block with `len` stamped bytes of `seed`.
    #[track_caller]
    pub fn stamped(a: &SlabAlloc, layout: Layout, seed: u64) -> Block {
        let mut b = Block::new(a, layout);
        stamp(b.bytes_mut(), seed);
        b
    }

    #[track_caller]
    pub fn check_shape(&self) {
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

    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the block is live, `len` bytes long (what the allocator
        // returned), and reached only through this handle.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Frees the block with the layout it was allocated with.
    pub fn free(self, a: &SlabAlloc) {
        let l = self.layout;
        self.free_with(a, l.size());
    }

    /// Frees the block with a layout of `size` (between the requested and
    /// the returned length) and the same alignment.
    #[track_caller]
    pub fn free_with(self, a: &SlabAlloc, size: usize) {
        assert!((self.layout.size()..=self.len).contains(&size));
        // SAFETY: the block is a live block of `a` (or of a clone of it),
        // and `size` lies between the requested and the returned length
        // with the same alignment, so the layout fits it.
        unsafe { a.deallocate(self.ptr, layout(size, self.layout.align())) };
    }

    /// `grow`, `grow_zeroed` or `shrink` to `new`, taking `old_size` (between
    /// the requested and the returned length) as the old layout's size.
    /// `Err` leaves the block as it was.
    pub fn resize(
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
pub struct LiveSet {
    blocks: Mutex<BTreeMap<usize, (usize, u64)>>,
}

impl LiveSet {
    #[track_caller]
    pub fn insert(&self, b: &Block, id: u64) {
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
    pub fn remove(&self, b: &Block, id: u64) {
        if b.len == 0 {
            return;
        }
        let got = self.blocks.lock().unwrap().remove(&b.addr());
        assert_eq!(got, Some((b.addr() + b.len, id)), "block {id} not live");
    }

    pub fn len(&self) -> usize {
        self.blocks.lock().unwrap().len()
    }
}

/// The allocator has nothing live and refused nothing.
#[track_caller]
pub fn assert_quiet(a: &SlabAlloc) {
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
pub fn still_works(a: &SlabAlloc, n: u64, avoid: &[usize]) {
    let live = LiveSet::default();
    let blocks: Vec<(u64, Block)> = (0..n)
        .map(|id| {
            let r = mix(id ^ 0x5eed);
            let size = match r % 10 {
                0 => MAX_CLASS + 1 + (r >> 8) as usize % (200 * KIB),
                1 => 32 * KIB + 1 + (r >> 8) as usize % (MAX_CLASS - 32 * KIB),
                2..=3 => 1 + (r >> 8) as usize % (32 * KIB),
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
