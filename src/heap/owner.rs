//! A heap's owner word: who may touch the owner side of the heap and its
//! slabs, as one state machine.
//!
//! | state | word | owner of the heap | a free into its slabs |
//! |---|---|---|---|
//! | thread `s` | `s` | thread `s` | by `s`: onto the freelist; by others: remote |
//! | closing `s` | `s \| CLOSING` | thread `s`, until it abandons the heap | remote; `s` abandons the heap first |
//! | orphan | [`ORPHAN`] | the tier lock's holder | remote |
//! | dead | [`DEAD`] | the tier lock's holder | remote; the publisher then collects the heap's empty slabs |
//! | tier | [`TIER`] | the tier lock's holder | remote |
//!
//! Every transition is written under the pool's tier lock; the word is read
//! without it (a free compares it with the caller's serial):
//! - orphan → thread `s`: `s` adopts the heap;
//! - thread `s` → orphan, closing `s` → dead: `s` *abandons* the heap (at
//!   its exit, or at its first free, flush or exit after the close);
//! - thread `s` → closing `s`, orphan → dead, tier → dead: the pool closes.
//!
//! So after a close no thread frees into its own slabs: each block goes
//! home through its slab's remote list, and one rule releases a slab —
//! a publisher that finds the heap dead collects its empty slabs (see
//! `PoolCore::publish`).
//!
//! Thread serials are below `2^62` (one per thread, counted from 1), so a
//! serial never has [`CLOSING`] or the reserved values' high bits set, and
//! 0 (the serial of a thread without one) is no owner.

/// Set in the word of a thread's heap once its pool has closed.
pub(crate) const CLOSING: u64 = 1 << 62;
/// Abandoned while the pool is open: adoptable, borrowed by the tier.
pub(crate) const ORPHAN: u64 = u64::MAX - 1;
/// Abandoned in a closed pool.
pub(crate) const DEAD: u64 = u64::MAX - 2;
/// The overflow tier's own heap.
pub(crate) const TIER: u64 = u64::MAX;

/// The word of thread `serial`'s heap once the pool has closed.
#[inline(always)]
pub(crate) const fn closing(serial: u64) -> u64 {
    serial | CLOSING
}

/// True if `word` names a thread (open or closing), not a reserved state.
#[inline(always)]
pub(crate) const fn is_thread(word: u64) -> bool {
    word != 0 && word >> 62 <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_distinct_and_classified() {
        let s = 7;
        assert!(is_thread(s) && is_thread(closing(s)));
        assert_ne!(closing(s), s);
        for w in [ORPHAN, DEAD, TIER, 0] {
            assert!(!is_thread(w), "{w:#x}");
            assert_ne!(closing(s), w);
        }
        assert_eq!(closing(closing(s)), closing(s));
    }
}
