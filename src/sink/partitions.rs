//! The partition table: each source partition's lifecycle in this process, in one place and
//! under one lock. A partition is registered (start or group assignment: a new term and a
//! fresh epoch), a worker begins a commit (a ticket carrying the epoch it was written in; a
//! stale epoch is refused) and ends it (its outcome written back only into the registration
//! that made it), a failure rewinds it (new epoch, a seek request for the source side), a
//! revocation or a fence takes it away (new epoch, no longer owned).
//!
//! The source side and the workers talk through it with messages, not shared fields: rewinds
//! and commits for the source side to apply, revocation flushes for the workers, fenced
//! partitions whose revocation should follow.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a source partition stands: its committed position and its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Moves on at every registration, rewind, revocation and fence: items and open files of
    /// an older epoch are stale.
    pub epoch: u64,
    /// This process owns the partition (group rebalances and fences take partitions away).
    pub owned: bool,
    /// A commit of this registration was fenced (even one that ended after the partition was
    /// revoked): another owner has committed past it, so its committed offset is not the
    /// group's.
    pub fenced: bool,
    /// A worker is committing the partition's files right now.
    pub committing: bool,
    /// Its commits have failed since (and are retried): none has landed since the first.
    pub failing: Option<Failing>,
}

/// A partition whose commits fail: since when (ms since 1970), how many attempts, and the
/// last error (shown by the admin API: a destination refusing one partition's commits for
/// good, or its dead-letter topic, is retried for ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub since_ms: u64,
    pub attempts: u64,
    pub error: String,
}

/// A request to the source side: read `partition` again from `offset`, tagging `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewind {
    pub partition: u32,
    pub offset: u64,
    pub line: u64,
    pub epoch: u64,
}

/// What a registration starts from.
#[derive(Debug, Clone)]
pub struct Registration {
    pub key: String,
    pub topic: String,
    pub offset: u64,
    pub line: u64,
    pub seq: u64,
    pub term: u64,
    /// The registration's reconcile found a lost commit whose upload may still land: the
    /// worker settles the partition again once it no longer can.
    pub settle_late: bool,
}

/// Where a commit that landed leaves its partition.
#[derive(Debug, Clone, Copy)]
pub struct Landed {
    pub next_offset: u64,
    pub next_line: u64,
    pub seq: u64,
}

#[derive(Default)]
struct Table {
    parts: HashMap<u32, PartState>,
    /// Seeks the source side owes the workers.
    rewinds: Vec<Rewind>,
    /// Commits to report to the source: (partition, next offset).
    committed: Vec<(u32, u64)>,
    /// Partitions whose open files must be committed now (they are being revoked).
    flush: HashSet<u32>,
    /// The epoch the source side tags new chunks of each partition with (it moves when the
    /// source has applied a rewind or a registration).
    source_epochs: HashMap<u32, u64>,
    /// Partitions of a group member fenced by another owner, when, and by whom when known:
    /// the group's revocation should follow.
    fenced: HashMap<u32, (Instant, Option<String>)>,
    /// Partitions registered with a lost commit whose upload may still land, for their
    /// worker to settle again later.
    settle_late: HashSet<u32>,
}

/// A group member's partition fenced by another owner and not yet taken away by the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    pub partition: u32,
    pub at: Instant,
    /// The owner that took it over, when the fence named it.
    pub owner: Option<String>,
}

/// The table; shared by the task, its source side, its workers and its admin listener.
#[derive(Default)]
pub struct Partitions {
    table: Mutex<Table>,
}

