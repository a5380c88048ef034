//! The public surface: builder validation, double and foreign frees through
//! the raw-pointer API, zero-sized and page-aligned types, `into_inner`,
//! auto traits and `Debug`.

use std::collections::HashSet;
use std::fmt::Debug;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use homeslab::{AllocError, ConfigError, ForeignPointer, Pool, PoolBox, PoolBuilder, Stats};

type Block = [u64; 8];

// ---------------------------------------------------------------- builder

fn invalid<T>(b: PoolBuilder<T>) -> &'static str {
    match b.build() {
        Err(ConfigError::InvalidSetting { name, requirement }) => {
            assert!(!requirement.is_empty());
            name
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("an invalid setting was accepted"),
    }
}

#[test]
fn builder_rejects_each_invalid_setting() {
    let slab = Pool::<Block>::new().stats().slab_bytes;
    assert_eq!(
        invalid(Pool::<Block>::builder().slab_capacity(0)),
        "slab_capacity"
    );
    assert_eq!(
        invalid(Pool::<Block>::builder().max_thread_slabs(0)),
        "max_thread_slabs"
    );
    assert_eq!(invalid(Pool::<Block>::builder().max_bytes(0)), "max_bytes");
    assert_eq!(
        invalid(Pool::<Block>::builder().max_bytes(slab - 1)),
        "max_bytes"
    );
    assert_eq!(
        invalid(Pool::<Block>::builder().chunk_bytes(32 * 1024)),
        "chunk_bytes"
    );
    assert_eq!(
        invalid(Pool::<Block>::builder().chunk_bytes(100_000)),
        "chunk_bytes"
    );
    assert_eq!(
        invalid(Pool::<Block>::builder().chunk_bytes((1 << 20) + 1)),
        "chunk_bytes"
    );
    assert_eq!(
        invalid(Pool::<Block>::builder().release_after(Some(Duration::ZERO))),
        "release_after"
    );
    // The message names the setting.
    let e = Pool::<Block>::builder()
        .slab_capacity(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("slab_capacity"), "{e}");
}

#[test]
fn builder_accepts_boundary_settings() {
    let slab = Pool::<Block>::new().stats().slab_bytes;
    let ok = |b: PoolBuilder<Block>| b.build().unwrap();
    ok(Pool::builder().slab_capacity(1));
    ok(Pool::builder().slab_capacity(usize::MAX));
    ok(Pool::builder().max_thread_slabs(1));
    ok(Pool::builder().max_thread_heaps(0));
    ok(Pool::builder().retained_empty_slabs(0));
    ok(Pool::builder().max_bytes(slab));
    ok(Pool::builder().chunk_bytes(64 * 1024));
    ok(Pool::builder().chunk_bytes(1 << 30));
    ok(Pool::builder().release_after(None));
    ok(Pool::builder().release_after(Some(Duration::from_nanos(1))));
    // slab_capacity limits the slots, never below one.
    assert_eq!(
        ok(Pool::builder().slab_capacity(1)).stats().slab_capacity,
        1
    );
    assert_eq!(
        ok(Pool::builder().slab_capacity(5)).stats().slab_capacity,
        5
    );
    let natural = Pool::<Block>::new().stats().slab_capacity;
    assert_eq!(
        ok(Pool::builder().slab_capacity(usize::MAX))
            .stats()
            .slab_capacity,
        natural
    );
    // A one-slot slab pool works.
    let p = ok(Pool::builder().slab_capacity(1).hardened(true));
    let v: Vec<_> = (0..10).map(|i| p.alloc([i; 8]).unwrap()).collect();
    assert!(v.iter().enumerate().all(|(i, b)| **b == [i as u64; 8]));
}

#[repr(align(8192))]
struct Align8k(#[allow(dead_code)] u8);

#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page {
    bytes: [u8; 4096],
}

#[test]
fn alignment_and_size_limits() {
    let e = Pool::<Align8k>::builder().build().unwrap_err();
    assert_eq!(e, ConfigError::AlignTooLarge { align: 8192 });
    assert!(e.to_string().contains("8192"), "{e}");
    const HUGE: usize = (64 << 20) + 1;
    let e = Pool::<[u8; HUGE]>::builder().build().unwrap_err();
    assert_eq!(e, ConfigError::ObjectTooLarge { size: HUGE });
    // The largest supported alignment and size are accepted.
    Pool::<Page>::builder().build().unwrap();
    Pool::<[u8; 64 << 20]>::builder().build().unwrap();
}

