//! Running a measured section on several threads.
//!
//! Each thread does its setup, then waits at the start gate; the clock starts
//! when every thread is ready, and stops when the last thread reports its own
//! end time. Thread spawning, setup and teardown are outside the measured
//! interval, and nobody spins on a core while the work runs (the spawning
//! thread sleeps in `join`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

/// The start and stop line of one measured run.
pub struct Gate {
    ready: AtomicUsize,
    go: AtomicBool,
    done: Barrier,
    end: Mutex<Option<Instant>>,
}

impl Gate {
    fn new(threads: usize) -> Self {
        Self {
            ready: AtomicUsize::new(0),
            go: AtomicBool::new(false),
            done: Barrier::new(threads),
            end: Mutex::new(None),
        }
    }

    /// Setup is done: wait for every thread, then go.
    pub fn start(&self) {
        self.ready.fetch_add(1, Ordering::AcqRel);
        let b = Backoff::new();
        while !self.go.load(Ordering::Acquire) {
            b.snooze();
        }
    }

    /// The work is done: record the time, then wait until every thread is
    /// done too (so no thread's teardown overlaps another's measured work).
    pub fn stop(&self) {
        let now = Instant::now();
        {
            let mut e = self.end.lock().unwrap_or_else(|p| p.into_inner());
            let later = match *e {
                Some(prev) => now > prev,
                None => true,
            };
            if later {
                *e = Some(now);
            }
        }
        self.done.wait();
    }
}

/// A per-thread body: setup, `gate.start()`, work, `gate.stop()`, teardown.
pub type Body<'a> = Box<dyn FnOnce(&Gate) + Send + 'a>;

/// Runs one body per thread and returns the measured interval: from the
/// moment all threads passed `start` to the last `stop`.
pub fn run(bodies: Vec<Body<'_>>) -> Duration {
    let n = bodies.len();
    let gate = Gate::new(n);
    let mut t0 = None;
    std::thread::scope(|s| {
        let gate = &gate;
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|body| s.spawn(move || body(gate)))
            .collect();
        let b = Backoff::new();
        while gate.ready.load(Ordering::Acquire) < n {
            if handles.iter().any(|h| h.is_finished()) {
                // A body returned (or panicked) without reaching the gate:
                // let the scope report it instead of waiting forever.
                gate.go.store(true, Ordering::Release);
                return;
            }
            b.snooze();
        }
        t0 = Some(Instant::now());
        gate.go.store(true, Ordering::Release);
    });
    let t0 = t0.expect("a benchmark thread never reached the start gate");
    let end = gate
        .end
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .expect("no benchmark thread stopped the clock");
    end.saturating_duration_since(t0)
}

/// Receives from `rx`, spinning then yielding while it is empty (a blocking
/// `recv` would put a futex wake-up on the measured path of every hand-off).
#[inline]
/// Channels for a ring of `threads`: entry `t` is thread `t`'s sender (to
/// thread `t + 1`) and its receiver (from thread `t − 1`).
pub fn ring<T>(threads: usize) -> Vec<(Sender<T>, Receiver<T>)> {
    let (mut txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<T>()).unzip();
    txs.rotate_right(1); // thread t sends to t + 1
    txs.into_iter().zip(rxs).collect()
}

pub fn recv_spin<T>(rx: &Receiver<T>) -> T {
    let b = Backoff::new();
    loop {
        match rx.try_recv() {
            Ok(v) => return v,
            Err(TryRecvError::Empty) => b.snooze(),
            Err(TryRecvError::Disconnected) => panic!("benchmark peer thread went away"),
        }
    }
}

/// xorshift64*: a tiny deterministic generator for picking victims.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator; `seed` may be anything (0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift).
    #[inline(always)]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// Resident bytes of this process (`/proc/self/statm`, field 2, in 4 KiB
/// pages); 0 where that file does not exist.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}
