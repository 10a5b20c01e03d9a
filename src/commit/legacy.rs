//! Destinations written by earlier versions: a file partition's checkpoints keyed by its
//! place in `paths`, and the single pending record per partition that came before claims.

use serde::Deserialize;

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints, Outcome, VERSION};
use super::now_ms;

impl Checkpoints {
    /// A file partition's checkpoints were kept under `<stem>-<index in paths>` by earlier
    /// versions: a partition with no records of its own continues from such a key (after
    /// reconciling it: a commit that did not finish there is cleaned up first) with a commit
    /// of no files that names where it came from. With several such keys, the one of the
    /// file's current `index` is taken, else the start stops naming them. Returns the key
    /// carried over. `keys`: the partition keys, listed at the first partition that needs
    /// them and kept for the others (a start's partitions ask one after another; the keys
    /// earlier versions left do not change meanwhile).
    pub fn carry_over_legacy(
        &self,
        (key, stem, index): (&str, &str, usize),
        keys: &mut Option<Vec<String>>,
    ) -> Result<Option<String>, CheckpointError> {
        if self.latest_listed(key)?.is_some() || !self.listing(key)?.claims.is_empty() {
            return Ok(None);
        }
        let prefix = format!("{stem}-");
        let known = match keys {
            Some(k) => k,
            None => keys.insert(self.keys()?),
        };
        let legacy: Vec<String> = known
            .iter()
            .filter(|k| *k != key)
            .filter(|k| {
                k.strip_prefix(&prefix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .cloned()
            .collect();
        let old = match legacy.as_slice() {
            [] => return Ok(None),
            [one] => one.clone(),
            many => {
                let here = format!("{stem}-{index}");
                if !many.contains(&here) {
                    return Err(CheckpointError::Corrupt {
                        path: self.dest.display(&format!("_sluice/{}/checkpoints/", self.job)),
                        reason: format!(
                            "partition {key} could continue from any of {many:?} (checkpoints of an \
                             earlier version, keyed by place in `paths`): move all but the right \
                             one aside"
                        ),
                    });
                }
                here
            }
        };
        let owner = format!("{} (carried over from {old})", super::owner_id());
        let old_term = self.take_term(&old, &owner)?;
        let Some(from) = self.reconcile(&old, old_term, &owner)?.latest else {
            return Ok(None);
        };
        let term = self.take_term(key, &owner)?;
        let c = Checkpoint {
            version: VERSION,
            job: self.job.clone(),
            key: key.to_string(),
            seq: 1,
            next_offset: from.next_offset,
            next_line: from.next_line,
            files: Vec::new(),
            dead_letter_files: Vec::new(),
            rows: 0,
            dead_letters: 0,
            committed_at_ms: now_ms(),
            term,
            owner,
            log: from.log.clone(),
            log_runs: from.log_runs.clone(),
            file: from.file.clone(),
            record: from.record,
            behind: from.behind.clone(),
        };
        Ok(match self.decide(&Outcome::Commit(Box::new(c)))? {
            None => Some(old),
            Some(_) => None, // another process did it first
        })
    }

    /// Destinations written by sluice before the fence kept one pending record per partition
    /// (`_sluice/<job>/pending/<key>.json`): a commit that died before its checkpoint left its
    /// files listed there. They are removed as that version did, once.
    pub(super) fn finish_legacy_pending(
        &self,
        key: &str,
        latest: Option<&Checkpoint>,
        removed: &mut Vec<String>,
    ) -> Result<(), CheckpointError> {
        #[derive(Deserialize)]
        struct Pending {
            next_offset: u64,
            files: Vec<String>,
            #[serde(default)]
            dead_letter_files: Vec<String>,
        }
        let path = format!("_sluice/{}/pending/{key}.json", self.job);
        let Some(p) = self.read_json::<Pending>(&path, "pending")? else {
            return Ok(());
        };
        if p.next_offset > latest.map_or(0, |c| c.next_offset) {
            for f in &p.files {
                self.delete_file(f, false)?;
                removed.push(f.clone());
            }
            for f in &p.dead_letter_files {
                self.delete_file(f, true)?;
                removed.push(f.clone());
            }
        }
        self.dest.delete(&path)?;
        Ok(())
    }
}
