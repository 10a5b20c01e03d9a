//! Partitions the group hands to this member whose log bounds (watermarks) cannot be read:
//! no leader (its broker down, an election not made yet), or no answer in the assignment's
//! time. Where such a partition would start cannot be judged without them (the gap checks,
//! the first starts), and no value stands in safely, so it is not taken: it waits, asked
//! again between polls after a growing pause, and is taken (claimed, checked, assigned) once
//! its leader answers, while the member's other partitions export. A revocation forgets it.
//! Before, one such partition failed the whole assignment: every member it was handed to
//! stopped, around the group, for as long as its broker was down.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use super::admit::admit;
use super::group::{lock, GroupContext, Shared};
use super::{err_at, KafkaSource, SourceError, TIMEOUT};
use crate::source::{NotRead, NotReadState};

/// The first ask's timeout; each later one doubles it, up to 16 times.
const FIRST_ASK: Duration = Duration::from_millis(250);
/// The pause after the first failed ask; each later one doubles it, up to 32 times.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// A round stops asking once it has taken this long (the ask under way runs to its timeout),
/// and the next round comes at least `ROUND_GAP` later: the poll thread, which the member's
/// other partitions wait on, gives these asks a small part of its time.
const ROUND_BUDGET: Duration = Duration::from_millis(250);
const ROUND_GAP: Duration = Duration::from_secs(1);
/// The longest one ask of an assignment's watermarks in the rebalance callback.
pub(super) const ASK_LIMIT: Duration = Duration::from_secs(5);
/// How often a partition still waiting is logged again.
const WARN_EVERY: Duration = Duration::from_secs(300);

/// (topic, partition number).
pub(super) type Tp = (String, i32);
/// A partition's watermarks: (low, high).
pub(super) type Marks = (Tp, (i64, i64));

/// A partition handed over and not taken yet.
struct Waiting {
    tp: Tp,
    /// The last failure's error.
    why: String,
    since: Instant,
    tries: u32,
    next: Instant,
    warned: Instant,
}

/// The partitions waiting for a leader.
#[derive(Default)]
pub(super) struct Leaderless {
    list: Vec<Waiting>,
    next_round: Option<Instant>,
}

impl Leaderless {
    /// Partition `tp`, whose watermarks could not be read (`why`), waits: a new one is logged.
    /// One `asked` and not answered waits longer before it is asked again; one not asked
    /// (the round's time ran out first) keeps its place, first in the next round.
    pub(super) fn wait(&mut self, tp: Tp, why: &str, asked: bool) {
        let now = Instant::now();
        if let Some(w) = self.list.iter_mut().find(|w| w.tp == tp) {
            w.why = why.to_string();
            if asked {
                w.tries += 1;
                w.next = now + FIRST_PAUSE * 2u32.pow(w.tries.min(5));
            }
            if w.warned.elapsed() >= WARN_EVERY {
                w.warned = now;
                tracing::warn!(partition = %key(&tp), waited_s = w.since.elapsed().as_secs(), error = %why, "partition still has no leader that answers: not taken yet");
            }
            return;
        }
        tracing::warn!(partition = %key(&tp), error = %why, "partition has no leader that answers (its watermarks, or the group's offset, cannot be read): it is not taken yet, and is asked again between polls while the member's other partitions export");
        self.list.push(Waiting {
            tp,
            why: why.to_string(),
            since: now,
            tries: 0,
            // Not asked yet: at the first round.
            next: if asked { now + FIRST_PAUSE } else { now },
            warned: now,
        });
        self.next_round.get_or_insert(now + FIRST_PAUSE);
    }

    /// Forgets partition `tp` (revoked); whether it was waiting.
    pub(super) fn forget(&mut self, topic: &str, partition: i32) -> bool {
        let before = self.list.len();
        self.list
            .retain(|w| !(w.tp.0 == topic && w.tp.1 == partition));
        self.list.len() != before
    }

    /// The waiting partitions, as the admin API shows them.
    pub(super) fn shown(&self) -> impl Iterator<Item = NotRead> + '_ {
        self.list.iter().map(|w| {
            NotRead::new(
                key(&w.tp),
                NotReadState::WithoutLeader,
                w.why.clone(),
                w.since,
            )
        })
    }

    /// Whether partition `tp` waits.
    pub(super) fn holds(&self, tp: &Tp) -> bool {
        self.list.iter().any(|w| &w.tp == tp)
    }

    /// Forgets every waiting partition (the whole assignment revoked).
    pub(super) fn clear(&mut self) {
        self.list.clear();
    }

    /// Takes partition `tp` off the list (taken); logs how long it waited.
    fn taken(&mut self, tp: &Tp) {
        if let Some(i) = self.list.iter().position(|w| &w.tp == tp) {
            let w = self.list.swap_remove(i);
            tracing::info!(partition = %key(tp), waited_s = w.since.elapsed().as_secs(), "partition taken now that its leader answers");
        }
    }

    /// The partitions to ask now, each with its ask's timeout; none before the round's time.
    fn round(&mut self, now: Instant) -> Vec<(Tp, Duration)> {
        if self.list.is_empty() || self.next_round.is_some_and(|t| now < t) {
            return Vec::new();
        }
        self.next_round = Some(now + ROUND_GAP);
        let mut due: Vec<&Waiting> = self.list.iter().filter(|w| w.next <= now).collect();
        due.sort_by_key(|w| w.next);
        due.into_iter()
            .map(|w| (w.tp.clone(), FIRST_ASK * 2u32.pow(w.tries.min(4))))
            .collect()
    }
}

