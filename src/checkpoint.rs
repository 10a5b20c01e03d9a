//! Checkpoints and the commit protocol's records in the destination.
//!
//! Layout under the destination: `_sluice/<job>/checkpoints/<partition key>/<seq>.json` (one
//! record per commit of a source partition: the next offset, the files the commit made visible,
//! a format version) and `_sluice/<job>/pending/<partition key>.json` (the files a commit is
//! about to make visible). A commit of a source partition:
//!
//! 1. write the pending record;
//! 2. complete the files;
//! 3. write the checkpoint record (create-only: a second writer for the same partition is
//!    fenced off);
//! 4. drop the pending record;
//! 5. tell the source.
//!
//! On start, a pending record newer than the partition's checkpoint means a commit died between
//! 1 and 3: its files are deleted before the partition resumes from its checkpoint, so no
//! record is ever visible twice. The destination's checkpoint is the source of truth.

use serde::{Deserialize, Serialize};

use crate::sink::{Destination, SinkError};

/// The checkpoint record format version.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("checkpoint record {path} is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "checkpoint {path} already exists: another process is committing partition {key} of \
         job {job} (two runs of one job must not share a partition)"
    )]
    Fenced {
        path: String,
        key: String,
        job: String,
    },
    #[error("no checkpoint {seq} for partition {key} (see `sluice checkpoints list`)")]
    Unknown { key: String, seq: u64 },
}

/// A file made visible by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the destination.
    pub path: String,
    pub first_offset: u64,
    pub last_offset: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// One commit of one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub job: String,
    /// The source partition's key (`<topic>-<partition>`).
    pub key: String,
    pub seq: u64,
    /// Where the partition resumes.
    pub next_offset: u64,
    /// Line number at `next_offset` (files; 0 when unknown).
    pub next_line: u64,
    pub files: Vec<FileEntry>,
    pub dead_letter_files: Vec<String>,
    pub rows: u64,
    pub dead_letters: u64,
    pub committed_at_ms: i64,
}

/// Files a commit is about to make visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub key: String,
    /// The checkpoint's next offset this commit starts from.
    pub from_offset: u64,
    pub next_offset: u64,
    pub files: Vec<String>,
    /// Dead-letter files, in the dead-letter destination.
    #[serde(default)]
    pub dead_letter_files: Vec<String>,
}

/// The checkpoint records of one job in one destination.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    dest: Destination,
    /// Where dead-letter files are (the same destination unless configured apart).
    dead: Destination,
    job: String,
}

impl Checkpoints {
    pub fn new(dest: Destination, job: &str) -> Self {
        Checkpoints {
            dead: dest.clone(),
            dest,
            job: job.to_string(),
        }
    }

    /// Dead-letter files live in another destination.
    pub fn with_dead_letters(mut self, dead: Destination) -> Self {
        self.dead = dead;
        self
    }

    pub fn job(&self) -> &str {
        &self.job
    }

    fn dir(&self, key: &str) -> String {
        format!("_sluice/{}/checkpoints/{key}/", self.job)
    }

    fn pending_path(&self, key: &str) -> String {
        format!("_sluice/{}/pending/{key}.json", self.job)
    }

    fn record_path(&self, key: &str, seq: u64) -> String {
        format!("{}{seq:012}.json", self.dir(key))
    }

