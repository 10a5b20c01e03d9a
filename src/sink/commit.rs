//! The commit of one source partition: its open files become visible together and its
//! checkpoint moves past them, through the phases of `commit/` (claim → publish → seal →
//! release). `SLUICE_FAULT` can abort the process after each phase, like a kill -9 there (see
//! `fault.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::open::{OpenFile, OpenPartition};
use super::partitions::Landed;
use super::worker::{WorkError, WorkerContext};
use crate::commit::checkpoint::{Checkpoint, FileEntry, VERSION};
use crate::commit::fence::Claim;
use crate::commit::{now_ms, PRUNE_EVERY, PRUNE_KEEP};
use crate::metrics::CommitStats;
use crate::store::OutputFile;

/// Commits all open files of partition `p` and moves its checkpoint.
pub(super) fn commit_partition(
    ctx: &Arc<WorkerContext>,
    p: u32,
    mut op: OpenPartition,
) -> Result<(), WorkError> {
    let started = std::time::Instant::now();
    let dead_classes: Vec<(&'static str, u64)> =
        std::mem::take(&mut op.dead_classes).into_iter().collect();
    // Claim the commit while the partition is still owned: a revocation waits for a commit
    // in progress, so the next owner never sees half of one.
    let Some(state) = ctx.control.partitions.begin_commit(p, op.epoch) else {
        // Files opened in an earlier epoch (before a rewind or a new assignment) may overlap
        // what the partition replays; a partition no longer owned is the next owner's.
        abort_open(op);
        return Ok(());
    };
    let ctx = ctx.clone();
    // Caught so that `committing` is cleared however the commit ends: a revocation waits for
    // it, inside the consumer's poll.
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> Result<Checkpoint, WorkError> {
            // Whatever is not published when this returns (an error, a lost claim) is aborted:
            // no temporary file or upload outlives its attempt.
            // The files start where the checkpoint stands, or the commit would step over a
            // hole (or repeat records) between them: refused, the partition replays from its
            // checkpoint.
            if op.from_offset != state.committed_offset {
                return Err(WorkError::Gap {
                    key: state.key.clone(),
                    want: state.committed_offset,
                    got: op.from_offset,
                });
            }
            let mut pending = Unpublished::default();
            pending.files = std::mem::take(&mut op.parked);
            let opens: Vec<OpenFile> = std::mem::take(&mut op.files).into_values().collect();
            pending
                .unfinished
                .extend(opens.iter().map(|f| f.file.clone()));
            for f in opens {
                pending.files.push(finish_file(f)?);
            }
            pending.unfinished.clear();
            // Dead letters sent to a topic must have arrived before anything of the commit
            // becomes visible.
            pending.dead = match op.dead.take() {
                Some(w) if w.file().is_none() => w.commit().map(|_| None)?,
                dead => dead,
            };
            let finished = &pending.files;
            let dead = &pending.dead;
            let commits = ctx.control.commits.load(Ordering::Relaxed);
            if crate::fault::fail_commit() {
                return Err(crate::store::StoreError::Io {
                    path: state.key.clone(),
                    source: std::io::Error::other("SLUICE_FAULT: fail_commit"),
                }
                .into());
            }
            let owner = crate::commit::owner_id();
            let seq = state.seq.checked_add(1).ok_or_else(|| {
                crate::commit::checkpoint::CheckpointError::Corrupt {
                    path: state.key.clone(),
                    reason: format!("a sequence number of {} leaves no next one", state.seq),
                }
            })?;
            let claim = Claim {
                version: VERSION,
                key: state.key.clone(),
                seq,
                term: state.term,
                owner: owner.to_string(),
                from_offset: state.committed_offset,
                next_offset: op.next_offset,
                next_line: op.next_line,
                files: finished.iter().map(|f| f.0.clone()).collect(),
                staged: finished
                    .iter()
                    .filter_map(|f| f.1.staged().map(str::to_string))
                    .collect(),
                dead_letter_files: dead
                    .iter()
                    .filter_map(|w| w.file())
                    .map(str::to_string)
                    .collect(),
                dead_letter_staged: dead
                    .iter()
                    .filter_map(|w| w.staged())
                    .map(str::to_string)
                    .collect(),
                claimed_at_ms: now_ms(),
                undo: false,
            };
            // A job without a table: another process may have made one since (plain files
            // beside it would stop the table's writers of this partition once it moves).
            if let Some(w) = &ctx.table_watch {
                w.check(&ctx.dest)?;
            }
            // From here until the seal, a failure leaves the claim for the reconcile that
            // follows (`Worker::fail`) to abort.
            ctx.checkpoints.claim(&claim)?;
            crate::fault::abort_at("after_claim", commits);
            let mut entries = Vec::with_capacity(pending.files.len());
            while !pending.files.is_empty() {
                let (_, file, entry) = pending.files.remove(0);
                file.commit()?;
                entries.push(entry);
            }
            let mut dead_files = Vec::new();
            if let Some(w) = pending.dead.take() {
                let rel = w.file().map(str::to_string);
                w.commit()?;
                dead_files.extend(rel);
            }
            crate::fault::abort_at("after_files", commits);
            let c = Checkpoint {
                version: VERSION,
                job: ctx.checkpoints.job().to_string(),
                key: state.key.clone(),
                seq,
                next_offset: op.next_offset,
                next_line: op.next_line,
                files: entries,
                dead_letter_files: dead_files,
                rows: op.rows,
                dead_letters: op.dead_count,
                committed_at_ms: now_ms(),
                term: state.term,
                owner: owner.to_string(),
                log: ctx.log_id.clone(),
                log_runs: ctx.log_runs.clone(),
                file: ctx.file_starts.as_ref().and_then(|starts| {
                    let starts = starts
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let &(len, crc) = starts.get(&state.key)?;
                    Some(crate::commit::checkpoint::FileHead { len, crc })
                }),
                // A message's mark (Kafka), or the bytes before the offset (files).
                record: op
                    .mark
                    .filter(|m| ctx.file_starts.is_none() && m.offset < op.next_offset),
                behind: op
                    .mark
                    .filter(|m| {
                        ctx.file_starts.is_some()
                            && m.offset.checked_add(m.len) == Some(op.next_offset)
                    })
                    .map(|m| crate::commit::checkpoint::FileHead {
                        len: m.len as usize,
                        crc: m.crc,
                    }),
            };
            ctx.sealing.asked(p, &c, &dead_classes, started);
            ctx.checkpoints.seal(&claim, &c)?;
            if let Some(source) = crate::fault::lose_seal_answer() {
                let path = c.key.clone();
                return Err(crate::store::StoreError::Io { path, source }.into());
            }
            crate::fault::abort_at("after_checkpoint", commits);
            // The commit stands; a table's readers see it once it is published. A failure
            // here replays from this commit after the resync has published it.
            if let Some(t) = &ctx.table {
                t.publish(std::slice::from_ref(&c))?;
                crate::fault::abort_at("after_publish", commits);
            }
            // The commit stands; a failure to release is only housekeeping (the next
            // reconcile deletes the claim of a sealed commit).
            match ctx.checkpoints.release(&state.key, seq, state.term, owner) {
                Ok(settled) => {
                    if !settled.removed.is_empty() {
                        tracing::warn!(
                            partition = %state.key, files = ?settled.removed,
                            "removed files that a fenced writer published after its fence"
                        );
                    }
                    // Another writer's lost commit, recent: its upload may still land.
                    if settled.may_land_late {
                        ctx.control.partitions.settle_late(p);
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = %state.key, error = %e, "could not release a claim")
                }
            }
            Ok(c)
        },
    ));
    ctx.control.partitions.end_commit(
        p,
        &state,
        match &attempt {
            Ok(Ok(c)) => Some(Landed {
                next_offset: c.next_offset,
                next_line: c.next_line,
                seq: c.seq,
            }),
            _ => None,
        },
    );
    let result = attempt.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    match result {
        Ok(c) => {
            ctx.sealing.known(p);
            counted(&ctx, &c, dead_classes, started.elapsed().as_secs_f64());
            tracing::info!(
                partition = %c.key, seq = c.seq, files = c.files.len(), rows = c.rows,
                dead_letters = c.dead_letters, next_offset = c.next_offset, "committed"
            );
            if c.seq.is_multiple_of(PRUNE_EVERY) {
                let _ = ctx.checkpoints.prune(&c.key, PRUNE_KEEP, state.term);
            }
            Ok(())
        }
        Err(e) => {
            // What became visible is listed in the pending record; `fail` reconciles it with
            // the checkpoint in the store before the partition is replayed.
            abort_open(op);
            Err(e)
        }
    }
}

