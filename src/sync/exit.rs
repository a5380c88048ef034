//! Thread exit: a thread-local whose [`OnExit::on_exit`] runs once when its
//! thread exits, if the thread armed it ([`ExitLocal::arm`]). Declared with
//! [`exit_local!`]; nothing here allocates from the global allocator. Also
//! the calling thread's identity ([`thread_id`]).
//!
//! Normally the value is a `const` `std` thread-local without a destructor
//! (so it stays readable while the thread is torn down), and the exit is
//! the platform's per-thread destructor:
//!
//! - Unix: a `pthread` key destructor. Creating the key and setting a value
//!   allocate nothing (glibc keeps the first 32 keys' values inside the
//!   thread, macOS all of them), and glibc runs key destructors after the
//!   thread's `thread_local!` destructors, which may therefore still
//!   allocate and free through homeslab.
//! - Windows: an `FlsAlloc` callback, which the OS runs when the thread
//!   exits (FLS slots live in the OS's own heap, not the global
//!   allocator's). Its order against `thread_local!` destructors is the
//!   OS's; an allocation after the exit ran goes to the shared tier. The
//!   slot is per fiber: on a thread that runs fibers, the exit runs when
//!   the fiber that armed it is deleted.
//!
//! Under loom the value is a loom thread-local whose `Drop` runs the exit:
//! loom takes every thread-local of an exiting thread before it drops any,
//! so the value is handed to `on_exit`, never looked up.

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

/// A number that identifies the calling thread among the running ones
/// (`pthread_self`, `GetCurrentThreadId`); never 0.
#[cfg(not(loom))]
pub(crate) fn thread_id() -> usize {
    key::thread_id()
}

/// Normally: a `std` thread-local and the platform's exit destructor.
#[cfg(not(loom))]
mod imp {
    use super::{key, OnExit};

    /// A thread-local `T` whose [`OnExit::on_exit`] runs when the thread
    /// exits, once armed. Only as a `static` declared with
    /// [`exit_local!`](super::exit_local).
    pub(crate) struct ExitLocal<T: OnExit> {
        local: &'static std::thread::LocalKey<T>,
        /// Runs `on_exit` on the calling thread's value; the thread's
        /// key value is the address of this field.
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
            key::set(&self.run)
        }
    }

    /// Runs the exit whose `run` field `value` points to (the destructor's
    /// half, for every platform).
    ///
    /// # Safety
    /// `value` is null or was passed to [`key::set`].
    pub(super) unsafe fn run_exit(value: *const fn()) {
        if !value.is_null() {
            // SAFETY: per the contract, the address of an `ExitLocal`'s
            // `run`, which lives in a `static`.
            let run = unsafe { *value };
            run();
        }
    }
}

/// The key (one per process, made on first use) whose per-thread value is
/// the armed exit: its index plus one in `KEY` (0: not made yet;
/// `usize::MAX`: the OS refused).
#[cfg(not(loom))]
mod key {
    use crate::sync::{AtomicUsize, Ordering};

    static KEY: AtomicUsize = AtomicUsize::new(0);

