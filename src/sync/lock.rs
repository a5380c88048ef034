//! The lock: a three-state word (0 free, 1 held, 2 held with waiters),
//! spinning a little before it sleeps. Unlike `parking_lot` it never
//! allocates (no parking table, no thread-local with a destructor), so it
//! may sit on the global allocator's paths, and it can be released by a
//! thread that never took it — what the `fork` handlers need
//! ([`RawLock::force_unlock`]). It backs the facade's
//! [`Mutex`](super::Mutex) and [`StaticMutex`](super::StaticMutex) outside
//! loom; its word is a `core` atomic, so loom never models it.
//!
//! How a waiter sleeps ([`Park`]) is the platform's: a futex on Linux,
//! `WaitOnAddress` on Windows (neither allocates), and elsewhere (macOS,
//! whose address-wait calls are private API) [`Yield`]: it yields to the
//! scheduler until the word changes.
//!
//! Under loom it is only named ([`StaticMutex::raw`](super::StaticMutex)):
//! loom's mutexes stand in for it, and the `fork` handlers are not built.
#![cfg_attr(loom, allow(dead_code))]

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

/// How a waiter sleeps until the word may have changed, and is woken.
pub(crate) trait Park {
    /// Sleeps while `word` holds `expect` (may return early, spuriously).
    fn wait(word: &AtomicU32, expect: u32);
    /// Wakes one thread sleeping in [`Park::wait`] on `word`, if any.
    fn wake_one(word: &AtomicU32);
}

/// The platform's [`Park`].
#[cfg(target_os = "linux")]
pub(crate) type OsPark = Futex;
/// The platform's [`Park`].
#[cfg(windows)]
pub(crate) type OsPark = AddressWait;
/// The platform's [`Park`].
#[cfg(not(any(target_os = "linux", windows)))]
pub(crate) type OsPark = Yield;

/// A mutual-exclusion word; waiters sleep the `P` way.
#[derive(Debug)]
pub(crate) struct RawLock<P: Park = OsPark> {
    state: AtomicU32,
    park: PhantomData<fn() -> P>,
}

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;

impl<P: Park> RawLock<P> {
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU32::new(FREE),
            park: PhantomData,
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
            P::wait(&self.state, CONTENDED);
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
            P::wake_one(&self.state);
        }
    }
}

/// Linux: `FUTEX_WAIT`/`FUTEX_WAKE` on the word, process-private.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct Futex;

#[cfg(target_os = "linux")]
impl Park for Futex {
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
}

/// Windows: `WaitOnAddress`/`WakeByAddressSingle` on the word.
#[cfg(windows)]
#[derive(Debug)]
pub(crate) struct AddressWait;

#[cfg(windows)]
impl Park for AddressWait {
    fn wait(word: &AtomicU32, expect: u32) {
        use windows_sys::Win32::System::Threading::{WaitOnAddress, INFINITE};
        // SAFETY: both addresses are valid for 4 bytes for the call; the
        // OS only reads them, and sleeps only while they compare equal.
        unsafe {
            WaitOnAddress(
                (word as *const AtomicU32).cast(),
                (&expect as *const u32).cast(),
                4,
                INFINITE,
            )
        };
    }

    fn wake_one(word: &AtomicU32) {
        // SAFETY: only the word's address is named.
        unsafe {
            windows_sys::Win32::System::Threading::WakeByAddressSingle(
                (word as *const AtomicU32).cast(),
            )
        };
    }
}

/// Anywhere: no sleep, a yield to the scheduler while the word still holds
/// the value; waking is a no-op (the waiter looks again by itself).
#[derive(Debug)]
#[cfg_attr(any(target_os = "linux", windows), allow(dead_code))]
pub(crate) struct Yield;

impl Park for Yield {
    fn wait(word: &AtomicU32, expect: u32) {
        if word.load(Ordering::Relaxed) == expect {
            std::thread::yield_now();
        }
    }

    fn wake_one(_: &AtomicU32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts under the lock from several threads: no update is lost, and
    /// no two holders overlap.
    fn exclusive<P: Park>() {
        const ROUNDS: u32 = if cfg!(miri) { 50 } else { 2000 };
        let lock = RawLock::<P>::new();
        let inside = AtomicU32::new(0);
        let count = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..ROUNDS {
                        lock.lock();
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                        let n = count.load(Ordering::Relaxed);
                        count.store(n + 1, Ordering::Relaxed);
                        inside.fetch_sub(1, Ordering::Relaxed);
                        // SAFETY: taken just above.
                        unsafe { lock.force_unlock() };
                    }
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 4 * ROUNDS);
    }

    #[test]
    fn the_platform_lock_excludes() {
        exclusive::<OsPark>();
    }

    #[test]
    fn the_yielding_lock_excludes() {
        exclusive::<Yield>();
    }

    #[test]
    fn another_thread_may_release() {
        let lock = RawLock::<Yield>::new();
        lock.lock();
        // SAFETY: stands for this thread, which holds it (as a fork handler
        // does).
        std::thread::scope(|s| s.spawn(|| unsafe { lock.force_unlock() }).join().unwrap());
        lock.lock();
        // SAFETY: taken just above.
        unsafe { lock.force_unlock() };
    }
}
