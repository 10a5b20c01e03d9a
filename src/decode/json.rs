//! JSON lines → columns: the fast path first ([`super::fast`]), arrow-json's `Decoder` for
//! the records it hands back (and for schemas it does not read).
//!
//! On arrow-json's side, a group that fails is split and each part decoded again, down to the single bad records,
//! which become dead letters. Malformed JSON stops the parser inside a known record, so the
//! group is split around it; a conversion error (wrong type, overflow) has no row, so the group
//! is halved. Good groups cost one decode; bad records cost O(bad × log(group)) extra work.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::reader::{Decoder, ReaderBuilder};
use arrow::record_batch::RecordBatch;

use super::columns::{epoch_to_timestamp, from_text};
use super::fast::FastJson;
use super::leaves;
use super::range::{check_date_range, check_timestamp_range};
use super::unknown;
use super::width::{self, Widths};
use super::{is_native, Chunk, DeadLetter, Record, Stage};
use crate::schema::{FieldType, RepoSchema, TimeFormat};

/// Where a schema field's column comes from.
#[derive(Clone, Copy)]
enum Column {
    /// This column of `decode_schema`.
    Read(usize),
    /// The record's JSON text under the key (`json` fields, in `raw_fields`).
    Raw,
    /// Kafka metadata ([`super::meta`]), filled after decoding: a record's own key of that
    /// name is not read, so what it holds cannot fail the record.
    Meta,
}

pub(crate) struct JsonDecoder {
    /// Top-level fields as read, named by their JSON keys, all nullable (required fields are
    /// checked afterwards, with a clear reason per record): the fast path's columns, and
    /// arrow-json's once its text leaves are converted.
    decode_schema: SchemaRef,
    /// What arrow-json reads: `decode_schema` with decimals and integers, at any depth, read as
    /// text ([`leaves`]).
    read_schema: SchemaRef,
    /// Columns of `decode_schema` arrow-json's batches go through [`leaves::convert`] for
    /// (read as text, or holding nested dates and timestamps), with their field's index.
    text_leaves: Vec<(usize, usize)>,
    /// For each schema field, where its column comes from.
    column_of: Vec<Column>,
    /// JSON keys of `json`-typed fields, in schema order, with their field index.
    raw_fields: Vec<(usize, String)>,
    batch_size: usize,
    decoder: Option<Decoder>,
    fast: Option<Box<FastJson>>,
    /// What a record's parts may decode to ([`width::measure`]).
    widths: Arc<Widths>,
}

impl Clone for JsonDecoder {
    fn clone(&self) -> Self {
        JsonDecoder {
            decode_schema: self.decode_schema.clone(),
            read_schema: self.read_schema.clone(),
            text_leaves: self.text_leaves.clone(),
            column_of: self.column_of.clone(),
            raw_fields: self.raw_fields.clone(),
            batch_size: self.batch_size,
            decoder: None,
            fast: self.fast.clone(),
            widths: self.widths.clone(),
        }
    }
}

impl JsonDecoder {
    /// The widths records are measured with ([`width::measure`]).
    pub(crate) fn widths(&self) -> &Arc<Widths> {
        &self.widths
    }

