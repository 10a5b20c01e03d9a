//! JSON lines as arrow-json's writer makes them (`jsonl.rs`), gzip-compressed (flate2 with the
//! zlib-rs backend) unless the codec is `none`. Timestamps are written as RFC 3339 text, binary
//! as base64 (nested binary as hex), nulls omitted.
//! With `FormatOptions::parallel` and gzip each batch is encoded and compressed as a block of
//! its own on the pool (`blocks.rs`).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::blocks::Blocks;
use super::jsonl;
use super::{encode_err, FormatError, FormatOptions, FormatWriter, MaybeGzip};
use crate::store::OutputFile;

pub(crate) struct JsonFormat {
    file: OutputFile,
    writer: Option<MaybeGzip>,
    blocks: Option<Blocks>,
}

impl JsonFormat {
    pub fn new(opts: &FormatOptions, _schema: SchemaRef, file: OutputFile) -> Self {
        if Blocks::wanted(opts) {
            return JsonFormat {
                blocks: Some(Blocks::new(file.clone(), opts.codec())),
                file,
                writer: None,
            };
        }
        let out = MaybeGzip::new(file.clone(), opts.codec());
        JsonFormat {
            file,
            writer: Some(out),
            blocks: None,
        }
    }
}

/// One batch as JSON lines.
fn lines(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    jsonl::encode(batch, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

impl FormatWriter for JsonFormat {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        if let Some(b) = self.blocks.as_mut() {
            return b.push(batch, Box::new(lines));
        }
        let w = self.writer.as_mut().expect("open until finish");
        jsonl::write(batch, w).map_err(|e| encode_err(&self.file, e))
    }

    fn bytes_written(&self) -> u64 {
        self.file.bytes_written()
    }

    fn buffered_bytes(&self) -> usize {
        0
    }

    fn memory_bytes(&self) -> usize {
        // A batch is encoded and written 64 KiB at a time: what stays is the gzip state and
        // the file's buffers (or the blocks in flight).
        if let Some(b) = &self.blocks {
            return b.memory_bytes() + self.file.held_bytes() as usize;
        }
        let gzip = self.writer.as_ref().map_or(0, MaybeGzip::state_bytes);
        gzip + self.file.held_bytes() as usize
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        if let Some(b) = self.blocks.take() {
            return b.finish();
        }
        let w = self.writer.take().expect("open until finish");
        w.finish().map_err(|e| encode_err(&self.file, e))
    }
}
