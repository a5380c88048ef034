// The global-allocator benchmark workloads, shared by the one-binary-per-
// allocator examples (`gbench_homeslab`, `gbench_mimalloc`,
// `gbench_jemalloc`, `gbench_system`); `gbench_driver` runs them side by
// side. Usage: `gbench_<alloc> <workload> [scale]`; prints
// `<workload> <ops> <seconds> <VmHWM KiB>`, and a fifth field where the
// including binary sets `OS_CALLS` (homeslab's): the mmap-family calls the
// allocator made during the run.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{mpsc, Arc};
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

/// 40 sizes: homeslab's classes up to 32 KiB (16-byte steps to 128 B, then
/// four per doubling); mimalloc's and jemalloc's tables are close to it.
fn class_sizes() -> [usize; 40] {
    let mut s = [0; 40];
    for (i, x) in s.iter_mut().enumerate() {
        *x = if i < 8 {
            16 * (i + 1)
        } else {
            let base = 128 << ((i - 8) / 4);
            base + base / 4 * ((i - 8) % 4 + 1)
        };
    }
    s
}

/// A size in one of the 40 size ranges, each used, small ones most: 70%
/// up to 512 B, 25% up to 4 KiB, 5% up to 32 KiB.
fn class_spread_size(sizes: &[usize; 40], r: u64) -> usize {
    let c = match r % 100 {
        0..=69 => (r >> 8) % 16,
        70..=94 => 16 + (r >> 8) % 12,
        _ => 28 + (r >> 8) % 12,
    } as usize;
    let lo = if c == 0 { 1 } else { sizes[c - 1] + 1 };
    lo + (r >> 16) as usize % (sizes[c] - lo + 1)
}

/// Threads that come and go: generations of 4 short-lived threads, each
/// taking over a live set of the previous generation (1000 blocks over
/// all 40 sizes' classes), replacing 500 random members and exiting. Little work
/// per thread, so the threads' start and exit show. Ops: replacements.
fn threads(scale: u64) -> u64 {
    const THREADS: usize = 4;
    const SLOTS: usize = 1000;
    const REPLACE: u64 = 500;
    let sizes = class_sizes();
    let mut sets: Vec<Vec<Vec<u8>>> = (0..THREADS)
        .map(|t| {
            let mut s = 3 + t as u64;
            (0..SLOTS)
                .map(|_| {
                    let r = rng(&mut s);
                    vec![r as u8; class_spread_size(&sizes, r)]
                })
                .collect()
        })
        .collect();
    let mut ops = 0;
    for generation in 0..200 * scale {
        let hs: Vec<_> = sets
            .drain(..)
            .enumerate()
            .map(|(t, mut set)| {
                std::thread::spawn(move || {
                    let mut s = 0x51_7cc1 ^ (generation * 7 + t as u64 + 1);
                    for _ in 0..REPLACE {
                        let r = rng(&mut s);
                        let k = (r >> 40) as usize % SLOTS;
                        set[k] = vec![r as u8; class_spread_size(&sizes, r)];
                    }
                    set
                })
            })
            .collect();
        // Each set goes to another thread of the next generation.
        let mut got: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.rotate_left(1);
        sets = got;
        ops += REPLACE * THREADS as u64;
    }
    ops
}

/// One thread start and exit at a time: each thread allocates one block of
/// each of the 40 sizes (and the vector holding them), frees them and
/// exits. Ops: threads.
fn spawn40(scale: u64) -> u64 {
    let n = 4000 * scale;
    for i in 0..n {
        std::thread::spawn(move || {
            let blocks: Vec<Vec<u8>> = class_sizes()
                .iter()
                .map(|&size| {
                    let mut v = Vec::with_capacity(size);
                    v.push(i as u8);
                    v
                })
                .collect();
            black_box(&blocks);
        })
        .join()
        .unwrap();
    }
    n
}

