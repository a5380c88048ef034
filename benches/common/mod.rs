//! Code shared by the benchmarks and the examples (included with `#[path]`):
//! the subjects under test, the threaded timing harness, the interleaved
//! runner, and the workloads (`larson_churn`, whose threads exit every round,
//! in `churn`; `local`, `xthread` and `larson` in a program's shape, in
//! `shapes`).

pub mod churn;
pub mod harness;
pub mod interleave;
pub mod shapes;
pub mod subjects;
pub mod workloads;
