//! Unit tests of the WAL: append, read back, roll, release, reopen, torn tails, corruption.

use std::os::unix::fs::FileExt;

use super::*;

pub(super) fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 37)).into_bytes())
        .collect()
}

/// A log in `dir` holding ten records, closed: the records, and where the log ends.
pub(super) fn closed_with_ten(dir: &std::path::Path) -> (Vec<Vec<u8>>, u64) {
    let (mut wal, _) = Wal::open(dir, 1 << 20).unwrap();
    let ps = payloads(10);
    for p in &ps {
        wal.append(p).unwrap();
    }
    (ps, wal.end())
}

pub(super) fn read_all(wal: &mut Wal, from: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let end = wal.end();
    let at = wal.read(from, end, usize::MAX, &mut out).unwrap();
    assert_eq!(at, end);
    out
}

#[test]
fn appends_read_back_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, report) = Wal::open(dir.path(), 2048).unwrap();
    assert_eq!(report.end, 0);
    let ps = payloads(300);
    let mut expected = Vec::new();
    for p in &ps {
        let (s, e) = wal.append(p).unwrap();
        assert_eq!(s as usize, expected.len());
        expected.extend_from_slice(p);
        assert_eq!(e as usize, expected.len());
    }
    wal.sync_handle().sync_data().unwrap();
    assert!(wal.segments() > 3, "small segments roll");
    assert_eq!(read_all(&mut wal, 0), expected);
    // From inside a record and in small steps.
    let mut out = Vec::new();
    let mut at = 5;
    while at < wal.end() {
        let mut step = Vec::new();
        let next = wal.read(at, wal.end(), 100, &mut step).unwrap();
        assert!(next > at && step.len() as u64 == next - at);
        out.extend_from_slice(&step);
        at = next;
    }
    assert_eq!(out, expected[5..]);
    drop(wal);
    let (mut wal, report) = Wal::open(dir.path(), 2048).unwrap();
    assert_eq!(report.records, 300);
    assert_eq!(report.truncated, None);
    assert_eq!(read_all(&mut wal, 0), expected);
}

/// An empty record where a segment starts (the log takes one, and a log file may hold
/// anything): reading from there goes on to the next record, after
/// a reopen too. It was read as the record at its position again and again, never returning.
#[test]
fn an_empty_record_where_a_segment_starts_is_read_past() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    wal.append(b"").unwrap();
    wal.append(b"").unwrap();
    wal.append(b"abc\n").unwrap();
    drop(wal);
    let read = move || {
        let (mut wal, report) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.records, 3);
        read_all(&mut wal, 0)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(read()));
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("reading from the empty record returned within 20 s");
    assert_eq!(got, b"abc\n");
}

/// A cut back to a mark (records whose sync failed) leaves exactly what was there at the
/// mark, within one segment and across segments rolled since, after a reopen too; appending
/// goes on from the mark.
#[test]
fn a_cut_back_to_a_mark_leaves_the_log_as_it_was_there() {
    for (before, after) in [(50, 3), (50, 200), (0, 200)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 2048).unwrap();
        let ps = payloads(before + after);
        let mut expected = Vec::new();
        for p in &ps[..before] {
            wal.append(p).unwrap();
            expected.extend_from_slice(p);
        }
        wal.sync_handle().sync_data().unwrap();
        let mark = wal.mark();
        let segments = wal.segments();
        let run = wal.runs().current().to_string();
        for p in &ps[before..] {
            wal.append(p).unwrap();
        }
        wal.cut_back(mark).unwrap();
        assert_ne!(
            wal.runs().current(),
            run,
            "positions past the cut are a new run's"
        );
        assert_eq!(wal.end(), expected.len() as u64);
        assert_eq!(
            wal.segments(),
            segments,
            "segments rolled since are removed"
        );
        assert_eq!(read_all(&mut wal, 0), expected);
        let last = b"{\"last\":1}\n";
        assert_eq!(wal.append(last).unwrap().0, expected.len() as u64);
        expected.extend_from_slice(last);
        wal.sync_handle().sync_data().unwrap();
        drop(wal);
        let (mut wal, report) = Wal::open(dir.path(), 2048).unwrap();
        assert_eq!(report.records, before as u64 + 1);
        assert_eq!(report.truncated, None);
        assert_eq!(read_all(&mut wal, 0), expected);
    }
}

