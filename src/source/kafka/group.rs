//! Consumer-group membership: the rebalance callback (run inside `poll`, on the source's
//! thread) asks the task where assigned partitions start and has it commit or abort what it
//! holds for revoked ones before librdkafka moves on; the source applies the changes after
//! `poll` returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::batch::{Forwarder, Msg};
use super::leaderless::{self, Leaderless, Tp};
use super::{err_at, KafkaSource, Part, TIMEOUT};
use crate::decode::meta::MetaNeeds;
use crate::source::{Membership, PartitionInfo, SourceError};

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
    /// nearest offset held (else the partition is refused, see `refused`).
    pub(super) skip_gaps: bool,
    /// Gaps skipped, for the log and the metrics.
    pub(super) skips: super::gap::Skips,
    /// Where assigned partitions' messages go (see `batch`); None when they stay on the
    /// consumer queue. Cleared before the queue is dropped.
    pub(super) forward: Option<Forwarder>,
    /// Reads checkpoints' last messages again, to compare (see `identity`).
    pub(super) recheck: super::identity::Recheck,
    /// Partitions handed over whose leader did not answer: not taken yet.
    pub(super) leaderless: Leaderless,
    /// Partitions handed over whose start was refused: not taken.
    pub(super) refused: super::refused::Refused,
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
                // Those whose leader does not answer are left out (see `leaderless`).
                let taken = match self.on_assign(consumer, tpl) {
                    Ok(taken) => taken,
                    Err(e) => {
                        let mut shared = lock(&self.shared);
                        tracing::error!(error = %e, "cannot take the assigned partitions");
                        shared.error.get_or_insert(e);
                        return;
                    }
                };
                let r = if cooperative {
                    consumer.incremental_assign(&taken)
                } else {
                    consumer.assign(&taken)
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
                let released = self.on_revoke(consumer, tpl, cooperative);
                let r = if cooperative {
                    consumer.incremental_unassign(&released)
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

impl GroupContext {
    /// The partitions handed over whose watermarks and group offsets are read within
    /// `TIMEOUT` (together) are taken (see `admit`): returned at the offsets reading starts
    /// at. The others wait (see `leaderless`); those whose start is refused are held (see
    /// `refused`).
    fn on_assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Result<TopicPartitionList, SourceError> {
        let began = Instant::now();
        let mut shared = lock(&self.shared);
        let handed: Vec<(Tp, Duration)> = tpl
            .elements()
            .iter()
            .map(|e| {
                (
                    (e.topic().to_string(), e.partition()),
                    leaderless::ASK_LIMIT,
                )
            })
            .collect();
        if handed.is_empty() {
            return Ok(TopicPartitionList::new());
        }
        // Each ask at most `ASK_LIMIT`, all of them `TIMEOUT`: a leader that does not answer
        // holds back the others' only so long (those not asked are asked between polls).
        let deadline = began + TIMEOUT;
        let (read, unread) = leaderless::watermarks(consumer, handed, |longest| {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then_some(left.min(longest))
        });
        for (tp, why, asked) in unread {
            shared.leaderless.wait(tp, &why, asked);
        }
        if read.is_empty() {
            return Ok(TopicPartitionList::new());
        }
        // Where each would start by itself: the group's offset, else auto.offset.reset. Not
        // read in time (a coordinator moving): they wait, asked again between polls.
        let committed = match consumer
            .committed_offsets(leaderless::list_of(read.iter().map(|(tp, _)| tp)), TIMEOUT)
        {
            Ok(c) => c,
            Err(e) => {
                for (tp, _) in read {
                    let why = format!("the group's offsets could not be read: {e}");
                    shared.leaderless.wait(tp, &why, true);
                }
                return Ok(TopicPartitionList::new());
            }
        };
        let read = leaderless::offsets_read(read, &committed, |tp, why| {
            shared.leaderless.wait(tp, why, true)
        });
        super::admit::admit(consumer, &mut shared, &read, &committed, began)
    }

    /// Commits or aborts what the task holds of the revoked partitions, and commits their
    /// group offsets; returns the partitions to release (those waiting for a leader, or
    /// refused, were never taken: they are forgotten).
    fn on_revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
        cooperative: bool,
    ) -> TopicPartitionList {
        let mut shared = lock(&self.shared);
        // What librdkafka holds: an unassign naming a partition it does not hold (one left
        // waiting for a leader) fails whole, and every partition would stay assigned.
        let held = consumer.assignment().ok();
        let mut released = TopicPartitionList::new();
        for e in tpl.elements() {
            // Not `||`: both are forgotten.
            let waiting = shared.leaderless.forget(e.topic(), e.partition())
                | shared.refused.forget(e.topic(), e.partition());
            let holds = match &held {
                Some(h) => h.find_partition(e.topic(), e.partition()).is_some(),
                None => !waiting,
            };
            if holds {
                released.add_partition(e.topic(), e.partition());
            }
        }
        if !cooperative {
            shared.leaderless.clear();
            shared.refused.clear();
        }
        let ids: Vec<u32> = released
            .elements()
            .iter()
            .map(|e| shared.id(e.topic(), e.partition()))
            .collect();
        if ids.is_empty() {
            return released;
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
        released
    }
}

impl KafkaSource {
    /// Applies what the rebalance callback (or a late take) reported: new partitions get
    /// their parts, the message index follows, and they are paused or resumed as the source
    /// is. (`poll_once` does the same with its fields apart: a message it polled borrows the
    /// consumer meanwhile.)
    pub(super) fn apply_events(&mut self) -> Result<(), SourceError> {
        if let Some(assigned) =
            apply_events(&self.shared, &mut self.parts, &mut self.last_committed)?
        {
            self.index = Index::of(&self.parts);
            set_paused_parts(
                &self.consumer,
                &self.name,
                &self.parts,
                &assigned,
                self.paused,
            )?;
        }
        Ok(())
    }

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
