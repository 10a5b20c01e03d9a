//! Values made safe for a path segment: ASCII letters, digits, `-`, `_`, `.` and `~` kept,
//! every other byte percent-encoded, a leading `_` or `.` encoded at the start of a segment,
//! a value's last `.` encoded (Azure Blob Storage refuses a path segment ending in `.`, and
//! Windows file systems drop it: one such value would stop its partition for good),
//! the null partition name for null and empty values (a value spelled like that name has every
//! `_` escaped), and long values, and folder names longer than a file system holds, cut and
//! hashed to a bounded length (see `paths`' module documentation). A data file's own name gets the same treatment of its first character.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::NULL_PARTITION;

/// Bytes kept as they are in rendered values.
pub(super) fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Appends the null partition name. At the start of a segment (no `field=` before it) its
/// leading `_` is percent-encoded like any value's, so the folder stays visible to readers.
pub(super) fn push_null(out: &mut String, seg_start: bool) {
    if seg_start {
        out.push_str("%5F");
        out.push_str(&NULL_PARTITION[1..]);
    } else {
        out.push_str(NULL_PARTITION);
    }
}

/// The longest rendered value kept whole (see the module's doc).
pub const MAX_VALUE: usize = 100;

/// Appends `value` made safe for a path segment (see the module documentation). `seg_start`:
/// the value starts a segment, so a leading `_` or `.` is percent-encoded too.
pub(super) fn push_sanitized(out: &mut String, value: &str, seg_start: bool) {
    let start = out.len();
    push_escaped(out, value, seg_start);
    if out.len() - start > MAX_VALUE {
        cut_hashed(out, start, MAX_VALUE, value.as_bytes());
    }
}

/// Cuts the rendered text of `out` from `start` on to `keep` bytes (never inside a `%XX`
/// escape; `~` fills what an escape leaves) and appends `~` and 16 hex digits of a hash of
/// `whole`, what was rendered: `keep` + 17 bytes, longer than any text kept whole.
pub(super) fn cut_hashed(out: &mut String, start: usize, keep: usize, whole: &[u8]) {
    // Rendered values are ASCII, a template's literal text may not be: do not cut a `%XX`
    // escape or a character in two.
    let mut cut = start + keep;
    let b = out.as_bytes();
    if b[cut - 1] == b'%' {
        cut -= 1;
    } else if b[cut - 2] == b'%' {
        cut -= 2;
    }
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    while out.len() < start + keep {
        out.push('~');
    }
    write!(out, "~{:016x}", hash(whole)).expect("writing to a String");
}

/// FNV-1a, 64 bits, of `bytes`: stable across versions and platforms.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The longest folder name kept whole, so that a cut one (17 bytes longer) is 255 bytes, the
/// most a file system holds. Each value is bounded ([`MAX_VALUE`]), but a segment may join
/// several (`{host}-{service}-{path}`), and a longer one failed every write of its rows, for
/// good.
pub const MAX_SEGMENT: usize = 238;

/// Cuts each folder name of the rendered path `path` (`/`-separated) longer than
/// [`MAX_SEGMENT`] to that many bytes, `~` and a hash of the whole name, as a long value is.
pub(super) fn cap_segments(path: &mut String, scratch: &mut Vec<u8>) {
    if path.len() <= MAX_SEGMENT {
        return;
    }
    cut_names(path, scratch, |name| {
        (name.len() > MAX_SEGMENT).then_some(MAX_SEGMENT)
    });
}

/// Cuts each folder name of the rendered path `path` (`/`-separated) for which `keep` says how
/// many bytes to keep: to that many, `~` and a hash of the whole name.
pub(super) fn cut_names(
    path: &mut String,
    scratch: &mut Vec<u8>,
    keep: impl Fn(&str) -> Option<usize>,
) {
    let mut start = 0;
    while start < path.len() {
        let end = path[start..].find('/').map_or(path.len(), |i| start + i);
        match keep(&path[start..end]) {
            Some(k) => {
                scratch.clear();
                scratch.extend_from_slice(&path.as_bytes()[start..end]);
                let rest = path[end..].to_string();
                cut_hashed(path, start, k, scratch);
                let next = path.len();
                path.push_str(&rest);
                start = next + 1;
            }
            None => start = end + 1,
        }
    }
}

