//! A mutex that can be a `static` in every build ([`StaticMutex`], declared
//! with [`static_mutex!`]): the facade's [`Mutex`](super::Mutex) normally,
//! whose futex word the `fork` handlers can take; under loom, where a loom
//! mutex cannot be built in a constant, loom's, one per execution.
//!
//! Under loom the lock and its value live in a loom `lazy_static`: made on
//! first use in each execution and dropped when the model's closure
//! returns, so every execution starts from the initial value and the models
//! the test harness runs side by side share nothing. loom models the lock,
//! so what one holder wrote before unlocking happens-before what the next
//! holder reads — what a thread taking an exited thread's registry id relies
//! on. Like `std::sync::Once`, the `lazy_static` also makes its first
//! user's initialisation happen-before every later use; its first user is
//! the execution's first thread to take a registry id. A thread torn down
//! after the execution's statics are gone (the model's main thread, whose
//! thread-locals loom drops after them, or a joined thread: loom's `join`
//! does not wait for its thread-locals) runs its closure on a fresh value
//! that is then discarded: nothing is left to observe it.

pub(crate) use imp::StaticMutex;

/// Declares `static $name: StaticMutex<$t>` holding `$init` (a constant
/// expression).
macro_rules! static_mutex {
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(loom))]
        $(#[$attr])*
        $vis static $name: $crate::sync::StaticMutex<$t> = $crate::sync::StaticMutex::new($init);
        #[cfg(loom)]
        $(#[$attr])*
        $vis static $name: $crate::sync::StaticMutex<$t> = {
            fn init() -> $t {
                $init
            }
            loom::lazy_static! {
                static ref CURRENT: $crate::sync::static_mutex::imp::Scoped<$t> =
                    $crate::sync::static_mutex::imp::Scoped::new(init());
            }
            fn current() -> $crate::sync::static_mutex::imp::Shared<$t> {
                CURRENT.0.clone()
            }
            $crate::sync::StaticMutex::new(current, init)
        };
    };
}
pub(crate) use static_mutex;

/// Normally: the facade's futex mutex.
#[cfg(not(loom))]
mod imp {
    use crate::sync::lock::RawLock;
    use crate::sync::Mutex;

    /// A mutex usable as a `static`, declared with
    /// [`static_mutex!`](super::static_mutex).
    pub(crate) struct StaticMutex<T: 'static>(Mutex<T>);

    impl<T> StaticMutex<T> {
        /// For `static_mutex!`.
        pub(crate) const fn new(value: T) -> Self {
            Self(Mutex::new(value))
        }

        /// Runs `f` on the value under the lock. `f` must not lock it again.
        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            f(&mut self.0.lock())
        }

        /// The lock word, for the `fork` handlers.
        pub(crate) fn raw(&self) -> &RawLock {
            self.0.raw()
        }
    }
}

/// Under loom: loom's mutex, one per execution.
#[cfg(loom)]
pub(crate) mod imp {
    use core::cell::Cell;

    use crate::sync::lock::RawLock;

    /// A mutex usable as a `static`, declared with
    /// [`static_mutex!`](super::static_mutex).
    pub(crate) struct StaticMutex<T: 'static> {
        /// The lock word for [`StaticMutex::raw`]; loom builds, which have
        /// no `fork` handlers, never take it.
        raw: RawLock,
        /// This execution's lock and value.
        current: fn() -> Shared<T>,
        /// The initial value.
        init: fn() -> T,
    }

    impl<T> StaticMutex<T> {
        /// For `static_mutex!`.
        pub(crate) const fn new(current: fn() -> Shared<T>, init: fn() -> T) -> Self {
            Self {
                raw: RawLock::new(),
                current,
                init,
            }
        }

        /// Runs `f` on the value under the lock. `f` must not lock it again.
        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            if is_over() {
                return f(&mut (self.init)());
            }
            let current = (self.current)();
            let mut g = current.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut g)
        }

        /// The lock word, for the `fork` handlers.
        pub(crate) fn raw(&self) -> &RawLock {
            &self.raw
        }
    }

    std::thread_local! {
        /// Set when an execution's statics are dropped, cleared by the next
        /// execution's first use. Per OS thread: loom runs a whole model on
        /// the thread that called `loom::model`.
        static ENDED: Cell<bool> = const { Cell::new(false) };
    }

    loom::thread_local! {
        /// Touched by each use, so that it is gone (not made anew) once
        /// loom tears the using thread down.
        static USED: () = ();
    }

    /// One execution's lock and value, shared so that a thread that took
    /// it before the execution's statics were dropped (one preempted while
    /// being torn down) can still finish with it.
    pub(crate) type Shared<T> = std::sync::Arc<loom::sync::Mutex<T>>;

    /// The static holding one execution's [`Shared`]; dropping it marks the
    /// execution's end.
    pub(crate) struct Scoped<T>(pub(crate) Shared<T>);

    impl<T> Scoped<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std::sync::Arc::new(loom::sync::Mutex::new(value)))
        }
    }

    impl<T> Drop for Scoped<T> {
        fn drop(&mut self) {
            ENDED.with(|e| e.set(true));
        }
    }

    /// True for a thread torn down after its execution's statics were
    /// dropped. After they were, the only users are such threads — a use
    /// from a thread still running is the next execution's first.
    fn is_over() -> bool {
        let torn_down = USED.try_with(|_| ()).is_err();
        ENDED.with(|e| {
            if e.get() && !torn_down {
                e.set(false);
            }
            e.get()
        })
    }
}
