//! The write-ahead log of pushed data: segmented, checksummed, replayable.
//!
//! Positions are logical: the byte position of a record's payload in the stream of all
//! payloads ever appended (record headers do not count), so they serve as source offsets and a
//! checkpoint's next offset is a WAL position. A folder holds segments named by the position of
//! their first record (`00000000000000000000.wal`); each starts with a magic header, then
//! records: `len: u32 LE, crc32: u32 LE (of pos and payload), pos: u64 LE, payload`.
//!
//! Opening scans every segment. A bad record in the last segment that no valid record follows
//! is a torn tail (a crash during an append, never acknowledged: acknowledgement waits for the
//! fsync): the segment is cut there and the damage is reported. A bad record anywhere else (an
//! earlier segment, or with valid records after it) is corruption of acknowledged data and an
//! error naming the file and byte offset; with [`Damage::MoveAside`] the damaged part and every
//! later segment are moved into `damaged/` in the folder (never deleted) and the log opens
//! without them. Segments wholly below the committed position are deleted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cut::Mark;
use identity::{log_id, read_small, write_small, BASE_FILE};
pub use runs::Runs;
use segment::{crc, create_segment, scan, segment_path, sync_dir};

const MAGIC: &[u8; 8] = b"SLWAL\x00\x00\x01";
const RECORD_HEADER: u64 = 16;
/// A length above this is garbage, not a record (bodies are limited far below it).
pub const MAX_RECORD: u64 = 1 << 30;

