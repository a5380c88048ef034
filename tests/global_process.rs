//! `homeslab::Global` as the global allocator across process events:
//! `fork` while other threads allocate (the child must allocate), and
//! allocation in `atexit` handlers after `main` returns (checked in a
//! child process that re-runs this binary).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: homeslab::Global = homeslab::Global;

/// Work a child (or an exit handler) does: every kind of allocation,
/// checked. False if anything is off.
fn workload(seed: u64) -> bool {
    let mut m: HashMap<u64, String> = HashMap::new();
    for i in 0..2000 {
        m.insert(i, format!("{}-{}", seed, i));
    }
    let v: Vec<Box<[u8; 100]>> = (0..500).map(|i| Box::new([i as u8; 100])).collect();
    let mut grow = Vec::new();
    for i in 0..100_000u32 {
        grow.push(i);
    }
    m.len() == 2000
        && m[&1999] == format!("{seed}-1999")
        && v.iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8))
        && grow.iter().enumerate().all(|(i, &x)| x == i as u32)
}

#[test]
fn fork_while_other_threads_allocate_then_allocate_in_the_child() {
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Small, large and cross-class traffic, so some thread
                    // is often inside a lock when the fork comes.
                    let v: Vec<Vec<u8>> = (0..64)
                        .map(|i| vec![t as u8; 1 + (i * 977) % 70_000])
                        .collect();
                    n += v.iter().map(|x| x.len() as u64).sum::<u64>();
                    drop(v);
                    let _ = homeslab::Global.trim();
                }
                n
            })
        })
        .collect();
    for round in 0..40 {
        // SAFETY: the child only allocates, checks and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // A deadlock becomes SIGALRM: a failure, not a hang.
            // SAFETY: plain libc calls in the child.
            unsafe { libc::alarm(20) };
            let ok = workload(round) && {
                // Threads work in the child too.
                let h = std::thread::spawn(move || workload(round + 1000));
                h.join().unwrap_or(false)
            };
            // SAFETY: ends the child without running the parent's handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child {round} failed: status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in busy {
        assert!(h.join().unwrap() > 0);
    }
}

extern "C" fn at_exit() {
    let ok = workload(7);
    let msg: &[u8] = if ok { b"atexit-ok\n" } else { b"atexit-bad\n" };
    // SAFETY: writes a static buffer to stdout.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
}

/// In the child run: registers the handler and returns (main then exits).
#[test]
fn child_registers_atexit() {
    if std::env::var_os("HOMESLAB_ATEXIT_CHILD").is_none() {
        return;
    }
    // SAFETY: registers a plain extern "C" function.
    assert_eq!(unsafe { libc::atexit(at_exit) }, 0);
}

#[test]
fn allocation_in_atexit_handlers_after_main() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_registers_atexit", "--test-threads=1"])
        .env("HOMESLAB_ATEXIT_CHILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("atexit-ok"), "{stdout}");
}
