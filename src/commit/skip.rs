//! `sluice checkpoints skip`: an operator moves a partition's checkpoint forward past records
//! that cannot be read (a record batch the Kafka client refetches for ever), as one commit of
//! no data files under a new ownership term. The commit's one dead letter, class `skipped` at
//! the last offset skipped, names the range (the records' bytes were never read), as do the
//! commit's owner (`checkpoints show`) and the command's output.

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints, VERSION};
use super::fence::Claim;
use super::now_ms;
use crate::deadletter::DeadLetterWriter;
use crate::decode::{DeadLetter, Position};

/// What a skip did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where the partition stood (with no checkpoint: where its run starts it), and where it
    /// resumes now.
    pub from: u64,
    pub to: u64,
    /// The commit that records the skip.
    pub seq: u64,
    /// The partition had a checkpoint (else `from` is where its run starts it).
    pub stood: bool,
}

/// Where a skip to `to` starts: the partition's newest commit, when `to` lies past it, or,
/// for a partition with no commit yet, `first` (where its run starts it); else why a skip
/// there is refused.
fn short_of<'a>(
    key: &str,
    latest: Option<&'a Checkpoint>,
    first: u64,
    to: u64,
) -> Result<(u64, Option<&'a Checkpoint>), CheckpointError> {
    let refuse = |reason: String| CheckpointError::Skip {
        key: key.to_string(),
        reason,
    };
    match latest {
        None if to <= first => Err(refuse(format!(
            "it has no checkpoint and starts at offset {first}, at or past {to}: a skip never \
             moves a partition back"
        ))),
        None => Ok((first, None)),
        Some(c) if to <= c.next_offset => Err(refuse(format!(
            "it already stands at offset {}, at or past {to}",
            c.next_offset
        ))),
        Some(c) => Ok((c.next_offset, Some(c))),
    }
}

impl Checkpoints {
    /// Moves partition `key`'s checkpoint forward to `to`: takes a new term (a running owner is
    /// fenced at its next commit), reconciles, and commits the next sequence number with no
    /// data files and one dead letter, written to `dead`, that names the offsets skipped.
    /// A partition with no checkpoint (stuck on its first batch) gets its first one, and
    /// stood at `first`, where its run starts it (the caller's to tell). Refused when the
    /// partition already stands at or past `to` (a skip never moves a partition back).
    pub fn skip_to(
        &self,
        key: &str,
        to: u64,
        first: u64,
        who: &str,
        mut dead: DeadLetterWriter,
    ) -> Result<Skipped, CheckpointError> {
        // Refused before a term is taken where it can be (a refused skip fences nobody), and
        // again after the reconcile.
        short_of(key, self.latest(key)?.as_ref(), first, to)?;
        let owner = format!("{who} ({})", super::owner_id());
        let term = self.take_term(key, &owner)?;
        let r = self.reconcile(key, term, &owner)?;
        let (from, latest) = short_of(key, r.latest.as_ref(), first, to)?;
        let seq = r.next_seq;
        let range = match latest {
            Some(_) => format!("offsets {from} to {}", to - 1),
            None => format!("offsets {from} to {} (it had no checkpoint)", to - 1),
        };
        let owner = format!("{owner}: skipped {range}");
        let letter = || DeadLetter {
            position: Position {
                offset: to - 1,
                line: 0,
            },
            reason: format!(
                "skipped by {who}: {range} were not read (at most {} records)",
                to - from
            ),
            record: Vec::new(),
        };
        // A file is written before the claim that names it; a topic's message is sent after
        // it (it cannot be taken back), so a skip refused at the claim sends none.
        let to_topic = dead.file().is_none();
        if !to_topic {
            if let Err(e) = dead.write(&[letter()]) {
                let _ = dead.abort();
                return Err(e.into());
            }
        }
        let claim = Claim {
            version: VERSION,
            key: key.to_string(),
            seq,
            term,
            owner: owner.clone(),
            from_offset: from,
            next_offset: to,
            next_line: 0,
            files: Vec::new(),
            staged: Vec::new(),
            dead_letter_files: dead.file().map(str::to_string).into_iter().collect(),
            dead_letter_staged: dead.staged().map(str::to_string).into_iter().collect(),
            claimed_at_ms: now_ms(),
            undo: false,
        };
        if let Err(e) = self.claim(&claim) {
            let _ = dead.abort();
            return Err(e);
        }
        // From here a failure leaves the claim, which the next reconcile aborts (removing the
        // dead-letter file it names).
        if to_topic {
            dead.write(&[letter()])?;
        }
        let file = dead.file().map(str::to_string);
        dead.commit()?;
        let c = Checkpoint {
            version: VERSION,
            job: self.job().to_string(),
            key: key.to_string(),
            seq,
            next_offset: to,
            next_line: 0,
            files: Vec::new(),
            dead_letter_files: file.into_iter().collect(),
            rows: 0,
            dead_letters: 1,
            committed_at_ms: now_ms(),
            term,
            owner: owner.clone(),
            log: latest.and_then(|c| c.log.clone()),
            log_runs: latest.map(|c| c.log_runs.clone()).unwrap_or_default(),
            file: latest.and_then(|c| c.file.clone()),
            // The message before `to` is the one skipped: nothing of it was exported.
            record: None,
            behind: None,
        };
        self.seal(&claim, &c)?;
        self.release(key, seq, term, &owner)?;
        Ok(Skipped {
            from,
            to,
            seq,
            stood: latest.is_some(),
        })
    }
}
