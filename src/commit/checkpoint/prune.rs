//! Pruning a partition's outcome records: the newest kept, never the newest standing commit
//! or anything after it, under the newest term only; the horizon recorded first.

use super::*;

impl Checkpoints {
    /// Deletes a partition's outcome records older than the newest `keep`, never the newest
    /// standing commit or anything after it, and only while `term` is the newest term (a
    /// fenced writer prunes nothing; a roll-back keeps its target's resume point itself).
    /// Aborts are kept: a writer paused since before its sequence number was aborted could
    /// otherwise still seal it (a commit or a roll-back winning a name nobody holds any more).
    /// The horizon is recorded first (`pruned/<key>/<seq>`): a claim below it without an
    /// outcome was decided and pruned, never one to abort. Older horizon records go only
    /// after a whole pass, so a prune that stopped half-way (fenced, an error, a crash) leaves
    /// the next one scanning from where it began: records are deleted oldest first, and a
    /// roll-back never goes before the commits it undid.
    pub fn prune(&self, key: &str, keep: usize, term: u64) -> Result<(), CheckpointError> {
        self.check_term(key, term)?;
        let horizons = self.horizons(key)?;
        // Below the oldest horizon record only kept aborts remain: not read again.
        let from = horizons.first().copied().unwrap_or(0);
        let newest = horizons.last().copied().unwrap_or(0);
        let live: Vec<u64> = self.seqs(key)?.into_iter().filter(|s| *s >= from).collect();
        if live.len() <= keep {
            return Ok(());
        }
        let floor = self.latest(key)?.map_or(0, |c| c.seq);
        let cutoff = live[live.len() - keep].min(floor);
        if cutoff <= newest {
            return Ok(());
        }
        if horizons.is_empty() {
            // The first prune under horizons: a record of where its scan starts, the oldest
            // outcome (earlier versions pruned everything below it, so it is their horizon).
            self.put_horizon(key, live[0])?;
        }
        self.check_term(key, term)?;
        self.put_horizon(key, cutoff)?;
        for s in live.iter().filter(|s| **s < cutoff) {
            self.check_term(key, term)?;
            if matches!(self.outcome(key, *s)?, Some(Outcome::Abort(_))) {
                continue;
            }
            self.dest.delete(&self.record_path(key, *s))?;
        }
        // The pass is whole: older horizon records no longer mark unfinished work.
        for old in self.horizons(key)?.into_iter().filter(|h| *h < cutoff) {
            self.dest
                .delete(&format!("{}{old:012}", self.pruned_dir(key)))?;
        }
        Ok(())
    }

    pub(super) fn put_horizon(&self, key: &str, seq: u64) -> Result<(), CheckpointError> {
        match self
            .dest
            .put_atomic(&format!("{}{seq:012}", self.pruned_dir(key)), b"", true)
        {
            Ok(()) | Err(StoreError::Exists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn pruned_dir(&self, key: &str) -> String {
        format!("_sluice/{}/pruned/{key}/", self.job)
    }

    /// The horizons recorded by prunes, ascending.
    pub(super) fn horizons(&self, key: &str) -> Result<Vec<u64>, CheckpointError> {
        self.numbered(&self.pruned_dir(key), "")
    }

    /// Outcomes below this sequence number were pruned (aborts excepted).
    pub(in crate::commit) fn horizon(&self, key: &str) -> Result<Option<u64>, CheckpointError> {
        Ok(self.horizons(key)?.last().copied())
    }

    /// The sequence number below which outcomes were pruned: the newest recorded horizon,
    /// else (a layout pruned before horizons were recorded, which kept no abort) the oldest
    /// outcome.
    pub(in crate::commit) fn oldest(&self, key: &str) -> Result<Option<u64>, CheckpointError> {
        match self.horizon(key)? {
            Some(h) => Ok(Some(h)),
            None => Ok(self.listed_seqs(key)?.first().copied()),
        }
    }

    /// Deletes a file of a claim or commit, in the destination it belongs to.
    pub(in crate::commit) fn delete_file(
        &self,
        rel: &str,
        dead_letters: bool,
    ) -> Result<(), StoreError> {
        if dead_letters {
            self.dead.delete(rel)
        } else {
            self.dest.delete(rel)
        }
    }
}
