//! Which file a file partition's checkpoints are about. A file partition is keyed by its file's
//! stem, and its checkpoints hold byte offsets: a different file under that key (a log rotated
//! under the same name, a path now naming another folder's `app.log`) would be resumed at the
//! old file's offset, its first bytes never read (or the job stopped for good, when shorter).
//! So the first bytes of each file (up to [`HEAD`], decompressed) are recorded in the
//! destination, `_sluice/<job>/files/<key>.json`, before any of it is committed (as far as the
//! file goes then; more of it at later starts), and each start that resumes a file past its
//! start, or may restore a spill of it, checks them before its claims. Files whose first 4 KiB
//! are the same cannot be told apart.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TaskError;
use crate::commit::checkpoint::FileHead;
use crate::source::PartitionInfo;
use crate::store::{Destination, StoreError};

/// The most of a file's start recorded.
const HEAD: usize = 4096;

/// Records of files' starts read at once by the check for files renamed or copied.
const READERS: usize = 8;

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Identity {
    /// The file read then, for people.
    path: String,
    /// How many bytes of its start are recorded (fewer than [`HEAD`] while it was shorter).
    len: usize,
    /// Their CRC-32.
    crc: u32,
}

/// When a check runs: before the claims (a roll-back's deletes commits, so a file that is not
/// the one read is refused first), or under a partition's claim, where its resume point is
/// its own (no other writer commits to it meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    BeforeClaims,
    Claimed,
}

/// Checks each file of a file job (nothing for other sources) against its recorded start,
/// before the claims: resumed at its newest checkpoint, or maybe holding records in the job's
/// own spill (or an earlier version's), unless `--discard-spill` drops it (`keeps_spill`).
pub fn check_all(
    job: &crate::config::Job,
    dest: &Destination,
    checkpoints: &crate::commit::checkpoint::Checkpoints,
    parts: &[PartitionInfo],
    keeps_spill: bool,
) -> Result<(), TaskError> {
    // The recorded starts of the job's files, read once if a new file is to be looked at;
    // and the new files looked at so far.
    let mut others = None;
    let mut fresh = NewFiles::new();
    for p in parts {
        let latest = checkpoints.latest_listed(&p.key())?;
        // Before anything is recorded: another kind of source's offsets are no file's (the
        // claim's resume refuses them too).
        let file_job = matches!(job.file.source, crate::config::SourceSection::File { .. });
        if let Some(theirs) = latest.as_ref().and_then(|c| c.written_by()) {
            if file_job && theirs != "file" {
                return Err(TaskError::Job {
                    job: checkpoints.job().to_string(),
                    reason: format!(
                        "partition {}: its checkpoints were written by a {theirs} job of this name into this destination, whose offsets are not this file's bytes: resuming there would skip or repeat records. Give this job a name (job.name) or destination of its own",
                        p.key()
                    ),
                });
            }
        }
        if latest.is_none() {
            same_start(job, dest, checkpoints, p, (&mut others, &mut fresh))?;
        }
        let resumed = latest.as_ref().map_or(0, |c| c.next_offset);
        let from = latest.as_ref().and_then(|c| c.file.as_ref());
        check_one(
            job,
            dest,
            p,
            (resumed, from),
            keeps_spill,
            When::BeforeClaims,
        )?;
    }
    Ok(())
}

/// Checks partition `p`'s file of a file job (nothing for other sources), resumed at an
/// offset from a checkpoint that may record the file its writer read: see [`check`]. The
/// file's start as found now, for this run's checkpoints.
pub fn check_one(
    job: &crate::config::Job,
    dest: &Destination,
    p: &PartitionInfo,
    resumed: (u64, Option<&FileHead>),
    keeps_spill: bool,
    when: When,
) -> Result<Option<FileHead>, TaskError> {
    let Some(path) = input_path(job, p) else {
        return Ok(None);
    };
    let state = job.resolve(&job.file.job.state_dir);
    // This job's spill, or one of an earlier version's (no owner): restored unless another
    // job's.
    let spilled = keeps_spill
        && crate::channel::spill::header(&state)
            .is_ok_and(|h| h.owner.as_ref().is_none_or(|o| o.job == job.file.job.name));
    check(dest, &job.file.job.name, p, &path, resumed, spilled, when).map(Some)
}

