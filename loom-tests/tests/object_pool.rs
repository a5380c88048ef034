//! Loom model of `ObjectPool`: an object released on another thread (its
//! slot goes home through the remote list, keeping its constructed mark)
//! races the owner's next gets, which either reuse a cached object or
//! construct one. Every object handed out is clean (reset ran), none is
//! handed out twice, and after close constructions equal drops.
#![cfg(loom)]

use homeslab::{ObjectPool, ObjectPoolBuilder};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{Outcomes, Sched};

/// A cached object: `dirty` set by users, cleared by reset; counts drops.
struct Obj {
    dirty: bool,
    drops: Arc<AtomicUsize>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// A pool of `Obj`s whose constructions count in `made` and drops in
/// `drops`.
fn counted(made: &Arc<AtomicUsize>, drops: &Arc<AtomicUsize>) -> ObjectPoolBuilder<Obj> {
    let (m, d) = (made.clone(), drops.clone());
    ObjectPool::builder(move || {
        m.fetch_add(1, Ordering::Relaxed);
        Obj {
            dirty: false,
            drops: d.clone(),
        }
    })
}

#[test]
fn remote_release_races_owner_reuse() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let made = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let pool: ObjectPool<Obj> = counted(&made, &drops)
            .reset(|o: &mut Obj| o.dirty = false)
            .slab_capacity(2)
            .max_thread_slabs(1)
            .magazine(0)
            .build()
            .unwrap();
        let mut a = pool.get().unwrap();
        a.dirty = true;
        let a_at = &*a as *const Obj as usize;
        let hint = Sched::new();
        let h = hint.clone();
        let releaser = thread::spawn(move || {
            drop(a); // remote: reset here, then home with its object
            homeslab::flush_remote_frees();
            h.done();
        });
        hint.point();
        let b = pool.get().unwrap();
        assert!(!b.dirty);
        SEEN.saw(if &*b as *const Obj as usize == a_at {
            "reused the remotely released object"
        } else {
            "constructed a new one"
        });
        releaser.join().unwrap();
        let c = pool.get().unwrap();
        assert!(!c.dirty, "a reused object was reset");
        assert_ne!(
            &*b as *const Obj, &*c as *const Obj,
            "one slot handed out twice"
        );
        let s = pool.stats();
        assert_eq!(s.objects_constructed, made.load(Ordering::Relaxed) as u64);
        assert!(s.objects_constructed <= 3, "{s:?}");
        drop((b, c, pool));
        assert_eq!(made.load(Ordering::Relaxed), drops.load(Ordering::Relaxed));
    });
    SEEN.assert_seen(&[
        "reused the remotely released object",
        "constructed a new one",
    ]);
}

/// The last handle drops on one thread while the owner of the only heap,
/// which lives on, frees its own objects on another: the close marks the
/// heap closing, so the owner's first free after it abandons the heap and
/// its frees go home through the remote list, where the publisher finds the
/// heap dead and releases the slab. Before the owner exits, every cached
/// object has been dropped: no slab stayed with the live thread. The owner's
/// first free lands before or after the close; both orders are seen.
#[test]
fn close_races_a_live_owners_own_frees() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let made = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let pool: ObjectPool<Obj> = counted(&made, &drops)
            .slab_capacity(2)
            .max_thread_slabs(1)
            .magazine(0)
            .build()
            .unwrap();
        let p = pool.clone();
        let closed = Arc::new(AtomicUsize::new(0));
        let c = closed.clone();
        let (made2, drops2) = (made.clone(), drops.clone());
        let owner = thread::spawn(move || {
            let a = p.get().unwrap();
            let b = p.get().unwrap();
            drop(p);
            drop(a); // races the close
            SEEN.saw(if c.load(Ordering::Acquire) == 1 {
                "freed_after_close"
            } else {
                "freed_before_close_or_during"
            });
            while c.load(Ordering::Acquire) == 0 {
                thread::yield_now();
            }
            drop(b); // after the close: home, and the heap is dead
            homeslab::flush_remote_frees();
            assert_eq!(
                made2.load(Ordering::Relaxed),
                drops2.load(Ordering::Relaxed),
                "a slab of the closed pool stayed with its live owner"
            );
        });
        drop(pool);
        closed.store(1, Ordering::Release);
        owner.join().unwrap();
    });
    SEEN.assert_seen(&["freed_after_close", "freed_before_close_or_during"]);
}
