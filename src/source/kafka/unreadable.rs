//! Record batches the Kafka client cannot read: one that does not decompress, or names a codec
//! it does not know (or, with `check.crcs` set, fails its CRC check). librdkafka reports an error at the batch's first
//! offset and fetches the same batch again, for ever; the error does not say where the batch
//! ends.
//!
//! The end is found by seeking: a fetch from an offset inside the batch returns the batch
//! (the same error, at the same offset), one from past it returns a message, another batch's
//! error, or nothing. Galloping from the first offset (1, 2, 4 … past it), then bisecting,
//! bounded by the log's end (the high watermark) and a bounded run's end: about
//! 2·log₂(records) fetches. Taking "inside" for "past" only shortens the batch (the rest is
//! met again, and probed, from the next offset), so a fetch that brings nothing within
//! `PROBE_WAIT` (control records, aborted transactions, a broker gone quiet) counts as past;
//! "inside" is only ever the batch's own error again, after the seek (librdkafka drops what
//! was fetched before a seek). The batch then stands in its partition as one unreadable line
//! at its last offset, a dead letter naming the offsets, and reading goes on after it.
//!
//! An error is taken in order with the partition's messages: those after it (from the same
//! fetch) only answer the probe. A start inside the batch (a checkpoint, a timestamp, a
//! bounded run that ended inside it) makes the dead letter begin at that start.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

use super::batch::{cached_high_watermark, FetchQueue, Msg};
use super::part::Part;
use super::KafkaSource;

/// How long one seek of a probe, or one watermark request, may hold the poll thread.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a probe's fetch may bring nothing before its offset counts as past the batch.
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// Whether a consumer error at an offset means the record batch there cannot be read: it
/// does not decompress, or its codec is one librdkafka does not know (attribute bits 5 to 7;
/// every codec Kafka defines is built in). ("Might be too large to fetch" is not one:
/// librdkafka says it of a batch larger than it may fetch, a setting to change, and of empty
/// batches, which it passes by itself. Nor is a failed allocation, which may pass.)
pub(super) fn unreadable_batch(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BadCompression
            | RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::NotImplemented
    )
}

/// What an unreadable-batch error did to its partition.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// Nothing (not read here, before a seek, or an answer to the running probe).
    Nothing,
    /// A probe started.
    Probe,
    /// It lies at or past a bounded run's end: the partition is done (see `Part::passed_end`).
    Ended,
}

/// An unreadable-batch error at `msg`'s offset for partition `p`, taken in order with its
/// messages: answers the running probe, ends a bounded run it lies past, or starts a probe.
pub(super) fn on_error(p: &mut Part, msg: &Msg<'_>) -> Taken {
    let offset = msg.offset();
    // Where this reader does not read (not its partition, a finished run), or before a seek
    // still to be made (the fetcher meets the batch again after it), nothing.
    if !p.owned || p.done() || p.seek_pending {
        return Taken::Nothing;
    }
    // Another batch's error, even past the end, answers: the fetch began past this one.
    if let Some(probe) = p.probe.as_mut() {
        probe.batch_again(offset);
        return Taken::Nothing;
    }
    let next = p.next;
    if p.passed_end(offset) {
        // An error names a batch's first offset; an old-format compressed wrapper's names its
        // last, so the offsets from where reading stands to the end could be its: said, not
        // skipped silently.
        if next < offset {
            let end = p.end.unwrap_or(offset);
            tracing::warn!(
                topic = %p.info.topic,
                partition = p.partition,
                "the range ends at {end}, where reading stood at {next} and the Kafka client \
                 could not read the record batch reported at offset {offset}: offsets {next} \
                 to {} held no record it could read",
                end - 1,
            );
        }
        return Taken::Ended;
    }
    let words = msg
        .payload()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .unwrap_or_default();
    p.probe = Some(Probe::new(offset, next, words));
    Taken::Probe
}

