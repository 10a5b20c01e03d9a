//! Whether a partition's log is still the one its checkpoint counts. A topic deleted and
//! created again, or truncated by an unclean leader election, restarts its offsets: once the
//! new log has grown past a checkpoint, the checkpoint's offset lies inside it and the
//! watermarks (`gap`) see nothing wrong, while every record of the new log below that offset
//! would be skipped without a word. So each checkpoint records its last message's
//! [`RecordMark`] (offset, timestamp, and the length and CRC-32 of its line), and a start that
//! resumes from it reads the message at that offset again, with a client of its own (the
//! consumer's settings and group id, assigned and never joined, small fetches), and
//! compares: another message there stops
//! the run. What cannot be compared is let through and logged: the message compacted away or
//! deleted by retention since, a broker that does not answer within [`WAIT`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::part::Part;
use crate::decode::meta::RecordMark;
use crate::source::PartitionInfo;

/// The longest a comparison waits for the broker's messages.
pub(super) const WAIT: Duration = Duration::from_secs(10);

/// The consumer's settings, for the client that reads marked messages again.
#[derive(Default, Clone)]
pub(super) struct Recheck {
    settings: Vec<(String, String)>,
}

/// What a comparison found at a partition's marked offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// The message exported there.
    Same,
    /// Another message.
    Other(RecordMark),
    /// Nothing to compare, and why.
    Unknown(&'static str),
}

