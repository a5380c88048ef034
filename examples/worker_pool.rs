//! A server-shaped workload, run once on homeslab and once on `Box` (the
//! system allocator), with a side-by-side table at the end.
//!
//! ```text
//! cargo run --release --example worker_pool
//! cargo run --release --example worker_pool -- --threads 8 --seconds 5 --object-size 256
//! cargo run --release --example worker_pool -- --json
//! ```
//!
//! - *Acceptor* threads allocate request objects, in bursts of 16, and hand
//!   each burst to a worker slot (round robin).
//! - *Worker* threads verify each request's stamp, allocate a response (same
//!   pool), send the responses back to the acceptor (which verifies and frees
//!   them), and free the request — except one in 32, which a worker keeps in
//!   its slot's long-lived cache (up to 2048 per slot, oldest freed first).
//! - Workers come and go: each serves its slot for a random number of bursts,
//!   then exits; the supervisor starts a new thread on the same slot, which
//!   inherits the long-lived cache. So blocks outlive the threads that
//!   allocated them and are freed by threads that did not exist then.
//! - Acceptors keep at most 4096 requests outstanding (back-pressure), so
//!   live memory is bounded.
//!
//! Every block carries a stamp (its sequence number and a checksum over the
//! payload) that the freeing thread verifies; mismatches are counted and must
//! be 0 (the exit code is 1 otherwise). One operation in 64 is timed with
//! `Instant` into an HDR histogram (so the latencies include the ~20–40 ns of
//! reading the clock).

#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use common::harness::{rss_bytes, Rng};
use common::subjects::{Homeslab, Obj, Subject, SystemBox};

const USAGE: &str = "\
usage: worker_pool [--threads N] [--seconds S] [--object-size BYTES] [--json]

  --threads N          total threads: max(1, N/3) acceptors, the rest workers (N >= 2; default 4)
  --seconds S          run time per allocator (default 3; 0 < S <= 3600)
  --object-size BYTES  16, 64, 256 or 1024 (default 64)
  --json               machine-readable output on stdout, no progress bar
  -h, --help           this text";

/// Requests per burst (one channel message).
const BURST: usize = 16;
/// Requests an acceptor may have in flight.
const MAX_OUTSTANDING: usize = 4096;
/// Long-lived requests a worker slot keeps.
const CACHE_CAP: usize = 2048;
/// One request in `KEEP` goes to the long-lived cache.
const KEEP: usize = 32;
/// Bursts a worker serves before it exits: uniform in this range.
const LIFETIME: (usize, usize) = (500, 5000);
/// One operation in `SAMPLE` is timed.
const SAMPLE: u64 = 64;
/// Responses are stamped with this bit set in their sequence number.
const RESPONSE: u64 = 1 << 63;

// ---------------------------------------------------------------------------
// Stamped objects

/// A message of `16 + 8 * P` bytes: a sequence number, a checksum over the
/// sequence number and the payload, and the payload.
#[repr(C)]
struct Msg<const P: usize> {
    seq: u64,
    sum: u64,
    payload: [u64; P],
}

#[inline(always)]
fn fill(seq: u64, i: usize) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

#[inline(always)]
fn checksum(seq: u64, payload: &[u64]) -> u64 {
    let mut h = seq ^ 0x243f_6a88_85a3_08d3;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    for &w in payload {
        h = (h ^ w).rotate_left(23).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    }
    h ^ (h >> 29)
}

/// What the example needs of a message type.
trait Stamped: Obj {
    /// A stamped message.
    fn stamp(seq: u64) -> Self;
    /// The sequence number, if the stamp checks out.
    fn verify(&self) -> Option<u64>;
}

impl<const P: usize> Obj for Msg<P> {
    #[inline]
    fn make(seed: u64) -> Self {
        Self::stamp(seed)
    }
    #[inline]
    fn first(&self) -> u64 {
        self.seq
    }
}

