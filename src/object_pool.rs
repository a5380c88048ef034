//! Constructed-object caching (Bonwick's object cache): [`ObjectPool<T>`]
//! hands out objects already constructed and takes them back constructed,
//! so a pooled `Vec` keeps its buffer and the hot path neither constructs
//! nor allocates.
//!
//! It is a [`Pool`](crate::Pool) core whose free slots may keep their
//! object: a slot's word carries a *constructed* mark beside its freelist
//! link (outside the object, so hardening, double-free and foreign-pointer
//! checks work unchanged). `get` pops a slot; if its free word had the
//! mark the object is handed out as it is, else `init` constructs one into
//! the slot (lazily: never a whole slab up front). While an [`ObjectBox`]
//! holds the slot its word keeps the mark. Release runs `reset` then
//! `keep_if` on the releasing thread, then frees the slot — locally or
//! remotely, held like any free — and the free carries the mark into the
//! free word; refused, the object is dropped and the mark cleared
//! ([`Slab::unconstruct`]) before the free. When a slab's memory is
//! reclaimed (beyond `retained_empty_slabs`, the idle policy, `trim()`,
//! the pool's close) the objects in its marked slots are dropped there.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::config::{knob_setters, Knobs};
use crate::error::{AllocError, ConfigError};
use crate::meta::Arc;
use crate::objects::Objects;
use crate::pool::{free_slot, resolve, Layout};
use crate::pool_core::{Handle, PoolCore};
use crate::slab::{Resolved, Shape, Slab, CONSTRUCTED};
use crate::source::Budget;
use crate::stats::Stats;

/// The constructor, shared by the handles (a plain `Arc`: immutable, so
/// loom need not model it, and loom's `Arc` cannot hold a `dyn`).
type Init<T> = dyn Fn() -> T + Send + Sync;
type InitRef<T> = std::sync::Arc<Init<T>>;

/// The shape of an object pool's slabs of `T` (a constant).
struct Shaped<T>(PhantomData<T>);

impl<T> Shaped<T> {
    const SHAPE: Shape = Layout::<T>::SHAPE.caching();
}

/// Frees the slot of `ptr`, a block of an object pool of `T` handed out
/// (its word says constructed): the slot keeps its object.
///
/// # Safety
/// As [`free_slot`].
unsafe fn free<T>(ptr: NonNull<T>) {
    // SAFETY: forwarded.
    unsafe { free_slot(ptr, Shaped::<T>::SHAPE) }
}

/// Frees the slot of `ptr`, a block of an object pool of `T` handed out,
/// whose object is gone (dropped, or never constructed): its word loses
/// the constructed mark first, so the slot goes back unconstructed.
///
/// # Safety
/// As [`free_slot`], and the caller gives the slot up.
unsafe fn free_unconstructed<T>(ptr: NonNull<T>) {
    let addr = ptr.as_ptr() as usize;
    // SAFETY: `ptr` is a block of a live pool, so its region header is
    // mapped.
    if let Resolved::Slot(slab, idx) = unsafe { resolve::<T>(addr, Shaped::<T>::SHAPE, None) } {
        // SAFETY: the header is a live slab (the block keeps it); the
        // caller holds slot `idx`, handed out.
        unsafe { (*slab).unconstruct(idx) };
    }
    // SAFETY: forwarded.
    unsafe { free(ptr) }
}
type Reset<T> = dyn Fn(&mut T) + Send + Sync;
type KeepIf<T> = dyn Fn(&T) -> bool + Send + Sync;

/// What a release runs, kept in the pool core (so an [`ObjectBox`] that
/// outlives every handle still finds it).
struct Hooks<T> {
    reset: Option<Box<Reset<T>>>,
    keep_if: Option<Box<KeepIf<T>>>,
}

