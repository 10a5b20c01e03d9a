//! A partition whose checkpoint lies outside what the broker holds: below the low watermark
//! (retention deleted records before they were exported, e.g. during a long outage) or above
//! the high watermark (the partition was re-created or truncated). librdkafka's
//! `auto.offset.reset` would move on silently; here it is an error naming the range
//! (`source.on_gap = "fail"`, the default) or, with `on_gap = "skip"`, the partition goes on
//! from the nearest offset the broker holds, and the range is logged and counted
//! (`sluice_offsets_skipped_total`).

/// What the broker no longer (or not yet) holds between a checkpoint and its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Offsets `[from, to)` that were never exported and cannot be read.
    pub from: i64,
    pub to: i64,
    pub why: &'static str,
}

/// Where reading starts for a partition whose resume position is `start` and whose broker
/// holds `[low, high)`: `start` itself when it is inside, else the gap (fail) or the nearest
/// held offset and the gap (skip).
pub fn resolve(start: i64, low: i64, high: i64) -> (i64, Option<Gap>) {
    if start < low {
        (
            low,
            Some(Gap {
                from: start,
                to: low,
                why: "deleted by the broker (retention) before they were exported",
            }),
        )
    } else if start > high {
        // The log restarted below the checkpoint: what it holds now, [low, high), was not
        // exported under this checkpoint; going on from `high` exports what arrives next.
        (
            high,
            Some(Gap {
                from: low,
                to: high,
                why: "on the broker below the checkpoint (the partition was re-created or truncated); not exported",
            }),
        )
    } else {
        (start, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_below_and_above_the_log() {
        assert_eq!(resolve(5, 0, 10), (5, None));
        assert_eq!(
            resolve(10, 0, 10),
            (10, None),
            "at the end: nothing new yet"
        );
        assert_eq!(resolve(0, 0, 0), (0, None));
        let (next, gap) = resolve(3, 7, 20);
        assert_eq!((next, gap.map(|g| (g.from, g.to))), (7, Some((3, 7))));
        let (next, gap) = resolve(100, 0, 10);
        assert_eq!((next, gap.map(|g| (g.from, g.to))), (10, Some((0, 10))));
    }
}
