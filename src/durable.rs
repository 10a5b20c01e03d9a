//! Folder entries that survive a power loss: a new file or folder is durable only once the
//! folder holding its name has been fsync'd too. Used wherever a commit relies on a name
//! (data files, checkpoint records, the spill's manifest, WAL segments).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// Makes the entries of folder `dir` durable (names created, renamed or removed in it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
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
    use std::path::PathBuf;

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
