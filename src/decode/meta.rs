//! Kafka metadata columns: schema fields whose `source` is `_kafka_topic`, `_kafka_partition`,
//! `_kafka_offset`, `_kafka_timestamp`, `_kafka_key` or `_kafka_headers` are filled from each
//! message's metadata instead of from the record. The source carries the metadata in the chunk
//! (one entry per message, only what the schema asks for).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int64Array, StringBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::DataType;

use super::columns::RowErrors;
use super::{Chunk, DecodeError, Record};
use crate::schema::RepoSchema;

/// Which metadata a message carries into a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Headers,
}

impl MetaKind {
    /// The metadata named by a field's source, if it names one.
    pub fn of(source: &str) -> Option<MetaKind> {
        Some(match source {
            "_kafka_topic" => MetaKind::Topic,
            "_kafka_partition" => MetaKind::Partition,
            "_kafka_offset" => MetaKind::Offset,
            "_kafka_timestamp" => MetaKind::Timestamp,
            "_kafka_key" => MetaKind::Key,
            "_kafka_headers" => MetaKind::Headers,
            _ => return None,
        })
    }

    fn accepts(self, ty: &DataType) -> bool {
        match self {
            MetaKind::Topic | MetaKind::Headers => matches!(ty, DataType::Utf8),
            MetaKind::Partition => matches!(ty, DataType::Int32 | DataType::Int64),
            MetaKind::Offset => matches!(ty, DataType::Int64),
            MetaKind::Timestamp => matches!(ty, DataType::Timestamp(..) | DataType::Int64),
            MetaKind::Key => matches!(ty, DataType::Utf8 | DataType::Binary),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            MetaKind::Topic => "string",
            MetaKind::Headers => "string or json (a JSON object of header name to value)",
            MetaKind::Partition => "int32 or int64",
            MetaKind::Offset => "int64",
            MetaKind::Timestamp => "timestamp or int64 (milliseconds since the epoch)",
            MetaKind::Key => "string or binary",
        }
    }
}

/// What metadata a source must collect per message for a schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaNeeds {
    pub timestamps: bool,
    pub keys: bool,
    pub headers: bool,
    /// Not metadata but how messages are read: tombstones (messages without a value) are
    /// passed over (`source.tombstones = "skip"`), each a placeholder line whose reason is
    /// [`SKIPPED`], which the decoder drops and counts as filtered.
    pub skip_tombstones: bool,
}

/// The reason of a placeholder line the decoder drops, counted as filtered: a tombstone
/// passed over. Never shown.
pub const SKIPPED: &str = "(a tombstone, skipped)";

/// Per-message metadata of message-framed sources, one entry per line of the chunk (the
/// vectors a schema does not ask for stay empty).
#[derive(Debug, Default, Clone)]
pub struct MessageMeta {
    pub topic: String,
    pub partition: i32,
    /// Milliseconds since the epoch; `None` when the message has none.
    pub timestamps: Vec<Option<i64>>,
    pub keys: Vec<Option<Vec<u8>>>,
    /// Each message's headers as a JSON object (`None`: no headers).
    pub headers: Vec<Option<String>>,
    /// Messages that cannot stand as one line of JSON (only whitespace; a raw line break
    /// inside a string): (index of the message's line, its payload, why). Their line holds
    /// [`UNREADABLE`], which never decodes; the decoder makes each a dead letter with these
    /// bytes and this reason.
    pub unreadable: Vec<(usize, Vec<u8>, String)>,
    /// Messages whose raw line breaks (between JSON tokens) were made spaces to stand as one
    /// line: a dead letter of such a line gets them back, and holds the message's own bytes.
    pub rewritten: LineBreaks,
}

/// Where the raw line breaks of messages were, by the index of the message's line, all in
/// one buffer (a message of JSON and a final line break, as many producers write, costs no
/// allocation of its own).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineBreaks {
    /// Each message's line index and where its positions end in `at` (they start where the
    /// previous message's end).
    lines: Vec<(usize, usize)>,
    /// Positions in the message, [`LINE_BREAK_CR`] set for a CR (else an LF).
    at: Vec<u32>,
}

/// Set in a [`LineBreaks`] position whose byte was a CR (else an LF).
const LINE_BREAK_CR: u32 = 1 << 31;

