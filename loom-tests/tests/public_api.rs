//! A model written the way a user's own loom test would be: only homeslab's
//! public API, a `Pool` built inside `loom::model`, a `PoolBox` sent to
//! another loom thread and dropped there (a remote free), while the first
//! thread keeps allocating. Build with `RUSTFLAGS="--cfg loom"` so homeslab
//! itself runs on loom's primitives.
#![cfg(loom)]

use homeslab::{Pool, PoolBox};
use loom::thread;

#[test]
fn user_model_send_poolbox_to_another_thread() {
    loom::model(|| {
        // Tiny slabs, and no magazines (their handshake would take this
        // model past loom's default branch limit), keep the state space
        // small.
        let pool: Pool<u64> = Pool::builder()
            .slab_capacity(2)
            .magazine(0)
            .build()
            .unwrap();
        let boxed: PoolBox<u64> = pool.alloc(7).unwrap();
        let handle = pool.clone();
        let t = thread::spawn(move || {
            assert_eq!(*boxed, 7);
            drop(boxed); // freed home, remotely
            let mine = handle.alloc(8).unwrap();
            PoolBox::into_inner(mine)
        });
        let a = pool.alloc(9).unwrap();
        let b = pool.alloc(10).unwrap();
        assert_eq!((*a, *b), (9, 10));
        assert_eq!(t.join().unwrap(), 8);
        drop((a, b));
        let stats = pool.stats();
        assert_eq!(stats.live_blocks, 0);
        assert_eq!(stats.remote_frees, 1);
        assert_eq!(stats.double_frees, 0);
    });
}
