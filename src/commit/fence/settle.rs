//! Settling a partition's claims for a new owner: each claim without an outcome aborted
//! (create-only: a commit that won first stands), the files of claims that lost removed (now,
//! and at later settles while their records are kept, in case a paused writer publishes
//! late), and the records of won or long-lost claims deleted.

use super::{Claim, Settled, RECENT_SKEW};
use crate::commit::checkpoint::{Abort, CheckpointError, Checkpoints, Outcome, VERSION};
use crate::commit::now_ms;

/// The oldest outcome's sequence number, listed once per settle.
fn oldest_seq(
    cps: &Checkpoints,
    key: &str,
    cache: &mut Option<Option<u64>>,
) -> Result<Option<u64>, CheckpointError> {
    if cache.is_none() {
        *cache = Some(cps.oldest(key)?);
    }
    Ok(cache.flatten())
}

/// Lost claims' records are kept this many sequence numbers back, so files their writers
/// publish late are still found and removed.
const KEEP_LOST: u64 = 256;

impl Checkpoints {
    /// How recent a lost claim must be for an upload of it to be still under way: the
    /// destinations' late window plus [`RECENT_SKEW`]; `None` where nothing lands late.
    fn recent_ms(&self) -> Option<i64> {
        let window = self.late_window()?;
        Some(
            window
                .saturating_add(RECENT_SKEW)
                .as_millis()
                .min(i64::MAX as u128) as i64,
        )
    }

    /// Decides every claim in `claims` for the owner of `term`: one without an outcome is
    /// aborted (unless its writer's commit wins first); the files of a claim that did not win
    /// its sequence number are removed, now and at each later settle (a paused writer may
    /// publish after its fence); claim records of won commits, and of lost claims more than
    /// `KEEP_LOST` sequence numbers back, are deleted. Returns the files removed, whether a
    /// claim of `owner`'s own lost (its files were looked for, and removed if there), and
    /// whether a lost claim may still have an upload under way (aborted now, or recent).
    pub(super) fn settle(
        &self,
        key: &str,
        claims: &[u64],
        newest: u64,
        term: u64,
        owner: &str,
    ) -> Result<Settled, CheckpointError> {
        let mut removed = Vec::new();
        let mut lost_own = false;
        let mut may_land_late = false;
        let recent_ms = self.recent_ms();
        // Listed only when a claim has no outcome (rare): most settles find none.
        let mut oldest: Option<Option<u64>> = None;
        for &seq in claims {
            let path = self.claim_path(key, seq);
            let Some(claim) = self.read_json::<Claim>(&path, "claim")? else {
                continue;
            };
            if claim.term > term {
                return Err(self.fenced(key, claim.term, term));
            }
            let mut outcome = self.outcome(key, seq)?;
            if outcome.is_none() && oldest_seq(self, key, &mut oldest)?.is_some_and(|o| seq < o) {
                // Decided long ago, its outcome pruned since: a claim whose release failed.
                // Its files belong to a standing commit, or were removed when it was aborted.
                self.dest.delete(&path)?;
                continue;
            }
            if outcome.is_none() {
                #[cfg(test)]
                crate::hooks::at("settle: before an abort");
                let abort = Outcome::Abort(Abort {
                    version: VERSION,
                    key: key.to_string(),
                    seq,
                    aborted_by: owner.to_string(),
                    term,
                    at_ms: now_ms(),
                });
                match self.decide(&abort)? {
                    Some(winner) => outcome = Some(winner),
                    // Won, so the name was free: nobody had decided it, or this settle was
                    // paused since it read the outcome, and meanwhile the claim's commit won
                    // and a newer owner pruned its record. The horizon, recorded before a
                    // prune deletes anything, tells which: below it the claim's files are a
                    // standing commit's (or went at its abort) and stay; this abort is one
                    // more kept below the horizon, which no reader takes for a decision.
                    None if self.horizon(key)?.is_some_and(|h| seq < h) => {
                        tracing::warn!(
                            partition = %key, seq,
                            "a claim's outcome was pruned while it was being settled: its files stay"
                        );
                        self.dest.delete(&path)?;
                        continue;
                    }
                    None => {
                        outcome = Some(abort);
                        may_land_late = true;
                    }
                }
                tracing::warn!(
                    partition = %key, seq, owner = %claim.owner, term = claim.term,
                    "fenced a commit that did not finish"
                );
            }
            let own = outcome
                .as_ref()
                .is_some_and(|o| o.owner() == claim.owner && o.term() == claim.term);
            if claim.undo {
                // The files are committed ones: deleted only when the roll-back won.
                if own && matches!(outcome, Some(Outcome::Rollback(_))) {
                    self.remove_files(&claim, &mut removed)?;
                }
                self.dest.delete(&path)?;
                continue;
            }
            match outcome {
                Some(Outcome::Commit(_)) if own => {
                    self.dest.delete(&path)?;
                    continue;
                }
                _ => {}
            }
            lost_own |= claim.owner == owner;
            // Claimed or decided recently, by any host's clock: its writer may still be
            // uploading (a process killed mid-upload, a task failed, a writer fenced).
            let decided_ms = outcome.as_ref().map_or(0, Outcome::at_ms);
            if let Some(recent) = recent_ms {
                let latest = claim.claimed_at_ms.max(decided_ms);
                may_land_late |= now_ms().saturating_sub(latest) < recent;
            }
            self.remove_files(&claim, &mut removed)?;
            if seq.saturating_add(KEEP_LOST) < newest {
                self.dest.delete(&path)?;
            }
        }
        Ok(Settled {
            removed,
            lost_own,
            may_land_late,
        })
    }

    /// Deletes what a claim listed: temporary names first (a writer that has not renamed yet
    /// cannot any more), then the published names.
    pub(super) fn remove_files(
        &self,
        c: &Claim,
        removed: &mut Vec<String>,
    ) -> Result<(), CheckpointError> {
        for f in &c.staged {
            self.delete_file(f, false)?;
        }
        for f in &c.dead_letter_staged {
            self.delete_file(f, true)?;
        }
        for f in &c.files {
            if self.dest.exists(f)? {
                self.delete_file(f, false)?;
                removed.push(f.clone());
            }
        }
        for f in &c.dead_letter_files {
            if self.dead.exists(f)? {
                self.delete_file(f, true)?;
                removed.push(f.clone());
            }
        }
        Ok(())
    }
}