    /// The key, made by `create` on first use (`None`: it failed);
    /// `delete` drops a key that lost the race to be the one.
    pub(super) fn get_or_create(create: fn() -> Option<usize>, delete: fn(usize)) -> Option<usize> {
        match KEY.load(Ordering::Acquire) {
            0 => {}
            usize::MAX => return None,
            k => return Some(k - 1),
        }
        let Some(key) = create() else {
            let _ = KEY.compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire);
            return None;
        };
        match KEY.compare_exchange(0, key + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(key),
            Err(other) => {
                // Another thread made one first: use that one.
                delete(key);
                (other != usize::MAX).then(|| other - 1)
            }
        }
    }

    #[cfg(unix)]
    pub(super) use unix::{set, thread_id};
    #[cfg(windows)]
    pub(super) use windows::{set, thread_id};

    /// Unix: a `pthread` key with a destructor.
    #[cfg(unix)]
    mod unix {
        use super::super::imp::run_exit;

        extern "C" fn destructor(value: *mut libc::c_void) {
            // SAFETY: the OS passes the value `set` stored (never null:
            // destructors run only for non-null values).
            unsafe { run_exit(value.cast::<fn()>().cast_const()) };
        }

        fn create() -> Option<usize> {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: `key` is a valid out-pointer; the destructor is a
            // plain `extern "C"` function that lives as long as the process.
            let made = unsafe { libc::pthread_key_create(&mut key, Some(destructor)) } == 0;
            made.then_some(key as usize)
        }

        fn delete(key: usize) {
            // SAFETY: a key of ours that was never set on any thread.
            unsafe { libc::pthread_key_delete(key as libc::pthread_key_t) };
        }

        /// Arms `run` (a field of a `static`) for this thread's exit.
        pub(in crate::sync::exit) fn set(run: &'static fn()) -> bool {
            let Some(key) = super::get_or_create(create, delete) else {
                return false;
            };
            let value: *const fn() = run;
            // SAFETY: a valid key; the value outlives the thread.
            unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, value.cast()) == 0 }
        }

        pub(in crate::sync::exit) fn thread_id() -> usize {
            // SAFETY: `pthread_self` has no preconditions.
            unsafe { libc::pthread_self() as usize }
        }
    }

    /// Windows: a fiber-local storage slot with a callback, which the OS
    /// calls with the thread's value when the thread exits.
    #[cfg(windows)]
    mod windows {
        use core::ffi::c_void;

        use windows_sys::Win32::System::Threading::{
            FlsAlloc, FlsFree, FlsSetValue, GetCurrentThreadId, FLS_OUT_OF_INDEXES,
        };

        use super::super::imp::run_exit;

        unsafe extern "system" fn callback(value: *const c_void) {
            // SAFETY: the OS passes the value `set` stored, or null.
            unsafe { run_exit(value.cast::<fn()>()) };
        }

        fn create() -> Option<usize> {
            // SAFETY: the callback is a plain function that lives as long
            // as the process.
            let index = unsafe { FlsAlloc(Some(callback)) };
            (index != FLS_OUT_OF_INDEXES).then_some(index as usize)
        }

        fn delete(index: usize) {
            // SAFETY: a slot of ours that was never set on any thread.
            unsafe { FlsFree(index as u32) };
        }

        /// Arms `run` (a field of a `static`) for this thread's exit.
        pub(in crate::sync::exit) fn set(run: &'static fn()) -> bool {
            let Some(index) = super::get_or_create(create, delete) else {
                return false;
            };
            let value: *const fn() = run;
            // SAFETY: a valid slot; the value outlives the thread.
            unsafe { FlsSetValue(index as u32, value.cast()) != 0 }
        }

        pub(in crate::sync::exit) fn thread_id() -> usize {
            // SAFETY: no preconditions.
            unsafe { GetCurrentThreadId() as usize }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::sync::{AtomicUsize, Ordering};

    use super::OnExit;

    static EXITS: AtomicUsize = AtomicUsize::new(0);

    struct Probe;

    impl OnExit for Probe {
        fn on_exit(&self) {
            EXITS.fetch_add(1, Ordering::SeqCst);
        }
    }

    exit_local! {
        static PROBE: Probe = Probe;
    }

    #[test]
    fn an_armed_thread_runs_its_exit_once() {
        let before = EXITS.load(Ordering::SeqCst);
        std::thread::spawn(|| {
            assert!(PROBE.arm());
            assert!(PROBE.arm());
            assert_eq!(PROBE.try_with(|_| 7), Some(7));
        })
        .join()
        .unwrap();
        // An unarmed thread runs nothing.
        std::thread::spawn(|| PROBE.try_with(|_| ()))
            .join()
            .unwrap();
        assert_eq!(EXITS.load(Ordering::SeqCst), before + 1);
    }

    #[test]
    fn thread_ids_differ_between_live_threads() {
        let me = super::thread_id();
        assert_ne!(me, 0);
        assert_eq!(me, super::thread_id());
        let other = std::thread::spawn(super::thread_id).join().unwrap();
        assert_ne!(other, 0);
        // The other thread has exited, but a live one never shares an id.
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(super::thread_id()).unwrap();
            std::thread::park();
        });
        assert_ne!(rx.recv().unwrap(), me);
        t.thread().unpark();
        t.join().unwrap();
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
