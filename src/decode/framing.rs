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
    /// Where each line ends in `data` (the index of its newline), recorded by a source that
    /// already knows (message-framed sources; files of lines, found as they are read), when
    /// lines are records (no CSV quotes): [`split_records`] then frames by them instead of
    /// scanning. Empty: scan.
    pub ends: Vec<usize>,
    /// Every line of `data` was measured by the source with the decoder's widths
    /// ([`super::cost`]), and none nests too deep or measures past what a record may decode
    /// to: the decoder does not measure them again. Set with `ends`, by the same sources.
    pub measured: bool,
    /// Message-framed sources: the metadata the schema asks for, per record.
    pub meta: super::meta::MessageMeta,
    /// The records already decoded (a push request decoded when it was taken): the pipeline
    /// uses this instead of decoding `data` again.
    pub decoded: Option<super::Decoded>,
    /// CSV input read from several files: the header record of this chunk's file (each file
    /// has its own column order). `None`: the decoder's own header applies.
    pub header: Option<std::sync::Arc<Vec<u8>>>,
    /// Input after `data` that belongs to this chunk but is not held: a record longer than
    /// the file reader's record limit, whose dead letter is in `decoded` (bytes, and the
    /// line breaks among them).
    pub skipped_bytes: u64,
    pub skipped_lines: u64,
    /// Message-framed sources: what identifies the chunk's last message (`None` when it
    /// cannot be read again to compare, e.g. a record batch the client could not read).
    pub mark: Option<super::meta::RecordMark>,
}

impl Chunk {
    /// A chunk of `text` from line 1, byte 0 (tests).
    #[cfg(test)]
    pub fn of(text: &str) -> Chunk {
        Chunk {
            data: text.as_bytes().to_vec(),
            first_line: 1,
            ..Default::default()
        }
    }

    /// Where the input continues after this chunk.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.data.len() as u64 + self.skipped_bytes
    }

    /// The line the input continues on after this chunk.
    pub fn next_line(&self) -> u64 {
        self.first_line + memchr::memchr_iter(b'\n', &self.data).count() as u64 + self.skipped_lines
    }
}

/// CSV quoting as the field splitter (`delimited.rs`) reads it, so both agree on where a
/// record ends: a double quote opens a quoted field only at the start of a field (the start
/// of a record or after `delimiter`); inside one, `""` is a quote and a lone `"` closes it; a
/// quote anywhere else is a plain character. (Toggling on every quote, a stray `5"` in an
/// unquoted field swallowed the following lines into its record.)
#[derive(Debug, Clone, Copy)]
struct Quotes {
    delimiter: u8,
    in_quotes: bool,
    field_start: bool,
}

impl Quotes {
    fn new(delimiter: u8) -> Self {
        Quotes {
            delimiter,
            in_quotes: false,
            field_start: true,
        }
    }

    /// Reads `line` (no newline in it). Afterwards `in_quotes` says whether the newline that
    /// follows lies inside a quoted field (then it belongs to the record).
    fn line(&mut self, line: &[u8]) {
        let mut i = 0;
        while i < line.len() {
            if self.in_quotes {
                let Some(k) = memchr::memchr(b'"', &line[i..]) else {
                    return;
                };
                let q = i + k;
                if line.get(q + 1) == Some(&b'"') {
                    i = q + 2;
                } else {
                    self.in_quotes = false;
                    i = q + 1;
                }
            } else if self.field_start && line[i] == b'"' {
                self.in_quotes = true;
                self.field_start = false;
                i += 1;
            } else {
                match memchr::memchr(self.delimiter, &line[i..]) {
                    Some(k) => {
                        i += k + 1;
                        self.field_start = true;
                    }
                    None => {
                        self.field_start = false;
                        return;
                    }
                }
            }
        }
    }

    /// A newline: the record ends there unless a quoted field is open.
    fn newline(&mut self) -> bool {
        if self.in_quotes {
            false
        } else {
            self.field_start = true;
            true
        }
    }
}

/// Splits `chunk` into records. With `quote` (CSV's delimiter), a newline inside a
/// double-quoted CSV field does not end the record. Blank lines are not records: empty ones
/// with `quote`, else lines of whitespace alone.
pub fn split_records(chunk: &Chunk, quote: Option<u8>, out: &mut Vec<Record>) {
    split(chunk, quote, None, out)
}

/// [`split_records`] as an input of `kind` frames them: a line of a text input's delimiter
/// and whitespace is fields, not blank (`\t\t` split on tabs is three empty ones).
pub fn split_records_of(chunk: &Chunk, kind: &super::InputKind, out: &mut Vec<Record>) {
    split(chunk, kind.quoting(), kind.text_delimiter(), out)
}

/// Whether `line` is blank: empty with `quote`; else of whitespace alone (JSON's: space, tab,
/// CR, LF; a form feed is a record, which JSON reads as no value, a dead letter) and without
/// `delimiter`.
pub fn blank(line: &[u8], quote: Option<u8>, delimiter: Option<&[u8]>) -> bool {
    if quote.is_some() {
        return line.is_empty();
    }
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        && !delimiter.is_some_and(|d| !d.is_empty() && memchr::memmem::find(line, d).is_some())
}

