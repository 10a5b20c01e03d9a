//! Records taken back out of the log. A request gets its answer once an fsync covers its
//! record; when that fsync fails, the request is refused, but its bytes may still reach the
//! disk (the kernel may write the pages it held later, or not), and the next start would
//! replay them: a pusher that sends the refused request again would see its records twice.
//! So a failed sync cuts the log back to where the last good one left it, and syncs the cut:
//! the refused records are then in neither the log nor the output.

use std::fs::OpenOptions;
use std::sync::Arc;

use super::segment::sync_dir;
use super::{io, Runs, Wal, WalError};

/// Where the log ended at one moment: its last segment (by base) and that file's length, and
/// the end position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    segment: Option<u64>,
    file_len: u64,
    end: u64,
}

impl Mark {
    /// The end position of the log at the mark.
    pub fn end(&self) -> u64 {
        self.end
    }
}

impl Wal {
    /// Where the log ends now, to cut back to with [`Wal::cut_back`].
    pub fn mark(&self) -> Mark {
        Mark {
            segment: self.segments.last().map(|s| s.base),
            file_len: self.file_len,
            end: self.end,
        }
    }

    /// Takes back every record appended since `mark` (a mark of this log, taken while it
    /// ended there), durably: segments started since are removed, the mark's segment is cut
    /// to its length then, and both are synced. Segments wholly released since the mark stay
    /// released (released segments precede the mark's, or are it).
    pub fn cut_back(&mut self, mark: Mark) -> Result<(), WalError> {
        let mut removed = false;
        while let Some(s) = self.segments.last() {
            if mark.segment.is_some_and(|b| s.base <= b) {
                break;
            }
            let s = self.segments.pop().expect("a segment");
            match std::fs::remove_file(&s.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&s.path)(e)),
                _ => removed = true,
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        if let Some(s) = self
            .segments
            .last()
            .filter(|s| Some(s.base) == mark.segment)
        {
            let f = OpenOptions::new()
                .append(true)
                .open(&s.path)
                .map_err(io(&s.path))?;
            f.set_len(mark.file_len).map_err(io(&s.path))?;
            f.sync_all().map_err(io(&s.path))?;
            self.file = Arc::new(f);
            self.file_len = mark.file_len;
        }
        self.end = mark.end;
        self.cursor = None;
        self.last_read = None;
        self.reader = None;
        // The end moved back: positions from here hold other records than before, so they are
        // a new run's (as after damage moved aside), or a copy of the folder made before the
        // cut would count them as shared.
        match Runs::start(&self.dir, mark.end, true) {
            Ok(runs) => self.runs = runs,
            Err(e) => {
                tracing::warn!(error = %e, "the WAL was cut back, but a new run could not be recorded: a copy of its folder made before the cut is not told apart past the cut")
            }
        }
        Ok(())
    }
}
