//! Code shared by the benchmarks and the examples (included with `#[path]`):
//! the subjects under test, the threaded timing harness, the interleaved
//! runner, and the workloads.

pub mod harness;
pub mod interleave;
pub mod subjects;
pub mod workloads;
