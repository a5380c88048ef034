//! The global-allocator benchmarks (examples/gbench/workloads.rs) with
//! jemalloc as the `#[global_allocator]`; run side by side by `gbench_driver`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The mmap-family call count printed after each run (homeslab only).
const OS_CALLS: Option<fn() -> u64> = None;

include!("gbench/workloads.rs");
