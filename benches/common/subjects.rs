//! The allocators under test, behind one [`Subject`] trait so that every
//! workload is written once and instantiated per subject.
//!
//! A subject hands out *handles*: something that owns one `T` and that can
//! be sent to another thread and freed there. For the real allocators that is
//! a pointer; for `sharded-slab` and `Mutex<slab::Slab>` it is a key.

#![allow(clippy::new_without_default)]

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use std::alloc::{GlobalAlloc, Layout};

/// A benchmark object: plain data of a fixed size, constructible from a seed.
pub trait Obj: Send + Sync + 'static {
    /// A value derived from `seed` (every word written, so allocation
    /// includes initialising the block, as real code does).
    fn make(seed: u64) -> Self;
    /// The first word (to read a block back).
    fn first(&self) -> u64;
}

impl<const N: usize> Obj for [u64; N] {
    #[inline(always)]
    fn make(seed: u64) -> Self {
        [seed; N]
    }
    #[inline(always)]
    fn first(&self) -> u64 {
        self[0]
    }
}

/// A 64-byte object that can be written through a shared reference (relaxed
/// atomic stores compile to plain stores). Used by `cache_scratch`, where every
/// subject must let a thread write a block it holds.
pub struct Line(pub [AtomicU64; 8]);

impl Obj for Line {
    #[inline(always)]
    fn make(seed: u64) -> Self {
        Line([
            AtomicU64::new(seed),
            AtomicU64::new(seed),
            AtomicU64::new(seed),
            AtomicU64::new(seed),
            AtomicU64::new(seed),
            AtomicU64::new(seed),
            AtomicU64::new(seed),
            AtomicU64::new(seed),
        ])
    }
    #[inline(always)]
    fn first(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }
}

/// A 64-byte object, one type per `N`: `Kind<0>`, `Kind<1>`, … are distinct
/// types of one size and alignment (`local_pools_k` gives each its own pool).
pub struct Kind<const N: usize>(pub [u64; 8]);

impl<const N: usize> Obj for Kind<N> {
    #[inline(always)]
    fn make(seed: u64) -> Self {
        Kind([seed; 8])
    }
    #[inline(always)]
    fn first(&self) -> u64 {
        self.0[0]
    }
}

/// An allocator (or pool) under test. `Send` too, so that it can live in an
/// `Arc` that worker threads hold clones of (`shapes`).
pub trait Subject<T: Obj>: Send + Sync {
    /// Owns one `T`; may be freed on any thread.
    type Handle<'a>: Send
    where
        Self: 'a;

    /// Short name used as the criterion benchmark id.
    fn name(&self) -> &'static str;

    /// Moves `v` into a fresh block.
    fn alloc(&self, v: T) -> Self::Handle<'_>;

    /// Drops the value and frees the block (on any thread).
    fn free<'a>(&'a self, h: Self::Handle<'a>);

