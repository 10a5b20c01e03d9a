//! `sluice checkpoints skip`: an operator moves a partition's checkpoint forward past records
//! that cannot be read (a record batch the Kafka client refetches for ever), as one commit of
//! no files under a new ownership term. The records skipped are named in the commit's owner
//! (`checkpoints show`) and in the command's output; nothing else records them.

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints, VERSION};
use super::fence::Claim;
use super::now_ms;

/// What a skip did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where the partition stood, and where it resumes now.
    pub from: u64,
    pub to: u64,
    /// The commit that records the skip.
    pub seq: u64,
}

/// The partition's newest commit, when `to` lies past it; else why a skip there is refused.
fn short_of<'a>(
    key: &str,
    latest: Option<&'a Checkpoint>,
    to: u64,
) -> Result<&'a Checkpoint, CheckpointError> {
    let refuse = |reason: String| CheckpointError::Skip {
        key: key.to_string(),
        reason,
    };
    match latest {
        None => Err(refuse(
            "it has no checkpoint yet (`sluice checkpoints list` names those that have)".into(),
        )),
        Some(c) if to <= c.next_offset => Err(refuse(format!(
            "it already stands at offset {}, at or past {to}",
            c.next_offset
        ))),
        Some(c) => Ok(c),
    }
}

impl Checkpoints {
    /// Moves partition `key`'s checkpoint forward to `to`: takes a new term (a running owner is
    /// fenced at its next commit), reconciles, and commits the next sequence number with no
    /// files. Refused when the partition has no checkpoint (nothing to say where it stands) or
    /// already stands at or past `to` (a skip never moves a partition back).
    pub fn skip_to(&self, key: &str, to: u64, who: &str) -> Result<Skipped, CheckpointError> {
        // Refused before a term is taken where it can be (a refused skip fences nobody), and
        // again after the reconcile.
        short_of(key, self.latest(key)?.as_ref(), to)?;
        let owner = format!("{who} ({})", super::owner_id());
        let term = self.take_term(key, &owner)?;
        let r = self.reconcile(key, term, &owner)?;
        let latest = short_of(key, r.latest.as_ref(), to)?;
        let seq = r.next_seq;
        let owner = format!(
            "{owner}: skipped offsets {} to {}",
            latest.next_offset,
            to - 1
        );
        let claim = Claim {
            version: VERSION,
            key: key.to_string(),
            seq,
            term,
            owner: owner.clone(),
            from_offset: latest.next_offset,
            next_offset: to,
            next_line: 0,
            files: Vec::new(),
            staged: Vec::new(),
            dead_letter_files: Vec::new(),
            dead_letter_staged: Vec::new(),
            claimed_at_ms: now_ms(),
            undo: false,
        };
        self.claim(&claim)?;
        let c = Checkpoint {
            version: VERSION,
            job: self.job().to_string(),
            key: key.to_string(),
            seq,
            next_offset: to,
            next_line: 0,
            files: Vec::new(),
            dead_letter_files: Vec::new(),
            rows: 0,
            dead_letters: 0,
            committed_at_ms: now_ms(),
            term,
            owner: owner.clone(),
            log: latest.log.clone(),
            // Skipped to a position a later run of the log may have appended: counted as the
            // log's own, whichever run it was.
            log_run: None,
        };
        self.seal(&claim, &c)?;
        self.release(key, seq, term, &owner)?;
        Ok(Skipped {
            from: latest.next_offset,
            to,
            seq,
        })
    }
}
