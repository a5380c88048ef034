//! `SlabAlloc` through allocator-api2, one module per concept:
//!
//! - `layouts`: the class table and the lengths `allocate` returns, the
//!   layout-fit rule of `deallocate`, zeroed allocation on reused memory,
//!   zero-size layouts;
//! - `medium`: the classes above 32 KiB up to 256 KiB — blocks of each
//!   freed here and remotely, their slabs' regions, no new mapping once
//!   warm, the edge between the last class and the large blocks;
//! - `resize`: in-place and moving `grow` / `shrink` / `grow_zeroed`;
//! - `collections`: hashbrown maps, `Vec`s and `Box`es that cross threads;
//! - `threads`: mixed sizes and alignments freed remotely, `trim` racing
//!   allocation;
//! - `large`: the large blocks' arena (coalescing, growth in place, idle
//!   purge, trim, the budget) and threads resizing large blocks while
//!   another trims;
//! - `idle`: the allocator-wide idle release — a class's idle regions (or
//!   the arena's idle spans) released by the slow paths of another class
//!   or of large blocks, only by `trim` without `release_after`, and
//!   threads in many classes while the sweep runs;
//! - `refusals`: refused frees (double, foreign, interior, large);
//! - `limits`: builder validation, the `max_bytes` budget, injected mapping
//!   failures, impossible requests.
//!
//! They share `blocks`: every block is stamped with a pattern derived from
//! its id over its whole returned length and checked before it is freed;
//! live blocks are kept in an address-ordered map so that any overlap is
//! caught when it is handed out.

#[path = "../common/mod.rs"]
mod common;

mod blocks;
mod collections;
mod idle;
mod large;
mod layouts;
mod limits;
mod medium;
mod refusals;
mod resize;
mod threads;
