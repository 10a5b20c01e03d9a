//! Input files and stdin, read in blocks of whole records.
//!
//! gzip input (one or many members) is detected by its magic bytes, not its name; gzip data
//! that cannot be decompressed (a truncated or corrupt file, bytes after the last member that
//! are not one) ends the input with a dead letter (see `damaged`). Blocks end at
//! a record boundary (after at most [`MAX_CHUNK_LINES`] lines), carry their first line number
//! and byte offset, and their buffers are recycled, so memory stays flat however large the
//! input is.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

mod broken;
mod gzip;
pub mod regular;
mod resume;
use broken::Damage;
pub use gzip::{gzip_reach, is_gzip};
pub use resume::{keep_last, BEHIND};

use crate::decode::cost::{LineCost, Tally};
use crate::decode::framing::{record_boundary_within, Boundaries, Chunk, MAX_CHUNK_LINES};

/// Errors reading input. Each names the input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open input {name}: {source}")]
    Open {
        name: String,
        source: std::io::Error,
    },
    #[error("reading input {name} at byte {offset}: {source}")]
    Read {
        name: String,
        offset: u64,
        source: std::io::Error,
    },
    #[error(
        "input {name}: the header starting at line {line} (byte {offset}) is longer than the \
         {limit} byte record limit"
    )]
    HeaderTooLong {
        name: String,
        line: u64,
        offset: u64,
        limit: usize,
    },
}

/// Where input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
}

impl InputSource {
    /// `-` is stdin, anything else a file path.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            InputSource::Stdin
        } else {
            InputSource::File(PathBuf::from(s))
        }
    }

    /// Name for messages and dead letters.
    pub fn name(&self) -> String {
        match self {
            InputSource::Stdin => "stdin".into(),
            InputSource::File(p) => p.display().to_string(),
        }
    }

    /// The file name without directories and known extensions (`events.jsonl.gz` → `events`).
    pub fn stem(&self) -> String {
        match self {
            InputSource::Stdin => "stdin".into(),
            InputSource::File(p) => stem_of(p),
        }
    }
}

fn stem_of(p: &Path) -> String {
    let mut name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    for ext in [
        ".gz", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt", ".log",
    ] {
        if name.len() > ext.len() && name.to_ascii_lowercase().ends_with(ext) {
            name.truncate(name.len() - ext.len());
        }
    }
    name
}

/// Counts bytes read from the underlying (possibly compressed) input, for progress, and
/// notes whether reading it failed (an I/O error, not one of the decompressor's).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    /// A read found the end.
    ended: Arc<AtomicBool>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 && !buf.is_empty() {
                    self.ended.store(true, Ordering::Relaxed);
                }
                Ok(n)
            }
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.failed.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// Bytes read per chunk by default. A 1 MiB chunk (about 3,000 web-log records) is read,
/// counted and decoded within a core's cache: against 4 MiB, a one-core convert took 13 % less
/// time and a two-core one 9 % less, with a quarter less memory.
const BLOCK: usize = 1024 * 1024;

/// The most one read asks for (a block of more is filled in reads of this).
const READ_STEP: usize = 4 << 20;

