//! Interleaved side-by-side runs, for machines whose speed drifts.
//!
//! ```text
//! cargo bench --bench interleaved
//! cargo bench --bench interleaved -- --rounds 40 --sample-ms 50 --groups local_t1,xthread_1p1c
//! ```
//!
//! criterion measures one subject after another, so on a shared host whose
//! speed changes from minute to minute (a busy neighbour on the same core,
//! vCPUs moved) two subjects of one group can be measured at different
//! speeds. Here every subject of a group takes one short sample per round,
//! in a new random order each round, for many rounds: a change of speed
//! hits all of them alike. Printed per group: each subject's median
//! throughput over the rounds, its interquartile range, and the median over
//! rounds of homeslab's throughput ÷ the subject's in the same round.
//!
//! `local_pools_k` (`benches/alloc.rs`'s `local_pools_k1` … `_k8`) is one
//! group here: every subject at every k, all interleaved, so that it can
//! also print each subject's throughput at k ÷ its own at k = 1 (median over
//! rounds, as above). The target: homeslab's within 10% of 1 at every k.
//!
//! `larson_churn_t2` also times its chains of threads with no replacements
//! (the same spawns, hand-overs and exits) and prints what share of each
//! subject's round that is.
//!
//! `--once N` runs each subject once for exactly `N` iterations instead
//! (no calibration, no rounds) and prints the time: `benches/instructions.py`
//! runs that under callgrind to count instructions per alloc+free pair.
//!
//! Same workloads, subjects and timing harness as `benches/alloc.rs`.
//!
//! ## A program's shape (issue #23)
//!
//! The groups above give every worker a plain reference to the subject,
//! free a `local` batch in allocation order and never read a block. A
//! program is more likely to share its `Pool` through an `Arc` (each worker
//! holding a clone), to read a block before it drops it, and to free a
//! batch last-allocated first. `benches/common/shapes.rs` has those three
//! as switches of a `Shape`:
//!
//! - `user_local_t1`, `user_local_t2`, `user_xthread_1p1c`,
//!   `user_larson_t1`, `user_larson_t2`, `user_larson_t4`: the groups of
//!   the same names in `--shape`'s shape, by default `user` (all three on;
//!   `larson` frees at random, so `reverse` does not apply to it);
//!   `--shape bench` turns them off, `--shape read+reverse` (any of `arc`,
//!   `read`, `reverse` joined by `+`) picks some;
//! - `shapes_local_t1`, `shapes_larson_t1`: every subject in every shape
//!   (8 for `local`, 4 for `larson`), all interleaved, then a table of each
//!   factor alone: homeslab ÷ subject without and with it, from the bench
//!   shape and into the user shape, and each one's own with ÷ without.
//!
//! A user builds with LTO; `[profile.release-lto]` in Cargo.toml is such a
//! build (thin LTO, one codegen unit, debug info). Commands:
//!
//! ```text
//! cargo bench --bench interleaved -- --groups user_local_t1,user_local_t2,user_xthread_1p1c,user_larson_t1,user_larson_t2,user_larson_t4
//! cargo bench --profile release-lto --bench interleaved -- --groups user_local_t1 --rounds 15
//! cargo bench --profile release-lto --bench interleaved -- \
//!     --groups shapes_local_t1,shapes_larson_t1 --subjects homeslab,mimalloc --rounds 15
//! python3 benches/instructions.py --profile release-lto --groups user_local_t1,user_larson_t1 \
//!     --subjects homeslab,mimalloc,jemalloc
//! ```
//!
//! The profile's binary is `release-lto/deps/interleaved-*` in the target
//! directory; to A/B the build itself, run the same group from both
//! binaries in turn and compare their homeslab ÷ mimalloc columns (a ratio
//! within each run).
//!
//! What moves the ratio on `local_t1` (larson's random frees are not
//! touched by any factor): the free order most. homeslab's free writes a
//! slot word outside the block; mimalloc's writes its list link into the
//! block, so freeing in allocation order (the oldest block, already out
//! of L1, first) costs it cache misses, and re-extending its page's free
//! list every round, that freeing last-allocated first does not. The
//! `Arc` costs homeslab a few instructions in the loop, mimalloc nothing
//! (it has no handle to reach). Reading the block costs both the same.

