//! Bytes in a destination: an object_store URL (or a local path) → a place to write files that
//! appear whole or not at all, read, list and delete them, and write small records atomically
//! (create-only for the commit protocol's records).
//!
//! Local files are written under a hidden temporary name (`.name.<id>.tmp`, the name cut to its first 180 bytes) in the target
//! folder, fsync'd, then renamed. Object stores get uploads through object_store's `BufWriter`
//! (a single put for small files, a multipart upload for large ones); nothing is visible until
//! the upload completes.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

mod file;
mod keys;
mod record;
pub mod remote;
mod sweep;
mod timeout;
mod upload;

pub use file::OutputFile;
use file::{FileSink, LocalSink};
use keys::literal_segment;
pub use record::RECORD_CAP;
use upload::UploadSink;

/// Errors from destinations. Each names the URL or path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid destination URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("object store error for {path}: {source}{hint}", hint = credentials_hint(source))]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("{path} already exists (pass --overwrite to replace it)")]
    Exists { path: String },
    /// A create-only put was refused, and the object there holds the very bytes it sent: its
    /// own put may have landed before the store reported an error (object_store retries a
    /// 5xx, a conditional put too), or another writer wrote the same bytes. Which one cannot
    /// be told, so neither is assumed.
    #[error(
        "{path} already exists, holding the same bytes as this write: this write may have \
         landed before the store reported an error, or another wrote the same (pass \
         --overwrite to write it again)"
    )]
    ExistsSame { path: String },
    /// A record of sluice's (`_sluice/`, a file's identity) larger than any it writes: a
    /// damaged or foreign file, not read into memory.
    #[error("{path}: {size} bytes, more than a record of sluice's holds ({cap}): a damaged or foreign file (move it aside)")]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("dead-letter topic `{topic}` on {brokers}: {reason}")]
    DeadLetterTopic {
        topic: String,
        brokers: String,
        reason: String,
    },
}

/// What to do when a store found no credentials and fell back to a cloud's metadata service
/// (unreachable off that cloud: the error names only its address).
fn credentials_hint(e: &object_store::Error) -> &'static str {
    let text = e.to_string();
    // EC2 and Azure VMs (169.254.169.254), ECS tasks (169.254.170.2), GCE.
    if [
        "169.254.169.254",
        "169.254.170.2",
        "metadata.google.internal",
    ]
    .iter()
    .any(|a| text.contains(a))
    {
        " (no credentials were given, so the cloud's metadata service was asked, which answers \
         only on that cloud and for an instance or task with a role: give them in \
         [sink.storage] (access_key_id and secret_access_key; for Azure, account and \
         access_key; for GCS, service_account_path) or the AWS_/AZURE_/GOOGLE_ environment \
         variables, or give the instance a role)"
    } else {
        ""
    }
}

impl StoreError {
    /// True when the file is not there.
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            StoreError::Store { source, .. } => {
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
    /// How long after a write reported failure it may still take effect (see
    /// [`Destination::late_window`]).
    late: std::time::Duration,
}

/// The bytes of a path kept for a data file's name: `{repo.}{topic}-{partition}-{offset}-
/// {tag}{.backfill-<job>}.{ext}` with a topic name of up to 249 bytes, and its `/`.
pub const NAME_ROOM: usize = 320;

/// object_store's own request timeout, when `request_timeout_secs` does not set one.
const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    pub fn parse(url: &str, runtime: tokio::runtime::Handle) -> Result<Self, StoreError> {
        Self::parse_with(url, &Default::default(), runtime)
    }

