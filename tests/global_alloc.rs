//! `homeslab::Global` installed as this test binary's global allocator
//! (through a wrapper that counts re-entrant calls: a call into the
//! allocator made while this thread is already inside it). Everything the
//! harness and the tests allocate — `Box`, `Vec`, `String`, `HashMap`,
//! thread spawns, channels — goes through it.
//!
//! Blocks carry stamps (an id and a pattern derived from it) that are
//! checked before they are freed, on whichever thread frees them.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use homeslab::Global;

/// The global allocator under test, wrapped to count nesting.
struct Counting;

static NESTED: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

fn enter() {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let _ = DEPTH.try_with(|d| {
        if d.get() > 0 {
            NESTED.fetch_add(1, Ordering::Relaxed);
        }
        d.set(d.get() + 1);
    });
}

fn leave() {
    let _ = DEPTH.try_with(|d| d.set(d.get() - 1));
}

// SAFETY: forwards every call to `Global` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        enter();
        // SAFETY: forwarded.
        let p = unsafe { Global.alloc(l) };
        leave();
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        enter();
        // SAFETY: forwarded.
        let p = unsafe { Global.alloc_zeroed(l) };
        leave();
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        enter();
        // SAFETY: forwarded.
        unsafe { Global.dealloc(p, l) };
        leave();
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        enter();
        // SAFETY: forwarded.
        let q = unsafe { Global.realloc(p, l, n) };
        leave();
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn no_nesting() {
    assert_eq!(
        NESTED.load(Ordering::Relaxed),
        0,
        "re-entrant allocator calls"
    );
    assert!(CALLS.load(Ordering::Relaxed) > 0);
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

/// A stamped bundle of every kind of allocation.
struct Item {
    id: u64,
    boxed: Box<[u64; 4]>,
    bytes: Vec<u8>,
    text: String,
    map: HashMap<u64, Vec<u64>>,
}

impl Item {
    fn new(id: u64) -> Item {
        let h = mix(id);
        let len = (h % 1500) as usize;
        let mut map = HashMap::new();
        for k in 0..(h % 8) {
            map.insert(k, vec![mix(id ^ k); (k as usize) * 7]);
        }
        Item {
            id,
            boxed: Box::new([h; 4]),
            bytes: (0..len).map(|i| (h as usize + i) as u8).collect(),
            text: format!("item-{id}-{h:x}"),
            map,
        }
    }

    fn check(&self) {
        let h = mix(self.id);
        assert_eq!(*self.boxed, [h; 4], "box of {}", self.id);
        assert_eq!(self.bytes.len(), (h % 1500) as usize);
        for (i, &b) in self.bytes.iter().enumerate() {
            assert_eq!(b, (h as usize + i) as u8, "byte {i} of {}", self.id);
        }
        assert_eq!(self.text, format!("item-{}-{h:x}", self.id));
        assert_eq!(self.map.len() as u64, h % 8);
        for (k, v) in &self.map {
            assert!(v.iter().all(|&x| x == mix(self.id ^ k)) && v.len() == *k as usize * 7);
        }
    }
}

#[test]
fn cross_thread_stress_through_box_vec_string_hashmap() {
    const THREADS: u64 = 4;
    const ITEMS: u64 = 10_000;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Item>()).unzip();
    let mut rxs: Vec<Option<mpsc::Receiver<Item>>> = rxs.into_iter().map(Some).collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let rx = rxs[t as usize].take().unwrap();
            let to = txs[((t + 1) % THREADS) as usize].clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut checked = 0u64;
                for i in 0..ITEMS {
                    let item = Item::new(t * ITEMS + i);
                    if i % 3 == 0 {
                        kept.push(item);
                    } else {
                        to.send(item).unwrap();
                    }
                    while let Ok(got) = rx.try_recv() {
                        got.check();
                        checked += 1;
                    }
                    if kept.len() > 500 {
                        for k in kept.drain(..250) {
                            k.check();
                        }
                    }
                }
                drop(to);
                for k in kept {
                    k.check();
                }
                (rx, checked)
            })
        })
        .collect();
    drop(txs);
    let mut total = 0;
    for h in handles {
        let (rx, checked) = h.join().unwrap();
        total += checked + rx.into_iter().map(|i| i.check()).count() as u64;
    }
    assert_eq!(total, THREADS * (ITEMS - ITEMS.div_ceil(3)));
    no_nesting();
}

#[test]
fn ten_thousand_short_lived_threads_adopt_heaps() {
    const THREADS: u64 = 10_000;
    const WAVE: u64 = 4;
    let (tx, rx) = mpsc::channel::<Item>();
    let mut next = 0;
    while next < THREADS {
        let wave: Vec<_> = (next..(next + WAVE).min(THREADS))
            .map(|id| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mine = Item::new(id);
                    tx.send(Item::new(id + THREADS)).unwrap(); // freed by main
                    mine.check();
                })
            })
            .collect();
        next += WAVE;
        for h in wave {
            h.join().unwrap();
        }
        for item in rx.try_iter() {
            item.check();
        }
    }
    let s = Global.stats();
    // Without adoption every thread would leave a heap per class it used.
    assert!(s.thread_heaps < 200, "heaps not adopted: {s:?}");
    no_nesting();
}

