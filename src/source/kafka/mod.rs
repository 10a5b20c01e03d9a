//! The Kafka source (rdkafka): records of the configured topics (names, or regexes starting
//! with `^`), read from exact offsets, in chunks of whole messages per partition.
//!
//! Two modes:
//! - **group** (`run`): a consumer-group member with the cooperative-sticky assignor. On every
//!   assignment the task picks each partition's start (its checkpoint in the destination, else
//!   the group's committed offset, else `auto.offset.reset`); on a revocation the task commits
//!   or aborts what it holds for the partitions before they are released (see `Membership`).
//! - **static** (`backfill`): every partition of the topics, each read from its start to the
//!   end of the range (the high watermarks at start, a timestamp or explicit offsets).
//!
//! After each commit of files the same offsets are committed to the group, so lag tools see
//! progress. When the channel is full the assigned partitions are paused (`Consumer::pause`)
//! and the consumer keeps polling, so the group does not evict it; librdkafka's prefetch queue
//! is bounded from the channel bound.
//!
//! Framing: each message is one record. JSON messages are written one per line into the chunk,
//! with raw line breaks (which JSON allows only as whitespace) turned into spaces; the chunk
//! keeps every message's offset, timestamp and key so provenance, dead letters and the Kafka
//! metadata columns name them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Membership, Next, NotRead, PartitionInfo, Source, SourceError};
use crate::decode::meta::{MetaNeeds, RecordMark};
use crate::decode::Chunk;

mod admit;
mod batch;
mod gap;
mod group;
mod headers;
mod identity;
mod lag;
mod leaderless;
mod part;
mod policy;
mod range;
mod read;
mod refused;
mod seek;
mod times;
mod topics;
mod unreadable;

use group::{lock, set_paused, GroupContext, Index, Shared};
use part::Part;
pub use policy::compacted_topics;
pub use range::{plan, Position, Range, Span};
use topics::{patterns, topics_now};

const TIMEOUT: Duration = Duration::from_secs(15);

/// How long a rejoin may wait for librdkafka to let every partition go (`finish_rejoin`):
/// past a rebalance already under way (up to `max.poll.interval.ms`, 5 min by default) and
/// the revocation's commits.
const REJOIN_LIMIT: Duration = Duration::from_secs(600);

/// A partition whose high watermark has not been fetched for this long has a lag nobody
/// knows (`sluice_partitions_lag_unknown`): twelve rounds of the lag thread.
const LAG_UNKNOWN_AFTER: Duration = Duration::from_secs(60);

/// Settings of the Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    /// Topic names; an entry starting with `^` is a regular expression.
    pub topics: Vec<String>,
    pub group: String,
    /// `earliest` or `latest`: where a partition without checkpoint or group offset starts.
    pub auto_offset_reset: String,
    /// Extra librdkafka properties, passed through.
    pub options: crate::config::PassThrough,
    pub chunk_bytes: usize,
    /// A bounded (static) run; `None` is a live group member.
    pub range: Option<Range>,
    /// Upper bound on librdkafka's prefetch queue, from the channel bound.
    pub queue_kbytes: usize,
    /// The message metadata the schema asks for.
    pub meta: MetaNeeds,
    /// `on_gap = "skip"`: a checkpoint outside what the broker holds goes on from the nearest
    /// offset held, logged and counted; else a group member refuses the partition (see
    /// `refused`) and a backfill stops.
    pub skip_gaps: bool,
    /// Lines measured for what they decode to: chunks are cut by it too (JSON with lists or
    /// maps; see `decode::cost`).
    pub cost: Option<crate::decode::cost::LineCost>,
}

/// Whether `auto_offset_reset` starts a partition without an offset at the log's end.
pub fn resets_to_latest(reset: &str) -> bool {
    matches!(reset, "latest" | "largest" | "end")
}

fn err_at(name: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Other {
        name: name.to_string(),
        reason: reason.into(),
    }
}

