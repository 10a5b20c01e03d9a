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

#[path = "input_long_tests.rs"]
mod long;
