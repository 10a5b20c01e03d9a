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
    /// The first failed part: every later write and the commit fail with it.
    failed: Option<String>,
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
            failed: None,
            runtime,
            display,
        }
    }

    /// Appends at most one part's worth, so at most one new part starts per call.
    fn write_piece(&mut self, piece: &[u8]) -> std::io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(std::io::Error::other(format!("a part upload failed: {e}")));
        }
        if let State::Buffer(b) = &mut self.state {
            if b.len() + piece.len() < PART_SIZE {
                b.extend_from_slice(piece);
                return Ok(());
            }
            // The upload first: if it cannot start, the buffer is still whole.
            let upload = self
                .runtime
                .block_on(self.store.put_multipart(&self.path))
                .map_err(std::io::Error::other)?;
            let buffered = std::mem::take(b);
            let sent = buffered.len() as u64;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            // `put` starts part uploads as tasks: they need the runtime's context.
            let _context = self.runtime.enter();
            writer.put(bytes::Bytes::from(buffered));
            self.state = State::Parts { writer, sent };
        }
        let State::Parts { writer, sent } = &mut self.state else {
            return Err(std::io::Error::other(
                "the file is already committed or aborted",
            ));
        };
        if let Err(e) = self
            .runtime
            .block_on(writer.wait_for_capacity(UPLOAD_CONCURRENCY))
        {
            self.failed = Some(e.to_string());
            return Err(std::io::Error::other(e));
        }
        let _context = self.runtime.enter();
        writer.write(piece);
        *sent += piece.len() as u64;
        Ok(())
    }
}

/// Parts still uploading (0 to [`UPLOAD_CONCURRENCY`]), reaping the finished ones; the
/// error of a failed one, if any.
fn in_flight(writer: &mut WriteMultipart) -> (usize, Option<object_store::Error>) {
    let mut cx = Context::from_waker(Waker::noop());
    for n in 0..UPLOAD_CONCURRENCY {
        match writer.poll_for_capacity(&mut cx, n + 1) {
            Poll::Ready(Ok(())) => return (n, None),
            Poll::Ready(Err(e)) => return (n, Some(e)),
            Poll::Pending => {}
        }
    }
    (UPLOAD_CONCURRENCY, None)
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
    fn commit(mut self: Box<Self>, create_only: bool) -> Result<(), StoreError> {
        let display = self.display.clone();
        let fail = |source| StoreError::Store {
            path: display.clone(),
            source,
        };
        let exists = || StoreError::Exists {
            path: display.clone(),
        };
        if let Some(e) = self.failed.take() {
            let _ = self.abort_upload();
            return Err(StoreError::Io {
                path: self.display.clone(),
                source: std::io::Error::other(format!("a part upload failed: {e}")),
            });
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Buffer(b) => {
                let opts = super::put_options(create_only);
                let sent = bytes::Bytes::from(b);
                match self.runtime.block_on(self.store.put_opts(
                    &self.path,
                    sent.clone().into(),
                    opts,
                )) {
                    Ok(_) => Ok(()),
                    // object_store retries a 5xx, a create-only put too: a put that landed
                    // before its error is then refused. Equal bytes there (read only when the
                    // size is this file's) say so, though another writer of the same bytes
                    // looks the same: the error says which two it may be.
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        let same = self.runtime.block_on(async {
                            let there = self.store.get(&self.path).await?;
                            if there.meta.size != sent.len() as u64 {
                                return Ok::<_, object_store::Error>(false);
                            }
                            Ok(there.bytes().await? == sent)
                        });
                        match same {
                            Ok(true) => Err(StoreError::ExistsSame {
                                path: display.clone(),
                            }),
                            _ => Err(exists()),
                        }
                    }
                    Err(e) => Err(fail(e)),
                }
            }
            State::Parts { mut writer, sent } => {
                // The parts in flight first: one that failed aborts the upload here (`finish`
                // would leave its parts behind). Then, create-only, the name: object_store
                // cannot complete a multipart upload conditionally, so it is checked as late
                // as it can be (only the last part, under a part, is sent after the check).
                let landed = {
                    let _context = self.runtime.enter();
                    self.runtime.block_on(writer.wait_for_capacity(0))
                };
                let refused = match landed {
                    Err(e) => Some(fail(e)),
                    Ok(()) if create_only => {
                        match self.runtime.block_on(self.store.head(&self.path)) {
                            Ok(_) => Some(exists()),
                            Err(object_store::Error::NotFound { .. }) => None,
                            Err(e) => Some(fail(e)),
                        }
                    }
                    Ok(()) => None,
                };
                if let Some(e) = refused {
                    self.state = State::Parts { writer, sent };
                    let _ = self.abort_upload();
                    return Err(e);
                }
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
        self.abort_upload()
    }

    fn park(&mut self) -> Result<(), StoreError> {
        // Whole until its commit: the buffer keeps only what it holds.
        if let State::Buffer(b) = &mut self.state {
            b.shrink_to_fit();
        }
        Ok(())
    }

    fn held(&mut self, _written: u64) -> u64 {
        match &mut self.state {
            State::Buffer(b) => b.capacity() as u64,
            State::Parts { writer, sent } => {
                let _context = self.runtime.enter();
                let filling = *sent % PART_SIZE as u64;
                let (parts, error) = in_flight(writer);
                if let (Some(e), None) = (error, &self.failed) {
                    self.failed = Some(e.to_string());
                }
                filling + (parts * PART_SIZE) as u64
            }
            State::Done => 0,
        }
    }
}

impl UploadSink {
    fn abort_upload(&mut self) -> Result<(), StoreError> {
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
}
