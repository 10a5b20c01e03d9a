//! What a JSON record decodes to, estimated before arrow-json reads it. A list item or a map
//! entry costs its element's fixed width in every column under it, whatever its text: `{}`,
//! 3 bytes of a `list<struct>` with 50 integer fields, decodes to about 1.7 KB (columns,
//! struct positions and builders growing by doubling), and one 15 MiB record of them took
//! 4 GB. Every value also costs arrow-json's tape while it reads.
//!
//! So a record is measured first, in the scan that checks its nesting ([`measure`]): the
//! row's fixed width, plus for each array item and object member the most an item or member
//! at that depth may cost under the schema ([`Widths`]). A record measured past
//! [`MAX_RECORD_DECODED`] is a dead letter; the same record is that whatever chunk it comes
//! in. A push reserves what its records measure. The estimate errs high (an array in an
//! unknown or `json` field is charged as the widest list at its depth; a struct's members as
//! a map's entries at the same depth), never low. The fast path reads no record longer than
//! [`FAST_MAX_RECORD`]: a flat record shorter measures under the limit (at most 32 bytes per
//! byte of text), so the two paths decide alike.

use arrow::datatypes::{DataType, Schema};

/// Bytes one JSON value costs arrow-json while it reads a record, whatever the schema: its
/// tape element (8 B) and, for a string or number, its text's offset (8 B), twice that for
/// the tape's vectors growing by doubling. An object member is two (its key and its value).
const TAPE: u64 = 32;
/// Columns' builders grow by doubling: what a record's values take, at most.
const GROWTH: u64 = 2;
/// The most bytes one record may be estimated to decode to.
pub const MAX_RECORD_DECODED: u64 = 256 << 20;
/// The longest record the fast path reads (longer ones are arrow-json's, and measured).
pub const FAST_MAX_RECORD: usize = (MAX_RECORD_DECODED / (2 * TAPE)) as usize;

/// The dead letter's reason for a record measured at `bytes`, past [`MAX_RECORD_DECODED`].
pub fn reason(bytes: u64) -> String {
    format!(
        "record would decode to about {} MiB (its values, and each list item and map entry as \
         wide as its element type), more than the {} MiB a record may decode to",
        bytes >> 20,
        MAX_RECORD_DECODED >> 20
    )
}

/// What a record's parts may cost, from the schema.
#[derive(Debug, Clone, Default)]
pub struct Widths {
    /// By the depth of the container (the record's object is 1): the most one item of an
    /// array there may cost in columns, and one member of an object there (beyond the tape).
    items: Vec<u64>,
    members: Vec<u64>,
    /// A row's fixed width: every column reached through structs.
    row: u64,
    /// The schema has a list or a map: an item's cost does not follow from its text.
    nested: bool,
}

/// One value's own width in its column: its fixed bytes (a text or list value's offset),
/// its validity, and an offset more (integers and decimals are read as text first); a struct
/// is all of its fields, and arrow-json's position of each (4 B). Structs nest no deeper
/// than the schema file does.
fn fixed(dt: &DataType) -> u64 {
    match dt {
        DataType::Struct(fields) => {
            1 + fields.iter().map(|f| 4 + fixed(f.data_type())).sum::<u64>()
        }
        other => other.primitive_width().unwrap_or(4) as u64 + 5,
    }
}

impl Widths {
    /// The widths of records of `schema` (the decoded columns).
    pub fn of(schema: &Schema) -> Widths {
        let mut w = Widths::default();
        // (type, the depth of the container it stands in): a work list, not recursion.
        let mut todo: Vec<(&DataType, usize)> =
            schema.fields().iter().map(|f| (f.data_type(), 1)).collect();
        while let Some((dt, depth)) = todo.pop() {
            match dt {
                DataType::Struct(fields) => {
                    todo.extend(fields.iter().map(|f| (f.data_type(), depth + 1)));
                }
                DataType::List(item) | DataType::LargeList(item) => {
                    w.nested = true;
                    w.raise_items(depth + 1, fixed(item.data_type()));
                    todo.push((item.data_type(), depth + 1));
                }
                DataType::Map(entry, _) => {
                    w.nested = true;
                    if let DataType::Struct(kv) = entry.data_type() {
                        let each = kv.iter().map(|f| fixed(f.data_type())).sum::<u64>();
                        w.raise_members(depth + 1, each);
                        if let Some(v) = kv.get(1) {
                            todo.push((v.data_type(), depth + 1));
                        }
                    }
                }
                _ => {}
            }
        }
        w.row = schema.fields().iter().map(|f| fixed(f.data_type())).sum();
        w
    }

    fn raise_items(&mut self, depth: usize, cost: u64) {
        if self.items.len() <= depth {
            self.items.resize(depth + 1, 0);
        }
        self.items[depth] = self.items[depth].max(cost);
    }

    fn raise_members(&mut self, depth: usize, cost: u64) {
        if self.members.len() <= depth {
            self.members.resize(depth + 1, 0);
        }
        self.members[depth] = self.members[depth].max(cost);
    }

    /// A row's fixed width, every column reached through structs.
    pub fn row(&self) -> u64 {
        self.row
    }

    /// Whether the schema has a list or a map.
    pub fn nested(&self) -> bool {
        self.nested
    }

    fn item(&self, depth: usize) -> u64 {
        TAPE + GROWTH * self.items.get(depth).copied().unwrap_or(0)
    }

    fn member(&self, depth: usize) -> u64 {
        2 * TAPE + GROWTH * self.members.get(depth).copied().unwrap_or(0)
    }
}

/// A record's measure: nested past `max_depth`, or its estimated decoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    TooDeep,
    Bytes(u64),
}

