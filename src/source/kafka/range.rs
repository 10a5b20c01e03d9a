//! Backfill bounds: where each partition starts and ends (earliest, latest, a timestamp or
//! explicit offsets), as given on the command line, resolved against the broker's log into
//! each partition's offsets (a plan, which a backfill records and checks before it reads);
//! and the static assignment of a bounded run's partitions.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::group::{lock, set_paused, Index};
use super::identity::Recheck;
use super::part::Part;
use super::times::{checked, Answer};
use super::{err_at, gap, KafkaSource, TIMEOUT};
pub use crate::commit::ranges::Span;
use crate::source::SourceError;

/// What a bounded run reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    /// Every partition of the topics from `start` to `end`, resolved when the source starts.
    Asked(Position, Position),
    /// Exactly these partitions' offsets, resolved before (see [`plan`]). `fresh`: resolved
    /// by this process within watermarks fetched moments ago; otherwise (a plan recorded by an
    /// earlier run) each start is checked against the broker's log when it is assigned.
    Planned { spans: Vec<Span>, fresh: bool },
}

/// Resolves a run from `start` to `end` of the `topics` (names, or `^` patterns) at
/// `brokers` now: every partition of the topics that match, with its `[from, to)` (`to` at
/// least `from`), in topic and partition order. `options` are the job's librdkafka
/// properties (security settings among them); `skip`: `on_gap = "skip"` (an offset asked for
/// that the broker no longer holds moves to the log's start, logged; else an error).
pub fn plan(
    brokers: &str,
    group: &str,
    topics: &[String],
    options: &crate::config::PassThrough,
    (start, end): (&Position, &Position),
    skip: bool,
) -> Result<Vec<Span>, SourceError> {
    let name = format!("kafka {} ({brokers})", topics.join(","));
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    for (k, v) in options.iter() {
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = cfg
        .create()
        .map_err(|e| err_at(&name, format!("cannot create the consumer: {e}")))?;
    // Reads the records at a time's offsets (librdkafka assigns only with a group id).
    cfg.set("group.id", group);
    let recheck = Recheck::new(&cfg);
    let patterns = super::topics::patterns(&name, topics)?;
    let found = super::topics::topics_now(&consumer, &name, topics, &patterns)?;
    spans_of(&consumer, &recheck, &name, &found, (start, end), skip)
}

/// `planned` (each partition of `list` with its from, to and log end), with every offset
/// a time resolved to checked against its record ([`checked`]).
fn checked_times(
    recheck: &Recheck,
    name: &str,
    list: &[(&str, i32)],
    (start, end): (&Position, &Position),
    mut planned: Vec<(i64, i64, i64)>,
) -> Result<Vec<(i64, i64)>, SourceError> {
    let mut answers = Vec::new();
    for (flag, pos) in [("--from", start), ("--to", end)] {
        let Position::Timestamp(ms) = pos else {
            continue;
        };
        for (&(topic, partition), &(from, to, high)) in list.iter().zip(&planned) {
            answers.push(Answer {
                topic: topic.to_string(),
                partition,
                ms: *ms,
                offset: if flag == "--from" { from } else { to },
                high,
                flag,
            });
        }
    }
    let offsets = checked(recheck, name, &answers)?;
    let n = list.len();
    for (k, o) in offsets.into_iter().enumerate() {
        match answers[k].flag {
            "--from" => planned[k % n].0 = o,
            _ => planned[k % n].1 = o,
        }
    }
    Ok(planned.into_iter().map(|(f, t, _)| (f, t)).collect())
}

/// Every partition of `topics` (names and partition numbers) with its `[from, to)` for a run
/// from `start` to `end` (`to` at least `from`).
fn spans_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    recheck: &Recheck,
    name: &str,
    topics: &[(String, Vec<i32>)],
    (start, end): (&Position, &Position),
    skip: bool,
) -> Result<Vec<Span>, SourceError> {
    let list: Vec<(&str, i32)> = topics
        .iter()
        .flat_map(|(t, ids)| ids.iter().map(move |p| (t.as_str(), *p)))
        .collect();
    let planned = plan_all(consumer, name, &list, (start, end), skip)?;
    let planned = checked_times(recheck, name, &list, (start, end), planned)?;
    Ok(list
        .into_iter()
        .zip(planned)
        .map(|((topic, partition), (from, to))| Span {
            topic: topic.to_string(),
            partition,
            from,
            to: to.max(from),
        })
        .collect())
}