/// A pool of constructed `T`s: `get` hands out a cached object when the
/// thread's heap has one, else constructs one; dropping the [`ObjectBox`]
/// resets it and caches it again.
///
/// Cheap to clone (an `Arc`); every clone is the same pool. `ObjectBox`
/// objects may be released on any thread and may outlive every handle.
///
/// ```
/// use homeslab::{ObjectPool, ObjectBox};
///
/// let pool: ObjectPool<Vec<u8>> = ObjectPool::builder(|| Vec::with_capacity(4096))
///     .reset(|v: &mut Vec<u8>| v.clear())
///     .keep_if(|v: &Vec<u8>| v.capacity() <= 1 << 20)
///     .build()?;
/// let mut buf: ObjectBox<Vec<u8>> = pool.get()?;
/// buf.extend_from_slice(b"request");
/// let at = buf.as_ptr();
/// drop(buf); // reset, then cached in its slot
/// let again = pool.get()?;
/// assert!(again.is_empty() && again.capacity() >= 4096);
/// assert_eq!(again.as_ptr(), at); // the same buffer: nothing allocated
/// let s = pool.stats();
/// assert_eq!((s.objects_constructed, s.objects_reused), (1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Semantics:
/// - `get` constructs lazily, one object per fresh slot; a slot keeps its
///   object across releases, so constructions are bounded by the most
///   objects live at once (plus slots reclaimed and refilled), not by gets.
/// - Release runs `reset`, then `keep_if`, on the releasing thread, before
///   the slot goes home. A refused object is dropped there and its slot
///   goes back unconstructed; [`ObjectBox::discard`] does that on purpose.
/// - Cached objects are dropped when their memory is reclaimed: a slab
///   released beyond `retained_empty_slabs`, by the idle policy or
///   `trim()`, and every slab once the pool has closed (the last handle
///   and the last `ObjectBox` gone) — on whichever thread releases it. A
///   thread that exits leaves up to `retained_empty_slabs` empty slabs,
///   objects and all, in its orphaned heap for the thread that adopts it
///   (the shared tier serves from them meanwhile). Slabs a live thread's
///   heap still holds after the close are released when that thread
///   exits. So once every thread that used the pool has exited,
///   `objects_constructed == objects_destroyed`.
/// - A panic in `init` leaves the slot free and unconstructed; a panic in
///   `reset` or `keep_if` drops that object and frees its slot
///   unconstructed; the pool stays consistent. A panic in `T`'s destructor
///   while a slab is reclaimed is caught there (the object counts as
///   destroyed).
/// - `T`'s destructor may run inside the pool's slow paths: it must not use
///   the same pool.
pub struct ObjectPool<T: Send + 'static> {
    shared: Handle,
    init: InitRef<T>,
    _t: PhantomData<fn(T) -> T>,
}

// SAFETY: the pool moves `T`s between threads only as `ObjectBox<T>` (Send
// when `T: Send`); the hooks are `Send + Sync`; the core is `Sync`.
unsafe impl<T: Send + 'static> Send for ObjectPool<T> {}
// SAFETY: as above.
unsafe impl<T: Send + 'static> Sync for ObjectPool<T> {}

impl<T: Send + 'static> Clone for ObjectPool<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            init: self.init.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T: Send + 'static> ObjectPool<T> {
    /// A builder; `init` constructs an object when no cached one is at hand.
    pub fn builder(init: impl Fn() -> T + Send + Sync + 'static) -> ObjectPoolBuilder<T> {
        ObjectPoolBuilder {
            init: std::sync::Arc::new(init),
            reset: None,
            keep_if: None,
            knobs: Knobs::new(),
            slab_capacity: None,
        }
    }

    /// A constructed object: a cached one of this thread's heap, else a new
    /// one from `init` in a fresh slot.
    #[inline]
    pub fn get(&self) -> Result<ObjectBox<T>, AllocError> {
        let (p, info) = self.shared.alloc(Shaped::<T>::SHAPE)?;
        let ptr = p.cast::<T>();
        if info & CONSTRUCTED == 0 {
            self.construct(ptr);
        }
        Ok(ObjectBox {
            ptr,
            _t: PhantomData,
        })
    }

