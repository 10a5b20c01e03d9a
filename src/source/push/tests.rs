//! Unit tests of the push source: pre-decoded requests and replays from the log stay
//! contiguous, room is counted from the last commit, refusals leave nothing behind.

use super::*;

fn settings(durability: Durability, dir: &std::path::Path) -> PushSettings {
    PushSettings {
        durability,
        wal_dir: dir.join("wal"),
        segment_bytes: 256,
        max_pending: 1000,
        max_retained: 2000,
        chunk_bytes: 64,
        drain_timeout: Duration::from_secs(1),
        move_wal_damage: false,
        job: "j".into(),
        quote: None,
        cost: None,
        replay_alone: false,
    }
}

fn decoded(records: u64) -> Decoded {
    Decoded {
        records,
        ..Decoded::default()
    }
}

/// Reads chunks until idle; returns (first offset, bytes, pre-decoded) of each.
fn drain(src: &mut PushSource) -> Vec<(u64, Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut chunk = Chunk::default();
    while let Next::Chunk(_) = src.next(&mut chunk).unwrap() {
        out.push((
            chunk.first_offset,
            chunk.data.clone(),
            chunk.decoded.take().is_some(),
        ));
    }
    out
}

fn contiguous(chunks: &[(u64, Vec<u8>, bool)], from: u64) -> Vec<u8> {
    let mut at = from;
    let mut all = Vec::new();
    for (first, data, _) in chunks {
        assert_eq!(*first, at, "chunks must follow each other");
        at += data.len() as u64;
        all.extend_from_slice(data);
    }
    all
}

#[test]
fn fresh_requests_and_replays_are_contiguous_in_both_durabilities() {
    for durability in [Durability::Memory, Durability::Wal] {
        let dir = tempfile::tempdir().unwrap();
        let mut src = PushSource::open("push", settings(durability, dir.path())).unwrap();
        let intake = src.intake().unwrap();
        assert_eq!(
            intake.append(b"x\n".to_vec(), decoded(1)),
            Err(Refusal::NotRunning),
            "refused until the task runs"
        );
        src.seek(0, 0, 0).unwrap();
        intake.open();
        let bodies: Vec<Vec<u8>> = (0..12)
            .map(|i| format!("{{\"n\":{i}}}\n{{\"m\":{i}}}\n").into_bytes())
            .collect();
        for b in &bodies[..6] {
            intake.append(b.clone(), decoded(2)).unwrap();
        }
        let first = drain(&mut src);
        assert!(first.iter().all(|c| c.2), "fresh requests go on decoded");
        assert_eq!(contiguous(&first, 0), bodies[..6].concat());
        // More arrive, then a rewind to the start: the log replays (decoded again by the
        // pipeline), and what was never read goes on decoded after it.
        for b in &bodies[6..] {
            intake.append(b.clone(), decoded(2)).unwrap();
        }
        src.seek(0, 0, 0).unwrap();
        let second = drain(&mut src);
        assert_eq!(contiguous(&second, 0), bodies.concat());
        let replayed: usize = second.iter().filter(|c| !c.2).map(|c| c.1.len()).sum();
        assert_eq!(replayed, bodies[..6].concat().len(), "{durability:?}");
        assert!(
            second.last().unwrap().2,
            "the unread requests keep their decoded form"
        );
    }
}

/// An intake closed before its task opened it (a sink worker failed during the start) is
/// not opened again: the task that failed reads no more of its log.
#[test]
fn a_closed_intake_stays_closed() {
    let dir = tempfile::tempdir().unwrap();
    let src = PushSource::open("push", settings(Durability::Memory, dir.path())).unwrap();
    let intake = src.intake().unwrap();
    intake.open();
    intake.append(b"x\n".to_vec(), decoded(1)).unwrap();
    intake.close();
    intake.open();
    assert_eq!(
        intake.append(b"y\n".to_vec(), decoded(1)),
        Err(Refusal::NotRunning)
    );
}

