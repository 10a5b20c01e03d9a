//! Reading: one round of polling (rebalance events, then a batch of fetched messages, each
//! buffered in its partition), and how `next` fills partitions and picks the one to hand on.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::batch::{Batch, FetchQueue, Msg, MAX_BATCH};
use super::group::{accept, apply_events, lock, set_paused_parts, Index};
use super::part::Part;
use super::unreadable::{on_error, unreadable_batch, Taken};
use super::{err_at, KafkaSource};
use crate::decode::framing::MAX_CHUNK_LINES;
use crate::decode::meta::MetaNeeds;
use crate::decode::Chunk;
use crate::source::{Next, SourceError};

/// The longest one read waits on the fetch queue, while rebalance events wait on the other.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// How many partitions buffer at once: `next` keeps this many chunks' worth in all.
const BUDGET_CHUNKS: usize = 16;

/// The most consumer-queue events served in one round.
const MAX_EVENTS: usize = 64;

/// How long the largest message seen counts in sizing batches (it counts for one to two).
const SIZE_WINDOW: Duration = Duration::from_secs(10);

/// The largest message buffered lately, which sizes batches: the largest of the last one to
/// two windows. Before any message, a batch takes one.
pub(super) struct Sizes {
    now: usize,
    before: usize,
    since: Instant,
}

impl Sizes {
    pub fn new() -> Sizes {
        Sizes {
            now: 0,
            before: 0,
            since: Instant::now(),
        }
    }

    fn seen(&mut self, largest: usize) {
        if self.since.elapsed() >= SIZE_WINDOW {
            self.before = std::mem::take(&mut self.now);
            self.since = Instant::now();
        }
        self.now = self.now.max(largest);
    }

    /// How many messages fit in `bytes` (at least one, at most a batch).
    fn fit(&self, bytes: usize) -> usize {
        match self.now.max(self.before) {
            0 => 1,
            largest => (bytes / largest).clamp(1, MAX_BATCH),
        }
    }
}

/// Buffers one message in its partition, and marks the partition ready once: when it crosses
/// `threshold` or [`MAX_CHUNK_LINES`] messages, or with its last message. Returns the
/// partition and the bytes buffered.
fn buffer(
    index: &Index,
    parts: &mut [Part],
    ready: &mut Vec<usize>,
    msg: &Msg<'_>,
    needs: MetaNeeds,
    threshold: usize,
) -> Option<(usize, usize)> {
    let (i, added) = accept(index, parts, msg, needs)?;
    let p = &parts[i];
    if (p.held() >= threshold && p.held() - added < threshold) || full(p) || p.done() {
        ready.push(i);
    }
    Some((i, added))
}

/// Whether a partition holds a chunk's worth of messages, whatever their bytes: by their
/// count, or by what their lines decode to (left by a chunk cut by it).
fn full(p: &Part) -> bool {
    p.ends.len() >= MAX_CHUNK_LINES || p.cut
}

/// What an error item marked its partition for.
enum Marked {
    Nothing,
    Probe,
    Seek,
}

/// An error item of a batch, taken in order with its partition's messages (`at`, when it
/// names one): the end of the log (see `Part::log_end`), a batch the client cannot read (see
/// `unreadable`), or another error. A batch read counts an error item as read: librdkafka's
/// position for the partition (where a pause resumes) moved past the error's offset, a
/// record not read yet, so the partition is sought back to where reading stands, and its
/// messages after the error are refused until then. An offset out of range is
/// `offset_reset`'s; a finished partition has no fetcher. Every error is also logged or
/// looked into after the batch (`consume_error`).
fn error_item(
    parts: &mut [Part],
    ready: &mut Vec<usize>,
    at: Option<usize>,
    code: RDKafkaErrorCode,
    msg: &Msg<'_>,
) -> Marked {
    let Some(i) = at else {
        return Marked::Nothing;
    };
    let p = &mut parts[i];
    if code == RDKafkaErrorCode::PartitionEOF {
        if p.log_end(msg.offset()) {
            ready.push(i);
        }
        return Marked::Nothing;
    }
    if unreadable_batch(code) {
        return match on_error(p, msg) {
            Taken::Probe => Marked::Probe,
            Taken::Ended => {
                ready.push(i);
                Marked::Nothing
            }
            Taken::Nothing => Marked::Nothing,
        };
    }
    if code != RDKafkaErrorCode::AutoOffsetReset && p.owned && !p.done() && p.probe.is_none() {
        p.seek_pending = true;
        return Marked::Seek;
    }
    Marked::Nothing
}

