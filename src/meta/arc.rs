//! `Arc` and `Weak` outside loom: reference counting as
//! `std::sync::Arc` does it, but in [meta](crate::meta) memory, so that
//! building a pool core never calls the global allocator.
//!
//! The value comes first in the allocation and the counts after it, so a
//! pointer to the value *is* the pointer to the allocation: `from_raw` and
//! `as_ptr` are casts, and provenance covers the counts.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

use crate::meta;
use crate::sync::{fence, AtomicPtr, AtomicUsize, Ordering};

#[repr(C)]
struct Inner<T> {
    data: T,
    strong: AtomicUsize,
    /// Weak references, plus one held by all the strong ones together.
    weak: AtomicUsize,
}

/// A shared, reference-counted value in meta memory.
pub(crate) struct Arc<T> {
    ptr: NonNull<Inner<T>>,
    _own: PhantomData<Inner<T>>,
}

/// A reference that does not keep the value alive.
pub(crate) struct Weak<T> {
    ptr: NonNull<Inner<T>>,
}

// SAFETY: as `std::sync::Arc`: the value is shared between threads, so it
// must be `Send + Sync`.
unsafe impl<T: Send + Sync> Send for Arc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Arc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for Weak<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Weak<T> {}

impl<T> Arc<T> {
    /// Moves `data` into meta memory. Aborts only if the OS refuses even a
    /// page for bookkeeping (as `std::sync::Arc::new` would).
    pub(crate) fn new(data: T) -> Arc<T> {
        match Self::try_new(data) {
            Ok(a) => a,
            Err(_) => std::process::abort(),
        }
    }

    /// Moves `data` into meta memory, or gives it back.
    pub(crate) fn try_new(data: T) -> Result<Arc<T>, T> {
        let Some(p) = meta::alloc(Layout::new::<Inner<T>>(), false) else {
            return Err(data);
        };
        let ptr = p.cast::<Inner<T>>();
        // SAFETY: fresh memory with the layout of `Inner<T>`.
        unsafe {
            ptr.as_ptr().write(Inner {
                data,
                strong: AtomicUsize::new(1),
                weak: AtomicUsize::new(1),
            })
        };
        Ok(Arc {
            ptr,
            _own: PhantomData,
        })
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: a strong reference keeps the allocation and value alive.
        unsafe { self.ptr.as_ref() }
    }

    /// The value's address (also the allocation's).
    pub(crate) fn as_ptr(this: &Arc<T>) -> *const T {
        this.ptr.as_ptr().cast_const().cast()
    }

    /// Gives up the reference without dropping it: [`Arc::from_raw`] takes
    /// it back.
    #[allow(dead_code)]
    pub(crate) fn into_raw(this: Arc<T>) -> *const T {
        let p = Arc::as_ptr(&this);
        core::mem::forget(this);
        p
    }

    /// Takes back a reference given up by [`Arc::into_raw`] (or counted
    /// with [`Arc::increment_strong_count`]).
    ///
    /// # Safety
    /// `p` came from [`Arc::as_ptr`] / [`Arc::into_raw`] and stands for one
    /// strong reference.
    pub(crate) unsafe fn from_raw(p: *const T) -> Arc<T> {
        Arc {
            // SAFETY: per the contract, `p` is the allocation's address.
            ptr: unsafe { NonNull::new_unchecked(p.cast_mut().cast()) },
            _own: PhantomData,
        }
    }

    /// Adds a strong reference to the value at `p`.
    ///
    /// # Safety
    /// `p` came from [`Arc::as_ptr`] and the value is alive.
    pub(crate) unsafe fn increment_strong_count(p: *const T) {
        // SAFETY: per the contract.
        let inner = unsafe { &*p.cast::<Inner<T>>() };
        inner.strong.fetch_add(1, Ordering::Relaxed);
    }

    /// A weak reference.
    #[allow(dead_code)] // loom has no `Weak`; used outside it
    pub(crate) fn downgrade(this: &Arc<T>) -> Weak<T> {
        this.inner().weak.fetch_add(1, Ordering::Relaxed);
        Weak { ptr: this.ptr }
    }
}

