//! Loom models of the remote-free path: a block freed on a foreign thread
//! must reach its home slab exactly once, whatever the interleaving with the
//! owner's drain, detach and re-attach.
//!
//! Each model records which way its race went ([`Outcomes`]) and checks at
//! the end that loom explored every way; [`Sched`] hints make loom try the
//! remote operation both before and after the owner's.
#![cfg(loom)]

use homeslab::Pool;
use loom::thread;
use loom_tests::{
    addr, alloc, assert_clean, assert_distinct, free, free_held, Outcomes, Sched, Stamp,
};

/// A remote free races with the owner's drain: the owner's second allocation
/// may or may not find the remotely freed block, but no block is lost and
/// none is handed out twice.
#[test]
fn remote_free_races_drain() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(2)
            .max_thread_slabs(1)
            .magazine(0)
            .build()
            .unwrap();
        let a = alloc(&pool, 1);
        let b = alloc(&pool, 2);
        let (addr_a, addr_b) = (addr(&a), addr(&b));
        let hint = Sched::new();
        let h = hint.clone();
        let t = thread::spawn(move || {
            free(a, 1);
            h.done();
        });
        free(b, 2);
        // One from the local list (b's slot), one that needs the drain (a's
        // slot) or else the overflow tier.
        let c = alloc(&pool, 3);
        hint.point();
        let d = alloc(&pool, 4);
        assert_distinct(&[&c, &d]);
        t.join().unwrap();
        let s = pool.stats();
        assert_eq!(s.remote_frees, 1, "{s:?}");
        if s.overflow_allocs == 0 {
            SEEN.saw("drained");
            let mut got = [addr(&c), addr(&d)];
            got.sort_unstable();
            let mut want = [addr_a, addr_b];
            want.sort_unstable();
            assert_eq!(got, want, "the drained block did not come back");
        } else {
            SEEN.saw("tier");
        }
        free(c, 3);
        free(d, 4);
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["drained", "tier"]);
}

/// A remote free into a *full* slab races with the owner running dry. The
/// owner either drains the block in time, or detaches the slab; then the
/// freer claims the detached tag and hands the slab back through the heap's
/// returned queue. Either way the owner gets the block back: with one slot and
/// one slab per heap, once the free is done the next owner allocation reuses
/// it instead of going to the overflow tier.
#[test]
fn remote_free_to_full_slab_races_owner_running_dry() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(1)
            .max_thread_slabs(1)
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
        // Slab full: this one drains the free if it arrived, else detaches
        // the slab and goes to the tier.
        let c = alloc(&pool, 2);
        let c_from_tier = pool.stats().overflow_allocs == 1;
        assert_eq!(c_from_tier, addr(&c) != addr_a);
        t.join().unwrap();
        if c_from_tier {
            SEEN.saw("detached");
            // The free is done: the block must be back home.
            let d = alloc(&pool, 3);
            assert_eq!(addr(&d), addr_a, "the remote free was stranded");
            assert_eq!(pool.stats().overflow_allocs, 1);
            assert_distinct(&[&c, &d]);
            free(d, 3);
        } else {
            SEEN.saw("drained");
        }
        free(c, 2);
        let s = pool.stats();
        assert_eq!(s.remote_frees, 1 + u64::from(c_from_tier), "{s:?}");
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["drained", "detached"]);
}

/// Two remote threads free into the same slab while its owner allocates. The
/// owner's allocations never collide; once both frees are done and the
/// owner's blocks are back, two owner allocations return exactly the two
/// remotely freed slots (nothing stranded, nothing duplicated). Hardened, so
/// every drained link is decoded and checked: a chain seen half-published
/// would count as corruption.
#[test]
fn two_remote_freers_race_owner_alloc() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(2)
            .max_thread_slabs(1)
            .magazine(0)
            .hardened(true)
            .build()
            .unwrap();
        let a = alloc(&pool, 1);
        let b = alloc(&pool, 2);
        let mut home = [addr(&a), addr(&b)];
        home.sort_unstable();
        let (h1, h2) = (Sched::new(), Sched::new());
        let (m1, m2) = (h1.clone(), h2.clone());
        let t1 = thread::spawn(move || {
            free(a, 1);
            m1.done();
        });
        let t2 = thread::spawn(move || {
            free(b, 2);
            m2.done();
        });
        h1.point();
        h2.point();
        let c = alloc(&pool, 3);
        SEEN.saw(if home.contains(&addr(&c)) {
            "c_home"
        } else {
            "c_tier"
        });
        t1.join().unwrap();
        t2.join().unwrap();
        let d = alloc(&pool, 4);
        assert_distinct(&[&c, &d]);
        free(c, 3);
        free(d, 4);
        // Every block is free again: both home slots must be reachable.
        let e = alloc(&pool, 5);
        let f = alloc(&pool, 6);
        let mut got = [addr(&e), addr(&f)];
        got.sort_unstable();
        assert_eq!(got, home, "a remotely freed slot was lost");
        free(e, 5);
        free(f, 6);
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["c_home", "c_tier"]);
}

