//! Where a chunk reader starts other than at the input's first byte: a resume at a
//! checkpoint's offset (read forward: gzip and stdin cannot seek) and a CSV header taken off
//! first; the carried input put back in front of what is unread.

use super::{Chunk, ChunkReader, InputError};

/// The most of the input before a resume offset a skip keeps: what a checkpoint records of
/// the bytes before its offset (see `source::file`).
pub const BEHIND: usize = 4096;

/// `behind` followed by `more`, its last [`BEHIND`] bytes kept.
pub fn keep_last(behind: &mut Vec<u8>, more: &[u8]) {
    if more.len() >= BEHIND {
        behind.clear();
        behind.extend_from_slice(&more[more.len() - BEHIND..]);
        return;
    }
    behind.extend_from_slice(more);
    let over = behind.len().saturating_sub(BEHIND);
    behind.drain(..over);
}

impl ChunkReader {
    /// The carried input, all of it unread (what a chunk cut from it took is dropped).
    pub(super) fn unread(&mut self) -> &mut Vec<u8> {
        self.carry.drain(..self.carry_at);
        self.carry_at = 0;
        &mut self.carry
    }

    /// A resume at `offset` that cannot be done, and why.
    pub(super) fn refuse(&self, offset: u64, kind: std::io::ErrorKind, why: String) -> InputError {
        InputError::Read {
            name: self.name.clone(),
            offset,
            source: std::io::Error::new(kind, why),
        }
    }

    /// Skips forward to byte `offset` of the (decompressed) input, which must be a record
    /// boundary at or after the current position; `line` is the line number there. Damaged
    /// gzip data before `offset` ends the input there, quietly: `offset` is where its dead
    /// letter's chunk ended (handed out before), or, when the file was read differently then
    /// (another block size), a position in or past the damaged part (a warning).
    ///
    /// The input's last bytes before `offset` (up to [`BEHIND`]), when the skip read them in
    /// one run: not where it ended at damage or passed over part of a long record (None).
    pub fn skip_to(&mut self, offset: u64, line: u64) -> Result<Option<Vec<u8>>, InputError> {
        // While it is set, a last line without a line break is read (see `leaves_partial`).
        self.resume_at = Some((offset, line));
        let skipped = self.skip_forward(offset, line);
        self.resume_at = None;
        skipped
    }

    /// While skipping to a resume offset inside the bytes read, `read`, of one record that
    /// has no end in them yet: a cut at the offset, where the run before ended a record (the
    /// input's end then, before a gzip member appended since went on with that line). The
    /// rest is then read as a record of its own, as a plain file resumed by seeking reads it.
    /// None where the part before the offset is itself longer than the record limit (that run
    /// made it a dead letter, see `skip_forward`), where the offset's line is not the one
    /// counted there (a checkpoint past damage met before, see `skip_forward`), and at
    /// damage (its chunk was handed out).
    pub(super) fn forced_cut(&self, read: &[u8]) -> Option<usize> {
        let (offset, line) = self.resume_at?;
        let at = usize::try_from(offset.checked_sub(self.offset)?).ok()?;
        if at == 0 || at > read.len() || at > self.max_record || self.damage.is_some() {
            return None;
        }
        if self.line + memchr::memchr_iter(b'\n', &read[..at]).count() as u64 != line {
            return None;
        }
        tracing::warn!(input = %self.name, resume = offset, "the run that read to this offset took the input's last line, which had no line break then, as a whole record, and a gzip member appended since goes on with it: that line was cut short, and the rest of it is read now as a record of its own (a dead letter, or a wrong row). A file still being written needs source.partial_last_line = \"leave\"");
        Some(at)
    }