/// A position in every partition of the topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The low (`from`) watermark.
    Earliest,
    /// The high watermark when the run starts.
    Latest,
    /// The first offset whose message timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
    /// Explicit offsets per partition number (of one topic, or of every topic when `None`);
    /// partitions not listed use the fallback.
    Offsets(Vec<(Option<String>, i32, i64)>),
}

impl Position {
    /// Parses a backfill bound: `earliest`, `latest`, a timestamp (RFC 3339, e.g.
    /// `2024-05-01T00:00:00Z`, or `@<ms since the epoch>`), or offsets per partition
    /// (`0=100,1=250`, or `orders:0=100` for one topic's partition).
    pub fn parse(text: &str) -> Result<Position, String> {
        let t = text.trim();
        match t {
            "earliest" => return Ok(Position::Earliest),
            "latest" => return Ok(Position::Latest),
            _ => {}
        }
        if let Some(ms) = t.strip_prefix('@') {
            return ms
                .parse::<i64>()
                .map(Position::Timestamp)
                .map_err(|_| format!("`{t}`: expected @<milliseconds since the epoch>"));
        }
        if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(t) {
            return Ok(Position::Timestamp(ts.timestamp_millis()));
        }
        if t.contains('=') {
            let mut list = Vec::new();
            for pair in t.split(',') {
                let (left, off) = pair.split_once('=').ok_or_else(|| {
                    format!(
                        "`{pair}`: expected <partition>=<offset> or <topic>:<partition>=<offset>"
                    )
                })?;
                let (topic, part) = match left.rsplit_once(':') {
                    Some((topic, part)) => (Some(topic.trim().to_string()), part),
                    None => (None, left),
                };
                let part = part
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| format!("`{pair}`: `{part}` is not a partition number"))?;
                let off = off
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|o| *o >= 0)
                    .ok_or_else(|| format!("`{pair}`: `{off}` is not an offset"))?;
                list.push((topic, part, off));
            }
            return Ok(Position::Offsets(list));
        }
        Err(format!(
            "`{t}`: expected earliest, latest, a timestamp (2024-05-01T00:00:00Z or @<ms>) or offsets (0=100,1=250)"
        ))
    }
}

/// The position as `parse` reads it, one spelling per position (offsets sorted by topic and
/// partition): two runs asked for the same range print the same text.
impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Earliest => f.write_str("earliest"),
            Position::Latest => f.write_str("latest"),
            Position::Timestamp(ms) => write!(f, "@{ms}"),
            Position::Offsets(list) => {
                let mut list = list.clone();
                list.sort();
                let text: Vec<String> = list
                    .iter()
                    .map(|(t, p, o)| match t {
                        Some(t) => format!("{t}:{p}={o}"),
                        None => format!("{p}={o}"),
                    })
                    .collect();
                f.write_str(&text.join(","))
            }
        }
    }
}

/// Planning and assigning a bounded run's partitions.
impl KafkaSource {
    /// Static mode: every partition of `topics` with its start and end offsets resolved now,
    /// or the partitions a plan names, with its offsets.
    pub(super) fn plan_range(
        &mut self,
        topics: &[(String, Vec<i32>)],
        range: &Range,
    ) -> Result<(), SourceError> {
        let recheck = lock(&self.shared).recheck.clone();
        let (spans, fresh) = match range {
            Range::Planned { spans, fresh } => (spans.clone(), *fresh),
            Range::Asked(start, end) => (
                spans_of(
                    &self.consumer,
                    &recheck,
                    &self.name,
                    topics,
                    (start, end),
                    lock(&self.shared).skip_gaps,
                )?,
                true,
            ),
        };
        for s in spans {
            let id = lock(&self.shared).id(&s.topic, s.partition);
            let info = lock(&self.shared).infos[id as usize].0.clone();
            let mut part = Part::new(info, s.partition);
            let to = s.to.max(s.from);
            part.owned = true;
            part.restart(s.from);
            // Resolved within the watermarks just fetched: what a check would find. A plan
            // recorded by an earlier run is checked when assigned (retention may have passed
            // its start since).
            part.checked = fresh;
            part.end = Some(to);
            self.bounds.push((id, s.from as u64, to as u64));
            self.parts.push(part);
        }
        self.index = Index::of(&self.parts);
        self.reassign = true;
        Ok(())
    }

