//! Message bytes → Arrow `RecordBatch`es against a repo schema.
//!
//! Input kinds: JSON objects (one per line, decoded in one pass by arrow-json's `Decoder`),
//! raw text lines (one string column, or split by a delimiter into the schema's fields) and
//! CSV/TSV. A record that does not fit (malformed, wrong type, overflow, missing required
//! field, invalid UTF-8) is isolated and returned as a [`DeadLetter`] with its position and the
//! reason; the rest of its batch decodes normally.

mod columns;
pub mod cost;
mod dead;
mod delimited;
mod depth;
#[cfg(test)]
mod differential;
mod fast;
mod finish;
pub mod framing;
mod json;
mod leaves;
pub mod meta;
mod number;
mod range;
mod raw;
mod unknown;
pub mod width;
pub mod writable;

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

pub use dead::{cut, reason_class, DeadLetter, MAX_REASON, REASON_CLASSES};
pub use delimited::input_kind;
pub use framing::{Chunk, Position, Record};
pub(crate) use range::first_out_of_range;

use crate::schema::{FieldType, RepoSchema};

/// Name of the optional column that carries each record's original text (for the raw text
/// output format).
pub const RAW_COLUMN: &str = "_raw";

/// Errors that stop decoding altogether (configuration problems). Bad records are never errors:
/// they become dead letters.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("schema {schema}, field `{field}`: {reason}")]
    Field {
        schema: String,
        field: String,
        reason: String,
    },
    #[error("input kind {kind} cannot be used with schema {schema}: {reason}")]
    Kind {
        kind: &'static str,
        schema: String,
        reason: String,
    },
    #[error("CSV header of {source_name}: {reason}")]
    Header { source_name: String, reason: String },
}

/// The shape of input records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// One JSON object per line.
    Json,
    /// Raw text lines: the whole line into the schema's single string field, or split by
    /// `delimiter` into the schema's fields in order.
    Text { delimiter: Option<String> },
    /// CSV (or TSV with `delimiter = b'\t'`), RFC 4180 quoting. With `header`, the first record
    /// names the columns and fields are matched by name (their `source`).
    Csv { delimiter: u8, header: bool },
}

impl InputKind {
    pub fn name(&self) -> &'static str {
        match self {
            InputKind::Json => "json",
            InputKind::Text { .. } => "text",
            InputKind::Csv {
                delimiter: b'\t', ..
            } => "tsv",
            InputKind::Csv { .. } => "csv",
        }
    }

    /// A text input's delimiter, when it splits lines into fields (a line of it and
    /// whitespace is then a record, see `framing::blank`).
    pub fn text_delimiter(&self) -> Option<&[u8]> {
        match self {
            InputKind::Text { delimiter: Some(d) } => Some(d.as_bytes()),
            _ => None,
        }
    }

    /// CSV's delimiter: records may span lines inside quoted fields. `None` for the kinds
    /// whose records are lines.
    pub fn quoting(&self) -> Option<u8> {
        match self {
            InputKind::Csv { delimiter, .. } => Some(*delimiter),
            _ => None,
        }
    }
}

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub kind: InputKind,
    /// Maximum rows per output batch.
    pub batch_size: usize,
    /// Add a [`RAW_COLUMN`] with each record's original text.
    pub keep_raw: bool,
    /// The output is ORC: values it cannot hold are dead letters ([`writable`]).
    pub orc: bool,
    /// Output columns whose values a table records per file (its partition columns): longer
    /// than [`writable::MAX_PARTITION_VALUE`], a value is a dead letter.
    pub partition_columns: Vec<usize>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            kind: InputKind::Json,
            batch_size: 8192,
            keep_raw: false,
            orc: false,
            partition_columns: Vec::new(),
        }
    }
}

/// The result of decoding one chunk.
#[derive(Debug, Default, Clone)]
pub struct Decoded {
    pub batches: Vec<RecordBatch>,
    pub dead: Vec<DeadLetter>,
    /// Records seen (blank lines are not records).
    pub records: u64,
    /// Rows removed by filter stages.
    pub filtered: u64,
}

impl Decoded {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// The memory its batches and dead letters hold.
    pub fn memory_bytes(&self) -> u64 {
        let batches: usize = self.batches.iter().map(|b| b.get_array_memory_size()).sum();
        let dead: usize = self
            .dead
            .iter()
            .map(|d| d.record.capacity() + d.reason.capacity() + std::mem::size_of::<DeadLetter>())
            .sum();
        (batches + dead) as u64
    }
}