/// The longest name a file system holds (local destinations; HDFS's default too).
const NAME_MAX: usize = 255;

/// Refuses a file partition of `parts` (job `job`) whose key (the file's stem and `-0`)
/// makes names of its records longer than the destination holds: `files/<key>.json` and
/// `checkpoints/<key>/`. (The record's write failed at every start with the system's bare
/// "file name too long"; an object store holds them.) Before anything is read under the key.
pub fn fits_names(
    job: &crate::config::Job,
    dest: &Destination,
    parts: &[PartitionInfo],
) -> Result<(), TaskError> {
    if dest.local_root().is_none() && !dest.url().starts_with("hdfs://") {
        return Ok(());
    }
    for p in parts {
        let longest = format!("{}.json", p.key());
        let Some(file) = input_path(job, p).filter(|_| longest.len() > NAME_MAX) else {
            continue;
        };
        return Err(TaskError::Job {
            job: job.file.job.name.clone(),
            reason: format!(
                "input file {}: its name without the extension, as its partition's name \
                 (`{}`, {} bytes; characters other than ASCII letters, digits, `_` and `.` \
                 count one byte each), names its records in the destination ({}), longer \
                 than the {NAME_MAX} bytes a file name holds there: rename the file (at most \
                 {} bytes before the extension)",
                file.display(),
                p.topic,
                p.topic.len(),
                record_path(&job.file.job.name, &p.key()),
                NAME_MAX - (longest.len() - p.topic.len()),
            ),
        });
    }
    Ok(())
}

fn record_path(job: &str, key: &str) -> String {
    format!("_sluice/{job}/files/{key}.json")
}

