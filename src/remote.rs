//! The lock-free remote lists: blocks freed on a foreign thread go home
//! through them.
//!
//! [`RemoteStack`] is a slab's MPSC list of freed blocks: any thread pushes
//! with one CAS (Release), the owner takes everything with one
//! `swap(0, Acquire)`. Because the consumer only ever takes the whole list,
//! there is no ABA problem and no bounded queue to spin on.
//!
//! Bit 0 of the head is the *detached* tag: the owner sets it (CAS `0 → TAG`)
//! on a slab that ran full and left its lists. The first pusher to find the
//! tag clears it with its push and must hand the slab back to the owner heap
//! through a [`SlabQueue`] — the owner learns of the free without scanning its
//! full slabs.

use crate::sync::{AtomicPtr, AtomicUsize, Ordering};

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
pub(crate) const TAG: usize = 1;

/// A slab's MPSC stack of remotely freed blocks (addresses; links live in the
/// blocks and are written by the caller's `link` closure).
#[derive(Debug)]
pub(crate) struct RemoteStack {
    head: AtomicUsize,
}

impl RemoteStack {
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicUsize::new(0),
        }
    }

    /// Pushes `block`. `link(block, next)` stores the (untagged) old head in
    /// the block before it is published. Returns true if this push cleared the
    /// detached tag: the caller must then return the slab to its heap.
    #[inline]
    pub(crate) fn push(&self, block: usize, mut link: impl FnMut(usize, usize)) -> bool {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            link(block, head & !TAG);
            match self
                .head
                .compare_exchange_weak(head, block, PUSH, Ordering::Relaxed)
            {
                Ok(_) => return head & TAG != 0,
                Err(now) => head = now,
            }
        }
    }

    /// Owner only: takes the whole list (0 if empty). Never called on a
    /// detached slab, so the result carries no tag.
    #[inline]
    pub(crate) fn take_all(&self) -> usize {
        if self.head.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.head.swap(0, DRAIN)
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
