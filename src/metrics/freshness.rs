//! How fresh an export is, measured when the metrics are read, not by the threads doing the
//! work: a feed blocked on a full channel, or a worker waiting out a destination that is
//! down, could not keep a gauge current, and a gauge frozen at its last value reads healthy.
//!
//! - [`Pending`]: per partition, when its oldest record read and not yet committed was read.
//!   Reads are kept as runs of positions, one run per [`RUN`] of time (so a partition holds
//!   at most one entry per `RUN` between commits), and each commit drops the runs it covers.
//!   A replay after a failed commit reads positions already held, which leaves the oldest
//!   run's time as it was: a partition that keeps failing keeps getting older.
//! - [`Contact`]: when a source last heard from its brokers, stamped by a thread of the
//!   source's own (Kafka's watermark thread), so a consumer that waits on a full channel is
//!   not taken for one that cannot reach its brokers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Reads within this long of a run's first are added to it.
pub const RUN: Duration = Duration::from_secs(30);

/// A partition's runs of positions read and not yet committed: `(end, first read)`, ends
/// rising, oldest first.
type Runs = VecDeque<(u64, Instant)>;

/// Each partition's [`Runs`], by repo and partition.
#[derive(Default)]
pub struct Pending {
    parts: Mutex<HashMap<(String, String), Runs>>,
}

impl Pending {
    /// Records up to position `end` (exclusive) of `partition` of `repo` were read `now`.
    pub fn read(&self, (repo, partition): (&str, &str), end: u64, now: Instant) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let runs = parts
            .entry((repo.to_string(), partition.to_string()))
            .or_default();
        match runs.back_mut() {
            // Read again (a replay): already held since its first read.
            Some((last, _)) if end <= *last => {}
            Some((last, since)) if now.saturating_duration_since(*since) < RUN => *last = end,
            _ => runs.push_back((end, now)),
        }
    }

    /// `partition` of `repo` is committed up to position `next` (exclusive).
    pub fn committed(&self, (repo, partition): (&str, &str), next: u64) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (repo.to_string(), partition.to_string());
        let Some(runs) = parts.get_mut(&key) else {
            return;
        };
        while runs.front().is_some_and(|(end, _)| *end <= next) {
            runs.pop_front();
        }
        if runs.is_empty() {
            parts.remove(&key);
        }
    }

    /// The partition is no longer this process's (`None`: every partition of `repo`).
    pub fn forget(&self, repo: &str, partition: Option<&str>) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.retain(|(r, p), _| r != repo || partition.is_some_and(|q| q != p));
    }

    /// Every partition holding records not committed, with how long ago the oldest was read.
    pub fn ages(&self, now: Instant) -> Vec<((String, String), Duration)> {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts
            .iter()
            .filter_map(|(k, runs)| {
                let (_, since) = runs.front()?;
                Some((k.clone(), now.saturating_duration_since(*since)))
            })
            .collect()
    }
}

/// When a source last heard from its brokers; shared by the source's thread that stamps it
/// and the metrics that read it.
#[derive(Clone)]
pub struct Contact(Arc<AtomicU64>);

/// The instant [`Contact`]s count from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Contact {
    /// A contact stamped now (a source that just started has not been silent yet).
    pub fn new() -> Contact {
        let c = Contact(Arc::new(AtomicU64::new(0)));
        c.heard();
        c
    }

    /// The brokers answered now.
    pub fn heard(&self) {
        let ms = base().elapsed().as_millis() as u64;
        self.0.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long since the brokers last answered.
    pub fn silent_for(&self) -> Duration {
        self.silent_at(base().elapsed())
    }

    /// [`Contact::silent_for`] at `now` (since [`base`]).
    fn silent_at(&self, now: Duration) -> Duration {
        now.saturating_sub(Duration::from_millis(self.0.load(Ordering::Relaxed)))
    }
}

impl Default for Contact {
    fn default() -> Self {
        Contact::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: (&str, &str) = ("r", "t-0");

    fn age(p: &Pending, now: Instant) -> Option<u64> {
        let ages = p.ages(now);
        assert!(ages.len() <= 1, "{ages:?}");
        ages.first().map(|(_, a)| a.as_secs())
    }

    #[test]
    fn the_oldest_read_not_committed_sets_the_age_until_a_commit_covers_it() {
        let p = Pending::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(age(&p, t0), None);
        p.read(P, 10, t0);
        p.read(P, 20, at(5)); // within one run
        p.read(P, 30, at(40)); // a run of its own
        assert_eq!(age(&p, at(50)), Some(50));
        // A commit inside the first run leaves it; one past it goes to the second run.
        p.committed(P, 15);
        assert_eq!(age(&p, at(50)), Some(50));
        p.committed(P, 20);
        assert_eq!(age(&p, at(50)), Some(10));
        p.committed(P, 30);
        assert_eq!(age(&p, at(50)), None);
        // Another repo's partition of the same name is its own.
        p.read(("other", "t-0"), 5, at(60));
        p.committed(P, 100);
        assert_eq!(age(&p, at(70)), Some(10));
    }

    #[test]
    fn a_replay_keeps_the_age_of_the_first_read_and_a_forget_drops_it() {
        let p = Pending::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        p.read(P, 100, t0);
        // The commit failed: the partition is read again from its checkpoint, again and
        // again, and the records stay as old as their first read.
        for k in 1..5 {
            p.read(P, 50, at(60 * k));
            p.read(P, 100, at(60 * k + 1));
        }
        assert_eq!(age(&p, at(300)), Some(300));
        p.forget("r", Some("t-1"));
        assert_eq!(age(&p, at(300)), Some(300));
        p.forget("r", Some("t-0"));
        assert_eq!(age(&p, at(300)), None);
        p.read(P, 10, t0);
        p.forget("r", None);
        assert_eq!(age(&p, at(1)), None);
    }

    #[test]
    fn a_contact_counts_the_silence_since_the_brokers_last_answered() {
        let c = Contact::new();
        assert!(c.silent_for() < Duration::from_secs(1));
        // Last heard at 5 s (since the base): silent since then; an older stamp does not
        // move it back.
        let s = |n: u64| Duration::from_secs(n);
        c.0.store(5_000, Ordering::Relaxed);
        assert_eq!(c.silent_at(s(65)), s(60));
        assert_eq!(c.silent_at(s(4)), s(0));
        c.0.fetch_max(1_000, Ordering::Relaxed);
        assert_eq!(c.silent_at(s(65)), s(60));
        c.heard();
        assert!(c.silent_for() < s(1));
    }
}
