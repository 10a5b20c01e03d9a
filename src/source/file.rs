//! The file source: each input file is one partition, offsets are byte positions in the
//! (decompressed) file, and reading resumes at any offset. Bounded: it ends when every file is
//! read (a damaged gzip file at its damage, after its dead letter). Partitions are read
//! round-robin, a chunk at a time, at most [`MAX_OPEN`] files at once.
//!
//! A partition's file is opened again after a rewind (a failed commit) and checked to be the
//! one this run first opened ([`Seen`]): a log rotated or rewritten under its name meanwhile
//! is an error, not read on from the old file's offset.

use std::path::PathBuf;

use super::{Next, PartitionInfo, ReadStarts, Source, SourceError};
use crate::decode::cost::LineCost;
use crate::decode::meta::RecordMark;
use crate::decode::Chunk;
use crate::input::regular::{self, Seen};
use crate::input::{keep_last, ChunkReader, InputSource, BEHIND};

/// Files read at once: each open one holds a descriptor and its read buffers (about 300 KiB),
/// so thousands of inputs neither exhaust descriptors nor memory. The others wait their turn.
pub const MAX_OPEN: usize = 16;

/// How much of a file's start tells it from another when it is opened again.
const SEEN_HEAD: usize = 4096;

struct Part {
    info: PartitionInfo,
    path: PathBuf,
    offset: u64,
    line: u64,
    reader: Option<ChunkReader>,
    done: bool,
    /// The file this run first opened for the partition.
    seen: Option<Seen>,
    /// How the start found the file beginning (length, CRC-32), which the first open checks.
    expected: Option<(usize, u32)>,
    /// A second handle of the open file, its start read through it as reading passes it.
    dup: Option<std::fs::File>,
    /// How much of its start is recorded in `starts` (at most [`SEEN_HEAD`]).
    start_len: usize,
    /// The file's CSV header, once read.
    header: Option<std::sync::Arc<Vec<u8>>>,
    /// The bytes before the offset the start resumes at, as the checkpoint there records
    /// them ([`Source::expect_record`]), which the first open checks.
    behind: Option<(u64, RecordMark)>,
    /// The file's last bytes before `offset` (up to [`BEHIND`]) as read, in one run: what
    /// each chunk marks (the bytes before its end) for its commit.
    tail: Vec<u8>,
}

pub struct FileSource {
    parts: Vec<Part>,
    quote: Option<u8>,
    header: bool,
    block: usize,
    turn: usize,
    /// Each file's start as far as it was read (by partition key), for its checkpoints.
    starts: ReadStarts,
    /// Partitions with a reader open (at most [`MAX_OPEN`]).
    open: usize,
    cost: Option<LineCost>,
    /// A last line without a line break is left for the next run.
    leave_partial: bool,
}