/// A commit's rows, dead letters and files, counted once it stands (in the run's totals and
/// the metrics).
pub(super) fn counted(
    ctx: &WorkerContext,
    c: &Checkpoint,
    dead_classes: Vec<(&'static str, u64)>,
    seconds: f64,
) {
    let ctl = &ctx.control;
    ctl.rows.fetch_add(c.rows, Ordering::Relaxed);
    ctl.dead_letters
        .fetch_add(c.dead_letters, Ordering::Relaxed);
    ctl.files.fetch_add(c.files.len() as u64, Ordering::Relaxed);
    ctl.commits.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.committed(
        &c.key,
        CommitStats {
            rows: c.rows,
            dead_letters: dead_classes,
            files: c.files.len() as u64,
            bytes: c.files.iter().map(|f| f.bytes).sum(),
            seconds,
        },
    );
}

/// The commits whose seal was asked for and whose outcome is not known yet, by partition: a
/// seal (or a table's publish after it) that reports failure may have landed. The resync
/// that finds such a commit standing counts it ([`Sealing::landed`]); before, its rows and
/// dead letters were never counted, while `checkpoints list` showed them.
#[derive(Default)]
pub struct Sealing(std::sync::Mutex<std::collections::HashMap<u32, Asked>>);

/// A commit that landed after reporting failure: its checkpoint, classes of dead letters and
/// seconds.
pub(super) type LandedLate = (Checkpoint, Vec<(&'static str, u64)>, f64);

struct Asked {
    seq: u64,
    owner: String,
    checkpoint: Checkpoint,
    dead_classes: Vec<(&'static str, u64)>,
    started: std::time::Instant,
}

impl Sealing {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u32, Asked>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn asked(
        &self,
        p: u32,
        c: &Checkpoint,
        dead_classes: &[(&'static str, u64)],
        started: std::time::Instant,
    ) {
        self.map().insert(
            p,
            Asked {
                seq: c.seq,
                owner: c.owner.clone(),
                checkpoint: c.clone(),
                dead_classes: dead_classes.to_vec(),
                started,
            },
        );
    }

    /// Whether a commit of `p` reported failure after its seal was asked for.
    pub(super) fn unsure(&self, p: u32) -> bool {
        self.map().contains_key(&p)
    }

    /// The commit of `p` now stands, counted where it was made.
    fn known(&self, p: u32) {
        self.map().remove(&p);
    }

    /// The store's newest commit of `p` after a failure, `latest`: the commit asked for, if it
    /// is this one (it landed), with its classes of dead letters and the seconds from its
    /// start until now; forgotten either way (the resync decided its outcome).
    pub(super) fn landed(&self, p: u32, latest: Option<&Checkpoint>) -> Option<LandedLate> {
        let asked = self.map().remove(&p)?;
        let latest = latest?;
        (latest.seq == asked.seq
            && latest.owner == asked.owner
            && latest.key == asked.checkpoint.key)
            .then(|| {
                let seconds = asked.started.elapsed().as_secs_f64();
                (asked.checkpoint, asked.dead_classes, seconds)
            })
    }
}

/// Files of a commit not yet published; dropping it aborts them.
#[derive(Default)]
struct Unpublished {
    /// Files whose writers are not finished yet.
    unfinished: Vec<OutputFile>,
    files: Vec<(String, OutputFile, FileEntry)>,
    dead: Option<crate::deadletter::DeadLetterWriter>,
}

impl Drop for Unpublished {
    fn drop(&mut self) {
        for f in self.unfinished.drain(..) {
            let _ = f.abort();
        }
        for (_, f, _) in self.files.drain(..) {
            let _ = f.abort();
        }
        if let Some(w) = self.dead.take() {
            let _ = w.abort();
        }
    }
}

/// Aborts a partition's open files (nothing of them becomes visible).
/// Writes the rest of an open file (footer included): its name, file and checkpoint entry.
pub(super) fn finish_file(f: OpenFile) -> Result<(String, OutputFile, FileEntry), WorkError> {
    let OpenFile {
        rel,
        file,
        writer,
        rows,
        first_offset,
        last_offset,
        partition,
        ..
    } = f;
    writer.finish()?;
    let entry = FileEntry {
        path: rel.clone(),
        first_offset,
        last_offset,
        rows,
        bytes: file.bytes_written(),
        partition,
    };
    Ok((rel, file, entry))
}

pub(super) fn abort_open(mut op: OpenPartition) {
    for f in std::mem::take(&mut op.files).into_values() {
        let _ = f.file.abort();
    }
    for (_, file, _) in std::mem::take(&mut op.parked) {
        let _ = file.abort();
    }
    if let Some(w) = op.dead.take() {
        let _ = w.abort();
    }
}