#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::churn::LarsonChurn;
use common::interleave::{median, quartiles, rounds, sig3, Runner, Settings};
use common::shapes::{run_shaped, Shape, Shaped, ShapedLarson, ShapedLocal, ShapedXThread};
use common::subjects::{
    each_family, each_owned, Family, FamilySink, Floor, FloorFamily, Obj, Sink, Subject, NAMES,
};
use common::workloads::{
    Kinds, Kinds1, Kinds2, Kinds3, Kinds8, Larson, Local, LocalPools, Workload, XThread,
};

const USAGE: &str = "\
usage: interleaved [--rounds N] [--sample-ms M] [--groups g1,g2,...]
                   [--subjects s1,s2,...] [--shape S] [--once ITERS] [FILTER]

  --rounds N      samples per subject (default 20)
  --sample-ms M   target length of one sample (default 40)
  --groups list   of: local_t1 local_t2 local_t1_16B local_t1_256B
                  local_t1_1024B xthread_1p1c larson_t1 larson_t2
                  larson_t4 larson_churn_t2 local_pools_k
                  user_local_t1 user_local_t2 user_xthread_1p1c
                  user_larson_t1 user_larson_t2 user_larson_t4
                  shapes_local_t1 shapes_larson_t1
                  (default: all); local_pools_k1, _k2, _k3, _k8 run
                  local_pools_k at that k only
  --subjects list only these subjects (names as printed; default: all)
  --shape S       the shape of the user_* groups: user (default: Arc
                  clone per worker, read before free, reverse frees),
                  bench (none of those), or factors joined by +
                  (arc, read, reverse), e.g. read+reverse
  --once ITERS    run each subject once, ITERS iterations, and print
                  `group subject iterations elements nanoseconds`
                  (local_pools_k prints its groups as local_pools_k1 …,
                  shapes_* as shapes_local_t1/<shape> …)
  FILTER          only the groups whose name contains it";

const GROUPS: [&str; 19] = [
    "local_t1",
    "local_t2",
    "local_t1_16B",
    "local_t1_256B",
    "local_t1_1024B",
    "xthread_1p1c",
    "larson_t1",
    "larson_t2",
    "larson_t4",
    "larson_churn_t2",
    "local_pools_k",
    "user_local_t1",
    "user_local_t2",
    "user_xthread_1p1c",
    "user_larson_t1",
    "user_larson_t2",
    "user_larson_t4",
    "shapes_local_t1",
    "shapes_larson_t1",
];

struct Opts {
    rounds: usize,
    sample: Duration,
    groups: Vec<String>,
    subjects: Option<Vec<String>>,
    once: Option<u64>,
    /// `local_pools_k` at these k only (`--groups local_pools_k2`).
    pools_k: Option<Vec<usize>>,
    /// The shape of the `user_*` groups.
    shape: Shape,
}

impl Opts {
    fn settings(&self) -> Settings {
        Settings {
            rounds: self.rounds,
            sample: self.sample,
        }
    }
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        rounds: 20,
        sample: Duration::from_millis(40),
        groups: GROUPS.iter().map(|g| g.to_string()).collect(),
        subjects: None,
        once: None,
        pools_k: None,
        shape: Shape::USER,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => {
                o.rounds = val()?.parse().map_err(|e| format!("--rounds: {e}"))?;
                if o.rounds == 0 {
                    return Err("--rounds must be at least 1".into());
                }
            }
            "--sample-ms" => {
                let ms: u64 = val()?.parse().map_err(|e| format!("--sample-ms: {e}"))?;
                o.sample = Duration::from_millis(ms.max(1));
            }
            "--groups" => {
                o.groups = Vec::new();
                for g in val()?.split(',') {
                    let k = g.strip_prefix("local_pools_k").and_then(|k| k.parse().ok());
                    if let Some(k @ (1 | 2 | 3 | 8)) = k {
                        o.pools_k.get_or_insert_with(Vec::new).push(k);
                        if !o.groups.iter().any(|g| g == "local_pools_k") {
                            o.groups.push("local_pools_k".into());
                        }
                    } else if GROUPS.contains(&g) {
                        o.groups.push(g.to_string());
                    } else {
                        return Err(format!("unknown group {g}"));
                    }
                }
            }
            "--subjects" => {
                let list: Vec<String> = val()?.split(',').map(str::to_string).collect();
                let known = |n: &str| NAMES.contains(&n) || n == "floor";
                if let Some(bad) = list.iter().find(|n| !known(n)) {
                    return Err(format!("unknown subject {bad}"));
                }
                o.subjects = Some(list);
            }
            "--shape" => o.shape = Shape::parse(&val()?)?,
            "--once" => {
                let n: u64 = val()?.parse().map_err(|e| format!("--once: {e}"))?;
                o.once = Some(n.max(1));
            }
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            // A criterion-style filter given to all bench binaries
            // (`cargo bench -- larson`): keep the groups whose name has it.
            f if !f.starts_with('-') => {
                let f = f.trim_matches(|c| c == '^' || c == '$' || c == '/');
                o.groups.retain(|g| g.contains(f));
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// Collects a runner per subject.
struct Runners<'w, W> {
    workload: &'w W,
    list: Vec<(&'static str, Runner<'w>)>,
}

impl<'w, T: Obj, W: Workload<T>> Sink<T> for Runners<'w, W> {
    fn take<S: Subject<T> + 'static>(&mut self, s: S) {
        let w = self.workload;
        let name = s.name();
        self.list
            .push((name, Box::new(move |iters| w.run(&s, iters))));
    }
}

