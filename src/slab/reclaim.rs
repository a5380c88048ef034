//! Walking a slab's free slots' words when it is reclaimed (an object
//! pool's constructed objects) or, for the fuzz targets, corrupted on
//! purpose (feature `test-hooks`).

use super::{asan, handed_out, Slab, CONSTRUCTED};

impl Slab {
    /// Runs `f` on every free slot that holds a constructed object (its
    /// word has the [`CONSTRUCTED`] mark), clearing the mark.
    ///
    /// # Safety
    /// The slab is empty and on no list (being released): nobody else
    /// touches its slots or words.
    pub(crate) unsafe fn take_constructed(&self, mut f: impl FnMut(*mut u8)) {
        // SAFETY: per the contract we stand for the owner.
        let bump = unsafe { self.local(|l| l.bump) };
        for idx in 0..bump {
            let w = self.read_link(idx);
            if !handed_out(w) && w & CONSTRUCTED != 0 {
                self.write_link(idx, w & !CONSTRUCTED);
                // The object is read by its destructor: no longer poisoned.
                asan::mark(self.slot(idx), self.shape.stride as usize, false);
                // SAFETY: `idx` is below the frontier, so its slot lies in
                // the region.
                f(unsafe {
                    self.base(self.shape)
                        .add(self.shape.slots_off as usize + idx * self.shape.stride as usize)
                });
            }
        }
    }

    /// Test hook (feature `test-hooks`): stores `raw` into the word of the
    /// `nth` (modulo their number) slot below the frontier that is not
    /// handed out, as a stray write into the metadata would; returns the
    /// word it replaced, `None` if there is no such slot.
    ///
    /// # Safety
    /// The caller is the owner and no other thread uses the slab meanwhile.
    #[cfg(feature = "test-hooks")]
    pub(crate) unsafe fn overwrite_free_word(&self, nth: usize, raw: u16) -> Option<u16> {
        // SAFETY: the caller is the owner.
        let bump = unsafe { self.local(|l| l.bump) };
        let free = || (0..bump).filter(|&i| !handed_out(self.read_link(i)));
        let idx = free().nth(nth % free().count().max(1))?;
        let old = self.read_link(idx);
        self.write_link(idx, raw);
        Some(old)
    }
}