#[test]
fn room_is_counted_from_the_last_commit_and_a_refusal_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = PushSource::open("push", settings(Durability::Wal, dir.path())).unwrap();
    let intake = src.intake().unwrap();
    src.seek(0, 0, 0).unwrap();
    intake.open();
    let body = vec![b'x'; 99]
        .into_iter()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    // Pending (not yet read) is bounded by max_pending = 1000.
    for _ in 0..10 {
        intake.append(body.clone(), decoded(1)).unwrap();
    }
    assert!(matches!(
        intake.append(body.clone(), decoded(1)),
        Err(Refusal::Full { pending: 1000, .. })
    ));
    assert_eq!(
        drain(&mut src).iter().map(|c| c.1.len()).sum::<usize>(),
        1000
    );
    // Retained (not yet committed) is bounded by max_retained = 2000; past half of it the
    // workers are asked to commit.
    for _ in 0..10 {
        intake.append(body.clone(), decoded(1)).unwrap();
    }
    drain(&mut src);
    assert_eq!(src.flush_wanted(), vec![0]);
    assert!(matches!(
        intake.append(body.clone(), decoded(1)),
        Err(Refusal::Full { retained: 2000, .. })
    ));
    // A commit frees the room, even inside the current segment.
    src.committed(0, 2000);
    intake.append(body.clone(), decoded(1)).unwrap();
    let chunks = drain(&mut src);
    assert_eq!(contiguous(&chunks, 2000), body);
}

/// A WAL names the job whose log it is (written at its first open, or the first open of a log
/// of an earlier version); another job's start is refused before the log is touched.
#[test]
fn a_wal_is_one_jobs_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(Durability::Wal, dir.path());
    drop(PushSource::open("push", s.clone()).unwrap());
    let named = std::fs::read_to_string(dir.path().join("wal/job")).unwrap();
    assert_eq!(named, "j");
    drop(PushSource::open("push", s.clone()).unwrap());
    let other = PushSettings {
        job: "k".into(),
        ..s.clone()
    };
    let e = PushSource::open("push", other).err().expect("refused");
    assert!(
        e.to_string().contains("job `j`'s log, not job `k`'s"),
        "{e}"
    );
    // A log of an earlier version names no job: the first start names its own.
    std::fs::remove_file(dir.path().join("wal/job")).unwrap();
    let other = PushSettings {
        job: "k".into(),
        ..s
    };
    drop(PushSource::open("push", other).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("wal/job")).unwrap(),
        "k"
    );
}

/// A request larger than the log takes as one record (a body of `max_body` and the line end
/// added to it) is refused alone (413); the log takes the next one. Before, it failed the
/// intake for good: every push after it got 500.
#[test]
fn a_request_past_the_logs_record_limit_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = PushSource::open("push", settings(Durability::Wal, dir.path())).unwrap();
    let intake = src.intake().unwrap();
    src.seek(0, 0, 0).unwrap();
    intake.open();
    // Zeroed by the allocator, never touched: the log refuses it by its length.
    let huge = vec![0u8; (crate::wal::MAX_RECORD + 1) as usize];
    let r = intake.append(huge, decoded(1));
    assert!(matches!(r, Err(Refusal::TooLarge(_))), "{r:?}");
    assert_eq!(intake.append(b"{}\n".to_vec(), decoded(1)), Ok((0, 3)));
}

/// Requests of two bytes each, held in memory until committed, count their fixed cost
/// against `max_retained`: 2,000 bytes hold twenty, not a thousand (each held about 40 times
/// its bytes, outside the bound).
#[test]
fn tiny_requests_held_in_memory_count_their_fixed_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = PushSource::open("push", settings(Durability::Memory, dir.path())).unwrap();
    let intake = src.intake().unwrap();
    src.seek(0, 0, 0).unwrap();
    intake.open();
    let mut taken = 0;
    while intake.append(b"1\n".to_vec(), decoded(1)).is_ok() {
        // Read at once: only what is not committed counts.
        drain(&mut src);
        taken += 1;
        assert!(taken <= 1000, "never refused");
    }
    assert_eq!(taken, (2000 / (2 + log::RECORD_COST)) as usize);
    src.committed(0, 2 * taken as u64);
    intake.append(b"1\n".to_vec(), decoded(1)).unwrap();
}

/// A request decoded before it was written is read back from the WAL only for its text: its
/// copy damaged on the disk since does not fail the read (the rows are taken from memory).
/// (Failed, the task restarted, and the open cut the newest record as a torn tail: rows
/// acknowledged and whole in memory were lost.)
#[test]
fn a_fresh_request_whose_copy_on_disk_is_damaged_is_taken_from_memory() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let mut src = PushSource::open("push", settings(Durability::Wal, dir.path())).unwrap();
    let intake = src.intake().unwrap();
    src.seek(0, 0, 0).unwrap();
    intake.open();
    intake.append(b"{\"a\":1}\n".to_vec(), decoded(1)).unwrap();
    let seg = dir.path().join("wal").join(format!("{:020}.wal", 0));
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"#", 8 + 16 + 2).unwrap();
    let chunks = drain(&mut src);
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].2, "the request's decoded rows");
}

