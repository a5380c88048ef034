//! The table of live large blocks, keyed by address: open addressing with
//! linear probing and backward-shift deletion, in meta memory (a `HashMap`
//! would call the global allocator, which homeslab may be).

use super::Block;
use crate::meta::{mvec, MVec};

pub(crate) struct Table {
    /// A power-of-two number of slots (or none yet).
    slots: MVec<Option<Block>>,
    len: usize,
}

/// Fibonacci hashing of a page-aligned address.
fn hash(addr: usize, mask: usize) -> usize {
    ((addr >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as usize) >> 16) & mask
}

impl Table {
    pub(crate) const fn new() -> Self {
        Self {
            slots: mvec(),
            len: 0,
        }
    }

    fn find(&self, addr: usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash(addr, mask);
        loop {
            match &self.slots[i] {
                None => return None,
                Some(m) if m.addr() == addr => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub(crate) fn get(&self, addr: usize) -> Option<&Block> {
        self.find(addr).and_then(|i| self.slots[i].as_ref())
    }

    pub(crate) fn get_mut(&mut self, addr: usize) -> Option<&mut Block> {
        self.find(addr).and_then(|i| self.slots[i].as_mut())
    }

    /// Inserts `map` (whose address is not in the table); gives it back if
    /// there is no memory to grow.
    pub(crate) fn insert(&mut self, map: Block) -> Result<(), Block> {
        if (self.len + 1) * 2 > self.slots.len() && !self.grow() {
            return Err(map);
        }
        self.place(map);
        self.len += 1;
        Ok(())
    }

    fn place(&mut self, map: Block) {
        let mask = self.slots.len() - 1;
        let mut i = hash(map.addr(), mask);
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Some(map);
    }

    fn grow(&mut self) -> bool {
        let cap = (self.slots.len() * 2).max(16);
        let mut fresh: MVec<Option<Block>> = mvec();
        if fresh.try_reserve_exact(cap).is_err() {
            return false;
        }
        fresh.resize_with(cap, || None);
        let old = core::mem::replace(&mut self.slots, fresh);
        for m in old.into_iter().flatten() {
            self.place(m);
        }
        true
    }

    pub(crate) fn remove(&mut self, addr: usize) -> Option<Block> {
        let mut i = self.find(addr)?;
        let got = self.slots[i].take();
        self.len -= 1;
        // Backward shift: move later members of the probe run into the hole
        // when their home is at or before it.
        let mask = self.slots.len() - 1;
        let mut j = (i + 1) & mask;
        while let Some(m) = &self.slots[j] {
            let home = hash(m.addr(), mask);
            let dist_j = j.wrapping_sub(home) & mask;
            let dist_i = i.wrapping_sub(home) & mask;
            if dist_i <= dist_j {
                self.slots[i] = self.slots[j].take();
                i = j;
            }
            j = (j + 1) & mask;
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_many() {
        let mut t = Table::new();
        let maps: Vec<Block> = (1..=200)
            .map(|i| Block::Span {
                addr: i << 20,
                len: 4096,
            })
            .collect();
        let addrs: Vec<usize> = maps.iter().map(Block::addr).collect();
        for m in maps {
            assert!(t.insert(m).is_ok());
        }
        for &a in &addrs {
            assert_eq!(t.get(a).map(Block::addr), Some(a));
        }
        for &a in addrs.iter().step_by(2) {
            assert_eq!(t.remove(a).map(|m| m.addr()), Some(a));
            assert!(t.get(a).is_none());
        }
        for &a in addrs.iter().skip(1).step_by(2) {
            assert_eq!(t.get(a).map(Block::addr), Some(a), "lost after deletions");
        }
        assert!(t.get(12345 << 12).is_none());
    }
}
