//! The process-wide fence behind [`heavy_fence`](super::heavy_fence): it
//! makes every running thread of the process execute a full memory barrier
//! (a thread that is not running passed one when it was switched out).
//!
//! - Linux: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, after a one-time
//!   registration; false if the kernel refuses it (before 4.14, or a
//!   seccomp filter).
//! - Windows: `FlushProcessWriteBuffers`, documented to flush the write
//!   queue of each processor running a thread of the process (it raises an
//!   interrupt on each, which serialises them); it cannot fail.
//! - Elsewhere (macOS): none. Apple documents no process-wide barrier, so
//!   [`run`] says false and magazine steals are off: only a magazine's
//!   owner empties it (`Stolen::Unsupported`).

/// The kind of fence this platform has (named for the tests, which check
/// [`run`] against it).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Linux `membarrier`.
    Membarrier,
    /// Windows `FlushProcessWriteBuffers`.
    FlushProcessWriteBuffers,
    /// No process-wide fence: steals are off.
    None,
}

/// This platform's fence.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const KIND: Kind = if cfg!(target_os = "linux") {
    Kind::Membarrier
} else if cfg!(windows) {
    Kind::FlushProcessWriteBuffers
} else {
    Kind::None
};

/// Runs the fence; false if the platform has none or refused it.
pub(crate) fn run() -> bool {
    imp::run()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::sync::OnceLock;

    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    fn call(cmd: libc::c_long) -> bool {
        // SAFETY: membarrier takes a command and two integer flags and
        // touches no memory of ours.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            ) == 0
        }
    }

    /// Registers the process once (the kernel requires it), then fences.
    pub(super) fn run() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| call(CMD_REGISTER_PRIVATE_EXPEDITED))
            && call(CMD_PRIVATE_EXPEDITED)
    }
}

#[cfg(windows)]
mod imp {
    pub(super) fn run() -> bool {
        // SAFETY: no arguments, no preconditions.
        unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
        true
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    pub(super) fn run() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_picks_its_fence() {
        #[cfg(target_os = "linux")]
        assert_eq!(KIND, Kind::Membarrier);
        #[cfg(windows)]
        assert_eq!(KIND, Kind::FlushProcessWriteBuffers);
        #[cfg(not(any(target_os = "linux", windows)))]
        assert_eq!(KIND, Kind::None);
    }

    #[test]
    fn the_answer_is_stable() {
        // Windows always fences, a platform without one never does; Linux
        // answers once per process (the registration) and then the same.
        let first = run();
        if KIND == Kind::None {
            assert!(!first);
        }
        if cfg!(windows) {
            assert!(first);
        }
        for _ in 0..3 {
            assert_eq!(run(), first);
        }
    }
}
