//! Checkpoints counted in another log's positions. A push source's offsets are positions in
//! its own WAL; two processes of one job, each with a WAL of its own (another `state_dir` or
//! host, sharing the destination), alternating as the partition's owner, write checkpoints
//! that count different logs. Resuming from the other's would skip records this log holds,
//! or delete them as committed, though no commit of its own covered them (acknowledged
//! pushes, silently lost), or read its own exported records again. So a start is refused when
//! something would be lost, before the partition is claimed (a refused start fences nobody)
//! and again after; otherwise the log continues from the other's checkpoint and records that
//! it did ([`Source::continue_log`]), so a crash before its first commit of its own does not
//! make the same checkpoint look foreign. A copy of a log's folder (a volume snapshot started
//! as another process) keeps the log's identity; its checkpoints are told apart by the run
//! that wrote them ([`crate::wal::Runs`]) and count as another log's.

use super::TaskError;
use crate::commit::checkpoint::{Checkpoint, Checkpoints};
use crate::source::{PartitionInfo, Source};

/// Before any partition is claimed: refuses what [`after_claim`] would, for the checkpoint the
/// partition is to resume from: its newest, or the commit it is rolled back to (its entry in
/// `roll_back_to`: a roll-back deletes the later commits' files when it is claimed, so it is
/// checked before).
pub fn before_claim(
    source: &mut dyn Source,
    checkpoints: &Checkpoints,
    parts: &[PartitionInfo],
    roll_back_to: &[Option<u64>],
) -> Result<(), TaskError> {
    if !has_log(source) {
        return Ok(());
    }
    for (p, roll) in parts.iter().zip(roll_back_to) {
        let from = match *roll {
            Some(seq) => checkpoints
                .history(&p.key())?
                .into_iter()
                .find(|c| c.seq == seq),
            None => checkpoints.latest(&p.key())?,
        };
        check(source, checkpoints, p, from.as_ref())?;
    }
    Ok(())
}

/// After partition `p` was claimed, with `latest` its newest commit: refuses, or lets the log
/// continue from a checkpoint of another log (recorded by the source).
pub fn after_claim(
    source: &mut dyn Source,
    checkpoints: &Checkpoints,
    p: &PartitionInfo,
    latest: Option<&Checkpoint>,
) -> Result<(), TaskError> {
    if let Some((theirs, pos)) = check(source, checkpoints, p, latest)? {
        source.continue_log(p.id, &theirs, pos)?;
    }
    Ok(())
}

