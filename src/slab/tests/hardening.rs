//! Corrupted freelist links, local and remote: detected, counted and
//! contained; plain mode's raw links, and why a use-after-free write cannot
//! reach the freelist.

use super::*;

#[test]
fn corrupted_local_link_detected_and_contained() {
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    let blocks: Vec<usize> = (0..8)
        .map(|_| pop(s, &c).unwrap().as_ptr() as usize)
        .collect();
    for &b in &blocks[..4] {
        assert_eq!(free_local(s, b), Freed::Ok { claimed: false });
    }
    // A stray metadata write: the head block's link now names a live block
    // (in range, so only the hardened check can tell).
    forge_link(s, blocks[3], raw_link_to(s, blocks[6]));
    let mut out = Vec::new();
    while let Some(p) = pop(s, &c) {
        out.push(p.as_ptr() as usize);
    }
    assert!(c.load(Ordering::Relaxed) >= 1, "corruption must be counted");
    assert!(
        !out.contains(&blocks[6]),
        "a live block was handed out again"
    );
    for &p in &out {
        assert!(in_slots(s, p), "{p:#x} escaped the slot array");
    }
    let mut sorted = out.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), out.len(), "no slot handed out twice");
}

#[test]
fn corrupted_link_to_live_block_detected() {
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    let a = pop(s, &c).unwrap().as_ptr() as usize;
    let live = pop(s, &c).unwrap().as_ptr() as usize;
    assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
    // Forge an in-range link to a block that is still live: without the key
    // the attacker writes the raw index.
    forge_link(s, a, raw_link_to(s, live));
    let first = pop(s, &c).unwrap().as_ptr() as usize;
    assert_eq!(first, a);
    // The link is bounded-checked at this pop; the slot it names is
    // checked when popped, and found handed out.
    let next = pop(s, &c).unwrap().as_ptr() as usize;
    assert_ne!(next, live, "a live block must not be handed out again");
    assert_eq!(c.load(Ordering::Relaxed), 1);
}

#[test]
fn corrupted_link_to_itself_detected() {
    // A free slot's word overwritten with its own link (one corrupt word in
    // 2^14 does it, with the key) names a free slot below the frontier; the
    // pop marks its slot handed out before decoding the link, so the next
    // pop finds the slot handed out and refuses it, not hands it out twice
    // (found by the fuzz target `hardened_corruption`).
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    let a = pop(s, &c).unwrap().as_ptr() as usize;
    let _live = pop(s, &c).unwrap();
    assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
    let idx = s.slot_index(a, s.shape()).unwrap();
    forge_link(s, a, s.encode(idx, idx + 1));
    assert_eq!(pop(s, &c).unwrap().as_ptr() as usize, a);
    let next = pop(s, &c).unwrap().as_ptr() as usize;
    assert_ne!(next, a, "a block must not be handed out twice");
    assert_eq!(c.load(Ordering::Relaxed), 1, "the self-link is counted");
}

#[test]
fn corrupted_remote_link_detected() {
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    let blocks: Vec<usize> = (0..4)
        .map(|_| pop(s, &c).unwrap().as_ptr() as usize)
        .collect();
    for &b in &blocks {
        assert_eq!(s.free_remote(b), Freed::Ok { claimed: false });
    }
    forge_link(s, blocks[3], raw_link_to(s, blocks[0]) + 1);
    // Into an empty freelist the chain is spliced whole; the corrupt link is
    // caught by the pop that reads it.
    assert_eq!(drain(s, &c), 4);
    assert_eq!(c.load(Ordering::Relaxed), 0);
    assert_eq!(pop(s, &c).unwrap().as_ptr() as usize, blocks[3]);
    assert_eq!(
        c.load(Ordering::Relaxed),
        1,
        "the corrupt link was followed"
    );
    while let Some(p) = pop(s, &c) {
        assert!(in_slots(s, p.as_ptr() as usize));
        assert!(!blocks[..3].contains(&(p.as_ptr() as usize)), "cut off");
    }
}

#[test]
fn corrupted_remote_link_cuts_a_walked_drain() {
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    let blocks: Vec<usize> = (0..5)
        .map(|_| pop(s, &c).unwrap().as_ptr() as usize)
        .collect();
    // A local free first, so the drain must walk to link behind it.
    assert_eq!(free_local(s, blocks[4]), Freed::Ok { claimed: false });
    for &b in &blocks[..4] {
        assert_eq!(s.free_remote(b), Freed::Ok { claimed: false });
    }
    forge_link(s, blocks[3], raw_link_to(s, blocks[0]) + 1);
    assert_eq!(drain(s, &c), 4);
    assert_eq!(
        c.load(Ordering::Relaxed),
        1,
        "the walk found the corrupt link"
    );
    let mut got = Vec::new();
    while let Some(p) = pop(s, &c) {
        got.push(p.as_ptr() as usize);
    }
    assert_eq!(
        &got[..2],
        &[blocks[3], blocks[4]],
        "walked part, then the local list"
    );
    assert!(!got.contains(&blocks[0]) && !got.contains(&blocks[1]));
}

