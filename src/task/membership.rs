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
use crate::commit::fence::Reconciled;
use crate::metrics::Metrics;
use crate::sink::control::Control;
use crate::sink::partitions::Registration;
use crate::source::{Assigned, Membership, PartitionInfo, Resumed, SourceError};

use super::roll_backs::{
    already_rolled_back, check_replay, log_not_repeated, refuse_compacted, roll_backs,
    FromCheckpoint,
};

/// Where a partition starts.
pub struct Start {
    pub offset: u64,
    pub line: u64,
    /// From a checkpoint (else from the source's own default).
    pub checkpointed: bool,
    /// The checkpoint's mark of the message before `offset`, when it resumes there.
    pub mark: Option<crate::decode::meta::RecordMark>,
}

/// What registering a partition learned from the destination: its new ownership term, how
/// its commits ended, and how far a table holds it.
pub struct Claimed {
    term: u64,
    reconciled: Reconciled,
    held: Option<u64>,
    /// The claim rolled the partition back (`--from-checkpoint`).
    pub rolled_back: bool,
}

/// The destination's part of registering partition `key`: takes a new ownership term (older
/// writers are fenced), rolls back to checkpoint `from_checkpoint` if asked and not already
/// done ([`already_rolled_back`], checked under the new term), fences claims that did not
/// finish, and brings a table up to the sealed commits. Touches no task state, so partitions
/// are claimed side by side ([`claim_all`]).
pub fn claim(
    checkpoints: &Checkpoints,
    table: Option<&dyn crate::table::Publisher>,
    key: &str,
    from_checkpoint: Option<FromCheckpoint>,
) -> Result<Claimed, TaskError> {
    let owner = crate::commit::owner_id();
    if from_checkpoint.is_some() {
        refuse_a_table_made_since(checkpoints, key)?;
    }
    // A new term first: from here on, every older writer of the partition is fenced.
    let term = checkpoints.take_term(key, owner)?;
    #[cfg(test)]
    crate::hooks::at("claim: after the term");
    let roll = match from_checkpoint {
        Some(f) if super::roll_backs::rolled_back_here(checkpoints, key, f.seq) => None,
        Some(f) => match already_rolled_back(checkpoints, key, f)? {
            Some(before) => {
                log_not_repeated(key, f, &before);
                None
            }
            None => Some(f),
        },
        None => None,
    };
    let rolled = roll.is_some();
    let r = match roll {
        Some(f) => {
            refuse_a_table_made_since(checkpoints, key)?;
            let r = checkpoints.roll_back_to(key, f.seq, term, owner)?;
            super::roll_backs::done_here(checkpoints, key, f.seq);
            tracing::warn!(partition = %key, seq = f.seq, next_offset = ?r.latest.as_ref().map(|c| c.next_offset), "replaying from an older checkpoint");
            r
        }
        None => checkpoints.reconcile(key, term, owner)?,
    };
    if !r.removed.is_empty() {
        let what = if rolled {
            "removed the files of the commits rolled back (and of any unfinished one)"
        } else {
            "removed files of an unfinished commit"
        };
        tracing::warn!(partition = %key, files = ?r.removed, "{what}");
    }
    // The table holds every sealed commit before the partition commits again.
    let held = match table {
        Some(t) => crate::table::catch_up(t, checkpoints, key)?,
        None => None,
    };
    Ok(Claimed {
        term,
        reconciled: r,
        held,
        rolled_back: roll.is_some(),
    })
}

/// A roll-back is refused where the destination holds a table ([`crate::table::for_task`],
/// at start); checked again before the new term (so a refusal fences no owner) and under it,
/// since another process may have made the table since. Every version naming the
/// partition's commits (a publish, a catch-up) is written under a term its writer took after
/// opening the table: a term older than this one means the table existed before this term
/// was taken, and is seen here; a newer one settles this roll-back's claim first, so its
/// catch-up never publishes the commits undone.
fn refuse_a_table_made_since(checkpoints: &Checkpoints, key: &str) -> Result<(), TaskError> {
    let dest = checkpoints.destination();
    if crate::table::present(dest)? {
        return Err(crate::table::TableError::RollBack {
            url: dest.url().to_string(),
            reason: format!("--from-checkpoint cannot roll back partition {key}: another process made a table in the destination since this one started (its readers may have seen the commits); this partition was not rolled back"),
        }
        .into());
    }
    Ok(())
}

/// See [`crate::table::refuse_plain_into_table`]: a table's writers publish every commit
/// under a term taken after the table was made, so one made before this term is seen here,
/// and one made after fences this process's term before its catch-up.
fn refuse_plain_into_a_table_made_since(checkpoints: &Checkpoints) -> Result<(), TaskError> {
    let none = crate::table::TableKind::None;
    Ok(crate::table::refuse_plain_into_table(
        &none,
        checkpoints.destination(),
    )?)
}

