//! What backfills and the live job hold of a destination's Kafka partitions, so that no two
//! of them write one record there:
//! - each backfill name's range (`_sluice/<name>/range.json`): as asked, and each partition's
//!   offsets as resolved at the name's first run;
//! - where the live job starts each partition it claims before its first commit there
//!   (`_sluice/<job>/origins/<key>/<term>.json`, one record per such claim, create-only). The
//!   newest term's counts: only its owner can commit (the fence), and a paused owner's late
//!   record is of an older term.
//!
//! Each side records first and looks at the other after: of two that start at once, the
//! later look sees the other.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::store::{Destination, StoreError};

/// The offsets `[from, to)` of one partition a bounded run reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl Span {
    /// The offsets both spans read (of one partition), if any.
    pub fn overlap(&self, other: &Span) -> Option<(i64, i64)> {
        if self.topic != other.topic || self.partition != other.partition {
            return None;
        }
        let (from, to) = (self.from.max(other.from), self.to.min(other.to));
        (from < to).then_some((from, to))
    }

    /// The partition's key (`<topic>-<partition>`), as checkpoints name it.
    pub fn key(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// What a backfill name covers in its destination, recorded at its first run.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BackfillRange {
    /// `--from` as asked: `checkpoint`, or the position (canonical spelling).
    pub from: String,
    pub to: String,
    pub repo: String,
    /// Each partition's offsets as resolved at the first run; absent in records of earlier
    /// versions, which resolved them at every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// In a copy of the record in the live job's destination around the backfill's own: the
    /// backfill's destination, as a folder of this one (where its checkpoints are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Which state folder's run made it, for people: host and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// That state folder's id (random, kept in the folder): a run holding the folder's lock
    /// knows the run that made the record is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl BackfillRange {
    /// Whether backfill `name`, whose record this is in `dest`, has committed. A copy whose
    /// backfill's destination is not a folder of `dest` (around it, or spelled another way)
    /// reads as not committed.
    pub fn committed(&self, dest: &Destination, name: &str) -> Result<bool, RangeError> {
        match self.own(dest) {
            Some(own) => Ok(crate::commit::checkpoint::Checkpoints::new(own, name).committed()?),
            None => Ok(false),
        }
    }

    /// Where the backfill whose record this is in `dest` keeps its checkpoints: `dest`, or
    /// the folder of it the record names; `None` when that is not a folder of `dest`.
    pub fn own(&self, dest: &Destination) -> Option<Destination> {
        match &self.at {
            None => Some(dest.clone()),
            Some(at) => dest.child(at),
        }
    }

    /// How far backfill `name`, whose record this is in `dest`, has written each partition
    /// of its range: each span with its checkpoint's next offset (`None`: none yet), in the
    /// order recorded. A span is finished when the offset reaches its end. Empty for a
    /// record of an earlier version (no spans) or a destination that cannot be read here.
    pub fn progress(
        &self,
        dest: &Destination,
        name: &str,
    ) -> Result<Vec<(Span, Option<u64>)>, RangeError> {
        let Some(own) = self.own(dest) else {
            return Ok(Vec::new());
        };
        let cps = crate::commit::checkpoint::Checkpoints::new(own, name);
        let mut out = Vec::new();
        for s in self.spans.iter().flatten() {
            let at = cps.latest_listed(&s.key())?.map(|c| c.next_offset);
            out.push((s.clone(), at));
        }
        Ok(out)
    }
}

impl BackfillRange {
    /// Whether both ask for the same range of the same repo (resolved or not).
    pub fn asks_as(&self, other: &BackfillRange) -> bool {
        (&self.from, &self.to, &self.repo) == (&other.from, &other.to, &other.repo)
    }