impl<const P: usize> Stamped for Msg<P> {
    #[inline]
    fn stamp(seq: u64) -> Self {
        let mut payload = [0u64; P];
        for (i, w) in payload.iter_mut().enumerate() {
            *w = fill(seq, i);
        }
        let sum = checksum(seq, &payload);
        Msg { seq, sum, payload }
    }

    #[inline]
    fn verify(&self) -> Option<u64> {
        let ok = checksum(self.seq, &self.payload) == self.sum
            && self
                .payload
                .iter()
                .enumerate()
                .all(|(i, &w)| w == fill(self.seq, i));
        ok.then_some(self.seq)
    }
}

// ---------------------------------------------------------------------------
// Per-thread metering

/// Counters and sampled latencies of one thread.
struct Meter {
    alloc_ns: Histogram<u64>,
    free_ns: Histogram<u64>,
    ops: u64,
    allocs: u64,
    frees: u64,
    cross_frees: u64,
    mismatches: u64,
    requests: u64,
}

impl Meter {
    fn new() -> Self {
        Self {
            alloc_ns: Histogram::new(3).expect("histogram"),
            free_ns: Histogram::new(3).expect("histogram"),
            ops: 0,
            allocs: 0,
            frees: 0,
            cross_frees: 0,
            mismatches: 0,
            requests: 0,
        }
    }

    #[inline]
    fn alloc<'s, T: Stamped, S: Subject<T>>(&mut self, s: &'s S, v: T) -> S::Handle<'s> {
        self.allocs += 1;
        self.ops += 1;
        if self.ops % SAMPLE == 0 {
            let t = Instant::now();
            let h = s.alloc(v);
            self.alloc_ns
                .saturating_record(t.elapsed().as_nanos() as u64);
            h
        } else {
            s.alloc(v)
        }
    }

    /// Verifies the stamp, then frees (every free here is of a block another
    /// thread allocated).
    #[inline]
    fn free<'s, T: Stamped, S: Subject<T>>(&mut self, s: &'s S, h: S::Handle<'s>) -> Option<u64> {
        let seq = s.with(&h, |m| m.verify());
        self.release(s, h, seq.is_some());
        seq
    }

    /// Frees a block whose stamp was checked already (`ok`: it matched).
    #[inline]
    fn release<'s, T: Stamped, S: Subject<T>>(&mut self, s: &'s S, h: S::Handle<'s>, ok: bool) {
        if !ok {
            self.mismatches += 1;
        }
        self.frees += 1;
        self.cross_frees += 1;
        self.ops += 1;
        if self.ops % SAMPLE == 0 {
            let t = Instant::now();
            s.free(h);
            self.free_ns
                .saturating_record(t.elapsed().as_nanos() as u64);
        } else {
            s.free(h);
        }
    }

    fn merge(&mut self, o: &Meter) {
        self.alloc_ns.add(&o.alloc_ns).expect("histogram merge");
        self.free_ns.add(&o.free_ns).expect("histogram merge");
        self.ops += o.ops;
        self.allocs += o.allocs;
        self.frees += o.frees;
        self.cross_frees += o.cross_frees;
        self.mismatches += o.mismatches;
        self.requests += o.requests;
    }
}

// ---------------------------------------------------------------------------
// The workload

struct Burst<H> {
    acceptor: usize,
    items: Vec<H>,
}

/// What a worker slot keeps between worker threads.
struct Slot<'s, S: Subject<T> + 's, T: Stamped> {
    rx: Receiver<Burst<S::Handle<'s>>>,
    cache: VecDeque<S::Handle<'s>>,
    rng: Rng,
    /// The acceptors have all gone and the queue is drained.
    finished: bool,
}