pub struct KafkaSource {
    /// Declared before `consumer`, so it is dropped first (see `batch`).
    fetch: Option<batch::FetchQueue>,
    consumer: BaseConsumer<GroupContext>,
    shared: Arc<Mutex<Shared>>,
    parts: Vec<Part>,
    chunk_bytes: usize,
    group: bool,
    /// What a group member subscribes to (names and `^` patterns).
    subscription: Vec<String>,
    /// The topics the names and patterns matched at the start, and the settings an admin
    /// client of the brokers takes (see [`policy`]).
    matched: Vec<String>,
    admin: ClientConfig,
    /// Since when a group member is joining its group again (`rejoin`): it subscribes once
    /// every partition is revoked.
    rejoining: Option<Instant>,
    /// A group member has subscribed (see `join`).
    joined: bool,
    paused: bool,
    /// Static mode: (re)assign every unfinished partition before the next poll.
    reassign: bool,
    /// The last offset reported committed per partition (for the final synchronous commit).
    last_committed: HashMap<u32, u64>,
    needs: MetaNeeds,
    /// See [`KafkaSettings::cost`].
    cost: Option<crate::decode::cost::LineCost>,
    /// Where a message's partition is in `parts`.
    index: Index,
    /// Some partition has a seek to retry.
    seeks_pending: bool,
    /// Some partition is probing for the end of a record batch it cannot read.
    probes_pending: bool,
    /// Group mode: some partition is to be assigned again (see `group::refetch`).
    refetches_pending: bool,
    /// Group mode: partitions refused while read, for librdkafka to let go (see `refused`).
    unassign: refused::Unassign,
    /// Group mode: some partition is to be refused once its buffer is handed on.
    refusals_pending: bool,
    /// Bounded runs: (handle, start, end) of every partition.
    bounds: Vec<(u32, u64, u64)>,
    /// When a transient consumer error was last logged (they repeat while a broker is down).
    last_warning: Option<Instant>,
    name: String,
    /// High watermarks fetched off the poll thread (lag).
    lag: Option<lag::LagWatch>,
    /// Partitions that reached their share of the budget, or their end, while reading.
    ready: Vec<usize>,
    /// The largest message lately (how many messages the room left will take).
    sizes: read::Sizes,
    /// When `forward_again` last ran.
    forwarded: Instant,
    /// Static runs: some partition's fetch queue is to be forwarded again (see
    /// `read::forward_again`).
    forwards_pending: bool,
    /// Messages read (buffered or not) in batches, the batches, and messages read by `poll`
    /// (logged when the source closes).
    read_batched: u64,
    batches: u64,
    read_polled: u64,
}