/// Runs one group: every subject (and the floor if `floor`) on `w`,
/// interleaved, and prints its table.
fn group<T: Obj, W: Workload<T>>(name: &str, w: &W, floor: bool, o: &Opts) {
    group_medians::<T, W>(name, w, floor, o);
}

/// [`group`], returning each subject's median throughput (nothing with
/// `--once`).
fn group_medians<T: Obj, W: Workload<T>>(
    name: &str,
    w: &W,
    floor: bool,
    o: &Opts,
) -> Vec<(&'static str, f64)> {
    let mut r = Runners {
        workload: w,
        list: Vec::new(),
    };
    each_owned::<T, _>(&mut r);
    if floor {
        r.take(Floor::<T>::new());
    }
    report(name, w.elements(), r.list, o)
}

/// Runs the runners of one group (`elements` per iteration) interleaved
/// and prints its table, or with `--once` runs each once; returns each
/// subject's median throughput (nothing with `--once`).
fn report(
    name: &str,
    elements: u64,
    mut runners: Vec<(&'static str, Runner<'_>)>,
    o: &Opts,
) -> Vec<(&'static str, f64)> {
    if let Some(only) = &o.subjects {
        runners.retain(|(n, _)| only.iter().any(|s| s == n));
    }
    if let Some(n) = o.once {
        for (subject, run) in runners.iter_mut() {
            let t = run(n);
            println!("{name} {subject} {n} {elements} {}", t.as_nanos());
        }
        return Vec::new();
    }
    if runners.is_empty() {
        return Vec::new();
    }
    let mut runs: Vec<&mut Runner<'_>> = runners.iter_mut().map(|(_, r)| r).collect();
    let (tput, secs) = rounds(&mut runs, elements, o.settings());
    let k = runners.len();
    let base = runners.iter().position(|(n, _)| *n == "homeslab");
    println!("\n### `{name}` ({} rounds, {secs:.0} s)\n", o.rounds);
    println!(
        "| subject | median Melem/s | interquartile | homeslab ÷ subject (median of rounds) |"
    );
    println!("|---|---:|---:|---:|");
    for i in 0..k {
        let ratio = base.map(|b| ratio_of_rounds(&tput, b, i));
        let (q1, q3) = quartiles(&mut tput[i].clone());
        println!(
            "| {} | {} | {}–{} | {} |",
            runners[i].0,
            sig3(median(&mut tput[i].clone())),
            sig3(q1),
            sig3(q3),
            ratio.map_or("–".into(), |r| format!("{r:.2}×"))
        );
    }
    (0..k)
        .map(|i| (runners[i].0, median(&mut tput[i].clone())))
        .collect()
}

