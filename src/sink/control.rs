//! The state a task shares between its source side, its workers and its admin listener: the
//! partition table (`partitions.rs`), and the task's flags and counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::partitions::Partitions;

/// Flags and counters shared by the task, its source side and its workers.
#[derive(Default)]
pub struct Control {
    /// Graceful stop: commit what is open, take nothing more.
    pub stopping: AtomicBool,
    /// Paused by the admin API: nothing is taken or committed until resumed.
    pub paused: AtomicBool,
    /// The task is over: workers exit.
    pub shutdown: AtomicBool,
    /// The source has nothing more (bounded runs).
    pub source_done: AtomicBool,
    /// Chunks produced by the source and put into the channel: equal when none is in flight.
    pub produced: AtomicU64,
    pub put: AtomicU64,
    /// Per lane: everything taken is committed and the source is done.
    pub finished: Mutex<Vec<bool>>,
    /// Each source partition's lifecycle in this process.
    pub partitions: Partitions,
    pub rows: AtomicU64,
    pub dead_letters: AtomicU64,
    pub files: AtomicU64,
    pub commits: AtomicU64,
    pub failures: AtomicU64,
    /// Why a sink worker stopped the task (it panicked, or a partition was fenced: another
    /// owner took it over): the task fails instead of waiting for its lane.
    pub worker_fatal: Mutex<Option<String>>,
}

impl Control {
    pub fn drained(&self) -> bool {
        self.source_done.load(Ordering::Acquire)
            && self.produced.load(Ordering::Acquire) == self.put.load(Ordering::Acquire)
    }
}
