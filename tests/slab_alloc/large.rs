//! The large blocks' arena: freed neighbours coalesce and serve their sum,
//! blocks grow in place, idle spans are purged after `release_after`, free
//! spans past the dirty cap are purged on free,
//! `trim` returns everything, a `max_bytes` budget gets freed room back at
//! once, and threads allocating, resizing and freeing large blocks while
//! another trims never see a block lose its stamp or overlap another.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::SlabAlloc;

use crate::blocks::{assert_quiet, assert_stamped, assert_zero, layout, stamp, Block, LiveSet};
use crate::blocks::{KIB, MIB};
use crate::common::mix;

fn no_idle_release() -> SlabAlloc {
    SlabAlloc::builder().release_after(None).build().unwrap()
}

/// Three blocks carved one after another; the first two freed: the span
/// they leave serves a block of their summed length at the same address.
#[test]
fn freed_neighbours_coalesce_and_serve_their_sum() {
    let a = no_idle_release();
    let x = Block::stamped(&a, layout(320 * KIB, 8), 1);
    let y = Block::stamped(&a, layout(768 * KIB, 8), 2);
    let z = Block::stamped(&a, layout(320 * KIB, 8), 3);
    assert_eq!(y.addr(), x.addr() + x.len, "first fit carves in order");
    assert_eq!(z.addr(), y.addr() + y.len);
    let (start, sum) = (x.addr(), x.len + y.len);
    y.free(&a);
    x.free(&a);
    let w = Block::stamped(&a, layout(sum, 8), 4);
    assert_eq!((w.addr(), w.len), (start, sum));
    assert_stamped(z.bytes(), 3, "neighbour");
    w.free(&a);
    z.free(&a);
    assert_quiet(&a);
}

/// A block grows in place into the free span after it (the address and
/// contents stay; `grow_zeroed`'s new bytes read zero even where a freed
/// block left its stamp) and shrinks in place.
#[test]
fn blocks_grow_and_shrink_in_place() {
    let a = no_idle_release();
    let mut b = Block::stamped(&a, layout(300 * KIB, 8), 7);
    let at = b.addr();
    let old = b.len;
    // Leave a dirty span after `b`.
    let d = Block::stamped(&a, layout(MIB, 8), 8);
    assert_eq!(d.addr(), at + old);
    d.free(&a);
    b.resize(&a, 300 * KIB, layout(MIB, 8), true).unwrap();
    assert_eq!(b.addr(), at, "grown in place");
    assert_stamped(&b.bytes()[..300 * KIB], 7, "grown block");
    assert_zero(&b.bytes()[old..], "grown_zeroed tail");
    b.resize(&a, MIB, layout(280 * KIB, 8), false).unwrap();
    assert_eq!(b.addr(), at, "shrunk in place");
    assert_stamped(&b.bytes()[..280 * KIB], 7, "shrunk block");
    assert_eq!(a.stats().large_bytes, b.len as u64);
    b.free(&a);
    assert_quiet(&a);
}

