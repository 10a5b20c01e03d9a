//! `--from-checkpoint` at a partition's claim: whether a partition was already rolled back to
//! the checkpoint asked (the flag applies once, `--again` once more), the partitions a flag
//! left set must not roll back (newer than the job's roll-back to that number), and whether
//! the source can still replay from the checkpoint (`check_replay`).

use std::collections::HashMap;

use super::TaskError;
use crate::commit::checkpoint::{Checkpoints, Rollback};
use crate::fanout::REBALANCE_CALLS;

/// `run --from-checkpoint N`, and whether `--again` was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromCheckpoint {
    /// The checkpoint every partition replays from.
    pub seq: u64,
    /// Roll back even a partition an earlier run already rolled back to `seq` (without it, a
    /// roll-back is made once: a later start with the flag still set does not repeat it).
    pub again: bool,
    /// Roll back on a compacted topic too (see [`refuse_compacted`]).
    pub compacted: bool,
}

/// The compacted topics (with their policy) a roll-back (`from`) must not replay, unless
/// `--despite-compaction`: the records superseded since their export are gone while their
/// offsets stay held, so a roll-back would delete those rows from the destination and the
/// replay could not write them again. Topics whose policy the brokers do not tell are
/// warned about (a roll-back of them goes on).
pub fn compacted(
    source: &mut dyn crate::source::Source,
    from: Option<FromCheckpoint>,
) -> Vec<(String, String)> {
    if from.is_none_or(|f| f.compacted) {
        return Vec::new();
    }
    let (compacted, unknown) = source.compacted();
    if let Some(why) = unknown {
        tracing::warn!(reason = %why, "whether these topics are compacted cannot be told: a roll-back of them goes on unchecked (on a compacted topic it deletes rows the replay cannot write again)");
    }
    compacted
}

/// The topic of partition key `key` (`<topic>-<partition>`).
fn topic_of(key: &str) -> &str {
    key.rsplit_once('-').map_or(key, |(t, _)| t)
}

/// Refuses the roll-back of partition `key` to `seq` when its topic is one of `compacted`
/// (see [`compacted`]): at its claim, where a roll-back is to be made (not one made before,
/// a flag left set), before anything is deleted.
pub fn refuse_compacted(compacted: &[(String, String)], key: &str, seq: u64) -> Result<(), String> {
    let topic = topic_of(key);
    let Some((_, policy)) = compacted.iter().find(|(t, _)| t == topic) else {
        return Ok(());
    };
    Err(format!(
        "cannot roll partition {key} back to checkpoint {seq}: its topic {topic} is compacted \
         (cleanup.policy = {policy}): the records superseded since their export are gone while \
         their offsets stay held, so the roll-back would delete those rows from the destination \
         and the replay could not write them again. Nothing was deleted. Add \
         --despite-compaction to roll back anyway"
    ))
}

/// A roll-back to the same checkpoint this long before this process started counts as this
/// run's (processes of a group started together with `--from-checkpoint`).
const ROLL_BACK_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A partition committed this long after its topic's roll-back, without one of its own, is
/// not rolled back when it meets the flag later: the group went on exporting it, and the flag
/// is one left set (a rolling restart adding the flag to each member rolls back what each
/// gets within this time).
const LEFT_SET_AFTER_MS: i64 = 60 * 60 * 1000;

/// Roll-backs this process made: (the job's records' folder in its destination, partition
/// key, checkpoint). Their records in the destination are pruned after a few hundred
/// commits, and a task its supervisor restarts keeps the flag (to finish a roll-back a failed
/// run left half made): without this, the restart found the checkpoint pruned and failed,
/// again and again, for good.
static DONE_HERE: std::sync::Mutex<std::collections::BTreeSet<(String, String, u64)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The entry of partition `key`'s roll-back to `seq` in [`DONE_HERE`].
fn entry(checkpoints: &Checkpoints, key: &str, seq: u64) -> (String, String, u64) {
    let job = checkpoints.job();
    let folder = checkpoints
        .destination()
        .display(&format!("_sluice/{job}/"));
    (folder, key.to_string(), seq)
}

/// Records that this process rolled partition `key` back to checkpoint `seq`.
pub fn done_here(checkpoints: &Checkpoints, key: &str, seq: u64) {
    let mut done = DONE_HERE.lock().unwrap_or_else(|p| p.into_inner());
    done.insert(entry(checkpoints, key, seq));
}

