//! Memory report: mapped and resident bytes against live bytes under the
//! larson workload, for homeslab and its peers, and what `trim()` gives back.
//!
//! ```text
//! cargo run --release --example memory_report
//! cargo run --release --example memory_report -- --live 1000,100000 --seconds 2
//! cargo run --release --example memory_report -- --threads 1,2,4 --live 100000
//! ```
//!
//! Each subject runs in a child process of its own (this binary re-executed
//! with `--child`), so every resident-set figure starts from a clean process:
//! RSS is read from `/proc/self/statm` before the run, sampled during it, and
//! read again after every block is freed (and, for homeslab, after `trim()`).
//! homeslab also reports its own counters: `mapped_bytes` (slab regions in use
//! or cached warm), `peak_mapped_bytes`, `reserved_bytes`, `released_bytes`.
//!
//! The larson run: 2 threads (or each count of `--threads`), each keeping
//! `live` blocks of 64 bytes and replacing random ones (`live` replacements
//! per round), passing its whole live set to the next thread of the ring
//! after every round (at 1 thread the set stays put). "Steady" figures are
//! averaged over the samples of the second half of the run. A last table
//! sums up homeslab's steady mapped ÷ live bytes for every thread count and
//! size run, against the target of 1.25×.

#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::harness::rss_bytes;
use common::subjects::{by_name, Subject, Visitor, NAMES};
use common::workloads::{larson_run, LarsonParams};

type Block = [u64; 8];

