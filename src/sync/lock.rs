//! The futex lock: a three-state futex word (0 free, 1 held, 2 held with
//! waiters), spinning a little before it sleeps. Unlike `parking_lot` it
//! never allocates (no parking table, no thread-local with a destructor),
//! so it may sit on the global allocator's paths, and it can be released by
//! a thread that never took it — what the `fork` handlers need
//! ([`RawLock::force_unlock`]). It backs the facade's
//! [`Mutex`](super::Mutex) and [`StaticMutex`](super::StaticMutex) outside
//! loom; its word is a `core` atomic, so loom never models it.
//!
//! Under loom it is only named ([`StaticMutex::raw`](super::StaticMutex)):
//! loom's mutexes stand in for it, and the `fork` handlers are not built.
#![cfg_attr(loom, allow(dead_code))]

use core::sync::atomic::{AtomicU32, Ordering};

/// A mutual-exclusion word.
#[derive(Debug)]
pub(crate) struct RawLock {
    state: AtomicU32,
}

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;

impl RawLock {
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU32::new(FREE),
        }
    }

    /// Takes the lock.
    #[inline]
    pub(crate) fn lock(&self) {
        if self
            .state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[cold]
    fn lock_slow(&self) {
        for _ in 0..64 {
            if self.state.load(Ordering::Relaxed) == FREE
                && self
                    .state
                    .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            core::hint::spin_loop();
        }
        while self.state.swap(CONTENDED, Ordering::Acquire) != FREE {
            wait(&self.state, CONTENDED);
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The caller holds it (or, in a `fork` handler, stands for the thread
    /// that took it in the prepare handler).
    #[inline]
    pub(crate) unsafe fn force_unlock(&self) {
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            wake_one(&self.state);
        }
    }
}

#[cfg(target_os = "linux")]
fn wait(word: &AtomicU32, expect: u32) {
    // SAFETY: FUTEX_WAIT reads the word at a valid, aligned address and
    // sleeps only while it still holds `expect`; no memory is written.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expect,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

#[cfg(target_os = "linux")]
fn wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only names the word's address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn wait(word: &AtomicU32, expect: u32) {
    if word.load(Ordering::Relaxed) == expect {
        std::thread::yield_now();
    }
}

#[cfg(not(target_os = "linux"))]
fn wake_one(_: &AtomicU32) {}
