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

#[cfg(not(loom))]
use crate::meta;
#[cfg(not(loom))]
use crate::sync::{AtomicBool, AtomicPtr, Ordering};
#[cfg(not(loom))]
use crate::thread;

/// Buckets: ids below 2^32.
#[cfg(not(loom))]
const BUCKETS: usize = 32;

/// One thread's slot: its heap, once created.
#[cfg(not(loom))]
struct Entry {
    present: AtomicBool,
    heap: core::mem::MaybeUninit<Heap>,
}

/// The per-pool set of thread heaps.
#[cfg(not(loom))]
pub(crate) struct Registry {
    buckets: [AtomicPtr<Entry>; BUCKETS],
}

#[cfg(not(loom))]
fn bucket_layout(b: usize) -> core::alloc::Layout {
    // At most 2^31 entries of a few hundred bytes: the layout fits.
    core::alloc::Layout::array::<Entry>(1 << b).unwrap_or(core::alloc::Layout::new::<Entry>())
}

/// The bucket and index of registry id `id`.
#[cfg(not(loom))]
fn place(id: usize) -> (usize, usize) {
    let n = id + 1;
    let b = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (b, n - (1 << b))
}

#[cfg(not(loom))]
impl Registry {
    pub(crate) fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const NULL: AtomicPtr<Entry> = AtomicPtr::new(core::ptr::null_mut());
        Self {
            buckets: [NULL; BUCKETS],
        }
    }

    /// The entry of `id`, if its bucket exists.
    fn entry(&self, id: usize) -> Option<&Entry> {
        let (b, i) = place(id);
        let bucket = self.buckets.get(b)?.load(Ordering::Acquire);
        // SAFETY: a published bucket holds `2^b` zero-initialised entries
        // (`present` false) and lives as long as the registry.
        (!bucket.is_null()).then(|| unsafe { &*bucket.add(i) })
    }

    /// This thread's heap, if it has one. Only on an active thread.
    /// `_pool` keys the loom variant.
    #[inline(always)]
    pub(crate) fn get(&self, _pool: *const ()) -> Option<&Heap> {
        let e = self.entry(thread::registry_id_if_any()?)?;
        // SAFETY: `present` is set (Release) after the heap was written.
        e.present
            .load(Ordering::Acquire)
            .then(|| unsafe { e.heap.assume_init_ref() })
    }

    /// This thread's heap, created if needed; `None` on a torn-down thread
    /// or if no memory is left for the bucket.
    pub(crate) fn get_or_create(&self, pool: *const ()) -> Option<&Heap> {
        if let Some(h) = self.get(pool) {
            return Some(h);
        }
        let id = thread::registry_id()?;
        let (b, i) = place(id);
        let slot = self.buckets.get(b)?;
        let mut bucket = slot.load(Ordering::Acquire);
        if bucket.is_null() {
            let fresh = meta::alloc(bucket_layout(b), true)?
                .as_ptr()
                .cast::<Entry>();
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
        for (b, slot) in self.buckets.iter().enumerate() {
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

#[cfg(not(loom))]
impl Drop for Registry {
    fn drop(&mut self) {
        for (b, slot) in self.buckets.iter().enumerate() {
            let bucket = slot.load(Ordering::Acquire);
            if bucket.is_null() {
                continue;
            }
            for i in 0..1usize << b {
                // SAFETY: the registry is going away: nobody else uses the
                // entries; each present heap is dropped once.
                unsafe {
                    let e = &mut *bucket.add(i);
                    if *e.present.get_mut() {
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

/// Under loom: heaps are boxed in a mutex-guarded list, found through a loom
/// thread-local cache (so the lookup adds no modelled operations).
#[cfg(loom)]
pub(crate) struct Registry {
    // Boxed: heaps must not move when the list grows.
    #[allow(clippy::vec_box)]
    heaps: crate::sync::Mutex<Vec<Box<Heap>>>,
}

#[cfg(loom)]
crate::sync::thread_local_facade! {
    static CACHE: core::cell::RefCell<Vec<(usize, usize)>> =
        core::cell::RefCell::new(Vec::new());
}

#[cfg(loom)]
impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            heaps: crate::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn get(&self, pool: *const ()) -> Option<&Heap> {
        let key = pool as usize;
        let found = CACHE
            .try_with(|c| c.borrow().iter().find(|e| e.0 == key).map(|e| e.1))
            .ok()
            .flatten();
        // SAFETY: cached pointers are boxes owned by `self.heaps`, which never
        // drops a heap before the registry itself.
        found.map(|p| unsafe { &*(p as *const Heap) })
    }

    pub(crate) fn get_or_create(&self, pool: *const ()) -> Option<&Heap> {
        if let Some(h) = self.get(pool) {
            return Some(h);
        }
        let heap = Box::new(Heap::new());
        let ptr = &*heap as *const Heap;
        self.heaps.lock().push(heap);
        let _ = CACHE.try_with(|c| c.borrow_mut().push((pool as usize, ptr as usize)));
        // SAFETY: the box lives in `self.heaps` until the registry drops.
        Some(unsafe { &*ptr })
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&Heap)) {
        let ptrs: Vec<*const Heap> = self
            .heaps
            .lock()
            .iter()
            .map(|b| &**b as *const Heap)
            .collect();
        for p in ptrs {
            // SAFETY: as in `get_or_create`.
            f(unsafe { &*p })
        }
    }
}
