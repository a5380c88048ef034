//! mimalloc-bench style workloads, every subject in one binary.
//!
//! `cargo bench --bench alloc` (all groups, ~10 minutes on 2 cores), or a
//! filter: `cargo bench --bench alloc -- larson`. Results land in
//! `target/criterion/<group>/<subject>/new/estimates.json`;
//! `python3 benches/plot.py` turns them into the table and the SVG of
//! docs/BENCHMARKS.md.
//!
//! Groups (64-byte objects unless the name says otherwise):
//! - `local_t1`, `local_t2`: each thread allocates 1024 blocks, then frees them;
//! - `local_t1_16B`, `local_t1_256B`, `local_t1_1024B`: the size sweep;
//!   the one-thread `local` groups also run `floor`, the workload with no
//!   allocator at all (a fixed array of blocks handed out LIFO): an
//!   allocator cheaper than its pop and push could pass it, none here does;
//! - `xthread_1p1c`: a producer allocates, a consumer frees (all remote);
//! - `larson_t1`, `larson_t2`, `larson_t4`: random replacement in per-thread
//!   live sets (1000 blocks, 1000 replacements per round) that migrate round
//!   the ring of threads after every round (at 1 thread they stay put);
//! - `larson_churn_t2`: 2 slots of 10 000 live blocks; every round each slot's
//!   set goes to a new thread (10 000 replacements) and the old one exits,
//!   so most frees are of blocks allocated by threads that are gone;
//! - `cache_scratch_t2`: hand-off, then hard writes (false sharing shows);
//!   `cache_scratch_t2_writes_only` and `cache_scratch_t2_handoff_only` are
//!   its two halves, as controls;
//! - `local_t2_homeslab_retained`: homeslab alone, `retained_empty_slabs` 1
//!   against 4 (the default) against 8;
//! - `local_pools_k1`, `_k2`, `_k3`, `_k8`: `local_t1` spread over k pools of
//!   k distinct 64-byte types (block i from pool i % k), every subject with
//!   one pool (or slab, or allocator handle) per type, and the floor; for
//!   the allocators k types of one size are one size class. The target is
//!   homeslab within 10% of k = 1 at every k: quote
//!   `benches/interleaved.rs`'s ratio, taken within each round.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

use common::churn::LarsonChurn;
use common::subjects::{
    each_family, each_subject, Family, FamilySink, Floor, FloorFamily, Homeslab, Line, Obj,
    Subject, Visitor,
};
use common::workloads::{
    CacheScratch, Kinds, Kinds1, Kinds2, Kinds3, Kinds8, Larson, Local, LocalPools, Workload,
    XThread,
};

/// Adds one benchmark per subject to a group.
struct PerSubject<'g, 'c, W> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    workload: &'g W,
}

impl<T: Obj, W: Workload<T>> Visitor<T> for PerSubject<'_, '_, W> {
    fn visit<S: Subject<T>>(&mut self, s: &S) {
        let w = self.workload;
        self.group
            .bench_function(s.name(), |b| b.iter_custom(|iters| w.run(s, iters)));
    }
}

fn group<T: Obj, W: Workload<T>>(c: &mut Criterion, name: &str, workload: W) {
    group_of::<T, W>(c, name, workload, false);
}

/// A one-thread `local` group: every subject, then the [`Floor`] (the
/// workload without an allocator), which is sound only with one thread.
fn local_one_thread<T: Obj>(c: &mut Criterion, name: &str) {
    group_of::<T, _>(c, name, Local { threads: 1 }, true);
}

/// Every subject on `workload`, and the floor if `floor` (callers: one
/// thread only, see [`local_one_thread`]).
fn group_of<T: Obj, W: Workload<T>>(c: &mut Criterion, name: &str, workload: W, floor: bool) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(workload.elements()));
    let mut per = PerSubject {
        group: &mut g,
        workload: &workload,
    };
    each_subject::<T, _>(&mut per);
    if floor {
        per.visit(&Floor::<T>::new());
    }
    g.finish();
}

