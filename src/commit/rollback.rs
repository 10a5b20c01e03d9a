//! `run --from-checkpoint`: a roll-back as one decided sequence number (see
//! `docs/ARCHITECTURE.md`).

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints, Outcome, Rollback, VERSION};
use super::fence::{Claim, Reconciled};
use super::now_ms;
use crate::store::RECORD_CAP;

/// What a roll-back's claim lists of commit `c` (its files' and dead letters' paths, each
/// quoted and escaped, indented, with a comma and a line break), in bytes, at most.
fn listed(c: &Checkpoint) -> u64 {
    c.files
        .iter()
        .map(|f| &f.path)
        .chain(&c.dead_letter_files)
        .map(|p| serde_json::to_string(p).map_or(0, |j| j.len() as u64 + 8))
        .sum()
}

/// What one claim may list: what one record holds (`cap`), less a sixteenth for its other
/// fields.
fn budget(cap: u64) -> u64 {
    cap - cap / 16
}

/// Refuses a roll-back of partition `key` to `target` whose claim would list more than one
/// record holds, from the partition's `history` (its standing commits, oldest first): run
/// for every partition before any is rolled back, so that none is when another would be
/// refused at its claim.
pub fn check_roll_back_listing(
    key: &str,
    history: &[Checkpoint],
    target: u64,
) -> Result<(), CheckpointError> {
    check_listing(key, history, target, RECORD_CAP)
}

/// [`check_roll_back_listing`] for records of up to `cap` bytes.
fn check_listing(
    key: &str,
    history: &[Checkpoint],
    target: u64,
    cap: u64,
) -> Result<(), CheckpointError> {
    let undone: Vec<&Checkpoint> = history.iter().filter(|c| c.seq > target).collect();
    let bytes: u64 = undone.iter().map(|c| listed(c)).sum();
    if bytes > budget(cap) {
        return Err(CheckpointError::RollbackTooLarge {
            key: key.to_string(),
            target,
            bytes,
            cap,
            step: one_step(&undone, target, cap),
        });
    }
    Ok(())
}

/// What to do instead of a roll-back to `target` that undoes too many files at once: roll
/// back first to the oldest standing checkpoint whose undoing lists what one claim may.
fn one_step(undone: &[&Checkpoint], target: u64, cap: u64) -> String {
    let mut sum = 0u64;
    let mut step = None;
    for (i, c) in undone.iter().enumerate().rev() {
        sum += listed(c);
        if sum > budget(cap) {
            break;
        }
        step = Some(i.checked_sub(1).map_or(target, |older| undone[older].seq));
    }
    match step {
        Some(seq) if seq != target => format!(
            "`--from-checkpoint {seq}` first, then `--from-checkpoint {target}` (each step \
             undoes what one record lists)"
        ),
        // The newest commit alone lists more (no commit can: see `commit::bounds`).
        _ => "the newest commit alone lists more; see `sluice checkpoints list`".to_string(),
    }
}

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
        match self.claim(&claim) {
            Err(CheckpointError::TooLarge { bytes, cap, .. }) => {
                Err(CheckpointError::RollbackTooLarge {
                    key: key.to_string(),
                    target,
                    bytes,
                    cap,
                    step: one_step(&undone, target, cap),
                })
            }
            r => r.map(|()| claim),
        }
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

#[cfg(test)]
mod tests {
    use super::super::tests::{checkpoint, claim, KEY};
    use super::*;
    use crate::store::Destination;

    /// A roll-back whose claim would list more than one record holds is refused before
    /// anything is written (written, the next read refused it: the partition stopped for
    /// good), and says how to roll back in steps; the steps work.
    #[test]
    fn a_roll_back_past_what_one_claim_lists_is_refused_and_goes_in_steps() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dest = Destination::parse("memory:///r", rt.handle().clone()).unwrap();
        // Records of up to 16 KiB, not 256 MiB: the same code, a thousandth of the bytes.
        let cps = Checkpoints::new(dest.clone(), "j").with_cap(16 << 10);
        let t = cps.take_term(KEY, "a").unwrap();
        // Four commits of seven files each, under paths of 1,000 bytes: each lists 7 KB.
        for seq in 1..=4u64 {
            let paths: Vec<String> = (0..7).map(|i| format!("{seq}/{i}/{:p>996}", "")).collect();
            let rels: Vec<&str> = paths.iter().map(String::as_str).collect();
            let c = claim(seq, t, "a", &[], &rels);
            cps.claim(&c).unwrap();
            cps.seal(&c, &checkpoint(&c, seq * 10)).unwrap();
            cps.release(KEY, seq, t, "a").unwrap();
        }
        let seq_after = |to: u64| {
            cps.roll_back_to(KEY, to, t, "a")
                .map(|r| r.latest.map(|c| c.seq))
        };
        // Found from the history before any term is taken, with the same step.
        let history = cps.history(KEY).unwrap();
        let early = check_listing(KEY, &history, 1, 16 << 10)
            .unwrap_err()
            .to_string();
        assert!(early.contains("`--from-checkpoint 2` first"), "{early}");
        check_listing(KEY, &history, 2, 16 << 10).unwrap();
        let e = seq_after(1).expect_err("a roll-back past one record's listing is refused");
        assert!(
            matches!(&e, CheckpointError::RollbackTooLarge { target: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("`--from-checkpoint 2` first"), "{e}");
        // Nothing was claimed or decided: the newest commit stands, sequence 5 is free.
        assert_eq!(cps.latest(KEY).unwrap().map(|c| c.seq), Some(4));
        assert!(cps.outcome(KEY, 5).unwrap().is_none());
        assert_eq!(seq_after(2).ok(), Some(Some(2)));
        assert_eq!(seq_after(1).ok(), Some(Some(1)));
        assert_eq!(cps.history(KEY).unwrap().len(), 1);
    }
}