impl Claimed {
    /// The partition's newest commit, as the claim found it.
    pub fn latest(&self) -> Option<&crate::commit::checkpoint::Checkpoint> {
        self.reconciled.latest.as_ref()
    }
}

/// A claim that failed: the partition's place in the list asked, and why.
pub struct ClaimFailed {
    pub index: usize,
    pub error: TaskError,
}

/// Partitions claimed at once: [`claim`] for each `(key, from_checkpoint)`, on this thread and
/// up to [`crate::fanout::REBALANCE_CALLS`] - 1 more, in the order given. Each claim is a few store round trips
/// (files and fsyncs locally, requests to an object store), and a start or an assignment of
/// many partitions waited for them one after another. After a failure no further partition is
/// claimed (a term taken for a run that stops fences its owner for nothing); the first failure
/// in the order given is returned, later ones are logged. A panic in a claim is passed on.
pub fn claim_all(
    checkpoints: &Checkpoints,
    table: Option<&dyn crate::table::Publisher>,
    parts: &[(String, Option<FromCheckpoint>)],
) -> Result<Vec<Claimed>, ClaimFailed> {
    // A job without a table where another process made one since this one started: refused
    // before any term (that refusal fences no owner), and again once every term is taken (a
    // table's writers publish under terms taken after it was made: one made before these
    // terms is seen then, and one made after fences them before its catch-up; that refusal
    // has fenced the table's writers of these partitions, which claim them again). Once a
    // claim, not once a partition: each check lists the destination.
    let plain = table.is_none();
    let refuse = |index| {
        refuse_plain_into_a_table_made_since(checkpoints)
            .map_err(|error| ClaimFailed { index, error })
    };
    if plain && !parts.is_empty() {
        refuse(0)?;
    }
    // The claims log as the caller does (its repo).
    let span = tracing::Span::current();
    let done = crate::fanout::each(
        parts,
        crate::fanout::REBALANCE_CALLS,
        "claim",
        |(key, roll)| {
            let _entered = span.enter();
            claim(checkpoints, table, key, *roll)
        },
    );
    let mut claimed = Vec::with_capacity(parts.len());
    let mut first: Option<ClaimFailed> = None;
    for (index, c) in done {
        match c {
            Ok(c) => claimed.push(c),
            Err(error) if first.is_none() => first = Some(ClaimFailed { index, error }),
            Err(error) => {
                tracing::warn!(partition = %parts[index].0, %error, "claiming the partition failed too");
            }
        }
    }
    match first {
        Some(f) => Err(f),
        None if plain && !parts.is_empty() => refuse(0).map(|()| claimed),
        None => Ok(claimed),
    }
}

/// The claims of a static source's partitions at its start: those to roll back (not
/// [`already_rolled_back`]) must all be able to replay, and another log's checkpoints are
/// checked ([`super::foreign_log::before_claim`]), before any term is taken (which would
/// fence the current owner for nothing); then [`claim_all`].
pub(super) fn claim_static(
    source: &mut dyn crate::source::Source,
    checkpoints: &Checkpoints,
    table: Option<&dyn crate::table::Publisher>,
    parts: &[PartitionInfo],
    (from_checkpoint, compacted): (Option<FromCheckpoint>, &[(String, String)]),
) -> Result<Vec<Claimed>, TaskError> {
    let asked = parts.iter().map(|p| (p.key(), from_checkpoint)).collect();
    let asked = roll_backs(checkpoints, asked)?;
    for (p, (key, roll)) in parts.iter().zip(&asked) {
        if let Some(f) = roll {
            refuse_compacted(compacted, key, f.seq).map_err(|reason| TaskError::Refused {
                job: checkpoints.job().to_string(),
                reason,
            })?;
            check_replay(checkpoints, key, f.seq, source.replayable(p.id)?)?;
        }
    }
    let rolls: Vec<Option<u64>> = asked.iter().map(|(_, f)| f.map(|f| f.seq)).collect();
    super::foreign_log::before_claim(source, checkpoints, parts, &rolls)?;
    claim_all(checkpoints, table, &asked).map_err(|f| f.error)
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
type FirstStarts = (HashMap<u32, u64>, HashMap<u32, String>);

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
        let mut refused: HashMap<u32, String> = HashMap::new();
        for (id, (key, _, _)) in &firsts {
            let mut clashes = found.iter().filter(|c| &c.key == key);
            if let Some(c) = clashes.next() {
                let more = clashes.count();
                let why = match more {
                    0 => c.to_string(),
                    n => format!("{c} ({n} more such ranges)"),
                };
                refused.insert(*id, why);
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