/// Frees of arena addresses that start no live block — a freed block
/// merged with its free neighbour, the tail a shrink gave back, the inside
/// of a live block — are refused and counted without reading the memory,
/// and change nothing: the free room serves new blocks, the live ones keep
/// their stamps.
#[test]
fn arena_addresses_that_start_no_block_are_refused() {
    let a = no_idle_release();
    let x = Block::stamped(&a, layout(320 * KIB, 8), 1);
    let y = Block::stamped(&a, layout(320 * KIB, 8), 2);
    let mut z = Block::stamped(&a, layout(MIB, 8), 3);
    let guard = Block::stamped(&a, layout(320 * KIB, 8), 4);
    let (xa, ya) = (x.addr(), y.addr());
    x.free(&a);
    y.free(&a);
    z.resize(&a, MIB, layout(320 * KIB, 8), false).unwrap();
    let l = layout(320 * KIB, 8);
    let bogus = [xa, ya, z.addr() + 512 * KIB, z.addr() + 4096];
    for (i, &p) in bogus.iter().enumerate() {
        // SAFETY: no live large block of `a` starts at `p`: looked up in
        // the table and refused, never dereferenced.
        unsafe { a.deallocate(NonNull::new(p as *mut u8).unwrap(), l) };
        let s = a.stats();
        assert_eq!(s.foreign_frees, 1 + i as u64, "{p:#x}: {s:?}");
        assert_eq!((s.large_blocks, s.live_blocks), (2, 2), "{s:?}");
    }
    let w = Block::stamped(&a, layout(640 * KIB, 8), 5);
    assert_eq!(w.addr(), xa, "the merged span serves its sum");
    assert_stamped(z.bytes(), 3, "shrunk block");
    assert_stamped(guard.bytes(), 4, "neighbour");
    for b in [w, z, guard] {
        b.free(&a);
    }
    let s = a.stats();
    assert_eq!(
        (s.live_blocks, s.large_blocks, s.large_bytes),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!((s.double_frees, s.foreign_frees), (0, 4), "{s:?}");
}

/// Freed spans keep their pages until they stayed unused for
/// `release_after`; a later large operation purges them.
#[test]
#[cfg_attr(miri, ignore)]
fn idle_spans_are_purged_after_release_after() {
    let period = Duration::from_millis(40);
    let a = SlabAlloc::builder()
        .release_after(Some(period))
        .build()
        .unwrap();
    let b = Block::stamped(&a, layout(2 * MIB, 8), 1);
    b.free(&a);
    let s = a.stats();
    assert_eq!(s.mapped_bytes, 2 * MIB as u64, "dirty until idle: {s:?}");
    thread::sleep(period * 3);
    let keep = Block::stamped(&a, layout(320 * KIB, 8), 2);
    let t = a.stats();
    assert_eq!(t.mapped_bytes, keep.len as u64, "{t:?}");
    assert!(t.released_bytes >= s.released_bytes + 2 * MIB as u64 - keep.len as u64);
    keep.free(&a);
    assert_quiet(&a);
}

/// Free spans keep at most 64 MiB of dirty bytes, or a quarter of the
/// bytes in live large blocks if that is more, between idle purges: past
/// that the longest-free spans are purged on free. (Blocks are not touched:
/// the counts are of bytes that may be resident.)
#[test]
#[cfg_attr(miri, ignore)]
fn dirty_spans_past_the_cap_are_purged_on_free() {
    let a = no_idle_release();
    let mapped = |a: &SlabAlloc| a.stats().mapped_bytes as usize;
    // No live block: the 64 MiB floor.
    let blocks: Vec<Block> = (0..12)
        .map(|_| Block::new(&a, layout(8 * MIB, 8)))
        .collect();
    assert_eq!(mapped(&a), 96 * MIB);
    for b in blocks {
        b.free(&a);
    }
    let s = a.stats();
    assert!(s.mapped_bytes <= 64 * MIB as u64, "{s:?}");
    assert!(s.released_bytes >= 32 * MIB as u64, "{s:?}");
    // 288 MiB live: a quarter, 72 MiB.
    let live: Vec<Block> = (0..36)
        .map(|_| Block::new(&a, layout(8 * MIB, 8)))
        .collect();
    let freed: Vec<Block> = (0..12)
        .map(|_| Block::new(&a, layout(8 * MIB, 8)))
        .collect();
    let released = a.stats().released_bytes;
    for b in freed {
        b.free(&a);
    }
    let s = a.stats();
    assert!(s.mapped_bytes <= (288 + 72) * MIB as u64, "{s:?}");
    assert!(s.released_bytes >= released + 24 * MIB as u64, "{s:?}");
    for b in live {
        b.free(&a);
    }
    assert!(mapped(&a) <= 64 * MIB);
    a.trim();
    assert_quiet(&a);
}

/// After every block is freed, `trim` purges every span and unmaps every
/// chunk and mapping: nothing stays mapped or reserved.
#[test]
fn trim_returns_everything() {
    let a = no_idle_release();
    let sizes = [257 * KIB, 300 * KIB, 2 * MIB, 5 * MIB, 20 * MIB, 40 * MIB];
    let blocks: Vec<Block> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Block::stamped(&a, layout(n, 8), i as u64))
        .collect();
    for (i, b) in blocks.into_iter().enumerate() {
        assert_stamped(b.bytes(), i as u64, "large block");
        b.free(&a);
    }
    assert!(a.stats().mapped_bytes > 0);
    assert!(a.trim() > 0);
    let s = a.stats();
    assert_eq!((s.mapped_bytes, s.reserved_bytes), (0, 0), "{s:?}");
    assert_quiet(&a);
}

/// Under `max_bytes` a freed span's room comes back at once: its pages are
/// purged on free, and a block past the budget is refused.
#[test]
fn under_a_budget_freed_spans_are_purged_at_once() {
    let a = SlabAlloc::builder()
        .max_bytes(4 * MIB as u64)
        .release_after(None)
        .build()
        .unwrap();
    let x = Block::stamped(&a, layout(3 * MIB, 8), 1);
    assert!(Block::try_new(&a, layout(2 * MIB, 8)).is_none());
    let released = a.stats().released_bytes;
    x.free(&a);
    let s = a.stats();
    assert_eq!(s.mapped_bytes, 0, "{s:?}");
    assert_eq!(s.released_bytes, released + 3 * MIB as u64, "{s:?}");
    let y = Block::zeroed(&a, layout(4 * MIB, 8));
    assert!(Block::try_new(&a, layout(320 * KIB, 8)).is_none());
    y.free(&a);
    assert_quiet(&a);
}

