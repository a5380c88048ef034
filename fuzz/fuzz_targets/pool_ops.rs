//! Random sequences of pool operations, checked against a model: allocate
//! (here or on a helper thread, whose heap then owns the block), free here
//! or on the helper (a remote free, held in its magazine), double frees (checked and
//! unchecked), foreign pointers, trim, flush, and the helper's exit with
//! blocks still live elsewhere. Every block carries a stamp, checked on
//! every free; live blocks never share an address; the pool's counters
//! match the model exactly (a free is counted at the call, held or not);
//! at the end every block is freed and the pool
//! dropped (LeakSanitizer then checks that it released everything).
#![no_main]

use std::collections::HashSet;
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use homeslab::{flush_remote_frees, Pool, PoolBox};
use homeslab_fuzz::{mix, Helper};
use libfuzzer_sys::fuzz_target;

type Item = [u64; 4];

fn stamp(id: u64) -> Item {
    [id, mix(id), !id, mix(id ^ 0x5555)]
}

#[derive(Arbitrary, Debug)]
struct Input {
    hardened: bool,
    /// 0: as many as fit.
    slab_capacity: u8,
    /// 0: unlimited; else 1 + n % 4.
    max_thread_slabs: u8,
    /// 0: unlimited; else n % 3 (0 sends every thread to the tier).
    max_thread_heaps: u8,
    retained_empty_slabs: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc,
    Free(u16),
    /// Freed on the helper thread (a remote free, held in its magazine).
    FreeRemote(u16),
    /// Allocated on the helper (its heap owns the block), handed here.
    HelperAlloc,
    HelperFlush,
    HelperExit,
    /// A freed block again: checked (`from_raw_in`) or unchecked (drop).
    DoubleFree(u16, bool),
    Foreign(u8, u16),
    Trim,
    Flush,
    Check,
}

struct Model {
    pool: Pool<Item>,
    other: Pool<Item>,
    helper: Helper,
    /// Live blocks: (address, id).
    live: Vec<(usize, u64)>,
    addrs: HashSet<usize>,
    /// Freed addresses (most recent last).
    dead: Vec<usize>,
    next_id: u64,
    double_frees: u64,
    foreign_frees: u64,
}

impl Model {
    fn add(&mut self, addr: usize, id: u64) {
        assert_eq!(addr % std::mem::align_of::<Item>(), 0, "misaligned block");
        assert!(self.addrs.insert(addr), "block {addr:#x} handed out twice");
        self.live.push((addr, id));
    }

    fn take(&mut self, i: u16) -> Option<(usize, u64)> {
        if self.live.is_empty() {
            return None;
        }
        let (addr, id) = self.live.swap_remove(i as usize % self.live.len());
        // SAFETY: a live block of ours, stamped when allocated.
        let v = unsafe { *(addr as *const Item) };
        assert_eq!(v, stamp(id), "block {id} corrupted");
        self.addrs.remove(&addr);
        self.dead.push(addr);
        if self.dead.len() > 64 {
            self.dead.remove(0);
        }
        Some((addr, id))
    }

    fn check(&self) {
        for &(addr, id) in &self.live {
            // SAFETY: as in `take`.
            let v = unsafe { *(addr as *const Item) };
            assert_eq!(v, stamp(id), "block {id} corrupted");
        }
        let s = self.pool.stats();
        let live = self.live.len() as u64;
        assert_eq!(
            s.live_blocks, live,
            "live blocks: the pool against the model"
        );
        assert_eq!(s.double_frees, self.double_frees);
        assert_eq!(s.foreign_frees, self.foreign_frees);
        assert_eq!(s.corruption_events, 0);
        assert_eq!(s.allocs - s.frees, s.live_blocks);
    }

    /// A dead address that no live block holds now and, for an unchecked
    /// free, whose slab a live block keeps (so its header is mapped).
    fn dead_block(&self, i: u16, need_slab: bool) -> Option<usize> {
        let region = self.pool.stats().slab_bytes as usize;
        let ok = |d: &usize| {
            !self.addrs.contains(d)
                && (!need_slab
                    || self
                        .live
                        .iter()
                        .any(|(a, _)| a & !(region - 1) == d & !(region - 1)))
        };
        let n = self.dead.iter().filter(|d| ok(d)).count();
        if n == 0 {
            return None;
        }
        self.dead
            .iter()
            .copied()
            .filter(|d| ok(d))
            .nth(i as usize % n)
    }
}

