//! Object-store keys of relative paths: segments already escaped for URLs kept as they are,
//! the keys earlier versions used, listings that start after a name, the folders directly
//! in a folder, whether a folder holds any record, and the destination of a folder inside one.

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use std::time::SystemTime;

use super::{again, Destination, Kind, StoreError};

/// True when `segment` is kept as its own key: every `%` starts a `%XX` escape and no
/// character is one object_store escapes (its `PathPart` set, less `%` and `~`). What the
/// path template renders qualifies, and so does every key object_store itself made, so a key
/// maps to itself: a key used as a relative path addresses the same object.
pub(super) fn literal_segment(segment: &str) -> bool {
    let b = segment.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                i += 3
            }
            b'%' | b'/' | b'\\' | b'{' | b'^' | b'}' | b'`' | b']' | b'"' | b'>' | b'[' | b'<'
            | b'#' | b'|' | b'*' | b'?' => return false,
            c if c.is_ascii_control() => return false,
            _ => i += 1,
        }
    }
    !segment.is_empty() && segment != "." && segment != ".."
}

impl Destination {
    /// The key of `rel` in the store, as `object_store` (and so a Delta log's reader) names
    /// it: a segment already URL-escaped is its own key, another is percent-encoded where
    /// object_store encodes (a `%` that starts no escape, `#`, `[`, ...); a local path is its
    /// own key. A key given back as a relative path (from a listing, or a Delta log) addresses
    /// the same object.
    pub fn key(&self, rel: &str) -> String {
        match &self.kind {
            Kind::Local(_) => rel.to_string(),
            Kind::Store { .. } => Self::store_path(&StorePath::default(), rel).to_string(),
        }
    }

    /// The key earlier versions gave `rel` (every segment through object_store's escaping:
    /// `%` became `%25`, `~` `%7E`), when it differs from today's: deletes and existence
    /// checks of files named by older records look there too.
    pub(super) fn legacy_path(prefix: &StorePath, rel: &str) -> Option<StorePath> {
        if !rel.contains(['%', '~']) {
            return None;
        }
        let mut p = prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        (p != Self::store_path(prefix, rel)).then_some(p)
    }

    /// The files directly in folder `dir` (ending in `/`) whose names sort after `after`,
    /// as paths relative to the destination; on object stores only those are listed.
    pub fn list_after(&self, dir: &str, after: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .listed_after(dir, after, false)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// [`Self::list_after`] with each file's last-modified time, by the store's clock (a
    /// local file's as its file system keeps it).
    pub fn list_after_dated(
        &self,
        dir: &str,
        after: &str,
    ) -> Result<Vec<(String, SystemTime)>, StoreError> {
        self.listed_after(dir, after, true)
    }

    fn listed_after(
        &self,
        dir: &str,
        after: &str,
        dated: bool,
    ) -> Result<Vec<(String, SystemTime)>, StoreError> {
        let mut out = match &self.kind {
            Kind::Local(root) => {
                let mut out = Vec::new();
                for (name, kind) in local_entries(&root.join(dir))? {
                    if name.as_str() <= after || !kind.is_some_and(|k| k.is_file()) {
                        continue;
                    }
                    let modified = if dated {
                        match std::fs::metadata(root.join(dir).join(&name))
                            .and_then(|m| m.modified())
                        {
                            Ok(t) => t,
                            // Removed since it was listed.
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(source) => {
                                return Err(StoreError::Io {
                                    path: self.display(&format!("{dir}{name}")),
                                    source,
                                })
                            }
                        }
                    } else {
                        SystemTime::UNIX_EPOCH
                    };
                    out.push((format!("{dir}{name}"), modified));
                }
                out
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let base = Self::store_path(prefix, dir);
                let offset = base.clone().join(after);
                let listed: Vec<object_store::ObjectMeta> = again(|| {
                    runtime.block_on(store.list_with_offset(Some(&base), &offset).try_collect())
                })
                .map_err(|source| StoreError::Store {
                    path: self.display(dir),
                    source,
                })?;
                listed
                    .into_iter()
                    .filter_map(|m| {
                        let rest = m.location.prefix_match(&base)?.collect::<Vec<_>>();
                        match rest.as_slice() {
                            [name] => {
                                Some((format!("{dir}{}", name.as_ref()), m.last_modified.into()))
                            }
                            _ => None,
                        }
                    })
                    .collect()
            }
        };
        out.sort();
        Ok(out)
    }

    /// The names of the folders directly in folder `dir` (ending in `/`), sorted; on object
    /// stores the common prefixes of one delimited listing (nothing deeper is listed).
    pub fn folders(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = match &self.kind {
            Kind::Local(root) => local_entries(&root.join(dir))?
                .into_iter()
                .filter(|(name, kind)| {
                    kind.is_some_and(|k| k.is_dir()) && !passed_over(name, true, dir.as_ref())
                })
                .map(|(name, _)| name)
                .collect(),
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let base = Self::store_path(prefix, dir);
                let listed = again(|| runtime.block_on(store.list_with_delimiter(Some(&base))))
                    .map_err(|source| StoreError::Store {
                        path: self.display(dir),
                        source,
                    })?;
                listed
                    .common_prefixes
                    .iter()
                    .filter_map(|p| {
                        p.prefix_match(&base)?
                            .next()
                            .map(|n| n.as_ref().to_string())
                    })
                    .collect()
            }
        };
        out.sort();
        Ok(out)
    }

