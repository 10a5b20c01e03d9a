//! Partitions joining and leaving a task: where a partition starts (its checkpoint in the
//! destination, after removing the files of a commit that died half-way), and what happens to
//! the data a worker holds when a group rebalance takes a partition away.
//!
//! Revocation, within the job's stop deadline: chunks in flight reach the channel, the queued
//! items of the partition are written, the workers commit its open files, then the partition
//! is released (its epoch moves on, so anything left of it is stale). Past the deadline the
//! open files are aborted instead and the next owner replays from the checkpoint. A commit in
//! progress may finish within the deadline; past it the next owner's term fences it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::TaskError;
use crate::channel::Channel;
use crate::commit::checkpoint::Checkpoints;
use crate::metrics::Metrics;
use crate::sink::control::Control;
use crate::sink::partitions::Registration;
use crate::source::{Assigned, Membership, PartitionInfo, Resumed, SourceError, TaskRefusal};

use super::claims::{claim_all, Claimed};
use super::roll_backs::{check_replay, refuse_compacted, roll_backs, FromCheckpoint};

/// Where a partition starts.
pub struct Start {
    pub offset: u64,
    pub line: u64,
    /// From a checkpoint (else from the source's own default).
    pub checkpointed: bool,
    /// The checkpoint's mark of the message before `offset`, when it resumes there.
    pub mark: Option<crate::decode::meta::RecordMark>,
}

/// The task's part of registering a claimed partition: records where it resumes (a table
/// ahead of its checkpoints, its checkpoint, else `default()`), with a fresh epoch, and drops
/// what the channel still holds of it.
pub fn resume(
    claimed: Claimed,
    control: &Control,
    (channel, kind): (Option<&Channel>, &str),
    info: &PartitionInfo,
    default: impl FnOnce() -> Result<(u64, u64), TaskError>,
) -> Result<Start, TaskError> {
    let key = info.key();
    let Claimed {
        term,
        reconciled: r,
        held,
        ..
    } = claimed;
    let seq = r.next_seq - 1;
    // Offsets another kind of source counted are not this one's: resuming at one would skip
    // (or repeat) records without a word.
    if let Some(c) = &r.latest {
        if let Some(theirs) = c.written_by().filter(|t| *t != kind) {
            return Err(TaskError::Job {
                job: c.job.clone(),
                reason: format!(
                    "partition {key}: its checkpoints (commit {}, by {}) were written by a {theirs} job of this name into this destination, whose offsets are not this {kind} source's: resuming there would skip or repeat records. Give this job a name (job.name) or destination of its own",
                    c.seq, c.owner
                ),
            });
        }
    }
    // The checkpoint's mark, where it resumes from the checkpoint (not a table's end).
    let latest_mark = r
        .latest
        .as_ref()
        .and_then(|c| c.resume_mark().map(|m| (c.next_offset, m)));
    let (offset, line, checkpointed) = match crate::table::resume_point(r.latest.as_ref(), held) {
        Some(((o, l), ahead)) => {
            if ahead {
                tracing::warn!(partition = %key, table = o, checkpoint = ?r.latest.as_ref().map(|c| c.next_offset), "the table holds the partition past its checkpoints; resuming where the table ends");
            }
            (o, l, true)
        }
        None => {
            let (o, l) = default()?;
            (o, l, false)
        }
    };
    let epoch = control.partitions.register(
        info.id,
        Registration {
            key: key.clone(),
            topic: info.topic.clone(),
            offset,
            line,
            seq,
            term,
            settle_late: r.may_land_late,
        },
    );
    if let Some(ch) = channel {
        ch.purge(info.id, epoch);
    }
    tracing::info!(partition = %key, offset, seq, term, "partition resumes");
    Ok(Start {
        offset,
        line,
        checkpointed,
        mark: latest_mark
            .filter(|(at, _)| checkpointed && *at == offset)
            .map(|(_, m)| m),
    })
}

/// Partitions' first starts: where each moved (by id), and why each refused is.
type FirstStarts = (HashMap<u32, u64>, HashMap<u32, TaskRefusal>);