fn acceptor<'s, T: Stamped, S: Subject<T>>(
    s: &'s S,
    id: usize,
    slots: Vec<Sender<Burst<S::Handle<'s>>>>,
    responses: Receiver<Burst<S::Handle<'s>>>,
    stop: &AtomicBool,
    completed: &AtomicU64,
) -> Meter {
    let mut m = Meter::new();
    let mut seq = (id as u64) << 48;
    let mut outstanding = 0usize;
    let mut next = id;
    let take = |m: &mut Meter, b: Burst<S::Handle<'s>>, outstanding: &mut usize| {
        let n = b.items.len();
        for h in b.items {
            if m.free(s, h).is_some_and(|q| q & RESPONSE == 0) {
                m.mismatches += 1; // a response must carry the response bit
            }
        }
        *outstanding -= n;
        m.requests += n as u64;
        completed.fetch_add(n as u64, Ordering::Relaxed);
    };
    while !stop.load(Ordering::Relaxed) {
        loop {
            match responses.try_recv() {
                Ok(b) => take(&mut m, b, &mut outstanding),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => unreachable!("the supervisor holds a sender"),
            }
        }
        if outstanding + BURST > MAX_OUTSTANDING {
            if let Ok(b) = responses.recv_timeout(Duration::from_millis(1)) {
                take(&mut m, b, &mut outstanding);
            }
            continue;
        }
        let mut items = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            seq += 1;
            items.push(m.alloc(s, T::stamp(seq)));
        }
        outstanding += BURST;
        let slot = next % slots.len();
        next += 1;
        if slots[slot]
            .send(Burst {
                acceptor: id,
                items,
            })
            .is_err()
        {
            unreachable!("worker slots outlive the acceptors");
        }
    }
    while outstanding > 0 {
        match responses.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => take(&mut m, b, &mut outstanding),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("the supervisor holds a sender"),
        }
    }
    m
}

fn worker<'s, T: Stamped, S: Subject<T>>(
    s: &'s S,
    mut slot: Slot<'s, S, T>,
    responses: &[Sender<Burst<S::Handle<'s>>>],
) -> (Slot<'s, S, T>, Meter) {
    let mut m = Meter::new();
    let budget = LIFETIME.0 + slot.rng.below(LIFETIME.1 - LIFETIME.0);
    let mut served = 0;
    while served < budget {
        let burst = match slot.rx.recv_timeout(Duration::from_millis(10)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                slot.finished = true;
                break;
            }
        };
        let mut out = Vec::with_capacity(burst.items.len());
        for h in burst.items {
            let seq = s.with(&h, |r| r.verify());
            out.push(m.alloc(s, T::stamp(seq.unwrap_or(0) | RESPONSE)));
            if seq.is_none() {
                m.release(s, h, false);
            } else if slot.rng.below(KEEP) == 0 {
                slot.cache.push_back(h);
                if slot.cache.len() > CACHE_CAP {
                    if let Some(old) = slot.cache.pop_front() {
                        m.free(s, old);
                    }
                }
            } else {
                m.release(s, h, true);
            }
        }
        // The acceptor waits for every response, so it is still there.
        let _ = responses[burst.acceptor].send(Burst {
            acceptor: burst.acceptor,
            items: out,
        });
        served += 1;
    }
    (slot, m)
}

struct Config {
    threads: usize,
    seconds: f64,
    object_size: usize,
    json: bool,
}

/// One allocator's results.
struct Report {
    allocator: &'static str,
    wall: Duration,
    meter: Meter,
    respawns: u64,
    peak_rss_delta: u64,
    stats: Option<homeslab::Stats>,
    peak_live: u64,
}

