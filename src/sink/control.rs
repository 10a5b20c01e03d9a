//! The state a task shares between its source side, its workers and its admin listener: the
//! partition table (`partitions.rs`), and the task's flags and counters.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::partitions::Partitions;

/// Where a task is in its life. It only moves forward: running → stopping (graceful: commit
/// what is open, take nothing more) → over (workers exit). A task may end without stopping
/// first (a failure).
#[derive(Default)]
pub struct Phase(AtomicU8);

const RUNNING: u8 = 0;
const STOPPING: u8 = 1;
const OVER: u8 = 2;

impl Phase {
    /// Begins a graceful stop (no effect once over).
    pub fn stop(&self) {
        self.0.fetch_max(STOPPING, Ordering::AcqRel);
    }

    /// The task is over.
    pub fn end(&self) {
        self.0.store(OVER, Ordering::Release);
    }

    pub fn running(&self) -> bool {
        self.0.load(Ordering::Acquire) == RUNNING
    }

    /// Stopping or over.
    pub fn stopping(&self) -> bool {
        self.0.load(Ordering::Acquire) >= STOPPING
    }

    pub fn over(&self) -> bool {
        self.0.load(Ordering::Acquire) == OVER
    }
}

/// Flags and counters shared by the task, its source side and its workers.
#[derive(Default)]
pub struct Control {
    /// Where the task is in its life: running, stopping, over.
    pub phase: Phase,
    /// Paused by the admin API: nothing is taken or committed until resumed.
    pub paused: AtomicBool,
    /// The source has nothing more (bounded runs).
    pub source_done: AtomicBool,
    /// A bounded run read its source to the end and committed all of it (not stopped early,
    /// with what it held spilled).
    pub completed: AtomicBool,
    /// Chunks produced by the source and put into the channel: equal when none is in flight.
    pub produced: AtomicU64,
    pub put: AtomicU64,
    /// Per lane: everything taken is committed and the source is done (set through
    /// [`Control::set_finished`], which wakes [`Control::wait_finished`]).
    pub finished: Mutex<Vec<bool>>,
    finished_signal: Condvar,
    /// Each source partition's lifecycle in this process.
    pub partitions: Partitions,
    /// Partitions handed to the source that it does not read now, and why, as the task last
    /// asked it (every 5 s): for the admin API.
    pub not_read: Mutex<Vec<crate::source::NotRead>>,
    pub rows: AtomicU64,
    pub dead_letters: AtomicU64,
    pub files: AtomicU64,
    pub commits: AtomicU64,
    pub failures: AtomicU64,
    /// Why a sink worker stopped the task (it panicked, or a partition was fenced: another
    /// owner took it over): the task fails instead of waiting for its lane. Set through
    /// [`Control::fatal`].
    pub worker_fatal: Mutex<Option<String>>,
    /// Called once when a worker stops the task (a push repo's intake closes: what it took
    /// from then on would be acknowledged into a log the failed task no longer reads).
    on_fatal: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Control {
    /// A worker stops the task for `why` (the first reason stays), and what
    /// [`Control::on_fatal`] registered runs.
    pub fn fatal(&self, why: impl FnOnce() -> String) {
        self.worker_fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(why);
        let hook = self
            .on_fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(hook) = hook {
            hook();
        }
    }

    /// What runs when a worker stops the task ([`Control::fatal`]).
    pub fn on_fatal(&self, hook: impl FnOnce() + Send + 'static) {
        *self.on_fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    /// Records whether `lane` is finished; a lane finishing wakes [`Control::wait_finished`].
    pub fn set_finished(&self, lane: usize, v: bool) {
        let mut f = self.finished.lock().expect("finished lock");
        f[lane] = v;
        if v {
            self.finished_signal.notify_all();
        }
    }

    /// Whether every lane is finished, waiting up to `timeout` for a lane to finish when one
    /// is not.
    pub fn wait_finished(&self, timeout: Duration) -> bool {
        let f = self.finished.lock().expect("finished lock");
        if f.iter().all(|d| *d) {
            return true;
        }
        let (f, _) = self
            .finished_signal
            .wait_timeout(f, timeout)
            .expect("finished lock");
        f.iter().all(|d| *d)
    }

    /// The source has ended and every chunk it produced is in the channel (SeqCst, with
    /// the writes of `source_done` and `put` in `task::feed`: see there).
    pub fn drained(&self) -> bool {
        self.source_done.load(Ordering::SeqCst)
            && self.produced.load(Ordering::SeqCst) == self.put.load(Ordering::SeqCst)
    }
}
