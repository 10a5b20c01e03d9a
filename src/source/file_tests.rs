//! Tests of the file source: bounded open files, rewinds, refusals.

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

/// One file named by two paths (a symbolic link, a hard link) is refused at start: as two
/// partitions, each record was exported twice, for good once both had checkpoints. Two files
/// of the same bytes are two files.
#[cfg(unix)]
#[test]
fn one_file_under_two_paths_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    std::fs::write(&a, "{}\n").unwrap();
    let sym = dir.path().join("s.jsonl");
    std::os::unix::fs::symlink(&a, &sym).unwrap();
    let hard = dir.path().join("h.jsonl");
    std::fs::hard_link(&a, &hard).unwrap();
    let copy = dir.path().join("c.jsonl");
    std::fs::write(&copy, "{}\n").unwrap();
    for other in [&sym, &hard] {
        let e = FileSource::new(&[a.clone(), other.clone()], None, false)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("is the same file as"), "{e}");
    }
    assert!(FileSource::new(&[a, copy], None, false).is_ok());
}
