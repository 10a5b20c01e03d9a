//! A file job's inputs opened as regular files, and which file an open handle reads. Its input
//! folder is not trusted to stay as it was checked at start: a path may become a FIFO (whose
//! open would wait for a writer for ever), a device (`/dev/zero` never ends) or another file
//! (a log rotated under its name) between two opens of a partition.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Opens `path` for reading when it is a regular file, and refuses anything else without
/// waiting: a FIFO is opened non-blocking (regular files ignore the flag) and then refused.
pub fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        // A lease another process holds on a regular file (an NFS write delegation, a Samba
        // oplock) refuses a non-blocking open: waited for, as a plain open does.
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock && std::fs::metadata(path)?.is_file() =>
        {
            File::open(path)?
        }
        other => other?,
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {what}", path.display()),
        ));
    }
    Ok(file)
}

/// Which file a handle reads, as far as it can be told: the file itself (device and inode) and
/// its first bytes (up to a limit, decompressed when gzip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    node: (u64, u64),
    /// How many bytes of its start were read (fewer than asked while it was shorter).
    len: usize,
    crc: u32,
}

impl Seen {
    /// The file `file` reads, from its first `max` bytes, read without moving its position.
    pub fn of(file: &File, max: usize) -> std::io::Result<Seen> {
        use std::os::unix::fs::MetadataExt;
        let head = head(file, max)?;
        let m = file.metadata()?;
        Ok(Seen {
            node: (m.dev(), m.ino()),
            len: head.len(),
            crc: crc32fast::hash(&head),
        })
    }

    /// How the file begins, as seen: the length (up to the limit asked) and CRC-32.
    pub fn start(&self) -> (usize, u32) {
        (self.len, self.crc)
    }

    /// Whether the file `file` reads (seen as this) begins with `len` bytes of CRC-32 `crc`.
    pub fn begins_as(&self, file: &File, len: usize, crc: u32) -> std::io::Result<bool> {
        if self.len < len {
            return Ok(false);
        }
        if self.len == len {
            return Ok(self.crc == crc);
        }
        Ok(crc32fast::hash(&head(file, len)?) == crc)
    }

    /// Whether `now`, seen later, is the same file: the same node, beginning with the same
    /// bytes (it may have grown).
    pub fn still(&self, now: &Seen, file: &File) -> std::io::Result<bool> {
        Ok(self.node == now.node && now.begins_as(file, self.len, self.crc)?)
    }
}

/// Up to `len` bytes of `file` from byte `pos` on (fewer where it ends first), read without
/// moving it.
pub fn bytes_at(file: &File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    At { file, pos }.take(len as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// Whether the file `file` reads is gzip (by its first bytes), read without moving it.
pub fn is_gzip(file: &File) -> std::io::Result<bool> {
    let mut magic = Vec::with_capacity(2);
    At { file, pos: 0 }.take(2).read_to_end(&mut magic)?;
    Ok(magic == super::gzip::MAGIC)
}

impl super::ChunkReader {
    /// Reads the plain (not gzip) file at `path` through `file` from byte `offset` on, a record
    /// boundary at line `line`, found by seeking: a resume does not read the file up to it.
    pub fn plain_from(
        path: &Path,
        mut file: File,
        quote: Option<u8>,
        offset: u64,
        line: u64,
    ) -> Result<Self, super::InputError> {
        use std::io::{Seek, SeekFrom};
        let name = super::InputSource::File(path.to_path_buf()).name();
        let fail = |source| super::InputError::Read {
            name: name.clone(),
            offset,
            source,
        };
        let len = file.metadata().map_err(fail)?.len();
        if len < offset {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the input ends at byte {len}, before the resume offset"),
            )));
        }
        // A resume inside a line: the run that read to `offset` took the file's last line,
        // then without a line break, as a whole record, and the line has grown since.
        let mut before = Vec::with_capacity(1);
        if offset > 0 && len > offset {
            At {
                file: &file,
                pos: offset - 1,
            }
            .take(1)
            .read_to_end(&mut before)
            .map_err(fail)?;
        }
        if before.first().is_some_and(|&b| b != b'\n') {
            tracing::warn!(
                input = %name,
                offset,
                "the run that read to this offset took the file's last line, which had no line break then, as a whole record, and the file has grown since: that line was cut short, and the rest of it is read now as a record of its own (a dead letter, or a wrong row). A file still being written needs source.partial_last_line = \"leave\""
            );
        }
        file.seek(SeekFrom::Start(offset)).map_err(fail)?;
        let mut r = Self::over_as(name.clone(), Box::new(file), Some(len), quote, false)?;
        r.offset = offset;
        r.line = line;
        r.raw_bytes
            .fetch_add(offset, std::sync::atomic::Ordering::Relaxed);
        Ok(r)
    }

    /// Reads the file `file` reads from its start, apart from the handle's own position (a
    /// CSV header, while the handle reads on from a resume offset).
    pub fn from_start(
        path: &Path,
        file: &File,
        quote: Option<u8>,
    ) -> Result<Self, super::InputError> {
        let name = super::InputSource::File(path.to_path_buf()).name();
        let own = file.try_clone().map_err(|source| super::InputError::Open {
            name: name.clone(),
            source,
        })?;
        let len = own.metadata().ok().map(|m| m.len());
        Self::over(name, Box::new(Owned { file: own, pos: 0 }), len, quote)
    }
}

