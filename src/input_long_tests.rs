//! Chunks of long and heavy lines: cut by what they decode to, by the line cap, and after a
//! record longer than a block (what is carried stays within a block).

use super::*;

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
        for c in &chunks {
            let n = memchr::memchr_iter(b'\n', &c.data).count();
            assert_eq!(c.ends.len(), n);
        }
        assert_eq!(chunks[0].first_line, 1);
        follow_on(&chunks[1..], chunks[0].next_line(), lines);
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
    follow_on(&rest, first.next_line(), MAX_CHUNK_LINES);
    let mut joined = first.data.clone();
    joined.extend(rest.into_iter().flat_map(|c| c.data));
    assert_eq!(joined, text.as_bytes());
}

/// Chunks cut after a long record: each starts where the one before ends (the first at line
/// `at`), holds at most `lines` lines and room for about a block (1 MiB) at most twice over.
fn follow_on(chunks: &[Chunk], mut at: u64, lines: usize) {
    for c in chunks {
        assert_eq!(c.first_line, at);
        at = c.next_line();
        let n = memchr::memchr_iter(b'\n', &c.data).count();
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

/// One gzip member holding `text`.
fn member(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// A gzip input whose last line, longer than the record limit and without a line break, was
/// made a dead letter up to the input's end; another member appended since continues that
/// line and adds one more. The resume at the old end passes over the rest of the long line
/// and reads the new one. (It was refused: the partition stopped at every start for good.)
#[test]
fn a_resume_inside_a_long_record_the_input_continues_goes_on_after_it() {
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

/// A gzip input whose last line, shorter than the record limit and without a line break,
/// was exported as a record; a member appended since continues that line. Resumed at the
/// old end, the rest of the line is a record of its own, as a plain file resumed by seeking
/// reads it: a record when it fits the limit, else its own dead letter, and the lines after
/// it follow. (Both were passed over with a warning once the line as a whole passed the
/// limit: the rest was neither a row nor a dead letter.)
#[test]
fn the_rest_of_a_record_exported_before_a_member_continued_it_is_its_own() {
    let first = format!("{{\"a\":1}}\n{}", "x".repeat(1500));
    for (rest, dead) in [(1000, false), (3000, true)] {
        let tail = format!("{}\n{{\"a\":2}}\n", "y".repeat(rest));
        let mut bytes = member(&first);
        bytes.extend(member(&tail));
        let mut r = ChunkReader::from_reader("in.gz", std::io::Cursor::new(bytes))
            .unwrap()
            .with_block_size(1024)
            .with_record_limit(2048);
        r.skip_to(first.len() as u64, 2).unwrap();
        let chunks = read_all(&mut r);
        assert_eq!(chunks[0].first_offset, first.len() as u64, "rest {rest}");
        assert_eq!(chunks[0].first_line, 2, "rest {rest}");
        let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        let skipped: u64 = chunks.iter().map(|c| c.skipped_bytes).sum();
        if dead {
            assert_eq!(skipped, rest as u64 + 1, "the rest is one dead letter");
            assert_eq!(String::from_utf8_lossy(&data), "{\"a\":2}\n");
        } else {
            assert_eq!(skipped, 0);
            assert_eq!(String::from_utf8_lossy(&data), tail);
        }
    }
}

/// Text that gzip barely compresses: `n` letters of a fixed pseudo-random sequence.
fn noise(n: usize) -> String {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// A gzip input cut short inside a record longer than a block, read to its damage (a dead
/// letter, its checkpoint past it), then made whole: the resume there still reads nothing
/// more (the place depends on the reads), and is not cut at the offset as the end of a
/// record exported whole would be (the rest of the damaged record was read as a record of
/// its own, every later line one off).
#[test]
fn a_resume_past_damage_inside_a_long_record_reads_nothing_more_once_whole() {
    let text = format!("{{\"a\":1}}\n{}\n{{\"a\":2}}\n", noise(6000));
    let whole = member(&text);
    let cut = &whole[..whole.len() / 2];
    let reader = |bytes: &[u8]| {
        ChunkReader::from_reader("in.gz", std::io::Cursor::new(bytes.to_vec()))
            .unwrap()
            .with_block_size(1024)
            .with_record_limit(16 * 1024)
    };
    let chunks = read_all(&mut reader(cut));
    let last = chunks.last().unwrap();
    assert!(last.decoded.is_some(), "the damage's chunk");
    assert_eq!(last.first_offset, 8, "the damage falls in the long record");
    let mut r = reader(&whole);
    r.skip_to(last.end_offset(), last.next_line()).unwrap();
    assert!(read_all(&mut r).is_empty());
}

/// A gzip input still being written (cut short at its end) read with its last record left
/// (`partial_last_line = "leave"`): it ends at its last whole record, no dead letter, and
/// once whole the resume there reads the rest, every record once. Under `take` the cut is
/// damage, as before. (Under `leave` too it was damage: a dead letter whose checkpoint stood
/// past the rest of the file, never read once written.)
#[test]
fn a_gzip_input_still_being_written_is_left_at_its_last_whole_record() {
    let text: String = (0..400)
        .map(|i| format!("{{\"n\":{i},\"s\":\"{}\"}}\n", noise(40 + i % 7)))
        .collect();
    let whole = member(&text);
    let cut = &whole[..whole.len() * 6 / 10];
    let reader = |bytes: &[u8], leave: bool| {
        ChunkReader::from_reader("in.gz", std::io::Cursor::new(bytes.to_vec()))
            .unwrap()
            .with_block_size(1024)
            .leaving_partial_tail(leave)
    };
    let first = read_all(&mut reader(cut, true));
    assert!(first.iter().all(|c| c.decoded.is_none()), "no dead letter");
    let read: Vec<u8> = first.iter().flat_map(|c| c.data.clone()).collect();
    assert!(
        read.len() > text.len() / 3 && read.ends_with(b"\n"),
        "{}",
        read.len()
    );
    let last = first.last().unwrap();
    let mut r = reader(&whole, true);
    r.skip_to(last.end_offset(), last.next_line()).unwrap();
    let rest: Vec<u8> = read_all(&mut r).into_iter().flat_map(|c| c.data).collect();
    assert_eq!(
        String::from_utf8_lossy(&read) + String::from_utf8_lossy(&rest),
        text
    );
    let taken = read_all(&mut reader(cut, false));
    assert!(
        taken.last().unwrap().decoded.is_some(),
        "under take: damage"
    );
}

/// A gzip input cut short, read to its damage under `take` (a dead letter, its checkpoint one
/// past the bytes read), then resumed there while its last line is left: the file is still
/// cut there, and nothing more is read. (The cut was no longer damage, so the input ended
/// before the resume offset, and every start failed.)
#[test]
fn a_resume_past_a_cut_made_a_dead_letter_ends_quietly_once_lines_are_left() {
    let text: String = (0..300)
        .map(|i| format!("{{\"n\":{i},\"s\":\"{}\"}}\n", noise(40)))
        .collect();
    let whole = member(&text);
    let cut = whole[..whole.len() / 2].to_vec();
    let reader = |leave: bool| {
        ChunkReader::from_reader("in.gz", std::io::Cursor::new(cut.clone()))
            .unwrap()
            .with_block_size(1024)
            .leaving_partial_tail(leave)
    };
    let chunks = read_all(&mut reader(false));
    let last = chunks.last().unwrap();
    assert!(last.decoded.is_some(), "the damage's chunk");
    let mut r = reader(true);
    r.skip_to(last.end_offset(), last.next_line()).unwrap();
    assert!(read_all(&mut r).is_empty());
}

/// A record of exactly the record limit is a record wherever it stands; one byte longer is a
/// dead letter holding the limit's bytes. Before, one of the limit followed by its line break
/// was a dead letter "longer than" the limit, while the same bytes at the input's end were
/// a row.
#[test]
fn a_record_of_exactly_the_limit_is_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 4096;
    for (name, len, rows, dead) in [("at.txt", limit, 3, 0), ("past.txt", limit + 1, 1, 2)] {
        let p = dir.path().join(name);
        let long = "x".repeat(len);
        std::fs::write(&p, format!("{long}\nnext\n{long}")).unwrap();
        let mut r = ChunkReader::open(&InputSource::File(p), None)
            .unwrap()
            .with_block_size(1024)
            .with_record_limit(limit);
        let chunks = read_all(&mut r);
        let lines: usize = chunks
            .iter()
            .map(|c| {
                c.data.iter().filter(|b| **b == b'\n').count()
                    + usize::from(!c.data.is_empty() && !c.data.ends_with(b"\n"))
            })
            .sum();
        let letters: Vec<_> = chunks
            .iter()
            .filter_map(|c| c.decoded.as_ref())
            .flat_map(|d| d.dead.iter())
            .collect();
        assert_eq!((lines, letters.len()), (rows, dead), "{name}");
        for dl in letters {
            assert_eq!(dl.record.len(), limit, "{name}");
            assert!(
                dl.reason.starts_with("record longer than the 4096 byte"),
                "{name}: {}",
                dl.reason
            );
        }
    }
}

/// CSV: a quote opened and never closed, whose line break falls just past the record limit:
/// the dead letter ends at that line break, and reading resumes at the line after it (the
/// block read one byte past the limit, and the skip went on to the next line break).
#[test]
fn a_csv_line_break_just_past_the_limit_ends_the_over_long_record() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 4096;
    let p = dir.path().join("in.csv");
    std::fs::write(&p, format!("\"{}\nb,c\nd,e\n", "a".repeat(limit - 1))).unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), Some(b','))
        .unwrap()
        .with_block_size(1024)
        .with_record_limit(limit);
    let chunks = read_all(&mut r);
    let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(data, b"b,c\nd,e\n");
    let dead: Vec<_> = chunks.iter().filter_map(|c| c.decoded.as_ref()).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead[0].record.len(), limit);
    let after = chunks.iter().find(|c| !c.data.is_empty()).unwrap();
    assert_eq!(
        (after.first_offset, after.first_line),
        (limit as u64 + 1, 2)
    );
}

/// A block of a gigabyte (`chunk_bytes = "1GiB"`) over a short file holds what was read, not
/// the block: reads ask for at most `READ_STEP` at a time. Before, the buffer was zeroed to
/// the whole block before the first read (16 GiB asked took 16 GiB per reader thread).
#[test]
fn a_large_block_over_a_short_file_holds_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.jsonl");
    std::fs::write(&p, "{}\n{}\n").unwrap();
    let mut r = ChunkReader::open(&InputSource::File(p), None)
        .unwrap()
        .with_block_size(1 << 30);
    let mut c = Chunk::default();
    assert!(r.next_chunk(&mut c).unwrap());
    assert_eq!(c.data, b"{}\n{}\n");
    // (The first read asks for a step, the next, at the end, one more.)
    assert!(c.data.capacity() <= 2 * READ_STEP, "{}", c.data.capacity());
}
