//! gzip for the text formats: a stream over an output file ([`MaybeGzip`]) and one member at a
//! time for parallel blocks ([`member`]). zlib-rs (through flate2) compresses by default; built
//! with the cargo feature `isal`, levels 1 to 3 go to ISA-L's igzip (`isal.rs`), which is about
//! twice as fast and writes smaller files at those levels. Both write standard gzip (RFC 1952).

use std::io::{self, Write};

use super::Codec;
use crate::store::OutputFile;

/// What zlib's stream holds besides its input: the deflate window, hash chains and pending
/// output (about 256 KiB at zlib's default memory level) and flate2's 32 KiB output buffer.
const ZLIB_STATE: usize = 320 * 1024;

#[cfg(feature = "isal")]
use super::isal::handles as isal_level;

/// What a gzip stream at `level` holds besides its input.
pub(crate) fn state_bytes(level: u32) -> usize {
    #[cfg(feature = "isal")]
    if isal_level(level) {
        return super::isal::state_bytes(level);
    }
    let _ = level;
    ZLIB_STATE
}

/// `text` as one gzip member at `level`.
pub(crate) fn member(text: &[u8], level: u32) -> io::Result<Vec<u8>> {
    #[cfg(feature = "isal")]
    if isal_level(level) {
        return super::isal::member(text, level);
    }
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    gz.write_all(text)?;
    gz.finish()
}

/// Wraps an output in gzip when the codec says so.
pub(crate) enum MaybeGzip {
    Plain(OutputFile),
    Zlib(Box<flate2::write::GzEncoder<OutputFile>>),
    #[cfg(feature = "isal")]
    Isal(Box<super::isal::GzEncoder<OutputFile>>),
}

impl MaybeGzip {
    pub fn new(file: OutputFile, codec: Codec) -> Self {
        match codec {
            #[cfg(feature = "isal")]
            Codec::Gzip(level) if isal_level(level) => {
                MaybeGzip::Isal(Box::new(super::isal::GzEncoder::new(file, level)))
            }
            Codec::Gzip(level) => MaybeGzip::Zlib(Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::new(level),
            ))),
            _ => MaybeGzip::Plain(file),
        }
    }

    /// The compressor's state (0 for a plain file).
    pub fn state_bytes(&self) -> usize {
        match self {
            MaybeGzip::Plain(_) => 0,
            MaybeGzip::Zlib(_) => ZLIB_STATE,
            #[cfg(feature = "isal")]
            MaybeGzip::Isal(g) => g.state_bytes(),
        }
    }

    pub fn finish(self) -> io::Result<()> {
        match self {
            MaybeGzip::Plain(mut f) => f.flush(),
            MaybeGzip::Zlib(g) => g.finish().map(|_| ()),
            #[cfg(feature = "isal")]
            MaybeGzip::Isal(g) => g.finish().map(|_| ()),
        }
    }
}