impl FileSource {
    /// `quote` (CSV's delimiter): CSV records may span lines. `header`: each file starts with
    /// a header record.
    pub fn new(paths: &[PathBuf], quote: Option<u8>, header: bool) -> Result<Self, SourceError> {
        let mut parts = Vec::with_capacity(paths.len());
        let mut seen = std::collections::HashSet::new();
        let mut files = std::collections::HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            if !p.is_file() {
                let glob = p.to_string_lossy().contains(['*', '?', '[']);
                let reason = match std::fs::metadata(p) {
                    Ok(m) if m.is_dir() => "is a folder: list its files in `paths`, one partition each (folders and globs are not expanded)",
                    Ok(_) => "is not a regular file: a pipe or device cannot be resumed at an offset (`sluice convert --input -` reads a stream)",
                    Err(_) if glob => "no such file (`paths` names files: globs are not expanded)",
                    Err(_) => "no such file",
                };
                return Err(SourceError::Other {
                    name: p.display().to_string(),
                    reason: reason.into(),
                });
            }
            if let Some(first) = same_file(&mut files, p) {
                return Err(SourceError::Other {
                    name: p.display().to_string(),
                    reason: format!(
                        "is the same file as {} (a link to it, or it to this): read as two partitions, its records would be exported twice",
                        first.display()
                    ),
                });
            }
            let topic = sanitize(&InputSource::File(p.clone()).stem());
            if !seen.insert(topic.clone()) {
                return Err(SourceError::Other {
                    name: p.display().to_string(),
                    reason: format!("two input files share the name `{topic}`"),
                });
            }
            parts.push(Part {
                info: PartitionInfo {
                    id: i as u32,
                    topic,
                    number: 0,
                },
                path: p.clone(),
                offset: 0,
                line: 1,
                reader: None,
                done: false,
                seen: None,
                expected: None,
                dup: None,
                start_len: 0,
                header: None,
                behind: None,
                tail: Vec::new(),
            });
        }
        Ok(FileSource {
            parts,
            quote,
            header,
            block: 4 * 1024 * 1024,
            turn: 0,
            starts: Default::default(),
            open: 0,
            cost: None,
            leave_partial: false,
        })
    }

    /// Bytes per chunk.
    pub fn with_block_size(mut self, block: usize) -> Self {
        self.block = block;
        self
    }

    /// Cuts chunks also by what their lines may decode to ([`ChunkReader::with_cost`]).
    pub fn with_cost(mut self, cost: Option<LineCost>) -> Self {
        self.cost = cost;
        self
    }

    /// Leaves each file's last line for the next run while it has no line break (a file still
    /// being written).
    pub fn leaving_partial_tails(mut self, leave: bool) -> Self {
        self.leave_partial = leave;
        self
    }

    fn open(&mut self, i: usize) -> Result<ChunkReader, SourceError> {
        let p = &mut self.parts[i];
        let fail = |reason: String| SourceError::Other {
            name: p.path.display().to_string(),
            reason,
        };
        let file = regular::open(&p.path).map_err(|e| fail(e.to_string()))?;
        let now = Seen::of(&file, SEEN_HEAD).map_err(|e| fail(e.to_string()))?;
        // The file as far as it goes now (once it is found to begin as checked): what its
        // checkpoints record.
        let (len, crc) = now.start();
        match &p.seen {
            None => {
                if let Some((len, crc)) = p.expected {
                    if !now
                        .begins_as(&file, len, crc)
                        .map_err(|e| fail(e.to_string()))?
                    {
                        return Err(fail(format!(
                            "the file was replaced or rewritten between the start's check and its first read (partition {}): it is not read",
                            p.info.topic
                        )));
                    }
                }
                p.seen = Some(now);
            }
            Some(first) => {
                if !first.still(&now, &file).map_err(|e| fail(e.to_string()))? {
                    return Err(fail(format!(
                        "the file was replaced or rewritten while the job read it (partition {}, to be read again from byte {}): it is not read on from there. Restore the file read, or give the new one a name of its own",
                        p.info.topic, p.offset
                    )));
                }
            }
        }
        if len >= p.start_len {
            record_start(&self.starts, p.info.key(), &mut p.start_len, len, crc);
        }
        p.dup = file.try_clone().ok();
        // The header is not a record: taken at the start of each file. Each file has its
        // own, so its chunks carry it.
        let mut take_header = |r: &mut ChunkReader| -> Result<(), SourceError> {
            let h = r.take_header()?.unwrap_or_default();
            if p.header.as_deref() != Some(&h) {
                p.header = Some(std::sync::Arc::new(h));
            }
            Ok(())
        };
        // A plain file resumes by seeking (a gzip file's offsets count decompressed bytes:
        // read up to them).
        let seek = p.offset > 0 && !regular::is_gzip(&file).map_err(|e| fail(e.to_string()))?;
        if seek && self.header {
            take_header(&mut ChunkReader::from_start(&p.path, &file, self.quote)?)?;
        }
        let r = if seek {
            ChunkReader::plain_from(&p.path, file, self.quote, p.offset, p.line)?
        } else {
            ChunkReader::from_file(&p.path, file, self.quote)?
        };
        let mut r = r
            .with_block_size(self.block)
            .with_cost(self.cost.clone())
            .leaving_partial_tail(self.leave_partial);
        if !seek && self.header {
            take_header(&mut r)?;
        }
        // The bytes before the offset: read up to it (gzip), or read there (plain files).
        let read = if p.offset == 0 {
            Some(Vec::new())
        } else if !seek {
            r.skip_to(p.offset, p.line)?
        } else {
            let from = p.offset.saturating_sub(BEHIND as u64);
            p.dup
                .as_ref()
                .map(|f| regular::bytes_at(f, from, (p.offset - from) as usize))
                .transpose()
                .map_err(|e| fail(e.to_string()))?
        };
        if let Some((_, mark)) = p.behind.take().filter(|(at, _)| *at == p.offset) {
            check_behind(&p.path, p.offset, &mark, read.as_deref())?;
        }
        p.tail = read.unwrap_or_default();
        Ok(r)
    }

    /// A reader of partition `i`'s file from its start, unchecked (its header). With
    /// `partial_last_line = "leave"` a header still being written (its line not ended, a
    /// gzip file cut short) is no header yet, as the run's own reader takes it: it was read
    /// as a short header, or as damage, and the job refused at every start until the writer
    /// got further.
    fn plain_reader(&self, i: usize) -> Result<ChunkReader, SourceError> {
        let path = &self.parts[i].path;
        let file = regular::open(path).map_err(|e| SourceError::Other {
            name: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(
            ChunkReader::from_file(path, file, self.quote)?
                .leaving_partial_tail(self.leave_partial),
        )
    }
}

/// The path listed before `p` that names the same file (a symbolic or hard link), recording
/// `p`'s identity (device and inode) in `files`. Not on other systems.
fn same_file<'a>(
    files: &mut std::collections::HashMap<(u64, u64), &'a std::path::Path>,
    p: &'a std::path::Path,
) -> Option<&'a std::path::Path> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).ok()?;
        match files.entry((m.dev(), m.ino())) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(p);
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (files, p);
        None
    }
}