    /// Runs `f` on the value (what it costs to reach a block through a handle).
    fn with<R>(&self, h: &Self::Handle<'_>, f: impl FnOnce(&T) -> R) -> R;

    /// homeslab's own counters (`None` for the peers).
    fn stats(&self) -> Option<homeslab::Stats> {
        None
    }

    /// homeslab's `trim()` (`None` for the peers).
    fn trim(&self) -> Option<u64> {
        None
    }
}

/// The subjects of the comparison, in report order.
pub const NAMES: [&str; 8] = [
    "homeslab",
    "homeslab-hardened",
    "box-system",
    "mimalloc",
    "jemalloc",
    "sharded-slab",
    "lockfree-object-pool",
    "mutex-slab",
];

/// Receives each subject in turn (generic, so each call is monomorphised).
pub trait Visitor<T: Obj> {
    /// Called once per subject.
    fn visit<S: Subject<T>>(&mut self, s: &S);
}

/// Receives each subject in turn, by value (to keep it).
pub trait Sink<T: Obj> {
    /// Called once per subject.
    fn take<S: Subject<T> + 'static>(&mut self, s: S);
}

/// Builds every subject for `T` (fresh, in [`NAMES`] order) and hands each to
/// `k`.
pub fn each_owned<T: Obj, K: Sink<T>>(k: &mut K) {
    k.take(Homeslab::<T>::new(false));
    k.take(Homeslab::<T>::new(true));
    k.take(SystemBox::<T>::new());
    k.take(Raw::<mimalloc::MiMalloc, T>::new(
        mimalloc::MiMalloc,
        "mimalloc",
    ));
    k.take(Raw::<tikv_jemallocator::Jemalloc, T>::new(
        tikv_jemallocator::Jemalloc,
        "jemalloc",
    ));
    k.take(Sharded::<T>::new());
    k.take(LockfreeSpin::<T>::new());
    k.take(MutexSlab::<T>::new());
}

/// Builds every subject for `T` (fresh, in [`NAMES`] order) and hands each to
/// `v`; a subject is dropped before the next is built.
pub fn each_subject<T: Obj, V: Visitor<T>>(v: &mut V) {
    struct Lend<'v, V>(&'v mut V);
    impl<T: Obj, V: Visitor<T>> Sink<T> for Lend<'_, V> {
        fn take<S: Subject<T> + 'static>(&mut self, s: S) {
            self.0.visit(&s);
        }
    }
    each_owned::<T, _>(&mut Lend(v));
}

/// Builds the subject called `name` (one of [`NAMES`]) and hands it to `v`.
/// False if there is no such subject. (The others are built and dropped
/// unused, before or after `v` runs — cheap, and outside what `v` measures.)
pub fn by_name<T: Obj, V: Visitor<T>>(name: &str, v: &mut V) -> bool {
    struct Pick<'v, V> {
        name: &'v str,
        v: &'v mut V,
        found: bool,
    }
    impl<T: Obj, V: Visitor<T>> Sink<T> for Pick<'_, V> {
        fn take<S: Subject<T> + 'static>(&mut self, s: S) {
            if s.name() == self.name {
                self.found = true;
                self.v.visit(&s);
            }
        }
    }
    let mut pick = Pick {
        name,
        v,
        found: false,
    };
    each_owned::<T, _>(&mut pick);
    pick.found
}

/// One subject that can be built for any `T` (homeslab, mimalloc, …): what a
/// workload over several object types needs to give each type its own pool.
pub trait Family: 'static {
    /// The subject for `T`.
    type Of<T: Obj>: Subject<T> + 'static;

    /// A fresh subject for `T`.
    fn build<T: Obj>(&self) -> Self::Of<T>;

    /// The subjects' name (one of [`NAMES`], or `floor`).
    fn name(&self) -> &'static str {
        self.build::<Kind<0>>().name()
    }
}

/// Receives each [`Family`] in turn.
pub trait FamilySink {
    /// Called once per family.
    fn take<F: Family>(&mut self, f: F);
}

/// Hands every subject's [`Family`] to `k`, in [`NAMES`] order.
pub fn each_family<K: FamilySink>(k: &mut K) {
    k.take(HomeslabFamily { hardened: false });
    k.take(HomeslabFamily { hardened: true });
    k.take(SystemBoxFamily);
    k.take(RawFamily::<mimalloc::MiMalloc>(
        || mimalloc::MiMalloc,
        "mimalloc",
    ));
    k.take(RawFamily::<tikv_jemallocator::Jemalloc>(
        || tikv_jemallocator::Jemalloc,
        "jemalloc",
    ));
    k.take(ShardedFamily);
    k.take(LockfreeSpinFamily);
    k.take(MutexSlabFamily);
}

/// [`Homeslab`] pools (the default builder), hardened or not.
pub struct HomeslabFamily {
    /// Build hardened pools.
    pub hardened: bool,
}

