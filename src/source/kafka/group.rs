//! Consumer-group membership: the rebalance callback (run inside `poll`, on the source's
//! thread) asks the task where assigned partitions start and has it commit or abort what it
//! holds for revoked ones before librdkafka moves on; the source applies the changes after
//! `poll` returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::batch::{Forwarder, Msg};
use super::{err_at, KafkaSource, Part, TIMEOUT};
use crate::decode::meta::MetaNeeds;
use crate::source::{Assigned, Membership, PartitionInfo, Resumed, SourceError};

/// Partition changes reported by the rebalance callback, applied after `poll` returns.
pub(super) enum Event {
    /// (partition, the position before its first record, the offset reading starts at):
    /// these differ only when a gap was skipped.
    Assigned(Vec<(u32, i64, i64)>),
    Revoked(Vec<u32>),
}

/// State shared with the rebalance callback (which runs inside `poll`, on the same thread).
#[derive(Default)]
pub(super) struct Shared {
    pub(super) membership: Option<Box<dyn Membership>>,
    pub(super) ids: HashMap<(String, i32), u32>,
    pub(super) infos: Vec<(PartitionInfo, i32)>,
    pub(super) events: Vec<Event>,
    pub(super) error: Option<SourceError>,
    pub(super) reset_latest: bool,
    pub(super) name: String,
    /// `source.on_gap = "skip"`: a checkpoint outside the broker's log goes on from the
    /// nearest offset held (else the assignment fails).
    pub(super) skip_gaps: bool,
    /// Gaps skipped, for the log and the metrics.
    pub(super) skips: super::gap::Skips,
    /// Where assigned partitions' messages go (see `batch`); None when they stay on the
    /// consumer queue. Cleared before the queue is dropped.
    pub(super) forward: Option<Forwarder>,
    /// Reads checkpoints' last messages again, to compare (see `identity`).
    pub(super) recheck: super::identity::Recheck,
}

impl Shared {
    pub(super) fn id(&mut self, topic: &str, partition: i32) -> u32 {
        if let Some(&id) = self.ids.get(&(topic.to_string(), partition)) {
            return id;
        }
        let id = self.infos.len() as u32;
        self.ids.insert((topic.to_string(), partition), id);
        self.infos.push((
            PartitionInfo {
                id,
                topic: topic.to_string(),
                number: partition as u32,
            },
            partition,
        ));
        id
    }
}

/// The consumer context: runs the task's side of a rebalance before librdkafka moves on.
pub struct GroupContext {
    pub(super) shared: Arc<Mutex<Shared>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.on_assign(consumer, tpl) {
                    let mut shared = lock(&self.shared);
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                    shared.error.get_or_insert(e);
                    return;
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    let mut shared = lock(&self.shared);
                    let name = shared.name.clone();
                    shared
                        .error
                        .get_or_insert(err_at(&name, format!("cannot take the assignment: {e}")));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "releasing revoked partitions failed");
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error; leaving the assignment");
                if !cooperative {
                    let _ = consumer.unassign();
                }
            }
        }
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