impl KafkaSource {
    pub fn new(s: &KafkaSettings) -> Result<Self, SourceError> {
        let name = format!("kafka {} ({})", s.topics.join(","), s.brokers);
        let patterns = patterns(&name, &s.topics)?;
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &s.brokers)
            .set("group.id", &s.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Every assignment names its offsets (checkpoint, group offset, or the start that
            // `auto_offset_reset` chose from the watermarks): librdkafka resets only an offset
            // the broker no longer holds (retention, a re-created topic), and that must not pass
            // in silence: it is an error here (see `poll_once`).
            .set("auto.offset.reset", "error")
            // Bounded runs: the event, in order after a partition's last message, ends a
            // range whose last offsets hold no record (a transaction's marker; see
            // `Part::log_end`). Not for group members: a batch read counts the event as a
            // message, moving librdkafka's position (where a resume fetches from) one past the
            // log's end, so the next record would be skipped after a pause.
            .set(
                "enable.partition.eof",
                if s.range.is_some() { "true" } else { "false" },
            )
            .set("partition.assignment.strategy", "cooperative-sticky")
            // When the local queue is full librdkafka postpones fetching by this much (1 s by
            // default): a consumer that processes as it reads would idle most of that second.
            .set("fetch.queue.backoff.ms", "10")
            .set(
                "queued.max.messages.kbytes",
                s.queue_kbytes.clamp(1024, 2_097_151).to_string(),
            );
        for (k, v) in s.options.iter() {
            cfg.set(k, v);
        }
        let shared = Arc::new(Mutex::new(Shared {
            reset_latest: resets_to_latest(&s.auto_offset_reset),
            name: name.clone(),
            skip_gaps: s.skip_gaps,
            recheck: identity::Recheck::new(&cfg),
            ..Shared::default()
        }));
        let consumer: BaseConsumer<GroupContext> = cfg
            .create_with_context(GroupContext {
                shared: shared.clone(),
            })
            .map_err(|e| err_at(&name, format!("cannot create the consumer: {e}")))?;
        // Messages in batches (see `batch`); without the queue they come one poll at a time.
        let fetch = batch::FetchQueue::new(&consumer);
        lock(&shared).forward = fetch.as_ref().map(batch::FetchQueue::forwarder);
        let mut src = KafkaSource {
            fetch,
            consumer,
            shared,
            parts: Vec::new(),
            chunk_bytes: s.chunk_bytes.max(1024),
            group: s.range.is_none(),
            subscription: s.topics.clone(),
            matched: Vec::new(),
            admin: policy::admin_config(&cfg),
            rejoining: None,
            joined: false,
            paused: false,
            reassign: false,
            last_committed: HashMap::new(),
            last_warning: None,
            needs: s.meta,
            cost: s.cost.clone(),
            bounds: Vec::new(),
            index: Index::default(),
            seeks_pending: false,
            probes_pending: false,
            refetches_pending: false,
            unassign: refused::Unassign::default(),
            refusals_pending: false,
            name,
            lag: lag::LagWatch::start(&cfg),
            ready: Vec::new(),
            sizes: read::Sizes::new(),
            forwarded: Instant::now(),
            forwards_pending: false,
            read_batched: 0,
            batches: 0,
            read_polled: 0,
        };
        // The topics must exist (a typo should not make a job wait forever).
        let topics = topics_now(&src.consumer, &src.name, &s.topics, &patterns)?;
        src.matched = topics.iter().map(|(t, _)| t.clone()).collect();
        // A group member subscribes in `join`, once the start's checks have passed.
        if let Some(range) = &s.range {
            src.plan_range(&topics, range)?;
        }
        Ok(src)
    }

    fn subscribe(&self) -> Result<(), SourceError> {
        let names: Vec<&str> = self.subscription.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&names)
            .map_err(|e| err_at(&self.name, format!("cannot subscribe: {e}")))
    }

    /// A rejoin under way: once librdkafka holds no partition (the membership has committed
    /// or aborted each), the member subscribes again and the group assigns afresh. An error
    /// when librdkafka still holds some after `REJOIN_LIMIT` (a failed unassign): the member
    /// would else sit outside its group, silent.
    pub(super) fn finish_rejoin(&mut self) -> Result<(), SourceError> {
        let Some(since) = self.rejoining else {
            return Ok(());
        };
        let held = self.consumer.assignment().map_or(usize::MAX, |a| a.count());
        if held > 0 || self.parts.iter().any(|p| p.owned) {
            if since.elapsed() > REJOIN_LIMIT {
                return Err(err_at(
                    &self.name,
                    format!(
                        "joining the group again: partitions still held {} s after leaving it",
                        REJOIN_LIMIT.as_secs()
                    ),
                ));
            }
            return Ok(());
        }
        self.rejoining = None;
        self.subscribe()?;
        tracing::warn!(source = %self.name, "joined the group again");
        Ok(())
    }
}

