//! Loom models of thread teardown and pool closing: an owner thread exits
//! while a block of its slab is being freed on another thread, and the pool
//! closes while a block of an orphaned heap is being freed. Nothing may be
//! lost: the pool ends with no live block, and loom's leak check (run after
//! every execution) proves every slab was released once the pool closed,
//! since each slab holds a reference to the pool.
//!
//! Under loom, `JoinHandle::join` returns before the joined thread's
//! thread-locals are destroyed, so homeslab's exit hook (which orphans the
//! thread's heap) may run after `join`; the models wait for it where they
//! need it done.
#![cfg(loom)]

use homeslab::Pool;
use loom::thread;
use loom_tests::{alloc, assert_clean, assert_distinct, free, Outcomes, Sched, Stamp};

/// A pool whose thread heaps hold one slab of `slots` slots each.
fn one_slab_pool(slots: usize) -> Pool<Stamp> {
    Pool::builder()
        .slab_capacity(slots)
        .max_thread_slabs(1)
        .magazine(0)
        .build()
        .unwrap()
}

/// Spins (yielding to loom) until no thread owns a heap: every exit hook ran.
fn wait_for_exit_hooks<T>(pool: &Pool<T>) {
    while pool.stats().thread_heaps != 0 {
        thread::yield_now();
    }
}

/// The owner exits (its exit hook drains its slabs, releases the empty ones
/// and orphans the heap) while a remote free of one of its blocks is in
/// flight. If the free landed first, the hook releases the slab; if not, the
/// orphan keeps it and the late free still reaches it.
#[test]
fn owner_exit_races_remote_free() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = one_slab_pool(2);
        let p = pool.clone();
        let owner = thread::spawn(move || {
            let a = alloc(&p, 1);
            let b = alloc(&p, 2);
            let hint = Sched::new();
            let h = hint.clone();
            let freer = thread::spawn(move || {
                free(a, 1);
                h.done();
            });
            free(b, 2);
            hint.point();
            freer
        });
        let freer = owner.join().unwrap();
        freer.join().unwrap();
        let s = pool.stats();
        assert_eq!(s.remote_frees, 1, "{s:?}");
        assert_clean(&pool);
        wait_for_exit_hooks(&pool);
        // The pool still serves. This thread's new slab reuses the region
        // the exit hook released, or needs a second one if the orphan kept
        // its slab (the free landed after the hook).
        let c = alloc(&pool, 3);
        let d = alloc(&pool, 4);
        assert_distinct(&[&c, &d]);
        let s = pool.stats();
        SEEN.saw(if s.reserved_bytes == s.slab_bytes {
            "released_at_exit"
        } else {
            "orphan_kept_slab"
        });
        free(c, 3);
        free(d, 4);
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["released_at_exit", "orphan_kept_slab"]);
}

/// The owner's only slab is full and detached when it exits; the remote
/// freer may claim the detached tag before or after the exit hook runs, so
/// the slab comes back through the returned queue of a live or an orphaned
/// heap. A thread past its slab limit then allocates from the overflow tier,
/// which borrows the orphan instead of stranding its slot, and the pool
/// closes cleanly.
#[test]
fn owner_exit_races_free_into_detached_slab() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = one_slab_pool(1);
        let p = pool.clone();
        let owner = thread::spawn(move || {
            let a = alloc(&p, 1);
            let hint = Sched::new();
            let h = hint.clone();
            let freer = thread::spawn(move || {
                free(a, 1);
                h.done();
            });
            hint.point();
            // Full slab: drains a's slot if the free arrived, else detaches
            // the slab and takes a block from the tier.
            let c = alloc(&p, 2);
            let detached = p.stats().overflow_allocs == 1;
            free(c, 2);
            hint.point();
            (freer, detached)
        });
        let (freer, detached) = owner.join().unwrap();
        SEEN.saw(if detached { "detached" } else { "drained" });
        freer.join().unwrap();
        assert_clean(&pool);
        wait_for_exit_hooks(&pool);
        // This thread's heap fills its one slab; the next allocation goes to
        // the tier, which borrows the orphan (or, if the exit hook released
        // the slab, reuses its region). The orphan's slot is not stranded:
        // one new region (this thread's slab) is all this needs.
        let s0 = pool.stats();
        let x = alloc(&pool, 3);
        let d = alloc(&pool, 4);
        assert_distinct(&[&x, &d]);
        let s = pool.stats();
        assert_eq!(s.overflow_allocs, s0.overflow_allocs + 1, "{s:?}");
        assert!(s.overflow_segments <= 1, "{s:?}");
        assert!(
            s.reserved_bytes - s0.reserved_bytes <= s.slab_bytes,
            "a slot was stranded: {s0:?} -> {s:?}"
        );
        free(x, 3);
        free(d, 4);
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["detached", "drained"]);
}

/// The last handle drops (closing the pool and collecting the orphans' empty
/// slabs) while a block of an orphaned heap is freed and published on
/// another thread. Whichever comes second must release the orphan's slab:
/// if neither did, the slab would keep the closed pool alive, and loom's
/// leak check would fail the execution. Both orders are seen.
#[test]
fn close_races_free_into_orphan() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = one_slab_pool(2);
        let p = pool.clone();
        let a = thread::spawn(move || alloc(&p, 1)).join().unwrap();
        wait_for_exit_hooks(&pool);
        let freer = thread::spawn(move || free(a, 1));
        let s = pool.stats();
        SEEN.saw(if s.live_blocks == 0 {
            "freed_before_close"
        } else {
            "closed_before_free"
        });
        drop(pool);
        freer.join().unwrap();
    });
    SEEN.assert_seen(&["freed_before_close", "closed_before_free"]);
}