#[test]
fn release_deletes_whole_segments_below_the_commit_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1024).unwrap();
    for p in payloads(200) {
        wal.append(&p).unwrap();
    }
    let before = wal.segments();
    let mid = wal.end() / 2;
    wal.release(mid).unwrap();
    assert!(wal.segments() < before);
    assert!(wal.start() <= mid, "the segment holding {mid} stays");
    let tail = read_all(&mut wal, mid);
    assert_eq!(tail.len() as u64, wal.end() - mid);
    assert!(matches!(
        wal.read(0, wal.end(), 10, &mut Vec::new()),
        Err(WalError::Released { .. })
    ));
    assert!(matches!(wal.seek_check(0), Err(WalError::Released { .. })));
    let end = wal.end();
    wal.release(end).unwrap();
    assert_eq!(wal.segments(), 1, "the current segment is never deleted");
}

/// A segment's delete fails (a full or failing disk), then room returns: the segment stays
/// listed and the next release deletes it before the later ones. It was forgotten first, so
/// it stayed on disk below segments deleted later: a gap that every start refused.
#[test]
fn a_segment_whose_delete_failed_is_deleted_by_the_next_release() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1024).unwrap();
    for p in payloads(200) {
        wal.append(&p).unwrap();
    }
    let first = segment_path(dir.path(), 0);
    let bytes = std::fs::read(&first).unwrap();
    // The delete fails: a folder stands where the file was (as an error would leave it).
    let (f, b) = (first.clone(), bytes.clone());
    crate::hooks::set("wal: before a segment's delete", move || {
        std::fs::remove_file(&f).unwrap();
        std::fs::create_dir(&f).unwrap();
        std::fs::write(f.join("x"), &b).unwrap();
    });
    let before = wal.segments();
    assert!(wal.release(wal.end() / 2).is_err());
    assert_eq!(
        wal.segments(),
        before,
        "a segment forgotten though it is still there"
    );
    // Room again: the segment is as it was, and the next release deletes it first.
    std::fs::remove_dir_all(&first).unwrap();
    std::fs::write(&first, &bytes).unwrap();
    let end = wal.end();
    wal.release(end).unwrap();
    assert!(!first.exists());
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), 1024).unwrap();
    assert_eq!(wal.end(), end);
}

#[test]
fn a_torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (ps, good_end) = closed_with_ten(dir.path());
    let seg = segment_path(dir.path(), 0);
    // Half a record: a header that promises more than is there.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&1000u32.to_le_bytes());
    h[8..16].copy_from_slice(&good_end.to_le_bytes());
    f.write_all(&h).unwrap();
    f.write_all(b"{\"n\":").unwrap();
    drop(f);
    let (mut wal, report) = Wal::open(dir.path(), 1 << 20).unwrap();
    let (path, _, dropped, why) = report.truncated.clone().expect("reported");
    assert_eq!(path, seg);
    assert_eq!(dropped, 21);
    assert!(why.contains("runs past the end"), "{why}");
    assert_eq!(wal.end(), good_end);
    assert_eq!(read_all(&mut wal, 0), ps.concat());
    // Appending continues after the cut, and a reopen sees no damage.
    wal.append(b"{\"n\":99}\n").unwrap();
    drop(wal);
    let (_, report) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(report.truncated, None);
    assert_eq!(report.records, 11);
}

