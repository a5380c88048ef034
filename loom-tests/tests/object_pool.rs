//! Loom model of `ObjectPool`: an object released on another thread (its
//! slot goes home through the remote list, keeping its constructed mark)
//! races the owner's next gets, which either reuse a cached object or
//! construct one. Every object handed out is clean (reset ran), none is
//! handed out twice, and after close constructions equal drops.
#![cfg(loom)]

use homeslab::ObjectPool;
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

#[test]
fn remote_release_races_owner_reuse() {
    static SEEN: Outcomes = Outcomes::new();
    loom::model(|| {
        let made = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let (m, d) = (made.clone(), drops.clone());
        let pool: ObjectPool<Obj> = ObjectPool::builder(move || {
            m.fetch_add(1, Ordering::Relaxed);
            Obj {
                dirty: false,
                drops: d.clone(),
            }
        })
        .reset(|o: &mut Obj| o.dirty = false)
        .slab_capacity(2)
        .max_thread_slabs(1)
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
