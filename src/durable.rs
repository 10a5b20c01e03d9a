//! Folder entries that survive a power loss: a new file or folder is durable only once the
//! folder holding its name has been fsync'd too. Used wherever a commit relies on a name
//! (data files, checkpoint records, the spill's manifest, WAL segments).
//!
//! Threads that need the same folder synced share fsyncs: one that asks while a sync of the
//! folder runs waits for it to end, then one sync serves every thread that asked meanwhile
//! (each changed the folder before asking, so a sync started after they asked covers them).
//! Many partitions committing at once into one folder, or claimed at once under one folder,
//! paid one fsync each.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

/// Makes the entries of folder `dir` durable (names created, renamed or removed in it), with
/// an fsync that started after this call did (shared with other threads asking meanwhile).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    sync_dir_with(dir, |d| std::fs::File::open(d)?.sync_all())
}

/// Writes the small file `name` of folder `dir` whole or not at all, durably: under a hidden
/// temporary name, synced, renamed over `name`, then the folder synced. A reader finds the old
/// text or the new one, never a part; a crash leaves at most the temporary file behind.
pub fn write_small(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// [`sync_dir`] after a name was made in `dir` (a rename, a link), for a write whose caller
/// relies on it: an error fails the write. A folder this process cannot open or a file system
/// that cannot sync folders (`EACCES`, `EINVAL`, unsupported) leaves the name as durable as
/// that file system makes it, as before; so does a platform other than Unix.
pub fn sync_name(dir: &Path, synced: std::io::Result<()>) -> std::io::Result<()> {
    match synced {
        Err(e)
            if cfg!(unix)
                && !matches!(
                    e.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::InvalidInput | ErrorKind::Unsupported
                ) =>
        {
            Err(e)
        }
        Err(e) => {
            tracing::debug!(folder = %dir.display(), error = %e, "cannot sync this folder; a new name in it is as durable as its file system makes it");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The syncs of folders being synced or asked for.
static SYNCS: Mutex<Option<HashMap<PathBuf, Syncs>>> = Mutex::new(None);
/// Signalled when a sync ends.
static SYNCED: Condvar = Condvar::new();

/// One folder's syncs: whether one runs, and the round the next one serves.
struct Syncs {
    running: bool,
    next: Option<Arc<Round>>,
}

/// The threads one sync serves share its result.
#[derive(Default)]
struct Round(OnceLock<Result<(), (ErrorKind, String)>>);

fn sync_dir_with(
    dir: &Path,
    sync: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let lock = || SYNCS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut g = lock();
    let round = g
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_path_buf())
        .or_insert(Syncs {
            running: false,
            next: None,
        })
        .next
        .get_or_insert_with(Default::default)
        .clone();
    loop {
        if let Some(r) = round.0.get() {
            return r.clone().map_err(|(kind, m)| std::io::Error::new(kind, m));
        }
        // The round has not run: it is still the folder's next one.
        let s = g
            .as_mut()
            .and_then(|m| m.get_mut(dir))
            .expect("a folder with a round waiting has an entry");
        if !s.running {
            s.running = true;
            s.next = None;
            drop(g);
            let _end = EndOfSync { dir, round: &round };
            let r = sync(dir);
            let _ = round.0.set(
                r.as_ref()
                    .map(|_| ())
                    .map_err(|e| (e.kind(), e.to_string())),
            );
            return r;
        }
        g = SYNCED.wait(g).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Ends a running sync when dropped, after it returned or while it panics (its round then
/// fails): the folder's next round may start, and the threads waiting wake.
struct EndOfSync<'a> {
    dir: &'a Path,
    round: &'a Round,
}

impl Drop for EndOfSync<'_> {
    fn drop(&mut self) {
        let _ = self.round.0.set(Err((
            ErrorKind::Other,
            "the folder's fsync panicked".to_string(),
        )));
        let mut g = SYNCS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = g.as_mut() {
            if let Some(s) = m.get_mut(self.dir) {
                s.running = false;
                if s.next.is_none() {
                    m.remove(self.dir);
                }
            }
        }
        SYNCED.notify_all();
    }
}

/// A folder's identity: device, inode and birth time (an inode number is soon reused; where
/// the file system keeps no birth time, the first two).
type Identity = (u64, u64, Option<SystemTime>);

/// Folders whose names this process has made durable, with their identity then: created or
/// found, then their parent synced. A folder removed and made again since (by anyone) is
/// another folder. Bounded: past `KNOWN_MAX` entries it starts again (costing a few syncs).
static KNOWN: Mutex<Option<HashMap<PathBuf, Identity>>> = Mutex::new(None);
const KNOWN_MAX: usize = 4096;

/// A folder's identity, if it is one.
fn identity(d: &Path) -> Option<Identity> {
    std::fs::metadata(d)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino(), m.created().ok()))
}

/// Creates folder `dir` and its missing parents, and makes the name of each durable: every
/// folder on the way up that this process has not made durable yet has its parent synced,
/// whoever created it. (A folder that merely exists may have just been created by another
/// thread or process that has not synced its parent yet: a file committed inside it could
/// lose its folder's name in a power loss.) A parent that cannot be opened or synced (no read
/// permission, a read-only file system) fails the call only when this call created the
/// folder in it; one found existing is taken as its owner left it, as before. Costs a lookup
/// and a `stat` when `dir` is known.
pub fn create_dirs(dir: &Path) -> std::io::Result<()> {
    create_dirs_with(dir, &mut |d| sync_dir(d))
}

fn create_dirs_with(
    dir: &Path,
    sync: &mut dyn FnMut(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let known = |d: &Path, id: Option<Identity>| {
        id.is_some()
            && KNOWN
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .and_then(|k| k.get(d))
                .copied()
                == id
    };
    // `dir` and its parents up to the first folder known durable, the deepest first, each
    // with whether it exists already.
    let mut chain = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() {
        let id = identity(d);
        if known(d, id) {
            break;
        }
        chain.push((d, id.is_some()));
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    if chain.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    // Parents first: each folder's name, then the names inside it.
    for &(m, existed) in chain.iter().rev() {
        if let Some(parent) = m.parent() {
            match sync(parent) {
                Ok(()) => {}
                Err(e)
                    if existed
                        && matches!(
                            e.kind(),
                            ErrorKind::PermissionDenied
                                | ErrorKind::ReadOnlyFilesystem
                                | ErrorKind::InvalidInput
                        ) =>
                {
                    tracing::debug!(folder = %parent.display(), error = %e, "cannot sync a folder this process did not create; taken as its owner left it");
                }
                // A file system that cannot sync folders: names are as durable as it makes
                // them (as `sync_name` takes it).
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    tracing::debug!(folder = %parent.display(), error = %e, "this file system cannot sync folders");
                }
                Err(e) => return Err(e),
            }
        }
        let Some(id) = identity(m) else {
            continue;
        };
        let mut k = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
        let k = k.get_or_insert_with(HashMap::new);
        if k.len() >= KNOWN_MAX {
            k.clear();
        }
        k.insert(m.to_path_buf(), id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// How many threads wait for the next sync of `dir`.
    fn joined(dir: &Path) -> usize {
        super::SYNCS
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|m| m.get(dir))
            .and_then(|s| s.next.as_ref())
            .map_or(0, |r| std::sync::Arc::strong_count(r) - 1)
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    /// Threads asking while a sync of the folder runs share one sync that starts after the
    /// running one ends, and each gets its result (here a failure); a sync asked for after
    /// that is a sync of its own.
    #[test]
    fn threads_asking_during_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let syncs = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            // Dropped if this closure fails, so the first sync never holds the scope.
            let (release, held) = mpsc::channel::<()>();
            let (d, syncs) = (&d, &syncs);
            let first = scope.spawn(move || {
                super::sync_dir_with(d, |_| {
                    syncs.fetch_add(1, Ordering::SeqCst);
                    let _ = held.recv();
                    Ok(())
                })
            });
            wait_for("the first sync to start", || {
                syncs.load(Ordering::SeqCst) == 1
            });
            let later: Vec<_> = (0..5)
                .map(|_| {
                    scope.spawn(move || {
                        super::sync_dir_with(d, |_| {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
                        })
                    })
                })
                .collect();
            wait_for("five threads to wait for the next sync", || joined(d) == 5);
            // None of them has been served by the sync that started before they asked.
            assert_eq!(syncs.load(Ordering::SeqCst), 1);
            release.send(()).unwrap();
            first.join().unwrap().unwrap();
            for t in later {
                let err = t.join().unwrap().unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
            }
        });
        assert_eq!(syncs.load(Ordering::SeqCst), 2, "one sync for the five");
        super::sync_dir_with(&d, |_| {
            syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), 3);
        assert!(
            super::SYNCS
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|m| !m.contains_key(&d)),
            "an idle folder keeps no entry"
        );
    }

    /// A folder sync's error fails the write that made a name, unless the folder cannot be
    /// synced here at all.
    #[test]
    fn a_new_name_fails_with_its_folders_sync_unless_the_folder_cannot_be_synced() {
        use std::io::{Error, ErrorKind};
        let d = Path::new(".");
        assert!(super::sync_name(d, Ok(())).is_ok());
        assert_eq!(
            super::sync_name(d, Err(Error::other("EIO")))
                .unwrap_err()
                .kind(),
            ErrorKind::Other
        );
        for kind in [
            ErrorKind::PermissionDenied,
            ErrorKind::InvalidInput,
            ErrorKind::Unsupported,
        ] {
            assert!(
                super::sync_name(d, Err(Error::from(kind))).is_ok(),
                "{kind:?}"
            );
        }
    }

    /// A sync that panics fails its round and ends: the next caller syncs again (before,
    /// the folder stayed "running" for good and every later caller waited forever).
    #[test]
    fn a_sync_that_panics_does_not_hold_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let panicked = std::panic::catch_unwind(|| {
            super::sync_dir_with(&d, |_| -> std::io::Result<()> {
                panic!("a sync that panics")
            })
        });
        assert!(panicked.is_err());
        let (tx, rx) = mpsc::channel();
        let d2 = d.clone();
        std::thread::spawn(move || tx.send(super::sync_dir(&d2).is_ok()));
        let ok = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("timed out after 30 s waiting for a sync after one that panicked");
        assert!(ok);
        assert!(
            super::SYNCS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|m| !m.contains_key(&d)),
            "an idle folder keeps no entry"
        );
    }

    /// A real folder synced from many threads at once: every call returns, and succeeds.
    #[test]
    fn many_threads_sync_one_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|scope| {
            for i in 0..16 {
                let d = dir.path();
                scope.spawn(move || {
                    for j in 0..20 {
                        std::fs::write(d.join(format!("{i}-{j}")), b"x").unwrap();
                        super::sync_dir(d).unwrap();
                    }
                });
            }
        });
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 320);
    }

    #[test]
    fn nested_folders_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b=1/c");
        super::create_dirs(&deep).unwrap();
        assert!(deep.is_dir());
        super::create_dirs(&deep).unwrap();
        super::sync_dir(&deep).unwrap();
    }

    /// A folder that exists is not taken for durable: another thread or process may have
    /// created it and not synced its parent yet. Its name, and its parents' up to the root,
    /// are synced once; a second call syncs nothing; a folder removed since is made again.
    #[test]
    fn folders_found_existing_have_their_names_synced_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        // As another writer leaves it: created, its parent not synced yet.
        std::fs::create_dir_all(a.join("b")).unwrap();
        let deep = a.join("b/c");
        let synced = synced_by(&deep);
        assert!(deep.is_dir());
        for d in [a.join("b"), a.clone(), dir.path().to_path_buf()] {
            assert!(
                synced.contains(&d),
                "{} not synced: {synced:?}",
                d.display()
            );
        }
        // Parents before the names inside them.
        let at = |d: &PathBuf| synced.iter().position(|s| s == d).unwrap();
        assert!(at(&dir.path().to_path_buf()) < at(&a) && at(&a) < at(&a.join("b")));
        let synced = synced_by(&deep);
        assert!(synced.is_empty(), "synced again: {synced:?}");
        std::fs::remove_dir_all(&a).unwrap();
        let synced = synced_by(&deep);
        assert!(deep.is_dir());
        assert!(synced.contains(&a) && synced.contains(&a.join("b")));
        // Removed and made again by someone else: another folder, synced again.
        std::fs::remove_dir_all(a.join("b")).unwrap();
        std::fs::create_dir_all(&deep).unwrap();
        let synced = synced_by(&deep);
        assert!(
            synced.contains(&a) && synced.contains(&a.join("b")),
            "{synced:?}"
        );
    }

    /// The folders `create_dirs` syncs to make `dir`, in order.
    fn synced_by(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut synced = Vec::new();
        super::create_dirs_with(dir, &mut |d| {
            synced.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
        synced
    }

    /// A parent this process may not open (mode 0711) or sync (read-only) fails the call only
    /// when the call created the folder in it.
    #[test]
    fn a_parent_that_cannot_be_synced_fails_only_for_a_folder_made_here() {
        let dir = tempfile::tempdir().unwrap();
        let found = dir.path().join("found");
        std::fs::create_dir(&found).unwrap();
        let denied = |d: &std::path::Path| {
            if d == dir.path() {
                Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            } else {
                Ok(())
            }
        };
        super::create_dirs_with(&found.join("new"), &mut |d| denied(d)).unwrap();
        assert!(found.join("new").is_dir());
        let err =
            super::create_dirs_with(&dir.path().join("made/new"), &mut |d| denied(d)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    }
}
