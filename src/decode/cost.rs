//! Where a chunk of JSON lines is cut so that what its records decode to stays bounded.
//!
//! A chunk is cut by bytes (`chunk_bytes`) and by lines ([`super::framing::MAX_CHUNK_LINES`]),
//! and for most schemas that bounds what it decodes to: a few times its text plus a fixed
//! cost a record. Where the schema has a list or a map it does not: a list item or map entry
//! costs its element's width whatever its text ([`super::width`]), so a 1 MiB chunk of `{}`
//! items of a `list<struct>` with 50 integer fields decoded to about 600 MiB, and `convert`
//! of 20 MiB of them peaked at 654 MB. Sources that read such records measure each line as
//! they cut a chunk ([`LineCost`]): a chunk ends before the line that would take its lines
//! past [`MAX_CHUNK_DECODED`], and holds at least one line (a single record may measure up to
//! [`super::width::MAX_RECORD_DECODED`]; past that it is a dead letter, which costs only its
//! text).

use std::sync::Arc;

use super::width::{self, Measure, Widths};
use super::InputKind;
use crate::schema::RepoSchema;

/// The most a chunk's lines may measure together, unless its first line alone does.
pub const MAX_CHUNK_DECODED: u64 = 32 << 20;

/// Measures JSON lines of a schema with a list or a map, for the sources to cut chunks by.
#[derive(Debug, Clone)]
pub struct LineCost {
    /// The JSON decoder's own, so a line measured here measures the same there.
    widths: Arc<Widths>,
    /// The most a chunk's lines may measure together ([`MAX_CHUNK_DECODED`]; tests lower it).
    cap: u64,
}

/// What the lines a chunk took measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    /// Some line nests too deep or measures past what a record may decode to (a dead letter
    /// the decoder must find by measuring again).
    pub flagged: bool,
}

impl LineCost {
    /// The measure for records of `schema` read as `kind`, or `None` when a record's decoded
    /// form follows from its text (no list or map in the schema, or not JSON), or the schema
    /// has no JSON decoder (its error comes when the decoder is made).
    pub fn of(schema: &RepoSchema, kind: &InputKind) -> Option<LineCost> {
        if !matches!(kind, InputKind::Json) {
            return None;
        }
        let widths = super::json::JsonDecoder::new(schema, 1, None)
            .ok()?
            .widths()
            .clone();
        widths.nested().then_some(LineCost {
            widths,
            cap: MAX_CHUNK_DECODED,
        })
    }

    /// Sets the cap (tests).
    #[doc(hidden)]
    pub fn with_cap(mut self, cap: u64) -> Self {
        self.cap = cap;
        self
    }

    /// What one line (no newline) may decode to, as the decoder measures it; `None` for a line
    /// nested too deep or measured past what a record may decode to: a dead letter, which
    /// costs nothing beyond its text.
    pub fn line(&self, line: &[u8]) -> Option<u64> {
        match width::measure(line, &self.widths, super::depth::MAX_NESTING) {
            Measure::Bytes(n) if n <= width::MAX_RECORD_DECODED => Some(n),
            _ => None,
        }
    }

    /// How many of the lines of `data` ending at `ends` (each the index of its newline, in
    /// order) a chunk that took `tally` already may hold: at least one when it took nothing.
    /// `tally` grows by the lines taken.
    pub fn fit(&self, data: &[u8], ends: &[usize], tally: &mut Tally) -> usize {
        let mut start = 0;
        for (k, &end) in ends.iter().enumerate() {
            if !self.take(&data[start..end], tally) {
                return k;
            }
            start = end + 1;
        }
        ends.len()
    }

    /// Where a chunk that took `tally` already must end within `data`, lines whose ends
    /// are not recorded (the last may lack its newline): the index after the last line that
    /// fits, or `None` when all of them do. `tally` grows by the lines taken.
    pub fn cut(&self, data: &[u8], tally: &mut Tally) -> Option<usize> {
        let mut start = 0;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            if !self.take(&data[start..end], tally) {
                return Some(start);
            }
            start = end + 1;
        }
        None
    }

    /// Whether a chunk that took `tally` already may hold `line` too (always when it took
    /// nothing that costs); if so, `tally` grows by it.
    pub fn take(&self, line: &[u8], tally: &mut Tally) -> bool {
        let cost = self.line(line);
        let bytes = cost.unwrap_or(0);
        if tally.bytes > 0 && tally.bytes.saturating_add(bytes) > self.cap {
            return false;
        }
        tally.bytes = tally.bytes.saturating_add(bytes);
        tally.flagged |= cost.is_none();
        true
    }

    /// Whether a chunk that took `tally` is full.
    pub fn full(&self, tally: &Tally) -> bool {
        tally.bytes >= self.cap
    }
}

