//! The freeing half of a slab: the owner's local free, the remote freer's
//! mark and chain push, and the owner's drain and detach/reattach of its
//! remote list (see the parent module's docs).

#[cfg(test)]
use super::Freed;
use super::{handed_out, Chain, DoubleFree, Shape, Slab, ALLOCATED, CONSTRUCTED};
use crate::sync::{bump, AtomicU64, Ordering};

impl Slab {
    /// Owner: frees slot `idx` onto the local freelist, dropping `used` by
    /// one. The slot keeps its object if its word says so ([`CONSTRUCTED`],
    /// carried into the link). `Ok(true)`: the slab is now empty or is
    /// detached, so its list needs upkeep.
    ///
    /// # Safety
    /// The caller is the owner; `idx` came from [`Slab::slot_index`].
    #[inline(always)]
    pub(crate) unsafe fn free_local(&self, idx: usize, shape: Shape) -> Result<bool, DoubleFree> {
        let w = self.word(idx).load(Ordering::Relaxed);
        if !handed_out(w) {
            return Err(DoubleFree);
        }
        super::asan::mark(self.slot(idx), self.shape.stride as usize, true);
        // SAFETY: the caller is the owner; the block is ours and now free.
        Ok(unsafe { self.push_local(idx, w & CONSTRUCTED, self.hardened_in(shape)) })
    }

    /// Owner: links slot `idx`, which the caller frees, onto the local
    /// freelist with `mark` ([`CONSTRUCTED`] or 0), encoded in the mode
    /// `hardened` ([`Slab::hardened_in`]). True: the slab is now empty or
    /// detached.
    ///
    /// # Safety
    /// The caller is the owner and holds slot `idx`.
    #[inline(always)]
    pub(super) unsafe fn push_local(&self, idx: usize, mark: u16, hardened: bool) -> bool {
        // SAFETY: per the contract.
        unsafe {
            self.local(|l| {
                self.write_link(idx, self.encode_in(idx, l.free, hardened) | mark);
                l.free = idx + 1;
                l.count = l.count.wrapping_sub(1);
                // Empty (0) or detached (negative).
                l.count as isize <= 0
            })
        }
    }

    /// The holder of handed-out slot `idx` (below the capacity) of an
    /// object pool's slab: the slot holds no object any more (dropped, or
    /// never constructed), so its word loses the constructed mark and the
    /// free that follows, on any thread, leaves the slot unconstructed.
    #[inline]
    pub(crate) fn unconstruct(&self, idx: usize) {
        let word = self.word(idx);
        debug_assert!(self.shape.caching && handed_out(word.load(Ordering::Relaxed)));
        word.store(ALLOCATED, Ordering::Relaxed);
    }

    /// Any thread: frees `addr` onto the remote list (a chain of one).
    #[cfg(test)]
    pub(crate) fn free_remote(&self, addr: usize) -> Freed {
        let idx = self
            .slot_index(addr, self.shape)
            .expect("a slot of this slab");
        match self.mark_remote(idx, 0) {
            Ok(()) => {
                // SAFETY: the mark made this thread the holder of the block.
                let claimed = unsafe { self.push_chain(Chain::one(idx)) };
                Freed::Ok { claimed }
            }
            Err(DoubleFree) => Freed::DoubleFree,
        }
    }

    /// Any thread: the first half of a remote free. Replaces slot `idx`'s
    /// (from [`Slab::slot_index`]) handed-out word with its link in the
    /// chain the caller is gathering — `next` is the following slot's
    /// index plus one, 0 for the end — which makes the caller the holder
    /// of the block until it pushes the chain with [`Slab::push_chain`].
    /// One store (or, hardened, one CAS) checks and links, keeping the
    /// word's constructed mark ([`Slab::release_word`]).
    #[inline]
    pub(crate) fn mark_remote(&self, idx: usize, next: usize) -> Result<(), DoubleFree> {
        self.release_word(idx, self.encode(idx, next))
    }