/// Refuses a file resumed at `offset` whose bytes before it, `read` (the last [`BEHIND`] at
/// most; None when they could not be read in one run), are not those its checkpoint marks:
/// the file was rewritten in place, or replaced by one that begins alike (its first 4 KiB,
/// which the start checks, the same), and reading on would skip or garble records.
fn check_behind(
    path: &std::path::Path,
    offset: u64,
    mark: &RecordMark,
    read: Option<&[u8]>,
) -> Result<(), SourceError> {
    let len = mark.len as usize;
    let Some(read) = read.filter(|r| r.len() >= len) else {
        tracing::debug!(input = %path.display(), offset, "the bytes before the resume offset were not read in one run: not compared");
        return Ok(());
    };
    if crc32fast::hash(&read[read.len() - len..]) == mark.crc {
        return Ok(());
    }
    Err(SourceError::Other {
        name: path.display().to_string(),
        reason: format!(
            "is not the file the job read to byte {offset}: the {len} bytes before that offset \
             differ from those its checkpoint records (the file rewritten in place, or replaced \
             by one that begins as it did). Reading it on from there would skip or garble \
             records: give the new file a name of its own (a new partition, read from its \
             start), or restore the one read"
        ),
    })
}

/// What a chunk's commit records of the bytes before its end: `tail`, the partition's last
/// bytes read before the chunk, followed by the chunk's (up to [`BEHIND`] in all); none
/// where its end was passed over (a record past the limit: the bytes after it start anew).
fn mark_of(tail: &mut Vec<u8>, chunk: &Chunk) -> Option<RecordMark> {
    if chunk.skipped_bytes > 0 {
        tail.clear();
        return None;
    }
    keep_last(tail, &chunk.data);
    (!tail.is_empty()).then(|| RecordMark::of(chunk.end_offset() - tail.len() as u64, None, tail))
}

/// Records how partition `key`'s file begins, `len` bytes of CRC-32 `crc`, for its
/// checkpoints (`start_len`: the part's record of how much).
fn record_start(starts: &ReadStarts, key: String, start_len: &mut usize, len: usize, crc: u32) {
    *start_len = len;
    starts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, (len, crc));
}

/// File stems become partition keys and file names: keep them plain.
fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let out = out.trim_start_matches(['_', '.']).to_string();
    if out.is_empty() {
        "input".into()
    } else {
        out
    }
}

impl Source for FileSource {
    fn partitions(&self) -> Vec<PartitionInfo> {
        self.parts.iter().map(|p| p.info.clone()).collect()
    }

    fn seek(&mut self, partition: u32, offset: u64, line: u64) -> Result<(), SourceError> {
        let p = &mut self.parts[partition as usize];
        p.offset = offset;
        p.line = line.max(1);
        if p.reader.take().is_some() {
            self.open -= 1;
        }
        p.dup = None;
        p.tail = Vec::new();
        p.done = false;
        Ok(())
    }