/// A pushed payload can hold bytes that read as a valid record (a header, a position ahead, a
/// matching checksum). Torn by a crash, its record is still a torn tail: the forged record
/// inside it is its payload. Before, the open took it for acknowledged data after damage and
/// refused to open the log.
#[test]
fn a_record_forged_inside_a_torn_payload_is_still_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (ps, good_end) = closed_with_ten(dir.path());
    let forged_body = b"{\"forged\":1}\n";
    let forged_pos = good_end + 100;
    let mut forged = Vec::new();
    forged.extend_from_slice(&(forged_body.len() as u32).to_le_bytes());
    forged.extend_from_slice(&crc(forged_pos, forged_body).to_le_bytes());
    forged.extend_from_slice(&forged_pos.to_le_bytes());
    forged.extend_from_slice(forged_body);
    let mut payload = b"{\"pad\":\"".to_vec();
    payload.extend_from_slice(&forged);
    payload.extend_from_slice(&[b'x'; 200]);
    // The record's header and the first part of its payload, forged record included.
    let seg = segment_path(dir.path(), 0);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc(good_end, &payload).to_le_bytes());
    h[8..16].copy_from_slice(&good_end.to_le_bytes());
    f.write_all(&h).unwrap();
    f.write_all(&payload[..9 + forged.len() + 10]).unwrap();
    drop(f);
    let (mut wal, report) = Wal::open(dir.path(), 1 << 20).unwrap();
    let (_, _, dropped, why) = report.truncated.clone().expect("reported");
    assert_eq!(dropped, 16 + 9 + forged.len() as u64 + 10);
    assert!(why.contains("runs past the end"), "{why}");
    assert_eq!(read_all(&mut wal, 0), ps.concat());
}

/// The other record whose header names the expected position and runs past the end: an
/// acknowledged one whose length field was damaged. The records after it are acknowledged:
/// the open refuses (it must not cut them as a torn tail).
#[test]
fn a_damaged_length_that_runs_past_the_end_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    let ps = payloads(10);
    let mut at = MAGIC.len() as u64;
    let mut fifth = 0;
    for (i, p) in ps.iter().enumerate() {
        if i == 5 {
            fifth = at;
        }
        wal.append(p).unwrap();
        at += RECORD_HEADER + p.len() as u64;
    }
    drop(wal);
    let seg = segment_path(dir.path(), 0);
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&(1u32 << 20).to_le_bytes(), fifth).unwrap();
    drop(f);
    let e = Wal::open(dir.path(), 1 << 20).err().expect("refused");
    assert!(
        matches!(&e, WalError::Corrupt { offset, .. } if *offset == fifth),
        "{e}"
    );
    assert!(e.to_string().contains("a valid record follows"), "{e}");
}

#[test]
fn a_flipped_byte_in_the_last_record_is_a_torn_tail_but_earlier_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 600).unwrap();
    for p in payloads(40) {
        wal.append(&p).unwrap();
    }
    assert!(wal.segments() >= 3);
    let last = wal.segments.last().unwrap().path.clone();
    let first = wal.segments[0].path.clone();
    drop(wal);
    let flip = |path: &Path, back: u64| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let len = f.metadata().unwrap().len();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, len - back).unwrap();
        b[0] ^= 0x55;
        f.write_all_at(&b, len - back).unwrap();
    };
    flip(&last, 2);
    let (_, report) = Wal::open(dir.path(), 600).unwrap();
    assert!(report.truncated.unwrap().3.contains("checksum"));
    flip(&first, 2);
    match Wal::open(dir.path(), 600) {
        Err(WalError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, first);
            assert!(offset > 8);
            assert!(reason.contains("checksum"), "{reason}");
        }
        Ok(_) => panic!("corruption before the tail must not be accepted"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn a_missing_segment_or_a_foreign_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 600).unwrap();
    for p in payloads(40) {
        wal.append(&p).unwrap();
    }
    let second = wal.segments[1].path.clone();
    drop(wal);
    std::fs::remove_file(&second).unwrap();
    let e = Wal::open(dir.path(), 600).err().expect("a gap is an error");
    assert!(e.to_string().contains("previous one ends"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment_path(dir.path(), 0), b"PAR1 not a wal").unwrap();
    let e = Wal::open(dir.path(), 600)
        .err()
        .expect("bad magic is an error");
    assert!(e.to_string().contains("bad magic"), "{e}");
}

