//! Input reading: record boundaries, positions, the line cap, the record limit, a BOM.

use super::*;
use std::io::Write;

fn read_all(r: &mut ChunkReader) -> Vec<Chunk> {
    let mut out = Vec::new();
    loop {
        let mut c = Chunk::default();
        if !r.next_chunk(&mut c).unwrap() {
            return out;
        }
        out.push(c);
    }
}

#[test]
fn chunks_end_on_record_boundaries_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("{{\"i\":{i}}}\n"));
    }
    std::fs::write(&p, &text).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), None)
        .unwrap()
        .with_block_size(1024);
    let chunks = read_all(&mut r);
    assert!(chunks.len() > 10);
    let mut joined = Vec::new();
    let mut line = 1;
    for c in &chunks {
        assert_eq!(c.first_offset as usize, joined.len());
        assert_eq!(c.first_line, line);
        assert!(c.data.ends_with(b"\n"));
        line += c.data.iter().filter(|b| **b == b'\n').count() as u64;
        joined.extend_from_slice(&c.data);
    }
    assert_eq!(joined, text.as_bytes());
}

/// A chunk of tiny records stops at MAX_CHUNK_LINES lines (their decoded form has a fixed
/// cost each), on a record boundary (CSV quotes kept whole), with every byte and position.
#[test]
fn a_chunk_of_tiny_records_holds_at_most_so_many_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (name, quote) in [("in.jsonl", None), ("in.csv", Some(b','))] {
        let p = dir.path().join(name);
        let mut text = String::new();
        for i in 0..(5 * MAX_CHUNK_LINES / 2) {
            text.push_str(match i % 1000 {
                // A quoted record across three lines, around the cap.
                383 if quote.is_some() => "\"a\nb\nc\"\n",
                _ => "}\n",
            });
        }
        std::fs::write(&p, &text).unwrap();
        let mut r = ChunkReader::open(&InputSource::File(p), quote).unwrap();
        let chunks = read_all(&mut r);
        assert_eq!(chunks.len(), 3, "{name}");
        // The line ends a chunk records are never more than the cap's (the block held more).
        for c in &chunks {
            assert!(
                c.ends.capacity() <= 2 * MAX_CHUNK_LINES,
                "{name}: {}",
                c.ends.capacity()
            );
        }
        let (mut joined, mut line) = (Vec::new(), 1);
        for c in &chunks {
            let lines = memchr::memchr_iter(b'\n', &c.data).count();
            assert!(lines <= MAX_CHUNK_LINES, "{name}: a chunk of {lines} lines");
            assert_eq!(c.first_offset as usize, joined.len());
            assert_eq!(c.first_line, line);
            assert!(c.data.ends_with(b"}\n") || c.data.ends_with(b"\"\n"));
            line += lines as u64;
            joined.extend_from_slice(&c.data);
        }
        assert_eq!(joined, text.as_bytes(), "{name}");
    }
}

/// A record longer than the record limit is a chunk of its own holding no data: its
/// dead letter keeps the first `limit` bytes, the rest of its line is skipped, and
/// reading goes on after it with every position right. (It was an error, so a file job
/// failed at every start.) A CSV quote never closed resumes at the line after the limit.
#[test]
fn a_record_over_the_limit_is_a_dead_letter_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{{\"s\":\"{}\"}}\n", "x".repeat(10_000));
    let cases = [
        (
            "in.jsonl",
            None,
            format!("{{\"a\":1}}\n{long}{{\"a\":2}}\n"),
        ),
        // At the end, with no line break.
        (
            "end.jsonl",
            None,
            format!("{{\"a\":1}}\n{}", long.trim_end()),
        ),
        (
            "in.csv",
            Some(b','),
            format!("a\n\"open\n{}\nlast\nb\n", "y\n".repeat(3000)),
        ),
    ];
    for (name, quote, text) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &text).unwrap();
        let mut r = ChunkReader::open(&InputSource::File(p), quote)
            .unwrap()
            .with_block_size(1024)
            .with_record_limit(4096);
        let chunks = read_all(&mut r);
        let (mut at, mut line, mut held) = (0, 1, Vec::new());
        let mut dead = Vec::new();
        for c in &chunks {
            assert_eq!((c.first_offset, c.first_line), (at, line), "{name}");
            match &c.decoded {
                Some(d) => {
                    assert!(c.data.is_empty());
                    assert_eq!(d.records, 1);
                    let dl = &d.dead[0];
                    assert_eq!((dl.position.offset, dl.position.line), (at, line));
                    assert_eq!(dl.record.len(), 4096, "{name}");
                    assert!(dl.reason.starts_with("record longer than the 4096 byte"));
                    held.extend_from_slice(&text.as_bytes()[at as usize..c.end_offset() as usize]);
                    dead.push(dl.record.clone());
                }
                None => held.extend_from_slice(&c.data),
            }
            (at, line) = (c.end_offset(), c.next_line());
        }
        assert_eq!(held, text.as_bytes(), "{name}");
        // Every byte read is counted (the file is read directly, the skip included).
        let counted = r.raw_bytes.load(Ordering::Relaxed);
        assert_eq!(counted, text.len() as u64, "{name}");
        assert_eq!(dead.len(), 1, "{name}");
        let rest: Vec<u8> = chunks
            .iter()
            .filter(|c| c.decoded.is_none())
            .flat_map(|c| c.data.clone())
            .collect();
        let want: &[u8] = &match name {
            "in.jsonl" => b"{\"a\":1}\n{\"a\":2}\n".to_vec(),
            "end.jsonl" => b"{\"a\":1}\n".to_vec(),
            // The line holding the limit is skipped; reading resumes after it.
            _ => format!("a\n{}\nlast\nb\n", "y\n".repeat(954)).into_bytes(),
        };
        assert_eq!(rest, want, "{name}");
    }
}

