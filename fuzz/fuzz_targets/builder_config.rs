//! The builders with arbitrary settings: `build` returns the `ConfigError`
//! the documented rules predict, or a pool (allocator) that works — blocks
//! allocate (or fail with an `AllocError`, never a panic), keep their
//! contents, free locally and on another thread, and the counters add up.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use homeslab::allocator_api2::alloc::Allocator;
use homeslab::{ConfigError, Pool, SlabAlloc};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Settings {
    hardened: Option<bool>,
    retained_empty_slabs: Option<u16>,
    max_thread_heaps: Option<u8>,
    max_thread_slabs: Option<u16>,
    max_bytes: Option<(u8, u64)>,
    chunk_bytes: Option<(u8, u64)>,
    release_after: Option<(u8, u64)>,
    slab_capacity: Option<u32>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: u8,
    settings: Settings,
    allocs: u8,
}

/// A value below 2^64 spread over the interesting magnitudes: 2^shift
/// exactly, one off either side, or an arbitrary value.
fn magnitude((shift, n): (u8, u64)) -> u64 {
    let p = 1u64.checked_shl(u32::from(shift % 64)).unwrap_or(0);
    match shift / 64 {
        0 => p,
        1 => p.wrapping_sub(1),
        2 => p.wrapping_add(1),
        _ => n,
    }
}

/// The error `build` must return, by the rules docs and `Knobs::check`
/// state, in the order they are checked; `region` is the slab size.
fn expected(s: &Settings, region: u64, pool: bool) -> Option<&'static str> {
    if pool && s.slab_capacity == Some(0) {
        return Some("slab_capacity");
    }
    if s.max_thread_slabs == Some(0) {
        return Some("max_thread_slabs");
    }
    if s.max_bytes.is_some_and(|m| magnitude(m) < region) {
        return Some("max_bytes");
    }
    if let Some(c) = s.chunk_bytes {
        let c = magnitude(c) as usize;
        if c != 0 && (!c.is_power_of_two() || c < 64 * 1024) {
            return Some("chunk_bytes");
        }
    }
    if s.release_after
        .is_some_and(|r| r.0 % 2 == 1 && magnitude(r) == 0)
    {
        return Some("release_after");
    }
    None
}

macro_rules! apply {
    ($b:expr, $s:expr) => {{
        let s = $s;
        let mut b = $b;
        if let Some(h) = s.hardened {
            b = b.hardened(h);
        }
        if let Some(n) = s.retained_empty_slabs {
            b = b.retained_empty_slabs(n as usize);
        }
        if let Some(n) = s.max_thread_heaps {
            b = b.max_thread_heaps(n as usize);
        }
        if let Some(n) = s.max_thread_slabs {
            b = b.max_thread_slabs(n as usize);
        }
        if let Some(m) = s.max_bytes {
            b = b.max_bytes(magnitude(m));
        }
        if let Some(c) = s.chunk_bytes {
            b = b.chunk_bytes(magnitude(c) as usize);
        }
        if let Some(r) = s.release_after {
            // Odd: a duration (maybe zero); even: `None`.
            let d = (r.0 % 2 == 1).then(|| Duration::from_nanos(magnitude(r)));
            b = b.release_after(d);
        }
        b
    }};
}

fn check_err(r: Result<(), ConfigError>, want: Option<&'static str>) -> bool {
    match (r, want) {
        (Ok(()), None) => true,
        (Err(ConfigError::InvalidSetting { name, requirement }), Some(w)) => {
            assert_eq!(name, w, "wrong setting blamed");
            assert!(!requirement.is_empty());
            false
        }
        (r, w) => panic!("build gave {r:?}, expected an error on {w:?}"),
    }
}

fn pool<T: Send + Copy + PartialEq + std::fmt::Debug + 'static>(input: &Input, value: T) {
    let region = Pool::<T>::new().stats().slab_bytes;
    let mut b = apply!(Pool::<T>::builder(), &input.settings);
    if let Some(n) = input.settings.slab_capacity {
        b = b.slab_capacity(n as usize);
    }
    let want = expected(&input.settings, region, true);
    let built = b.build();
    let pool = match built {
        Ok(p) => {
            check_err(Ok(()), want);
            p
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            check_err(Err(e), want);
            return;
        }
    };
    let mut boxes = Vec::new();
    for _ in 0..input.allocs % 64 {
        match pool.alloc(value) {
            Ok(b) => boxes.push(b),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // Zero-size values take no block and are not counted.
    let n = if std::mem::size_of::<T>() == 0 {
        0
    } else {
        boxes.len() as u64
    };
    assert_eq!(pool.stats().live_blocks, n);
    assert!(boxes.iter().all(|b| **b == value));
    let remote: Vec<_> = boxes.drain(..boxes.len() / 2).collect();
    std::thread::spawn(move || drop(remote)).join().unwrap();
    drop(boxes);
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.allocs, n);
    pool.trim();
}

/// The least `max_bytes` a `SlabAlloc` accepts (its largest class
/// region), found once by bisection; `expected` then checks every other
/// setting against the rules, and `max_bytes` for consistency.
fn slab_alloc_min_bytes() -> u64 {
    static MIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        let ok = |n: u64| SlabAlloc::builder().max_bytes(n).build().is_ok();
        let (mut lo, mut hi) = (0u64, 1 << 40);
        assert!(ok(hi) && !ok(lo));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if ok(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        assert!(hi.is_power_of_two(), "the least budget is one region: {hi}");
        hi
    })
}

fn slab_alloc(input: &Input) {
    let want = expected(&input.settings, slab_alloc_min_bytes(), false);
    let a = match apply!(SlabAlloc::builder(), &input.settings).build() {
        Ok(a) => {
            check_err(Ok(()), want);
            a
        }
        Err(e) => {
            check_err(Err(e), want);
            return;
        }
    };
    let mut blocks = Vec::new();
    for i in 0..input.allocs % 32 {
        let l = std::alloc::Layout::from_size_align(1 + (usize::from(i) << (i % 12)), 8).unwrap();
        if let Ok(p) = a.allocate(l) {
            // SAFETY: a fresh block of at least `l.size()` bytes.
            unsafe { p.cast::<u8>().as_ptr().write_bytes(i, l.size()) };
            blocks.push((p.cast::<u8>(), l, i));
        }
    }
    for &(p, l, i) in &blocks {
        // SAFETY: a live block of `l.size()` bytes, filled with `i`.
        let got = unsafe { std::slice::from_raw_parts(p.as_ptr(), l.size()) };
        assert!(got.iter().all(|&x| x == i));
    }
    for (p, l, _) in blocks {
        // SAFETY: a live block and its layout.
        unsafe { a.deallocate(p, l) };
    }
    assert_eq!(a.stats().live_blocks, 0);
}

#[derive(Clone, Copy, PartialEq, Debug)]
#[repr(align(4096))]
struct Page([u8; 4096]);

fuzz_target!(|input: Input| {
    match input.kind % 7 {
        0 => pool(&input, 7u8),
        1 => pool(&input, [3u64; 8]),
        2 => pool(&input, [5u8; 3000]),
        3 => pool(&input, Page([9; 4096])),
        4 => pool(&input, ()),
        5 => pool(&input, [1u64; 8192]),
        _ => slab_alloc(&input),
    }
});
