//! `run --from-checkpoint`: a roll-back as one decided sequence number (see
//! `docs/ARCHITECTURE.md`).

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints, Outcome, Rollback, VERSION};
use super::fence::{Claim, Reconciled};
use super::now_ms;

impl Checkpoints {
    /// Rolls a partition back to commit `target` (replay) as one decided sequence number:
    /// after a reconcile (claims that did not finish are aborted), the next sequence number is
    /// claimed listing the files of every commit after `target`, then sealed with a roll-back
    /// outcome, then those files are deleted and the claim released. A crash or a newer owner
    /// at any point leaves either nothing changed (the claim is aborted) or a decided
    /// roll-back whose files the next settle deletes. Commits sealed meanwhile by an older
    /// writer are below the roll-back and undone with it.
    pub fn roll_back_to(
        &self,
        key: &str,
        target: u64,
        term: u64,
        owner: &str,
    ) -> Result<Reconciled, CheckpointError> {
        let claim = self.roll_back_claim(key, target, term, owner)?;
        crate::fault::abort_at("roll_back_claimed", 0);
        self.roll_back_seal(&claim, target)
    }

    /// The first half of [`Checkpoints::roll_back_to`]: reconcile, then claim the next
    /// sequence number listing the files to undo.
    pub fn roll_back_claim(
        &self,
        key: &str,
        target: u64,
        term: u64,
        owner: &str,
    ) -> Result<Claim, CheckpointError> {
        let r = self.reconcile(key, term, owner)?;
        let history = self.history(key)?;
        let Some(to) = history.iter().find(|c| c.seq == target) else {
            return Err(CheckpointError::Unknown {
                key: key.to_string(),
                seq: target,
            });
        };
        // Recorded even with nothing to undo: other processes of a group started with the same
        // flag see that it was applied.
        let undone: Vec<&Checkpoint> = history.iter().filter(|c| c.seq > target).collect();
        let claim = Claim {
            version: VERSION,
            key: key.to_string(),
            seq: r.next_seq,
            term,
            owner: owner.to_string(),
            from_offset: r.latest.as_ref().map_or(0, |c| c.next_offset),
            next_offset: to.next_offset,
            next_line: to.next_line,
            files: undone
                .iter()
                .flat_map(|c| c.files.iter().map(|f| f.path.clone()))
                .collect(),
            staged: Vec::new(),
            dead_letter_files: undone
                .iter()
                .flat_map(|c| c.dead_letter_files.iter().cloned())
                .collect(),
            dead_letter_staged: Vec::new(),
            claimed_at_ms: now_ms(),
            undo: true,
        };
        self.claim(&claim)?;
        Ok(claim)
    }

    /// The second half: the roll-back outcome, then the reconcile that deletes the files.
    pub fn roll_back_seal(
        &self,
        claim: &Claim,
        target: u64,
    ) -> Result<Reconciled, CheckpointError> {
        let rollback = Outcome::Rollback(Rollback {
            version: VERSION,
            key: claim.key.clone(),
            seq: claim.seq,
            rollback_to: target,
            next_offset: claim.next_offset,
            next_line: claim.next_line,
            owner: claim.owner.clone(),
            term: claim.term,
            at_ms: now_ms(),
        });
        if let Some(winner) = self.decide(&rollback)? {
            return Err(self.lost_to(claim, &winner));
        }
        crate::fault::abort_at("roll_back_sealed", 0);
        self.reconcile(&claim.key, claim.term, &claim.owner)
    }

    /// Partition `key`'s newest roll-back to `target`, made at or after `since_ms` (any time
    /// when `None`): a run with `--from-checkpoint` applies it once, not once per process of a
    /// group, nor again at every later start with the flag still set.
    pub fn rolled_back(
        &self,
        key: &str,
        target: u64,
        since_ms: Option<i64>,
    ) -> Result<Option<Rollback>, CheckpointError> {
        for seq in self.seqs(key)?.into_iter().rev() {
            if seq <= target {
                break;
            }
            if let Some(Outcome::Rollback(r)) = self.outcome(key, seq)? {
                if r.rollback_to == target && since_ms.is_none_or(|since| r.at_ms >= since) {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }
}
