//! The large blocks' arena: page-granular spans carved from big chunks,
//! coalesced when freed, purged when idle. Bookkeeping only: it runs under
//! the large lock and makes no system call; [`crate::large`] maps chunks,
//! purges and unmaps outside the lock with what it hands out.
//!
//! Free spans are kept in one list ordered by address and served by
//! address-ordered first fit: coalescing a freed span needs its neighbours
//! by address anyway (a binary search), low addresses are reused first so
//! the tops of chunks and whole late chunks empty out for `trim()`, and
//! the list stays short (spans coalesce; a chunk holds few large blocks).
//!
//! A free span carries `dirty`: how many of its bytes may be resident (an
//! upper bound — carving does not know which pages were touched, so the
//! leftover keeps as many dirty bytes as fit in it). The byte budget is
//! charged for the bytes in blocks plus every span's `dirty`, so purging a
//! span refunds exactly what it charged.

use std::time::Instant;

use crate::error::AllocError;
use crate::meta::{mvec, MVec};
use crate::os::{Backing, HUGE_PAGE, PAGE};

/// Bytes mapped per chunk (smaller under Miri and loom, where a chunk is a
/// zeroed heap allocation).
pub(crate) const CHUNK_BYTES: usize = if cfg!(any(miri, loom)) {
    1 << 20
} else {
    64 << 20
};
/// The largest span (with its alignment slack) carved from a chunk; larger
/// blocks get a mapping of their own.
pub(crate) const MAX_SPAN: usize = CHUNK_BYTES / 2;

/// One mapping the arena carves from.
pub(crate) struct Chunk {
    /// Owns the mapping (dropping it unmaps).
    _backing: Backing,
    /// First page of the span area (`CHUNK_BYTES` long).
    base: usize,
    /// Address space held.
    reserved: usize,
    /// Bytes in blocks, or out of the free list while being purged: a
    /// chunk with none is wholly free.
    busy: usize,
}

// SAFETY: a chunk's memory is owned by the chunk alone (under Miri and loom
// through a raw pointer that only frees it).
unsafe impl Send for Chunk {}

impl Chunk {
    /// Maps a chunk (a system call, two if `huge`: outside the lock). With
    /// `huge`, the chunk is aligned to [`HUGE_PAGE`] and asks for huge
    /// pages ([`Backing::prefer_huge_pages`]).
    pub(crate) fn map(huge: bool) -> Result<Chunk, AllocError> {
        let align = if huge { HUGE_PAGE } else { PAGE };
        let (backing, base, reserved) = Backing::map(CHUNK_BYTES, align)?;
        if huge {
            backing.prefer_huge_pages();
        }
        Ok(Chunk {
            _backing: backing,
            base,
            reserved,
            busy: 0,
        })
    }

    /// Address space the chunk holds.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    fn contains(&self, addr: usize) -> bool {
        (self.base..self.base + CHUNK_BYTES).contains(&addr)
    }
}

/// A free span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) addr: usize,
    pub(crate) len: usize,
    /// Bytes that may be resident (charged to the budget), at most `len`.
    pub(crate) dirty: usize,
    /// When the latest dirty bytes were freed into it.
    pub(crate) since: Instant,
}

/// A span carved for a block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Carved {
    pub(crate) addr: usize,
    pub(crate) len: usize,
    /// True if every byte reads zero (carved from a span with no dirty bytes).
    pub(crate) zeroed: bool,
}

pub(crate) struct Arena {
    chunks: MVec<Chunk>,
    /// Free spans by address; never two adjacent ones of one chunk.
    free: MVec<Span>,
}

/// Rounds `n` up to a page; `None` on overflow.
pub(crate) fn page_up(n: usize) -> Option<usize> {
    Some(n.checked_add(PAGE - 1)? & !(PAGE - 1))
}

impl Arena {
    pub(crate) const fn new() -> Self {
        Self {
            chunks: mvec(),
            free: mvec(),
        }
    }