#[test]
fn plain_mode_links_are_raw() {
    // What the hardening protects against: unhardened, a forged link is
    // followed (this is why `hardened` exists; the tests above fail without it).
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, false);
    let c = AtomicU64::new(0);
    let a = pop(s, &c).unwrap().as_ptr() as usize;
    let live = pop(s, &c).unwrap().as_ptr() as usize;
    assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
    forge_link(s, a, raw_link_to(s, live));
    assert_eq!(pop(s, &c).unwrap().as_ptr() as usize, a);
    assert_eq!(c.load(Ordering::Relaxed), 0);
    // The live block is handed out a second time: the damage. Its word says
    // `ALLOCATED`, which is no link, so the list ends there, counted.
    assert_eq!(pop(s, &c).unwrap().as_ptr() as usize, live);
    assert_eq!(c.load(Ordering::Relaxed), 1);
    // Even unhardened, a link past the slot array is refused.
    let b = pop(s, &c).unwrap().as_ptr() as usize;
    assert_eq!(free_local(s, b), Freed::Ok { claimed: false });
    forge_link(s, b, 0x7ff0);
    assert_eq!(pop(s, &c).unwrap().as_ptr() as usize, b);
    assert_eq!(c.load(Ordering::Relaxed), 2);
}

#[test]
fn use_after_free_writes_cannot_reach_the_freelist() {
    // Links live outside the blocks: scribbling over freed blocks (local and
    // remote frees) changes nothing the allocator reads, in either mode.
    for hardened in [false, true] {
        let g = Geometry::of(64, 8);
        let r = Region::new(&g);
        let s = slab(&g, &r, hardened);
        let c = AtomicU64::new(0);
        let blocks: Vec<usize> = (0..16)
            .map(|_| pop(s, &c).unwrap().as_ptr() as usize)
            .collect();
        for (i, &b) in blocks.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(free_local(s, b), Freed::Ok { claimed: false });
            } else {
                assert_eq!(s.free_remote(b), Freed::Ok { claimed: false });
            }
            // SAFETY: the whole 64-byte block lies in our test region.
            unsafe { core::ptr::write_bytes(b as *mut u8, 0xa5, 64) };
        }
        assert_eq!(drain(s, &c), 8);
        let mut got: Vec<usize> = (0..16)
            .map(|_| pop(s, &c).unwrap().as_ptr() as usize)
            .collect();
        got.sort_unstable();
        let mut want = blocks.clone();
        want.sort_unstable();
        assert_eq!(got, want, "hardened={hardened}");
        assert_eq!(c.load(Ordering::Relaxed), 0, "hardened={hardened}");
    }
}

#[test]
fn a_shape_that_knows_its_slabs_plain_skips_only_the_mode_test() {
    // The process-wide allocator's shapes say its slabs are plain
    // (`Shape::plain`): the mode is then not read, and must not matter.
    let g = Geometry::of(64, 8);
    let (rh, rp) = (Region::new(&g), Region::new(&g));
    let (hard, plain) = (slab(&g, &rh, true), slab(&g, &rp, false));
    let known = Shape {
        plain: true,
        ..plain.shape()
    };
    assert!(
        hard.hardened_in(hard.shape()),
        "a hardened slab's own shape"
    );
    assert!(!plain.hardened_in(plain.shape()));
    assert!(!hard.hardened_in(known), "the shape decides when it knows");
    // On a plain slab the known-plain paths write and follow raw links,
    // and keep the checks every mode has.
    let c = AtomicU64::new(0);
    let pop_known = || {
        // SAFETY: the test thread owns the slab.
        unsafe { plain.pop(known, &c) }.unwrap().as_ptr() as usize
    };
    let (a, b) = (pop_known(), pop_known());
    let free_known = |p: usize| {
        let idx = plain.slot_index(p, known).unwrap();
        // SAFETY: the test thread owns the slab; `idx` is one of its slots.
        unsafe { plain.free_local(idx, known) }
    };
    assert!(free_known(a).is_ok());
    assert!(free_known(b).is_ok());
    assert_eq!(word_of(plain, b), raw_link_to(plain, a), "a raw link");
    assert_eq!(free_known(b), Err(DoubleFree), "a double free is refused");
    assert_eq!((pop_known(), pop_known()), (b, a));
    assert_eq!(c.load(Ordering::Relaxed), 0);
    assert!(free_known(a).is_ok());
    forge_link(plain, a, 0x7ff0);
    assert_eq!(pop_known(), a);
    assert_eq!(
        c.load(Ordering::Relaxed),
        1,
        "a link past the slots is refused"
    );
}
