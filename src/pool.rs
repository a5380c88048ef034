//! The typed surface: [`Pool<T>`], its [`PoolBuilder`], and [`PoolBox<T>`].

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of, ManuallyDrop};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::config::{knob_setters, Knobs};
use crate::error::{AllocError, ConfigError};
use crate::meta::Arc;
use crate::pool_core::{Handle, PoolCore};
use crate::slab::{Geometry, Resolved, Shape, Slab, MAX_ALIGN, MAX_SIZE};
use crate::source::Budget;
use crate::stats::Stats;
use crate::sync::unmodelled;

/// Geometry and limits of `T`, known at compile time.
pub(crate) struct Layout<T>(PhantomData<T>);

impl<T> Layout<T> {
    pub(crate) const ZST: bool = size_of::<T>() == 0;
    const SUPPORTED: bool = align_of::<T>() <= MAX_ALIGN && size_of::<T>() <= MAX_SIZE;
    pub(crate) const GEOMETRY: Geometry = if Self::SUPPORTED {
        Geometry::of(size_of::<T>(), align_of::<T>())
    } else {
        Geometry::of(8, 8)
    };
    pub(crate) const SHAPE: Shape = Self::GEOMETRY.shape();

    /// `T`'s geometry, or why a pool of `T` cannot be built; `slab_capacity`
    /// limits the slots per slab.
    pub(crate) fn checked(slab_capacity: Option<usize>) -> Result<Geometry, ConfigError> {
        if align_of::<T>() > MAX_ALIGN {
            return Err(ConfigError::AlignTooLarge {
                align: align_of::<T>(),
            });
        }
        if size_of::<T>() > MAX_SIZE {
            return Err(ConfigError::ObjectTooLarge {
                size: size_of::<T>(),
            });
        }
        let mut geometry = Self::GEOMETRY;
        if let Some(n) = slab_capacity {
            if n == 0 {
                return Err(ConfigError::InvalidSetting {
                    name: "slab_capacity",
                    requirement: "must be at least 1",
                });
            }
            geometry = geometry.limited(n);
        }
        Ok(geometry)
    }
}

/// A pool of `T` blocks: per-thread owner heaps, lock-free remote frees,
/// a shared overflow tier.
///
/// Cheap to clone (an `Arc`); every clone is the same pool. Blocks
/// ([`PoolBox`]) may be freed on any thread and may outlive every handle.
///
/// ```
/// use homeslab::Pool;
/// let pool: Pool<[u64; 8]> = Pool::new();
/// let b = pool.alloc([7; 8]).unwrap();
/// assert_eq!(b[3], 7);
/// let other = pool.clone();
/// std::thread::spawn(move || drop(b)).join().unwrap(); // the free goes home
/// assert_eq!(other.stats().live_blocks, 0);
/// ```
pub struct Pool<T> {
    shared: Handle,
    _t: PhantomData<fn(T) -> T>,
}

// SAFETY: a handle only moves `T` values into blocks and hands them out as
// `PoolBox<T>`, which is `Send` when `T: Send`; the shared state is `Sync`.
unsafe impl<T: Send> Send for Pool<T> {}
// SAFETY: as above; `&Pool<T>` allows allocation from any thread.
unsafe impl<T: Send> Sync for Pool<T> {}
// SAFETY: `PoolCore` guards its owner-only state by the ownership protocol
// (docs/ARCHITECTURE.md); everything else in it is atomic or locked.
unsafe impl Send for PoolCore {}
// SAFETY: as above.
unsafe impl Sync for PoolCore {}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Pool<T> {
    /// A pool with the default configuration.
    ///
    /// # Panics
    /// If `T`'s alignment exceeds 4096 or its size 64 MiB (use
    /// [`Pool::builder`] to get an error instead).
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// A builder to configure and validate a pool.
    pub fn builder() -> PoolBuilder<T> {
        PoolBuilder::new()
    }

    /// Moves `value` into a block of the pool.
    ///
    /// Never panics; on failure `value` is dropped and the pool stays usable.
    #[inline(always)]
    pub fn alloc(&self, value: T) -> Result<PoolBox<T>, AllocError> {
        let ptr = if Layout::<T>::ZST {
            NonNull::dangling()
        } else {
            self.shared.alloc(Layout::<T>::SHAPE)?.0.cast::<T>()
        };
        // SAFETY: the block is `T`-sized, aligned, and exclusively ours.
        unsafe { ptr.as_ptr().write(value) };
        Ok(PoolBox {
            ptr,
            _t: PhantomData,
        })
    }

