//! The command line.

use std::mem::size_of;

use crate::{Session, HEADER_WORDS, LARGE_EVERY, LARGE_RESPONSE_LEN, RESPONSE, RESPONSE_LEN};

pub const USAGE: &str = "\
usage: worker_pool [--threads N] [--seconds S] [--object-size BYTES] [--json]

Runs the workload on homeslab (requests and sessions in homeslab::Pools,
response buffers from a homeslab::ObjectPool<Vec<u8>>, per-request header
vectors in a shared homeslab::SlabAlloc), then on Box, a fresh Vec per
response and allocator-api2's Global, and compares.

  --threads N          total threads: max(1, N/3) acceptors, the rest workers (N >= 2; default 4)
  --seconds S          run time per allocator (default 3; 0 < S <= 3600)
  --object-size BYTES  request size: 16, 64, 256 or 1024 (default 64);
                       sessions are 32 bytes, headers 16-96, responses 512
                       (one in 64: 4096) in Vec<u8> buffers of capacity 512
  --json               machine-readable output on stdout, no progress bar
  -h, --help           this text";

pub struct Config {
    pub threads: usize,
    pub seconds: f64,
    /// The request size.
    pub object_size: usize,
    pub json: bool,
}

impl Config {
    /// The smallest and the largest block (or response) of each pool, in
    /// bytes, by pool index.
    pub fn sizes(&self) -> [(usize, usize); 4] {
        [
            (self.object_size, self.object_size),
            (RESPONSE_LEN, LARGE_RESPONSE_LEN),
            (size_of::<Session>(), size_of::<Session>()),
            (8 * HEADER_WORDS.0, 8 * HEADER_WORDS.1),
        ]
    }

    /// Pool `i`'s sizes, for the tables.
    pub fn size_label(&self, i: usize) -> String {
        match (i, self.sizes()[i]) {
            (RESPONSE, (small, large)) => format!("{small} B (1 in {LARGE_EVERY}: {large} B)"),
            (_, (a, b)) if a == b => format!("{a} B"),
            (_, (a, b)) => format!("{a}–{b} B"),
        }
    }
}

pub fn parse_args() -> Result<Option<Config>, String> {
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
