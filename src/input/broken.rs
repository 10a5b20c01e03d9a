//! What ends a chunk without records: a record longer than the record limit (its first bytes
//! become its dead letter and the rest of its line is skipped) and damage in gzip data (the
//! bytes read after the last whole record become its dead letter and the input ends).

use super::{ChunkReader, InputError};
use crate::decode::Chunk;

/// Where gzip data could not be decompressed: the decompressed byte reading stopped at, and
/// the decompressor's error.
pub(super) struct Damage {
    pub at: u64,
    pub kind: std::io::ErrorKind,
    pub message: String,
}

/// Makes `chunk` (no data) stand decoded as one dead letter at its start: `record` and why.
fn one_dead_letter(chunk: &mut Chunk, reason: String, record: Vec<u8>) {
    chunk.decoded = Some(crate::decode::Decoded {
        records: 1,
        dead: vec![crate::decode::DeadLetter {
            position: crate::decode::Position {
                line: chunk.first_line,
                offset: chunk.first_offset,
            },
            reason,
            record,
        }],
        ..Default::default()
    });
}

impl ChunkReader {
    /// Whether the decompressor's error `e` is a gzip input cut short at its end (a member
    /// still being written: the raw input's reads reached its end) while the input's last
    /// record is left for the next run (`partial_last_line = "leave"`): the input ends at its
    /// last whole record, as a plain file's last line without a line break is left, not
    /// damage (whose dead letter's checkpoint stands past the rest of the file, which was
    /// then never read once written). Under `take`, the file is whole as it stands: damage.
    pub(super) fn cut_short(&self, e: &std::io::Error) -> bool {
        let cut = self.leave_partial
            && self.gzip
            && e.kind() == std::io::ErrorKind::UnexpectedEof
            && self.raw_ended.load(std::sync::atomic::Ordering::Relaxed)
            && !self.raw_failed.load(std::sync::atomic::Ordering::Relaxed);
        if cut {
            // A warning: a file cut for good (its writer gone, or damage that reads as a
            // cut) stays so, its rest never read, and says so at each run.
            tracing::warn!(input = %self.name, offset = self.offset, "the gzip input ends inside a member (still being written?): what follows its last whole record is left for the next run");
        }
        cut
    }

    /// Whether the input's last record is left while no line break follows it: as set
    /// (`leaving_partial_tail`), but not while skipping to a resume offset (a checkpoint past
    /// such a line, read when such lines were taken, is reached whatever the setting is now;
    /// the line stays left after).
    pub(super) fn leaves_partial(&self) -> bool {
        self.leave_partial && self.resume_at.is_none()
    }

    /// The record at the reader's position is longer than the record limit, and `chunk.data`
    /// holds its first `max_record` bytes and one more: the first ones become the record of
    /// its dead letter (in `chunk.decoded`), and the input is skipped up to the end of the
    /// line the limit falls in; reading goes on after it. (A stuck input otherwise: the job failed at every
    /// start. A CSV quote never closed makes the rest of the input one record: reading then
    /// resumes at the line after the limit.) Returns whether the chunk holds that dead letter:
    /// not when the record is the input's last, with no line break after it yet, and the
    /// reader leaves such a record for the next run (a line still being written).
    pub(super) fn over_long(&mut self, chunk: &mut Chunk) -> Result<bool, InputError> {
        let mut held = std::mem::take(&mut chunk.data);
        // Read past the limit (a byte, or more from a block larger than the limit): that is
        // skipped with the rest, up to the line break after the limit (in CSV one inside an
        // open quote, which ended no record); what follows it goes back to be read.
        let mut past = held.split_off(self.max_record.min(held.len()));
        let held_lines = memchr::memchr_iter(b'\n', &held).count() as u64;
        let (mut rest, mut ended) = (past.len() as u64, false);
        if let Some(j) = memchr::memchr(b'\n', &past) {
            let mut after = past.split_off(j + 1);
            after.append(self.unread());
            self.carry = after;
            (rest, ended) = (past.len() as u64, true);
        }
        let mut scratch = vec![0u8; 64 * 1024];
        while !self.eof && !ended {
            let n = match self.reader.read(&mut scratch) {
                Ok(0) => {
                    self.eof = true;
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) if self.cut_short(&e) => {
                    self.eof = true;
                    0
                }
                Err(e) if self.is_damage(&e) => {
                    // The damage's chunk follows this one.
                    self.eof = true;
                    self.damage = Some(Damage {
                        at: self.offset + held.len() as u64 + rest,
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                    0
                }
                Err(source) => {
                    return Err(InputError::Read {
                        name: self.name.clone(),
                        offset: self.offset + held.len() as u64 + rest,
                        source,
                    })
                }
            };
            match memchr::memchr(b'\n', &scratch[..n]) {
                Some(i) => {
                    rest += i as u64 + 1;
                    self.carry.extend_from_slice(&scratch[i + 1..n]);
                    ended = true;
                }
                None => rest += n as u64,
            }
        }
        if !ended && self.leaves_partial() && self.damage.is_none() {
            tracing::info!(input = %self.name, offset = self.offset, bytes = held.len() as u64 + rest, "the last record, longer than the record limit, has no line break after it yet: left for the next run");
            return Ok(false);
        }
        chunk.first_line = self.line;
        chunk.first_offset = self.offset;
        chunk.skipped_bytes = held.len() as u64 + rest;
        chunk.skipped_lines = held_lines + ended as u64;
        self.line += chunk.skipped_lines;
        self.offset += chunk.skipped_bytes;
        self.block = self.base_block;
        let reason = format!(
            "record longer than the {} byte record limit of file input: this dead letter holds \
             its first {} bytes; the {rest} bytes after them, to the end of that line, were \
             skipped",
            self.max_record,
            held.len()
        );
        one_dead_letter(chunk, reason, held);
        Ok(true)
    }

    /// gzip data could not be decompressed past the byte `self.damage` names, and
    /// `chunk.data` holds what was read after the last whole record: those bytes (an
    /// incomplete record) become the record of one dead letter (in `chunk.decoded`) saying
    /// why, and the input ends. (The error failed the job at every start otherwise, and none of
    /// its files was committed.) The chunk covers one position past the bytes read, standing
    /// for the unreadable rest: a checkpoint after the dead letter differs from one before it
    /// even when the damage falls at a record boundary, and a resume there
    /// ([`ChunkReader::skip_to`]) ends the input without the dead letter again.
    pub(super) fn damaged(&mut self, chunk: &mut Chunk) {
        let damage = self.damage.take().expect("damage met");
        let at = damage.at;
        let held = std::mem::take(&mut chunk.data);
        debug_assert!(self.carry.is_empty() && at == self.offset + held.len() as u64);
        chunk.first_line = self.line;
        chunk.first_offset = self.offset;
        chunk.skipped_bytes = held.len() as u64 + 1;
        // One line more than the bytes hold: a resume here tells this place from a record's
        // middle in a file that reads past it later (`skip_to`).
        chunk.skipped_lines = memchr::memchr_iter(b'\n', &held).count() as u64 + 1;
        self.line += chunk.skipped_lines;
        self.offset += chunk.skipped_bytes;
        self.block = self.base_block;
        let reason = format!(
            "gzip input {} cannot be read past byte {at} of its decompressed data ({}): \
             the rest of the file is not read; this dead letter holds the {} bytes read after \
             its last whole record",
            self.name,
            damage.message,
            held.len()
        );
        self.broken = Some(damage);
        one_dead_letter(chunk, reason, held);
    }
}
