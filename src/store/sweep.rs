//! Temporary files that no commit will finish: a local write's hidden
//! `.<name>.<pid>-<ns>-<count>.tmp` (its name's first 180 bytes)
//! left by a process killed before its claim (a claimed attempt's temporary names are removed
//! by the fence). Removed at start when older than any live write can be. Object stores keep
//! incomplete multipart uploads instead, which the store's lifecycle rule removes (see
//! Limits in docs/OPERATIONS.md).

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{Destination, Kind, StoreError};

/// The process id and time (ns) in the name of a local write's temporary file; `None` for
/// any other name.
fn temp_id(name: &str) -> Option<(u64, u128)> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    // `<name>.<pid>-<nanos>-<count>` (without the count before this version)
    let (_, id) = rest.rsplit_once('.')?;
    let parts: Vec<&str> = id.split('-').collect();
    let digits = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits.then(|| {
        (
            parts[0].parse().unwrap_or(u64::MAX),
            parts[1].parse().unwrap_or(0),
        )
    })
}

impl Destination {
    /// Removes other processes' temporary files last modified more than `older_than` ago,
    /// walking the whole local destination (object stores: nothing to do). Returns how many
    /// and their bytes.
    pub fn sweep_temp_files(&self, older_than: Duration) -> Result<(usize, u64), StoreError> {
        let Kind::Local(root) = &self.kind else {
            return Ok((0, 0));
        };
        let io = |path: &Path, source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let (mut n, mut bytes) = (0, 0);
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io(&dir, e))?;
                let kind = entry.file_type().map_err(|e| io(&entry.path(), e))?;
                if kind.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                // This process's own are its live writes (another repo's, whose files may
                // stay open longer than this one's `max_age`, or paused): never swept here.
                // An earlier process of the same id (a container's PID 1) named its own
                // before this one started.
                match temp_id(&entry.file_name().to_string_lossy()) {
                    Some((pid, at))
                        if pid != u64::from(std::process::id())
                            || at < super::file::process_start_ns() => {}
                    _ => continue,
                }
                let Ok(meta) = entry.metadata() else {
                    continue; // removed meanwhile
                };
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .unwrap_or_default();
                if age > older_than {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => {
                            n += 1;
                            bytes += meta.len();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&entry.path(), e)),
                    }
                }
            }
        }
        Ok((n, bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn old_temporary_files_go_and_everything_else_stays() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        // A file being written now, and one left by a killed process (another id) long ago.
        let mut live = dest.create("dt=1/a-0-0-00.parquet").unwrap();
        live.write_all(b"x").unwrap();
        let mut dead = dest.create("dt=2/b-0-0-00.parquet").unwrap();
        dead.write_all(b"xyz").unwrap();
        let staged = dir.path().join(dead.staged().unwrap());
        let name = staged.file_name().unwrap().to_string_lossy().into_owned();
        let pid = format!(".{}-", std::process::id());
        let old = staged.with_file_name(name.replace(&pid, ".4000000000-"));
        std::fs::rename(&staged, &old).unwrap();
        let aged = |p: &Path| {
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(7200))
                .unwrap();
        };
        aged(&old);
        // An earlier process with this one's id (a container's PID 1 restarted): its time is
        // before this process's start.
        let earlier = dir
            .path()
            .join(format!("dt=2/.e.parquet.{}-1-0.tmp", std::process::id()));
        std::fs::write(&earlier, b"e").unwrap();
        aged(&earlier);
        // This process's own write, open as long (another repo's, with a longer `max_age`).
        let mut mine = dest.create("dt=3/c-0-0-00.parquet").unwrap();
        mine.write_all(b"c").unwrap();
        let mine_staged = dir.path().join(mine.staged().unwrap());
        aged(&mine_staged);
        dest.put_atomic("dt=2/kept.parquet", b"k", false).unwrap();
        std::fs::write(dir.path().join("dt=2/.hidden.tmp"), b"not ours").unwrap();
        let (n, _) = dest.sweep_temp_files(Duration::from_secs(3600)).unwrap();
        assert_eq!(n, 2);
        assert!(!old.exists());
        assert!(!earlier.exists(), "an earlier process's of this id stayed");
        assert!(dir.path().join(live.staged().unwrap()).exists());
        assert!(dir.path().join("dt=2/kept.parquet").exists());
        assert!(dir.path().join("dt=2/.hidden.tmp").exists());
        assert!(mine_staged.exists(), "this process's own write was swept");
        live.commit().unwrap();
        mine.commit().unwrap();
    }

    /// A temporary name stays within a file system's 255 bytes for any target name that
    /// does, and is one the sweep knows.
    #[test]
    fn a_long_names_temporary_name_fits_and_is_swept() {
        for n in [1, 100, 181, 255] {
            let target = std::path::PathBuf::from(format!("/d/{}", "é".repeat(n / 2)));
            let tmp = super::super::file::tmp_name(&target);
            assert!(tmp.len() <= 255 && temp_id(&tmp).is_some(), "{tmp}");
        }
        assert!(
            temp_id(".a-0-1-ab.parquet.123-456.tmp") == Some((123, 456)),
            "an older version's"
        );
    }
}
