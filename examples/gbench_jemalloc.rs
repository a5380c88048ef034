//! The global-allocator benchmarks (examples/gbench/workloads.rs) with
//! jemalloc as the `#[global_allocator]`; run side by side by `gbench_driver`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

include!("gbench/workloads.rs");
