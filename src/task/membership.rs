//! Partitions joining and leaving a task: where a partition starts (its checkpoint in the
//! destination, after removing the files of a commit that died half-way), and what happens to
//! the data a worker holds when a group rebalance takes a partition away.
//!
//! Revocation, within the job's stop deadline: chunks in flight reach the channel, the queued
//! items of the partition are written, the workers commit its open files, then the partition
//! is released (its epoch moves on, so anything left of it is stale). Past the deadline the
//! open files are aborted instead and the next owner replays from the checkpoint. A commit in
//! progress always finishes first: the next owner never sees half of one.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::TaskError;
use crate::channel::Channel;
use crate::checkpoint::Checkpoints;
use crate::metrics::Metrics;
use crate::sink::control::{Control, PartState};
use crate::source::{Membership, PartitionInfo, SourceError};

/// Where a partition starts.
pub struct Start {
    pub offset: u64,
    pub line: u64,
    /// From a checkpoint (else from the source's own default).
    pub checkpointed: bool,
}

/// Registers a partition with the task: rolls back to checkpoint `from_checkpoint` if asked,
/// removes files of an unfinished commit, and records where it resumes (its checkpoint, else
/// `default()`), with a fresh epoch.
pub fn register(
    checkpoints: &Checkpoints,
    control: &Control,
    channel: Option<&Channel>,
    info: &PartitionInfo,
    from_checkpoint: Option<u64>,
    default: impl FnOnce() -> Result<(u64, u64), TaskError>,
) -> Result<Start, TaskError> {
    let key = info.key();
    if let Some(seq) = from_checkpoint {
        let c = checkpoints.roll_back_to(&key, seq)?;
        tracing::warn!(partition = %key, seq, next_offset = c.next_offset, "replaying from an older checkpoint");
    }
    let latest = checkpoints.latest(&key)?;
    let removed = checkpoints.recover(&key, latest.as_ref())?;
    if !removed.is_empty() {
        tracing::warn!(partition = %key, files = ?removed, "removed files of an unfinished commit");
    }
    let (offset, line, seq, checkpointed) = match &latest {
        Some(c) => (c.next_offset, c.next_line, c.seq, true),
        None => {
            let (o, l) = default()?;
            (o, l, 0, false)
        }
    };
    let epoch = {
        let mut parts = control.parts.lock().expect("parts lock");
        let epoch = parts.get(&info.id).map_or(0, |s| s.epoch + 1);
        parts.insert(
            info.id,
            PartState::new(key.clone(), info.topic.clone(), offset, line, seq, epoch),
        );
        epoch
    };
    control
        .source_epochs
        .lock()
        .expect("epochs lock")
        .insert(info.id, epoch);
    if let Some(ch) = channel {
        ch.purge(info.id, epoch);
    }
    tracing::info!(partition = %key, offset, seq, "partition resumes");
    Ok(Start {
        offset,
        line,
        checkpointed,
    })
}

/// The task's side of a consumer group's rebalances.
pub struct TaskMembership {
    pub checkpoints: Checkpoints,
    pub control: Arc<Control>,
    pub channel: Arc<Channel>,
    /// How long a revocation may take to commit what is held.
    pub deadline: Duration,
    /// `--from-checkpoint`: applied once to each partition when first assigned.
    pub from_checkpoint: Option<u64>,
    pub rolled_back: HashSet<u32>,
    pub metrics: Arc<Metrics>,
}

impl TaskMembership {
    /// Waits (5 ms steps) until `done` or the deadline; true when done.
    fn wait(&self, until: Instant, mut done: impl FnMut() -> bool) -> bool {
        loop {
            if done() {
                return true;
            }
            if Instant::now() >= until || self.control.shutdown.load(Ordering::Acquire) {
                return done();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Membership for TaskMembership {
    fn assigned(&mut self, parts: &[(PartitionInfo, u64)]) -> Result<Vec<(u32, u64)>, SourceError> {
        let mut out = Vec::with_capacity(parts.len());
        for (info, default) in parts {
            let roll = self
                .from_checkpoint
                .filter(|_| self.rolled_back.insert(info.id));
            let start = register(
                &self.checkpoints,
                &self.control,
                Some(&self.channel),
                info,
                roll,
                || Ok((*default, 0)),
            )
            .map_err(|e| SourceError::Other {
                name: format!("partition {}", info.key()),
                reason: format!("cannot resume it from the destination: {e}"),
            })?;
            out.push((info.id, start.offset));
        }
        Ok(out)
    }

    fn revoked(&mut self, ids: &[u32]) -> Vec<(u32, u64)> {
        let ctl = self.control.clone();
        let until = Instant::now() + self.deadline;
        let flushed = !ctl.stopping.load(Ordering::Acquire)
            && self.wait(until, || {
                ctl.produced.load(Ordering::Acquire) == ctl.put.load(Ordering::Acquire)
            })
            && self.wait(until, || {
                ids.iter().all(|p| self.channel.queued_for(*p) == 0)
            })
            && {
                ctl.flush
                    .lock()
                    .expect("flush lock")
                    .extend(ids.iter().copied());
                self.wait(until, || {
                    let f = ctl.flush.lock().expect("flush lock");
                    ids.iter().all(|p| !f.contains(p))
                })
            };
        ctl.flush
            .lock()
            .expect("flush lock")
            .retain(|p| !ids.contains(p));
        if !flushed {
            tracing::warn!(
                partitions = ?ids,
                "revoked before everything held was committed; the rest is aborted and the next owner replays it"
            );
        }
        let mut epochs = Vec::with_capacity(ids.len());
        {
            let mut parts = ctl.parts.lock().expect("parts lock");
            for p in ids {
                if let Some(s) = parts.get_mut(p) {
                    s.owned = false;
                    s.epoch += 1;
                    epochs.push((*p, s.epoch));
                    self.metrics.forget(&s.key);
                }
            }
        }
        for (p, epoch) in &epochs {
            self.channel.purge(*p, *epoch);
        }
        // A commit in progress ends (within the store's timeouts) before the partition moves.
        loop {
            let parts = ctl.parts.lock().expect("parts lock");
            if !ids
                .iter()
                .any(|p| parts.get(p).is_some_and(|s| s.committing))
            {
                return ids
                    .iter()
                    .filter_map(|p| parts.get(p).map(|s| (*p, s.committed_offset)))
                    .collect();
            }
            drop(parts);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
