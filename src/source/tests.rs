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
