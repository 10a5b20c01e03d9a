//! `sluice vacuum`: deletes the table folder's Parquet files that no version within the
//! retention names (files compacted away, outputs of compactions that lost, files of commits
//! that never reached the table), as Delta's own vacuum in its full mode decides them, and
//! last modified before the retention. Never deleted: the files of any sluice job's commits in
//! flight (claimed, not yet released) and of its sealed commits the table does not hold yet
//! (the next start publishes them), files a version written after the plan adds or removes
//! (live, or readable through versions within the retention), and anything under a folder
//! starting with `_` or `.` (`_delta_log`, `_sluice`, `_dead_letters`), nor in a folder inside
//! the table that is another destination (its own `_sluice/` or `_delta_log/`). A folder where
//! another job commits plain files beside the table's is refused.

use std::collections::HashSet;
use std::time::Duration;

use deltalake_core::operations::vacuum::VacuumMode;

use super::delta::DeltaTable;
use super::{Publisher, TableError};
use crate::commit::checkpoint::Checkpoints;
use crate::store::Destination;

/// What to vacuum.
#[derive(Debug, Clone)]
pub struct VacuumOptions {
    /// Files removed from the table (and files never in it) more recently than this stay:
    /// readers may still be reading versions that name them.
    pub older_than: Duration,
    /// Report only.
    pub dry_run: bool,
}

/// What a vacuum did (or would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// Deleted (or to delete, in a dry run).
    pub files: Vec<String>,
    /// Unreferenced but named by a sealed commit the table does not hold yet: kept.
    pub kept_unpublished: usize,
    /// Unreferenced when planned, but added or removed by a version written since: kept.
    pub kept_recent: usize,
    /// In a folder inside the table that is another destination (its own `_sluice/` or
    /// `_delta_log/`): kept.
    pub kept_other: usize,
}