fn run<T: Stamped, S: Subject<T>>(s: &S, cfg: &Config, bar: &ProgressBar) -> Report {
    let acceptors = (cfg.threads / 3).max(1);
    let workers = cfg.threads - acceptors;
    let stop = AtomicBool::new(false);
    let completed = AtomicU64::new(0);
    let rss_base = rss_bytes();
    let mut peak_rss = rss_base;
    let mut peak_live = 0u64;
    let mut total = Meter::new();
    let mut respawns = 0u64;
    let limit = Duration::from_secs_f64(cfg.seconds);

    let mut slot_txs = Vec::new();
    let mut slots = Vec::new();
    for w in 0..workers {
        let (tx, rx) = mpsc::channel();
        slot_txs.push(tx);
        slots.push(Slot::<S, T> {
            rx,
            cache: VecDeque::new(),
            rng: Rng::new(0x5eed + w as u64),
            finished: false,
        });
    }
    let mut resp_txs = Vec::new();
    let mut resp_rxs = Vec::new();
    for _ in 0..acceptors {
        let (tx, rx) = mpsc::channel();
        resp_txs.push(tx);
        resp_rxs.push(rx);
    }

    bar.reset();
    bar.set_prefix(s.name());
    let start = Instant::now();
    let mut leftovers: Vec<VecDeque<S::Handle<'_>>> = Vec::new();
    std::thread::scope(|sc| {
        let (stop, completed) = (&stop, &completed);
        let resp_txs = &resp_txs;
        let mut acc: Vec<_> = resp_rxs
            .into_iter()
            .enumerate()
            .map(|(id, rx)| {
                let txs = slot_txs.clone();
                Some(sc.spawn(move || acceptor::<T, S>(s, id, txs, rx, stop, completed)))
            })
            .collect();
        drop(slot_txs);
        let mut wrk: Vec<_> = slots
            .into_iter()
            .map(|slot| Some(sc.spawn(move || worker::<T, S>(s, slot, resp_txs))))
            .collect();
        let mut last_tick = Instant::now();
        let mut last_done = 0u64;
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let elapsed = start.elapsed();
            if elapsed >= limit && !stop.load(Ordering::Relaxed) {
                stop.store(true, Ordering::Relaxed);
            }
            for a in acc.iter_mut() {
                if a.as_ref().is_some_and(|h| h.is_finished()) {
                    let m = a.take().map(|h| h.join().expect("acceptor panicked"));
                    total.merge(&m.expect("joined"));
                }
            }
            for w in wrk.iter_mut() {
                if w.as_ref().is_some_and(|h| h.is_finished()) {
                    let (slot, m) = w
                        .take()
                        .map(|h| h.join().expect("worker panicked"))
                        .expect("joined");
                    total.merge(&m);
                    if slot.finished {
                        leftovers.push(slot.cache);
                    } else {
                        respawns += 1;
                        *w = Some(sc.spawn(move || worker::<T, S>(s, slot, resp_txs)));
                    }
                }
            }
            peak_rss = peak_rss.max(rss_bytes());
            if let Some(st) = s.stats() {
                peak_live = peak_live.max(st.live_blocks);
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                let done = completed.load(Ordering::Relaxed);
                let rate = (done - last_done) as f64 / last_tick.elapsed().as_secs_f64();
                last_done = done;
                last_tick = Instant::now();
                bar.set_position(elapsed.min(limit).as_millis() as u64);
                bar.set_message(format!(
                    "{:5.2} Mreq/s, {:4} respawns, {:5.1} MiB RSS{}",
                    rate / 1e6,
                    respawns,
                    peak_rss as f64 / (1 << 20) as f64,
                    if stop.load(Ordering::Relaxed) {
                        ", draining"
                    } else {
                        ""
                    }
                ));
            }
            if acc.iter().all(|a| a.is_none()) && wrk.iter().all(|w| w.is_none()) {
                break;
            }
        }
    });
    let wall = start.elapsed();
    // The long-lived requests still cached: verified and freed here.
    let mut m = Meter::new();
    for cache in leftovers {
        for h in cache {
            m.free(s, h);
        }
    }
    total.merge(&m);
    // Worker threads may still be in their thread-local destructors.
    let t = Instant::now();
    while s.stats().is_some_and(|st| st.thread_heaps > 0) && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    Report {
        allocator: s.name(),
        wall,
        meter: total,
        respawns,
        peak_rss_delta: peak_rss.saturating_sub(rss_base),
        stats: s.stats(),
        peak_live,
    }
}