    /// Any thread that does not own the slab: replaces slot `idx`'s
    /// handed-out word with `free` (a link or `HELD`, below
    /// [`CONSTRUCTED`]) plus the word's constructed mark, refusing a slot
    /// that is not handed out, and poisons the block (the caller holds it
    /// now). Plain: a load and a store — catches every double free that
    /// does not race with another free of the same block (that race is a
    /// data race in the caller). Hardened: a CAS from the handed-out word,
    /// which catches even two threads freeing the block at once.
    #[inline(always)]
    pub(super) fn release_word(&self, idx: usize, free: u16) -> Result<(), DoubleFree> {
        debug_assert!(free < CONSTRUCTED);
        let word = self.word(idx);
        if self.hardened {
            // Outside object pools a handed-out word is a bare `ALLOCATED`:
            // the CAS expects it, with no load before it. A failed CAS
            // returns the word it found; in a caching slab, a handed-out
            // word with the constructed mark is swapped from that.
            let relaxed = Ordering::Relaxed;
            if let Err(w) = word.compare_exchange(ALLOCATED, free, relaxed, relaxed) {
                if w != ALLOCATED | CONSTRUCTED
                    || !self.shape.caching
                    || word
                        .compare_exchange(w, free | CONSTRUCTED, relaxed, relaxed)
                        .is_err()
                {
                    return Err(DoubleFree);
                }
            }
        } else {
            let w = word.load(Ordering::Relaxed);
            if !handed_out(w) {
                return Err(DoubleFree);
            }
            word.store(free | (w & CONSTRUCTED), Ordering::Relaxed);
        }
        super::asan::mark(self.slot(idx), self.shape.stride as usize, true);
        Ok(())
    }

    /// Publishes a chain of `count` held blocks, linked from slot `first`
    /// to slot `last`, on the remote list with one CAS. Returns true if this
    /// push took the detached tag: the caller must return the slab to its
    /// heap.
    ///
    /// # Safety
    /// The caller holds every block of the chain, and the links between them
    /// are written (by [`Slab::mark_remote`]).
    #[inline]
    pub(crate) unsafe fn push_chain(&self, c: Chain) -> bool {
        let last = c.last as usize;
        // The caller holds `last` until the push publishes it: its
        // constructed mark is ours to keep.
        let mark = self.read_link(last) & CONSTRUCTED;
        self.remote.push(c.first as usize, c.count as usize, |old| {
            let next = old.map_or(0, |i| i + 1);
            self.write_link(last, self.encode(last, next) | mark);
        })
    }

    /// Owner: moves every remotely freed block onto the local freelist and
    /// returns how many arrived. The head counts the chain, so when the local
    /// list is empty (the usual case: the owner drains when it runs dry) the
    /// chain is spliced in whole and its links are read — and, hardened,
    /// checked — only as blocks are popped. Otherwise it is walked to find
    /// its tail; a corrupt link (hardened) then cuts it.
    ///
    /// # Safety
    /// The caller is the owner and the slab is not detached.
    pub(crate) unsafe fn drain(&self, corruption: &AtomicU64) -> usize {
        let Some(taken) = self.remote.take_all() else {
            return 0;
        };
        // SAFETY: the caller is the owner; the taken chain is ours alone.
        unsafe {
            self.local(|l| {
                l.count = l.used() - taken.count.min(l.used());
                if l.free == 0 {
                    l.free = taken.top + 1;
                    return taken.count;
                }
                let mut tail = taken.top;
                for _ in 1..taken.count {
                    match self.decode(tail, self.read_link(tail), l.bump, self.shape.caching) {
                        Some(next) if next != 0 => tail = next - 1,
                        _ => {
                            // Corrupt (or cut short): keep what we walked.
                            bump(corruption, 1);
                            break;
                        }
                    }
                }
                let mark = self.read_link(tail) & CONSTRUCTED;
                self.write_link(tail, self.encode(tail, l.free) | mark);
                l.free = taken.top + 1;
                taken.count
            })
        }
    }

    /// Owner: tries to detach a slab that ran dry (no local or remote block).
    /// False: a remote block arrived; drain and keep using it.
    pub(crate) fn try_detach(&self) -> bool {
        self.remote.try_detach()
    }

    /// Owner: takes back a detached slab. False: a remote freer claimed it and
    /// it will come back through the returned queue.
    pub(crate) fn try_reattach(&self) -> bool {
        self.remote.try_reattach()
    }
}