fuzz_target!(|input: Input| {
    let mut b = Pool::<Item>::builder()
        .hardened(input.hardened)
        .retained_empty_slabs(input.retained_empty_slabs as usize % 8);
    if input.slab_capacity != 0 {
        b = b.slab_capacity(input.slab_capacity as usize);
    }
    if input.max_thread_slabs != 0 {
        b = b.max_thread_slabs(1 + input.max_thread_slabs as usize % 4);
    }
    if input.max_thread_heaps != 0 {
        b = b.max_thread_heaps(input.max_thread_heaps as usize % 3);
    }
    let pool = b.build().expect("a valid configuration");
    let mut m = Model {
        other: Pool::new(),
        pool,
        helper: Helper::default(),
        live: Vec::new(),
        addrs: HashSet::new(),
        dead: Vec::new(),
        next_id: 0,
        double_frees: 0,
        foreign_frees: 0,
    };
    for op in input.ops.iter().take(4096) {
        match *op {
            Op::Alloc => {
                let id = m.next_id;
                m.next_id += 1;
                let b = m.pool.alloc(stamp(id)).expect("no limit set");
                m.add(PoolBox::into_raw(b).as_ptr() as usize, id);
            }
            Op::Free(i) => {
                if let Some((addr, _)) = m.take(i) {
                    // SAFETY: a live block from `into_raw`, owned by nobody else.
                    drop(unsafe { PoolBox::from_raw(NonNull::new_unchecked(addr as *mut Item)) });
                }
            }
            Op::FreeRemote(i) => {
                if let Some((addr, _)) = m.take(i) {
                    m.helper.run(move || {
                        // SAFETY: as in `Free`; the block moved to this thread.
                        drop(unsafe {
                            PoolBox::from_raw(NonNull::new_unchecked(addr as *mut Item))
                        });
                        0
                    });
                }
            }
            Op::HelperAlloc => {
                let id = m.next_id;
                m.next_id += 1;
                let pool = m.pool.clone();
                let addr = m.helper.run(move || {
                    let b = pool.alloc(stamp(id)).expect("no limit set");
                    PoolBox::into_raw(b).as_ptr() as usize
                });
                m.add(addr, id);
            }
            Op::HelperFlush => {
                if m.helper.running() {
                    m.helper.run(|| {
                        flush_remote_frees();
                        0
                    });
                }
            }
            Op::HelperExit => m.helper.exit(),
            Op::DoubleFree(i, checked) => {
                if let Some(addr) = m.dead_block(i, !checked) {
                    let p = NonNull::new(addr as *mut Item).unwrap();
                    if checked {
                        // SAFETY: not a live block: refused without acting.
                        let r = unsafe { PoolBox::from_raw_in(&m.pool, p) };
                        assert!(r.is_err(), "a freed block accepted as live");
                        m.foreign_frees += 1;
                    } else {
                        // SAFETY: `Item` is `Copy` (no destructor runs on the
                        // freed bytes) and a live block keeps the slab mapped:
                        // the double free is refused and counted.
                        drop(unsafe { PoolBox::from_raw(p) });
                        m.double_frees += 1;
                    }
                }
            }
            Op::Foreign(kind, i) => {
                let local: Item = [0; 4];
                let heap = Box::new([0u64; 4]);
                let interior =
                    (!m.live.is_empty()).then(|| m.live[i as usize % m.live.len()].0 + 8);
                let theirs = m.other.alloc([1; 4]).unwrap();
                let p = match kind % 4 {
                    0 => &local as *const Item as usize,
                    1 => &*heap as *const Item as usize,
                    2 => &*theirs as *const Item as usize,
                    _ => match interior {
                        Some(a) => a,
                        None => continue,
                    },
                };
                let p = NonNull::new(p as *mut Item).unwrap();
                // SAFETY: not a block of this pool: refused and counted.
                let r = unsafe { PoolBox::from_raw_in(&m.pool, p) };
                assert!(r.is_err(), "a foreign pointer accepted");
                m.foreign_frees += 1;
                if kind % 8 >= 4 {
                    if let Some(a) = interior {
                        // The unchecked free of a live block's interior: the
                        // slab is live, the offset no slot: refused, counted.
                        // SAFETY: `Item` is `Copy`; the region is a live slab.
                        drop(unsafe { PoolBox::from_raw(NonNull::new_unchecked(a as *mut Item)) });
                        m.foreign_frees += 1;
                    }
                }
                drop(theirs);
            }
            Op::Trim => {
                m.pool.trim();
            }
            Op::Flush => flush_remote_frees(),
            Op::Check => m.check(),
        }
    }
    m.check();
    while !m.live.is_empty() {
        let remote = m.live.len().is_multiple_of(3);
        let (addr, _) = m.take(0).unwrap();
        let free = move || {
            // SAFETY: a live block, owned by nobody else.
            drop(unsafe { PoolBox::from_raw(NonNull::new_unchecked(addr as *mut Item)) });
            0
        };
        if remote {
            m.helper.run(free);
        } else {
            free();
        }
    }
    m.helper.exit();
    m.check();
    assert_eq!(m.pool.stats().live_blocks, 0);
});
