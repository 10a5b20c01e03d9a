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

    /// A reader of partition `i`'s file from its start, unchecked (its header).
    fn plain_reader(&self, i: usize) -> Result<ChunkReader, SourceError> {
        let path = &self.parts[i].path;
        let file = regular::open(path).map_err(|e| SourceError::Other {
            name: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(ChunkReader::from_file(path, file, self.quote)?)
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
mod tests {
    use super::*;

    /// Many more files than may be open at once: every line of every file is read once, with
    /// at most [`MAX_OPEN`] files open, and rewinding one read to its end reads it again.
    #[test]
    fn many_files_are_read_whole_with_a_bounded_number_open() {
        let dir = tempfile::tempdir().unwrap();
        let files = 3 * MAX_OPEN + 5;
        let paths: Vec<PathBuf> = (0..files)
            .map(|f| {
                let p = dir.path().join(format!("in{f}.jsonl"));
                let lines: String = (0..300)
                    .map(|i| format!("{{\"f\":{f},\"i\":{i}}}\n"))
                    .collect();
                std::fs::write(&p, lines).unwrap();
                p
            })
            .collect();
        let mut source = FileSource::new(&paths, None, false)
            .unwrap()
            .with_block_size(1024);
        let mut lines = vec![0usize; files];
        let mut chunk = Chunk::default();
        let mut most_open = 0;
        let mut rewound = false;
        loop {
            match source.next(&mut chunk).unwrap() {
                Next::Chunk(p) => {
                    lines[p as usize] += memchr::memchr_iter(b'\n', &chunk.data).count();
                }
                Next::Idle => panic!("a file source is never idle"),
                Next::End if !rewound => {
                    // Read again from its start: its reader opens once more.
                    source.seek(0, 0, 1).unwrap();
                    lines[0] = 0;
                    rewound = true;
                }
                Next::End => break,
            }
            most_open = most_open.max(source.open);
            assert_eq!(
                source.open,
                source.parts.iter().filter(|p| p.reader.is_some()).count()
            );
        }
        assert_eq!(lines, vec![300; files]);
        assert_eq!(most_open, MAX_OPEN);
    }

    /// A plain file resumes by seeking to its offset, not by reading up to it (every start of a
    /// file job read each file from its first byte): here 200 MiB of a sparse file's hole, no
    /// line break in it, lie before the offset, which reading up to it refused as a place
    /// inside a record past the record limit. A CSV file's header still comes from its start.
    #[test]
    fn a_plain_file_resumes_by_seeking_to_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.csv");
        let hole = 200u64 << 20;
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(b"name,n\na,1\n").unwrap();
            f.seek(SeekFrom::Start(12 + hole)).unwrap();
            f.write_all(b"b,2\nc,3\n").unwrap();
        }
        let mut source = FileSource::new(std::slice::from_ref(&p), Some(b','), true).unwrap();
        source.seek(0, 12 + hole, 3).unwrap();
        let mut chunk = Chunk::default();
        assert!(matches!(source.next(&mut chunk).unwrap(), Next::Chunk(0)));
        assert_eq!(chunk.data, b"b,2\nc,3\n");
        assert_eq!((chunk.first_offset, chunk.first_line), (12 + hole, 3));
        assert_eq!(
            chunk.header.as_deref().map(Vec::as_slice),
            Some(&b"name,n"[..])
        );
        assert!(matches!(source.next(&mut chunk).unwrap(), Next::End));
        // Past the file's end: refused, naming the offset.
        source.seek(0, 100 + hole, 5).unwrap();
        let e = source.next(&mut chunk).unwrap_err();
        assert!(e.to_string().contains("before the resume offset"), "{e}");
    }

    /// A file under 4 KiB, copied and truncated while it is read and written again (the same
    /// inode) past where the reader stands: its start, read again once the reader passes what
    /// was recorded, is not the one read, and the record keeps the old one, so the next start
    /// refuses the file. (Recorded, it named the new content: the next start resumed past
    /// the new file's first kilobyte, never read.)
    #[test]
    fn a_small_file_rewritten_in_place_while_read_keeps_its_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        let lines = |tag: &str, n: usize| -> String {
            (0..n).map(|i| format!("{{\"{tag}\":{i:04}}}\n")).collect()
        };
        let first = lines("a", 100);
        assert!(first.len() > 1024 && first.len() < SEEN_HEAD);
        std::fs::write(&p, &first).unwrap();
        let mut source = FileSource::new(std::slice::from_ref(&p), None, false)
            .unwrap()
            .with_block_size(1024);
        let mut chunk = Chunk::default();
        assert!(matches!(source.next(&mut chunk).unwrap(), Next::Chunk(0)));
        assert!(chunk.end_offset() < first.len() as u64);
        let key = source.parts[0].info.key();
        let at_open = source.starts.lock().unwrap().get(&key).copied();
        assert_eq!(
            at_open,
            Some((first.len(), crc32fast::hash(first.as_bytes())))
        );
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&p)
                .unwrap();
            f.write_all(lines("b", 200).as_bytes()).unwrap();
        }
        assert!(matches!(source.next(&mut chunk).unwrap(), Next::Chunk(0)));
        assert!(chunk.end_offset() > first.len() as u64);
        assert_eq!(source.starts.lock().unwrap().get(&key).copied(), at_open);
    }

    /// A file replaced between the start's check (which its checkpoints name) and its first
    /// open is refused there: read, its rows would be committed as the checked file's.
    #[test]
    fn a_file_replaced_before_its_first_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n").unwrap();
        let checked = crc32fast::hash(b"{\"a\":1}\n");
        let mut source = FileSource::new(std::slice::from_ref(&p), None, false).unwrap();
        source.expect_start(0, 8, checked);
        std::fs::write(&p, b"{\"b\":2}\n{\"a\":1}\n").unwrap();
        let e = source.next(&mut Chunk::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("between the start's check and its first read"),
            "{e}"
        );
        // The file checked, grown since: read.
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        let mut source = FileSource::new(std::slice::from_ref(&p), None, false).unwrap();
        source.expect_start(0, 8, checked);
        assert!(matches!(
            source.next(&mut Chunk::default()).unwrap(),
            Next::Chunk(0)
        ));
    }

    /// The start recorded for a file's checkpoints covers what was read of it, up to 4 KiB,
    /// however short the file was when the start checked it (the checkpoints of a run that
    /// began on an empty file named any file alike).
    #[test]
    fn the_start_recorded_covers_what_was_read() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n").unwrap();
        let mut source = FileSource::new(std::slice::from_ref(&p), None, false)
            .unwrap()
            .with_block_size(1024);
        source.expect_start(0, 8, crc32fast::hash(b"{\"a\":1}\n"));
        let starts = source.read_starts().unwrap();
        let key = source.partitions()[0].key();
        let recorded = || starts.lock().unwrap().get(&key).copied().unwrap();
        assert_eq!(recorded().0, 8);
        // Grown between the start's check and the first read: read whole.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        for i in 0..1000 {
            writeln!(f, "{{\"a\":{i}}}").unwrap();
        }
        let mut chunk = Chunk::default();
        while let Next::Chunk(_) = source.next(&mut chunk).unwrap() {}
        let whole = std::fs::read(&p).unwrap();
        assert_eq!(recorded(), (4096, crc32fast::hash(&whole[..4096])));
    }

    /// A path that became a FIFO after the source was made is refused when opened, without
    /// waiting for a writer.
    #[test]
    fn a_file_become_a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"{}\n").unwrap();
        let mut source = FileSource::new(std::slice::from_ref(&p), None, false).unwrap();
        std::fs::remove_file(&p).unwrap();
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = source.next(&mut Chunk::default()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