    /// Like [`Destination::parse`], also accepting `s3://`, `az://`, `abfs[s]://`, `gs://` and
    /// `hdfs://` URLs, set up with `opts` (see [`remote::open_store`]).
    pub fn parse_with(
        url: &str,
        opts: &remote::StoreOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Url {
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
                late: std::time::Duration::ZERO,
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
                    late: std::time::Duration::ZERO,
                })
            }
            "memory" => Ok(Destination {
                url: url.to_string(),
                kind: Kind::Store {
                    store: Arc::new(object_store::memory::InMemory::new()),
                    prefix: StorePath::from(parsed.path().trim_matches('/')),
                    runtime,
                },
                late: std::time::Duration::ZERO,
            }),
            _ => {
                let (store, prefix) = remote::open_store(&parsed, opts)?;
                Ok(Destination {
                    url: url.to_string(),
                    kind: Kind::Store {
                        store,
                        prefix,
                        runtime,
                    },
                    late: request_timeout(opts),
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
            // An in-memory store answers at once; any other waits as object_store does.
            late: if url.starts_with("memory:") {
                std::time::Duration::ZERO
            } else {
                DEFAULT_REQUEST_TIMEOUT
            },
        }
    }

    /// How long after a write (a publish) reported failure it may still take effect: a
    /// request the server goes on with after the client gave up on it, about one request
    /// timeout (object stores, HDFS; see `request_timeout`). None locally, where a failed
    /// rename either happened before it returned or not at all; zero for `memory://`.
    pub fn late_window(&self) -> Option<std::time::Duration> {
        match self.kind {
            Kind::Local(_) => None,
            Kind::Store { .. } => Some(self.late),
        }
    }

    /// The most bytes the folders of a data file's path may take here: an object key holds
    /// 1,024 bytes (S3, Azure, GCS), a local path 4,095 (`PATH_MAX`); less the destination's
    /// own prefix and [`NAME_ROOM`] for the file's name.
    pub fn folder_room(&self) -> usize {
        let (limit, prefix): (usize, usize) = match &self.kind {
            Kind::Local(root) => (4095, root.as_os_str().len() + 1),
            Kind::Store { prefix, .. } => (1024, prefix.as_ref().len() + 1),
        };
        limit.saturating_sub(prefix).saturating_sub(NAME_ROOM)
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The folder of a local destination; `None` on an object store.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match &self.kind {
            Kind::Local(root) => Some(root),
            Kind::Store { .. } => None,
        }
    }

    /// The destination as a library that speaks `object_store` sees it (the Delta log): a
    /// store rooted at the storage's root and the destination's URL, ending in `/`.
    pub fn object_store(&self) -> Result<(Arc<dyn ObjectStore>, url::Url), StoreError> {
        let bad = |reason: String| StoreError::Url {
            url: self.url.clone(),
            reason,
        };
        match &self.kind {
            Kind::Local(root) => {
                let url = url::Url::from_directory_path(root)
                    .map_err(|_| bad("not an absolute local path".into()))?;
                Ok((Arc::new(object_store::local::LocalFileSystem::new()), url))
            }
            Kind::Store { store, prefix, .. } => {
                let mut url = url::Url::parse(&self.url).map_err(|e| bad(e.to_string()))?;
                url.set_query(None);
                url.set_path(&format!("/{prefix}/").replace("//", "/"));
                Ok((store.clone(), url))
            }
        }
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
            p = match object_store::path::PathPart::parse(part) {
                // A segment already escaped for URLs (what `[sink.partition]` renders) is the
                // key as it is, so folder names read the same on every store and Hive-style
                // readers decode them once, as locally.
                Ok(seg) if literal_segment(part) => p.join(seg),
                _ => p.join(part),
            };
        }
        p
    }

    /// True when a file exists at `rel`.
    pub fn exists(&self, rel: &str) -> Result<bool, StoreError> {
        match &self.kind {
            Kind::Local(root) => root
                .join(rel)
                .try_exists()
                .map_err(|source| StoreError::Io {
                    path: self.display(rel),
                    source,
                }),
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let paths = std::iter::once(Self::store_path(prefix, rel))
                    .chain(Self::legacy_path(prefix, rel));
                for path in paths {
                    match runtime.block_on(store.head(&path)) {
                        Ok(_) => return Ok(true),
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(source) => {
                            return Err(StoreError::Store {
                                path: self.display(rel),
                                source,
                            })
                        }
                    }
                }
                Ok(false)
            }
        }
    }

    /// Reads a whole file (tests, data files, Delta log entries).
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, StoreError> {
        self.read_up_to(rel, u64::MAX)
    }

    /// Writes a small file atomically. With `create_only`, fails with [`StoreError::Exists`] when
    /// the file is already there (fencing for checkpoint records).
    pub fn put_atomic(&self, rel: &str, bytes: &[u8], create_only: bool) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Local(root) => {
                let target = root.join(rel);
                let io = |source| StoreError::Io {
                    path: target.display().to_string(),
                    source,
                };
                let mut sink = LocalSink::create(&target)?;
                sink.write_all(bytes).map_err(io)?;
                Box::new(sink).commit(create_only)
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::store_path(prefix, rel);
                let payload = object_store::PutPayload::from(bytes.to_vec());
                // An answer cut off is written again: a create-only write that had landed is
                // then refused as existing, which every caller reads back as possibly its own.
                let put = || {
                    let opts = put_options(create_only);
                    runtime.block_on(store.put_opts(&path, payload.clone(), opts))
                };
                match again(put) {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::Exists {
                        path: self.display(rel),
                    }),
                    Err(source) => Err(StoreError::Store {
                        path: self.display(rel),
                        source,
                    }),
                }
            }
        }
    }

    /// Lists the files under the folder `rel` (recursively), as paths relative to the
    /// destination, sorted. Hidden temporary files of unfinished local writes are skipped
    /// (and hidden folders outside `_sluice/`: see `keys::passed_over`).
    pub fn list(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Local(root) => {
                let base = root.join(rel);
                let mut stack = vec![base];
                let mut walked = keys::Walked::default();
                while let Some(dir) = stack.pop() {
                    if !walked.first(&dir) {
                        continue;
                    }
                    // By name: a folder reached by two paths is listed under the same one
                    // at every listing (the first walked).
                    let io = |source| StoreError::Io {
                        path: dir.display().to_string(),
                        source,
                    };
                    let entries = match std::fs::read_dir(&dir) {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io(e)),
                    };
                    let mut names = Vec::new();
                    for entry in entries {
                        names.push(entry.map_err(io)?.file_name());
                    }
                    names.sort_unstable_by(|a, b| b.cmp(a));
                    let within = dir.strip_prefix(root).unwrap_or(&dir).to_path_buf();
                    for name in names {
                        let path = dir.join(&name);
                        let is_dir = path.is_dir();
                        if keys::passed_over(&name.to_string_lossy(), is_dir, &within) {
                            continue;
                        }
                        if is_dir {
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
                let listed: Vec<object_store::ObjectMeta> =
                    again(|| runtime.block_on(store.list(Some(&path)).try_collect())).map_err(
                        |source| StoreError::Store {
                            path: self.display(rel),
                            source,
                        },
                    )?;
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
    pub fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Local(root) => match std::fs::remove_file(root.join(rel)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(StoreError::Io {
                    path: self.display(rel),
                    source,
                }),
            },
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let paths = std::iter::once(Self::store_path(prefix, rel))
                    .chain(Self::legacy_path(prefix, rel));
                for path in paths {
                    match runtime.block_on(store.delete(&path)) {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        // Gone is what was asked: HDFS answers the delete of a missing path
                        // with an error of no kind (so every lost claim naming an escaped
                        // file, whose older key is never there, failed its settling once per
                        // file), and a delete can take effect yet report failure.
                        Err(source) => match runtime.block_on(store.head(&path)) {
                            Err(object_store::Error::NotFound { .. }) => {}
                            _ => {
                                return Err(StoreError::Store {
                                    path: self.display(rel),
                                    source,
                                })
                            }
                        },
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether a file committed at `rel` can be committed create-only
    /// ([`OutputFile::commit_new`]): on a local disk, when its file system makes hard links;
    /// object stores, always (a store that refuses conditional puts says so at the commit).
    pub fn commits_create_only(&self, rel: &str) -> bool {
        match &self.kind {
            Kind::Local(root) => {
                let target = root.join(rel);
                file::links_in(target.parent().unwrap_or(std::path::Path::new(".")))
            }
            Kind::Store { .. } => true,
        }
    }

    /// Makes the names in the folder `rel` durable before a reader relies on one it read
    /// there: a local destination's folder is synced (a write whose own folder sync failed
    /// left its name visible, and a power loss could still take it); an object store's
    /// objects are durable once listed or read.
    pub fn sync_folder(&self, rel: &str) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Local(root) => {
                let dir = root.join(rel);
                match file::sync_folder(&dir) {
                    // No folder: no name in it to rely on.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    r => r.map_err(|source| StoreError::Io {
                        path: dir.display().to_string(),
                        source,
                    }),
                }
            }
            Kind::Store { .. } => Ok(()),
        }
    }

    /// Starts a new file at `rel` (a `/`-separated path under the destination). Nothing is
    /// visible at `rel` until [`OutputFile::commit`].
    pub fn create(&self, rel: &str) -> Result<OutputFile, StoreError> {
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
                Box::new(UploadSink::new(
                    store.clone(),
                    path,
                    runtime.clone(),
                    display.clone(),
                ))
            }
        };
        Ok(OutputFile::new(sink, display, staged))
    }
}

