//! Partitions the group handed to this member whose start was refused: a checkpoint (or, for
//! one without, the group's offset) outside the offsets the broker holds under `on_gap =
//! "fail"`, a log re-created below it, or a checkpoint's last message that is not the
//! broker's any more (`identity`); a first start that a backfill of the repo into the
//! destination would still write (the task's `Resumed::refused`); or, while read, a rewind's
//! position or an "out of range"
//! answer found past a gap (`seek`). Such a partition is not taken: it is released in the
//! task (claimed, then let go, nothing read; or, while read, what the task holds committed
//! as at a revocation), not assigned in the consumer, logged as an error with
//! the reason (again every 5 minutes) and counted in `sluice_partitions_refused`, while the
//! member's other partitions export. The group still counts it as this member's, so it does
//! not move on to another member, which would refuse it the same way. It is judged again when
//! the group hands it over again (a rebalance that moves it, a rejoin) or the job restarts
//! or reloads (the remedies the reason names: `on_gap = "skip"`, checkpoints moved aside, the
//! group's offset reset); one refused for a backfill that has not committed, whose range
//! holds the start, is also judged again by itself, after 30 s doubling to 5 minutes
//! (`take_due`, through `leaderless`'s round), and taken once the backfill has committed or
//! taken back its range. A revocation forgets it. Before, one such partition failed the member's whole assignment and the task:
//! the group handed it to the next member, which failed the same way, so one partition
//! stopped every member around the group.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::group::lock;
use super::leaderless::{key, list_of, Tp};
use super::KafkaSource;
use crate::source::{NotRead, NotReadState};

/// How often a partition still refused is logged again.
const WARN_EVERY: Duration = Duration::from_secs(300);
/// A refusal whose cause may go by itself (a backfill's range, until it commits or is taken
/// back) is judged again after this pause, doubling up to `RETRY_MOST`.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MOST: Duration = Duration::from_secs(300);

/// A partition handed over and refused.
struct Held {
    tp: Tp,
    why: String,
    since: Instant,
    warned: Instant,
    /// Judged again by itself: (how many times so far, when next).
    retry: Option<(u32, Instant)>,
}

/// The partitions refused (at their assignment, or while read), until revoked.
#[derive(Default)]
pub(super) struct Refused {
    list: Vec<Held>,
    /// Those being judged again (`take_due` to `end_retry`).
    retrying: Vec<Held>,
}

impl Refused {
    /// Partition `tp` is refused, `why` (the reason names the remedy): logged. With `retry`
    /// (a cause that may go by itself) it is judged again after a pause; one judged again and
    /// refused for the same reason keeps its first refusal's time and is not logged again.
    pub(super) fn hold(&mut self, tp: Tp, why: String, retry: bool) {
        let now = Instant::now();
        let before = self
            .retrying
            .iter()
            .position(|h| h.tp == tp)
            .map(|i| self.retrying.swap_remove(i));
        let again = before.as_ref().is_some_and(|h| h.why == why);
        let tries = match before.as_ref().and_then(|h| h.retry) {
            Some((n, _)) if again => n + 1,
            _ => 0,
        };
        let pause = (RETRY_FIRST * 2u32.pow(tries.min(4))).min(RETRY_MOST);
        if !again {
            match retry {
                true => {
                    tracing::error!(partition = %key(&tp), error = %why, retry_in_s = pause.as_secs(), "partition refused: it is not read (the member's other partitions export); judged again after a pause, or when the group hands it over again or the job restarts or reloads")
                }
                false => {
                    tracing::error!(partition = %key(&tp), error = %why, "partition refused: it is not read (the member's other partitions export) until the group hands it over again or the job restarts or reloads")
                }
            }
        }
        // Refused again for another reason: a new refusal, from now.
        let (since, warned) = match before.filter(|_| again) {
            Some(h) => (h.since, h.warned),
            None => (now, now),
        };
        self.list.retain(|h| h.tp != tp);
        self.list.push(Held {
            tp,
            why,
            since,
            warned,
            retry: retry.then(|| (tries, now + pause)),
        });
    }