/// Whether this process rolled partition `key` back to checkpoint `seq` already.
pub fn rolled_back_here(checkpoints: &Checkpoints, key: &str, seq: u64) -> bool {
    let done = DONE_HERE.lock().unwrap_or_else(|p| p.into_inner());
    done.contains(&entry(checkpoints, key, seq))
}

/// The roll-back to `f.seq` partition `key` already had, if any: one at any time, or with
/// `--again` one made since shortly before this process started (by another process of a
/// group started together). `None`: the partition is to be rolled back now.
pub fn already_rolled_back(
    checkpoints: &Checkpoints,
    key: &str,
    f: FromCheckpoint,
) -> Result<Option<Rollback>, TaskError> {
    let since = f
        .again
        .then(|| crate::commit::process_started_ms() - ROLL_BACK_WINDOW_MS);
    Ok(checkpoints.rolled_back(key, f.seq, since)?)
}

/// The claims asked (`(key, roll-back)`) with the roll-back dropped (and the reason logged)
/// where the partition was [`already_rolled_back`] to that checkpoint.
pub fn roll_backs(
    checkpoints: &Checkpoints,
    asked: Vec<(String, Option<FromCheckpoint>)>,
) -> Result<Vec<(String, Option<FromCheckpoint>)>, TaskError> {
    // A few store reads each (inside a rebalance for a group member): side by side.
    let span = tracing::Span::current();
    let done = crate::fanout::each(&asked, REBALANCE_CALLS, "roll-back check", |(key, f)| {
        let _entered = span.enter();
        let Some(f) = *f else {
            return Ok::<_, TaskError>(None);
        };
        if rolled_back_here(checkpoints, key, f.seq) {
            return Ok(None);
        }
        match already_rolled_back(checkpoints, key, f)? {
            Some(r) => {
                log_not_repeated(key, f, &r);
                Ok(None)
            }
            None => Ok(Some(f)),
        }
    });
    let mut out: Vec<(String, Option<FromCheckpoint>)> =
        asked.into_iter().map(|(key, _)| (key, None)).collect();
    for (i, roll) in done {
        out[i].1 = roll?;
    }
    newer_than_the_roll_back(checkpoints, &mut out)?;
    Ok(out)
}

/// Drops the roll-backs asked of partitions newer than the job's roll-back to that checkpoint:
/// where another partition of the same topic was rolled back to `seq` (by an earlier run with
/// the flag, or with `--again` one since shortly before this process started) at a time this
/// partition's checkpoint `seq` postdates, or this partition never had one (not pruned: none
/// at all), the flag was left set and the number means something else here (a partition the
/// topic grew since). Before, such a partition failed every start ("no checkpoint N"), or was
/// rolled back to a commit of its own nobody asked for. Times are the two hosts' clocks: a
/// checkpoint made within their skew of the roll-back may be judged either way.
fn newer_than_the_roll_back(
    checkpoints: &Checkpoints,
    asked: &mut [(String, Option<FromCheckpoint>)],
) -> Result<(), TaskError> {
    let Some(f) = asked.iter().find_map(|(_, f)| *f) else {
        return Ok(());
    };
    let topic = |key: &str| topic_of(key).to_string();
    let topics: std::collections::HashSet<String> = asked
        .iter()
        .filter(|(_, r)| r.is_some())
        .map(|(k, _)| topic(k))
        .collect();
    let since = f
        .again
        .then(|| crate::commit::process_started_ms() - ROLL_BACK_WINDOW_MS);
    let keys: Vec<String> = checkpoints
        .keys()?
        .into_iter()
        .filter(|k| topics.contains(&topic(k)))
        .collect();
    let span = tracing::Span::current();
    let found = crate::fanout::each(&keys, REBALANCE_CALLS, "roll-back times", |key| {
        let _entered = span.enter();
        checkpoints
            .rolled_back(key, f.seq, since)
            .map(|r| r.map(|r| r.at_ms))
    });
    // The first roll-back to `seq` per topic (a partition whose records do not read is
    // judged by the others).
    let mut first: HashMap<String, i64> = HashMap::new();
    for (i, at) in found {
        match at {
            Ok(Some(at)) => {
                let t = first.entry(topic(&keys[i])).or_insert(at);
                *t = (*t).min(at);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(partition = %keys[i], error = %e, "cannot read this partition's roll-backs");
            }
        }
    }
    for (key, roll) in asked.iter_mut().filter(|(_, r)| r.is_some()) {
        let Some(&at) = first.get(&topic(key)) else {
            continue;
        };
        let history = checkpoints.history(key)?;
        let made = history
            .iter()
            .find(|c| c.seq == f.seq)
            .map(|c| c.committed_at_ms);
        // Exported on, long after the job's roll-back, by an owner that did not roll it back
        // (a member started without the flag held it then): the flag, met now (the partition
        // moved here, or a start weeks later), is one left set.
        let newest = history.last().map_or(i64::MIN, |c| c.committed_at_ms);
        if newest > at.saturating_add(LEFT_SET_AFTER_MS) {
            let (when, last) = (
                crate::commit::format_ms(at),
                crate::commit::format_ms(newest),
            );
            tracing::warn!(partition = %key, seq = f.seq, rolled_back_at = %when, last_commit = %last, "--from-checkpoint left set: other partitions of the topic were rolled back to this checkpoint at {when}, and this partition went on being exported until {last} without a roll-back (held by a process started without the flag): it is not rolled back now (remove the flag: --again would roll back once more the partitions rolled back then)");
            *roll = None;
            continue;
        }
        let pruned = made.is_none()
            && checkpoints
                .pruned_below(key)?
                .is_some_and(|below| f.seq < below);
        if !pruned && made.is_none_or(|made| made > at) {
            let when = crate::commit::format_ms(at);
            tracing::warn!(partition = %key, seq = f.seq, rolled_back_at = %when, "--from-checkpoint left set: other partitions of the topic were rolled back to this checkpoint at {when}, and this partition's checkpoint of that number was made since (or it never had one): it is not rolled back (remove the flag)");
            *roll = None;
        }
    }
    Ok(())
}

