//! Tests of one Kafka partition's buffer (`part.rs`).

use super::*;

#[test]
fn line_breaks_inside_strings_are_told_from_whitespace() {
    assert!(!line_break_in_string(b"{\"a\":\n1}"));
    assert!(!line_break_in_string(b"{\"a\":\"x\\ny\"}\r\n"));
    assert!(line_break_in_string(b"{\"a\":\"x\ny\"}"));
    assert!(line_break_in_string(b"{\"a\":\"q\\\"\r\"}"));
    assert!(!line_break_in_string(b"{\"a\":\"q\\\\\"\r}"));
}

/// The line ends a partition records give the records a scan of its chunk finds, for
/// messages of every shape: empty, absent, only whitespace, CR and LF between tokens and
/// inside strings, an unreadable batch.
#[test]
fn recorded_line_ends_frame_records_as_a_scan_does() {
    let info = PartitionInfo {
        id: 0,
        topic: "t".into(),
        number: 0,
    };
    let mut part = Part::new(info, 0);
    let payloads: [Option<&[u8]>; 10] = [
        Some(b"{\"a\":1}"),
        None,
        Some(b""),
        Some(b" \r\n\t"),
        Some(b"{\"a\":\r\n2}\r\n"),
        Some(b"{\"a\":\"x\ny\"}"),
        Some(b"\r{\"a\":3}"),
        Some(b"  {\"b\":\"\\\"\"}  "),
        Some(b"\n"),
        Some(b"{}\r"),
    ];
    for (i, p) in payloads.iter().enumerate() {
        part.line(*p, false);
        part.offsets.push(i as u64);
        if i == 4 {
            part.push_unreadable(100, "unreadable".into(), MetaNeeds::default());
        }
    }
    let mut chunk = Chunk::default();
    part.emit(&mut chunk, None);
    assert_eq!(chunk.ends.len(), payloads.len() + 1);
    let (mut framed, mut scanned) = (Vec::new(), Vec::new());
    crate::decode::framing::split_records(&chunk, None, &mut framed);
    chunk.ends.clear();
    crate::decode::framing::split_records(&chunk, None, &mut scanned);
    assert_eq!(framed, scanned);
    assert!(part.ends.is_empty() && part.buf.is_empty());
}

/// What the metadata holds of buffered messages counts with their lines (a message of a
/// few bytes may carry a megabyte of key, headers, or unreadable bytes), and leaves with
/// them: all at once, or the part of a chunk cut short.
#[test]
fn the_bytes_metadata_holds_count_as_buffered_until_handed_on() {
    let info = PartitionInfo {
        id: 0,
        topic: "t".into(),
        number: 0,
    };
    let mut part = Part::new(info, 0);
    let blank = vec![b' '; 100_000];
    part.line(Some(b"{}"), false);
    part.offsets.push(0);
    part.line(Some(&blank), false);
    part.offsets.push(1);
    let whitespace = unreadable_cost(&blank, "the message holds only whitespace (no JSON value)");
    // Each message's end and offset count too.
    assert_eq!(part.held(), part.buf.len() + whitespace + 2 * 16);
    let mut chunk = Chunk::default();
    part.emit(&mut chunk, None);
    assert_eq!(part.held(), 0);
    // Cut short: what stays counts what stays.
    for i in 0..4 {
        part.line(Some(if i % 2 == 0 { b"{}" } else { &blank }), false);
        part.offsets.push(i);
        part.meta.keys.push(Some(vec![0; 1000 * (i as usize + 1)]));
    }
    part.meta_bytes += 1000 + 2000 + 3000 + 4000;
    assert_eq!(part.emit_first(2, &mut chunk), Next::Chunk(0));
    let entries = 2 * (16 + std::mem::size_of::<Option<Vec<u8>>>());
    assert_eq!(
        part.held(),
        part.buf.len() + 3000 + 4000 + whitespace + entries
    );
}

/// Tiny messages count what each holds beside its line (its end, offset and timestamp):
/// the budget of 16 chunks held a million messages of one byte at 2 MB, while their entries
/// took 40 MB more.
#[test]
fn each_message_counts_its_entries_as_buffered() {
    let info = PartitionInfo {
        id: 0,
        topic: "t".into(),
        number: 0,
    };
    let mut part = Part::new(info, 0);
    let n = 10_000;
    for i in 0..n {
        part.line(Some(b"1"), false);
        part.offsets.push(i);
        part.meta.timestamps.push(Some(1));
    }
    let entries = n as usize * (16 + std::mem::size_of::<Option<i64>>());
    assert_eq!(part.held(), part.buf.len() + entries);
    assert!(
        part.room() < 2 * part.held() + 4096,
        "{} {}",
        part.room(),
        part.held()
    );
}

