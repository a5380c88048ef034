//! A magazine: a small LIFO stack of blocks a thread freed, kept by that
//! thread for its next allocations in the same pool (Bonwick & Adams'
//! magazines, one per thread and pool).
//!
//! It is the one place a thread holds freed blocks. Every heap a thread
//! owns has one. A free by that thread of a block of another heap of the
//! pool holds the block ([`Slab::hold`]: its word is `HELD`, so a second
//! free is refused) and pushes its [`Entry`]; the next allocation pops the
//! newest entry, the block freed last and still hot in cache, if the heap
//! allocated nothing since it was held; the older ones wait for a full
//! magazine, a flush, or the heap's slabs to run out. Its own blocks
//! go onto their slabs' freelists, but for the one its heap's hot slot
//! keeps, if it has one (`heap/held.rs`: owner-only, no handshake; a typed
//! pool's heaps only). A full magazine sends its older half home —
//! all of it if its thread allocated nothing since it last made room —
//! ([`Magazine::take_oldest`]; the pool groups it by slab, one publication
//! per slab) and takes the block. So a thread holds back at most `cap`
//! blocks per pool, and they pin at most `cap` slabs.
//!
//! **Owner and thief.** Only the owner pushes and pops. Any thread may
//! *steal* the whole magazine to send its blocks home (a trim, the pool's
//! close, the idle sweep), while the owner runs on — with no lock and no
//! read-modify-write on the owner's side. The handshake is Dekker's, with
//! an asymmetric fence pair:
//!
//! - owner, around each push or pop: `busy = 1`, [`light_fence`], read
//!   `steal`; if set, `busy = 0`, wait until it clears, start over; else
//!   do the operation and `busy = 0` (release);
//! - thief: `steal = 1`, [`heavy_fence`], read `busy`; if set, `steal = 0`
//!   and give up (try again later); else take the entries, `len = 0`,
//!   `steal = 0` (release).
//!
//! The fences guarantee that the owner sees `steal` or the thief sees
//! `busy`, so the two never touch the entries at once. `len` is written by
//! the thief only while the owner is shut out, and the owner reads it only
//! after the handshake, so its value is never stale.

use crate::slab::Entry;
use crate::sync::{heavy_fence, light_fence, AtomicU32, Ordering, Spin, UnsafeCell};

/// Entries a magazine has room for (the `magazine` knob caps what is used).
pub(crate) const CAPACITY: usize = 64;

/// How a push publishes its entry (the new length, then `busy = 0`): a
/// thief that reads either acquires it. Relaxed under the
/// `magazine_publish_relaxed` mutation: loom must then find the thief
/// reading an entry the push has not published.
#[cfg(not(homeslab_mutation = "magazine_publish_relaxed"))]
const PUBLISH: Ordering = Ordering::Release;
#[cfg(homeslab_mutation = "magazine_publish_relaxed")]
const PUBLISH: Ordering = Ordering::Relaxed;

/// One thread's magazine of one pool. The counts come first (`repr(C)`):
/// an empty magazine costs its owner one line.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Magazine {
    /// Entries in use.
    len: AtomicU32,
    /// Entries the owner may use (0: the magazine is off).
    cap: AtomicU32,
    /// The owner is inside a push or pop.
    busy: AtomicU32,
    /// A thief wants the entries.
    steal: AtomicU32,
    slots: UnsafeCell<[Entry; CAPACITY]>,
}

/// What a steal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stolen {
    /// Taken: this many entries were copied out.
    Took(usize),
    /// The owner was inside an operation; try again.
    Busy,
    /// The kernel gave no asymmetric fence: only the owner can empty it.
    Unsupported,
}

impl Magazine {
    pub(crate) fn new() -> Self {
        Self {
            len: AtomicU32::new(0),
            cap: AtomicU32::new(0),
            busy: AtomicU32::new(0),
            steal: AtomicU32::new(0),
            slots: UnsafeCell::new([0; CAPACITY]),
        }
    }

