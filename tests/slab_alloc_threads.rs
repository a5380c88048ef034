//! `SlabAlloc` shared by several threads: blocks of every size class and
//! large ones, allocated on one thread and checked, grown, shrunk and freed
//! on others; vectors built on one thread and extended (reallocated) on
//! the next. Every block is stamped; at the end nothing is live. Also run
//! under ThreadSanitizer (`.ci/sanitizers.sh`).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::thread;

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::allocator_api2::vec::Vec as AVec;
use homeslab::SlabAlloc;

mod common;
use common::mix;

const THREADS: usize = 4;
const ROUNDS: usize = 300;

/// A block moving between threads: address, layout, stamp byte.
struct Block(NonNull<u8>, Layout, u8);
// SAFETY: the block is owned by whoever holds the message.
unsafe impl Send for Block {}

fn layout(x: u64) -> Layout {
    let size = match x % 8 {
        0..=3 => 1 + (x >> 8) as usize % 512,
        4..=5 => 1 + (x >> 8) as usize % (32 * 1024),
        6 => 1 + (x >> 8) as usize % (256 * 1024),
        _ => 1 + (x >> 8) as usize % (512 * 1024),
    };
    Layout::from_size_align(size, 1 << ((x >> 40) % 7)).unwrap()
}

fn check(b: &Block) {
    // SAFETY: a live block of `b.1.size()` bytes, owned by the caller.
    let got = unsafe { std::slice::from_raw_parts(b.0.as_ptr(), b.1.size()) };
    assert!(got.iter().all(|&x| x == b.2), "block corrupted");
}

fn fill(b: &Block) {
    // SAFETY: as in `check`.
    unsafe { b.0.as_ptr().write_bytes(b.2, b.1.size()) };
}

#[test]
fn blocks_and_vectors_cross_threads() {
    let a = SlabAlloc::builder().hardened(true).build().unwrap();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<(Block, AVec<u64, SlabAlloc>)>())
        .unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let a = a.clone();
            let next = txs[(t + 1) % THREADS].clone();
            thread::spawn(move || {
                let mut sent = 0;
                let mut received = 0;
                let mut seed = mix(t as u64 + 1);
                while sent < ROUNDS || received < ROUNDS {
                    if sent < ROUNDS {
                        seed = mix(seed);
                        let l = layout(seed);
                        let p = a.allocate(l).unwrap().cast::<u8>();
                        let b = Block(p, l, seed as u8);
                        fill(&b);
                        let mut v = AVec::new_in(a.clone());
                        v.extend((0..seed % 100).map(|i| mix(seed ^ i)));
                        next.send((b, v)).unwrap();
                        sent += 1;
                    }
                    let Ok((b, mut v)) = rx.recv() else { break };
                    received += 1;
                    check(&b);
                    let n = v.len() as u64;
                    let first = v.first().copied();
                    // Grown here: a block of another thread reallocated.
                    v.extend((n..n + 50).map(|i| i * 3));
                    if first.is_some() {
                        assert_eq!(v.first().copied(), first);
                    }
                    drop(v);
                    // Resized or freed here, on another thread than its own.
                    seed = mix(seed);
                    let nl = layout(seed);
                    let nl = Layout::from_size_align(nl.size(), b.1.align()).unwrap();
                    // SAFETY: a live block, its layout, the direction checked.
                    let moved = unsafe {
                        if nl.size() >= b.1.size() {
                            a.grow(b.0, b.1, nl)
                        } else {
                            a.shrink(b.0, b.1, nl)
                        }
                    }
                    .unwrap()
                    .cast::<u8>();
                    let kept = Block(
                        moved,
                        Layout::from_size_align(b.1.size().min(nl.size()), 1).unwrap(),
                        b.2,
                    );
                    check(&kept);
                    // SAFETY: the resized block and its new layout.
                    unsafe { a.deallocate(moved, nl) };
                }
                drop(next);
                homeslab::flush_remote_frees();
            })
        })
        .collect();
    drop(txs);
    for h in handles {
        h.join().unwrap();
    }
    let s = a.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    assert!(s.remote_frees > 0, "no free crossed threads: {s:?}");
    assert_eq!(s.double_frees + s.foreign_frees + s.corruption_events, 0);
}
