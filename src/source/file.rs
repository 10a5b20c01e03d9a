//! The file source: each input file is one partition, offsets are byte positions in the
//! (decompressed) file, and reading resumes at any offset. Bounded: it ends when every file is
//! read (a damaged gzip file at its damage, after its dead letter). Partitions are read
//! round-robin, a chunk at a time.

use std::path::PathBuf;

use super::{Next, PartitionInfo, Source, SourceError};
use crate::decode::cost::LineCost;
use crate::decode::Chunk;
use crate::input::{ChunkReader, InputSource};

struct Part {
    info: PartitionInfo,
    path: PathBuf,
    offset: u64,
    line: u64,
    reader: Option<ChunkReader>,
    done: bool,
    /// The file's CSV header, once read.
    header: Option<std::sync::Arc<Vec<u8>>>,
}

pub struct FileSource {
    parts: Vec<Part>,
    quote: Option<u8>,
    header: bool,
    block: usize,
    turn: usize,
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
                return Err(SourceError::Other {
                    name: p.display().to_string(),
                    reason: "no such file".into(),
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
                header: None,
            });
        }
        Ok(FileSource {
            parts,
            quote,
            header,
            block: 4 * 1024 * 1024,
            turn: 0,
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
        let mut r = ChunkReader::open(&InputSource::File(p.path.clone()), self.quote)?
            .with_block_size(self.block)
            .with_cost(self.cost.clone())
            .leaving_partial_tail(self.leave_partial);
        if self.header {
            // The header is not a record: take it at the start of each file. Each file has
            // its own, so its chunks carry it.
            let h = r.take_header()?.unwrap_or_default();
            if p.header.as_deref() != Some(&h) {
                p.header = Some(std::sync::Arc::new(h));
            }
        }
        if p.offset > 0 {
            r.skip_to(p.offset, p.line)?;
        }
        Ok(r)
    }
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
        p.reader = None;
        p.done = false;
        Ok(())
    }

    fn next(&mut self, chunk: &mut Chunk) -> Result<Next, SourceError> {
        let n = self.parts.len();
        for _ in 0..n {
            let i = self.turn % n;
            self.turn = self.turn.wrapping_add(1);
            if self.parts[i].done {
                continue;
            }
            if self.parts[i].reader.is_none() {
                let r = self.open(i)?;
                self.parts[i].reader = Some(r);
            }
            let from = self.parts[i].offset;
            let reader = self.parts[i].reader.as_mut().expect("opened above");
            if reader.next_chunk(chunk)? {
                let p = &mut self.parts[i];
                chunk.header = p.header.clone();
                // Where the partition stood: the first chunk after a CSV header starts past
                // the header, but follows position 0 (the header is not a record).
                chunk.from_offset = Some(from);
                p.offset = chunk.end_offset();
                p.line = chunk.next_line();
                return Ok(Next::Chunk(p.info.id));
            }
            self.parts[i].done = true;
            self.parts[i].reader = None;
        }
        Ok(Next::End)
    }

    fn handed_to(&self) -> Vec<(u32, u64)> {
        self.parts.iter().map(|p| (p.info.id, p.offset)).collect()
    }

    fn header(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        if !self.header {
            return Ok(None);
        }
        let p = &self.parts[0];
        let mut r = ChunkReader::open(&InputSource::File(p.path.clone()), self.quote)?;
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
        let len = std::fs::metadata(&p.path).map_err(io)?.len();
        Ok(Some((0, len)))
    }

    fn headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
        if !self.header {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let mut r = ChunkReader::open(&InputSource::File(p.path.clone()), self.quote)?;
            // An empty file has no header and no records: nothing to check.
            if let Some(h) = r.take_header()? {
                out.push((p.path.display().to_string(), h));
            }
        }
        Ok(out)
    }
}