/// A size from `r`: mostly 257 KiB – 857 KiB, some up to 3 MiB, now and
/// then above the arena's largest span (32 MiB).
fn large_size(r: u64) -> usize {
    match r % 100 {
        0 => 33 * MIB + (r >> 8) as usize % MIB,
        1..=15 => 257 * KIB + (r >> 8) as usize % (3 * MIB),
        _ => 257 * KIB + (r >> 8) as usize % (600 * KIB),
    }
}

/// Four threads allocate, resize and free large blocks of random sizes,
/// each stamped with its id and checked before every resize and free, no
/// two live ones overlapping; a fifth trims all along. At the end, after a
/// last trim, nothing stays mapped.
#[test]
#[cfg_attr(miri, ignore)]
fn threads_alloc_resize_free_while_another_trims() {
    const THREADS: u64 = 4;
    const OPS: u64 = 250;
    let a = SlabAlloc::builder()
        .release_after(Some(Duration::from_millis(2)))
        .build()
        .unwrap();
    let live = Arc::new(LiveSet::default());
    let done = Arc::new(AtomicBool::new(false));
    let trimmer = {
        let (a, done) = (a.clone(), done.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                a.trim();
                n += 1;
                thread::yield_now();
            }
            n
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (a, live) = (a.clone(), live.clone());
            thread::spawn(move || {
                let mut mine: Vec<(u64, Block)> = Vec::new();
                for i in 0..OPS {
                    let id = t << 32 | i;
                    let r = mix(id);
                    match r % 4 {
                        0 | 1 => {
                            let align = [8, 64, 4096, 8192, 65536][(r >> 59) as usize % 5];
                            let l = layout(large_size(mix(r)), align);
                            let b = Block::stamped(&a, l, id);
                            live.insert(&b, id);
                            mine.push((id, b));
                        }
                        2 if !mine.is_empty() => {
                            let (bid, mut b) = mine.swap_remove(r as usize % mine.len());
                            assert_stamped(b.bytes(), bid, "before resize");
                            live.remove(&b, bid);
                            let new = layout(large_size(mix(r ^ 1)), b.layout.align());
                            let keep = new.size().min(b.layout.size());
                            let old = b.layout.size();
                            b.resize(&a, old, new, r & 1 == 0).unwrap();
                            assert_stamped(&b.bytes()[..keep], bid, "after resize");
                            stamp(b.bytes_mut(), id);
                            live.insert(&b, id);
                            mine.push((id, b));
                        }
                        _ if !mine.is_empty() => {
                            let (bid, b) = mine.swap_remove(r as usize % mine.len());
                            assert_stamped(b.bytes(), bid, "before free");
                            live.remove(&b, bid);
                            b.free(&a);
                        }
                        _ => {}
                    }
                    if mine.len() > 12 {
                        let (bid, b) = mine.remove(0);
                        assert_stamped(b.bytes(), bid, "before free");
                        live.remove(&b, bid);
                        b.free(&a);
                    }
                }
                for (bid, b) in mine {
                    assert_stamped(b.bytes(), bid, "at the end");
                    live.remove(&b, bid);
                    b.free(&a);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(trimmer.join().unwrap() > 0);
    a.trim();
    let s = a.stats();
    assert_eq!((s.mapped_bytes, s.reserved_bytes), (0, 0), "{s:?}");
    assert_quiet(&a);
}

/// The flags of the mapping holding `addr` (the `VmFlags` line of its
/// entry in `/proc/self/smaps`).
#[cfg(target_os = "linux")]
fn vm_flags(addr: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_string());
            }
        }
    }
    None
}

/// With `huge_pages` (the default) the arena's chunk starts on a 2 MiB
/// boundary (the first block of a fresh allocator starts the chunk) and,
/// on Linux with transparent huge pages, its mapping is advised for them
/// (`hg` in its flags), as is a block's mapping of its own; with
/// `huge_pages(false)`, neither is advised.
#[test]
#[cfg_attr(miri, ignore)]
fn large_blocks_ask_for_huge_pages_unless_told_not_to() {
    for huge in [true, false] {
        let a = SlabAlloc::builder()
            .huge_pages(huge)
            .release_after(None)
            .build()
            .unwrap();
        let span = Block::stamped(&a, layout(MIB, 8), 1);
        let own = Block::stamped(&a, layout(40 * MIB, 8), 2);
        if huge {
            assert_eq!(span.addr() % (2 * MIB), 0, "{:#x}", span.addr());
        }
        #[cfg(target_os = "linux")]
        if std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            for b in [&span, &own] {
                let flags = vm_flags(b.addr()).expect("the block's mapping is listed");
                let advised = flags.split_whitespace().any(|f| f == "hg");
                assert_eq!(advised, huge, "huge_pages({huge}): {flags}");
            }
        }
        span.free(&a);
        own.free(&a);
        assert_quiet(&a);
    }
}