impl LineBreaks {
    /// Records the line breaks of `bytes`, the message of line `index` (after every line
    /// recorded so far); the bytes the record takes.
    pub fn push(&mut self, index: usize, bytes: &[u8]) -> usize {
        let before = self.at.len();
        for i in memchr::memchr2_iter(b'\n', b'\r', bytes) {
            let cr = if bytes[i] == b'\r' { LINE_BREAK_CR } else { 0 };
            self.at.push(i as u32 | cr);
        }
        self.lines.push((index, self.at.len()));
        4 * (self.at.len() - before) + 16
    }

    /// The bytes the records take (as `push` counts them).
    pub fn cost(&self) -> usize {
        4 * self.at.len() + 16 * self.lines.len()
    }

    /// Takes the records of the first `k` lines; those left are renumbered from 0.
    pub fn take_first(&mut self, k: usize) -> LineBreaks {
        let n = self.lines.partition_point(|(line, _)| *line < k);
        let cut = n.checked_sub(1).map_or(0, |j| self.lines[j].1);
        let taken = LineBreaks {
            lines: self.lines.drain(..n).collect(),
            at: self.at.drain(..cut).collect(),
        };
        for (line, end) in &mut self.lines {
            *line -= k;
            *end -= cut;
        }
        taken
    }

    /// Puts back into `line` (the message of line `index`, as buffered) the line breaks it
    /// had; false when it had none recorded.
    pub fn restore(&self, index: usize, line: &mut [u8]) -> bool {
        let Ok(j) = self.lines.binary_search_by_key(&index, |(l, _)| *l) else {
            return false;
        };
        let start = j.checked_sub(1).map_or(0, |p| self.lines[p].1);
        for &b in &self.at[start..self.lines[j].1] {
            if let Some(byte) = line.get_mut((b & !LINE_BREAK_CR) as usize) {
                *byte = if b & LINE_BREAK_CR != 0 { b'\r' } else { b'\n' };
            }
        }
        true
    }

    /// The recorded lines' indexes, in order.
    pub fn lines(&self) -> impl Iterator<Item = usize> + '_ {
        self.lines.iter().map(|(l, _)| *l)
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.at.clear();
    }

    pub fn shrink_to(&mut self, lines: usize) {
        self.lines.shrink_to(lines.min(64));
        self.at.shrink_to(lines.min(64));
    }
}

/// What tells one message of a partition from another at the same offset: a topic deleted
/// and created again (or truncated by an unclean leader election) holds other records at the
/// offsets a checkpoint counts. A chunk records its last message's, and a checkpoint its last
/// chunk's; a start that resumes there reads that message again and compares
/// (`source::kafka::identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RecordMark {
    /// The message's offset.
    pub offset: u64,
    /// Its timestamp (milliseconds since the epoch), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    /// Its line as buffered for the decoder: its length and CRC-32.
    pub len: u64,
    pub crc: u32,
}

impl RecordMark {
    /// The mark of the message at `offset` whose buffered line is `line`.
    pub fn of(offset: u64, timestamp_ms: Option<i64>, line: &[u8]) -> RecordMark {
        RecordMark {
            offset,
            timestamp_ms,
            len: line.len() as u64,
            crc: crc32fast::hash(line),
        }
    }

    /// Whether `other` (the message found at the same offset) is this one: the same line, and
    /// the same timestamp where both have one.
    pub fn matches(&self, other: &RecordMark) -> bool {
        self.offset == other.offset
            && self.len == other.len
            && self.crc == other.crc
            && (self.timestamp_ms.is_none()
                || other.timestamp_ms.is_none()
                || self.timestamp_ms == other.timestamp_ms)
    }
}

/// The line standing for an unreadable message (not JSON, not blank).
pub const UNREADABLE: &[u8] = b"\x00";

impl MessageMeta {
    pub fn clear(&mut self) {
        self.timestamps.clear();
        self.keys.clear();
        self.headers.clear();
        self.unreadable.clear();
        self.rewritten.clear();
    }

    /// Gives back room past `lines` messages (see `Part::emit`).
    pub fn shrink_to(&mut self, lines: usize) {
        self.timestamps.shrink_to(lines);
        self.keys.shrink_to(lines);
        self.headers.shrink_to(lines);
        self.unreadable.shrink_to(lines.min(64));
        self.rewritten.shrink_to(lines);
    }
}

