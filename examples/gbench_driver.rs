//! Runs the global-allocator benchmarks side by side: each workload in
//! each allocator's binary (`gbench_homeslab`, `gbench_mimalloc`,
//! `gbench_jemalloc`, `gbench_system`, built next to this one), in
//! interleaved rounds (the order rotates every round), one process per
//! run; prints the median throughput and peak RSS (`VmHWM`) per workload
//! and allocator, and homeslab's ratios to mimalloc.
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/gbench_driver [rounds] [scale]
//! ```

use std::collections::BTreeMap;
use std::process::Command;

const ALLOCS: [&str; 4] = ["homeslab", "mimalloc", "jemalloc", "system"];
const WORKLOADS: [&str; 4] = ["larson", "prodcons", "churn", "vecgrow"];

/// (workload, alloc) → (ops/s samples, VmHWM KiB samples).
type Samples = BTreeMap<(&'static str, &'static str), (Vec<f64>, Vec<f64>)>;

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
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let scale: String = args.next().unwrap_or_else(|| "1".into());
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut got: Samples = BTreeMap::new();
    for round in 0..rounds {
        for w in WORKLOADS {
            for i in 0..ALLOCS.len() {
                let a = ALLOCS[(i + round) % ALLOCS.len()];
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
                let e = got.entry((w, a)).or_default();
                e.0.push(ops / secs);
                e.1.push(hwm);
                eprintln!(
                    "round {round} {w:9} {a:9} {:>12.0} ops/s {:>8.0} KiB",
                    ops / secs,
                    hwm
                );
            }
        }
    }
    println!("medians of {rounds} rounds, scale {scale}\n");
    println!(
        "| workload | allocator | Mops/s | peak RSS MiB | vs mimalloc: speed | vs mimalloc: RSS |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for w in WORKLOADS {
        let (mut mo, mut mr) = got[&(w, "mimalloc")].clone();
        let (m_ops, m_rss) = (median(&mut mo), median(&mut mr));
        for a in ALLOCS {
            let (mut o, mut r) = got[&(w, a)].clone();
            let (ops, rss) = (median(&mut o), median(&mut r));
            println!(
                "| {w} | {a} | {:.2} | {:.1} | {:.2}× | {:.2}× |",
                ops / 1e6,
                rss / 1024.0,
                ops / m_ops,
                rss / m_rss
            );
        }
    }
}
