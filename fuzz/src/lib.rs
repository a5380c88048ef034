//! What the fuzz targets share: a stamp mixer and a helper thread that runs
//! closures on request (a second thread to free on, allocate on, and exit).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::{self, JoinHandle};

/// splitmix64's finaliser: a stamp derived from a block id.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

type Job = Box<dyn FnOnce() -> usize + Send>;

/// A second thread, started on first use. [`Helper::run`] runs a closure
/// there and waits for its result, so the model stays deterministic;
/// [`Helper::exit`] ends the thread (its thread-local destructors, which
/// publish its remote frees and orphan its heaps, have run when it returns).
#[derive(Default)]
pub struct Helper {
    thread: Option<(Sender<Job>, Receiver<usize>, JoinHandle<()>)>,
}

impl Helper {
    /// Runs `f` on the helper thread and returns its result.
    pub fn run(&mut self, f: impl FnOnce() -> usize + Send + 'static) -> usize {
        let (jobs, results, _) = self.thread.get_or_insert_with(|| {
            let (job_tx, job_rx) = channel::<Job>();
            let (res_tx, res_rx) = channel();
            let handle = thread::spawn(move || {
                for job in job_rx {
                    if res_tx.send(job()).is_err() {
                        break;
                    }
                }
            });
            (job_tx, res_rx, handle)
        });
        jobs.send(Box::new(f)).expect("helper thread alive");
        results.recv().expect("helper thread answered")
    }

    /// True if the thread is running.
    pub fn running(&self) -> bool {
        self.thread.is_some()
    }

    /// Ends the thread and waits for it (and its thread-local destructors).
    pub fn exit(&mut self) {
        if let Some((jobs, _, handle)) = self.thread.take() {
            drop(jobs);
            handle.join().expect("helper thread panicked");
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.exit();
    }
}