/// Two full, detached slabs of one owner get a remote free each, on two
/// threads, while the owner allocates: both freers claim a detached tag and
/// push their slab onto the heap's returned queue, and the owner may take the
/// queue at any point. Neither slab may be lost: once both frees are done,
/// both freed slots serve the owner again.
#[test]
fn two_returned_slabs_race_owner_take() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(1)
            .max_thread_slabs(2)
            .magazine(0)
            .build()
            .unwrap();
        let a = alloc(&pool, 1); // slab 1
        let b = alloc(&pool, 2); // slab 2; slab 1 detached
        let c = alloc(&pool, 3); // slab 2 detached; from the tier
        assert_eq!(pool.stats().overflow_allocs, 1);
        let home = [addr(&a), addr(&b)];
        let (h1, h2) = (Sched::new(), Sched::new());
        let (m1, m2) = (h1.clone(), h2.clone());
        let t1 = thread::spawn(move || {
            free(a, 1);
            m1.done();
        });
        let t2 = thread::spawn(move || {
            free(b, 2);
            m2.done();
        });
        h1.point();
        h2.point();
        let d = alloc(&pool, 4);
        SEEN.saw(if home.contains(&addr(&d)) {
            "d_home"
        } else {
            "d_tier"
        });
        t1.join().unwrap();
        t2.join().unwrap();
        let e = alloc(&pool, 5);
        let f = alloc(&pool, 6);
        assert_distinct(&[&c, &d, &e, &f]);
        let got = [addr(&d), addr(&e), addr(&f)];
        for h in home {
            assert!(got.contains(&h), "a returned slab was lost");
        }
        for (b, id) in [(c, 3), (d, 4), (e, 5), (f, 6)] {
            free(b, id);
        }
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["d_home", "d_tier"]);
}

/// A remote freer holds two blocks of one slab in its magazine and sends
/// them home as one chain (one CAS) while the owner allocates through its
/// slab and runs dry. The owner either splices the whole chain (both blocks come
/// back, in either order) or finds nothing yet and uses the overflow tier;
/// never half a chain. Hardened, so every link of the spliced chain is
/// decoded and checked as it is popped: a link seen before its publication
/// would count as corruption.
///
/// At most two preemptions, as the magazine's models: the race needs two
/// (into the other thread's push and back); the freer's magazine and exit
/// hook make three take minutes (~10 s at two, 3–4.5 min at three).
#[test]
fn held_chain_races_owner_drain() {
    static SEEN: Outcomes = Outcomes::new();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(2, |p| p.min(2)));
    b.check(|| {
        let pool = Pool::<Stamp>::builder()
            .slab_capacity(3)
            .max_thread_slabs(1)
            .hardened(true)
            .magazine(2)
            .build()
            .unwrap();
        let a = alloc(&pool, 1);
        let b = alloc(&pool, 2);
        let c = alloc(&pool, 3);
        let mut chain = [addr(&a), addr(&b)];
        chain.sort_unstable();
        let hint = Sched::new();
        let h = hint.clone();
        let t = thread::spawn(move || {
            free_held(a, 1);
            free_held(b, 2);
            homeslab::flush_remote_frees();
            h.done();
        });
        free(c, 3);
        hint.point();
        let d = alloc(&pool, 4); // c's slot, from the local list
        let e = alloc(&pool, 5); // the chain, or the tier
        let from_tier = pool.stats().overflow_allocs > 0;
        t.join().unwrap();
        let f = alloc(&pool, 6);
        assert_distinct(&[&d, &e, &f]);
        if from_tier {
            SEEN.saw("tier");
        } else {
            SEEN.saw("chain_spliced");
            let mut got = [addr(&e), addr(&f)];
            got.sort_unstable();
            assert_eq!(got, chain, "the chain came back incomplete");
        }
        let s = pool.stats();
        assert_eq!(s.remote_frees, 2, "{s:?}");
        free(d, 4);
        free(e, 5);
        free(f, 6);
        assert_clean(&pool);
    });
    SEEN.assert_seen(&["chain_spliced", "tier"]);
}
