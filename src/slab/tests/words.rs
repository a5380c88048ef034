//! Slot words beyond the freelist link: an object pool's constructed mark,
//! the held states (a magazine's, the owner's hot slot) and what hardened
//! mode accepts as a handed-out word.

use super::*;

#[test]
fn caching_slot_word_carries_the_constructed_state() {
    use super::held::HELD;
    for hardened in [false, true] {
        let g = Geometry::of(64, 8);
        let r = Region::new(&g);
        let s = slab_mode(&g, &r, hardened, true);
        let c = AtomicU64::new(0);
        let handed = ALLOCATED | CONSTRUCTED;
        // A frontier slot: handed out constructed (its getter constructs).
        let (a, info) = pop_info(s, &c).unwrap();
        assert_eq!((info, word_of(s, a)), (0, handed), "hardened={hardened}");
        assert!(s.is_allocated(s.slot_index(a, s.shape()).unwrap()));
        // Kept: the local free carries the mark from the word.
        assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
        assert_eq!(word_of(s, a) & (ALLOCATED | CONSTRUCTED), CONSTRUCTED);
        assert_eq!(free_local(s, a), Freed::DoubleFree);
        assert_eq!(pop_info(s, &c), Some((a, CONSTRUCTED)));
        assert_eq!(word_of(s, a), handed);
        // Given up: unconstructed, then freed without the mark.
        s.unconstruct(s.slot_index(a, s.shape()).unwrap());
        assert_eq!(word_of(s, a), ALLOCATED);
        assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
        assert_eq!(word_of(s, a) & (ALLOCATED | CONSTRUCTED), 0);
        assert_eq!(pop_info(s, &c), Some((a, 0)));
        assert_eq!(word_of(s, a), handed, "constructed again by its getter");
        // The remote free and a chain's push keep the mark; the drain too.
        let (b, _) = pop_info(s, &c).unwrap();
        assert_eq!(s.free_remote(b), Freed::Ok { claimed: false });
        assert_eq!(word_of(s, b) & CONSTRUCTED, CONSTRUCTED);
        assert_eq!(s.free_remote(b), Freed::DoubleFree);
        assert_eq!(drain(s, &c), 1);
        assert_eq!(pop_info(s, &c), Some((b, CONSTRUCTED)));
        s.unconstruct(s.slot_index(b, s.shape()).unwrap());
        assert_eq!(s.free_remote(b), Freed::Ok { claimed: false });
        assert_eq!(word_of(s, b) & CONSTRUCTED, 0);
        assert_eq!(drain(s, &c), 1);
        assert_eq!(pop_info(s, &c), Some((b, 0)));
        // Held in a magazine: `HELD` plus the mark; refused as a double
        // free; handed out again as it was.
        let idx = s.slot_index(b, s.shape()).unwrap();
        assert_eq!(s.hold(idx), Ok(()));
        assert_eq!(word_of(s, b), HELD | CONSTRUCTED);
        assert_eq!(s.hold(idx), Err(DoubleFree));
        assert_eq!(s.mark_remote(idx, 0), Err(DoubleFree));
        assert_eq!(free_local(s, b), Freed::DoubleFree);
        let (p, info) = s.unhold(idx, s.shape(), &c).unwrap();
        assert_eq!((p.as_ptr() as usize, info), (b, CONSTRUCTED));
        assert_eq!(word_of(s, b), handed);
        s.unconstruct(idx);
        assert_eq!(s.hold(idx), Ok(()));
        assert_eq!(word_of(s, b), HELD);
        let (_, info) = s.unhold(idx, s.shape(), &c).unwrap();
        assert_eq!((info, word_of(s, b)), (0, handed));
        // Reclaim finds exactly the free slots that kept their objects.
        let (d, _) = pop_info(s, &c).unwrap();
        assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
        s.unconstruct(s.slot_index(b, s.shape()).unwrap());
        assert_eq!(free_local(s, b), Freed::Ok { claimed: false });
        assert_eq!(free_local(s, d), Freed::Ok { claimed: false });
        let mut found = Vec::new();
        // SAFETY: the test thread is the slab's only user.
        unsafe { s.take_constructed(|p| found.push(p as usize)) };
        found.sort_unstable();
        let mut want = vec![a, d];
        want.sort_unstable();
        assert_eq!(found, want, "hardened={hardened}");
        assert_eq!(c.load(Ordering::Relaxed), 0, "hardened={hardened}");
    }
}