/// The UTF-8 byte order mark some tools write at the start of a text file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads an input as chunks of whole records.
pub struct ChunkReader {
    name: String,
    reader: Box<dyn Read + Send>,
    quote: Option<u8>,
    /// Bytes to read for the next chunk: `base_block`, doubled while one record is longer.
    block: usize,
    base_block: usize,
    max_record: usize,
    /// Input read and not yet handed out, from `carry_at` on (see `cut_carried`).
    carry: Vec<u8>,
    carry_at: usize,
    line: u64,
    offset: u64,
    eof: bool,
    /// Bytes read from the raw input (compressed size for gzip).
    pub raw_bytes: Arc<AtomicU64>,
    /// Size of the raw input when known (files).
    pub raw_len: Option<u64>,
    /// The input is gzip: an error of its decompressor is damage (see `damaged`).
    gzip: bool,
    /// Reading the raw input failed: an error passed on by the decompressor is I/O, not damage.
    raw_failed: Arc<AtomicBool>,
    /// Reading the raw input reached its end (see `cut_short`).
    raw_ended: Arc<AtomicBool>,
    /// Damage met and not yet handed out as its chunk.
    damage: Option<Damage>,
    /// The damage the input ended at, once its chunk was handed out.
    broken: Option<Damage>,
    /// Lines measured for what they decode to, cutting chunks by it (JSON with lists or maps).
    cost: Option<LineCost>,
    /// The input's last record is not handed out while it has no line break after it.
    leave_partial: bool,
    /// While skipping to a resume position: its offset, a record's end in the run before,
    /// and line (see `forced_cut`).
    resume_at: Option<(u64, u64)>,
}

impl ChunkReader {
    /// Opens `source`. `quote` (CSV's delimiter): records may span lines inside CSV quotes.
    pub fn open(source: &InputSource, quote: Option<u8>) -> Result<Self, InputError> {
        let name = source.name();
        let (raw, raw_len): (Box<dyn Read + Send>, Option<u64>) = match source {
            InputSource::Stdin => (Box::new(std::io::stdin()), None),
            InputSource::File(p) => {
                let f = std::fs::File::open(p).map_err(|source| InputError::Open {
                    name: name.clone(),
                    source,
                })?;
                let len = f.metadata().ok().map(|m| m.len());
                (Box::new(f), len)
            }
        };
        Self::over(name, raw, raw_len, quote)
    }

    /// Reads the file at `path` through `file`, a handle of it (see [`regular::open`]).
    pub fn from_file(
        path: &Path,
        file: std::fs::File,
        quote: Option<u8>,
    ) -> Result<Self, InputError> {
        let name = InputSource::File(path.to_path_buf()).name();
        let len = file.metadata().ok().map(|m| m.len());
        Self::over(name, Box::new(file), len, quote)
    }

    /// Reads `raw` (named `name`, `raw_len` bytes long when known), gzip when its first bytes
    /// say so.
    fn over(
        name: String,
        raw: Box<dyn Read + Send>,
        raw_len: Option<u64>,
        quote: Option<u8>,
    ) -> Result<Self, InputError> {
        Self::over_as(name, raw, raw_len, quote, true)
    }

    /// [`Self::over`]; `detect`: gzip is told by the first bytes (else `raw` is plain, read
    /// from a place inside it).
    fn over_as(
        name: String,
        raw: Box<dyn Read + Send>,
        raw_len: Option<u64>,
        quote: Option<u8>,
        detect: bool,
    ) -> Result<Self, InputError> {
        let raw_bytes = Arc::new(AtomicU64::new(0));
        let raw_failed = Arc::new(AtomicBool::new(false));
        let raw_ended = Arc::new(AtomicBool::new(false));
        let mut counted = Counting {
            inner: raw,
            count: raw_bytes.clone(),
            failed: raw_failed.clone(),
            ended: raw_ended.clone(),
        };
        // The magic whole, however the first reads return it (a pipe may give one byte).
        let mut head = Vec::with_capacity(gzip::MAGIC.len());
        (&mut counted)
            .take(gzip::MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|source| InputError::Read {
                name: name.clone(),
                offset: 0,
                source,
            })?;
        let gzip = detect && head == gzip::MAGIC;
        let buffered =
            BufReader::with_capacity(256 * 1024, std::io::Cursor::new(head).chain(counted));
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        Ok(ChunkReader {
            name,
            reader,
            quote,
            block: BLOCK,
            base_block: BLOCK,
            max_record: 64 * 1024 * 1024,
            carry: Vec::new(),
            carry_at: 0,
            line: 1,
            offset: 0,
            eof: false,
            raw_bytes,
            raw_len,
            gzip,
            raw_failed,
            raw_ended,
            damage: None,
            broken: None,
            cost: None,
            leave_partial: false,
            resume_at: None,
        })
    }