/// Decodes chunks of one input kind against one repo schema. Cheap to clone per worker thread.
#[derive(Clone)]
pub struct RecordDecoder {
    schema: Arc<RepoSchema>,
    opts: DecodeOptions,
    out_schema: SchemaRef,
    defaults: Vec<Option<ArrayRef>>,
    meta: meta::MetaColumns,
    inner: Inner,
    /// The input names of the schema's fields, when unknown fields are not ignored.
    unknown: Option<Arc<std::collections::HashSet<String>>>,
    /// Filter and transform stages applied to every decoded batch.
    stages: Option<Arc<crate::stage::Stages>>,
    /// What a record's parts may decode to.
    widths: Arc<width::Widths>,
}

#[derive(Clone)]
enum Inner {
    Json(json::JsonDecoder),
    Delimited(delimited::DelimitedDecoder),
}

impl RecordDecoder {
    /// Builds a decoder; fails when the schema cannot be read from this input kind or a default
    /// does not parse. `csv_header` is the CSV header record when the kind has one.
    pub fn new(
        schema: Arc<RepoSchema>,
        opts: DecodeOptions,
        csv_header: Option<&[u8]>,
    ) -> Result<Self, DecodeError> {
        let mut defaults = Vec::with_capacity(schema.fields.len());
        for f in &schema.fields {
            defaults.push(
                columns::default_value(f).map_err(|reason| DecodeError::Field {
                    schema: schema.path.display().to_string(),
                    field: f.name.clone(),
                    reason,
                })?,
            );
        }
        let mut fields: Vec<Field> = schema
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if opts.keep_raw {
            fields.push(Field::new(RAW_COLUMN, DataType::Utf8, false));
        }
        let unknown = (schema.unknown_fields != crate::schema::UnknownFields::Ignore).then(|| {
            Arc::new(
                schema
                    .fields
                    .iter()
                    .filter(|f| meta::MetaKind::of(&f.source).is_none())
                    .map(|f| f.source.clone())
                    .collect(),
            )
        });
        let inner = match &opts.kind {
            InputKind::Json => Inner::Json(
                json::JsonDecoder::new(&schema, opts.batch_size, unknown.as_deref()).map_err(
                    |(field, reason)| DecodeError::Field {
                        schema: schema.path.display().to_string(),
                        field,
                        reason,
                    },
                )?,
            ),
            kind => Inner::Delimited(delimited::DelimitedDecoder::new(&schema, kind, csv_header)?),
        };
        Ok(RecordDecoder {
            widths: Arc::new(width::Widths::of(&schema.arrow_schema())),
            stages: None,
            unknown,
            meta: meta::MetaColumns::new(&schema)?,
            out_schema: Arc::new(Schema::new(fields)),
            schema,
            opts,
            defaults,
            inner,
        })
    }

    /// Applies `stages` to every decoded batch (planned over [`Self::decoded_schema`]); the
    /// output schema becomes theirs. Rows a stage fails on become dead letters with the
    /// stage's reason (class `stage`); the repo's `on_error` is applied by the caller.
    pub fn with_stages(mut self, stages: crate::stage::Stages) -> Self {
        self.stages = Some(Arc::new(stages));
        self
    }

    /// Sets [`DecodeOptions::partition_columns`] (known once the path template is compiled
    /// against [`Self::output_schema`]).
    pub fn with_partition_columns(mut self, columns: Vec<usize>) -> Self {
        self.opts.partition_columns = columns;
        self
    }

    /// Reads JSON with arrow-json alone, without the fast path in front of it: the reference
    /// the fast path is checked against, kept for tests and benchmarks.
    #[doc(hidden)]
    pub fn reference_json(mut self) -> Self {
        if let Inner::Json(j) = &mut self.inner {
            j.reference_only();
        }
        self
    }

    /// The schema of decoded batches, before any stage.
    pub fn decoded_schema(&self) -> SchemaRef {
        self.out_schema.clone()
    }

    /// The stages, if any.
    pub fn stages(&self) -> Option<&crate::stage::Stages> {
        self.stages.as_deref()
    }

    /// The schema of the batches this decoder produces.
    pub fn output_schema(&self) -> SchemaRef {
        match &self.stages {
            Some(st) => st.output_schema(),
            None => self.out_schema.clone(),
        }
    }

