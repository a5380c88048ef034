//! Unit tests of the slab core: geometry, freelist, bump frontier, remote
//! list; corrupted links and hardening in `hardening`, slot words in
//! `words`.

use super::geometry::{GROWN_REGION, MIN_SLOTS, TARGET_SLOTS};
use super::*;

/// A region from the heap, aligned to its size, freed on drop.
struct Region {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Region {
    fn new(geo: &Geometry) -> Self {
        let layout = std::alloc::Layout::from_size_align(geo.region, geo.region).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Region { ptr, layout }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn slab(geo: &Geometry, region: &Region, hardened: bool) -> &'static Slab {
    slab_mode(geo, region, hardened, false)
}

/// [`slab`], of an object pool (`caching`) or not.
fn slab_mode(geo: &Geometry, region: &Region, hardened: bool, caching: bool) -> &'static Slab {
    // SAFETY: the region is ours, aligned and sized per `geo`.
    let s = unsafe {
        Slab::init(
            region.ptr as usize,
            geo,
            core::ptr::null(),
            core::ptr::null(),
            Mode {
                key: 0x5eed_1234_abcd_9876,
                hardened,
                zeroed: false,
                caching,
            },
        )
    };
    // SAFETY: the region outlives every use in the test (it drops last).
    unsafe { &*s.as_ptr() }
}

// Each test's thread is the only user of its slab: it is the owner.
fn pop(s: &Slab, c: &AtomicU64) -> Option<NonNull<u8>> {
    // SAFETY: the test thread owns the slab.
    unsafe { s.pop(s.shape(), c) }
}
fn free_local(s: &Slab, p: usize) -> Freed {
    let idx = s.slot_index(p, s.shape()).expect("a slot of this slab");
    // SAFETY: the test thread owns the slab; `idx` is one of its slots.
    match unsafe { s.free_local(idx, s.shape()) } {
        Ok(_) => Freed::Ok { claimed: false },
        Err(DoubleFree) => Freed::DoubleFree,
    }
}
/// A pop that also says what the slot held ([`Slab::pop_fresh`]).
fn pop_info(s: &Slab, c: &AtomicU64) -> Option<(usize, u16)> {
    // SAFETY: the test thread owns the slab.
    unsafe { s.pop_fresh(s.shape(), c) }.map(|(p, info)| (p.as_ptr() as usize, info))
}
/// The word of the slot at `block`.
fn word_of(s: &Slab, block: usize) -> u16 {
    s.read_link(s.slot_index(block, s.shape()).unwrap())
}
fn used(s: &Slab) -> usize {
    // SAFETY: the test thread owns the slab.
    unsafe { s.used() }
}
fn drain(s: &Slab, c: &AtomicU64) -> usize {
    // SAFETY: the test thread owns the slab.
    unsafe { s.drain(c) }
}

/// Overwrites the link of the free block at `block` with `raw` (what a stray
/// write into the slab's metadata would do; an attacker does not know the
/// key, so the raw value is what lands).
fn forge_link(s: &Slab, block: usize, raw: u16) {
    let idx = s.slot_index(block, s.shape()).unwrap();
    s.write_link(idx, raw);
}

/// The raw link to `block` (index + 1), unencoded.
fn raw_link_to(s: &Slab, block: usize) -> u16 {
    (s.slot_index(block, s.shape()).unwrap() + 1) as u16
}

fn in_slots(s: &Slab, p: usize) -> bool {
    s.slot_index(p, s.shape()).is_some()
}

#[test]
fn geometry_fits_and_aligns() {
    for (size, align) in [
        (1, 1),
        (8, 8),
        (24, 8),
        (64, 8),
        (100, 4),
        (1024, 8),
        (4096, 4096),
        (3, 2048),
        (70000, 8),
    ] {
        let g = Geometry::of(size, align);
        assert!(g.region.is_power_of_two());
        assert!(g.capacity >= MIN_SLOTS, "{size}/{align}: {g:?}");
        assert!(
            g.capacity >= TARGET_SLOTS || g.region >= GROWN_REGION,
            "{size}/{align}: {g:?}"
        );
        assert!(g.capacity <= u16::MAX as usize, "{size}/{align}: {g:?}");
        assert_eq!(g.slots_off % align.max(8), 0);
        assert!(g.slots_off + g.capacity * g.stride <= g.region);
        assert!(g.stride >= size && g.stride % align.max(8) == 0);
    }
}

#[test]
fn pop_all_free_all_reuse() {
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, false);
    let c = AtomicU64::new(0);
    let mut got = Vec::new();
    while let Some(p) = pop(s, &c) {
        assert!(in_slots(s, p.as_ptr() as usize));
        assert_eq!(p.as_ptr() as usize % 8, 0);
        got.push(p.as_ptr() as usize);
    }
    assert_eq!(got.len(), g.capacity);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "duplicate slots handed out");
    assert_eq!(used(s), g.capacity);
    for &p in &got {
        assert_eq!(free_local(s, p), Freed::Ok { claimed: false });
    }
    assert_eq!(used(s), 0);
    let mut again: Vec<usize> =
        std::iter::from_fn(|| pop(s, &c).map(|p| p.as_ptr() as usize)).collect();
    again.sort_unstable();
    assert_eq!(again, sorted, "freed slots are reused, and only those");
    assert_eq!(c.load(Ordering::Relaxed), 0);
}

