//! [`SlabAllocBuilder`]: a [`SlabAlloc`]'s settings, validated and built
//! into its size classes' core, its class descriptors and its large
//! blocks.

use super::{geom, Class, Inner, SlabAlloc};
use crate::class::{self, CLASSES, MAX_CLASS};
use crate::config::{knob_setters, Config, Knobs};
use crate::error::ConfigError;
use crate::large::Large;
use crate::meta::Arc;
use crate::pool_core::PoolCore;
use crate::source::Budget;
use crate::sync::AtomicU64;

/// Validated [`SlabAlloc`] configuration. Every setting has a default;
/// `build` checks them all.
#[derive(Debug, Clone)]
pub struct SlabAllocBuilder {
    knobs: Knobs,
    huge_pages: bool,
}

impl SlabAllocBuilder {
    knob_setters!();

    /// The defaults.
    pub(super) fn new() -> Self {
        Self {
            knobs: Knobs::new(),
            huge_pages: true,
        }
    }

    /// Large blocks in memory that asks the OS for huge pages (default
    /// on): on Linux the large arena's chunks are aligned to 2 MiB and
    /// advised `MADV_HUGEPAGE`, as is each mapping of its own, so that
    /// the kernel (where transparent huge pages are `madvise` or
    /// `always`) backs each aligned 2 MiB of them with one page: fewer
    /// page faults and TLB misses for big buffers and tables. A large
    /// block may then make a whole 2 MiB resident; purging and `trim()`
    /// give the pages back as before. No effect elsewhere.
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.huge_pages = on;
        self
    }

    /// Validates the configuration and builds the allocator.
    pub fn build(self) -> Result<SlabAlloc, ConfigError> {
        self.build_core(false)
    }

    /// [`SlabAllocBuilder::build`] for the process-wide allocator
    /// ([`crate::Global`]): its core takes the thread-context entry kept
    /// for it, which [`SlabAlloc::alloc_global_inline`] reads. Never
    /// hardened: its inline paths take its slabs as plain
    /// ([`Shape::plain`]).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn build_global(mut self) -> Result<SlabAlloc, ConfigError> {
        self.knobs.hardened = false;
        self.build_core(true)
    }

    fn build_core(self, global: bool) -> Result<SlabAlloc, ConfigError> {
        let largest = (0..CLASSES)
            .map(|c| class::geometry(c).region)
            .max()
            .unwrap_or(MAX_CLASS);
        let max_bytes = self.knobs.check(largest)?;
        let budget = Arc::new(Budget::new(max_bytes, self.knobs.release_after));
        let configs: [Config; CLASSES] =
            core::array::from_fn(|c| self.knobs.config(class::geometry(c)));
        let core = PoolCore::build_classes(&configs, budget.clone(), None, global);
        let (at, id) = core.context_key();
        let classes = core::array::from_fn(|c| Class {
            at,
            id,
            geom: *geom(c),
        });
        let inner = Arc::new(Inner {
            classes,
            core,
            large: Large::new(budget.clone(), self.huge_pages),
            budget,
            foreign: AtomicU64::new(0),
        });
        // SAFETY: the arena lives in `Inner`, which stays in its `Arc` until
        // dropped there.
        unsafe { inner.large.join() };
        Ok(SlabAlloc { inner })
    }
}