/// The patterns of `regex`: ASCII and large Unicode classes, captures,
/// case folding, alternations.
const PATTERNS: [&str; 32] = [
    r"\w+",
    r"\p{L}+",
    r"\p{Lu}\p{Ll}+",
    r"[\p{L}\p{N}]+",
    r"\W+",
    r"\p{N}+",
    r"\p{Greek}+",
    r"\p{Cyrillic}+",
    r"\p{Han}+",
    r"[^\x00-\x7F]+",
    r"\b\w{8,}\b",
    r"\b\w+ing\b",
    r"(?i)homeslab",
    r"(?i)the\s+\w+",
    r"(?i)[aeiouäöüéï]{2,}",
    r"\w*ß\w*",
    r"(\d{4})-(\d{2})-(\d{2})",
    r"(\d+)\.(\d+)",
    r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})",
    r"([a-z0-9._%+-]+)@([a-z0-9.-]+\.[a-z]{2,})",
    r"https?://[^\s]+",
    r"#[0-9a-fA-F]{6}\b",
    r"(\w+)=(\w+)",
    r"(\p{L}+)\s(\p{L}+)",
    r"\b[A-Z]{2,}\b",
    r"\p{Lu}{2,}\d*",
    r"\b(?:alpha|beta|gamma|delta|epsilon|zeta|theta|lambda)\b",
    r"(?m)^\w+:",
    r"[[:punct:]]+",
    r"\s{2,}",
    r"(?x) \b fn \s+ (\w+) \s* \(",
    r"\w+@\w+",
];

/// About 64 KiB of lines mixing words (some non-ASCII), numbers, dates,
/// e-mail and IP addresses, URLs, colours and `key=value` pairs.
fn regex_text() -> String {
    const WORDS: [&str; 24] = [
        "the", "allocator", "Homeslab", "thread", "running", "naïve", "Grüße", "Straße", "ALPHA",
        "beta", "γάμμα", "δέλτα", "привет", "мир", "数据", "内存", "café", "fn", "slab", "HTTP",
        "remote", "freeing", "epsilon", "déjà",
    ];
    let mut s = 0x7e57u64;
    let mut t = String::new();
    let mut line = 0;
    while t.len() < 64 * 1024 {
        line += 1;
        t.push_str(&format!("line{line}: "));
        for _ in 0..12 {
            let r = rng(&mut s);
            match r % 12 {
                0 => t.push_str(&format!("{}.{}", r % 1000, (r >> 10) % 100)),
                1 => t.push_str(&format!("2026-{:02}-{:02}", 1 + (r >> 4) % 12, 1 + (r >> 8) % 28)),
                2 => t.push_str(&format!("user{}@example.org", (r >> 3) % 500)),
                3 => t.push_str(&format!("key{}=value{}", r % 50, (r >> 6) % 50)),
                4 => t.push_str(&format!("https://example.com/p/{}", (r >> 5) % 900)),
                5 => t.push_str(&format!("fn name{} (x)", (r >> 7) % 80)),
                6 => t.push_str(&format!("10.{}.{}.{}", r % 256, (r >> 8) % 256, (r >> 16) % 256)),
                7 => t.push_str(&format!("#{:06x}", (r >> 20) & 0xff_ffff)),
                _ => t.push_str(WORDS[(r >> 12) as usize % WORDS.len()]),
            }
            t.push(if r % 17 == 0 { '\t' } else { ' ' });
        }
        t.push('\n');
    }
    t
}

