//! Memory: what `trim` gives back after a burst, the `max_bytes` budget,
//! refused OS mappings, and the working-set policy (`release_after`).
//!
//! Run with `--nocapture` to see the before/after numbers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use homeslab::{AllocError, Pool, PoolBox};

type Block = [u64; 8];

fn block(i: u64) -> Block {
    let mut b = [0; 8];
    for (k, w) in b.iter_mut().enumerate() {
        *w = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k as u64;
    }
    b
}

/// Region size and slots per slab of a default `Pool<Block>` (maps nothing).
fn geometry() -> (u64, usize) {
    let s = Pool::<Block>::new().stats();
    (s.slab_bytes, s.slab_capacity as usize)
}

#[test]
fn trim_after_a_burst_of_a_million_blocks() {
    const N: u64 = 1_000_000;
    let pool = Pool::<Block>::new();
    let mut blocks: Vec<PoolBox<Block>> = Vec::with_capacity(N as usize);
    for i in 0..N {
        blocks.push(pool.alloc(block(i)).unwrap());
    }
    let full = pool.stats();
    assert_eq!(full.live_blocks, N);
    assert!(full.mapped_bytes >= N * 64);
    // Free a third on another thread (remote frees), the rest here.
    let theirs = blocks.split_off(2 * N as usize / 3);
    let remote = std::thread::spawn(move || {
        let first = N - theirs.len() as u64;
        for (i, b) in theirs.into_iter().enumerate() {
            assert_eq!(*b, block(first + i as u64));
        }
    });
    for (i, b) in blocks.into_iter().enumerate() {
        assert_eq!(*b, block(i as u64));
    }
    remote.join().unwrap();
    let freed = pool.stats();
    assert_eq!(freed.live_blocks, 0);
    let released = pool.trim();
    let after = pool.stats();
    println!(
        "1M x 64 B: live mapped {} B, after free {} B, after trim {} B \
         (trim released {released} B; peak {} B, reserved now {} B)",
        full.mapped_bytes,
        freed.mapped_bytes,
        after.mapped_bytes,
        after.peak_mapped_bytes,
        after.reserved_bytes
    );
    assert!(
        after.mapped_bytes * 10 < after.peak_mapped_bytes,
        "trim left {} of a peak of {}",
        after.mapped_bytes,
        after.peak_mapped_bytes
    );
    assert!(released > 0);
    assert!(after.released_bytes >= released);
    // Still usable.
    let b = pool.alloc(block(7)).unwrap();
    assert_eq!(*b, block(7));
}

#[test]
fn max_bytes_is_enforced_then_recovered() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted(#[allow(dead_code)] Block);
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }

    let (slab, capacity) = geometry();
    let limit = 4 * slab;
    let pool = Pool::<Counted>::builder().max_bytes(limit).build().unwrap();
    let mut held = Vec::new();
    let err = loop {
        match pool.alloc(Counted(block(held.len() as u64))) {
            Ok(b) => held.push(b),
            Err(e) => break e,
        }
        assert!(held.len() <= 4 * capacity, "the budget is not enforced");
    };
    assert_eq!(err, AllocError::MemoryLimit { limit });
    let text = err.to_string();
    println!("{text}");
    assert!(
        text.contains("max_bytes") && text.contains(&limit.to_string()),
        "{text}"
    );
    assert_eq!(
        held.len(),
        4 * capacity,
        "every slab within the budget was used"
    );
    assert_eq!(
        DROPS.load(Ordering::Relaxed),
        1,
        "the refused value was dropped"
    );
    let s = pool.stats();
    assert!(s.mapped_bytes <= limit);
    assert_eq!(s.live_blocks, held.len() as u64);
    // Refused again, consistently.
    assert!(matches!(
        pool.alloc(Counted(block(0))),
        Err(AllocError::MemoryLimit { .. })
    ));

    // Frees make room.
    let freed: Vec<_> = held.drain(..10).collect();
    drop(freed);
    for _ in 0..10 {
        held.push(pool.alloc(Counted(block(1))).unwrap());
    }
    assert!(pool.alloc(Counted(block(0))).is_err());

    // Everything freed (some remotely) and trimmed: the whole budget again.
    let theirs = held.split_off(held.len() / 2);
    std::thread::spawn(move || drop(theirs)).join().unwrap();
    drop(held);
    assert_eq!(pool.stats().live_blocks, 0);
    pool.trim();
    let again: Vec<_> = (0..4 * capacity)
        .map(|i| pool.alloc(Counted(block(i as u64))).unwrap())
        .collect();
    assert!(pool.alloc(Counted(block(0))).is_err());
    for (i, b) in again.iter().enumerate() {
        assert_eq!(b.0, block(i as u64));
    }
    assert!(pool.stats().mapped_bytes <= limit);
}

#[test]
fn max_bytes_also_bounds_the_tier() {
    let (slab, capacity) = geometry();
    let limit = 2 * slab;
    let pool = Pool::<Block>::builder()
        .max_bytes(limit)
        .max_thread_heaps(0)
        .build()
        .unwrap();
    let held: Vec<_> = (0..2 * capacity)
        .map(|i| pool.alloc(block(i as u64)).unwrap())
        .collect();
    assert_eq!(
        pool.alloc(block(0)).unwrap_err(),
        AllocError::MemoryLimit { limit }
    );
    let s = pool.stats();
    assert_eq!(s.overflow_allocs, 2 * capacity as u64);
    assert!(s.mapped_bytes <= limit);
    drop(held);
    assert!(pool.alloc(block(0)).is_ok());
}

