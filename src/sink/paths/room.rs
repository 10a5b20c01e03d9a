//! Paths held to their destination's room: an object key holds 1,024 bytes and a local path
//! 4,095, and a path joining many long values passed that, so every write of its rows failed,
//! for good. A template whose paths could pass the room left for folders (see
//! [`PathTemplate::limit_to`]) has every long folder name cut shorter, whatever the path's
//! length, and a path still too long (a hundred folders of long values) has its last folders
//! folded into one. A template whose paths always fit keeps its layout.
//!
//! Cut names are told apart from names kept whole by their length: with the template's names
//! cut, every name kept is shorter than a cut one at its place, and a folded name is as long
//! as a name past [`MAX_SEGMENT`] bytes cut, which no name kept whole reaches. So values
//! cannot spell a cut name; two meet only if their 64-bit hashes do.

use chrono::format::{Fixed, Item, Numeric};

use super::sanitize::{cut_hashed, cut_names, is_safe};
use super::{
    Part, PathTemplate, TemplateError, TimePattern, MAX_SEGMENT, MAX_VALUE, NULL_PARTITION,
};

/// How many bytes a folder name keeps of its text after its `name=` head when it is cut to
/// fit a room: cut, it is that, `~` and a hash, [`TIGHT_SEGMENT`] bytes.
const TIGHT_KEEP: usize = 31;
/// The length of a folder name after its head once cut to fit a room; every name kept whole
/// is shorter.
pub const TIGHT_SEGMENT: usize = TIGHT_KEEP + 17;
/// The longest `name=` head a folder name keeps whole when it is cut to fit a room, so
/// Hive-style readers still find the column of a cut folder.
pub const TIGHT_HEAD: usize = 64;
/// The bytes a folded path's last name takes: a name cut like one past [`MAX_SEGMENT`] bytes
/// (255) and its `/`.
const FOLD: usize = MAX_SEGMENT + 17 + 1;

/// The room a template's paths are held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Room {
    /// The most bytes a path may take.
    bytes: usize,
    /// The template's paths could pass `bytes`: every long name is cut.
    tight: bool,
}

impl Room {
    /// No bound: paths are kept as they are rendered.
    pub(super) const ANY: Room = Room {
        bytes: usize::MAX,
        tight: false,
    };
}

/// Holds the rendered path `path` to `room`: with a tight room, each folder name at least as
/// long as its head (the text up to its first `=`, when that is shorter than [`TIGHT_HEAD`]
/// bytes; only literal text holds a `=`) and [`TIGHT_SEGMENT`] bytes keeps its head and
/// [`TIGHT_KEEP`] bytes more, then `~` and a hash of the whole name; a path still longer
/// than the room is then folded ([`fold`]).
pub(super) fn cap_path(path: &mut String, room: Room, scratch: &mut Vec<u8>) {
    if room.tight {
        cap_names(path, scratch);
    }
    fold(path, room.bytes);
}

fn cap_names(path: &mut String, scratch: &mut Vec<u8>) {
    cut_names(path, scratch, |name| {
        let head = match name.find('=') {
            Some(i) if i < TIGHT_HEAD => i + 1,
            _ => 0,
        };
        // A name of exactly the cut length is cut too: a cut name is then longer than any
        // name kept whole, so no value spells one (but by a collision of hashes).
        (name.len() >= head + TIGHT_SEGMENT).then_some(head + TIGHT_KEEP)
    });
}

/// A path longer than `room` keeps the most leading folders that fit with one more, which
/// stands for the rest: the rest's text (each `/` a `~`) cut to [`MAX_SEGMENT`] bytes, `~`
/// and a hash of it.
fn fold(path: &mut String, room: usize) {
    if path.len() <= room {
        return;
    }
    let mut keep = 0;
    for (i, _) in path.match_indices('/') {
        if i + 1 + FOLD > room {
            break;
        }
        keep = i + 1;
    }
    let rest = path.split_off(keep);
    path.push_str(&rest.trim_end_matches('/').replace('/', "~"));
    while path.len() < keep + MAX_SEGMENT {
        path.push('~');
    }
    cut_hashed(path, keep, MAX_SEGMENT, rest.as_bytes());
    path.push('/');
}

impl PathTemplate {
    /// The template, its paths held to `room` bytes: when its paths could pass that (each
    /// value up to [`MAX_VALUE`] + 17 bytes rendered, each name up to 255), every long
    /// folder name is cut shorter, and a path still too long is folded (see [`cap_path`]).
    /// Fails when `room` cannot hold one folded name.
    pub fn limit_to(mut self, room: usize) -> Result<PathTemplate, TemplateError> {
        let most = self.most_bytes();
        if most > room && room < FOLD {
            return Err(self.error(format!(
                "its folder paths can take {most} bytes, and the destination leaves {room} for folders, less than the {FOLD} a folded path needs; use a shorter destination URL"
            )));
        }
        self.room = Room {
            bytes: room,
            tight: most > room,
        };
        Ok(self)
    }

    /// True when the template's paths could pass their room, so long folder names are cut
    /// (see [`PathTemplate::limit_to`]).
    pub fn cuts_names(&self) -> bool {
        self.room.tight
    }

    /// The most bytes a rendered path can take: each folder name its literal text, the most
    /// each time renders to, and [`MAX_VALUE`] + 17 bytes for each other value, 255 at most,
    /// each followed by `/`.
    fn most_bytes(&self) -> usize {
        // Every rendered path ends with `/` (or is empty): each `/` ends a name.
        let mut names = Vec::new();
        let mut name = 0usize;
        for part in &self.parts {
            match part {
                Part::Literal(text) => {
                    for (i, piece) in text.split('/').enumerate() {
                        if i > 0 {
                            names.push(name);
                            name = 0;
                        }
                        name += piece.len();
                    }
                }
                Part::Ingest(pattern) | Part::Time { pattern, .. } => {
                    name += pattern.most_bytes();
                }
                Part::Value { .. } => name += MAX_VALUE + 17,
            }
        }
        if name > 0 {
            names.push(name);
        }
        names.into_iter().map(|n| n.min(MAX_SEGMENT + 17) + 1).sum()
    }
}

impl TimePattern {
    /// The most bytes a time renders to through this pattern, escaped: its literal text, each
    /// number at its widest (years 1 to 9999, as values are checked), a name or zone at most
    /// 32 characters, all of it escaped; a null's name at least, [`MAX_VALUE`] + 17 at most.
    fn most_bytes(&self) -> usize {
        let escaped =
            |s: &str| -> usize { s.bytes().map(|b| if is_safe(b) { 1 } else { 3 }).sum() };
        let text: usize = self
            .items
            .iter()
            .map(|item| match item {
                Item::Literal(s) | Item::Space(s) => escaped(s),
                Item::OwnedLiteral(s) | Item::OwnedSpace(s) => escaped(s),
                Item::Numeric(Numeric::Year | Numeric::IsoYear, _) => 5,
                Item::Numeric(Numeric::Nanosecond, _) => 9,
                Item::Numeric(Numeric::Timestamp, _) => 12,
                Item::Numeric(..) => 4,
                Item::Fixed(
                    Fixed::Nanosecond
                    | Fixed::Nanosecond3
                    | Fixed::Nanosecond6
                    | Fixed::Nanosecond9,
                ) => 10,
                Item::Fixed(_) => 3 * 32,
                Item::Error => 0,
            })
            .sum();
        // A leading `_` or `.` escaped, and a null's name (or a value spelled like it).
        (text + 2).max(NULL_PARTITION.len() + 2).min(MAX_VALUE + 17)
    }
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