/// A request of more lines than a chunk holds is not handed on as one item: decoded in pieces
/// at the line cap (as the push route does), each piece goes on as a chunk; decoded whole, it
/// is read again from the log, cut at the cap; requests taken decoded are merged only up to
/// it. Before, a push of 20,000 lines to 20,000 paths made one commit of 20,000 files.
#[test]
fn no_chunk_holds_more_lines_than_the_cap() {
    let cap = crate::decode::framing::MAX_CHUNK_LINES;
    for durability in [Durability::Memory, Durability::Wal] {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(durability, dir.path());
        (settings.max_pending, settings.max_retained) = (1 << 30, 1 << 30);
        (settings.segment_bytes, settings.chunk_bytes) = (1 << 20, 1 << 20);
        let mut src = PushSource::open("push", settings).unwrap();
        let intake = src.intake().unwrap();
        src.seek(0, 0, 0).unwrap();
        intake.open();
        let body = |n: usize| b"{}\n".repeat(n);
        for n in [cap + 3616, cap / 2 + 1, cap / 2 + 1] {
            intake.append(body(n), decoded(n as u64)).unwrap();
        }
        // Decoded in pieces at the cap (as the push route decodes a long request): each piece
        // goes on decoded, as a chunk of its own.
        let pieces = vec![
            (3 * cap as u64, decoded(cap as u64)),
            (3 * (cap as u64 + 10), decoded(10)),
        ];
        intake.append_pieces(body(cap + 10), pieces).unwrap();
        let chunks = drain(&mut src);
        let lines: Vec<usize> = chunks.iter().map(|c| c.1.len() / 3).collect();
        assert!(
            lines.iter().all(|&n| n <= cap),
            "{durability:?}: chunks of {lines:?} lines"
        );
        assert_eq!(
            lines.iter().sum::<usize>(),
            cap + 3616 + 2 * (cap / 2 + 1) + cap + 10
        );
        assert!(!chunks[0].2, "the long request is read from the log");
        let n = chunks.len();
        assert!(
            chunks[n - 3].2 && chunks[n - 2].2 && chunks[n - 1].2,
            "{lines:?}"
        );
        assert_eq!(
            lines[n - 2..],
            [cap, 10],
            "the pieces go on as they were decoded"
        );
    }
}

/// Two clients' requests, each within the 256 MiB a decode's stage functions may grow its
/// values by (8,000 records growing 24 KiB each: 188 MiB), replayed after a rewind: with
/// stages, each is a chunk of its own and decodes as when it was taken, no record a dead
/// letter. Before, the replay read both into one chunk, whose one account held the second
/// request's later records to what the first had left: dead letters of records acknowledged
/// whole (and with `on_error = "fail"`, a task stopped at every replay).
#[test]
fn a_replay_with_stages_decodes_each_request_on_its_own_account() {
    use crate::decode::{DecodeOptions, RecordDecoder};
    use crate::stage::{OnError, Stages};
    let schema = "name = \"m\"\n[[fields]]\nname = \"m\"\ntype = \"string\"\n";
    let schema = std::sync::Arc::new(
        crate::schema::RepoSchema::parse(schema, std::path::Path::new("m.toml")).unwrap(),
    );
    let decoder = RecordDecoder::new(schema, DecodeOptions::default(), None).unwrap();
    let spec = toml::from_str("select = [\"repeat(m, 4097) AS m\"]").unwrap();
    let stages = Stages::plan(&[spec], decoder.output_schema(), OnError::DeadLetter).unwrap();
    let mut decoder = decoder.with_stages(stages);
    let body = "{\"m\":\"aaaaaa\"}\n".repeat(8_000).into_bytes();
    for alone in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let s = PushSettings {
            max_pending: 1 << 30,
            max_retained: 1 << 30,
            chunk_bytes: 1 << 20,
            replay_alone: alone,
            ..settings(Durability::Memory, dir.path())
        };
        let mut src = PushSource::open("push", s).unwrap();
        let intake = src.intake().unwrap();
        src.seek(0, 0, 0).unwrap();
        intake.open();
        for _ in 0..2 {
            intake.append(body.clone(), decoded(8_000)).unwrap();
        }
        drain(&mut src);
        src.seek(0, 0, 0).unwrap();
        let (mut chunks, mut rows, mut dead) = (0, 0, 0);
        let mut chunk = Chunk::default();
        while let Next::Chunk(_) = src.next(&mut chunk).unwrap() {
            assert!(chunk.decoded.is_none(), "a replay");
            let d = decoder.decode(&chunk);
            chunks += 1;
            rows += d.rows();
            dead += d.dead.len();
        }
        if alone {
            assert_eq!((chunks, rows, dead), (2, 16_000, 0));
        } else {
            assert_eq!(chunks, 1);
            assert!(dead > 0, "one account for both requests");
        }
    }
}
