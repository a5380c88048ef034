//! The `fork` handlers (Unix): every lock of the allocator, in lock order,
//! taken before the fork and released after it on both sides. Windows has
//! no `fork`: [`register`] does nothing there.

/// Portable but for `register`; on Windows nothing calls them but the
/// tests.
#[cfg_attr(not(unix), allow(dead_code))]
mod handlers {
    use super::super::CORE;
    use crate::sync::Ordering;
    use crate::thread;

    pub(super) fn each_lock(f: &mut dyn FnMut(&crate::sync::lock::RawLock)) {
        let p = CORE.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: the core is never freed.
            unsafe { &*p }.for_each_lock(&mut *f);
        }
        f(thread::ids_lock());
        #[cfg(not(miri))]
        f(&crate::meta::META_LOCK);
    }

    pub(super) extern "C" fn prepare() {
        each_lock(&mut |l| l.lock());
    }

    pub(super) extern "C" fn release() {
        // SAFETY: `prepare` took every one of them on this thread (in the
        // child, this thread is the copy of that one).
        each_lock(&mut |l| unsafe { l.force_unlock() });
    }

    #[cfg(unix)]
    pub(super) fn register() {
        // SAFETY: plain `extern "C"` functions that live as long as the
        // process. A failure (no memory) leaves fork unprotected; nothing
        // else depends on it.
        unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
    }
}

/// Registers the handlers (once the core is built).
pub(super) fn register() {
    #[cfg(unix)]
    handlers::register();
}

#[cfg(test)]
mod tests {
    use super::handlers::{each_lock, prepare, release};

    #[test]
    fn the_handlers_take_and_give_back_every_lock() {
        let mut n = 0;
        each_lock(&mut |_| n += 1);
        // At least the registry ids and the meta allocator's lock.
        assert!(n >= 2 - usize::from(cfg!(miri)));
        prepare();
        release();
        // All free again: each can be taken and released.
        each_lock(&mut |l| {
            l.lock();
            // SAFETY: taken just above.
            unsafe { l.force_unlock() };
        });
    }
}