    fn next(&mut self, chunk: &mut Chunk) -> Result<Next, SourceError> {
        let n = self.parts.len();
        // Partitions passed over in a row: past every one, none is left to read (a file read
        // to its end gives those passed over for want of room another look).
        let mut passed = 0;
        while passed < n {
            let i = self.turn % n;
            self.turn = self.turn.wrapping_add(1);
            if self.parts[i].done {
                passed += 1;
                continue;
            }
            if self.parts[i].reader.is_none() {
                // Its turn comes once an open file is read to its end.
                if self.open >= MAX_OPEN {
                    passed += 1;
                    continue;
                }
                let r = self.open(i)?;
                self.parts[i].reader = Some(r);
                self.open += 1;
            }
            let from = self.parts[i].offset;
            let reader = self.parts[i].reader.as_mut().expect("opened above");
            if reader.next_chunk(chunk)? {
                let p = &mut self.parts[i];
                chunk.header = p.header.clone();
                chunk.mark = mark_of(&mut p.tail, chunk);
                // Where the partition stood: the first chunk after a CSV header starts past
                // the header, but follows position 0 (the header is not a record).
                chunk.from_offset = Some(from);
                p.offset = chunk.end_offset();
                p.line = chunk.next_line();
                // Read past the start recorded (a file shorter than that when opened, grown
                // since): recorded as far as it was read, so a checkpoint here names it;
                // unless the file no longer begins with what was recorded (copied, truncated
                // and written again meanwhile): the next start then refuses it.
                if p.start_len < SEEN_HEAD && p.offset > p.start_len as u64 {
                    let key = p.info.key();
                    let recorded = self
                        .starts
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get(&key)
                        .copied();
                    let head = p
                        .dup
                        .as_ref()
                        .and_then(|f| regular::head(f, SEEN_HEAD).ok());
                    let same = |h: &[u8]| {
                        recorded.is_none_or(|(len, crc)| {
                            h.len() >= len && crc32fast::hash(&h[..len]) == crc
                        })
                    };
                    match head {
                        Some(h) if !same(&h) => {
                            tracing::warn!(input = %p.path.display(), "the file no longer begins with what was read of it (copied and truncated, and written again?): the next start refuses it");
                            // Not looked at again: what it begins with is not recorded.
                            p.start_len = SEEN_HEAD;
                        }
                        Some(h) => record_start(
                            &self.starts,
                            key,
                            &mut p.start_len,
                            h.len(),
                            crc32fast::hash(&h),
                        ),
                        None => {}
                    }
                }
                return Ok(Next::Chunk(p.info.id));
            }
            let p = &mut self.parts[i];
            tracing::debug!(input = %p.path.display(), offset = p.offset, "read to its end");
            p.done = true;
            p.reader = None;
            p.dup = None;
            p.tail = Vec::new();
            self.open -= 1;
            passed = 0;
        }
        Ok(Next::End)
    }

    fn expect_start(&mut self, partition: u32, len: usize, crc: u32) {
        if let Some(p) = self.parts.get_mut(partition as usize) {
            p.expected = Some((len, crc));
            record_start(&self.starts, p.info.key(), &mut p.start_len, len, crc);
        }
    }

    fn expect_record(&mut self, partition: u32, offset: u64, mark: RecordMark) {
        // A mark of the bytes right before the offset (as `mark_of` makes them), nothing else.
        if mark.offset.checked_add(mark.len) != Some(offset) || mark.len > BEHIND as u64 {
            return;
        }
        if let Some(p) = self.parts.get_mut(partition as usize) {
            p.behind = Some((offset, mark));
        }
    }

    fn read_starts(&self) -> Option<ReadStarts> {
        Some(self.starts.clone())
    }

    fn handed_to(&self) -> Vec<(u32, u64)> {
        self.parts.iter().map(|p| (p.info.id, p.offset)).collect()
    }

    fn header(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        if !self.header {
            return Ok(None);
        }
        let mut r = self.plain_reader(0)?;
        Ok(r.take_header()?)
    }

    fn replayable(&mut self, partition: u32) -> Result<Option<(u64, u64)>, SourceError> {
        let Some(p) = self.parts.get(partition as usize) else {
            return Ok(None);
        };
        let io = |e: std::io::Error| SourceError::Other {
            name: p.path.display().to_string(),
            reason: e.to_string(),
        };
        // Offsets count decompressed bytes: a gzip file is read through to tell (a roll-back,
        // a restored spill), so a roll-back past a shorter file is refused before it deletes;
        // a damaged one cannot tell.
        if crate::input::is_gzip(&p.path).map_err(io)? {
            let reach = crate::input::gzip_reach(&p.path).map_err(io)?;
            return Ok(reach.map(|r| (0, r)));
        }
        let len = regular::open(&p.path)
            .and_then(|f| f.metadata())
            .map_err(io)?
            .len();
        Ok(Some((0, len)))
    }

    fn headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
        if !self.header {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(self.parts.len());
        for (i, p) in self.parts.iter().enumerate() {
            let mut r = self.plain_reader(i)?;
            // An empty file has no header and no records: nothing to check.
            if let Some(h) = r.take_header()? {
                out.push((p.path.display().to_string(), h));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