/// A put's options: create-only (refused where an object is) or replacing.
pub(super) fn put_options(create_only: bool) -> object_store::PutOptions {
    object_store::PutOptions {
        mode: if create_only {
            object_store::PutMode::Create
        } else {
            object_store::PutMode::Overwrite
        },
        ..Default::default()
    }
}

/// The client's request timeout: `request_timeout_secs`, else a `timeout` among the raw
/// `options` (`timeout`, `aws_timeout`, `azure_timeout`, `google_timeout`, as object_store
/// reads them), else object_store's default of 30 s.
fn request_timeout(opts: &remote::StoreOptions) -> std::time::Duration {
    if let Some(n) = opts.request_timeout_secs {
        return std::time::Duration::from_secs(n);
    }
    opts.options
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            matches!(
                k.as_str(),
                "timeout" | "aws_timeout" | "azure_timeout" | "google_timeout"
            )
        })
        .find_map(|(_, v)| humantime::parse_duration(v).ok())
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
}

/// Runs a request (a read: get, list; or a small put) again after a short, growing pause when its answer's body was cut
/// off: object_store retries failed requests itself, but not a body that breaks while it is
/// read. Up to 4 tries in about 2 s; every other error is returned at once.
fn again<T>(
    mut read: impl FnMut() -> Result<T, object_store::Error>,
) -> Result<T, object_store::Error> {
    let mut pause = std::time::Duration::from_millis(100);
    for _ in 0..3 {
        match read() {
            Err(e @ object_store::Error::Generic { .. }) if e.to_string().contains("body") => {
                tracing::debug!(error = %e, "a store answer was cut off; reading again");
                std::thread::sleep(pause);
                pause *= 4;
            }
            other => return other,
        }
    }
    read()
}

#[cfg(test)]
mod tests;
