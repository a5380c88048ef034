//! The global-allocator benchmarks (examples/gbench/workloads.rs) with
//! system as the `#[global_allocator]`; run side by side by `gbench_driver`.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

include!("gbench/workloads.rs");
