//! A partition whose checkpoint lies outside what the broker holds: below the low watermark
//! (retention deleted records before they were exported, e.g. during a long outage) or above
//! the high watermark (the partition was re-created or truncated). librdkafka's
//! `auto.offset.reset` would move on silently; here it is an error naming the range
//! (`source.on_gap = "fail"`, the default) or, below the low watermark with `on_gap =
//! "skip"`, the partition goes on from the low watermark and the range is logged and counted
//! (`sluice_offsets_skipped_total`). Above the high watermark is always an error: reading
//! offsets below the checkpoint again would give new files the names of committed ones.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::group::GroupContext;
use super::part::Part;

/// What the broker no longer (or not yet) holds between a checkpoint and its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Offsets `[from, to)` that were never exported and cannot be read.
    pub from: i64,
    pub to: i64,
    pub why: &'static str,
}

/// Where reading starts for a partition whose resume position is `start` and whose broker
/// holds `[low, high)`: `start` itself when it is inside, else the gap and the offset a skip
/// would go on from (`None` when it cannot be skipped).
pub fn resolve(start: i64, low: i64, high: i64) -> (Option<i64>, Option<Gap>) {
    if start < low {
        (
            Some(low),
            Some(Gap {
                from: start,
                to: low,
                why: "deleted by the broker (retention) before they were exported",
            }),
        )
    } else if start > high {
        // The log restarted below the checkpoint: its offsets meet the committed files'
        // names again, so there is no safe way on under this job's checkpoints.
        (
            None,
            Some(Gap {
                from: high,
                to: start,
                why: "not on the broker: the partition was re-created or truncated below the checkpoint (move this job's checkpoints of the partition aside, or run under a new job name, to export it again)",
            }),
        )
    } else {
        (Some(start), None)
    }
}

/// Where partition `key`, resuming at `start`, reads from in a log that holds `[low, high)`:
/// `start` itself, or past a gap that `skip` (`on_gap = "skip"`) allows, with the range
/// skipped; else the error to stop with.
pub fn decide(
    key: &str,
    start: i64,
    low: i64,
    high: i64,
    skip: bool,
) -> Result<(i64, Option<(i64, i64)>), String> {
    let (read, gap) = resolve(start, low, high);
    let Some(g) = gap else {
        return Ok((start, None));
    };
    let what = format!(
        "partition {key} resumes at offset {start}, but the broker holds offsets {low}..{high}: records {}..{} were {}",
        g.from, g.to, g.why
    );
    match read {
        Some(read) if skip => Ok((read, Some((g.from, g.to)))),
        Some(read) => Err(format!(
            "{what}. Set source.on_gap = \"skip\" to go on from offset {read} (the range is logged and counted)"
        )),
        None => Err(what),
    }
}

/// Gaps skipped, for the log and `sluice_offsets_skipped_total`. A skip does not move the
/// checkpoint (the next commit does), so a rewind before that commit finds the same gap again:
/// it is logged and counted once, and a gap that grew (retention ran on) only by what it grew.
#[derive(Default)]
pub struct Skips {
    /// Per partition: the last gap counted.
    last: HashMap<String, (i64, i64)>,
    /// Counted since the last `take`: (partition key, offsets).
    counted: Vec<(String, u64)>,
}

impl Skips {
    /// Records that partition `key` skipped `[from, to)`; logs what is new.
    pub fn record(&mut self, key: &str, from: i64, to: i64) {
        let new_from = match self.last.get(key) {
            Some(&(f, t)) if f == from => t.max(from),
            _ => from,
        };
        if to <= new_from {
            return;
        }
        tracing::error!(partition = %key, from, to, "records {from}..{to} of partition {key} were deleted by the broker before they were exported; skipped (on_gap = skip), reading from {to}");
        self.last.insert(key.to_string(), (from, to));
        self.counted.push((key.to_string(), (to - new_from) as u64));
    }

