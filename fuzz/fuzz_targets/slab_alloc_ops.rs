//! `SlabAlloc` with arbitrary layouts, checked against a model: allocate
//! (zeroed or not), grow (zeroed or not), shrink, deallocate here or on a
//! helper thread, with any alignment up to 64 KiB and sizes from 1 byte
//! to 512 KiB (size classes up to 256 KiB, and large blocks). Blocks are
//! freed and resized with any size between the requested one and the
//! length returned (the layout-fit rule), and the whole returned length
//! is written; contents survive resizes, zeroed memory reads zero, live
//! blocks never overlap, refused double frees and interior pointers are
//! counted, and at the end everything is freed and the allocator dropped.
#![no_main]

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use homeslab::allocator_api2::alloc::Allocator;
use homeslab::{flush_remote_frees, SlabAlloc};
use homeslab_fuzz::Helper;
use libfuzzer_sys::fuzz_target;

const MAX_CLASS: usize = 256 * 1024;

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Size {
    bucket: u8,
    n: u32,
    align_log: u8,
}

impl Size {
    fn layout(self) -> Layout {
        let size = match self.bucket % 4 {
            0 => 1 + self.n as usize % 256,
            1 => 1 + self.n as usize % 4096,
            2 => 1 + self.n as usize % (32 * 1024),
            _ => 1 + self.n as usize % (2 * MAX_CLASS),
        };
        let align_log = match self.align_log % 8 {
            0..=4 => self.align_log % 4,
            5 | 6 => self.align_log % 13,
            _ => self.align_log % 17,
        };
        Layout::from_size_align(size, 1 << align_log).unwrap()
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc(Size, bool),
    Free(u16, u16),
    FreeRemote(u16, u16),
    Grow(u16, Size, bool),
    Shrink(u16, Size),
    DoubleFree(u16),
    Interior(u16),
    HelperFlush,
    Trim,
    Flush,
}

/// One live block: what was asked, what came back, its fill byte.
#[derive(Clone, Copy, Debug)]
struct Block {
    layout: Layout,
    len: usize,
    fill: u8,
}

/// The class a (size, align) takes: the first whose size fits and whose
/// natural alignment (largest power of two dividing it, at most 4096) does.
fn class_of(l: Layout) -> Option<usize> {
    if l.align() > 4096 {
        return None;
    }
    SlabAlloc::class_sizes()
        .iter()
        .position(|&s| s >= l.size() && (1usize << s.trailing_zeros()).min(4096) >= l.align())
}

struct Model {
    a: SlabAlloc,
    helper: Helper,
    live: BTreeMap<usize, Block>,
    /// Freed blocks (most recent last).
    dead: Vec<(usize, Layout)>,
    fills: u8,
    double_frees: u64,
    foreign_frees: u64,
    held: u64,
}

fn bytes<'a>(p: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: callers pass a live block of the model and its length.
    unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) }
}

impl Model {
    fn fill(&mut self) -> u8 {
        self.fills = self.fills.wrapping_add(1).max(1);
        self.fills
    }

    /// Records a block, checking alignment, length and overlap.
    fn add(&mut self, p: NonNull<[u8]>, layout: Layout, fill: u8) {
        let addr = p.cast::<u8>().as_ptr() as usize;
        let len = p.len();
        assert!(len >= layout.size(), "{len} bytes returned for {layout:?}");
        assert_eq!(addr % layout.align(), 0, "misaligned for {layout:?}");
        if let Some((&a, b)) = self.live.range(..addr + len).next_back() {
            assert!(
                a + b.len <= addr,
                "{addr:#x}+{len} overlaps {a:#x}+{}",
                b.len
            );
        }
        bytes(addr, len).fill(fill);
        self.live.insert(addr, Block { layout, len, fill });
    }

    fn pick(&self, i: u16) -> Option<(usize, Block)> {
        let n = self.live.len();
        (n > 0).then(|| {
            let (&a, &b) = self.live.iter().nth(i as usize % n).unwrap();
            (a, b)
        })
    }

    fn verify(addr: usize, b: Block) {
        let got = bytes(addr, b.len);
        if let Some(at) = got.iter().position(|&x| x != b.fill) {
            panic!("block {addr:#x} ({b:?}) corrupted at byte {at}");
        }
    }

    /// Removes a block, checking its contents; returns a layout it fits
    /// (size anywhere between the requested size and the length).
    fn take(&mut self, i: u16, fit: u16) -> Option<(usize, Layout)> {
        let (addr, b) = self.pick(i)?;
        Self::verify(addr, b);
        self.live.remove(&addr);
        let size = b.layout.size() + fit as usize % (b.len - b.layout.size() + 1);
        let layout = Layout::from_size_align(size, b.layout.align()).unwrap();
        Some((addr, layout))
    }

    fn check(&self) {
        let s = self.a.stats();
        let live = self.live.len() as u64;
        assert!(
            s.live_blocks >= live && s.live_blocks <= live + self.held,
            "live_blocks {} but the model has {live} (+{} held)",
            s.live_blocks,
            self.held
        );
        assert_eq!(s.double_frees, self.double_frees);
        assert_eq!(s.foreign_frees, self.foreign_frees);
        assert_eq!(s.corruption_events, 0);
    }
}

fn nn(addr: usize) -> NonNull<u8> {
    NonNull::new(addr as *mut u8).unwrap()
}

