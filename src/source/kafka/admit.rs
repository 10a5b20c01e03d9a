//! Taking partitions the group handed to this member: where each starts is judged from the
//! group's offset or `auto_offset_reset`, the task's checkpoints and claims, and the broker's
//! log (a gap is refused or skipped as `on_gap` says; a checkpoint's last message compared),
//! before they are assigned; in the rebalance callback, or later for one whose leader did not
//! answer then (`leaderless`). A partition refused is not taken, and the others are
//! (`refused`).

use std::collections::HashMap;
use std::time::Instant;

use rdkafka::consumer::BaseConsumer;
use rdkafka::{Offset, TopicPartitionList};

use super::err_at;
use super::group::{Event, GroupContext, Shared};
use super::leaderless::Marks;
use crate::source::{Assigned, Resumed, SourceError};

/// Takes partitions `marks` (with their watermarks), handed to this member by the group, whose
/// group offsets are `committed`: where each starts is judged (the group's offset, else
/// `auto_offset_reset`; then the task's checkpoints and claims, `Membership::assigned`; then
/// the gaps, `on_gap`; then each checkpoint's last message), their messages forwarded, and
/// the assignment reported to the source (`Event::Assigned`). Returns those taken at the
/// offsets reading starts at, to be assigned; those refused are held (`refused`).
pub(super) fn admit(
    consumer: &BaseConsumer<GroupContext>,
    shared: &mut Shared,
    marks: &[Marks],
    committed: &TopicPartitionList,
    began: Instant,
) -> Result<TopicPartitionList, SourceError> {
    let name = shared.name.clone();
    let mut parts: Vec<Assigned> = Vec::with_capacity(marks.len());
    let mut held = HashMap::with_capacity(marks.len());
    for ((topic, p), (low, high)) in marks {
        let (low, high) = (*low, *high);
        let stored = committed
            .find_partition(topic, *p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            });
        // The group's offset is offered clamped into the log (where the job records and
        // moves first starts, see `Membership::assigned`), and judged below as it is.
        let start = match stored {
            Some(o) => o.clamp(low, high),
            None if shared.reset_latest => high,
            None => low,
        };
        let id = shared.id(topic, *p);
        let info = shared.infos[id as usize].0.clone();
        held.insert(id, (low, high, stored));
        parts.push(Assigned {
            info,
            start: start as u64,
            reset: stored.is_none(),
            held: (low.max(0) as u64, high.max(0) as u64),
        });
    }
    // Recorded at the first assignment under `latest`, whether or not it starts any
    // partition at the end (a job switched from `earliest` holds offsets of them all).
    if shared.reset_latest {
        let since = match shared.membership.as_mut() {
            Some(m) => m.first_started()?,
            None => None,
        };
        if let Some(since) = since {
            starts_since(&shared.recheck, &mut parts, since);
        }
    }
    let asked = began.elapsed();
    let starts = match shared.membership.as_mut() {
        Some(m) => m.assigned(&parts)?,
        None => parts
            .iter()
            .map(|a| Resumed {
                id: a.info.id,
                offset: a.start,
                checkpointed: false,
                mark: None,
                refused: None,
            })
            .collect(),
    };
    // (id, the position before its first record, the offset reading starts at).
    let mut taken: Vec<(u32, i64, i64)> = Vec::with_capacity(starts.len());
    // (id, why, whether it is judged again by itself: a backfill's range may commit).
    let mut refused: Vec<(u32, String, bool)> = Vec::new();
    let mut marked = Vec::new();
    for s in starts {
        let Resumed {
            id,
            offset,
            checkpointed,
            mark,
            refused: by_task,
        } = s;
        if let Some(r) = by_task {
            refused.push((id, r.why, r.retry));
            continue;
        }
        let (info, p) = shared.infos[id as usize].clone();
        let (low, high, stored) = held.get(&id).copied().unwrap_or((0, i64::MAX, None));
        // Where this job has no checkpoint of the partition, it starts at the group's
        // offset (unless a first start was moved): one outside the log was clamped into
        // it, skipping records without a word. It is a gap like a checkpoint's: `on_gap`
        // decides below the log; above, the log was re-created below it, a refusal.
        let group = stored.filter(|o| {
            !checkpointed && offset as i64 == (*o).clamp(low, high) && *o != offset as i64
        });
        let judged = group.unwrap_or(offset as i64);
        let (read, skipped) =
            match super::gap::decide(&info.key(), judged, low, high, shared.skip_gaps) {
                Ok(decided) => decided,
                Err(e) => {
                    let why = match group {
                        Some(o) => group_gap(&info.key(), o, low, high),
                        None => e,
                    };
                    refused.push((id, why, false));
                    continue;
                }
            };
        if let Some((from, to)) = skipped {
            shared.skips.record(&info.key(), from, to);
        }
        if let Some(m) = mark.filter(|_| read == offset as i64) {
            marked.push((info.topic.clone(), p, m, read, low));
        }
        taken.push((id, offset as i64, read));
    }
    // A checkpoint's last message is compared with the broker's before reading on.
    for (topic, p, why) in super::identity::check_each(&shared.recheck, &marked) {
        let id = shared.id(&topic, p);
        taken.retain(|(t, _, _)| *t != id);
        refused.push((id, why, false));
    }
    refuse(shared, refused);
    let mut tpl = TopicPartitionList::new();
    for (id, _, read) in &taken {
        let (info, p) = &shared.infos[*id as usize];
        tpl.add_partition_offset(&info.topic, *p, Offset::Offset(*read))
            .map_err(|e| err_at(&name, e.to_string()))?;
    }
    // Before the partitions are assigned, so none of their messages take the other way.
    if let Some(fwd) = shared.forward {
        for e in tpl.elements() {
            fwd.take(consumer, e.topic(), e.partition());
        }
    }
    // How long the group waited on this member: the broker's offsets and watermarks
    // (`asked`), then the claims in the destination.
    let tps: Vec<(&str, i32)> = taken
        .iter()
        .map(|(id, _, _)| {
            let (info, p) = &shared.infos[*id as usize];
            (info.topic.as_str(), *p)
        })
        .collect();
    tracing::info!(partitions = ?tps, asked_ms = asked.as_millis() as u64, took_ms = began.elapsed().as_millis() as u64, "partitions assigned");
    shared.events.push(Event::Assigned(taken));
    Ok(tpl)
}