fn push_escaped(out: &mut String, value: &str, seg_start: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = value.as_bytes();
    let Some(&first) = bytes.first() else {
        push_null(out, seg_start);
        return;
    };
    // A value spelled like the null folder's name is escaped apart from it (every `_`), so
    // one folder never holds both (a table reads a file's partition value from its folder).
    if value == NULL_PARTITION {
        for &b in bytes {
            match b {
                b'_' => out.push_str("%5F"),
                b => out.push(b as char),
            }
        }
        return;
    }
    // Past `MAX_VALUE` (and an escape) the text is cut anyway: a long value is rendered only
    // that far, however long it is (a value of 16 MiB of spaces is not 48 MiB of escapes).
    let end = start_of_cut(bytes.len());
    let first_ok = !(seg_start && (first == b'_' || first == b'.'));
    // A value cut ends in its hash, not in its own last byte.
    let last_dot = end == bytes.len() && bytes[end - 1] == b'.';
    if first_ok && !last_dot && bytes.iter().all(|&b| is_safe(b)) {
        out.push_str(&value[..end]);
        return;
    }
    out.reserve(3 * end);
    for (i, &b) in bytes[..end].iter().enumerate() {
        if is_safe(b) && (i > 0 || first_ok) && !(last_dot && i == end - 1) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// How many bytes of a value of `len` bytes are rendered: all of a short one; of a long one,
/// more than [`MAX_VALUE`] rendered bytes' worth, so it is still seen to be long and cut.
fn start_of_cut(len: usize) -> usize {
    len.min(MAX_VALUE + 1)
}

/// The longest data or dead-letter file name written: a file system holds 255 bytes, and
/// [`visible_name`] may add 2 (a local write's temporary name repeats at most 180 bytes of
/// it, see `store::file`).
pub const MAX_FILE_NAME: usize = 230;

/// A file's name: `head` (the repo's prefix and the partition's key), `unique` (the first
/// offset and the attempt's tag), `suffix` (a backfill's) and `ext` (`.parquet`). Where they
/// are longer than [`MAX_FILE_NAME`] (a Kafka topic's name may be 249 bytes), the head and
/// suffix are cut to fit, as one: their first bytes, `~` and a hash of them whole, then
/// `unique` and `ext`. `unique` keeps every name its own (the tag is the attempt's), so a
/// hash two partitions share shares no name.
pub fn file_name(head: &str, unique: &str, suffix: &str, ext: &str) -> String {
    if head.len() + unique.len() + suffix.len() + ext.len() <= MAX_FILE_NAME {
        return format!("{head}{unique}{suffix}{ext}");
    }
    let mut name = format!("{head}{suffix}");
    let keep = MAX_FILE_NAME
        .saturating_sub(unique.len() + ext.len() + 17)
        .max(8);
    if keep < name.len() {
        let whole = name.clone();
        cut_hashed(&mut name, 0, keep, whole.as_bytes());
    }
    name.push_str(unique);
    name.push_str(ext);
    name
}

/// A data file's name as readers list it: Spark, Hive, Trino and pyarrow's datasets skip
/// files whose names start with `_` or `.`, and a Kafka topic's name may start with either
/// (`_audit-0-...`), so that first character is percent-encoded, as at the start of a
/// path segment.
pub fn visible_name(name: &str) -> Cow<'_, str> {
    match name.as_bytes().first() {
        Some(b'_') => Cow::Owned(format!("%5F{}", &name[1..])),
        Some(b'.') => Cow::Owned(format!("%2E{}", &name[1..])),
        _ => Cow::Borrowed(name),
    }
}
