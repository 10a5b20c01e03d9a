//! The state a task shares between its source side, its workers and its admin listener:
//! where each source partition stands (committed position, epoch, ownership), the rewinds the
//! workers ask of the source, and the task's flags and counters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Where a source partition stands: its committed position and its epoch.
#[derive(Debug, Clone)]
pub struct PartState {
    pub key: String,
    pub topic: String,
    pub committed_offset: u64,
    pub committed_line: u64,
    /// The last sequence number decided or claimed: the next commit claims `seq + 1`.
    pub seq: u64,
    /// This process's ownership term of the partition in the destination (see
    /// `commit::fence`).
    pub term: u64,
    pub epoch: u64,
    /// This process owns the partition (group rebalances take partitions away).
    pub owned: bool,
    /// A worker is committing the partition's files right now.
    pub committing: bool,
}

impl PartState {
    pub fn new(key: String, topic: String, offset: u64, line: u64, seq: u64, epoch: u64) -> Self {
        PartState {
            key,
            topic,
            committed_offset: offset,
            committed_line: line,
            seq,
            term: 0,
            epoch,
            owned: true,
            committing: false,
        }
    }
}

/// A request to the source side: read `partition` again from `offset`, tagging `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewind {
    pub partition: u32,
    pub offset: u64,
    pub line: u64,
    pub epoch: u64,
}

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
    pub rewinds: Mutex<Vec<Rewind>>,
    /// Commits to report to the source: (partition, next offset).
    pub committed: Mutex<Vec<(u32, u64)>>,
    /// Per lane: everything taken is committed and the source is done.
    pub finished: Mutex<Vec<bool>>,
    pub parts: Mutex<HashMap<u32, PartState>>,
    /// Partitions whose open files must be committed now (they are being revoked).
    pub flush: Mutex<HashSet<u32>>,
    /// The epoch the source side tags new chunks of each partition with.
    pub source_epochs: Mutex<HashMap<u32, u64>>,
    pub rows: AtomicU64,
    pub dead_letters: AtomicU64,
    pub files: AtomicU64,
    pub commits: AtomicU64,
    pub failures: AtomicU64,
    /// Partitions of a group member fenced by another owner, and when: the group's revocation
    /// should follow; the source side fails the task if it does not (see `task::feed`).
    pub fenced: Mutex<HashMap<u32, std::time::Instant>>,
    /// Why a sink worker stopped the task (it panicked, or a partition was fenced: another
    /// owner took it over): the task fails instead of waiting for its lane.
    pub worker_fatal: Mutex<Option<String>>,
}

impl Control {
    pub fn drained(&self) -> bool {
        self.source_done.load(Ordering::Acquire)
            && self.produced.load(Ordering::Acquire) == self.put.load(Ordering::Acquire)
    }

    pub fn epoch(&self, partition: u32) -> u64 {
        self.parts
            .lock()
            .expect("parts lock")
            .get(&partition)
            .map_or(0, |p| p.epoch)
    }
}
