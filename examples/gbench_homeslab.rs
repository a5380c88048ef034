//! The global-allocator benchmarks (examples/gbench/workloads.rs) with
//! homeslab as the `#[global_allocator]`; run side by side by `gbench_driver`.

#[global_allocator]
static GLOBAL: homeslab::Global = homeslab::Global;

include!("gbench/workloads.rs");
