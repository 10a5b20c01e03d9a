//! The runs of a log: every process that opens the log's folder starts a run with an id of its
//! own, appended to `<wal>/log-runs` with the position the log ended at (`<run> <position>`,
//! one line a run, oldest first) before anything is appended to the log. A checkpoint names
//! the last runs of the folder that wrote it, its own run last ([`Runs::tail`]).
//!
//! A copy of the folder (a volume snapshot started as another process) keeps the log's
//! identity, but from the copy on the two folders append different records at the same
//! positions, each in runs of its own. Two folders hold the same records below their fork:
//! for the newest run both know, the lower of the positions where each folder's next run
//! began. So a checkpoint counts this folder's positions only up to that fork
//! ([`Runs::shares`]); a run's commits never pass the position where the folder's next run
//! began (they cover only records made durable, which the next open finds).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{io, is_disk_full, segment::sync_dir, write_small, WalError};

const RUNS_FILE: &str = "log-runs";
/// Runs kept in the file (about 40 bytes each; one a process start). A checkpoint whose runs
/// all fell out counts as another log's, which a start refuses only when this log holds
/// records no commit of its own covered.
const KEEP: usize = 100_000;
/// Runs a checkpoint names: a copy and the original find their newest common run among
/// them unless one of them started this many times since the copy.
const TAIL: usize = 16;

/// The runs of one log folder, this process's last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runs {
    /// (run, the log's end when it began).
    list: Vec<(String, u64)>,
    /// This process's run is in the file (a full disk may keep it out; see [`Runs::record`]).
    recorded: bool,
}

/// The runs `log-runs` in `dir` lists, oldest first.
fn read(dir: &Path) -> Result<Vec<(String, u64)>, WalError> {
    let path = dir.join(RUNS_FILE);
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&path)(e)),
    };
    Ok(text
        .split_inclusive('\n')
        // A line a full disk cut short has no line end, or the mark closing it.
        .filter_map(|l| {
            let (run, at) = l.strip_suffix('\n')?.split_once(' ')?;
            Some((run.to_string(), at.parse().ok()?))
        })
        .collect())
}