fuzz_target!(|ops: Vec<Op>| {
    let mut m = Model {
        a: SlabAlloc::new(),
        helper: Helper::default(),
        live: BTreeMap::new(),
        dead: Vec::new(),
        fills: 0,
        double_frees: 0,
        foreign_frees: 0,
        held: 0,
    };
    for op in ops.iter().take(2048) {
        match *op {
            Op::Alloc(size, zeroed) => {
                let l = size.layout();
                let p = if zeroed {
                    m.a.allocate_zeroed(l)
                } else {
                    m.a.allocate(l)
                };
                let p = p.expect("no limit set");
                if zeroed {
                    let z = bytes(p.cast::<u8>().as_ptr() as usize, p.len());
                    assert!(z.iter().all(|&x| x == 0), "allocate_zeroed: not zero");
                }
                let fill = m.fill();
                m.add(p, l, fill);
            }
            Op::Free(i, fit) => {
                if let Some((addr, l)) = m.take(i, fit) {
                    // SAFETY: a live block, with a layout it fits.
                    unsafe { m.a.deallocate(nn(addr), l) };
                    m.dead.push((addr, l));
                }
            }
            Op::FreeRemote(i, fit) => {
                if let Some((addr, l)) = m.take(i, fit) {
                    let a = m.a.clone();
                    m.helper.run(move || {
                        // SAFETY: as in `Free`; the block moved to this thread.
                        unsafe { a.deallocate(nn(addr), l) };
                        0
                    });
                    m.held += 1;
                    m.dead.push((addr, l));
                }
            }
            Op::Grow(i, size, zeroed) => {
                let Some((addr, old)) = m.take(i, 0) else {
                    continue;
                };
                let want = size.layout();
                let new = Layout::from_size_align(old.size() + want.size(), want.align()).unwrap();
                let old_fill = bytes(addr, 1)[0];
                // SAFETY: a live block, its layout, a size not smaller.
                let r = unsafe {
                    if zeroed {
                        m.a.grow_zeroed(nn(addr), old, new)
                    } else {
                        m.a.grow(nn(addr), old, new)
                    }
                };
                let p = r.expect("no limit set");
                let got = bytes(p.cast::<u8>().as_ptr() as usize, p.len());
                assert!(
                    got[..old.size()].iter().all(|&x| x == old_fill),
                    "grow lost contents"
                );
                if zeroed {
                    assert!(
                        got[old.size()..].iter().all(|&x| x == 0),
                        "grow_zeroed: not zero"
                    );
                }
                if p.cast::<u8>().as_ptr() as usize != addr {
                    m.dead.push((addr, old));
                }
                let fill = m.fill();
                m.add(p, new, fill);
            }
            Op::Shrink(i, size) => {
                let Some((addr, old)) = m.take(i, 0) else {
                    continue;
                };
                let want = size.layout();
                let new =
                    Layout::from_size_align(1 + want.size() % old.size(), want.align()).unwrap();
                let old_fill = bytes(addr, 1)[0];
                // SAFETY: a live block, its layout, a size not larger.
                let p = unsafe { m.a.shrink(nn(addr), old, new) }.expect("no limit set");
                let got = bytes(p.cast::<u8>().as_ptr() as usize, new.size());
                assert!(got.iter().all(|&x| x == old_fill), "shrink lost contents");
                if p.cast::<u8>().as_ptr() as usize != addr {
                    m.dead.push((addr, old));
                }
                let fill = m.fill();
                m.add(p, new, fill);
            }
            Op::DoubleFree(i) => {
                // A freed block that no live block covers now; a class
                // block only while a live block of its class shares its
                // 16 KiB window (so its slab is mapped and is that class's).
                let free_now = |&(d, l): &(usize, Layout)| {
                    let covered = m
                        .live
                        .range(..=d)
                        .next_back()
                        .is_some_and(|(&a, b)| a + b.len > d);
                    let mapped = match class_of(l) {
                        None => true,
                        Some(c) => m
                            .live
                            .iter()
                            .any(|(&a, b)| a >> 14 == d >> 14 && class_of(b.layout) == Some(c)),
                    };
                    !covered && mapped
                };
                let n = m.dead.iter().filter(|d| free_now(d)).count();
                if n > 0 {
                    let (d, l) = m
                        .dead
                        .iter()
                        .copied()
                        .filter(|d| free_now(d))
                        .nth(i as usize % n)
                        .unwrap();
                    // SAFETY: not a live block; refused and counted (a large
                    // one is looked up, a class one's slab is mapped).
                    unsafe { m.a.deallocate(nn(d), l) };
                    if class_of(l).is_some() {
                        m.double_frees += 1;
                    } else {
                        m.foreign_frees += 1;
                    }
                }
            }
            Op::Interior(i) => {
                if let Some((addr, b)) = m.pick(i) {
                    if b.len > 16 {
                        // SAFETY: inside a live block: no slot, no large block
                        // starts there; refused and counted.
                        unsafe { m.a.deallocate(nn(addr + 16), b.layout) };
                        m.foreign_frees += 1;
                    }
                }
            }
            Op::HelperFlush => {
                if m.helper.running() {
                    m.helper.run(|| {
                        flush_remote_frees();
                        0
                    });
                }
                m.held = 0;
            }
            Op::Trim => {
                m.a.trim();
            }
            Op::Flush => flush_remote_frees(),
        }
        if m.dead.len() > 64 {
            m.dead.remove(0);
        }
        m.check();
    }
    let all: Vec<usize> = m.live.keys().copied().collect();
    for addr in all {
        let b = m.live[&addr];
        Model::verify(addr, b);
        m.live.remove(&addr);
        // SAFETY: a live block, its layout.
        unsafe { m.a.deallocate(nn(addr), b.layout) };
    }
    m.helper.exit();
    m.held = 0;
    m.check();
    assert_eq!(m.a.stats().live_blocks, 0);
});
