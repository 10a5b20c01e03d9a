//! The runs of a log: every open of the log's folder starts a run with an id of its own,
//! recorded in `<wal>/log-runs` with the position the log ended at (`<run> <position>`, one
//! line a run, oldest first) before anything is appended. A checkpoint names the run that
//! wrote it. A copy of the folder (a volume snapshot started as another process) keeps the
//! log's identity, but from the copy on the two folders append different records at the same
//! positions, each in runs the other does not know. So a checkpoint counts this folder's
//! positions only when its run is in this folder's list and its position lies within what
//! this folder's copy of that run appended: at most where the next run here began. Below
//! that point the two copies hold the same records.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{is_disk_full, read_small, write_small, WalError};

const RUNS_FILE: &str = "log-runs";
/// Runs kept in the list (about 40 bytes each; one a process start): a checkpoint of a run
/// dropped from it counts as another log's, which a start refuses only when this log holds
/// records no commit of its own covered.
const KEEP: usize = 100_000;

/// The runs of one log folder, this process's last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runs {
    /// (run, the log's end when it began; `None` when damage moved aside at that open cut
    /// the log back, so where the run before it ended is unknown).
    list: Vec<(String, Option<u64>)>,
}

impl Runs {
    /// Starts a run of the log in `dir`, which ends at `end`; `cut` says damage was moved
    /// aside at this open. A process opening the same folder again (a repo's task started
    /// again after a failure, its earlier log closed) goes on with its run. A full disk leaves
    /// the log without a run (its commits then name none, and count as this log's wherever
    /// its identity is found).
    pub(super) fn start(dir: &Path, end: u64, cut: bool) -> Result<Option<Runs>, WalError> {
        static OPENED: Mutex<Vec<(PathBuf, Runs)>> = Mutex::new(Vec::new());
        let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, runs)) = opened.iter().find(|(d, _)| d == dir) {
            if !cut {
                return Ok(Some(runs.clone()));
            }
        }
        let runs = Self::start_new(dir, end, cut)?;
        opened.retain(|(d, _)| d != dir);
        if let Some(r) = &runs {
            opened.push((dir.to_path_buf(), r.clone()));
        }
        Ok(runs)
    }

    fn start_new(dir: &Path, end: u64, cut: bool) -> Result<Option<Runs>, WalError> {
        let mut list: Vec<(String, Option<u64>)> = read_small(dir, RUNS_FILE)?
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (run, at) = l.split_once(' ')?;
                Some((run.to_string(), at.parse().ok()))
            })
            .collect();
        let run = format!(
            "{}{}",
            crate::commit::random_tag(),
            crate::commit::random_tag()
        );
        list.push((run, (!cut).then_some(end)));
        let drop = list.len().saturating_sub(KEEP);
        list.drain(..drop);
        let mut text = String::with_capacity(list.len() * 40);
        for (run, at) in &list {
            match at {
                Some(at) => text.push_str(&format!("{run} {at}\n")),
                None => text.push_str(&format!("{run} -\n")),
            }
        }
        match write_small(dir, RUNS_FILE, &text) {
            Ok(()) => Ok(Some(Runs { list })),
            Err(WalError::Io { path, source }) if is_disk_full(&source) => {
                tracing::warn!(path = %path.display(), "no room to record the WAL's run; a copy of this folder started as another process would not be told apart until a start finds room");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// This process's run.
    pub fn current(&self) -> &str {
        &self.list.last().expect("a run was started").0
    }

    /// Up to which position this folder holds what run `run` of this log's identity appended:
    /// where the next run here began (`u64::MAX` for the current run, or a run that a damage
    /// cut ended); `None` when the run is not known here. A copy of the folder shares the run
    /// that was appending when it was copied up to the copy's end, no further.
    pub fn shares(&self, run: &str) -> Option<u64> {
        let i = self.list.iter().position(|(r, _)| r == run)?;
        Some(match self.list.get(i + 1) {
            None | Some((_, None)) => u64::MAX,
            Some((_, Some(next))) => *next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_the_folder_and_the_original_tell_their_runs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let first = Runs::start_new(dir.path(), 0, false).unwrap().unwrap();
        let a1 = first.current().to_string();
        // The folder is copied while run a1 appends; each copy starts a run of its own later.
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join(RUNS_FILE), copy.path().join(RUNS_FILE)).unwrap();
        let b1 = Runs::start_new(copy.path(), 150, false).unwrap().unwrap();
        let a2 = Runs::start_new(dir.path(), 300, false).unwrap().unwrap();
        assert!(b1.shares(&a1) == Some(150), "a1's commits up to the copy");
        assert!(a2.shares(&a1) == Some(300), "the original's own run a1");
        assert!(
            a2.shares(b1.current()).is_none(),
            "the copy's run is unknown here"
        );
        assert!(b1.shares(b1.current()) == Some(u64::MAX));
        assert!(b1.shares("nothing").is_none());
        let reopened = Runs::start_new(dir.path(), 300, false).unwrap().unwrap();
        assert!(
            reopened.shares(a2.current()) == Some(300),
            "the list is kept"
        );
        assert!(reopened.shares(&a1) == Some(300));

        // Damage moved aside: where the run before ended is unknown.
        let cut = Runs::start_new(dir.path(), 10, true).unwrap().unwrap();
        assert!(cut.shares(reopened.current()) == Some(u64::MAX));
        let text = std::fs::read_to_string(dir.path().join(RUNS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.ends_with(" -\n"), "{text}");
    }

    #[test]
    fn a_process_opening_the_folder_again_goes_on_with_its_run() {
        let dir = tempfile::tempdir().unwrap();
        let first = Runs::start(dir.path(), 0, false).unwrap().unwrap();
        let again = Runs::start(dir.path(), 70, false).unwrap().unwrap();
        assert_eq!(first, again);
        let text = std::fs::read_to_string(dir.path().join(RUNS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        // Damage moved aside starts a run even so.
        let cut = Runs::start(dir.path(), 10, true).unwrap().unwrap();
        assert_ne!(cut.current(), first.current());
        assert_eq!(cut.shares(first.current()), Some(u64::MAX));
    }
}
