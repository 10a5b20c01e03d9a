//! When a sink worker's commit fails: reconcile the partition with the store and replay it
//! from its checkpoint after a growing pause, or, when another owner took the partition over,
//! stop writing it and fail the task. On object stores and HDFS the partition is settled once
//! more when a publish that reported failure can no longer land, so a file it makes visible
//! late does not wait for the partition's next commit (which may never come) to go; so is a
//! partition whose registration found a lost commit (a task or process before this one died
//! or failed mid-commit, and its upload may be under way).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::commit::abort_open;
use super::partitions::PartState;
use super::worker::{WorkError, Worker};
use crate::commit::checkpoint::CheckpointError;
use crate::commit::now_ms;

/// What a worker keeps of its partitions' failed commits.
#[derive(Default)]
pub(super) struct Recovery {
    /// Failed attempts in a row per partition: the pause before the next replay grows.
    pub(super) backoff: HashMap<u32, u32>,
    /// Partitions to settle again, and when: once a publish that reported failure can no
    /// longer take effect (see [`crate::store::Destination::late_window`]).
    pub(super) late: HashMap<u32, Instant>,
}

impl Worker {
    /// Settles the partitions whose late-publish window has passed (all of them with
    /// `now`, at a stop): the files of their lost commits that a publish made visible after
    /// the commit failed are removed (`Checkpoints::reconcile`, as at every commit's
    /// release). Called between commits, so no claim of this worker's is in flight.
    pub(super) fn settle_late(&mut self, now: bool) {
        self.take_late_settles();
        if self.recovery.late.is_empty() {
            return;
        }
        let at = Instant::now();
        let due: Vec<u32> = self
            .recovery
            .late
            .iter()
            .filter(|(_, when)| now || **when <= at)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            self.recovery.late.remove(&p);
            let Some(PartState { key, term, .. }) = self.part(p) else {
                continue; // no longer ours: its next owner settles it
            };
            let owner = crate::commit::owner_id();
            match self.ctx.checkpoints.reconcile(&key, term, owner) {
                Ok(r) if !r.removed.is_empty() => tracing::warn!(
                    partition = %key, files = ?r.removed,
                    "removed files that a publish made visible after it had reported failure"
                ),
                Ok(_) => {}
                Err(e) if e.is_fenced() => self.fenced(p, &e.into()),
                Err(e) => tracing::warn!(
                    partition = %key, error = %e,
                    "could not look for files published after a failure; a later commit of the \
                     partition does, if there is one"
                ),
            }
        }
    }

    /// Partitions of this lane whose registration or release found a lost commit that may
    /// still land (a run or task before this one failed mid-commit, a writer fenced): their
    /// late window starts now.
    pub(super) fn take_late_settles(&mut self) {
        let lanes = self.ctx.channel.lanes();
        for p in self
            .ctx
            .control
            .partitions
            .take_settle_late(|p| p as usize % lanes == self.lane)
        {
            self.settle_later(p);
        }
    }

    /// After a failed commit of `p` was reconciled and a claim of ours had lost: when a
    /// publish that reported failure may still land (object stores, HDFS), settle `p` again
    /// once it no longer can.
    fn settle_later(&mut self, p: u32) {
        if let Some(w) = self.ctx.checkpoints.late_window() {
            // A request timeout of any size (it is not bounded at load) must not overflow.
            let now = Instant::now();
            let at = now
                .checked_add(w)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
            self.recovery.late.insert(p, at);
        }
    }

    /// A commit of `p` failed: fenced, or rewind.
    pub(super) fn failed(&mut self, p: u32, e: WorkError) {
        if e.is_fenced() {
            self.fenced(p, &e);
        } else if let WorkError::Table(crate::table::TableError::NotATableJob { .. }) = e {
            // A table made since this job without one started (`table::watch`): no replay
            // mends it; the task stops, and its next start is refused.
            if let Some(op) = self.open.remove(&p) {
                abort_open(op);
            }
            tracing::error!(partition = %self.ctx.control.partitions.label(p), error = %e, "the destination holds a table now; the task stops");
            self.ctx.control.fatal(|| e.to_string());
        } else {
            tracing::warn!(partition = %self.ctx.control.partitions.label(p), error = %e, "commit failed; rewinding the partition");
            self.ctx.control.partitions.failed(p, &e.to_string());
            self.fail(p);
        }
    }

    /// Brings partition `p`'s state in line with the store (`commit::fence`): claims that did
    /// not finish are aborted and their files removed, and a commit whose seal looked failed
    /// but landed is where the partition resumes, so the replay can neither skip nor duplicate
    /// records. Fenced when another owner took the partition over.
    /// True when a lost commit's publish may still land (a claim of this process's own lost,
    /// or [`Reconciled::may_land_late`]).
    ///
    /// [`Reconciled::may_land_late`]: crate::commit::fence::Reconciled::may_land_late
    fn resync(&self, p: u32) -> Result<bool, WorkError> {
        let Some(PartState { key, term, .. }) = self.part(p) else {
            return Ok(false);
        };
        let owner = crate::commit::owner_id();
        let r = self.ctx.checkpoints.reconcile(&key, term, owner)?;
        if !r.removed.is_empty() {
            tracing::warn!(partition = %key, files = ?r.removed, "removed files of an unfinished commit");
        }
        // A commit sealed but not published (the publish failed, or looked failed) enters the
        // table before the partition commits again.
        let held = match &self.ctx.table {
            Some(t) => crate::table::catch_up(t.as_ref(), &self.ctx.checkpoints, &key)?,
            None => None,
        };
        // Only into the registration this reconcile was made for: a reassignment meanwhile
        // registered the partition again from the store. Where the claim resumed it: past
        // checkpoints the table holds more than (rewinding to them would publish the table's
        // records again).
        let latest = crate::table::resume_point(r.latest.as_ref(), held).map(|(at, _)| at);
        let moved = self
            .ctx
            .control
            .partitions
            .resynced(p, term, r.next_seq, latest);
        // A commit of this worker's that reported failure and stands: counted now.
        if let Some((c, classes, seconds)) = self.ctx.sealing.landed(p, r.latest.as_ref()) {
            super::commit::counted(&self.ctx, &c, classes, seconds);
        }
        if let (Some(before), Some((next_offset, _))) = (moved, latest) {
            let c = r.latest.as_ref();
            tracing::info!(
                partition = %key, seq = ?c.map(|c| c.seq), owner = ?c.map(|c| &c.owner), next_offset,
                from = before, "resuming after a commit that looked failed but landed"
            );
        }
        Ok(r.lost_own || r.may_land_late)
    }

    /// Another owner took partition `p` over: this process stops writing it at once (its open
    /// files are aborted, its queued items purged, nothing more of it is written). A group
    /// member releases just that partition: the group moved it, and its revocation follows
    /// (`task::fenced` acts if it does not). Any other task stops, so that a
    /// supervisor's restart registers again with a newer term.
    fn fenced(&mut self, p: u32, e: &WorkError) {
        let by = match e {
            WorkError::Checkpoint(CheckpointError::Fenced { ours, owner, .. }) => {
                Some((*ours, owner.as_str()))
            }
            _ => None,
        };
        let ctl = &self.ctx.control;
        // Checked and changed in one step: a reassignment in between must not be undone.
        let Some(epoch) = ctl.partitions.fence(p, by, self.ctx.group) else {
            // A commit of an earlier ownership (it outlived its revocation): this process has
            // since registered the partition again, or no longer owns it.
            tracing::warn!(partition = %self.ctx.control.partitions.label(p), error = %e, "a commit of an earlier ownership of the partition was fenced");
            return;
        };
        if let Some(op) = self.open.remove(&p) {
            abort_open(op);
        }
        self.ctx.channel.purge(p, epoch);
        if self.ctx.group {
            // The group's revocation follows; `task::fenced` acts if it does not.
            tracing::warn!(partition = %self.ctx.control.partitions.label(p), error = %e, "fenced: another member took the partition over; it is released here");
            return;
        }
        tracing::error!(partition = %self.ctx.control.partitions.label(p), error = %e, "fenced: another owner took the partition over; the task stops");
        ctl.fatal(|| e.to_string());
    }

    /// Aborts partition `p`'s open files and asks the source to replay it from its checkpoint,
    /// after a growing pause (the destination may be down).
    pub(super) fn fail(&mut self, p: u32) {
        let held = self.open.remove(&p).map(|op| {
            let at = op.next_offset;
            abort_open(op);
            at
        });
        self.fail_at(p, held);
    }

    /// [`Self::fail`] for a partition whose open files were already aborted; `held`: the
    /// position they had reached.
    pub(super) fn fail_at(&mut self, p: u32, held: Option<u64>) {
        let ctl = self.ctx.control.clone();
        ctl.failures.fetch_add(1, Ordering::Relaxed);
        // The registration being rewound: a reassignment meanwhile seeks the source itself.
        let term = self.part(p).map(|s| s.term);
        // Pause (growing, with jitter), then reconcile with the store; while it is down, keep
        // waiting: the channel fills and the source waits, nothing is dropped.
        loop {
            // Every attempt counts: one outage of the destination is many retries.
            self.ctx.metrics.retry();
            let n = self.recovery.backoff.entry(p).or_insert(0);
            *n += 1;
            let pause = backoff_delay(*n);
            tracing::warn!(
                partition = %self.ctx.control.partitions.label(p),
                pause_ms = pause.as_millis() as u64,
                "replaying from the checkpoint"
            );
            let deadline = Instant::now() + pause;
            while Instant::now() < deadline && ctl.phase.running() && self.part(p).is_some() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !ctl.phase.running() || self.part(p).is_none() {
                self.lost_while_stopping(p, held);
                return; // the next start (or the next owner) reconciles from the store
            }
            match self.resync(p) {
                Ok(may_land_late) => {
                    if may_land_late {
                        self.settle_later(p);
                    }
                    // A stop that came meanwhile spills what the channel holds: a rewind now
                    // would take the partition's items out of it, and nobody reads them again.
                    if !ctl.phase.running() {
                        self.lost_while_stopping(p, held);
                        return;
                    }
                    break;
                }
                Err(e) if e.is_fenced() => {
                    self.fenced(p, &e);
                    return;
                }
                Err(e @ WorkError::Checkpoint(CheckpointError::Corrupt { .. })) => {
                    // Retrying cannot mend a damaged record: stop, naming it.
                    self.ctx.control.fatal(|| e.to_string());
                    return;
                }
                Err(WorkError::Table(e)) if e.is_permanent() => {
                    // The table cannot take this job's commits (another writer changed it):
                    // stop, naming why.
                    self.ctx.control.fatal(|| e.to_string());
                    return;
                }
                Err(e) => {
                    tracing::warn!(partition = %self.ctx.control.partitions.label(p), error = %e, "the destination is still unavailable");
                    ctl.partitions.failed(p, &e.to_string());
                }
            }
        }
        let Some(rewind) = ctl.partitions.rewind(p, term) else {
            return;
        };
        crate::fault::hold("hold_before_purge");
        self.ctx.channel.purge(p, rewind.epoch);
        // Not drained until the replay is read. The source may have read it to its end
        // already (this thread can be paused for any time since the rewind): `task::feed`
        // then reads again and ends again.
        ctl.source_done.store(false, Ordering::SeqCst);
    }

    /// A failed partition's records this worker held when a stop came (or the partition
    /// went): a memory log keeps no copy of them.
    fn lost_while_stopping(&self, p: u32, held: Option<u64>) {
        let Some(s) = self.part(p) else { return };
        // A seal that reported failure may have landed: looked up once (it is counted, and
        // what it holds is not lost).
        let mut committed = s.committed_offset;
        if self.ctx.sealing.unsure(p) {
            match self.ctx.checkpoints.latest(&s.key) {
                Ok(latest) => {
                    if let Some((c, classes, seconds)) = self.ctx.sealing.landed(p, latest.as_ref())
                    {
                        committed = committed.max(c.next_offset);
                        super::commit::counted(&self.ctx, &c, classes, seconds);
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = %s.key, error = %e, "could not read whether a commit that reported failure landed; the next start finds out")
                }
            }
        }
        if let (true, Some(to)) = (self.ctx.volatile, held) {
            if to > committed {
                tracing::error!(
                    partition = %s.key, from = committed, to,
                    "acknowledged records are lost: their commit failed while stopping \
                     and durability = \"memory\" keeps no copy"
                );
            }
        }
    }
}

/// Exponential backoff with jitter: 100 ms × 2^n, at most 30 s.
fn backoff_delay(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(9));
    let capped = base.min(30_000);
    let jitter = (now_ms() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % (capped / 2 + 1);
    Duration::from_millis(capped / 2 + jitter)
}