/// `Some((their log, position))` when the log is to continue from a checkpoint of another
/// log; an error when resuming there would lose or repeat records. A checkpoint of this log's
/// identity that a copy of its folder wrote (a run this folder does not know, or a position
/// past where this folder's copy of the run ended) counts another log's positions too.
fn check(
    source: &mut dyn Source,
    checkpoints: &Checkpoints,
    p: &PartitionInfo,
    latest: Option<&Checkpoint>,
) -> Result<Option<(String, u64)>, TaskError> {
    if !has_log(source) {
        return Ok(None);
    }
    let mine = source.log_id();
    let Some(latest) = latest else {
        return Ok(None);
    };
    if counts_mine(source, p, mine.as_deref(), latest) {
        return Ok(None);
    }
    // A log without an identity is named by its last run (see `counts_mine`).
    let run = latest.log_runs.last().map_or("?", |(r, _)| r.as_str());
    let theirs = latest.log.clone().unwrap_or_else(|| format!("run {run}"));
    // This log already continued from that very checkpoint: its positions go on from there.
    if source
        .log_base(p.id)
        .is_some_and(|(b, at)| b == theirs && at == latest.next_offset)
    {
        return Ok(None);
    }
    let key = p.key();
    let ours = mine.as_deref().map_or_else(
        || "one without an identity: there was no room to write it at its start".to_string(),
        str::to_string,
    );
    let whose = if latest.log.is_some() && latest.log == mine {
        format!(
            "was written by a copy of this process's log ({ours}, run {run}): a copy of the \
             log's folder (a volume snapshot, a copied state folder) runs or ran as another \
             process of this job, and from the copy on the two append other records at the \
             same positions."
        )
    } else if latest.log.is_none() {
        format!(
            "was written by a log without an identity (there was no room to write it at its \
             start) whose runs this process's log ({ours}) does not know (run {run}): another \
             process of this job, with a log of its own, wrote it."
        )
    } else {
        format!(
            "counts the positions of another log ({theirs}) than this process's ({ours}): \
             another process of this job, with a log of its own, wrote it."
        )
    };
    let refuse = |why: String| TaskError::Job {
        job: checkpoints.job().to_string(),
        reason: format!(
            "partition {key}: the checkpoint it resumes from (commit {}, by {}) {whose} {why} \
             Nothing was deleted. Two push processes of one job must not share a destination: \
             give each its own job name or repo, and each its own state folder.",
            latest.seq, latest.owner
        ),
    };
    let held = source.replayable(p.id)?.filter(|(s, e)| s < e);
    if let Some((start, end)) = held {
        // A copy of this folder continued a run this folder had too: up to where the copy was
        // made, the two hold the same records, so the checkpoint covers those of this log.
        let shared = if latest.log.is_some() && latest.log == mine {
            source.log_shares(p.id, &latest.log_runs).unwrap_or(0)
        } else {
            0
        };
        let history = checkpoints.history(&key)?;
        let own_commit = history
            .iter()
            .rev()
            .find(|c| counts_mine(source, p, mine.as_deref(), c));
        let own = own_commit
            .map_or(start, |c| c.next_offset.max(start))
            .max(shared.min(latest.next_offset));
        // Past 256 commits of the other log, this log's own may be pruned: then some of the
        // records from `own` on may have been exported already.
        let pruned = own_commit.is_none() && !checkpoints.history_complete(&key)?;
        if end > own {
            return Err(refuse(format!(
                "This log holds positions {own} to {end}, which no commit of its own covered \
                 (acknowledged records){}; resuming at the checkpoint would drop them. With the \
                 job stopped, `sluice wal export <job file> [--repo <repo>] --output <file> \
                 --from {own}` writes them out (and removes a spill of this log's records from \
                 the state folder: the export holds them), to push again once the log's folder \
                 is moved aside.",
                if pruned {
                    " as far as the checkpoints kept tell: its own commits may have been \
                     pruned, so records near the start may have been exported already"
                } else {
                    ""
                }
            )));
        }
        if latest.next_offset <= end {
            return Err(refuse(format!(
                "This log holds only records its own commits exported (up to position {end}), \
                 but the checkpoint's position {} lies inside it; move the log's folder aside \
                 to continue from the checkpoint.",
                latest.next_offset
            )));
        }
    }
    // An empty log (a memory log at every start, a new volume) has nothing to say.
    if held.is_some() {
        tracing::info!(partition = %key, log = %ours, checkpoint_log = %theirs, checkpoint_run = latest.log_runs.last().map_or("", |(r, _)| r.as_str()), position = latest.next_offset, "the newest checkpoint counts another log's positions (or a copy of this one's); this log holds nothing it would lose, so it continues from there");
    }
    Ok(Some((theirs, latest.next_offset)))
}

/// Whether the source's positions are those of a log of its own (a push source's), which
/// checkpoints name: by its identity, or, a log without one, by its runs.
fn has_log(source: &dyn Source) -> bool {
    source.log_id().is_some() || !source.log_runs().is_empty()
}

/// Whether checkpoint `c` counts this folder's positions: it names this log (`mine`), and
/// this folder holds the same records as the checkpoint's writer up to its position. A
/// checkpoint naming no log was written by a log without an identity (a full disk kept it
/// from being written at its start) or by an earlier version (before identities; it names no
/// runs either): only its runs tell whose it is, and they count here when this folder knows
/// them. A log without an identity counts no checkpoint that names one.
fn counts_mine(source: &dyn Source, p: &PartitionInfo, mine: Option<&str>, c: &Checkpoint) -> bool {
    let named = match (c.log.as_deref(), mine) {
        (None, _) => true,
        (Some(theirs), Some(mine)) => theirs == mine,
        (Some(_), None) => false,
    };
    named
        && source
            .log_shares(p.id, &c.log_runs)
            .is_some_and(|s| c.next_offset <= s)
}