impl Recheck {
    /// From the consumer's settings: group settings other than the id are left out (this
    /// client never joins; librdkafka assigns partitions only to a client with a group id,
    /// and the job's is one its credentials may use), and fetches are kept small (one message
    /// of each partition is wanted; each partition is paused once it sent one).
    pub fn new(cfg: &ClientConfig) -> Recheck {
        let mut settings: Vec<(String, String)> = cfg
            .config_map()
            .iter()
            .filter(|(k, _)| {
                (**k == "group.id" || !k.starts_with("group."))
                    && **k != "partition.assignment.strategy"
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Each with its aliases, which would else race it (the settings are a map).
        for (names, v) in [
            (&["enable.partition.eof"][..], "false"),
            (&["auto.offset.reset"][..], "error"),
            (&["enable.auto.commit", "auto.commit.enable"][..], "false"),
            (
                &["max.partition.fetch.bytes", "fetch.message.max.bytes"][..],
                "65536",
            ),
        ] {
            settings.retain(|(s, _)| !names.contains(&s.as_str()));
            settings.push((names[0].to_string(), v.to_string()));
        }
        Recheck { settings }
    }

    /// Reads the message at each mark's offset of `(topic, partition, mark)` and says, in the
    /// same order, whether it is the one marked. Holds the caller at most `wait` and a
    /// second (see [`Recheck::read`]).
    pub fn compare(&self, wanted: &[(String, i32, RecordMark)], wait: Duration) -> Vec<Found> {
        let at: Vec<(String, i32, i64)> = wanted
            .iter()
            .map(|(t, p, m)| (t.clone(), *p, m.offset as i64))
            .collect();
        let marks: Vec<RecordMark> = wanted.iter().map(|w| w.2).collect();
        let mut scratch = Part::new(
            PartitionInfo {
                id: 0,
                topic: String::new(),
                number: 0,
            },
            0,
        );
        let unknown = (
            Found::Unknown("the broker did not send it in time"),
            Found::Unknown("no client to read it in time"),
        );
        self.read(at, wait, unknown, move |i, m| {
            let mark = marks[i];
            if m.offset() as u64 != mark.offset {
                return Found::Unknown(
                    "it is no longer there (compacted, or deleted by retention)",
                );
            }
            // Framed as the first read framed it.
            scratch.drop_buffer();
            scratch.line(m.payload(), false);
            scratch.offsets.push(mark.offset);
            let now = scratch.mark_at(0, m.timestamp().to_millis());
            match mark.matches(&now) {
                true => Found::Same,
                false => Found::Other(now),
            }
        })
    }

    /// The first message at or after each offset of `(topic, partition, offset)`, in the same
    /// order: its offset and timestamp (ms, if it has one); `None` when none came within
    /// `wait`.
    pub fn first_at(
        &self,
        wanted: &[(String, i32, i64)],
        wait: Duration,
    ) -> Vec<Option<(i64, Option<i64>)>> {
        self.read(wanted.to_vec(), wait, (None, None), |_, m| {
            Some((m.offset(), m.timestamp().to_millis()))
        })
    }

    /// Reads the first message at or after each `(topic, partition, offset)` with a client of
    /// these settings and answers, in the same order, what `seen` makes of it; `unknown.0`
    /// where none came within `wait`, `unknown.1` where the client could not read or answer
    /// in time. Holds the caller at most `wait` and a second: the client reads on a thread of
    /// its own, which sends its answers before the client's teardown (librdkafka's close,
    /// which may wait on an unreachable coordinator).
    fn read<T: Clone + Send + 'static>(
        &self,
        wanted: Vec<(String, i32, i64)>,
        wait: Duration,
        unknown: (T, T),
        seen: impl FnMut(usize, &rdkafka::message::BorrowedMessage<'_>) -> T + Send + 'static,
    ) -> Vec<T> {
        if wanted.is_empty() {
            return Vec::new();
        }
        let n = wanted.len();
        let (tx, rx) = std::sync::mpsc::channel();
        let settings = self.settings.clone();
        let (late, failed) = unknown;
        let no_client = failed.clone();
        let reader = std::thread::Builder::new()
            .name("kafka-recheck".into())
            .spawn(move || read_each(&settings, &wanted, wait, (late, failed), seen, tx));
        let answers = match reader {
            Ok(_) => rx.recv_timeout(wait + Duration::from_secs(1)).ok(),
            Err(_) => None,
        };
        answers.unwrap_or_else(|| vec![no_client; n])
    }
}

/// Reads the first message at or after each offset of `wanted` with a client made of
/// `settings`, for at most `wait`, and sends what `seen` makes of each to `answer` (`late`
/// for those that did not come, `failed` for all if the client cannot read), before the
/// client is torn down.
fn read_each<T: Clone>(
    settings: &[(String, String)],
    wanted: &[(String, i32, i64)],
    wait: Duration,
    (late, failed): (T, T),
    mut seen: impl FnMut(usize, &rdkafka::message::BorrowedMessage<'_>) -> T,
    answer: std::sync::mpsc::Sender<Vec<T>>,
) {
    let mut found = vec![late; wanted.len()];
    let mut cfg = ClientConfig::new();
    for (k, v) in settings {
        cfg.set(k, v);
    }
    let client: BaseConsumer = match cfg.create() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create a client to read messages again");
            let _ = answer.send(vec![failed; wanted.len()]);
            return;
        }
    };
    let mut tpl = TopicPartitionList::new();
    let mut pending: HashMap<(String, i32), usize> = HashMap::new();
    for (i, (topic, p, offset)) in wanted.iter().enumerate() {
        if tpl
            .add_partition_offset(topic, *p, Offset::Offset(*offset))
            .is_ok()
        {
            pending.insert((topic.clone(), *p), i);
        }
    }
    if let Err(e) = client.assign(&tpl) {
        tracing::warn!(error = %e, "cannot assign partitions to read messages again");
        let _ = answer.send(vec![failed; wanted.len()]);
        return;
    }
    let deadline = Instant::now() + wait;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(Ok(m)) = client.poll(left.min(Duration::from_millis(200))) else {
            // Errors (retention overtaking the offset among them) leave it unknown.
            continue;
        };
        let Some(i) = pending.remove(&(m.topic().to_string(), m.partition())) else {
            continue;
        };
        let mut done = TopicPartitionList::new();
        done.add_partition(m.topic(), m.partition());
        let _ = client.pause(&done);
        found[i] = seen(i, &m);
    }
    let _ = answer.send(found);
    // The client is torn down here, after the answer.
    drop(client);
}

/// Compares each `(topic, partition, mark, next, low)` (a partition resuming at `next` from
/// a checkpoint that marks its last message, in a log that starts at `low`) with the message
/// the broker holds there; the first that differs is the error to stop with.
pub(super) fn check(
    recheck: &Recheck,
    marked: &[(String, i32, RecordMark, i64, i64)],
) -> Result<(), String> {
    match check_each(recheck, marked).into_iter().next() {
        Some((_, _, why)) => Err(why),
        None => Ok(()),
    }
}

