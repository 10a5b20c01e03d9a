//! Damage before a WAL's end: telling it from a torn tail (does a valid record follow?) and
//! moving it aside (`run --move-wal-damage`), never deleting it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{crc, io, sync_dir, WalError, MAGIC, MAX_RECORD, RECORD_HEADER};

/// For a segment `path` (at `base`) whose scan `s` found a damaged header: where the first
/// valid record after it lies (the scan's first, or one past damage), or `None` when there is
/// none: a file that is no segment.
pub(super) fn after_bad_header(
    path: &Path,
    s: &super::segment::Scan,
    base: u64,
) -> Result<Option<u64>, WalError> {
    if s.records > 0 {
        return Ok(Some(8));
    }
    valid_record_after(path, 0, base)
}

/// The byte offset of the first valid record in `path` after byte `from` whose position is at
/// least `pos` (a record an append after the damage wrote, so acknowledged), if any. Crafted
/// bytes could make every offset a candidate with a long checksum: past a budget of checksum
/// work the answer is "maybe" (`Some`), never "no".
pub(super) fn valid_record_after(
    path: &Path,
    from: u64,
    pos: u64,
) -> Result<Option<u64>, WalError> {
    let data = std::fs::read(path).map_err(io(path))?;
    let hdr = RECORD_HEADER as usize;
    // A record at `from` whose header names the position expected there and whose length runs
    // past the end of the file is an append a crash cut short, or a record whose length field
    // was damaged. Inside it, a valid record counts only where the damaged one is whole if it
    // ends there (its checksum matches that much payload: the length was damaged); any other is
    // bytes of its payload, which a pusher chose. (A pusher can forge both, CRC32 being no
    // secret; then the open refuses, as for any damage: acknowledged data is never cut.)
    let torn = data.get(from as usize..from as usize + hdr).and_then(|h| {
        let len = u64::from(u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")));
        let sum = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let rpos = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        (rpos == pos && len <= MAX_RECORD && from + RECORD_HEADER + len > data.len() as u64)
            .then_some(sum)
    });
    let span = data.len() as u64;
    let mut budget: usize = (64 << 20) + 4 * data.len();
    // Inside a torn record, the checksum of its payload up to each candidate, kept as the
    // candidates move on (each byte hashed once): checked before the candidate's own, so
    // headers a pusher wrote into the payload cost nothing of the budget (a few hundred of
    // them, each naming a megabyte, ran it out, and a crash in such a push was refused as
    // damage until an operator moved it aside). A pusher who knows the record's position
    // can still forge both checksums (CRC-32 is no secret): then the open refuses, as above.
    let body = from as usize + hdr;
    let mut prefix = torn.map(|_| {
        let mut h = crc32fast::Hasher::new();
        h.update(&pos.to_le_bytes());
        (h, body)
    });
    for at in (from as usize + 1)..data.len().saturating_sub(hdr - 1) {
        let h = &data[at..at + hdr];
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
        let rpos = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        // Positions grow by at most the bytes in between: a cheap filter before the checksum.
        if rpos < pos || rpos > pos.saturating_add(span) || at + hdr + len > data.len() {
            continue;
        }
        if let (Some(torn), Some((hasher, hashed))) = (torn, prefix.as_mut()) {
            if at < body {
                continue;
            }
            hasher.update(&data[*hashed..at]);
            *hashed = at;
            if hasher.clone().finalize() != torn {
                continue;
            }
        }
        let sum = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        if len > budget {
            return Ok(Some(at as u64));
        }
        budget -= len;
        if crc(rpos, &data[at + hdr..at + hdr + len]) != sum {
            continue;
        }
        return Ok(Some(at as u64));
    }
    Ok(None)
}

/// Moves bytes `from..` of segment `path` and the whole of each segment in `later` into a new
/// folder under `<dir>/damaged/`, then cuts `path` at `from`. Returns the folder and the bytes
/// moved. Copies are made durable before anything is cut or removed.
pub(super) fn move_aside(
    dir: &Path,
    path: &Path,
    from: u64,
    later: &[PathBuf],
) -> Result<(PathBuf, u64), WalError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let damaged = dir.join("damaged");
    std::fs::create_dir_all(&damaged).map_err(io(&damaged))?;
    // A folder of its own, never one an earlier move made (a clock set back, or before 1970,
    // could stamp two moves alike, and the second would overwrite what the first kept).
    let mut to = damaged.join(stamp.to_string());
    for n in 1u32.. {
        match std::fs::create_dir(&to) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                to = damaged.join(format!("{stamp}-{n}"));
            }
            Err(e) => return Err(io(&to)(e)),
        }
    }
    sync_dir(&damaged)?;
    sync_dir(dir)?;
    let name = |p: &Path| p.file_name().expect("a segment file name").to_owned();
    let data = std::fs::read(path).map_err(io(path))?;
    let tail = &data[(from as usize).min(data.len())..];
    let part = to.join(format!("{}.from-byte-{from}", name(path).to_string_lossy()));
    let f = File::create(&part).map_err(io(&part))?;
    (&f).write_all(tail).map_err(io(&part))?;
    f.sync_all().map_err(io(&part))?;
    let mut moved = tail.len() as u64;
    for p in later {
        let target = to.join(name(p));
        moved += std::fs::metadata(p).map_err(io(p))?.len();
        std::fs::rename(p, &target).map_err(io(p))?;
    }
    sync_dir(&to)?;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    if from < 8 {
        // Even the segment's header was damaged: start it anew.
        f.set_len(0).map_err(io(path))?;
        (&f).write_all(MAGIC).map_err(io(path))?;
    } else {
        f.set_len(from).map_err(io(path))?;
    }
    f.sync_all().map_err(io(path))?;
    sync_dir(dir)?;
    Ok((to, moved))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::segment::{crc, segment_path};
    use super::super::Wal;

    /// A crash in a push whose payload holds many headers naming records a megabyte or more
    /// long (a pusher chooses its bytes): still a torn tail, cut at the next open. Before, the
    /// checksum work of the forged lengths ran out the search's budget, and the open reported
    /// damage before the end: every start refused until an operator moved it aside.
    #[test]
    fn headers_forged_inside_a_torn_payload_do_not_run_out_the_search() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 26).unwrap();
        for i in 0..10 {
            wal.append(format!("{{\"n\":{i}}}\n").as_bytes()).unwrap();
        }
        let end = wal.end();
        drop(wal);
        // A payload of 24 MiB whose first 8 MiB went to disk: 600 forged headers first, each
        // naming a record of 3 MiB at a position just past the log's end.
        let mut payload = Vec::with_capacity(24 << 20);
        for k in 0..600u64 {
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&(3u32 << 20).to_le_bytes());
            h[4..8].copy_from_slice(&(k as u32).to_le_bytes());
            h[8..16].copy_from_slice(&(end + 16 + k).to_le_bytes());
            payload.extend_from_slice(&h);
        }
        payload.resize(24 << 20, b'x');
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&crc(end, &payload).to_le_bytes());
        h[8..16].copy_from_slice(&end.to_le_bytes());
        let seg = segment_path(dir.path(), 0);
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&h).unwrap();
        f.write_all(&payload[..8 << 20]).unwrap();
        drop(f);
        let (wal, report) = Wal::open(dir.path(), 1 << 26).unwrap();
        let (_, _, dropped, _) = report.truncated.clone().expect("a torn tail, reported");
        assert_eq!(dropped, 16 + (8 << 20));
        assert!(report.moved.is_none());
        assert_eq!(wal.end(), end);
    }
}
