//! One `SlabAlloc` shared by several threads: blocks of mixed sizes and
//! alignments freed remotely, and `trim` racing allocation.

use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use homeslab::SlabAlloc;

use crate::blocks::{
    assert_quiet, assert_stamped, is_large, layout, stamp, Block, LiveSet, KIB, MAX_CLASS, MIB,
};
use crate::common::mix;

/// A layout from `r`: sizes 1 B – 3 MiB weighted toward small, alignments
/// 1 – 4096, and now and then 8192 or 65536.
fn mixed_layout(r: u64) -> Layout {
    let r2 = mix(r);
    let size = match r % 100 {
        0..=54 => 1 + r2 as usize % 256,
        55..=79 => 257 + r2 as usize % (4096 - 256),
        80..=92 => 4097 + r2 as usize % (32 * KIB - 4096),
        93..=95 => 32 * KIB + 1 + r2 as usize % (MAX_CLASS - 32 * KIB),
        96..=97 => MAX_CLASS + 1 + r2 as usize % (256 * KIB),
        _ => 2 * MAX_CLASS + 1 + r2 as usize % (3 * MIB - 2 * MAX_CLASS),
    };
    let align = match (r2 >> 32) % 100 {
        0 => 8192,
        1 => 65536,
        x => 1 << (x % 13),
    };
    layout(size, align)
}

/// Four threads allocate mixed layouts, stamp each block over its whole
/// length, keep a window of them live, and send each to the next thread,
/// which checks the stamp and frees it (a remote free). No two live blocks
/// of any thread ever overlap.
#[test]
#[cfg_attr(miri, ignore)]
fn mixed_sizes_freed_remotely_never_overlap() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 700;
    const WINDOW: usize = 48;
    let a = SlabAlloc::new();
    let live = Arc::new(LiveSet::default());
    let large = Arc::new(AtomicUsize::new(0));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<(u64, Block)>())
        .unzip();
    let workers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % THREADS].clone();
            let (a, live, large) = (a.clone(), live.clone(), large.clone());
            thread::spawn(move || {
                let retire = |id: u64, b: Block| {
                    b.check_shape();
                    assert_eq!(b.layout, mixed_layout(mix(id)), "block {id}");
                    assert_stamped(b.bytes(), mix(id), "received block");
                    live.remove(&b, id);
                    // Every other block is freed with its returned length.
                    let size = if id % 2 == 0 { b.layout.size() } else { b.len };
                    b.free_with(&a, size);
                };
                let mut mine = std::collections::VecDeque::new();
                let mut inbox = Vec::new();
                for i in 0..PER_THREAD {
                    let id = (t as u64) << 32 | i;
                    let l = mixed_layout(mix(id));
                    if is_large(l) {
                        large.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut b = Block::new(&a, l);
                    live.insert(&b, id);
                    stamp(b.bytes_mut(), mix(id));
                    mine.push_back((id, b));
                    if mine.len() > WINDOW {
                        next.send(mine.pop_front().unwrap()).unwrap();
                    }
                    inbox.extend(rx.try_iter());
                    while inbox.len() > WINDOW {
                        let k = mix(id) as usize % inbox.len();
                        let (id, b) = inbox.swap_remove(k);
                        retire(id, b);
                    }
                }
                for m in mine {
                    next.send(m).unwrap();
                }
                drop(next);
                for (id, b) in inbox.into_iter().chain(rx) {
                    retire(id, b);
                }
            })
        })
        .collect();
    drop(txs);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(live.len(), 0);
    let total = THREADS as u64 * PER_THREAD;
    let large = large.load(Ordering::Relaxed) as u64;
    let s = a.stats();
    assert_quiet(&a);
    assert_eq!(s.allocs, total, "{s:?}");
    assert!(large > 0 && large < total);
    assert_eq!(s.frees, total, "{s:?}");
    // Most class blocks were freed by a thread that does not own their
    // slab (a magazine lets a block be reused on the thread that freed it,
    // so some trips end at home).
    assert!(s.remote_frees > (total - large) / 2, "{s:?}");
    assert!(s.remote_frees <= total - large, "{s:?}");
}

/// Stamps 16 bytes at the start of every page of `buf` (and its last 16):
/// enough to make every page resident and to catch a block that another
/// one overlaps, cheap enough for many rounds of 32 KiB blocks.
fn stamp_pages(buf: &mut [u8], seed: u64) {
    for o in (0..buf.len()).step_by(4096).chain([buf.len() - 16]) {
        stamp(&mut buf[o..o + 16], seed ^ o as u64);
    }
}

#[track_caller]
fn assert_pages_stamped(buf: &[u8], seed: u64, what: &str) {
    for o in (0..buf.len()).step_by(4096).chain([buf.len() - 16]) {
        assert_stamped(&buf[o..o + 16], seed ^ o as u64, what);
    }
}

/// Several threads allocate, free and `trim()` at the same time: every
/// round each thread allocates eight blocks of the 32 KiB class (in a
/// 512 KiB slab), frees them and trims, so that whole chunks go free while
/// another thread's trim is advising their regions. No block may be handed out twice (the live set
/// sees any overlap), lose its stamp, or make the page source panic; at the
/// end nothing is live and a final trim empties the allocator.
///
/// Fails at c1f6ec9: `PageSource::release_warm` takes warm regions out of
/// the free list (their chunk still counts them free) and advises them
/// outside the lock; a concurrent `PageSource::trim` meanwhile finds the
/// chunk wholly free, unmaps it, and the first thread then puts the regions
/// back. A later acquire pops such a region: `chunk_of` panics ("a free
/// region belongs to a chunk"), or a new chunk mapped at the same address
/// lists the region twice and two slabs share it (overlapping blocks).
#[test]
#[cfg_attr(miri, ignore)]
fn concurrent_trims_while_allocating() {
    const THREADS: u64 = 3;
    const ROUNDS: u64 = 5000;
    let a = SlabAlloc::builder().release_after(None).build().unwrap();
    let live = Arc::new(LiveSet::default());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (a, live) = (a.clone(), live.clone());
            thread::spawn(move || {
                for r in 0..ROUNDS {
                    let blocks: Vec<(u64, Block)> = (0..8)
                        .map(|i| {
                            let id = t << 40 | r << 8 | i;
                            let mut b = Block::new(&a, layout(32 * KIB, 8));
                            live.insert(&b, id);
                            stamp_pages(b.bytes_mut(), mix(id));
                            (id, b)
                        })
                        .collect();
                    for (id, b) in blocks {
                        assert_pages_stamped(b.bytes(), mix(id), "block across trims");
                        live.remove(&b, id);
                        b.free(&a);
                    }
                    a.trim();
                }
            })
        })
        .collect();
    let failed: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().err())
        .map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
        .collect();
    assert!(failed.is_empty(), "workers panicked: {failed:?}");
    assert_quiet(&a);
    a.trim();
    assert_eq!(a.stats().mapped_bytes, 0, "{:?}", a.stats());
}
