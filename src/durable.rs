//! Folder entries that survive a power loss: a new file or folder is durable only once the
//! folder holding its name has been fsync'd too. Used wherever a commit relies on a name
//! (data files, checkpoint records, the spill's manifest, WAL segments).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Makes the entries of folder `dir` durable (names created, renamed or removed in it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Folders whose names this process has made durable: created (or found), then their parent
/// synced. Bounded: past `KNOWN_MAX` entries it starts again (costing a few syncs).
static KNOWN: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
const KNOWN_MAX: usize = 4096;

/// Creates folder `dir` and its missing parents, and makes the name of each durable: every
/// folder on the way up that this process has not made durable yet has its parent synced,
/// whoever created it. (A folder that merely exists may have just been created by another
/// thread or process that has not synced its parent yet: a file committed inside it could
/// lose its folder's name in a power loss.) Costs a lookup when `dir` is known.
pub fn create_dirs(dir: &Path) -> std::io::Result<()> {
    create_dirs_with(dir, &mut |d| sync_dir(d))
}

fn create_dirs_with(
    dir: &Path,
    sync: &mut dyn FnMut(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let known = |d: &Path| {
        KNOWN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|k| k.contains(d))
            && d.is_dir()
    };
    // `dir` and its parents up to the first folder known durable, the deepest first.
    let mut chain = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !known(d) {
        chain.push(d);
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
    for m in chain.iter().rev() {
        if let Some(parent) = m.parent() {
            sync(parent)?;
        }
        let mut k = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
        let k = k.get_or_insert_with(HashSet::new);
        if k.len() >= KNOWN_MAX {
            k.clear();
        }
        k.insert(m.to_path_buf());
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
        let mut synced: Vec<PathBuf> = Vec::new();
        let deep = a.join("b/c");
        super::create_dirs_with(&deep, &mut |d| {
            synced.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
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
        synced.clear();
        super::create_dirs_with(&deep, &mut |d| {
            synced.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert!(synced.is_empty(), "synced again: {synced:?}");
        std::fs::remove_dir_all(&a).unwrap();
        super::create_dirs_with(&deep, &mut |d| {
            synced.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert!(deep.is_dir());
        assert!(synced.contains(&a) && synced.contains(&a.join("b")));
    }
}
