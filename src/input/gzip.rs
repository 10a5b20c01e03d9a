//! gzip inputs: telling one by its first bytes, how far its decompressed offsets reach, and
//! which of the decompressor's errors are damage in the data rather than I/O.

use std::io::{BufReader, Read};
use std::path::Path;

/// Whether `e`, from the decompressor, is damage in the gzip data: flate2 reports corrupt data
/// (a bad header, deflate stream or checksum) as `InvalidInput` and a stream cut short as
/// `UnexpectedEof`. (An error of the raw input it passes on is I/O: the caller tells.)
pub(super) fn is_data_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
    matches!(e.kind(), InvalidInput | InvalidData | UnexpectedEof)
}

/// The first bytes of every gzip member.
pub(super) const MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How far the offsets of the gzip file at `path` (a regular file) reach: its decompressed
/// length, read through; `None` for damaged data, since where damage stops reading depends on
/// the reads (flate2 drops what the failing read decoded), so a checkpoint past it may still be
/// the file's own.
pub fn gzip_reach(path: &Path) -> std::io::Result<Option<u64>> {
    let f = super::regular::open(path)?;
    let mut r = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, f));
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(Some(n)),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_data_error(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Whether the file at `path`, a regular file, is gzip (by its first bytes, as
/// [`super::ChunkReader::open`] tells).
pub fn is_gzip(path: &Path) -> std::io::Result<bool> {
    super::regular::is_gzip(&super::regular::open(path)?)
}
