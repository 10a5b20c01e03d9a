//! A file being written to a destination: a local temporary file renamed on commit, or an
//! object-store upload completed on commit; aborted, nothing of it is visible.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::StoreError;

/// A local file's write buffer.
const LOCAL_BUFFER: usize = 256 * 1024;

/// A local file's writeback is started after every this many bytes written, so the fsync at
/// its commit waits for the last stretch only (a 34 MB file's waited 18 ms for all of it).
pub(super) const WRITEBACK_EVERY: u64 = 8 << 20;

/// Where the bytes of one file go until it is committed or aborted.
pub(super) trait FileSink: Write + Send {
    /// Makes the file visible. With `create_only`, fails with [`StoreError::Exists`] when a
    /// file is already at its name (see [`OutputFile::commit_new`] for how far that holds).
    fn commit(self: Box<Self>, create_only: bool) -> Result<(), StoreError>;
    fn abort(self: Box<Self>) -> Result<(), StoreError>;
    /// The memory this sink holds (a write buffer, an upload's parts), after `written` bytes
    /// were written to it.
    fn held(&mut self, written: u64) -> u64;
    /// The file is whole but not yet committed: give back what an open file costs (a local
    /// file's descriptor and buffer). Nothing is written after it.
    fn park(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A parked file: send what it still holds in memory to the store now, invisible until
    /// its commit (an object-store upload's last part), so it holds nothing while it waits.
    fn offload(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

pub(super) struct LocalSink {
    /// None once parked: written, synced and closed, waiting for its rename.
    pub(super) file: Option<std::io::BufWriter<std::fs::File>>,
    pub(super) tmp: PathBuf,
    target: PathBuf,
    /// Bytes written since writeback was last started.
    unsynced: u64,
}

/// Starts the kernel's writeback of what `file` holds dirty, without waiting for it.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call only reads
    // its arguments. A failure is harmless: the fsync at commit writes everything anyway.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File) {}

/// The most of a target's name its temporary file's name repeats: with the process, the
/// time and a count (at most 56 bytes more), it stays within the 255 bytes a file system
/// holds for any target name that fits.
const TMP_NAME_KEPT: usize = 180;

/// When this process first named a temporary file or swept (ns since the epoch): every
/// temporary name it makes holds a time at or after this, one of an earlier process with the
/// same id (a container's PID 1 restarted) an earlier one.
pub(super) fn process_start_ns() -> u128 {
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *START.get_or_init(now_ns)
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A hidden name, unique to this write, for `target`'s bytes until they are whole.
pub(super) fn tmp_name(target: &Path) -> String {
    process_start_ns();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut kept = name.len().min(TMP_NAME_KEPT);
    while !name.is_char_boundary(kept) {
        kept -= 1;
    }
    format!(
        ".{}.{}-{}-{}.tmp",
        &name[..kept],
        std::process::id(),
        now_ns(),
        COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl LocalSink {
    pub(super) fn create(target: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: target.display().to_string(),
            source,
        };
        let dir = target.parent().unwrap_or(Path::new("."));
        // A new partition folder's name must survive a power loss with the files in it.
        crate::durable::create_dirs(dir).map_err(io)?;
        let tmp = dir.join(tmp_name(target));
        let file = std::fs::File::create(&tmp).map_err(io)?;
        Ok(LocalSink {
            file: Some(std::io::BufWriter::with_capacity(LOCAL_BUFFER, file)),
            tmp,
            target: target.to_path_buf(),
            unsynced: 0,
        })
    }
}

/// Makes the names in folder `dir` durable, for a write or a reader that relies on them (see
/// [`crate::durable::sync_name`]). A unit test fails it once at point `local folder sync:
/// fail`, as a disk error would.
pub(super) fn sync_folder(dir: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    if crate::hooks::taken("local folder sync: fail") {
        return Err(std::io::Error::other("a folder sync failed (test)"));
    }
    crate::durable::sync_name(dir, crate::durable::sync_dir(dir))
}

/// Whether the file system of `dir` makes hard links, which a create-only commit takes there
/// (FAT, exFAT and some network and FUSE mounts do not): a probe file is linked and removed.
/// A folder that cannot be made or written says yes, and the write itself reports why.
pub(super) fn links_in(dir: &Path) -> bool {
    if crate::durable::create_dirs(dir).is_err() {
        return true;
    }
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let probe = dir.join(format!(
        ".sluice-link-probe-{}-{unique}",
        std::process::id()
    ));
    let linked = probe.with_extension("linked");
    if std::fs::write(&probe, b"").is_err() {
        return true;
    }
    // Only an answer that the file system makes no links says no (FAT answers EPERM); any
    // other failure is the commit's to report.
    let links = match std::fs::hard_link(&probe, &linked) {
        Ok(()) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
        ),
    };
    let _ = std::fs::remove_file(&linked);
    let _ = std::fs::remove_file(&probe);
    links
}

fn parked() -> std::io::Error {
    std::io::Error::other("the file is parked: whole, waiting for its commit")
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let file = self.file.as_mut().ok_or_else(parked)?;
        let n = file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= WRITEBACK_EVERY {
            self.unsynced = 0;
            start_writeback(file.get_ref());
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl FileSink for LocalSink {
    fn commit(mut self: Box<Self>, create_only: bool) -> Result<(), StoreError> {
        let committed = self.commit_as(create_only);
        if committed.is_err() {
            // A commit that failed leaves no temporary file of its own (the small records no
            // claim lists would pile up while a disk is full).
            let _ = std::fs::remove_file(&self.tmp);
        }
        committed
    }

    fn held(&mut self, written: u64) -> u64 {
        match self.file {
            // The buffer's pages are touched as it fills.
            Some(_) => written.min(LOCAL_BUFFER as u64),
            None => 0,
        }
    }

    fn park(&mut self) -> Result<(), StoreError> {
        if let Some(file) = self.file.take() {
            let io = |source| StoreError::Io {
                path: self.target.display().to_string(),
                source,
            };
            let file = file.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
        }
        Ok(())
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        drop(self.file);
        match std::fs::remove_file(&self.tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                path: self.tmp.display().to_string(),
                source,
            }),
        }
    }
}

impl LocalSink {
    /// Makes the file durable and gives it its name ([`FileSink::commit`]).
    fn commit_as(&mut self, create_only: bool) -> Result<(), StoreError> {
        self.park()?;
        let io = |source| StoreError::Io {
            path: self.target.display().to_string(),
            source,
        };
        if create_only {
            // A hard link fails if the target exists: an atomic create-only rename.
            let linked = std::fs::hard_link(&self.tmp, &self.target);
            let _ = std::fs::remove_file(&self.tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::Exists {
                        path: self.target.display().to_string(),
                    })
                }
                Err(e) => return Err(io(e)),
            }
            // The new name must be durable before anything that relies on it (a checkpoint
            // before its pending record is dropped): sync the folder. A failure is this
            // write's (a create-only write that reports failure but happened is one the
            // protocol expects).
            if let Some(dir) = self.target.parent() {
                sync_folder(dir).map_err(io)?;
            }
            return Ok(());
        }
        std::fs::rename(&self.tmp, &self.target).map_err(io)?;
        if let Some(dir) = self.target.parent() {
            // The rename is durable once its folder is synced. A failure fails the commit
            // (the file is visible: the reconcile that follows removes it).
            let synced = match crate::fault::fail_rename_sync() {
                Some(e) => Err(e),
                None => crate::durable::sync_dir(dir),
            };
            crate::durable::sync_name(dir, synced).map_err(io)?;
        }
        Ok(())
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
    pub(super) fn new(sink: Box<dyn FileSink>, display: String, staged: Option<String>) -> Self {
        OutputFile {
            inner: Arc::new(Mutex::new(FileState {
                sink: Some(sink),
                written: 0,
            })),
            display,
            staged,
        }
    }

    /// Bytes written so far (as encoded and compressed).
    pub fn bytes_written(&self) -> u64 {
        self.inner.lock().expect("file state lock").written
    }

    /// The memory the file's own buffers hold: a local file's write buffer (none once
    /// parked), or an object-store upload's buffered part and its parts in flight; 0 once
    /// committed or aborted.
    pub fn held_bytes(&self) -> u64 {
        let mut state = self.inner.lock().expect("file state lock");
        let written = state.written;
        state.sink.as_mut().map_or(0, |s| s.held(written))
    }

    /// Where the file will appear, for messages.
    pub fn location(&self) -> &str {
        &self.display
    }

    /// The temporary name of a local file, relative to the destination (object stores: none).
    pub fn staged(&self) -> Option<&str> {
        self.staged.as_deref()
    }

    /// Makes the file visible, whole, replacing any file of its name. Returns its size.
    pub fn commit(self) -> Result<u64, StoreError> {
        self.commit_as(false)
    }

    /// Makes the file visible, whole, only if no file has its name: else
    /// [`StoreError::Exists`], and nothing of this one is visible. Returns its size.
    ///
    /// Atomic on a local disk (a hard link) and for an object-store file put whole (up to
    /// one upload part: a conditional put; refused where the bytes there are this file's,
    /// [`StoreError::ExistsSame`] says it may have been its own put, retried after it
    /// landed, or another writer's of the same bytes). A larger object-store
    /// file completes a multipart upload, which object_store cannot make conditional: its
    /// name is checked once its other parts have landed, before its last one (under a part)
    /// is sent (an offloaded file's was sent already) and the upload completed, so two
    /// writers that finish within that time can both succeed.
    pub fn commit_new(self) -> Result<u64, StoreError> {
        self.commit_as(true)
    }

    fn commit_as(self, create_only: bool) -> Result<u64, StoreError> {
        let mut state = self.inner.lock().expect("file state lock");
        let sink = state.sink.take().ok_or_else(|| closed(&self.display))?;
        sink.commit(create_only)?;
        Ok(state.written)
    }

    /// The file is whole (its writer finished) but commits later: give back its descriptor
    /// and write buffer. See [`FileSink::park`].
    pub fn park(&self) -> Result<(), StoreError> {
        let mut state = self.inner.lock().expect("file state lock");
        match state.sink.as_mut() {
            Some(sink) => sink.park(),
            None => Err(closed(&self.display)),
        }
    }

    /// A parked file's bytes still in memory sent to the store, invisible until its commit.
    /// See [`FileSink::offload`].
    pub fn offload(&self) -> Result<(), StoreError> {
        let mut state = self.inner.lock().expect("file state lock");
        match state.sink.as_mut() {
            Some(sink) => sink.offload(),
            None => Err(closed(&self.display)),
        }
    }

    /// Discards the file; nothing becomes visible.
    pub fn abort(self) -> Result<(), StoreError> {
        let mut state = self.inner.lock().expect("file state lock");
        match state.sink.take() {
            Some(sink) => sink.abort(),
            None => Ok(()),
        }
    }
}

fn closed(display: &str) -> StoreError {
    StoreError::Io {
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
