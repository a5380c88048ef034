//! The global-allocator benchmarks (examples/gbench/workloads.rs) with
//! system as the `#[global_allocator]`; run side by side by `gbench_driver`.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

/// The mmap-family call count printed after each run (homeslab only).
const OS_CALLS: Option<fn() -> u64> = None;

include!("gbench/workloads.rs");
