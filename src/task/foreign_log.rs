//! Checkpoints counted in another log's positions. A push source's offsets are positions in
//! its own WAL; two processes of one job, each with a WAL of its own (another `state_dir` or
//! host, sharing the destination), alternating as the partition's owner, write checkpoints
//! that count different logs. Resuming from the other's would skip records this log holds,
//! or delete them as committed, though no commit of its own covered them (acknowledged
//! pushes, silently lost), or read its own exported records again. So a start is refused when
//! something would be lost, before the partition is claimed (a refused start fences nobody)
//! and again after; otherwise the log continues from the other's checkpoint and records that
//! it did ([`Source::continue_log`]), so a crash before its first commit of its own does not
//! make the same checkpoint look foreign.

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
    if source.log_id().is_none() {
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
/// log; an error when resuming there would lose or repeat records.
fn check(
    source: &mut dyn Source,
    checkpoints: &Checkpoints,
    p: &PartitionInfo,
    latest: Option<&Checkpoint>,
) -> Result<Option<(String, u64)>, TaskError> {
    let Some(mine) = source.log_id() else {
        return Ok(None);
    };
    let Some(latest) = latest else {
        return Ok(None);
    };
    let Some(theirs) = latest.log.as_deref().filter(|t| *t != mine) else {
        return Ok(None);
    };
    // This log already continued from that very checkpoint: its positions go on from there.
    if source
        .log_base(p.id)
        .is_some_and(|(b, at)| b == theirs && at == latest.next_offset)
    {
        return Ok(None);
    }
    let key = p.key();
    let refuse = |why: String| {
        TaskError::Job {
        job: checkpoints.job().to_string(),
        reason: format!(
            "partition {key}: the checkpoint it resumes from (commit {}, by {}) counts the positions of \
             another log ({theirs}) than this process's ({mine}): another process of this job, \
             with a log of its own, wrote it. {why} Nothing was deleted. Two push processes of \
             one job must not share a destination: give each its own job name or repo.",
            latest.seq, latest.owner
        ),
    }
    };
    let held = source.replayable(p.id)?.filter(|(s, e)| s < e);
    if let Some((start, end)) = held {
        let own = checkpoints
            .history(&key)?
            .into_iter()
            .rev()
            .find(|c| c.log.as_deref() == Some(mine.as_str()))
            .map_or(start, |c| c.next_offset.max(start));
        if end > own {
            return Err(refuse(format!(
                "This log holds positions {own} to {end}, which no commit of its own covered \
                 (acknowledged records); resuming at the checkpoint would drop them."
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
        tracing::info!(partition = %key, log = %mine, checkpoint_log = %theirs, position = latest.next_offset, "the newest checkpoint counts another log's positions; this log holds nothing it would lose, so it continues from there");
    }
    Ok(Some((theirs.to_string(), latest.next_offset)))
}
