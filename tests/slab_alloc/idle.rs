//! The allocator-wide idle release: what one size class (or the large
//! arena) freed goes back to the OS once idle for `release_after`, on the
//! slow paths of *any* class or large operation, not only its own; `trim`
//! still returns everything; threads working in many classes while the
//! sweep runs never see a live block change.
//!
//! The tests wait until the period has surely passed, then drive another
//! part of the allocator's slow path a bounded number of times and check the
//! counters: no timing luck involved (only a slower machine makes them wait
//! longer).

use std::thread;
use std::time::{Duration, Instant};

use homeslab::{flush_remote_frees, SlabAlloc, Stats};

use crate::blocks::{assert_quiet, assert_stamped, layout, Block, KIB, MAX_CLASS, MIB};
use crate::common::mix;

const PERIOD: Duration = Duration::from_millis(100);

/// The region of the 256 KiB class's slabs: at most one of them stays as
/// the heap's current slab.
const MAX_CLASS_REGION: u64 = 4 * MIB as u64;

/// An allocator that releases idle memory after [`PERIOD`], whose heaps
/// keep no empty slab beyond their current one (so freed slabs reach their
/// page source at once).
fn alloc() -> SlabAlloc {
    SlabAlloc::builder()
        .release_after(Some(PERIOD))
        .retained_empty_slabs(0)
        .build()
        .unwrap()
}

/// Slow paths of the 64-byte class: more blocks than two of its slabs hold
/// (its regions are at most 64 KiB), so it takes regions from its page
/// source, then gives them back.
fn small_class_slow_path(a: &SlabAlloc) {
    let blocks: Vec<Block> = (0..2 * 64 * KIB / 64)
        .map(|_| Block::new(a, layout(64, 8)))
        .collect();
    for b in blocks {
        b.free(a);
    }
}

/// A large operation: one block of the arena, allocated and freed.
fn large_slow_path(a: &SlabAlloc) {
    Block::new(a, layout(MIB, 8)).free(a);
}

/// Allocates 1000 blocks of 256 KiB and frees them (the owner's frees go
/// back to their slabs). Returns the stats right after and when that was.
fn burst_of_medium_blocks(a: &SlabAlloc) -> (Stats, Instant) {
    let blocks: Vec<Block> = (0..1000)
        .map(|_| Block::new(a, layout(MAX_CLASS, 8)))
        .collect();
    for b in blocks {
        b.free(a);
    }
    flush_remote_frees();
    (a.stats(), Instant::now())
}

/// Sleeps until `since + 2 × PERIOD`: every region freed before `since` has
/// then been idle for a whole period, and a sweep is due (at most one runs
/// per half period, and none ran after `since` without a slow path).
fn wait_past_the_period(since: Instant) {
    let until = since + 2 * PERIOD;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        thread::sleep(left + Duration::from_millis(1));
    }
}

/// Drives `slow_path` up to three times, until `mapped_bytes` is at most
/// `target`; returns the stats then.
fn drive_until_at_most(a: &SlabAlloc, target: u64, slow_path: fn(&SlabAlloc)) -> Stats {
    let mut s = a.stats();
    for _ in 0..3 {
        slow_path(a);
        s = a.stats();
        if s.mapped_bytes <= target {
            break;
        }
    }
    s
}

/// The scenario for both kinds of slow path: a burst of medium blocks,
/// freed, idle past the period; then only `slow_path` runs, and the
/// medium class's regions go back to the OS.
fn medium_regions_released_by(slow_path: fn(&SlabAlloc), what: &str) {
    let a = alloc();
    // The other class (or the arena) warm first: its own memory is the
    // baseline.
    slow_path(&a);
    let baseline = a.stats();
    let (freed, freed_at) = burst_of_medium_blocks(&a);
    println!("{what}: baseline {baseline:?}\nafter the burst: {freed:?}");
    assert_eq!(freed.live_blocks, 0, "{freed:?}");
    // 1000 blocks of 256 KiB fill 67 regions of 4 MiB.
    assert!(
        freed.mapped_bytes + freed.released_bytes
            >= baseline.mapped_bytes + 1000 * 256 * KIB as u64,
        "{freed:?}"
    );
    wait_past_the_period(freed_at);
    let after = drive_until_at_most(&a, baseline.mapped_bytes + MAX_CLASS_REGION, slow_path);
    println!("after idling, {what}'s slow path: {after:?}");
    assert!(
        after.mapped_bytes <= baseline.mapped_bytes + MAX_CLASS_REGION,
        "{what}: the idle medium regions stayed: {after:?}"
    );
    assert!(
        after.released_bytes
            >= baseline.released_bytes + 1000 * 256 * KIB as u64 - MAX_CLASS_REGION,
        "{after:?}"
    );
    // `trim` still gives back everything.
    let trimmed = a.trim();
    let s = a.stats();
    println!("trim released {trimmed}: {s:?}");
    assert_eq!(s.mapped_bytes, 0, "{s:?}");
    assert_quiet(&a);
}

