//! Record framing: where one record ends and the next begins in a block of input bytes.
//!
//! JSON and text input are one record per line; CSV records may span lines inside quotes.
//! Blank lines are not records. Every record keeps its line number and byte offset so dead
//! letters can say where they came from.

/// Where a record starts in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// 1-based line number of the record's first line.
    pub line: u64,
    /// Byte offset of the record's first byte in the (decompressed) input.
    pub offset: u64,
}

/// One record inside a chunk: a byte range (without the line terminator) and its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub start: usize,
    pub end: usize,
    pub pos: Position,
}

/// A block of whole records, as read from the input.
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// Line number of the first byte of `data` (1-based).
    pub first_line: u64,
    /// Byte offset of the first byte of `data` in the input.
    pub first_offset: u64,
    /// The source position before this chunk (Kafka; files, where a CSV header may lie between).
    pub from_offset: Option<u64>,
    /// Message-framed sources: the offset of each record (one per line), in order.
    pub offsets: Vec<u64>,
    /// Message-framed sources: where each record's line ends in `data` (the index of its
    /// newline), one per line, when every line is one record (none blank, none with a line
    /// break inside): [`split_records`] then takes them instead of scanning. Empty: scan.
    pub ends: Vec<usize>,
    /// Message-framed sources: the metadata the schema asks for, per record.
    pub meta: super::meta::MessageMeta,
    /// The records already decoded (a push request decoded when it was taken): the pipeline
    /// uses this instead of decoding `data` again.
    pub decoded: Option<super::Decoded>,
    /// CSV input read from several files: the header record of this chunk's file (each file
    /// has its own column order). `None`: the decoder's own header applies.
    pub header: Option<std::sync::Arc<Vec<u8>>>,
}

/// Splits `chunk` into records. With `quoted`, a newline inside a double-quoted CSV field does
/// not end the record.
pub fn split_records(chunk: &Chunk, quoted: bool, out: &mut Vec<Record>) {
    out.clear();
    // Recorded ends are taken only when they frame all of `data` (a buffer reused by a
    // source that does not record them keeps stale ones otherwise).
    if !quoted
        && chunk
            .ends
            .last()
            .is_some_and(|&e| e + 1 == chunk.data.len())
    {
        let mut start = 0;
        for (i, &end) in chunk.ends.iter().enumerate() {
            out.push(Record {
                start,
                end,
                pos: Position {
                    line: chunk.first_line + i as u64,
                    offset: chunk.first_offset + start as u64,
                },
            });
            start = end + 1;
        }
        return;
    }
    let data = &chunk.data;
    let mut line = chunk.first_line;
    let mut start = 0usize;
    let mut record_line = line;
    let mut in_quotes = false;
    let mut scan_from = 0usize;
    while scan_from <= data.len() {
        let nl = memchr::memchr(b'\n', &data[scan_from..]).map(|i| scan_from + i);
        let line_end = nl.unwrap_or(data.len());
        if quoted {
            let quotes = memchr::memchr_iter(b'"', &data[scan_from..line_end]).count();
            if quotes % 2 == 1 {
                in_quotes = !in_quotes;
            }
        }
        let at_end = nl.is_none();
        if !in_quotes || at_end {
            let mut end = line_end;
            if end > start && data[end - 1] == b'\r' {
                end -= 1;
            }
            if !data[start..end].iter().all(|b| b.is_ascii_whitespace()) {
                out.push(Record {
                    start,
                    end,
                    pos: Position {
                        line: record_line,
                        offset: chunk.first_offset + start as u64,
                    },
                });
            }
            start = line_end + 1;
            record_line = line + 1;
        }
        line += 1;
        match nl {
            Some(i) => scan_from = i + 1,
            None => break,
        }
    }
}

/// Finds where the last complete record in `data` ends (the index after its newline), or
/// `None` when `data` holds no complete record. `quoted` tracks CSV quotes from the start.
pub fn last_record_boundary(data: &[u8], quoted: bool) -> Option<usize> {
    if !quoted {
        return memchr::memrchr(b'\n', data).map(|i| i + 1);
    }
    let mut in_quotes = false;
    let mut last = None;
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => last = Some(i + 1),
            _ => {}
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str, quoted: bool) -> Vec<(String, u64, u64)> {
        let chunk = Chunk {
            data: text.as_bytes().to_vec(),
            first_line: 10,
            first_offset: 100,
            ..Default::default()
        };
        let mut out = Vec::new();
        split_records(&chunk, quoted, &mut out);
        out.iter()
            .map(|r| (text[r.start..r.end].to_string(), r.pos.line, r.pos.offset))
            .collect()
    }

    #[test]
    fn lines_skip_blanks_and_keep_positions() {
        let r = records("a\r\n\n  \nb\nc", false);
        assert_eq!(
            r,
            vec![
                ("a".into(), 10, 100),
                ("b".into(), 13, 107),
                ("c".into(), 14, 109)
            ]
        );
    }

    #[test]
    fn quoted_newlines_stay_in_one_record() {
        let r = records("x,\"multi\nline\",y\nz\n", true);
        assert_eq!(
            r,
            vec![
                ("x,\"multi\nline\",y".into(), 10, 100),
                ("z".into(), 12, 117)
            ]
        );
    }

    #[test]
    fn boundary_respects_quotes() {
        assert_eq!(last_record_boundary(b"a\nb", false), Some(2));
        assert_eq!(last_record_boundary(b"a\n\"b\nc", true), Some(2));
        assert_eq!(last_record_boundary(b"abc", false), None);
    }
}
