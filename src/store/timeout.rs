//! A store wrapper that bounds every call of an inner store (and each item of its streams, each
//! part of its uploads) by a timeout. The HDFS client waits indefinitely for a NameNode that
//! does not answer; wrapped, a call that runs out fails with an error naming the URL.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

/// Bounds every call of an inner store (and each item of its streams, each part of its
/// uploads) by a timeout; a call that runs out fails with an error naming the URL.
#[derive(Debug)]
pub struct TimeoutStore {
    inner: Arc<dyn ObjectStore>,
    limit: Duration,
    store: &'static str,
    url: Arc<str>,
}

impl TimeoutStore {
    /// Wraps `inner`; `store` names the kind of store in errors, `url` the destination.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        limit: Duration,
        store: &'static str,
        url: &str,
    ) -> Self {
        TimeoutStore {
            inner,
            limit,
            store,
            url: url.into(),
        }
    }

    fn timer(&self) -> Timer {
        Timer {
            limit: self.limit,
            store: self.store,
            url: self.url.clone(),
        }
    }
}

/// What a timed call needs to know, cheap to move into `'static` futures and streams.
#[derive(Clone, Debug)]
struct Timer {
    limit: Duration,
    store: &'static str,
    url: Arc<str>,
}

impl Timer {
    fn elapsed(&self, what: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: self.store,
            source: format!(
                "{}: the {what} request got no answer within {} s (is the server reachable?)",
                self.url,
                self.limit.as_secs_f64()
            )
            .into(),
        }
    }

    async fn run<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        match tokio::time::timeout(self.limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.elapsed(what)),
        }
    }

    /// Each item must arrive within the limit; after a timeout the stream ends.
    fn stream<T: Send + 'static>(
        &self,
        what: &'static str,
        inner: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, object_store::Result<T>> {
        let timer = self.clone();
        futures::stream::unfold(Some(inner), move |state| {
            let timer = timer.clone();
            async move {
                let mut s = state?;
                match tokio::time::timeout(timer.limit, s.next()).await {
                    Ok(Some(item)) => Some((item, Some(s))),
                    Ok(None) => None,
                    Err(_) => Some((Err(timer.elapsed(what)), None)),
                }
            }
        })
        .boxed()
    }
}

impl fmt::Display for TimeoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (timeout {:?})", self.inner, self.limit)
    }
}

#[async_trait]
impl ObjectStore for TimeoutStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let fut = self.inner.put_opts(location, payload, opts);
        self.timer().run("put", fut).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let timer = self.timer();
        let upload = timer
            .run(
                "starting an upload",
                self.inner.put_multipart_opts(location, opts),
            )
            .await?;
        Ok(Box::new(TimedUpload { upload, timer }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let timer = self.timer();
        let mut got = timer
            .run("get", self.inner.get_opts(location, options))
            .await?;
        got.payload = match got.payload {
            GetResultPayload::Stream(s) => GetResultPayload::Stream(timer.stream("read", s)),
            other => other,
        };
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let fut = self.inner.get_ranges(location, ranges);
        self.timer().run("ranged get", fut).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.timer()
            .stream("delete", self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.timer().stream("list", self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.timer()
            .stream("list", self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let fut = self.inner.list_with_delimiter(prefix);
        self.timer().run("list", fut).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let fut = self.inner.copy_opts(from, to, options);
        self.timer().run("copy", fut).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let fut = self.inner.rename_opts(from, to, options);
        self.timer().run("rename", fut).await
    }
}

/// A multipart upload whose parts, completion and abort are each bounded by the timer.
#[derive(Debug)]
struct TimedUpload {
    upload: Box<dyn MultipartUpload>,
    timer: Timer,
}

#[async_trait]
impl MultipartUpload for TimedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.upload.put_part(data);
        let timer = self.timer.clone();
        Box::pin(async move { timer.run("uploading a part", part).await })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let timer = self.timer.clone();
        timer
            .run("completing an upload", self.upload.complete())
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let timer = self.timer.clone();
        timer.run("aborting an upload", self.upload.abort()).await
    }
}