    /// Whether both are the same record, field for field (as written).
    pub fn same_record(&self, other: &BackfillRange) -> bool {
        serde_json::to_value(self).ok() == serde_json::to_value(other).ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {path}: {reason} (a backfill's record: if no backfill made it, remove it)")]
    Corrupt { path: String, reason: String },
    #[error(transparent)]
    Checkpoints(#[from] crate::commit::checkpoint::CheckpointError),
}

/// Where backfill `name` records its range in its destination.
pub fn range_record(name: &str) -> String {
    format!("_sluice/{name}/range.json")
}

/// The range backfill `name` recorded in `dest`, if any.
pub fn read_range(dest: &Destination, name: &str) -> Result<Option<BackfillRange>, RangeError> {
    let record = range_record(name);
    match dest.read_record(&record) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| RangeError::Corrupt {
                path: dest.display(&record),
                reason: e.to_string(),
            }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The ranges backfills of repo `repo` recorded in `dest` (by name), but `except`'s. Another
/// repo's files are another table, even of the same records: its backfills are no clash.
pub fn backfills(
    dest: &Destination,
    except: Option<&str>,
    repo: &str,
) -> Result<Vec<(String, BackfillRange)>, RangeError> {
    each_backfill(dest, except, repo)?
        .into_iter()
        .map(|(name, r)| r.map(|r| (name, r)))
        .collect()
}

/// A backfill's name and its range record as read.
pub type ReadRange = (String, Result<BackfillRange, RangeError>);

/// [`backfills`], each record with its own result: one that cannot be read (damaged, of a
/// newer version) hides none of the others. The store failing fails the whole.
pub fn each_backfill(
    dest: &Destination,
    except: Option<&str>,
    repo: &str,
) -> Result<Vec<ReadRange>, StoreError> {
    let mut out = Vec::new();
    for name in dest.folders("_sluice/")? {
        if Some(name.as_str()) == except {
            continue;
        }
        match read_range(dest, &name) {
            Ok(Some(r)) if r.repo == repo => out.push((name, Ok(r))),
            Ok(_) => {}
            Err(RangeError::Store(e)) => return Err(e),
            Err(e) => out.push((name, Err(e))),
        }
    }
    Ok(out)
}

/// One claim's record of where the live job starts a partition it has not committed yet.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Origin {
    from: u64,
}

fn origins_dir(job: &str, key: &str) -> String {
    format!("_sluice/{job}/origins/{key}/")
}

/// Records that the live job `job` starts partition `key`, not committed yet, at `from`
/// under claim `term` (`moved`: where it starts after looking at the backfills, else where
/// it asked to). A record already there stays (create-only); records of older terms are
/// removed (only the newest term's counts), as far as the store lets.
pub fn record_origin(
    dest: &Destination,
    job: &str,
    (key, term): (&str, u64),
    from: u64,
    moved: bool,
) -> Result<(), RangeError> {
    let bytes = serde_json::to_vec(&Origin { from }).expect("an origin serializes");
    let dir = origins_dir(job, key);
    let kind = if moved { ".moved" } else { "" };
    match dest.put_atomic(&format!("{dir}{term:012}{kind}.json"), &bytes, true) {
        Ok(()) | Err(StoreError::Exists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if !moved {
        for (t, _, path) in origins(dest, &dir).unwrap_or_default() {
            if t < term {
                if let Err(e) = dest.delete(&path) {
                    tracing::debug!(path = %dest.display(&path), error = %e, "an older start record stays");
                }
            }
        }
    }
    Ok(())
}

/// The start records in `dir`: (term, moved, path).
fn origins(dest: &Destination, dir: &str) -> Result<Vec<(u64, bool, String)>, RangeError> {
    Ok(dest
        .list(dir)?
        .into_iter()
        .filter_map(|p| {
            let name = p.strip_prefix(dir)?.strip_suffix(".json")?;
            let (term, moved) = match name.strip_suffix(".moved") {
                Some(t) => (t, true),
                None => (name, false),
            };
            Some((term.parse().ok()?, moved, p))
        })
        .collect())
}

/// Where the live job `job` starts partition `key` (not committed), as the newest claim
/// that recorded one found it (where it moved to, once recorded), if any.
pub fn origin(dest: &Destination, job: &str, key: &str) -> Result<Option<u64>, RangeError> {
    let dir = origins_dir(job, key);
    // A newer claim removes the older records: one listed may be gone when read.
    let mut tries = 0;
    loop {
        let Some((_, _, path)) = origins(dest, &dir)?.into_iter().max() else {
            return Ok(None);
        };
        let bytes = match dest.read_record(&path) {
            Ok(b) => b,
            Err(e) if e.is_not_found() && tries < 8 => {
                tries += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let o: Origin = serde_json::from_slice(&bytes).map_err(|e| RangeError::Corrupt {
            path: dest.display(&path),
            reason: e.to_string(),
        })?;
        return Ok(Some(o.from));
    }
}

/// When the live job `job` first took partitions that start at the log's end
/// (`auto_offset_reset = "latest"`), in ms since the epoch: recorded (create-only) at its
/// first such assignment, with `now_ms`, and read at every later one. Returns it and whether
/// this call recorded it. A partition first taken after it (one added to a topic, or a topic
/// that begins to match a pattern) starts at its first record since then, not at the end of
/// the log when the group noticed it: the records between were the job's to write.
pub fn first_start(dest: &Destination, job: &str, now_ms: i64) -> Result<(i64, bool), RangeError> {
    let path = format!("_sluice/{job}/origins/first-start.json");
    let bytes = serde_json::to_vec(&FirstStart { at_ms: now_ms }).expect("a start serializes");
    match dest.put_atomic(&path, &bytes, true) {
        Ok(()) => return Ok((now_ms, true)),
        Err(StoreError::Exists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let bytes = dest.read_record(&path)?;
    let f: FirstStart = serde_json::from_slice(&bytes).map_err(|e| RangeError::Corrupt {
        path: dest.display(&path),
        reason: e.to_string(),
    })?;
    Ok((f.at_ms, false))
}

#[derive(Serialize, Deserialize)]
struct FirstStart {
    at_ms: i64,
}

/// Offsets of a backfill's range that the live job would write from where it starts a
/// partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartClash {
    pub key: String,
    pub backfill: String,
    /// The backfill's range as asked.
    pub range: (String, String),
    /// Where the live job would start the partition.
    pub start: u64,
    pub from: i64,
    pub to: i64,
    /// The backfill has committed (it writes its whole range).
    pub committed: bool,
}

impl StartClash {
    /// Whether the clash goes by itself: a backfill that has not committed, whose range holds
    /// the start (once it commits, the start moves past its range; refused, it takes its
    /// range back). A committed backfill's range, or one that begins past the start, stays.
    pub fn clears_by_itself(&self) -> bool {
        !self.committed && self.from <= i64::try_from(self.start).unwrap_or(i64::MAX)
    }
}

impl std::fmt::Display for StartClash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backfill `{}` (--from {} --to {}) reads offsets {}..{} of partition {}, and this job would start it at {}: both would write those records. ",
            self.backfill, self.range.0, self.range.1, self.from, self.to, self.key, self.start
        )?;
        if !self.clears_by_itself() {
            f.write_str("Give the backfill another --url, or move the job's start (its group's offset) to where the backfill starts or ends")
        } else {
            f.write_str("The job judges the partition again every 30 s to 5 minutes and takes it once the backfill has committed (it then starts past the backfill's range) or, refused, taken back its range; or give the backfill another --url; if the backfill never ran, remove its folder in _sluice/")
        }
    }
}

/// The backfills' spans by partition key (backfill, its range, the span): looked up once per
/// start (every span was compared, a key made for each, per start: partitions × spans
/// inside a rebalance).
fn by_key(
    all: &[(String, BackfillRange)],
) -> HashMap<String, Vec<(&String, &BackfillRange, &Span)>> {
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for (name, r) in all {
        for s in r.spans.iter().flatten() {
            out.entry(s.key()).or_default().push((name, r, s));
        }
    }
    out
}

/// Starts past the end of every backfill range of their partition that reaches toward them:
/// what lies between the last such end and the start is exported by neither (a live job that
/// starts at the log's end, `auto_offset_reset = "latest"`, after a backfill of the history
/// up to then; or retention past the range's end). Ranges that meet are one stretch; a start
/// inside or at the end of a range is the hold's to move. (partition, backfill, from, to)
fn gaps<'a>(
    all: &'a [(String, BackfillRange)],
    starts: &'a [(String, u64, u64)],
) -> Vec<(&'a str, &'a str, i64, i64)> {
    let mut out = Vec::new();
    let keyed = by_key(all);
    for (key, _, start) in starts {
        let start = i64::try_from(*start).unwrap_or(i64::MAX);
        let spans = || {
            keyed
                .get(key.as_str())
                .into_iter()
                .flatten()
                .filter(|(_, _, s)| s.from < s.to)
                .map(|(name, _, s)| (*name, *s))
        };
        if spans().any(|(_, s)| s.from < start && start <= s.to) {
            continue;
        }
        if let Some((name, s)) = spans()
            .filter(|(_, s)| s.to < start)
            .max_by_key(|(_, s)| s.to)
        {
            out.push((key.as_str(), name.as_str(), s.to, start));
        }
    }
    out
}

/// Where backfill `name` records, in its own destination, that a run read and committed its
/// whole range.
fn finished_record(name: &str) -> String {
    format!("_sluice/{name}/finished.json")
}

/// What [`record_finished`] writes: when, and which recording of the range the run read
/// whole (a record of an earlier recording, written late by a run whose write reported
/// failure, or left when the range was replaced, says nothing of this one).
#[derive(Serialize, Deserialize)]
struct Finished {
    at_ms: i64,
    range: RangeId,
}

/// Which recording of a backfill's range a [`Finished`] record is about: the range as asked
/// and as resolved (each partition's offsets). Not the state folder that recorded it: a run
/// from another one resumes the range and rewrites the live job's copy with its own.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct RangeId {
    from: String,
    to: String,
    repo: String,
    spans: Option<Vec<Span>>,
}

impl From<&BackfillRange> for RangeId {
    fn from(r: &BackfillRange) -> Self {
        RangeId {
            from: r.from.clone(),
            to: r.to.clone(),
            repo: r.repo.clone(),
            spans: r.spans.clone(),
        }
    }
}

/// Records, in its own destination `dest`, that backfill `name` read and committed its whole
/// range, `range` (a run that ended, not stopped). A checkpoint alone cannot tell: a
/// partition's last offsets before the range's end may hold no record (a transaction's
/// marker, records aborted or compacted away), and its checkpoint then stays below the end.
pub fn record_finished(
    dest: &Destination,
    name: &str,
    range: &BackfillRange,
) -> Result<(), RangeError> {
    let record = Finished {
        at_ms: crate::commit::now_ms(),
        range: range.into(),
    };
    let bytes = serde_json::to_vec(&record).expect("serializes");
    Ok(dest.put_atomic(&finished_record(name), &bytes, false)?)
}

/// Whether backfill `name` recorded in `dest` that it finished `range` ([`record_finished`]),
/// its range as recorded now (in `dest`, or a copy of it in the live job's destination). A
/// record of another recording of the range, or one that does not parse, is not.
pub fn finished(dest: &Destination, name: &str, range: &BackfillRange) -> Result<bool, RangeError> {
    match dest.read_record(&finished_record(name)) {
        Ok(bytes) => Ok(serde_json::from_slice::<Finished>(&bytes)
            .is_ok_and(|f| f.range == RangeId::from(range))),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A backfill span a live start moved past: (partition, backfill, its record, the span).
type Passed<'a> = (&'a str, &'a str, &'a BackfillRange, &'a Span);

/// Warns of each backfill whose range a live start moved past that has not written its part
/// of the partition (it was stopped before it ended): those offsets are the backfill's to
/// write, in neither job's files until it runs again. At a partition's first start only: per
/// backfill one read (whether it finished), then per partition of one that has not, its
/// checkpoint, side by side (inside the rebalance).
fn unfinished_passed(dest: &Destination, passed: &[Passed]) {
    let mut done: HashMap<&str, bool> = HashMap::new();
    for (_, name, r, _) in passed {
        if !done.contains_key(name) {
            let f = r.own(dest).map(|own| finished(&own, name, r));
            // A record that is not a folder of `dest` is passed over; one that cannot be
            // read is looked at partition by partition.
            done.insert(name, matches!(f, None | Some(Ok(true))));
        }
    }
    let left: Vec<&Passed> = passed.iter().filter(|p| !done[p.1]).collect();
    let read = crate::fanout::each(
        &left,
        crate::fanout::REBALANCE_CALLS,
        "backfills' progress",
        |(key, name, r, _)| {
            let own = r.own(dest).expect("looked at above");
            crate::commit::checkpoint::Checkpoints::new(own, name).latest_listed(key)
        },
    );
    for (i, got) in read {
        let (key, name, r, s) = left[i];
        match got {
            Ok(c) => {
                let w = c.map_or(s.from, |c| c.next_offset as i64);
                if w < s.to {
                    tracing::warn!(
                        partition = %key, backfill = %name, written_to = w, range_end = s.to,
                        "the partition starts past the range of a backfill that has not finished it: offsets {w}..{} are in neither job's files until the backfill runs again (`sluice backfill --name {name} --from {} --to {}` with its first run's --url)",
                        s.to, r.from, r.to
                    );
                }
            }
            Err(e) => {
                tracing::warn!(partition = %key, backfill = %name, error = %e, "could not tell whether the backfill has finished the partition (`sluice checkpoints list` shows it)")
            }
        }
    }
}

/// Records where the live job `job` (of repo `repo`) starts partitions it claimed before
/// their first commit (key, the claim's term, the start), then looks at the ranges the
/// repo's backfills recorded in `dest`. A start inside the range of a backfill that has
/// committed (which writes it all) moves to its end, again while another such range holds
/// it. Returns each start (moved or not), and what backfills would still write at or past
/// it: a backfill that has not committed (it may be starting, or be refused for this start),
/// or one whose range begins past the start.
pub fn hold_starts(
    dest: &Destination,
    job: &str,
    repo: &str,
    starts: &[(String, u64, u64)],
) -> Result<(Vec<u64>, Vec<StartClash>), RangeError> {
    if starts.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let done = crate::fanout::each(
        starts,
        crate::fanout::REBALANCE_CALLS,
        "starts",
        |(key, term, from)| record_origin(dest, job, (key, *term), *from, false),
    );
    for (_, r) in done {
        r?;
    }
    let all = backfills(dest, Some(job), repo)?;
    for (key, name, from, to) in gaps(&all, starts) {
        tracing::warn!(
            partition = %key, backfill = %name, range_end = from, start = to,
            "the partition starts past the end of the backfills' ranges: offsets {from}..{to} are exported by neither (auto_offset_reset = \"earliest\" would start where the ranges end)"
        );
    }
    let keyed = by_key(&all);
    // Whether each backfill that reaches a start has committed (asked once per backfill).
    let mut committed: HashMap<&str, bool> = HashMap::new();
    for (key, _, start) in starts {
        for (name, r, s) in keyed.get(key.as_str()).into_iter().flatten() {
            if s.to > s.from.max(*start as i64) && !committed.contains_key(name.as_str()) {
                committed.insert(name.as_str(), r.committed(dest, name)?);
            }
        }
    }
    let mut moved = Vec::with_capacity(starts.len());
    let mut out = Vec::new();
    let mut passed: Vec<Passed> = Vec::new();
    for (key, _, start) in starts {
        let spans = || {
            keyed
                .get(key.as_str())
                .into_iter()
                .flatten()
                .filter(|(name, _, s)| s.from < s.to && committed.contains_key(name.as_str()))
                .map(|(name, r, s)| (*name, *r, committed[name.as_str()], *s))
        };
        // Bounded: each move goes to the end of another range, past the last.
        let mut at = i64::try_from(*start).unwrap_or(i64::MAX);
        while let Some(s) = spans()
            .filter(|(_, _, committed, s)| *committed && s.from <= at && at < s.to)
            .map(|(_, _, _, s)| s)
            .next()
        {
            at = s.to;
        }
        let at_u = u64::try_from(at).unwrap_or(*start);
        let asked = i64::try_from(*start).unwrap_or(i64::MAX);
        passed.extend(
            spans()
                .filter(|(_, _, committed, s)| *committed && s.to > asked && s.from < at)
                .map(|(name, r, _, s)| (key.as_str(), name.as_str(), r, s)),
        );
        for (name, r, committed, s) in spans() {
            if s.to > s.from.max(at) {
                out.push(StartClash {
                    key: key.clone(),
                    backfill: name.clone(),
                    range: (r.from.clone(), r.to.clone()),
                    start: at_u,
                    from: s.from.max(at),
                    to: s.to,
                    committed,
                });
            }
        }
        moved.push(at_u);
    }
    unfinished_passed(dest, &passed);
    // Where a start moved, once looked: a backfill that looks now reads it (it finds this
    // job past its range), one that looked before read the start asked (and was refused).
    let now: Vec<((&String, u64), u64)> = starts
        .iter()
        .zip(&moved)
        .filter(|((_, _, asked), at)| *at != asked)
        .map(|((key, term, _), at)| ((key, *term), *at))
        .collect();
    let done = crate::fanout::each(
        &now,
        crate::fanout::REBALANCE_CALLS,
        "moved starts",
        |((key, term), at)| record_origin(dest, job, (key.as_str(), *term), *at, true),
    );
    for (_, r) in done {
        r?;
    }
    Ok((moved, out))
}

#[cfg(test)]
#[path = "ranges_tests.rs"]
mod tests;
