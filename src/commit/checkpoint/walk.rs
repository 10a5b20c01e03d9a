//! The commits of a partition that stand, read from its outcomes from the newest down (a
//! roll-back undoes those between its target and itself): the newest, all of them, those
//! after a point, and whether any were pruned.

use super::{Checkpoint, CheckpointError, Checkpoints, Outcome, VERSION};

impl Checkpoints {
    /// The commits that stand, newest first, read lazily from the newest outcome down: a
    /// roll-back undoes the commits between its target and itself.
    fn walk(
        &self,
        key: &str,
        visit: impl FnMut(&Checkpoint) -> bool,
    ) -> Result<(), CheckpointError> {
        self.walk_seqs(key, self.seqs(key)?, visit)
    }

    /// [`Self::walk`] over the outcomes numbered `seqs` (ascending).
    fn walk_seqs(
        &self,
        key: &str,
        seqs: Vec<u64>,
        mut visit: impl FnMut(&Checkpoint) -> bool,
    ) -> Result<(), CheckpointError> {
        // Commits above `bound` (and below the roll-back that set it) are undone; `target`
        // stands in for the roll-back's target if its record was pruned.
        let mut bound = u64::MAX;
        let mut target: Option<Checkpoint> = None;
        for seq in seqs.into_iter().rev() {
            if seq > bound {
                continue;
            }
            if target.as_ref().is_some_and(|t| seq < t.seq) {
                if let Some(t) = target.take() {
                    if !visit(&t) {
                        return Ok(());
                    }
                }
            }
            match self.outcome(key, seq)? {
                Some(Outcome::Rollback(r)) => {
                    bound = r.rollback_to;
                    target = Some(Checkpoint {
                        version: VERSION,
                        job: self.job.clone(),
                        key: key.to_string(),
                        seq: r.rollback_to,
                        next_offset: r.next_offset,
                        next_line: r.next_line,
                        files: Vec::new(),
                        dead_letter_files: Vec::new(),
                        rows: 0,
                        dead_letters: 0,
                        committed_at_ms: r.at_ms,
                        term: r.term,
                        owner: format!(
                            "{} (the target of a roll-back; its record is pruned)",
                            r.owner
                        ),
                        log: None,
                        log_runs: Vec::new(),
                        file: None,
                        record: None,
                        behind: None,
                    });
                }
                Some(Outcome::Commit(c)) => {
                    if target.as_ref().is_some_and(|t| t.seq == c.seq) {
                        target = None;
                    }
                    if !visit(&c) {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        if let Some(t) = target {
            visit(&t);
        }
        Ok(())
    }

    /// The newest commit that stands (outcomes above the listed ones read by name: see
    /// `seqs`).
    pub fn latest(&self, key: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        self.latest_of(key, self.seqs(key)?)
    }

    /// The newest commit that stands as the listing has it, one request fewer than
    /// [`Self::latest`]: for what reports it or narrows a check at every start, per partition
    /// (thousands of a file job's), never where a commit passed over would be written again.
    pub fn latest_listed(&self, key: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        self.latest_of(key, self.listed_seqs(key)?)
    }

    /// The newest commit that stands among the outcomes numbered `seqs` (ascending).
    pub(in crate::commit) fn latest_of(
        &self,
        key: &str,
        seqs: Vec<u64>,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        let mut found = None;
        self.walk_seqs(key, seqs, |c| {
            found = Some(c.clone());
            false
        })?;
        Ok(found)
    }

    /// Every commit that stands, oldest first.
    pub fn history(&self, key: &str) -> Result<Vec<Checkpoint>, CheckpointError> {
        let mut out = Vec::new();
        self.walk(key, |c| {
            out.push(c.clone());
            true
        })?;
        out.reverse();
        Ok(out)
    }

    /// The commits that stand past `offset` (their next offset is beyond it), oldest first,
    /// and whether the walk reached one at or below it (else it ran out of records).
    pub fn standing_after(
        &self,
        key: &str,
        offset: u64,
    ) -> Result<(Vec<Checkpoint>, bool), CheckpointError> {
        let mut out = Vec::new();
        let mut reached = false;
        self.walk(key, |c| {
            if c.next_offset <= offset {
                reached = true;
                return false;
            }
            out.push(c.clone());
            true
        })?;
        out.reverse();
        Ok((out, reached))
    }

    /// The sequence number below which the partition's outcomes were pruned, if any were.
    pub fn pruned_below(&self, key: &str) -> Result<Option<u64>, CheckpointError> {
        Ok(self.oldest(key)?.filter(|&o| o > 1))
    }

    /// Whether every outcome of the partition is still recorded (none was pruned).
    pub fn history_complete(&self, key: &str) -> Result<bool, CheckpointError> {
        Ok(self.oldest(key)?.is_none_or(|o| o <= 1))
    }
}