/// `regex`: 2 threads each compile every pattern, then search the text with
/// each (captures for the patterns with groups, plain matches for the
/// rest), round after round. Ops: compiles plus searches.
fn regex(scale: u64) -> u64 {
    const THREADS: usize = 2;
    let text = Arc::new(regex_text());
    let hs: Vec<_> = (0..THREADS)
        .map(|_| {
            let text = Arc::clone(&text);
            std::thread::spawn(move || {
                let mut ops = 0u64;
                let mut found = 0usize;
                for _ in 0..10 * scale {
                    let res: Vec<regex::Regex> = PATTERNS
                        .iter()
                        .map(|p| regex::Regex::new(p).unwrap())
                        .collect();
                    for re in &res {
                        found += if re.captures_len() > 1 {
                            re.captures_iter(&text).count()
                        } else {
                            re.find_iter(&text).count()
                        };
                    }
                    ops += 2 * res.len() as u64;
                }
                black_box(found);
                ops
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// `realloc` through large sizes: a `Vec<u8>` grown to 8 MiB, by
/// `extend_from_slice` of 1 B–4 KiB pieces or by one-byte pushes (round
/// by round in turn), and every 8th round a `Vec<u64>` pushed to 8 MiB.
/// Ops: KiB appended.
fn vecgrow8m(scale: u64) -> u64 {
    const TARGET: usize = 8 << 20;
    let piece: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    let mut s = 11u64;
    let mut kib = 0;
    for round in 0..40 * scale {
        let mut v: Vec<u8> = Vec::new();
        if round % 2 == 0 {
            while v.len() < TARGET {
                let n = 1 + rng(&mut s) as usize % piece.len();
                v.extend_from_slice(&piece[..n]);
            }
        } else {
            for i in 0..TARGET {
                v.push(i as u8);
            }
        }
        kib += v.len() as u64 / 1024;
        black_box(&v);
        if round % 8 == 0 {
            let mut w: Vec<u64> = Vec::new();
            for i in 0..(TARGET / 8) as u64 {
                w.push(i ^ round);
            }
            kib += (w.len() * 8 / 1024) as u64;
            black_box(&w);
        }
    }
    kib
}

/// A record of `serde`: strings, vectors, an option, a small map.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    id: u64,
    name: String,
    email: String,
    active: bool,
    parent: Option<u64>,
    tags: Vec<String>,
    scores: Vec<f64>,
    attrs: HashMap<String, String>,
}

fn record(r: u64, id: u64) -> Record {
    Record {
        id,
        name: format!("record número {id}"),
        email: format!("user{}@example.org", r % 1000),
        active: r % 3 == 0,
        parent: (r % 4 != 0).then_some(id / 2),
        tags: (0..r % 6).map(|i| format!("tag{}", (r >> i) % 40)).collect(),
        scores: (0..(r >> 8) % 10).map(|i| (r >> i) as f64 / 7.0).collect(),
        attrs: (0..(r >> 16) % 5)
            .map(|i| (format!("k{i}"), format!("v{}", r >> (20 + i))))
            .collect(),
    }
}

/// serde_json round trips: 2 threads each build 2000 records, serialize
/// them to a string, parse it back into records and into a
/// `serde_json::Value`, round after round. Ops: records (each serialized
/// and parsed twice).
fn serde(scale: u64) -> u64 {
    const THREADS: u64 = 2;
    const RECORDS: u64 = 2000;
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut s = 0x5e_7de5 + t;
                let mut ops = 0;
                for _ in 0..10 * scale {
                    let recs: Vec<Record> = (0..RECORDS).map(|i| record(rng(&mut s), i)).collect();
                    let json = serde_json::to_string(&recs).unwrap();
                    let back: Vec<Record> = serde_json::from_str(&json).unwrap();
                    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
                    assert_eq!(back.len(), recs.len());
                    assert_eq!(value.as_array().map(Vec::len), Some(recs.len()));
                    ops += RECORDS;
                }
                ops
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
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
    let calls_before = OS_CALLS.map(|calls| calls());
    let start = Instant::now();
    let ops = match name.as_str() {
        "larson" => larson(scale),
        "prodcons" => prodcons(scale),
        "churn" => churn(scale),
        "vecgrow" => vecgrow(scale),
        "threads" => threads(scale),
        "spawn40" => spawn40(scale),
        "regex" => regex(scale),
        "vecgrow8m" => vecgrow8m(scale),
        "serde" => serde(scale),
        other => {
            eprintln!(
                "unknown workload {other}: larson, prodcons, churn, vecgrow, threads, \
                 spawn40, regex, vecgrow8m, serde"
            );
            std::process::exit(2);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let hwm = vm_hwm_kib();
    match (OS_CALLS, calls_before) {
        (Some(calls), Some(before)) => {
            println!("{name} {ops} {secs:.4} {hwm} {}", calls() - before)
        }
        _ => println!("{name} {ops} {secs:.4} {hwm}"),
    }
}