    /// A decoder for `schema`; `known`, when unknown fields are refused, names the keys that
    /// are not unknown.
    ///
    /// Fields that read one key (`source`) share its column when they read it as one type
    /// (a string and a timestamp with a pattern both read text); a key read as two types is
    /// refused with both fields' names: arrow-json and the fast path read a key once.
    pub fn new(
        schema: &RepoSchema,
        batch_size: usize,
        known: Option<&HashSet<String>>,
    ) -> Result<Self, (String, String)> {
        // Key → (its column of `decode_schema`, the first field reading it).
        let mut read_keys: std::collections::HashMap<&str, (usize, &str)> =
            std::collections::HashMap::new();
        let mut fields: Vec<Field> = Vec::new();
        let mut read_fields: Vec<Field> = Vec::new();
        let mut epochs = Vec::new();
        let mut text_leaves = Vec::new();
        let mut column_of = Vec::new();
        let mut raw_fields = Vec::new();
        for (i, f) in schema.fields.iter().enumerate() {
            if super::meta::MetaKind::of(&f.source).is_some() {
                column_of.push(Column::Meta);
                continue;
            }
            let ty = match &f.ty {
                FieldType::Json => {
                    raw_fields.push((i, f.source.clone()));
                    column_of.push(Column::Raw);
                    continue;
                }
                FieldType::Timestamp { format, .. } => match format {
                    TimeFormat::EpochSeconds => DataType::Float64,
                    TimeFormat::EpochMillis | TimeFormat::EpochMicros => DataType::Int64,
                    TimeFormat::Pattern(_) => DataType::Utf8,
                    TimeFormat::Rfc3339 => f.arrow_type(),
                },
                ty if is_native(ty) => f.arrow_type(),
                _ => DataType::Utf8,
            };
            // Decimals and integers, at any depth, are read as text and converted exactly.
            let read = if leaves::any(&f.ty) {
                leaves::read_type(f)
            } else {
                ty.clone()
            };
            if let Some(&(c, first)) = read_keys.get(f.source.as_str()) {
                let converted = text_leaves.iter().any(|&(l, _)| l == c);
                if *fields[c].data_type() != ty
                    || *read_fields[c].data_type() != read
                    || leaves::converted(&f.ty) != converted
                {
                    return Err((
                        f.name.clone(),
                        format!(
                            "it reads the key `{}` as {}, and field `{first}` reads it as \
                             another type; in JSON input one key is read as one type",
                            f.source,
                            f.type_name()
                        ),
                    ));
                }
                column_of.push(Column::Read(c));
                continue;
            }
            read_keys.insert(&f.source, (fields.len(), &f.name));
            if matches!(
                &f.ty,
                FieldType::Timestamp {
                    format: TimeFormat::EpochMillis | TimeFormat::EpochMicros,
                    ..
                }
            ) {
                epochs.push(fields.len());
            }
            column_of.push(Column::Read(fields.len()));
            if leaves::converted(&f.ty) {
                text_leaves.push((fields.len(), i));
            }
            read_fields.push(Field::new(&f.source, read, true));
            fields.push(Field::new(&f.source, ty, true));
        }
        let decode_schema = Arc::new(Schema::new(fields));
        let read_schema = Arc::new(Schema::new(read_fields));
        let raw_keys: Vec<String> = raw_fields.iter().map(|(_, k)| k.clone()).collect();
        Ok(JsonDecoder {
            fast: FastJson::new(&decode_schema, &epochs, &raw_keys, known).map(Box::new),
            widths: Arc::new(Widths::of(&decode_schema)),
            decode_schema,
            read_schema,
            text_leaves,
            column_of,
            raw_fields,
            // Groups never hold more records than a chunk's lines, and arrow-json reserves
            // room for the whole batch size before reading (`channel.batch_rows` unbounded
            // reserved gigabytes, or overflowed).
            batch_size: batch_size.clamp(1, super::framing::MAX_CHUNK_LINES),
            decoder: None,
        })
    }

    fn build(&self) -> Decoder {
        ReaderBuilder::new(self.read_schema.clone())
            .with_batch_size(self.batch_size + 1)
            .with_coerce_primitive(true)
            .build_decoder()
            .expect("decoder for a validated schema")
    }

    /// Decodes `recs` into one batch, or fails as a whole. A failure may carry a hint: the
    /// index of the record the failure is in.
    ///
    /// Records are fed to the decoder one at a time and each must hold exactly one whole
    /// value: fed as one span, a line left open (`{"a":`) would be closed by the next line and
    /// two broken lines would pass as rows.
    fn try_group(
        &mut self,
        data: &[u8],
        recs: &[Record],
    ) -> Result<RecordBatch, (String, Option<usize>)> {
        let mut dec = self.decoder.take().unwrap_or_else(|| self.build());
        for (i, r) in recs.iter().enumerate() {
            let before = dec.len();
            let bytes = &data[r.start..r.end];
            // The tape counts a row when it starts, so after a parse error the row the parser
            // was in is this record's.
            let consumed = dec
                .decode(bytes)
                .map_err(|e| (super::dead::arrow_reason(e), Some(i)))?;
            let reason = if dec.has_partial_record() {
                "incomplete JSON value (truncated record?)"
            } else if consumed < bytes.len() || dec.len() != before + 1 {
                "the line holds more than one JSON value"
            } else {
                continue;
            };
            return Err((reason.into(), Some(i)));
        }
        let batch = match dec
            .flush()
            .map_err(|e| (super::dead::arrow_reason(e), None))?
        {
            Some(b) => b,
            None => RecordBatch::new_empty(self.read_schema.clone()),
        };
        // The decoder keeps the room its tape took (up to about 9 bytes a byte of text), held
        // while idle, outside every budget: kept for the next group only after a small one.
        let text: usize = recs.iter().map(|r| r.end - r.start).sum();
        if text <= KEEP_DECODER_AFTER {
            self.decoder = Some(dec);
        }
        if batch.num_rows() != recs.len() {
            return Err(("record count mismatch".into(), None));
        }
        Ok(batch)
    }