    /// Partition keys that have checkpoints.
    pub fn keys(&self) -> Result<Vec<String>, CheckpointError> {
        let root = format!("_sluice/{}/checkpoints/", self.job);
        let mut keys: Vec<String> = self
            .dest
            .list(&root)?
            .iter()
            .filter_map(|p| p.strip_prefix(&root))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_string)
            .collect();
        keys.dedup();
        Ok(keys)
    }

    fn seqs(&self, key: &str) -> Result<Vec<u64>, CheckpointError> {
        let dir = self.dir(key);
        let mut seqs: Vec<u64> = self
            .dest
            .list(&dir)?
            .iter()
            .filter_map(|p| p.strip_prefix(&dir))
            .filter_map(|n| n.strip_suffix(".json"))
            .filter_map(|n| n.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    fn read(&self, key: &str, seq: u64) -> Result<Checkpoint, CheckpointError> {
        let path = self.record_path(key, seq);
        let bytes = self.dest.read(&path)?;
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: self.dest.display(&path),
            reason,
        };
        let c: Checkpoint = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a checkpoint record ({e})")))?;
        if c.version != VERSION {
            return Err(corrupt(format!(
                "format version {} (this sluice reads {VERSION})",
                c.version
            )));
        }
        if c.key != key || c.seq != seq {
            return Err(corrupt(format!(
                "it names partition {} seq {}, not {key} seq {seq}",
                c.key, c.seq
            )));
        }
        Ok(c)
    }

    /// The newest checkpoint of a partition.
    pub fn latest(&self, key: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        match self.seqs(key)?.last() {
            None => Ok(None),
            Some(&seq) => self.read(key, seq).map(Some),
        }
    }

    /// Every checkpoint of a partition, oldest first.
    pub fn history(&self, key: &str) -> Result<Vec<Checkpoint>, CheckpointError> {
        self.seqs(key)?
            .into_iter()
            .map(|s| self.read(key, s))
            .collect()
    }

    /// Step 1 of a commit.
    pub fn write_pending(&self, p: &Pending) -> Result<(), CheckpointError> {
        let bytes = serde_json::to_vec(p).expect("pending record serializes");
        self.dest
            .put_atomic(&self.pending_path(&p.key), &bytes, false)?;
        Ok(())
    }

    /// Step 3 of a commit: the checkpoint record, create-only.
    pub fn write(&self, c: &Checkpoint) -> Result<(), CheckpointError> {
        let path = self.record_path(&c.key, c.seq);
        let bytes = serde_json::to_vec_pretty(c).expect("checkpoint serializes");
        match self.dest.put_atomic(&path, &bytes, true) {
            Ok(()) => Ok(()),
            Err(SinkError::Exists { .. }) => Err(CheckpointError::Fenced {
                path: self.dest.display(&path),
                key: c.key.clone(),
                job: self.job.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Step 4 of a commit.
    pub fn clear_pending(&self, key: &str) -> Result<(), CheckpointError> {
        self.dest.delete(&self.pending_path(key))?;
        Ok(())
    }

    /// Before a partition resumes: removes the files of a commit that died before its
    /// checkpoint was written. Returns the files deleted.
    pub fn recover(
        &self,
        key: &str,
        latest: Option<&Checkpoint>,
    ) -> Result<Vec<String>, CheckpointError> {
        let path = self.pending_path(key);
        if !self.dest.exists(&path)? {
            return Ok(Vec::new());
        }
        let bytes = self.dest.read(&path)?;
        let p: Pending = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
            path: self.dest.display(&path),
            reason: format!("not a pending record ({e})"),
        })?;
        let committed = latest.map_or(0, |c| c.next_offset);
        let mut deleted = Vec::new();
        if p.next_offset > committed {
            for f in &p.files {
                self.dest.delete(f)?;
                deleted.push(f.clone());
            }
            for f in &p.dead_letter_files {
                self.dead.delete(f)?;
                deleted.push(f.clone());
            }
        }
        self.dest.delete(&path)?;
        Ok(deleted)
    }

    /// Rolls a partition back to checkpoint `seq` (replay): deletes the files of every later
    /// commit, then the later records, newest first. Returns the checkpoint now in force.
    pub fn roll_back_to(&self, key: &str, seq: u64) -> Result<Checkpoint, CheckpointError> {
        let seqs = self.seqs(key)?;
        if !seqs.contains(&seq) {
            return Err(CheckpointError::Unknown {
                key: key.to_string(),
                seq,
            });
        }
        for &s in seqs.iter().rev().filter(|s| **s > seq) {
            let c = self.read(key, s)?;
            for f in &c.files {
                self.dest.delete(&f.path)?;
            }
            for f in &c.dead_letter_files {
                self.dead.delete(f)?;
            }
            self.dest.delete(&self.record_path(key, s))?;
        }
        self.read(key, seq)
    }

    /// Deletes a partition's checkpoint records older than the newest `keep`.
    pub fn prune(&self, key: &str, keep: usize) -> Result<(), CheckpointError> {
        let seqs = self.seqs(key)?;
        if seqs.len() > keep {
            for s in &seqs[..seqs.len() - keep] {
                self.dest.delete(&self.record_path(key, *s))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(key: &str, seq: u64, next: u64, files: &[&str]) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            job: "j".into(),
            key: key.into(),
            seq,
            next_offset: next,
            next_line: 0,
            files: files
                .iter()
                .map(|f| FileEntry {
                    path: f.to_string(),
                    first_offset: 0,
                    last_offset: 0,
                    rows: 1,
                    bytes: 1,
                })
                .collect(),
            dead_letter_files: vec![],
            rows: 1,
            dead_letters: 0,
            committed_at_ms: 0,
        }
    }

    fn setup() -> (tempfile::TempDir, tokio::runtime::Runtime, Destination) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        (dir, rt, dest)
    }

    #[test]
    fn latest_history_fencing_and_rollback() {
        let (_d, _rt, dest) = setup();
        let c = Checkpoints::new(dest.clone(), "j");
        assert!(c.latest("t-0").unwrap().is_none());
        for (seq, f) in [(1, "a"), (2, "b"), (3, "c")] {
            dest.put_atomic(f, b"x", false).unwrap();
            c.write(&cp("t-0", seq, seq * 10, &[f])).unwrap();
        }
        assert_eq!(c.latest("t-0").unwrap().unwrap().next_offset, 30);
        assert_eq!(c.history("t-0").unwrap().len(), 3);
        assert_eq!(c.keys().unwrap(), vec!["t-0".to_string()]);
        let e = c.write(&cp("t-0", 3, 99, &[])).unwrap_err();
        assert!(matches!(e, CheckpointError::Fenced { .. }), "{e}");
        let now = c.roll_back_to("t-0", 1).unwrap();
        assert_eq!(now.next_offset, 10);
        assert!(dest.exists("a").unwrap());
        assert!(!dest.exists("b").unwrap() && !dest.exists("c").unwrap());
        assert!(matches!(
            c.roll_back_to("t-0", 7).unwrap_err(),
            CheckpointError::Unknown { .. }
        ));
    }

    #[test]
    fn recover_deletes_files_of_an_unfinished_commit_only() {
        let (_d, _rt, dest) = setup();
        let c = Checkpoints::new(dest.clone(), "j");
        c.write(&cp("t-0", 1, 10, &[])).unwrap();
        dest.put_atomic("new.parquet", b"x", false).unwrap();
        c.write_pending(&Pending {
            key: "t-0".into(),
            from_offset: 10,
            next_offset: 20,
            files: vec!["new.parquet".into()],
            dead_letter_files: vec![],
        })
        .unwrap();
        let latest = c.latest("t-0").unwrap();
        assert_eq!(
            c.recover("t-0", latest.as_ref()).unwrap(),
            vec!["new.parquet"]
        );
        assert!(!dest.exists("new.parquet").unwrap());
        // A pending record whose checkpoint was written: files stay.
        dest.put_atomic("kept.parquet", b"x", false).unwrap();
        c.write_pending(&Pending {
            key: "t-0".into(),
            from_offset: 0,
            next_offset: 10,
            files: vec!["kept.parquet".into()],
            dead_letter_files: vec![],
        })
        .unwrap();
        assert!(c.recover("t-0", latest.as_ref()).unwrap().is_empty());
        assert!(dest.exists("kept.parquet").unwrap());
        assert!(c.recover("t-0", latest.as_ref()).unwrap().is_empty());
    }

    #[test]
    fn damaged_records_are_clear_errors() {
        let (_d, _rt, dest) = setup();
        let c = Checkpoints::new(dest.clone(), "j");
        dest.put_atomic(
            "_sluice/j/checkpoints/t-0/000000000001.json",
            b"{oops",
            false,
        )
        .unwrap();
        let e = c.latest("t-0").unwrap_err().to_string();
        assert!(
            e.contains("000000000001.json") && e.contains("damaged"),
            "{e}"
        );
    }
}
