//! Folder entries that survive a power loss: a new file or folder is durable only once the
//! folder holding its name has been fsync'd too. Used wherever a commit relies on a name
//! (data files, checkpoint records, the spill's manifest, WAL segments).

use std::path::Path;

/// Makes the entries of folder `dir` durable (names created, renamed or removed in it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Creates folder `dir` and its missing parents, syncing each new folder's parent so that its
/// name is durable. Costs one `stat` when `dir` exists.
pub fn create_dirs(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.is_dir() {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    // Parents first: each folder's name, then the names inside it.
    for m in missing.iter().rev() {
        if let Some(parent) = m.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_folders_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b=1/c");
        super::create_dirs(&deep).unwrap();
        assert!(deep.is_dir());
        super::create_dirs(&deep).unwrap();
        super::sync_dir(&deep).unwrap();
    }
}