    /// Decodes `recs`, isolating bad records by bisection. Good batches go to `good` with the
    /// group-relative index of each row's record in `rows`, in record order.
    ///
    /// The parts still to try are kept on an explicit work list (last in, first out, pushed
    /// right to left so parts are tried in record order): the input decides how many parts
    /// there are (a run of 100,000 malformed lines is 100,000 parts), so this must not recurse.
    fn decode_bisect(
        &mut self,
        data: &[u8],
        recs: &[Record],
        good: &mut Vec<RecordBatch>,
        rows: &mut Vec<usize>,
        dead: &mut Vec<DeadLetter>,
    ) {
        // (first record, end) ranges into `recs`.
        let mut todo: Vec<(usize, usize)> = vec![(0, recs.len())];
        while let Some((lo, hi)) = todo.pop() {
            let part = &recs[lo..hi];
            match self.try_group(data, part) {
                Ok(batch) => {
                    rows.extend(lo..hi);
                    good.push(batch);
                }
                Err((reason, _)) if part.len() == 1 => {
                    let r = &part[0];
                    dead.push(DeadLetter {
                        position: r.pos,
                        reason,
                        record: data[r.start..r.end].to_vec(),
                    });
                }
                Err((_, Some(h))) if h < part.len() => {
                    // Malformed JSON: split around the record the parser stopped in.
                    let h = lo + h;
                    if h + 1 < hi {
                        todo.push((h + 1, hi));
                    }
                    todo.push((h, h + 1));
                    if h > lo {
                        todo.push((lo, h));
                    }
                }
                Err(_) => {
                    let mid = lo + part.len() / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                }
            }
        }
    }

    /// Only arrow-json from now on (the reference the fast path is checked against).
    pub fn reference_only(&mut self) {
        self.fast = None;
    }

    /// Decodes `recs` into `stage`: the fast path's records, then the ones it hands back
    /// through the unknown-field check (`unknown`: the names that are not unknown) and
    /// arrow-json, merged back into record order.
    pub fn decode(
        &mut self,
        schema: &RepoSchema,
        chunk: &Chunk,
        recs: &[Record],
        unknown: Option<&HashSet<String>>,
        stage: &mut Stage,
        dead: &mut Vec<DeadLetter>,
    ) {
        let data = &chunk.data[..];
        let mut fast_rows = Vec::new();
        let mut slow = Vec::new();
        let fast = match &mut self.fast {
            Some(f) => f.decode(data, recs, &mut fast_rows, &mut slow),
            None => {
                slow.extend(0..recs.len());
                None
            }
        };
        let (slow_rows, slow_batch, slow_errors) = if slow.is_empty() {
            (Vec::new(), None, Vec::new())
        } else {
            self.reference(schema, chunk, recs, &slow, unknown, dead)
        };
        let batch = match (fast, slow_batch) {
            (None, None) => return,
            (Some(b), None) => {
                stage.rows = fast_rows;
                b
            }
            (None, Some(b)) => {
                stage.rows = slow_rows;
                b
            }
            (Some(f), Some(s)) => {
                let (rows, batch) = merge(&f, fast_rows, &s, slow_rows);
                stage.rows = rows;
                batch
            }
        };
        for (rec, reason) in slow_errors {
            let row = stage
                .rows
                .binary_search(&rec)
                .expect("a row of the slow records");
            stage.errors.push((row, reason));
        }
        let raw = if self.raw_fields.is_empty() {
            Vec::new()
        } else {
            self.raw_columns(data, recs, &stage.rows, &mut stage.errors)
        };
        let mut raw = raw.into_iter();
        for (i, f) in schema.fields.iter().enumerate() {
            let col = match self.column_of[i] {
                Column::Raw => raw.next().expect("one raw column per json field"),
                Column::Meta => arrow::array::new_null_array(&f.arrow_type(), stage.rows.len()),
                Column::Read(c) => convert(batch.column(c), f, &mut stage.errors),
            };
            stage.columns.push(col);
        }
    }

