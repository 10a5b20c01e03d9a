//! Which job a WAL folder's log is: named in the folder (`job`), another job's refused.

/// The file of a WAL folder naming the job whose log it is.
const WAL_JOB_FILE: &str = "job";

/// The job a WAL folder names as its own (read from the folder; `NotFound` when it names
/// none, as an earlier version's does).
pub fn wal_owner(dir: &std::path::Path) -> std::io::Result<String> {
    std::fs::read_to_string(dir.join(WAL_JOB_FILE)).map(|o| o.trim().to_string())
}

/// Refuses a WAL folder another job's log is in (two push jobs left at one `state_dir`: one
/// would export and release the other's acknowledged records), and names `job` in a folder
/// that names none yet (a new log, or one of an earlier version). Called before the log is
/// opened, and again after (when the folder exists).
pub(super) fn own_wal(dir: &std::path::Path, job: &str, write: bool) -> Result<(), String> {
    let path = dir.join(WAL_JOB_FILE);
    match wal_owner(dir) {
        Ok(owner) if owner == job => Ok(()),
        Ok(owner) => Err(format!(
            "the WAL in {} is job `{}`'s log, not job `{job}`'s: give each push job its own \
             `job.state_dir` (or `source.wal_dir`)",
            dir.display(),
            owner.trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !write => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let written = crate::durable::write_small(dir, WAL_JOB_FILE, job.as_bytes());
            match written {
                // A full disk must not keep the log from opening (committing frees segments):
                // the next start names it.
                Err(e) if crate::wal::is_disk_full(&e) => {
                    tracing::warn!(path = %path.display(), error = %e, "no room to name the job in the WAL folder; the next start tries again");
                    Ok(())
                }
                Err(e) => Err(format!("cannot write {}: {e}", path.display())),
                Ok(()) => Ok(()),
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
