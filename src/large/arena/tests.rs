use super::*;

const P: usize = PAGE;

/// An arena with one fresh chunk; its base.
fn arena() -> (Arena, usize) {
    let mut a = Arena::new();
    let c = Chunk::map(false).unwrap();
    let base = c.base;
    assert!(a.add_chunk(c, Instant::now()).is_ok());
    (a, base)
}

/// Carves `len` bytes, returning the span and what it charged.
fn carve(a: &mut Arena, len: usize) -> (Carved, u64) {
    let mut charged = 0;
    let c = a
        .carve(len, P, |n| {
            charged = n;
            Ok(())
        })
        .unwrap()
        .unwrap();
    (c, charged)
}

#[test]
fn first_fit_carves_in_address_order_and_reads_zero() {
    let (mut a, base) = arena();
    let (x, cx) = carve(&mut a, 3 * P);
    let (y, cy) = carve(&mut a, 5 * P);
    assert_eq!((x.addr, y.addr), (base, base + 3 * P));
    assert_eq!((cx, cy), (3 * P as u64, 5 * P as u64));
    assert!(x.zeroed && y.zeroed);
    assert_eq!(a.free_spans().len(), 1);
    assert_eq!(a.free_spans()[0].addr, base + 8 * P);
}

#[test]
fn freed_neighbours_coalesce_and_serve_their_sum() {
    let (mut a, base) = arena();
    let (x, _) = carve(&mut a, 2 * P);
    let (y, _) = carve(&mut a, 3 * P);
    let (_z, _) = carve(&mut a, P);
    let now = Instant::now();
    assert!(a.give(y.addr, y.len, y.len, now));
    assert!(a.give(x.addr, x.len, x.len, now));
    let first = a.free_spans()[0];
    assert_eq!((first.addr, first.len, first.dirty), (base, 5 * P, 5 * P));
    // The sum, at the same address, charging nothing new (all dirty).
    let (w, cw) = carve(&mut a, 5 * P);
    assert_eq!((w.addr, cw), (base, 0));
    assert!(!w.zeroed);
}

#[test]
fn dirty_bytes_stay_with_the_leftover_when_they_fit() {
    let (mut a, base) = arena();
    let (x, _) = carve(&mut a, 4 * P);
    let (_guard, _) = carve(&mut a, P);
    assert!(a.give(x.addr, x.len, x.len, Instant::now()));
    // One page out of four dirty ones: the three left keep three dirty
    // pages, the block absorbs one.
    let (y, cy) = carve(&mut a, P);
    assert_eq!((y.addr, cy), (base, 0));
    let s = a.free_spans()[0];
    assert_eq!((s.addr, s.len, s.dirty), (base + P, 3 * P, 3 * P));
}

#[test]
fn grows_in_place_only_into_a_free_next_span() {
    let (mut a, base) = arena();
    let (x, _) = carve(&mut a, 2 * P);
    let g = a.grow(x.addr, 2 * P, 6 * P, |_| Ok(())).unwrap().unwrap();
    assert_eq!((g.addr, g.len), (base + 2 * P, 4 * P));
    let (_y, _) = carve(&mut a, P);
    // The next span is a block now.
    assert!(a.grow(x.addr, 6 * P, 7 * P, |_| Ok(())).unwrap().is_none());
}

#[test]
fn a_refused_charge_changes_nothing() {
    let (mut a, _) = arena();
    let before = a.free_spans().to_vec();
    let limit = AllocError::MemoryLimit { limit: 0 };
    assert!(a.carve(2 * P, P, |_| Err(limit)).is_err());
    assert_eq!(a.free_spans(), &before[..]);
}

#[test]
fn aligned_carves_leave_the_front_free() {
    let (mut a, base) = arena();
    let align = 64 * P;
    // A chunk is only page-aligned (where it lies is up to the OS, or to
    // Miri's heap): a first block of one page, or of two if one would leave
    // the free span starting on an `align` boundary, so that there is a
    // front to leave.
    let first = if (base + P) % align == 0 { 2 * P } else { P };
    let (_x, _) = carve(&mut a, first);
    let c = a.carve(P, align, |_| Ok(())).unwrap().unwrap();
    assert_eq!(c.addr, (base + first).next_multiple_of(align));
    let (front, back) = (a.free_spans()[0], a.free_spans()[1]);
    assert_eq!((front.addr, front.addr + front.len), (base + first, c.addr));
    assert_eq!(back.addr, c.addr + P);
}

#[test]
fn an_aligned_carve_at_an_aligned_span_start_leaves_no_front() {
    let (mut a, base) = arena();
    let align = 64 * P;
    // A first block up to the first `align` boundary past the chunk's start.
    let first = (base + 1).next_multiple_of(align) - base;
    let (_x, _) = carve(&mut a, first);
    let c = a.carve(P, align, |_| Ok(())).unwrap().unwrap();
    assert_eq!(c.addr, base + first);
    assert_eq!(a.free_spans().len(), 1);
    assert_eq!(a.free_spans()[0].addr, c.addr + P);
}

#[test]
fn purged_spans_come_back_clean_and_empty_chunks_go() {
    let (mut a, base) = arena();
    let (x, _) = carve(&mut a, 3 * P);
    let now = Instant::now();
    assert!(a.give(x.addr, x.len, x.len, now));
    let mut none = mvec();
    // Not idle long enough: nothing to purge.
    a.take_dirty(
        now.checked_sub(std::time::Duration::from_millis(1)),
        &mut none,
    );
    assert!(none.is_empty());
    let mut dirty = mvec();
    a.take_dirty(Some(now), &mut dirty);
    assert_eq!(dirty.len(), 1);
    assert_eq!(dirty[0].dirty, 3 * P);
    // While out for the purge the chunk is busy: not unmapped.
    let mut dead = mvec();
    assert_eq!(a.take_empty(&mut dead), 0);
    assert!(dead.is_empty());
    let s = dirty[0];
    assert!(a.give(s.addr, s.len, 0, Instant::now()));
    assert_eq!(a.free_spans()[0].dirty, 0);
    assert_eq!(a.take_empty(&mut dead), 0);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].base, base);
    assert!(a.free_spans().is_empty());
}

#[test]
fn over_the_cap_the_longest_free_spans_are_taken_first() {
    let (mut a, _) = arena();
    // Three blocks with a guard after each, so their spans never merge.
    let blocks: Vec<Carved> = (0..3)
        .map(|_| {
            let (b, _) = carve(&mut a, 2 * P);
            carve(&mut a, P);
            b
        })
        .collect();
    let t0 = Instant::now();
    for (i, b) in blocks.iter().enumerate() {
        // Freed in order: block 0 has been free longest.
        let at = t0 + std::time::Duration::from_millis(i as u64);
        assert!(a.give(b.addr, b.len, b.len, at));
    }
    assert_eq!(a.dirty_bytes(), 6 * P);
    let mut out = mvec();
    a.take_dirty_over(6 * P, &mut out);
    assert!(out.is_empty(), "at the cap: nothing taken");
    a.take_dirty_over(3 * P, &mut out);
    let taken: Vec<usize> = out.iter().map(|s| s.addr).collect();
    assert_eq!(taken, [blocks[0].addr, blocks[1].addr]);
    assert_eq!(a.dirty_bytes(), 2 * P);
    // Taken spans are out of the list, their chunk counting them busy.
    assert!(a.free_spans().iter().all(|s| !taken.contains(&s.addr)));
}
