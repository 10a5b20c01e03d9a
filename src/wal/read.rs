//! Reading a log: a position checked (released below the start; past the end, the log goes
//! on from there) and records read from a position, located in their segment.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::segment::{crc, segment_path, sync_dir};
use super::{io, Wal, WalError, MAGIC, MAX_RECORD, RECORD_HEADER};

impl Wal {
    /// Makes `pos` a valid reading position: below the start is an error (released); past the
    /// end (the checkpoint is ahead of the log, e.g. the log folder was removed) the log
    /// continues from `pos`, and older segments, all committed, are deleted.
    pub fn seek_check(&mut self, pos: u64) -> Result<(), WalError> {
        if pos < self.start() {
            return Err(WalError::Released {
                dir: self.dir.clone(),
                want: pos,
                start: self.start(),
            });
        }
        if pos > self.end {
            // Everything held is below `pos`, so committed: delete it first, so that a crash
            // in between leaves no gap before the new segment. After damage was moved aside
            // the log may end short of a spill's position: what it holds is moved aside too,
            // never deleted.
            // One at a time, each forgotten once gone: a failure leaves the rest listed.
            self.reader = None;
            self.cursor = None;
            self.last_read = None;
            while let Some(seg) = self.segments.first() {
                match &self.moved_to {
                    None => std::fs::remove_file(&seg.path).map_err(io(&seg.path))?,
                    Some(to) => {
                        let name = seg.path.file_name().expect("a segment name");
                        std::fs::rename(&seg.path, to.join(name)).map_err(io(&seg.path))?;
                    }
                }
                self.segments.remove(0);
            }
            sync_dir(&self.dir)?;
            // An empty log at `pos`; when its first segment cannot be created now (a full
            // disk), the next append creates it (refused meanwhile, as on any full disk).
            self.end = pos;
            #[cfg(test)]
            crate::hooks::at("wal: before the segment past the end");
            match self.start_segment(pos) {
                Err(WalError::Full { path, source }) => tracing::warn!(
                    segment = %path.display(), error = %source,
                    "the disk is full: the log's next segment is made by the next append"
                ),
                r => r?,
            }
        }
        Ok(())
    }

    /// Reads records from `pos` (a record boundary, or inside a record) up to `limit` (the
    /// durable end, or inside a record: a piece of a push request ends there), appending
    /// payload bytes to `out` until at least `max` bytes were added. Returns the position
    /// after what was read.
    pub fn read(
        &mut self,
        pos: u64,
        limit: u64,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<u64, WalError> {
        self.read_records(pos, limit, max, out, true)
    }

    /// [`Wal::read`], with each record's checksum checked when `sums` (without: the text of
    /// push requests whose rows were decoded before they were written and are taken from
    /// memory; a copy damaged on the disk since failed the task, and the open that followed
    /// cut the newest record as a torn tail, losing rows acknowledged and whole in memory).
    /// Lengths and positions are checked either way.
    pub fn read_records(
        &mut self,
        pos: u64,
        limit: u64,
        max: usize,
        out: &mut Vec<u8>,
        sums: bool,
    ) -> Result<u64, WalError> {
        let mut at = pos;
        let before = out.len();
        while at < limit && out.len() - before < max {
            let (base, offset, rec_pos) = self.locate(at)?;
            let path = segment_path(&self.dir, base);
            if self.reader.as_ref().is_none_or(|(b, _)| *b != base) {
                self.reader = Some((base, File::open(&path).map_err(io(&path))?));
            }
            let file = &self.reader.as_ref().expect("just opened").1;
            let skip = at - rec_pos;
            let mut offset = offset;
            let (len, sum) = loop {
                let mut h = [0u8; RECORD_HEADER as usize];
                file.read_exact_at(&mut h, offset).map_err(io(&path))?;
                let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as u64;
                let sum = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
                let stored = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
                // What the open's scan checked, checked again: the file may have changed
                // under the process since (a bad sector, another writer). Trusted, a length
                // of garbage allocated up to 4 GiB, and bytes of garbage became rows.
                if len > MAX_RECORD || (len > 0 && stored != rec_pos) || len < skip {
                    return Err(WalError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!(
                            "the record read for position {at} (from {rec_pos} on) says it \
                             holds {len} bytes at position {stored}"
                        ),
                    });
                }
                // An empty record holds no position: the next one starts where it does.
                // Taken as the record at `at`, it was read again and again, for ever.
                if len > 0 || skip > 0 {
                    break (len, sum);
                }
                offset += RECORD_HEADER;
            };
            // Up to `limit`; a record checked is read whole (its checksum covers all of it).
            let upto = len.min(limit - rec_pos);
            let check = sums && skip == 0;
            let read_to = if check { len } else { upto };
            let from = out.len();
            out.resize(from + (read_to - skip) as usize, 0);
            file.read_exact_at(&mut out[from..], offset + RECORD_HEADER + skip)
                .map_err(io(&path))?;
            // A record read from its start is checked whole (one read from inside is a
            // resume's or a later piece's: its start is not read).
            if check && crc(rec_pos, &out[from..]) != sum {
                out.truncate(from);
                return Err(WalError::Corrupt {
                    path: path.clone(),
                    offset,
                    reason: format!(
                        "the checksum of the record at position {rec_pos} does not match"
                    ),
                });
            }
            out.truncate(from + (upto - skip) as usize);
            at = rec_pos + upto;
            if upto == len {
                self.cursor = Some((base, offset + RECORD_HEADER + len, at));
            }
            self.last_read = Some((base, offset, rec_pos, len));
        }
        Ok(at)
    }

    /// The record holding `pos`: (segment base, byte offset of its header, its position).
    fn locate(&mut self, pos: u64) -> Result<(u64, u64, u64), WalError> {
        // A segment starts where the previous one's last record ends (the cursor may still
        // point past that record, written before the segment rolled).
        if self.segments.iter().any(|s| s.base == pos) {
            return Ok((pos, MAGIC.len() as u64, pos));
        }
        if let Some((base, offset, at)) = self.cursor {
            if at == pos && self.segments.iter().any(|s| s.base == base) {
                return Ok((base, offset, at));
            }
        }
        if let Some((base, offset, at, len)) = self.last_read {
            if (at..at + len).contains(&pos) && self.segments.iter().any(|s| s.base == base) {
                return Ok((base, offset, at));
            }
        }
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.base <= pos)
            .ok_or_else(|| WalError::Released {
                dir: self.dir.clone(),
                want: pos,
                start: self.start(),
            })?
            .clone();
        let file = File::open(&seg.path).map_err(io(&seg.path))?;
        let mut offset = MAGIC.len() as u64;
        let mut at = seg.base;
        loop {
            let mut h = [0u8; RECORD_HEADER as usize];
            file.read_exact_at(&mut h, offset)
                .map_err(|_| WalError::Corrupt {
                    path: seg.path.clone(),
                    offset,
                    reason: format!("no record holds position {pos}"),
                })?;
            let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as u64;
            if pos < at + len || len == 0 && pos == at {
                return Ok((seg.base, offset, at));
            }
            offset += RECORD_HEADER + len;
            at += len;
        }
    }
}
