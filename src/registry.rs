//! The per-pool registry of thread heaps: every heap a thread ever had in
//! one pool, found again by the thread that has it.
//!
//! Heaps live in buckets of meta memory indexed by the thread's registry
//! id ([`thread::registry_id`]): bucket `b` holds ids `2^b - 1 ..
//! 2^(b+1) - 1`, allocated when a thread with such an id first comes, never
//! moved. Ids are dense and reused smallest first once a thread has
//! exited, so the next new thread finds an exited thread's heap in its
//! slot — free adoption, which homeslab relies on. Nothing here calls the
//! global allocator (homeslab may be it). The fast path never comes here:
//! the thread context ([`crate::thread`]) caches the heap a thread owns.

use crate::heap::Heap;
use crate::meta;
use crate::sync::{self, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use crate::thread;

/// Buckets: ids below 2^32.
const BUCKETS: usize = 32;

/// One thread's slot: its heap, once created.
struct Entry {
    present: AtomicBool,
    heap: core::mem::MaybeUninit<Heap>,
}

impl Entry {
    /// An entry without a heap: what a zeroed one is ([`sync::init_zeroed`]).
    fn vacant() -> Self {
        Self {
            present: AtomicBool::new(false),
            heap: core::mem::MaybeUninit::uninit(),
        }
    }
}

/// The per-pool set of thread heaps.
pub(crate) struct Registry {
    buckets: [AtomicPtr<Entry>; BUCKETS],
    /// One past the highest bucket that may be published: raised before a
    /// bucket is, so whoever sees a heap sees its bucket below `top`, and
    /// [`Registry::for_each`] reads no bucket above.
    top: AtomicUsize,
}

fn bucket_layout(b: usize) -> core::alloc::Layout {
    // At most 2^31 entries of a few hundred bytes: the layout fits.
    core::alloc::Layout::array::<Entry>(1 << b).unwrap_or(core::alloc::Layout::new::<Entry>())
}

/// The bucket and index of registry id `id`.
fn place(id: usize) -> (usize, usize) {
    let n = id + 1;
    let b = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (b, n - (1 << b))
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            buckets: core::array::from_fn(|_| AtomicPtr::new(core::ptr::null_mut())),
            top: AtomicUsize::new(0),
        }
    }

    /// The entry of `id`, if its bucket exists.
    fn entry(&self, id: usize) -> Option<&Entry> {
        let (b, i) = place(id);
        let bucket = self.buckets.get(b)?.load(Ordering::Acquire);
        // SAFETY: a published bucket holds `2^b` entries, made vacant before
        // it was published, and lives as long as the registry.
        (!bucket.is_null()).then(|| unsafe { &*bucket.add(i) })
    }

    /// This thread's heap, if it has one. Only on an active thread.
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<&Heap> {
        let e = self.entry(thread::registry_id_if_any()?)?;
        // SAFETY: `present` is set (Release) after the heap was written.
        e.present
            .load(Ordering::Acquire)
            .then(|| unsafe { e.heap.assume_init_ref() })
    }

    /// This thread's heap, created if needed; `None` on a torn-down thread
    /// or if no memory is left for the bucket.
    pub(crate) fn get_or_create(&self) -> Option<&Heap> {
        if let Some(h) = self.get() {
            return Some(h);
        }
        let id = thread::registry_id()?;
        let (b, i) = place(id);
        let slot = self.buckets.get(b)?;
        let mut bucket = slot.load(Ordering::Acquire);
        if bucket.is_null() {
            self.top.fetch_max(b + 1, Ordering::Release);
            let fresh = meta::alloc(bucket_layout(b), true)?
                .as_ptr()
                .cast::<Entry>();
            // SAFETY: fresh zeroed memory for `2^b` entries; zero bytes are a
            // vacant entry (`present` false, the heap unwritten).
            unsafe { sync::init_zeroed(fresh, 1 << b, Entry::vacant) };
            match slot.compare_exchange(
                core::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => bucket = fresh,
                Err(won) => {
                    // SAFETY: ours, never published.
                    unsafe {
                        meta::free(
                            core::ptr::NonNull::new_unchecked(fresh.cast()),
                            bucket_layout(b),
                        )
                    };
                    bucket = won;
                }
            }
        }
        // SAFETY: the bucket holds `2^b` entries; entry `i` is this thread's
        // (ids are unique among live threads), so only it writes there;
        // others only read `present` (`for_each`), so no `&mut` is made.
        unsafe {
            let e = bucket.add(i);
            if !(*e).present.load(Ordering::Acquire) {
                core::ptr::addr_of_mut!((*e).heap)
                    .cast::<Heap>()
                    .write(Heap::new());
                (*e).present.store(true, Ordering::Release);
            }
            Some(&*core::ptr::addr_of!((*e).heap).cast::<Heap>())
        }
    }

    /// Every heap ever created for this pool.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Heap)) {
        let top = self.top.load(Ordering::Acquire);
        for (b, slot) in self.buckets.iter().enumerate().take(top) {
            let bucket = slot.load(Ordering::Acquire);
            if bucket.is_null() {
                continue;
            }
            for i in 0..1usize << b {
                // SAFETY: as in `entry`.
                let e = unsafe { &*bucket.add(i) };
                if e.present.load(Ordering::Acquire) {
                    // SAFETY: present: written.
                    f(unsafe { e.heap.assume_init_ref() })
                }
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let top = self.top.load(Ordering::Relaxed);
        for (b, slot) in self.buckets.iter().enumerate().take(top) {
            let bucket = slot.load(Ordering::Acquire);
            if bucket.is_null() {
                continue;
            }
            for i in 0..1usize << b {
                // SAFETY: the registry is going away: nobody else uses the
                // entries; each present heap is dropped once.
                unsafe {
                    let e = &mut *bucket.add(i);
                    if e.present.load(Ordering::Relaxed) {
                        e.heap.assume_init_drop();
                    }
                }
            }
            // SAFETY: the bucket came from `meta::alloc` with this layout.
            unsafe {
                meta::free(
                    core::ptr::NonNull::new_unchecked(bucket.cast()),
                    bucket_layout(b),
                )
            };
        }
    }
}