/// With lines that decode to many times their bytes, a partition hands on its messages
/// in several chunks, each within the cap (or one message), with their offsets and
/// metadata, and each chunk's position starts where the last one's ended.
#[test]
fn heavy_lines_are_handed_on_in_chunks_within_the_cap() {
    let (_, cost) = crate::decode::cost::wide_schema("");
    let items = |n: usize| format!("{{\"l\":[{}]}}", vec!["{}"; n].join(","));
    let one = cost.line(items(100).as_bytes()).unwrap();
    let cost = cost.with_cap(3 * one);
    let info = PartitionInfo {
        id: 0,
        topic: "t".into(),
        number: 0,
    };
    let mut part = Part::new(info, 0);
    part.from = 10;
    // Offsets with gaps; sizes 100 items but for a light one, a huge one and an empty one.
    let sizes = [100, 100, 1, 100, 100, 100, 400, 100, 0, 100];
    for (i, n) in sizes.iter().enumerate() {
        let text = items(*n);
        part.line(Some(if *n == 0 { b" " } else { text.as_bytes() }), false);
        part.offsets.push(10 + 2 * i as u64);
        part.meta.timestamps.push(Some(i as i64));
        part.meta.keys.push(Some(vec![i as u8]));
    }
    part.next = 10 + 2 * sizes.len() as i64 - 1;
    let mut got = Vec::new();
    while !part.buf.is_empty() {
        let mut chunk = Chunk::default();
        part.emit(&mut chunk, Some(&cost));
        // What a cut leaves goes on at once (`read::full`).
        assert_eq!(part.cut, !part.buf.is_empty());
        let mut t = Tally::default();
        let lines = chunk.ends.len();
        assert_eq!(cost.fit(&chunk.data, &chunk.ends, &mut t), lines);
        assert!(t.bytes <= 3 * one || lines == 1, "{lines} lines of {t:?}");
        assert!(chunk.measured);
        assert_eq!(chunk.offsets.len(), lines);
        assert_eq!(chunk.meta.timestamps.len(), lines);
        assert_eq!(chunk.meta.keys.len(), lines);
        assert_eq!(chunk.meta.topic, "t");
        got.push(chunk);
    }
    let lines: Vec<usize> = got.iter().map(|c| c.ends.len()).collect();
    assert_eq!(
        lines,
        [3, 3, 1, 3],
        "cut before the line that passes the cap"
    );
    let mut from = 10;
    for c in &got {
        assert_eq!(c.from_offset, Some(from));
        from = c.offsets.last().unwrap() + 1;
        for (k, (&o, ts)) in c.offsets.iter().zip(&c.meta.timestamps).enumerate() {
            let i = ((o - 10) / 2) as usize;
            assert_eq!(*ts, Some(i as i64));
            assert_eq!(c.meta.keys[k], Some(vec![i as u8]));
            let start = if k == 0 { 0 } else { c.ends[k - 1] + 1 };
            let line = &c.data[start..c.ends[k]];
            if sizes[i] == 0 {
                assert_eq!(line, UNREADABLE);
            } else {
                assert_eq!(line, items(sizes[i]).as_bytes());
            }
        }
    }
    assert_eq!(part.from as u64, from);
    // The whitespace-only message's dead letter went with its line, renumbered.
    let last = got.last().unwrap();
    assert_eq!(last.meta.unreadable.len(), 1);
    assert_eq!(last.meta.unreadable[0].0, 1);
    assert!(got[..3].iter().all(|c| c.meta.unreadable.is_empty()));
}

/// A revoked partition gives its buffers back: an idle one keeps room for about twice its
/// last chunk, but a member that held many partitions in turn (rebalances, topics of a
/// pattern that come and go) would otherwise keep room for every one of them.
#[test]
fn a_revoked_partition_gives_its_buffers_back() {
    use super::super::group::{apply_events, Event, Shared};
    let shared = std::sync::Mutex::new(Shared::default());
    let mut parts = Vec::new();
    {
        let mut s = shared.lock().unwrap();
        for n in 0..3 {
            s.id("t", n);
        }
        s.events
            .push(Event::Assigned(vec![(0, 0, 0), (1, 0, 0), (2, 0, 0)]));
    }
    let mut committed = std::collections::HashMap::new();
    apply_events(&shared, &mut parts, &mut committed).unwrap();
    assert_eq!(parts.len(), 3);
    let line = vec![b'x'; 200_000];
    for p in &mut parts {
        p.line(Some(&line), false);
        p.offsets.push(0);
        p.meta.timestamps.push(Some(1));
    }
    for p in &parts {
        assert!(p.room() >= 200_000, "{}", p.room());
    }
    shared
        .lock()
        .unwrap()
        .events
        .push(Event::Revoked(vec![0, 2]));
    apply_events(&shared, &mut parts, &mut committed).unwrap();
    assert_eq!((parts[0].room(), parts[2].room()), (0, 0));
    assert!(!parts[0].owned && parts[1].owned);
    assert!(parts[1].room() >= 200_000);
    assert_eq!(parts[2].meta.topic, "t");
    // Assigned again: it reads from where it is told, into fresh buffers.
    shared
        .lock()
        .unwrap()
        .events
        .push(Event::Assigned(vec![(2, 5, 5)]));
    apply_events(&shared, &mut parts, &mut committed).unwrap();
    assert!(parts[2].owned && parts[2].buf.is_empty());
    assert_eq!(parts[2].next, 5);
}