/// The search for the end of one unreadable batch.
#[derive(Debug)]
pub(super) struct Probe {
    /// The offset the batch's errors name (its first).
    error_offset: i64,
    /// The first offset of the dead letter: where reading stood. Inside the batch, or before
    /// the offset its errors name: a batch's errors name its first offset, but an old-format
    /// compressed wrapper's name its last, so the offsets between may be its (none arrived).
    pub first: i64,
    /// The highest offset known to fetch the batch.
    inside: i64,
    /// The lowest offset known to fetch something else (or nothing).
    outside: Option<i64>,
    /// The offset fetched from, once the seek to it was made, since when, and once the wait
    /// is over, the count of items read by which all then queued are read (see `no_answer`).
    at: Option<(i64, Instant, Option<u64>)>,
    /// librdkafka's words.
    pub why: String,
}

/// What a probe does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Fetch from this offset.
    Seek(i64),
    /// The batch ends at this offset.
    Last(i64),
}

impl Probe {
    /// A probe of the batch whose error names `error_offset`, read up to `next`.
    pub fn new(error_offset: i64, next: i64, why: String) -> Probe {
        Probe {
            error_offset,
            first: next,
            inside: error_offset.max(next),
            outside: None,
            at: None,
            why,
        }
    }

    /// The next step, with `limit` the offset past which nothing can be part of this batch
    /// (the high watermark, or a bounded run's end).
    pub fn step(&self, limit: i64) -> Step {
        let outside = self.outside.unwrap_or(i64::MAX).min(limit);
        if outside <= self.inside + 1 {
            return Step::Last((outside - 1).max(self.first));
        }
        match self.outside {
            Some(_) => Step::Seek(self.inside + (outside - self.inside) / 2),
            None => Step::Seek((self.inside + (self.inside - self.first + 1)).min(outside - 1)),
        }
    }

    /// The seek to `offset` was made: what arrives for the partition from now on answers it.
    pub fn sought(&mut self, offset: i64) {
        self.at = Some((offset, Instant::now(), None));
    }

    pub fn waiting(&self) -> bool {
        self.at.is_some()
    }

    /// An unreadable-batch error at `offset` arrived: this batch's again means the offset
    /// sought to is inside it; another's, that the fetch began past it.
    pub fn batch_again(&mut self, offset: i64) {
        if let Some((at, _, _)) = self.at.take() {
            if offset == self.error_offset {
                self.inside = self.inside.max(at);
            } else {
                self.past(at);
            }
        }
    }

    /// A message at `offset` arrived. One at or past the offset sought to means that offset
    /// lies past the batch; one before it is from before the seek.
    pub fn message(&mut self, offset: i64) {
        if let Some((at, _, _)) = self.at.filter(|&(at, _, _)| offset >= at) {
            self.past(at);
            self.at = None;
        }
    }

    /// Nothing arrived for `wait` (while fetching) and was then read: the offset counts as
    /// past. Time alone would not do: a reader that did not read for a while (waiting on its
    /// writers) or reads behind a long queue (other partitions catching up) would take an
    /// answer still queued for none. So once the wait is over, what is queued then (`queued`)
    /// must be read too: `read` counts the items read so far.
    pub fn no_answer(&mut self, wait: Duration, read: u64, queued: u64) {
        if let Some((at, since, mark)) = self.at.as_mut() {
            if since.elapsed() < wait {
                return;
            }
            if read >= *mark.get_or_insert(read + queued) {
                let at = *at;
                self.past(at);
                self.at = None;
            }
        }
    }

    /// The partition is paused: the wait begins again when fetching does.
    pub fn hold(&mut self) {
        if let Some((_, since, mark)) = self.at.as_mut() {
            *since = Instant::now();
            *mark = None;
        }
    }

    fn past(&mut self, at: i64) {
        self.outside = Some(self.outside.map_or(at, |o| o.min(at)));
    }
}

