//! Sending held blocks home: the owner's flush of its own magazine (all of
//! it, or its older part when it is full), the steal of other threads'
//! magazines (a trim, the close, the idle sweep), and the grouped
//! publication of what either took.

use crate::heap::{Heap, HeapSet};
use crate::magazine::{Stolen, CAPACITY};
use crate::slab::{Chain, Entry, Slab};
use crate::sync::{heavy_fence, unmodelled, Ordering, Spin};

use super::PoolCore;

/// Times a thief retries a magazine whose owner is inside an operation
/// (the window is a few instructions long).
const STEAL_TRIES: usize = 64;

/// Sends every block of `heap`'s magazine home.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn flush_magazine(heap: &Heap) {
    // Only the owner (the caller) fills it: empty now is empty.
    if heap.mag.held() == 0 {
        return;
    }
    let mut out = [0; CAPACITY];
    // SAFETY: per the contract.
    let n = unsafe { heap.mag.take_all(&mut out) };
    // SAFETY: the magazine held these blocks and now we do.
    unsafe { send_home(&mut out[..n]) };
}

/// Makes room in `heap`'s full magazine: sends its older half home (the
/// newer half, likelier still in cache, stays for reuse), or all of it if
/// the owner allocated nothing since it last made room (it only frees: no
/// reuse to keep blocks for, and fewer, longer chains).
///
/// # Safety
/// The calling thread owns `heap`.
#[cold]
#[inline(never)]
pub(crate) unsafe fn send_oldest_home(heap: &Heap) {
    let mut out = [0; CAPACITY];
    let cap = heap.mag.cap();
    // SAFETY: per the contract.
    let n = if unsafe { heap.reusing() } {
        cap.div_ceil(2)
    } else {
        cap
    };
    // SAFETY: per the contract.
    let n = unsafe { heap.mag.take_oldest(n, &mut out) };
    // SAFETY: the magazine held these blocks and now we do.
    unsafe { send_home(&mut out[..n]) };
}

/// Takes every block of `heap`'s magazine, whoever owns it, and sends it
/// home. False if the owner stayed inside an operation (or the kernel has no
/// asymmetric fence): the blocks stay where they are.
fn steal_magazine(heap: &Heap, always: bool) -> bool {
    let mut out = [0; CAPACITY];
    let spin = Spin::new();
    for _ in 0..STEAL_TRIES {
        match heap.mag.steal(&mut out, always) {
            Stolen::Took(n) => {
                // SAFETY: the steal made us the holder of these blocks.
                unsafe { send_home(&mut out[..n]) };
                return true;
            }
            Stolen::Busy => spin.wait(),
            Stolen::Unsupported => return false,
        }
    }
    false
}

/// Publishes held blocks on their slabs' remote lists, one chain per slab
/// (sorting the entries groups them: an entry is its slab's region base
/// above the slot), with one keep-alive and one fence for them all
/// ([`PoolCore::publish_all`]). The frees were counted when the blocks
/// were held.
///
/// # Safety
/// The caller holds every block named in `entries`: at most [`CAPACITY`],
/// all of one pool (one magazine's).
pub(crate) unsafe fn send_home(entries: &mut [Entry]) {
    // Blocks freed in a run usually come grouped already; sort only if a
    // slab comes back after another.
    if !grouped(entries) {
        entries.sort_unstable();
    }
    let mut chains = [(core::ptr::null_mut(), Chain::one(0)); CAPACITY];
    let mut n = 0;
    let mut i = 0;
    while i < entries.len() {
        let base = Slab::entry_base(entries[i]);
        let (slab, first) = Slab::of_any_entry(entries[i]);
        // SAFETY: a held block keeps its slab live.
        let s = unsafe { &*slab };
        s.link_held(first, 0);
        let mut chain = Chain::one(first);
        i += 1;
        while i < entries.len() {
            if Slab::entry_base(entries[i]) != base {
                break;
            }
            let idx = Slab::entry_index(entries[i]);
            s.link_held(idx, chain.first as usize + 1);
            chain.first = idx as u16;
            chain.count += 1;
            i += 1;
        }
        chains[n] = (slab, chain);
        n += 1;
    }
    // SAFETY: we hold the chains' blocks, linked above; a magazine holds
    // blocks of its own pool only, at most `CAPACITY`.
    unsafe { PoolCore::publish_all(&chains[..n]) };
}

