//! Collections on untyped allocators: every allocator behind
//! `allocator_api2::alloc::Allocator` (0.2) drives a hashbrown map, a growing
//! `Vec` and a mixed-size larson.
//!
//! ```text
//! cargo bench --bench collections                        # criterion, every group
//! cargo bench --bench collections -- hashbrown_churn     # criterion, a filter
//! cargo bench --bench collections -- --interleaved [--rounds N] [--sample-ms M]
//!     [--groups g1,g2,...] [--subjects s1,s2,...] [--once ITERS] [FILTER]
//! ```
//!
//! Subjects (`benches/common/allocators.rs`, `each_allocator`): `system`
//! (`std::alloc::System`, glibc malloc), `mimalloc`, `jemalloc`, each a
//! `GlobalAlloc` called directly through a zero-sized `Allocator` wrapper
//! (none of them is the binaries' global allocator, which stays the system
//! one); homeslab's `SlabAlloc` joins as one line there.
//!
//! Groups (`benches/common/api_workloads.rs`):
//! - `hashbrown_churn`: a `hashbrown::HashMap<u64, Vec<u8, A>, _, A>` kept at
//!   100 000 entries; an operation inserts a new key with a 16–256-byte value
//!   and removes the oldest; throughput in operations;
//! - `vec_push`: a `Vec<u64, A>` pushed from empty to 1, 16, 256, 4096 and
//!   65 536 elements and dropped; throughput in elements pushed (criterion:
//!   one group, the length as parameter; interleaved: `vec_push/LEN`);
//! - `larson_mixed_t2`: larson on 2 threads with raw `allocate` /
//!   `deallocate` of 16–1024-byte blocks, live sets passed round a ring;
//!   throughput in replacements.
//!
//! `--interleaved` runs `benches/interleaved.rs`'s method instead of
//! criterion (every subject takes one short sample per round, in a random
//! order; medians, interquartile ranges, and the median over rounds of
//! [`REFERENCE`] ÷ each subject). `--once N` runs each subject once for
//! exactly `N` iterations and prints `group subject iterations elements
//! nanoseconds` (for callgrind, as `benches/instructions.py` does).

mod common {
    pub mod allocators;
    pub mod api_workloads;
    #[allow(dead_code)]
    pub mod harness;
    pub mod interleave;
}

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, Throughput};

use common::allocators::{each_allocator, names, AllocSubject, AllocVisitor};
use common::api_workloads::{ApiWorkload, HashbrownChurn, LarsonMixed, VecPush, VEC_PUSH_LENS};
use common::interleave::{self, Runner, Settings};

/// The subject the interleaved ratios divide by. Until `homeslab::SlabAlloc`
/// is a subject, mimalloc; then switch to "homeslab".
const REFERENCE: &str = "homeslab";

// ---------------------------------------------------------------- criterion

/// Adds one benchmark per subject to a group (`param`: the benchmark id's
/// parameter, if the group has one).
struct PerSubject<'g, 'c, W> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    workload: &'g W,
    param: Option<usize>,
}

impl<W: ApiWorkload> AllocVisitor for PerSubject<'_, '_, W> {
    fn visit<A: AllocSubject>(&mut self, name: &'static str, a: A) {
        let w = self.workload;
        let id = match self.param {
            Some(p) => BenchmarkId::new(name, p),
            None => BenchmarkId::from_parameter(name),
        };
        self.group
            .bench_function(id, |b| b.iter_custom(|iters| w.run(&a, iters)));
    }
}

/// Every subject on `workload` (in a group of its own, or the shared one).
fn add<W: ApiWorkload>(g: &mut BenchmarkGroup<'_, WallTime>, w: &W, param: Option<usize>) {
    g.throughput(Throughput::Elements(w.elements()));
    each_allocator(&mut PerSubject {
        group: g,
        workload: w,
        param,
    });
}

fn hashbrown_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("hashbrown_churn");
    add(&mut g, &HashbrownChurn, None);
    g.finish();
}

fn vec_push(c: &mut Criterion) {
    let mut g = c.benchmark_group("vec_push");
    for len in VEC_PUSH_LENS {
        add(&mut g, &VecPush { len }, Some(len));
    }
    g.finish();
}

fn larson_mixed(c: &mut Criterion) {
    let mut g = c.benchmark_group("larson_mixed_t2");
    add(&mut g, &LarsonMixed { threads: 2 }, None);
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(1000))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = hashbrown_churn, vec_push, larson_mixed
}

// -------------------------------------------------------------- interleaved