    /// A snapshot of the pool's counters (exact when the pool is quiescent).
    /// Publishes the calling thread's held remote frees first (see
    /// [`crate::flush_remote_frees`]), so they are counted; another live
    /// thread's held frees count as live blocks until it publishes them.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Gives memory back to the OS: every empty slab held by this thread's
    /// heap, the overflow tier and exited threads' heaps, then every idle
    /// region. Returns the bytes released. Other live threads' heaps keep at
    /// most `retained_empty_slabs` empty slabs each.
    pub fn trim(&self) -> u64 {
        self.shared.trim()
    }

    /// Testing aid: makes the next `n` OS mappings of this pool fail, as if
    /// the OS refused them.
    pub fn inject_map_failures(&self, n: usize) {
        self.shared.inject_map_failures(n);
    }

    /// Frees that reached no pool (the pointer's region had no homeslab
    /// header, or one of another type's slab), counted process-wide.
    pub fn unowned_frees() -> u64 {
        unmodelled::unowned_frees()
    }
}

#[cfg(feature = "test-hooks")]
impl<T> Pool<T> {
    /// Test hook for the fuzz targets (feature `test-hooks`; not part of
    /// the API): overwrites with `word` the slot word of the `nth` (modulo
    /// their number) free slot below the frontier of the slab holding
    /// `block`, as a stray write into the allocator's metadata would.
    /// Returns the word it replaced, `None` if that slab has no such slot.
    ///
    /// # Safety
    /// `block` is a live block of this pool that this thread allocated from
    /// its own heap, and no other thread uses this pool meanwhile.
    #[doc(hidden)]
    pub unsafe fn corrupt_free_slot(
        &self,
        block: NonNull<T>,
        nth: usize,
        word: u16,
    ) -> Option<u16> {
        let slab = Slab::of(
            block.as_ptr() as usize,
            Layout::<T>::GEOMETRY.region,
            Layout::<T>::SHAPE,
        );
        // SAFETY: per the contract the slab is live and this thread owns it.
        unsafe { (*slab).overwrite_free_word(nth, word) }
    }
}

/// Validated pool configuration. Every setting has a default; `build`
/// checks them all.
#[derive(Debug, Clone)]
pub struct PoolBuilder<T> {
    knobs: Knobs,
    slab_capacity: Option<usize>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Default for PoolBuilder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PoolBuilder<T> {
    fn new() -> Self {
        Self {
            knobs: Knobs::new(),
            slab_capacity: None,
            _t: PhantomData,
        }
    }

    knob_setters!();

    /// Use at most `n` slots per slab (≥ 1; default: as many as fit).
    pub fn slab_capacity(mut self, n: usize) -> Self {
        self.slab_capacity = Some(n);
        self
    }

    /// Validates the configuration and builds the pool.
    pub fn build(self) -> Result<Pool<T>, ConfigError> {
        let geometry = Layout::<T>::checked(self.slab_capacity)?;
        let max_bytes = self.knobs.check(geometry.region)?;
        let budget = Arc::new(Budget::new(max_bytes, self.knobs.release_after));
        Ok(Pool {
            shared: Handle::new(PoolCore::build(self.knobs.config(geometry), budget, None)),
            _t: PhantomData,
        })
    }
}

/// An owned `T` in a pool block: a pointer, nothing more. Dropping it drops
/// the `T` and frees the block to its home slab, from any thread.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: a `PoolBox<T>` owns its `T` like a `Box<T>`; freeing from another
// thread is the remote path, which is thread-safe.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: `&PoolBox<T>` only gives `&T`.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

/// A pointer given to [`PoolBox::from_raw_in`] that is not a live block of
/// that pool. Counted in [`Stats::foreign_frees`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignPointer;

impl fmt::Display for ForeignPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("homeslab: pointer is not a live block of this pool")
    }
}

impl std::error::Error for ForeignPointer {}

impl<T> PoolBox<T> {
    /// Gives up the box without dropping `T` or freeing the block.
    pub fn into_raw(b: Self) -> NonNull<T> {
        ManuallyDrop::new(b).ptr
    }

