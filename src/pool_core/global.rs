//! What the process-wide allocator ([`crate::global`]) needs of a pool
//! core beyond what every pool uses: its page-map tag and its locks for
//! the `fork` handlers. Kept apart from the core's own code.

use super::PoolCore;

impl PoolCore {
    /// Tags class `c`'s chunks in the process-wide page map (see
    /// [`crate::pagemap`]) with `tag`, from now on. Call before first use.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn set_page_tag(&self, c: usize, tag: u8) {
        self.factory(c).source().set_tag(tag);
    }

    /// Runs `f` on each lock of this core above its page sources, in lock
    /// order (magazine sweeps, tier): the `fork` prepare handler takes them
    /// all, the parent and child handlers release them. The page sources'
    /// locks ([`PoolCore::source_locks`]) come after these of *every* core
    /// of a budget, and after the budget's: a slow path holding this
    /// core's locks may run the budget's sweep, which takes the budget's
    /// lock and then each source's.
    #[cfg(not(loom))]
    pub(crate) fn for_each_lock(&self, mut f: impl FnMut(&crate::sync::lock::RawLock)) {
        // A sweep takes the tier's lock inside its own (when it sends blocks
        // home to a closed pool), so its lock comes first. Held across the
        // fork, it also means no steal is half done: no magazine's owner in
        // the child waits for a thief that does not exist there.
        f(self.sweeping.raw());
        f(self.tier.raw_lock());
    }

    /// Runs `f` on each class's page-source lock, for the `fork` handlers
    /// (see [`PoolCore::for_each_lock`]).
    #[cfg(not(loom))]
    pub(crate) fn source_locks(&self, mut f: impl FnMut(&crate::sync::lock::RawLock)) {
        for factory in self.factories.iter() {
            f(factory.source().raw_lock());
        }
    }
}