    /// Extracts the JSON text of `json`-typed fields for the good rows.
    fn raw_columns(
        &self,
        data: &[u8],
        recs: &[Record],
        rows: &[usize],
        errors: &mut super::columns::RowErrors,
    ) -> Vec<ArrayRef> {
        let mut builders: Vec<StringBuilder> = self
            .raw_fields
            .iter()
            .map(|_| StringBuilder::with_capacity(rows.len(), rows.len() * 16))
            .collect();
        for (row, &r) in rows.iter().enumerate() {
            let rec = &recs[r];
            match super::raw::pick(&data[rec.start..rec.end], &self.raw_fields) {
                Ok(values) => {
                    for (b, v) in builders.iter_mut().zip(values) {
                        match v {
                            Some(v) if v.get() != "null" => b.append_value(v.get()),
                            _ => b.append_null(),
                        }
                    }
                }
                Err(e) => {
                    errors.push((row, format!("invalid JSON: {e}")));
                    builders.iter_mut().for_each(|b| b.append_null());
                }
            }
        }
        builders
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .collect()
    }
}

impl JsonDecoder {
    /// Decodes the records `slow` (indices into `recs`) with arrow-json: the rows' record
    /// indices, their batch (of `decode_schema`: text leaves converted) and the errors of the
    /// conversion by record index. Unknown keys (`unknown`: the names that are not unknown) are
    /// looked for first in records strict JSON reads, and after arrow-json has read them in
    /// records only a lenient reader reads (so a record arrow-json refuses keeps arrow-json's
    /// reason, class `malformed`).
    fn reference(
        &mut self,
        schema: &RepoSchema,
        chunk: &Chunk,
        recs: &[Record],
        slow: &[usize],
        unknown: Option<&HashSet<String>>,
        dead: &mut Vec<DeadLetter>,
    ) -> (Vec<usize>, Option<RecordBatch>, Vec<(usize, String)>) {
        let data = &chunk.data[..];
        let refuse = |r: &Record, key: String, dead: &mut Vec<DeadLetter>| {
            dead.push(DeadLetter {
                position: r.pos,
                reason: format!(
                    "unknown field `{key}` (the schema's unknown_fields is not `ignore`)"
                ),
                record: data[r.start..r.end].to_vec(),
            })
        };
        let mut part = Vec::with_capacity(slow.len());
        let mut index = Vec::with_capacity(slow.len());
        // Indices into `part` of records to check once arrow-json has read them.
        let mut lenient = Vec::new();
        for &i in slow {
            let r = &recs[i];
            // Nested too deep, or past what a record may decode to: a dead letter before
            // arrow-json reads it.
            // Not again when the source measured every line with these widths (`cost`).
            let text = &data[r.start..r.end];
            let measure = if chunk.measured {
                width::Measure::Bytes(0)
            } else {
                width::measure(text, &self.widths, super::depth::MAX_NESTING)
            };
            let too_much = match measure {
                width::Measure::TooDeep => Some(super::depth::reason()),
                width::Measure::Bytes(n) if n > width::MAX_RECORD_DECODED => Some(width::reason(n)),
                width::Measure::Bytes(_) => None,
            };
            if let Some(reason) = too_much {
                dead.push(DeadLetter {
                    position: r.pos,
                    reason,
                    record: text.to_vec(),
                });
                continue;
            }
            match unknown.map(|k| unknown::strict(&data[r.start..r.end], k)) {
                Some(unknown::Reading::Unknown(key)) => {
                    refuse(r, key, dead);
                    continue;
                }
                Some(unknown::Reading::NotStrict) => lenient.push(part.len()),
                _ => {}
            }
            part.push(*r);
            index.push(i);
        }
        let mut good = Vec::with_capacity(1);
        let mut rows = Vec::new();
        if !part.is_empty() {
            self.decode_bisect(data, &part, &mut good, &mut rows, dead);
        }
        let mut batch = match good.len() {
            0 => None,
            1 => good.pop(),
            _ => Some(
                arrow::compute::concat_batches(&self.read_schema, &good)
                    .expect("batches of one schema concatenate"),
            ),
        };
        if let (Some(names), Some(b)) = (unknown, &batch) {
            if !lenient.is_empty() {
                let keep: Vec<bool> = rows
                    .iter()
                    .map(|p| {
                        if lenient.binary_search(p).is_err() {
                            return true;
                        }
                        let r = &part[*p];
                        match unknown::lenient(&data[r.start..r.end], names) {
                            Some(key) => {
                                refuse(r, key, dead);
                                false
                            }
                            None => true,
                        }
                    })
                    .collect();
                if keep.contains(&false) {
                    let mut k = keep.iter();
                    rows.retain(|_| *k.next().expect("one flag per row"));
                    let mask = arrow::array::BooleanArray::from(keep);
                    let kept = arrow::compute::filter_record_batch(b, &mask)
                        .expect("filter by a mask of equal length");
                    batch = (kept.num_rows() > 0).then_some(kept);
                }
            }
        }
        let rows: Vec<usize> = rows.into_iter().map(|k| index[k]).collect();
        let mut errors = Vec::new();
        let batch = batch.map(|b| self.convert_leaves(schema, b, &rows, &mut errors));
        (rows, batch, errors)
    }