    fn skip_forward(&mut self, offset: u64, line: u64) -> Result<Option<Vec<u8>>, InputError> {
        // Plain files could seek; reading forward also covers gzip and stdin.
        let mut chunk = Chunk::default();
        // The last bytes read before where the skip stands, as one run.
        let mut behind = Vec::new();
        while self.offset < offset {
            if !self.next_chunk(&mut chunk)? {
                if self.gzip && (offset, line) == (self.offset + 1, self.line + 1) {
                    // Where a run that took the cut as damage left its dead letter's
                    // checkpoint (one past the bytes read, see `damaged`): the file is cut
                    // there still, now read while its last line is left. Nothing more.
                    tracing::warn!(input = %self.name, resume = offset, "the gzip input is still cut short where an earlier run made its end a dead letter: nothing more is read from it");
                    return Ok(self.stand(offset, line, None));
                }
                let why = format!(
                    "the input ends at byte {}, before the resume offset",
                    self.offset
                );
                return Err(self.refuse(offset, std::io::ErrorKind::UnexpectedEof, why));
            }
            let end = chunk.end_offset();
            if self.broken.is_some() {
                if end != offset {
                    tracing::warn!(input = %self.name, resume = offset, damaged_at = end - 1, "the gzip input is damaged before its resume offset: nothing more is read from it");
                }
                return Ok(self.stand(offset, line, None));
            }
            if end > offset && chunk.skipped_bytes > 0 {
                // A record longer than the limit before the offset (a shorter one is
                // cut there, see `forced_cut`), made a dead letter up to the input's end then
                // (no line break after it), that the input continues now (another gzip member
                // appended): its start was that dead letter, and the rest is passed over with
                // it. (Refused, the partition stopped at every start for good.)
                tracing::warn!(input = %self.name, resume = offset, record_start = chunk.first_offset, record_end = end, "the resume offset lies inside a record longer than the record limit, which the input continues since it was made a dead letter: the rest of it, bytes {offset} to {end}, is passed over, and reading goes on after it");
                return Ok(None);
            }
            if end > offset {
                let keep = (offset - chunk.first_offset) as usize;
                let here = chunk.first_line
                    + memchr::memchr_iter(b'\n', &chunk.data[..keep]).count() as u64;
                if self.gzip && line > here {
                    // The checkpoint stands one line past where it is here: past damage met
                    // before (see `damaged`), at a place that depends on the reads, and the
                    // file reads past it now (made whole since, or read in other sizes).
                    tracing::warn!(input = %self.name, resume = offset, "the gzip input's resume offset stands past damage met before, and the file reads past it now: nothing more is read from it");
                    // (Or another file, rewritten in place: the bytes before the offset tell, and
                    // the caller compares them where the checkpoint records them.)
                    self.eof = true;
                    self.unread().clear();
                    self.damage = None;
                    keep_last(&mut behind, &chunk.data[..keep]);
                    return Ok(self.stand(offset, line, Some(behind)));
                }
                // Put the part from `offset` on back in front of the unread input.
                let mut rest = chunk.data.split_off(keep);
                rest.append(self.unread());
                self.carry = rest;
            }
            if chunk.skipped_bytes > 0 {
                // The bytes before the chunk's end were passed over, not held.
                behind.clear();
            } else {
                keep_last(&mut behind, &chunk.data);
            }
        }
        Ok(self.stand(offset, line, Some(behind)))
    }

    /// Where a skip to `offset`, line `line`, leaves the reader; `behind` passed on.
    fn stand(&mut self, offset: u64, line: u64, behind: Option<Vec<u8>>) -> Option<Vec<u8>> {
        self.offset = offset;
        self.line = line;
        behind
    }

    /// Takes the first record (a CSV header) off the input.
    pub fn take_header(&mut self) -> Result<Option<Vec<u8>>, InputError> {
        let mut chunk = Chunk::default();
        let mut records = Vec::new();
        // Blank lines before the header are not records: a chunk of only those (up to the
        // line cap) is passed over.
        let first = loop {
            if !self.next_chunk(&mut chunk)? {
                return Ok(None);
            }
            if let Some(d) = &self.broken {
                // Damage before the header's end: no header to read the records by.
                return Err(self.refuse(d.at, d.kind, d.message.clone()));
            }
            if chunk.skipped_bytes > 0 {
                return Err(InputError::HeaderTooLong {
                    name: self.name.clone(),
                    line: chunk.first_line,
                    offset: chunk.first_offset,
                    limit: self.max_record,
                });
            }
            crate::decode::framing::split_records(&chunk, self.quote, &mut records);
            // Nor are lines of whitespace (in CSV they are rows, but not a header).
            let blank = |r: &&crate::decode::framing::Record| {
                chunk.data[r.start..r.end]
                    .iter()
                    .all(u8::is_ascii_whitespace)
            };
            if let Some(first) = records.iter().find(|r| !blank(r)) {
                break *first;
            }
        };
        let header = chunk.data[first.start..first.end].to_vec();
        // Everything after the header's line goes back in front of the unread input.
        let after = memchr::memchr(b'\n', &chunk.data[first.end..])
            .map(|i| first.end + i + 1)
            .unwrap_or(chunk.data.len());
        let consumed_lines = memchr::memchr_iter(b'\n', &chunk.data[..after]).count() as u64;
        let mut rest = chunk.data[after..].to_vec();
        rest.append(self.unread());
        self.carry = rest;
        self.line = chunk.first_line + consumed_lines;
        self.offset = chunk.first_offset + after as u64;
        Ok(Some(header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::InputSource;
    use std::io::Write;

    /// A skip hands back the input's last bytes before its offset however the reads fell,
    /// across chunks of a few records; all of them where the offset is nearer the start.
    #[test]
    fn a_skip_keeps_the_bytes_before_its_offset() {
        let text: String = (0..3000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let ends: Vec<usize> = memchr::memchr_iter(b'\n', text.as_bytes())
            .map(|i| i + 1)
            .collect();
        for (block, n) in [(1000, 2500), (64 * 1024, 2999), (1000, 100), (300, 0)] {
            let at = ends[n];
            let mut r = ChunkReader::open(&InputSource::File(p.clone()), None)
                .unwrap()
                .with_block_size(block);
            let behind = r.skip_to(at as u64, n as u64 + 2).unwrap().unwrap();
            let from = at.saturating_sub(BEHIND);
            assert_eq!(
                behind,
                text.as_bytes()[from..at],
                "block {block}, record {n}"
            );
        }
    }

    #[test]
    fn keep_last_keeps_the_last_bytes() {
        let mut b = Vec::new();
        keep_last(&mut b, &[1; 4000]);
        keep_last(&mut b, &[2; 200]);
        assert_eq!(b.len(), BEHIND);
        assert_eq!(&b[BEHIND - 200..], &[2; 200][..]);
        assert_eq!(b[0], 1);
        keep_last(&mut b, &[3; 5000]);
        assert_eq!(b, vec![3; BEHIND]);
    }
}