    /// Fails when a partition still to read is not on the broker (its topic is unknown, or
    /// has no such partition): a plan recorded by an earlier run may name one deleted since,
    /// or a topic re-created with fewer partitions, and nothing would ever end it (the run
    /// waited for good). A metadata request that fails otherwise (a timeout, a topic without
    /// a leader for now) leaves the partitions as they are.
    fn check_present(&self, parts: &[(String, i32)]) -> Result<(), SourceError> {
        let mut topics: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            let Ok(md) = self.consumer.fetch_metadata(Some(topic), TIMEOUT) else {
                continue;
            };
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                continue;
            };
            let unknown = matches!(
                t.error().map(rdkafka::error::RDKafkaErrorCode::from),
                Some(rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition)
            );
            if t.error().is_some() && !unknown {
                continue;
            }
            let missing = parts.iter().find(|(t2, p)| {
                t2.as_str() == topic && !t.partitions().iter().any(|q| q.id() == *p)
            });
            if let Some((t, p)) = missing {
                return Err(err_at(
                    &self.name,
                    format!(
                        "partition {t}/{p} of the range planned at the first run is not on the broker: the topic was deleted or re-created with fewer partitions since, and its records planned there are gone. Run the range again under a new --name"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Bounded runs: assigns the partitions at their next offsets. A partition placed since
    /// the last assignment (the plan, a rewind) is checked against the broker's log first: a
    /// backfill that resumes from its checkpoint after retention deleted records it had not
    /// exported stops or skips as `on_gap` says, as a live run does. A check the broker does
    /// not answer is left to librdkafka (`auto.offset.reset = error`, see `poll_once`).
    pub(super) fn assign_static(&mut self) -> Result<(), SourceError> {
        let unchecked: Vec<(String, i32)> = self
            .parts
            .iter()
            .filter(|p| !p.done() && !p.checked)
            .map(|p| (p.info.topic.clone(), p.partition))
            .collect();
        if !unchecked.is_empty() {
            self.check_present(&unchecked)?;
        }
        let mut shared = lock(&self.shared);
        let skip = shared.skip_gaps;
        let mut tpl = TopicPartitionList::new();
        for p in self.parts.iter_mut().filter(|p| !p.done()) {
            // Fetching restarts at `next`: a probe's seek is undone (its batch's error comes
            // again, and starts a new one).
            p.probe = None;
            if !p.checked {
                gap::check_position(&self.consumer, &mut shared.skips, p, skip, TIMEOUT)
                    .map_err(|e| err_at(&self.name, e))?;
                p.checked = true;
                if p.done() {
                    continue; // skipped past the end of the run
                }
            }
            tpl.add_partition_offset(&p.info.topic, p.partition, Offset::Offset(p.next))
                .map_err(|e| err_at(&self.name, e.to_string()))?;
            // Before the partition is assigned, so none of its messages take the other way;
            // and again until its first message (see `read::forward_again`).
            if let Some(fwd) = shared.forward {
                fwd.take(&self.consumer, &p.info.topic, p.partition);
                p.forward_pending = true;
                self.forwards_pending = true;
            }
        }
        // A checkpoint's last message is compared with the broker's before reading on.
        let marked: Vec<_> = self
            .parts
            .iter_mut()
            .filter(|p| !p.done())
            .filter_map(|p| {
                let mark = p.expect.take()?;
                let low = p.low.unwrap_or(0);
                Some((p.info.topic.clone(), p.partition, mark, p.next, low))
            })
            .collect();
        super::identity::check(&shared.recheck, &marked).map_err(|e| err_at(&self.name, e))?;
        drop(shared);
        self.consumer
            .assign(&tpl)
            .map_err(|e| err_at(&self.name, format!("cannot assign partitions: {e}")))?;
        self.reassign = false;
        // Both ways: librdkafka keeps an application's pause on a partition across assigns.
        set_paused(&self.consumer, &self.name, self.paused)?;
        Ok(())
    }
}

/// Requests for the watermarks of a run's partitions in flight at once.
const PLAN_THREADS: usize = 8;

/// Each partition's `[from, to)` for a run from `start` to `end`. Every partition costs a
/// broker round trip or two (watermarks, a timestamp's offset): for hundreds of partitions,
/// made one after the other, that was most of a backfill's start, so up to
/// [`PLAN_THREADS`] are in flight at once. The first error in `list`'s order is returned.
fn plan_all<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    list: &[(&str, i32)],
    (start, end): (&Position, &Position),
    skip: bool,
) -> Result<Vec<(i64, i64, i64)>, SourceError> {
    // A range asked for that names nothing to read: a partition no topic of the job has (of
    // one it reads, when named with it), whose offsets went unused while every partition took
    // the default, or times the wrong way round. (A topic the job no longer reads is let be:
    // `--from checkpoint` names every topic the live job has checkpoints of.)
    for (flag, pos) in [("--from", start), ("--to", end)] {
        let Position::Offsets(asked) = pos else {
            continue;
        };
        for (t, q, _) in asked {
            let read = |topic: &str| list.iter().any(|(t, _)| *t == topic);
            if t.as_deref().is_none_or(read)
                && !list
                    .iter()
                    .any(|(topic, p)| p == q && t.as_deref().is_none_or(|t| t == *topic))
            {
                let named = t
                    .as_ref()
                    .map_or(format!("partition {q}"), |t| format!("{t}:{q}"));
                return Err(err_at(name, format!("{flag} names {named}, which none of the job's topics has: nothing was planned")));
            }
        }
    }
    if let (Position::Timestamp(a), Position::Timestamp(b)) = (start, end) {
        if a > b {
            return Err(err_at(
                name,
                "--from is later than --to: the range holds nothing; nothing was planned"
                    .to_string(),
            ));
        }
    }
    let plan_one = |topic: &str, p: i32| -> Result<(i64, i64, i64), SourceError> {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .map_err(|e| {
                err_at(
                    name,
                    format!("the offsets partition {topic}-{p} holds cannot be read ({e}): it has no leader that answers (its broker down?); a backfill plans every partition's range from them: run it again once the partition has a leader"),
                )
            })?;
        // An offset asked for outside the log was moved into it without a word: the run
        // ended "done" short of what was asked for.
        for (what, pos) in [("starts", start), ("ends", end)] {
            let Some(o) = pos.offset_of(topic, p).filter(|o| *o < low || *o > high) else {
                continue;
            };
            if o > high {
                return Err(err_at(
                    name,
                    format!("{topic}/{p}: the range {what} at offset {o}, past the log's end ({high}): the broker holds no record there (not yet, or the topic was re-created with a shorter log, whose offsets name other records), and a backfill reads what the log holds when it is planned. Ask for offsets up to {high} (`--to latest` is the end now; an offset given without a topic is every topic's)"),
                ));
            }
            let why = format!("{topic}/{p}: the range {what} at offset {o}, but the broker holds offsets {low}..{high}: records {o}..{low} were deleted by the broker (retention)");
            let why = match what {
                "ends" => format!("{why}, so was every record the range asked for there"),
                _ => why,
            };
            if !skip {
                return Err(err_at(
                    name,
                    format!("{why}. Start the range at offset {low} or later (`--from earliest`) to export what is left, or set source.on_gap = \"skip\""),
                ));
            }
            tracing::error!(partition = %format!("{topic}-{p}"), from = o, to = low, "{why}; skipped (on_gap = skip), reading from {low}");
        }
        let from = resolve(consumer, name, (topic, p), start, (low, high), low)?;
        let to = resolve(consumer, name, (topic, p), end, (low, high), high)?;
        Ok((from, to, high))
    };
    let done = crate::fanout::each(list, PLAN_THREADS, "plan", |&(topic, p)| plan_one(topic, p));
    done.into_iter().map(|(_, r)| r).collect()
}

impl Position {
    /// The offset this position names explicitly for partition `p` of `topic`, if any.
    fn offset_of(&self, topic: &str, p: i32) -> Option<i64> {
        let Position::Offsets(list) = self else {
            return None;
        };
        list.iter()
            .find(|(t, q, _)| *q == p && t.as_deref().is_none_or(|t| t == topic))
            .map(|(_, _, o)| *o)
    }

    /// Where a run from this position starts partition `p` of `topic` (watermarks `[low,
    /// high]`, read now): `None` for `latest`, which is the end when the run started, not now.
    /// `cfg` is `consumer`'s, and `group` the job's group id (a time's offset is checked
    /// against its record with a client of them).
    pub fn start_in<C: ConsumerContext>(
        &self,
        (cfg, group): (&ClientConfig, &str),
        consumer: &BaseConsumer<C>,
        (topic, p): (&str, i32),
        (low, high): (i64, i64),
    ) -> Result<Option<i64>, SourceError> {
        if *self == Position::Latest {
            return Ok(None);
        }
        let o = resolve(consumer, topic, (topic, p), self, (low, high), low)?;
        let Position::Timestamp(ms) = self else {
            return Ok(Some(o));
        };
        let mut cfg = cfg.clone();
        cfg.set("group.id", group);
        let answer = Answer {
            topic: topic.to_string(),
            partition: p,
            ms: *ms,
            offset: o,
            high,
            flag: "--from",
        };
        Ok(checked(&Recheck::new(&cfg), topic, &[answer])?
            .first()
            .copied())
    }
}

/// An offset for `pos` in partition `p` of `topic`, within its watermarks `[low, high]`.
fn resolve<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    (topic, p): (&str, i32),
    pos: &Position,
    (low, high): (i64, i64),
    fallback: i64,
) -> Result<i64, SourceError> {
    let o = match pos {
        Position::Earliest => low,
        Position::Latest => high,
        Position::Offsets(_) => pos.offset_of(topic, p).unwrap_or(fallback),
        Position::Timestamp(ms) => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, p, Offset::Offset(*ms))
                .map_err(|e| err_at(name, e.to_string()))?;
            let found = consumer.offsets_for_times(tpl, TIMEOUT).map_err(|e| {
                err_at(
                    name,
                    format!("looking up timestamp {ms} in {topic}/{p}: {e}"),
                )
            })?;
            match found.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                // No message at or after the timestamp: the end of the partition.
                Some(Offset::End) | None => high,
                Some(other) => {
                    return Err(err_at(
                        name,
                        format!("timestamp {ms} in {topic}/{p} resolved to {other:?}"),
                    ))
                }
            }
        }
    };
    Ok(o.clamp(low, high))
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn positions_parse_and_bad_ones_say_why() {
        assert_eq!(Position::parse("earliest").unwrap(), Position::Earliest);
        assert_eq!(Position::parse("latest").unwrap(), Position::Latest);
        assert_eq!(
            Position::parse("@1714521600000").unwrap(),
            Position::Timestamp(1_714_521_600_000)
        );
        assert_eq!(
            Position::parse("2024-05-01T00:00:00Z").unwrap(),
            Position::Timestamp(1_714_521_600_000)
        );
        assert_eq!(
            Position::parse("0=10, orders:1=20").unwrap(),
            Position::Offsets(vec![(None, 0, 10), (Some("orders".into()), 1, 20)])
        );
        for bad in ["yesterday", "0=-1", "x=1", "@soon", "0=1,2"] {
            let e = Position::parse(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }
}
