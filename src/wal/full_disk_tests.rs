//! Unit tests of the WAL on a full disk: segments emptied for room, a segment past the end or
//! after a roll made by the next append, a torn header removed.

use super::tests::{read_all, Tmpfs};
use super::*;

/// Seeking past the end deletes the old segments, then cannot create the new one (a full disk;
/// here a folder in its place): the log is empty at the new position, not broken, and the next
/// append creates the segment once it can. Before, the log kept no segment and its next
/// `start()` or append panicked.
#[test]
fn a_segment_that_cannot_be_created_past_the_end_is_created_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    wal.append(b"a\n").unwrap();
    let blocker = segment_path(dir.path(), 1000);
    std::fs::create_dir(&blocker).unwrap();
    assert!(wal.seek_check(1000).is_err());
    assert_eq!((wal.start(), wal.end()), (1000, 1000));
    assert!(
        !segment_path(dir.path(), 0).exists(),
        "the old segment is gone"
    );
    assert!(wal.append(b"b\n").is_err(), "still blocked");
    assert_eq!((wal.start(), wal.end()), (1000, 1000));
    std::fs::remove_dir(&blocker).unwrap();
    let (s, e) = wal.append(b"b\n").unwrap();
    assert_eq!((s, e), (1000, 1002));
    assert_eq!(read_all(&mut wal, 1000), b"b\n");
    drop(wal);
    let (mut wal, report) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((report.start, report.end), (1000, 1002));
    assert_eq!(read_all(&mut wal, 1000), b"b\n");
}

/// A full disk, and the current segment's every record committed: appends were refused for
/// good, since a release deletes only segments below the current one (64 MiB by default).
/// Now the segment is emptied in place and the append goes on; not while one record in it
/// is uncommitted. Reopened, the log starts where it was emptied.
#[test]
fn a_wholly_committed_segment_is_emptied_for_room_on_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_fs) = Tmpfs::mount(dir.path(), 1) else {
        return;
    };
    let wal_dir = dir.path().join("wal");
    let (mut wal, _) = Wal::open(&wal_dir, 64 << 20).unwrap();
    let rec = vec![b'x'; 64 << 10];
    let mut held = 0;
    while held < 64 {
        match wal.append(&rec) {
            Ok(_) => held += 1,
            Err(WalError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        (4..64).contains(&held),
        "{held} records before the disk was full"
    );
    let end = wal.end();
    wal.release(end - 1).unwrap();
    assert!(
        matches!(wal.append(&rec), Err(WalError::Full { .. })),
        "a record not yet committed is the only copy"
    );
    wal.release(end).unwrap();
    let (pos, after) = wal.append(&rec).unwrap();
    assert_eq!((pos, wal.start(), wal.segments()), (end, end, 1));
    drop(wal);
    let (mut wal, report) = Wal::open(&wal_dir, 64 << 20).unwrap();
    assert_eq!((report.start, report.end), (end, after));
    assert_eq!(read_all(&mut wal, end), rec);
}

/// A segment about to roll, every record committed, is emptied in place instead of a new one
/// made; when its rename fails, it is removed and the append starts a segment at the end.
/// That path panicked ("a segment") and, inside a push, poisoned the intake's lock.
#[test]
fn a_committed_segment_about_to_roll_is_emptied_and_a_failed_rename_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 1024).unwrap();
    let rec = vec![b'y'; 300];
    for _ in 0..3 {
        wal.append(&rec).unwrap();
    }
    wal.release(wal.end()).unwrap();
    let end = wal.end();
    let (pos, _) = wal.append(&rec).unwrap();
    assert_eq!(
        (pos, wal.start(), wal.segments()),
        (end, end, 1),
        "emptied in place"
    );
    assert!(!segment_path(dir.path(), 0).exists());
    for _ in 0..2 {
        wal.append(&rec).unwrap();
    }
    wal.release(wal.end()).unwrap();
    let end = wal.end();
    // The rename fails: a folder stands where the segment would go.
    let blocked = segment_path(dir.path(), end);
    let b = blocked.clone();
    crate::hooks::set("wal: before an emptied segment's rename", move || {
        std::fs::create_dir_all(b.join("x")).unwrap();
    });
    // Refused while the folder stands there (not a panic), then taken at the end.
    assert!(wal.append(&rec).is_err());
    crate::hooks::clear("wal: before an emptied segment's rename");
    assert_eq!(wal.segments(), 0);
    std::fs::remove_dir_all(&blocked).unwrap();
    let (pos, after) = wal.append(&rec).unwrap();
    assert_eq!((pos, wal.segments()), (end, 1));
    drop(wal);
    let (mut wal, report) = Wal::open(dir.path(), 1024).unwrap();
    assert_eq!(report.end, after);
    assert_eq!(read_all(&mut wal, end), rec);
}

