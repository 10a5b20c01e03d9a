//! The Kafka source (rdkafka): the partitions of the configured topics, read from exact
//! offsets, in chunks of whole messages per partition.
//!
//! Offsets: a partition resumes from its checkpoint in the destination (the task seeks there),
//! else from the group's committed offset, else from `auto.offset.reset`. After each commit of
//! files the same offsets are committed to the group, so lag tools see progress. Bounded runs
//! (backfills) stop each partition at the high watermark seen at start.
//!
//! Framing: each message is one record. JSON messages are written one per line into the chunk,
//! with raw line breaks (which JSON allows only as whitespace) turned into spaces; the chunk
//! keeps every message's offset so provenance and dead letters name Kafka offsets.
//!
//! This version assigns every partition of the topics to this process (no group rebalancing
//! yet): run one process per job.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Next, PartitionInfo, Source, SourceError};
use crate::decode::Chunk;

/// Settings of the Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// `earliest` or `latest`: where a partition without checkpoint or group offset starts.
    pub auto_offset_reset: String,
    /// Extra librdkafka properties, passed through.
    pub options: Vec<(String, String)>,
    pub chunk_bytes: usize,
    /// Stop every partition at the high watermark seen at start.
    pub bounded: bool,
    /// Upper bound on librdkafka's prefetch queue, from the channel bound.
    pub queue_kbytes: usize,
}

struct Part {
    info: PartitionInfo,
    topic: String,
    partition: i32,
    /// The next offset to read.
    next: i64,
    /// Bounded runs: the offset to stop at.
    end: Option<i64>,
    /// Where the buffered messages begin (the position before them).
    from: i64,
    buf: Vec<u8>,
    offsets: Vec<u64>,
}

pub struct KafkaSource {
    consumer: BaseConsumer,
    parts: Vec<Part>,
    index: HashMap<(String, i32), usize>,
    chunk_bytes: usize,
    bounded: bool,
    reassign: bool,
    reset_latest: bool,
    /// The last offset reported committed per partition (for the final synchronous commit).
    last_committed: HashMap<u32, u64>,
    name: String,
    timeout: Duration,
}

fn err(name: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Other {
        name: name.to_string(),
        reason: reason.into(),
    }
}

