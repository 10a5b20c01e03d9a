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
use crate::source::PartitionInfo;
use crate::store::Destination;

/// The most of a file's start recorded.
const HEAD: usize = 4096;

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Identity {
    /// The file read then, for people.
    path: String,
    /// How many bytes of its start are recorded (fewer than [`HEAD`] while it was shorter).
    len: usize,
    /// Their CRC-32.
    crc: u32,
}

/// Checks each file of a file job (nothing for other sources) against its recorded start:
/// resumed at its newest checkpoint, or maybe holding records in the job's own spill (or an
/// earlier version's), unless `--discard-spill` drops it (`keeps_spill`).
pub fn check_all(
    job: &crate::config::Job,
    dest: &Destination,
    checkpoints: &crate::commit::checkpoint::Checkpoints,
    parts: &[PartitionInfo],
    keeps_spill: bool,
) -> Result<(), TaskError> {
    let crate::config::SourceSection::File { paths, .. } = &job.file.source else {
        return Ok(());
    };
    let state = job.resolve(&job.file.job.state_dir);
    // This job's spill, or one of an earlier version's (no owner): restored unless another
    // job's.
    let spilled = keeps_spill
        && crate::channel::spill::header(&state)
            .is_ok_and(|h| h.owner.as_ref().is_none_or(|o| o.job == job.file.job.name));
    for p in parts {
        let Some(path) = paths.get(p.id as usize).map(|f| job.resolve(f)) else {
            continue;
        };
        let resumed = checkpoints.latest(&p.key())?.map_or(0, |c| c.next_offset);
        check(dest, &job.file.job.name, p, &path, resumed, spilled)?;
    }
    Ok(())
}

fn record_path(job: &str, key: &str) -> String {
    format!("_sluice/{job}/files/{key}.json")
}

/// Checks that `path` is the file partition `p` of job `job` was read from, when it resumes
/// past its start (`resumed`: the checkpoint's offset) or a spill may hold records of it
/// (`spilled`), and records its start when none is recorded or more of it is there now. A
/// file whose start differs from the one recorded (or is shorter) is refused, naming both.
fn check(
    dest: &Destination,
    job: &str,
    p: &PartitionInfo,
    path: &Path,
    resumed: u64,
    spilled: bool,
) -> Result<(), TaskError> {
    let fail = |reason: String| TaskError::Job {
        job: job.to_string(),
        reason,
    };
    let head = head(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let key = p.key();
    let record = record_path(job, &key);
    let recorded: Option<Identity> = match dest.read(&record) {
        Ok(b) => Some(
            serde_json::from_slice(&b)
                .map_err(|e| fail(format!("{}: does not parse: {e}", dest.display(&record))))?,
        ),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let now = Identity {
        path: path.display().to_string(),
        len: head.len(),
        crc: crc32fast::hash(&head),
    };
    match recorded {
        // Read past its start (or perhaps, into a spill): the file must begin as the one
        // read did.
        Some(r) if resumed > 0 || spilled => {
            if head.len() < r.len || crc32fast::hash(&head[..r.len]) != r.crc {
                let read = if resumed > 0 {
                    format!("read to byte {resumed}")
                } else {
                    "read into the spill in its state folder".to_string()
                };
                return Err(fail(format!(
                    "input {} (partition {key}) is not the file the job {read}: its first {} bytes differ from those of {} when it was first read (a log rotated under the same name, or a file replaced or rewritten). Reading it on from there would skip its start: give the new file a name of its own (a new partition, read from its start), or restore the one read",
                    path.display(),
                    r.len,
                    r.path
                )));
            }
            if head.len() > r.len {
                write(dest, &record, &now)?;
            }
        }
        Some(r) if r == now => {}
        // Nothing of it committed yet: whatever file is there now is the one read.
        _ => {
            if resumed > 0 {
                tracing::info!(partition = %key, "no record of the file's start (written by an earlier version): recorded now, unchecked");
            }
            write(dest, &record, &now)?;
        }
    }
    Ok(())
}

fn write(dest: &Destination, record: &str, identity: &Identity) -> Result<(), TaskError> {
    let bytes = serde_json::to_vec(identity).expect("an identity serializes");
    dest.put_atomic(record, &bytes, false)?;
    Ok(())
}

/// The first [`HEAD`] bytes of the file at `path`, a regular file (decompressed when gzip), or
/// fewer when it is shorter or its gzip data is damaged within them.
fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::input::regular::head(&crate::input::regular::open(path)?, HEAD)
}