#[test]
#[cfg_attr(miri, ignore)]
fn idle_medium_regions_are_released_by_another_classs_slow_path() {
    medium_regions_released_by(small_class_slow_path, "the 64-byte class");
}

#[test]
#[cfg_attr(miri, ignore)]
fn idle_medium_regions_are_released_by_large_operations() {
    medium_regions_released_by(large_slow_path, "a large block");
}

/// The other way round: large blocks freed, then only a size class's slow
/// paths run; the arena's idle spans give their pages back.
#[test]
#[cfg_attr(miri, ignore)]
fn idle_large_spans_are_released_by_a_classs_slow_path() {
    let a = alloc();
    small_class_slow_path(&a);
    let baseline = a.stats();
    let blocks: Vec<Block> = (0..8).map(|_| Block::new(&a, layout(2 * MIB, 8))).collect();
    for b in blocks {
        b.free(&a);
    }
    let (freed, freed_at) = (a.stats(), Instant::now());
    assert_eq!(freed.large_blocks, 0, "{freed:?}");
    assert!(
        freed.mapped_bytes + freed.released_bytes >= baseline.mapped_bytes + 16 * MIB as u64,
        "{freed:?}"
    );
    wait_past_the_period(freed_at);
    let after = drive_until_at_most(&a, baseline.mapped_bytes, small_class_slow_path);
    println!("large spans idle, then the 64-byte class: {after:?}");
    assert!(after.mapped_bytes <= baseline.mapped_bytes, "{after:?}");
    assert!(
        after.released_bytes >= baseline.released_bytes + 16 * MIB as u64,
        "{after:?}"
    );
    a.trim();
    assert_eq!(a.stats().mapped_bytes, 0);
    assert_quiet(&a);
}

/// Without `release_after` nothing is released but by `trim`, however long
/// the memory idles and whatever runs.
#[test]
#[cfg_attr(miri, ignore)]
fn without_release_after_only_trim_releases_medium_regions() {
    let a = SlabAlloc::builder()
        .release_after(None)
        .retained_empty_slabs(0)
        .build()
        .unwrap();
    small_class_slow_path(&a);
    let (freed, freed_at) = burst_of_medium_blocks(&a);
    assert_eq!(freed.released_bytes, 0, "{freed:?}");
    wait_past_the_period(freed_at);
    small_class_slow_path(&a);
    large_slow_path(&a);
    let s = a.stats();
    assert_eq!(s.released_bytes, 0, "{s:?}");
    assert_eq!(
        s.mapped_bytes,
        freed.mapped_bytes + MIB as u64,
        "the large span stays dirty: {s:?}"
    );
    assert!(a.trim() >= 1000 * 256 * KIB as u64);
    assert_eq!(a.stats().mapped_bytes, 0);
    assert_quiet(&a);
}

/// Four threads allocate and free stamped blocks of small, medium and
/// large sizes, each checked before its free, with a period short enough
/// that sweeps run all along (from every class and the large blocks, on
/// every thread) while a fifth trims now and then: no live block changes.
#[test]
#[cfg_attr(miri, ignore)]
fn threads_in_many_classes_while_the_sweep_runs() {
    const THREADS: u64 = 4;
    const OPS: u64 = 1500;
    let a = SlabAlloc::builder()
        .release_after(Some(Duration::from_millis(1)))
        .retained_empty_slabs(0)
        .build()
        .unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let a = a.clone();
            thread::spawn(move || {
                let mut mine: Vec<(u64, Block)> = Vec::new();
                for i in 0..OPS {
                    let id = t << 32 | i;
                    let r = mix(id);
                    let size = match r % 8 {
                        0 => MAX_CLASS + 1 + (r >> 8) as usize % MAX_CLASS,
                        1..=3 => 32 * KIB + 1 + (r >> 8) as usize % (MAX_CLASS - 32 * KIB),
                        _ => 1 + (r >> 8) as usize % 1024,
                    };
                    mine.push((id, Block::stamped(&a, layout(size, 8), id)));
                    if mine.len() > 24 || r & 0x100 != 0 {
                        let (bid, b) = mine.swap_remove((r >> 16) as usize % mine.len());
                        assert_stamped(b.bytes(), bid, "before free");
                        b.free(&a);
                    }
                    if t == 0 && i % 500 == 0 {
                        a.trim();
                    }
                }
                for (bid, b) in mine {
                    assert_stamped(b.bytes(), bid, "at the end");
                    b.free(&a);
                }
                flush_remote_frees();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let s = a.stats();
    assert!(s.released_bytes > 0, "{s:?}");
    a.trim();
    assert_eq!(a.stats().mapped_bytes, 0);
    assert_quiet(&a);
}