impl Drop for KafkaSource {
    /// Before the fields drop: the fetch queue's forwarder is forgotten before the queue goes;
    /// the watermark thread destroys its client while `consumer` is destroyed, and `lag`'s own
    /// drop then joins it.
    fn drop(&mut self) {
        lock(&self.shared).forward = None;
        if let Some(lag) = &self.lag {
            lag.stop();
        }
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> Vec<PartitionInfo> {
        self.parts
            .iter()
            .filter(|p| p.owned)
            .map(|p| p.info.clone())
            .collect()
    }

    fn dynamic(&self) -> bool {
        self.group
    }

    fn set_membership(&mut self, membership: Box<dyn Membership>) {
        lock(&self.shared).membership = Some(membership);
    }

    fn join(&mut self) -> Result<(), SourceError> {
        if self.group && !self.joined {
            self.subscribe()?;
            self.joined = true;
        }
        Ok(())
    }

    fn rejoin(&mut self) -> Result<bool, SourceError> {
        if !self.group {
            return Ok(false);
        }
        if self.rejoining.is_none() {
            // Those waiting for a leader are forgotten by the revocation that follows.
            self.consumer.unsubscribe();
            self.rejoining = Some(Instant::now());
        }
        Ok(true)
    }

    fn seek(&mut self, partition: u32, offset: u64, _line: u64) -> Result<(), SourceError> {
        let Some(p) = self.parts.get_mut(partition as usize).filter(|p| p.owned) else {
            return Ok(()); // no longer ours
        };
        // A bounded run's partition placed where it already stands with nothing buffered (the
        // plan's start, or where its last chunk ended): its position was checked against the
        // log when planned or assigned, and is not checked again at the reassignment (that
        // was one request per partition, one after the other, at a backfill's first poll).
        // Retention that overtakes it meanwhile is met as any later one is.
        let still_checked =
            !self.group && p.checked && p.next == offset as i64 && p.offsets.is_empty();
        p.restart(offset as i64);
        p.checked = still_checked;
        // Reading on from `offset` (a checkpoint, a rewind, the end of a restored spill): the
        // records before it are owed too (the spill's are in the channel, not read again).
        p.owed = p.owed.max(offset as i64);
        if self.group {
            p.seek_pending = true;
            self.seeks_pending = true;
        } else {
            self.reassign = true;
        }
        Ok(())
    }

    fn compacted(&mut self) -> (Vec<(String, String)>, Option<String>) {
        policy::compacted(&self.admin, &self.matched)
    }

    fn expect_record(&mut self, partition: u32, offset: u64, mark: RecordMark) {
        // Group members compare when the partition is assigned (see `admit`).
        if self.group || mark.offset >= offset {
            return;
        }
        if let Some(p) = self.parts.get_mut(partition as usize).filter(|p| p.owned) {
            p.expect = Some(mark);
            self.reassign = true;
        }
    }

    fn resume_default(&mut self, partition: u32) -> Result<(u64, u64), SourceError> {
        // Static runs: the start of the range was resolved when the source was planned.
        let p = &self.parts[partition as usize];
        Ok((p.next as u64, 0))
    }

    fn pause(&mut self, paused: bool) -> Result<(), SourceError> {
        if paused != self.paused {
            self.paused = paused;
            set_paused(&self.consumer, &self.name, paused)?;
            tracing::debug!(paused, "fetching paused or resumed: channel room");
            if paused {
                // A pause keeps librdkafka's position to resume from, which an end-of-log
                // event left one past the log's end (see `Part::log_end`): sought back to
                // where reading stands before the resume (`retry_seeks`, in the next poll).
                for p in self.parts.iter_mut().filter(|p| p.past_end) {
                    p.past_end = false;
                    if p.owned && !p.done() && p.probe.is_none() {
                        p.seek_pending = true;
                        self.seeks_pending = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SourceError> {
        let (room, fullest) = self.room();
        self.poll_once(Duration::from_millis(50), self.threshold(), room, fullest)
            .map(|_| ())
    }

    fn next(&mut self, chunk: &mut Chunk) -> Result<Next, SourceError> {
        self.fill(chunk)
    }

    fn committed(&mut self, partition: u32, next_offset: u64) {
        // A backfill (static assignment) has no group: its offsets are not the group's to
        // move (an explicit `group` is the live job's, whose partitions without a checkpoint
        // would then start where the backfill ended).
        if !self.group {
            return;
        }
        let Some(p) = self.parts.get(partition as usize).filter(|p| p.owned) else {
            return; // revoked: its offsets were committed at the revocation
        };
        self.last_committed.insert(partition, next_offset);
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(
                &p.info.topic,
                p.partition,
                Offset::Offset(next_offset as i64),
            )
            .is_ok()
        {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(partition = %p.info.key(), error = %e, "committing the offset to the group failed (the checkpoint stands)");
            }
        }
    }

    fn close(&mut self) {
        // The watermark client's teardown runs beside this consumer's (see `lag`).
        if let Some(lag) = &self.lag {
            lag.stop();
        }
        if !self.last_committed.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (&id, &next) in &self.last_committed {
                let p = &self.parts[id as usize];
                let _ = tpl.add_partition_offset(
                    &p.info.topic,
                    p.partition,
                    Offset::Offset(next as i64),
                );
            }
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "the final commit of offsets to the group failed (the checkpoints stand)");
            }
            self.last_committed.clear();
        }
        if self.group {
            // Leave the group now; what the task still held was committed or will be replayed.
            lock(&self.shared).membership = None;
            self.consumer.unsubscribe();
        }
        // Close the consumer here in short polls: dropping it polls 100 ms at a time until it
        // is closed, which added about 0.1 s to the end of every run. What a poll returns now
        // is not wanted (the membership is gone; a bounded run is done).
        match self.consumer.close_queue() {
            Ok(()) => {
                let until = Instant::now() + TIMEOUT;
                while !self.consumer.closed() && Instant::now() < until {
                    let _ = self.consumer.poll(Duration::from_millis(5));
                }
            }
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "closing the consumer failed")
            }
        }
        tracing::info!(
            source = %self.name,
            batched = self.read_batched,
            batches = self.batches,
            polled = self.read_polled,
            "consumer closed (messages read in batches, and one poll at a time)"
        );
    }