/// A partition's key (`topic-partition`), as logs name it.
pub(super) fn key(tp: &Tp) -> String {
    format!("{}-{}", tp.0, tp.1)
}

/// A partition whose watermarks were not read: why, and whether it was asked.
pub(super) type Unread = (Tp, String, bool);

/// Reads the watermarks of `parts`, each with the longest its ask may take; `time` gives
/// an ask's timeout from that as it starts (None: not asked, the time ran out). Returns
/// those read, and the others.
pub(super) fn watermarks(
    consumer: &BaseConsumer<GroupContext>,
    parts: Vec<(Tp, Duration)>,
    time: impl Fn(Duration) -> Option<Duration>,
) -> (Vec<Marks>, Vec<Unread>) {
    let (mut read, mut unread) = (Vec::new(), Vec::new());
    for (tp, longest) in parts {
        let Some(t) = time(longest) else {
            let why = "not asked yet: the time for the broker's answers ran out";
            unread.push((tp, why.to_string(), false));
            continue;
        };
        match consumer.fetch_watermarks(&tp.0, tp.1, t) {
            Ok(marks) => read.push((tp, marks)),
            Err(e) => unread.push((tp, e.to_string(), true)),
        }
    }
    (read, unread)
}

/// Those of `read` whose group offset `committed` holds without an error; the others wait,
/// as one whose offsets were not read at all does (taken as having none, `auto_offset_reset`
/// would start it at the log's end or start, skipping or repeating records without a word).
pub(super) fn offsets_read(
    read: Vec<Marks>,
    committed: &TopicPartitionList,
    mut wait: impl FnMut(Tp, &str),
) -> Vec<Marks> {
    let mut ok = Vec::with_capacity(read.len());
    for (tp, marks) in read {
        match committed.find_partition(&tp.0, tp.1).map(|e| e.error()) {
            Some(Err(e)) => wait(tp, &format!("the group's offset could not be read: {e}")),
            _ => ok.push((tp, marks)),
        }
    }
    ok
}

/// The list of partitions `tps`.
pub(super) fn list_of<'a>(tps: impl Iterator<Item = &'a Tp>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in tps {
        tpl.add_partition(topic, *p);
    }
    tpl
}

impl KafkaSource {
    /// Group mode: asks the waiting partitions' leaders again (a round at most every
    /// `ROUND_GAP`), and takes each that answers as an assignment would, outside the
    /// rebalance callback: its start judged and claimed, then assigned, and its part made
    /// (and paused with the rest) before any message is read. Refused partitions whose
    /// cause may have gone by itself (a backfill's range) are judged again the same way when
    /// due. Run between rounds of events, not while the fetch queue holds a rebalance event
    /// to serve, nor while the member is rejoining, nor once its assignment is lost.
    pub(super) fn take_leaderless(&mut self) -> Result<(), SourceError> {
        let now = Instant::now();
        let mut guard = lock(&self.shared);
        let shared = &mut *guard;
        shared.refused.remind();
        let mut asks = shared.leaderless.round(now);
        let due = shared.refused.take_due(now);
        if asks.is_empty() && due.is_empty() {
            return Ok(());
        }
        // The member's session expired (the group handed its partitions to others): the
        // revocation that follows forgets them; none is claimed meanwhile.
        if self.consumer.assignment_lost() {
            shared.refused.end_retry(None, |_| false);
            return Ok(());
        }
        // First, so the round's time does not run out before them.
        asks.splice(0..0, due.iter().map(|tp| (tp.clone(), FIRST_ASK * 4)));
        let taken = self.take(shared, asks, &due, now);
        let waiting = &shared.leaderless;
        shared
            .refused
            .end_retry(taken.as_ref().ok(), |tp| waiting.holds(tp));
        let taken = taken?;
        drop(guard);
        // Every one refused: nothing to assign (a call outside the rebalance callback while
        // librdkafka waits for one would be taken as its answer).
        if taken.count() > 0 {
            self.consumer
                .incremental_assign(&taken)
                .map_err(|e| err_at(&self.name, format!("cannot assign a partition: {e}")))?;
        }
        self.apply_events()
    }