fn local(c: &mut Criterion) {
    local_one_thread::<[u64; 8]>(c, "local_t1");
    group::<[u64; 8], _>(c, "local_t2", Local { threads: 2 });
}

fn sizes(c: &mut Criterion) {
    local_one_thread::<[u64; 2]>(c, "local_t1_16B");
    local_one_thread::<[u64; 32]>(c, "local_t1_256B");
    local_one_thread::<[u64; 128]>(c, "local_t1_1024B");
}

fn xthread(c: &mut Criterion) {
    group::<[u64; 8], _>(c, "xthread_1p1c", XThread { pairs: 1 });
}

fn larson(c: &mut Criterion) {
    group::<[u64; 8], _>(c, "larson_t1", Larson { threads: 1 });
    group::<[u64; 8], _>(c, "larson_t2", Larson { threads: 2 });
    group::<[u64; 8], _>(c, "larson_t4", Larson { threads: 4 });
    group::<[u64; 8], _>(c, "larson_churn_t2", LarsonChurn::new(2));
}

fn cache_scratch(c: &mut Criterion) {
    let full = CacheScratch {
        threads: 2,
        hand_off: true,
        write: true,
    };
    group::<Line, _>(c, "cache_scratch_t2", full);
    // Controls: the writes alone, the hand-off alone.
    let writes_only = CacheScratch {
        hand_off: false,
        ..full
    };
    group::<Line, _>(c, "cache_scratch_t2_writes_only", writes_only);
    let hand_off_only = CacheScratch {
        write: false,
        ..full
    };
    group::<Line, _>(c, "cache_scratch_t2_handoff_only", hand_off_only);
}

/// Adds one `local_pools_k` benchmark per subject family to a group.
struct PerFamily<'g, 'c, L> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    workload: &'g LocalPools<L>,
}

impl<L: Kinds> FamilySink for PerFamily<'_, '_, L> {
    fn take<F: Family>(&mut self, f: F) {
        let w = self.workload;
        let pools = L::build(&f);
        self.group.bench_function(f.name(), |b| {
            b.iter_custom(|iters| w.run::<F>(&pools, iters))
        });
    }
}

/// `local_pools_k{K}`: every subject, then the floor.
fn pools_group<L: Kinds>(c: &mut Criterion) {
    let workload = LocalPools::<L>::new();
    let mut g = c.benchmark_group(format!("local_pools_k{}", L::K));
    g.throughput(Throughput::Elements(workload.elements()));
    let mut per = PerFamily {
        group: &mut g,
        workload: &workload,
    };
    each_family(&mut per);
    per.take(FloorFamily);
    g.finish();
}

fn local_pools(c: &mut Criterion) {
    pools_group::<Kinds1>(c);
    pools_group::<Kinds2>(c);
    pools_group::<Kinds3>(c);
    pools_group::<Kinds8>(c);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(1000))
        .measurement_time(Duration::from_secs(3))
}

/// Not a comparison: homeslab's own `retained_empty_slabs` knob on
/// `local_t2` (the default keeps 4 empty slabs per thread; a 1024-block round
/// spans about 4 slabs of 64-byte blocks, so 1 keeps too few and 8 more than
/// the round needs).
fn tuning(c: &mut Criterion) {
    let w = Local { threads: 2 };
    let mut g = c.benchmark_group("local_t2_homeslab_retained");
    g.throughput(Throughput::Elements(Workload::<[u64; 8]>::elements(&w)));
    for (n, label) in [(1usize, "1"), (4, "4_default"), (8, "8")] {
        let pool = homeslab::Pool::<[u64; 8]>::builder()
            .retained_empty_slabs(n)
            .build()
            .expect("pool config");
        let s = Homeslab::from_pool(pool, false);
        g.bench_function(format!("retained_empty_slabs_{label}"), |b| {
            b.iter_custom(|iters| w.run(&s, iters))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = local, xthread, larson, cache_scratch, sizes, tuning, local_pools
}
criterion_main!(benches);