    /// Adds a freshly mapped chunk as one clean free span; gives it back if
    /// there is no memory for the lists.
    pub(crate) fn add_chunk(&mut self, chunk: Chunk, now: Instant) -> Result<(), Chunk> {
        if self.chunks.try_reserve(1).is_err() || self.free.try_reserve(1).is_err() {
            return Err(chunk);
        }
        let span = Span {
            addr: chunk.base,
            len: CHUNK_BYTES,
            dirty: 0,
            since: now,
        };
        self.chunks.push(chunk);
        let at = self.free.partition_point(|s| s.addr < span.addr);
        self.free.insert(at, span);
        Ok(())
    }

    fn chunk_of(&mut self, addr: usize) -> &mut Chunk {
        self.chunks
            .iter_mut()
            .find(|c| c.contains(addr))
            .expect("a span lies in a chunk")
    }

    /// Carves `len` bytes (a multiple of [`PAGE`]) aligned to `align` from
    /// the first free span that holds them, after `charge` accepted the
    /// bytes the budget does not hold yet. `Ok(None)`: no span fits.
    pub(crate) fn carve(
        &mut self,
        len: usize,
        align: usize,
        charge: impl FnOnce(u64) -> Result<(), AllocError>,
    ) -> Result<Option<Carved>, AllocError> {
        let align = align.max(PAGE);
        let fits = |s: &Span| {
            let start = (s.addr + align - 1) & !(align - 1);
            start + len <= s.addr + s.len
        };
        let Some(i) = self.free.iter().position(fits) else {
            return Ok(None);
        };
        let s = self.free[i];
        let start = (s.addr + align - 1) & !(align - 1);
        self.cut(i, start, len, charge).map(Some)
    }

    /// Carves `start..start + len` out of free span `i` (which holds it):
    /// the pieces before and after stay free.
    fn cut(
        &mut self,
        i: usize,
        start: usize,
        len: usize,
        charge: impl FnOnce(u64) -> Result<(), AllocError>,
    ) -> Result<Carved, AllocError> {
        let s = self.free[i];
        let front = start - s.addr;
        let back = s.addr + s.len - (start + len);
        // The pieces left keep as many dirty bytes as they can hold; the
        // block takes the rest, already charged.
        let rest_dirty = s.dirty.min(front + back);
        let front_dirty = rest_dirty.min(front);
        let absorbed = s.dirty - rest_dirty;
        let pieces = usize::from(front > 0) + usize::from(back > 0);
        if pieces == 2 && self.free.try_reserve(1).is_err() {
            return Err(AllocError::OutOfMemory);
        }
        charge((len - absorbed) as u64)?;
        let piece = |addr, len, dirty| Span {
            addr,
            len,
            dirty,
            since: s.since,
        };
        let (f, b) = (
            piece(s.addr, front, front_dirty),
            piece(start + len, back, rest_dirty - front_dirty),
        );
        match (front > 0, back > 0) {
            (false, false) => {
                self.free.remove(i);
            }
            (true, false) => self.free[i] = f,
            (false, true) => self.free[i] = b,
            (true, true) => {
                self.free[i] = f;
                self.free.insert(i + 1, b);
            }
        }
        self.chunk_of(start).busy += len;
        Ok(Carved {
            addr: start,
            len,
            zeroed: s.dirty == 0,
        })
    }