/// `larson_churn_t2`, then its chains of threads alone (no replacements):
/// the spawn, hand-over and exit cost per round, as a share of each
/// subject's round.
fn larson_churn(name: &str, o: &Opts) {
    let w = LarsonChurn::new(2);
    let medians = group_medians::<[u64; 8], _>(name, &w, false, o);
    if medians.is_empty() {
        return;
    }
    let spawn = w.spawn_only();
    // homeslab only holds the sets; no block is allocated or freed while timed.
    let s = common::subjects::Homeslab::<[u64; 8]>::new(false);
    let mut run: Runner<'_> = Box::new(|iters| Workload::<[u64; 8]>::run(&spawn, &s, iters));
    // One "element" per round: the throughput is in million rounds per second.
    let (tput, _) = rounds(&mut [&mut run], 1, o.settings());
    let us = 1.0 / median(&mut tput[0].clone());
    let elements = Workload::<[u64; 8]>::elements(&w) as f64;
    let shares: Vec<String> = medians
        .iter()
        .map(|&(n, m)| format!("{n} {:.0}%", 100.0 * us / (elements / m)))
        .collect();
    println!(
        "\nspawn + hand-over + exit alone (no replacements, {} rounds): {us:.1} µs per round \
         of {} threads; share of a round: {}",
        o.rounds,
        w.threads,
        shares.join(", ")
    );
}

/// Median over rounds of `tput[a]` ÷ `tput[b]` in the same round.
fn ratio_of_rounds(tput: &[Vec<f64>], a: usize, b: usize) -> f64 {
    let mut r: Vec<f64> = tput[a].iter().zip(&tput[b]).map(|(x, y)| x / y).collect();
    median(&mut r)
}

/// Collects a runner per subject, each subject in an `Arc`, for a
/// workload in a [`Shape`].
struct ShapedRunners<'w, W> {
    workload: &'w W,
    list: Vec<(&'static str, Runner<'w>)>,
}

impl<'w, T: Obj, W: Shaped<T>> Sink<T> for ShapedRunners<'w, W> {
    fn take<S: Subject<T> + 'static>(&mut self, s: S) {
        let w = self.workload;
        let name = s.name();
        let s = Arc::new(s);
        self.list
            .push((name, Box::new(move |iters| run_shaped(w, &s, iters))));
    }
}

/// A `user_*` group: every subject (and the floor if `floor`) on `w`, in
/// `--shape`'s shape, interleaved.
fn user_group<T: Obj, W: Shaped<T>>(name: &str, w: &W, floor: bool, o: &Opts) {
    let mut r = ShapedRunners {
        workload: w,
        list: Vec::new(),
    };
    each_owned::<T, _>(&mut r);
    if floor {
        r.take(Floor::<T>::new());
    }
    if o.once.is_none() && !r.list.is_empty() {
        println!("\n(shape: {})", w.shape().name());
    }
    report(name, w.elements(), r.list, o);
}