    /// Checks that the CSV header of the input `name` gives a column to every required field
    /// (chunks of that input carry the header in [`Chunk::header`]).
    pub fn check_header(&self, name: &str, header: &[u8]) -> Result<(), DecodeError> {
        match &self.inner {
            Inner::Delimited(d) => {
                d.clone()
                    .use_header(&self.schema, header)
                    .map_err(|e| match e {
                        DecodeError::Header { reason, .. } => DecodeError::Header {
                            source_name: name.to_string(),
                            reason,
                        },
                        e => e,
                    })
            }
            Inner::Json(_) => Ok(()),
        }
    }

    /// Decodes every record of `chunk`.
    pub fn decode(&mut self, chunk: &Chunk) -> Decoded {
        // Stage functions' size guards count what they grow each chunk by.
        crate::stage::guard::set_account(Default::default());
        self.decode_on(chunk)
    }

    /// Decodes every record of `chunk`, its stage functions' growth and work counted on
    /// from the last decode of this thread: the pieces of one push request are one account,
    /// as the request is (held at once, each piece's growth added to the others').
    pub fn decode_on(&mut self, chunk: &Chunk) -> Decoded {
        let mut records = Vec::new();
        framing::split_records_of(chunk, &self.opts.kind, &mut records);
        let mut out = Decoded {
            records: records.len() as u64,
            ..Default::default()
        };
        for group in records.chunks(self.opts.batch_size.max(1)) {
            self.decode_guarded(chunk, group, &mut out);
        }
        out.dead.sort_by_key(|d| d.position.offset);
        for d in &mut out.dead {
            d.cut_reason();
        }
        // Messages that stood in the chunk as a placeholder: their own bytes and reason, or
        // (tombstones passed over) no dead letter, counted as filtered.
        let mut skipped = Vec::new();
        for (index, payload, why) in &chunk.meta.unreadable {
            let line = chunk.first_line + *index as u64;
            if let Ok(i) = out.dead.binary_search_by_key(&line, |d| d.position.line) {
                if why == meta::SKIPPED {
                    skipped.push(line);
                    continue;
                }
                out.dead[i].record.clone_from(payload);
                out.dead[i].reason.clone_from(why);
            }
        }
        // Messages whose line breaks stood as spaces: a dead letter holds them again.
        for index in chunk.meta.rewritten.lines() {
            let line = chunk.first_line + index as u64;
            let Ok(i) = out.dead.binary_search_by_key(&line, |d| d.position.line) else {
                continue;
            };
            // The message's whole line (the record may be trimmed of its spaces).
            let start = match index.checked_sub(1) {
                Some(j) => chunk.ends.get(j).map(|e| e + 1),
                None => Some(0),
            };
            if let (Some(start), Some(&end)) = (start, chunk.ends.get(index)) {
                let mut own = chunk.data[start..end].to_vec();
                chunk.meta.rewritten.restore(index, &mut own);
                out.dead[i].record = own;
            }
        }
        if !skipped.is_empty() {
            out.dead
                .retain(|d| skipped.binary_search(&d.position.line).is_err());
            out.filtered += skipped.len() as u64;
        }
        out
    }