/// A header after more blank lines than a chunk holds is still the header.
#[test]
fn a_header_after_many_blank_lines_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.csv");
    let text = format!("{}id,n\n1,2\n", "\n".repeat(2 * MAX_CHUNK_LINES + 5));
    std::fs::write(&p, &text).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), Some(b',')).unwrap();
    assert_eq!(r.take_header().unwrap().as_deref(), Some(&b"id,n"[..]));
    let chunks = read_all(&mut r);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].data, b"1,2\n");
    assert_eq!(chunks[0].first_line, 2 * MAX_CHUNK_LINES as u64 + 7);
    assert_eq!(chunks[0].first_offset, text.len() as u64 - 4);
}

/// Lines of spaces or tabs before a CSV header are passed over as blank lines are (rows in
/// the data, they are no header).
#[test]
fn a_header_after_lines_of_whitespace_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.tsv");
    std::fs::write(&p, "  \n\t\t\nid\tn\n\t\n").unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), Some(b'\t')).unwrap();
    assert_eq!(r.take_header().unwrap().as_deref(), Some(&b"id\tn"[..]));
    let chunks = read_all(&mut r);
    assert_eq!(
        chunks[0].data, b"\t\n",
        "a row of two empty fields after it"
    );
    assert_eq!(chunks[0].first_line, 4);
}

/// One chunk reused for every read, as the pipeline recycles them: each holds only its own
/// records, whatever the last one held (records shorter and longer than a block, a chunk
/// emptied by its user in between), with their positions.
#[test]
fn a_reused_chunk_holds_only_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    let mut text = String::new();
    for i in 0..3000 {
        let pad = match i % 97 {
            0 => 3000,
            n => n * 7 % 60,
        };
        text.push_str(&format!("{{\"i\":{i},\"s\":\"{}\"}}\n", "y".repeat(pad)));
    }
    text.push_str("{\"last\":1}");
    std::fs::write(&p, &text).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), None)
        .unwrap()
        .with_block_size(1024);
    let mut c = Chunk::default();
    let (mut joined, mut line, mut n) = (Vec::new(), 1, 0);
    while r.next_chunk(&mut c).unwrap() {
        assert_eq!(c.first_offset as usize, joined.len());
        assert_eq!(c.first_line, line);
        assert!(c.data.ends_with(b"\n") || c.data.ends_with(b"}"));
        line += c.data.iter().filter(|b| **b == b'\n').count() as u64;
        joined.extend_from_slice(&c.data);
        n += 1;
        if n % 5 == 0 {
            c.data.clear();
        }
    }
    assert!(n > 50);
    assert_eq!(String::from_utf8(joined).unwrap(), text);
}

#[test]
fn one_long_record_does_not_keep_blocks_or_buffers_large() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    let mut text = format!("{{\"long\":\"{}\"}}\n", "x".repeat(200_000));
    for i in 0..100_000 {
        text.push_str(&format!("{{\"i\":{i}}}\n"));
    }
    std::fs::write(&p, &text).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), None)
        .unwrap()
        .with_block_size(1024);
    // One chunk reused, as the file source does. The records read along with the long
    // one come next, as one chunk; normal blocks follow.
    let mut c = Chunk::default();
    assert!(r.next_chunk(&mut c).unwrap());
    assert!(c.data.len() > 200_000, "the long record comes whole");
    assert!(r.next_chunk(&mut c).unwrap());
    let mut later = 0;
    while r.next_chunk(&mut c).unwrap() {
        later += 1;
        assert!(
            c.data.len() < 2 * 1024,
            "a block after the long record: {}",
            c.data.len()
        );
        assert!(
            c.data.capacity() <= 4 * 1024,
            "capacity {}",
            c.data.capacity()
        );
    }
    assert!(later > 10);
}

#[test]
fn gzip_is_detected_and_header_taken() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"a,b\n1,\"x\ny\"\n2,z").unwrap();
    std::fs::write(&p, gz.finish().unwrap()).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), Some(b',')).unwrap();
    assert_eq!(r.take_header().unwrap().unwrap(), b"a,b");
    let chunks = read_all(&mut r);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].data, b"1,\"x\ny\"\n2,z");
    assert_eq!(chunks[0].first_line, 2);
    assert_eq!(chunks[0].first_offset, 4);
}

