//! ORC via orc-rust's `ArrowWriter`: zstd (default), snappy, lz4, zlib or none; stripe size.
//! With `FormatOptions::parallel` (`convert`), a batch's columns are encoded, and a finished
//! stripe's compressed, on the rayon pool (the vendored copy's `with_parallel`); the bytes are
//! the same.
//!
//! orc-rust 0.9 writes flat schemas of primitive types only: nested types (list, struct, map)
//! and decimals are refused before any data moves, with the field named. It writes timestamps
//! labelled UTC or with no zone only (another zone was a panic when the writer was built): an
//! ORC timestamp is an instant and keeps no zone, so a column in another zone is handed to it
//! relabelled UTC, its values (instants) unchanged.

use std::sync::Arc;

use arrow::array::{make_array, ArrayRef};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
    /// The schema handed to orc-rust, when a timestamp column is relabelled UTC.
    relabelled: Option<SchemaRef>,
}

/// The type orc-rust is given for `ty`: a timestamp in a zone other than UTC, labelled UTC.
fn instant(ty: &DataType) -> DataType {
    match ty {
        DataType::Timestamp(unit, Some(tz)) if tz.as_ref() != "UTC" => {
            DataType::Timestamp(*unit, Some("UTC".into()))
        }
        other => other.clone(),
    }
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
        let relabelled = schema
            .fields()
            .iter()
            .any(|f| instant(f.data_type()) != *f.data_type())
            .then(|| {
                let fields: Vec<Field> = schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_data_type(instant(f.data_type())))
                    .collect();
                Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
            });
        let schema = relabelled.clone().unwrap_or(schema);
        let mut b = ArrowWriterBuilder::new(file.clone(), schema)
            .with_batch_size(8192)
            .with_stripe_byte_size(opts.stripe_bytes)
            .with_parallel(opts.parallel)
            // `convert`: one file, its buffers reused stripe after stripe (a job's files
            // free theirs, which its memory bound counts, at each stripe).
            .with_keep_buffers(opts.parallel);
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
            relabelled,
        })
    }
}

impl FormatWriter for OrcFormat {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        let w = self.writer.as_mut().expect("open until finish");
        let Some(schema) = &self.relabelled else {
            return w.write(batch).map_err(|e| encode_err(&self.file, e));
        };
        // The same buffers under the UTC label; a batch of another shape is orc-rust's to
        // refuse (it compares the batch's schema with the file's).
        let columns = batch
            .columns()
            .iter()
            .map(|c| {
                let to = instant(c.data_type());
                if to == *c.data_type() {
                    return Ok(c.clone());
                }
                c.to_data()
                    .into_builder()
                    .data_type(to)
                    .build()
                    .map(make_array)
            })
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(|e| encode_err(&self.file, e))?;
        let batch =
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| encode_err(&self.file, e))?;
        w.write(&batch).map_err(|e| encode_err(&self.file, e))
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