    /// Grows the block `addr..addr + len` in place to `new` bytes (a
    /// multiple of [`PAGE`]) if the span right after it in its chunk is
    /// free and long enough. The grown part, or `Ok(None)`.
    pub(crate) fn grow(
        &mut self,
        addr: usize,
        len: usize,
        new: usize,
        charge: impl FnOnce(u64) -> Result<(), AllocError>,
    ) -> Result<Option<Carved>, AllocError> {
        let end = addr + len;
        let i = self.free.partition_point(|s| s.addr < end);
        let next = self.free.get(i).copied();
        let same_chunk = self.chunk_of(addr).contains(end);
        match next {
            Some(s) if same_chunk && s.addr == end && s.len >= new - len => {
                self.cut(i, end, new - len, charge).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Frees `addr..addr + len` (a block, or a span back from a purge),
    /// `dirty` of its bytes possibly resident, merging it with its free
    /// neighbours in its chunk. False (nothing changed) if there is no
    /// memory for the list.
    #[must_use]
    pub(crate) fn give(&mut self, addr: usize, len: usize, dirty: usize, now: Instant) -> bool {
        if self.free.try_reserve(1).is_err() {
            return false;
        }
        let chunk = self.chunk_of(addr);
        chunk.busy -= len;
        let (lo, hi) = (chunk.base, chunk.base + CHUNK_BYTES);
        let mut span = Span {
            addr,
            len,
            dirty,
            since: now,
        };
        let mut i = self.free.partition_point(|s| s.addr < addr);
        if let Some(next) = self.free.get(i).copied() {
            if next.addr == addr + len && next.addr < hi {
                span = merge(span, next);
                self.free.remove(i);
            }
        }
        if i > 0 {
            let prev = self.free[i - 1];
            if prev.addr + prev.len == addr && prev.addr >= lo {
                span = merge(prev, span);
                self.free.remove(i - 1);
                i -= 1;
            }
        }
        self.free.insert(i, span);
        true
    }

    /// Takes the free spans with dirty bytes freed at or before `cutoff`
    /// (all, if `None`) out of the list for a purge, while `out` has room;
    /// their chunks count them busy until they come back ([`Arena::give`]),
    /// so no chunk is unmapped under the purge.
    pub(crate) fn take_dirty(&mut self, cutoff: Option<Instant>, out: &mut MVec<Span>) {
        let mut i = 0;
        while i < self.free.len() {
            let s = self.free[i];
            if s.dirty > 0 && cutoff.map_or(true, |c| s.since <= c) && out.try_reserve(1).is_ok() {
                self.free.remove(i);
                self.chunk_of(s.addr).busy += s.len;
                out.push(s);
            } else {
                i += 1;
            }
        }
    }

    /// Bytes of the free spans that may be resident.
    pub(crate) fn dirty_bytes(&self) -> usize {
        self.free.iter().map(|s| s.dirty).sum()
    }

    /// Takes the free spans with dirty bytes out for a purge, the longest
    /// free first, until those left hold at most `keep` dirty bytes (or
    /// `out` has no room); as [`Arena::take_dirty`] otherwise.
    pub(crate) fn take_dirty_over(&mut self, keep: usize, out: &mut MVec<Span>) {
        let mut dirty = self.dirty_bytes();
        while dirty > keep {
            let oldest = (0..self.free.len())
                .filter(|&i| self.free[i].dirty > 0)
                .min_by_key(|&i| self.free[i].since);
            let Some(i) = oldest else { break };
            if out.try_reserve(1).is_err() {
                break;
            }
            let s = self.free.remove(i);
            self.chunk_of(s.addr).busy += s.len;
            dirty -= s.dirty;
            out.push(s);
        }
    }

    /// Takes the chunks wholly free out (to be unmapped outside the lock),
    /// with the dirty bytes their spans still held; at most as many as
    /// `out` has room for.
    pub(crate) fn take_empty(&mut self, out: &mut MVec<Chunk>) -> usize {
        let mut dirty = 0;
        let mut i = 0;
        while i < self.chunks.len() {
            if self.chunks[i].busy == 0 && out.try_reserve(1).is_ok() {
                let c = self.chunks.swap_remove(i);
                let at = self.free.partition_point(|s| s.addr < c.base);
                let s = self.free.remove(at);
                debug_assert_eq!((s.addr, s.len), (c.base, CHUNK_BYTES));
                dirty += s.dirty;
                out.push(c);
            } else {
                i += 1;
            }
        }
        dirty
    }

    /// The free spans, by address (for tests).
    #[cfg(test)]
    pub(crate) fn free_spans(&self) -> &[Span] {
        &self.free
    }
}

/// Two adjacent free spans as one: dirty bytes add up, the later free time
/// counts.
fn merge(a: Span, b: Span) -> Span {
    Span {
        addr: a.addr,
        len: a.len + b.len,
        dirty: a.dirty + b.dirty,
        since: match (a.dirty, b.dirty) {
            (0, _) => b.since,
            (_, 0) => a.since,
            _ => a.since.max(b.since),
        },
    }
}

#[cfg(test)]
mod tests;
