//! Checkpoint records: the outcome of each sequence number of a source partition's commits,
//! under `_sluice/<job>/checkpoints/<partition key>/<seq>.json`. An outcome is a commit (the
//! next offset, the files the commit made visible, the term and owner that made it) or an
//! abort (the fence of a claim that did not finish; see `fence.rs`). Each is written
//! create-only, so exactly one outcome wins a sequence number. The newest commit is where the
//! partition resumes.

use serde::{Deserialize, Serialize};

use crate::store::{Destination, StoreError, RECORD_CAP};

/// The checkpoint record format version.
pub const VERSION: u32 = 1;

/// A file made visible by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the destination.
    pub path: String,
    pub first_offset: u64,
    pub last_offset: u64,
    pub rows: u64,
    pub bytes: u64,
    /// A table's partition values of the file (`[sink] table`; the template's plain fields),
    /// as Delta writes them (`None`: null).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub partition: std::collections::BTreeMap<String, Option<String>>,
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
    /// The ownership term of the writer (0 in records of older versions).
    #[serde(default)]
    pub term: u64,
    /// The writer's owner id.
    #[serde(default)]
    pub owner: String,
    /// The push log whose positions `next_offset` counts (its [`crate::wal::Wal::id`], or a
    /// memory log's id for the process); none for other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The last runs of that log's folder, the writer's last (run, the log's end when it
    /// began; [`crate::wal::Runs::tail`]): a copy of the log's folder has the same identity
    /// but runs of its own. Empty for other sources, memory logs and records of older
    /// versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_runs: Vec<(String, u64)>,
    /// A file partition's file, as the writer's run found it: a start that resumes here
    /// checks the file begins so (written under the writer's term, as the offset is). None
    /// for other sources and records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileHead>,
    /// A Kafka partition's last message before `next_offset`, as the writer exported it: a
    /// start that resumes here reads it again and compares (a topic re-created since holds
    /// another). None for other sources, records of older versions, and a commit whose last
    /// message could not be marked (a record batch the client could not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<crate::decode::meta::RecordMark>,
    /// A file partition's bytes right before `next_offset` (up to 4 KiB, decompressed), as
    /// the writer read them: a start that resumes here reads them again and compares (a file
    /// rewritten in place, its first 4 KiB alike, is another one). None for other sources,
    /// records of older versions, and a commit whose last record was passed over (longer
    /// than the record limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<FileHead>,
}

impl Checkpoint {
    /// What identifies the record before `next_offset`, for the source to compare where it
    /// resumes: a Kafka message's mark, or a file's bytes before the offset.
    pub fn resume_mark(&self) -> Option<crate::decode::meta::RecordMark> {
        if let Some(b) = &self.behind {
            let len = b.len as u64;
            return Some(crate::decode::meta::RecordMark {
                offset: self.next_offset.checked_sub(len)?,
                timestamp_ms: None,
                len,
                crc: b.crc,
            });
        }
        self.record.filter(|m| m.offset < self.next_offset)
    }
}

impl Checkpoint {
    /// The kind of source whose positions `next_offset` counts, where the record tells:
    /// `push` (a log's), `kafka` (a message's mark), `file` (a file's start); `None` for
    /// records of older versions and Kafka commits with no mark.
    pub fn written_by(&self) -> Option<&'static str> {
        if self.log.is_some() || !self.log_runs.is_empty() {
            Some("push")
        } else if self.record.is_some() {
            Some("kafka")
        } else if self.file.is_some() {
            Some("file")
        } else {
            None
        }
    }
}

/// The first bytes of a file (up to 4 KiB, decompressed): how many, and their CRC-32.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHead {
    pub len: usize,
    pub crc: u32,
}

/// The outcome "abort" of a sequence number: its claim was fenced, its files removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abort {
    pub version: u32,
    pub key: String,
    pub seq: u64,
    /// Who fenced the claim, and in which term.
    pub aborted_by: String,
    pub term: u64,
    pub at_ms: i64,
}

