//! One timed run per allocator: the supervisor starts the acceptors and
//! the workers, starts a new worker on the slot of each one that exits,
//! stops the acceptors when the time is up, samples RSS and homeslab's
//! live blocks, drives the progress bar, and at the end frees what the
//! slots still cache.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use homeslab::Stats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::Config;
use crate::common::harness::{rss_bytes, Rng};
use crate::meter::Meter;
use crate::stamp::Stamped;
use crate::{acceptor, worker, Alloc, Kept, OnBox, OnHomeslab, Pools, Slot};

/// One allocator's results.
pub struct Report {
    pub allocator: &'static str,
    pub wall: Duration,
    pub meter: Meter,
    pub respawns: u64,
    pub peak_rss_delta: u64,
    /// What served each pool.
    pub via: [&'static str; 4],
    /// homeslab's counters at the end, by pool (`None` for `Box`).
    pub stats: [Option<Stats>; 4],
    /// The most live blocks `stats()` showed while running, by pool.
    pub peak_live: [u64; 4],
}

impl Report {
    /// The sum over the pools of a homeslab counter (`None` for `Box`).
    pub fn total(&self, f: impl Fn(&Stats) -> u64) -> Option<u64> {
        self.stats.iter().map(|s| s.as_ref().map(&f)).sum()
    }
}

fn run<A: Alloc, R: Stamped>(p: &Pools<A, R>, cfg: &Config, bar: &ProgressBar) -> Report {
    let acceptors = (cfg.threads / 3).max(1);
    let workers = cfg.threads - acceptors;
    let stop = AtomicBool::new(false);
    let completed = AtomicU64::new(0);
    let rss_base = rss_bytes();
    let mut peak_rss = rss_base;
    let mut peak_live = [0u64; 4];
    let mut total = Meter::new(0);
    let mut respawns = 0u64;
    let limit = Duration::from_secs_f64(cfg.seconds);

    let mut slot_txs = Vec::new();
    let mut slots = Vec::new();
    for w in 0..workers {
        let (tx, rx) = mpsc::channel();
        slot_txs.push(tx);
        slots.push(Slot::<A, R> {
            rx,
            cache: VecDeque::new(),
            rng: Rng::new(0x5eed + w as u64),
            finished: false,
        });
    }
    let mut reply_txs = Vec::new();
    let mut reply_rxs = Vec::new();
    for _ in 0..acceptors {
        let (tx, rx) = mpsc::channel();
        reply_txs.push(tx);
        reply_rxs.push(rx);
    }

    bar.reset();
    bar.set_prefix(p.name());
    let start = Instant::now();
    let mut leftovers: Vec<Kept<'_, A, R>> = Vec::new();
    std::thread::scope(|sc| {
        let (stop, completed) = (&stop, &completed);
        let reply_txs = &reply_txs;
        let mut acc: Vec<_> = reply_rxs
            .into_iter()
            .enumerate()
            .map(|(id, rx)| {
                let txs = slot_txs.clone();
                Some(sc.spawn(move || acceptor::<A, R>(p, id, txs, rx, stop, completed)))
            })
            .collect();
        drop(slot_txs);
        let mut wrk: Vec<_> = slots
            .into_iter()
            .map(|slot| Some(sc.spawn(move || worker::<A, R>(p, slot, reply_txs))))
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
                        *w = Some(sc.spawn(move || worker::<A, R>(p, slot, reply_txs)));
                    }
                }
            }
            peak_rss = peak_rss.max(rss_bytes());
            for (peak, st) in peak_live.iter_mut().zip(p.stats()) {
                if let Some(st) = st {
                    *peak = (*peak).max(st.live_blocks);
                }
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
    // The long-lived requests still cached, with their headers: verified
    // and freed here.
    let mut m = Meter::new(1);
    for cache in leftovers {
        for (req, headers) in cache {
            m.free_kept(&p.req, req, headers);
        }
    }
    total.merge(&m);
    // Worker threads may still be in their thread-local destructors.
    let t = Instant::now();
    while p.stats().iter().flatten().any(|st| st.thread_heaps > 0)
        && t.elapsed() < Duration::from_secs(1)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    Report {
        allocator: p.name(),
        wall,
        meter: total,
        respawns,
        peak_rss_delta: peak_rss.saturating_sub(rss_base),
        via: A::VIA,
        stats: p.stats(),
        peak_live,
    }
}

pub fn run_both<R: Stamped>(cfg: &Config) -> Vec<Report> {
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
        let hs = Pools::<OnHomeslab, R>::new();
        out.push(run(&hs, cfg, &bar));
        bar.println(format!("{:>10} done", hs.name()));
    }
    {
        let bx = Pools::<OnBox, R>::new();
        out.push(run(&bx, cfg, &bar));
        bar.println(format!("{:>10} done", bx.name()));
    }
    bar.finish_and_clear();
    out
}