/// Vacuums the table at `dest`; `progress` is told how many files were deleted so far.
pub fn vacuum(
    table: &DeltaTable,
    dest: &Destination,
    opts: &VacuumOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<VacuumReport, TableError> {
    let retention = chrono::Duration::from_std(opts.older_than).map_err(|e| TableError::Delta {
        url: dest.url().to_string(),
        reason: format!("retention: {e}"),
    })?;
    // Longer than the table keeps tombstones, a file removed inside the retention would look
    // never referenced (its tombstone gone from the checkpoints) and be judged by its age.
    let keeps = table.tombstone_retention()?;
    if opts.older_than > keeps {
        return Err(TableError::Delta {
            url: dest.url().to_string(),
            reason: format!(
                "--older-than is longer than the table keeps removed files' records ({} s, `delta.deletedFileRetentionDuration`): files removed within it could not be told from files never in the table; use at most that, or raise the property",
                keeps.as_secs()
            ),
        });
    }
    // Before the plan: a commit the table lacks now may be published while the plan runs,
    // and must still be kept.
    let jobs_before = jobs(dest)?;
    refuse_other_writers(table, dest, &jobs_before)?;
    let protected = unpublished(table, dest, &jobs_before)?;
    let log = table.log_store();
    let planned: Result<(u64, Vec<String>), deltalake_core::DeltaTableError> =
        table.runtime().block_on(async {
            let mut t = deltalake_core::DeltaTable::new(log);
            t.load().await?;
            let version = t.version().unwrap_or(0);
            let (_, metrics) = t
                .vacuum()
                .with_mode(VacuumMode::Full)
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .with_dry_run(true)
                .await?;
            Ok((version, metrics.files_deleted))
        });
    let (planned_at, planned) = planned.map_err(|e| TableError::Delta {
        url: dest.url().to_string(),
        reason: format!("cannot plan the vacuum: {e}"),
    })?;
    #[cfg(test)]
    crate::hooks::at("vacuum: after the plan");
    // After the plan, in this order. A file the plan listed was claimed before it became
    // visible, so its claim is read here unless it was released; a released claim was sealed
    // first, so the sealed commits read next name it unless the table holds it, which the
    // check of the table's files below finds. (A file kept open longer than the retention
    // looks old the moment it lands: S3 dates an upload by its start.)
    let mut protected = protected;
    let jobs = jobs(dest)?;
    protected.extend(claimed(dest, &jobs)?);
    protected.extend(unpublished(table, dest, &jobs)?);
    refuse_other_writers(table, dest, &jobs)?;
    let mut report = VacuumReport::default();
    let mut doomed: Vec<String> = Vec::new();
    for f in planned {
        if !f.ends_with(".parquet") {
            continue;
        }
        if protected.contains(&f) {
            report.kept_unpublished += 1;
        } else {
            doomed.push(f);
        }
    }
    let others = other_destinations(dest, &doomed)?;
    if !others.is_empty() {
        let before = doomed.len();
        doomed.retain(|f| !others.iter().any(|o| f.starts_with(o.as_str())));
        report.kept_other = before - doomed.len();
    }
    // Last, what a version written since the plan adds or removes is never deleted: a file
    // it adds is live or was removed since (readers of the versions between may read it
    // until its removal is older than the retention), whatever its upload's date says.
    if !doomed.is_empty() {
        let touched = table.touched_after(planned_at)?;
        let before = doomed.len();
        doomed.retain(|f| !touched.contains(f));
        report.kept_recent = before - doomed.len();
    }
    let total = doomed.len() as u64;
    for (i, f) in doomed.into_iter().enumerate() {
        if !opts.dry_run {
            dest.delete(&f)?;
            progress(i as u64 + 1, total);
        }
        report.files.push(f);
    }
    Ok(report)
}

/// The sluice jobs recorded in the destination: those with checkpoints or claims.
fn jobs(dest: &Destination) -> Result<HashSet<String>, TableError> {
    let mut jobs: HashSet<String> = HashSet::new();
    for f in dest.list("_sluice/")? {
        if let Some((job, rest)) = f.strip_prefix("_sluice/").and_then(|r| r.split_once('/')) {
            if rest.starts_with("checkpoints/") || rest.starts_with("fence/") {
                jobs.insert(job.to_string());
            }
        }
    }
    Ok(jobs)
}

/// Refuses a vacuum of a folder where a job other than the table's writers commits: one of
/// `jobs` of which the table holds no commit (another repo's plain files sharing the folder).
/// Its files are named by nothing the table keeps once its records are pruned (256 commits a
/// partition), and would be deleted as never in the table. A backfill of the table publishes
/// into it, so it counts as a writer once any of its commits is held.
fn refuse_other_writers(
    table: &DeltaTable,
    dest: &Destination,
    jobs: &HashSet<String>,
) -> Result<(), TableError> {
    for job in jobs.iter().filter(|j| j.as_str() != table.job()) {
        let cps = Checkpoints::new(dest.clone(), job);
        let keys = cps.keys()?;
        if keys.is_empty() {
            continue;
        }
        let mut held = false;
        for key in &keys {
            if table.published_by(job, key)?.is_some() {
                held = true;
                break;
            }
        }
        if !held {
            return Err(TableError::Delta {
                url: dest.url().to_string(),
                reason: format!(
                    "job `{job}` commits files into this folder (_sluice/{job}/), and the table holds none of them: it writes plain files here (another repo sharing the folder?), and a vacuum would delete those whose records are pruned. Give it a folder outside the table; if it is a backfill of this table, run it to its end first. Nothing was deleted"
                ),
            });
        }
    }
    Ok(())
}

/// Folders inside the table (ending in `/`) holding files of `doomed` that are destinations
/// of their own: another job's (`_sluice/`) or another table (`_delta_log/`). Delta's vacuum
/// reads every file under the table's folder as the table's; theirs are not. Each folder
/// above a doomed file is looked at once (two listings that stop at the first name).
fn other_destinations(dest: &Destination, doomed: &[String]) -> Result<Vec<String>, TableError> {
    let mut folders: HashSet<&str> = HashSet::new();
    for f in doomed {
        for (i, _) in f.match_indices('/') {
            folders.insert(&f[..=i]);
        }
    }
    let mut folders: Vec<&str> = folders.into_iter().collect();
    folders.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    for folder in folders {
        if out.iter().any(|o| folder.starts_with(o.as_str())) {
            continue;
        }
        for marker in ["_sluice/", "_delta_log/"] {
            if dest.any(&format!("{folder}{marker}"))? {
                tracing::warn!(folder = %dest.display(folder), holds = marker, "a folder inside the table is another destination: its files are not the table's and are kept");
                out.push(folder.to_string());
                break;
            }
        }
    }
    Ok(out)
}

/// Files named by the claims of every sluice job recorded in the destination: commits in
/// flight, whose files may be visible but named by nothing else yet.
fn claimed(dest: &Destination, jobs: &HashSet<String>) -> Result<HashSet<String>, TableError> {
    let mut out = HashSet::new();
    for job in jobs {
        let cps = Checkpoints::new(dest.clone(), job);
        out.extend(cps.claimed_files()?.iter().map(|f| dest.key(f)));
    }
    Ok(out)
}

/// Files of sealed commits (of every sluice job recorded in the destination) that the table
/// does not hold yet.
fn unpublished(
    table: &DeltaTable,
    dest: &Destination,
    jobs: &HashSet<String>,
) -> Result<HashSet<String>, TableError> {
    let mut out = HashSet::new();
    for job in jobs {
        let cps = Checkpoints::new(dest.clone(), job);
        for key in cps.keys()? {
            let held = table.published_by(job, &key)?;
            let (standing, _) = cps.standing_after(&key, held.unwrap_or(0))?;
            out.extend(
                standing
                    .into_iter()
                    .flat_map(|c| c.files)
                    .map(|f| dest.key(&f.path)),
            );
        }
    }
    Ok(out)
}

impl DeltaTable {
    /// How far the table holds partition `key` of job `job` (not necessarily this one's).
    pub fn published_by(&self, job: &str, key: &str) -> Result<Option<u64>, TableError> {
        if job == self.job() {
            return self.published(key);
        }
        self.app_version(&super::delta::app_id(job, key))
    }
}