#[test]
#[should_panic(expected = "alignment 8192")]
fn new_panics_on_an_unsupported_type() {
    let _ = Pool::<Align8k>::new();
}

// ------------------------------------------------------ double frees

/// Allocates `n` blocks and checks they are distinct and keep their values.
fn distinct_blocks(pool: &Pool<u64>, n: usize) {
    let held: Vec<_> = (0..n as u64).map(|i| pool.alloc(i).unwrap()).collect();
    let addrs: HashSet<usize> = held.iter().map(|b| &**b as *const u64 as usize).collect();
    assert_eq!(addrs.len(), n, "a block was handed to two holders");
    assert!(held.iter().enumerate().all(|(i, b)| **b == i as u64));
}

/// Frees one block twice through `from_raw`, each free here or on another
/// thread (the owner-local or the remote path).
fn double_free(pool: &Pool<u64>, first_remote: bool, second_remote: bool) {
    let p = PoolBox::into_raw(pool.alloc(7).unwrap());
    let addr = p.as_ptr() as usize;
    let free = move |remote: bool| {
        let f = move || {
            let p = NonNull::new(addr as *mut u64).unwrap();
            // SAFETY: `u64` has no drop glue; the second free is the
            // double free under test, which the pool must refuse.
            drop(unsafe { PoolBox::from_raw(p) });
        };
        if remote {
            std::thread::spawn(f).join().unwrap();
        } else {
            f();
        }
    };
    free(first_remote);
    free(second_remote);
}

fn double_frees_are_refused(hardened: bool) {
    let pool = Pool::<u64>::builder()
        .hardened(hardened)
        .slab_capacity(16)
        .build()
        .unwrap();
    let keep: Vec<_> = (0..5).map(|i| pool.alloc(100 + i).unwrap()).collect();
    let mut expected = 0;
    for (a, b) in [(false, false), (true, true), (true, false), (false, true)] {
        double_free(&pool, a, b);
        expected += 1;
        let s = pool.stats();
        assert_eq!(s.double_frees, expected, "{a} {b}: {s:?}");
        assert_eq!(
            s.live_blocks,
            keep.len() as u64,
            "the refused free was not counted: {s:?}"
        );
        distinct_blocks(&pool, 40);
    }
    assert!(keep.iter().enumerate().all(|(i, b)| **b == 100 + i as u64));
    drop(keep);
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.corruption_events, 0);
    assert_eq!(s.foreign_frees, 0);
}

#[test]
fn hardened_double_free_is_refused_and_counted() {
    double_frees_are_refused(true);
}

#[test]
fn plain_double_free_is_refused_and_counted() {
    double_frees_are_refused(false);
}

// ----------------------------------------------------- foreign pointers

#[test]
fn from_raw_in_refuses_foreign_pointers() {
    let pool = Pool::<Block>::new();
    let other = Pool::<Block>::new();
    let mut refused = 0;
    let mut check = |p: NonNull<Block>| {
        // SAFETY: none of these pointers is a live block of `pool`,
        // so `from_raw_in` must refuse them without touching them.
        let r = unsafe { PoolBox::from_raw_in(&pool, p) };
        assert_eq!(r.err(), Some(ForeignPointer));
        refused += 1;
        assert_eq!(pool.stats().foreign_frees, refused);
    };

    // A block of another pool.
    let theirs = PoolBox::into_raw(other.alloc([1; 8]).unwrap());
    check(theirs);
    // A `Box` pointer.
    let boxed = NonNull::new(Box::into_raw(Box::new([2u64; 8]))).unwrap();
    check(boxed);
    // A stack pointer.
    let mut local = [3u64; 8];
    check(NonNull::from(&mut local));

    let mine = PoolBox::into_raw(pool.alloc([4; 8]).unwrap());
    let base = mine.as_ptr() as usize;
    // Interior pointers, misaligned and aligned.
    check(NonNull::new((base + 1) as *mut Block).unwrap());
    check(NonNull::new((base + 8) as *mut Block).unwrap());
    // An address inside the pool's mapping but in no slab, or outside it.
    let slab = pool.stats().slab_bytes as usize;
    check(NonNull::new((base - slab) as *mut Block).unwrap());
    // A block that is no longer live.
    let gone = PoolBox::into_raw(pool.alloc([5; 8]).unwrap());
    // SAFETY: `gone` came from `into_raw` and is owned by nothing.
    drop(unsafe { PoolBox::from_raw(gone) });
    check(gone);

    // None of this disturbed the pool, and the real ones are accepted.
    // SAFETY: live blocks of these pools, owned by nothing else.
    let mine = unsafe { PoolBox::from_raw_in(&pool, mine) }.unwrap();
    assert_eq!(*mine, [4; 8]);
    // SAFETY: as above.
    let theirs = unsafe { PoolBox::from_raw_in(&other, theirs) }.unwrap();
    assert_eq!(*theirs, [1; 8]);
    drop((mine, theirs));
    // SAFETY: `boxed` came from `Box::into_raw`.
    drop(unsafe { Box::from_raw(boxed.as_ptr()) });
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.foreign_frees, refused);
    assert_eq!(s.double_frees, 0);
    assert_eq!(other.stats().foreign_frees, 0);
    assert_eq!(other.stats().live_blocks, 0);
    let e = ForeignPointer.to_string();
    assert!(e.contains("not a live block"), "{e}");
}