    /// Whether any record is under folder `dir` (at any depth): a file with content whose
    /// name does not start with `.`. Not counted: hidden temporary files of unfinished
    /// writes (local, HDFS) and the empty objects some tools make to show a folder on object
    /// stores. A local walk that ends at the first record; on object stores one listing,
    /// read until the first record.
    pub fn any(&self, dir: &str) -> Result<bool, StoreError> {
        self.any_named(dir, |_| true)
    }

    /// [`Destination::any`] for records whose file name `named` takes.
    pub fn any_named(&self, dir: &str, named: impl Fn(&str) -> bool) -> Result<bool, StoreError> {
        match &self.kind {
            Kind::Local(root) => {
                let mut stack = vec![root.join(dir)];
                let mut walked = Walked::default();
                while let Some(path) = stack.pop() {
                    if !walked.first(&path) {
                        continue;
                    }
                    let within = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                    for (name, _) in local_entries(&path)? {
                        if !named(&name) {
                            continue;
                        }
                        let p = path.join(&name);
                        match std::fs::metadata(&p) {
                            Ok(m) if passed_over(&name, m.is_dir(), &within) => {}
                            Ok(m) if m.is_dir() => stack.push(p),
                            Ok(m) if m.len() > 0 => return Ok(true),
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(source) => {
                                return Err(StoreError::Io {
                                    path: p.display().to_string(),
                                    source,
                                })
                            }
                        }
                    }
                }
                Ok(false)
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let base = Self::store_path(prefix, dir);
                let found = again(|| {
                    runtime.block_on(async {
                        let mut listed = store.list(Some(&base));
                        while let Some(meta) = listed.try_next().await? {
                            let name = meta.location.filename().unwrap_or_default();
                            if meta.size > 0 && !name.starts_with('.') && named(name) {
                                return Ok(true);
                            }
                        }
                        Ok(false)
                    })
                })
                .map_err(|source| StoreError::Store {
                    path: self.display(dir),
                    source,
                })?;
                Ok(found)
            }
        }
    }

    /// The destination of folder `rel` inside this one (the same store and settings); `None`
    /// for a path that would leave it (`..`, a root).
    pub fn child(&self, rel: &str) -> Option<Destination> {
        if rel.starts_with('/') {
            return None;
        }
        let rel = rel.trim_end_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|s| s.is_empty() || s == ".." || s == "." || s.contains('\\'))
        {
            return None;
        }
        let kind = match &self.kind {
            Kind::Local(root) => Kind::Local(root.join(rel)),
            Kind::Store {
                store,
                prefix,
                runtime,
            } => Kind::Store {
                store: store.clone(),
                prefix: Self::store_path(prefix, rel),
                runtime: runtime.clone(),
            },
        };
        Some(Destination {
            url: format!("{}/{rel}/", self.url.trim_end_matches('/')),
            kind,
            late: self.late,
        })
    }
}

/// The entries of local folder `path` with their kinds (where they can be told), none when
/// it does not exist.
fn local_entries(
    path: &std::path::Path,
) -> Result<Vec<(String, Option<std::fs::FileType>)>, StoreError> {
    let io = |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        out.push((name, e.file_type().ok()));
    }
    Ok(out)
}

/// Whether a local listing passes over entry `name` (a folder if `is_dir`) of the folder
/// `within` (relative to the destination's root). Hidden files are passed over: a local
/// write's temporary is `.<name>.<tag>.tmp`. So are hidden folders outside `_sluice/`
/// (`.snapshot`, `.git`: sluice writes no data into one, a path value starting with `.` is
/// encoded). Inside `_sluice/` every folder is sluice's own, named after a partition's key
/// (a Kafka topic may start with `.`, `.audit-0`), and is listed as object stores list it.
pub(super) fn passed_over(name: &str, is_dir: bool, within: &std::path::Path) -> bool {
    name.starts_with('.') && !(is_dir && within.starts_with("_sluice"))
}

/// The folders a local walk has entered, by device and inode: a folder reached again (a
/// symbolic link to a folder above it, or two links to one folder) is not walked again. A
/// walk follows links to folders (a destination may keep part of its tree on another disk),
/// so without this a link to `..` made every listing endless, and two such links made it
/// exponential.
#[derive(Default)]
pub(super) struct Walked(std::collections::HashSet<(u64, u64)>);

impl Walked {
    /// Whether folder `path` is entered for the first time (marked now). A folder whose
    /// identity cannot be read (gone meanwhile) counts as new: reading it then says why.
    pub(super) fn first(&mut self, path: &std::path::Path) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(path) {
                Ok(m) => self.0.insert((m.dev(), m.ino())),
                Err(_) => true,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            true
        }
    }
}