impl KafkaSource {
    /// Moves every probe on: seeks where a probe asks, and turns a finished one into its
    /// partition's unreadable line, then seeks past the batch.
    pub(super) fn advance_probes(&mut self) {
        let mut pending = false;
        let read = self.read_batched + self.read_polled;
        let queued = self.fetch.as_ref().map_or(0, FetchQueue::waiting);
        for i in 0..self.parts.len() {
            let paused = self.paused;
            let p = &mut self.parts[i];
            if !p.owned || p.done() {
                continue;
            }
            let Some(probe) = p.probe.as_mut() else {
                continue;
            };
            pending = true;
            if probe.waiting() {
                if paused {
                    probe.hold();
                    continue;
                }
                probe.no_answer(PROBE_WAIT, read, queued);
                if probe.waiting() {
                    continue;
                }
            }
            let Some(limit) = self.log_end(i) else {
                continue;
            };
            let p = &self.parts[i];
            let limit = p.end.map_or(limit, |e| e.min(limit));
            let step = p.probe.as_ref().expect("a probe").step(limit);
            match step {
                Step::Seek(offset) => {
                    let p = &mut self.parts[i];
                    let sought = self.consumer.seek(
                        &p.info.topic,
                        p.partition,
                        Offset::Offset(offset),
                        PROBE_TIMEOUT,
                    );
                    if sought.is_ok() {
                        if let Some(probe) = p.probe.as_mut() {
                            probe.sought(offset);
                        }
                    }
                }
                Step::Last(last) => {
                    let p = &mut self.parts[i];
                    let probe = p.probe.take().expect("a probe");
                    let why = if probe.first < probe.error_offset {
                        format!(
                            "the Kafka client could not read the record batch reported at offset \
                             {}, and no record arrived from where reading stood: offsets {} to \
                             {last} held no record it could read: {}",
                            probe.error_offset, probe.first, probe.why
                        )
                    } else {
                        format!(
                            "the Kafka client could not read the record batch at offsets {} to \
                             {last}: {}",
                            probe.first, probe.why
                        )
                    };
                    tracing::warn!(
                        source = %self.name,
                        topic = %p.info.topic,
                        partition = p.partition,
                        first = probe.first,
                        last,
                        "{why}; it becomes a dead letter"
                    );
                    p.push_unreadable(last, why, self.needs);
                    if p.done() {
                        self.ready.push(i);
                    }
                    p.seek_pending = true;
                    self.seeks_pending = true;
                }
            }
        }
        self.probes_pending = pending;
    }

