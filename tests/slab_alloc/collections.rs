//! allocator-api2 collections in a `SlabAlloc`: hashbrown maps, `Vec`s and
//! `Box`es handed from thread to thread while they grow and shrink, then
//! `trim`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use homeslab::allocator_api2::boxed::Box as ABox;
use homeslab::allocator_api2::vec::Vec as AVec;
use homeslab::SlabAlloc;

use crate::blocks::{assert_quiet, assert_stamped, stamp, still_works, GOLDEN};
use crate::common::mix;

type Map = hashbrown::HashMap<u64, u64, hashbrown::DefaultHashBuilder, SlabAlloc>;

fn val(seed: u64, k: u64) -> u64 {
    mix(seed ^ k.wrapping_mul(GOLDEN))
}

/// Collections of one allocator, with what they must hold.
struct Bundle {
    seed: u64,
    /// The map holds exactly these keys, `k → val(seed, k)`.
    keys: std::ops::Range<u64>,
    map: Map,
    /// `vec[i] == val(seed + 1, i)`.
    vec: AVec<u64, SlabAlloc>,
    /// Stamped with `seed`.
    bytes: ABox<[u8; 3000], SlabAlloc>,
    /// `slice[i] == val(seed + 2, i)`; large (an arena span).
    slice: ABox<[u64], SlabAlloc>,
    /// `strings[i]` is the decimal of `val(seed + 3, i)`.
    strings: AVec<AVec<u8, SlabAlloc>, SlabAlloc>,
}

impl Bundle {
    fn new(a: &SlabAlloc, seed: u64) -> Bundle {
        let mut map = Map::new_in(a.clone());
        for k in 0..500 {
            map.insert(k, val(seed, k));
        }
        // Grows through the classes (to 256 KiB) into a large block.
        let mut vec = AVec::new_in(a.clone());
        for i in 0..40_000 {
            vec.push(val(seed + 1, i));
        }
        let mut bytes = ABox::new_in([0u8; 3000], a.clone());
        stamp(&mut bytes[..], seed);
        // 480 000 bytes shrunk to 320 000 by `into_boxed_slice`: large
        // before and after (in place in the arena).
        let mut sv = AVec::with_capacity_in(60_000, a.clone());
        sv.extend((0..40_000).map(|i| val(seed + 2, i)));
        let slice = sv.into_boxed_slice();
        let mut strings = AVec::new_in(a.clone());
        for i in 0..200 {
            let mut s = AVec::new_in(a.clone());
            s.extend_from_slice(val(seed + 3, i).to_string().as_bytes());
            strings.push(s);
        }
        Bundle {
            seed,
            keys: 0..500,
            map,
            vec,
            bytes,
            slice,
            strings,
        }
    }

    #[track_caller]
    fn verify(&self, stage: &str) {
        let s = self.seed;
        assert_eq!(
            self.map.len() as u64,
            self.keys.end - self.keys.start,
            "{stage}"
        );
        for k in self.keys.clone() {
            assert_eq!(self.map.get(&k), Some(&val(s, k)), "{stage}: key {k}");
        }
        for (i, v) in self.vec.iter().enumerate() {
            assert_eq!(*v, val(s + 1, i as u64), "{stage}: vec[{i}]");
        }
        assert_stamped(&self.bytes[..], s, stage);
        assert_eq!(self.slice.len(), 40_000, "{stage}");
        for (i, v) in self.slice.iter().enumerate() {
            assert_eq!(*v, val(s + 2, i as u64), "{stage}: slice[{i}]");
        }
        for (i, st) in self.strings.iter().enumerate() {
            assert_eq!(
                &st[..],
                val(s + 3, i as u64).to_string().as_bytes(),
                "{stage}: string {i}"
            );
        }
    }

    /// Stage 1: everything grows.
    fn grow(&mut self) {
        for k in self.keys.end..self.keys.end + 4000 {
            assert!(self.map.insert(k, val(self.seed, k)).is_none());
        }
        self.keys.end += 4000;
        let n = self.vec.len() as u64;
        for i in n..4 * n {
            self.vec.push(val(self.seed + 1, i));
        }
        for (i, st) in self.strings.iter_mut().enumerate() {
            // Grow each string and cut it back: contents kept across both.
            let len = st.len();
            st.resize(len + 1000 + i, b'x');
            st.truncate(len);
        }
        for i in self.strings.len() as u64..2000 {
            let mut s = AVec::new_in(self.map.allocator().clone());
            s.extend_from_slice(val(self.seed + 3, i).to_string().as_bytes());
            self.strings.push(s);
        }
    }

    /// Stage 2: everything shrinks to fit.
    fn shrink(&mut self) {
        let keep = self.keys.end - 100;
        for k in self.keys.start..keep {
            assert_eq!(self.map.remove(&k), Some(val(self.seed, k)));
        }
        self.keys.start = keep;
        self.map.shrink_to_fit();
        self.vec.truncate(777);
        self.vec.shrink_to_fit();
        assert_eq!(self.vec.capacity(), 777);
        self.strings.truncate(50);
        self.strings.shrink_to_fit();
        for st in self.strings.iter_mut() {
            st.shrink_to_fit();
            assert_eq!(st.capacity(), st.len());
        }
    }
}

/// hashbrown maps, `Vec`s and `Box`es built on one thread, grown on a
/// second, shrunk (shrink_to_fit) on a third and dropped on a fourth, all
/// at once and in a ring; contents checked at every step. Then nothing is
/// live and `trim` gives the memory back.
#[test]
#[cfg_attr(miri, ignore)]
fn collections_cross_threads_then_trim() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 3;
    let a = SlabAlloc::builder().release_after(None).build().unwrap();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<(u32, Bundle)>())
        .unzip();
    let dropped = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % THREADS].clone();
            let a = a.clone();
            let dropped = dropped.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let b = Bundle::new(&a, mix((t as u64) << 32 | i));
                    b.verify("built");
                    next.send((1, b)).unwrap();
                }
                // Each thread grows, shrinks and drops PER_THREAD bundles
                // of its three predecessors.
                for _ in 0..3 * PER_THREAD {
                    let (stage, mut b) = rx.recv().unwrap();
                    b.verify("received");
                    match stage {
                        1 => {
                            b.grow();
                            b.verify("grown");
                        }
                        2 => {
                            b.shrink();
                            b.verify("shrunk");
                        }
                        _ => {
                            drop(b);
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    next.send((stage + 1, b)).unwrap();
                }
            })
        })
        .collect();
    drop(txs);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        THREADS * PER_THREAD as usize
    );
    let s = a.stats();
    assert_quiet(&a);
    assert!(s.remote_frees > 0, "{s:?}");
    assert!(s.allocs > 10_000, "{s:?}");
    assert!(s.peak_mapped_bytes >= s.mapped_bytes, "{s:?}");
    let before = s.mapped_bytes;
    assert!(before > 0, "empty slabs stay mapped until trimmed: {s:?}");
    let released = a.trim();
    let after = a.stats();
    assert!(released > 0, "trim released nothing: {after:?}");
    assert!(
        after.mapped_bytes < before,
        "mapped {before} -> {}",
        after.mapped_bytes
    );
    // Every thread that held slabs has exited and every block is free.
    assert_eq!(after.mapped_bytes, 0, "{after:?}");
    // The allocator is still usable after trim.
    still_works(&a, 300, &[]);
}
