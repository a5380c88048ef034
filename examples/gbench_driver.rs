//! Runs the global-allocator benchmarks side by side: each workload in
//! each allocator's binary (`gbench_homeslab`, `gbench_mimalloc`,
//! `gbench_jemalloc`, `gbench_system`, built next to this one), in
//! interleaved rounds (the order rotates every round), one process per
//! run; prints the median throughput and peak RSS (`VmHWM`) per workload
//! and allocator, each allocator's ratios to mimalloc, and for homeslab the
//! mmap-family calls per second (the binary's optional fifth field).
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/gbench_driver [rounds] [scale] [workload,...] [allocator,...]
//! ```
//!
//! The lists default to every workload and every allocator; mimalloc, the
//! ratios' reference, is always run.

use std::collections::BTreeMap;
use std::process::Command;

const ALLOCS: [&str; 4] = ["homeslab", "mimalloc", "jemalloc", "system"];
const WORKLOADS: [&str; 9] = [
    "larson",
    "prodcons",
    "churn",
    "vecgrow",
    "threads",
    "spawn40",
    "regex",
    "vecgrow8m",
    "serde",
];

const USAGE: &str = "usage: gbench_driver [rounds] [scale] [workload,...] [allocator,...]
  workloads:  larson prodcons churn vecgrow threads spawn40 regex vecgrow8m serde
  allocators: homeslab mimalloc jemalloc system (mimalloc is always run)";

/// (workload, alloc) → (ops/s samples, VmHWM KiB samples, mmap-family
/// calls/s samples: none for the binaries that do not print them).
type Samples = BTreeMap<(&'static str, &'static str), (Vec<f64>, Vec<f64>, Vec<f64>)>;

/// How a workload's throughput is shown: its ops per second divided by the
/// divisor, in the unit.
fn unit(workload: &str) -> (f64, &'static str) {
    match workload {
        "spawn40" => (1e3, "k threads/s"),
        "regex" => (1e3, "k ops/s"),
        "serde" => (1e3, "k records/s"),
        "vecgrow8m" => (1024.0 * 1024.0, "GiB/s"),
        _ => (1e6, "Mops/s"),
    }
}

/// The entries of `all` named in the comma-separated `list` (all if none).
fn pick(list: Option<String>, all: &[&'static str]) -> Vec<&'static str> {
    let Some(list) = list else {
        return all.to_vec();
    };
    let chosen: Vec<&str> = list.split(',').collect();
    if let Some(bad) = chosen.iter().find(|c| !all.contains(c)) {
        eprintln!("unknown name {bad}\n{USAGE}");
        std::process::exit(2);
    }
    all.iter().copied().filter(|a| chosen.contains(a)).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    // 0 for an argument that is not a number: the usage.
    let rounds: usize = args.next().map_or(5, |s| s.parse().unwrap_or(0));
    let scale: String = args.next().unwrap_or_else(|| "1".into());
    if rounds == 0 || scale.parse::<u64>().is_err() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let workloads = pick(args.next(), &WORKLOADS);
    let mut allocs = pick(args.next(), &ALLOCS);
    if !allocs.contains(&"mimalloc") {
        allocs.push("mimalloc");
    }
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut got: Samples = BTreeMap::new();
    for round in 0..rounds {
        for &w in &workloads {
            for i in 0..allocs.len() {
                let a = allocs[(i + round) % allocs.len()];
                let bin = dir.join(format!("gbench_{a}"));
                let out = Command::new(&bin)
                    .args([w, &scale])
                    .output()
                    .unwrap_or_else(|e| {
                        panic!(
                            "{}: {e} (build with `cargo build --release --examples`)",
                            bin.display()
                        )
                    });
                assert!(out.status.success(), "{a} {w}: {out:?}");
                let line = String::from_utf8_lossy(&out.stdout);
                let f: Vec<&str> = line.split_whitespace().collect();
                let ops: f64 = f[1].parse().unwrap();
                let secs: f64 = f[2].parse().unwrap();
                let hwm: f64 = f[3].parse().unwrap();
                let calls: Option<f64> = f.get(4).map(|c| c.parse().unwrap());
                let e = got.entry((w, a)).or_default();
                e.0.push(ops / secs);
                e.1.push(hwm);
                e.2.extend(calls.map(|c| c / secs));
                eprintln!(
                    "round {round} {w:9} {a:9} {:>12.0} ops/s {:>8.0} KiB{}",
                    ops / secs,
                    hwm,
                    calls.map_or(String::new(), |c| format!(" {c:>6.0} mmap-family calls"))
                );
            }
        }
    }
    println!("medians of {rounds} rounds, scale {scale}\n");
    println!(
        "| workload | allocator | throughput | peak RSS MiB | vs mimalloc: speed | vs mimalloc: RSS | mmap-family calls/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for &w in &workloads {
        let (div, unit) = unit(w);
        let (mut mo, mut mr, _) = got[&(w, "mimalloc")].clone();
        let (m_ops, m_rss) = (median(&mut mo), median(&mut mr));
        for &a in &allocs {
            let (mut o, mut r, mut c) = got[&(w, a)].clone();
            let (ops, rss) = (median(&mut o), median(&mut r));
            let calls = if c.is_empty() {
                "—".to_string()
            } else {
                format!("{:.0}", median(&mut c))
            };
            println!(
                "| {w} | {a} | {:.2} {unit} | {:.1} | {:.2}× | {:.2}× | {calls} |",
                ops / div,
                rss / 1024.0,
                ops / m_ops,
                rss / m_rss
            );
        }
    }
}
