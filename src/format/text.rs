//! Text output: CSV or TSV (arrow-csv, header row switchable; binary cells as base64, as a
//! binary field reads them by default) or the raw message line of each record (the decoder's
//! `_raw` column). Optionally gzip-compressed. With
//! `FormatOptions::parallel` and gzip each batch is encoded and compressed as a block of its own
//! on the pool (`blocks.rs`).

use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::csv::{Writer, WriterBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use base64::Engine;

use super::blocks::Blocks;
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
    Raw {
        out: MaybeGzip,
        column: usize,
    },
    /// Blocks encoded on the pool; `header`: the next block starts with the CSV header.
    Blocks {
        blocks: Blocks,
        kind: FormatKind,
        header: bool,
        column: usize,
    },
}

/// The record lines of a batch's raw column, one per row: a null (a stage may make one) is
/// an empty line, not none (its row was counted as written).
fn raw_lines(batch: &RecordBatch, column: usize) -> Vec<u8> {
    let col = batch.column(column).as_string::<i32>();
    let mut buf = Vec::with_capacity(col.values().len() + col.len());
    for v in col.iter() {
        buf.extend_from_slice(v.unwrap_or_default().as_bytes());
        buf.push(b'\n');
    }
    buf
}

/// `batch` with its binary columns as base64 text: arrow-csv writes hex, which a binary
/// field (base64 by default) reads back as other bytes without an error (`7369676e6564` is
/// valid base64).
fn binary_as_base64(batch: &RecordBatch) -> Result<Cow<'_, RecordBatch>, ArrowError> {
    let binary = |t: &DataType| {
        matches!(
            t,
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
        )
    };
    let schema = batch.schema_ref();
    if !schema.fields().iter().any(|f| binary(f.data_type())) {
        return Ok(Cow::Borrowed(batch));
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if !binary(f.data_type()) {
            fields.push(f.clone());
            columns.push(c.clone());
            continue;
        }
        let bytes = arrow::compute::cast(c, &DataType::LargeBinary)?;
        let bytes = bytes.as_binary::<i64>();
        let text: StringArray = bytes
            .iter()
            .map(|v| v.map(|v| base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        fields.push(Arc::new(Field::new(
            f.name(),
            DataType::Utf8,
            f.is_nullable(),
        )));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map(Cow::Owned)
}

/// The CSV writer of `kind` (comma or tab), with or without the header row.
fn csv_writer<W: Write>(out: W, kind: FormatKind, header: bool) -> Writer<W> {
    let delimiter = if kind == FormatKind::Tsv { b'\t' } else { b',' };
    WriterBuilder::new()
        .with_header(header)
        .with_delimiter(delimiter)
        .build(out)
}

/// CSV cells hold flat values only.
pub(crate) fn check_schema(schema: &SchemaRef, kind: FormatKind) -> Result<(), FormatError> {
    for f in schema.fields() {
        if f.data_type().is_nested() {
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

/// The raw text format needs the decoder's raw column, of strings (a stage may make one of
/// another type: `_kafka_key AS _raw`, whose bytes the writer cannot read as lines).
pub(crate) fn check_raw(schema: &SchemaRef) -> Result<(), FormatError> {
    let Ok(field) = schema.field_with_name(RAW_COLUMN) else {
        return Err(FormatError::Option(format!(
            "the text format writes each record's original line, but the batches have no \
             `{RAW_COLUMN}` column (decode with keep_raw)"
        )));
    };
    if field.data_type() != &arrow::datatypes::DataType::Utf8 {
        return Err(FormatError::Option(format!(
            "the text format writes the `{RAW_COLUMN}` column's strings as lines, but it is {} \
             (a stage's output: cast it to a string, e.g. `CAST(x AS VARCHAR) AS {RAW_COLUMN}`)",
            field.data_type()
        )));
    }
    Ok(())
}

impl TextFormat {
    pub fn new(opts: &FormatOptions, schema: SchemaRef, file: OutputFile) -> Self {
        let column = || schema.index_of(RAW_COLUMN).expect("checked by validate");
        if Blocks::wanted(opts) {
            return TextFormat {
                inner: Some(Inner::Blocks {
                    blocks: Blocks::new(file.clone(), opts.codec()),
                    kind: opts.kind,
                    header: opts.header,
                    column: if opts.kind == FormatKind::Text {
                        column()
                    } else {
                        0
                    },
                }),
                file,
                fixed: 0,
            };
        }
        let out = MaybeGzip::new(file.clone(), opts.codec());
        let fixed = out.state_bytes() + 8 * 1024;
        let inner = match opts.kind {
            FormatKind::Text => Inner::Raw {
                out,
                column: column(),
            },
            kind => Inner::Csv(Box::new(csv_writer(out, kind, opts.header))),
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
            Inner::Csv(w) => binary_as_base64(batch)
                .and_then(|b| w.write(&b))
                .map_err(|e| encode_err(&self.file, e)),
            Inner::Raw { out, column } => out
                .write_all(&raw_lines(batch, *column))
                .map_err(|e| encode_err(&self.file, e)),
            Inner::Blocks {
                blocks,
                kind,
                header,
                column,
            } => {
                let (kind, column, with_header) = (*kind, *column, std::mem::take(header));
                blocks.push(
                    batch,
                    Box::new(move |b: &RecordBatch| {
                        if kind == FormatKind::Text {
                            return Ok(raw_lines(b, column));
                        }
                        let mut w = csv_writer(Vec::new(), kind, with_header);
                        binary_as_base64(b)
                            .and_then(|b| w.write(&b))
                            .map_err(|e| e.to_string())?;
                        Ok(w.into_inner())
                    }),
                )
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
        // the file's buffers (or the blocks in flight).
        let blocks = match &self.inner {
            Some(Inner::Blocks { blocks, .. }) => blocks.memory_bytes(),
            _ => 0,
        };
        self.fixed + blocks + self.file.held_bytes() as usize
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        let out = match self.inner.take().expect("open until finish") {
            Inner::Csv(w) => w.into_inner(),
            Inner::Raw { out, .. } => out,
            Inner::Blocks { blocks, .. } => return blocks.finish(),
        };
        out.finish().map_err(|e| encode_err(&self.file, e))
    }
}
