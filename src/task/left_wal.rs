//! A WAL left behind: a push job switched from `durability = "wal"` to `"memory"` (or whose
//! WAL folder a memory job finds) never reads that folder again, so records it holds that no
//! commit of its log covered (acknowledged pushes) would be lost without a word. A start is
//! refused while the folder holds such records, before any partition is claimed (a refused
//! start fences nobody), naming the way out; a folder whose records are all committed is only
//! mentioned.

use std::path::Path;

use super::TaskError;
use crate::commit::checkpoint::Checkpoints;
use crate::config::{Job, SourceSection};
use crate::source::PartitionInfo;

/// Refuses the start of a memory push job whose WAL folder holds records past every commit of
/// that log (its partition's history, read without a term).
pub(super) fn check(
    job: &Job,
    checkpoints: &Checkpoints,
    parts: &[PartitionInfo],
) -> Result<(), TaskError> {
    let SourceSection::Push {
        durability,
        wal_dir,
        ..
    } = &job.file.source
    else {
        return Ok(());
    };
    if durability != "memory" {
        return Ok(());
    }
    let dir = super::wal_folder(job, wal_dir.as_deref());
    if !holds_segments(&dir) || !ours(&dir, &job.file.job.name) {
        return Ok(());
    }
    let refuse = |why: String| TaskError::Job {
        job: job.file.job.name.clone(),
        reason: format!(
            "the WAL in {} (this job's, from `durability = \"wal\"`) {why}; this job keeps no \
             WAL (`durability = \"memory\"`) and would never read them. Start it once with \
             `durability = \"wal\"` (it commits them; with that setting back, `sluice wal \
             export --from <the first position named>` can also write them out), then switch; \
             or move the folder aside to drop them",
            dir.display()
        ),
    };
    let id = crate::wal::read_id(&dir).map_err(|e| refuse(format!("cannot be read ({e})")))?;
    let held = crate::wal::export::export(&dir, 0, false, &mut std::io::sink())
        .map_err(|e| refuse(format!("cannot be read to its end ({e})")))?;
    let Some(p) = parts.first() else {
        return Ok(());
    };
    // A log without an identity (an earlier version's, or one a full disk kept from naming
    // itself) cannot be matched to commits: any record it holds may be uncommitted.
    let Some(id) = id else {
        if held.end > held.from {
            return Err(refuse(format!(
                "holds positions {} to {} and has no identity to tell which of them were committed",
                held.from, held.end
            )));
        }
        return Ok(());
    };
    // How far the commits of that log reach.
    let mut covered = None;
    for c in checkpoints.history(&p.key())? {
        if c.log.as_deref() == Some(id.as_str()) {
            covered = covered.max(Some(c.next_offset));
        }
    }
    let covered = match covered {
        Some(c) => c,
        // Its commits pruned (hundreds of commits of the memory log since): it cannot be told.
        None if !checkpoints.history_complete(&p.key())? => {
            tracing::warn!(folder = %dir.display(), "a WAL folder from `durability = \"wal\"` is not read (`durability = \"memory\"`), and the commits kept no longer tell whether all it holds was committed; move it aside once you know");
            return Ok(());
        }
        None => 0,
    };
    if held.end > covered.max(held.from) {
        return Err(refuse(format!(
            "holds positions {} to {} that no commit of its log covered (acknowledged records)",
            covered.max(held.from),
            held.end
        )));
    }
    tracing::info!(folder = %dir.display(), "a WAL folder from `durability = \"wal\"` is not read (`durability = \"memory\"`); every record it holds is committed, so it can be removed");
    Ok(())
}

/// Whether `dir` holds WAL segments.
fn holds_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".wal")))
    })
}

/// Whether the WAL in `dir` is job `job`'s (it names its job; a folder of an earlier version
/// names none, and counts as this job's).
fn ours(dir: &Path, job: &str) -> bool {
    crate::source::push::wal_owner(dir).map_or(true, |owner| owner == job)
}