#[test]
fn capacity_one() {
    let g = Geometry::of(64, 8).limited(1);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    let a = pop(s, &c).unwrap().as_ptr() as usize;
    assert!(pop(s, &c).is_none());
    assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
    let b = pop(s, &c).unwrap().as_ptr() as usize;
    assert_eq!(a, b);
    assert!(pop(s, &c).is_none());
}

/// Neighbouring region bases take every color; a colored slab's header
/// sits at its base's color, and at every color its slot words end before
/// slot 0, which every slot's address resolves back to the header from;
/// its entries name it back.
#[test]
fn headers_are_colored_by_their_base() {
    use super::resolve::{color, MAX_COLOR};
    let base = 0x7f12_3456_0000_usize;
    let colors: std::collections::BTreeSet<usize> = (0..64)
        .map(|i| color(base + i * geometry::MIN_REGION))
        .collect();
    assert_eq!(colors.len(), MAX_COLOR / 128 + 1, "{colors:?}");
    assert!(colors
        .iter()
        .all(|c| c % core::mem::align_of::<Slab>() == 0));
    assert_eq!(colors.last(), Some(&MAX_COLOR));
    for (size, align) in [(8, 8), (16, 16), (48, 16), (4096, 4096)] {
        let g = Geometry::colored(size, align);
        assert!(g.colored && g.shape().colored);
        assert!(MAX_COLOR + geometry::WORDS_OFF + 2 * g.capacity <= g.slots_off);
        // Regions until most colors showed up (the test allocator places them).
        let regions: Vec<Region> = (0..32).map(|_| Region::new(&g)).collect();
        for r in &regions {
            let s = slab(&g, r, false);
            let at = r.ptr as usize;
            assert_eq!(s as *const Slab as usize, at + color(at));
            assert_eq!(Slab::base_of(s), at);
            assert!(s.header_ok(g.shape()));
            let c = AtomicU64::new(0);
            for i in 0..g.capacity {
                let p = pop(s, &c).unwrap().as_ptr() as usize;
                assert_eq!(p, at + g.slots_off + i * g.stride);
                assert_eq!(p % align, 0);
                let header = Slab::of(p, g.region, g.shape());
                assert_eq!(header, s as *const Slab as *mut Slab);
                assert_eq!(Slab::of_entry(s.entry(i, true), true), (header, i));
                assert_eq!(Slab::of_any_entry(s.entry(i, true)), (header, i));
                assert_eq!(Slab::entry_base(s.entry(i, true)), at);
            }
            // SAFETY: the test is done with the slab.
            unsafe { Slab::destroy(NonNull::from(s)) };
        }
    }
}

