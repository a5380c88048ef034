//! What the process-wide allocator ([`crate::global`]) needs of a pool
//! core beyond what every pool uses: its page-map tag and its locks for
//! the `fork` handlers. Kept apart from the core's own code.

use super::Shared;

impl Shared {
    /// Tags this core's chunks in the process-wide page map (see
    /// [`crate::pagemap`]) with `tag`, from now on. Call before first use.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn set_page_tag(&self, tag: u8) {
        self.source.set_tag(tag);
    }

    /// Runs `f` on each lock of this core, in lock order (tier, then page
    /// source): the `fork` prepare handler takes them all, the parent and
    /// child handlers release them.
    #[cfg(not(loom))]
    pub(crate) fn for_each_lock(&self, mut f: impl FnMut(&crate::sync::lock::RawLock)) {
        f(self.tier.raw_lock());
        f(self.source.raw_lock());
    }
}