    fn bounds(&self) -> Vec<(u32, u64, u64)> {
        self.bounds.clone()
    }

    fn handed_to(&self) -> Vec<(u32, u64)> {
        if self.group {
            return Vec::new();
        }
        // A gap skipped at the tail (to or past what is owed) leaves nothing after it whose
        // commit could move the checkpoint past it: what was read before the gap is owed.
        let shared = lock(&self.shared);
        self.parts
            .iter()
            .filter(|p| p.end.is_some() && p.owed > 0)
            .map(|p| {
                let owed = match shared.skips.last_gap(&p.info.key()) {
                    Some((from, to)) if to >= p.owed => from.min(p.owed),
                    _ => p.owed,
                };
                (p.info.id, owed.max(0) as u64)
            })
            .collect()
    }

    fn not_read(&self) -> Vec<NotRead> {
        let shared = lock(&self.shared);
        shared
            .leaderless
            .shown()
            .chain(shared.refused.shown())
            .collect()
    }

    fn lag_unknown(&self) -> usize {
        let Some(watch) = &self.lag else {
            return 0;
        };
        let after = crate::fault::millis("lag_unknown_after").unwrap_or(LAG_UNKNOWN_AFTER);
        self.parts
            .iter()
            .filter(|p| p.owned && !p.done())
            .filter(|p| watch.stale(&p.info.topic, p.partition, after))
            .count()
    }

    fn take_skipped(&mut self) -> Vec<(String, u64)> {
        lock(&self.shared).skips.take()
    }

    fn contact(&self) -> Option<crate::metrics::Contact> {
        self.lag.as_ref().map(|l| l.contact())
    }

    /// Lag per owned partition (high watermark − where reading stands) from the watermarks
    /// last fetched: never a request here, since this runs on the poll thread. Reading stands
    /// at the next offset, or past it where librdkafka's position is: past offsets that hold
    /// no record (a transaction's marker, the last thing on every transactional producer's
    /// partition), which would else be a lag of 1 for ever and a partition that looks stalled.
    fn lag(&self) -> Vec<(String, i64, i64)> {
        let Some(watch) = &self.lag else {
            return Vec::new();
        };
        let owned: Vec<&Part> = self.parts.iter().filter(|p| p.owned).collect();
        watch.want(
            owned
                .iter()
                .map(|p| (p.info.topic.clone(), p.partition))
                .collect(),
        );
        let positions = self.consumer.position().ok();
        owned
            .iter()
            .filter_map(|p| {
                let high = watch.high(&p.info.topic, p.partition)?;
                let read = match positions
                    .as_ref()
                    .and_then(|l| l.find_partition(&p.info.topic, p.partition))
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(at)) => at.max(p.next),
                    _ => p.next,
                };
                // A bounded run waits for nothing past its end (finished: maybe unassigned).
                let high = p.end.map_or(high, |e| high.min(e));
                let lag = if p.done() { 0 } else { (high - read).max(0) };
                Some((p.info.key(), lag, p.next))
            })
            .collect()
    }
}