impl Runs {
    /// Starts a run of the log in `dir`, which ends at `end`; `cut` says damage was moved
    /// aside at this open (the log's end moved back: a new run even in a process that opened
    /// the folder before). A process opening the same folder again (a repo's task started
    /// again after a failure, its earlier log closed) goes on with its run.
    pub(super) fn start(dir: &Path, end: u64, cut: bool) -> Result<Runs, WalError> {
        static OPENED: Mutex<Vec<(PathBuf, Runs)>> = Mutex::new(Vec::new());
        let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, runs)) = opened.iter().find(|(d, _)| d == dir) {
            // Only while the folder's newest run is still this process's (the folder was not
            // replaced or moved aside and made again).
            let newest = read(dir)?.pop();
            if !cut && newest.is_some_and(|(r, _)| r == runs.current()) {
                let mut runs = runs.clone();
                runs.recorded = true;
                return Ok(runs);
            }
        }
        let runs = Self::start_new(dir, end)?;
        opened.retain(|(d, _)| d != dir);
        opened.push((dir.to_path_buf(), runs.clone()));
        Ok(runs)
    }

    fn start_new(dir: &Path, end: u64) -> Result<Runs, WalError> {
        let mut list = read(dir)?;
        if list.len() >= KEEP {
            // Rewritten without the oldest half (a full disk keeps them: appending goes on).
            let text: String = list[KEEP / 2..]
                .iter()
                .map(|(r, at)| format!("{r} {at}\n"))
                .collect();
            match write_small(dir, RUNS_FILE, &text) {
                Ok(()) => {
                    list.drain(..KEEP / 2);
                }
                Err(WalError::Io { source, .. }) if is_disk_full(&source) => {}
                Err(e) => return Err(e),
            }
        }
        let run = format!(
            "{}{}",
            crate::commit::random_tag(),
            crate::commit::random_tag()
        );
        list.push((run, end));
        let mut runs = Runs {
            list,
            recorded: false,
        };
        match runs.record(dir) {
            // A start must not fail for it (commits free the log's segments).
            Err(WalError::Full { path, .. }) => {
                tracing::warn!(path = %path.display(), "no room to record the WAL's run: pushes are refused until there is");
            }
            r => r?,
        }
        Ok(runs)
    }

    /// Appends this process's run to the file if it is not there yet; a full disk leaves it
    /// out ([`WalError::Full`]). Until it is recorded, this folder's next start would not
    /// know the run and would count what it appended as the run before's: the log takes
    /// nothing (each append tries again), and commits of what it already held are safe.
    pub fn record(&mut self, dir: &Path) -> Result<(), WalError> {
        if self.recorded {
            return Ok(());
        }
        let (run, at) = self.list.last().expect("a run was started");
        let path = dir.join(RUNS_FILE);
        let appended = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                // A line a full disk cut short is closed with a mark that keeps it from
                // parsing; this run goes on a line of its own.
                let len = f.metadata()?.len();
                let mut last = [b'\n'];
                if len > 0 {
                    std::os::unix::fs::FileExt::read_exact_at(&f, &mut last, len - 1)?;
                }
                let start = if last[0] == b'\n' { "" } else { "!\n" };
                f.write_all(format!("{start}{run} {at}\n").as_bytes())?;
                f.sync_all()
            });
        match appended {
            Ok(()) => {
                self.recorded = true;
                sync_dir(dir)
            }
            Err(source) if is_disk_full(&source) => Err(WalError::Full { path, source }),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// This process's run.
    pub fn current(&self) -> &str {
        &self.list.last().expect("a run was started").0
    }

    /// The runs a checkpoint names: this folder's last ones, this process's last.
    pub fn tail(&self) -> Vec<(String, u64)> {
        self.list[self.list.len().saturating_sub(TAIL)..].to_vec()
    }

    /// Up to which position this folder holds the same records as the folder whose runs
    /// `theirs` names (a checkpoint's, its writer's run last): `u64::MAX` when this folder
    /// knows the writer's run and no run began here after it (or `theirs` names none: records
    /// of older versions); the fork of the two folders when they share an older run; `None`
    /// when they share no run named.
    pub fn shares(&self, theirs: &[(String, u64)]) -> Option<u64> {
        let next_here = |i: usize| self.list.get(i + 1).map_or(u64::MAX, |(_, at)| *at);
        let position = |run: &str| self.list.iter().rposition(|(r, _)| r == run);
        let Some((last, _)) = theirs.last() else {
            return Some(u64::MAX);
        };
        if let Some(i) = position(last) {
            return Some(next_here(i));
        }
        theirs
            .windows(2)
            .rev()
            .find_map(|w| Some(next_here(position(&w[0].0)?).min(w[1].1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, end: u64) -> Runs {
        Runs::start_new(dir, end).unwrap()
    }

    #[test]
    fn a_copy_of_the_folder_and_the_original_tell_their_runs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let a1 = run(dir.path(), 0);
        // The folder is copied while run a1 appends (at position 150); each copy starts a run
        // of its own later.
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join(RUNS_FILE), copy.path().join(RUNS_FILE)).unwrap();
        let b1 = run(copy.path(), 150);
        let a2 = run(dir.path(), 300);
        assert_eq!(b1.shares(&a1.tail()), Some(150), "a1 up to the copy");
        assert_eq!(a2.shares(&a1.tail()), Some(300), "the original's own a1");
        assert_eq!(b1.shares(&b1.tail()), Some(u64::MAX));
        assert_eq!(b1.shares(&[]), Some(u64::MAX), "a checkpoint naming no run");
        // The original's a2 began after a1, which the copy has up to 150.
        assert_eq!(b1.shares(&a2.tail()), Some(150));
        assert_eq!(a2.shares(&b1.tail()), Some(150));
        assert_eq!(b1.shares(&[("elsewhere".into(), 0)]), None);
        let a3 = run(dir.path(), 300);
        assert_eq!(a3.shares(&a2.tail()), Some(300), "the list is kept");
        assert_eq!(a3.shares(&b1.tail()), Some(150));
        let text = std::fs::read_to_string(dir.path().join(RUNS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn a_checkpoint_names_the_last_runs_and_a_cut_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            run(dir.path(), i * 10);
        }
        let last = run(dir.path(), 200);
        let tail = last.tail();
        assert_eq!(tail.len(), TAIL);
        assert_eq!(tail.last().unwrap().0, last.current());
        // A line a full disk cut short is not a run.
        let path = dir.path().join(RUNS_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("0123abcd 12");
        std::fs::write(&path, &text).unwrap();
        let after = run(dir.path(), 200);
        assert_eq!(after.shares(&last.tail()), Some(200));
    }

    #[test]
    fn a_process_opening_the_folder_again_goes_on_with_its_run() {
        let dir = tempfile::tempdir().unwrap();
        let first = Runs::start(dir.path(), 0, false).unwrap();
        let again = Runs::start(dir.path(), 70, false).unwrap();
        assert_eq!(first, again);
        let text = std::fs::read_to_string(dir.path().join(RUNS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        // The folder replaced (moved aside and made again): a run of its own.
        std::fs::remove_file(dir.path().join(RUNS_FILE)).unwrap();
        let fresh = Runs::start(dir.path(), 0, false).unwrap();
        assert_ne!(fresh.current(), first.current());
        assert_eq!(fresh.shares(&first.tail()), None);
        // Damage moved aside starts a run even so, at the end the cut left.
        let cut = Runs::start(dir.path(), 10, true).unwrap();
        assert_ne!(cut.current(), fresh.current());
        assert_eq!(cut.shares(&fresh.tail()), Some(10));
    }
}