/// The task's side of a consumer group's rebalances.
pub struct TaskMembership {
    pub checkpoints: Checkpoints,
    /// The table sealed commits are published into, if any.
    pub table: Option<Arc<dyn crate::table::Publisher>>,
    pub control: Arc<Control>,
    pub channel: Arc<Channel>,
    /// How long a revocation may take to commit what is held.
    pub deadline: Duration,
    /// `--from-checkpoint`: applied to each partition when first assigned, unless an earlier
    /// run already rolled it back to that checkpoint.
    pub from_checkpoint: Option<FromCheckpoint>,
    /// The compacted topics a roll-back must not replay ([`super::roll_backs::compacted`]).
    pub compacted: Vec<(String, String)>,
    pub rolled_back: HashSet<u32>,
    pub metrics: Arc<Metrics>,
    /// The repo's label: backfills of the repo into the destination are checked against
    /// where a partition first starts.
    pub repo: String,
    /// When the job first took partitions that start at the log's end, once read.
    pub first_start: Option<i64>,
}

impl TaskMembership {
    /// Waits (5 ms steps) until `done` or the deadline; true when done.
    fn wait(&self, until: Instant, mut done: impl FnMut() -> bool) -> bool {
        loop {
            if done() {
                return true;
            }
            if Instant::now() >= until || self.control.phase.over() {
                return done();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Partitions claimed before their first commit start where the source says (`parts`'
    /// defaults), or where an earlier claim recorded that it started one the reset would
    /// start further on (see [`earlier_starts`]); recorded, then checked against the repo's
    /// backfills in the destination (`commit::ranges::hold_starts`): moved past the range of
    /// a backfill that has committed, refused where a backfill would still write what this
    /// job writes. Returns each partition's start where it moved, and why each refused is.
    fn first_starts(
        &self,
        parts: &[Assigned],
        claimed: &[Claimed],
    ) -> Result<FirstStarts, SourceError> {
        let firsts: Vec<(&Assigned, u64)> = parts
            .iter()
            .zip(claimed)
            .filter(|(_, c)| c.reconciled.latest.is_none() && c.held.is_none())
            .map(|(a, c)| (a, c.term))
            .collect();
        let earlier = earlier_starts(&self.checkpoints, firsts.iter().map(|(a, _)| *a))?;
        let firsts: Vec<(u32, (String, u64, u64))> = firsts
            .into_iter()
            .map(|(a, term)| {
                let start = earlier.get(&a.info.id).copied().unwrap_or(a.start);
                (a.info.id, (a.info.key(), term, start))
            })
            .collect();
        let asked: Vec<(String, u64, u64)> = firsts.iter().map(|(_, f)| f.clone()).collect();
        let (moved, found) = crate::commit::ranges::hold_starts(
            self.checkpoints.destination(),
            self.checkpoints.job(),
            &self.repo,
            &asked,
        )
        .map_err(|e| SourceError::Other {
            name: "first starts".into(),
            reason: format!("recording where partitions start, or reading backfills' ranges: {e}"),
        })?;
        // Each partition a backfill would still write is refused alone (the others are
        // read): before, the first such one failed the whole assignment.
        let mut refused: HashMap<u32, TaskRefusal> = HashMap::new();
        for (id, (key, _, _)) in &firsts {
            let clashes: Vec<_> = found.iter().filter(|c| &c.key == key).collect();
            // Named: one that does not go by itself, if any (its remedy is the operator's).
            let named = clashes
                .iter()
                .find(|c| !c.clears_by_itself())
                .or(clashes.first());
            if let Some(c) = named {
                let why = match clashes.len() - 1 {
                    0 => c.to_string(),
                    n => format!("{c} ({n} more such ranges)"),
                };
                let retry = clashes.iter().all(|c| c.clears_by_itself());
                refused.insert(*id, TaskRefusal { why, retry });
            }
        }
        let mut out = HashMap::new();
        for ((id, (key, _, asked)), at) in firsts.into_iter().zip(moved) {
            if refused.contains_key(&id) {
                continue;
            }
            if at != asked {
                tracing::warn!(partition = %key, from = asked, to = at, "the partition starts where the backfills' ranges that hold its start end (they write the records before)");
            }
            if at != asked || earlier.contains_key(&id) {
                out.insert(id, at);
            }
        }
        Ok((out, refused))
    }

    /// Claims the assigned partitions in the destination; returns where each starts (or why
    /// it is refused: a backfill would still write what this job writes from there).
    fn assign(&mut self, parts: &[Assigned]) -> Result<Vec<Resumed>, SourceError> {
        let began = Instant::now();
        // A partition is rolled back when first assigned, if it is to be; those to be must
        // all be able to replay before any is.
        let asked: Vec<(String, Option<FromCheckpoint>)> = parts
            .iter()
            .map(|a| {
                let roll = self
                    .from_checkpoint
                    .filter(|_| self.rolled_back.insert(a.info.id));
                (a.info.key(), roll)
            })
            .collect();
        let asked = roll_backs(&self.checkpoints, asked)
            .and_then(|asked| {
                for ((key, roll), a) in asked.iter().zip(parts) {
                    if let Some(f) = roll {
                        refuse_compacted(&self.compacted, key, f.seq).map_err(|reason| {
                            TaskError::Refused {
                                job: self.checkpoints.job().to_string(),
                                reason,
                            }
                        })?;
                        check_replay(&self.checkpoints, key, f.seq, Some(a.held))?;
                    }
                }
                Ok(asked)
            })
            .map_err(|e| {
                let (name, reason) = ("--from-checkpoint".into(), e.to_string());
                match e.refused() {
                    true => SourceError::Refused { name, reason },
                    false => SourceError::Other { name, reason },
                }
            })?;
        let failed = |key: String, e: TaskError| {
            let (name, reason) = (
                format!("partition {key}"),
                format!("cannot resume it from the destination: {e}"),
            );
            match e.refused() {
                true => SourceError::Refused { name, reason },
                false => SourceError::Other { name, reason },
            }
        };
        let claimed = claim_all(&self.checkpoints, self.table.as_deref(), &asked)
            .map_err(|f| failed(parts[f.index].info.key(), f.error))?;
        let claims = began.elapsed();
        let (moved, mut refused) = self.first_starts(parts, &claimed)?;
        tracing::debug!(
            partitions = parts.len(),
            claims_ms = claims.as_millis() as u64,
            first_starts_ms = (began.elapsed() - claims).as_millis() as u64,
            "claimed in the destination"
        );
        let mut out = Vec::with_capacity(parts.len());
        for (a, claimed) in parts.iter().zip(claimed) {
            let default = moved.get(&a.info.id).copied().unwrap_or(a.start);
            let at = (Some(self.channel.as_ref()), "kafka");
            let start = resume(claimed, &self.control, at, &a.info, || Ok((default, 0)))
                .map_err(|e| failed(a.info.key(), e))?;
            out.push(Resumed {
                id: a.info.id,
                offset: start.offset,
                checkpointed: start.checkpointed,
                mark: start.mark,
                refused: refused.remove(&a.info.id),
            });
        }
        Ok(out)
    }
}

/// Where earlier claims recorded that they started partitions of `firsts` (none committed
/// yet) that `auto.offset.reset` would now start further on: the job started them there, and
/// the records since are its to write. A claim that died or was fenced before its first
/// commit (the group then holds no offset) left them to the next owner, which, starting at
/// `latest` again, skipped them for good. A start the broker no longer holds (retention) is
/// `source.on_gap`'s, as a checkpoint's would be.
fn earlier_starts<'a>(
    checkpoints: &Checkpoints,
    firsts: impl Iterator<Item = &'a Assigned>,
) -> Result<HashMap<u32, u64>, SourceError> {
    let asked: Vec<&Assigned> = firsts.filter(|a| a.reset && a.start > a.held.0).collect();
    let (dest, job) = (checkpoints.destination(), checkpoints.job());
    let done = crate::fanout::each(
        &asked,
        crate::fanout::REBALANCE_CALLS,
        "earlier starts",
        |a| crate::commit::ranges::origin(dest, job, &a.info.key()),
    );
    let mut out = HashMap::new();
    for (i, found) in done {
        let a = asked[i];
        let found = found.map_err(|e| SourceError::Other {
            name: format!("partition {}", a.info.key()),
            reason: format!("reading where an earlier claim started it: {e}"),
        })?;
        if let Some(o) = found.filter(|o| *o < a.start) {
            tracing::info!(partition = %a.info.key(), from = o, reset = a.start, "the partition starts where an earlier claim of this job started it (it committed nothing)");
            out.insert(a.info.id, o);
        }
    }
    Ok(out)
}

impl Membership for TaskMembership {
    fn assigned(&mut self, parts: &[Assigned]) -> Result<Vec<Resumed>, SourceError> {
        // Timed however it ends: a failing store makes the group wait longest.
        let began = Instant::now();
        let r = self.assign(parts);
        self.metrics.assigned(began.elapsed().as_secs_f64());
        if r.is_ok() {
            let mut held = self.control.partitions.owned_keys();
            held.extend(parts.iter().map(|a| a.info.key()));
            self.metrics.keep_only(&held);
        }
        r
    }
    fn revoked(&mut self, ids: &[u32]) -> Vec<(u32, u64)> {
        let ctl = self.control.clone();
        let until = Instant::now() + self.deadline;
        let flushed = !ctl.phase.stopping()
            && self.wait(until, || {
                ctl.produced.load(Ordering::Acquire) == ctl.put.load(Ordering::Acquire)
            })
            && self.wait(until, || {
                ids.iter().all(|p| self.channel.queued_for(*p) == 0)
            })
            && {
                ctl.partitions.ask_flush(ids.iter().copied());
                self.wait(until, || ctl.partitions.all_flushed(ids))
            };
        if !flushed {
            tracing::warn!(
                partitions = ?ids,
                "revoked before everything held was committed; the rest is aborted and the next owner replays it"
            );
        }
        let (mut keys, mut owned) = (Vec::new(), Vec::new());
        for (p, epoch, key, held) in ctl.partitions.revoke(ids) {
            self.channel.purge(p, epoch);
            keys.push(key);
            if held {
                owned.push(p);
            }
        }
        // A commit in progress may end before the partition moves, within the deadline (the
        // consumer's poll waits for this callback). Past it the partition moves anyway: the
        // next owner takes a newer term, so the commit still running here can no longer win
        // (its claim is aborted, or its seal loses) and what it published is removed.
        let until = until.max(Instant::now() + Duration::from_millis(100));
        let ids_done = self.wait(until, || !ctl.partitions.committing(ids));
        if !ids_done {
            tracing::warn!(
                partitions = ?ids,
                "a commit still runs past the revocation deadline; the next owner fences it"
            );
        }
        // After the commits in progress: one that ends counts its rows into the series.
        for key in keys {
            self.metrics.forget(&key);
        }
        self.metrics.keep_only(&ctl.partitions.owned_keys());
        // Not a fenced partition's: another writer has committed past it since, and the
        // group's offset would step back.
        ctl.partitions.committed_offsets(&owned)
    }
    fn released(&mut self, ids: &[u32]) {
        let ctl = &self.control;
        for (p, epoch, key, _) in ctl.partitions.revoke(ids) {
            self.channel.purge(p, epoch);
            self.metrics.forget(&key);
        }
        self.metrics.keep_only(&ctl.partitions.owned_keys());
    }
    fn first_started(&mut self) -> Result<Option<i64>, SourceError> {
        if let Some(at) = self.first_start {
            return Ok(Some(at));
        }
        let (dest, job) = (self.checkpoints.destination(), self.checkpoints.job());
        let (at, recorded) = crate::commit::ranges::first_start(dest, job, crate::commit::now_ms())
            .map_err(|e| SourceError::Other {
                name: "first start".into(),
                reason: format!("recording or reading when the job first started partitions at the log's end: {e}"),
            })?;
        self.first_start = Some(at);
        Ok((!recorded).then_some(at))
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
