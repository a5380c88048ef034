//! Proof that the ThreadSanitizer run (`.ci/sanitizers.sh`) sees accesses
//! to homeslab's blocks: the test races two threads on one pooled block,
//! which TSan must report; the script runs it alone, built with
//! `-Zsanitizer=thread`, and requires it to *fail* with the report its
//! `ignore` reason names. Ignored everywhere else.

use std::ptr::NonNull;

use homeslab::Pool;

/// A block's address, sent to another thread without any synchronisation
/// of the block's contents.
struct Raw(NonNull<u64>);
// SAFETY: none for the data race below: that is the mistake TSan must catch.
unsafe impl Send for Raw {}

#[test]
#[ignore = "expects TSan: data race"]
fn a_race_on_a_pooled_block_is_reported() {
    let pool = Pool::<u64>::new();
    let mut b = pool.alloc(0).unwrap();
    let raw = Raw(NonNull::from(&mut *b));
    let t = std::thread::spawn(move || {
        let raw = raw;
        for i in 0..10_000 {
            // SAFETY: none (see `Raw`).
            unsafe { raw.0.as_ptr().write_volatile(i) };
        }
    });
    for i in 0..10_000 {
        // SAFETY: none (see `Raw`).
        unsafe { NonNull::from(&mut *b).as_ptr().write_volatile(i) };
    }
    t.join().unwrap();
    println!("raced on a block: NOT DETECTED");
}