    /// Reads `raw` as the input named `name` (tests: a reader that fails).
    #[cfg(test)]
    fn from_reader(name: &str, raw: impl Read + Send + 'static) -> Result<Self, InputError> {
        Self::over(name.into(), Box::new(raw), None, None)
    }

    /// Whether `e`, from reading the input, is damage in its gzip data
    /// ([`gzip::is_data_error`]) and not an error of the raw input the decompressor passes on
    /// (I/O, which fails the read, as for plain files).
    fn is_damage(&self, e: &std::io::Error) -> bool {
        self.gzip && !self.raw_failed.load(Ordering::Relaxed) && gzip::is_data_error(e)
    }

    /// Sets the record limit (64 MiB by default; see [`ChunkReader::next_chunk`]).
    #[cfg(test)]
    fn with_record_limit(mut self, limit: usize) -> Self {
        self.max_record = limit;
        self
    }

    /// Cuts chunks also by what their lines may decode to ([`LineCost`]; `None`: by bytes and
    /// lines alone).
    pub fn with_cost(mut self, cost: Option<LineCost>) -> Self {
        self.cost = cost;
        self
    }

    /// Leaves the input's last record unread while no line break follows it (a file still
    /// being written): the input ends before it.
    pub fn leaving_partial_tail(mut self, leave: bool) -> Self {
        self.leave_partial = leave;
        self
    }

    /// Sets the block size (bytes read per chunk, before completing the last record).
    pub fn with_block_size(mut self, block: usize) -> Self {
        self.block = block.max(1024);
        self.base_block = self.block;
        self
    }