/// Errors of the WAL, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("WAL {path}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An export refused, or stopped (it names where and why).
    #[error("WAL {path}: {reason}")]
    Export { path: PathBuf, reason: String },
    #[error("WAL {dir}: a record of {len} bytes is larger than the limit of 1 GiB")]
    TooLarge { dir: PathBuf, len: u64 },
    #[error("WAL {dir}: position {want} was already released (the log starts at {start})")]
    Released { dir: PathBuf, want: u64, start: u64 },
    /// The disk is full: nothing of the record stayed (the segment was cut back), and the log
    /// takes records again once there is room.
    #[error("WAL {path}: the disk is full ({source}); nothing of the record was kept")]
    Full {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The identity of the log in folder `dir` (`None`: it has none yet), read without changing
/// the folder.
pub fn read_id(dir: &Path) -> Result<Option<String>, WalError> {
    Ok(identity::read_small(dir, identity::ID_FILE)?.filter(|id| !id.is_empty()))
}

/// Whether an error says the disk or the quota is full (ENOSPC, EDQUOT).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Logs a push refused for a full WAL disk at most once every 10 s, with how many were
/// refused since (each is answered 503 anyway): clients retrying wrote one line per request
/// for as long as the disk stayed full, onto what may be the same disk.
pub fn warn_full(e: &WalError) {
    static FULL: Every = Every::new();
    // A clock that never steps back (a wall clock set back held every warning until it
    // caught up).
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let now_ms = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64;
    if let Some(refused) = FULL.tick(now_ms, 10_000) {
        tracing::warn!(error = %e, refused, "pushes refused: the WAL's disk is full (logged at most every 10 s)");
    }
}

/// Events counted and let through at most once per period.
struct Every {
    last_ms: std::sync::atomic::AtomicI64,
    count: std::sync::atomic::AtomicU64,
}

impl Every {
    const fn new() -> Self {
        Every {
            last_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts an event at `now_ms`; `Some(events since the last let through)` when a period
    /// has passed since then.
    fn tick(&self, now_ms: i64, period_ms: i64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.count.fetch_add(1, Relaxed);
        let last = self.last_ms.load(Relaxed);
        (now_ms.saturating_sub(last) >= period_ms
            && self
                .last_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok())
        .then(|| self.count.swap(0, Relaxed))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What opening found: segments, records, and the torn tail cut off, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    pub records: u64,
    pub start: u64,
    pub end: u64,
    /// (segment, byte offset where it was cut, bytes dropped, why).
    pub truncated: Option<(PathBuf, u64, u64, String)>,
    /// Damage moved aside: (segment, byte offset of the damage, the folder it went to, bytes
    /// moved, why).
    pub moved: Option<(PathBuf, u64, PathBuf, u64, String)>,
}

/// What opening does with damage before the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Damage {
    /// Refuse to open, naming the file and byte offset.
    #[default]
    Refuse,
    /// Move the damaged part and everything after it into a new folder `damaged/<time>[-<n>]/` and open.
    MoveAside,
}

#[derive(Debug, Clone)]
struct Segment {
    base: u64,
    path: PathBuf,
}

/// A write-ahead log in one folder.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Vec<Segment>,
    /// The last segment, open for appending.
    file: Arc<File>,
    file_len: u64,
    end: u64,
    /// Reading cursor: (segment base, byte offset in it, logical position there).
    cursor: Option<(u64, u64, u64)>,
    /// The record read last: (segment base, its header's offset, its position, its length). A
    /// push replay cut inside it reads on from there without a scan of the segment.
    last_read: Option<(u64, u64, u64, u64)>,
    reader: Option<(u64, File)>,
    /// Where damage found at open was moved: the log was cut there, so a position past its
    /// end (a spill's) no longer proves that what the log holds is committed.
    moved_to: Option<PathBuf>,
    /// The log's identity ([`ID_FILE`]); none while a full disk keeps it from being written
    /// (the next open tries again).
    id: Option<String>,
    /// The folder's runs, this open's last ([`runs`]).
    runs: Runs,
    /// Everything before this position is in committed files (the last `release`).
    committed: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, refusing damage before its end (see
    /// [`Wal::open_with`]).
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, OpenReport), WalError> {
        Self::open_with(dir, segment_bytes, Damage::Refuse)
    }

    /// Opens (or creates) the log in `dir`. A torn tail is cut and reported; damage before it
    /// is an error, or moved aside per `damage`.
    pub fn open_with(
        dir: &Path,
        segment_bytes: u64,
        damage: Damage,
    ) -> Result<(Wal, OpenReport), WalError> {
        // Each folder made, and its name, durable (the state folder may be new too); one
        // found made (by the state lock, or by hand) has its name synced once too.
        crate::durable::create_dirs(dir).map_err(io(dir))?;
        let mut bases: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(stem) = name.strip_suffix(".wal") else {
                continue;
            };
            match stem.parse::<u64>() {
                Ok(base) if stem.len() == 20 => bases.push(base),
                _ => {
                    return Err(WalError::Corrupt {
                        path: entry.path(),
                        offset: 0,
                        reason:
                            "not a WAL segment name (20 digits, `.wal`); move it out of the folder"
                                .into(),
                    })
                }
            }
        }
        bases.sort_unstable();
        let mut report = OpenReport::default();
        let mut segments = Vec::new();
        let mut end = bases.first().copied().unwrap_or(0);
        let mut last_len = 0u64;
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_path(dir, base);
            let last = i + 1 == bases.len();
            if base != end {
                return Err(WalError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "the segment starts at position {base}, but the previous one ends at {end}"
                    ),
                });
            }
            let mut s = scan(&path, base)?;
            // A damaged header before valid records is damage like any other (moved aside
            // with the records, which `wal export` still reads); without any, no segment.
            let mut after_header = None;
            if s.bad_magic {
                after_header = damage::after_bad_header(&path, &s, base)?;
                if after_header.is_none() {
                    return Err(WalError::Corrupt {
                        path,
                        offset: 0,
                        reason: "not a sluice WAL segment (bad magic); move it out of the folder"
                            .into(),
                    });
                }
                s.bad = Some("the segment header is damaged (bad magic)".into());
                (s.good_len, s.records, s.end) = (0, 0, base);
            }
            if let Some(why) = s.bad {
                let follows = match after_header {
                    Some(at) if last => Some(at),
                    _ if last => damage::valid_record_after(&path, s.good_len, s.end)?,
                    _ => None,
                };
                if !last || follows.is_some() {
                    // Where the records after the damage begin: what moving it aside takes
                    // with it, and an export from there gives back.
                    let after = match follows {
                        Some(at) => segment::position_at(&path, at)?,
                        None => bases.get(i + 1).copied(),
                    };
                    let why = match follows {
                        Some(at) => format!(
                            "{why}; a valid record follows at byte {at} (acknowledged data may lie after the damage)"
                        ),
                        None => why,
                    };
                    if damage == Damage::Refuse {
                        let from = after.map_or("<position>".to_string(), |p| p.to_string());
                        return Err(WalError::Corrupt {
                            path,
                            offset: s.good_len,
                            reason: format!(
                                "{why}. `sluice wal export JOB --past-damage --from {from} \
                                 --output rest.jsonl` writes out the records after it; then \
                                 `sluice run JOB --move-wal-damage` moves the damaged part and \
                                 everything after it aside and starts without them; push \
                                 rest.jsonl again once it runs"
                            ),
                        });
                    }
                    let later: Vec<PathBuf> = bases[i + 1..]
                        .iter()
                        .map(|&b| segment_path(dir, b))
                        .collect();
                    let (to, moved) = damage::move_aside(dir, &path, s.good_len, &later)?;
                    report.moved = Some((path.clone(), s.good_len, to, moved, why));
                    report.records += s.records;
                    end = s.end;
                    last_len = s.good_len.max(8);
                    segments.push(Segment { base, path });
                    break;
                }
                // A torn tail: cut it (rewrite the header if even that is torn).
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                if s.good_len < 8 {
                    f.set_len(0).map_err(io(&path))?;
                    if let Err(e) = (&f).write_all(MAGIC) {
                        if !is_disk_full(&e) {
                            return Err(io(&path)(e));
                        }
                        // No record in it, and no room for its header: gone (durably: back
                        // after a crash, it would stand in the log's way as a gap), and made
                        // again by the first append there is room for.
                        drop(f);
                        std::fs::remove_file(&path).map_err(io(&path))?;
                        sync_dir(dir)?;
                        report.truncated = Some((path.clone(), 0, s.file_len, why));
                        end = s.end;
                        break;
                    }
                } else {
                    f.set_len(s.good_len).map_err(io(&path))?;
                }
                f.sync_all().map_err(io(&path))?;
                report.truncated = Some((
                    path.clone(),
                    s.good_len.max(8),
                    s.file_len.saturating_sub(s.good_len),
                    why,
                ));
                last_len = s.good_len.max(8);
            } else {
                last_len = s.file_len;
            }
            report.records += s.records;
            end = s.end;
            segments.push(Segment { base, path });
        }
        if segments.is_empty() {
            let path = segment_path(dir, end);
            match create_segment(&path) {
                Ok(()) => {
                    sync_dir(dir)?;
                    segments.push(Segment { base: end, path });
                    last_len = 8;
                }
                // A full disk: the log opens empty at `end`, and the first append there is
                // room for makes its segment (pushes are refused with 503 until then).
                Err(WalError::Io { source, .. }) if is_disk_full(&source) => {
                    let _ = std::fs::remove_file(&path);
                    tracing::warn!(wal = %dir.display(), error = %source, "the disk is full: the log's first segment is made by the first append there is room for");
                }
                Err(e) => return Err(e),
            }
        }
        let id = log_id(dir)?;
        let runs = Runs::start(dir, end, report.moved.is_some())?;
        // With no segment yet, the folder stands in for the file appends go to (the first
        // append makes a segment and opens it).
        let current = segments
            .last()
            .map_or(dir.to_path_buf(), |s| s.path.clone());
        let file = match segments.last() {
            Some(_) => OpenOptions::new().append(true).open(&current),
            None => File::open(&current),
        }
        .map_err(io(&current))?;
        // What a killed process wrote may still be only in the page cache: make it durable
        // before it counts as such.
        file.sync_all().map_err(io(&current))?;
        report.segments = segments.len();
        report.start = segments.first().map_or(end, |s| s.base);
        report.end = end;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                segment_bytes: segment_bytes.max(1024),
                segments,
                file: Arc::new(file),
                file_len: last_len,
                end,
                cursor: None,
                last_read: None,
                reader: None,
                moved_to: report.moved.as_ref().map(|m| m.2.clone()),
                id,
                runs,
                committed: 0,
            },
            report,
        ))
    }

    /// The log's identity: the same for as long as its folder lives.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The folder's runs, this open's last: which checkpoints of this identity count this
    /// folder's positions (a copy of the folder has runs of its own).
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// The other log's checkpoint (its log, position) this log last continued from.
    pub fn base(&self) -> Result<Option<(String, u64)>, WalError> {
        Ok(read_small(&self.dir, BASE_FILE)?.and_then(|t| {
            let (id, pos) = t.split_once(' ')?;
            Some((id.to_string(), pos.parse().ok()?))
        }))
    }

    /// Records that this log continues from position `pos` of log `theirs`.
    pub fn set_base(&self, theirs: &str, pos: u64) -> Result<(), WalError> {
        write_small(&self.dir, BASE_FILE, &format!("{theirs} {pos}"))
    }

    /// The first position still in the log (the end when it holds no segment: a new segment
    /// could not be created past the end, see [`Self::seek_check`]).
    pub fn start(&self) -> u64 {
        self.segments.first().map_or(self.end, |s| s.base)
    }

    /// The position after the last record.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Appends one record (not yet durable: see `sync_handle`). Returns its (start, end). A
    /// full disk refuses it ([`WalError::Full`]: also while this process's run is not yet
    /// recorded).
    pub fn append(&mut self, payload: &[u8]) -> Result<(u64, u64), WalError> {
        if payload.len() as u64 > MAX_RECORD {
            return Err(WalError::TooLarge {
                dir: self.dir.clone(),
                len: payload.len() as u64,
            });
        }
        // Nothing enters the log under a run the folder has not recorded (a full disk kept it
        // out at the open): the next start would count it as the run before's.
        self.runs.record(&self.dir)?;
        let mut retried = false;
        loop {
            if self.segments.is_empty() {
                // A segment past the end could not be created before (a full disk): again now.
                self.start_segment(self.end)?;
            } else if self.file_len + RECORD_HEADER + payload.len() as u64 > self.segment_bytes
                && self.file_len > MAGIC.len() as u64
            {
                // Emptied in place (or removed, when it could not be renamed: the next round
                // starts a segment), else rolled.
                if self.recycle()? {
                    continue;
                }
                self.roll(self.end)?;
            }
            let pos = self.end;
            let mut h = [0u8; RECORD_HEADER as usize];
            h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            h[4..8].copy_from_slice(&crc(pos, payload).to_le_bytes());
            h[8..16].copy_from_slice(&pos.to_le_bytes());
            let path = &self.segments.last().expect("a segment").path;
            let mut f: &File = &self.file;
            if let Err(e) = f.write_all(&h).and_then(|()| f.write_all(payload)) {
                if !is_disk_full(&e) {
                    return Err(io(path)(e));
                }
                // Cut what landed of the record (cutting needs no room): the log is as before.
                self.file.set_len(self.file_len).map_err(io(path))?;
                let full = WalError::Full {
                    path: path.clone(),
                    source: e,
                };
                // Once: an emptied segment is not emptied again.
                if !retried && self.recycle()? {
                    retried = true;
                    continue;
                }
                return Err(full);
            }
            self.file_len += RECORD_HEADER + payload.len() as u64;
            self.end += payload.len() as u64;
            return Ok((pos, self.end));
        }
    }

    /// The file to fsync to make every append so far durable (earlier segments were synced when
    /// they were closed). Call `sync_data` on it without holding the log's lock.
    pub fn sync_handle(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Closes the current segment (durably) and starts a new one at `base`.
    fn roll(&mut self, base: u64) -> Result<(), WalError> {
        if let Some(old) = self.segments.last() {
            self.file.sync_data().map_err(io(&old.path))?;
        }
        self.start_segment(base)
    }

    /// Creates a segment at `base` (durably) and appends to it from now on. On failure nothing
    /// of it stays (a later attempt creates it afresh) and the log is as before; a full disk is
    /// [`WalError::Full`].
    fn start_segment(&mut self, base: u64) -> Result<(), WalError> {
        let path = segment_path(&self.dir, base);
        let full = |e: WalError| match e {
            WalError::Io { path, source } if is_disk_full(&source) => {
                WalError::Full { path, source }
            }
            e => e,
        };
        // A name taken already is not this call's to remove.
        if let Err(e) = create_segment(&path) {
            if !matches!(&e, WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
            {
                let _ = std::fs::remove_file(&path);
            }
            return Err(full(e));
        }
        let opened = sync_dir(&self.dir).and_then(|()| {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io(&path))
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // The new segment holds no record: remove it, so that a later attempt creates
                // it afresh (if that fails too, the error that counts is the first one).
                let _ = std::fs::remove_file(&path);
                return Err(full(e));
            }
        };
        self.file = Arc::new(file);
        self.file_len = MAGIC.len() as u64;
        self.segments.push(Segment { base, path });
        Ok(())
    }

    /// How many segment files the log has.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }
}

mod cut;
mod damage;
pub mod export;
mod free;
#[cfg(test)]
mod full_disk_tests;
mod identity;
mod read;
mod runs;
mod segment;
#[cfg(test)]
mod tests;