fn run_both<T: Stamped>(cfg: &Config) -> Vec<Report> {
    // indicatif draws only when stderr is a terminal.
    let bar = if cfg.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            Some((cfg.seconds * 1000.0) as u64),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:16}] {elapsed:>3} {msg}")
                .expect("progress template")
                .progress_chars("=> "),
        );
        b
    };
    let mut out = Vec::new();
    {
        let hs = Homeslab::<T>::new(false);
        out.push(run::<T, _>(&hs, cfg, &bar));
        bar.println(format!("{:>10} done", hs.name()));
    }
    {
        let bx = SystemBox::<T>::new();
        out.push(run::<T, _>(&bx, cfg, &bar));
        bar.println(format!("{:>10} done", bx.name()));
    }
    bar.finish_and_clear();
    out
}

// ---------------------------------------------------------------------------
// Output

fn pct(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn bytes(b: u64) -> String {
    if b >= 10 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} KiB", b as f64 / 1024.0)
    }
}

fn table(cfg: &Config, reports: &[Report]) {
    let acceptors = (cfg.threads / 3).max(1);
    println!(
        "worker_pool: {} threads ({} acceptor{}, {} workers that come and go), {} B objects, {:.1} s per allocator\n",
        cfg.threads,
        acceptors,
        if acceptors == 1 { "" } else { "s" },
        cfg.threads - acceptors,
        cfg.object_size,
        cfg.seconds
    );
    let head = [
        "allocator",
        "requests/s",
        "allocs/s",
        "alloc p50",
        "alloc p99",
        "free p50",
        "free p99",
        "peak mapped",
        "peak RSS Δ",
        "remote frees",
        "overflow allocs",
        "respawns",
        "mismatches",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let secs = r.wall.as_secs_f64();
            let m = &r.meter;
            vec![
                r.allocator.to_string(),
                format!("{:.2} M", m.requests as f64 / secs / 1e6),
                format!("{:.2} M", m.allocs as f64 / secs / 1e6),
                format!("{} ns", pct(&m.alloc_ns, 0.5)),
                format!("{} ns", pct(&m.alloc_ns, 0.99)),
                format!("{} ns", pct(&m.free_ns, 0.5)),
                format!("{} ns", pct(&m.free_ns, 0.99)),
                r.stats.map_or("–".into(), |s| bytes(s.peak_mapped_bytes)),
                bytes(r.peak_rss_delta),
                match r.stats {
                    Some(s) => format!("{}", s.remote_frees),
                    None => format!("({})", m.cross_frees),
                },
                r.stats
                    .map_or("–".into(), |s| s.overflow_allocs.to_string()),
                r.respawns.to_string(),
                m.mismatches.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        println!("| {} |", s.join(" | "));
    };
    line(head.iter().map(|s| s.to_string()).collect());
    println!(
        "|{}|",
        widths
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 {
                format!(":{}", "-".repeat(w + 1))
            } else {
                format!("{}:", "-".repeat(w + 1))
            })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(r);
    }
    println!(
        "\nlatencies: 1 op in {SAMPLE} timed with Instant (clock read included); \
         remote frees: homeslab's Stats::remote_frees, (in parentheses) frees the example \
         made of blocks another thread allocated."
    );
    for r in reports {
        if let Some(s) = r.stats {
            println!(
                "{}: peak live {} blocks, allocs {}, frees {}, live at end {}, double frees {}, foreign frees {}, corruption {}, overflow segments {}",
                r.allocator, r.peak_live, s.allocs, s.frees, s.live_blocks, s.double_frees, s.foreign_frees, s.corruption_events, s.overflow_segments
            );
        }
    }
}

