//! ORC via orc-rust's `ArrowWriter`: zstd (default), snappy, lz4, zlib or none; stripe size.
//! With `FormatOptions::parallel` (`convert`), a batch's columns are encoded, and a finished
//! stripe's compressed, on the rayon pool (the vendored copy's `with_parallel`); the bytes are
//! the same.
//!
//! orc-rust 0.9 writes flat schemas of primitive types only: nested types (list, struct, map)
//! and decimals are refused before any data moves, with the field named.

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use orc_rust::arrow_writer::{ArrowWriter, ArrowWriterBuilder};
use orc_rust::compression::CompressionType;

use super::{encode_err, Codec, FormatError, FormatOptions, FormatWriter};
use crate::store::OutputFile;

pub(crate) struct OrcFormat {
    file: OutputFile,
    writer: Option<ArrowWriter<OutputFile>>,
    /// The column encoders' own state, measured at about 5 KiB a column (8 counted).
    fixed: usize,
}

/// Refuses schemas orc-rust cannot write.
pub(crate) fn check_schema(schema: &SchemaRef) -> Result<(), FormatError> {
    for f in schema.fields() {
        let ok = matches!(
            f.data_type(),
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Float32
                | DataType::Float64
                | DataType::Date32
                | DataType::Timestamp(..)
        );
        if !ok {
            return Err(FormatError::Unsupported {
                format: "orc",
                field: f.name().clone(),
                ty: f.data_type().to_string(),
                reason: "the ORC writer (orc-rust 0.9) writes primitive columns only; use \
                         parquet or json for nested types and decimals"
                    .into(),
            });
        }
    }
    Ok(())
}

impl OrcFormat {
    pub fn new(
        opts: &FormatOptions,
        schema: SchemaRef,
        file: OutputFile,
    ) -> Result<Self, FormatError> {
        // The file buffers writes itself (local: 1 MiB; object stores: upload parts).
        let schema_columns = schema.fields().len();
        let mut b = ArrowWriterBuilder::new(file.clone(), schema)
            .with_batch_size(8192)
            .with_stripe_byte_size(opts.stripe_bytes)
            .with_parallel(opts.parallel);
        b = match opts.codec() {
            Codec::None => b,
            Codec::Zstd(level) => b
                .with_compression(CompressionType::Zstd)
                .with_compression_level(level),
            Codec::Snappy => b.with_compression(CompressionType::Snappy),
            Codec::Lz4 => b.with_compression(CompressionType::Lz4),
            Codec::Zlib(level) => b
                .with_compression(CompressionType::Zlib)
                .with_compression_level(level as i32),
            Codec::Gzip(_) => {
                return Err(FormatError::Option(
                    "orc has no gzip codec (use zlib)".into(),
                ))
            }
        };
        let writer = b.try_build().map_err(|e| encode_err(&file, e))?;
        Ok(OrcFormat {
            file,
            writer: Some(writer),
            fixed: schema_columns * 8 * 1024,
        })
    }
}

impl FormatWriter for OrcFormat {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        let w = self.writer.as_mut().expect("open until finish");
        w.write(batch).map_err(|e| encode_err(&self.file, e))
    }

    fn bytes_written(&self) -> u64 {
        self.file.bytes_written()
    }

    fn buffered_bytes(&self) -> usize {
        // The stripe's estimate is of encoded, uncompressed data: rotation goes by written bytes.
        0
    }

    fn memory_bytes(&self) -> usize {
        // orc-rust's own estimate of the stripe in progress (the vendored copy exposes it); it
        // flushes the stripe past `stripe_bytes` by the same figure.
        let stripe = self.writer.as_ref().map_or(0, |w| w.estimate_memory_size());
        stripe + self.fixed + self.file.held_bytes() as usize
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        let w = self.writer.take().expect("open until finish");
        w.close().map_err(|e| encode_err(&self.file, e))
    }
}
