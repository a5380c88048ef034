//! Loom models of homeslab, and the few helpers they share.
//!
//! The models live in `tests/*.rs`, each guarded by `#![cfg(loom)]`. They
//! drive homeslab's production types compiled with `RUSTFLAGS="--cfg loom"`,
//! where homeslab's `sync` facade swaps its atomics, cells, locks and
//! thread-locals for loom's. Run them with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p loom-tests --release
//! ```
//!
//! A pool's defaults are the same under loom. Models that are not about
//! magazines build their pools with `.magazine(0)`: the magazine's
//! handshake adds branch points to every operation, and `tests/magazine.rs`
//! (with `remote::held_chain_races_owner_drain`) models it on its own.
//!
//! This library builds without `cfg(loom)` as well: its helpers are plain
//! Rust and do not depend on loom.

#![deny(missing_docs)]

use homeslab::{Pool, PoolBox};

/// A stamped block: an id and a checksum derived from it. A block that was
/// handed out twice, overwritten, or corrupted while live fails
/// [`Stamp::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Stamp {
    /// The id the allocating code chose.
    pub id: u64,
    /// `checksum(id)`.
    pub check: u64,
}

/// The checksum stored beside an id (a cheap mixing function: any change to
/// either word shows).
pub fn checksum(id: u64) -> u64 {
    let mut x = id ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

impl Stamp {
    /// A stamp for `id`.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            check: checksum(id),
        }
    }

    /// True if the checksum matches the id.
    pub fn is_intact(&self) -> bool {
        self.check == checksum(self.id)
    }

    /// Panics unless the stamp is intact and carries `id`.
    #[track_caller]
    pub fn verify(&self, id: u64) {
        assert!(self.is_intact(), "block corrupted: {self:?}");
        assert_eq!(self.id, id, "block handed out twice or overwritten");
    }
}

/// The address of a block (for identity checks only).
pub fn addr<T>(b: &PoolBox<T>) -> usize {
    &**b as *const T as usize
}

/// Allocates a stamped block with `id`, panicking on failure.
#[track_caller]
pub fn alloc(pool: &Pool<Stamp>, id: u64) -> PoolBox<Stamp> {
    let b = pool.alloc(Stamp::new(id)).expect("allocation failed");
    b.verify(id);
    b
}

/// Verifies `b` carries `id`, then drops (frees) it and sends home what
/// this thread holds ([`homeslab::flush_remote_frees`]).
///
/// Why the explicit flush: a thread's magazines are also sent home by its
/// exit hooks, and `std`'s `JoinHandle::join` returns only after those ran.
/// loom's `join` does not wait for them, so in a model a joined thread's
/// exit may still be in flight. Models therefore flush explicitly where a
/// free must be home; holding several blocks and sending them home as one
/// chain is modelled with [`free_held`] (and a pool with a magazine: off by
/// default under loom).
#[track_caller]
pub fn free(b: PoolBox<Stamp>, id: u64) {
    free_held(b, id);
    homeslab::flush_remote_frees();
}

/// Verifies `b` carries `id`, then drops (frees) it: a remote free stays in
/// this thread's magazine, if the pool has one, until the thread flushes.
#[track_caller]
pub fn free_held(b: PoolBox<Stamp>, id: u64) {
    b.verify(id);
    drop(b);
}

/// Panics if two of `blocks` share an address (the same block handed out
/// twice while live), or if any stamp is not intact.
#[track_caller]
pub fn assert_distinct(blocks: &[&PoolBox<Stamp>]) {
    for (i, a) in blocks.iter().enumerate() {
        assert!(a.is_intact(), "block {i} corrupted: {:?}", ***a);
        for b in &blocks[i + 1..] {
            assert_ne!(addr(a), addr(b), "one block handed out twice");
        }
    }
}

/// Panics unless the pool has no live block, saw no double free, and no
/// corrupted link.
#[track_caller]
pub fn assert_clean<T>(pool: &Pool<T>) {
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0, "blocks lost: {s:?}");
    assert_eq!(s.allocs, s.frees, "allocs and frees disagree: {s:?}");
    assert_eq!(s.double_frees, 0, "double frees: {s:?}");
    assert_eq!(s.foreign_frees, 0, "foreign frees: {s:?}");
    assert_eq!(s.corruption_events, 0, "corruption: {s:?}");
}

/// Outcomes a model saw across all of loom's executions. A model records
/// which way each race went ([`Outcomes::saw`]) and, once `loom::model`
/// returns, checks that every expected way was explored
/// ([`Outcomes::assert_seen`]): a model whose race loom never explored
/// proves nothing. Lives in a `static` (plain std, not modelled by loom).
#[derive(Debug)]
pub struct Outcomes(std::sync::Mutex<std::collections::BTreeSet<&'static str>>);

impl Outcomes {
    /// No outcome seen yet.
    pub const fn new() -> Self {
        Self(std::sync::Mutex::new(std::collections::BTreeSet::new()))
    }

    /// Records that `what` happened in this execution.
    pub fn saw(&self, what: &'static str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(what);
    }

    /// Panics unless every outcome in `all` was seen at least once.
    #[track_caller]
    pub fn assert_seen(&self, all: &[&'static str]) {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for w in all {
            assert!(seen.contains(w), "loom never explored `{w}` (saw {seen:?})");
        }
    }
}

impl Default for Outcomes {
    fn default() -> Self {
        Self::new()
    }
}

/// A schedule hint for loom models: a relaxed flag with no synchronizing
/// effect. A thread calls [`Sched::done`] after the operation under test and
/// another calls [`Sched::point`] just before the operation it races with.
///
/// Loom's partial-order reduction only backtracks to the *last* access of an
/// object; when a racing thread loads an atomic before it CASes it (every
/// push here does), the owner's earlier load is masked and loom never tries
/// running the whole push first. The hint's store and load are a dependency
/// loom does see, so it explores both orders. Relaxed both ways, it adds no
/// happens-before edge that could hide a missing Release or Acquire. Use one
/// hint per racing thread (a second marker's store would again mask the
/// load).
#[cfg(loom)]
#[derive(Clone, Debug, Default)]
pub struct Sched(loom::sync::Arc<loom::sync::atomic::AtomicUsize>);

#[cfg(loom)]
impl Sched {
    /// A fresh hint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the end of an operation another thread races with.
    pub fn done(&self) {
        self.0.store(1, core::sync::atomic::Ordering::Relaxed);
    }

    /// A point where loom should also try running the marked operation
    /// first. Returns whether it was seen done (informational only: without
    /// synchronization it proves nothing).
    pub fn point(&self) -> bool {
        self.0.load(core::sync::atomic::Ordering::Relaxed) != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stamps_detect_changes() {
        let s = Stamp::new(7);
        s.verify(7);
        assert!(!Stamp {
            id: 8,
            check: s.check
        }
        .is_intact());
    }

    #[test]
    fn helpers_work_on_a_real_pool() {
        let pool = Pool::<Stamp>::builder().slab_capacity(2).build().unwrap();
        let a = alloc(&pool, 1);
        let b = alloc(&pool, 2);
        assert_distinct(&[&a, &b]);
        free(a, 1);
        free(b, 2);
        assert_clean(&pool);
    }
}