    /// Constructs into the fresh slot at `ptr` (its word already says
    /// constructed: the pop's); if `init` panics, the slot goes back
    /// unconstructed.
    #[cold]
    fn construct(&self, ptr: NonNull<T>) {
        struct FreeOnUnwind<'a, T>(NonNull<T>, &'a Objects);
        impl<T> Drop for FreeOnUnwind<'_, T> {
            fn drop(&mut self) {
                self.1.failed();
                // SAFETY: a fresh slot of this pool, holding nothing.
                unsafe { free_unconstructed(self.0) };
            }
        }
        let objects = self.objects();
        let guard = FreeOnUnwind(ptr, objects);
        let value = (self.init)();
        core::mem::forget(guard);
        // SAFETY: the slot is ours, `T`-sized and aligned.
        unsafe { ptr.as_ptr().write(value) };
        objects.constructed();
    }

    fn objects(&self) -> &Objects {
        match self.shared.objects() {
            Some(o) => o,
            // Every object pool's core is built with them.
            None => unreachable!("an object pool without object state"),
        }
    }

    /// A snapshot of the counters (exact when the pool is quiescent),
    /// including `objects_constructed`, `objects_reused`,
    /// `objects_destroyed` and `objects_cached`. As for
    /// [`Pool::stats`](crate::Pool::stats), a release another live thread
    /// still holds in its magazine counts as freed (`held_blocks`).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Gives memory back to the OS as [`Pool::trim`](crate::Pool::trim)
    /// does, dropping the cached objects of every slab it releases.
    /// Returns the bytes released.
    pub fn trim(&self) -> u64 {
        self.shared.trim()
    }
}

/// Validated [`ObjectPool`] configuration: the constructor, the release
/// hooks, and the pool settings.
pub struct ObjectPoolBuilder<T: Send + 'static> {
    init: InitRef<T>,
    reset: Option<Box<Reset<T>>>,
    keep_if: Option<Box<KeepIf<T>>>,
    knobs: Knobs,
    slab_capacity: Option<usize>,
}

impl<T: Send + 'static> fmt::Debug for ObjectPoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPoolBuilder")
            .field("reset", &self.reset.is_some())
            .field("keep_if", &self.keep_if.is_some())
            .field("knobs", &self.knobs)
            .finish()
    }
}

impl<T: Send + 'static> ObjectPoolBuilder<T> {
    /// Runs on every release, on the releasing thread, before `keep_if`
    /// (default: nothing).
    pub fn reset(mut self, f: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(f));
        self
    }

    /// Decides, after `reset`, whether a released object is cached (true)
    /// or dropped (default: always cache).
    pub fn keep_if(mut self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.keep_if = Some(Box::new(f));
        self
    }

    knob_setters!();

    /// Use at most `n` slots per slab (≥ 1; default: as many as fit).
    pub fn slab_capacity(mut self, n: usize) -> Self {
        self.slab_capacity = Some(n);
        self
    }

    /// Validates the configuration and builds the pool.
    pub fn build(self) -> Result<ObjectPool<T>, ConfigError> {
        if Layout::<T>::ZST {
            return Err(ConfigError::InvalidSetting {
                name: "ObjectPool<T>",
                requirement: "T must not be zero-sized (nothing to cache)",
            });
        }
        let geometry = Layout::<T>::checked(self.slab_capacity)?;
        let max_bytes = self.knobs.check(geometry.region)?;
        let hooks: Box<Hooks<T>> = Box::new(Hooks {
            reset: self.reset,
            keep_if: self.keep_if,
        });
        /// Drops the `T` at `p`.
        ///
        /// # Safety
        /// `p` holds a `T` nobody else uses.
        unsafe fn drop_obj<T>(p: *mut u8) {
            // SAFETY: per the contract.
            unsafe { p.cast::<T>().drop_in_place() }
        }
        let objects = Objects::new(drop_obj::<T>, hooks);
        let budget = Arc::new(Budget::new(max_bytes, self.knobs.release_after));
        Ok(ObjectPool {
            shared: Handle::new(PoolCore::build(
                self.knobs.config(geometry),
                budget,
                Some(objects),
            )),
            init: self.init,
            _t: PhantomData,
        })
    }
}

/// A constructed `T` of an [`ObjectPool`]: a pointer, nothing more.
/// Dropping it resets the object and caches it in its slot (see
/// [`ObjectPool`]), from any thread.
pub struct ObjectBox<T: Send + 'static> {
    ptr: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: a `ObjectBox<T>` owns its `T` like a `Box<T>`; releasing it on
