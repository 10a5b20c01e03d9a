use crate::map_error_code;

use std::io;
use zstd_safe;

/// Allows to compress independently multiple chunks of data.
///
/// Each job will be processed entirely in-memory without streaming, so this
/// is most fitting for many small jobs. To compress larger volume that don't
/// easily fit in memory, a streaming compression may be more appropriate.
///
/// It is more efficient than a streaming compressor for 2 reasons:
/// * It re-uses the zstd context between jobs to avoid re-allocations
/// * It avoids copying data from a `Read` into a temporary buffer before compression.
pub struct Compressor<'a> {
    // sluice: made when first needed (see `context`) for one made by `new` or
    // `with_dictionary` without a dictionary: parquet makes a compressor for every column chunk
    // it writes, and one that compresses only when its file closes should take its context
    // then, when the column closed before it has just given one back.
    context: Option<zstd_safe::CCtx<'a>>,
    /// sluice: the level a context made later is set to.
    level: i32,
    /// sluice: made by `new`/`with_dictionary` and never given anything borrowed, a
    /// parameter or its raw context (see `pool`).
    pooled: bool,
}

impl Default for Compressor<'_> {
    fn default() -> Self {
        Compressor {
            context: Some(zstd_safe::CCtx::default()),
            level: 0,
            pooled: false,
        }
    }
}

// sluice: the context goes back to the thread's idle contexts, or is freed.
impl Drop for Compressor<'_> {
    fn drop(&mut self) {
        if let (true, Some(context)) = (self.pooled, self.context.take()) {
            super::pool::put_cctx(context);
        }
    }
}

impl Compressor<'static> {
    /// Creates a new zstd compressor
    pub fn new(level: i32) -> io::Result<Self> {
        Self::with_dictionary(level, &[])
    }

    /// Creates a new zstd compressor, using the given dictionary.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn with_dictionary(level: i32, dictionary: &[u8]) -> io::Result<Self> {
        // sluice: the context (an idle one of this thread if there is one) is taken when
        // first needed; with a dictionary, now.
        let mut compressor = Compressor {
            context: None,
            level,
            pooled: true,
        };

        if !dictionary.is_empty() {
            compressor.set_dictionary(level, dictionary)?;
        }

        Ok(compressor)
    }
}

impl<'a> Compressor<'a> {
    /// sluice: the context, taken now (an idle one of this thread, else a new one) and set to
    /// the level if it was not yet.
    fn context(&mut self) -> io::Result<&mut zstd_safe::CCtx<'a>> {
        if self.context.is_none() {
            let mut c = super::pool::cctx();
            c.set_parameter(zstd_safe::CParameter::CompressionLevel(
                self.level,
            ))
            .map_err(map_error_code)?;
            self.context = Some(c);
        }
        Ok(self.context.as_mut().expect("set above"))
    }

    /// Creates a new compressor using an existing `EncoderDictionary`.
    ///
    /// The compression level will be the one specified when creating the dictionary.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn with_prepared_dictionary<'b>(
        dictionary: &'a crate::dict::EncoderDictionary<'b>,
    ) -> io::Result<Self>
    where
        'b: 'a,
    {
        let mut compressor = Self::default();

        compressor.set_prepared_dictionary(dictionary)?;

        Ok(compressor)
    }

    /// Changes the compression level used by this compressor.
    ///
    /// *This will clear any dictionary previously registered.*
    ///
    /// If you want to keep the existing dictionary, you will need to pass it again to
    /// `Self::set_dictionary` instead of using this method.
    pub fn set_compression_level(&mut self, level: i32) -> io::Result<()> {
        self.set_dictionary(level, &[])
    }

    /// Changes the dictionary and compression level used by this compressor.
    ///
    /// Will affect future compression jobs.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn set_dictionary(
        &mut self,
        level: i32,
        dictionary: &[u8],
    ) -> io::Result<()> {
        self.level = level; // sluice
        let context = self.context()?;
        context
            .set_parameter(zstd_safe::CParameter::CompressionLevel(level))
            .map_err(map_error_code)?;

        context
            .load_dictionary(dictionary)
            .map_err(map_error_code)?;

        Ok(())
    }

    /// Changes the dictionary used by this compressor.
    ///
    /// The compression level used when preparing the dictionary will be used.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn set_prepared_dictionary<'b>(
        &mut self,
        dictionary: &'a crate::dict::EncoderDictionary<'b>,
    ) -> io::Result<()>
    where
        'b: 'a,
    {
        self.pooled = false; // sluice
        self.context()?
            .ref_cdict(dictionary.as_cdict())
            .map_err(map_error_code)?;

        Ok(())
    }

    /// Compress a single block of data to the given destination buffer.
    ///
    /// Returns the number of bytes written, or an error if something happened
    /// (for instance if the destination buffer was too small). A failed job
    /// is abandoned, and the compressor can be set up again for the next one.
    /// With worker threads (see `multithread`), abandoning a job waits for
    /// them to be done with it.
    ///
    /// A level of `0` uses zstd's default (currently `3`).
    pub fn compress_to_buffer<C: zstd_safe::WriteBuf + ?Sized>(
        &mut self,
        source: &[u8],
        destination: &mut C,
    ) -> io::Result<usize> {
        let context = self.context()?; // sluice
        let result = context.compress2(destination, source);
        if result.is_err() {
            // `compress2` leaves a failed frame open, and zstd refuses most
            // setters mid-frame. Abandon it, so the compressor can be set up
            // for the next job. Resetting only the session cannot fail (it
            // waits for the worker threads, if any).
            let _ = context.reset(zstd_safe::ResetDirective::SessionOnly);
        }
        result.map_err(map_error_code)
    }

    /// Compresses a block of data and returns the compressed result.
    ///
    /// A level of `0` uses zstd's default (currently `3`).
    pub fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        // We allocate a big buffer, slightly larger than the input data.
        let buffer_len = zstd_safe::compress_bound(data.len());
        let mut buffer = Vec::with_capacity(buffer_len);

        self.compress_to_buffer(data, &mut buffer)?;

        // Should we shrink the vec? Meh, let the user do it if he wants.
        Ok(buffer)
    }

    /// Gives mutable access to the internal context.
    pub fn context_mut(&mut self) -> &mut zstd_safe::CCtx<'a> {
        self.pooled = false; // sluice
        // sluice: made now if it was not; zstd clamps a level, so setting one cannot fail.
        if self.context.is_none() {
            let mut c = super::pool::cctx();
            let _ = c.set_parameter(zstd_safe::CParameter::CompressionLevel(
                self.level,
            ));
            self.context = Some(c);
        }
        self.context.as_mut().expect("set above")
    }

    /// Sets a compression parameter for this compressor.
    pub fn set_parameter(
        &mut self,
        parameter: zstd_safe::CParameter,
    ) -> io::Result<()> {
        self.pooled = false; // sluice
        self.context()?
            .set_parameter(parameter)
            .map_err(map_error_code)?;
        Ok(())
    }

    /// Sets the expected size of the input.
    ///
    /// This affects the compression effectiveness.
    ///
    /// It is an error to give an incorrect size (an error will be returned when closing the
    /// stream if the size does not match what was pledged).
    ///
    /// Giving a `None` size means the size is unknown (this is the default).
    pub fn set_pledged_src_size(
        &mut self,
        size: Option<u64>,
    ) -> io::Result<()> {
        self.context()?
            .set_pledged_src_size(size)
            .map_err(map_error_code)?;
        Ok(())
    }

    crate::encoder_parameters!();
}

fn _assert_traits() {
    fn _assert_send<T: Send>(_: T) {}

    _assert_send(Compressor::new(0));
}
