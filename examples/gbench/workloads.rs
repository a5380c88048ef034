// The global-allocator benchmark workloads, shared by the one-binary-per-
// allocator examples (`gbench_homeslab`, `gbench_mimalloc`,
// `gbench_jemalloc`, `gbench_system`); `gbench_driver` runs them side by
// side. Usage: `gbench_<alloc> <workload> [scale]`; prints
// `<workload> <ops> <seconds> <VmHWM KiB>`.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Instant;

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Mixed sizes as allocator benchmarks use them: mostly small, some
/// medium, a few large.
fn size(r: u64) -> usize {
    match r % 100 {
        0..=69 => 8 + (r >> 8) as usize % 120,
        70..=94 => 128 + (r >> 8) as usize % 1900,
        95..=98 => 2048 + (r >> 8) as usize % 30_000,
        _ => 32_768 + (r >> 8) as usize % 100_000,
    }
}

fn touch(v: &mut [u8], r: u64) {
    if let Some(first) = v.first_mut() {
        *first = r as u8;
    }
    if let Some(last) = v.last_mut() {
        *last = (r >> 8) as u8;
    }
}

/// mimalloc-bench's larson shape: threads keep live sets and replace
/// random members; each round the threads exit and hand their sets to
/// the next round's threads (so most frees are of other threads' blocks,
/// and threads come and go).
fn larson(scale: u64) -> u64 {
    const THREADS: usize = 4;
    const SLOTS: usize = 2000;
    let rounds = 10 * scale;
    let per_round = 50_000u64;
    let mut sets: Vec<Vec<Vec<u8>>> = (0..THREADS)
        .map(|t| {
            let mut s = 1 + t as u64;
            (0..SLOTS).map(|_| vec![1u8; size(rng(&mut s)) % 1024 + 1]).collect()
        })
        .collect();
    let mut ops = 0;
    for round in 0..rounds {
        let hs: Vec<_> = sets
            .drain(..)
            .enumerate()
            .map(|(t, mut set)| {
                std::thread::spawn(move || {
                    let mut s = 0x9e37_79b9 ^ (round * 31 + t as u64 + 1);
                    for _ in 0..per_round {
                        let r = rng(&mut s);
                        let k = (r as usize >> 3) % SLOTS;
                        let mut v = Vec::with_capacity(size(r) % 1024 + 1);
                        v.resize(v.capacity().min(size(r) % 1024 + 1), 0);
                        touch(&mut v, r);
                        set[k] = v;
                    }
                    set
                })
            })
            .collect();
        // Rotate: each set goes to another thread next round.
        let mut got: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.rotate_left(1);
        sets = got;
        ops += per_round * THREADS as u64;
    }
    ops
}

/// xmalloc-test shape: producers allocate mixed-size blocks, consumers on
/// other threads free them (every free is remote).
fn prodcons(scale: u64) -> u64 {
    const PAIRS: usize = 2;
    const BATCH: usize = 64;
    let per = 250_000 * scale;
    let hs: Vec<_> = (0..PAIRS)
        .flat_map(|p| {
            let (tx, rx) = mpsc::sync_channel::<Vec<Vec<u8>>>(16);
            let prod = std::thread::spawn(move || {
                let mut s = 7 + p as u64;
                let mut batch = Vec::with_capacity(BATCH);
                for _ in 0..per {
                    let r = rng(&mut s);
                    let mut v = vec![0u8; size(r) % 4096 + 1];
                    touch(&mut v, r);
                    batch.push(v);
                    if batch.len() == BATCH {
                        tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                            .unwrap();
                    }
                }
                0
            });
            let cons = std::thread::spawn(move || {
                let mut n = 0u64;
                for b in rx {
                    n += b.len() as u64;
                }
                n
            });
            [prod, cons]
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// `String` / `Vec` / `HashMap` churn: maps of strings built and dropped
/// on every thread.
fn churn(scale: u64) -> u64 {
    const THREADS: u64 = 2;
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut ops = 0u64;
                for round in 0..40 * scale {
                    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
                    for i in 0..2000u32 {
                        let k = format!("key-{t}-{round}-{i}");
                        let v: Vec<u32> = (0..i % 24).collect();
                        m.insert(k, v);
                    }
                    let mut total = 0usize;
                    for (k, v) in &m {
                        let mut s = k.clone();
                        s.push_str("-seen");
                        total += s.len() + v.len();
                    }
                    m.retain(|k, _| k.len() % 2 == 0);
                    ops += 4000 + total as u64 % 2;
                }
                ops
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// `Vec` growth by `realloc`: vectors pushed one element at a time, small
/// and large.
fn vecgrow(scale: u64) -> u64 {
    let mut ops = 0;
    for round in 0..20 * scale {
        let mut big: Vec<u64> = Vec::new();
        for i in 0..1_000_000u64 {
            big.push(i ^ round);
        }
        ops += big.len() as u64 / 1000;
        let mut small: Vec<Vec<u8>> = Vec::new();
        for i in 0..20_000usize {
            let mut v = Vec::new();
            for j in 0..(i % 200) {
                v.push(j as u8);
            }
            small.push(v);
        }
        ops += small.len() as u64;
        let mut s = String::new();
        for i in 0..100_000 {
            s.push(char::from(b'a' + (i % 26) as u8));
        }
        ops += s.len() as u64 / 1000;
    }
    ops
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "larson".into());
    let scale: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let start = Instant::now();
    let ops = match name.as_str() {
        "larson" => larson(scale),
        "prodcons" => prodcons(scale),
        "churn" => churn(scale),
        "vecgrow" => vecgrow(scale),
        other => {
            eprintln!("unknown workload {other}: larson, prodcons, churn, vecgrow");
            std::process::exit(2);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!("{name} {ops} {secs:.4} {}", vm_hwm_kib());
}