/// Messages find their partition among a few topics and among many (a pattern subscription's
/// topics, looked up by a hash of the name).
#[test]
fn the_index_finds_partitions_among_few_and_many_topics() {
    use super::super::group::Index;
    for topics in [1usize, 8, 9, 40] {
        let mut parts = Vec::new();
        for t in 0..topics {
            for n in [2, 0] {
                let info = PartitionInfo {
                    id: parts.len() as u32,
                    topic: format!("topic-{t}"),
                    number: n,
                };
                parts.push(Part::new(info, n as i32));
            }
        }
        let index = Index::of(&parts);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(index.get(&p.info.topic, p.partition), Some(i), "{topics}");
        }
        assert_eq!(index.get("topic-0", 1), None);
        assert_eq!(index.get("topic-0", 3), None);
        assert_eq!(index.get("topic-0", -1), None);
        assert_eq!(index.get("elsewhere", 0), None);
    }
}

/// A message whose raw line breaks stood as spaces (to be one line) and that does not decode
/// is a dead letter of its own bytes, line breaks and all, whether its chunk took every
/// buffered message or was cut short before the rest. Before, it held the spaces: replayed
/// from the dead letters, other bytes than the message's.
#[test]
fn a_dead_letter_of_a_message_with_line_breaks_holds_its_own_bytes() {
    let schema = "name = \"a\"\n[[fields]]\nname = \"a\"\ntype = \"int64\"\n";
    let schema = crate::schema::RepoSchema::parse(schema, std::path::Path::new("a.toml"));
    let mut decoder = crate::decode::RecordDecoder::new(
        std::sync::Arc::new(schema.unwrap()),
        Default::default(),
        None,
    )
    .unwrap();
    let payloads: [&[u8]; 5] = [
        b"{\"a\":\r\n2}",
        b"hello\r\nworld",
        b"{\"a\":1}",
        b"\n{\"a\":\n}\r",
        b"{\"a\":\n\"x\"}",
    ];
    for cut in [None, Some(2)] {
        let info = PartitionInfo {
            id: 0,
            topic: "t".into(),
            number: 0,
        };
        let mut part = Part::new(info, 0);
        for (i, p) in payloads.iter().enumerate() {
            part.line(Some(p), false);
            part.offsets.push(i as u64);
        }
        let mut dead = Vec::new();
        let mut rows = 0;
        let mut first = 0;
        while !part.ends.is_empty() {
            let mut chunk = Chunk::default();
            match cut {
                Some(k) if part.ends.len() > k => part.emit_first(k, &mut chunk),
                _ => part.emit(&mut chunk, None),
            };
            let d = decoder.decode(&chunk);
            rows += d.rows();
            dead.extend(
                d.dead
                    .into_iter()
                    .map(|d| (first + d.position.line, d.record)),
            );
            first += chunk.ends.len() as u64;
        }
        assert_eq!(rows, 2, "{cut:?}");
        let want: Vec<(u64, Vec<u8>)> = [2, 4, 5]
            .into_iter()
            .map(|line| (line, payloads[line as usize - 1].to_vec()))
            .collect();
        assert_eq!(dead, want, "{cut:?}");
    }
}

/// An idle partition keeps room for about twice its last chunk while partitions' shares of
/// the budget are at least a smallest chunk; past that (more than 256 partitions), at most
/// its share. Before, each kept about 128 KiB whatever the count: 10,000 partitions held
/// about 1.3 GiB idle against a budget of 16 chunks.
#[test]
fn an_idle_partition_keeps_room_within_its_share_of_the_budget() {
    let info = PartitionInfo {
        id: 0,
        topic: "t".into(),
        number: 0,
    };
    let mut part = Part::new(info, 0);
    let fill = |part: &mut Part| {
        part.buf.reserve(256 * 1024);
        part.ends.reserve(4096);
        part.offsets.reserve(4096);
    };
    fill(&mut part);
    // 16 partitions of 1 MiB chunks: a share of 1 MiB, twice the last chunk kept.
    part.keep_room(64 * 1024, 600, 1 << 20);
    assert!(part.buf.capacity() >= 128 * 1024, "{}", part.buf.capacity());
    // 10,000 partitions: a share of about 1.6 KiB; 4 KiB kept.
    fill(&mut part);
    part.keep_room(64 * 1024, 600, 16 * (1 << 20) / 10_000);
    assert!(part.buf.capacity() <= 8 * 1024, "{}", part.buf.capacity());
    assert!(part.ends.capacity() <= 128, "{}", part.ends.capacity());
    assert!(
        part.offsets.capacity() <= 128,
        "{}",
        part.offsets.capacity()
    );
}