    /// Reads the next chunk into `buf` (whose allocation is reused). Returns false at the end.
    /// A record longer than the record limit comes alone, as a chunk holding no data and its
    /// dead letter (see `over_long`); so does damage in gzip data, the input's last chunk
    /// (see `damaged`).
    pub fn next_chunk(&mut self, chunk: &mut Chunk) -> Result<bool, InputError> {
        chunk.ends.clear();
        chunk.measured = false;
        chunk.decoded = None;
        (chunk.skipped_bytes, chunk.skipped_lines) = (0, 0);
        chunk.data.clear();
        if chunk.data.capacity() > 2 * self.base_block {
            // A long record grew the buffer: give the memory back.
            chunk.data.shrink_to(self.base_block);
        }
        if self.cut_carried(chunk) {
            return Ok(true);
        }
        let buf = &mut chunk.data;
        buf.extend_from_slice(&self.carry[self.carry_at..]);
        self.carry.clear();
        self.carry_at = 0;
        if self.carry.capacity() > self.base_block {
            self.carry.shrink_to(self.base_block / 2);
        }
        let mut boundaries = Boundaries::new(self.quote);
        loop {
            // Reading on past a block for a long record: a block at a time, up to the first
            // line break (the line's end, or one inside a CSV record's quotes: then reading
            // goes on), so what is read past it (carried) stays within a block.
            let growing = self.block > self.base_block;
            let mut filled = buf.len();
            while !self.eof && filled < self.block {
                let start = filled;
                // At most READ_STEP at a time: the buffer grows with what is read, not to the
                // block at once (a block of gigabytes over a short file zeroed gigabytes).
                let want =
                    (self.block - start).min(if growing { self.base_block } else { READ_STEP });
                // Zeroed once per length reached, not at every read (a pipe gives 64 KiB at a
                // time: each read zeroed the rest of the block again).
                if buf.len() < start + want {
                    buf.resize(start + want, 0);
                }
                match self.reader.read(&mut buf[start..start + want]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        filled = start + n;
                        if growing && memchr::memchr(b'\n', &buf[start..filled]).is_some() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if self.cut_short(&e) => self.eof = true,
                    Err(e) if self.is_damage(&e) => {
                        self.eof = true;
                        self.damage = Some(Damage {
                            at: self.offset + start as u64,
                            kind: e.kind(),
                            message: e.to_string(),
                        });
                    }
                    Err(source) => {
                        buf.truncate(filled);
                        return Err(InputError::Read {
                            name: self.name.clone(),
                            offset: self.offset + start as u64,
                            source,
                        });
                    }
                }
            }
            buf.truncate(filled);
            if buf.is_empty() && self.damage.is_none() {
                return Ok(false);
            }
            let cut = if self.damage.is_some() {
                // The bytes after the last whole record are an incomplete one: the damage's.
                boundaries.last(buf)
            } else if self.eof && !self.leaves_partial() {
                if self.quote.is_some()
                    && buf.ends_with(b"\n")
                    && boundaries.last(buf) != Some(buf.len())
                {
                    // Its line break is inside a quote: nothing after tells that it ended.
                    tracing::warn!(input = %self.name, offset = self.offset + buf.len() as u64, "the input ends inside a CSV quote its last record opened: that record is taken as it is (source.partial_last_line = \"take\"); if the file is still being written, what is appended to it is read from here as records of their own (wrong rows or dead letters). A file still being written needs source.partial_last_line = \"leave\"");
                }
                Some(buf.len())
            } else {
                boundaries.last(buf)
            };
            let cut = cut.or_else(|| self.forced_cut(buf));
            match cut {
                Some(mut cut) => {
                    let lines = if self.quote.is_none() {
                        // Lines are records: where each ends is kept for the decoder, which
                        // then frames them without a second scan.
                        // At most one past the cap: a block of tiny lines is not listed whole.
                        let ends = &mut chunk.ends;
                        ends.extend(
                            memchr::memchr_iter(b'\n', &buf[..cut]).take(MAX_CHUNK_LINES + 1),
                        );
                        if ends.len() > MAX_CHUNK_LINES {
                            // Tiny records: a chunk holds at most so many (see MAX_CHUNK_LINES).
                            ends.truncate(MAX_CHUNK_LINES);
                            cut = ends[MAX_CHUNK_LINES - 1] + 1;
                        }
                        if let Some(cost) = &self.cost {
                            // Records whose list items decode to many times their text: a
                            // chunk holds what may decode to so much (see `decode::cost`).
                            let mut tally = Tally::default();
                            let k = cost.fit(&buf[..cut], ends, &mut tally);
                            let last = ends.last().map_or(0, |e| e + 1);
                            if k < ends.len() {
                                ends.truncate(k);
                                cut = ends[k - 1] + 1;
                            } else if last < cut && !cost.take(&buf[last..cut], &mut tally) {
                                // The input's last line, without its newline.
                                cut = last;
                            }
                            // Every line of the chunk is measured now.
                            chunk.measured = !tally.flagged;
                        }
                        ends.len()
                    } else {
                        let mut lines = memchr::memchr_iter(b'\n', &buf[..cut]).count();
                        if lines > MAX_CHUNK_LINES {
                            // Tiny records, as above; a quoted record is not cut.
                            if let Some(c) =
                                record_boundary_within(&buf[..cut], self.quote, MAX_CHUNK_LINES)
                            {
                                cut = c;
                                lines = memchr::memchr_iter(b'\n', &buf[..cut]).count();
                            }
                        }
                        lines
                    };
                    self.carry.extend_from_slice(&buf[cut..]);
                    buf.truncate(cut);
                    // The long record (if any) is out: read normal blocks again.
                    self.block = self.base_block;
                    chunk.first_line = self.line;
                    chunk.first_offset = self.offset;
                    self.line += lines as u64;
                    self.offset += buf.len() as u64;
                    // A UTF-8 byte order mark at the input's start is not data (left in, it
                    // was part of a CSV header's first name, whose column then read as null).
                    if chunk.first_offset == 0 && buf.starts_with(BOM) {
                        buf.drain(..BOM.len());
                        chunk.first_offset = BOM.len() as u64;
                        for end in chunk.ends.iter_mut() {
                            *end -= BOM.len();
                        }
                    }
                    return Ok(true);
                }
                None if self.damage.is_some() => {
                    self.damaged(chunk);
                    return Ok(true);
                }
                None if self.eof => {
                    // Only the last record, with no line break after it yet, is left.
                    tracing::info!(input = %self.name, offset = self.offset, bytes = buf.len(), "the last record has no line break after it yet (or a CSV quote is left open): left for the next run");
                    buf.clear();
                    return Ok(false);
                }
                // A block holds a record of the limit and its line break: one that reached
                // past them without a boundary is longer (a record of exactly the limit was
                // a dead letter "longer than" it, though taken whole at the input's end).
                None if buf.len() > self.max_record => return self.over_long(chunk),
                None => {
                    // One record is longer than a block: read on.
                    self.block = (self.block * 2).min(self.max_record + 1);
                }
            }
        }
    }

