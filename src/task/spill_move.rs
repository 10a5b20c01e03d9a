//! A push spill's items moved to continue another log's checkpoint: when another process of
//! the job committed the partition in its own log's positions while this one was stopped, no
//! commit can have held the spilled records, so they start at that checkpoint (past what the
//! spill's own line committed, when a restore stopped before removing it).

use super::TaskError;
use crate::commit::checkpoint::{Checkpoint, Checkpoints};
use crate::source::Source;

/// A partition's spilled items, moved to continue another log's checkpoint.
pub(super) struct Move {
    /// Where the newest commit of a log of the spill's line left the partition: items up to
    /// here were committed (by a restore that stopped before removing the spill). `None`:
    /// unknown, the history that would tell was pruned.
    pub(super) committed: Option<u64>,
    /// How far the rest move: set by the first of them.
    pub(super) by: Option<i128>,
}

/// Whether partition `p`'s spilled items move: when its newest checkpoint counts the positions
/// of a log outside the spill's line (`logs`) and this process's log holds nothing to read
/// again (a memory log; a WAL that holds records continues that checkpoint by its own
/// positions, or is refused before the claim).
pub(super) fn plan(
    logs: &[String],
    restored: bool,
    key: Option<&str>,
    p: u32,
    source: &mut dyn Source,
    checkpoints: &Checkpoints,
) -> Result<Option<Move>, TaskError> {
    let Some(key) = key.filter(|_| !logs.is_empty()) else {
        return Ok(None);
    };
    let held = source.replayable(p)?.is_some_and(|(s, e)| s < e);
    let newest = checkpoints.latest(key)?;
    let plan = decide(logs, restored, newest.as_ref(), held, || {
        Ok::<_, crate::commit::checkpoint::CheckpointError>((
            checkpoints.history(key)?,
            checkpoints.history_complete(key)?,
        ))
    })?;
    if plan.as_ref().is_some_and(|m| m.committed.is_none()) {
        return Err(TaskError::Job {
            job: String::new(),
            reason: format!(
                "partition {key}: the spill's records may be committed already (by a start that \
                 restored it and stopped before removing it), and the checkpoints that would \
                 tell were pruned after another process's commits; nothing was restored. \
                 `--discard-spill` drops the spill (its records not committed are then lost)"
            ),
        });
    }
    if plan.is_some() {
        tracing::warn!(partition = %key, spill_logs = ?logs, "another process committed this partition after the spill was written; the spilled records continue its checkpoint");
    }
    Ok(plan)
}

/// [`plan`]'s decision, from the partition's newest checkpoint and whether this process's log
/// holds records to read again; the history (oldest first) is read only when the items move
/// (a restart after this process's own commits, the usual case, reads one record).
fn decide<E>(
    logs: &[String],
    restored: bool,
    newest: Option<&Checkpoint>,
    held: bool,
    history: impl FnOnce() -> Result<(Vec<Checkpoint>, bool), E>,
) -> Result<Option<Move>, E> {
    let Some(newest) = newest else {
        return Ok(None);
    };
    // A checkpoint naming no log but runs is a WAL's without an identity (a full disk at
    // its start): never of the spill's line, whose logs are memory logs, each named. One
    // naming neither is an earlier version's, of this line.
    let outside = match &newest.log {
        Some(theirs) => !logs.contains(theirs),
        None => !newest.log_runs.is_empty(),
    };
    if !outside || held {
        return Ok(None);
    }
    let (history, complete) = history()?;
    let committed = match history
        .iter()
        .rev()
        .find(|c| c.log.as_ref().is_some_and(|l| logs.contains(l)))
    {
        Some(c) => Some(c.next_offset),
        // No start restored the spill (a start marks it before it restores), or the history
        // is whole: nothing of it was committed.
        None if complete || !restored => Some(0),
        None => None, // pruned: a commit of the line may have been among the records removed
    };
    Ok(Some(Move {
        committed,
        by: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(seq: u64, next_offset: u64, log: &str) -> Checkpoint {
        serde_json::from_value(serde_json::json!({
            "version": 1, "job": "j", "key": "push-0", "seq": seq,
            "next_offset": next_offset, "next_line": 0, "files": [],
            "dead_letter_files": [], "rows": 1, "dead_letters": 0,
            "committed_at_ms": 0, "log": log,
        }))
        .unwrap()
    }

    /// The spill (positions of log `a`, restored once by `a2`) moves only when the newest
    /// checkpoint is another line's and nothing is held to read again; it skips what its own
    /// line committed.
    /// `decide` over a whole history.
    fn decide_in(logs: &[String], history: &[Checkpoint], held: bool) -> Option<Move> {
        let complete = history.first().is_none_or(|c| c.seq <= 1);
        // A spill listing more than the log that wrote it was restored once.
        let restored = logs.len() > 1;
        decide(logs, restored, history.last(), held, || {
            Ok::<_, ()>((history.to_vec(), complete))
        })
        .unwrap()
    }

    #[test]
    fn a_spill_moves_past_another_logs_checkpoint_only_when_nothing_is_held() {
        let logs = vec!["a".to_string(), "a2".to_string()];
        let ours = [cp(1, 100, "a"), cp(2, 150, "a2")];
        // Its own line's checkpoint is the newest: the positions stand.
        assert!(decide_in(&logs, &ours, false).is_none());
        // Another log committed after it: move, past what `a2` committed.
        let theirs = [cp(1, 100, "a"), cp(2, 150, "a2"), cp(3, 900, "b")];
        let m = decide_in(&logs, &theirs, false).expect("moves");
        assert_eq!((m.committed, m.by), (Some(150), None));
        // A WAL that holds records continues that checkpoint by its own positions.
        assert!(decide_in(&logs, &theirs, true).is_none());
        // No line commit in the history: nothing of the spill was committed.
        let m = decide_in(&logs, &[cp(1, 40, "b")], false).expect("moves");
        assert_eq!(m.committed, Some(0));
        // Nor in a pruned one (its oldest commit is not the first): unknown, so not moved
        // past what a pruned commit of the line may have held.
        let m = decide_in(&logs, &[cp(300, 9000, "b")], false).expect("moves");
        assert_eq!(m.committed, None);
        // Unless no start restored the spill: then nothing of it can have been committed.
        let m = decide_in(&logs[..1], &[cp(300, 9000, "b")], false).expect("moves");
        assert_eq!(m.committed, Some(0));
        // A start restored it without adding a log (a WAL keeps its identity): unknown.
        let pruned = [cp(300, 9000, "b")];
        let m = decide(&logs[..1], true, pruned.last(), false, || {
            Ok::<_, ()>((pruned.to_vec(), false))
        })
        .unwrap()
        .expect("moves");
        assert_eq!(m.committed, None);
        // Nothing to compare with: no checkpoint, or one without a log (files, Kafka).
        assert!(decide_in(&logs, &[], false).is_none());
        let mut none = cp(1, 5, "x");
        none.log = None;
        assert!(decide_in(&logs, &[none.clone()], false).is_none());
        // One naming runs but no log: a WAL's without an identity, outside the line.
        none.log_runs = vec![("r1".into(), 0)];
        let m = decide_in(&logs, &[cp(1, 100, "a"), none], false).expect("moves");
        assert_eq!(m.committed, Some(100));
    }
}