impl Family for HomeslabFamily {
    type Of<T: Obj> = Homeslab<T>;
    fn build<T: Obj>(&self) -> Homeslab<T> {
        Homeslab::new(self.hardened)
    }
}

/// [`SystemBox`].
pub struct SystemBoxFamily;

impl Family for SystemBoxFamily {
    type Of<T: Obj> = SystemBox<T>;
    fn build<T: Obj>(&self) -> SystemBox<T> {
        SystemBox::new()
    }
}

/// [`Raw`] over the allocator its function makes, with its name.
pub struct RawFamily<A>(pub fn() -> A, pub &'static str);

impl<A: GlobalAlloc + Send + Sync + 'static> Family for RawFamily<A> {
    type Of<T: Obj> = Raw<A, T>;
    fn build<T: Obj>(&self) -> Raw<A, T> {
        Raw::new((self.0)(), self.1)
    }
}

/// [`Sharded`].
pub struct ShardedFamily;

impl Family for ShardedFamily {
    type Of<T: Obj> = Sharded<T>;
    fn build<T: Obj>(&self) -> Sharded<T> {
        Sharded::new()
    }
}

/// [`LockfreeSpin`].
pub struct LockfreeSpinFamily;

impl Family for LockfreeSpinFamily {
    type Of<T: Obj> = LockfreeSpin<T>;
    fn build<T: Obj>(&self) -> LockfreeSpin<T> {
        LockfreeSpin::new()
    }
}

/// [`MutexSlab`].
pub struct MutexSlabFamily;

impl Family for MutexSlabFamily {
    type Of<T: Obj> = MutexSlab<T>;
    fn build<T: Obj>(&self) -> MutexSlab<T> {
        MutexSlab::new()
    }
}

/// [`Floor`]s (one thread only, like the floor itself).
pub struct FloorFamily;

impl Family for FloorFamily {
    type Of<T: Obj> = Floor<T>;
    fn build<T: Obj>(&self) -> Floor<T> {
        Floor::new()
    }
}

/// `homeslab::Pool<T>`.
pub struct Homeslab<T> {
    pool: homeslab::Pool<T>,
    hardened: bool,
}

impl<T: Obj> Homeslab<T> {
    /// A default pool, hardened or not. `HOMESLAB_BENCH_MAGAZINE=n` sets
    /// the magazine knob (for an A/B run of the magazine layer: 0 is off).
    pub fn new(hardened: bool) -> Self {
        let mut b = homeslab::Pool::builder().hardened(hardened);
        if let Some(n) = std::env::var("HOMESLAB_BENCH_MAGAZINE")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            b = b.magazine(n);
        }
        let pool = b.build().expect("homeslab pool config");
        Self { pool, hardened }
    }

    /// Wraps a pool built elsewhere (`hardened` only names it).
    pub fn from_pool(pool: homeslab::Pool<T>, hardened: bool) -> Self {
        Self { pool, hardened }
    }

    /// The pool (for `stats()` and `trim()`).
    pub fn pool(&self) -> &homeslab::Pool<T> {
        &self.pool
    }
}

impl<T: Obj> Subject<T> for Homeslab<T> {
    type Handle<'a> = homeslab::PoolBox<T>;

    fn name(&self) -> &'static str {
        if self.hardened {
            "homeslab-hardened"
        } else {
            "homeslab"
        }
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> homeslab::PoolBox<T> {
        match self.pool.alloc(v) {
            Ok(b) => b,
            Err(e) => panic!("homeslab alloc failed: {e}"),
        }
    }

    #[inline(always)]
    fn free(&self, h: homeslab::PoolBox<T>) {
        drop(h)
    }

    #[inline(always)]
    fn with<R>(&self, h: &homeslab::PoolBox<T>, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }

    fn stats(&self) -> Option<homeslab::Stats> {
        Some(self.pool.stats())
    }

    fn trim(&self) -> Option<u64> {
        Some(self.pool.trim())
    }
}