/// The outcome "roll back" of a sequence number (`run --from-checkpoint`): the commits after
/// `rollback_to` and before this one are undone; the partition resumes after `rollback_to`.
/// Their files are listed in this sequence number's claim, which is deleted once they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub version: u32,
    pub key: String,
    pub seq: u64,
    pub rollback_to: u64,
    /// The target's resume point, kept here too: pruning may delete the target's record.
    pub next_offset: u64,
    pub next_line: u64,
    pub owner: String,
    pub term: u64,
    pub at_ms: i64,
}

/// What was decided for one sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    Abort(Abort),
    Rollback(Rollback),
    Commit(Box<Checkpoint>),
}

impl Outcome {
    pub fn term(&self) -> u64 {
        match self {
            Outcome::Abort(a) => a.term,
            Outcome::Rollback(r) => r.term,
            Outcome::Commit(c) => c.term,
        }
    }
    /// When it was decided, by its writer's clock.
    pub fn at_ms(&self) -> i64 {
        match self {
            Outcome::Abort(a) => a.at_ms,
            Outcome::Rollback(r) => r.at_ms,
            Outcome::Commit(c) => c.committed_at_ms,
        }
    }
    pub fn owner(&self) -> &str {
        match self {
            Outcome::Abort(a) => &a.aborted_by,
            Outcome::Rollback(r) => &r.owner,
            Outcome::Commit(c) => &c.owner,
        }
    }
    fn key_seq(&self) -> (&str, u64, u32) {
        match self {
            Outcome::Abort(a) => (&a.key, a.seq, a.version),
            Outcome::Rollback(r) => (&r.key, r.seq, r.version),
            Outcome::Commit(c) => (&c.key, c.seq, c.version),
        }
    }
}

/// The checkpoint and fence records of one job in one destination.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    pub(super) dest: Destination,
    /// Where dead-letter files are (the same destination unless configured apart).
    pub(super) dead: Destination,
    pub(super) job: String,
    aborts: aborts::KnownAborts,
    /// The longest record written: what is read back ([`RECORD_CAP`]; less in a test).
    cap: u64,
}

impl Checkpoints {
    pub fn new(dest: Destination, job: &str) -> Self {
        Checkpoints {
            dead: dest.clone(),
            dest,
            job: job.to_string(),
            aborts: Default::default(),
            cap: RECORD_CAP,
        }
    }

    /// Records written up to `cap` bytes only (a test's, to reach the limit cheaply).
    #[cfg(test)]
    pub(super) fn with_cap(mut self, cap: u64) -> Self {
        self.cap = cap;
        self
    }

    /// Dead-letter files live in another destination.
    pub fn with_dead_letters(mut self, dead: Destination) -> Self {
        self.dead = dead;
        self
    }

    /// The destination the records (and the job's files) are in.
    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    pub fn job(&self) -> &str {
        &self.job
    }

    pub(super) fn dir(&self, key: &str) -> String {
        format!("_sluice/{}/checkpoints/{key}/", self.job)
    }

    pub(super) fn record_path(&self, key: &str, seq: u64) -> String {
        format!("{}{seq:012}.json", self.dir(key))
    }

    /// `value` as the record at `path` holds it, refused past what is read back
    /// ([`RECORD_CAP`]). `commit::bounds` shows no commit reaches it; a roll-back's claim can.
    pub(super) fn record_bytes(
        &self,
        path: &str,
        value: &impl Serialize,
    ) -> Result<Vec<u8>, CheckpointError> {
        let bytes = serde_json::to_vec_pretty(value).expect("a record serializes");
        if bytes.len() as u64 > self.cap {
            return Err(CheckpointError::TooLarge {
                path: self.dest.display(path),
                bytes: bytes.len() as u64,
                cap: self.cap,
            });
        }
        Ok(bytes)
    }