#[test]
fn injected_map_failure_is_out_of_memory_and_recoverable() {
    let (_, capacity) = geometry();
    // 64 KiB chunks: four slab regions per OS mapping.
    let pool = Pool::<Block>::builder()
        .chunk_bytes(64 * 1024)
        .build()
        .unwrap();

    // The very first mapping fails.
    pool.inject_map_failures(1);
    let err = pool.alloc(block(0)).unwrap_err();
    assert_eq!(err, AllocError::OutOfMemory);
    assert!(!err.to_string().is_empty());
    let s = pool.stats();
    assert_eq!(
        (s.live_blocks, s.allocs, s.mapped_bytes, s.reserved_bytes),
        (0, 0, 0, 0),
        "{s:?}"
    );

    // Then it works, and fills the first chunk.
    let mut held: Vec<_> = (0..4 * capacity)
        .map(|i| pool.alloc(block(i as u64)).unwrap())
        .collect();
    let reserved = pool.stats().reserved_bytes;

    // The next slab needs a new mapping: two refusals, then success.
    pool.inject_map_failures(2);
    assert_eq!(pool.alloc(block(0)).unwrap_err(), AllocError::OutOfMemory);
    assert_eq!(pool.alloc(block(0)).unwrap_err(), AllocError::OutOfMemory);
    let s = pool.stats();
    assert_eq!(s.live_blocks, held.len() as u64, "{s:?}");
    assert_eq!(s.reserved_bytes, reserved, "nothing was mapped");
    for i in 0..capacity {
        held.push(pool.alloc(block((4 * capacity + i) as u64)).unwrap());
    }
    assert!(pool.stats().reserved_bytes > reserved);
    for (i, b) in held.iter().enumerate() {
        assert_eq!(**b, block(i as u64), "a block changed across the failures");
    }
    let n = held.len() as u64;
    assert_eq!(pool.stats().live_blocks, n);
    drop(held);
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.allocs, s.frees), (0, n, n), "{s:?}");
    assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
}

#[test]
fn injected_map_failure_in_the_tier() {
    let pool = Pool::<Block>::builder()
        .max_thread_heaps(0)
        .build()
        .unwrap();
    pool.inject_map_failures(1);
    assert_eq!(pool.alloc(block(0)).unwrap_err(), AllocError::OutOfMemory);
    let b = pool.alloc(block(1)).unwrap();
    assert_eq!(*b, block(1));
    let s = pool.stats();
    assert_eq!(
        (s.live_blocks, s.overflow_allocs, s.overflow_segments),
        (1, 1, 1),
        "{s:?}"
    );
}

/// Fills `slabs` slabs, frees everything: with `retained_empty_slabs(0)`
/// all but the heap's current slab go back to the page source as warm free
/// regions (still counted in `mapped_bytes`).
fn fill_and_free(pool: &Pool<Block>, slabs: usize) {
    let (slab, capacity) = geometry();
    let held: Vec<_> = (0..slabs * capacity)
        .map(|i| pool.alloc(block(i as u64)).unwrap())
        .collect();
    assert_eq!(pool.stats().mapped_bytes, slabs as u64 * slab);
    // The owner's frees go back to their slabs, the first after a stay in
    // its hot slot, which the flush ends.
    drop(held);
    homeslab::flush_remote_frees();
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.held_blocks), (0, 0), "{s:?}");
}

/// A later slow path that reaches the page source: one slab more than the
/// (empty) current one, so a region is taken from the source.
fn slow_path_through_the_source(pool: &Pool<Block>) -> Vec<PoolBox<Block>> {
    let (_, capacity) = geometry();
    (0..capacity + 1)
        .map(|i| pool.alloc(block(i as u64)).unwrap())
        .collect()
}

#[test]
fn without_release_after_only_trim_releases() {
    let (slab, _) = geometry();
    let pool = Pool::<Block>::builder()
        .release_after(None)
        .retained_empty_slabs(0)
        .build()
        .unwrap();
    fill_and_free(&pool, 4);
    assert_eq!(
        pool.stats().mapped_bytes,
        4 * slab,
        "freed regions stay warm"
    );
    // Time passing and later slow paths release nothing.
    std::thread::sleep(Duration::from_millis(30));
    let held = slow_path_through_the_source(&pool);
    let s = pool.stats();
    println!("release_after(None), before trim: {s:?}");
    assert_eq!(s.released_bytes, 0, "{s:?}");
    // Current slab + one taken from the warm regions + two still warm.
    assert_eq!(s.mapped_bytes, 4 * slab, "{s:?}");
    drop(held);
    let released = pool.trim();
    let s = pool.stats();
    println!("after trim: released {released}; {s:?}");
    assert_eq!(released, 4 * slab);
    assert_eq!(s.released_bytes, 4 * slab);
    assert_eq!(s.mapped_bytes, 0);
}

#[test]
fn release_after_releases_idle_regions_on_a_later_slow_path() {
    let (slab, _) = geometry();
    let period = Duration::from_millis(50);
    let pool = Pool::<Block>::builder()
        .release_after(Some(period))
        .retained_empty_slabs(0)
        .build()
        .unwrap();
    fill_and_free(&pool, 4);
    // Three warm free regions in the source, one empty current slab. Once
    // they have been idle for a whole period (sleep waits at least that
    // long, so this does not depend on timing luck), the next slow path
    // that reaches the source takes one of them and releases the others.
    std::thread::sleep(2 * period + Duration::from_millis(10));
    let held = slow_path_through_the_source(&pool);
    let s = pool.stats();
    println!("release_after({period:?}), after idling: {s:?}");
    assert_eq!(s.released_bytes, 2 * slab, "{s:?}");
    assert_eq!(s.mapped_bytes, 2 * slab, "{s:?}");
    drop(held);
    pool.trim();
    assert_eq!(pool.stats().mapped_bytes, 0);
}