fn split(chunk: &Chunk, quote: Option<u8>, delimiter: Option<&[u8]>, out: &mut Vec<Record>) {
    out.clear();
    // Recorded ends are taken only when they frame all of `data` (a buffer reused by a
    // source that does not record them keeps stale ones otherwise).
    if quote.is_none()
        && chunk
            .ends
            .last()
            .is_some_and(|&e| e + 1 == chunk.data.len())
    {
        let mut start = 0;
        for (i, &line_end) in chunk.ends.iter().enumerate() {
            out.extend(record(
                chunk,
                start,
                line_end,
                chunk.first_line + i as u64,
                (None, delimiter),
            ));
            start = line_end + 1;
        }
        return;
    }
    let data = &chunk.data;
    let mut line = chunk.first_line;
    let mut start = 0usize;
    let mut record_line = line;
    let mut quotes = quote.map(Quotes::new);
    let mut scan_from = 0usize;
    while scan_from <= data.len() {
        let nl = memchr::memchr(b'\n', &data[scan_from..]).map(|i| scan_from + i);
        let line_end = nl.unwrap_or(data.len());
        let ends = match &mut quotes {
            Some(q) => {
                q.line(&data[scan_from..line_end]);
                q.newline()
            }
            None => true,
        };
        let at_end = nl.is_none();
        if ends || at_end {
            out.extend(record(
                chunk,
                start,
                line_end,
                record_line,
                (quote, delimiter),
            ));
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

/// The record of `chunk.data[start..line_end]` (which starts on line `line`): without a CR
/// before the line end, and none when the line is [`blank`] by `how` (quote, delimiter):
/// empty in CSV and TSV, where a line of spaces or tabs is fields (`\t\t` is three empty
/// ones; dropped as blank, such a row was lost without a word), and in text input split on a
/// delimiter a line that holds it.
fn record(
    chunk: &Chunk,
    start: usize,
    line_end: usize,
    line: u64,
    how: (Option<u8>, Option<&[u8]>),
) -> Option<Record> {
    let data = &chunk.data;
    let mut end = line_end;
    if end > start && data[end - 1] == b'\r' {
        end -= 1;
    }
    let blank = blank(&data[start..end], how.0, how.1);
    (!blank).then(|| Record {
        start,
        end,
        pos: Position {
            line,
            offset: chunk.first_offset + start as u64,
        },
    })
}

/// Finds where the last complete record in `data` ends (the index after its newline), or
/// `None` when `data` holds no complete record. `quote` (CSV's delimiter) tracks CSV quotes
/// from the start, as [`split_records`] does.
pub fn last_record_boundary(data: &[u8], quote: Option<u8>) -> Option<usize> {
    Boundaries::new(quote).last(data)
}

/// [`last_record_boundary`] of a buffer that only grows (a long record read a block at a
/// time): each call reads only what was added since the one before. (Scanned from the start
/// at every block, a CSV record of many blocks was read again for each.)
pub struct Boundaries {
    quotes: Option<Quotes>,
    /// Where the next line to read starts.
    from: usize,
    last: Option<usize>,
}

impl Boundaries {
    pub fn new(quote: Option<u8>) -> Self {
        Boundaries {
            quotes: quote.map(Quotes::new),
            from: 0,
            last: None,
        }
    }

    /// Where the last complete record of `data` ends, `data` holding what the calls before
    /// were given (and maybe more).
    pub fn last(&mut self, data: &[u8]) -> Option<usize> {
        let Some(q) = &mut self.quotes else {
            if let Some(i) = memchr::memrchr(b'\n', &data[self.from..]) {
                self.last = Some(self.from + i + 1);
            }
            self.from = data.len();
            return self.last;
        };
        // Only whole lines are read: the quotes of a line's part would be read twice.
        while let Some(k) = memchr::memchr(b'\n', &data[self.from..]) {
            let nl = self.from + k;
            q.line(&data[self.from..nl]);
            if q.newline() {
                self.last = Some(nl + 1);
            }
            self.from = nl + 1;
        }
        self.last
    }
}

/// The most lines a source puts in one chunk, whatever their bytes. Besides its bytes, a
/// record's decoded form has a fixed cost (a dead letter's reason and bookkeeping, about
/// 200 B; a row's fixed width in every column), so without a cap a 1 MiB chunk of 2-byte bad
/// lines decoded to about 100 MiB of dead letters. 16,384 lines of 64 B fill a 1 MiB chunk.
pub const MAX_CHUNK_LINES: usize = 16_384;

/// Where the last complete record within the first `lines` lines of `data` ends (the index
/// after its newline). When the first record alone spans more lines (a CSV quoted field),
/// where it ends. `None` when `data` holds no complete record. `quote` as in
/// [`last_record_boundary`].
pub fn record_boundary_within(data: &[u8], quote: Option<u8>, lines: usize) -> Option<usize> {
    let lines = lines.max(1);
    let Some(delimiter) = quote else {
        return memchr::memchr_iter(b'\n', data)
            .take(lines)
            .last()
            .map(|i| i + 1);
    };
    let mut q = Quotes::new(delimiter);
    let mut last = None;
    let mut from = 0;
    let mut seen = 0;
    while let Some(k) = memchr::memchr(b'\n', &data[from..]) {
        let nl = from + k;
        q.line(&data[from..nl]);
        seen += 1;
        if q.newline() {
            if seen > lines && last.is_some() {
                break;
            }
            last = Some(nl + 1);
            if seen >= lines {
                break;
            }
        }
        from = nl + 1;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str, quote: Option<u8>) -> Vec<(String, u64, u64)> {
        let chunk = Chunk {
            data: text.as_bytes().to_vec(),
            first_line: 10,
            first_offset: 100,
            ..Default::default()
        };
        let mut out = Vec::new();
        split_records(&chunk, quote, &mut out);
        out.iter()
            .map(|r| (text[r.start..r.end].to_string(), r.pos.line, r.pos.offset))
            .collect()
    }

    #[test]
    fn lines_skip_blanks_and_keep_positions() {
        let r = records("a\r\n\n  \nb\nc", None);
        assert_eq!(
            r,
            vec![
                ("a".into(), 10, 100),
                ("b".into(), 13, 107),
                ("c".into(), 14, 109)
            ]
        );
    }

    /// In CSV and TSV only an empty line is blank: a line of tabs is empty fields and a line
    /// of spaces is a value (a TSV row `\t\t` of three nulls was dropped as blank).
    #[test]
    fn delimited_lines_of_whitespace_are_records() {
        let r = records("\t\t\n\r\n\n \t \r\nb\n", Some(b'\t'));
        assert_eq!(
            r,
            vec![
                ("\t\t".into(), 10, 100),
                (" \t ".into(), 13, 106),
                ("b".into(), 14, 111)
            ]
        );
        assert_eq!(records("\t\t\n \n", None), vec![]);
    }

    #[test]
    fn quoted_newlines_stay_in_one_record() {
        let r = records("x,\"multi\nline\",y\nz\n", Some(b','));
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
        assert_eq!(last_record_boundary(b"a\nb", None), Some(2));
        assert_eq!(last_record_boundary(b"a\n\"b\nc", Some(b',')), Some(2));
        assert_eq!(last_record_boundary(b"abc", None), None);
        // A stray quote inside an unquoted field is a plain character.
        assert_eq!(last_record_boundary(b"5\" long\nb\n", Some(b',')), Some(10));
        assert_eq!(
            last_record_boundary(b"a,\"x\"\"\ny\"\n", Some(b',')),
            Some(10)
        );
    }

    #[test]
    fn a_boundary_within_so_many_lines() {
        let text = b"a\nb\n\nc\nd";
        assert_eq!(record_boundary_within(text, None, 1), Some(2));
        assert_eq!(record_boundary_within(text, None, 3), Some(5));
        // Fewer lines than asked: the last boundary.
        assert_eq!(record_boundary_within(text, None, 100), Some(7));
        assert_eq!(record_boundary_within(b"abc", None, 2), None);
        // CSV: a quoted record is not cut; one spanning more lines than asked ends the first.
        let csv = b"x,\"1\n2\n3\",y\nz\nw\n";
        assert_eq!(record_boundary_within(csv, Some(b','), 1), Some(12));
        assert_eq!(record_boundary_within(csv, Some(b','), 3), Some(12));
        assert_eq!(record_boundary_within(csv, Some(b','), 4), Some(14));
        let csv = b"z\nx,\"1\n2\",y\nw\n";
        assert_eq!(record_boundary_within(csv, Some(b','), 2), Some(2));
        assert_eq!(record_boundary_within(csv, Some(b','), 3), Some(12));
        assert_eq!(record_boundary_within(b"\"open\n", Some(b','), 5), None);
    }

    /// A quote opens a quoted field only at a field's start, as the field splitter reads it:
    /// a stray `"` in an unquoted field no longer swallows the lines after it.
    #[test]
    fn a_stray_quote_inside_an_unquoted_field_ends_nothing_and_opens_nothing() {
        let text = "msg\nscrew 5\" long\nnext record\nthird 2\" record\nfourth\n";
        let r: Vec<String> = records(text, Some(b',')).into_iter().map(|r| r.0).collect();
        assert_eq!(
            r,
            [
                "msg",
                "screw 5\" long",
                "next record",
                "third 2\" record",
                "fourth"
            ]
        );
        // Quoted fields after a delimiter (or a tab) still span lines, `""` inside them too.
        let text = "a,\"b\"\"\nc\",d\ne\tx\n";
        let r: Vec<String> = records(text, Some(b',')).into_iter().map(|r| r.0).collect();
        assert_eq!(r, ["a,\"b\"\"\nc\",d", "e\tx"]);
        let r: Vec<String> = records("a\t\"b\nc\"\nd\n", Some(b'\t'))
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(r, ["a\t\"b\nc\"", "d"]);
        // A comma is not TSV's delimiter: the quote after it is a plain character.
        let r: Vec<String> = records("a,\"b\nc\n", Some(b'\t'))
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(r, ["a,\"b", "c"]);
    }
}