#[test]
fn plain_slot_words_never_carry_the_mark() {
    for hardened in [false, true] {
        let g = Geometry::of(64, 8);
        let r = Region::new(&g);
        let s = slab(&g, &r, hardened);
        let c = AtomicU64::new(0);
        let (a, info) = pop_info(s, &c).unwrap();
        assert_eq!((info, word_of(s, a)), (0, ALLOCATED));
        assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
        assert_eq!(pop_info(s, &c), Some((a, 0)));
        assert_eq!(word_of(s, a), ALLOCATED);
        assert_eq!(s.free_remote(a), Freed::Ok { claimed: false });
        assert_eq!(word_of(s, a) & CONSTRUCTED, 0);
    }
}

#[test]
fn hardened_remote_and_held_frees_take_only_a_handed_out_word() {
    // Hardened, the remote mark and the hold swap the word only from what a
    // slot of its slab holds while handed out: `ALLOCATED`, or with the
    // constructed mark in an object pool's slab. A word forged to anything
    // else with the top bit is refused as a double free.
    for caching in [false, true] {
        let g = Geometry::of(64, 8);
        let r = Region::new(&g);
        let s = slab_mode(&g, &r, true, caching);
        let c = AtomicU64::new(0);
        let (a, _) = pop_info(s, &c).unwrap();
        let idx = s.slot_index(a, s.shape()).unwrap();
        let mut forged = vec![ALLOCATED | 0x123, ALLOCATED | CONSTRUCTED | 1];
        if !caching {
            forged.push(ALLOCATED | CONSTRUCTED);
        }
        for w in forged {
            s.write_link(idx, w);
            assert_eq!(s.hold(idx), Err(DoubleFree), "{w:#x}, caching={caching}");
            assert_eq!(s.mark_remote(idx, 0), Err(DoubleFree), "{w:#x}");
            assert_eq!(s.read_link(idx), w, "a refused free leaves the word");
        }
        s.write_link(idx, s.shape().handed_out_word());
        assert_eq!(s.hold(idx), Ok(()));
    }
}

/// The owner's own held slot (a heap's hot slot) goes back on the local
/// freelist with its mark; hardened, a word a stray write changed is
/// counted and the slot given up: no list names it, no free takes it, and
/// the slab no longer counts it, so it can empty.
#[test]
fn an_owners_held_slot_goes_back_or_is_given_up_when_corrupted() {
    let geo = Geometry::of(64, 8);
    for hardened in [false, true] {
        let region = Region::new(&geo);
        let s = slab(&geo, &region, hardened);
        let c = AtomicU64::new(0);
        let a = pop(s, &c).unwrap().as_ptr() as usize;
        let b = pop(s, &c).unwrap().as_ptr() as usize;
        let ia = s.slot_index(a, s.shape()).unwrap();
        // SAFETY: the test thread owns the slab.
        unsafe { s.hold_own(ia) }.unwrap();
        assert_eq!(
            free_local(s, a),
            Freed::DoubleFree,
            "a held slot is not handed out"
        );
        // SAFETY: the test thread owns the slab and holds slot `ia`.
        assert!(!unsafe { s.free_held_local(ia, &c) }, "b is still used");
        assert_eq!((used(s), c.load(Ordering::Relaxed)), (1, 0));
        assert_eq!(
            pop(s, &c).unwrap().as_ptr() as usize,
            a,
            "back on the freelist"
        );
        if !hardened {
            continue;
        }
        // The hold, then a stray write over the held word.
        // SAFETY: the test thread owns the slab.
        unsafe { s.hold_own(ia) }.unwrap();
        forge_link(s, a, 0x0123);
        // SAFETY: as above.
        assert!(!unsafe { s.free_held_local(ia, &c) });
        assert_eq!(
            (used(s), c.load(Ordering::Relaxed)),
            (1, 1),
            "counted, given up"
        );
        assert_eq!(word_of(s, a), held::HELD);
        assert_eq!(free_local(s, a), Freed::DoubleFree, "no free takes it");
        assert_eq!(free_local(s, b), Freed::Ok { claimed: false });
        assert_eq!(used(s), 0, "the slab can empty");
        let again: Vec<usize> =
            std::iter::from_fn(|| pop(s, &c).map(|p| p.as_ptr() as usize)).collect();
        assert!(!again.contains(&a), "no list names the lost slot");
        assert_eq!(again.len(), s.capacity as usize - 1);
    }
}