const USAGE: &str = "\
usage: collections --interleaved [--rounds N] [--sample-ms M] [--groups g1,g2,...]
                   [--subjects s1,s2,...] [--once ITERS] [FILTER]

  --rounds N      samples per subject (default 20)
  --sample-ms M   target length of one sample (default 40)
  --groups list   of: hashbrown_churn vec_push/1 vec_push/16 vec_push/256
                  vec_push/4096 vec_push/65536 larson_mixed_t2; `vec_push`
                  stands for all five (default: all)
  --subjects list only these subjects (names as printed; default: all)
  --once ITERS    run each subject once, ITERS iterations, and print
                  `group subject iterations elements nanoseconds`
  FILTER          only the groups whose name contains it

Without --interleaved: criterion (its own options).";

/// The interleaved groups, in run order.
fn groups() -> Vec<String> {
    let mut g = vec!["hashbrown_churn".to_string()];
    g.extend(VEC_PUSH_LENS.iter().map(|n| format!("vec_push/{n}")));
    g.push("larson_mixed_t2".into());
    g
}

struct Opts {
    settings: Settings,
    groups: Vec<String>,
    subjects: Option<Vec<String>>,
    once: Option<u64>,
}

fn parse() -> Result<Opts, String> {
    let all = groups();
    let mut o = Opts {
        settings: Settings {
            rounds: 20,
            sample: Duration::from_millis(40),
        },
        groups: all.clone(),
        subjects: None,
        once: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--interleaved" | "--bench" => {}
            "--rounds" => {
                let n: usize = val()?.parse().map_err(|e| format!("--rounds: {e}"))?;
                if n == 0 {
                    return Err("--rounds must be at least 1".into());
                }
                o.settings.rounds = n;
            }
            "--sample-ms" => {
                let ms: u64 = val()?.parse().map_err(|e| format!("--sample-ms: {e}"))?;
                o.settings.sample = Duration::from_millis(ms.max(1));
            }
            "--groups" => {
                let mut chosen = Vec::new();
                for want in val()?.split(',') {
                    let hits: Vec<&String> = all
                        .iter()
                        .filter(|g| {
                            *g == want || g.strip_prefix(want).is_some_and(|r| r.starts_with('/'))
                        })
                        .collect();
                    if hits.is_empty() {
                        return Err(format!("unknown group {want}"));
                    }
                    chosen.extend(hits.into_iter().cloned());
                }
                o.groups = all.iter().filter(|g| chosen.contains(g)).cloned().collect();
            }
            "--subjects" => {
                let known = names();
                let list: Vec<String> = val()?.split(',').map(str::to_string).collect();
                if let Some(bad) = list.iter().find(|n| !known.contains(&n.as_str())) {
                    return Err(format!(
                        "unknown subject {bad} (known: {})",
                        known.join(", ")
                    ));
                }
                o.subjects = Some(list);
            }
            "--once" => {
                let n: u64 = val()?.parse().map_err(|e| format!("--once: {e}"))?;
                o.once = Some(n.max(1));
            }
            "-h" | "--help" => return Err(String::new()),
            f if !f.starts_with('-') => {
                let f = f.trim_matches(|c| c == '^' || c == '$' || c == '/');
                o.groups.retain(|g| g.contains(f));
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// Collects a runner per subject (all alive at once, as in
/// `benches/interleaved.rs`).
struct Runners<'w, W> {
    workload: &'w W,
    list: Vec<(&'static str, Runner<'w>)>,
}

impl<'w, W: ApiWorkload> AllocVisitor for Runners<'w, W> {
    fn visit<A: AllocSubject>(&mut self, name: &'static str, a: A) {
        let w = self.workload;
        self.list
            .push((name, Box::new(move |iters| w.run(&a, iters))));
    }
}

fn interleaved_group<W: ApiWorkload>(name: &str, w: &W, o: &Opts) {
    let mut r = Runners {
        workload: w,
        list: Vec::new(),
    };
    each_allocator(&mut r);
    let mut runners = r.list;
    if let Some(only) = &o.subjects {
        runners.retain(|(n, _)| only.iter().any(|s| s == n));
    }
    match o.once {
        Some(n) => interleave::once(name, w.elements(), &mut runners, n),
        None => interleave::table(name, w.elements(), &mut runners, o.settings, REFERENCE),
    }
}

fn interleaved_main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    for g in &o.groups {
        if g == "hashbrown_churn" {
            interleaved_group(g, &HashbrownChurn, &o);
        } else if g == "larson_mixed_t2" {
            interleaved_group(g, &LarsonMixed { threads: 2 }, &o);
        } else if let Some(len) = g.strip_prefix("vec_push/") {
            let len = len.parse().expect("vec_push/LEN from groups()");
            interleaved_group(g, &VecPush { len }, &o);
        } else {
            unreachable!("groups() lists no {g}");
        }
    }
}

fn main() {
    if std::env::args().skip(1).any(|a| a == "--interleaved") {
        interleaved_main();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
