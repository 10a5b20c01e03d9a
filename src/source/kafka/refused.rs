//! Partitions the group handed to this member whose start was refused: a checkpoint (or, for
//! one without, the group's offset) outside the offsets the broker holds under `on_gap =
//! "fail"`, a log re-created below it, or a checkpoint's last message that is not the
//! broker's any more (`identity`). Such a partition is not taken: it is released in the task
//! (claimed, then let go, nothing read), not assigned in the consumer, logged as an error with
//! the reason (again every 5 minutes) and counted in `sluice_partitions_refused`, while the
//! member's other partitions export. The group still counts it as this member's, so it does
//! not move on to another member, which would refuse it the same way. It is judged again when
//! the group hands it over again (a rebalance that moves it, a rejoin) or the job restarts
//! or reloads (the remedies the reason names: `on_gap = "skip"`, checkpoints moved aside, the
//! group's offset reset). A revocation forgets it. Before, one such partition failed the
//! member's whole assignment and the task: the group handed it to the next member, which
//! failed the same way, so one partition stopped every member around the group.

use std::time::{Duration, Instant};

use super::leaderless::Tp;

/// How often a partition still refused is logged again.
const WARN_EVERY: Duration = Duration::from_secs(300);

/// A partition handed over and refused.
struct Held {
    tp: Tp,
    why: String,
    since: Instant,
    warned: Instant,
}

/// The partitions refused at their assignment, until revoked.
#[derive(Default)]
pub(super) struct Refused {
    list: Vec<Held>,
}

impl Refused {
    /// Partition `tp` is refused, `why` (the reason names the remedy): logged.
    pub(super) fn hold(&mut self, tp: Tp, why: String) {
        tracing::error!(partition = %key(&tp), error = %why, "partition refused: it is not read (the member's other partitions export) until the group hands it over again or the job restarts or reloads");
        let now = Instant::now();
        self.list.retain(|h| h.tp != tp);
        self.list.push(Held {
            tp,
            why,
            since: now,
            warned: now,
        });
    }

    /// Forgets partition `tp` (revoked); whether it was refused.
    pub(super) fn forget(&mut self, topic: &str, partition: i32) -> bool {
        let before = self.list.len();
        self.list
            .retain(|h| !(h.tp.0 == topic && h.tp.1 == partition));
        self.list.len() != before
    }

    /// Forgets every refused partition (the whole assignment revoked).
    pub(super) fn clear(&mut self) {
        self.list.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Logs again each partition refused for `WARN_EVERY` since it was last logged.
    pub(super) fn remind(&mut self) {
        self.remind_at(Instant::now());
    }

    fn remind_at(&mut self, now: Instant) -> usize {
        let mut logged = 0;
        for h in &mut self.list {
            if now.saturating_duration_since(h.warned) >= WARN_EVERY {
                h.warned = now;
                logged += 1;
                tracing::error!(partition = %key(&h.tp), refused_s = now.saturating_duration_since(h.since).as_secs(), error = %h.why, "partition still refused: not read");
            }
        }
        logged
    }
}

fn key(tp: &Tp) -> String {
    format!("{}-{}", tp.0, tp.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_string(), p)
    }

    #[test]
    fn a_refused_partition_is_counted_once_reminded_and_forgotten_when_revoked() {
        let mut r = Refused::default();
        r.hold(tp(0), "gap".into());
        r.hold(tp(1), "gap".into());
        r.hold(tp(0), "other".into());
        assert_eq!(r.len(), 2, "held again, counted once");
        let now = Instant::now();
        assert_eq!(r.remind_at(now), 0, "not before WARN_EVERY");
        assert_eq!(r.remind_at(now + WARN_EVERY), 2);
        assert_eq!(r.remind_at(now + WARN_EVERY), 0, "not twice in a row");
        assert!(r.forget("t", 1));
        assert!(!r.forget("t", 1));
        assert!(!r.forget("u", 0), "another topic's partition 0");
        assert_eq!(r.len(), 1);
        r.clear();
        assert_eq!(r.len(), 0);
    }
}