    /// Whether a commit of the job stands in any partition. Outcomes that are only aborts
    /// (a claim fenced, a commit that died half-way: nothing of it is in the folder) are no
    /// commit. One listing request when there is no outcome at all; else the partitions'
    /// folders, and each one's outcomes from the newest until a commit (one, as a rule).
    pub fn committed(&self) -> Result<bool, CheckpointError> {
        let root = format!("_sluice/{}/checkpoints/", self.job);
        if !self.dest.any(&root)? {
            return Ok(false);
        }
        for key in self.dest.folders(&root)? {
            if self.latest(&key)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Partition keys that have checkpoint records: the folders of `checkpoints/` (one
    /// delimited listing; every record of every partition was listed before, once per new
    /// file partition of a file job's start).
    pub fn keys(&self) -> Result<Vec<String>, CheckpointError> {
        let root = format!("_sluice/{}/checkpoints/", self.job);
        let mut keys = self.dest.folders(&root)?;
        // A local folder can be empty (a crash before its first record's rename); an object
        // store has no empty folders.
        if self.dest.local_root().is_some() {
            let mut held = Vec::with_capacity(keys.len());
            for k in keys {
                if self.dest.any(&format!("{root}{k}/"))? {
                    held.push(k);
                }
            }
            keys = held;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Sequence numbers with an outcome, ascending: those listed, and those above them read
    /// by name until one is missing. A listing can lag behind the store (a file system's
    /// cached folder on NFS, a store whose listings are eventually consistent): a newest
    /// commit sealed before it but not listed was passed over by every reader (the resume
    /// point, a table's catch-up, a roll-back's undo list, a restored spill's place), and the
    /// partition wrote its records again, or its table never named them. One read of a name
    /// not written when the listing holds everything. (A number missing between listed ones
    /// is not looked for: aborts are kept below pruned commits, so gaps are normal there.)
    pub(super) fn seqs(&self, key: &str) -> Result<Vec<u64>, CheckpointError> {
        let mut seqs = self.listed_seqs(key)?;
        let top = seqs.last().copied().unwrap_or(0);
        self.outcomes_above(key, top, &mut seqs)?;
        Ok(seqs)
    }

    /// The sequence numbers the listing holds, ascending (see [`Self::seqs`]): for what only
    /// reports or narrows a check, read per partition at every start.
    pub(super) fn listed_seqs(&self, key: &str) -> Result<Vec<u64>, CheckpointError> {
        self.numbered(&self.dir(key), ".json")
    }

    /// Appends to `seqs` the numbers above `top` that have an outcome, read by name until one
    /// is missing.
    pub(super) fn outcomes_above(
        &self,
        key: &str,
        mut top: u64,
        seqs: &mut Vec<u64>,
    ) -> Result<(), CheckpointError> {
        while let Some(next) = top.checked_add(1) {
            if self.outcome(key, next)?.is_none() {
                break;
            }
            seqs.push(next);
            top = next;
        }
        Ok(())
    }

    /// The numbers naming the records `<dir><n><suffix>`, ascending.
    fn numbered(&self, dir: &str, suffix: &str) -> Result<Vec<u64>, CheckpointError> {
        let mut ns: Vec<u64> = self
            .dest
            .list(dir)?
            .iter()
            .filter_map(|p| p.strip_prefix(dir))
            .filter_map(|n| n.strip_suffix(suffix))
            .filter_map(|n| n.parse().ok())
            .collect();
        ns.sort_unstable();
        Ok(ns)
    }

    /// The outcome of `seq`, if one was written.
    pub fn outcome(&self, key: &str, seq: u64) -> Result<Option<Outcome>, CheckpointError> {
        if let Some(a) = self.aborts.get(key, seq) {
            return Ok(Some(Outcome::Abort(a)));
        }
        let path = self.record_path(key, seq);
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: self.dest.display(&path),
            reason,
        };
        let bytes = match self.dest.read_record(&path) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(StoreError::TooLarge { size, .. }) => {
                return Err(corrupt(format!(
                    "{size} bytes, more than any checkpoint record"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let o: Outcome = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a checkpoint record ({e})")))?;
        let (k, s, version) = o.key_seq();
        if version != VERSION {
            return Err(corrupt(format!(
                "format version {version} (this sluice reads {VERSION})"
            )));
        }
        if k != key || s != seq {
            return Err(corrupt(format!(
                "it names partition {k} seq {s}, not {key} seq {seq}"
            )));
        }
        // Offsets are Kafka's (signed 64-bit) or a log's: past that, damaged (a seek to it
        // would read as a negative offset, taken for one the broker deleted).
        if let Outcome::Commit(c) = &o {
            if c.next_offset > i64::MAX as u64 {
                return Err(corrupt(format!(
                    "its next offset {} is past any offset",
                    c.next_offset
                )));
            }
        }
        if let Outcome::Abort(a) = &o {
            self.aborts.keep(a);
        }
        Ok(Some(o))
    }

    /// Records `c` as a sealed commit without its claim (tests of what reads them).
    #[cfg(test)]
    pub(crate) fn record_for_tests(&self, c: &Checkpoint) {
        assert!(self
            .decide(&Outcome::Commit(Box::new(c.clone())))
            .unwrap()
            .is_none());
    }

    /// Records sequence number `seq` as aborted, or a prune's horizon at `seq` (tests).
    #[cfg(test)]
    pub(crate) fn record_abort_for_tests(&self, key: &str, seq: u64, horizon: bool) {
        if horizon {
            let p = format!("{}{seq:012}", self.pruned_dir(key));
            self.dest.put_atomic(&p, b"", true).unwrap();
            return;
        }
        let a = Abort {
            version: VERSION,
            key: key.into(),
            seq,
            aborted_by: "test".into(),
            term: 1,
            at_ms: 1,
        };
        assert!(self.decide(&Outcome::Abort(a)).unwrap().is_none());
    }

    /// Writes an outcome create-only. `Ok(None)` when it won; `Ok(Some(winner))` when another
    /// outcome was there first.
    pub(super) fn decide(&self, o: &Outcome) -> Result<Option<Outcome>, CheckpointError> {
        let (key, seq, _) = o.key_seq();
        let path = self.record_path(key, seq);
        let bytes = self.record_bytes(&path, o)?;
        match self.dest.put_atomic(&path, &bytes, true) {
            Ok(()) => Ok(None),
            Err(StoreError::Exists { .. }) => {
                #[cfg(test)]
                crate::hooks::at("decide: after a refused write");
                match self.outcome(key, seq)? {
                    // A write reported as failed may have landed: then the winner is this one,
                    // once its name is durable (its own folder sync may be what failed).
                    Some(w) if &w == o => {
                        self.dest.sync_folder(&self.dir(key))?;
                        Ok(None)
                    }
                    // Another writer's, whose own folder sync may have failed: what the caller
                    // decides on it (a claim settled, files removed) waits until it is durable.
                    Some(w) => {
                        self.dest.sync_folder(&self.dir(key))?;
                        Ok(Some(w))
                    }
                    // There when this write was refused, gone now: a newer owner pruned it
                    // (this writer is fenced), or the store refused the write for a conflicting
                    // one still under way (S3 answers 409 to `If-None-Match` then). Neither is
                    // damage: fenced, or a store error that is retried.
                    None => {
                        self.check_term(key, o.term())?;
                        Err(StoreError::Io {
                            path: self.dest.display(&path),
                            source: std::io::Error::other(
                                "the record was there when this write was refused, and is gone \
                                 when read back",
                            ),
                        }
                        .into())
                    }
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

mod aborts;
mod error;
mod prune;
mod walk;

pub use error::CheckpointError;

#[cfg(test)]
impl Checkpoint {
    /// Commit `seq` of partition `key` of job `job` (term 1, owner `o`), ending before
    /// `next_offset` (at least 1), with one 10-row file per path.
    pub(crate) fn for_tests(
        job: &str,
        key: &str,
        seq: u64,
        next_offset: u64,
        files: &[&str],
    ) -> Self {
        Checkpoint {
            version: VERSION,
            job: job.into(),
            key: key.into(),
            seq,
            next_offset,
            next_line: 0,
            files: files
                .iter()
                .map(|p| FileEntry {
                    path: p.to_string(),
                    first_offset: 0,
                    last_offset: next_offset - 1,
                    rows: 10,
                    bytes: 100,
                    partition: Default::default(),
                })
                .collect(),
            dead_letter_files: Vec::new(),
            rows: 10,
            dead_letters: 0,
            committed_at_ms: 1,
            term: 1,
            owner: "o".into(),
            log: None,
            log_runs: Vec::new(),
            file: None,
            record: None,
            behind: None,
        }
    }
}