/// [`check`] for each: the partitions whose message differs, with why each must not go on.
pub(super) fn check_each(
    recheck: &Recheck,
    marked: &[(String, i32, RecordMark, i64, i64)],
) -> Vec<(String, i32, String)> {
    let mut wanted = Vec::with_capacity(marked.len());
    let mut at = Vec::with_capacity(marked.len());
    for (topic, p, mark, next, low) in marked {
        if (mark.offset as i64) < *low {
            uncompared(&format!("{topic}-{p}"), mark, "deleted by retention");
            continue;
        }
        wanted.push((topic.clone(), *p, *mark));
        at.push(*next);
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let found = recheck.compare(&wanted, WAIT);
    let mut differ = Vec::new();
    for (((topic, p, mark), next), f) in wanted.iter().zip(at).zip(found) {
        let key = format!("{topic}-{p}");
        match f {
            Found::Same => {}
            Found::Other(now) => differ.push((topic.clone(), *p, refusal(&key, next, mark, &now))),
            Found::Unknown(why) => uncompared(&key, mark, why),
        }
    }
    differ
}

/// Why partition `key`, resuming at `next` after `mark`, must not go on: `now` is there.
pub(super) fn refusal(key: &str, next: i64, mark: &RecordMark, now: &RecordMark) -> String {
    let stamp = |m: &RecordMark| {
        m.timestamp_ms
            .map_or_else(|| "none".to_string(), crate::commit::format_ms)
    };
    format!(
        "partition {key} resumes at offset {next}, but the broker's message at offset {} is not the one exported there (timestamp {}, {} bytes, CRC-32 {:08x}; the checkpoint records timestamp {}, {} bytes, CRC-32 {:08x}): the topic was re-created or truncated, and its new log has grown past the checkpoint. Reading on would skip its records below offset {next} (move this job's checkpoints of the partition aside, or run under a new job name, to export it)",
        mark.offset,
        stamp(now),
        now.len,
        now.crc,
        stamp(mark),
        mark.len,
        mark.crc,
    )
}

/// Logs a mark that could not be compared.
pub(super) fn uncompared(key: &str, mark: &RecordMark, why: &str) {
    tracing::warn!(partition = %key, offset = mark.offset, "the message a checkpoint ends with could not be read again to compare ({why}); resuming without that check");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::meta::MetaNeeds;
    use crate::decode::Chunk;

    fn part() -> Part {
        let info = PartitionInfo {
            id: 0,
            topic: "t".into(),
            number: 0,
        };
        Part::new(info, 0)
    }

    /// A chunk marks its last message by its line as a second read frames it again (a raw
    /// line break made a space alike); a chunk ending on a batch the client could not read,
    /// or cut on a placeholder line, is not marked.
    #[test]
    fn a_chunk_marks_its_last_message_as_a_second_read_frames_it() {
        let mut p = part();
        let last: &[u8] = b"{\"a\":\r\n2}";
        for (i, payload) in [&b"{\"a\":1}"[..], last].into_iter().enumerate() {
            p.line(Some(payload), false);
            p.offsets.push(10 + i as u64);
        }
        let mut chunk = Chunk::default();
        p.emit(&mut chunk, None);
        let mut again = part();
        again.line(Some(last), false);
        let found = RecordMark::of(11, Some(5), &again.buf[..again.ends[0]]);
        let mark = chunk.mark.expect("marked");
        assert_eq!((mark.offset, mark.timestamp_ms), (11, None));
        assert!(mark.matches(&found), "{mark:?} against {found:?}");
        let mut other = part();
        other.line(Some(b"{\"a\":3}"), false);
        assert!(!mark.matches(&RecordMark::of(11, None, &other.buf[..other.ends[0]])));

        p.line(Some(b"{}"), false);
        p.offsets.push(12);
        p.push_unreadable(20, "unreadable".into(), MetaNeeds::default());
        p.emit(&mut chunk, None);
        assert_eq!(chunk.mark, None, "a batch the client could not read");
    }

    /// A message a placeholder line stands for is marked by its own bytes: two messages of
    /// only whitespace, or with a raw line break in a string, are told apart.
    #[test]
    fn a_placeholder_is_marked_by_its_message_bytes() {
        let mark_of = |payload: &[u8]| {
            let mut p = part();
            p.line(Some(payload), false);
            p.offsets.push(3);
            p.mark_at(0, None)
        };
        assert_eq!(mark_of(b" \t"), mark_of(b" \t"));
        assert_ne!(mark_of(b" \t"), mark_of(b"  "));
        assert_ne!(mark_of(b"{\"a\":\"x\ny\"}"), mark_of(b"{\"a\":\"x\nz\"}"));
    }

    #[test]
    fn timestamps_count_where_both_messages_have_one() {
        let m = RecordMark::of(7, Some(1000), b"{}");
        assert!(m.matches(&RecordMark::of(7, Some(1000), b"{}")));
        assert!(m.matches(&RecordMark::of(7, None, b"{}")));
        assert!(!m.matches(&RecordMark::of(7, Some(1001), b"{}")));
        assert!(!m.matches(&RecordMark::of(8, Some(1000), b"{}")));
        assert!(!m.matches(&RecordMark::of(7, Some(1000), b"{ }")));
    }
}