    /// The partitions whose refusal is to be judged again now: taken off the list until
    /// `end_retry` (refused again, they keep their first refusal's time).
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Tp> {
        let due = |h: &Held| h.retry.is_some_and(|(_, at)| at <= now);
        if !self.list.iter().any(due) {
            return Vec::new();
        }
        let (due, kept): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut self.list).into_iter().partition(due);
        self.list = kept;
        let tps = due.iter().map(|h| h.tp.clone()).collect();
        self.retrying.extend(due);
        tps
    }

    /// Partition `tp`, to be judged again, could not be: not `asked` (the round's time ran
    /// out: judged a second later), or its leader or the group's offset did not answer
    /// (judged again after `RETRY_FIRST`). It stays refused.
    pub(super) fn not_judged(&mut self, tp: &Tp, asked: bool) {
        // Not asked: at a later round (each retry's ask takes up to a second of the poll
        // thread, so not at once).
        let next = Instant::now()
            + if asked {
                RETRY_FIRST
            } else {
                Duration::from_secs(1)
            };
        if let Some(h) = self.retrying.iter_mut().find(|h| &h.tp == tp) {
            h.retry = h.retry.map(|(n, _)| (n, next));
        }
    }

    /// The partitions judged again since `take_due` and not refused again: those `taken` say
    /// so; those now `waiting` for a leader are that list's; the others are held again as
    /// they were (not judged: see `not_judged`; or the round ended early).
    pub(super) fn end_retry(
        &mut self,
        taken: Option<&TopicPartitionList>,
        waiting: impl Fn(&Tp) -> bool,
    ) {
        for h in std::mem::take(&mut self.retrying) {
            if taken.is_some_and(|t| t.find_partition(&h.tp.0, h.tp.1).is_some()) {
                tracing::info!(partition = %key(&h.tp), refused_s = h.since.elapsed().as_secs(), "partition taken: what refused it is gone");
            } else if !waiting(&h.tp) {
                self.list.push(h);
            }
        }
    }

    /// Forgets partition `tp` (revoked); whether it was refused.
    pub(super) fn forget(&mut self, topic: &str, partition: i32) -> bool {
        let before = self.list.len() + self.retrying.len();
        let other = |h: &Held| !(h.tp.0 == topic && h.tp.1 == partition);
        self.list.retain(other);
        self.retrying.retain(other);
        self.list.len() + self.retrying.len() != before
    }

    /// Forgets every refused partition (the whole assignment revoked).
    pub(super) fn clear(&mut self) {
        self.list.clear();
        self.retrying.clear();
    }

    /// The refused partitions, as the admin API shows them.
    pub(super) fn shown(&self) -> impl Iterator<Item = NotRead> + '_ {
        self.list
            .iter()
            .map(|h| NotRead::new(key(&h.tp), NotReadState::Refused, h.why.clone(), h.since))
    }

    fn holds(&self, tp: &Tp) -> bool {
        self.list.iter().any(|h| &h.tp == tp)
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

impl KafkaSource {
    /// Group mode: partitions (index, why) that met a gap while read: a rewind's position or
    /// an "out of range" answer, checked (see `seek`). Each is refused as at an assignment,
    /// once what it buffered before the gap is handed on (those records may be gone from the
    /// broker already): nothing more of it is taken, no seek made, no fetch restarted.
    /// Before, the gap stopped the run.
    pub(super) fn refuse_read(&mut self, refused: Vec<(usize, String)>) {
        for (i, why) in refused {
            let p = &mut self.parts[i];
            p.refusing = Some(why);
            p.seek_pending = false;
            p.refetch_pending = false;
            p.probe = None;
        }
        self.refusals_pending = true;
        self.refuse_drained();
    }

    /// The partitions refused while read whose buffers are handed on: no longer owned, what
    /// the task holds of them committed as at a revocation (all at once: each revocation may
    /// take up to `stop_deadline` on the poll thread), with the group's offsets, and held.
    /// librdkafka lets them go between rounds of events (`unassign_refused`).
    pub(super) fn refuse_drained(&mut self) {
        let mut ids = Vec::new();
        let mut held = Vec::new();
        for p in self.parts.iter_mut().filter(|p| p.refusing.is_some()) {
            if !p.owned {
                p.refusing = None;
                continue;
            }
            if !p.buf.is_empty() {
                continue;
            }
            let why = p.refusing.take().unwrap_or_default();
            p.owned = false;
            p.release();
            self.last_committed.remove(&p.info.id);
            ids.push(p.info.id);
            held.push(((p.info.topic.clone(), p.partition), why));
        }
        self.refusals_pending = self.parts.iter().any(|p| p.refusing.is_some());
        if ids.is_empty() {
            return;
        }
        let mut shared = lock(&self.shared);
        let committed = match shared.membership.as_mut() {
            Some(m) => m.revoked(&ids),
            None => Vec::new(),
        };
        let mut offsets = TopicPartitionList::new();
        for (id, next) in committed {
            if let Some(i) = ids.iter().position(|x| *x == id) {
                let (topic, p) = &held[i].0;
                let _ = offsets.add_partition_offset(topic, *p, Offset::Offset(next as i64));
            }
        }
        if offsets.count() > 0 {
            if let Err(e) = self.consumer.commit(&offsets, CommitMode::Sync) {
                tracing::warn!(error = %e, "committing refused partitions' offsets failed (the checkpoints stand)");
            }
        }
        for (tp, why) in held {
            shared.refused.hold(tp.clone(), why, false);
            self.unassign.push(tp);
        }
    }

    /// librdkafka lets go of the partitions refused while read, those still refused and
    /// assigned (one revoked meanwhile is the group's already). Run between rounds of events,
    /// never while a rebalance waits to be served (librdkafka would take the call as the
    /// answer to it). A failure is logged and tried again after a pause (1 s doubling to
    /// 32 s): meanwhile the partition stays assigned in librdkafka, which may go on fetching
    /// it, and every message of it is dropped.
    pub(super) fn unassign_refused(&mut self) {
        let pending = std::mem::take(&mut self.unassign.pending);
        let still: Vec<Tp> = {
            let shared = lock(&self.shared);
            pending
                .into_iter()
                .filter(|tp| shared.refused.holds(tp))
                .collect()
        };
        if still.is_empty() {
            return;
        }
        let held = match self.consumer.assignment() {
            Ok(held) => held,
            Err(e) => return self.unassign.failed(still, &e),
        };
        let still: Vec<Tp> = still
            .into_iter()
            .filter(|(topic, p)| held.find_partition(topic, *p).is_some())
            .collect();
        if still.is_empty() {
            return;
        }
        match self.consumer.incremental_unassign(&list_of(still.iter())) {
            Ok(()) => self.unassign.failures = 0,
            Err(e) => self.unassign.failed(still, &e),
        }
    }
}

/// Partitions refused while read for librdkafka to let go, and when to try again after a
/// failure.
#[derive(Default)]
pub(super) struct Unassign {
    pending: Vec<Tp>,
    failures: u32,
    next_try: Option<Instant>,
}

impl Unassign {
    /// Partition `tp` is to be let go.
    fn push(&mut self, tp: Tp) {
        if !self.pending.contains(&tp) {
            self.pending.push(tp);
        }
    }

    /// Whether some partition is to be let go now.
    pub(super) fn due(&self) -> bool {
        !self.pending.is_empty() && self.next_try.is_none_or(|t| Instant::now() >= t)
    }

    /// Letting go of `tps` failed with `e`: they are tried again after a pause.
    fn failed(&mut self, tps: Vec<Tp>, e: &dyn std::fmt::Display) {
        self.failures += 1;
        let pause = Duration::from_secs(1) * 2u32.pow(self.failures.min(6) - 1);
        tracing::warn!(error = %e, attempts = self.failures, retry_in_s = pause.as_secs(), "letting go of refused partitions failed: tried again after a pause; meanwhile librdkafka may go on fetching them, and their messages are dropped");
        for tp in tps {
            self.push(tp);
        }
        self.next_try = Some(Instant::now() + pause);
    }
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
        r.hold(tp(0), "gap".into(), false);
        r.hold(tp(1), "gap".into(), false);
        r.hold(tp(0), "other".into(), false);
        assert_eq!(r.shown().count(), 2, "held again, counted once");
        let now = Instant::now();
        assert_eq!(r.remind_at(now), 0, "not before WARN_EVERY");
        assert_eq!(r.remind_at(now + WARN_EVERY), 2);
        assert_eq!(r.remind_at(now + WARN_EVERY), 0, "not twice in a row");
        assert!(r.forget("t", 1));
        assert!(!r.forget("t", 1));
        assert!(!r.forget("u", 0), "another topic's partition 0");
        assert_eq!(r.shown().count(), 1);
        r.clear();
        assert_eq!(r.shown().count(), 0);
    }

    #[test]
    fn a_failed_let_go_is_tried_again_after_a_growing_pause() {
        let mut u = Unassign::default();
        assert!(!u.due(), "nothing pending");
        u.push(tp(0));
        u.push(tp(0));
        assert!(u.due());
        let tps = std::mem::take(&mut u.pending);
        u.failed(tps, &"erroneous state");
        assert_eq!(u.pending, vec![tp(0)], "kept, once");
        assert!(!u.due(), "not before the pause");
        let first = u.next_try.unwrap();
        let tps = std::mem::take(&mut u.pending);
        u.failed(tps, &"erroneous state");
        assert!(u.next_try.unwrap() >= first + Duration::from_millis(900));
        u.next_try = Some(Instant::now());
        assert!(u.due(), "after the pause");
    }

    #[test]
    fn a_refusal_that_may_go_by_itself_is_judged_again_keeping_its_first_time() {
        let mut r = Refused::default();
        r.hold(tp(0), "backfill".into(), true);
        r.hold(tp(1), "gap".into(), false);
        let now = Instant::now();
        assert!(r.take_due(now).is_empty(), "not before the pause");
        let later = now + RETRY_FIRST + Duration::from_secs(1);
        assert_eq!(
            r.take_due(later),
            vec![tp(0)],
            "the gap is not judged again by itself"
        );
        assert_eq!(r.shown().count(), 1, "being judged");
        let first = r.retrying[0].since;
        // Refused again: its first time kept, its pause doubled.
        r.hold(tp(0), "backfill".into(), true);
        r.end_retry(None, |_| false);
        let h = r.list.iter().find(|h| h.tp == tp(0)).unwrap();
        assert_eq!(h.since, first);
        assert_eq!(h.retry.unwrap().0, 1);
        assert!(h.retry.unwrap().1 >= Instant::now() + RETRY_FIRST * 2 - Duration::from_secs(1));
        // Judged, then neither refused, taken nor waiting (the round ended first): held again.
        let due = r.take_due(Instant::now() + RETRY_MOST);
        assert_eq!(due, vec![tp(0)]);
        r.end_retry(None, |_| false);
        assert_eq!(r.shown().count(), 2);
        // Judged and taken: gone.
        r.take_due(Instant::now() + RETRY_MOST);
        let mut taken = TopicPartitionList::new();
        taken.add_partition("t", 0);
        r.end_retry(Some(&taken), |_| false);
        assert_eq!(
            r.shown().map(|n| n.partition).collect::<Vec<_>>(),
            vec!["t-1"]
        );
        // Judged and now waiting for a leader: that list's.
        r.hold(tp(2), "backfill".into(), true);
        r.take_due(Instant::now() + RETRY_MOST);
        r.end_retry(None, |t| t == &tp(2));
        assert_eq!(r.shown().count(), 1);
        // Not asked (the round's time ran out): still refused, judged at the next round; not
        // answered: after the first pause. Neither waits for a leader.
        r.hold(tp(4), "backfill".into(), true);
        r.hold(tp(5), "backfill".into(), true);
        let t = Instant::now() + RETRY_MOST;
        assert_eq!(r.take_due(t).len(), 2);
        r.not_judged(&tp(4), false);
        r.not_judged(&tp(5), true);
        r.end_retry(None, |_| false);
        assert_eq!(r.shown().count(), 3);
        assert!(r.take_due(Instant::now()).is_empty(), "not at once");
        assert_eq!(
            r.take_due(Instant::now() + Duration::from_secs(2)),
            vec![tp(4)]
        );
        r.end_retry(None, |_| false);
        assert_eq!(r.take_due(Instant::now() + RETRY_FIRST * 2).len(), 2);
        r.end_retry(None, |_| false);
        // Refused again for another reason: a new refusal, its back-off from the start.
        r.hold(tp(6), "backfill".into(), true);
        r.take_due(Instant::now() + RETRY_MOST * 2);
        r.hold(tp(6), "backfill".into(), true);
        r.take_due(Instant::now() + RETRY_MOST * 2);
        let before = Instant::now();
        r.hold(tp(6), "another backfill".into(), true);
        let h = r.list.iter().find(|h| h.tp == tp(6)).unwrap();
        assert!(h.since >= before, "from now");
        assert_eq!(h.retry.unwrap().0, 0, "back-off from the start");
        r.end_retry(None, |_| false);
        // A revocation while being judged forgets it.
        r.hold(tp(3), "backfill".into(), true);
        r.take_due(Instant::now() + RETRY_MOST);
        assert!(r.forget("t", 3));
        r.end_retry(None, |_| false);
        assert_eq!(r.shown().count(), 4);
    }
}