    /// The partition's high watermark as librdkafka last heard it, else asked of the broker.
    fn log_end(&self, i: usize) -> Option<i64> {
        let p = &self.parts[i];
        let first = p.probe.as_ref()?.first;
        if let Some(high) = cached_high_watermark(&self.consumer, &p.info.topic, p.partition) {
            if high > first {
                return Some(high);
            }
        }
        let (_, high) = self
            .consumer
            .fetch_watermarks(&p.info.topic, p.partition, PROBE_TIMEOUT)
            .ok()?;
        (high > first).then_some(high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers a probe as a log would whose unreadable batch spans `first..=last` (answers
    /// past it: a message, or nothing, by turns), with `limit` the log's end. Returns the last
    /// offset found and the fetches it took.
    fn find(first: i64, last: i64, limit: i64) -> (i64, usize) {
        let mut probe = Probe::new(first, first, String::new());
        for fetches in 0..200 {
            match probe.step(limit) {
                Step::Last(l) => return (l, fetches),
                Step::Seek(at) => {
                    assert!(at > first && at < limit, "{at} outside {first}..{limit}");
                    probe.sought(at);
                    if at <= last {
                        probe.batch_again(first);
                    } else if fetches % 2 == 0 {
                        probe.message(at);
                    } else {
                        probe.no_answer(Duration::ZERO, 0, 0);
                    }
                    assert!(!probe.waiting());
                }
            }
        }
        panic!("the probe did not end");
    }

    #[test]
    fn the_end_of_a_batch_is_found_exactly_in_logarithmic_fetches() {
        for (first, last, limit) in [
            (10, 10, 1000),
            (10, 11, 1000),
            (10, 34, 1000),
            (0, 499, 10_000_000),
            (5, 7, 8), // the batch ends the log
            (5, 5, 6), // a batch of one at the end
            (7, 300, 1 << 40),
        ] {
            let (found, fetches) = find(first, last, limit);
            assert_eq!(found, last, "batch {first}..={last}");
            let n = (last - first + 2) as f64;
            assert!(
                fetches as f64 <= 2.0 * n.log2() + 2.0,
                "{fetches} fetches for {n} records"
            );
        }
    }

    #[test]
    fn a_bounded_run_ends_the_batch_at_its_end() {
        // The batch runs to 40, the run ends at 20: the run's part is 10..=19.
        assert_eq!(find(10, 40, 20).0, 19);
    }

    #[test]
    fn a_start_inside_the_batch_begins_the_dead_letter_there() {
        // The batch's errors name 10; reading stood at 16.
        let mut probe = Probe::new(10, 16, String::new());
        assert_eq!(probe.first, 16);
        assert_eq!(probe.step(100), Step::Seek(17));
        probe.sought(17);
        probe.batch_again(10);
        assert_eq!(probe.step(100), Step::Seek(19));
        probe.sought(19);
        probe.message(19);
        assert_eq!(probe.step(100), Step::Seek(18));
        probe.sought(18);
        probe.batch_again(10);
        assert_eq!(probe.step(100), Step::Last(18));
    }

    #[test]
    fn a_batch_reported_past_where_reading_stands_begins_the_dead_letter_there() {
        // An old-format wrapper's errors name its last offset, 15; reading stood at 10, and
        // nothing of 10..15 arrived: the dead letter names them too.
        let mut probe = Probe::new(15, 10, String::new());
        assert_eq!(probe.first, 10);
        assert_eq!(probe.step(100), Step::Seek(21));
        probe.sought(21);
        probe.message(21);
        assert_eq!(probe.step(100), Step::Seek(18));
        probe.sought(18);
        probe.message(18);
        assert_eq!(probe.step(100), Step::Seek(16));
        probe.sought(16);
        probe.message(16);
        assert_eq!(probe.step(100), Step::Last(15));
    }

    #[test]
    fn only_the_batch_s_own_error_after_a_seek_counts_as_inside() {
        let mut probe = Probe::new(10, 10, String::new());
        // Nothing was sought yet: neither a message nor the error says anything.
        probe.message(50);
        probe.batch_again(10);
        probe.no_answer(Duration::ZERO, 0, 0);
        assert_eq!(probe.step(100), Step::Seek(11));
        probe.sought(11);
        // A message before the offset sought is from before the seek.
        probe.message(5);
        assert!(probe.waiting());
        // Within the wait, no answer is not one.
        probe.no_answer(Duration::from_secs(3600), 0, 0);
        assert!(probe.waiting());
        probe.batch_again(10);
        assert_eq!(probe.step(100), Step::Seek(13));
        probe.sought(13);
        // Another batch's error, even at the offset sought: the fetch began past this batch
        // (two unreadable batches side by side).
        probe.batch_again(13);
        assert_eq!(probe.step(100), Step::Seek(12));
        probe.sought(12);
        probe.batch_again(12);
        assert_eq!(probe.step(100), Step::Last(11));
    }

    #[test]
    fn no_answer_waits_until_what_was_queued_when_the_wait_ended_is_read() {
        let mut probe = Probe::new(10, 10, String::new());
        assert_eq!(probe.step(100), Step::Seek(11));
        probe.sought(11);
        // The wait is over with 5 items queued (other partitions'): they may hold the answer.
        probe.no_answer(Duration::ZERO, 100, 5);
        assert!(probe.waiting());
        // What was queued later does not move the mark.
        probe.no_answer(Duration::ZERO, 104, 50);
        assert!(probe.waiting());
        probe.no_answer(Duration::ZERO, 105, 50);
        assert!(!probe.waiting());
        assert_eq!(probe.step(100), Step::Last(10));
        // A pause starts the wait, and the count, again.
        let mut probe = Probe::new(10, 10, String::new());
        probe.sought(11);
        probe.no_answer(Duration::ZERO, 0, 5);
        probe.hold();
        probe.no_answer(Duration::ZERO, 5, 10);
        assert!(probe.waiting());
        probe.no_answer(Duration::ZERO, 15, 0);
        assert!(!probe.waiting());
    }
}