#[test]
fn seeking_past_the_end_continues_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    wal.append(b"a\n").unwrap();
    wal.seek_check(1000).unwrap();
    assert_eq!(wal.end(), 1000);
    assert_eq!(wal.start(), 1000);
    let (s, _) = wal.append(b"b\n").unwrap();
    assert_eq!(s, 1000);
    drop(wal);
    let (mut wal, report) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((report.start, report.end), (1000, 1002));
    assert_eq!(read_all(&mut wal, 1000), b"b\n");
}

#[test]
fn a_reader_at_the_end_follows_into_a_segment_rolled_later() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1024).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    let mut expected = Vec::new();
    for p in payloads(100) {
        wal.append(&p).unwrap();
        expected.extend_from_slice(&p);
        // Read everything after each append, so the cursor sits at a segment's end when the
        // next append rolls.
        at = wal.read(at, wal.end(), usize::MAX, &mut out).unwrap();
    }
    assert!(wal.segments() > 3);
    assert_eq!(out, expected);
}

#[test]
fn a_segment_name_that_is_not_twenty_digits_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1.wal"), MAGIC).unwrap();
    let e = Wal::open(dir.path(), 600)
        .err()
        .expect("a bad name is an error");
    assert!(
        e.to_string().contains("1.wal") && e.to_string().contains("20 digits"),
        "{e}"
    );
}

/// A bad record in the last segment with valid (acknowledged) records after it is corruption,
/// not a torn tail: opening refuses it with the byte offset instead of cutting everything after
/// it. With `Damage::MoveAside` the damaged part is moved (never deleted) and the log opens.
#[test]
fn damage_mid_segment_is_refused_or_moved_aside_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    let ps = payloads(20);
    let mut ends = Vec::new();
    for p in &ps {
        wal.append(p).unwrap();
        ends.push(wal.end());
    }
    let seg = wal.segments[0].path.clone();
    drop(wal);
    // Flip a byte in the 6th record's payload: 14 valid records follow it.
    let bytes = std::fs::read(&seg).unwrap();
    let sixth = 8 + ps[..5].iter().map(|p| 16 + p.len()).sum::<usize>();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[bytes[sixth + 20] ^ 0x55], (sixth + 20) as u64)
        .unwrap();
    drop(f);
    match Wal::open(dir.path(), 1 << 20) {
        Err(WalError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, sixth as u64);
            assert!(
                reason.contains("a valid record follows at byte"),
                "{reason}"
            );
            assert!(reason.contains("--move-wal-damage"), "{reason}");
        }
        Ok(_) => panic!("damage with valid records after it was taken for a torn tail"),
        Err(e) => panic!("unexpected error {e}"),
    }
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        {
            let mut b = bytes.clone();
            b[sixth + 20] ^= 0x55;
            b
        },
        "a refused open changes nothing"
    );

    let (mut wal, report) = Wal::open_with(dir.path(), 1 << 20, Damage::MoveAside).unwrap();
    let (path, offset, to, moved, _) = report.moved.clone().expect("moved aside");
    assert_eq!((path, offset), (seg.clone(), sixth as u64));
    assert_eq!(moved, (bytes.len() - sixth) as u64);
    assert!(to.starts_with(dir.path().join("damaged")));
    let kept: Vec<_> = std::fs::read_dir(&to).unwrap().collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::metadata(kept[0].as_ref().unwrap().path())
            .unwrap()
            .len(),
        moved
    );
    assert_eq!(wal.end(), ends[4]);
    assert_eq!(read_all(&mut wal, 0), ps[..5].concat());
    wal.append(b"{\"n\":99}\n").unwrap();
    drop(wal);
    let (_, report) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(
        (report.truncated, report.moved, report.records),
        (None, None, 6)
    );
}