const USAGE: &str = "\
usage: memory_report [--threads N[,N...]] [--live N[,N...]] [--seconds S]
                     [--subjects a,b,...] [--retained N]

  --threads N,...   larson threads (default 2)
  --live N,...      live blocks per thread (default 1000,100000)
  --seconds S       larson run time per subject and size (default 1.5)
  --subjects list   subjects to run (default: all of them)
  --retained N      homeslab: Pool::builder().retained_empty_slabs(N) (default: the pool's default)";

#[derive(Clone, Copy, Default)]
struct Sample {
    rss: u64,
    mapped: u64,
    live_blocks: u64,
}

/// What a child measures; printed as `key=value` pairs on one line.
#[derive(Default)]
struct Measured {
    rounds: u64,
    secs: f64,
    live_bytes: u64,
    rss_base: u64,
    steady_rss: u64,
    peak_rss: u64,
    steady_mapped: u64,
    steady_live_blocks: u64,
    peak_mapped: u64,
    reserved: u64,
    rss_after_free: u64,
    mapped_after_free: u64,
    trim_returned: i64,
    rss_after_trim: u64,
    mapped_after_trim: u64,
    released_total: u64,
    harness: u64,
    homeslab: bool,
}

struct Child {
    threads: usize,
    live: usize,
    seconds: f64,
    out: Option<Measured>,
}

impl Visitor<Block> for Child {
    fn visit<S: Subject<Block>>(&mut self, s: &S) {
        let rss_base = rss_bytes();
        let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
        let start = Instant::now();
        let limit = Duration::from_secs_f64(self.seconds);
        let p = LarsonParams {
            threads: self.threads,
            live: self.live,
            replace: self.live,
            rounds: u64::MAX,
        };
        let (elapsed, rounds) = larson_run::<Block, S>(s, p, &|_r| {
            let st = s.stats();
            let sample = Sample {
                rss: rss_bytes(),
                mapped: st.map_or(0, |x| x.mapped_bytes),
                live_blocks: st.map_or(0, |x| x.live_blocks),
            };
            samples.lock().unwrap().push(sample);
            start.elapsed() < limit
        });
        let samples = samples.into_inner().unwrap();
        let steady = &samples[samples.len() / 2..];
        let avg = |f: fn(&Sample) -> u64| -> u64 {
            if steady.is_empty() {
                0
            } else {
                steady.iter().map(f).sum::<u64>() / steady.len() as u64
            }
        };
        let mut m = Measured {
            rounds,
            secs: elapsed.as_secs_f64(),
            live_bytes: (self.threads * self.live * core::mem::size_of::<Block>()) as u64,
            rss_base,
            steady_rss: avg(|x| x.rss).saturating_sub(rss_base),
            peak_rss: samples
                .iter()
                .map(|x| x.rss)
                .max()
                .unwrap_or(0)
                .saturating_sub(rss_base),
            steady_mapped: avg(|x| x.mapped),
            steady_live_blocks: avg(|x| x.live_blocks),
            // The workload's own live-set vectors (handles, or for
            // lockfree-object-pool the objects themselves), counted in RSS.
            harness: (self.threads * self.live * core::mem::size_of::<Option<S::Handle<'_>>>())
                as u64,
            ..Measured::default()
        };
        // Every block is freed by now (larson_run frees its sets), but the
        // worker threads may still be running their thread-local destructors
        // (`thread::scope` returns before those finish): homeslab hands an
        // exiting thread's heap back in such a destructor, so wait for it.
        let t = Instant::now();
        while s.stats().is_some_and(|st| st.thread_heaps > 0)
            && t.elapsed() < Duration::from_secs(2)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        m.rss_after_free = rss_bytes().saturating_sub(rss_base);
        if let Some(st) = s.stats() {
            m.homeslab = true;
            m.peak_mapped = st.peak_mapped_bytes;
            m.reserved = st.reserved_bytes;
            m.mapped_after_free = st.mapped_bytes;
            assert_eq!(
                st.live_blocks, 0,
                "homeslab: blocks still live after larson: {st:?}"
            );
        }
        m.trim_returned = s.trim().map_or(-1, |b| b as i64);
        m.rss_after_trim = rss_bytes().saturating_sub(rss_base);
        if let Some(st) = s.stats() {
            m.mapped_after_trim = st.mapped_bytes;
            m.released_total = st.released_bytes;
        }
        self.out = Some(m);
    }
}

fn child(
    subject: &str,
    threads: usize,
    live: usize,
    seconds: f64,
    retained: Option<usize>,
) -> ExitCode {
    let mut c = Child {
        threads,
        live,
        seconds,
        out: None,
    };
    match (subject, retained) {
        ("homeslab", Some(n)) => {
            let pool = homeslab::Pool::builder()
                .retained_empty_slabs(n)
                .build()
                .expect("pool config");
            c.visit(&common::subjects::Homeslab::from_pool(pool, false));
        }
        _ => {
            if !by_name::<Block, _>(subject, &mut c) {
                eprintln!("memory_report: unknown subject {subject:?}");
                return ExitCode::from(2);
            }
        }
    }
    let m = c.out.expect("measured");
    println!(
        "rounds={} secs={:.3} live_bytes={} rss_base={} steady_rss={} peak_rss={} \
         steady_mapped={} steady_live_blocks={} peak_mapped={} reserved={} rss_after_free={} \
         mapped_after_free={} trim_returned={} rss_after_trim={} mapped_after_trim={} \
         released_total={} harness={} homeslab={}",
        m.rounds,
        m.secs,
        m.live_bytes,
        m.rss_base,
        m.steady_rss,
        m.peak_rss,
        m.steady_mapped,
        m.steady_live_blocks,
        m.peak_mapped,
        m.reserved,
        m.rss_after_free,
        m.mapped_after_free,
        m.trim_returned,
        m.rss_after_trim,
        m.mapped_after_trim,
        m.released_total,
        m.harness,
        m.homeslab
    );
    ExitCode::SUCCESS
}

fn parse_kv(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn kib(b: f64) -> String {
    if b < 0.0 {
        "–".to_string()
    } else if b >= 10.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

struct Args {
    child: Option<String>,
    threads: Vec<usize>,
    lives: Vec<usize>,
    seconds: f64,
    subjects: Vec<String>,
    retained: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut a = Args {
        child: None,
        threads: vec![2],
        lives: vec![1000, 100_000],
        seconds: 1.5,
        subjects: NAMES.iter().map(|s| s.to_string()).collect(),
        retained: None,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("child") => {
                a.child = Some(
                    p.value()
                        .map_err(|e| e.to_string())?
                        .string()
                        .map_err(|e| format!("{e:?}"))?,
                )
            }
            Long(flag @ ("live" | "threads")) => {
                let flag = flag.to_string();
                let v = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| format!("{e:?}"))?;
                let list = v
                    .split(',')
                    .map(|x| {
                        x.trim()
                            .parse::<usize>()
                            .map_err(|_| format!("--{flag}: bad number {x:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if list.contains(&0) {
                    return Err(format!("--{flag}: must be at least 1"));
                }
                if flag == "live" {
                    a.lives = list;
                } else {
                    a.threads = list;
                }
            }
            Long("seconds") => {
                let v: f64 = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
                if !(v > 0.0 && v <= 600.0) {
                    return Err("--seconds: must be in (0, 600]".into());
                }
                a.seconds = v;
            }
            Long("subjects") => {
                let v = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| format!("{e:?}"))?;
                a.subjects = v.split(',').map(|s| s.trim().to_string()).collect();
                for s in &a.subjects {
                    if !NAMES.contains(&s.as_str()) {
                        return Err(format!(
                            "--subjects: unknown subject {s:?} (known: {})",
                            NAMES.join(", ")
                        ));
                    }
                }
            }
            Long("retained") => {
                a.retained = Some(
                    p.value()
                        .map_err(|e| e.to_string())?
                        .parse()
                        .map_err(|e| format!("--retained: {e}"))?,
                );
            }
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("memory_report: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(subject) = &args.child {
        return child(
            subject,
            args.threads[0],
            args.lives[0],
            args.seconds,
            args.retained,
        );
    }
    let exe = std::env::current_exe().expect("current_exe");
    println!(
        "larson, {} B blocks, live set passed round the ring of threads every round; \
         RSS from /proc/self/statm, one child process per subject\n",
        core::mem::size_of::<Block>()
    );
    let mut failed = false;
    // (threads, live per thread, subject, steady mapped ÷ live, peak mapped ÷ live)
    let mut summary: Vec<(usize, usize, String, f64, f64)> = Vec::new();
    for (threads, live) in args
        .threads
        .iter()
        .flat_map(|&t| args.lives.iter().map(move |&l| (t, l)))
    {
        let live_bytes = (threads * live * core::mem::size_of::<Block>()) as f64;
        println!(
            "{threads} thread(s), live: {live} blocks per thread = {} live",
            kib(live_bytes)
        );
        println!(
            "| subject | rounds | live-set vectors | steady RSS Δ | ÷ live | peak RSS Δ | steady mapped | ÷ live | peak mapped | reserved | RSS Δ after free | mapped after free | trim() returned | mapped after trim | RSS Δ after trim |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for subject in &args.subjects {
            let mut cmd = Command::new(&exe);
            cmd.arg("--child")
                .arg(subject)
                .arg("--threads")
                .arg(threads.to_string())
                .arg("--live")
                .arg(live.to_string())
                .arg("--seconds")
                .arg(args.seconds.to_string());
            if let Some(n) = args.retained {
                cmd.arg("--retained").arg(n.to_string());
            }
            let out = match cmd.output() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("memory_report: cannot run child: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if !out.status.success() {
                failed = true;
                println!(
                    "| {subject} | failed: {} | {} |",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
                continue;
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let kv = parse_kv(text.lines().last().unwrap_or(""));
            let get = |k: &str| -> f64 {
                kv.iter()
                    .find(|(key, _)| key == k)
                    .and_then(|(_, v)| v.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            let hs = kv.iter().any(|(k, v)| k == "homeslab" && v == "true");
            let opt = |k: &str| if hs { kib(get(k)) } else { "–".to_string() };
            let ratio = |k: &str| format!("{:.2}×", get(k) / live_bytes);
            if hs {
                summary.push((
                    threads,
                    live,
                    subject.clone(),
                    get("steady_mapped") / live_bytes,
                    get("peak_mapped") / live_bytes,
                ));
            }
            println!(
                "| {subject} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                get("rounds"),
                kib(get("harness")),
                kib(get("steady_rss")),
                ratio("steady_rss"),
                kib(get("peak_rss")),
                opt("steady_mapped"),
                if hs { ratio("steady_mapped") } else { "–".into() },
                opt("peak_mapped"),
                opt("reserved"),
                kib(get("rss_after_free")),
                opt("mapped_after_free"),
                if hs { kib(get("trim_returned")) } else { "–".into() },
                opt("mapped_after_trim"),
                if hs { kib(get("rss_after_trim")) } else { "–".into() },
            );
        }
        println!();
    }
    println!(
        "RSS Δ is the process's resident set minus its value just before the run: it includes \
         thread stacks, channel buffers, the allocator's own metadata, and the workload's \
         live-set vectors (column \"live-set vectors\"; for lockfree-object-pool they hold the \
         objects themselves, since its SpinLockObjectPool moves objects into the guard). \
         mapped = homeslab Stats::mapped_bytes. Target: steady homeslab mapped ≤ 1.25 × live."
    );
    if !summary.is_empty() {
        println!(
            "\nhomeslab, steady mapped ÷ live bytes (live = threads × live per thread × 64 B; \
             target ≤ 1.25×):\n"
        );
        println!("| threads | live per thread | subject | steady mapped ÷ live | peak mapped ÷ live | target |");
        println!("|---:|---:|---|---:|---:|---|");
        for (t, l, s, steady, peak) in &summary {
            let met = if *steady <= 1.25 { "met" } else { "not met" };
            println!("| {t} | {l} | {s} | {steady:.2}× | {peak:.2}× | {met} |");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
