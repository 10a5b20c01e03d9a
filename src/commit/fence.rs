//! The writer fence: ownership terms and claims of a source partition, under
//! `_sluice/<job>/fence/<partition key>/` (`term-<n>.json`, `claim-<seq>.json`).
//!
//! - A process that starts owning a partition (start, group assignment) takes the next
//!   **term**, create-only; a writer that sees a newer term than its own is fenced.
//! - A commit **claims** its sequence number, create-only, before anything of it is visible.
//!   The claim lists the files it will publish (their final names, unique to the attempt) and,
//!   for local files, their temporary names.
//! - **Reconcile** (start, assignment, after a failed commit): every claim without an outcome is
//!   decided "abort" (create-only: if its writer's commit won first, that commit stands), its
//!   temporary files are deleted (a fenced writer's rename then fails) and whatever of it became
//!   visible is deleted. Files of aborted claims are deleted again at each later commit, in
//!   case a paused writer completed an upload after its fence (object stores).

use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, CheckpointError, Checkpoints, Outcome, VERSION};
use super::now_ms;
use crate::store::StoreError;

mod settle;

/// A claim on one sequence number of a partition's commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub version: u32,
    pub key: String,
    pub seq: u64,
    pub term: u64,
    pub owner: String,
    /// The checkpoint's next offset this commit starts from, and where it ends.
    pub from_offset: u64,
    pub next_offset: u64,
    /// Line number at `next_offset` (files; 0 when unknown).
    #[serde(default)]
    pub next_line: u64,
    /// Final names of the data files (relative to the destination).
    pub files: Vec<String>,
    /// Temporary names of local data files.
    #[serde(default)]
    pub staged: Vec<String>,
    /// Dead-letter files and their temporary names, in the dead-letter destination.
    #[serde(default)]
    pub dead_letter_files: Vec<String>,
    #[serde(default)]
    pub dead_letter_staged: Vec<String>,
    pub claimed_at_ms: i64,
    /// A roll-back's claim: the files listed are committed ones to delete if the roll-back
    /// wins, and to keep if it does not.
    #[serde(default)]
    pub undo: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Term {
    version: u32,
    key: String,
    term: u64,
    owner: String,
    at_ms: i64,
}

/// Where a partition stands after reconciling with the store.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The newest commit.
    pub latest: Option<Checkpoint>,
    /// The sequence number the next commit claims.
    pub next_seq: u64,
    /// Files removed: of commits that did not finish, or published after their fence.
    pub removed: Vec<String>,
    /// A claim of the reconciling owner's own did not win its sequence number (aborted now
    /// or before): a publish of that commit may have been under way, and on an object store
    /// may still land.
    pub lost_own: bool,
    /// This reconcile aborted a claim that had no outcome, or found a lost claim claimed or
    /// decided recently ([`RECENT_SKEW`]): its writer (this process, or one that died, failed
    /// or was paused) may have an upload under way that lands later.
    pub may_land_late: bool,
}

/// How much the clocks of the hosts writing a job's claims and outcomes may differ: a lost
/// claim claimed or decided less than a destination's late window plus this long ago (by
/// any of these clocks) may still have an upload under way.
pub const RECENT_SKEW: std::time::Duration = std::time::Duration::from_secs(600);

/// What one settle of a partition's claims did.
#[derive(Debug, Default)]
pub struct Settled {
    /// Files removed.
    pub removed: Vec<String>,
    /// See [`Reconciled::lost_own`].
    pub lost_own: bool,
    /// See [`Reconciled::may_land_late`].
    pub may_land_late: bool,
}

/// Terms kept per partition (older ones are deleted when a new one is taken).
const KEEP_TERMS: u64 = 8;

/// How often taking a term is retried when other processes take one at the same moment.
const TERM_ATTEMPTS: usize = 32;

/// What one listing of a partition's fence folder holds.
pub(super) struct Listing {
    pub(super) max_term: u64,
    pub(super) terms: Vec<u64>,
    pub(super) claims: Vec<u64>,
}

impl Checkpoints {
    pub(super) fn fence_dir(&self, key: &str) -> String {
        format!("_sluice/{}/fence/{key}/", self.job)
    }

    pub(super) fn term_path(&self, key: &str, term: u64) -> String {
        format!("{}term-{term:012}.json", self.fence_dir(key))
    }

    pub(super) fn claim_path(&self, key: &str, seq: u64) -> String {
        format!("{}claim-{seq:012}.json", self.fence_dir(key))
    }