    /// `batch` (of `read_schema`, rows of the records `rows`) with its text leaves converted:
    /// a batch of `decode_schema`. A value that does not convert is listed in `errors` by its
    /// record's index.
    fn convert_leaves(
        &self,
        schema: &RepoSchema,
        batch: RecordBatch,
        rows: &[usize],
        errors: &mut Vec<(usize, String)>,
    ) -> RecordBatch {
        if self.text_leaves.is_empty() {
            return batch;
        }
        let mut columns = batch.columns().to_vec();
        let mut row_errors = Vec::new();
        for &(c, f) in &self.text_leaves {
            columns[c] = leaves::convert(&columns[c], &schema.fields[f], &mut row_errors);
        }
        errors.extend(row_errors.into_iter().map(|(r, why)| (rows[r], why)));
        RecordBatch::try_new(self.decode_schema.clone(), columns)
            .expect("converted leaves match the decode schema")
    }
}

/// Merges two batches whose rows belong to the records `a_rows` and `b_rows` (each ascending)
/// into one in record order.
fn merge(
    a: &RecordBatch,
    a_rows: Vec<usize>,
    b: &RecordBatch,
    b_rows: Vec<usize>,
) -> (Vec<usize>, RecordBatch) {
    let mut rows = Vec::with_capacity(a_rows.len() + b_rows.len());
    let mut take = Vec::with_capacity(rows.capacity());
    let (mut i, mut j) = (0, 0);
    while i < a_rows.len() || j < b_rows.len() {
        if j == b_rows.len() || (i < a_rows.len() && a_rows[i] < b_rows[j]) {
            rows.push(a_rows[i]);
            take.push((0, i));
            i += 1;
        } else {
            rows.push(b_rows[j]);
            take.push((1, j));
            j += 1;
        }
    }
    let batch = arrow::compute::interleave_record_batch(&[a, b], &take)
        .expect("batches of one schema interleave");
    (rows, batch)
}

/// Converts a decoded column to the field's output type (a no-op for natively read types).
fn convert(
    col: &ArrayRef,
    f: &crate::schema::FieldSpec,
    errors: &mut super::columns::RowErrors,
) -> ArrayRef {
    match &f.ty {
        FieldType::Timestamp {
            format: TimeFormat::EpochSeconds | TimeFormat::EpochMillis | TimeFormat::EpochMicros,
            ..
        } => epoch_to_timestamp(col.as_ref(), f, errors),
        FieldType::Timestamp {
            format: TimeFormat::Rfc3339,
            ..
        } => {
            check_timestamp_range(col.as_ref(), &f.name, errors);
            col.clone()
        }
        FieldType::Date => {
            check_date_range(col.as_ref(), &f.name, errors);
            col.clone()
        }
        ty if is_native(ty) => col.clone(),
        _ => from_text(col.as_string::<i32>(), f, errors),
    }
}

/// The most text a group may hold for arrow-json's decoder to be kept for the next one (its
/// tape then holds at most about 1 MiB while idle; building a new one costs far less than
/// decoding more than this).
const KEEP_DECODER_AFTER: usize = 128 << 10;

#[cfg(test)]
impl JsonDecoder {
    /// Whether an arrow-json decoder is kept between groups.
    pub fn keeps_arrow_decoder(&self) -> bool {
        self.decoder.is_some()
    }

    /// The fast path this decoder built, if its schema has one.
    pub fn fast_for_tests(&self) -> Option<FastJson> {
        self.fast.as_deref().cloned()
    }
}
