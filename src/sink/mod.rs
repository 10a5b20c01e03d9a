//! Destinations: an object_store URL (or a local path) → a place to write files that appear
//! whole or not at all.
//!
//! Local files are written under a hidden temporary name (`.name.<id>.tmp`) in the target
//! folder, fsync'd, then renamed. Object stores get uploads through object_store's `BufWriter`
//! (a single put for small files, a multipart upload for large ones); nothing is visible until
//! the upload completes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

mod commit;
pub mod control;
pub mod partition;
mod recovery;
pub mod store;
mod sweep;
mod timeout_store;
pub mod worker;

/// Errors from destinations. Each names the URL or path involved.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid destination URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("object store error for {path}: {source}")]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("{path} already exists (pass --overwrite to replace it)")]
    Exists { path: String },
    #[error("dead-letter topic `{topic}` on {brokers}: {reason}")]
    DeadLetterTopic {
        topic: String,
        brokers: String,
        reason: String,
    },
}

impl SinkError {
    /// True when the file is not there.
    pub fn is_not_found(&self) -> bool {
        match self {
            SinkError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            SinkError::Store { source, .. } => {
                matches!(source, object_store::Error::NotFound { .. })
            }
            _ => false,
        }
    }
}

/// A place files are written to: a local folder or an object store prefix.
#[derive(Clone)]
pub struct Destination {
    url: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Local(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: StorePath,
        runtime: tokio::runtime::Handle,
    },
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.url)
            .finish()
    }
}

impl Destination {
    /// Parses a destination: `file:///abs/dir/`, a plain local path, `memory://`, or an object
    /// store URL set up from the environment alone. Object stores run their requests on
    /// `runtime`.
    pub fn parse(url: &str, runtime: tokio::runtime::Handle) -> Result<Self, SinkError> {
        Self::parse_with(url, &Default::default(), runtime)
    }

    /// Like [`Destination::parse`], also accepting `s3://`, `az://`, `abfs[s]://`, `gs://` and
    /// `hdfs://` URLs, set up with `opts` (see [`store::open_store`]).
    pub fn parse_with(
        url: &str,
        opts: &store::StoreOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, SinkError> {
        let bad = |reason: String| SinkError::Url {
            url: url.to_string(),
            reason,
        };
        if !url.contains("://") {
            let p = PathBuf::from(url);
            let abs = if p.is_absolute() {
                p
            } else {
                std::env::current_dir()
                    .map_err(|e| bad(format!("no current directory: {e}")))?
                    .join(p)
            };
            return Ok(Destination {
                url: url.to_string(),
                kind: Kind::Local(abs),
            });
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let p = parsed
                    .to_file_path()
                    .map_err(|_| bad("a file:// URL needs an absolute path".into()))?;
                Ok(Destination {
                    url: url.to_string(),
                    kind: Kind::Local(p),
                })
            }
            "memory" => Ok(Destination {
                url: url.to_string(),
                kind: Kind::Store {
                    store: Arc::new(object_store::memory::InMemory::new()),
                    prefix: StorePath::from(parsed.path().trim_matches('/')),
                    runtime,
                },
            }),
            _ => {
                let (store, prefix) = store::open_store(&parsed, opts)?;
                Ok(Destination {
                    url: url.to_string(),
                    kind: Kind::Store {
                        store,
                        prefix,
                        runtime,
                    },
                })
            }
        }
    }

    /// Wraps an existing object store (tests and embedders).
    pub fn from_store(
        url: &str,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Destination {
            url: url.to_string(),
            kind: Kind::Store {
                store,
                prefix: StorePath::from(prefix.trim_matches('/')),
                runtime,
            },
        }
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The location of `rel` for messages.
    pub fn display(&self, rel: &str) -> String {
        match &self.kind {
            Kind::Local(root) => root.join(rel).display().to_string(),
            Kind::Store { .. } => format!("{}/{}", self.url.trim_end_matches('/'), rel),
        }
    }

    fn store_path(prefix: &StorePath, rel: &str) -> StorePath {
        let mut p = prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// True when a file exists at `rel`.
    pub fn exists(&self, rel: &str) -> Result<bool, SinkError> {
        match &self.kind {
            Kind::Local(root) => root.join(rel).try_exists().map_err(|source| SinkError::Io {
                path: self.display(rel),
                source,
            }),
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::store_path(prefix, rel);
                match runtime.block_on(store.head(&path)) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(source) => Err(SinkError::Store {
                        path: self.display(rel),
                        source,
                    }),
                }
            }
        }
    }

