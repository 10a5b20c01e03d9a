//! One file written to an object store: buffered in memory until it reaches a part, then a
//! multipart upload with at most [`UPLOAD_CONCURRENCY`] parts in flight. Committing puts a
//! small file whole or completes the upload; aborting drops the buffer or aborts the upload.
//!
//! It knows what it holds (the part being filled and the parts still uploading), which
//! object_store's `BufWriter` does not say: `sink.max_buffered_bytes` counts it.

use std::io::Write;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::file::FileSink;
use super::StoreError;

/// Multipart part size (S3 needs at least 5 MiB per part, and allows 10,000 parts: files up to
/// about 100 GB).
pub(super) const PART_SIZE: usize = 10 * 1024 * 1024;

/// Parts of one file uploading at once. A write waits while this many are in flight.
pub(super) const UPLOAD_CONCURRENCY: usize = 2;

enum State {
    /// Less than a part so far: nothing sent yet.
    Buffer(Vec<u8>),
    /// A multipart upload; `sent` bytes handed to it (whole parts go out as they fill).
    Parts { writer: WriteMultipart, sent: u64 },
    /// Committed or aborted.
    Done,
}

pub(super) struct UploadSink {
    store: Arc<dyn ObjectStore>,
    path: Path,
    state: State,
    runtime: tokio::runtime::Handle,
    display: String,
}

impl UploadSink {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        runtime: tokio::runtime::Handle,
        display: String,
    ) -> Self {
        UploadSink {
            store,
            path,
            state: State::Buffer(Vec::new()),
            runtime,
            display,
        }
    }

    /// Appends at most one part's worth, so at most one new part starts per call.
    fn write_piece(&mut self, piece: &[u8]) -> std::io::Result<()> {
        if let State::Buffer(b) = &mut self.state {
            if b.len() + piece.len() < PART_SIZE {
                b.extend_from_slice(piece);
                return Ok(());
            }
            let buffered = std::mem::take(b);
            let upload = self
                .runtime
                .block_on(self.store.put_multipart(&self.path))
                .map_err(std::io::Error::other)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            // `write` starts part uploads as tasks: they need the runtime's context.
            let _context = self.runtime.enter();
            writer.write(&buffered);
            self.state = State::Parts {
                writer,
                sent: buffered.len() as u64,
            };
        }
        let State::Parts { writer, sent } = &mut self.state else {
            return Err(std::io::Error::other(
                "the file is already committed or aborted",
            ));
        };
        self.runtime
            .block_on(writer.wait_for_capacity(UPLOAD_CONCURRENCY))
            .map_err(std::io::Error::other)?;
        let _context = self.runtime.enter();
        writer.write(piece);
        *sent += piece.len() as u64;
        Ok(())
    }
}

/// Parts still uploading (0 to [`UPLOAD_CONCURRENCY`]), reaping the finished ones; a failed
/// part counts as finished here and fails the commit.
fn in_flight(writer: &mut WriteMultipart) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    (0..UPLOAD_CONCURRENCY)
        .find(|n| matches!(writer.poll_for_capacity(&mut cx, n + 1), Poll::Ready(_)))
        .unwrap_or(UPLOAD_CONCURRENCY)
}

impl Write for UploadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for piece in buf.chunks(PART_SIZE) {
            self.write_piece(piece)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FileSink for UploadSink {
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let fail = |source| StoreError::Store {
            path: self.display.clone(),
            source,
        };
        match std::mem::replace(&mut self.state, State::Done) {
            State::Buffer(b) => self
                .runtime
                .block_on(self.store.put(&self.path, b.into()))
                .map(|_| ())
                .map_err(fail),
            State::Parts { writer, .. } => {
                let _context = self.runtime.enter();
                self.runtime
                    .block_on(writer.finish())
                    .map(|_| ())
                    .map_err(fail)
            }
            State::Done => Err(StoreError::Io {
                path: self.display.clone(),
                source: std::io::Error::other("the file is already committed or aborted"),
            }),
        }
    }

    fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Parts { writer, .. } => {
                let _context = self.runtime.enter();
                self.runtime
                    .block_on(writer.abort())
                    .map_err(|source| StoreError::Store {
                        path: self.display.clone(),
                        source,
                    })
            }
            State::Buffer(_) | State::Done => Ok(()),
        }
    }

    fn held(&mut self, _written: u64) -> u64 {
        match &mut self.state {
            State::Buffer(b) => b.len() as u64,
            State::Parts { writer, sent } => {
                let _context = self.runtime.enter();
                let filling = *sent % PART_SIZE as u64;
                filling + (in_flight(writer) * PART_SIZE) as u64
            }
            State::Done => 0,
        }
    }
}