/// Measures the JSON text `b` (one record, or several one after another: each record's row is
/// counted at its top-level object): how deeply it nests, and what it decodes to besides its
/// text. Strings are skipped (escapes honoured); malformed text is measured as far as it
/// goes. An array's or object's first item is charged at its opening bracket, each further
/// one at its comma.
pub fn measure(b: &[u8], w: &Widths, max_depth: usize) -> Measure {
    // Whether each open container is an array, for its commas.
    let mut arrays: Vec<bool> = Vec::new();
    let mut bytes = 0u64;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'[' | b'{' => {
                let depth = arrays.len() + 1;
                if depth > max_depth {
                    return Measure::TooDeep;
                }
                let array = c == b'[';
                bytes += match (array, depth) {
                    (true, d) => w.item(d),
                    (false, 1) => GROWTH * w.row + w.member(1),
                    (false, d) => w.member(d),
                };
                arrays.push(array);
            }
            b']' | b'}' => {
                arrays.pop();
            }
            b',' => {
                if let Some(&array) = arrays.last() {
                    let d = arrays.len();
                    bytes += if array { w.item(d) } else { w.member(d) };
                }
            }
            b'"' => {
                // To the closing quote: the next quote or backslash, past each escape.
                i += 1;
                loop {
                    let Some(k) = super::fast::quote_or_backslash(b, i.min(b.len())) else {
                        return Measure::Bytes(bytes);
                    };
                    i = k;
                    if b[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Measure::Bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Fields};
    use std::sync::Arc;

    fn wide_list(children: usize) -> Schema {
        let fields: Fields = (0..children)
            .map(|i| Field::new(format!("c{i}"), DataType::Int64, true))
            .collect();
        let item = Field::new("item", DataType::Struct(fields), true);
        Schema::new(vec![Field::new("l", DataType::List(Arc::new(item)), true)])
    }

    /// An empty struct item costs its 50 columns, about 30 times what `{"a":1}` per field
    /// costs in text; the estimate follows the items, not the text.
    #[test]
    fn a_list_item_costs_its_elements_width_whatever_its_text() {
        let w = Widths::of(&wide_list(50));
        assert!(w.nested());
        let item = TAPE + GROWTH * (1 + 50 * (4 + 13));
        let one = format!("{{\"l\":[{}]}}", vec!["{}"; 1000].join(","));
        let Measure::Bytes(n) = measure(one.as_bytes(), &w, 1000) else {
            panic!("too deep")
        };
        // 1000 items and their 1000 empty objects' first members, the row, the record's key.
        assert_eq!(n, GROWTH * w.row() + 2 * TAPE + 1000 * (item + 2 * TAPE));
        // Brackets and commas in strings cost nothing.
        let quoted = format!("{{\"l\":\"[{}]\"}}", ",".repeat(10_000));
        assert_eq!(
            measure(quoted.as_bytes(), &w, 1000),
            Measure::Bytes(GROWTH * w.row() + 2 * TAPE)
        );
    }

    #[test]
    fn a_flat_schema_costs_its_row_and_the_tape() {
        let s = Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let w = Widths::of(&s);
        assert!(!w.nested());
        assert_eq!(w.row(), 9 + 13);
        assert_eq!(
            measure(br#"{"a":"x","b":1}"#, &w, 1000),
            Measure::Bytes(GROWTH * w.row() + 4 * TAPE)
        );
        // Any array still costs the tape per item, and nesting is bounded.
        assert_eq!(
            measure(br#"{"a":[1,2,3]}"#, &w, 1000),
            Measure::Bytes(GROWTH * w.row() + 2 * TAPE + 3 * TAPE)
        );
        assert_eq!(measure(b"[[[", &w, 2), Measure::TooDeep);
        for cut in ["", "\"", "\"\\", "{\"a\":\"\\", "]]]}}"] {
            assert!(matches!(measure(cut.as_bytes(), &w, 10), Measure::Bytes(_)));
        }
    }

    fn nested(n: usize) -> String {
        format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1))
    }

    #[test]
    fn nesting_is_measured_outside_strings_only() {
        let (w, max) = (Widths::default(), crate::decode::depth::MAX_NESTING);
        let deep = |s: &str| measure(s.as_bytes(), &w, max) == Measure::TooDeep;
        assert!(!deep(&nested(max)));
        assert!(deep(&nested(max + 1)));
        // Brackets inside strings, escaped quotes and backslashes do not count.
        let inside = format!(
            "{{\"a\":\"{}\\\"{}\\\\\"}}",
            "[".repeat(5000),
            "{".repeat(5000)
        );
        assert!(!deep(&inside));
        let after_escape = format!("{{\"a\":\"x\\\\\",\"b\":{}", "[".repeat(max));
        assert!(deep(&after_escape));
    }

    /// A flat record the fast path reads measures under the limit whatever its text: at most
    /// two tape values (a member) per 4 bytes (`"":0,`), one per 2 bytes (`0,`) in an array.
    #[test]
    fn a_flat_record_the_fast_path_reads_measures_under_the_limit() {
        let s = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
        let w = Widths::of(&s);
        let n = FAST_MAX_RECORD - 16;
        for text in [
            format!("{{\"x\":[{}0]}}", "0,".repeat(n / 2)),
            format!("{{{}\"\":0}}", "\"\":0,".repeat(n / 5)),
        ] {
            let Measure::Bytes(m) = measure(text.as_bytes(), &w, 1000) else {
                panic!("too deep")
            };
            assert!(
                text.len() <= FAST_MAX_RECORD && m <= MAX_RECORD_DECODED,
                "{m}"
            );
        }
        assert!(reason(MAX_RECORD_DECODED + 1).contains("more than the 256 MiB"));
    }
}