impl Partitions {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic under the lock leaves the table consistent (every change is one step).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers partition `id` as owned from `r`, with the next epoch (the source tags new
    /// chunks with it at once); returns the epoch.
    pub fn register(&self, id: u32, r: Registration) -> u64 {
        let mut t = self.lock();
        let epoch = t.parts.get(&id).map_or(0, |s| s.epoch + 1);
        t.parts.insert(
            id,
            PartState {
                key: r.key,
                topic: r.topic,
                committed_offset: r.offset,
                committed_line: r.line,
                seq: r.seq,
                term: r.term,
                epoch,
                owned: true,
                fenced: false,
                committing: false,
                failing: None,
            },
        );
        t.source_epochs.insert(id, epoch);
        t.fenced.remove(&id);
        if r.settle_late {
            t.settle_late.insert(id);
        }
        epoch
    }

    /// An attempt at partition `p`'s writes or commit (or at mending the partition after one)
    /// failed with `error`.
    pub fn failed(&self, p: u32, error: &str) {
        if let Some(s) = self.lock().parts.get_mut(&p) {
            let f = s.failing.get_or_insert_with(|| Failing {
                since_ms: crate::commit::now_ms().max(0) as u64,
                attempts: 0,
                error: String::new(),
            });
            f.attempts += 1;
            f.error = crate::decode::cut(error, 2048).to_string();
        }
    }

    /// Partition `p` had a lost commit whose upload may still land: its worker settles it
    /// again once that can no longer happen.
    pub fn settle_late(&self, p: u32) {
        self.lock().settle_late.insert(p);
    }

    /// The partitions registered with a lost commit whose upload may still land, of those
    /// `mine` selects; each is handed out once.
    pub fn take_settle_late(&self, mine: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut t = self.lock();
        let due: Vec<u32> = t.settle_late.iter().copied().filter(|p| mine(*p)).collect();
        for p in &due {
            t.settle_late.remove(p);
        }
        due
    }

    /// The partition's state while this process owns it.
    pub fn owned(&self, p: u32) -> Option<PartState> {
        self.lock().parts.get(&p).filter(|s| s.owned).cloned()
    }

    /// Every owned partition's state.
    pub fn all_owned(&self) -> Vec<PartState> {
        self.lock()
            .parts
            .values()
            .filter(|s| s.owned)
            .cloned()
            .collect()
    }

    /// The partition's epoch (0 when unknown).
    pub fn epoch(&self, p: u32) -> u64 {
        self.lock().parts.get(&p).map_or(0, |s| s.epoch)
    }

    pub fn key(&self, p: u32) -> Option<String> {
        self.lock().parts.get(&p).map(|s| s.key.clone())
    }

    /// How logs and errors name partition `p`: its key (`topic-partition`), or `#p` (the
    /// handle) for one never registered here.
    pub fn label(&self, p: u32) -> String {
        self.key(p).unwrap_or_else(|| format!("#{p}"))
    }

    /// Every registered partition's key, owned or not.
    pub fn keys(&self) -> HashMap<u32, String> {
        self.lock()
            .parts
            .iter()
            .map(|(p, s)| (*p, s.key.clone()))
            .collect()
    }

    /// Every registered partition's committed (offset, line).
    pub fn positions(&self) -> HashMap<u32, (u64, u64)> {
        self.lock()
            .parts
            .iter()
            .map(|(p, s)| (*p, (s.committed_offset, s.committed_line)))
            .collect()
    }

    /// Of `ps`, those this process does not own (any more).
    pub fn not_owned(&self, ps: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let t = self.lock();
        ps.into_iter()
            .filter(|p| !t.parts.get(p).is_some_and(|s| s.owned))
            .collect()
    }

    /// A worker begins committing files of `p` written in `epoch`: refused (None) unless the
    /// partition is owned and still in that epoch (files of an earlier epoch may overlap what
    /// it replays). The ticket is the state the commit starts from; a revocation waits for the
    /// commit to end.
    pub fn begin_commit(&self, p: u32, epoch: u64) -> Option<PartState> {
        let mut t = self.lock();
        let s = t
            .parts
            .get_mut(&p)
            .filter(|s| s.owned && s.epoch == epoch)?;
        s.committing = true;
        Some(s.clone())
    }

    /// The commit begun with `ticket` ended; `landed` when it stands. Its position is written
    /// back only into the registration that made it (a reassignment may have begun another),
    /// and reported to the source side unless the partition's registration is past it (a
    /// commit of an earlier registration ending late, after the next one's commits: the
    /// group's offset would step back).
    pub fn end_commit(&self, p: u32, ticket: &PartState, landed: Option<Landed>) {
        let mut t = self.lock();
        let mut behind = false;
        if let Some(s) = t.parts.get_mut(&p) {
            s.committing = false;
            if let (Some(l), true) = (landed, s.term == ticket.term) {
                s.committed_offset = l.next_offset;
                s.committed_line = l.next_line;
                s.seq = l.seq;
                s.failing = None;
            }
            behind = landed.is_some_and(|l| l.next_offset < s.committed_offset);
        }
        if let (Some(l), false) = (landed, behind) {
            t.committed.push((p, l.next_offset));
        }
    }

    /// A reconcile with the store for registration `term` found `next_seq` and, when a commit
    /// stands, where it resumes (`latest`: next offset and line). Applied only to that
    /// registration while owned; returns the position it replaced when it moved.
    pub fn resynced(
        &self,
        p: u32,
        term: u64,
        next_seq: u64,
        latest: Option<(u64, u64)>,
    ) -> Option<u64> {
        let mut t = self.lock();
        let s = t.parts.get_mut(&p).filter(|s| s.owned && s.term == term)?;
        s.seq = s.seq.max(next_seq - 1);
        let (offset, line) = latest?;
        let before = s.committed_offset;
        s.committed_offset = offset;
        s.committed_line = line;
        // A commit that reported failure and landed: the source side learns of it as of
        // any other (the group's offset, what is not committed), and it is not failing.
        if offset > before {
            s.failing = None;
            t.committed.push((p, offset));
        }
        (before != offset).then_some(before)
    }

    /// Another owner took `p` over (`by`: the term the store says was ours and the owner that
    /// took it, when the fence names them): it is no longer owned here, with a new epoch,
    /// which is returned. None when the fence is of an earlier ownership (this process
    /// registered the partition again since, or no longer owns it). A group member (`group`)
    /// remembers when and by whom, for [`Self::overdue_fence`].
    pub fn fence(&self, p: u32, by: Option<(u64, &str)>, group: bool) -> Option<u64> {
        let mut t = self.lock();
        let s = t
            .parts
            .get_mut(&p)
            .filter(|s| by.is_none_or(|(ours, _)| s.term <= ours))?;
        s.fenced = true;
        if !s.owned {
            return None;
        }
        s.owned = false;
        s.epoch += 1;
        let epoch = s.epoch;
        if group {
            let owner = by.map(|(_, owner)| owner.to_string());
            t.fenced.insert(p, (Instant::now(), owner));
        }
        Some(epoch)
    }

    /// A fenced partition whose revocation has not come within `grace` (the earliest fenced).
    pub fn overdue_fence(&self, grace: Duration) -> Option<Fenced> {
        self.lock()
            .fenced
            .iter()
            .filter(|(_, (at, _))| at.elapsed() > grace)
            .min_by_key(|(_, (at, _))| *at)
            .map(|(p, (at, owner))| Fenced {
                partition: *p,
                at: *at,
                owner: owner.clone(),
            })
    }

    /// Registration `term` of `p` (None: whatever registration was current when the failure
    /// began is gone) replays from its checkpoint: a new epoch, and a seek for the source
    /// side. None when the partition was registered again or taken away meanwhile.
    pub fn rewind(&self, p: u32, term: Option<u64>) -> Option<Rewind> {
        let mut t = self.lock();
        let s = t
            .parts
            .get_mut(&p)
            .filter(|s| s.owned && Some(s.term) == term)?;
        s.epoch += 1;
        let r = Rewind {
            partition: p,
            offset: s.committed_offset,
            line: s.committed_line,
            epoch: s.epoch,
        };
        t.rewinds.push(r);
        Some(r)
    }

    /// The source side takes the rewinds asked of it; each to be applied only while it is
    /// current ([`Self::is_current`]), then confirmed ([`Self::seeked`]).
    pub fn take_rewinds(&self) -> Vec<Rewind> {
        std::mem::take(&mut self.lock().rewinds)
    }

    /// Rewind `r` is still the partition's epoch (no revocation, fence or later rewind since).
    pub fn is_current(&self, r: &Rewind) -> bool {
        self.epoch(r.partition) == r.epoch
    }

    /// The source side applied rewind `r`: its new chunks carry `r.epoch`. False (and nothing
    /// changes) when the partition moved to another epoch meanwhile.
    pub fn seeked(&self, r: &Rewind) -> bool {
        let mut t = self.lock();
        if t.parts.get(&r.partition).map_or(0, |s| s.epoch) != r.epoch {
            return false;
        }
        t.source_epochs.insert(r.partition, r.epoch);
        true
    }

    /// The epoch the source side tags `p`'s new chunks with.
    pub fn source_epoch(&self, p: u32) -> u64 {
        self.lock().source_epochs.get(&p).copied().unwrap_or(0)
    }

    /// The source side takes the commits to report (Kafka: the group's offsets).
    pub fn take_committed(&self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.lock().committed)
    }