    /// Partition `key`'s last skipped gap `[from, to)`, if it skipped one in this process.
    pub fn last_gap(&self, key: &str) -> Option<(i64, i64)> {
        self.last.get(key).copied()
    }

    pub fn take(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.counted)
    }
}

/// How a position check ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The position is inside the broker's log.
    Inside,
    /// It was below the log and moved to the log's start (`on_gap = "skip"`).
    Skipped,
    /// The broker did not answer in time: not checked.
    Unanswered,
}

/// Checks partition `p`'s next offset against what the broker holds (one watermark request,
/// at most `timeout`), as an assignment does; past a gap that `skip` allows, `p.next` moves
/// to the log's start while `p.from` stays (the first chunk still follows the checkpoint).
/// A bounded run's end past the log's end is an error.
pub(super) fn check_position(
    consumer: &BaseConsumer<GroupContext>,
    skips: &mut Skips,
    p: &mut Part,
    skip: bool,
    timeout: Duration,
) -> Result<Checked, String> {
    let Ok((low, high)) = consumer.fetch_watermarks(&p.info.topic, p.partition, timeout) else {
        return Ok(Checked::Unanswered);
    };
    p.low = Some(low);
    let key = p.info.key();
    // A bounded run's end is within the log when planned, and a log does not shrink: an end
    // past it now means the topic was re-created (or truncated), and the records planned
    // there are gone; the run would wait for others to take their offsets.
    if let Some(end) = p.end.filter(|e| *e > high.max(p.next)) {
        return Err(format!(
            "{key}: the log ends at offset {high}, before the end of the range planned at the first run ({end}): the topic was re-created or truncated since, and those records are gone. Run the range again under a new --name"
        ));
    }
    match decide(&key, p.next, low, high, skip)? {
        (_, None) => Ok(Checked::Inside),
        (read, Some((from, to))) => {
            skips.record(&key, from, to);
            p.next = read;
            Ok(Checked::Skipped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_below_and_above_the_log() {
        assert_eq!(resolve(5, 0, 10), (Some(5), None));
        assert_eq!(
            resolve(10, 0, 10),
            (Some(10), None),
            "at the end: nothing new yet"
        );
        assert_eq!(resolve(0, 0, 0), (Some(0), None));
        let (next, gap) = resolve(3, 7, 20);
        assert_eq!((next, gap.map(|g| (g.from, g.to))), (Some(7), Some((3, 7))));
        let (next, gap) = resolve(100, 0, 10);
        assert_eq!((next, gap.map(|g| (g.from, g.to))), (None, Some((10, 100))));
    }

    #[test]
    fn a_gap_is_skipped_only_when_allowed_and_only_below_the_log() {
        assert_eq!(decide("t-0", 5, 0, 10, false), Ok((5, None)));
        assert_eq!(decide("t-0", 3, 7, 20, true), Ok((7, Some((3, 7)))));
        let e = decide("t-0", 3, 7, 20, false).unwrap_err();
        assert!(
            e.contains("records 3..7 were deleted") && e.contains("on_gap"),
            "{e}"
        );
        let e = decide("t-0", 100, 0, 10, true).unwrap_err();
        assert!(
            e.contains("records 10..100") && e.contains("re-created"),
            "{e}"
        );
    }

    #[test]
    fn a_gap_found_again_is_counted_once_and_a_grown_one_by_its_growth() {
        let mut s = Skips::default();
        s.record("t-0", 3, 7);
        s.record("t-0", 3, 7); // a rewind to the same checkpoint
        s.record("t-1", 3, 7);
        s.record("t-0", 3, 9); // retention ran on
        s.record("t-0", 9, 12); // a later checkpoint, a new gap
        assert_eq!(
            s.take(),
            vec![
                ("t-0".to_string(), 4),
                ("t-1".to_string(), 4),
                ("t-0".to_string(), 2),
                ("t-0".to_string(), 3)
            ]
        );
        assert!(s.take().is_empty());
    }
}