    /// [`Self::take_leaderless`]'s asks of partitions `asks` (each with its ask's timeout):
    /// those that answer admitted; returns those taken, to be assigned. Those not asked or
    /// not answering wait for a leader, except the refused ones judged again (`retried`):
    /// they stay refused, judged again soon.
    fn take(
        &self,
        shared: &mut Shared,
        asks: Vec<(Tp, Duration)>,
        retried: &[Tp],
        now: Instant,
    ) -> Result<TopicPartitionList, SourceError> {
        let later =
            |shared: &mut Shared, tp: Tp, why: &str, asked: bool| match retried.contains(&tp) {
                true => shared.refused.not_judged(&tp, asked),
                false => shared.leaderless.wait(tp, why, asked),
            };
        // The group's offsets are asked with 4 times the longest ask of the round (1 s growing
        // to `TIMEOUT` as asks fail), not `TIMEOUT` at once: during a coordinator outage each
        // round held the poll thread, which the member's other partitions wait on, for 15 s.
        // A coordinator that answers slowly but surely is still waited for long enough.
        let longest = asks.iter().map(|(_, t)| *t).max().unwrap_or(FIRST_ASK);
        let offsets_limit = (longest * 4).min(TIMEOUT);
        let (read, unread) = watermarks(&self.consumer, asks, |longest| {
            (now.elapsed() < ROUND_BUDGET).then_some(longest)
        });
        for (tp, why, asked) in unread {
            later(shared, tp, &why, asked);
        }
        if read.is_empty() {
            return Ok(TopicPartitionList::new());
        }
        let committed = match self
            .consumer
            .committed_offsets(list_of(read.iter().map(|(tp, _)| tp)), offsets_limit)
        {
            Ok(c) => c,
            Err(e) => {
                for (tp, _) in read {
                    let why = format!("the group's offsets could not be read: {e}");
                    later(shared, tp, &why, true);
                }
                return Ok(TopicPartitionList::new());
            }
        };
        if self.consumer.assignment_lost() {
            return Ok(TopicPartitionList::new());
        }
        // Those whose offset could not be read wait on as they were (their timeouts grow,
        // their wait is one): taken off the list before, they started waiting anew.
        let read = offsets_read(read, &committed, |tp, why| later(shared, tp, why, true));
        let taken = admit(&self.consumer, shared, &read, &committed, now)?;
        // Off the list: said taken, or refused (which `admit` logged).
        for (tp, _) in &read {
            match taken.find_partition(&tp.0, tp.1) {
                Some(_) => shared.leaderless.taken(tp),
                None => _ = shared.leaderless.forget(&tp.0, tp.1),
            }
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_string(), p)
    }

    #[test]
    fn a_waiting_partition_is_asked_again_after_a_growing_pause_and_forgotten_when_revoked() {
        let mut l = Leaderless::default();
        let before = Instant::now();
        l.wait(tp(0), "no leader", true);
        l.wait(tp(1), "no leader", true);
        let t0 = Instant::now();
        assert!(l.round(before).is_empty(), "not before the first pause");
        let asks = l.round(t0 + FIRST_PAUSE);
        assert_eq!(asks, vec![(tp(0), FIRST_ASK), (tp(1), FIRST_ASK)]);
        assert!(
            l.round(t0 + FIRST_PAUSE + ROUND_GAP / 2).is_empty(),
            "rounds are ROUND_GAP apart"
        );
        // Partition 0 failed twice more: its next ask waits four times as long, with four
        // times the time to answer.
        l.wait(tp(0), "no leader", true);
        l.wait(tp(0), "no leader", true);
        let now = Instant::now();
        assert_eq!(
            l.round(now + 3 * FIRST_PAUSE),
            vec![(tp(1), FIRST_ASK)],
            "partition 0 is not due yet"
        );
        assert_eq!(
            l.round(now + 4 * FIRST_PAUSE + ROUND_GAP),
            vec![(tp(1), FIRST_ASK), (tp(0), 4 * FIRST_ASK)]
        );
        assert!(l.forget("t", 1));
        assert!(!l.forget("t", 1));
        l.taken(&tp(0));
        assert!(l.round(now + 100 * ROUND_GAP).is_empty());
    }

    #[test]
    fn a_partition_not_asked_keeps_its_place_first_in_the_next_round() {
        let mut l = Leaderless::default();
        l.wait(tp(0), "no leader", true);
        l.wait(tp(1), "not asked yet", false);
        let now = Instant::now();
        // Partition 0's ask took the round's time; 1 was not asked, and is not pushed back.
        assert_eq!(l.round(now + FIRST_PAUSE)[0], (tp(1), FIRST_ASK));
        l.wait(tp(0), "no leader", true);
        l.wait(tp(1), "not asked yet", false);
        let asks = l.round(now + FIRST_PAUSE + ROUND_GAP);
        assert_eq!(asks, vec![(tp(1), FIRST_ASK)], "partition 0 waits longer");
    }
}
