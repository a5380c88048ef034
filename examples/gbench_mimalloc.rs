//! The global-allocator benchmarks (examples/gbench/workloads.rs) with
//! mimalloc as the `#[global_allocator]`; run side by side by `gbench_driver`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

include!("gbench/workloads.rs");