impl Write for MaybeGzip {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeGzip::Plain(f) => f.write(buf),
            MaybeGzip::Zlib(g) => g.write(buf),
            #[cfg(feature = "isal")]
            MaybeGzip::Isal(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeGzip::Plain(f) => f.flush(),
            MaybeGzip::Zlib(g) => g.flush(),
            #[cfg(feature = "isal")]
            MaybeGzip::Isal(g) => g.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Text that compresses (JSON lines), then bytes that do not (a xorshift stream).
    fn input() -> Vec<u8> {
        let mut text = Vec::new();
        for i in 0..40_000u32 {
            let line = format!(
                "{{\"id\":{i},\"path\":\"/a/{}\",\"ok\":{}}}\n",
                i % 97,
                i % 3 == 0
            );
            text.extend_from_slice(line.as_bytes());
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push(x as u8);
        }
        text
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn every_level_writes_gzip_that_reads_back_whole_as_a_member_and_as_a_stream() {
        let text = input();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dest =
            crate::store::Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone())
                .unwrap();
        for level in 0..=9 {
            let one = member(&text, level).unwrap();
            assert_eq!(gunzip(&one), text, "member at level {level}");
            assert_eq!(
                gunzip(&member(b"", level).unwrap()),
                b"",
                "empty member at level {level}"
            );

            // The stream, written in pieces of awkward sizes.
            let file = dest.create(&format!("out-{level}.gz")).unwrap();
            let mut gz = MaybeGzip::new(file.clone(), Codec::Gzip(level));
            let (mut at, mut piece) = (0, 1);
            while at < text.len() {
                let end = (at + piece).min(text.len());
                gz.write_all(&text[at..end]).unwrap();
                gz.flush().unwrap();
                at = end;
                piece = piece * 7 + 3;
            }
            assert!(gz.state_bytes() >= 256 * 1024, "level {level}");
            gz.finish().unwrap();
            file.commit().unwrap();
            let written = std::fs::read(dir.path().join(format!("out-{level}.gz"))).unwrap();
            assert_eq!(gunzip(&written), text, "stream at level {level}");
            // Two members in a row read as one stream.
            let mut two = one.clone();
            two.extend_from_slice(&one);
            assert_eq!(gunzip(&two).len(), 2 * text.len());
        }
    }

    #[cfg(feature = "isal")]
    #[test]
    fn isal_compresses_levels_1_to_3_and_zlib_the_others() {
        let text = input();
        let zlib = |level| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            gz.write_all(&text).unwrap();
            gz.finish().unwrap()
        };
        for level in 1..=3 {
            assert_ne!(member(&text, level).unwrap(), zlib(level), "level {level}");
            assert_eq!(state_bytes(level), super::super::isal::state_bytes(level));
        }
        for level in [0, 4, 9] {
            assert_eq!(member(&text, level).unwrap(), zlib(level), "level {level}");
            assert_eq!(state_bytes(level), ZLIB_STATE);
        }
    }

    #[cfg(feature = "isal")]
    #[test]
    fn an_isal_stream_whose_writer_failed_takes_nothing_more() {
        /// Fails its first write, then takes everything.
        struct FailsOnce(bool);
        impl Write for FailsOnce {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    Ok(buf.len())
                } else {
                    Err(io::Error::other("disk on fire"))
                }
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut gz = super::super::isal::GzEncoder::new(FailsOnce(false), 1);
        assert!(gz.write_all(&input()).is_err());
        // The compressor took input whose output was lost: nothing may follow.
        assert!(gz.write(b"more").is_err());
        assert!(gz.finish().is_err());
    }

    /// Whether the upper halves of the vector registers are in use (XINUSE bit 2), where the
    /// CPU can say (`XGETBV` with ECX 1).
    #[cfg(all(feature = "isal", target_arch = "x86_64"))]
    fn upper_vector_state_in_use() -> Option<bool> {
        use std::arch::x86_64::{__cpuid_count, _xgetbv};
        if !std::arch::is_x86_feature_detected!("xsave") {
            return None;
        }
        // CPUID leaf 0xD exists where XSAVE does.
        if __cpuid_count(0xD, 1).eax & 0b100 == 0 {
            return None; // no XGETBV with ECX 1
        }
        #[target_feature(enable = "xsave")]
        unsafe fn xinuse() -> u64 {
            _xgetbv(1)
        }
        // SAFETY: XSAVE and XGETBV with ECX 1 are there, checked above.
        Some(unsafe { xinuse() } & 0b100 != 0)
    }

    #[cfg(all(feature = "isal", target_arch = "x86_64"))]
    #[test]
    fn isal_leaves_the_upper_vector_registers_clean() {
        let text = input();
        let mut gz = super::super::isal::GzEncoder::new(Vec::new(), 1);
        gz.write_all(&text).unwrap();
        let after_write = upper_vector_state_in_use();
        let out = gz.finish().unwrap();
        let after_finish = upper_vector_state_in_use();
        let Some(after_write) = after_write else {
            eprintln!("this CPU does not report XINUSE; nothing to check");
            return;
        };
        assert!(!after_write, "dirty upper vector state after a write");
        assert_eq!(
            after_finish,
            Some(false),
            "dirty upper vector state after finish"
        );
        assert_eq!(gunzip(&out), text);
    }
}