impl GroupContext {
    fn on_assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), SourceError> {
        let began = std::time::Instant::now();
        let mut shared = lock(&self.shared);
        let name = shared.name.clone();
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        if assigned.is_empty() {
            return Ok(());
        }
        // Where each would start by itself: the group's offset, else auto.offset.reset.
        let committed = consumer
            .committed_offsets(tpl.clone(), TIMEOUT)
            .map_err(|e| err_at(&name, format!("committed offsets: {e}")))?;
        let mut parts: Vec<Assigned> = Vec::with_capacity(assigned.len());
        let mut held = HashMap::with_capacity(assigned.len());
        for (topic, p) in &assigned {
            let stored = committed
                .find_partition(topic, *p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                });
            let (low, high) = consumer
                .fetch_watermarks(topic, *p, TIMEOUT)
                .map_err(|e| err_at(&name, format!("watermarks of {topic}/{p}: {e}")))?;
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
                })
                .collect(),
        };
        let mut event = Vec::with_capacity(starts.len());
        let mut marked = Vec::new();
        for s in starts {
            let Resumed {
                id,
                offset,
                checkpointed,
                mark,
            } = s;
            let (info, p) = shared.infos[id as usize].clone();
            let (low, high, stored) = held.get(&id).copied().unwrap_or((0, i64::MAX, None));
            // Where this job has no checkpoint of the partition, it starts at the group's
            // offset (unless a first start was moved): one outside the log was clamped into
            // it, skipping records without a word. It is a gap like a checkpoint's: `on_gap`
            // decides below the log; above, the log was re-created below it, an error.
            let group = stored.filter(|o| {
                !checkpointed && offset as i64 == (*o).clamp(low, high) && *o != offset as i64
            });
            let judged = group.unwrap_or(offset as i64);
            let (read, skipped) =
                super::gap::decide(&info.key(), judged, low, high, shared.skip_gaps).map_err(
                    |e| match group {
                        Some(o) => err_at(&name, group_gap(&info.key(), o, low, high)),
                        None => err_at(&name, e),
                    },
                )?;
            if let Some((from, to)) = skipped {
                shared.skips.record(&info.key(), from, to);
            }
            if let Some(m) = mark.filter(|_| read == offset as i64) {
                marked.push((info.topic.clone(), p, m, read, low));
            }
            tpl.set_partition_offset(&info.topic, p, Offset::Offset(read))
                .map_err(|e| err_at(&name, e.to_string()))?;
            event.push((id, offset as i64, read));
        }
        // A checkpoint's last message is compared with the broker's before reading on.
        super::identity::check(&shared.recheck, &marked).map_err(|e| err_at(&name, e))?;
        // Before the partitions are assigned, so none of their messages take the other way.
        if let Some(fwd) = shared.forward {
            for (topic, p) in &assigned {
                fwd.take(consumer, topic, *p);
            }
        }
        // How long the group waited on this member: the broker's offsets and watermarks
        // (`asked`), then the claims in the destination.
        tracing::info!(partitions = ?assigned, asked_ms = asked.as_millis() as u64, took_ms = began.elapsed().as_millis() as u64, "partitions assigned");
        shared.events.push(Event::Assigned(event));
        Ok(())
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut shared = lock(&self.shared);
        let ids: Vec<u32> = tpl
            .elements()
            .iter()
            .map(|e| shared.id(e.topic(), e.partition()))
            .collect();
        if ids.is_empty() {
            return;
        }
        tracing::info!(partitions = ?ids.iter().map(|i| shared.infos[*i as usize].0.key()).collect::<Vec<_>>(), "partitions revoked");
        let committed = match shared.membership.as_mut() {
            Some(m) => m.revoked(&ids),
            None => Vec::new(),
        };
        // The group's offsets reach the broker before the partitions move on.
        let mut offsets = TopicPartitionList::new();
        for (id, next) in committed {
            let (info, p) = &shared.infos[id as usize];
            let _ = offsets.add_partition_offset(&info.topic, *p, Offset::Offset(next as i64));
        }
        if offsets.count() > 0 {
            if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                tracing::warn!(error = %e, "committing the revoked partitions' offsets failed (the checkpoints stand)");
            }
        }
        shared.events.push(Event::Revoked(ids));
    }
}

impl KafkaSource {
    /// Group mode: starts fetching again, at their `next`, the partitions librdkafka stopped
    /// on an "offset out of range" answer (`auto.offset.reset = error` leaves them in no
    /// fetch state, and every seek of them is then refused). Each is unassigned and assigned
    /// again, incrementally: the group's assignment is unchanged. Run between rounds of
    /// events, never while a rebalance waits to be served (librdkafka would take it as the
    /// answer to that rebalance). Forwarded before it is assigned, and again until its first
    /// message (stopping the old fetch clears the forwarding, see `read::forward_again`).
    pub(super) fn refetch_all(&mut self) -> Result<(), SourceError> {
        self.refetches_pending = false;
        let mut done = Vec::new();
        for i in 0..self.parts.len() {
            let p = &mut self.parts[i];
            if !std::mem::take(&mut p.refetch_pending) || !p.owned {
                continue;
            }
            self.refetch(i)?;
            done.push(i);
        }
        set_paused_parts(&self.consumer, &self.name, &self.parts, &done, self.paused)
    }

    fn refetch(&mut self, i: usize) -> Result<(), SourceError> {
        let p = &mut self.parts[i];
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.info.topic, p.partition);
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(&p.info.topic, p.partition, Offset::Offset(p.next))
            .map_err(|e| err_at(&self.name, e.to_string()))?;
        // Assigned at `next`, which a rewind's seek still to be made would have sought.
        p.seek_pending = false;
        self.consumer
            .incremental_unassign(&tpl)
            .map_err(|e| err_at(&self.name, format!("cannot unassign a partition: {e}")))?;
        if let Some(fwd) = lock(&self.shared).forward {
            fwd.take(&self.consumer, &p.info.topic, p.partition);
            p.forward_pending = true;
            self.forwards_pending = true;
        }
        self.consumer
            .incremental_assign(&at)
            .map_err(|e| err_at(&self.name, format!("cannot assign a partition: {e}")))?;
        tracing::info!(
            topic = %p.info.topic,
            partition = p.partition,
            offset = p.next,
            "partition fetched again from its position"
        );
        Ok(())
    }
}