/// A `shapes_*` group: every subject on the workload `make` gives in every
/// [`Shape`] (without `reverse` unless `ordered`), all interleaved; prints
/// the table, then for each factor and each subject homeslab's ratio to it
/// without and with that factor, from the bench shape and into the user
/// shape.
fn shapes<T: Obj, W: Shaped<T>>(name: &str, make: impl Fn(Shape) -> W, ordered: bool, o: &Opts) {
    let ws: Vec<W> = Shape::all(ordered).into_iter().map(make).collect();
    let mut runners: Vec<(Shape, &'static str, Runner<'_>)> = Vec::new();
    for w in &ws {
        let mut r = ShapedRunners {
            workload: w,
            list: Vec::new(),
        };
        each_owned::<T, _>(&mut r);
        let shape = Shaped::<T>::shape(w);
        runners.extend(r.list.into_iter().map(|(n, run)| (shape, n, run)));
    }
    if let Some(only) = &o.subjects {
        runners.retain(|(_, n, _)| only.iter().any(|s| s == n));
    }
    let elements = Shaped::<T>::elements(&ws[0]);
    if let Some(n) = o.once {
        for (shape, subject, run) in runners.iter_mut() {
            let t = run(n);
            let shape = shape.name();
            println!("{name}/{shape} {subject} {n} {elements} {}", t.as_nanos());
        }
        return;
    }
    if runners.is_empty() {
        return;
    }
    let mut runs: Vec<&mut Runner<'_>> = runners.iter_mut().map(|(_, _, r)| r).collect();
    let (tput, secs) = rounds(&mut runs, elements, o.settings());
    let at = |shape: Shape, s: &str| runners.iter().position(|(h, n, _)| *h == shape && *n == s);
    let fmt = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.2}×"));
    println!("\n### `{name}` ({} rounds, {secs:.0} s)\n", o.rounds);
    println!(
        "| shape | subject | median Melem/s | interquartile \
         | homeslab ÷ subject, same shape (median of rounds) |"
    );
    println!("|---|---|---:|---:|---:|");
    for (i, &(shape, subject, _)) in runners.iter().enumerate() {
        let (q1, q3) = quartiles(&mut tput[i].clone());
        println!(
            "| {} | {subject} | {} | {}–{} | {} |",
            shape.name(),
            sig3(median(&mut tput[i].clone())),
            sig3(q1),
            sig3(q3),
            fmt(at(shape, "homeslab").map(|b| ratio_of_rounds(&tput, b, i)))
        );
    }
    let peers: Vec<&str> = runners
        .iter()
        .filter(|(h, n, _)| *h == Shape::BENCH && *n != "homeslab")
        .map(|(_, n, _)| *n)
        .collect();
    if at(Shape::BENCH, "homeslab").is_none() || peers.is_empty() {
        return;
    }
    println!(
        "\nEach factor alone: homeslab ÷ subject without and with it, and each \
         one's own with ÷ without (medians of rounds).\n"
    );
    println!(
        "| factor | base shape | subject | homeslab ÷ subject without | with \
         | homeslab with ÷ without | subject with ÷ without |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    let factors = if ordered { 3 } else { 2 };
    for f in &Shape::FACTORS[..factors] {
        // From the bench shape (only this factor on) and into the user
        // shape (every other factor on).
        let user = Shape {
            reverse: ordered,
            ..Shape::USER
        };
        for (base, off) in [("bench", Shape::BENCH), ("user", user.with(f, false))] {
            let on = off.with(f, true);
            for p in &peers {
                let idx = |shape: Shape, s: &str| at(shape, s).expect("every shape is run");
                let (h0, h1) = (idx(off, "homeslab"), idx(on, "homeslab"));
                let (p0, p1) = (idx(off, p), idx(on, p));
                println!(
                    "| {f} | {base} | {p} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
                    ratio_of_rounds(&tput, h0, p0),
                    ratio_of_rounds(&tput, h1, p1),
                    ratio_of_rounds(&tput, h1, h0),
                    ratio_of_rounds(&tput, p1, p0),
                );
            }
        }
    }
}

/// Collects a `local_pools_k` runner per subject family and k.
struct PoolRunners<'o> {
    o: &'o Opts,
    /// (subject, k, runner), subject by subject, k ascending.
    list: Vec<(&'static str, usize, Runner<'static>)>,
}

impl PoolRunners<'_> {
    fn add<L: Kinds, F: Family>(&mut self, f: &F, name: &'static str) {
        let w = LocalPools::<L>::new();
        let pools = L::build(f);
        let run = Box::new(move |iters| w.run::<F>(&pools, iters));
        self.list.push((name, L::K, run));
    }
}

impl FamilySink for PoolRunners<'_> {
    fn take<F: Family>(&mut self, f: F) {
        let name = f.name();
        if let Some(only) = &self.o.subjects {
            if !only.iter().any(|s| s == name) {
                return;
            }
        }
        self.add::<Kinds1, F>(&f, name);
        self.add::<Kinds2, F>(&f, name);
        self.add::<Kinds3, F>(&f, name);
        self.add::<Kinds8, F>(&f, name);
    }
}