impl<T> Weak<T> {
    fn inner(&self) -> &Inner<T> {
        // SAFETY: a weak reference keeps the allocation (not the value).
        unsafe { self.ptr.as_ref() }
    }

    /// Strong references left.
    pub(crate) fn strong_count(&self) -> usize {
        self.inner().strong.load(Ordering::Relaxed)
    }

    /// A strong reference, unless the value is gone.
    pub(crate) fn upgrade(&self) -> Option<Arc<T>> {
        let strong = &self.inner().strong;
        let mut n = strong.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return None;
            }
            match strong.compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Some(Arc {
                        ptr: self.ptr,
                        _own: PhantomData,
                    })
                }
                Err(now) => n = now,
            }
        }
    }

    /// Gives up the reference without dropping it.
    pub(crate) fn into_raw(this: Weak<T>) -> *const T {
        let p = this.ptr.as_ptr().cast_const().cast();
        core::mem::forget(this);
        p
    }

    /// Takes back a reference given up by [`Weak::into_raw`].
    ///
    /// # Safety
    /// `p` came from [`Weak::into_raw`] and is taken back once.
    pub(crate) unsafe fn from_raw(p: *const T) -> Weak<T> {
        Weak {
            // SAFETY: per the contract.
            ptr: unsafe { NonNull::new_unchecked(p.cast_mut().cast()) },
        }
    }
}

/// One `Arc`'s strong count, for a part that keeps the value alive without
/// naming its type (the slab factory, for its pool): it takes references
/// and gives back all but the last, so it never drops the value.
pub(crate) struct StrongCount(AtomicPtr<AtomicUsize>);

impl StrongCount {
    /// Not yet bound to an `Arc`.
    pub(crate) fn unbound() -> Self {
        Self(AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Binds to `arc`'s count; called once, before anyone counts.
    pub(crate) fn bind<T>(&self, arc: &Arc<T>) {
        // SAFETY: `arc` keeps the allocation alive; the place is projected
        // from the allocation's own pointer (no reference), so its
        // provenance covers the count.
        let count = unsafe { core::ptr::addr_of!((*arc.ptr.as_ptr()).strong) };
        self.0.store(count.cast_mut(), Ordering::Relaxed);
    }

    /// Adds a strong reference.
    ///
    /// # Safety
    /// Bound, and the value is alive (the caller holds a reference).
    pub(crate) unsafe fn retain(&self) {
        // SAFETY: per the contract, the count is bound and alive.
        unsafe { &*self.0.load(Ordering::Relaxed) }.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back a reference taken with [`StrongCount::retain`].
    ///
    /// # Safety
    /// Bound, and the caller holds another strong reference, so this one is
    /// not the last. (Were it the last, the value would leak, never be
    /// used after free.)
    pub(crate) unsafe fn release(&self) {
        // SAFETY: per the contract, the count is alive past this call.
        let count = unsafe { &*self.0.load(Ordering::Relaxed) };
        // Release, as `Arc::drop`: whoever drops the last reference (with
        // its acquire fence) sees what was done before this one went.
        let was = count.fetch_sub(1, Ordering::Release);
        debug_assert!(
            was > 1,
            "the slab factory gave back its pool's last reference"
        );
    }
}

impl<T> Clone for Arc<T> {
    fn clone(&self) -> Self {
        self.inner().strong.fetch_add(1, Ordering::Relaxed);
        Arc {
            ptr: self.ptr,
            _own: PhantomData,
        }
    }
}

impl<T> Deref for Arc<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.inner().data
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Arc<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Drop for Arc<T> {
    fn drop(&mut self) {
        if self.inner().strong.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the last strong reference: nobody reads the value again.
        unsafe { core::ptr::drop_in_place(core::ptr::addr_of_mut!((*self.ptr.as_ptr()).data)) };
        drop(Weak { ptr: self.ptr });
    }
}

impl<T> Drop for Weak<T> {
    fn drop(&mut self) {
        if self.inner().weak.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the last reference of any kind; the value is dropped.
        unsafe { meta::free(self.ptr.cast(), Layout::new::<Inner<T>>()) };
    }
}