/// The metadata columns of a schema: (field index, kind).
#[derive(Debug, Clone, Default)]
pub struct MetaColumns {
    cols: Vec<(usize, MetaKind)>,
}

impl MetaColumns {
    /// Finds the metadata fields and checks their types.
    pub fn new(schema: &RepoSchema) -> Result<Self, DecodeError> {
        let mut cols = Vec::new();
        for (i, f) in schema.fields.iter().enumerate() {
            let Some(kind) = MetaKind::of(&f.source) else {
                continue;
            };
            if !kind.accepts(&f.arrow_type()) {
                return Err(DecodeError::Field {
                    schema: schema.path.display().to_string(),
                    field: f.name.clone(),
                    reason: format!(
                        "`{}` is Kafka metadata of type {}; the field is {:?}",
                        f.source,
                        kind.expected(),
                        f.arrow_type()
                    ),
                });
            }
            cols.push((i, kind));
        }
        Ok(MetaColumns { cols })
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// The schema's metadata fields, by name (to refuse them for sources that have none).
    pub fn names<'a>(&self, schema: &'a RepoSchema) -> Vec<&'a str> {
        self.cols
            .iter()
            .map(|(i, _)| schema.fields[*i].name.as_str())
            .collect()
    }

    pub fn needs(&self) -> MetaNeeds {
        let has = |k| self.cols.iter().any(|(_, c)| *c == k);
        MetaNeeds {
            timestamps: has(MetaKind::Timestamp),
            keys: has(MetaKind::Key),
            headers: has(MetaKind::Headers),
            skip_tombstones: false,
        }
    }

    /// Replaces the metadata columns of a decoded group: row `r` is record `recs[rows[r]]`,
    /// whose line in the chunk is its message. A key that must be text and is not UTF-8, or a
    /// timestamp outside years 1 to 9999 for a timestamp column, makes the row a dead letter.
    pub fn fill(
        &self,
        schema: &RepoSchema,
        chunk: &Chunk,
        recs: &[Record],
        rows: &[usize],
        columns: &mut [ArrayRef],
        errors: &mut RowErrors,
    ) {
        if self.cols.is_empty() || chunk.offsets.is_empty() {
            return;
        }
        let meta = &chunk.meta;
        let msg = |r: usize| (recs[rows[r]].pos.line - chunk.first_line) as usize;
        for &(i, kind) in &self.cols {
            let ty = schema.fields[i].arrow_type();
            let col: ArrayRef = match kind {
                MetaKind::Topic => {
                    let mut b = StringBuilder::with_capacity(rows.len(), meta.topic.len());
                    for _ in 0..rows.len() {
                        b.append_value(&meta.topic);
                    }
                    Arc::new(b.finish())
                }
                MetaKind::Partition if ty == DataType::Int32 => {
                    Arc::new(Int32Array::from(vec![meta.partition; rows.len()]))
                }
                MetaKind::Partition => {
                    Arc::new(Int64Array::from(vec![meta.partition as i64; rows.len()]))
                }
                MetaKind::Offset => Arc::new(Int64Array::from_iter_values(
                    (0..rows.len()).map(|r| chunk.offsets[msg(r)] as i64),
                )),
                MetaKind::Timestamp => {
                    let ms =
                        (0..rows.len()).map(|r| meta.timestamps.get(msg(r)).copied().flatten());
                    match &ty {
                        DataType::Int64 => Arc::new(Int64Array::from_iter(ms)),
                        // Outside years 1 to 9999 a timestamp column holds nothing (a cast
                        // to microseconds overflowed into a silent null): the row's dead
                        // letter says so, as for a timestamp field's value.
                        _ => {
                            let ms = ms.enumerate().map(|(r, t)| match t {
                                Some(t) if !(MIN_MS..=MAX_MS).contains(&t) => {
                                    errors.push((
                                        r,
                                        format!(
                                            "the message timestamp {t} ms is outside years 1 \
                                             to 9999"
                                        ),
                                    ));
                                    None
                                }
                                t => t,
                            });
                            // Instants, in the field's zone from the start: a cast from
                            // zone-less values reads them as the zone's wall-clock time and
                            // moved every message timestamp by the zone's offset.
                            let mut ms: TimestampMillisecondArray = ms.collect();
                            if let DataType::Timestamp(_, Some(z)) = &ty {
                                ms = ms.with_timezone(z.clone());
                            }
                            let ts = arrow::compute::cast(&ms, &ty)
                                .expect("millisecond timestamps cast to any timestamp unit");
                            // In a zoned field, its wall-clock time there too (the instants
                            // out of range are null by now).
                            let zone = ms.timezone().map(str::to_string);
                            for (r, _, _) in super::range::raw_out_of_range(ts.as_ref()).0 {
                                let t = meta.timestamps.get(msg(r)).copied().flatten();
                                errors.push((
                                    r,
                                    format!(
                                        "the message timestamp {} ms is outside years 1 to \
                                         9999 in the field's zone `{}`",
                                        t.unwrap_or_default(),
                                        zone.as_deref().unwrap_or("UTC")
                                    ),
                                ));
                            }
                            ts
                        }
                    }
                }
                MetaKind::Key if ty == DataType::Binary => {
                    let mut b = BinaryBuilder::new();
                    for r in 0..rows.len() {
                        b.append_option(meta.keys.get(msg(r)).and_then(|k| k.as_deref()));
                    }
                    Arc::new(b.finish())
                }
                MetaKind::Key => {
                    let mut b = StringBuilder::new();
                    for r in 0..rows.len() {
                        match meta.keys.get(msg(r)).and_then(|k| k.as_deref()) {
                            None => b.append_null(),
                            Some(k) => match std::str::from_utf8(k) {
                                Ok(s) => b.append_value(s),
                                Err(_) => {
                                    errors.push((r, "the message key is not valid UTF-8".into()));
                                    b.append_null();
                                }
                            },
                        }
                    }
                    Arc::new(b.finish())
                }
                MetaKind::Headers => {
                    let mut b = StringBuilder::new();
                    for r in 0..rows.len() {
                        b.append_option(meta.headers.get(msg(r)).and_then(|h| h.as_deref()));
                    }
                    Arc::new(b.finish())
                }
            };
            columns[i] = col;
        }
    }
}

/// Milliseconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
const MIN_MS: i64 = -62_135_596_800_000;
const MAX_MS: i64 = 253_402_300_799_999;

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> RepoSchema {
        RepoSchema::parse(
            &format!("name = \"m\"\n{fields}"),
            std::path::Path::new("m.toml"),
        )
        .unwrap()
    }

    #[test]
    fn metadata_fields_are_found_by_source_and_their_types_checked() {
        let s = schema(
            "[[fields]]\nname = \"o\"\nsource = \"_kafka_offset\"\ntype = \"int64\"\n\
             [[fields]]\nname = \"k\"\nsource = \"_kafka_key\"\ntype = \"binary\"\n\
             [[fields]]\nname = \"x\"\ntype = \"string\"\n",
        );
        let m = MetaColumns::new(&s).unwrap();
        assert_eq!(m.names(&s), vec!["o", "k"]);
        assert_eq!(
            m.needs(),
            MetaNeeds {
                timestamps: false,
                keys: true,
                headers: false,
                skip_tombstones: false
            }
        );
        let bad =
            schema("[[fields]]\nname = \"o\"\nsource = \"_kafka_offset\"\ntype = \"string\"\n");
        let e = MetaColumns::new(&bad).unwrap_err().to_string();
        assert!(e.contains("`o`") && e.contains("int64"), "{e}");
    }

    /// A message timestamp outside years 1 to 9999 makes its row a dead letter (class
    /// `metadata`) for a timestamp column: the cast to microseconds overflowed into a silent
    /// null before. An int64 column takes any value as it is.
    #[test]
    fn a_message_timestamp_out_of_range_is_named_not_a_silent_null() {
        for (ty, bad) in [("timestamp\"\nunit = \"us", 2), ("int64", 0)] {
            let s = schema(&format!(
                "[[fields]]\nname = \"t\"\nsource = \"_kafka_timestamp\"\ntype = \"{ty}\"\n"
            ));
            let m = MetaColumns::new(&s).unwrap();
            let times = [
                Some(1_714_521_600_123),
                Some(i64::MAX),
                None,
                Some(MIN_MS - 1),
            ];
            let mut chunk = Chunk {
                data: b"{}\n{}\n{}\n{}\n".to_vec(),
                first_line: 1,
                offsets: vec![0, 1, 2, 3],
                ..Default::default()
            };
            chunk.meta.timestamps = times.to_vec();
            let mut recs = Vec::new();
            crate::decode::framing::split_records(&chunk, None, &mut recs);
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![0; 4]))];
            let mut errors = RowErrors::new();
            m.fill(&s, &chunk, &recs, &[0, 1, 2, 3], &mut columns, &mut errors);
            assert_eq!(errors.len(), bad, "{ty}: {errors:?}");
            if bad > 0 {
                assert_eq!(
                    errors[0],
                    (
                        1,
                        format!(
                            "the message timestamp {} ms is outside years 1 to 9999",
                            i64::MAX
                        )
                    )
                );
                assert_eq!(errors[1].0, 3);
                assert_eq!(crate::decode::reason_class(&errors[0].1), "metadata");
                assert_eq!(columns[0].null_count(), 3);
            } else {
                assert_eq!(columns[0].null_count(), 1);
            }
        }
    }
    /// In a zoned field, the column holds the message's instant (before, it was moved by the
    /// zone's offset), and a message timestamp whose wall-clock time there is past year 9999
    /// is a dead letter (JSON writes that time): 9999-12-31T12:00Z is year 10000 at +14:00.
    #[test]
    fn a_message_timestamp_past_year_9999_in_its_zone_is_named() {
        let s = schema(
            "[[fields]]\nname = \"t\"\nsource = \"_kafka_timestamp\"\ntype = \"timestamp\"\n\
             timezone = \"+14:00\"\n",
        );
        let m = MetaColumns::new(&s).unwrap();
        let mut chunk = Chunk {
            data: b"{}\n{}\n".to_vec(),
            first_line: 1,
            offsets: vec![0, 1],
            ..Default::default()
        };
        chunk.meta.timestamps = vec![Some(253_402_246_800_000), Some(253_402_257_600_000)];
        let mut recs = Vec::new();
        crate::decode::framing::split_records(&chunk, None, &mut recs);
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![0; 2]))];
        let mut errors = RowErrors::new();
        m.fill(&s, &chunk, &recs, &[0, 1], &mut columns, &mut errors);
        // The column holds the instants as they are (a cast moved them by 14 hours before).
        let held = arrow::compute::cast(&columns[0], &DataType::Int64).unwrap();
        let held = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&held);
        assert_eq!(held.value(0), 253_402_246_800_000);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 1);
        assert!(
            errors[0].1.contains("in the field's zone `+14:00`"),
            "{errors:?}"
        );
        assert_eq!(crate::decode::reason_class(&errors[0].1), "metadata");
    }

    /// A record's own key named like a metadata source is not read: the column holds the
    /// message's metadata whatever the key holds, so junk there is no dead letter (on the
    /// fast path and on arrow-json's, which reads the second record for its nested field).
    #[test]
    fn a_records_own_metadata_key_is_not_read() {
        use crate::decode::{DecodeOptions, RecordDecoder};
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let s = Arc::new(schema(
            "[[fields]]\nname = \"o\"\nsource = \"_kafka_offset\"\ntype = \"int64\"\n\
             [[fields]]\nname = \"p\"\nsource = \"_kafka_partition\"\ntype = \"int32\"\n\
             [[fields]]\nname = \"x\"\ntype = \"string\"\n",
        ));
        let data = b"{\"_kafka_offset\":\"junk\",\"_kafka_partition\":[1],\"x\":\"a\"}\n\
            {\"_kafka_offset\":1.5,\"x\":\"b\"}\n\
            {\"_kafka_offset\":{\"deep\":[[1]]},\"x\":\"c\"}\n";
        let mut chunk = Chunk {
            data: data.to_vec(),
            first_line: 1,
            offsets: vec![40, 41, 42],
            ..Default::default()
        };
        chunk.meta.partition = 3;
        let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
        let out = d.decode(&chunk);
        assert!(out.dead.is_empty(), "{:?}", out.dead);
        let b = arrow::compute::concat_batches(&out.batches[0].schema(), &out.batches).unwrap();
        let offsets: Vec<i64> = b.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(offsets, vec![40, 41, 42]);
        assert_eq!(b.column(2).as_string::<i32>().value(2), "c");
    }
}