/// `Box<T>` through the global allocator, which in these binaries is the
/// system allocator (glibc malloc).
pub struct SystemBox<T>(PhantomData<fn(T) -> T>);

impl<T> SystemBox<T> {
    /// The subject.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: Obj> Subject<T> for SystemBox<T> {
    type Handle<'a> = Box<T>;

    fn name(&self) -> &'static str {
        "box-system"
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> Box<T> {
        Box::new(v)
    }

    #[inline(always)]
    fn free(&self, h: Box<T>) {
        drop(h)
    }

    #[inline(always)]
    fn with<R>(&self, h: &Box<T>, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }
}

/// A block from a `GlobalAlloc` called directly (mimalloc, jemalloc).
pub struct RawBox<T>(NonNull<T>);

// SAFETY: a `RawBox<T>` owns its `T` exclusively, like `Box<T>`; both
// allocators tested here allow freeing on any thread.
unsafe impl<T: Send> Send for RawBox<T> {}

/// A `GlobalAlloc` used directly, without being the global allocator.
pub struct Raw<A, T> {
    a: A,
    name: &'static str,
    _t: PhantomData<fn(T) -> T>,
}

impl<A: GlobalAlloc, T: Obj> Raw<A, T> {
    /// Wraps `a`.
    pub fn new(a: A, name: &'static str) -> Self {
        assert!(core::mem::size_of::<T>() > 0, "no zero-sized objects");
        Self {
            a,
            name,
            _t: PhantomData,
        }
    }
}

impl<A: GlobalAlloc + Send + Sync, T: Obj> Subject<T> for Raw<A, T> {
    type Handle<'a>
        = RawBox<T>
    where
        Self: 'a;

    fn name(&self) -> &'static str {
        self.name
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> RawBox<T> {
        let layout = Layout::new::<T>();
        // SAFETY: `layout` has a non-zero size (checked in `new`).
        let p = unsafe { self.a.alloc(layout) }.cast::<T>();
        let Some(p) = NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: `p` is a fresh allocation with `T`'s layout.
        unsafe { p.as_ptr().write(v) };
        RawBox(p)
    }

    #[inline(always)]
    fn free(&self, h: RawBox<T>) {
        let p = h.0.as_ptr();
        // SAFETY: `h` came from `alloc` of this allocator with `T`'s layout
        // and holds an initialised `T` that nothing else references.
        unsafe {
            p.drop_in_place();
            self.a.dealloc(p.cast(), Layout::new::<T>());
        }
    }

    #[inline(always)]
    fn with<R>(&self, h: &RawBox<T>, f: impl FnOnce(&T) -> R) -> R {
        // SAFETY: the block holds an initialised `T` owned by `h`.
        f(unsafe { h.0.as_ref() })
    }
}

/// `sharded_slab::Slab<T>`: `insert` / `take`; the handle is the key.
pub struct Sharded<T>(sharded_slab::Slab<T>);

impl<T: Obj> Sharded<T> {
    /// An empty slab with the default configuration.
    pub fn new() -> Self {
        Self(sharded_slab::Slab::new())
    }
}

impl<T: Obj> Subject<T> for Sharded<T> {
    type Handle<'a> = usize;

    fn name(&self) -> &'static str {
        "sharded-slab"
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> usize {
        match self.0.insert(v) {
            Some(k) => k,
            None => panic!("sharded-slab: shard full"),
        }
    }

    #[inline(always)]
    fn free(&self, h: usize) {
        let v = self.0.take(h);
        debug_assert!(v.is_some());
    }

    #[inline(always)]
    fn with<R>(&self, h: &usize, f: impl FnOnce(&T) -> R) -> R {
        match self.0.get(*h) {
            Some(e) => f(&e),
            None => panic!("sharded-slab: stale key"),
        }
    }
}

