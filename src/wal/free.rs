//! Committed records freed: segments wholly below the committed position deleted
//! ([`Wal::release`]), and a current segment whose every record is committed emptied in place
//! when the disk is full. A release deletes only segments below the current one, so on a full state disk the current
//! segment kept up to `segment_bytes` (64 MiB by default) of committed records while every
//! push was refused for want of room. Now an append that meets a full disk, or would roll,
//! while everything held is committed, cuts the segment back to its header and renames it to
//! the log's end (its first record's position from now on), then appends there.
//!
//! A crash between the cut and the rename leaves an empty segment under its old name: the log
//! then ends below the committed position, which an open already handles (the checkpoint is
//! ahead of the log: it continues from the checkpoint, see `Wal::seek_check`).

use super::segment::{segment_path, sync_dir};
use super::{io, Segment, Wal, WalError, MAGIC};

impl Wal {
    /// Records before `committed` are in committed files: deletes the segments wholly below it
    /// (never the current one), oldest first, each forgotten once gone: a delete that fails
    /// (a full or failing disk) leaves it and the later ones listed, for the next release. (A
    /// segment forgotten before its delete failed stayed on disk below the ones deleted
    /// later: a gap every start refused.)
    pub fn release(&mut self, committed: u64) -> Result<(), WalError> {
        self.note_committed(committed);
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].base <= committed {
            let path = self.segments[0].path.clone();
            #[cfg(test)]
            crate::hooks::at("wal: before a segment's delete");
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                // Gone already: a delete that landed before it reported an error.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    if removed {
                        let _ = sync_dir(&self.dir);
                    }
                    return Err(io(&path)(e));
                }
            }
            let s = self.segments.remove(0);
            if self.reader.as_ref().is_some_and(|(b, _)| *b == s.base) {
                self.reader = None;
            }
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Records that everything before `committed` is in committed files (see `release`).
    pub(super) fn note_committed(&mut self, committed: u64) {
        self.committed = self.committed.max(committed);
    }

    /// Empties the current segment in place when it holds records and every one is committed:
    /// true when it did. Never the only copy of a record: each is in a committed file.
    pub(super) fn recycle(&mut self) -> Result<bool, WalError> {
        let header = MAGIC.len() as u64;
        // Only the one segment: with an older one still listed (its delete failed), the
        // renamed segment would start past the older one's end, a gap every open refuses.
        if self.committed < self.end || self.file_len <= header || self.segments.len() != 1 {
            return Ok(false);
        }
        let old = self.segments[0].clone();
        self.cursor = None;
        self.last_read = None;
        self.reader = None;
        self.file.set_len(header).map_err(io(&old.path))?;
        self.file.sync_all().map_err(io(&old.path))?;
        self.file_len = header;
        let path = segment_path(&self.dir, self.end);
        #[cfg(test)]
        crate::hooks::at("wal: before an emptied segment's rename");
        if let Err(e) = std::fs::rename(&old.path, &path) {
            // Its records are gone and its name no longer says where the next one goes:
            // remove it, and the next append starts a segment at the end (a full disk
            // refuses that like any append, 503, until there is room).
            // Forgotten either way: appending under its old name would misplace records.
            self.segments.clear();
            std::fs::remove_file(&old.path).map_err(io(&old.path))?;
            tracing::warn!(segment = %old.path.display(), error = %e, "could not rename the emptied WAL segment; removed it");
            return Ok(true);
        }
        self.segments[0] = Segment {
            base: self.end,
            path,
        };
        sync_dir(&self.dir)?;
        tracing::info!(segment = %old.path.display(), at = self.end, "emptied the WAL's current segment, wholly committed, for room");
        Ok(true)
    }
}