    /// Entries held now (a snapshot; exact while the owner is quiescent).
    pub(crate) fn held(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// Entries the owner may use now (0: off).
    #[inline(always)]
    pub(crate) fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed) as usize
    }

    /// Sets how many entries the owner may use (≤ [`CAPACITY`]), when a
    /// thread takes the heap.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn set_cap(&self, cap: usize) {
        self.cap.store(cap.min(CAPACITY) as u32, Ordering::Relaxed);
    }

    /// Owner: the handshake that shuts thieves out; returns with `busy` set.
    #[inline(always)]
    fn enter(&self) {
        self.busy.store(1, Ordering::Relaxed);
        light_fence();
        // The `magazine_handshake_skipped` mutation ignores the thief: loom
        // must then find both touching the entries.
        #[cfg(not(homeslab_mutation = "magazine_handshake_skipped"))]
        if self.steal.load(Ordering::Acquire) != 0 {
            self.enter_after_thief();
        }
    }

    /// A thief is at work: step back, wait for it, and shake hands again.
    #[cold]
    #[inline(never)]
    fn enter_after_thief(&self) {
        let spin = Spin::new();
        loop {
            self.busy.store(0, Ordering::Release);
            while self.steal.load(Ordering::Acquire) != 0 {
                spin.wait();
            }
            self.busy.store(1, Ordering::Relaxed);
            light_fence();
            if self.steal.load(Ordering::Acquire) == 0 {
                return;
            }
        }
    }

    /// Owner: if there is room, runs `hold` (which takes the block, or
    /// refuses it) and pushes the entry it returns. `Ok(false)`: full (or
    /// off: see [`Magazine::turn_off`]), `hold` not run.
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn push<E>(
        &self,
        hold: impl FnOnce() -> Result<Entry, E>,
    ) -> Result<bool, E> {
        // Off: no handshake (checked again inside it, where a thief that
        // turned the magazine off is seen).
        if self.cap.load(Ordering::Relaxed) == 0 {
            return Ok(false);
        }
        self.enter();
        let n = self.len.load(Ordering::Relaxed);
        let got = if n < self.cap.load(Ordering::Relaxed) {
            hold().map(|e| {
                // SAFETY: the handshake excludes thieves; only the owner is
                // here, and `n < cap ≤ CAPACITY`.
                self.slots
                    .with_mut(|s| unsafe { *(*s).get_unchecked_mut(n as usize) = e });
                self.len.store(n + 1, PUBLISH);
                true
            })
        } else {
            Ok(false)
        };
        self.busy.store(0, PUBLISH);
        got
    }

    /// Owner: true if the magazine holds nothing (as [`Magazine::pop`]
    /// reads it first: a stale answer only sends an allocation to the
    /// slabs, or to `pop`, which checks again).
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Owner: pops the newest entry.
    ///
    /// # Safety
    /// The caller is the owner.
    #[inline(always)]
    pub(crate) unsafe fn pop(&self) -> Option<Entry> {
        // A stale non-zero length is checked again below; a stale zero only
        // sends this allocation to the slabs.
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.enter();
        let n = self.len.load(Ordering::Relaxed);
        let e = if n == 0 {
            None
        } else {
            self.len.store(n - 1, Ordering::Relaxed);
            // SAFETY: as in `push` (`0 < n ≤ CAPACITY`).
            Some(
                self.slots
                    .with(|s| unsafe { *(*s).get_unchecked(n as usize - 1) }),
            )
        };
        self.busy.store(0, Ordering::Release);
        e
    }

    /// Owner: takes every entry (oldest first) into `out`; returns how many.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn take_all(&self, out: &mut [Entry; CAPACITY]) -> usize {
        self.enter();
        let n = self.copy_out(out);
        self.busy.store(0, Ordering::Release);
        n
    }

    /// Owner: takes the `n` oldest entries (or all, if fewer) into `out`,
    /// keeping the newer ones in order; returns how many.
    ///
    /// # Safety
    /// The caller is the owner.
    pub(crate) unsafe fn take_oldest(&self, n: usize, out: &mut [Entry; CAPACITY]) -> usize {
        self.enter();
        let len = self.len.load(Ordering::Relaxed) as usize;
        let n = n.min(len);
        // SAFETY: the handshake excludes thieves; only the owner is here,
        // and `n ≤ len ≤ CAPACITY`.
        self.slots.with_mut(|s| unsafe {
            let s = &mut *s;
            out[..n].copy_from_slice(&s[..n]);
            s.copy_within(n..len, 0);
        });
        self.len.store((len - n) as u32, Ordering::Relaxed);
        self.busy.store(0, Ordering::Release);
        n
    }

    /// Any thread: turns the magazine off (its pool closed); the owner
    /// pushes nothing once a [`Magazine::steal`] that follows has taken the
    /// entries.
    pub(crate) fn turn_off(&self) {
        self.cap.store(0, Ordering::Relaxed);
    }

    /// A thief's first step: asks the owner to keep out. Then one
    /// [`heavy_fence`] serves any number of requests, each finished with
    /// [`Magazine::try_take`]. The caller is the pool's only thief.
    pub(crate) fn request(&self) {
        self.steal.store(1, Ordering::Relaxed);
    }

    /// The thief's last step, after [`Magazine::request`] and a
    /// [`heavy_fence`]: takes every entry into `out` unless the owner is
    /// inside an operation (`None`: request again later), and lets the
    /// owner back in. After `Some`, the thief holds the blocks, and every
    /// later owner operation sees what the thief wrote before its request
    /// (such as [`Magazine::turn_off`]).
    pub(crate) fn try_take(&self, out: &mut [Entry; CAPACITY]) -> Option<usize> {
        let got = if self.busy.load(Ordering::Acquire) != 0 {
            None
        } else {
            Some(self.copy_out(out))
        };
        self.steal.store(0, Ordering::Release);
        got
    }

    /// Any thread but the owner (and one at a time): the whole steal
    /// ([`Magazine::request`], [`heavy_fence`], [`Magazine::try_take`]).
    /// `always`: even if the magazine looks empty.
    pub(crate) fn steal(&self, out: &mut [Entry; CAPACITY], always: bool) -> Stolen {
        if !always && self.len.load(Ordering::Acquire) == 0 {
            return Stolen::Took(0);
        }
        self.request();
        if !heavy_fence() {
            self.steal.store(0, Ordering::Release);
            return Stolen::Unsupported;
        }
        match self.try_take(out) {
            Some(n) => Stolen::Took(n),
            None => Stolen::Busy,
        }
    }

    /// Withdraws a [`Magazine::request`] (the fence failed).
    pub(crate) fn withdraw(&self) {
        self.steal.store(0, Ordering::Release);
    }

    /// True if a [`Magazine::request`] of this thief is pending.
    pub(crate) fn requested(&self) -> bool {
        self.steal.load(Ordering::Relaxed) != 0
    }

    /// Copies the entries out and empties the magazine. Called with the
    /// other side shut out.
    fn copy_out(&self, out: &mut [Entry; CAPACITY]) -> usize {
        let n = self.len.load(Ordering::Acquire) as usize;
        // SAFETY: the caller shut the other side out.
        self.slots
            .with(|s| out[..n].copy_from_slice(unsafe { &(&*s)[..n] }));
        self.len.store(0, Ordering::Relaxed);
        n
    }
}