fn json(cfg: &Config, reports: &[Report]) {
    let acceptors = (cfg.threads / 3).max(1);
    let hist = |h: &Histogram<u64>| {
        format!(
            "{{\"samples\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
            h.len(),
            pct(h, 0.5),
            pct(h, 0.99),
            pct(h, 0.999),
            h.max()
        )
    };
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |x| x.to_string());
    let runs: Vec<String> = reports
        .iter()
        .map(|r| {
            let m = &r.meter;
            let secs = r.wall.as_secs_f64();
            format!(
                "{{\"allocator\":\"{}\",\"wall_seconds\":{:.6},\"requests\":{},\"requests_per_second\":{:.1},\
                 \"allocs\":{},\"frees\":{},\"allocs_per_second\":{:.1},\"alloc_ns\":{},\"free_ns\":{},\
                 \"peak_mapped_bytes\":{},\"peak_rss_delta_bytes\":{},\"remote_frees\":{},\
                 \"cross_thread_frees\":{},\"overflow_allocs\":{},\"live_blocks_at_end\":{},\
                 \"worker_respawns\":{},\"stamp_mismatches\":{}}}",
                r.allocator,
                secs,
                m.requests,
                m.requests as f64 / secs,
                m.allocs,
                m.frees,
                m.allocs as f64 / secs,
                hist(&m.alloc_ns),
                hist(&m.free_ns),
                opt(r.stats.map(|s| s.peak_mapped_bytes)),
                r.peak_rss_delta,
                opt(r.stats.map(|s| s.remote_frees)),
                m.cross_frees,
                opt(r.stats.map(|s| s.overflow_allocs)),
                opt(r.stats.map(|s| s.live_blocks)),
                r.respawns,
                m.mismatches
            )
        })
        .collect();
    println!(
        "{{\"threads\":{},\"acceptors\":{},\"workers\":{},\"object_size\":{},\"seconds\":{},\"sample_one_in\":{},\"runs\":[{}]}}",
        cfg.threads,
        acceptors,
        cfg.threads - acceptors,
        cfg.object_size,
        cfg.seconds,
        SAMPLE,
        runs.join(",")
    );
}

// ---------------------------------------------------------------------------
// Arguments

fn parse_args() -> Result<Option<Config>, String> {
    use lexopt::prelude::*;
    let mut cfg = Config {
        threads: 4,
        seconds: 3.0,
        object_size: 64,
        json: false,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("threads") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let n: usize = v.parse().map_err(|e| format!("--threads: {e}"))?;
                if !(2..=1024).contains(&n) {
                    return Err(format!("--threads: {n} is out of range (2..=1024)"));
                }
                cfg.threads = n;
            }
            Long("seconds") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let s: f64 = v.parse().map_err(|e| format!("--seconds: {e}"))?;
                if !(s > 0.0 && s <= 3600.0) {
                    return Err(format!("--seconds: {s} is out of range (0 < S <= 3600)"));
                }
                cfg.seconds = s;
            }
            Long("object-size") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let n: usize = v.parse().map_err(|e| format!("--object-size: {e}"))?;
                if ![16, 64, 256, 1024].contains(&n) {
                    return Err(format!(
                        "--object-size: {n} is not supported (choose 16, 64, 256 or 1024)"
                    ));
                }
                cfg.object_size = n;
            }
            Long("json") => cfg.json = true,
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(cfg))
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("worker_pool: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let reports = match cfg.object_size {
        16 => run_both::<Msg<0>>(&cfg),
        64 => run_both::<Msg<6>>(&cfg),
        256 => run_both::<Msg<30>>(&cfg),
        1024 => run_both::<Msg<126>>(&cfg),
        _ => unreachable!("validated in parse_args"),
    };
    if cfg.json {
        json(&cfg, &reports);
    } else {
        table(&cfg, &reports);
    }
    let mismatches: u64 = reports.iter().map(|r| r.meter.mismatches).sum();
    let leaked: u64 = reports
        .iter()
        .filter_map(|r| r.stats.map(|s| s.live_blocks))
        .sum();
    if mismatches > 0 || leaked > 0 {
        eprintln!("worker_pool: FAILED: {mismatches} stamp mismatches, {leaked} homeslab blocks still live");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