/// A seek past the log's end on a full disk: the old segments go and the new one cannot be
/// made; the log stands empty at the new end, and the first append once there is room makes
/// it, also after a restart on the full disk. (The error failed the push task's start, in a
/// loop, where pushes should be refused with 503 until there is room.)
#[test]
fn a_seek_past_the_end_on_a_full_disk_leaves_the_segment_to_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_fs) = Tmpfs::mount(dir.path(), 1) else {
        return;
    };
    let wal_dir = dir.path().join("wal");
    let (mut wal, _) = Wal::open(&wal_dir, 64 << 20).unwrap();
    wal.append(b"a\n").unwrap();
    let filler = dir.path().join("filler");
    let f = filler.clone();
    crate::hooks::set("wal: before the segment past the end", move || fill(&f));
    wal.seek_check(1000).unwrap();
    crate::hooks::clear("wal: before the segment past the end");
    assert_eq!((wal.start(), wal.end()), (1000, 1000));
    assert!(matches!(wal.append(b"b\n"), Err(WalError::Full { .. })));
    // A restart while the disk is still full: the folder holds no segment, and none can be
    // made; the log opens empty, and the seek to the checkpoint goes as above.
    drop(wal);
    fill(&filler);
    let (mut wal, _) = Wal::open(&wal_dir, 64 << 20).unwrap();
    wal.seek_check(1000).unwrap();
    assert!(matches!(wal.append(b"b\n"), Err(WalError::Full { .. })));
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(wal.append(b"b\n").unwrap(), (1000, 1002));
    drop(wal);
    let (mut wal, report) = Wal::open(&wal_dir, 64 << 20).unwrap();
    assert_eq!((report.start, report.end), (1000, 1002));
    assert_eq!(read_all(&mut wal, 1000), b"b\n");
}

/// Fills the file system `filler` is on to its last byte, writing on at `filler`'s end.
fn fill(filler: &std::path::Path) {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler)
        .unwrap();
    for size in [64 << 10, 4 << 10, 1] {
        let block = vec![0u8; size];
        while std::io::Write::write_all(&mut out, &block).is_ok() {}
    }
}

/// A last segment torn inside its header (made, and its header never written), on a full
/// disk: it holds no record and its header
/// cannot be written again, so it is removed, durably, and reported; the log ends where the
/// segment before it does, and appends go on once there is room.
#[test]
fn a_torn_header_on_a_full_disk_is_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_fs) = Tmpfs::mount(dir.path(), 1) else {
        return;
    };
    let wal_dir = dir.path().join("wal");
    let (mut wal, _) = Wal::open(&wal_dir, 1024).unwrap();
    while wal.segments.len() < 2 {
        wal.append(&[b'z'; 300]).unwrap();
    }
    let (last, end) = (wal.segments[1].path.clone(), wal.segments[1].base);
    drop(wal);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(0)
        .unwrap();
    let filler = dir.path().join("filler");
    fill(&filler);
    let (mut wal, report) = Wal::open(&wal_dir, 1024).unwrap();
    assert_eq!(report.truncated.as_ref().map(|t| &t.0), Some(&last));
    assert!(!last.exists());
    assert_eq!(wal.end(), end);
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(wal.append(b"c\n").unwrap(), (end, end + 2));
}
