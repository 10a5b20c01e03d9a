//! Where a chunk reader starts other than at the input's first byte: a resume at a
//! checkpoint's offset (read forward: gzip and stdin cannot seek) and a CSV header taken off
//! first; the carried input put back in front of what is unread.

use super::{Chunk, ChunkReader, InputError};

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
    pub fn skip_to(&mut self, offset: u64, line: u64) -> Result<(), InputError> {
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
    /// None where the part before the offset is itself as long as the record limit (that run
    /// made it a dead letter, see `skip_forward`), where the offset's line is not the one
    /// counted there (a checkpoint past damage met before, see `skip_forward`), and at
    /// damage (its chunk was handed out).
    pub(super) fn forced_cut(&self, read: &[u8]) -> Option<usize> {
        let (offset, line) = self.resume_at?;
        let at = usize::try_from(offset.checked_sub(self.offset)?).ok()?;
        if at == 0 || at > read.len() || at >= self.max_record || self.damage.is_some() {
            return None;
        }
        if self.line + memchr::memchr_iter(b'\n', &read[..at]).count() as u64 != line {
            return None;
        }
        tracing::warn!(input = %self.name, resume = offset, "the run that read to this offset took the input's last line, which had no line break then, as a whole record, and a gzip member appended since goes on with it: that line was cut short, and the rest of it is read now as a record of its own (a dead letter, or a wrong row). A file still being written needs source.partial_last_line = \"leave\"");
        Some(at)
    }

    fn skip_forward(&mut self, offset: u64, line: u64) -> Result<(), InputError> {
        // Plain files could seek; reading forward also covers gzip and stdin.
        let mut chunk = Chunk::default();
        while self.offset < offset {
            if !self.next_chunk(&mut chunk)? {
                if self.gzip && (offset, line) == (self.offset + 1, self.line + 1) {
                    // Where a run that took the cut as damage left its dead letter's
                    // checkpoint (one past the bytes read, see `damaged`): the file is cut
                    // there still, now read while its last line is left. Nothing more.
                    tracing::warn!(input = %self.name, resume = offset, "the gzip input is still cut short where an earlier run made its end a dead letter: nothing more is read from it");
                    break;
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
                break;
            }
            if end > offset && chunk.skipped_bytes > 0 {
                // A record at least as long as the limit before the offset (a shorter one is
                // cut there, see `forced_cut`), made a dead letter up to the input's end then
                // (no line break after it), that the input continues now (another gzip member
                // appended): its start was that dead letter, and the rest is passed over with
                // it. (Refused, the partition stopped at every start for good.)
                tracing::warn!(input = %self.name, resume = offset, record_start = chunk.first_offset, record_end = end, "the resume offset lies inside a record longer than the record limit, which the input continues since it was made a dead letter: the rest of it, bytes {offset} to {end}, is passed over, and reading goes on after it");
                return Ok(());
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
                    self.eof = true;
                    self.unread().clear();
                    self.damage = None;
                    break;
                }
                // Put the part from `offset` on back in front of the unread input.
                let mut rest = chunk.data.split_off(keep);
                rest.append(self.unread());
                self.carry = rest;
            }
        }
        self.offset = offset;
        self.line = line;
        Ok(())
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