/// `local_pools_k`: every subject (and the floor) at k = 1, 2, 3 and 8,
/// interleaved; prints the table with each row's ratio to k = 1.
fn local_pools(o: &Opts) {
    let mut r = PoolRunners {
        o,
        list: Vec::new(),
    };
    each_family(&mut r);
    r.take(FloorFamily);
    let mut runners = r.list;
    if let Some(ks) = &o.pools_k {
        runners.retain(|(_, k, _)| ks.contains(k));
    }
    let elements = LocalPools::<Kinds1>::new().elements();
    if let Some(n) = o.once {
        for (subject, k, run) in runners.iter_mut() {
            let t = run(n);
            println!("local_pools_k{k} {subject} {n} {elements} {}", t.as_nanos());
        }
        return;
    }
    if runners.is_empty() {
        return;
    }
    let mut runs: Vec<&mut Runner<'_>> = runners.iter_mut().map(|(_, _, r)| r).collect();
    let (tput, secs) = rounds(&mut runs, elements, o.settings());
    let at = |s: &str, k: usize| runners.iter().position(|(n, j, _)| *n == s && *j == k);
    println!("\n### `local_pools_k` ({} rounds, {secs:.0} s)\n", o.rounds);
    println!(
        "| subject | k | median Melem/s | interquartile \
         | homeslab ÷ subject, same k (median of rounds) \
         | k ÷ k = 1, same subject (median of rounds) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for (i, &(subject, k, _)) in runners.iter().enumerate() {
        let vs_homeslab = at("homeslab", k).map(|b| ratio_of_rounds(&tput, b, i));
        let vs_k1 = at(subject, 1).map(|b| ratio_of_rounds(&tput, i, b));
        if subject == "homeslab" && k != 1 {
            summary.extend(vs_k1.map(|r| format!("k={k} {r:.2}×")));
        }
        let (q1, q3) = quartiles(&mut tput[i].clone());
        let fmt = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.2}×"));
        println!(
            "| {subject} | {k} | {} | {}–{} | {} | {} |",
            sig3(median(&mut tput[i].clone())),
            sig3(q1),
            sig3(q3),
            fmt(vs_homeslab),
            fmt(vs_k1)
        );
    }
    if !summary.is_empty() {
        println!(
            "\nhomeslab, k ÷ k = 1: {} (target: every k within 10% of k = 1)",
            summary.join(", ")
        );
    }
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let shape = o.shape;
    for g in &o.groups {
        match g.as_str() {
            "local_t1" => group::<[u64; 8], _>(g, &Local { threads: 1 }, true, &o),
            "local_t2" => group::<[u64; 8], _>(g, &Local { threads: 2 }, false, &o),
            "local_t1_16B" => group::<[u64; 2], _>(g, &Local { threads: 1 }, true, &o),
            "local_t1_256B" => group::<[u64; 32], _>(g, &Local { threads: 1 }, true, &o),
            "local_t1_1024B" => group::<[u64; 128], _>(g, &Local { threads: 1 }, true, &o),
            "xthread_1p1c" => group::<[u64; 8], _>(g, &XThread { pairs: 1 }, false, &o),
            "larson_t1" => group::<[u64; 8], _>(g, &Larson { threads: 1 }, false, &o),
            "larson_t2" => group::<[u64; 8], _>(g, &Larson { threads: 2 }, false, &o),
            "larson_t4" => group::<[u64; 8], _>(g, &Larson { threads: 4 }, false, &o),
            "larson_churn_t2" => larson_churn(g, &o),
            "local_pools_k" => local_pools(&o),
            "user_local_t1" => {
                let w = ShapedLocal { threads: 1, shape };
                user_group::<[u64; 8], _>(g, &w, true, &o);
            }
            "user_local_t2" => {
                let w = ShapedLocal { threads: 2, shape };
                user_group::<[u64; 8], _>(g, &w, false, &o);
            }
            "user_xthread_1p1c" => {
                let w = ShapedXThread { pairs: 1, shape };
                user_group::<[u64; 8], _>(g, &w, false, &o);
            }
            "user_larson_t1" => {
                let w = ShapedLarson { threads: 1, shape };
                user_group::<[u64; 8], _>(g, &w, false, &o);
            }
            "user_larson_t2" => {
                let w = ShapedLarson { threads: 2, shape };
                user_group::<[u64; 8], _>(g, &w, false, &o);
            }
            "user_larson_t4" => {
                let w = ShapedLarson { threads: 4, shape };
                user_group::<[u64; 8], _>(g, &w, false, &o);
            }
            "shapes_local_t1" => {
                let w = |shape| ShapedLocal { threads: 1, shape };
                shapes::<[u64; 8], _>(g, w, true, &o);
            }
            "shapes_larson_t1" => {
                let w = |shape| ShapedLarson { threads: 1, shape };
                shapes::<[u64; 8], _>(g, w, false, &o);
            }
            _ => unreachable!("checked in parse"),
        }
    }
}
