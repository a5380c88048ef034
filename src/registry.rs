//! The per-pool registry of thread heaps: every heap set a thread ever had
//! in one pool core, found again by the thread that has it.
//!
//! A *set* is one heap per size class of the core (one for a `Pool`, one
//! per class for a `SlabAlloc`), contiguous, so that class `c`'s heap is
//! the set's first heap plus `c`. A thread takes, owns and gives up a set
//! as a whole.
//!
//! Sets live in buckets of meta memory indexed by the thread's registry
//! id ([`thread::registry_id`]): bucket `b` holds ids `2^b - 1 ..
//! 2^(b+1) - 1`, allocated when a thread with such an id first comes, never
//! moved. Ids are dense and reused smallest first once a thread has
//! exited, so the next new thread finds an exited thread's set in its
//! slot — free adoption, which homeslab relies on. Nothing here calls the
//! global allocator (homeslab may be it). The fast path never comes here:
//! the thread context ([`crate::thread`]) caches the set a thread owns.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::heap::{Heap, HeapSet};
use crate::meta;
use crate::sync::{self, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use crate::thread;

/// Buckets: ids below 2^32.
const BUCKETS: usize = 32;

/// The per-pool sets of thread heaps.
pub(crate) struct Registry {
    buckets: [AtomicPtr<u8>; BUCKETS],
    /// One past the highest bucket that may be published: raised before a
    /// bucket is, so whoever sees a set sees its bucket below `top`, and
    /// [`Registry::for_each_set`] reads no bucket above.
    top: AtomicUsize,
    /// Heaps per set.
    classes: usize,
}

/// The bucket and index of registry id `id`.
fn place(id: usize) -> (usize, usize) {
    let n = id + 1;
    let b = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (b, n - (1 << b))
}

impl Registry {
    /// A registry of sets of `classes` heaps (at least 1).
    pub(crate) fn new(classes: usize) -> Self {
        Self {
            buckets: core::array::from_fn(|_| AtomicPtr::new(core::ptr::null_mut())),
            top: AtomicUsize::new(0),
            classes: classes.max(1),
        }
    }

    /// Bucket `b`'s layout: `2^b` presence flags, then `2^b` sets of heaps;
    /// and the offset of the sets.
    fn layout(&self, b: usize) -> Option<(Layout, usize)> {
        let n = 1usize << b;
        let flags = Layout::array::<AtomicBool>(n).ok()?;
        let sets = Layout::array::<Heap>(n.checked_mul(self.classes)?).ok()?;
        flags.extend(sets).ok()
    }

    /// The presence flag and set of slot `i` of bucket `bucket`.
    ///
    /// # Safety
    /// `bucket` is a published bucket `b` and `i < 2^b`.
    unsafe fn slot(&self, bucket: *mut u8, b: usize, i: usize) -> (&AtomicBool, *mut Heap) {
        // Where `layout` puts the sets: after the flags, aligned for a heap.
        let sets = (core::mem::size_of::<AtomicBool>() << b)
            .next_multiple_of(core::mem::align_of::<Heap>());
        // SAFETY: per the contract, both are within the bucket, which was
        // initialised (flags zeroed: false) before it was published.
        unsafe {
            (
                &*bucket.cast::<AtomicBool>().add(i),
                bucket.add(sets).cast::<Heap>().add(i * self.classes),
            )
        }
    }

    /// This thread's set, if it has one. Only on an active thread.
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<HeapSet> {
        let id = thread::registry_id_if_any()?;
        let (b, i) = place(id);
        let bucket = self.buckets.get(b)?.load(Ordering::Acquire);
        if bucket.is_null() {
            return None;
        }
        // SAFETY: published, and `i < 2^b`.
        let (present, set) = unsafe { self.slot(bucket, b, i) };
        // SAFETY: `present` is set (Release) after the set was written; the
        // bucket's pointer covers it, and it lives as long as the registry.
        present
            .load(Ordering::Acquire)
            .then(|| unsafe { HeapSet::from_raw(set) })
    }

    /// This thread's set, created if needed; `None` on a torn-down thread
    /// or if no memory is left for the bucket. `fresh(c)` makes class
    /// `c`'s heap.
    pub(crate) fn get_or_create(&self, fresh: impl Fn(usize) -> Heap) -> Option<HeapSet> {
        if let Some(h) = self.get() {
            return Some(h);
        }
        let id = thread::registry_id()?;
        let (b, i) = place(id);
        let slot = self.buckets.get(b)?;
        let mut bucket = slot.load(Ordering::Acquire);
        if bucket.is_null() {
            self.top.fetch_max(b + 1, Ordering::Release);
            let (layout, _) = self.layout(b)?;
            let made = meta::alloc(layout, true)?.as_ptr();
            // SAFETY: fresh zeroed memory; zero bytes are `false` flags (the
            // sets stay unwritten until their flag is raised).
            unsafe {
                sync::init_zeroed(made.cast::<AtomicBool>(), 1 << b, || AtomicBool::new(false))
            };
            match slot.compare_exchange(
                core::ptr::null_mut(),
                made,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => bucket = made,
                Err(won) => {
                    // SAFETY: ours, never published.
                    unsafe { meta::free(NonNull::new_unchecked(made), layout) };
                    bucket = won;
                }
            }
        }
        // SAFETY: published, `i < 2^b`; slot `i` is this thread's (ids are
        // unique among live threads), so only it writes there; others only
        // read the flag (`for_each_set`), so no `&mut` is made.
        unsafe {
            let (present, set) = self.slot(bucket, b, i);
            if !present.load(Ordering::Acquire) {
                for c in 0..self.classes {
                    set.add(c).write(fresh(c));
                }
                present.store(true, Ordering::Release);
            }
            Some(HeapSet::from_raw(set))
        }
    }

    /// Every set ever created for this pool.
    pub(crate) fn for_each_set(&self, mut f: impl FnMut(HeapSet)) {
        let top = self.top.load(Ordering::Acquire);
        for (b, slot) in self.buckets.iter().enumerate().take(top) {
            let bucket = slot.load(Ordering::Acquire);
            if bucket.is_null() {
                continue;
            }
            for i in 0..1usize << b {
                // SAFETY: published, `i < 2^b`.
                let (present, set) = unsafe { self.slot(bucket, b, i) };
                if present.load(Ordering::Acquire) {
                    // SAFETY: present: written; as in `get`.
                    f(unsafe { HeapSet::from_raw(set) })
                }
            }
        }
    }

    /// Every heap of every set.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Heap)) {
        let n = self.classes;
        self.for_each_set(|set| {
            for c in 0..n {
                // SAFETY: `c` is below the set's length; the set lives as
                // long as the registry.
                f(unsafe { set.class(c) })
            }
        });
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let top = self.top.load(Ordering::Relaxed);
        for b in 0..top {
            let bucket = self.buckets[b].load(Ordering::Acquire);
            if bucket.is_null() {
                continue;
            }
            for i in 0..1usize << b {
                // SAFETY: the registry is going away: nobody else uses the
                // sets; each present heap is dropped once.
                unsafe {
                    let (present, set) = self.slot(bucket, b, i);
                    if present.load(Ordering::Relaxed) {
                        for c in 0..self.classes {
                            set.add(c).drop_in_place();
                        }
                    }
                }
            }
            if let Some((layout, _)) = self.layout(b) {
                // SAFETY: the bucket came from `meta::alloc` with this layout.
                unsafe { meta::free(NonNull::new_unchecked(bucket), layout) };
            }
        }
    }
}