#[test]
fn a_byte_order_mark_at_the_start_is_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bom.csv");
    std::fs::write(&p, b"\xEF\xBB\xBFts,a\n1,\xEF\xBB\xBF\n").unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p.clone()), Some(b',')).unwrap();
    assert_eq!(r.take_header().unwrap().unwrap(), b"ts,a");
    let chunks = read_all(&mut r);
    // Only the input's first three bytes are skipped; positions still count them.
    assert_eq!(chunks[0].data, b"1,\xEF\xBB\xBF\n");
    assert_eq!((chunks[0].first_line, chunks[0].first_offset), (2, 8));
    let p = dir.path().join("bom.jsonl");
    std::fs::write(&p, b"\xEF\xBB\xBF{\"i\":1}\n").unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), None).unwrap();
    let chunks = read_all(&mut r);
    assert_eq!(chunks[0].data, b"{\"i\":1}\n");
    assert_eq!((chunks[0].first_line, chunks[0].first_offset), (1, 3));
}

/// The line ends a file's chunks record frame the same records as a scan of their bytes:
/// CR before a line end, blank and whitespace lines, a BOM, the line cap, a last line
/// without its newline, at several block sizes.
#[test]
fn recorded_line_ends_frame_what_a_scan_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = b"\xEF\xBB\xBF{\"a\":1}\r\n\n  \t\n\r\n{}\n".to_vec();
    for i in 0..(MAX_CHUNK_LINES + 500) {
        text.extend_from_slice(match i % 7 {
            0 => b"\r\n".as_slice(),
            1 => b" {\"x\":\"y\"} \r\n",
            2 => b"\n",
            _ => b"1\n",
        });
    }
    text.extend_from_slice(b"{\"last\":true}");
    let p = dir.path().join("in.jsonl");
    std::fs::write(&p, &text).unwrap();
    for block in [1024, 4096, 1 << 20] {
        let mut r = ChunkReader::open(&InputSource::File(p.clone()), None)
            .unwrap()
            .with_block_size(block);
        let (mut recorded, mut scanned, mut framed) = (Vec::new(), Vec::new(), 0);
        for mut c in read_all(&mut r) {
            crate::decode::framing::split_records(&c, None, &mut recorded);
            framed += usize::from(!c.ends.is_empty() && c.ends.last() == Some(&(c.data.len() - 1)));
            c.ends.clear();
            crate::decode::framing::split_records(&c, None, &mut scanned);
            let spans = |rs: &[crate::decode::framing::Record]| {
                rs.iter()
                    .map(|x| (x.start, x.end, x.pos.line, x.pos.offset))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                spans(&recorded),
                spans(&scanned),
                "block {block}, chunk at line {}",
                c.first_line
            );
        }
        assert!(
            framed > 0,
            "block {block}: no chunk was framed by its recorded ends"
        );
    }
}

/// A named pipe cannot be read in place to tell gzip: it is read through the counting buffer,
/// plain or gzip, with every byte.
#[test]
fn a_named_pipe_is_read_plain_or_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let text = varied_records(3000);
    for (name, bytes) in [
        ("plain", text.clone().into_bytes()),
        ("gz", gzip(text.as_bytes())),
    ] {
        let p = dir.path().join(name);
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {name}");
        let writer = {
            let (p, bytes) = (p.clone(), bytes.clone());
            std::thread::spawn(move || std::fs::write(p, bytes).unwrap())
        };
        let mut r = ChunkReader::open(&InputSource::File(p), None)
            .unwrap()
            .with_block_size(4096);
        let read: Vec<u8> = read_all(&mut r).into_iter().flat_map(|c| c.data).collect();
        writer.join().unwrap();
        assert_eq!(read, text.as_bytes(), "{name}");
        assert_eq!(
            r.raw_bytes.load(Ordering::Relaxed),
            bytes.len() as u64,
            "{name}"
        );
    }
}

#[test]
fn skip_to_resumes_at_a_record_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    let text: String = (0..1000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    std::fs::write(&p, &text).unwrap();
    let offset = text.find("{\"i\":500}").unwrap() as u64;
    let mut r = ChunkReader::open(&InputSource::File(p), None)
        .unwrap()
        .with_block_size(1024);
    r.skip_to(offset, 501).unwrap();
    let chunks = read_all(&mut r);
    assert_eq!(chunks[0].first_offset, offset);
    assert_eq!(chunks[0].first_line, 501);
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(joined, text.as_bytes()[offset as usize..]);
}

#[test]
fn stems_drop_known_extensions() {
    assert_eq!(stem_of(Path::new("/a/events.jsonl.gz")), "events");
    assert_eq!(stem_of(Path::new("x.data")), "x.data");
}

