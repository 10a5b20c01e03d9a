//! One process per job state: an exclusive lock on a folder (`<folder>/LOCK`, holding the
//! holder's PID), taken by `run` for file and push jobs (and by `backfill`) before anything is
//! read or written; a push job's WAL folder is locked on its own, wherever it is. Two processes of one such job would read one spill, one WAL and write one
//! partition twice; the second is refused at start with the holder's PID.
//!
//! The lock is the operating system's (`flock`): it goes away with the process however it
//! ends (kill -9 included), so a stale `LOCK` file never blocks a start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} is locked by another sluice process (PID {pid}) running this job; stop it first (a second process of a Kafka job, to share its partitions, needs a `job.state_dir` of its own; other jobs run as one process)")]
    Held { path: PathBuf, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An exclusive lock on a folder, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (created if missing), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join("LOCK");
        let err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Made durable, names and all: the WAL folder is often made here first, and its name
        // must survive a power loss with the records written in it.
        crate::durable::create_dirs(dir).map_err(err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    path,
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        // The pid is for people: a full disk must not stop the start that would free it.
        let pid = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all());
        if let Err(e) = pid {
            tracing::warn!(path = %path.display(), error = %e, "could not write this process's id into the lock file (the lock is held)");
        }
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("PID {}", std::process::id())), "{e}");
        drop(first);
        let again = DirLock::acquire(dir.path()).unwrap();
        assert!(again.path().ends_with("LOCK"));
    }
}