/// Applies what the rebalance callback reported, and any error it met. Returns None when
/// nothing changed, else the partitions assigned (to pause or resume as the source is).
pub(super) fn apply_events(
    shared: &Mutex<Shared>,
    parts: &mut Vec<Part>,
    last_committed: &mut HashMap<u32, u64>,
) -> Result<Option<Vec<usize>>, SourceError> {
    let known = parts.len();
    let (events, error, infos) = {
        let mut shared = lock(shared);
        let events = std::mem::take(&mut shared.events);
        // Only the partitions new to `parts` (every one ever assigned is kept).
        let infos = match events.is_empty() {
            true => Vec::new(),
            false => shared.infos.get(known..).unwrap_or_default().to_vec(),
        };
        (events, shared.error.take(), infos)
    };
    if let Some(e) = error {
        return Err(e);
    }
    if events.is_empty() {
        return Ok(None);
    }
    let mut assigned = Vec::new();
    for event in events {
        match event {
            Event::Assigned(list) => {
                for (id, offset, read) in list {
                    assigned.push(id as usize);
                    while parts.len() <= id as usize {
                        let (info, partition) = infos[parts.len() - known].clone();
                        parts.push(Part::new(info, partition));
                    }
                    let p = &mut parts[id as usize];
                    p.owned = true;
                    p.restart(offset);
                    // A skipped gap: the first chunk still follows the checkpoint.
                    p.next = read;
                }
            }
            Event::Revoked(list) => {
                for id in list {
                    if let Some(p) = parts.get_mut(id as usize) {
                        p.owned = false;
                        p.refetch_pending = false;
                        p.release();
                    }
                    last_committed.remove(&id);
                }
            }
        }
    }
    Ok(Some(assigned))
}

/// Where each (topic, partition number) is in the source's partitions: a lookup per message
/// with no allocation and no lock. A few topics are searched in turn; past [`FEW_TOPICS`]
/// (a pattern subscription, whose topics come and go over a long run) by a hash of the name.
#[derive(Default)]
pub(super) struct Index {
    topics: Vec<(String, Vec<Option<usize>>)>,
    /// Each topic's place in `topics`, when there are more than [`FEW_TOPICS`].
    by_name: HashMap<String, usize>,
}

/// Up to this many topics, a lookup compares names in turn.
const FEW_TOPICS: usize = 8;

impl Index {
    pub fn of(parts: &[Part]) -> Index {
        let mut topics: Vec<(String, Vec<Option<usize>>)> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, p) in parts.iter().enumerate() {
            let t = match by_name.get(&p.info.topic) {
                Some(&t) => t,
                None => {
                    by_name.insert(p.info.topic.clone(), topics.len());
                    topics.push((p.info.topic.clone(), Vec::new()));
                    topics.len() - 1
                }
            };
            let slots = &mut topics[t].1;
            let n = p.partition.max(0) as usize;
            if slots.len() <= n {
                slots.resize(n + 1, None);
            }
            slots[n] = Some(i);
        }
        if topics.len() <= FEW_TOPICS {
            by_name = HashMap::new();
        }
        Index { topics, by_name }
    }

    pub(super) fn get(&self, topic: &str, partition: i32) -> Option<usize> {
        let slots = match self.by_name.is_empty() {
            true => &self.topics.iter().find(|(name, _)| name == topic)?.1,
            false => &self.topics[*self.by_name.get(topic)?].1,
        };
        *slots.get(usize::try_from(partition).ok()?)?
    }
}

/// Buffers a message in its partition; returns the partition's index and the bytes added, or
/// None when the message is not wanted (revoked, from before a seek, past a bounded run's end).
/// One that ends its partition (the first past a bounded run's end) counts, with no bytes.
pub(super) fn accept(
    index: &Index,
    parts: &mut [Part],
    msg: &Msg<'_>,
    needs: MetaNeeds,
) -> Option<(usize, usize)> {
    let i = index.get(msg.topic()?, msg.partition())?;
    let p = parts.get_mut(i)?;
    let (before, done) = (p.held(), p.done());
    (p.push(msg, needs) || (!done && p.done())).then(|| (i, p.held() - before))
}

/// Pauses or resumes the owned partitions among `ids` (new assignments: librdkafka keeps an
/// application's pause on a partition across its revocation, so one given up while paused
/// and given back after the resume would stay paused for good).
pub(super) fn set_paused_parts(
    consumer: &BaseConsumer<GroupContext>,
    name: &str,
    parts: &[Part],
    ids: &[usize],
    on: bool,
) -> Result<(), SourceError> {
    let mut tpl = TopicPartitionList::new();
    for p in ids.iter().filter_map(|&i| parts.get(i)).filter(|p| p.owned) {
        tpl.add_partition(&p.info.topic, p.partition);
    }
    pause_resume(consumer, name, &tpl, on)
}

/// Pauses or resumes the whole assignment.
pub(super) fn set_paused(
    consumer: &BaseConsumer<GroupContext>,
    name: &str,
    on: bool,
) -> Result<(), SourceError> {
    let tpl = consumer
        .assignment()
        .map_err(|e| err_at(name, format!("reading the assignment: {e}")))?;
    pause_resume(consumer, name, &tpl, on)
}

fn pause_resume(
    consumer: &BaseConsumer<GroupContext>,
    name: &str,
    tpl: &TopicPartitionList,
    on: bool,
) -> Result<(), SourceError> {
    if tpl.count() == 0 {
        return Ok(());
    }
    let r = if on {
        consumer.pause(tpl)
    } else {
        consumer.resume(tpl)
    };
    r.map_err(|e| err_at(name, format!("cannot pause or resume: {e}")))
}

pub(super) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
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
