//! Unit tests of the page source.

use super::*;

const R: usize = 16 * 1024;

#[test]
fn regions_are_aligned_distinct_and_reused() {
    let src = PageSource::new(R, 1 << 20, u64::MAX, None);
    let mut got: Vec<usize> = (0..100).map(|_| src.acquire().unwrap()).collect();
    for &a in &got {
        assert_eq!(a % R, 0);
        assert!(src.contains(a) && src.contains(a + R - 1));
    }
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 100);
    // 100 regions of 16 KiB need two 1 MiB chunks, not one mapping each.
    assert!(src.reserved_bytes() <= 2 * ((1 << 20) + R as u64));
    assert_eq!(src.mapped_bytes(), 100 * R as u64);
    for &a in &got[..50] {
        src.release(a);
    }
    // Warm regions are reused first: no new memory.
    let again: Vec<usize> = (0..50).map(|_| src.acquire().unwrap()).collect();
    assert!(again.iter().all(|a| got[..50].contains(a)));
    assert_eq!(src.mapped_bytes(), 100 * R as u64);
}

#[test]
fn trim_releases_and_unmaps() {
    let src = PageSource::new(R, 1 << 20, u64::MAX, None);
    let got: Vec<usize> = (0..64).map(|_| src.acquire().unwrap()).collect();
    let reserved = src.reserved_bytes();
    assert!(reserved > 0);
    for &a in &got {
        src.release(a);
    }
    assert_eq!(
        src.mapped_bytes(),
        64 * R as u64,
        "released regions stay warm"
    );
    let bytes = src.trim();
    assert_eq!(bytes, 64 * R as u64);
    assert_eq!(src.mapped_bytes(), 0);
    assert_eq!(src.reserved_bytes(), 0, "wholly free chunks are unmapped");
    assert!(!src.contains(got[0]));
    // And the source still works.
    let a = src.acquire().unwrap();
    assert!(src.contains(a));
}

#[test]
fn map_failure_is_an_error_not_a_panic() {
    let src = PageSource::new(R, 1 << 20, u64::MAX, None);
    src.inject_map_failures(2);
    assert_eq!(src.acquire(), Err(AllocError::OutOfMemory));
    assert_eq!(src.acquire(), Err(AllocError::OutOfMemory));
    assert_eq!(src.reserved_bytes(), 0);
    let a = src.acquire().unwrap();
    assert_eq!(a % R, 0);
}

#[test]
fn max_bytes_caps_mapped_memory() {
    let src = PageSource::new(R, 1 << 20, 4 * R as u64, None);
    let got: Vec<usize> = (0..4).map(|_| src.acquire().unwrap()).collect();
    assert_eq!(
        src.acquire(),
        Err(AllocError::MemoryLimit {
            limit: 4 * R as u64
        })
    );
    src.release(got[0]);
    assert_eq!(src.acquire(), Ok(got[0]));
}

#[test]
fn idle_regions_are_released_after_the_period() {
    let src = PageSource::new(R, 1 << 20, u64::MAX, Some(Duration::from_millis(1)));
    // SAFETY: `src` stays in place until dropped.
    unsafe { src.join() };
    let a = src.acquire().unwrap();
    let b = src.acquire().unwrap();
    src.release(a);
    // The sweep runs on later slow paths once a region has been idle for a
    // whole period; wait until that is certainly the case.
    std::thread::sleep(Duration::from_millis(5));
    src.release(b);
    assert!(
        src.released_bytes() >= R as u64,
        "region a was idle > 1 period"
    );
}

/// Two sources on one budget: a region idle in one is released by the
/// other's slow path (the budget's sweep covers every member); a source that
/// left is no longer swept; without joining, nothing but `trim` releases.
#[test]
fn the_budget_sweeps_every_member_from_any_members_slow_path() {
    // A region released by a slow path must not have been idle a whole
    // period by that slow path's own sweep. Miri's clock (isolated) advances
    // about 5 µs per basic block, so a `release` there takes tens of
    // milliseconds; its `sleep` costs nothing.
    let period = Duration::from_millis(if cfg!(miri) { 1000 } else { 20 });
    let budget = Arc::new(Budget::new(u64::MAX, Some(period)));
    let b = PageSource::with_budget(R, 1 << 20, budget.clone());
    // SAFETY: `b` stays in place until dropped.
    unsafe { b.join() };
    let y = b.acquire().unwrap();
    {
        let a = PageSource::with_budget(R, 1 << 20, budget.clone());
        // SAFETY: `a` stays in place until dropped (at the end of the block).
        unsafe { a.join() };
        let x = a.acquire().unwrap();
        a.release(x);
        assert_eq!(budget.mapped(), 2 * R as u64);
        // Idle past the period, and no slow path of this budget since: the
        // next one sweeps.
        std::thread::sleep(2 * period);
        b.release(y);
        assert_eq!(
            a.released_bytes(),
            R as u64,
            "a's idle region, released by b"
        );
        assert_eq!(b.released_bytes(), 0, "b's region is not idle yet");
        assert_eq!(budget.mapped(), R as u64);
    }
    assert_eq!(budget.members.lock().0.len(), 1, "a left when dropped");
    let c = PageSource::with_budget(R, 1 << 20, budget.clone());
    let z = c.acquire().unwrap();
    c.release(z);
    std::thread::sleep(2 * period);
    // `c` never joined: its region stays; `b`'s is released (by this
    // sweep, or by one that `c`'s slow paths ran).
    budget.sweep_if_due();
    assert_eq!((b.released_bytes(), c.released_bytes()), (R as u64, 0));
    assert_eq!(c.trim(), R as u64);
    assert_eq!(budget.mapped(), 0);
}

/// At most one sweep per half period, whoever asks.
#[test]
fn the_budget_sweeps_at_most_twice_a_period() {
    let budget = Budget::new(u64::MAX, Some(Duration::from_secs(3600)));
    assert_eq!(budget.sweep_if_due(), 0);
    let off = Budget::new(u64::MAX, None);
    assert_eq!(off.sweep_if_due(), 0);
    let last = budget.last_sweep.load(Ordering::Relaxed);
    assert_eq!(budget.sweep_if_due(), 0);
    assert_eq!(budget.last_sweep.load(Ordering::Relaxed), last, "not due");
}