/// Tests: a schema of `extra` fields (TOML) and `l`, a `list<struct>` with 50 integer fields
/// (an empty item, 3 bytes, is about 1.8 KB decoded), and its line cost.
#[cfg(test)]
pub(crate) fn wide_schema(extra: &str) -> (RepoSchema, LineCost) {
    let children: Vec<String> = (0..50)
        .map(|i| format!("{{ name = \"c{i}\", type = \"int64\" }}"))
        .collect();
    let schema = RepoSchema::parse(
        &format!(
            "name = \"wide\"\n{extra}\n[[fields]]\nname = \"l\"\ntype = \"list<struct>\"\nfields = [ {} ]\n",
            children.join(", ")
        ),
        std::path::Path::new("wide.toml"),
    )
    .expect("the wide schema");
    let cost = LineCost::of(&schema, &InputKind::Json).expect("a list is measured");
    (schema, cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide() -> RepoSchema {
        wide_schema("").0
    }

    #[test]
    fn only_json_with_a_list_or_map_is_measured() {
        assert!(LineCost::of(&wide(), &InputKind::Json).is_some());
        let csv = InputKind::Csv {
            delimiter: b',',
            header: true,
        };
        assert!(LineCost::of(&wide(), &csv).is_none());
        let flat = RepoSchema::parse(
            "name = \"f\"\n[[fields]]\nname = \"a\"\ntype = \"int64\"\n",
            std::path::Path::new("f.toml"),
        )
        .unwrap();
        assert!(LineCost::of(&flat, &InputKind::Json).is_none());
    }

    /// Lines are taken while their measures fit the cap, and the first always; a line past
    /// what a record may decode to counts nothing (it is a dead letter) and flags the tally.
    #[test]
    fn lines_are_taken_while_they_fit() {
        let cost = LineCost::of(&wide(), &InputKind::Json).unwrap();
        let items = |n: usize| format!("{{\"l\":[{}]}}\n", vec!["{}"; n].join(","));
        let one = cost.line(items(1000).trim_end().as_bytes()).unwrap();
        assert!(one > 1_000_000, "1,000 items of 50 integers: {one}");
        let cost = cost.with_cap(3 * one + one / 2);
        let mut data = items(1000).repeat(5).into_bytes();
        let ends: Vec<usize> = memchr::memchr_iter(b'\n', &data).collect();
        let mut t = Tally::default();
        assert_eq!(cost.fit(&data, &ends, &mut t), 3);
        assert_eq!(
            t,
            Tally {
                bytes: 3 * one,
                flagged: false
            }
        );
        assert!(!cost.full(&t));
        // Carried on from what was taken.
        let mut more = t;
        assert_eq!(cost.fit(&data, &ends, &mut more), 0);
        assert_eq!(more, t);
        // The first line always, however much it measures.
        let mut t = Tally::default();
        assert_eq!(cost.clone().with_cap(1).fit(&data, &ends, &mut t), 1);
        assert!(cost.clone().with_cap(1).full(&t));
        // A line measured past the record limit, or nested too deep, is a dead letter: it
        // costs nothing here, and the decoder must measure again to find it.
        data.splice(0..0, items(200_000).into_bytes());
        let ends: Vec<usize> = memchr::memchr_iter(b'\n', &data).collect();
        assert_eq!(cost.line(&data[..ends[0]]), None);
        let deep = format!("{{\"l\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(cost.line(deep.as_bytes()), None);
        let mut t = Tally::default();
        assert_eq!(cost.fit(&data, &ends, &mut t), 4);
        assert_eq!(
            t,
            Tally {
                bytes: 3 * one,
                flagged: true
            }
        );
        // Unrecorded ends: the same cut, in bytes; the last line may lack its newline.
        let text = items(1000).repeat(4);
        let (mut a, mut b) = (Tally::default(), Tally::default());
        assert_eq!(cost.cut(text.as_bytes(), &mut a), Some(3 * text.len() / 4));
        assert_eq!(
            cost.cut(text.trim_end().as_bytes(), &mut b),
            Some(3 * text.len() / 4)
        );
        assert_eq!((a.bytes, b.bytes), (3 * one, 3 * one));
        let mut c = Tally::default();
        assert_eq!(cost.cut(&text.as_bytes()[..text.len() / 2], &mut c), None);
        assert_eq!(c.bytes, 2 * one);
        let mut full = Tally {
            bytes: 3 * one,
            flagged: false,
        };
        assert_eq!(cost.cut(text.as_bytes(), &mut full), Some(0));
    }
}