    /// Decodes one group of records, turning a panic of the decoder or of a stage (a library
    /// bug that some value triggers) into dead letters of the records it panics on: the group
    /// is split in halves, on a work list rather than by recursion, until the records that
    /// panic stand alone. What a panicking attempt had added to `out` is taken back first.
    fn decode_guarded(&mut self, chunk: &Chunk, recs: &[Record], out: &mut Decoded) {
        let mut todo = vec![(0, recs.len())];
        while let Some((lo, hi)) = todo.pop() {
            let part = &recs[lo..hi];
            let (batches, dead, filtered) = (out.batches.len(), out.dead.len(), out.filtered);
            let spent = crate::stage::guard::account();
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.decode_group(chunk, part, out)
            }));
            let Err(panic) = attempt else {
                continue;
            };
            out.batches.truncate(batches);
            out.dead.truncate(dead);
            out.filtered = filtered;
            crate::stage::guard::give_back(spent);
            if let [r] = part {
                let why = crate::panics::message(panic.as_ref());
                out.dead.push(DeadLetter {
                    position: r.pos,
                    reason: format!("decoding this record failed inside a library: {why}"),
                    record: chunk.data[r.start..r.end].to_vec(),
                });
            } else {
                let mid = lo + part.len() / 2;
                todo.push((mid, hi));
                todo.push((lo, mid));
            }
        }
    }

    fn decode_group(&mut self, chunk: &Chunk, recs: &[Record], out: &mut Decoded) {
        let data = &chunk.data[..];
        crate::fault::panic_on(&data[recs[0].start..recs[recs.len() - 1].end]);
        // Invalid UTF-8 is checked once per group; only a failing group is checked per record.
        let span = &data[recs[0].start..recs[recs.len() - 1].end];
        let mut valid: Vec<Record>;
        let recs = if simdutf8::basic::from_utf8(span).is_ok() {
            recs
        } else {
            valid = Vec::with_capacity(recs.len());
            for r in recs {
                match std::str::from_utf8(&data[r.start..r.end]) {
                    Ok(_) => valid.push(*r),
                    Err(e) => out.dead.push(DeadLetter {
                        position: r.pos,
                        reason: format!(
                            "record is not valid UTF-8 (bad byte at offset {} of the record)",
                            e.valid_up_to()
                        ),
                        record: data[r.start..r.end].to_vec(),
                    }),
                }
            }
            if valid.is_empty() {
                return;
            }
            valid.as_slice()
        };
        let mut stage = Stage {
            rows: Vec::with_capacity(recs.len()),
            columns: Vec::with_capacity(self.schema.fields.len()),
            errors: Vec::new(),
        };
        match &mut self.inner {
            Inner::Json(j) => j.decode(
                &self.schema,
                chunk,
                recs,
                self.unknown.as_deref(),
                &mut stage,
                &mut out.dead,
            ),
            Inner::Delimited(d) => {
                if let Some(h) = &chunk.header {
                    if let Err(e) = d.use_header(&self.schema, h) {
                        out.dead.extend(recs.iter().map(|r| DeadLetter {
                            position: r.pos,
                            reason: e.to_string(),
                            record: data[r.start..r.end].to_vec(),
                        }));
                        return;
                    }
                }
                d.decode(&self.schema, data, recs, &mut stage, &mut out.dead)
            }
        }
        self.finish(chunk, recs, stage, out);
    }

    /// The input kind this decoder reads.
    pub fn kind(&self) -> &InputKind {
        &self.opts.kind
    }

    /// The Kafka metadata the schema asks sources to collect.
    pub fn meta(&self) -> &meta::MetaColumns {
        &self.meta
    }

    /// The repo schema this decoder reads against.
    pub fn schema(&self) -> &RepoSchema {
        &self.schema
    }

    /// What one record's decoded form may hold besides its text's worth: a dead letter's
    /// bookkeeping and reason (about 220 B with the allocator's rounding), or a row's fixed
    /// width (every column reached through structs, [`width::Widths::row`]). Tiny records
    /// decode to many times their bytes: sources cap a chunk's lines
    /// ([`framing::MAX_CHUNK_LINES`]); push reserves this per line.
    pub fn record_overhead(&self) -> u64 {
        (64 + self.widths.row()).max(256)
    }

    /// What the `lines` records of `text` may decode to besides twice their text: each
    /// record's fixed cost ([`Self::record_overhead`]), and where the schema has a list or a
    /// map, each line as measured ([`width::measure`]; JSON lines only), one by one, so no
    /// line changes how another is read. A line past what a record may decode to is a dead
    /// letter: its fixed cost.
    pub fn decoded_beyond_text(&self, text: &[u8], lines: u64) -> u64 {
        let fixed = lines * self.record_overhead();
        if !self.widths.nested() || !matches!(self.opts.kind, InputKind::Json) {
            return fixed;
        }
        let measured: u64 = text
            .split(|&b| b == b'\n')
            .map(
                |line| match width::measure(line, &self.widths, depth::MAX_NESTING) {
                    width::Measure::Bytes(n) if n <= width::MAX_RECORD_DECODED => n,
                    _ => 0,
                },
            )
            .sum();
        fixed.max(measured)
    }
}

/// Work in progress for one group of records: the decoded columns in schema order (one row per
/// entry of `rows`, which maps a row to its record in the group), and rows already known bad.
pub(crate) struct Stage {
    pub rows: Vec<usize>,
    pub columns: Vec<ArrayRef>,
    pub errors: columns::RowErrors,
}

/// True when the field is read with arrow-json directly (no text conversion afterwards).
pub(crate) fn is_native(ty: &FieldType) -> bool {
    !crate::schema::needs_text_conversion(ty)
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