/// `n` JSON records that compress little (so a cut in the gzip data falls mid-file).
fn varied_records(n: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{{\"i\":{i},\"h\":\"{x:016x}\"}}\n")
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Damaged gzip data (cut short, bytes overwritten, NUL padding after the member): the whole
/// records before the damage come out, then one chunk holding one dead letter (the bytes read
/// after the last whole record, the file, where reading failed and why) covering one position
/// past them, and the input ends. A resume at that chunk's end ends at once; one before it
/// gives the rest and the dead letter again.
#[test]
fn damaged_gzip_data_ends_the_input_with_one_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let text = varied_records(20_000);
    let whole = gzip(text.as_bytes());
    let mut flipped = whole.clone();
    let mid = flipped.len() / 2;
    flipped[mid..mid + 64].fill(0xff);
    let mut padded = whole.clone();
    padded.extend_from_slice(&[0; 512]);
    for (name, bytes, why) in [
        (
            "cut",
            whole[..whole.len() / 2].to_vec(),
            "incomplete deflate stream",
        ),
        ("flipped", flipped, "corrupt"),
        ("padded", padded, "invalid gzip header"),
    ] {
        let p = dir.path().join(format!("{name}.jsonl.gz"));
        std::fs::write(&p, &bytes).unwrap();
        let open = || {
            ChunkReader::open(&InputSource::File(p.clone()), None)
                .unwrap()
                .with_block_size(4096)
        };
        let chunks = read_all(&mut open());
        let (last, good) = chunks.split_last().unwrap();
        let joined: Vec<u8> = good.iter().flat_map(|c| c.data.clone()).collect();
        assert!(good.iter().all(|c| c.decoded.is_none()), "{name}");
        // Flipped bytes may decode to garbage before the decompressor notices.
        let exact = name != "flipped";
        assert!(!exact || text.as_bytes().starts_with(&joined), "{name}");
        assert!(joined.ends_with(b"\n"), "{name}");
        let d = last.decoded.as_ref().expect("the damage's dead letter");
        assert_eq!((d.records, d.dead.len(), last.data.len()), (1, 1, 0));
        let dead = &d.dead[0];
        let at = joined.len() + dead.record.len();
        assert!(!exact || text.as_bytes()[joined.len()..].starts_with(&dead.record));
        assert!(
            !dead.record.contains(&b'\n'),
            "{name}: whole records are data"
        );
        assert_eq!(last.first_offset as usize, joined.len(), "{name}");
        assert_eq!(dead.position.offset as usize, joined.len());
        assert_eq!(
            dead.position.line,
            1 + joined.iter().filter(|b| **b == b'\n').count() as u64
        );
        assert_eq!(last.end_offset() as usize, at + 1, "{name}");
        assert!(
            dead.reason.contains(&p.display().to_string())
                && dead.reason.contains(&format!("past byte {at} of"))
                && dead.reason.contains(why)
                && dead.reason.contains("the rest of the file is not read"),
            "{name}: {}",
            dead.reason
        );
        match name {
            "padded" => assert_eq!(joined, text.as_bytes()),
            "cut" => assert!(joined.len() < text.len() && !joined.is_empty()),
            // The damage may be noticed only at the member's end (its checksum).
            _ => assert!(!joined.is_empty()),
        }
        // A resume after the dead letter: nothing more, and no error.
        let mut r = open();
        r.skip_to(last.end_offset(), last.next_line()).unwrap();
        assert!(read_all(&mut r).is_empty(), "{name}");
        // A resume before it: the rest, and the dead letter.
        let mut r = open();
        r.skip_to(good[0].end_offset(), good[0].next_line())
            .unwrap();
        let again = read_all(&mut r);
        assert_eq!(again.len(), chunks.len() - 1, "{name}");
        let last_again = again.last().unwrap();
        assert_eq!(
            last_again.decoded.as_ref().unwrap().dead[0].reason,
            dead.reason
        );
    }
}

/// A failure to read the file under the gzip data is an error, whatever its kind: it is no
/// damage of the data, and reading again may succeed.
#[test]
fn an_io_error_under_gzip_data_fails_the_read() {
    struct FailsAfter(std::io::Cursor<Vec<u8>>, std::io::ErrorKind);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::new(self.1, "the disk failed")),
                n => Ok(n),
            }
        }
    }
    let whole = gzip(varied_records(20_000).as_bytes());
    for kind in [std::io::ErrorKind::Other, std::io::ErrorKind::UnexpectedEof] {
        let half = std::io::Cursor::new(whole[..whole.len() / 2].to_vec());
        let mut r = ChunkReader::from_reader("in.gz", FailsAfter(half, kind)).unwrap();
        let mut c = Chunk::default();
        let err = loop {
            match r.next_chunk(&mut c) {
                Ok(true) => assert!(c.decoded.is_none()),
                Ok(false) => panic!("{kind:?}: ended without the error"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("the disk failed"), "{kind:?}: {err}");
    }
}

/// Damage before a CSV header's end leaves no header to read the file by: an error, as a
/// header over the record limit is.
#[test]
fn damage_inside_a_csv_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("h");
    text.extend((0..5000).map(|i| format!(",column_{i}")));
    let whole = gzip(text.as_bytes());
    let p = dir.path().join("h.csv.gz");
    std::fs::write(&p, &whole[..whole.len() / 2]).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), Some(b',')).unwrap();
    let err = r.take_header().unwrap_err().to_string();
    assert!(err.contains("incomplete deflate stream"), "{err}");
}