// another thread is the pool's remote path, which is thread-safe.
unsafe impl<T: Send + 'static> Send for ObjectBox<T> {}
// SAFETY: `&ObjectBox<T>` only gives `&T`.
unsafe impl<T: Send + Sync + 'static> Sync for ObjectBox<T> {}

impl<T: Send + 'static> ObjectBox<T> {
    /// Drops the object instead of caching it; its slot goes back
    /// unconstructed.
    pub fn discard(this: Self) {
        let this = ManuallyDrop::new(this);
        // SAFETY: `this` owned the object and its slot; both are given up
        // here, once.
        unsafe { Self::destroy(this.ptr) };
    }

    /// The pool state of this object's slab.
    ///
    /// # Safety
    /// `ptr` is the block of a live `ObjectBox<T>`.
    unsafe fn objects<'a>(ptr: NonNull<T>) -> &'a Objects {
        let slab = Slab::of(
            ptr.as_ptr() as usize,
            Layout::<T>::GEOMETRY.region,
            Layout::<T>::SHAPE,
        );
        // SAFETY: the block lies in a live slab of an object pool of `T`,
        // which keeps its core alive; such a core has object state.
        match unsafe { PoolCore::of_live_slab(slab) }.objects() {
            Some(o) => o,
            None => unreachable!("a pooled object outside an object pool"),
        }
    }

    /// Drops the object, counts it, frees the slot unconstructed (even if
    /// the destructor panics).
    ///
    /// # Safety
    /// `ptr` is the block of a `ObjectBox<T>` given up by the caller.
    unsafe fn destroy(ptr: NonNull<T>) {
        struct FreeOnExit<T>(NonNull<T>);
        impl<T> Drop for FreeOnExit<T> {
            fn drop(&mut self) {
                // SAFETY: the object is gone; the slot is ours.
                unsafe { free_unconstructed(self.0) };
            }
        }
        // SAFETY: per the contract.
        unsafe { Self::objects(ptr) }.destroyed();
        let guard = FreeOnExit(ptr);
        // SAFETY: we own the `T`; it is dropped once.
        unsafe { ptr.as_ptr().drop_in_place() };
        drop(guard);
    }
}

impl<T: Send + 'static> Drop for ObjectBox<T> {
    fn drop(&mut self) {
        /// Destroys the object if `reset` or `keep_if` panics.
        struct DestroyOnUnwind<T: Send + 'static>(NonNull<T>);
        impl<T: Send + 'static> Drop for DestroyOnUnwind<T> {
            fn drop(&mut self) {
                // SAFETY: the release gave the object up by panicking.
                unsafe { ObjectBox::destroy(self.0) };
            }
        }
        let ptr = self.ptr;
        // SAFETY: `ptr` is this live `ObjectBox`'s block.
        let objects = unsafe { Self::objects(ptr) };
        // SAFETY: the core was built with `Hooks<T>` (only `ObjectPool<T>`
        // hands out `ObjectBox<T>` of its slabs), which it owns and keeps.
        let hooks = unsafe { &*objects.hooks_ptr().cast::<Hooks<T>>() };
        let guard = DestroyOnUnwind(ptr);
        // SAFETY: we own the object until it is released.
        let obj = unsafe { &mut *ptr.as_ptr() };
        if let Some(reset) = &hooks.reset {
            reset(obj);
        }
        let keep = hooks.keep_if.as_ref().map_or(true, |k| k(obj));
        core::mem::forget(guard);
        if keep {
            // SAFETY: the slot keeps its (reset) object, as its word says;
            // nobody else uses it.
            unsafe { free(ptr) };
        } else {
            // SAFETY: we give the object and slot up.
            unsafe { Self::destroy(ptr) };
        }
    }
}

impl<T: Send + 'static> Deref for ObjectBox<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the slot holds a constructed `T` that we own.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Send + 'static> DerefMut for ObjectBox<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Send + fmt::Debug + 'static> fmt::Debug for ObjectBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