/// Checks that `path` is the file partition `p` of job `job` was read from, when it resumes
/// past its start (`resumed`: the checkpoint's offset, and the file its writer read if it
/// records one) or a spill may hold records of it (`spilled`), and records its start when
/// none is recorded or more of it is there now. A file whose start differs from the one the
/// checkpoint records, or else the one recorded (or is shorter), is refused, naming both.
///
/// The checkpoint's record of the file is written under its writer's term, as its offset is:
/// a fenced process cannot change it. The record in `files/` is not (a process fenced
/// between its claim and its write of the record could replace it after the next owner
/// checked it), but may hold more of the file's start than a checkpoint (as far as its run
/// read, up to 4 KiB): it is checked where it does, and rewritten under the claim where the
/// checkpoint holds as much and agrees.
///
/// Another file's record, where nothing is committed, is replaced only under the claim
/// ([`When::Claimed`]): replaced before it, a process whose check saw no commit yet could
/// replace the record of a file another process commits meanwhile, and then, claiming,
/// resume at that process's offset in its own file, the record now saying it is the one
/// read. A record where none is, before the claims, is written create-only, so of two starts
/// the second reads the first's.
fn check(
    dest: &Destination,
    job: &str,
    p: &PartitionInfo,
    path: &Path,
    (resumed, from): (u64, Option<&FileHead>),
    spilled: bool,
    when: When,
) -> Result<FileHead, TaskError> {
    let fail = |reason: String| TaskError::Job {
        job: job.to_string(),
        reason,
    };
    let head = head(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let key = p.key();
    let record = record_path(job, &key);
    let now = Identity {
        path: path.display().to_string(),
        len: head.len(),
        crc: crc32fast::hash(&head),
    };
    let found = FileHead {
        len: now.len,
        crc: now.crc,
    };
    let refuse = |read: String, len: usize, was: &str| {
        fail(format!(
            "input {} (partition {key}) is not the file the job {read}: its first {len} bytes differ from those of {was} (a log rotated under the same name, or a file replaced or rewritten). Reading it on from there would skip its start: give the new file a name of its own (a new partition, read from its start), or restore the one read",
            path.display(),
        ))
    };
    // The checkpoint's (under its writer's term; as much of the start as its run read, at
    // most 4 KiB), and the record's where it holds more (not fenced, but as long as any
    // start found it).
    if let Some(h) = from.filter(|_| resumed > 0) {
        if head.len() < h.len || crc32fast::hash(&head[..h.len]) != h.crc {
            return Err(refuse(
                format!("read to byte {resumed}"),
                h.len,
                "the file its checkpoint records",
            ));
        }
    }
    // Twice at most: a create-only write refused is read again (another start's record, or
    // this one's own, landed before an error that was retried).
    for _ in 0..2 {
        let recorded: Option<Identity> = match dest.read_record(&record) {
            Ok(b) => Some(
                serde_json::from_slice(&b)
                    .map_err(|e| fail(format!("{}: does not parse: {e}", dest.display(&record))))?,
            ),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        match recorded {
            // Read past its start (or perhaps, into a spill): the file must begin as the one
            // read did.
            // (Unless the checkpoint, fenced, holds as much of the file's start and agrees.)
            Some(r) if (resumed > 0 && from.is_none_or(|h| h.len < r.len)) || spilled => {
                if head.len() < r.len || crc32fast::hash(&head[..r.len]) != r.crc {
                    let read = if resumed > 0 {
                        format!("read to byte {resumed}")
                    } else {
                        "read into the spill in its state folder".to_string()
                    };
                    let was = format!("{} when it was first read", r.path);
                    return Err(refuse(read, r.len, &was));
                }
                if head.len() > r.len {
                    write(dest, &record, &now, false)?;
                }
            }
            Some(r) if r == now => {}
            // Nothing of it committed, as far as this start saw before its claim: replaced
            // once the claim says so.
            Some(_) if when == When::BeforeClaims => {}
            Some(_) => write(dest, &record, &now, false)?,
            None => {
                if resumed > 0 {
                    tracing::info!(partition = %key, "no record of the file's start (written by an earlier version): recorded now, unchecked");
                }
                match write(dest, &record, &now, true) {
                    Err(TaskError::Sink(StoreError::Exists { .. })) => continue,
                    other => other?,
                }
            }
        }
        return Ok(found);
    }
    Err(fail(format!(
        "the record of input {}'s start ({}) was written and removed again while this start read it",
        path.display(),
        dest.display(&record)
    )))
}

/// Refuses partition `p`'s file, which nothing is committed of, when it begins as a file
/// this job exported did (`source.on_same_start = "refuse"`): the file renamed (its new name
/// is a new partition) or copied would be exported twice. A start matches when the whole of
/// another file's recorded start, up to [`HEAD`], is this file's too, and holds two line
/// ends at least or all [`HEAD`] bytes (two files beginning with one header line are not
/// taken for one), and that file's partition has a checkpoint past its start; or when
/// another new file of this start begins as it does (as much as the shorter holds, by the
/// same rule): neither is exported yet, and both would be. `others`: the job's records, read
/// at the first call; `fresh`: the new files looked at before (key, path, start).
fn same_start(
    job: &crate::config::Job,
    dest: &Destination,
    checkpoints: &crate::commit::checkpoint::Checkpoints,
    p: &PartitionInfo,
    (others, fresh): (&mut Option<Recorded>, &mut NewFiles),
) -> Result<(), TaskError> {
    let crate::config::SourceSection::File { on_same_start, .. } = &job.file.source else {
        return Ok(());
    };
    let Some(path) = input_path(job, p).filter(|_| on_same_start == "refuse") else {
        return Ok(());
    };
    let name = &job.file.job.name;
    let fail = |reason: String| TaskError::Job {
        job: name.clone(),
        reason,
    };
    let records = match others {
        Some(r) => r,
        None => {
            let folder = record_path(name, "");
            let folder = folder.trim_end_matches(".json");
            let named: Vec<(String, String)> = dest
                .list(folder)?
                .into_iter()
                .filter_map(|rel| {
                    let key = rel.strip_prefix(folder)?.strip_suffix(".json")?.to_string();
                    Some((key, rel))
                })
                .collect();
            // Read side by side: a job of thousands of files would else wait on each.
            let read = crate::fanout::each(&named, READERS, "file-starts", |(_, rel)| {
                dest.read_record(rel)
            });
            let mut found = Recorded::new();
            for (i, bytes) in read {
                // One that does not parse is the file's own check's to report.
                if let Ok(r) = serde_json::from_slice::<Identity>(&bytes?) {
                    let by_crc = found.entry(r.len).or_default();
                    by_crc
                        .entry(r.crc)
                        .or_default()
                        .push((named[i].0.clone(), r));
                }
            }
            others.insert(found)
        }
    };
    let key = p.key();
    let head = head(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    // One CRC of this file's start per length recorded, looked up among the records.
    let matching = records
        .iter()
        .filter(|(&len, _)| len > 0 && len <= head.len())
        .filter_map(|(&len, by_crc)| by_crc.get(&crc32fast::hash(&head[..len])))
        .flatten();
    for (theirs, r) in matching.filter(|(k, _)| *k != key) {
        if !telling(&head[..r.len]) {
            continue;
        }
        let Some(read) = checkpoints
            .latest_listed(theirs)?
            .filter(|c| c.next_offset > 0)
        else {
            continue;
        };
        return Err(fail(format!(
            "input {} (partition {key}) begins as {} did when partition {theirs} read it (its first {} bytes), and {theirs} is exported to byte {}: a file renamed or copied would be exported twice. If it is another file that begins alike, set source.on_same_start = \"read\"",
            path.display(),
            r.path,
            r.len,
            read.next_offset
        )));
    }
    // Files alike by the rule above share their start up to its second line end (or all
    // of HEAD): only those are compared, and at most FRESH_KEPT starts are kept.
    let Some(sig) = signature(&head) else {
        return Ok(());
    };
    let alike = |other: &[u8]| {
        let n = head.len().min(other.len());
        telling(&head[..n]) && head[..n] == other[..n]
    };
    let same = fresh.get(&sig).into_iter().flatten();
    if let Some((theirs, their_path, _)) = same.clone().find(|(_, _, h)| alike(h)) {
        return Err(fail(format!(
            "inputs {their_path} (partition {theirs}) and {} (partition {key}) begin alike, and neither is exported yet: a file and its renamed copy would both be exported. If they are distinct files that begin alike, set source.on_same_start = \"read\"",
            path.display()
        )));
    }
    let kept: usize = fresh.values().map(Vec::len).sum();
    if kept < FRESH_KEPT {
        fresh
            .entry(sig)
            .or_default()
            .push((key, path.display().to_string(), head));
    }
    Ok(())
}

/// The most new files' starts a start keeps to compare with each other.
const FRESH_KEPT: usize = 1000;

/// The file partition `p` of a file job reads (`None` for other sources).
fn input_path(job: &crate::config::Job, p: &PartitionInfo) -> Option<std::path::PathBuf> {
    let crate::config::SourceSection::File { paths, .. } = &job.file.source else {
        return None;
    };
    paths.get(p.id as usize).map(|f| job.resolve(f))
}

/// Whether two files beginning with `prefix` are taken for one: it holds two line ends, or
/// all [`HEAD`] bytes (one header line alike says nothing).
fn telling(prefix: &[u8]) -> bool {
    prefix.len() == HEAD || memchr::memchr_iter(b'\n', prefix).count() >= 2
}

/// The CRC-32 of a file's start up to its second line end, or of all [`HEAD`] bytes when
/// those hold fewer; `None` for a shorter start (too little to tell a copy by).
fn signature(head: &[u8]) -> Option<(usize, u32)> {
    let n = match memchr::memchr_iter(b'\n', head).nth(1) {
        Some(i) => i + 1,
        None if head.len() == HEAD => HEAD,
        None => return None,
    };
    Some((n, crc32fast::hash(&head[..n])))
}

/// A new file a start looked at: its partition's key, its path and its start, by
/// [`signature`].
type NewFile = (String, String, Vec<u8>);
type NewFiles = std::collections::HashMap<(usize, u32), Vec<NewFile>>;

/// The recorded starts of a job's files (partition key and record), by length and CRC.
type Recorded =
    std::collections::HashMap<usize, std::collections::HashMap<u32, Vec<(String, Identity)>>>;

fn write(
    dest: &Destination,
    record: &str,
    identity: &Identity,
    create_only: bool,
) -> Result<(), TaskError> {
    let bytes = serde_json::to_vec(identity).expect("an identity serializes");
    dest.put_atomic(record, &bytes, create_only)?;
    Ok(())
}

/// The first [`HEAD`] bytes of the file at `path`, a regular file (decompressed when gzip), or
/// fewer when it is shorter or its gzip data is damaged within them.
fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::input::regular::head(&crate::input::regular::open(path)?, HEAD)
}
