//! Interleaved side-by-side runs of one group (`benches/interleaved.rs`'s
//! method, for any list of runners): every subject takes one short sample
//! per round, in a new random order each round, for many rounds, so a change
//! of machine speed hits all of them alike. Printed: each subject's median
//! throughput over the rounds, its interquartile range, and the median over
//! rounds of the reference subject's throughput ÷ the subject's in the same
//! round.

use std::time::{Duration, Instant};

use super::harness::Rng;

/// One subject bound to one workload: runs `iters` iterations, returns the
/// measured time.
pub type Runner<'w> = Box<dyn FnMut(u64) -> Duration + 'w>;

/// How long and how often.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Samples per subject.
    pub rounds: usize,
    /// Target length of one sample.
    pub sample: Duration,
}

/// Calibrates every runner (iterations per sample, from one warm-up sample
/// each), then runs `s.rounds` rounds of one sample each in a new random
/// order per round. Returns each runner's throughput per round (Melem/s,
/// `elements` per iteration) and the seconds the rounds took.
pub fn rounds(runners: &mut [&mut Runner<'_>], elements: u64, s: Settings) -> (Vec<Vec<f64>>, f64) {
    let mut iters = Vec::with_capacity(runners.len());
    for run in runners.iter_mut() {
        let mut n = 1u64;
        loop {
            let t = run(n);
            if t >= s.sample / 4 || n >= 1 << 30 {
                let per = t.as_secs_f64() / n as f64;
                iters.push(((s.sample.as_secs_f64() / per.max(1e-12)) as u64).max(1));
                break;
            }
            n *= 4;
        }
    }
    let elems = elements as f64;
    let k = runners.len();
    let mut tput = vec![Vec::with_capacity(s.rounds); k];
    let mut rng = Rng::new(0x1eaf_cafe ^ k as u64);
    let mut order: Vec<usize> = (0..k).collect();
    let started = Instant::now();
    for _ in 0..s.rounds {
        for i in (1..k).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for &i in &order {
            let t = runners[i](iters[i]);
            tput[i].push(elems * iters[i] as f64 / t.as_secs_f64() / 1e6);
        }
    }
    (tput, started.elapsed().as_secs_f64())
}

/// The median (sorts `v`).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The first and third quartiles (sorts `v`).
pub fn quartiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

/// Three significant digits, as `plot.py` prints them.
pub fn sig3(v: f64) -> String {
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3
    };
    format!("{v:.decimals$}")
}

/// Runs each runner once for exactly `iters` iterations and prints
/// `group subject iterations elements nanoseconds` per runner.
pub fn once(name: &str, elements: u64, runners: &mut [(&'static str, Runner<'_>)], iters: u64) {
    for (subject, run) in runners.iter_mut() {
        let t = run(iters);
        println!("{name} {subject} {iters} {elements} {}", t.as_nanos());
    }
}

/// Runs one group interleaved and prints its table; `elements` is what one
/// iteration counts, `reference` the subject the ratio column divides by
/// ("–" there if it is not among the runners).
pub fn table(
    name: &str,
    elements: u64,
    runners: &mut [(&'static str, Runner<'_>)],
    s: Settings,
    reference: &str,
) {
    if runners.is_empty() {
        return;
    }
    let mut runs: Vec<&mut Runner<'_>> = runners.iter_mut().map(|(_, r)| r).collect();
    let (tput, secs) = rounds(&mut runs, elements, s);
    let k = runners.len();
    let base = runners.iter().position(|(n, _)| *n == reference);
    println!("\n### `{name}` ({} rounds, {secs:.0} s)\n", s.rounds);
    println!(
        "| subject | median Melem/s | interquartile | {reference} ÷ subject (median of rounds) |"
    );
    println!("|---|---:|---:|---:|");
    for i in 0..k {
        let ratio = base.map(|b| {
            let mut r: Vec<f64> = (0..s.rounds).map(|j| tput[b][j] / tput[i][j]).collect();
            median(&mut r)
        });
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
}
