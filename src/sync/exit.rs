//! Thread exit: a thread-local whose [`OnExit::on_exit`] runs once when its
//! thread exits, if the thread armed it ([`ExitLocal::arm`]). Declared with
//! [`exit_local!`]; nothing here allocates from the global allocator.
//!
//! Normally the value is a `const` `std` thread-local without a destructor
//! (so it stays readable while the thread is torn down), and the exit is a
//! `pthread` key destructor: creating the key and setting a value allocate
//! nothing (glibc keeps the first 32 keys' values inside the thread), and
//! glibc runs key destructors after the thread's `thread_local!`
//! destructors, which may therefore still allocate and free through
//! homeslab. Under loom the value is a loom thread-local whose `Drop` runs
//! the exit: loom takes every thread-local of an exiting thread before it
//! drops any, so the value is handed to `on_exit`, never looked up.

pub(crate) use imp::ExitLocal;

/// Per-thread state with something to do when its thread exits.
pub(crate) trait OnExit: 'static {
    /// Runs once, when an armed thread exits. Thread-locals other than
    /// this value may already be gone.
    fn on_exit(&self);
}

/// Declares `static $name: ExitLocal<$t>` with the initial value `$init`
/// (a constant expression).
macro_rules! exit_local {
    ($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(loom))]
        $(#[$attr])*
        static $name: $crate::sync::exit::ExitLocal<$t> = {
            std::thread_local! { static LOCAL: $t = const { $init }; }
            fn run() {
                let _ = LOCAL.try_with(<$t as $crate::sync::exit::OnExit>::on_exit);
            }
            $crate::sync::exit::ExitLocal::new(&LOCAL, run)
        };
        #[cfg(loom)]
        $(#[$attr])*
        static $name: $crate::sync::exit::ExitLocal<$t> = {
            loom::thread_local! {
                static LOCAL: $crate::sync::exit::imp::Armed<$t> =
                    $crate::sync::exit::imp::Armed::new($init);
            }
            $crate::sync::exit::ExitLocal::new(&LOCAL)
        };
    };
}
pub(crate) use exit_local;

/// Normally: a `std` thread-local and a `pthread` key destructor.
#[cfg(not(loom))]
mod imp {
    use super::OnExit;
    use crate::sync::{AtomicUsize, Ordering};

    /// A thread-local `T` whose [`OnExit::on_exit`] runs when the thread
    /// exits, once armed. Only as a `static` declared with
    /// [`exit_local!`](super::exit_local).
    pub(crate) struct ExitLocal<T: OnExit> {
        local: &'static std::thread::LocalKey<T>,
        /// Runs `on_exit` on the calling thread's value; the thread's
        /// `pthread` value is the address of this field.
        run: fn(),
    }

    impl<T: OnExit> ExitLocal<T> {
        /// For `exit_local!`: `run` calls `on_exit` on `local`'s value.
        pub(crate) const fn new(local: &'static std::thread::LocalKey<T>, run: fn()) -> Self {
            Self { local, run }
        }

        /// Runs `f` on this thread's value; `None` once it is gone.
        #[inline(always)]
        pub(crate) fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Option<R> {
            self.local.try_with(f).ok()
        }

        /// Makes `on_exit` run when this thread exits (arming twice is
        /// harmless). False if it cannot be armed.
        pub(crate) fn arm(&'static self) -> bool {
            let Some(key) = key() else {
                return false;
            };
            let value: *const fn() = &self.run;
            // SAFETY: a valid key; the value is the address of a field of a
            // `static`, as `destructor` expects.
            unsafe { libc::pthread_setspecific(key, value.cast()) == 0 }
        }
    }

    /// The `pthread` key plus one (0: not created yet; `usize::MAX`:
    /// creation failed).
    static KEY: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn destructor(value: *mut libc::c_void) {
        // SAFETY: `ExitLocal::arm` set the value to the address of an
        // `ExitLocal`'s `run`, which lives in a `static`.
        let run = unsafe { *value.cast::<fn()>() };
        run();
    }

    /// The key whose destructor runs the exits, created on first use.
    fn key() -> Option<libc::pthread_key_t> {
        match KEY.load(Ordering::Acquire) {
            0 => {}
            usize::MAX => return None,
            k => return Some((k - 1) as libc::pthread_key_t),
        }
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor is a plain
        // `extern "C"` function that lives as long as the process.
        if unsafe { libc::pthread_key_create(&mut key, Some(destructor)) } != 0 {
            let _ = KEY.compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire);
            return None;
        }
        match KEY.compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(key),
            Err(other) => {
                // Another thread created one first: use that one.
                // SAFETY: our key was never set on any thread.
                unsafe { libc::pthread_key_delete(key) };
                (other != usize::MAX).then(|| (other - 1) as libc::pthread_key_t)
            }
        }
    }
}

/// Under loom: a loom thread-local whose `Drop` runs the exit.
#[cfg(loom)]
pub(crate) mod imp {
    use core::cell::Cell;

    use super::OnExit;

    /// A thread-local `T` whose [`OnExit::on_exit`] runs when the thread
    /// exits, once armed. Only as a `static` declared with
    /// [`exit_local!`](super::exit_local).
    pub(crate) struct ExitLocal<T: OnExit> {
        local: &'static loom::thread::LocalKey<Armed<T>>,
    }

    impl<T: OnExit> ExitLocal<T> {
        /// For `exit_local!`.
        pub(crate) const fn new(local: &'static loom::thread::LocalKey<Armed<T>>) -> Self {
            Self { local }
        }

        /// Runs `f` on this thread's value; `None` once it is gone.
        #[inline(always)]
        pub(crate) fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Option<R> {
            self.local.try_with(|a| f(&a.value)).ok()
        }

        /// Makes `on_exit` run when this thread exits. False if it cannot
        /// be armed.
        pub(crate) fn arm(&'static self) -> bool {
            self.local.try_with(|a| a.armed.set(true)).is_ok()
        }
    }

    /// The value and whether its thread armed it.
    pub(crate) struct Armed<T: OnExit> {
        value: T,
        armed: Cell<bool>,
    }

    impl<T: OnExit> Armed<T> {
        /// For `exit_local!`.
        pub(crate) fn new(value: T) -> Self {
            Self {
                value,
                armed: Cell::new(false),
            }
        }
    }

    impl<T: OnExit> Drop for Armed<T> {
        fn drop(&mut self) {
            if self.armed.get() {
                self.value.on_exit();
            }
        }
    }
}