/// The first `max` bytes `file` reads (decompressed when gzip), or fewer when it is shorter or
/// its gzip data is damaged within them; read at their positions, the handle's own left where
/// it stands.
pub fn head(file: &File, max: usize) -> std::io::Result<Vec<u8>> {
    let raw = At { file, pos: 0 };
    let mut reader: Box<dyn Read + '_> = if is_gzip(file)? {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            raw,
        )))
    } else {
        Box::new(raw)
    };
    let mut out = vec![0u8; max];
    let mut n = 0;
    while n < max {
        match reader.read(&mut out[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Damaged gzip data: its start is what came before (the read reports the damage).
            Err(e) if super::gzip::is_data_error(&e) => break,
            Err(e) => return Err(e),
        }
    }
    out.truncate(n);
    Ok(out)
}

/// [`At`] over a handle of its own (a duplicate: the position it shares is not used).
struct Owned {
    file: File,
    pos: u64,
}

impl Read for Owned {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = At {
            file: &self.file,
            pos: self.pos,
        }
        .read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads a file from a position of its own, leaving the handle's where it is.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_a_folder_and_a_device_are_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for p in [fifo.as_path(), dir.path(), Path::new("/dev/zero")] {
            let e = open(p).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "{}: {e}",
                p.display()
            );
        }
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        open(&f).unwrap();
    }

    #[test]
    fn a_file_is_still_itself_when_it_grows_and_not_when_replaced_or_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.log");
        std::fs::write(&p, b"one\n").unwrap();
        let first = open(&p).unwrap();
        let seen = Seen::of(&first, 4096).unwrap();
        // Grown: the same file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"two\n"))
            .unwrap();
        let f = open(&p).unwrap();
        assert!(seen.still(&Seen::of(&f, 4096).unwrap(), &f).unwrap());
        // Rewritten in place (copy and truncate, then written again): same node, new bytes.
        std::fs::write(&p, b"ONE\ntwo\n").unwrap();
        let f = open(&p).unwrap();
        assert!(!seen.still(&Seen::of(&f, 4096).unwrap(), &f).unwrap());
        // Renamed away and a new file of the same bytes made under the name: another node.
        std::fs::rename(&p, dir.path().join("app.log.1")).unwrap();
        std::fs::write(&p, b"one\ntwo\n").unwrap();
        let f = open(&p).unwrap();
        assert!(!seen.still(&Seen::of(&f, 4096).unwrap(), &f).unwrap());
        drop(first);
    }
}