#[test]
fn allocation_in_thread_local_destructors() {
    static DONE: AtomicUsize = AtomicUsize::new(0);
    struct AllocOnDrop(Vec<u64>);
    impl Drop for AllocOnDrop {
        fn drop(&mut self) {
            let v: Vec<String> = self.0.iter().map(|x| format!("{x}")).collect();
            let m: HashMap<String, Box<u64>> = v
                .iter()
                .map(|s| (s.clone(), Box::new(s.len() as u64)))
                .collect();
            assert_eq!(m.len(), self.0.len());
            DONE.fetch_add(1, Ordering::Relaxed);
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<AllocOnDrop>> = const { std::cell::RefCell::new(None) };
    }
    let hs: Vec<_> = (0..16u64)
        .map(|t| {
            std::thread::spawn(move || {
                let data: Vec<u64> = (0..200).map(|i| t * 1000 + i).collect();
                LATE.with(|l| *l.borrow_mut() = Some(AllocOnDrop(data)));
                drop(Item::new(t));
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(DONE.load(Ordering::Relaxed), 16);
    no_nesting();
}

#[test]
fn realloc_stays_in_place_within_a_class_and_grows_large_blocks() {
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: a valid layout; every pointer is ours and freed once.
    unsafe {
        let p = Global.alloc(l);
        assert!(!p.is_null());
        for i in 0..100 {
            *p.add(i) = i as u8;
        }
        let usable = Global.usable_size(p);
        assert_eq!(usable, 112);
        assert_eq!(Global.realloc(p, l, 112), p, "grow within the class");
        let l2 = Layout::from_size_align(112, 8).unwrap();
        assert_eq!(Global.realloc(p, l2, 56), p, "shrink to half stays");
        let l3 = Layout::from_size_align(56, 8).unwrap();
        let q = Global.realloc(p, l3, 20);
        assert_ne!(q, p, "below half moves");
        assert!((0..20).all(|i| *q.add(i) == i as u8));
        // The move freed the old block: freeing it again is refused (no
        // other test of this binary frees twice).
        let doubles = Global.double_frees_seen();
        Global.dealloc(p, l3);
        assert_eq!(Global.double_frees_seen(), doubles + 1, "moved from, freed");
        Global.dealloc(q, Layout::from_size_align(20, 8).unwrap());

        // A large block grows (mremap) and keeps its bytes.
        let big = Layout::from_size_align(1 << 20, 8).unwrap();
        let b = Global.alloc(big);
        assert!(!b.is_null());
        b.write_bytes(0xAB, 1 << 20);
        let c = Global.realloc(b, big, 64 << 20);
        assert!(!c.is_null());
        assert!((0..1 << 20).step_by(4093).all(|i| *c.add(i) == 0xAB));
        assert!(Global.usable_size(c) >= 64 << 20);
        Global.dealloc(c, Layout::from_size_align(64 << 20, 8).unwrap());
    }
    no_nesting();
}

/// `realloc` of medium blocks (above 32 KiB, up to 256 KiB: size
/// classes): in place within the class down to half of it, a move below
/// that; across 256 KiB a move into a large block and back into a class,
/// the contents kept each time.
#[test]
fn realloc_of_medium_blocks_across_their_edges() {
    let fill = |p: *mut u8, n: usize, seed: u8| {
        // SAFETY: `p` is a live block of at least `n` bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p, n) };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed ^ (i % 251) as u8;
        }
    };
    let kept = |p: *mut u8, n: usize, seed: u8| {
        // SAFETY: as in `fill`.
        let bytes = unsafe { std::slice::from_raw_parts(p, n) };
        bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b == seed ^ (i % 251) as u8)
    };
    // SAFETY: valid layouts; every pointer is ours and freed once.
    unsafe {
        let l = Layout::from_size_align(33_000, 8).unwrap();
        let p = Global.alloc(l);
        assert!(!p.is_null());
        assert_eq!(Global.usable_size(p), 40 * 1024);
        fill(p, 33_000, 1);
        assert_eq!(Global.realloc(p, l, 40 * 1024), p, "grow within the class");
        let l = Layout::from_size_align(40 * 1024, 8).unwrap();
        assert_eq!(Global.realloc(p, l, 20 * 1024), p, "shrink to half stays");
        let l = Layout::from_size_align(20 * 1024, 8).unwrap();
        let q = Global.realloc(p, l, 20 * 1024 - 1);
        assert_ne!(q, p, "below half moves");
        assert!(kept(q, 20 * 1024 - 1, 1));
        let l = Layout::from_size_align(20 * 1024 - 1, 8).unwrap();
        // Up to the last class, then past it into a large block.
        let r = Global.realloc(q, l, 256 * 1024);
        assert!(!r.is_null() && kept(r, 20 * 1024 - 1, 1));
        assert_eq!(Global.usable_size(r), 256 * 1024);
        fill(r, 256 * 1024, 2);
        let l = Layout::from_size_align(256 * 1024, 8).unwrap();
        let large = Global.realloc(r, l, 256 * 1024 + 1);
        assert_ne!(large, r);
        assert!(!large.is_null() && kept(large, 256 * 1024, 2));
        assert_eq!(Global.usable_size(large), 260 * 1024, "whole pages");
        // Back below 256 KiB: into the 224 KiB class.
        let l = Layout::from_size_align(256 * 1024 + 1, 8).unwrap();
        let back = Global.realloc(large, l, 200 * 1024);
        assert!(!back.is_null() && kept(back, 200 * 1024, 2));
        assert_eq!(Global.usable_size(back), 224 * 1024);
        Global.dealloc(back, Layout::from_size_align(200 * 1024, 8).unwrap());
    }
    no_nesting();
}

#[test]
fn out_of_memory_is_null_and_foreign_pointers_are_refused() {
    // SAFETY: valid layouts; a null result is not used.
    unsafe {
        let huge = Layout::from_size_align(isize::MAX as usize - 4096, 4096).unwrap();
        assert!(Global.alloc(huge).is_null());
        assert!(Global.alloc_zeroed(huge).is_null());
    }
    let before = Global.stats().foreign_frees;
    let mut on_stack = [0u64; 4];
    let p = on_stack.as_mut_ptr().cast::<u8>();
    assert_eq!(Global.usable_size(p), 0);
    // SAFETY: not ours: refused without being read or written.
    unsafe {
        Global.free(p);
        assert!(Global.realloc_unsized(p, 64, 8).is_null());
    }
    assert_eq!(on_stack, [0; 4]);
    assert!(Global.stats().foreign_frees >= before + 2);
    // A pointer inside one of our blocks is not a block either.
    let b = Box::new([7u64; 8]);
    let inner = (&*b as *const [u64; 8] as *mut u8).wrapping_add(8);
    let before = Global.stats().foreign_frees;
    // SAFETY: refused: not the start of a block.
    unsafe { Global.free(inner) };
    assert_eq!(Global.stats().foreign_frees, before + 1);
    assert_eq!(*b, [7; 8]);
    // Null goes the untagged way, and is no refusal (no other test of
    // this binary makes a foreign free).
    let before = Global.stats().foreign_frees;
    // SAFETY: null is always accepted.
    unsafe { Global.free(std::ptr::null_mut()) };
    assert_eq!(Global.stats().foreign_frees, before);
    no_nesting();
}

#[test]
fn aligned_and_zeroed_requests() {
    for align in [1usize, 8, 16, 64, 256, 4096, 8192, 1 << 16] {
        for size in [1usize, 24, 100, 4000, 40_000, 300_000] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid layout, freed once.
            unsafe {
                let p = Global.alloc_zeroed(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                assert!((0..size).all(|i| *p.add(i) == 0));
                p.write_bytes(0xFF, size);
                assert!(Global.usable_size(p) >= size);
                Global.dealloc(p, l);
            }
        }
    }
    no_nesting();
}

#[test]
fn stats_and_trim() {
    let v: Vec<Vec<u8>> = (0..2000).map(|i| vec![1u8; 64 + i % 500]).collect();
    let s = Global.stats();
    assert!(s.live_blocks >= 2000 && s.mapped_bytes > 0, "{s:?}");
    drop(v);
    let _ = Global.trim();
    no_nesting();
}

/// The C library's split of `malloc`: `malloc_inline` serves class blocks
/// of the calling thread's heap and nothing else (`None` for a large block
/// or an alignment above 16); `malloc_after_inline` serves the same
/// request then. Either way the block is ours, aligned, zeroed when asked
/// (also when reused dirty).
#[test]
fn malloc_inline_then_after_inline_serve_every_request() {
    let requests = [
        (1, 16),
        (100, 16),
        (1024, 8),
        (40_000, 16),
        (300_000, 16),
        (64, 4096),
    ];
    for zero in [false, true, true] {
        for &(size, align) in &requests {
            let inline = Global.malloc_inline(size, align, zero);
            if size > 256 * 1024 || align > 16 {
                assert!(inline.is_none(), "{size} / {align}: not the inline path's");
            }
            let p = inline.unwrap_or_else(|| Global.malloc_after_inline(size, align, zero));
            assert!(!p.is_null(), "{size} / {align}");
            assert_eq!(p as usize % align, 0, "{size} / {align}");
            assert!(Global.usable_size(p) >= size);
            // SAFETY: `p` is a live block of at least `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
            if zero {
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "{size} / {align}: not zeroed"
                );
            }
            bytes.fill(0xa5);
            // SAFETY: ours, freed once.
            unsafe { Global.free(p) };
        }
    }
    no_nesting();
}