    pub(super) fn listing(&self, key: &str) -> Result<Listing, CheckpointError> {
        let dir = self.fence_dir(key);
        let mut l = Listing {
            max_term: 0,
            terms: Vec::new(),
            claims: Vec::new(),
        };
        for p in self.dest.list(&dir)? {
            let Some(name) = p.strip_prefix(&dir).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(t) = name.strip_prefix("term-").and_then(|n| n.parse().ok()) {
                l.terms.push(t);
                l.max_term = l.max_term.max(t);
            } else if let Some(s) = name.strip_prefix("claim-").and_then(|n| n.parse().ok()) {
                l.claims.push(s);
            }
        }
        l.claims.sort_unstable();
        l.terms.sort_unstable();
        Ok(l)
    }

    pub(super) fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Option<T>, CheckpointError> {
        let bytes = match self.dest.read_record(path) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(crate::store::StoreError::TooLarge { size, .. }) => {
                return Err(CheckpointError::Corrupt {
                    path: self.dest.display(path),
                    reason: format!("{size} bytes, more than any {what} record"),
                })
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                path: self.dest.display(path),
                reason: format!("not a {what} record ({e})"),
            })
    }

    pub(super) fn fenced(&self, key: &str, theirs: u64, ours: u64) -> CheckpointError {
        let owner = self
            .read_json::<Term>(&self.term_path(key, theirs), "term")
            .ok()
            .flatten()
            .map_or_else(|| "(unknown)".to_string(), |t| t.owner);
        CheckpointError::Fenced {
            key: key.to_string(),
            job: self.job.clone(),
            owner,
            theirs,
            ours,
        }
    }

    /// Why `claim` lost its sequence number to `winner`: fenced when the winner holds a newer
    /// term, else taken (the claim's writer reconciles and replays).
    pub(super) fn lost_to(&self, claim: &Claim, winner: &Outcome) -> CheckpointError {
        if winner.term() > claim.term {
            self.fenced(&claim.key, winner.term(), claim.term)
        } else {
            CheckpointError::Taken {
                key: claim.key.clone(),
                seq: claim.seq,
                owner: winner.owner().to_string(),
            }
        }
    }

    /// Takes the partition's next ownership term for `owner`: every writer of an older term is
    /// fenced from now on.
    pub fn take_term(&self, key: &str, owner: &str) -> Result<u64, CheckpointError> {
        for _ in 0..TERM_ATTEMPTS {
            let l = self.listing(key)?;
            // A term of u64::MAX is no term this code takes: named, not wrapped to 0 (which
            // every later registration would be fenced by, for good).
            let term = l
                .max_term
                .checked_add(1)
                .ok_or_else(|| CheckpointError::Corrupt {
                    path: self.dest.display(&self.fence_dir(key)),
                    reason: format!("a term of {} leaves no next term", l.max_term),
                })?;
            let t = Term {
                version: VERSION,
                key: key.to_string(),
                term,
                owner: owner.to_string(),
                at_ms: now_ms(),
            };
            let bytes = serde_json::to_vec(&t).expect("a term serializes");
            match self
                .dest
                .put_atomic(&self.term_path(key, term), &bytes, true)
            {
                Ok(()) => {}
                Err(StoreError::Exists { .. }) => {
                    // Ours, if a write reported as failed landed; else someone else's.
                    let there = self.read_json::<Term>(&self.term_path(key, term), "term")?;
                    if there.is_none_or(|x| x.owner != owner) {
                        continue;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            for old in l
                .terms
                .iter()
                .filter(|o| o.saturating_add(KEEP_TERMS) < term)
            {
                let _ = self.dest.delete(&self.term_path(key, *old));
            }
            return Ok(term);
        }
        Err(CheckpointError::Corrupt {
            path: self.dest.display(&self.fence_dir(key)),
            reason: format!("no term could be taken in {TERM_ATTEMPTS} attempts"),
        })
    }

    /// Fails with [`CheckpointError::Fenced`] when a newer term than `term` exists.
    pub fn check_term(&self, key: &str, term: u64) -> Result<(), CheckpointError> {
        let l = self.listing(key)?;
        if l.max_term > term {
            return Err(self.fenced(key, l.max_term, term));
        }
        Ok(())
    }

    /// Phase "claim": the claim on `c.seq`, create-only, by a writer that still holds the
    /// newest term once the claim is in the store. The check after the write is the one that
    /// counts: a writer paused between the first check and the write may find its claim landing
    /// after a newer owner registered, committed `c.seq` itself and pruned its outcome (nothing
    /// decides `c.seq` any more); it must not publish. A newer owner registered before the claim
    /// landed is seen here; one registered after sees the claim and aborts it.
    pub fn claim(&self, c: &Claim) -> Result<(), CheckpointError> {
        self.check_term(&c.key, c.term)?;
        self.put_claim(c)?;
        self.check_term(&c.key, c.term)
    }

    /// The data files named by every claim record of this job that exists now: commits in
    /// flight (claimed, their files visible or about to be) and sealed ones whose claim is not
    /// released yet. A claim is written before any of its files is visible, and released only
    /// after its commit was sealed.
    pub fn claimed_files(&self) -> Result<Vec<String>, CheckpointError> {
        let root = format!("_sluice/{}/fence/", self.job);
        let mut out = Vec::new();
        for path in self.dest.list(&root)? {
            let name = path.rsplit('/').next().unwrap_or_default();
            if !(name.starts_with("claim-") && name.ends_with(".json")) {
                continue;
            }
            // Gone since the listing: released (sealed first) or settled.
            if let Some(c) = self.read_json::<Claim>(&path, "claim")? {
                out.extend(c.files);
            }
        }
        Ok(out)
    }

    /// The create-only write of a claim, without the term checks (`claim` does all three; a
    /// writer may pause between any two, which the protocol must survive).
    pub fn put_claim(&self, c: &Claim) -> Result<(), CheckpointError> {
        // A decided sequence number cannot be claimed again (its claim record may be gone).
        if let Some(o) = self.outcome(&c.key, c.seq)? {
            return Err(self.lost_to(c, &o));
        }
        let path = self.claim_path(&c.key, c.seq);
        let bytes = self.record_bytes(&path, c)?;
        match self.dest.put_atomic(&path, &bytes, true) {
            Ok(()) => Ok(()),
            Err(StoreError::Exists { .. }) => {
                let there = self.read_json::<Claim>(&path, "claim")?;
                match there {
                    // This claim's own write, reported failed: durable once its folder is.
                    Some(t) if &t == c => Ok(self.dest.sync_folder(&self.fence_dir(&c.key))?),
                    Some(t) if t.term > c.term => Err(self.fenced(&c.key, t.term, c.term)),
                    Some(t) => Err(CheckpointError::Taken {
                        key: c.key.clone(),
                        seq: c.seq,
                        owner: t.owner,
                    }),
                    None => Err(CheckpointError::Taken {
                        key: c.key.clone(),
                        seq: c.seq,
                        owner: "(a claim deleted meanwhile)".into(),
                    }),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Phase "seal": the commit outcome of a claimed sequence number. When another outcome
    /// won (the claim was fenced), the files this commit published are deleted again.
    pub fn seal(&self, claim: &Claim, c: &Checkpoint) -> Result<(), CheckpointError> {
        match self.decide(&Outcome::Commit(Box::new(c.clone())))? {
            None => Ok(()),
            Some(winner) => {
                // The verdict matters more than the clean-up, which the next settle repeats.
                if let Err(e) = self.remove_files(claim, &mut Vec::new()) {
                    tracing::warn!(partition = %c.key, error = %e, "could not remove the files of a lost commit yet");
                }
                Err(self.lost_to(claim, &winner))
            }
        }
    }

    /// Phase "release": the claim of a sealed commit is no longer needed, and other claims
    /// are settled as in [`Checkpoints::reconcile`] (files published late by a fenced writer
    /// are removed). Returns what the settle did.
    pub fn release(
        &self,
        key: &str,
        seq: u64,
        term: u64,
        owner: &str,
    ) -> Result<Settled, CheckpointError> {
        self.dest.delete(&self.claim_path(key, seq))?;
        let l = self.listing(key)?;
        if l.max_term > term {
            return Err(self.fenced(key, l.max_term, term));
        }
        self.settle(key, &l.claims, seq, term, owner)
    }

    /// The partitions but those `skip` names with a claim in the store made more than
    /// `older_ms` ago (by its writer's clock): one a process left unfinished (sealed and
    /// perhaps not published into a table, or not released), not a commit under way in
    /// another process. One listing of the job's fence records (a partition keeps its newest
    /// term's alone), then the claims of the partitions not skipped read.
    pub fn keys_with_claims(
        &self,
        skip: impl Fn(&str) -> bool,
        older_ms: i64,
    ) -> Result<Vec<String>, CheckpointError> {
        let root = format!("_sluice/{}/fence/", self.job);
        let mut keys = Vec::new();
        for path in self.dest.list(&root)? {
            let Some((key, name)) = path.strip_prefix(&root).and_then(|p| p.rsplit_once('/'))
            else {
                continue;
            };
            if !name.starts_with("claim-") || skip(key) || keys.last() == Some(&key.to_string()) {
                continue;
            }
            // A claim that cannot be read is its partition's next claim's to settle, and fails
            // nothing here.
            let claim = match self.read_json::<Claim>(&path, "claim") {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(claim = %self.dest.display(&path), error = %e, "cannot read a claim left of a partition");
                    continue;
                }
            };
            if now_ms().saturating_sub(claim.claimed_at_ms) <= older_ms {
                continue;
            }
            // An aborted claim is kept a while by the settle: already settled, not again.
            if matches!(self.outcome(key, claim.seq), Ok(Some(Outcome::Abort(_)))) {
                continue;
            }
            keys.push(key.to_string());
        }
        Ok(keys)
    }

    /// How long a write reported failed (or a writer paused mid-upload) may still land in
    /// the destination or the dead letters' (`None`: a local file system, where none does).
    pub fn late_window(&self) -> Option<std::time::Duration> {
        [&self.dest, &self.dead]
            .iter()
            .filter_map(|d| d.late_window())
            .max()
    }

    /// Settles the claims earlier owners of every partition left unfinished (their files,
    /// visible, removed; a commit that won first stands), each partition under a new term
    /// (an earlier run still going on is fenced everywhere), for a run that stops before it
    /// claims its partitions (a refused backfill taking back its range record). Returns
    /// whether a commit of the job stands then, and whether a file of an aborted claim may
    /// still land (an upload under way: see [`Reconciled::may_land_late`]).
    pub fn settle_unfinished(&self, owner: &str) -> Result<(bool, bool), CheckpointError> {
        let root = format!("_sluice/{}/fence/", self.job);
        let mut late = false;
        for key in self.dest.folders(&root)? {
            let term = self.take_term(&key, owner)?;
            let r = self.reconcile(&key, term, owner)?;
            late |= r.may_land_late;
            if !r.removed.is_empty() {
                tracing::warn!(partition = %key, files = ?r.removed, "removed files of an unfinished commit");
            }
        }
        Ok((self.committed()?, late))
    }

    /// The outcomes of partition `key` that `listed` ([`Checkpoints::seqs`], ascending) may
    /// lack, added to it: those of the claims listed in `claims` (settled, so each has one
    /// unless pruned), and those above the newest claim read by name until one is missing
    /// (see `seqs`: a listing can lag behind the store).
    fn outcomes_beyond(
        &self,
        key: &str,
        listed: Vec<u64>,
        claims: &[u64],
    ) -> Result<Vec<u64>, CheckpointError> {
        let mut seqs: std::collections::BTreeSet<u64> = listed.into_iter().collect();
        for &c in claims {
            if !seqs.contains(&c) && self.outcome(key, c)?.is_some() {
                seqs.insert(c);
            }
        }
        let mut seqs: Vec<u64> = seqs.into_iter().collect();
        let top = seqs.last().copied().unwrap_or(0);
        if let Some(&newest_claim) = claims.last().filter(|&&c| c > top) {
            self.outcomes_above(key, newest_claim, &mut seqs)?;
        }
        Ok(seqs)
    }

    /// Brings a partition in line with the store for the owner of `term`: claims without an
    /// outcome are aborted (a commit that won first stands) and their files removed. Fenced
    /// when a newer term exists.
    pub fn reconcile(
        &self,
        key: &str,
        term: u64,
        owner: &str,
    ) -> Result<Reconciled, CheckpointError> {
        let l = self.listing(key)?;
        if l.max_term > term {
            return Err(self.fenced(key, l.max_term, term));
        }
        let seqs = self.seqs(key)?;
        let newest = seqs.last().copied().unwrap_or(0);
        // What the settle acts on for good (a claim removed, a roll-back's undone files
        // deleted) and where the partition resumes must survive a power loss: a seal whose
        // folder sync failed (the commit reported failure) left its record visible yet not
        // durable. Until a sync of its folder succeeds, nothing is settled.
        let synced = !(seqs.is_empty() && l.claims.is_empty());
        if synced {
            self.dest.sync_folder(&self.dir(key))?;
        }
        let Settled {
            mut removed,
            lost_own,
            may_land_late,
        } = self.settle(key, &l.claims, newest, term, owner)?;
        let seqs = self.outcomes_beyond(key, seqs, &l.claims)?;
        let latest = self.latest_of(key, seqs.clone())?;
        // An outcome found above those listed (a lagging listing), after the sync.
        if latest.as_ref().is_some_and(|c| !synced || c.seq > newest) {
            self.dest.sync_folder(&self.dir(key))?;
        }
        self.finish_legacy_pending(key, latest.as_ref(), &mut removed)?;
        let top = seqs
            .last()
            .copied()
            .unwrap_or(0)
            .max(l.claims.last().copied().unwrap_or(0));
        let next_seq = top.checked_add(1).ok_or_else(|| CheckpointError::Corrupt {
            path: self.dest.display(&self.fence_dir(key)),
            reason: format!("a sequence number of {top} leaves no next one"),
        })?;
        Ok(Reconciled {
            latest,
            next_seq,
            removed,
            lost_own,
            may_land_late,
        })
    }
}