/// Partitions `refused` (id, why, judged again by itself) are not taken (see `refused`):
/// released in the task, which claimed them, and held, not assigned, until the group takes
/// them away.
fn refuse(shared: &mut Shared, refused: Vec<(u32, String, bool)>) {
    if refused.is_empty() {
        return;
    }
    let ids: Vec<u32> = refused.iter().map(|(id, _, _)| *id).collect();
    if let Some(m) = shared.membership.as_mut() {
        // Nothing of them was read: nothing is held, no group offset moves.
        m.released(&ids);
    }
    for (id, why, retry) in refused {
        let (info, p) = &shared.infos[id as usize];
        let tp = (info.topic.clone(), *p);
        shared.refused.hold(tp, why, retry);
    }
}

/// With `auto_offset_reset = "latest"`, a partition of `parts` the group holds no offset of
/// that was created after `since` (ms), when the job first took partitions at the log's end,
/// starts at its first record rather than at the end now: a partition added to a topic, a
/// topic that began to match a pattern, while the job ran or was down; what was written to it
/// before the group noticed it (up to `topic.metadata.refresh.interval.ms` later) is the
/// job's to write. Created since: its log still starts at offset 0 (nothing deleted by
/// retention or compaction) and the record there is stamped at or after `since`. An older
/// partition, or one whose start is gone (its oldest surviving record says nothing of when it
/// was created), starts at the end, as `latest` says. The record is read (a client of its
/// own, as checkpoints' marks are: `identity`), not the broker's offset for the time taken on
/// trust (one broker answers 0 where no record is that recent). One that cannot be read in
/// time, or has no timestamp, leaves the end, logged; a checkpoint (looked at after this)
/// still wins.
fn starts_since(recheck: &super::identity::Recheck, parts: &mut [Assigned], since: i64) {
    let asked: Vec<usize> = (0..parts.len())
        .filter(|&i| parts[i].reset && parts[i].held.0 == 0 && parts[i].start > 0)
        .collect();
    let wanted: Vec<(String, i32, i64)> = asked
        .iter()
        .map(|&i| (parts[i].info.topic.clone(), parts[i].info.number as i32, 0))
        .collect();
    let firsts = recheck.first_at(&wanted, super::identity::WAIT);
    for (i, first) in asked.into_iter().zip(firsts) {
        let a = &mut parts[i];
        match first {
            Some((0, Some(stamp))) if stamp >= since => {
                tracing::info!(partition = %a.info.key(), end = a.start, first_stamp_ms = stamp, since_ms = since, "the partition was created since the job's first start (its first record, at offset 0, is stamped since; auto_offset_reset = \"latest\"): it starts there unless a checkpoint says otherwise");
                a.start = 0;
            }
            Some((0, None)) => {
                tracing::warn!(partition = %a.info.key(), "the partition's first record has no timestamp: whether it was created since the job's first start cannot be told, and without an offset it starts at the log's end");
            }
            Some(_) => {}
            None => {
                tracing::warn!(partition = %a.info.key(), since_ms = since, "could not read the partition's first record to tell whether it was created since the job's first start: without an offset it starts at the log's end");
            }
        }
    }
}

/// Why partition `key` cannot start at the consumer group's committed offset `o`, outside the
/// broker's `[low, high)`, where this job has no checkpoint of it.
fn group_gap(key: &str, o: i64, low: i64, high: i64) -> String {
    let (why, skip) = match o < low {
        true => (
            format!("records {o}..{low} were deleted by the broker (retention) before they were exported"),
            format!(", or set source.on_gap = \"skip\" to start at offset {low} (the range is logged and counted)"),
        ),
        false => (
            "the topic was re-created or truncated below it".to_string(),
            String::new(),
        ),
    };
    format!("partition {key} has no checkpoint of this job, and the consumer group's committed offset, {o}, where it starts, is outside the offsets the broker holds ({low}..{high}): {why}. Move the group's offset (e.g. `kafka-consumer-groups --reset-offsets`){skip}")
}