    /// Asks the workers to commit `p`'s open files now.
    pub fn ask_flush(&self, ps: impl IntoIterator<Item = u32>) {
        self.lock().flush.extend(ps);
    }

    /// The partitions whose flush is asked, of those `mine` selects.
    pub fn flush_asked(&self, mine: impl Fn(u32) -> bool) -> Vec<u32> {
        self.lock()
            .flush
            .iter()
            .copied()
            .filter(|p| mine(*p))
            .collect()
    }

    /// A worker has served `p`'s flush.
    pub fn flushed(&self, p: u32) {
        self.lock().flush.remove(&p);
    }

    /// Every flush of `ps` has been served.
    pub fn all_flushed(&self, ps: &[u32]) -> bool {
        let t = self.lock();
        ps.iter().all(|p| !t.flush.contains(p))
    }

    /// The group takes `ps` away: flushes not served are dropped, each is no longer owned,
    /// with a new epoch. Returns (partition, new epoch, key, whether it was owned until now:
    /// not fenced) of those registered.
    pub fn revoke(&self, ps: &[u32]) -> Vec<(u32, u64, String, bool)> {
        let mut t = self.lock();
        t.flush.retain(|p| !ps.contains(p));
        let mut out = Vec::with_capacity(ps.len());
        for p in ps {
            t.fenced.remove(p);
            if let Some(s) = t.parts.get_mut(p) {
                let owned = std::mem::replace(&mut s.owned, false);
                s.epoch += 1;
                out.push((*p, s.epoch, s.key.clone(), owned));
            }
        }
        out
    }

    /// A commit of one of `ps` is running.
    pub fn committing(&self, ps: &[u32]) -> bool {
        let t = self.lock();
        ps.iter()
            .any(|p| t.parts.get(p).is_some_and(|s| s.committing))
    }

    /// The keys of the partitions owned now.
    pub fn owned_keys(&self) -> HashSet<String> {
        let t = self.lock();
        t.parts
            .values()
            .filter(|s| s.owned)
            .map(|s| s.key.clone())
            .collect()
    }

    /// The committed offsets of those of `ps` that are registered and whose registration
    /// no other owner fenced (whose group offset would step back).
    pub fn committed_offsets(&self, ps: &[u32]) -> Vec<(u32, u64)> {
        let t = self.lock();
        ps.iter()
            .filter_map(|p| {
                t.parts
                    .get(p)
                    .filter(|s| !s.fenced)
                    .map(|s| (*p, s.committed_offset))
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "partitions_tests.rs"]
mod tests;
