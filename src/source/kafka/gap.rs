//! A partition whose checkpoint lies outside what the broker holds: below the low watermark
//! (retention deleted records before they were exported, e.g. during a long outage) or above
//! the high watermark (the partition was re-created or truncated). librdkafka's
//! `auto.offset.reset` would move on silently; here it is an error naming the range
//! (`source.on_gap = "fail"`, the default) or, below the low watermark with `on_gap =
//! "skip"`, the partition goes on from the low watermark and the range is logged and counted
//! (`sluice_offsets_skipped_total`). Above the high watermark is always an error: reading
//! offsets below the checkpoint again would give new files the names of committed ones.

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
/// `start` itself, or past a gap that `skip` (`on_gap = "skip"`) allows, with the number of
/// offsets skipped (logged here); else the error to stop with.
pub fn decide(
    key: &str,
    start: i64,
    low: i64,
    high: i64,
    skip: bool,
) -> Result<(i64, u64), String> {
    let (read, gap) = resolve(start, low, high);
    let Some(g) = gap else {
        return Ok((start, 0));
    };
    let what = format!(
        "partition {key} resumes at offset {start}, but the broker holds offsets {low}..{high}: records {}..{} were {}",
        g.from, g.to, g.why
    );
    match read {
        Some(read) if skip => {
            tracing::error!(partition = %key, from = g.from, to = g.to, "{what}; skipped (on_gap = skip), reading from {read}");
            Ok((read, (g.to - g.from).max(0) as u64))
        }
        Some(read) => Err(format!(
            "{what}. Set source.on_gap = \"skip\" to go on from offset {read} (the range is logged and counted)"
        )),
        None => Err(what),
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
        assert_eq!(decide("t-0", 5, 0, 10, false), Ok((5, 0)));
        assert_eq!(decide("t-0", 3, 7, 20, true), Ok((7, 4)));
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
}
