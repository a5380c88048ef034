//! Hardened pools with arbitrary words written over free slots' metadata
//! (the slot words, through the `test-hooks` hook), between allocations
//! and frees: the pool never hands out a pointer that is not a slot of
//! one of its slabs (every block passes `PoolBox::from_raw_in`), never two
//! live blocks at one address, never writes a live block, never panics or
//! crashes; and when every word written had the top bit set (which no
//! link has, so no corruption can pass for a link) and one landed on a
//! free slot, exhausting the pool's budget walks every list and the
//! corruption is counted.
#![no_main]

use std::collections::HashSet;
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use homeslab::{AllocError, Pool, PoolBox};
use homeslab_fuzz::mix;
use libfuzzer_sys::fuzz_target;

type Item = [u64; 2];

fn stamp(id: u64) -> Item {
    [id, mix(id)]
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// 1 + n % 32 slots per slab.
    slab_capacity: u8,
    /// A budget of 2 + n % 6 slabs.
    slabs: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc,
    Free(u16),
    /// Overwrites the word of the `nth` free slot of live block `block`'s
    /// slab with `word`.
    Corrupt {
        block: u16,
        nth: u8,
        word: u16,
    },
}

struct Model {
    pool: Pool<Item>,
    live: Vec<(usize, u64)>,
    addrs: HashSet<usize>,
    next_id: u64,
}

impl Model {
    /// Allocates one block; `None` when the budget is spent.
    fn alloc(&mut self) -> Option<()> {
        let id = self.next_id;
        self.next_id += 1;
        let b = match self.pool.alloc(stamp(id)) {
            Ok(b) => b,
            Err(AllocError::MemoryLimit { .. }) => return None,
            Err(e) => panic!("{e}"),
        };
        let p = PoolBox::into_raw(b);
        // SAFETY: `p` came from `into_raw` just now; the check is the point.
        let b = unsafe { PoolBox::from_raw_in(&self.pool, p) }
            .expect("the pool handed out a pointer that is not its live block");
        let addr = PoolBox::into_raw(b).as_ptr() as usize;
        assert!(self.addrs.insert(addr), "block {addr:#x} handed out twice");
        self.live.push((addr, id));
        Some(())
    }

    fn check(&self) {
        for &(addr, id) in &self.live {
            // SAFETY: a live block of ours.
            let v = unsafe { *(addr as *const Item) };
            assert_eq!(v, stamp(id), "live block {id} written");
        }
    }
}

fuzz_target!(|input: Input| {
    static PROBE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let probe = *PROBE.get_or_init(|| Pool::<Item>::new().stats().slab_bytes);
    let pool = Pool::<Item>::builder()
        .hardened(true)
        .slab_capacity(1 + input.slab_capacity as usize % 32)
        .retained_empty_slabs(usize::MAX)
        .max_bytes(probe * (2 + input.slabs as u64 % 6))
        .build()
        .expect("a valid configuration");
    let mut m = Model {
        pool,
        live: Vec::new(),
        addrs: HashSet::new(),
        next_id: 0,
    };
    let mut landed = false;
    let mut only_top_bit = true;
    for op in input.ops.iter().take(4096) {
        match *op {
            Op::Alloc => {
                let _ = m.alloc();
            }
            Op::Free(i) => {
                if !m.live.is_empty() {
                    let (addr, id) = m.live.swap_remove(i as usize % m.live.len());
                    m.addrs.remove(&addr);
                    // SAFETY: a live block of ours.
                    let b = unsafe { PoolBox::from_raw(NonNull::new_unchecked(addr as *mut Item)) };
                    assert_eq!(*b, stamp(id), "live block {id} written");
                    drop(b);
                }
            }
            Op::Corrupt { block, nth, word } => {
                if !m.live.is_empty() {
                    let addr = m.live[block as usize % m.live.len()].0;
                    let p = NonNull::new(addr as *mut Item).unwrap();
                    // SAFETY: a live block this thread allocated from its
                    // own heap; no other thread uses the pool.
                    if let Some(old) = unsafe { m.pool.corrupt_free_slot(p, nth as usize, word) } {
                        assert!(old & 0x8000 == 0, "a free slot's word looked handed out");
                        landed |= old != word;
                        only_top_bit &= word & 0x8000 != 0;
                    }
                }
            }
        }
    }
    m.check();
    // Exhaust the budget: every slab's lists are walked to their end or to
    // a refused link.
    while m.alloc().is_some() {}
    m.check();
    let s = m.pool.stats();
    assert_eq!(s.double_frees, 0);
    assert_eq!(s.foreign_frees, 0);
    if landed && only_top_bit {
        assert!(
            s.corruption_events > 0,
            "corrupted slot words were walked but no corruption was counted"
        );
    }
    for (addr, _) in std::mem::take(&mut m.live) {
        // SAFETY: a live block of ours.
        drop(unsafe { PoolBox::from_raw(NonNull::new_unchecked(addr as *mut Item)) });
    }
    assert_eq!(m.pool.stats().live_blocks, 0);
});