/// A box of another type over a block (breaking `from_raw`'s contract on
/// purpose; the `[u64; 2]` lies inside the live 64-byte block, so nothing is
/// read out of bounds): both types' slabs are 16 KiB, so the drop finds the
/// right header, but the slab's shape is not `[u64; 2]`'s. Refused and
/// counted as a free that reached no pool; the block stays live and is freed
/// normally afterwards.
#[test]
fn drop_through_another_type_is_refused() {
    let pool = Pool::<Block>::new();
    // A block well inside its slab, where a 16-byte stride would find slots.
    let mut others: Vec<_> = (0..150).map(|i| pool.alloc([i; 8]).unwrap()).collect();
    let b = pool.alloc([9; 8]).unwrap();
    let raw = PoolBox::into_raw(b);
    let unowned = Pool::<Block>::unowned_frees();
    // SAFETY: see above: readable, aligned memory; only the drop is wrong.
    drop(unsafe { PoolBox::<[u64; 2]>::from_raw(raw.cast()) });
    // (No other test in this binary frees into no pool.)
    assert_eq!(Pool::<Block>::unowned_frees(), unowned + 1);
    let s = pool.stats();
    assert_eq!((s.foreign_frees, s.double_frees), (0, 0));
    assert_eq!((s.live_blocks, s.frees), (151, 0));
    for (i, o) in others.drain(..).enumerate() {
        assert_eq!(*o, [i as u64; 8]);
    }
    // SAFETY: `raw` is still a live block of `pool`, owned by nothing.
    let b = unsafe { PoolBox::from_raw_in(&pool, raw) }.unwrap();
    assert_eq!(*b, [9; 8]);
    drop(b);
    assert_eq!(pool.stats().live_blocks, 0);
}

// --------------------------------------------------- zero-sized types

