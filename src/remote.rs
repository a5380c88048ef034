//! The lock-free remote lists: blocks freed on a foreign thread go home
//! through them.
//!
//! [`RemoteStack`] is a slab's MPSC list of freed blocks: any thread pushes a
//! chain of blocks (one, or those of the slab a magazine sent home) with one CAS
//! (Release), the owner takes everything with one `swap(0, Acquire)`. Because
//! the consumer only ever takes the whole list, there is no ABA problem and no
//! bounded queue to spin on; because the head also counts the blocks, the
//! owner splices the chain onto its freelist without walking it.
//!
//! Bit 0 of the head is the *detached* tag: the owner sets it (CAS `0 → TAG`)
//! on a slab that ran full and left its lists. The first pusher to find the
//! tag clears it with its push and must hand the slab back to the owner heap
//! through a [`SlabQueue`] — the owner learns of the free without scanning its
//! full slabs.

use crate::sync::{AtomicPtr, AtomicU64, Ordering};

/// The success ordering of a remote push (Release publishes the link and the
/// freed state to the draining owner). `homeslab_mutation` weakens it so loom
/// can show that it matters.
#[cfg(not(homeslab_mutation = "remote_push_relaxed"))]
const PUSH: Ordering = Ordering::Release;
#[cfg(homeslab_mutation = "remote_push_relaxed")]
const PUSH: Ordering = Ordering::Relaxed;

/// The ordering of the owner's drain (Acquire pairs with [`PUSH`]).
#[cfg(not(homeslab_mutation = "drain_relaxed"))]
const DRAIN: Ordering = Ordering::Acquire;
#[cfg(homeslab_mutation = "drain_relaxed")]
const DRAIN: Ordering = Ordering::Relaxed;

/// The ordering of a returned-slab push (Release publishes the slab's link).
#[cfg(not(homeslab_mutation = "returned_push_relaxed"))]
const RETURN: Ordering = Ordering::Release;
#[cfg(homeslab_mutation = "returned_push_relaxed")]
const RETURN: Ordering = Ordering::Relaxed;

/// The detached tag in a [`RemoteStack`] head.
pub(crate) const TAG: u64 = 1;

/// A slab's MPSC stack of remotely freed blocks. The head word packs the top
/// block's slot index (plus one, so 0 is "empty") and how many blocks the
/// stack holds, so the owner takes the whole chain *and its length* with one
/// swap and can splice it without walking it. Links live in the slab's link
/// array, beside the slot states; the caller's `link` closure writes them.
///
/// Head layout: bit 0 the detached tag, bits 1–31 top index + 1, bits 32–63
/// the count. Slabs hold fewer than 2^30 slots (`Geometry` keeps them far
/// smaller).
#[derive(Debug)]
pub(crate) struct RemoteStack {
    head: AtomicU64,
}

/// What the owner took off a [`RemoteStack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Slot index of the most recently pushed block (the chain's first).
    pub(crate) top: usize,
    /// Blocks in the chain.
    pub(crate) count: usize,
}

#[inline(always)]
fn decode(head: u64) -> Option<Taken> {
    let top = ((head as u32) >> 1) as usize;
    (top != 0).then(|| Taken {
        top: top - 1,
        count: (head >> 32) as usize,
    })
}

impl RemoteStack {
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicU64::new(0),
        }
    }

    /// Pushes a chain of `count` blocks whose first block is slot `top`.
    /// `link(old_top)` stores the link from the chain's last block to the old
    /// top (`None`: the stack was empty) before the chain is published.
    /// Returns true if this push cleared the detached tag: the caller must
    /// then return the slab to its heap.
    #[inline]
    pub(crate) fn push(
        &self,
        top: usize,
        count: usize,
        mut link: impl FnMut(Option<usize>),
    ) -> bool {
        debug_assert!(top < 1 << 30 && count < 1 << 30);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let old = decode(head);
            link(old.map(|t| t.top));
            let total = old.map_or(0, |t| t.count) + count;
            let new = ((total as u64) << 32) | (((top + 1) as u64) << 1);
            match self
                .head
                .compare_exchange_weak(head, new, PUSH, Ordering::Relaxed)
            {
                Ok(_) => return head & TAG != 0,
                Err(now) => head = now,
            }
        }
    }

    /// Owner only: takes the whole chain (`None` if empty). Never called on a
    /// detached slab. Always a swap, never a plain load first: a read-modify-
    /// write sees the latest push, so a chain published just before (say by
    /// a freer's thread-exit flush) is never missed by a stale read.
    #[inline]
    pub(crate) fn take_all(&self) -> Option<Taken> {
        decode(self.head.swap(0, DRAIN))
    }

    /// True if a pushed chain waits (a relaxed look: may miss a push in
    /// flight, never invents one).
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        decode(self.head.load(Ordering::Relaxed)).is_some()
    }

    /// Owner only: marks the slab detached if no block is pending.
    pub(crate) fn try_detach(&self) -> bool {
        self.head
            .compare_exchange(0, TAG, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Owner only: takes a detached slab back. False if a pusher already
    /// claimed it (the slab is then on its way through the returned queue).
    pub(crate) fn try_reattach(&self) -> bool {
        self.head
            .compare_exchange(TAG, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// An MPSC stack of slabs (a heap's *returned* queue), linked through a field
/// of each slab that `next_of` names.
#[derive(Debug)]
pub(crate) struct SlabQueue<S> {
    head: AtomicPtr<S>,
}

impl<S> SlabQueue<S> {
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Pushes `slab`, linking it through `next_of(slab)`.
    pub(crate) fn push(&self, slab: *mut S, next_of: impl Fn(*mut S) -> *const AtomicPtr<S>) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `next_of` yields the link field of a live slab, which only
            // the single pusher holding the slab writes until it is published.
            unsafe { (*next_of(slab)).store(head, Ordering::Relaxed) };
            match self
                .head
                .compare_exchange_weak(head, slab, RETURN, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Consumer only: takes the whole queue (null if empty).
    pub(crate) fn take_all(&self) -> *mut S {
        if self.head.load(Ordering::Relaxed).is_null() {
            return core::ptr::null_mut();
        }
        self.head.swap(core::ptr::null_mut(), Ordering::Acquire)
    }
}
