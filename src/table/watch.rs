//! A job without a table watching for one another process made since its start. The start
//! and every claim of partitions check (`refuse_plain_into_table`), but a partition a
//! process already holds is not claimed again (a group's cooperative rebalances leave it
//! where it is): its plain commits went on into the table's folder, and once it moved, the
//! table's writers refused them (no partition values) and it stopped for good. So a commit
//! looks again first, at most once every [`EVERY`] (one listing), and once a table is found,
//! every later commit of the process is refused without looking: the task stops, refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{refuse_plain_into_table, TableError, TableKind};
use crate::store::Destination;

/// How often a job without a table looks for one at most: the window in which commits of
/// partitions it holds may still land beside a table made meanwhile.
pub const EVERY: Duration = Duration::from_secs(60);

/// See the module's documentation. Shared by a task's workers.
pub struct Watch {
    every: Duration,
    /// When the next commit looks again.
    next: Mutex<Instant>,
    /// A table was found: every later commit is refused.
    found: AtomicBool,
}

impl Watch {
    /// A watch for a task that checked at its start (the first look is [`EVERY`] from now;
    /// tests shorten it with the fault point `table_watch_every`).
    pub fn new() -> Self {
        let every = crate::fault::millis("table_watch_every").unwrap_or(EVERY);
        Watch {
            every,
            next: Mutex::new(Instant::now() + every),
            found: AtomicBool::new(false),
        }
    }

    /// Before a commit's claim: `NotATableJob` if `dest` holds a table now (looked for once
    /// every [`EVERY`]), or held one when an earlier commit looked. A look that fails (the
    /// store unreachable) fails this commit like any store error, and the next commit looks
    /// again.
    pub fn check(&self, dest: &Destination) -> Result<(), TableError> {
        if self.found.load(Ordering::Acquire) {
            return Err(TableError::NotATableJob {
                url: dest.url().to_string(),
            });
        }
        let now = Instant::now();
        {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            if now < *next {
                return Ok(());
            }
            *next = now + self.every;
        }
        match refuse_plain_into_table(&TableKind::None, dest) {
            Ok(()) => Ok(()),
            Err(e @ TableError::NotATableJob { .. }) => {
                self.found.store(true, Ordering::Release);
                Err(e)
            }
            Err(e) => {
                *self.next.lock().unwrap_or_else(|p| p.into_inner()) = now;
                Err(e)
            }
        }
    }
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not looked for until its time; then found, and from then on refused without looking.
    #[test]
    fn a_table_made_since_is_found_at_the_next_look_and_refused_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        let w = Watch {
            every: Duration::from_secs(3600),
            next: Mutex::new(Instant::now() + Duration::from_secs(3600)),
            found: AtomicBool::new(false),
        };
        let log = dir.path().join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join("00000000000000000000.json"), b"{}\n").unwrap();
        assert!(w.check(&dest).is_ok(), "not looked for before its time");
        *w.next.lock().unwrap() = Instant::now();
        assert!(matches!(
            w.check(&dest),
            Err(TableError::NotATableJob { .. })
        ));
        std::fs::remove_dir_all(&log).unwrap();
        assert!(
            w.check(&dest).is_err(),
            "refused from then on, without looking"
        );
    }

    /// A look that fails is that commit's failure, not a table: the next commit looks again
    /// and goes on. Before, any error of the look refused every later commit as if a table
    /// had been found.
    #[test]
    fn a_look_that_fails_is_not_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        let w = Watch {
            every: Duration::from_secs(3600),
            next: Mutex::new(Instant::now()),
            found: AtomicBool::new(false),
        };
        // A file where the log's folder would be: listing it fails (not a folder).
        let log = dir.path().join("_delta_log");
        std::fs::write(&log, b"x").unwrap();
        let first = w.check(&dest);
        assert!(matches!(first, Err(TableError::Store(_))), "{first:?}");
        std::fs::remove_file(&log).unwrap();
        assert!(w.check(&dest).is_ok(), "looked again, no table");
    }
}
