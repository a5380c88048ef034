//! Code shared by the benchmarks and the examples (included with `#[path]`):
//! the subjects under test, the threaded timing harness, and the workloads.

pub mod harness;
pub mod subjects;
pub mod workloads;