    /// Reads a whole file (tests, checkpoints).
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, SinkError> {
        match &self.kind {
            Kind::Local(root) => std::fs::read(root.join(rel)).map_err(|source| SinkError::Io {
                path: self.display(rel),
                source,
            }),
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::store_path(prefix, rel);
                runtime
                    .block_on(async { store.get(&path).await?.bytes().await })
                    .map(|b| b.to_vec())
                    .map_err(|source| SinkError::Store {
                        path: self.display(rel),
                        source,
                    })
            }
        }
    }

    /// Writes a small file atomically. With `create_only`, fails with [`SinkError::Exists`] when
    /// the file is already there (fencing for checkpoint records).
    pub fn put_atomic(&self, rel: &str, bytes: &[u8], create_only: bool) -> Result<(), SinkError> {
        match &self.kind {
            Kind::Local(root) => {
                let target = root.join(rel);
                let io = |source| SinkError::Io {
                    path: target.display().to_string(),
                    source,
                };
                let mut sink = LocalSink::create(&target)?;
                sink.write_all(bytes).map_err(io)?;
                if !create_only {
                    return Box::new(sink).commit();
                }
                // A hard link fails if the target exists: an atomic create-only rename.
                let file = sink.file.into_inner().map_err(|e| io(e.into_error()))?;
                file.sync_all().map_err(io)?;
                drop(file);
                let linked = std::fs::hard_link(&sink.tmp, &target);
                let _ = std::fs::remove_file(&sink.tmp);
                match linked {
                    Ok(()) => {
                        // The new name must be durable before anything that relies on it (a
                        // checkpoint before its pending record is dropped): sync the folder.
                        if let Some(dir) = target.parent() {
                            if let Ok(d) = std::fs::File::open(dir) {
                                let _ = d.sync_all();
                            }
                        }
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Err(SinkError::Exists {
                            path: target.display().to_string(),
                        })
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::store_path(prefix, rel);
                let mode = if create_only {
                    object_store::PutMode::Create
                } else {
                    object_store::PutMode::Overwrite
                };
                let opts = object_store::PutOptions {
                    mode,
                    ..Default::default()
                };
                let payload = object_store::PutPayload::from(bytes.to_vec());
                match runtime.block_on(store.put_opts(&path, payload, opts)) {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::AlreadyExists { .. }) => Err(SinkError::Exists {
                        path: self.display(rel),
                    }),
                    Err(source) => Err(SinkError::Store {
                        path: self.display(rel),
                        source,
                    }),
                }
            }
        }
    }

    /// Lists the files under the folder `rel` (recursively), as paths relative to the
    /// destination, sorted. Hidden temporary files of unfinished local writes are skipped.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, SinkError> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Local(root) => {
                let base = root.join(rel);
                let mut stack = vec![base];
                while let Some(dir) = stack.pop() {
                    let entries = match std::fs::read_dir(&dir) {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(source) => {
                            return Err(SinkError::Io {
                                path: dir.display().to_string(),
                                source,
                            })
                        }
                    };
                    for entry in entries {
                        let entry = entry.map_err(|source| SinkError::Io {
                            path: dir.display().to_string(),
                            source,
                        })?;
                        let path = entry.path();
                        let name = entry.file_name();
                        if name.to_string_lossy().starts_with('.') {
                            continue;
                        }
                        if path.is_dir() {
                            stack.push(path);
                        } else if let Ok(r) = path.strip_prefix(root) {
                            out.push(r.to_string_lossy().replace('\\', "/"));
                        }
                    }
                }
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                use futures::TryStreamExt;
                let path = Self::store_path(prefix, rel);
                let listed: Vec<object_store::ObjectMeta> = runtime
                    .block_on(store.list(Some(&path)).try_collect())
                    .map_err(|source| SinkError::Store {
                        path: self.display(rel),
                        source,
                    })?;
                let skip = prefix.as_ref().len();
                for meta in listed {
                    let full = meta.location.as_ref();
                    let r = full[skip..].trim_start_matches('/');
                    out.push(r.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the file at `rel`; a missing file is not an error.
    pub fn delete(&self, rel: &str) -> Result<(), SinkError> {
        match &self.kind {
            Kind::Local(root) => match std::fs::remove_file(root.join(rel)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(SinkError::Io {
                    path: self.display(rel),
                    source,
                }),
            },
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::store_path(prefix, rel);
                match runtime.block_on(store.delete(&path)) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(source) => Err(SinkError::Store {
                        path: self.display(rel),
                        source,
                    }),
                }
            }
        }
    }

    /// Starts a new file at `rel` (a `/`-separated path under the destination). Nothing is
    /// visible at `rel` until [`OutputFile::commit`].
    pub fn create(&self, rel: &str) -> Result<OutputFile, SinkError> {
        let display = self.display(rel);
        let mut staged = None;
        let sink: Box<dyn FileSink> = match &self.kind {
            Kind::Local(root) => {
                let sink = LocalSink::create(&root.join(rel))?;
                let name = sink
                    .tmp
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                staged = name.map(|n| match rel.rfind('/') {
                    Some(i) => format!("{}{n}", &rel[..=i]),
                    None => n,
                });
                Box::new(sink)
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::store_path(prefix, rel);
                Box::new(StoreSink {
                    writer: object_store::buffered::BufWriter::with_capacity(
                        store.clone(),
                        path,
                        PART_SIZE,
                    ),
                    runtime: runtime.clone(),
                    display: display.clone(),
                })
            }
        };
        Ok(OutputFile {
            inner: Arc::new(Mutex::new(FileState {
                sink: Some(sink),
                written: 0,
            })),
            display,
            staged,
        })
    }
}