    /// The next chunk cut from the carried input alone, when its whole lines hold more than a
    /// chunk may: more than the line cap, or with a line cost more than it allows (a block
    /// cut before, of tiny lines or of lines that decode to many times their text). Only the
    /// chunk's own lines are copied; the rest stays carried. (Moved whole into each chunk
    /// and back, such a block was copied once for every chunk cut from it, and each chunk
    /// kept room for all of it: 0.3 s for 32 MiB of heavy lines in 1 MiB blocks, 3 s in 16
    /// MiB ones; after a 9 MiB record, 48 KiB chunks of tiny lines held 7 MiB each.) False,
    /// with nothing taken, when they fit: the chunk is read the usual way. CSV records may
    /// span lines (and have no cost): cut at the record boundary after the line cap.
    fn cut_carried(&mut self, chunk: &mut Chunk) -> bool {
        if let Some(quote) = self.quote {
            return self.cut_carried_records(chunk, quote);
        }
        let cost = self.cost.as_ref();
        let rest = &self.carry[self.carry_at..];
        let mut tally = Tally::default();
        let mut start = 0;
        loop {
            let Some(i) = memchr::memchr(b'\n', &rest[start..]) else {
                // Every whole line fits.
                chunk.ends.clear();
                return false;
            };
            if chunk.ends.len() == MAX_CHUNK_LINES
                || cost.is_some_and(|c| !c.take(&rest[start..start + i], &mut tally))
            {
                break;
            }
            chunk.ends.push(start + i);
            start += i + 1;
        }
        chunk.data.extend_from_slice(&rest[..start]);
        chunk.measured = cost.is_some() && !tally.flagged;
        chunk.first_line = self.line;
        chunk.first_offset = self.offset;
        self.line += chunk.ends.len() as u64;
        self.offset += start as u64;
        self.carry_at += start;
        true
    }

    /// [`Self::cut_carried`] for CSV: when more whole lines are carried than a chunk holds,
    /// the records of the first `MAX_CHUNK_LINES` lines (a record spanning more: all of it).
    /// (Moved whole into each chunk and back, what a long record left carried, up to 63 MiB,
    /// was copied and scanned again for every chunk of 16,384 short lines cut from it.)
    fn cut_carried_records(&mut self, chunk: &mut Chunk, quote: u8) -> bool {
        let rest = &self.carry[self.carry_at..];
        if memchr::memchr_iter(b'\n', rest)
            .nth(MAX_CHUNK_LINES)
            .is_none()
        {
            return false;
        }
        let Some(cut) = record_boundary_within(rest, Some(quote), MAX_CHUNK_LINES) else {
            return false;
        };
        let lines = memchr::memchr_iter(b'\n', &rest[..cut]).count();
        chunk.data.extend_from_slice(&rest[..cut]);
        chunk.first_line = self.line;
        chunk.first_offset = self.offset;
        self.line += lines as u64;
        self.offset += cut as u64;
        self.carry_at += cut;
        true
    }
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