/// A typed pool's slab (an uncolored geometry) keeps its header at the
/// region's base, and its slots where the base leaves room for no color.
#[test]
fn pool_headers_sit_at_the_base() {
    for (size, align) in [(8, 8), (16, 16), (48, 16), (4096, 4096)] {
        let g = Geometry::of(size, align);
        assert!(!g.colored && !g.shape().colored);
        assert!(g.capacity >= Geometry::colored(size, align).capacity);
        let regions: Vec<Region> = (0..8).map(|_| Region::new(&g)).collect();
        for r in &regions {
            for caching in [false, true] {
                let s = slab_mode(&g, r, false, caching);
                let at = r.ptr as usize;
                assert_eq!(s as *const Slab as usize, at);
                let c = AtomicU64::new(0);
                let p = pop(s, &c).unwrap().as_ptr() as usize;
                assert_eq!(p, at + g.slots_off);
                let header = Slab::of(p, g.region, s.shape());
                assert_eq!(header, s as *const Slab as *mut Slab);
                assert_eq!(s.entry(0, false), at);
                assert_eq!(Slab::of_entry(s.entry(0, false), false), (header, 0));
                assert_eq!(Slab::of_any_entry(s.entry(0, false)), (header, 0));
                // SAFETY: the test is done with the slab.
                unsafe { Slab::destroy(NonNull::from(s)) };
            }
        }
    }
}

#[test]
fn max_alignment() {
    let g = Geometry::of(4096, 4096);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    for _ in 0..g.capacity {
        let p = pop(s, &c).unwrap().as_ptr() as usize;
        assert_eq!(p % 4096, 0);
        assert!(p > r.ptr as usize, "the header page is not a slot");
    }
}

#[test]
fn double_free_detected_local_and_remote() {
    for hardened in [false, true] {
        let g = Geometry::of(32, 8);
        let r = Region::new(&g);
        let s = slab(&g, &r, hardened);
        let c = AtomicU64::new(0);
        let a = pop(s, &c).unwrap().as_ptr() as usize;
        let b = pop(s, &c).unwrap().as_ptr() as usize;
        assert_eq!(free_local(s, a), Freed::Ok { claimed: false });
        assert_eq!(free_local(s, a), Freed::DoubleFree);
        assert_eq!(s.free_remote(a), Freed::DoubleFree);
        assert_eq!(s.free_remote(b), Freed::Ok { claimed: false });
        assert_eq!(s.free_remote(b), Freed::DoubleFree);
        assert_eq!(free_local(s, b), Freed::DoubleFree);
        // Never-allocated slots are refused too.
        let never = Slab::base_of(s) + s.shape.slots_off as usize + 5 * s.shape.stride as usize;
        assert_eq!(s.free_remote(never), Freed::DoubleFree);
        assert_eq!(drain(s, &c), 1);
        assert_eq!(used(s), 0);
        // Each block comes back exactly once.
        let x = pop(s, &c).unwrap().as_ptr() as usize;
        let y = pop(s, &c).unwrap().as_ptr() as usize;
        let mut xy = [x, y];
        xy.sort_unstable();
        let mut ab = [a, b];
        ab.sort_unstable();
        assert_eq!(xy, ab);
    }
}

#[test]
fn foreign_pointers_refused() {
    let g = Geometry::of(48, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, false);
    let c = AtomicU64::new(0);
    let a = pop(s, &c).unwrap().as_ptr() as usize;
    for bad in [
        a + 1,
        a + 8,
        r.ptr as usize,
        r.ptr as usize + g.region + 64,
        8,
        usize::MAX - 7,
    ] {
        assert_eq!(s.slot_index(bad, s.shape()), None, "{bad:#x}");
    }
    // The way the frees take: header (shape, pool), then slot.
    let resolve = |addr: usize, shape: Shape, pool: Option<*const ()>| {
        let stride = shape.stride as usize;
        let tag = Slab::magic_tag(shape);
        let index =
            |off: usize, span: usize| (off < span && off % stride == 0).then_some(off / stride);
        // SAFETY: every address here lies in the region, whose header is mapped.
        unsafe { Slab::resolve(addr, !(g.region - 1), tag, pool, shape, index) }
    };
    let me = s as *const Slab as *mut Slab;
    assert_eq!(resolve(a, s.shape(), None), Resolved::Slot(me, 0));
    assert_eq!(resolve(a, s.shape(), Some(s.pool)), Resolved::Slot(me, 0));
    assert_eq!(resolve(a + 8, s.shape(), None), Resolved::NotASlot(me));
    assert_eq!(
        resolve(a, Geometry::of(64, 8).shape(), None),
        Resolved::NotASlab
    );
    assert_eq!(
        resolve(a, s.shape(), Some(8 as *const ())),
        Resolved::NotASlab
    );
    assert!(s.is_allocated(0) && !s.is_allocated(1));
    // A slab is recognised only with its own shape.
    assert!(s.header_ok(g.shape()));
    assert!(!s.header_ok(Geometry::of(64, 8).shape()));
    assert!(!s.header_ok(Geometry::of(40, 8).shape()));
    assert_eq!(s.slot_index(a, s.shape()), Some(0));
    assert_eq!(used(s), 1);
}

