//! Loom models of the shared overflow tier (`max_thread_heaps(0)` sends every
//! thread there): growth outside the lock with racing threads, frees routed
//! to the tier while it grows, and `trim()` racing with an allocation.
#![cfg(loom)]

use homeslab::Pool;
use loom::thread;
use loom_tests::{addr, alloc, assert_clean, assert_distinct, free, Outcomes, Sched, Stamp};

/// Two threads race to grow the tier. Each gets its own block, and each
/// racer adds at most one segment: with two slots per segment, one segment is
/// needed and at most two (one per racer) exist.
#[test]
fn tier_growth_with_two_racers() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(2)
            .max_thread_heaps(0)
            .magazine(0)
            .build()
            .unwrap();
        let p = pool.clone();
        let t = thread::spawn(move || {
            let b = alloc(&p, 2);
            let at = addr(&b);
            (b, at)
        });
        let a = alloc(&pool, 1);
        let (b, at) = t.join().unwrap();
        assert_eq!(addr(&b), at);
        assert_distinct(&[&a, &b]);
        a.verify(1);
        b.verify(2);
        let s = pool.stats();
        assert_eq!(s.overflow_allocs, 2, "{s:?}");
        assert_eq!(s.thread_heaps, 0, "{s:?}");
        match s.overflow_segments {
            1 => SEEN.saw("one_segment"),
            2 => SEEN.saw("both_grew"),
            _ => panic!("unbounded tier growth: {s:?}"),
        }
        free(a, 1);
        free(b, 2);
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["one_segment", "both_grew"]);
}

/// A block of a full tier segment is freed (always a remote push: the tier is
/// no thread's owner) while another thread allocates and the tier grows. The
/// freed slot comes back — directly, or through the returned queue when the
/// segment had been detached — so after the free, two live blocks need no
/// more than the two segments ever mapped.
#[test]
fn free_routed_to_tier_while_it_grows() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(1)
            .max_thread_heaps(0)
            .magazine(0)
            .build()
            .unwrap();
        let a = alloc(&pool, 1);
        let addr_a = addr(&a);
        let hint = Sched::new();
        let h = hint.clone();
        let t = thread::spawn(move || {
            free(a, 1);
            h.done();
        });
        hint.point();
        // The only segment is full: this drains a's slot if the free landed,
        // else detaches the segment and grows.
        let b = alloc(&pool, 2);
        let grew = pool.stats().overflow_segments == 2;
        assert_eq!(grew, addr(&b) != addr_a);
        SEEN.saw(if grew { "grew" } else { "drained" });
        t.join().unwrap();
        free(b, 2);
        let c = alloc(&pool, 3);
        let d = alloc(&pool, 4);
        assert_distinct(&[&c, &d]);
        let s = pool.stats();
        assert!(
            s.overflow_segments <= 2,
            "a freed tier slot was stranded: {s:?}"
        );
        assert_eq!(s.remote_frees, 2, "{s:?}");
        free(c, 3);
        free(d, 4);
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["grew", "drained"]);
}

/// `trim()` on one thread races with an allocation on another: trim releases
/// the tier's empty segment and unmaps its chunk while the allocation may be
/// reusing that segment or growing the tier through the same page source.
/// The allocation gets a usable block, and once everything is freed a final
/// trim returns all memory.
#[test]
fn trim_races_alloc() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(1)
            .max_thread_heaps(0)
            .magazine(0)
            .build()
            .unwrap();
        // One empty tier segment for trim to release.
        free(alloc(&pool, 1), 1);
        let p = pool.clone();
        let hint = Sched::new();
        let h = hint.clone();
        let t = thread::spawn(move || {
            p.trim();
            h.done();
        });
        hint.point();
        let b = alloc(&pool, 2);
        t.join().unwrap();
        b.verify(2);
        let s = pool.stats();
        match s.overflow_segments {
            1 => SEEN.saw("alloc_first"),
            2 => SEEN.saw("trim_first"),
            _ => panic!("{s:?}"),
        }
        free(b, 2);
        pool.trim();
        let s = pool.stats();
        assert_eq!(s.mapped_bytes, 0, "{s:?}");
        assert_eq!(s.reserved_bytes, 0, "{s:?}");
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["alloc_first", "trim_first"]);
}