impl KafkaSource {
    /// A partition's share of the budget: at least 64 KiB, at most a chunk.
    pub(super) fn threshold(&self) -> usize {
        self.share()
            .max(super::part::MIN_CHUNK)
            .min(self.chunk_bytes)
    }

    /// The budget ([`BUDGET_CHUNKS`] chunks) over the partitions owned.
    fn share(&self) -> usize {
        let owned = self.parts.iter().filter(|p| p.owned).count();
        self.chunk_bytes * BUDGET_CHUNKS / owned.max(1)
    }

    /// The bytes buffered in all partitions, and in the fullest one.
    pub(super) fn buffered(&self) -> (usize, usize) {
        self.parts
            .iter()
            .fold((0, 0), |(sum, max), p| (sum + p.held(), max.max(p.held())))
    }

    /// The room left in the budget, and the fullest partition's bytes.
    pub(super) fn room(&self) -> (usize, usize) {
        let (sum, fullest) = self.buffered();
        (
            (self.chunk_bytes * BUDGET_CHUNKS).saturating_sub(sum),
            fullest,
        )
    }

    /// One round: serves the consumer queue (rebalance events, errors; drained, up to 64),
    /// then buffers what has been fetched: a batch sized by the largest message seen lately
    /// (`Sizes`) to the room left, both in the budget (`room`) and in the fullest partition's
    /// chunk (`fullest` bytes buffered), waiting at most `wait` for its first message. Only
    /// messages larger than any of the last 10 to 20 s make a batch pass that room (by at
    /// most what librdkafka's queue held). A partition reaching `threshold` bytes, or its
    /// end, is marked ready. Returns the bytes buffered and the fullest partition's bytes.
    pub(super) fn poll_once(
        &mut self,
        wait: Duration,
        threshold: usize,
        room: usize,
        mut fullest: usize,
    ) -> Result<(usize, usize), SourceError> {
        if self.reassign {
            self.assign_static()?;
        }
        if self.refusals_pending {
            self.refuse_drained();
        }
        if self.seeks_pending {
            self.retry_seeks()?;
        }
        if self.forwards_pending {
            self.forward_again();
        }
        if self.probes_pending {
            self.advance_probes();
        }
        // Each error, with its partition when known.
        let mut errors: Vec<(KafkaError, Option<usize>)> = Vec::new();
        let (mut probing, mut seeking) = (false, false);
        let mut added = 0;
        // With a fetch queue, the consumer queue holds events only (and the messages of a
        // partition librdkafka could not forward): it is served without waiting.
        let mut direct_wait = if self.fetch.is_some() {
            Duration::ZERO
        } else {
            wait
        };
        for _ in 0..MAX_EVENTS {
            let polled = self.consumer.poll(direct_wait);
            direct_wait = Duration::ZERO;
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
            match polled {
                Some(Ok(msg)) => {
                    self.read_polled += 1;
                    let msg = Msg::of(&msg);
                    let at = buffer(
                        &self.index,
                        &mut self.parts,
                        &mut self.ready,
                        &msg,
                        self.needs,
                        threshold,
                    );
                    if let Some((i, n)) = at {
                        added += n;
                        fullest = fullest.max(self.parts[i].held());
                    }
                }
                Some(Err(e)) => errors.push((e, None)),
                None => {}
            }
            if !self.fetch.as_ref().is_some_and(FetchQueue::events_waiting) {
                break;
            }
        }
        self.finish_rejoin()?;
        // After the events are served: a restart must not answer a rebalance still waiting.
        let events_waiting = self.fetch.as_ref().is_some_and(FetchQueue::events_waiting);
        if self.unassign.due() && !events_waiting {
            self.unassign_refused();
        }
        if self.refetches_pending && !events_waiting {
            self.refetch_all()?;
        }
        if self.group && self.rejoining.is_none() && !events_waiting {
            self.take_leaderless()?;
        }
        if let Some(fetch) = self.fetch.as_mut() {
            let left = room.min(self.chunk_bytes.saturating_sub(fullest));
            let max = self.sizes.fit(left);
            let (index, parts, ready, needs) =
                (&self.index, &mut self.parts, &mut self.ready, self.needs);
            // Returns (messages, bytes buffered, the largest message's bytes).
            let mut read = |batch: Batch<'_>| -> (usize, usize, usize) {
                let (mut bytes, mut largest) = (0, 0);
                for item in batch.iter() {
                    match item {
                        Ok(msg) => {
                            if let Some((i, n)) =
                                buffer(index, parts, ready, &msg, needs, threshold)
                            {
                                bytes += n;
                                largest = largest.max(n);
                                fullest = fullest.max(parts[i].held());
                                parts[i].forward_pending = false;
                            }
                        }
                        Err((code, msg)) => {
                            let at = msg.topic().and_then(|t| index.get(t, msg.partition()));
                            match error_item(parts, ready, at, code, &msg) {
                                Marked::Probe => probing = true,
                                Marked::Seek => seeking = true,
                                Marked::Nothing => {}
                            }
                            errors.push((KafkaError::MessageConsumption(code), at));
                        }
                    }
                }
                (batch.len(), bytes, largest)
            };
            // A read with a wait returns only when full or timed out: the wait is spent on the
            // first message alone, and the rest is taken at once.
            let (mut n, mut bytes, mut largest) = read(fetch.batch(max, Duration::ZERO));
            if n == 0 && added == 0 && !wait.is_zero() {
                (n, bytes, largest) = read(fetch.batch(1, wait.min(MAX_WAIT)));
                if n == 1 && max > 1 {
                    let (more, more_bytes, more_largest) =
                        read(fetch.batch(max - 1, Duration::ZERO));
                    (n, bytes, largest) = (n + more, bytes + more_bytes, largest.max(more_largest));
                }
            }
            if n > 0 {
                self.sizes.seen(largest);
                self.batches += 1;
                self.read_batched += n as u64;
            }
            added += bytes;
        }
        self.probes_pending |= probing;
        self.seeks_pending |= seeking;
        for (e, at) in errors {
            self.consume_error(e, at)?;
        }
        Ok((added, fullest))
    }

    /// Static runs: forwards again the partitions (re)assigned that have not sent a message
    /// since. Re-assigning stops a partition's fetcher, and librdkafka's stop clears its
    /// forwarding but keeps it marked as the application's, so the restart forwards it
    /// nowhere; the stop runs on librdkafka's own thread after `assign` returns. Forwarding
    /// again moves what waits in the partition's own queue across, in order.
    fn forward_again(&mut self) {
        // At most every 20 ms: a partition whose range ends on an offset the log does not
        // hold sends nothing more, and each forwarding takes librdkafka's client lock.
        if self.forwarded.elapsed() < Duration::from_millis(20) {
            return;
        }
        self.forwarded = Instant::now();
        let Some(fwd) = lock(&self.shared).forward else {
            self.forwards_pending = false;
            return;
        };
        let mut pending = false;
        for p in self
            .parts
            .iter()
            .filter(|p| p.forward_pending && p.owned && !p.done())
        {
            fwd.take(&self.consumer, &p.info.topic, p.partition);
            pending = true;
        }
        self.forwards_pending = pending;
    }

    /// A consumer error: an offset out of range is looked into, a fatal error stops the run,
    /// the rest are transient (librdkafka retries) and logged at most every 10 s.
    fn consume_error(&mut self, e: KafkaError, at: Option<usize>) -> Result<(), SourceError> {
        match e {
            e @ KafkaError::MessageConsumptionFatal(_) => {
                Err(err_at(&self.name, format!("consuming: {e}")))
            }
            KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) => {
                self.offset_reset(at)
            }
            // The end of a partition (taken in order where it names one; see `error_item`).
            KafkaError::PartitionEOF(_)
            | KafkaError::MessageConsumption(RDKafkaErrorCode::PartitionEOF) => Ok(()),
            // Probed for (see `unreadable`).
            KafkaError::MessageConsumption(code) if at.is_some() && unreadable_batch(code) => {
                Ok(())
            }
            e => {
                // Broker down, connection reset, leader moving: librdkafka retries by itself;
                // the job waits and resumes, it does not fail.
                if self
                    .last_warning
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                {
                    self.last_warning = Some(Instant::now());
                    tracing::warn!(source = %self.name, error = %e, "the broker is not answering; retrying");
                }
                Ok(())
            }
        }
    }

    /// The next chunk. Messages of many partitions interleave: they are buffered per partition
    /// within a budget of 16 chunks in all, so memory is bounded by the chunk size, not by the
    /// number of partitions. A partition is handed on when it holds its share of the budget
    /// (at least 64 KiB, at most a chunk) or [`MAX_CHUNK_LINES`] messages, or reached its end;
    /// the fullest one when the budget or 100 ms is reached.
    pub(super) fn fill(&mut self, chunk: &mut Chunk) -> Result<Next, SourceError> {
        let budget = self.chunk_bytes * BUDGET_CHUNKS;
        let threshold = self.threshold();
        let deadline = Instant::now() + Duration::from_millis(100);
        let (mut buffered, mut fullest) = self.buffered();
        if self.all_done() {
            return Ok(Next::End);
        }
        loop {
            // Marked while reading; checked again, since the threshold or the buffer moved.
            while let Some(i) = self.ready.pop() {
                let p = &self.parts[i];
                if !p.buf.is_empty() && (p.held() >= threshold || full(p) || p.done()) {
                    return Ok(self.emit(i, chunk));
                }
            }
            if buffered >= budget {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let added;
            (added, fullest) = self.poll_once(left, threshold, budget - buffered, fullest)?;
            buffered += added;
            if added == 0 && (self.all_done() || self.parts.iter().any(|p| !p.buf.is_empty())) {
                break;
            }
        }
        match (0..self.parts.len())
            .filter(|&i| !self.parts[i].buf.is_empty())
            .max_by_key(|&i| self.parts[i].held())
        {
            Some(i) => Ok(self.emit(i, chunk)),
            None if self.all_done() => Ok(Next::End),
            None => Ok(Next::Idle),
        }
    }

    /// Hands on partition `i`'s messages, or the first of them (see `Part::emit`): a
    /// partition left holding some is looked at again first.
    fn emit(&mut self, i: usize, chunk: &mut Chunk) -> Next {
        let next = self.parts[i].emit(chunk, self.cost.as_ref());
        let p = &mut self.parts[i];
        if !p.buf.is_empty() {
            self.ready.push(i);
        } else {
            // The buffers the chunk gave back for reuse may be another partition's size (up to
            // `chunk_bytes`): each partition keeps room for about twice what it handed on, at
            // most its share of the budget past 256 partitions, so what all of them hold stays
            // within the budget, not a chunk times partitions.
            let (bytes, lines) = (chunk.data.len(), chunk.ends.len());
            let share = self.share();
            self.parts[i].keep_room(bytes, lines, share);
        }
        next
    }

    pub(super) fn all_done(&self) -> bool {
        !self.group && self.parts.iter().all(|p| p.done() && p.buf.is_empty())
    }
}
