//! One WAL segment file: its name (`<base position, 20 digits>.wal`), its creation (magic
//! header, durable), the record checksum, and the scan that finds where its good records end.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::{io, WalError, MAGIC, MAX_RECORD, RECORD_HEADER};

pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.wal"))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

pub(super) fn crc(pos: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&pos.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// One segment's scan: where its good records end.
pub(super) struct Scan {
    pub(super) records: u64,
    /// Byte length of the good part of the file.
    pub(super) good_len: u64,
    /// Logical position after the last good record.
    pub(super) end: u64,
    /// The position the scan began at (the segment's base, or the record's it began at).
    pub(super) start: u64,
    /// Why the scan stopped before the file's end.
    pub(super) bad: Option<String>,
    pub(super) file_len: u64,
    /// The header is not a segment's (the records after it were scanned as usual): damage
    /// when valid records follow (the caller looks), else a file that is no segment.
    pub(super) bad_magic: bool,
}

pub(super) fn scan(path: &Path, base: u64) -> Result<Scan, WalError> {
    scan_with(path, base, |_, _| Ok(()))
}

/// [`scan`], handing each good record's position and payload to `each` (its error ends the
/// scan as an error of `path`).
pub(super) fn scan_with(
    path: &Path,
    base: u64,
    each: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<Scan, WalError> {
    scan_from(path, base, None, each)
}

/// [`scan_with`] from the record at byte `at` on, when given (past damage: the scan's
/// positions go on from the one that record names; `good_len` counts from the file's start).
pub(super) fn scan_from(
    path: &Path,
    base: u64,
    at: Option<u64>,
    mut each: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<Scan, WalError> {
    let mut file = File::open(path).map_err(io(path))?;
    let file_len = file.metadata().map_err(io(path))?.len();
    let mut s = Scan {
        records: 0,
        good_len: 0,
        end: base,
        start: base,
        bad: None,
        file_len,
        bad_magic: false,
    };
    if let Some(at) = at {
        use std::io::{Seek, SeekFrom};
        let mut h = [0u8; RECORD_HEADER as usize];
        file.seek(SeekFrom::Start(at)).map_err(io(path))?;
        if !read_whole(&mut file, &mut h).map_err(io(path))? {
            s.bad = Some("a record header is incomplete".into());
            return Ok(s);
        }
        file.seek(SeekFrom::Start(at)).map_err(io(path))?;
        s.good_len = at;
        s.end = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        s.start = s.end;
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut payload = Vec::new();
    if at.is_none() {
        let mut magic = [0u8; 8];
        if file_len < 8 || !read_whole(&mut r, &mut magic).map_err(io(path))? {
            s.bad = Some("the segment header is incomplete".into());
            return Ok(s);
        }
        // A damaged header: the records are read on (their positions hold without it); the
        // caller judges whether it is a segment at all.
        s.bad_magic = &magic != MAGIC;
        s.good_len = 8;
    }
    loop {
        if s.good_len == file_len {
            return Ok(s);
        }
        let mut h = [0u8; RECORD_HEADER as usize];
        if file_len - s.good_len < RECORD_HEADER || !read_whole(&mut r, &mut h).map_err(io(path))? {
            s.bad = Some("a record header is incomplete".into());
            return Ok(s);
        }
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as u64;
        let sum = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let pos = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        if len > MAX_RECORD || s.good_len + RECORD_HEADER + len > file_len {
            s.bad = Some(format!("a record of {len} bytes runs past the end"));
            return Ok(s);
        }
        if pos != s.end {
            s.bad = Some(format!("a record at position {pos}, expected {}", s.end));
            return Ok(s);
        }
        payload.resize(len as usize, 0);
        if !read_whole(&mut r, &mut payload).map_err(io(path))? {
            s.bad = Some("a record is incomplete".into());
            return Ok(s);
        }
        if crc(pos, &payload) != sum {
            s.bad = Some(format!(
                "the checksum of the record at position {pos} does not match"
            ));
            return Ok(s);
        }
        each(pos, &payload).map_err(io(path))?;
        s.records += 1;
        s.good_len += RECORD_HEADER + len;
        s.end += len;
    }
}

/// The position the record header at byte `at` of segment `path` names (`None` when the
/// file ends before a whole header).
pub(super) fn position_at(path: &Path, at: u64) -> Result<Option<u64>, WalError> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).map_err(io(path))?;
    file.seek(SeekFrom::Start(at)).map_err(io(path))?;
    let mut h = [0u8; RECORD_HEADER as usize];
    Ok(read_whole(&mut file, &mut h)
        .map_err(io(path))?
        .then(|| u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"))))
}

/// Fills `buf` from `r`: false when the file ends first (it was cut shorter since its length
/// was read: a torn tail). Any other error is the read's: a disk's failing read must not be
/// taken for a torn tail and cut off (records acknowledged as durable with it).
fn read_whole(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) fn create_segment(path: &Path) -> Result<(), WalError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all(MAGIC).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that fails is an error, not the end of the file: scanned as a torn tail, the
    /// records from there on were cut off at start.
    #[test]
    fn a_failing_read_is_an_error_and_a_short_file_a_torn_tail() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("EIO"))
            }
        }
        let mut buf = [0u8; 4];
        assert!(read_whole(&mut Failing, &mut buf).is_err());
        assert!(!read_whole(&mut &b"ab"[..], &mut buf).unwrap());
        assert!(read_whole(&mut &b"abcd"[..], &mut buf).unwrap());
    }
}
