//! Partitions that read nothing while records wait after them. A Kafka record batch whose
//! CRC is right (or unchecked) but whose records do not parse stops its partition without any
//! error reaching the application: librdkafka doubles its fetch size up to 1 GiB, then fetches
//! the batch again for ever (its parse error is taken for a partial response). The alert
//! `SluicePartitionStalled` pages after 30 minutes; this says in the log, sooner, which
//! partition stands where, and why that may be. Time the source spent held back by sluice itself
//! (the channel full, the task paused) does not count: no partition reads then.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a partition reads nothing, with records waiting, before it is logged.
pub(super) const STALL_AFTER: Duration = Duration::from_secs(600);

/// What a look found worth saying.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// `key` has read nothing past `next` for `for_`, with `lag` records after it.
    Stalled {
        key: String,
        next: i64,
        lag: i64,
        for_: Duration,
    },
    /// `key`, once stalled, reads again (now at `next`).
    Moving { key: String, next: i64 },
}

struct Seen {
    next: i64,
    since: Instant,
    /// The source's time held back, as it stood at `since`.
    held_at_since: Duration,
    warned: bool,
}

/// Each partition's read position and since when it stands there with records waiting.
pub(super) struct StallWatch {
    after: Duration,
    parts: HashMap<String, Seen>,
}

impl StallWatch {
    pub fn new(after: Duration) -> Self {
        StallWatch {
            after,
            parts: HashMap::new(),
        }
    }

    /// Takes the source's (partition, lag, read position) at `now`; `held`: how long the
    /// source has been held back (channel full, task paused) in all, so far. Partitions not
    /// listed are forgotten (revoked, or their lag unknown).
    pub fn look(
        &mut self,
        now: Instant,
        lags: &[(String, i64, i64)],
        held: Duration,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        self.parts
            .retain(|k, _| lags.iter().any(|(key, _, _)| key == k));
        let fresh = |next: i64| Seen {
            next,
            since: now,
            held_at_since: held,
            warned: false,
        };
        for (key, lag, next) in lags {
            let seen = self.parts.entry(key.clone()).or_insert(fresh(*next));
            if seen.next != *next {
                if seen.warned {
                    events.push(Event::Moving {
                        key: key.clone(),
                        next: *next,
                    });
                }
                *seen = fresh(*next);
                continue;
            }
            if *lag <= 0 {
                *seen = fresh(*next);
                continue;
            }
            let standing = now
                .duration_since(seen.since)
                .saturating_sub(held.saturating_sub(seen.held_at_since));
            if !seen.warned && standing >= self.after {
                seen.warned = true;
                events.push(Event::Stalled {
                    key: key.clone(),
                    next: *next,
                    lag: *lag,
                    for_: standing,
                });
            }
        }
        events
    }
}

/// How long the brokers may say nothing before a stall is put down to them.
const SILENT: Duration = Duration::from_secs(60);

/// Whether a stall is the brokers' (they have said nothing for [`SILENT`]), not a batch's.
fn brokers_silent(silent: Option<Duration>) -> bool {
    silent.is_some_and(|s| s >= SILENT)
}

/// Logs what a look found; `silent`: how long the source has heard nothing from its brokers
/// (a stall then is theirs: no record batch is to be skipped for it).
pub(super) fn log(events: Vec<Event>, silent: Option<Duration>) {
    for e in events {
        match e {
            Event::Stalled {
                key,
                next,
                lag,
                for_,
            } if brokers_silent(silent) => tracing::warn!(
                partition = %key,
                offset = next,
                waiting = lag,
                minutes = for_.as_secs() / 60,
                silent_s = silent.unwrap_or_default().as_secs(),
                "a partition has read nothing for a while with records waiting after its \
                 position, and the source has heard nothing from its brokers meanwhile \
                 (sluice_source_silent_seconds): they are down or unreachable, or refuse the \
                 job's credentials; it reads on once they answer (skip nothing for this)"
            ),
            Event::Stalled {
                key,
                next,
                lag,
                for_,
            } => tracing::warn!(
                partition = %key,
                offset = next,
                waiting = lag,
                minutes = for_.as_secs() / 60,
                "a partition has read nothing for a while with records waiting after its \
                 position, and the source reported no error. \
                 On Kafka, first check the partition on the broker: a leader unavailable, or \
                 an ACL that no longer lets the job read its topic, stall it alone, and it \
                 reads on once mended (skip nothing for those). Only if the broker serves the \
                 partition to other clients: the record batch at this offset may be one this \
                 client cannot parse (its CRC right or unchecked, its records malformed), \
                 which it fetches again for ever; with the job stopped, `sluice checkpoints \
                 skip` moves the partition past it, its records lost to the export (see \
                 OPERATIONS, \"Sources\")"
            ),
            Event::Moving { key, next } => {
                tracing::info!(partition = %key, offset = next, "the partition reads again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(key: &str, lag: i64, next: i64) -> (String, i64, i64) {
        (key.to_string(), lag, next)
    }

    /// A partition standing still with records waiting is said once, after the wait; one that
    /// reads or has nothing waiting is not, and time the source was held back does not count;
    /// reading again is said.
    #[test]
    fn a_partition_standing_with_records_waiting_is_said_once() {
        let after = Duration::from_secs(60);
        let mut w = StallWatch::new(after);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let held = Duration::from_secs;
        assert!(w
            .look(
                at(0),
                &[lag("t-0", 5, 10), lag("t-1", 0, 7), lag("t-2", 5, 3)],
                held(0)
            )
            .is_empty());
        // t-2 moves, t-1 has nothing waiting; the source was held back for 30 s of the 50.
        assert!(w
            .look(
                at(50),
                &[lag("t-0", 5, 10), lag("t-1", 0, 7), lag("t-2", 5, 4)],
                held(30)
            )
            .is_empty());
        // 80 s, of which 30 held: 50 s standing.
        assert!(w
            .look(
                at(80),
                &[lag("t-0", 9, 10), lag("t-1", 0, 7), lag("t-2", 5, 9)],
                held(30)
            )
            .is_empty());
        let e = w.look(at(91), &[lag("t-0", 9, 10), lag("t-1", 0, 7)], held(30));
        assert_eq!(
            e,
            vec![Event::Stalled {
                key: "t-0".into(),
                next: 10,
                lag: 9,
                for_: Duration::from_secs(61),
            }]
        );
        assert!(w.look(at(200), &[lag("t-0", 9, 10)], held(30)).is_empty());
        assert_eq!(
            w.look(at(205), &[lag("t-0", 2, 17)], held(30)),
            vec![Event::Moving {
                key: "t-0".into(),
                next: 17
            }]
        );
        assert!(w.look(at(300), &[lag("t-0", 2, 17)], held(100)).is_empty());
        // t-1 never waited for anything, t-2 was forgotten: neither is said.
        assert!(w.look(at(400), &[lag("t-1", 0, 7)], held(100)).is_empty());
    }

    /// A stall while the brokers say nothing is theirs (its log line does not advise
    /// skipping a batch); a member whose brokers answer, or a source without any, is told
    /// about the batch.
    #[test]
    fn a_stall_while_the_brokers_are_silent_is_put_down_to_them() {
        assert!(brokers_silent(Some(Duration::from_secs(300))));
        assert!(!brokers_silent(Some(Duration::from_secs(5))));
        assert!(!brokers_silent(None));
    }
}
