//! The global-allocator benchmarks (examples/gbench/workloads.rs) with
//! homeslab as the `#[global_allocator]`; run side by side by `gbench_driver`.

#[global_allocator]
static GLOBAL: homeslab::Global = homeslab::Global;

/// The mmap-family call count printed after each run (homeslab only).
const OS_CALLS: Option<fn() -> u64> = Some(homeslab::os_calls);

include!("gbench/workloads.rs");