/// A gzip input resumed one line past where the reader stands (a checkpoint past damage met
/// before, whose place depends on the reads, in a file that reads past it now): nothing more
/// is read; before, the record was split there and its tail exported as a record of its
/// own. A checkpoint at the end of a last record without a line end is the file's own: a
/// member appended since is read.
#[test]
fn a_gzip_input_resumed_past_damage_met_before_reads_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let text = varied_records(2_000);
    let p = dir.path().join("whole.jsonl.gz");
    std::fs::write(&p, gzip(text.as_bytes())).unwrap();
    let second = text.find('\n').unwrap() + 1;
    let open = |p: &std::path::Path| {
        ChunkReader::open(&InputSource::File(p.to_path_buf()), None)
            .unwrap()
            .with_block_size(4096)
    };
    let mut r = open(&p);
    r.skip_to(second as u64 + 3, 3).unwrap();
    assert!(read_all(&mut r).is_empty());
    let mut r = open(&p);
    r.skip_to(second as u64, 2).unwrap();
    let rest: Vec<u8> = read_all(&mut r)
        .iter()
        .flat_map(|c| c.data.clone())
        .collect();
    assert_eq!(rest, text.as_bytes()[second..]);
    // "a\nb" then a member "\nc\nd\n" appended: the checkpoint at 3, line 2, reads on.
    let grown = dir.path().join("grown.jsonl.gz");
    let mut bytes = gzip(b"{\"a\":1}\n{\"b\":2}");
    bytes.extend(gzip(b"\n{\"c\":3}\n{\"d\":4}\n"));
    std::fs::write(&grown, bytes).unwrap();
    let mut r = open(&grown);
    r.skip_to(15, 2).unwrap();
    let rest: Vec<u8> = read_all(&mut r)
        .iter()
        .flat_map(|c| c.data.clone())
        .collect();
    assert_eq!(rest, b"\n{\"c\":3}\n{\"d\":4}\n");
}

/// A gzip file read while written: cut at 30 %, its damage's chunk is the checkpoint; cut at
/// 60 % later, a resume there reads nothing more and meets no damage twice (the damage met
/// further on was left pending: a debug build panicked, a release one wrote it again).
#[test]
fn a_gzip_file_read_again_after_it_grew_past_its_damage_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let text = varied_records(20_000);
    let whole = gzip(text.as_bytes());
    let p = dir.path().join("growing.jsonl.gz");
    let open = || {
        ChunkReader::open(&InputSource::File(p.clone()), None)
            .unwrap()
            .with_block_size(1 << 20)
    };
    std::fs::write(&p, &whole[..whole.len() * 3 / 10]).unwrap();
    let chunks = read_all(&mut open());
    let last = chunks.last().unwrap();
    assert!(last.decoded.is_some(), "the damage's chunk");
    std::fs::write(&p, &whole[..whole.len() * 6 / 10]).unwrap();
    let mut r = open();
    r.skip_to(last.end_offset(), last.next_line()).unwrap();
    assert!(read_all(&mut r).is_empty());
}

