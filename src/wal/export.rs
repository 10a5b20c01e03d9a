//! `sluice wal export`: a WAL folder's records from a position on, as they were pushed (whole
//! lines), read without changing the folder (no torn tail cut, no run started). For an
//! operator to take acknowledged records out of a log whose start was refused (a copy of its
//! folder, or another process's log, committed past it) before moving the log aside, and to
//! push them again.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::damage::{after_bad_header, valid_record_after};
use super::segment::{scan_from, segment_path, Scan};
use super::{io, WalError};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The positions written: `[from, end)`.
    pub from: u64,
    pub end: u64,
    pub segments: usize,
    /// A torn tail where reading stopped (a crash during an append, never acknowledged):
    /// (segment, why).
    pub torn: Option<(PathBuf, String)>,
    /// Stretches passed over (`past_damage`): the segment (or the gap before it), the
    /// positions `[from, to)` whose records are not written, and why.
    pub passed: Vec<(PathBuf, u64, u64, String)>,
}

/// Writes the payloads of the log in `dir` from position `from` (below the log's first
/// position, from there) to `out`. Refused: a `from` inside a line or past the log's end.
/// Damage before valid records, or a missing stretch between segments, is an error after what
/// came before it was written (acknowledged records may lie past it), unless `past_damage`:
/// then the export goes on at the next valid record (or segment), and each stretch passed
/// over is in [`Exported::passed`].
pub fn export(
    dir: &Path,
    from: u64,
    past_damage: bool,
    out: &mut dyn Write,
) -> Result<Exported, WalError> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let stem = name.to_str()?.strip_suffix(".wal")?;
            (stem.len() == 20).then(|| stem.parse().ok()).flatten()
        })
        .collect();
    bases.sort_unstable();
    let first = bases.first().copied().unwrap_or(from);
    let mut done = Exported {
        from: from.max(first),
        end: first,
        segments: 0,
        torn: None,
        passed: Vec::new(),
    };
    let refuse = |path: PathBuf, reason: String| WalError::Export { path, reason };
    let mut write = |pos: u64, payload: &[u8]| -> std::io::Result<()> {
        let end = pos + payload.len() as u64;
        if end > from {
            let skip = from.saturating_sub(pos) as usize;
            if skip > 0 && payload[skip - 1] != b'\n' {
                return Err(std::io::Error::other(format!(
                    "position {from} is inside a line; start at a line's start (a \
                     position a refused start or a checkpoint names)"
                )));
            }
            out.write_all(&payload[skip..])?;
        }
        Ok(())
    };
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        if bases.get(i + 1).is_some_and(|&next| next <= from) {
            continue; // wholly before `from`
        }
        if done.segments > 0 && base != done.end {
            let why = format!(
                "it starts at position {base}, the one before ends at {}: records may be missing",
                done.end
            );
            if !past_damage || base < done.end {
                return Err(refuse(path, format!("{why}; the export stops here")));
            }
            done.passed.push((path.clone(), done.end, base, why));
        }
        let mut s = scan_from(&path, base, None, &mut write)?;
        done.segments += 1;
        if s.bad_magic {
            if after_bad_header(&path, &s, base)?.is_none() {
                return Err(refuse(
                    path,
                    "not a sluice WAL segment (bad magic): the export stops here".into(),
                ));
            }
            // Its records are read past the damaged header (a run refuses it, or with
            // `--move-wal-damage` moves it aside); damage after it is judged below.
            tracing::warn!(segment = %path.display(), "the segment's header is damaged; its records are read past it");
        }
        // Each damaged stretch with valid records after it: an error, or passed over. A
        // candidate that was no record after all leaves the stretch's cause as it was.
        let mut cause: Option<String> = None;
        while let Some(why) = s.bad.take() {
            let stretch = cause
                .take()
                .unwrap_or_else(|| format!("{why} at byte {}", s.good_len));
            let last = i + 1 == bases.len();
            let follows = if last || past_damage {
                valid_record_after(&path, s.good_len, s.end)?
            } else {
                None
            };
            let Some(at) = follows.filter(|_| past_damage) else {
                if past_damage && !last {
                    // Nothing valid after it in this segment: on at the next one.
                    let next = bases[i + 1];
                    done.passed
                        .push((path.clone(), s.end, next.max(s.end), stretch));
                    s.end = next.max(s.end);
                    break;
                }
                if !last || follows.is_some() {
                    return Err(WalError::Corrupt {
                        path,
                        offset: s.good_len,
                        reason: format!(
                            "{why}, and valid records follow: the export stops here \
                             (`--past-damage` goes on past it; `sluice run --move-wal-damage` \
                             moves the damage aside)"
                        ),
                    });
                }
                done.torn = Some((path.clone(), why));
                break;
            };
            let lost_from = s.end;
            let next = scan_from(&path, base, Some(at), &mut write)?;
            if next.records == 0 && next.bad.is_some() {
                // A record that only looked valid: look again past it.
                s = Scan {
                    good_len: at,
                    ..next
                };
                s.end = lost_from;
                cause = Some(stretch);
                continue;
            }
            done.passed
                .push((path.clone(), lost_from, next.start, stretch));
            s = next;
        }
        done.end = s.end;
    }
    if from > done.end {
        return Err(refuse(
            dir.to_path_buf(),
            format!("position {from} is past the log's end ({})", done.end),
        ));
    }
    out.flush().map_err(io(Path::new("(output)")))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Wal;

    #[test]
    fn records_from_a_position_on_come_out_as_pushed_and_the_folder_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1024).unwrap();
        let mut all = Vec::new();
        for i in 0..40 {
            let rec = format!("{{\"i\":{i}}}\n{{\"j\":{i}}}\n");
            wal.append(rec.as_bytes()).unwrap();
            all.extend_from_slice(rec.as_bytes());
        }
        wal.sync_handle().sync_all().unwrap();
        drop(wal);
        let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        segments.sort();
        let (first, last) = (segments[0].clone(), segments[segments.len() - 1].clone());
        // A torn tail: half a record.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let before = std::fs::read(&last).unwrap();

        let mut out = Vec::new();
        let e = export(dir.path(), 0, false, &mut out).unwrap();
        assert_eq!(out, all);
        assert_eq!((e.from, e.end), (0, all.len() as u64));
        assert!(e.segments > 1, "{e:?}");
        assert!(e.torn.as_ref().is_some_and(|(p, _)| *p == last), "{e:?}");
        assert_eq!(std::fs::read(&last).unwrap(), before, "the folder changed");

        // From a line inside a record on.
        let at = all.iter().position(|&b| b == b'j').unwrap() as u64 - 2;
        let mut out = Vec::new();
        export(dir.path(), at, false, &mut out).unwrap();
        assert_eq!(out, &all[at as usize..]);
        assert!(out.starts_with(b"{\"j\":0}"));
        let mut out = Vec::new();
        let e = export(dir.path(), all.len() as u64, false, &mut out).unwrap();
        assert!(out.is_empty() && e.from == all.len() as u64);
        // Inside a line, or past the end: refused.
        for bad in [at + 1, all.len() as u64 + 1] {
            assert!(
                export(dir.path(), bad, false, &mut Vec::new()).is_err(),
                "{bad}"
            );
        }
        // Damage with valid records after it: an error, after what came before.
        let mut bytes = std::fs::read(&first).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let mut out = Vec::new();
        let e = export(dir.path(), 0, false, &mut out).unwrap_err();
        assert!(e.to_string().contains("valid records follow"), "{e}");
        assert!(!e.to_string().contains("corrupt at byte 0:"), "{e}");
        assert!(!out.is_empty() && all.starts_with(&out));
        // Past the damage: everything but the damaged record, which is named.
        let mut past = Vec::new();
        let e = export(dir.path(), 0, true, &mut past).unwrap();
        let [(seg, lost_from, lost_to, why)] = &e.passed[..] else {
            panic!("{e:?}");
        };
        assert_eq!(*seg, first);
        assert!(why.contains("checksum"), "{why}");
        let (a, b) = (*lost_from as usize, *lost_to as usize);
        assert_eq!(past, [&all[..a], &all[b..]].concat());
        assert!(b > a && past.len() > out.len());
        // Damage inside a segment, with valid records after it there too.
        let mut bytes = std::fs::read(&last).unwrap();
        bytes[30] ^= 0xff;
        std::fs::write(&last, bytes).unwrap();
        let mut past = Vec::new();
        let e = export(dir.path(), 0, true, &mut past).unwrap();
        assert_eq!(e.passed.len(), 2, "{e:?}");
        let mut want = Vec::new();
        let mut at = 0;
        for (_, f, t, _) in &e.passed {
            want.extend_from_slice(&all[at..*f as usize]);
            at = *t as usize;
        }
        want.extend_from_slice(&all[at..]);
        assert_eq!(past, want);
        assert!(e.torn.is_some(), "the torn tail is still one");
    }
}
