//! Loom model of the thread context: a pool closes while another thread's
//! context still holds its entry, and a new pool (which may take the
//! closed pool's entry) is then used from that same thread. The stale
//! entry must never be used: every block of the new pool is one of its own.
#![cfg(loom)]

use homeslab::{Pool, PoolBox};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{alloc, assert_clean, free, Stamp};

fn small_pool() -> Pool<Stamp> {
    Pool::builder()
        .slab_capacity(2)
        .max_thread_slabs(1)
        .magazine(0)
        .build()
        .unwrap()
}

#[test]
fn pool_closes_while_another_context_holds_its_entry() {
    loom::model(|| {
        let first = small_pool();
        let theirs = first.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let seen = closed.clone();
        let user = thread::spawn(move || {
            // This thread's context now holds `first`'s entry.
            let b = alloc(&theirs, 1);
            free(b, 1);
            drop(theirs);
            while !seen.load(Ordering::Acquire) {
                thread::yield_now();
            }
            // `first` is closed: its entry may now belong to `second`.
            let second = small_pool();
            let b = alloc(&second, 2);
            let raw = PoolBox::into_raw(b);
            // SAFETY: `raw` came from `into_raw` just now.
            let b = unsafe { PoolBox::from_raw_in(&second, raw) }
                .expect("a block of the new pool, not of the closed one");
            free(b, 2);
            assert_clean(&second);
            assert_eq!(second.stats().allocs, 1);
        });
        // Closes `first` (the last handle, or the user's drop does), racing
        // the user's allocation and free.
        drop(first);
        closed.store(true, Ordering::Release);
        user.join().unwrap();
    });
}