/// Records whose list items decode to many times their text: with a line cost, a chunk ends
/// before the line that would take it past the cap (or holds one line), whatever the block
/// size, and the chunks still give the input whole, positions right, a last line without its
/// newline included. Without it, a 1 MiB chunk of `{}` items of 50 integers decoded to about
/// 600 MiB.
#[test]
fn chunks_of_heavy_lines_are_cut_by_what_they_decode_to() {
    let (schema, cost) = crate::decode::cost::wide_schema("");
    let items = |n: usize| format!("{{\"l\":[{}]}}", vec!["{}"; n].join(","));
    let one = cost.line(items(100).as_bytes()).unwrap();
    let cap = 10 * one;
    let cost = cost.with_cap(cap);
    let decoder = crate::decode::RecordDecoder::new(
        std::sync::Arc::new(schema.clone()),
        crate::decode::DecodeOptions::default(),
        None,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    let mut text = String::new();
    for i in 0..400 {
        match i {
            // Dead letters by their measure: nested too deep, and past what a record may
            // decode to.
            150 => text.push_str(&format!("{{\"l\":{}{}}}", "[".repeat(300), "]".repeat(300))),
            250 => text.push_str(&items(200_000)),
            _ => text.push_str(&items(match i % 37 {
                0 => 2_000,
                1 => 0,
                _ => 100,
            })),
        }
        text.push('\n');
    }
    text.push_str(&items(100)); // no newline at the end
    std::fs::write(&p, &text).unwrap();
    for block in [1024, 64 * 1024, 1 << 20] {
        let mut r = ChunkReader::open(&InputSource::File(p.clone()), None)
            .unwrap()
            .with_block_size(block)
            .with_cost(Some(cost.clone()));
        let chunks = read_all(&mut r);
        let (mut joined, mut line, mut dead_letters) = (Vec::new(), 1, 0);
        for c in &chunks {
            let lines: Vec<&[u8]> = c
                .data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let spent: u64 = lines.iter().map(|l| cost.line(l).unwrap_or(0)).sum();
            // Measured, unless a line is a dead letter the decoder must find by measuring.
            let dead = lines.iter().any(|l| cost.line(l).is_none());
            assert_eq!(c.measured, !dead, "block {block}: line {}", c.first_line);
            let mut unmeasured = c.clone();
            unmeasured.measured = false;
            let (a, b) = (
                decoder.clone().decode(c),
                decoder.clone().decode(&unmeasured),
            );
            assert_eq!(a.batches, b.batches);
            assert_eq!(format!("{:?}", a.dead), format!("{:?}", b.dead));
            dead_letters += a.dead.len();
            assert!(
                spent <= cap || lines.len() == 1,
                "block {block}: a chunk of {} lines measuring {spent} (cap {cap})",
                lines.len()
            );
            assert_eq!(c.first_offset as usize, joined.len());
            assert_eq!(c.first_line, line);
            line += memchr::memchr_iter(b'\n', &c.data).count() as u64;
            joined.extend_from_slice(&c.data);
        }
        assert_eq!(joined, text.as_bytes(), "block {block}");
        assert!(chunks.len() > 40, "block {block}: {} chunks", chunks.len());
        assert_eq!(dead_letters, 2, "block {block}");
    }
}

/// The rest of a block that grew to hold a long record, cut before (by a line cost or the
/// line cap), is handed out a chunk at a time from the carried input: each chunk holds only
/// its own lines, so a pool of reused chunks does not grow to the block's size. (Moved whole
/// into every chunk and back, each chunk kept room for the block's rest: 6 pooled chunks
/// held 218 MiB after a 33 MiB record; 48 KiB chunks of tiny lines held 7 MiB each.)
#[test]
fn chunks_cut_from_a_grown_block_hold_only_their_lines() {
    let (_, cost) = crate::decode::cost::wide_schema("[[fields]]\nname = \"s\"\ntype = \"string\"");
    let items = |n: usize| format!("{{\"l\":[{}]}}\n", vec!["{}"; n].join(","));
    let one = cost.line(items(1000).trim_end().as_bytes()).unwrap();
    let cost = cost.with_cap(4 * one);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    // Heavy lines cut by their cost, and tiny ones by the line cap, without a cost.
    for (line, lines, cost) in [
        (items(1000), 4, Some(cost)),
        ("{}\n".into(), MAX_CHUNK_LINES, None),
    ] {
        // A 9 MiB record grows the 1 MiB block to 16 MiB; the lines fill the rest of it.
        let mut text = format!("{{\"s\":\"{}\"}}\n", "x".repeat(9 << 20));
        while text.len() < 20 << 20 {
            text.push_str(&line);
        }
        std::fs::write(&p, &text).unwrap();
        let mut r = ChunkReader::open(&InputSource::File(p.clone()), None)
            .unwrap()
            .with_block_size(1 << 20)
            .with_cost(cost);
        let chunks = read_all(&mut r);
        assert!(chunks[0].data.len() > 9 << 20, "the long record's chunk");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, text.as_bytes());
        let mut at = 1;
        for c in &chunks {
            assert_eq!(c.first_line, at);
            at = c.next_line();
            let n = memchr::memchr_iter(b'\n', &c.data).count();
            assert_eq!(c.ends.len(), n);
            if c.first_line > 1 {
                assert!(n <= lines, "line {}: {n} lines", c.first_line);
                assert!(
                    c.data.capacity() <= 2 << 20,
                    "line {}: a chunk of {} bytes holds {} bytes of room",
                    c.first_line,
                    c.data.len(),
                    c.data.capacity()
                );
            }
        }
    }
}

