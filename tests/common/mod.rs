//! Shared by the integration tests: stamped blocks and the ledger that
//! checks every block on free (zero lost, duplicated or corrupted).
#![allow(dead_code)] // each test file uses a different part

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use homeslab::{AllocError, Pool, PoolBox};

pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-byte stamped block that counts its drops.
pub struct Item {
    pub id: u64,
    pub words: [u64; 5],
    pub check: u64,
    pub drops: &'static AtomicUsize,
}

impl Item {
    pub fn words(id: u64) -> ([u64; 5], u64) {
        let mut words = [0; 5];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mix(id ^ ((i as u64 + 1) << 56));
        }
        let check = words.iter().fold(mix(id), |a, &w| a.rotate_left(9) ^ w);
        (words, check)
    }

    pub fn new(id: u64, drops: &'static AtomicUsize) -> Self {
        let (words, check) = Self::words(id);
        Self {
            id,
            words,
            check,
            drops,
        }
    }

    pub fn is_intact(&self, id: u64) -> bool {
        let (words, check) = Self::words(id);
        (self.id, self.words, self.check) == (id, words, check)
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        self.id = u64::MAX;
        self.check = !self.check;
    }
}

pub type Msg = (u64, PoolBox<Item>);

pub fn addr(m: &Msg) -> usize {
    &*m.1 as *const Item as usize
}

/// The ids of live blocks: each allocation is recorded, each free checks the
/// block's stamp and strikes its id.
pub struct Ledger {
    drops: &'static AtomicUsize,
    drops_at_start: usize,
    next: AtomicU64,
    live: Mutex<HashSet<u64>>,
    allocated: AtomicUsize,
    corrupted: AtomicUsize,
    duplicated: AtomicUsize,
}

impl Ledger {
    pub fn new(drops: &'static AtomicUsize) -> Arc<Self> {
        Arc::new(Self {
            drops,
            drops_at_start: drops.load(Ordering::Relaxed),
            next: AtomicU64::new(1),
            live: Mutex::new(HashSet::new()),
            allocated: AtomicUsize::new(0),
            corrupted: AtomicUsize::new(0),
            duplicated: AtomicUsize::new(0),
        })
    }

    pub fn alloc(&self, pool: &Pool<Item>) -> Result<Msg, AllocError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let b = pool.alloc(Item::new(id, self.drops))?;
        self.live.lock().unwrap().insert(id);
        self.allocated.fetch_add(1, Ordering::Relaxed);
        Ok((id, b))
    }

    pub fn retire(&self, (id, b): Msg) {
        if !b.is_intact(id) {
            self.corrupted.fetch_add(1, Ordering::Relaxed);
        }
        if !self.live.lock().unwrap().remove(&id) {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        drop(b);
    }

    /// Everything allocated was freed exactly once, intact, and dropped once.
    pub fn assert_clean(&self) {
        let lost = self.live.lock().unwrap().len();
        let allocated = self.allocated.load(Ordering::Relaxed);
        let dropped = self.drops.load(Ordering::Relaxed) - self.drops_at_start;
        assert_eq!(lost, 0, "blocks never freed");
        assert_eq!(
            self.duplicated.load(Ordering::Relaxed),
            0,
            "blocks freed twice"
        );
        assert_eq!(
            self.corrupted.load(Ordering::Relaxed),
            0,
            "corrupted blocks"
        );
        assert_eq!(dropped, allocated, "T::drop ran once per block");
    }
}

/// Asserts that no two of `blocks` overlap.
pub fn assert_distinct(blocks: &[Msg]) {
    let set: HashSet<usize> = blocks.iter().map(addr).collect();
    assert_eq!(set.len(), blocks.len(), "a block was handed out twice");
}