/// `lockfree_object_pool::LinearObjectPool<T>`: not in the main comparison
/// (`benches/lockfree_pick.rs` found `SpinLockObjectPool` faster on every
/// workload); `alloc` pulls an object and overwrites it with the value, `free`
/// drops the guard (the reset callback does nothing).
pub struct LockfreeLinear<T>(lockfree_object_pool::LinearObjectPool<T>);

impl<T: Obj> LockfreeLinear<T> {
    /// An empty pool.
    pub fn new() -> Self {
        Self(lockfree_object_pool::LinearObjectPool::new(
            || T::make(0),
            |_| {},
        ))
    }
}

impl<T: Obj> Subject<T> for LockfreeLinear<T> {
    type Handle<'a> = lockfree_object_pool::LinearReusable<'a, T>;

    fn name(&self) -> &'static str {
        "lockfree-object-pool-linear"
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> Self::Handle<'_> {
        let mut r = self.0.pull();
        *r = v;
        r
    }

    #[inline(always)]
    fn free<'a>(&'a self, h: Self::Handle<'a>) {
        drop(h)
    }

    #[inline(always)]
    fn with<R>(&self, h: &Self::Handle<'_>, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }
}

/// `lockfree_object_pool::SpinLockObjectPool<T>`, the crate's fastest pool on
/// these workloads (`benches/lockfree_pick.rs`), so it stands for the crate.
/// It keeps pooled objects *by value* in a spin-locked `Vec` and moves one
/// into the guard on `pull` (and back on drop): the object lives wherever the
/// guard lives. `alloc` pulls and overwrites with the value; the reset
/// callback does nothing.
pub struct LockfreeSpin<T>(lockfree_object_pool::SpinLockObjectPool<T>);

impl<T: Obj> LockfreeSpin<T> {
    /// An empty pool.
    pub fn new() -> Self {
        Self(lockfree_object_pool::SpinLockObjectPool::new(
            || T::make(0),
            |_| {},
        ))
    }
}

impl<T: Obj> Subject<T> for LockfreeSpin<T> {
    type Handle<'a> = lockfree_object_pool::SpinLockReusable<'a, T>;

    fn name(&self) -> &'static str {
        "lockfree-object-pool"
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> Self::Handle<'_> {
        let mut r = self.0.pull();
        *r = v;
        r
    }

    #[inline(always)]
    fn free<'a>(&'a self, h: Self::Handle<'a>) {
        drop(h)
    }

    #[inline(always)]
    fn with<R>(&self, h: &Self::Handle<'_>, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }
}

/// `parking_lot::Mutex<slab::Slab<T>>`: the lock is held for every alloc,
/// free and access.
pub struct MutexSlab<T>(parking_lot::Mutex<slab::Slab<T>>);

impl<T: Obj> MutexSlab<T> {
    /// An empty slab.
    pub fn new() -> Self {
        Self(parking_lot::Mutex::new(slab::Slab::new()))
    }
}

impl<T: Obj> Subject<T> for MutexSlab<T> {
    type Handle<'a> = usize;

    fn name(&self) -> &'static str {
        "mutex-slab"
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> usize {
        self.0.lock().insert(v)
    }

    #[inline(always)]
    fn free(&self, h: usize) {
        let v = self.0.lock().try_remove(h);
        debug_assert!(v.is_some());
    }

    #[inline(always)]
    fn with<R>(&self, h: &usize, f: impl FnOnce(&T) -> R) -> R {
        let g = self.0.lock();
        f(&g[*h])
    }
}

/// Not an allocator: the cost of a one-thread workload itself. A fixed array
/// of [`FLOOR_SLOTS`] blocks handed out and taken back in LIFO order (a
/// pop and a push on a vector of pointers), so what remains is the
/// workload's own work — writing the objects, keeping the handles. An
/// allocator would have to cost less than that pop and push to beat it
/// (none measured here does), so it bounds the ratios on those rows.
///
/// Single-threaded: only the one-thread `local` groups (`local_pools_k*`
/// too) use it (see `benches/alloc.rs`), where one worker thread makes every
/// call.
pub struct Floor<T> {
    /// The blocks (`Box::into_raw` of a boxed slice, freed on drop): kept
    /// raw, so that moving the `Floor` does not move a `Box` the handed-out
    /// pointers were derived from.
    slots: NonNull<[core::mem::MaybeUninit<T>]>,
    free: core::cell::UnsafeCell<Vec<NonNull<T>>>,
}

