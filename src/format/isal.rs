//! gzip through ISA-L's igzip (cargo feature `isal`): a safe streaming writer over its
//! stateful deflate, for gzip levels 1 to 3. At level 1 it compresses web-log JSON lines about
//! twice as fast as zlib-rs and about a quarter smaller (docs/BENCHMARKS.md).
//!
//! The stream and its level buffer are allocated here and never move while ISA-L holds
//! pointers into them: the stream is boxed, the level buffer is a `Vec` that is never resized,
//! and the input and output pointers are set before each call and are not read after it
//! returns (the stateful deflate copies what it keeps of the input into its own history).

use std::io::{self, Write};

use isal_sys::igzip_lib as ffi;

/// Output staged between the compressor and the writer (small in tests, so that every call
/// fills it and the loops that drain it are exercised).
const OUT_BUF: usize = if cfg!(test) { 256 } else { 64 * 1024 };

/// The levels ISA-L compresses at.
pub(crate) fn handles(level: u32) -> bool {
    (1..=3).contains(&level)
}

/// The level buffer ISA-L wants at `level` (its default size).
fn level_buf_size(level: u32) -> usize {
    (match level {
        1 => ffi::ISAL_DEF_LVL1_DEFAULT,
        2 => ffi::ISAL_DEF_LVL2_DEFAULT,
        _ => ffi::ISAL_DEF_LVL3_DEFAULT,
    }) as usize
}

/// What a stream holds besides its input: the stream state (history and hash tables), the
/// level buffer and the staged output.
pub(crate) fn state_bytes(level: u32) -> usize {
    std::mem::size_of::<ffi::isal_zstream>() + level_buf_size(level) + OUT_BUF
}

/// One gzip member (header, deflate stream, trailer) written to `inner` as input arrives.
pub(crate) struct GzEncoder<W: Write> {
    inner: W,
    stream: Box<ffi::isal_zstream>,
    /// Pointed to by `stream.level_buf`; never resized.
    _level_buf: Vec<u8>,
    out: Vec<u8>,
    /// Set once a call failed: ISA-L had taken input whose output was then not written, so
    /// the stream cannot go on.
    failed: bool,
}

/// Where `next_in` points when there is no input (it is never read with `avail_in` 0).
static NO_INPUT: [u8; 1] = [0];

// SAFETY: the raw pointers inside the stream point into memory this value owns (the boxed
// stream and the level buffer) or are set afresh before every call; nothing is shared with
// another value, so moving the encoder to another thread is sound.
unsafe impl<W: Write + Send> Send for GzEncoder<W> {}

impl<W: Write> GzEncoder<W> {
    /// A gzip encoder at `level` (1 to 3, see [`handles`]).
    pub fn new(inner: W, level: u32) -> Self {
        debug_assert!(handles(level));
        // SAFETY: an all-zero `isal_zstream` is a valid value (integers and null pointers),
        // and `isal_deflate_init` sets it up in place.
        let mut stream: Box<ffi::isal_zstream> = Box::new(unsafe { std::mem::zeroed() });
        unsafe { ffi::isal_deflate_init(&mut *stream) };
        let mut level_buf = vec![0u8; level_buf_size(level)];
        stream.level = level;
        stream.level_buf = level_buf.as_mut_ptr();
        stream.level_buf_size = level_buf.len() as u32;
        stream.gzip_flag = ffi::IGZIP_GZIP as u16;
        stream.flush = ffi::NO_FLUSH as u16;
        stream.end_of_stream = 0;
        GzEncoder {
            inner,
            stream,
            _level_buf: level_buf,
            out: vec![0u8; OUT_BUF],
            failed: false,
        }
    }

    /// One call of the compressor into the staged output, which is then written on. Any
    /// failure ends the stream: later calls fail too.
    fn step(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the gzip stream failed earlier"));
        }
        self.failed = true;
        self.stream.next_out = self.out.as_mut_ptr();
        self.stream.avail_out = self.out.len() as u32;
        // SAFETY: the stream was set up by `isal_deflate_init`, its level buffer is alive, and
        // `next_in`/`next_out` point to `avail_in`/`avail_out` valid bytes.
        let code = unsafe { ffi::isal_deflate(&mut *self.stream) };
        clear_upper_vector_state();
        if code != ffi::COMP_OK as i32 {
            let what = match code {
                ffi::INVALID_FLUSH => "INVALID_FLUSH",
                ffi::INVALID_PARAM => "INVALID_PARAM",
                ffi::ISAL_INVALID_LEVEL => "ISAL_INVALID_LEVEL",
                ffi::ISAL_INVALID_LEVEL_BUF => "ISAL_INVALID_LEVEL_BUF",
                ffi::ISAL_INVALID_STATE => "ISAL_INVALID_STATE",
                _ => "unknown",
            };
            return Err(io::Error::other(format!(
                "ISA-L deflate failed: {what} ({code})"
            )));
        }
        let produced = self.out.len() - self.stream.avail_out as usize;
        self.inner.write_all(&self.out[..produced])?;
        self.failed = false;
        Ok(())
    }

    /// Ends the member (the last deflate block and the gzip trailer) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.stream.end_of_stream = 1;
        self.stream.next_in = NO_INPUT.as_ptr().cast_mut();
        self.stream.avail_in = 0;
        while self.stream.internal_state.state != ffi::isal_zstate_state_ZSTATE_END {
            self.step()?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// What this stream holds besides its input.
    pub fn state_bytes(&self) -> usize {
        state_bytes(self.stream.level)
    }
}

impl<W: Write> Write for GzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Longer inputs are taken in parts whose length fits the stream's counter.
        let len = buf.len().min(1 << 30);
        self.stream.next_in = buf.as_ptr().cast_mut();
        self.stream.avail_in = len as u32;
        loop {
            self.step()?;
            // All input taken, and the output had room: nothing more is pending.
            if self.stream.avail_in == 0 && self.stream.avail_out != 0 {
                break;
            }
        }
        Ok(len)
    }

    /// Flushes the writer below. It does not end a deflate block (zlib's sync flush), as
    /// nothing reads a gzip file before it is finished: what the compressor holds (its input
    /// window and symbols not yet coded, a few hundred KiB at most) is not in the writer's
    /// count of bytes written until more input or `finish` pushes it out.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// ISA-L's AVX2 and AVX-512 routines return without `vzeroupper`. Left dirty, the upper
/// halves of the vector registers make every legacy SSE instruction the thread runs afterwards
/// wait on them (Rust's default x86-64 target emits SSE): measured, the JSON text encoding
/// that follows each compressed block took 2.5 times as long. Clearing them after each call
/// costs one instruction.
#[inline]
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        #[target_feature(enable = "avx")]
        unsafe fn zeroupper() {
            std::arch::x86_64::_mm256_zeroupper();
        }
        // SAFETY: the CPU has AVX, checked above.
        unsafe { zeroupper() }
    }
}

/// `text` as one gzip member at `level` (1 to 3).
pub(crate) fn member(text: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::with_capacity(text.len() / 4 + 64), level);
    gz.write_all(text)?;
    gz.finish()
}