/// Random inputs of heavy, light, blank, whitespace, too-deep, unterminated and CRLF lines,
/// with a BOM or not and a last line without its newline or not, read at random caps and
/// block sizes: the chunks give the input whole with positions right and never empty,
/// decode as the same records and dead letters as the uncut reader's, decode the same with
/// and without the measure they carry, and a resume at a chunk's start reads the same rest.
#[test]
fn heavy_line_cuts_keep_records_positions_and_resumes() {
    let (schema, base) = crate::decode::cost::wide_schema("");
    let items = |n: usize| format!("{{\"l\":[{}]}}", vec!["{}"; n].join(","));
    let one = base.line(items(100).as_bytes()).unwrap();
    let decoder = crate::decode::RecordDecoder::new(
        std::sync::Arc::new(schema.clone()),
        crate::decode::DecodeOptions::default(),
        None,
    )
    .unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let decode_all = |chunks: &[Chunk]| {
        let (mut rows, mut dead) = (0, Vec::new());
        for c in chunks {
            let d = decoder.clone().decode(c);
            let mut unmeasured = c.clone();
            unmeasured.measured = false;
            let u = decoder.clone().decode(&unmeasured);
            assert_eq!(d.batches, u.batches);
            assert_eq!(format!("{:?}", d.dead), format!("{:?}", u.dead));
            rows += d.rows();
            dead.extend(d.dead.iter().map(|x| format!("{x:?}")));
        }
        (rows, dead)
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    for round in 0..16 {
        let mut text = Vec::new();
        if round % 3 == 0 {
            text.extend_from_slice(b"\xEF\xBB\xBF");
        }
        for _ in 0..40 + rnd() % 80 {
            match rnd() % 10 {
                0 => {}
                1 => text.extend_from_slice(b"   "),
                2 => text.extend_from_slice(
                    format!("{{\"l\":{}{}}}", "[".repeat(300), "]".repeat(300)).as_bytes(),
                ),
                3 => text.extend_from_slice(b"{\"l\":[{}], \"x\":\"unterminated"),
                4 => text.extend_from_slice(items(1500).as_bytes()),
                _ => text.extend_from_slice(items((rnd() % 200) as usize).as_bytes()),
            }
            if rnd() % 4 == 0 {
                text.push(b'\r');
            }
            text.push(b'\n');
        }
        if round % 2 == 0 {
            text.extend_from_slice(items(150).as_bytes());
        }
        std::fs::write(&p, &text).unwrap();
        let cost = base.clone().with_cap(one * (1 + rnd() % 8));
        let block = [1024usize, 4096, 70_000, 1 << 20][(rnd() % 4) as usize];
        let open = |cost: Option<crate::decode::cost::LineCost>| {
            ChunkReader::open(&InputSource::File(p.clone()), None)
                .unwrap()
                .with_block_size(block)
                .with_cost(cost)
        };
        let chunks = read_all(&mut open(Some(cost.clone())));
        let whole = read_all(&mut open(None));
        assert_eq!(decode_all(&chunks), decode_all(&whole), "round {round}");
        let (mut offset, mut line) = (chunks[0].first_offset, 1);
        for c in &chunks {
            assert_eq!(
                (c.first_offset, c.first_line),
                (offset, line),
                "round {round}"
            );
            assert!(!c.data.is_empty(), "round {round}: an empty chunk");
            (offset, line) = (c.end_offset(), c.next_line());
        }
        assert_eq!(offset as usize, text.len(), "round {round}");
        for (i, c) in chunks.iter().enumerate().step_by(5) {
            let mut r = open(Some(cost.clone()));
            r.skip_to(c.first_offset, c.first_line).unwrap();
            let rest: Vec<u8> = read_all(&mut r)
                .iter()
                .flat_map(|c| c.data.clone())
                .collect();
            let want: Vec<u8> = chunks[i..].iter().flat_map(|c| c.data.clone()).collect();
            assert_eq!(rest, want, "round {round}: resumed at chunk {i}");
        }
    }
}

/// A file still being written whose last line is longer than the record limit and has no line
/// break yet: a reader that leaves such a line for the next run leaves it whole. It was made a
/// dead letter up to the end of the file, and the next run read the rest of the line as a
/// record of its own.
#[test]
fn a_long_last_line_without_a_line_break_is_left_whole_when_partial_lines_are_left() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("growing.jsonl");
    let first = "{\"a\":1}\n";
    std::fs::write(&p, format!("{first}{}", "x".repeat(10_000))).unwrap();
    let open = || {
        ChunkReader::open(&InputSource::File(p.clone()), None)
            .unwrap()
            .with_block_size(1024)
            .with_record_limit(4096)
            .leaving_partial_tail(true)
    };
    let chunks = read_all(&mut open());
    let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(data, first.as_bytes());
    assert!(
        chunks.iter().all(|c| c.decoded.is_none()),
        "a dead letter of the unfinished line"
    );
    assert_eq!(chunks.last().unwrap().end_offset(), first.len() as u64);
    // Finished: the next run finds it whole, and it is one dead letter.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"yyy\n{\"a\":2}\n"))
        .unwrap();
    let mut r = open();
    r.skip_to(first.len() as u64, 2).unwrap();
    let chunks = read_all(&mut r);
    let dead: Vec<_> = chunks.iter().filter_map(|c| c.decoded.as_ref()).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead[0].position.offset, first.len() as u64);
    let rest: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(rest, b"{\"a\":2}\n");
}

/// A long line read past a block is read a block at a time up to its end: what is read past
/// it, and carried for the next chunks, stays within a block. (Read to the grown block's
/// size, a 9 MiB line in 1 MiB blocks carried up to 7 MiB of the lines after it, per open
/// file: 16 files held over 100 MiB no bound counted.)
#[test]
fn what_a_long_line_leaves_carried_stays_within_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    let mut text = format!("{{\"s\":\"{}\"}}\n", "x".repeat(9 << 20));
    while text.len() < 20 << 20 {
        text.push_str("{}\n");
    }
    std::fs::write(&p, &text).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), None)
        .unwrap()
        .with_block_size(1 << 20);
    let mut c = Chunk::default();
    assert!(r.next_chunk(&mut c).unwrap());
    assert!(c.data.len() > 9 << 20, "the long line's chunk");
    let carried = r.carry.len() - r.carry_at;
    assert!(carried <= 1 << 20, "{carried} bytes carried");
    let mut joined = c.data.clone();
    joined.extend(read_all(&mut r).into_iter().flat_map(|c| c.data));
    assert_eq!(joined, text.as_bytes());
}

