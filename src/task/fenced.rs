//! What a consumer-group member does about a partition another owner fenced when the group
//! does not take it away. The fence stops this member writing it at once; the revocation
//! normally follows within moments (the group moved the partition). When it does not come
//! within the grace, the group's view and the owners disagree: a coordinator that handed one
//! partition to two members (seen on rolling restarts), or a writer outside the group (a
//! second group, a process started by hand). The member joins its group again, so the group
//! assigns afresh: a coordinator's mistake is mended, and a partition the group gives back is
//! claimed with a new term. Fenced again by an owner that fenced it before a rejoin, something
//! outside the group keeps writing the job's partitions: the task fails, naming it, rather
//! than trading the partitions back and forth for ever. Owners, not time, decide: a fence is
//! only seen at a commit, which may be many minutes after the takeover.

use std::time::{Duration, Instant};

use crate::sink::partitions::Fenced;

/// How long a fenced partition may stay assigned before the member acts (`fence_grace:<ms>`
/// in `SLUICE_FAULT` for tests).
const FENCE_GRACE: Duration = Duration::from_secs(60);

/// A fence from before a rejoin still not taken away this many graces after it: the rejoin
/// did not happen, and the task fails.
const REJOIN_WITHIN: u32 = 10;

/// How long the owners that made this member rejoin are remembered.
const REMEMBER: Duration = Duration::from_secs(24 * 3600);

/// What the source loop does now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// Join the group again (partition handle `p` is overdue).
    Rejoin(u32),
    /// Fail the task with this reason.
    Fail(String),
}

pub(super) struct FenceWatch {
    grace: Duration,
    rejoined: Option<Instant>,
    /// The owners whose fences made this member rejoin, and when.
    owners: Vec<(String, Instant)>,
}

impl FenceWatch {
    pub(super) fn new() -> FenceWatch {
        FenceWatch::with_grace(crate::fault::millis("fence_grace").unwrap_or(FENCE_GRACE))
    }

    fn with_grace(grace: Duration) -> FenceWatch {
        FenceWatch {
            grace,
            rejoined: None,
            owners: Vec::new(),
        }
    }

    /// How long a fence waits for its revocation.
    pub(super) fn grace(&self) -> Duration {
        self.grace
    }

    /// `overdue`: the partition fenced longest ago, more than the grace, still assigned.
    pub(super) fn step(&mut self, overdue: Option<Fenced>, now: Instant) -> Step {
        let Some(f) = overdue else {
            return Step::Nothing;
        };
        let p = f.partition;
        if let Some(r) = self.rejoined.filter(|r| f.at <= *r) {
            // Fenced before the last rejoin: its revocation is still to come.
            let since = now.saturating_duration_since(r);
            if since < self.grace * REJOIN_WITHIN {
                return Step::Nothing;
            }
            return Step::Fail(format!(
                "partition handle {p} was fenced by another owner, and the group has not taken \
                 it away {} s after this member joined it again",
                since.as_secs()
            ));
        }
        self.owners
            .retain(|(_, t)| now.saturating_duration_since(*t) < REMEMBER);
        if let Some(owner) = &f.owner {
            if let Some((_, t)) = self.owners.iter().find(|(o, _)| o == owner) {
                return Step::Fail(format!(
                    "partition handle {p} was fenced again by owner {owner}, which fenced this \
                     member {} s ago, before it joined its group again: another process writes \
                     this job's partitions (a second group, or a process started by hand)",
                    now.saturating_duration_since(*t).as_secs()
                ));
            }
            self.owners.push((owner.clone(), now));
        }
        self.rejoined = Some(now);
        Step::Rejoin(p)
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

    fn fenced(partition: u32, at: Instant, owner: &str) -> Option<Fenced> {
        Some(Fenced {
            partition,
            at,
            owner: Some(owner.to_string()),
        })
    }

    #[test]
    fn an_overdue_fence_rejoins_and_the_same_owner_again_fails() {
        let g = Duration::from_secs(60);
        let mut w = FenceWatch::with_grace(g);
        let t0 = Instant::now();
        assert_eq!(w.step(None, t0), Step::Nothing);
        assert_eq!(w.step(fenced(3, t0, "b"), t0 + g), Step::Rejoin(3));
        // The fences from before the rejoin wait for its revocations, up to ten graces.
        assert_eq!(w.step(fenced(3, t0, "b"), t0 + g * 5), Step::Nothing);
        match w.step(fenced(3, t0, "b"), t0 + g * 11) {
            Step::Fail(why) => assert!(why.contains("600 s after"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Another owner, after the rejoin: the group is asked again; `b` again, an hour
        // later (a fence is seen only at a commit): fails.
        let t1 = t0 + g * 12;
        assert_eq!(w.step(fenced(4, t1, "c"), t1 + g), Step::Rejoin(4));
        let t2 = t1 + g * 60;
        match w.step(fenced(5, t2, "b"), t2 + g) {
            Step::Fail(why) => assert!(why.contains("again by owner b"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Owners are forgotten after a day; an unnamed owner only rejoins.
        let t3 = t2 + REMEMBER;
        assert_eq!(w.step(fenced(6, t3, "b"), t3 + g), Step::Rejoin(6));
        let unnamed = Fenced {
            partition: 7,
            at: t3 + g * 2,
            owner: None,
        };
        assert_eq!(w.step(Some(unnamed), t3 + g * 3), Step::Rejoin(7));
    }
}
