//! Which `lockfree-object-pool` pool represents the crate in `benches/alloc.rs`:
//! `LinearObjectPool` vs `SpinLockObjectPool` on the same workloads.
//!
//! `cargo bench --bench lockfree_pick` (about a minute). The result is quoted
//! in docs/BENCHMARKS.md.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use common::subjects::{LockfreeLinear, LockfreeSpin, Obj, Subject};
use common::workloads::{Larson, Local, Workload, XThread};

fn pair<T: Obj, W: Workload<T>>(c: &mut Criterion, name: &str, w: W) {
    let mut g = c.benchmark_group(format!("lockfree_pick_{name}"));
    g.throughput(Throughput::Elements(w.elements()));
    let linear = LockfreeLinear::<T>::new();
    g.bench_function("linear", |b| b.iter_custom(|iters| w.run(&linear, iters)));
    let spin = LockfreeSpin::<T>::new();
    g.bench_function("spinlock", |b| b.iter_custom(|iters| w.run(&spin, iters)));
    debug_assert_eq!(spin.name(), "lockfree-object-pool");
    g.finish();
}

fn pick(c: &mut Criterion) {
    pair::<[u64; 8], _>(c, "local_t1", Local { threads: 1 });
    pair::<[u64; 8], _>(c, "local_t2", Local { threads: 2 });
    pair::<[u64; 8], _>(c, "xthread_1p1c", XThread { pairs: 1 });
    pair::<[u64; 8], _>(c, "larson_t2", Larson { threads: 2 });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = pick
}
criterion_main!(benches);