/// CSV: a record of 9 MiB, quoted and spanning lines, then blank and short lines. What it
/// leaves carried stays within a block, and every later chunk holds at most the line cap and
/// room for about a block. Before, the block was read whole (up to 16 MiB here, 64 MiB at the
/// record limit), and what was carried was copied and scanned again for each chunk of 16,384
/// lines cut from it: each kept room for all of it.
#[test]
fn csv_after_a_long_record_is_cut_from_what_is_carried() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.csv");
    let long = "x".repeat(1 << 20);
    let mut text = format!("1,\"{}\"\n", [long.as_str(); 9].join("\n"));
    while text.len() < 20 << 20 {
        text.push_str("\n2,y\n");
    }
    std::fs::write(&p, &text).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), Some(b','))
        .unwrap()
        .with_block_size(1 << 20);
    let mut first = Chunk::default();
    assert!(r.next_chunk(&mut first).unwrap());
    assert!(first.data.len() > 9 << 20, "the long record's chunk");
    let carried = r.carry.len() - r.carry_at;
    assert!(carried <= 1 << 20, "{carried} bytes carried");
    let rest = read_all(&mut r);
    let mut at = first.next_line();
    for c in &rest {
        assert_eq!(c.first_line, at);
        at = c.next_line();
        let n = memchr::memchr_iter(b'\n', &c.data).count();
        assert!(n <= MAX_CHUNK_LINES, "line {}: {n} lines", c.first_line);
        assert!(
            c.data.capacity() <= 2 << 20,
            "line {}: a chunk of {} bytes holds {} bytes of room",
            c.first_line,
            c.data.len(),
            c.data.capacity()
        );
    }
    let mut joined = first.data.clone();
    joined.extend(rest.into_iter().flat_map(|c| c.data));
    assert_eq!(joined, text.as_bytes());
}

/// Gzip input whose reads return one byte at a time (a pipe that delivers the magic's first
/// byte alone): told gzip by its magic whole, and decompressed. (Told by what the first read
/// returned, it was read as text: every line a dead letter, the run a success.)
#[test]
fn gzip_input_arriving_a_byte_at_a_time_is_told_gzip() {
    struct ByteAtATime(std::io::Cursor<Vec<u8>>);
    impl Read for ByteAtATime {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }
    let text = "{\"a\":1}\n{\"a\":2}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let mut r = ChunkReader::from_reader("-", ByteAtATime(std::io::Cursor::new(bytes))).unwrap();
    let data: Vec<u8> = read_all(&mut r).into_iter().flat_map(|c| c.data).collect();
    assert_eq!(String::from_utf8_lossy(&data), text);
}

/// A gzip input whose last line has no line break, exported whole (`partial_last_line =
/// "record"`), resumed at its end once such lines are left (`leave`): the resume reaches it,
/// and nothing more is read. (Left while skipping, the input ended before the resume offset,
/// and every start failed.) A resume before it leaves it, as the setting says.
#[test]
fn a_resume_past_a_last_line_without_a_break_reaches_it_when_such_lines_are_left() {
    let text = "{\"a\":1}\n{\"a\":2}";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let reader = || {
        ChunkReader::from_reader("in.gz", std::io::Cursor::new(bytes.clone()))
            .unwrap()
            .leaving_partial_tail(true)
    };
    let mut r = reader();
    r.skip_to(text.len() as u64, 3).unwrap();
    assert!(read_all(&mut r).is_empty());
    let mut r = reader();
    r.skip_to(8, 2).unwrap();
    assert!(read_all(&mut r).is_empty(), "the last line is left");
}

/// A gzip input whose last line, longer than the record limit and without a line break, was
/// made a dead letter up to the input's end; another member appended since continues that
/// line and adds one more. The resume at the old end passes over the rest of the long line
/// and reads the new one. (It was refused: the partition stopped at every start for good.)
#[test]
fn a_resume_inside_a_long_record_the_input_continues_goes_on_after_it() {
    let member = |text: &str| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    };
    let first = format!("{{\"a\":1}}\n{{\"s\":\"{}", "x".repeat(5000));
    let mut bytes = member(&first);
    bytes.extend(member(&format!("{}\"}}\n{{\"a\":2}}\n", "y".repeat(3000))));
    let mut r = ChunkReader::from_reader("in.gz", std::io::Cursor::new(bytes))
        .unwrap()
        .with_block_size(1024)
        .with_record_limit(2048);
    r.skip_to(first.len() as u64, 2).unwrap();
    let data: Vec<u8> = read_all(&mut r).into_iter().flat_map(|c| c.data).collect();
    assert_eq!(String::from_utf8_lossy(&data), "{\"a\":2}\n");
}