/// Multipart part size for object stores (S3 needs at least 5 MiB per part).
const PART_SIZE: usize = 10 * 1024 * 1024;

/// Where the bytes of one file go until it is committed or aborted.
trait FileSink: Write + Send {
    fn commit(self: Box<Self>) -> Result<(), SinkError>;
    fn abort(self: Box<Self>) -> Result<(), SinkError>;
}

struct LocalSink {
    file: std::io::BufWriter<std::fs::File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl LocalSink {
    fn create(target: &Path) -> Result<Self, SinkError> {
        let io = |source| SinkError::Io {
            path: target.display().to_string(),
            source,
        };
        let dir = target.parent().unwrap_or(Path::new("."));
        // A new partition folder's name must survive a power loss with the files in it.
        crate::durable::create_dirs(dir).map_err(io)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let tmp = dir.join(format!(".{name}.{unique}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(io)?;
        Ok(LocalSink {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            tmp,
            target: target.to_path_buf(),
        })
    }
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl FileSink for LocalSink {
    fn commit(self: Box<Self>) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: self.target.display().to_string(),
            source,
        };
        let file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(io)?;
        if let Some(dir) = self.target.parent() {
            // Make the rename durable; not every platform can open a folder, so best effort.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn abort(self: Box<Self>) -> Result<(), SinkError> {
        drop(self.file);
        match std::fs::remove_file(&self.tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SinkError::Io {
                path: self.tmp.display().to_string(),
                source,
            }),
        }
    }
}

struct StoreSink {
    writer: object_store::buffered::BufWriter,
    runtime: tokio::runtime::Handle,
    display: String,
}

impl Write for StoreSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.runtime.block_on(self.writer.write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FileSink for StoreSink {
    fn commit(mut self: Box<Self>) -> Result<(), SinkError> {
        let display = self.display.clone();
        self.runtime
            .clone()
            .block_on(self.writer.shutdown())
            .map_err(|source| SinkError::Io {
                path: display,
                source,
            })
    }

    fn abort(mut self: Box<Self>) -> Result<(), SinkError> {
        let display = self.display.clone();
        self.runtime
            .clone()
            .block_on(self.writer.abort())
            .map_err(|source| SinkError::Store {
                path: display,
                source,
            })
    }
}

struct FileState {
    sink: Option<Box<dyn FileSink>>,
    written: u64,
}

/// A file being written. Clones share the file: format writers write through one clone while
/// the owner keeps another to read the byte count and to commit or abort.
#[derive(Clone)]
pub struct OutputFile {
    inner: Arc<Mutex<FileState>>,
    display: String,
    /// A local file's temporary name (relative to the destination) until its commit renames
    /// it: the writer fence deletes it, so a fenced writer's rename can only fail.
    staged: Option<String>,
}

impl OutputFile {
    /// Bytes written so far (as encoded and compressed).
    pub fn bytes_written(&self) -> u64 {
        self.inner.lock().expect("file state lock").written
    }

    /// Where the file will appear, for messages.
    pub fn location(&self) -> &str {
        &self.display
    }

    /// The temporary name of a local file, relative to the destination (object stores: none).
    pub fn staged(&self) -> Option<&str> {
        self.staged.as_deref()
    }

    /// Makes the file visible, whole. Returns its size.
    pub fn commit(self) -> Result<u64, SinkError> {
        let mut state = self.inner.lock().expect("file state lock");
        let sink = state.sink.take().ok_or_else(|| closed(&self.display))?;
        sink.commit()?;
        Ok(state.written)
    }

    /// Discards the file; nothing becomes visible.
    pub fn abort(self) -> Result<(), SinkError> {
        let mut state = self.inner.lock().expect("file state lock");
        match state.sink.take() {
            Some(sink) => sink.abort(),
            None => Ok(()),
        }
    }
}

fn closed(display: &str) -> SinkError {
    SinkError::Io {
        path: display.to_string(),
        source: std::io::Error::other("the file is already committed or aborted"),
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut state = self.inner.lock().expect("file state lock");
        let sink = state
            .sink
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the file is already committed or aborted"))?;
        let n = sink.write(buf)?;
        state.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut state = self.inner.lock().expect("file state lock");
        match state.sink.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