#[test]
fn remote_chain_is_pushed_once_and_spliced() {
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, true);
    let c = AtomicU64::new(0);
    let blocks: Vec<usize> = (0..6)
        .map(|_| pop(s, &c).unwrap().as_ptr() as usize)
        .collect();
    // One single push, then a chain of five, as a magazine sends home.
    assert_eq!(s.free_remote(blocks[5]), Freed::Ok { claimed: false });
    let mut chain: Option<Chain> = None;
    for &b in &blocks[..5] {
        let idx = s.slot_index(b, s.shape()).unwrap();
        chain = Some(match chain {
            None => {
                s.mark_remote(idx, 0).unwrap();
                Chain::one(idx)
            }
            Some(mut ch) => {
                s.mark_remote(idx, ch.first as usize + 1).unwrap();
                ch.first = idx as u16;
                ch.count += 1;
                ch
            }
        });
    }
    assert_eq!(
        s.mark_remote(s.slot_index(blocks[2], s.shape()).unwrap(), 0),
        Err(DoubleFree),
        "held is freed"
    );
    // SAFETY: the chain's blocks are held and linked.
    assert!(!unsafe { s.push_chain(chain.unwrap()) });
    assert_eq!(used(s), 6);
    assert_eq!(drain(s, &c), 6);
    assert_eq!(used(s), 0);
    let mut got: Vec<usize> = (0..6)
        .map(|_| pop(s, &c).unwrap().as_ptr() as usize)
        .collect();
    assert_eq!(c.load(Ordering::Relaxed), 0);
    got.sort_unstable();
    let mut want = blocks.clone();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn remote_free_into_detached_slab_is_claimed_once() {
    let g = Geometry::of(64, 8).limited(2);
    let r = Region::new(&g);
    let s = slab(&g, &r, false);
    let c = AtomicU64::new(0);
    let a = pop(s, &c).unwrap().as_ptr() as usize;
    let b = pop(s, &c).unwrap().as_ptr() as usize;
    assert!(pop(s, &c).is_none());
    assert!(s.try_detach());
    assert_eq!(s.free_remote(a), Freed::Ok { claimed: true });
    assert_eq!(s.free_remote(b), Freed::Ok { claimed: false });
    assert!(!s.try_reattach(), "already claimed by the first freer");
    assert_eq!(drain(s, &c), 2);
    assert_eq!(used(s), 0);
}

#[test]
fn detach_refused_while_remote_blocks_pending() {
    let g = Geometry::of(64, 8).limited(1);
    let r = Region::new(&g);
    let s = slab(&g, &r, false);
    let c = AtomicU64::new(0);
    let a = pop(s, &c).unwrap().as_ptr() as usize;
    assert_eq!(s.free_remote(a), Freed::Ok { claimed: false });
    assert!(!s.try_detach());
    assert_eq!(drain(s, &c), 1);
    assert!(s.try_detach());
    assert!(s.try_reattach());
}

#[test]
#[cfg(not(loom))]
fn read_mostly_header_fits_one_line() {
    let s = core::mem::MaybeUninit::<Slab>::uninit();
    let base = s.as_ptr() as usize;
    // SAFETY: only the field's address is computed; nothing is read.
    let last = unsafe { core::ptr::addr_of!((*s.as_ptr()).hardened) } as usize;
    assert!(
        last - base < 64,
        "read-mostly fields end at {}",
        last - base
    );
}

#[test]
fn fixed_header_fields_fit_one_line() {
    // Every alloc and free reads the fixed fields: they must share one line.
    let g = Geometry::of(64, 8);
    let r = Region::new(&g);
    let s = slab(&g, &r, false);
    let base = s as *const Slab as usize;
    let last = core::ptr::addr_of!(s.hardened) as usize;
    assert!(
        last + 1 - base <= 64,
        "fixed fields span {} bytes",
        last + 1 - base
    );
}

mod hardening;
mod words;