/// Blocks a [`Floor`] holds (one `local` round's worth).
pub const FLOOR_SLOTS: usize = super::workloads::LOCAL_BATCH;

// SAFETY: a `Floor` is only driven by one thread at a time (the one-thread
// `local` groups: one worker makes every call, after the constructing
// thread handed it over), so the `UnsafeCell` is never accessed
// concurrently; the blocks it hands out hold `T: Send` values.
unsafe impl<T: Send> Sync for Floor<T> {}

// SAFETY: a `Floor` owns its blocks and the list of vacant ones, like a
// `Box<[T]>` and a `Vec` of pointers into it; moving it to another thread
// moves that ownership (`T: Send`), nothing stays behind.
unsafe impl<T: Send> Send for Floor<T> {}

/// A block of a [`Floor`].
pub struct FloorBox<T>(NonNull<T>);

// SAFETY: it owns its `T` exclusively (the floor never hands a block out
// twice), like `Box<T>`.
unsafe impl<T: Send> Send for FloorBox<T> {}

impl<T: Obj> Floor<T> {
    /// A floor with [`FLOOR_SLOTS`] blocks.
    pub fn new() -> Self {
        let slots: Box<[core::mem::MaybeUninit<T>]> = (0..FLOOR_SLOTS)
            .map(|_| core::mem::MaybeUninit::uninit())
            .collect();
        let slots = NonNull::from(Box::leak(slots));
        let base = slots.as_ptr().cast::<T>();
        let free = (0..FLOOR_SLOTS)
            .rev()
            // SAFETY: `i < FLOOR_SLOTS`, the slice's length: in bounds, non-null.
            .map(|i| unsafe { NonNull::new_unchecked(base.add(i)) })
            .collect();
        Self {
            slots,
            free: core::cell::UnsafeCell::new(free),
        }
    }
}

impl<T> Drop for Floor<T> {
    fn drop(&mut self) {
        // SAFETY: `slots` came from `Box::leak` in `new` and is freed once;
        // `MaybeUninit` drops nothing, and every block was freed (the
        // workloads free all they allocate).
        drop(unsafe { Box::from_raw(self.slots.as_ptr()) });
    }
}

impl<T: Obj> Subject<T> for Floor<T> {
    type Handle<'a>
        = FloorBox<T>
    where
        Self: 'a;

    fn name(&self) -> &'static str {
        "floor"
    }

    #[inline(always)]
    fn alloc(&self, v: T) -> FloorBox<T> {
        // SAFETY: one thread drives a floor (see the `Sync` impl).
        let free = unsafe { &mut *self.free.get() };
        let Some(p) = free.pop() else {
            panic!("floor: more than {FLOOR_SLOTS} blocks live");
        };
        // SAFETY: `p` is a vacant block of `_slots`, sized and aligned for T.
        unsafe { p.as_ptr().write(v) };
        FloorBox(p)
    }

    #[inline(always)]
    fn free(&self, h: FloorBox<T>) {
        // SAFETY: `h` holds an initialised `T` that nothing else references;
        // one thread drives a floor (see the `Sync` impl).
        unsafe {
            h.0.as_ptr().drop_in_place();
            (*self.free.get()).push(h.0);
        }
    }

    #[inline(always)]
    fn with<R>(&self, h: &FloorBox<T>, f: impl FnOnce(&T) -> R) -> R {
        // SAFETY: the block holds an initialised `T` owned by `h`.
        f(unsafe { h.0.as_ref() })
    }
}
