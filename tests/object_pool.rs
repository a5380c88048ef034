//! `ObjectPool<T>`: objects handed out constructed and taken back
//! constructed; reset and keep_if on the releasing thread; destruction when
//! memory is reclaimed; the panic cases. Objects count their constructions
//! and drops so that nothing is dropped twice or leaked.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use homeslab::{ObjectBox, ObjectPool};

/// A buffer that knows whether it is clean and counts its lives.
struct Buf {
    data: Vec<u8>,
    /// Set by a user, cleared by `reset`.
    dirty: bool,
    lives: &'static Lives,
}

#[derive(Default)]
struct Lives {
    made: AtomicU64,
    dropped: AtomicU64,
}

impl Lives {
    const fn new() -> Self {
        Self {
            made: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
    fn made(&self) -> u64 {
        self.made.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Buf {
    fn new(lives: &'static Lives) -> Self {
        lives.made.fetch_add(1, Ordering::SeqCst);
        Self {
            data: Vec::with_capacity(4096),
            dirty: false,
            lives,
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.lives.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn pool(lives: &'static Lives) -> ObjectPool<Buf> {
    ObjectPool::builder(move || Buf::new(lives))
        .reset(|b: &mut Buf| {
            b.data.clear();
            b.dirty = false;
        })
        .build()
        .unwrap()
}

#[test]
fn same_object_back_reset_and_capacity_kept() {
    static LIVES: Lives = Lives::new();
    let p = pool(&LIVES);
    let mut a = p.get().unwrap();
    a.data.extend_from_slice(&[7; 3000]);
    a.dirty = true;
    let (at, buf) = (&*a as *const Buf, a.data.as_ptr());
    drop(a);
    let b = p.get().unwrap();
    assert_eq!(&*b as *const Buf, at, "the same slot");
    assert_eq!(b.data.as_ptr(), buf, "the same buffer");
    assert!(b.data.is_empty() && !b.dirty, "reset ran");
    assert!(b.data.capacity() >= 4096);
    let s = p.stats();
    assert_eq!(
        (s.objects_constructed, s.objects_reused, s.objects_cached),
        (1, 1, 0)
    );
    drop(b);
    assert_eq!(p.stats().objects_cached, 1);
    assert_eq!((LIVES.made(), LIVES.dropped()), (1, 0));
    drop(p);
    assert_eq!(LIVES.dropped(), 1, "the cached object is dropped at close");
}

#[test]
fn threads_hand_objects_to_each_other_and_constructions_stay_bounded() {
    static LIVES: Lives = Lives::new();
    const THREADS: usize = 4;
    const ROUNDS: usize = 200;
    const BATCH: usize = 16;
    let p = pool(&LIVES);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<Vec<(u64, ObjectBox<Buf>)>>())
        .unzip();
    let mut rxs: Vec<_> = rxs.into_iter().map(Some).collect();
    // Spawned and joined (not scoped): `join` waits for the threads'
    // exit hooks, which hand their heaps back.
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let tx = txs[(t + 1) % THREADS].clone();
            let rx = rxs[t].take().unwrap();
            let p = p.clone();
            thread::spawn(move || {
                for r in 0..ROUNDS {
                    let mut out = Vec::with_capacity(BATCH);
                    for i in 0..BATCH {
                        let mut b = p.get().unwrap();
                        assert!(b.data.is_empty() && !b.dirty, "every object clean at get");
                        let id = ((t * ROUNDS + r) * BATCH + i) as u64;
                        b.data.extend_from_slice(&id.to_le_bytes());
                        b.dirty = true;
                        out.push((id, b));
                    }
                    tx.send(out).unwrap();
                    for (id, b) in rx.recv().unwrap() {
                        assert_eq!(b.data, id.to_le_bytes(), "object kept its contents");
                        drop(b); // released on another thread than its getter
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let s = p.stats();
    let gets = (THREADS * ROUNDS * BATCH) as u64;
    assert_eq!(s.allocs, gets);
    assert_eq!(s.live_blocks, 0, "{s:?}");
    // A thread constructs only into its own slabs' slots, and takes the
    // slots released to it (which keep their objects) before fresh ones.
    // Its blocks out at once are at most every batch in flight (3 per
    // thread: the ring lets a thread run a round ahead) and every magazine
    // (32 each): a block reused where it was released moves on round the
    // ring. Constructions are bounded by that live set, not by the gets
    // (here 10× fewer).
    let bound = (THREADS * THREADS * (3 * BATCH + 32)) as u64;
    assert!(
        s.objects_constructed <= bound,
        "constructions bounded by the live set, not by gets: {s:?}"
    );
    assert_eq!(s.objects_reused + s.objects_constructed, gets, "{s:?}");
    assert_eq!(LIVES.made(), s.objects_constructed);
    assert_eq!(LIVES.dropped(), s.objects_destroyed);
    drop(p);
    assert_eq!(
        LIVES.made(),
        LIVES.dropped(),
        "every object dropped once at close"
    );
}

#[test]
fn keep_if_and_discard_destroy_instead_of_caching() {
    static LIVES: Lives = Lives::new();
    let p: ObjectPool<Buf> = ObjectPool::builder(|| Buf::new(&LIVES))
        .reset(|b: &mut Buf| b.data.clear())
        .keep_if(|b: &Buf| b.data.capacity() <= 8192)
        .build()
        .unwrap();
    let mut big = p.get().unwrap();
    big.data.reserve(1 << 20); // grown: refused on release
    drop(big);
    assert_eq!(LIVES.dropped(), 1, "keep_if refused it");
    let small = p.get().unwrap();
    ObjectBox::discard(small);
    assert_eq!(LIVES.dropped(), 2, "discarded");
    let kept = p.get().unwrap();
    drop(kept);
    let s = p.stats();
    assert_eq!(
        (s.objects_constructed, s.objects_destroyed, s.objects_cached),
        (3, 2, 1),
        "{s:?}"
    );
    assert_eq!(s.live_blocks, 0);
}

#[test]
fn trim_and_close_balance_constructions_and_drops() {
    static LIVES: Lives = Lives::new();
    let p: ObjectPool<Buf> = ObjectPool::builder(|| Buf::new(&LIVES))
        .retained_empty_slabs(0)
        .build()
        .unwrap();
    // Several slabs' worth (a `Buf` is 40 bytes: ~300 per slab).
    let live: Vec<_> = (0..2000).map(|_| p.get().unwrap()).collect();
    assert_eq!(LIVES.made(), 2000);
    drop(live);
    let s = p.stats();
    // With no empty slab retained, every slab that emptied was released
    // at once, its objects dropped (the current one may stay).
    assert!(s.objects_destroyed >= 1500, "{s:?}");
    assert!(p.trim() > 0 || s.objects_cached == 0);
    let s = p.stats();
    assert_eq!(s.objects_cached, 0, "trim reclaimed the rest: {s:?}");
    assert_eq!(LIVES.made(), LIVES.dropped());
    // Objects outliving the pool: dropped when the last one comes home.
    let a = p.get().unwrap();
    let other = thread::spawn({
        let p = p.clone();
        move || p.get().unwrap()
    })
    .join()
    .unwrap();
    drop(p);
    drop(a);
    drop(other); // a remote release into a closed pool's orphaned heap
    homeslab::flush_remote_frees();
    assert_eq!(
        LIVES.made(),
        LIVES.dropped(),
        "nothing leaked, nothing dropped twice"
    );
}

/// The pool closes on another thread while a worker, which lives on,
/// still holds thousands of its own objects. The worker's first free after
/// the close abandons its heap, and it can take none in the closed pool to
/// hold its frees: each goes home at once, and each slab is released as it
/// empties — before the worker flushes or exits.
#[test]
fn a_live_owner_gives_up_its_heap_at_its_first_free_after_the_close() {
    static LIVES: Lives = Lives::new();
    const N: u64 = 30_000;
    let p: ObjectPool<Buf> = ObjectPool::builder(|| Buf::new(&LIVES)).build().unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let (closed_tx, closed_rx) = mpsc::channel::<()>();
    let worker = thread::spawn({
        let p = p.clone();
        move || {
            let objs: Vec<_> = (0..N).map(|_| p.get().unwrap()).collect();
            drop(p);
            held_tx.send(()).unwrap();
            closed_rx.recv().unwrap();
            drop(objs);
            let before_flush = LIVES.dropped();
            homeslab::flush_remote_frees();
            (before_flush, LIVES.dropped())
        }
    });
    held_rx.recv().unwrap();
    drop(p); // the last handle: the close
    closed_tx.send(()).unwrap();
    let (before_flush, after_flush) = worker.join().unwrap();
    assert_eq!(LIVES.made(), N);
    assert_eq!(
        before_flush, N,
        "slabs stayed with the live owner: {before_flush} of {N} dropped"
    );
    assert_eq!(after_flush, N);
}

#[test]
fn a_panicking_init_loses_no_slot() {
    static LIVES: Lives = Lives::new();
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let p: ObjectPool<Buf> = ObjectPool::builder(|| {
        if CALLS.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            panic!("init failed");
        }
        Buf::new(&LIVES)
    })
    .build()
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(b) = catch_unwind(AssertUnwindSafe(|| p.get().unwrap())) {
            held.push(b);
        }
    }
    assert_eq!(held.len(), 50);
    let s = p.stats();
    assert_eq!((s.live_blocks, s.objects_constructed), (50, 50), "{s:?}");
    drop(held);
    let s = p.stats();
    assert_eq!((s.live_blocks, s.objects_cached), (0, 50), "{s:?}");
    // The freed slots serve again: the same 50 objects, no new ones.
    let again: Vec<_> = (0..50).map(|_| p.get().unwrap()).collect();
    assert_eq!(p.stats().objects_constructed, 50);
    drop(again);
}

#[test]
fn a_panicking_reset_or_keep_if_drops_that_object() {
    static LIVES: Lives = Lives::new();
    let p: ObjectPool<Buf> = ObjectPool::builder(|| Buf::new(&LIVES))
        .reset(|b: &mut Buf| {
            if b.dirty {
                panic!("reset failed");
            }
        })
        .keep_if(|b: &Buf| {
            assert!(b.data.len() < 100, "keep_if failed");
            true
        })
        .build()
        .unwrap();
    let mut a = p.get().unwrap();
    a.dirty = true;
    assert!(catch_unwind(AssertUnwindSafe(move || drop(a))).is_err());
    assert_eq!(LIVES.dropped(), 1, "reset's panic dropped the object");
    let mut b = p.get().unwrap();
    b.data.resize(200, 0);
    assert!(catch_unwind(AssertUnwindSafe(move || drop(b))).is_err());
    assert_eq!(LIVES.dropped(), 2, "keep_if's panic dropped the object");
    let s = p.stats();
    assert_eq!(
        (s.live_blocks, s.objects_cached, s.objects_destroyed),
        (0, 0, 2),
        "{s:?}"
    );
    // The slots came back unconstructed: the next get constructs.
    let c = p.get().unwrap();
    assert!(!c.dirty);
    assert_eq!(p.stats().objects_constructed, 3);
}

#[test]
fn invalid_configurations_are_refused() {
    assert!(
        ObjectPool::<()>::builder(|| ()).build().is_err(),
        "zero-sized"
    );
    assert!(ObjectPool::builder(|| 0u64)
        .slab_capacity(0)
        .build()
        .is_err());
    assert!(ObjectPool::builder(|| 0u64)
        .max_thread_slabs(0)
        .build()
        .is_err());
}

#[test]
fn an_exiting_thread_keeps_its_cached_objects_for_the_next() {
    static LIVES: Lives = Lives::new();
    let p = pool(&LIVES);
    let q = p.clone();
    // A worker fills a slab's worth of objects, releases them, and exits:
    // its heap is orphaned with its retained empty slab, objects and all.
    thread::spawn(move || {
        let held: Vec<_> = (0..100).map(|_| q.get().unwrap()).collect();
        drop(held);
    })
    .join()
    .unwrap();
    let s = p.stats();
    assert_eq!(
        (s.objects_constructed, s.objects_destroyed),
        (100, 0),
        "{s:?}"
    );
    assert_eq!(s.objects_cached, 100, "{s:?}");
    // trim reclaims them (and drops the objects).
    p.trim();
    let s = p.stats();
    assert_eq!((s.objects_destroyed, s.objects_cached), (100, 0), "{s:?}");
    assert_eq!(LIVES.made(), LIVES.dropped());
}

/// The slot word carries the constructed state: an object kept on release
/// comes back as it was (reused, same address, no construction), one given
/// up (`discard`, or refused by `keep_if`) comes back unconstructed (the
/// next get constructs into the same slot) — released on the owner's
/// thread, or on another thread through a magazine (held, then sent home)
/// or, without magazines, straight home on the remote list.
#[test]
fn kept_objects_come_back_constructed_given_up_ones_unconstructed() {
    /// `id` is its construction's number; `refuse` makes `keep_if` drop it.
    struct Obj {
        id: u64,
        refuse: bool,
    }
    static MADE: AtomicU64 = AtomicU64::new(0);
    for magazine in [0, 32] {
        // One slot per slab: every get of the owner takes that slot.
        let p: ObjectPool<Obj> = ObjectPool::builder(|| Obj {
            id: MADE.fetch_add(1, Ordering::SeqCst),
            refuse: false,
        })
        .keep_if(|o: &Obj| !o.refuse)
        .slab_capacity(1)
        .magazine(magazine)
        .build()
        .unwrap();
        /// Releases `o` on another thread; `give_up`: discards it there.
        fn release_remotely(o: ObjectBox<Obj>, give_up: bool) {
            thread::spawn(move || {
                if give_up {
                    ObjectBox::discard(o);
                } else {
                    drop(o);
                }
                homeslab::flush_remote_frees();
            })
            .join()
            .unwrap();
        }
        let a = p.get().unwrap();
        let (at, first) = (&*a as *const Obj, a.id);
        let counts = |p: &ObjectPool<Obj>| {
            let s = p.stats();
            (s.objects_constructed, s.objects_reused, s.objects_destroyed)
        };
        // Kept locally: the same object again.
        drop(a);
        let a = p.get().unwrap();
        assert_eq!(
            (&*a as *const Obj, a.id),
            (at, first),
            "magazine={magazine}"
        );
        assert_eq!(counts(&p), (1, 1, 0), "magazine={magazine}");
        // Discarded locally: the same slot, a new object.
        ObjectBox::discard(a);
        let a = p.get().unwrap();
        assert_eq!(&*a as *const Obj, at);
        assert_ne!(a.id, first, "constructed again");
        assert_eq!(counts(&p), (2, 1, 1), "magazine={magazine}");
        // Kept on another thread: the same object again.
        let second = a.id;
        release_remotely(a, false);
        let a = p.get().unwrap();
        assert_eq!(
            (&*a as *const Obj, a.id),
            (at, second),
            "magazine={magazine}"
        );
        assert_eq!(counts(&p), (2, 2, 1), "magazine={magazine}");
        // Discarded on another thread: constructed again.
        release_remotely(a, true);
        let mut a = p.get().unwrap();
        assert_eq!(&*a as *const Obj, at);
        assert_eq!(counts(&p), (3, 2, 2), "magazine={magazine}");
        // Refused by `keep_if` on another thread: constructed again.
        a.refuse = true;
        let third = a.id;
        release_remotely(a, false);
        let mut a = p.get().unwrap();
        assert_eq!(&*a as *const Obj, at);
        assert_ne!(a.id, third, "constructed again");
        assert_eq!(counts(&p), (4, 2, 3), "magazine={magazine}");
        // Refused locally: constructed again.
        a.refuse = true;
        drop(a);
        let a = p.get().unwrap();
        assert_eq!(&*a as *const Obj, at);
        assert_eq!(counts(&p), (5, 2, 4), "magazine={magazine}");
        drop(a);
        let s = p.stats();
        assert_eq!((s.live_blocks, s.objects_cached), (0, 1), "{s:?}");
    }
}
