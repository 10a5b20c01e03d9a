//! One file written to an object store: buffered in memory until it reaches a part, then a
//! multipart upload with at most [`UPLOAD_CONCURRENCY`] parts in flight. Committing puts a
//! small file whole or completes the upload; aborting drops the buffer or aborts the upload.
//! A parked file can be offloaded: what it holds is sent as the upload's last part, and the
//! upload completes at the commit.
//!
//! It knows what it holds (the part being filled and the parts still uploading), which
//! object_store's `BufWriter` does not say: `sink.max_buffered_bytes` counts it. Its parts are
//! sent by [`Parts`], not object_store's `WriteMultipart`, whose `finish` leaves every part
//! behind when the last one fails.

use std::io::Write;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::task::JoinSet;

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
    /// A multipart upload (whole parts go out as they fill).
    Parts { writer: Parts },
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
            let writer = Parts::new(upload, buffered);
            self.state = State::Parts { writer };
        }
        let State::Parts { writer } = &mut self.state else {
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
        // A full part starts uploading as a task: it needs the runtime's context.
        let _context = self.runtime.enter();
        writer.write(piece);
        Ok(())
    }
}

/// A multipart upload's parts: the one being filled and the ones uploading (tasks on the
/// runtime). Ended by [`Parts::finish`] or [`Parts::abort`]; a failure at the end aborts the
/// upload, so no part is left behind that the store keeps (and bills) until a lifecycle rule
/// removes it.
pub(super) struct Parts {
    upload: Box<dyn MultipartUpload>,
    filling: Vec<u8>,
    uploading: JoinSet<object_store::Result<()>>,
}

impl Parts {
    /// The upload, with `first` (less than a part) as the start of its first part.
    pub(super) fn new(upload: Box<dyn MultipartUpload>, mut first: Vec<u8>) -> Self {
        first.shrink_to(PART_SIZE);
        Parts {
            upload,
            filling: first,
            uploading: JoinSet::new(),
        }
    }

    /// Appends `buf`, starting a part's upload each time one fills (in a runtime's context).
    pub(super) fn write(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            let take = buf.len().min(PART_SIZE - self.filling.len());
            if self.filling.len() + take > self.filling.capacity() {
                // Grown by doubling up to a part, never past it: what it holds is what
                // `held` counts, and a file parked with a little of a part holds little.
                let want = (self.filling.capacity() * 2)
                    .max(self.filling.len() + take)
                    .clamp(64 << 10, PART_SIZE);
                self.filling.reserve_exact(want - self.filling.len());
            }
            self.filling.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.filling.len() == PART_SIZE {
                self.send();
            }
        }
    }

    fn send(&mut self) {
        let part = bytes::Bytes::from(std::mem::take(&mut self.filling));
        let upload = self.upload.put_part(PutPayload::from(part));
        self.uploading.spawn(upload);
    }

    /// Ready once fewer than `most` parts are uploading (0: none), or with the first error
    /// of a part that failed.
    pub(super) fn poll_for_capacity(
        &mut self,
        cx: &mut Context<'_>,
        most: usize,
    ) -> Poll<object_store::Result<()>> {
        while !self.uploading.is_empty() && self.uploading.len() >= most {
            match std::task::ready!(self.uploading.poll_join_next(cx)) {
                Some(Ok(Ok(()))) | None => {}
                Some(Ok(Err(e))) => return Poll::Ready(Err(e)),
                Some(Err(e)) => {
                    return Poll::Ready(Err(object_store::Error::Generic {
                        store: "upload",
                        source: Box::new(e),
                    }))
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    pub(super) async fn wait_for_capacity(&mut self, most: usize) -> object_store::Result<()> {
        std::future::poll_fn(|cx| self.poll_for_capacity(cx, most)).await
    }

    /// Sends the last part, waits for every part, completes the upload; on any failure the
    /// upload is aborted and the failure returned (not the abort's).
    pub(super) async fn finish(mut self) -> object_store::Result<()> {
        if !self.filling.is_empty() {
            self.send();
        }
        let done = match self.wait_for_capacity(0).await {
            Ok(()) => self.upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            let _ = self.abort().await;
            return Err(e);
        }
        Ok(())
    }

    /// Stops the parts uploading and aborts the upload (the store drops the parts it holds).
    pub(super) async fn abort(mut self) -> object_store::Result<()> {
        self.uploading.shutdown().await;
        self.upload.abort().await
    }
}

/// Parts still uploading (0 to [`UPLOAD_CONCURRENCY`]), reaping the finished ones; the
/// error of a failed one, if any.
fn in_flight(writer: &mut Parts) -> (usize, Option<object_store::Error>) {
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
            State::Parts { mut writer } => {
                // Create-only, the name is checked once the parts in flight have landed:
                // object_store cannot complete a multipart upload conditionally, so it is
                // checked as late as it can be (only the last part, under a part, is sent
                // after the check, unless an offload sent it). `finish` aborts the upload on
                // any failure.
                if create_only {
                    let landed = {
                        let _context = self.runtime.enter();
                        self.runtime.block_on(writer.wait_for_capacity(0))
                    };
                    let refused = match landed {
                        Err(e) => Some(fail(e)),
                        Ok(()) => match self.runtime.block_on(self.store.head(&self.path)) {
                            Ok(_) => Some(exists()),
                            Err(object_store::Error::NotFound { .. }) => None,
                            Err(e) => Some(fail(e)),
                        },
                    };
                    if let Some(e) = refused {
                        self.state = State::Parts { writer };
                        let _ = self.abort_upload();
                        return Err(e);
                    }
                }
                let _context = self.runtime.enter();
                self.runtime.block_on(writer.finish()).map_err(fail)
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
        match &mut self.state {
            State::Buffer(b) => b.shrink_to_fit(),
            State::Parts { writer, .. } => writer.filling.shrink_to_fit(),
            State::Done => {}
        }
        Ok(())
    }

    fn offload(&mut self) -> Result<(), StoreError> {
        if let Some(e) = &self.failed {
            return Err(StoreError::Io {
                path: self.display.clone(),
                source: std::io::Error::other(format!("a part upload failed: {e}")),
            });
        }
        let display = self.display.clone();
        let fail = |source| StoreError::Store {
            path: display.clone(),
            source,
        };
        if let State::Buffer(b) = &mut self.state {
            if b.is_empty() {
                return Ok(());
            }
            // The upload first: if it cannot start, the buffer is still whole.
            let upload = self
                .runtime
                .block_on(self.store.put_multipart(&self.path))
                .map_err(fail)?;
            let writer = Parts::new(upload, std::mem::take(b));
            self.state = State::Parts { writer };
        }
        let State::Parts { writer } = &mut self.state else {
            return Ok(());
        };
        // Nothing is written after a park: what is filling is the upload's last part.
        let _context = self.runtime.enter();
        if !writer.filling.is_empty() {
            writer.send();
        }
        writer.filling = Vec::new();
        if let Err(e) = self.runtime.block_on(writer.wait_for_capacity(0)) {
            self.failed.get_or_insert_with(|| e.to_string());
            return Err(fail(e));
        }
        Ok(())
    }

    fn held(&mut self, _written: u64) -> u64 {
        match &mut self.state {
            State::Buffer(b) => b.capacity() as u64,
            State::Parts { writer } => {
                let _context = self.runtime.enter();
                let filling = writer.filling.capacity() as u64;
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
