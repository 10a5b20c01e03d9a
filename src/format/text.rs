//! Text output: CSV or TSV (arrow-csv, header row switchable) or the raw message line of each
//! record (the decoder's `_raw` column). Optionally gzip-compressed.

use std::io::Write;

use arrow::array::{Array, AsArray};
use arrow::csv::{Writer, WriterBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::{encode_err, FormatError, FormatKind, FormatOptions, FormatWriter, MaybeGzip};
use crate::decode::RAW_COLUMN;
use crate::store::OutputFile;

pub(crate) struct TextFormat {
    file: OutputFile,
    inner: Option<Inner>,
    /// The gzip state (if any) and the csv crate's 8 KiB buffer.
    fixed: usize,
}

enum Inner {
    Csv(Box<Writer<MaybeGzip>>),
    Raw { out: MaybeGzip, column: usize },
}

/// CSV cells hold flat values only.
pub(crate) fn check_schema(schema: &SchemaRef, kind: FormatKind) -> Result<(), FormatError> {
    for f in schema.fields() {
        if matches!(
            f.data_type(),
            DataType::List(_) | DataType::Struct(_) | DataType::Map(..)
        ) {
            return Err(FormatError::Unsupported {
                format: kind.name(),
                field: f.name().clone(),
                ty: f.data_type().to_string(),
                reason: "CSV and TSV cells hold flat values; use parquet or json for nested types"
                    .into(),
            });
        }
    }
    Ok(())
}

/// The raw text format needs the decoder's raw column.
pub(crate) fn check_raw(schema: &SchemaRef) -> Result<(), FormatError> {
    if schema.index_of(RAW_COLUMN).is_err() {
        return Err(FormatError::Option(format!(
            "the text format writes each record's original line, but the batches have no \
             `{RAW_COLUMN}` column (decode with keep_raw)"
        )));
    }
    Ok(())
}

impl TextFormat {
    pub fn new(opts: &FormatOptions, schema: SchemaRef, file: OutputFile) -> Self {
        let out = MaybeGzip::new(file.clone(), opts.codec());
        let fixed = out.state_bytes() + 8 * 1024;
        let inner = match opts.kind {
            FormatKind::Text => Inner::Raw {
                out,
                column: schema.index_of(RAW_COLUMN).expect("checked by validate"),
            },
            kind => {
                let delimiter = if kind == FormatKind::Tsv { b'\t' } else { b',' };
                Inner::Csv(Box::new(
                    WriterBuilder::new()
                        .with_header(opts.header)
                        .with_delimiter(delimiter)
                        .build(out),
                ))
            }
        };
        TextFormat {
            file,
            inner: Some(inner),
            fixed,
        }
    }
}

impl FormatWriter for TextFormat {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        match self.inner.as_mut().expect("open until finish") {
            Inner::Csv(w) => w.write(batch).map_err(|e| encode_err(&self.file, e)),
            Inner::Raw { out, column } => {
                let col = batch.column(*column).as_string::<i32>();
                let mut buf = Vec::with_capacity(col.values().len() + col.len());
                for v in col.iter().flatten() {
                    buf.extend_from_slice(v.as_bytes());
                    buf.push(b'\n');
                }
                out.write_all(&buf).map_err(|e| encode_err(&self.file, e))
            }
        }
    }

    fn bytes_written(&self) -> u64 {
        self.file.bytes_written()
    }

    fn buffered_bytes(&self) -> usize {
        0
    }

    fn memory_bytes(&self) -> usize {
        // Each batch is encoded and written at once: what stays is the compressor state and
        // the file's buffers.
        self.fixed + self.file.held_bytes() as usize
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        let out = match self.inner.take().expect("open until finish") {
            Inner::Csv(w) => w.into_inner(),
            Inner::Raw { out, .. } => out,
        };
        out.finish().map_err(|e| encode_err(&self.file, e))
    }
}
