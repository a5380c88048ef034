//! One heap set per thread for every size class of a `SlabAlloc`: a thread
//! that touches all the classes owns one set (`Stats::thread_heaps` counts
//! sets), and a new thread adopts an exited thread's set whole, every
//! class's slabs with it.
//!
//! Every block is stamped over its whole length with its identity and
//! checked before it is freed. The tests run one at a time (`serial`):
//! heap sets are found by registry id, shared by every thread of the
//! process, and adoption needs the exited thread's id to be the next one
//! handed out.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::SlabAlloc;

mod common;
use common::mix;

fn serial(body: fn()) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(panic) = thread::spawn(body).join() {
        std::panic::resume_unwind(panic);
    }
}

/// A block stamped with `id` over its whole length.
struct Stamped {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    id: u64,
}

// SAFETY: plain memory of a `SlabAlloc`, which may be freed on any thread.
unsafe impl Send for Stamped {}

fn byte(id: u64, i: usize) -> u8 {
    (mix(id ^ (i as u64 / 8)) >> (8 * (i % 8))) as u8
}

impl Stamped {
    fn new(a: &SlabAlloc, size: usize, id: u64) -> Stamped {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let p = a.allocate(layout).expect("allocate");
        let s = Stamped {
            ptr: p.cast(),
            len: p.len(),
            layout,
            id,
        };
        for i in 0..s.len {
            // SAFETY: the block is ours, `len` bytes long.
            unsafe { s.ptr.as_ptr().add(i).write(byte(id, i)) };
        }
        s
    }

    /// Checks the stamp and frees the block.
    fn free(self, a: &SlabAlloc) {
        for i in 0..self.len {
            // SAFETY: as in `new`.
            let got = unsafe { self.ptr.as_ptr().add(i).read() };
            assert_eq!(got, byte(self.id, i), "block {} byte {i}", self.id);
        }
        // SAFETY: a live block of `a` with the layout it was made with.
        unsafe { a.deallocate(self.ptr, self.layout) };
    }
}

/// One block of every class, of the class's own size.
fn one_of_each(a: &SlabAlloc, base: u64) -> Vec<Stamped> {
    SlabAlloc::class_sizes()
        .iter()
        .enumerate()
        .map(|(c, &size)| Stamped::new(a, size, base + c as u64))
        .collect()
}

#[test]
fn one_set_serves_every_class_and_is_adopted_whole() {
    serial(|| {
        let a = SlabAlloc::new();
        // Thread A takes one block of every class and keeps them.
        let a2 = a.clone();
        let kept = thread::spawn(move || {
            let kept = one_of_each(&a2, 0);
            assert_eq!(a2.stats().thread_heaps, 1, "one set for every class");
            kept
        })
        .join()
        .unwrap();
        let s = a.stats();
        assert_eq!(s.thread_heaps, 0, "A's set is an orphan: {s:?}");
        assert_eq!(s.live_blocks, kept.len() as u64);
        let mapped = s.mapped_bytes;
        // Thread B takes A's registry slot and adopts its set: every
        // class's next block comes from A's slabs, so nothing is mapped.
        let a2 = a.clone();
        let fresh = thread::spawn(move || {
            let fresh = one_of_each(&a2, 1000);
            let s = a2.stats();
            assert_eq!(s.thread_heaps, 1, "{s:?}");
            assert_eq!(s.mapped_bytes, mapped, "B mapped slabs: {s:?}");
            fresh
        })
        .join()
        .unwrap();
        // Free everything here, each stamp checked: frees into the orphan.
        for b in kept.into_iter().chain(fresh) {
            b.free(&a);
        }
        let s = a.stats();
        assert_eq!(s.live_blocks, 0, "{s:?}");
        assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
        a.trim();
        assert_eq!(a.stats().mapped_bytes, 0, "{:?}", a.stats());
    });
}

/// Four threads allocate every class at once and pass their blocks round a
/// ring: each owns one set while it works, and every block comes back
/// intact.
#[test]
fn threads_each_own_one_set_across_every_class() {
    serial(|| {
        const THREADS: usize = 4;
        const ROUNDS: u64 = 6;
        let a = SlabAlloc::new();
        let at_work = Arc::new(Barrier::new(THREADS));
        let handed: Arc<Mutex<Vec<Vec<Stamped>>>> =
            Arc::new(Mutex::new((0..THREADS).map(|_| Vec::new()).collect()));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (a, at_work, handed) = (a.clone(), at_work.clone(), handed.clone());
                thread::spawn(move || {
                    for r in 0..ROUNDS {
                        let mine = one_of_each(&a, (t as u64) << 40 | r << 20);
                        at_work.wait();
                        assert_eq!(a.stats().thread_heaps, THREADS as u64);
                        // Hand this round's blocks to the next thread; free
                        // what the previous one handed over (remote frees).
                        let theirs = {
                            let mut h = handed.lock().unwrap();
                            h[(t + 1) % THREADS].extend(mine);
                            std::mem::take(&mut h[t])
                        };
                        for b in theirs {
                            b.free(&a);
                        }
                        at_work.wait();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        for b in handed.lock().unwrap().drain(..).flatten() {
            b.free(&a);
        }
        let s = a.stats();
        assert_eq!(s.live_blocks, 0, "{s:?}");
        // The workers' sets are orphans; this thread took one to free the
        // last round's blocks.
        assert_eq!(s.thread_heaps, 1, "{s:?}");
        assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
    });
}

/// More allocators than the thread context's table has room for when each
/// class took an entry of its own: sixty allocators, each used by the same
/// threads, every block checked.
#[test]
fn sixty_allocators_on_the_same_threads() {
    serial(|| {
        let allocs: Vec<SlabAlloc> = (0..60).map(|_| SlabAlloc::new()).collect();
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                let allocs = allocs.clone();
                thread::spawn(move || {
                    for r in 0..3u64 {
                        let blocks: Vec<(usize, Stamped)> = allocs
                            .iter()
                            .enumerate()
                            .map(|(i, a)| {
                                let id = t << 40 | r << 20 | i as u64;
                                (i, Stamped::new(a, 16 + (mix(id) as usize % 4096), id))
                            })
                            .collect();
                        for (i, b) in blocks {
                            b.free(&allocs[i]);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        for a in &allocs {
            let s = a.stats();
            assert_eq!((s.allocs, s.live_blocks), (6, 0), "{s:?}");
        }
    });
}