#[test]
fn zero_sized_types_need_no_memory() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Z;
    impl Drop for Z {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    let pool = Pool::<Z>::new();
    let held: Vec<_> = (0..10_000).map(|_| pool.alloc(Z).unwrap()).collect();
    let s = pool.stats();
    assert_eq!((s.mapped_bytes, s.reserved_bytes), (0, 0), "{s:?}");
    let theirs: Vec<_> = held.into_iter().skip(5_000).collect();
    std::thread::spawn(move || drop(theirs)).join().unwrap();
    assert_eq!(DROPS.load(Ordering::Relaxed), 10_000);
    let z = PoolBox::into_inner(pool.alloc(Z).unwrap());
    assert_eq!(
        DROPS.load(Ordering::Relaxed),
        10_000,
        "into_inner does not drop"
    );
    drop(z);
    assert_eq!(DROPS.load(Ordering::Relaxed), 10_001);
    let p = PoolBox::into_raw(pool.alloc(Z).unwrap());
    // SAFETY: `p` came from `into_raw`.
    drop(unsafe { PoolBox::from_raw_in(&pool, p) }.unwrap());
    assert_eq!(DROPS.load(Ordering::Relaxed), 10_002);
    let s = pool.stats();
    assert_eq!(
        (s.mapped_bytes, s.reserved_bytes, s.live_blocks),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(Pool::<()>::new().alloc(()).map(|b| *b), Ok(()));
}

// ------------------------------------------------------ page alignment

#[test]
fn page_aligned_type() {
    let pool = Pool::<Page>::new();
    let held: Vec<_> = (0..100u8)
        .map(|i| pool.alloc(Page { bytes: [i; 4096] }).unwrap())
        .collect();
    let mut addrs = HashSet::new();
    for (i, b) in held.iter().enumerate() {
        let a = &**b as *const Page as usize;
        assert_eq!(a % 4096, 0, "misaligned page block");
        assert!(addrs.insert(a));
        assert!(b.bytes.iter().all(|&x| x == i as u8));
    }
    let s = pool.stats();
    assert_eq!(s.live_blocks, 100);
    assert!(s.slab_capacity >= 1);
    let theirs: Vec<_> = held.into_iter().skip(50).collect();
    std::thread::spawn(move || {
        for (i, b) in theirs.into_iter().enumerate() {
            assert!(b.bytes.iter().all(|&x| x == (50 + i) as u8));
        }
    })
    .join()
    .unwrap();
    assert_eq!(pool.stats().live_blocks, 0);
}

// ------------------------------------------------------------ into_inner

#[test]
fn into_inner_moves_the_value_out_and_frees_the_block() {
    let pool = Pool::<String>::builder().hardened(true).build().unwrap();
    let b = pool.alloc(String::from("hello")).unwrap();
    assert_eq!(pool.stats().live_blocks, 1);
    let s = PoolBox::into_inner(b);
    assert_eq!(s, "hello");
    assert_eq!(pool.stats().live_blocks, 0);
    // From another thread too.
    let b = pool.alloc(String::from("there")).unwrap();
    let s = std::thread::spawn(move || PoolBox::into_inner(b))
        .join()
        .unwrap();
    assert_eq!(s, "there");
    let st = pool.stats();
    assert_eq!(
        (st.live_blocks, st.allocs, st.frees, st.remote_frees),
        (0, 2, 2, 1)
    );
}

// ---------------------------------------------------- traits and Debug

#[test]
fn auto_traits() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    fn clone<T: Clone>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    fn debug<T: Debug>() {}
    send::<Pool<String>>();
    sync::<Pool<String>>();
    clone::<Pool<String>>();
    send::<PoolBox<String>>();
    sync::<PoolBox<String>>();
    send::<Pool<std::cell::Cell<u8>>>();
    send::<PoolBox<std::cell::Cell<u8>>>();
    clone::<PoolBuilder<String>>();
    debug::<PoolBuilder<String>>();
    debug::<Pool<String>>();
    debug::<PoolBox<String>>();
    debug::<Stats>();
    error::<AllocError>();
    error::<ConfigError>();
    error::<ForeignPointer>();
}

#[test]
fn debug_impls() {
    let pool = Pool::<u32>::new();
    let b = pool.alloc(42).unwrap();
    assert_eq!(format!("{b:?}"), "42");
    let p = format!("{pool:?}");
    assert!(p.starts_with("Pool") && p.contains("live_blocks: 1"), "{p}");
    let s = format!("{:?}", pool.stats());
    assert!(s.starts_with("Stats") && s.contains("slab_capacity"), "{s}");
    let bl = format!("{:?}", Pool::<u32>::builder().hardened(true));
    assert!(bl.contains("hardened: true"), "{bl}");
    assert_eq!(format!("{:?}", AllocError::OutOfMemory), "OutOfMemory");
    assert!(format!("{:?}", AllocError::MemoryLimit { limit: 9 }).contains("limit: 9"));
    assert_eq!(format!("{ForeignPointer:?}"), "ForeignPointer");
    let e = ConfigError::InvalidSetting {
        name: "x",
        requirement: "y",
    };
    assert!(format!("{e:?}").contains("InvalidSetting"));
    assert_eq!(e.to_string(), "homeslab: invalid `x`: y");
    assert_eq!(Stats::default().live_blocks, 0);
}

#[test]
fn clones_share_one_pool() {
    let pool = Pool::<u64>::default();
    let other = pool.clone();
    let b = other.alloc(1).unwrap();
    assert_eq!(pool.stats().live_blocks, 1);
    drop(other);
    assert_eq!(pool.stats().live_blocks, 1);
    drop(b);
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.allocs, s.frees), (0, 1, 1));
}