impl PoolCore {
    /// Steals the magazines of every heap of this pool but those of the
    /// set `mine` (whose owner, the caller, flushes them itself). Returns
    /// false if one could not be taken.
    pub(super) fn sweep_magazines(&self, mine: Option<HeapSet>) -> bool {
        self.sweep(mine, false)
    }

    /// At the close: turns every magazine of the pool off and empties it,
    /// so that blocks freed from now on go home at once (and their slabs,
    /// once empty, are released). `mine` as in [`PoolCore::sweep_magazines`].
    pub(super) fn close_magazines(&self, mine: Option<HeapSet>) -> bool {
        self.sweep(mine, true)
    }

    fn sweep(&self, mine: Option<HeapSet>, close: bool) -> bool {
        if self.config.magazine == 0 {
            return true; // no heap of this pool ever had one
        }
        // One thief at a time (the handshake is between one owner and one
        // thief), so a pending request below is ours.
        let _one = self.sweeping.lock();
        self.last_sweep
            .store(unmodelled::now_nanos(), Ordering::Relaxed);
        // The heaps each owner has taken into use (an orphan's hold nothing).
        let each = |f: &mut dyn FnMut(&Heap), all: bool| {
            self.registry.for_each_set(|set| {
                if all || mine != Some(set) {
                    let active = self.head(set).active.load(Ordering::Acquire);
                    // SAFETY: the set's classes, read by a thief: holding
                    // only reads and writes their magazines' atomics.
                    unsafe { self.each_in(set, active, |h, _| f(h)) };
                }
            })
        };
        let others = |f: &mut dyn FnMut(&Heap)| each(f, false);
        // Ask every owner to keep out, then one heavy fence for all of them.
        let mut asked = 0;
        if close {
            each(&mut |h| h.mag.turn_off(), true);
        }
        others(&mut |h| {
            if close || h.mag.held() != 0 {
                h.mag.request();
                asked += 1;
            }
        });
        if asked == 0 {
            return true;
        }
        let fenced = heavy_fence();
        let mut all = true;
        let mut out = [0; CAPACITY];
        others(&mut |h| {
            if !h.mag.requested() {
                return;
            }
            if !fenced {
                h.mag.withdraw();
                all = false;
                return;
            }
            match h.mag.try_take(&mut out) {
                // SAFETY: the steal made us the holder of these blocks.
                Some(n) => unsafe { send_home(&mut out[..n]) },
                // The owner was inside an operation: the slow way.
                None => all &= steal_magazine(h, close),
            }
        });
        all
    }

    /// The idle sweep, from an owner's slow path (every
    /// [`TICK`](crate::heap::TICK)th, which reads the clock): once per
    /// `release_after`,
    /// flush this thread's magazine and steal everyone else's, so no block
    /// stays held longer than about that by a thread that went idle.
    pub(super) fn sweep_if_due(&self, heap: &Heap) {
        let Some(period) = self.config.release_after else {
            return;
        };
        // SAFETY: the caller (an owner's slow path) owns `heap`.
        if !unsafe { heap.tick() } {
            return;
        }
        let last = self.last_sweep.load(Ordering::Relaxed);
        if unmodelled::now_nanos().saturating_sub(last) < period.as_nanos() as u64 {
            return;
        }
        let mine = self.my_heaps();
        if let Some(set) = mine {
            let active = self.head(set).active.load(Ordering::Relaxed);
            // SAFETY: this thread owns the set.
            unsafe { self.each_in(set, active, |h, _| flush_magazine(h)) };
        }
        self.sweep_magazines(mine);
    }
}

/// True if each slab's entries are contiguous in `entries` (checked for up
/// to two slabs in turn, the common case; more count as not grouped).
fn grouped(entries: &[Entry]) -> bool {
    let mut seen = [0; 2];
    let mut runs = 0;
    let mut last = 0;
    for &e in entries {
        let slab = Slab::entry_base(e);
        if slab == last {
            continue;
        }
        if runs == seen.len() || seen[..runs].contains(&slab) {
            return false;
        }
        seen[runs] = slab;
        runs += 1;
        last = slab;
    }
    true
}