    /// Rebuilds a box from [`PoolBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `PoolBox::<T>::into_raw` and is not owned by another
    /// box. (A double free through this path is detected and refused when the
    /// second box drops, but the `T` is dropped twice, so only `Copy`-like
    /// `T` survive it.)
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        Self {
            ptr,
            _t: PhantomData,
        }
    }

    /// Checked [`PoolBox::from_raw`]: verifies that `ptr` is a live block of
    /// `pool`, and counts a refusal in its `foreign_frees`.
    ///
    /// # Safety
    /// If `ptr` is a live block of `pool`, it came from `into_raw` and no
    /// other box owns it.
    pub unsafe fn from_raw_in(pool: &Pool<T>, ptr: NonNull<T>) -> Result<Self, ForeignPointer> {
        if Layout::<T>::ZST {
            return Ok(Self {
                ptr,
                _t: PhantomData,
            });
        }
        let addr = ptr.as_ptr() as usize;
        let sh = &*pool.shared;
        let ok = sh.owns_address(addr) && {
            let pool = sh as *const PoolCore as *const ();
            // SAFETY: the address lies in memory this pool mapped, so its
            // region header is readable.
            match unsafe { resolve::<T>(addr, Layout::<T>::SHAPE, Some(pool)) } {
                // SAFETY: a live slab of this pool; `idx` is one of its slots.
                Resolved::Slot(slab, idx) => unsafe { (*slab).is_allocated(idx) },
                _ => false,
            }
        };
        if ok {
            Ok(Self {
                ptr,
                _t: PhantomData,
            })
        } else {
            sh.count_foreign();
            Err(ForeignPointer)
        }
    }

    /// Moves the value out and frees the block.
    pub fn into_inner(b: Self) -> T {
        let ptr = Self::into_raw(b);
        // SAFETY: we own the block; the value is read once, then the block
        // is freed without dropping it again.
        unsafe {
            let v = ptr.as_ptr().read();
            free::<T>(ptr);
            v
        }
    }
}

/// Frees a block whose `T` has already been dropped or moved out.
///
/// # Safety
/// `ptr` is a block of a live pool of `T` (from `alloc` via a box).
#[inline(always)]
unsafe fn free<T>(ptr: NonNull<T>) {
    // SAFETY: forwarded.
    unsafe { free_slot(ptr, Layout::<T>::SHAPE) }
}

/// Frees a block of a pool of `T` whose slabs have `shape` (`T`'s, or with
/// the caching mark for an object pool). In an object pool the slot keeps
/// its object unless its holder cleared the slot word's constructed mark
/// first ([`Slab::unconstruct`]).
///
/// # Safety
/// `ptr` is a block of a live pool of `T`; if its slot word says
/// constructed, it holds a `T` that nobody else uses.
#[inline(always)]
pub(crate) unsafe fn free_slot<T>(ptr: NonNull<T>, shape: Shape) {
    if Layout::<T>::ZST {
        return;
    }
    let addr = ptr.as_ptr() as usize;
    // SAFETY: per the contract the block lies in a slab region whose header
    // is mapped.
    match unsafe { resolve::<T>(addr, shape, None) } {
        Resolved::NotASlab => unmodelled::count_unowned_free(),
        // SAFETY: the header is a live slab, which keeps its pool alive.
        Resolved::NotASlot(slab) => unsafe { PoolCore::refuse_foreign(slab) },
        // SAFETY: as above; `idx` is a slot of `slab`.
        Resolved::Slot(slab, idx) => unsafe { PoolCore::free_block(slab, idx, shape) },
    }
}

/// [`Slab::resolve`] for a block of a pool of `T` with slabs of `shape`
/// (`T`'s, or with the caching mark): the region mask and the stride are
/// constants of the type.
///
/// # Safety
/// As [`Slab::resolve`].
#[inline(always)]
pub(crate) unsafe fn resolve<T>(addr: usize, shape: Shape, pool: Option<*const ()>) -> Resolved {
    let mask = !(Layout::<T>::GEOMETRY.region - 1);
    let stride = shape.stride as usize;
    let index = |off: usize, span: usize| (off < span && off % stride == 0).then_some(off / stride);
    // SAFETY: forwarded.
    unsafe { Slab::resolve(addr, mask, Slab::magic_tag(shape), pool, shape, index) }
}

impl<T> Drop for PoolBox<T> {
    #[inline(always)]
    fn drop(&mut self) {
        /// Frees the block even if `T::drop` panics.
        struct FreeOnExit<T>(NonNull<T>);
        impl<T> Drop for FreeOnExit<T> {
            #[inline(always)]
            fn drop(&mut self) {
                // SAFETY: the box owned the block; its `T` is gone.
                unsafe { free::<T>(self.0) }
            }
        }
        let guard = FreeOnExit(self.ptr);
        // SAFETY: we own the `T`; it is dropped once.
        unsafe { self.ptr.as_ptr().drop_in_place() };
        drop(guard);
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the block holds an initialised `T` that we own.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