/// Says why partition `key` is not rolled back to `f.seq`: roll-back `r` was made before.
pub(super) fn log_not_repeated(key: &str, f: FromCheckpoint, r: &Rollback) {
    let at = crate::commit::format_ms(r.at_ms);
    if r.at_ms >= crate::commit::process_started_ms() - ROLL_BACK_WINDOW_MS {
        tracing::info!(partition = %key, seq = f.seq, commit = r.seq, %at, "already rolled back to this checkpoint minutes ago (by another process of a group started with the flag, or an earlier start); not repeated");
    } else {
        tracing::warn!(partition = %key, seq = f.seq, commit = r.seq, %at, by = %r.owner, "already rolled back to this checkpoint by an earlier run; not repeated (--from-checkpoint applies once: pass --again as well to roll back once more)");
    }
}

/// Before a roll-back deletes anything: checkpoint `seq` exists and the source can still read
/// from where it resumes (`holds`: the positions the source holds, when it can tell).
pub(super) fn check_replay(
    checkpoints: &Checkpoints,
    key: &str,
    seq: u64,
    holds: Option<(u64, u64)>,
) -> Result<(), TaskError> {
    let history = checkpoints.history(key)?;
    let Some(target) = history.iter().find(|c| c.seq == seq) else {
        // Pruned: a roll-back to it an earlier run made is pruned too, so a flag left set
        // cannot be told from a new one.
        if let Some(below) = checkpoints.pruned_below(key)?.filter(|&b| seq < b) {
            return Err(TaskError::Refused {
                job: checkpoints.job().to_string(),
                reason: format!(
                    "cannot replay partition {key} from checkpoint {seq}: it was pruned (the \
                     partition keeps its newest commits, from {below} on); if an earlier run \
                     already rolled back to it, start without --from-checkpoint. Nothing was \
                     deleted"
                ),
            });
        }
        return Err(TaskError::Refused {
            job: checkpoints.job().to_string(),
            reason: crate::commit::checkpoint::CheckpointError::Unknown {
                key: key.to_string(),
                seq,
            }
            .to_string(),
        });
    };
    // Before any partition's term (a claim listing too much is refused at its claim, after
    // other partitions may have been rolled back).
    crate::commit::check_roll_back_listing(key, &history, seq)?;
    if let Some((first, last)) = holds {
        if target.next_offset < first || target.next_offset > last {
            let (job, reason) = (
                checkpoints.job().to_string(),
                format!(
                    "cannot replay partition {key} from checkpoint {seq}: it resumes at offset \
                     {}, but the source holds only {first}..{last} (retention, a released WAL \
                     or a shorter file); nothing was deleted",
                    target.next_offset
                ),
            );
            // Below what the source holds, the records are gone; above it, a watermark may
            // read low for a moment (a leader moving): a later start may find them.
            return Err(match target.next_offset < first {
                true => TaskError::Refused { job, reason },
                false => TaskError::Job { job, reason },
            });
        }
    }
    Ok(())
}
