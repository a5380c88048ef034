//! # homeslab
//!
//! A concurrent, per-thread slab allocator for pools of fixed-size objects,
//! shared across a server's worker threads.
//!
//! - Each thread allocates from slabs it owns: a thread-local heap lookup and
//!   a pop from a plain freelist — no lock, no atomic read-modify-write.
//! - A block freed on another thread is held by the freeing thread in a small
//!   per-thread, per-pool magazine (the one freed last serves its next
//!   allocation, the others before a new slab); what it does not reuse goes
//!   home grouped by slab through the slab's lock-free
//!   MPSC list (one CAS per slab); the owner takes the whole list with one
//!   swap (see [`flush_remote_frees`]).
//! - A mutex-guarded, growable shared tier serves threads past the configured
//!   limits and threads in teardown, and adopts exited threads' slabs.
//! - Empty slabs go back to the OS on [`Pool::trim`] or after an idle period.
//! - Optional hardening: encoded freelist links checked on every pop; double
//!   frees and foreign pointers are refused and counted in every mode.
//!
//! ```
//! use homeslab::{Pool, PoolBox, Stats};
//!
//! let pool = Pool::<[u64; 8]>::builder().hardened(true).build()?;
//! let b: PoolBox<[u64; 8]> = pool.alloc([0; 8])?;
//! std::thread::spawn(move || drop(b)).join().unwrap();
//! let s: Stats = pool.stats();
//! assert_eq!(s.live_blocks, 0);
//! assert_eq!(s.remote_frees, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The module tree reads as the algorithm: page source → slab → heap →
//! remote list → overflow tier → thread context → pool core → [`Pool`],
//! [`ObjectPool`] and [`SlabAlloc`], all on the `sync` facade that loom
//! swaps out (`--cfg loom`); each module uses only modules below it. See
//! `docs/ARCHITECTURE.md`.

#![deny(missing_docs, unreachable_pub, unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod sync;

mod class;
mod config;
mod factory;
mod heap;
mod large;
mod magazine;
mod meta;
mod object_pool;
mod objects;
mod os;
mod overflow;
mod pool;
mod pool_core;
mod registry;
mod remote;
mod slab;
mod slab_alloc;
mod source;
mod thread;

mod error;
#[cfg(not(loom))]
mod global;
mod pagemap;
mod stats;

pub use error::{AllocError, ConfigError};
#[cfg(not(loom))]
pub use global::Global;
pub use object_pool::{ObjectBox, ObjectPool, ObjectPoolBuilder};
pub use pool::{ForeignPointer, Pool, PoolBox, PoolBuilder};
pub use slab_alloc::{SlabAlloc, SlabAllocBuilder};
pub use stats::Stats;

/// The allocator-api2 crate (the 0.2 line, which hashbrown and bumpalo
/// use) whose `Allocator` trait [`SlabAlloc`] implements: name the trait
/// and its collections through this path to get the same version.
pub use allocator_api2;

/// Sends home the freed blocks this thread still holds, for every pool
/// (and puts its own last freed block, which it keeps for its next
/// allocation, back on its slab).
///
/// A free on a thread that does not own the block's slab is held in the
/// thread's magazine of the pool: up to [`PoolBuilder::magazine`] blocks
/// (default 32): the one freed last serves its next allocation there, the
/// others its allocations once its slabs are full. A full magazine
/// sends its older half home (all of it on a thread that only frees), one
/// atomic push per slab. Held blocks count
/// as freed in [`Pool::stats`] (`held_blocks` says how many) but pin their
/// slabs until reused or sent home: by this call, [`Pool::trim`], the idle
/// sweep (every `release_after`), the pool's close, or the thread's exit.
/// Call it before a thread that freed blocks of other threads blocks for a
/// long time. It also makes the thread give up its heaps of pools that have
/// closed.
///
/// The exit's flush runs in a thread-local destructor. `JoinHandle::join`
/// waits for those, but `std::thread::scope` returns as soon as the scoped
/// closures return, possibly before: call this at the end of a scoped thread
/// whose remote frees must be home when the scope ends.
pub fn flush_remote_frees() {
    pool_core::flush_thread();
}

/// Testing aid, not API: the calls of the `mmap` family (map, unmap,
/// remap, advise; `VirtualAlloc`/`VirtualFree` on Windows) homeslab made so
/// far in this process, summed over every allocator and pool (0 under Miri).
#[doc(hidden)]
pub fn os_calls() -> u64 {
    os::calls()
}

/// The README's examples, run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