impl KafkaSource {
    pub fn new(s: &KafkaSettings) -> Result<Self, SourceError> {
        let name = format!("kafka {} ({})", s.topics.join(","), s.brokers);
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &s.brokers)
            .set("group.id", &s.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &s.auto_offset_reset)
            .set("enable.partition.eof", "false")
            .set(
                "queued.max.messages.kbytes",
                s.queue_kbytes.clamp(1024, 2_097_151).to_string(),
            );
        for (k, v) in &s.options {
            cfg.set(k, v);
        }
        let consumer: BaseConsumer = cfg
            .create()
            .map_err(|e| err(&name, format!("cannot create the consumer: {e}")))?;
        let timeout = Duration::from_secs(15);
        let mut parts = Vec::new();
        let mut index = HashMap::new();
        for topic in &s.topics {
            let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
                err(
                    &name,
                    format!("cannot read metadata of topic `{topic}`: {e}"),
                )
            })?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .ok_or_else(|| err(&name, format!("topic `{topic}` does not exist")))?;
            if let Some(e) = t.error() {
                return Err(err(&name, format!("topic `{topic}`: {e:?}")));
            }
            if t.partitions().is_empty() {
                return Err(err(&name, format!("topic `{topic}` does not exist")));
            }
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            for p in ids {
                let id = parts.len() as u32;
                let end = if s.bounded {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, p, timeout)
                        .map_err(|e| err(&name, format!("watermarks of {topic}/{p}: {e}")))?;
                    Some(high)
                } else {
                    None
                };
                index.insert((topic.clone(), p), parts.len());
                parts.push(Part {
                    info: PartitionInfo {
                        id,
                        topic: topic.clone(),
                    },
                    topic: topic.clone(),
                    partition: p,
                    next: 0,
                    end,
                    from: 0,
                    buf: Vec::new(),
                    offsets: Vec::new(),
                });
            }
        }
        Ok(KafkaSource {
            consumer,
            parts,
            index,
            chunk_bytes: s.chunk_bytes.max(1024),
            bounded: s.bounded,
            reassign: true,
            last_committed: HashMap::new(),
            reset_latest: matches!(s.auto_offset_reset.as_str(), "latest" | "largest" | "end"),
            name,
            timeout,
        })
    }

    fn done(p: &Part) -> bool {
        p.end.is_some_and(|e| p.next >= e)
    }

    fn assign(&mut self) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        for p in self.parts.iter().filter(|p| !Self::done(p)) {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))
                .map_err(|e| err(&self.name, e.to_string()))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| err(&self.name, format!("cannot assign partitions: {e}")))?;
        self.reassign = false;
        Ok(())
    }

    /// Moves a partition's buffered messages into `chunk`.
    fn emit(&mut self, i: usize, chunk: &mut Chunk) -> Next {
        let p = &mut self.parts[i];
        std::mem::swap(&mut chunk.data, &mut p.buf);
        p.buf.clear();
        chunk.first_line = 1;
        chunk.first_offset = 0;
        chunk.from_offset = Some(p.from as u64);
        chunk.offsets = std::mem::take(&mut p.offsets);
        p.from = p.next;
        Next::Chunk(p.info.id)
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> Vec<PartitionInfo> {
        self.parts.iter().map(|p| p.info.clone()).collect()
    }

    fn seek(&mut self, partition: u32, offset: u64, _line: u64) -> Result<(), SourceError> {
        let p = &mut self.parts[partition as usize];
        p.next = offset as i64;
        p.from = offset as i64;
        p.buf.clear();
        p.offsets.clear();
        self.reassign = true;
        Ok(())
    }

    fn resume_default(&mut self, partition: u32) -> Result<(u64, u64), SourceError> {
        let (topic, part) = {
            let p = &self.parts[partition as usize];
            (p.topic.clone(), p.partition)
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, part);
        let committed = self
            .consumer
            .committed_offsets(tpl, self.timeout)
            .map_err(|e| {
                err(
                    &self.name,
                    format!("committed offset of {topic}/{part}: {e}"),
                )
            })?;
        let stored = committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        });
        let (low, high) = self
            .consumer
            .fetch_watermarks(&topic, part, self.timeout)
            .map_err(|e| err(&self.name, format!("watermarks of {topic}/{part}: {e}")))?;
        let start = match stored {
            Some(o) => o.clamp(low, high),
            None if self.reset_latest => high,
            None => low,
        };
        self.seek(partition, start as u64, 0)?;
        Ok((start as u64, 0))
    }

    fn next(&mut self, chunk: &mut Chunk) -> Result<Next, SourceError> {
        if self.reassign {
            self.assign()?;
        }
        // Messages of many partitions interleave: they are buffered per partition within a
        // budget of 16 chunks in all, so memory is bounded by the chunk size, not by the number
        // of partitions. A partition is handed on when it holds its share of the budget (at
        // least 64 KiB, at most a chunk); the fullest one when the budget or 100 ms is reached.
        let budget = self.chunk_bytes * 16;
        let threshold = (budget / self.parts.len().max(1))
            .max(64 * 1024)
            .min(self.chunk_bytes);
        let mut buffered: usize = self.parts.iter().map(|p| p.buf.len()).sum();
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            if buffered >= budget {
                break;
            }
            if self.parts.iter().all(Self::done) && self.parts.iter().all(|p| p.buf.is_empty()) {
                return Ok(Next::End);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(polled) = self.consumer.poll(left) else {
                break;
            };
            let msg = polled.map_err(|e| err(&self.name, format!("consuming: {e}")))?;
            let Some(&i) = self.index.get(&(msg.topic().to_string(), msg.partition())) else {
                continue;
            };
            let p = &mut self.parts[i];
            let offset = msg.offset();
            if offset < p.next || p.end.is_some_and(|e| offset >= e) {
                continue; // from before a seek, or past a bounded run's end
            }
            let before = p.buf.len();
            match msg.payload() {
                None | Some([]) => p.buf.extend_from_slice(b"null"),
                Some(bytes) if memchr::memchr2(b'\n', b'\r', bytes).is_none() => {
                    p.buf.extend_from_slice(bytes)
                }
                Some(bytes) => {
                    p.buf.extend(bytes.iter().map(
                        |&b| {
                            if b == b'\n' || b == b'\r' {
                                b' '
                            } else {
                                b
                            }
                        },
                    ))
                }
            }
            p.buf.push(b'\n');
            buffered += p.buf.len() - before;
            p.offsets.push(offset as u64);
            p.next = offset + 1;
            if p.buf.len() >= threshold || Self::done(p) {
                return Ok(self.emit(i, chunk));
            }
        }
        match (0..self.parts.len())
            .filter(|&i| !self.parts[i].buf.is_empty())
            .max_by_key(|&i| self.parts[i].buf.len())
        {
            Some(i) => Ok(self.emit(i, chunk)),
            None if self.bounded && self.parts.iter().all(Self::done) => Ok(Next::End),
            None => Ok(Next::Idle),
        }
    }

    fn committed(&mut self, partition: u32, next_offset: u64) {
        self.last_committed.insert(partition, next_offset);
        let p = &self.parts[partition as usize];
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&p.topic, p.partition, Offset::Offset(next_offset as i64))
            .is_ok()
        {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(partition = %p.info.key(), error = %e, "committing the offset to the group failed (the checkpoint stands)");
            }
        }
    }

    fn close(&mut self) {
        if self.last_committed.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&id, &next) in &self.last_committed {
            let p = &self.parts[id as usize];
            let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(next as i64));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "the final commit of offsets to the group failed (the checkpoints stand)");
        }
    }

    /// Lag per partition: high watermark − next offset.
    fn lag(&self) -> Vec<(String, i64)> {
        self.parts
            .iter()
            .filter_map(|p| {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&p.topic, p.partition, Duration::from_secs(2))
                    .ok()?;
                Some((p.info.key(), (high - p.next).max(0)))
            })
            .collect()
    }
}