/// A byte flipped in a segment's header (its magic) with valid records after it: damage, as
/// anywhere else, which `--move-wal-damage` moves aside with the later segments, and `wal
/// export` reads past (it was a "not a segment" error that neither got past). A file of no
/// valid records stays "not a segment".
#[test]
fn a_damaged_segment_header_is_damage_moved_aside_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 600).unwrap();
    let ps = payloads(40);
    for p in &ps {
        wal.append(p).unwrap();
    }
    assert!(wal.segments.len() >= 3);
    let (second, base) = (wal.segments[1].path.clone(), wal.segments[1].base);
    drop(wal);
    let f = OpenOptions::new().write(true).open(&second).unwrap();
    f.write_all_at(&[MAGIC[3] ^ 0x01], 3).unwrap();
    drop(f);
    // The export reads every record past the damaged header.
    let mut out = Vec::new();
    export::export(dir.path(), 0, false, &mut out).unwrap();
    assert_eq!(out, ps.concat());
    match Wal::open(dir.path(), 600) {
        Err(WalError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, second);
            assert!(
                reason.contains("bad magic") && reason.contains("--move-wal-damage"),
                "{reason}"
            );
        }
        Ok(_) => panic!("a damaged header was opened"),
        Err(e) => panic!("unexpected error {e}"),
    }
    let (mut wal, report) = Wal::open_with(dir.path(), 600, Damage::MoveAside).unwrap();
    let (path, offset, _, _, _) = report.moved.clone().expect("moved aside");
    assert_eq!((path, offset), (second, 0));
    assert_eq!(wal.end(), base);
    let kept: usize = ps.iter().map(Vec::len).sum::<usize>();
    assert!(read_all(&mut wal, 0).len() < kept);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Any bytes after a good start of a segment: opening never panics; it opens (a torn tail
    /// cut) or names the damage, and what it opens reads back whole.
    #[test]
    fn any_bytes_in_a_segment_open_or_are_named(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), cut in 0usize..200) {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
        for p in payloads(5) {
            wal.append(&p).unwrap();
        }
        let seg = wal.segments[0].path.clone();
        drop(wal);
        let mut bytes = std::fs::read(&seg).unwrap();
        let keep = bytes.len().saturating_sub(cut);
        bytes.truncate(keep);
        bytes.extend_from_slice(&tail);
        std::fs::write(&seg, &bytes).unwrap();
        if let Ok((mut wal, _)) = Wal::open(dir.path(), 1 << 20) {
            let end = wal.end();
            let mut out = Vec::new();
            proptest::prop_assert_eq!(wal.read(0, end, usize::MAX, &mut out).unwrap(), end);
            proptest::prop_assert_eq!(out.len() as u64, end);
        }
    }
}

/// A tmpfs of `mib` MiB at `dir` (root only), unmounted when dropped; `None` (and a SKIP
/// line) where mounting is not allowed.
pub(super) struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub(super) fn mount(dir: &std::path::Path, mib: u64) -> Option<Tmpfs> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIP: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk's refusals are logged once per period, the first at once, each later one with
/// how many were refused since.
#[test]
fn refusals_are_let_through_once_per_period() {
    let every = Every::new();
    assert_eq!(every.tick(1_000, 10_000), Some(1));
    for at in 1_001..1_100 {
        assert_eq!(every.tick(at, 10_000), None);
    }
    assert_eq!(every.tick(11_000, 10_000), Some(100));
    assert_eq!(every.tick(11_001, 10_000), None);
}

/// A record changed under a running process after the open's scan (a bad sector, another
/// writer): reading it fails as corruption, naming it, instead of handing out its bytes as
/// records; a length changed to garbage is not allocated (up to 4 GiB).
#[test]
fn a_record_changed_after_the_open_is_corruption_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    let ps = payloads(10);
    for p in &ps {
        wal.append(p).unwrap();
    }
    let seg = segment_path(dir.path(), 0);
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    let first = MAGIC.len() as u64;
    f.write_all_at(b"#", first + RECORD_HEADER + 2).unwrap();
    let end = wal.end();
    let mut out = Vec::new();
    let err = wal.read(0, end, usize::MAX, &mut out).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(out.is_empty(), "bytes handed out: {out:?}");
    let second = first + RECORD_HEADER + ps[0].len() as u64;
    f.write_all_at(&u32::MAX.to_le_bytes(), second).unwrap();
    let err = wal
        .read(ps[0].len() as u64, end, usize::MAX, &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("4294967295 bytes"), "{err}");
}
