//! What a consumer-group member does about a partition another owner fenced when the group
//! does not take it away. The fence stops this member writing it at once; the revocation
//! normally follows within moments (the group moved the partition). When it does not come
//! within the grace, the group's view and the owners disagree: a coordinator that handed one
//! partition to two members (seen on rolling restarts), or a writer outside the group (a
//! second group, a process started by hand). The member first leaves its group and joins it
//! again, so the group assigns afresh: a coordinator's mistake is mended, and a partition the
//! group gives back is claimed with a new term. Fenced and not let go again within ten graces
//! of that rejoin, something outside the group keeps writing the job's partitions: the task
//! fails, naming it, rather than trading the partition back and forth for ever.

use std::time::{Duration, Instant};

/// How long a fenced partition may stay assigned before the member acts (`fence_grace:<ms>`
/// in `SLUICE_FAULT` for tests).
const FENCE_GRACE: Duration = Duration::from_secs(60);

/// A fence overdue within this many graces of a rejoin fails the task.
const AGAIN_WITHIN: u32 = 10;

/// What the source loop does now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// Leave the group and join it again (partition handle `p` is overdue).
    Rejoin(u32),
    /// Fail the task with this reason.
    Fail(String),
}

pub(super) struct FenceWatch {
    grace: Duration,
    rejoined: Option<Instant>,
}

impl FenceWatch {
    pub(super) fn new() -> FenceWatch {
        FenceWatch::with_grace(crate::fault::millis("fence_grace").unwrap_or(FENCE_GRACE))
    }

    fn with_grace(grace: Duration) -> FenceWatch {
        FenceWatch {
            grace,
            rejoined: None,
        }
    }

    /// How long a fence waits for its revocation.
    pub(super) fn grace(&self) -> Duration {
        self.grace
    }

    /// `overdue`: a partition fenced longer than the grace ago and still assigned.
    pub(super) fn step(&mut self, overdue: Option<u32>, now: Instant) -> Step {
        let Some(p) = overdue else {
            return Step::Nothing;
        };
        let since = self.rejoined.map(|t| now.saturating_duration_since(t));
        match since {
            // The rejoin's revocations are on their way.
            Some(s) if s <= self.grace => Step::Nothing,
            Some(s) if s < self.grace * AGAIN_WITHIN => Step::Fail(format!(
                "partition handle {p} was fenced by another owner, and {} s after this member \
                 joined its group again it is still (or again) fenced and not taken away: \
                 another process writes this job's partitions (a second group, or a process \
                 started by hand)",
                s.as_secs()
            )),
            _ => {
                self.rejoined = Some(now);
                Step::Rejoin(p)
            }
        }
    }

    /// The reason a task fails when its source has no group to join again.
    pub(super) fn no_group(&self, p: u32) -> String {
        format!(
            "partition handle {p} was fenced by another owner and not taken away within {} s: \
             another process writes this job's partitions",
            self.grace.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overdue_fence_rejoins_once_then_fails_if_it_comes_back() {
        let g = Duration::from_secs(60);
        let mut w = FenceWatch::with_grace(g);
        let t0 = Instant::now();
        assert_eq!(w.step(None, t0), Step::Nothing);
        assert_eq!(w.step(Some(3), t0), Step::Rejoin(3));
        // The revocations of the rejoin may take up to one grace.
        assert_eq!(w.step(Some(3), t0 + g / 2), Step::Nothing);
        assert_eq!(w.step(Some(3), t0 + g), Step::Nothing);
        // Still (or again) overdue after that, within ten graces: fails.
        match w.step(Some(4), t0 + g * 3) {
            Step::Fail(why) => assert!(why.contains("handle 4") && why.contains("180 s"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Long after the rejoin, a new disagreement is mended the same way.
        assert_eq!(w.step(Some(5), t0 + g * 11), Step::Rejoin(5));
    }
}
