//! Loom models of the magazine layer (`src/magazine.rs`): a remote free held
//! in the freeing thread's magazine, reused there and sent home while the
//! owner drains; held blocks flushed by the exit hook while the owner
//! allocates; and a thief's steal (`trim` on another thread) racing the
//! owner's pushes and pops — the owner/thief handshake, with loom's
//! `SeqCst` fences standing for the asymmetric pair.
#![cfg(loom)]

use homeslab::{Pool, PoolBox};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{addr, alloc, assert_clean, assert_distinct, free, free_held, Outcomes, Stamp};

/// `loom::model` with room for the magazine's extra atomic operations, and
/// at most two preemptions (the races below need two: into the other
/// thread's operation and back; three takes minutes per model).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.preemption_bound = Some(b.preemption_bound.map_or(2, |p| p.min(2)));
    b.check(f);
}

fn pool(magazine: usize) -> Pool<Stamp> {
    Pool::builder()
        .slab_capacity(2)
        .max_thread_slabs(1)
        .magazine(magazine)
        .build()
        .unwrap()
}

/// The freeing thread (which owns a heap) holds the owner's block, hands it
/// out again to itself, and sends it home; the owner allocates and frees
/// meanwhile (draining its slab). No block is ever handed out twice.
#[test]
fn remote_free_is_held_reused_and_sent_home() {
    model(|| {
        let pool = pool(2);
        let a = alloc(&pool, 1);
        let a_at = addr(&a);
        let p2 = pool.clone();
        let freer = thread::spawn(move || {
            let w = alloc(&p2, 2); // a heap of its own, so a magazine
            free_held(a, 1); // held here, counted as a remote free
            let c = alloc(&p2, 3);
            assert_eq!(addr(&c), a_at, "the held block serves the next allocation");
            assert_distinct(&[&w, &c]);
            free_held(c, 3);
            free(w, 2); // and the flush sends both home
        });
        let b = alloc(&pool, 4);
        assert_ne!(addr(&b), a_at, "held or live, `a` is not free");
        free(b, 4);
        freer.join().unwrap();
        assert_clean(&pool);
        assert_eq!(pool.stats().held_blocks, 0);
    });
}

/// A thread exits holding another thread's block in its magazine, and its
/// own last freed block in its hot slot: the exit hook sends the one home
/// and puts the other back on its slab while the owner allocates.
#[test]
fn held_block_goes_home_at_exit() {
    model(|| {
        let pool = pool(2);
        let a = alloc(&pool, 1);
        let p2 = pool.clone();
        let freer = thread::spawn(move || {
            let w = alloc(&p2, 2);
            free_held(a, 1);
            free_held(w, 2);
            // No flush: the exit hook does it.
        });
        let b = alloc(&pool, 3);
        free_held(b, 3);
        freer.join().unwrap();
        // Wait for the exit hook (loom's join does not).
        while pool.stats().thread_heaps != 1 {
            thread::yield_now();
        }
        let x = alloc(&pool, 4);
        let y = alloc(&pool, 5);
        assert_distinct(&[&x, &y]);
        free(x, 4);
        free(y, 5);
        assert_clean(&pool);
    });
}

/// `trim` on another thread steals a magazine while its owner pushes and
/// pops it. Whichever way the handshake goes, every block is handed out
/// once, and the stolen ones go home.
#[test]
fn steal_races_owner_push_and_pop() {
    static SEEN: Outcomes = Outcomes::new();
    model(|| {
        let pool = Arc::new(pool(2));
        let a = alloc(&pool, 1); // the main thread's block
        let a_at = addr(&a);
        let p2 = Arc::clone(&pool);
        let owner = thread::spawn(move || {
            let w = alloc(&p2, 0); // a heap of its own, so a magazine
            free_held(a, 1); // push
            let b = alloc(&p2, 2); // pop (unless stolen first)
            let reused = addr(&b) == a_at;
            assert_distinct(&[&w, &b]);
            free_held(b, 2); // push, if `a` came back
            free_held(w, 0);
            homeslab::flush_remote_frees();
            reused
        });
        pool.trim(); // the thief
        let reused = owner.join().unwrap();
        SEEN.saw(if reused {
            "owner popped its block"
        } else {
            "stolen first"
        });
        let x = alloc(&pool, 3);
        let y = alloc(&pool, 4);
        assert_distinct(&[&x, &y]);
        let xs: [PoolBox<Stamp>; 2] = [x, y];
        for (i, b) in xs.into_iter().enumerate() {
            free(b, 3 + i as u64);
        }
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["owner popped its block", "stolen first"]);
}
