//! The fast path for JSON lines: one pass over each record, straight into the columns of a
//! flat schema, in front of arrow-json.
//!
//! Each record is read once: keys are matched against the schema (the next field in schema
//! order is tried first, then a hash lookup), string bytes are copied once into their column
//! (escapes decoded on the way), floats and dates are parsed from their bytes by the same
//! functions arrow-json calls (`lexical_core`, arrow's `Parser`), integers by the function
//! that reads arrow-json's text of them (`number::integer`: whole numbers only), timestamps in the common RFC
//! 3339 spelling by `time.rs` (checked against arrow's `string_to_datetime`, which reads every
//! other spelling), and strings are scanned eight bytes at a time, then with `memchr` (SIMD,
//! chosen at run time). A record's values are held aside until the whole record has been
//! read, so a record either lands in every column or in none.
//!
//! It is the reference decoder's equal, not its replacement: a record it is not certain of is
//! handed back, and arrow-json decides it (with the exact reason when it is bad). Handed back:
//! anything that is not one well-formed JSON object with single commas, an escaped key, a key
//! twice, a container or a value of the wrong kind for its column, a number or date that does
//! not parse, an unknown key when unknown fields are refused. Schemas with a list, struct, map,
//! decimal or raw binary field are not read here at all ([`FastJson::new`] says `None`).
//! `decode::differential` checks that both decoders give identical batches and dead letters.

use std::collections::{HashMap, HashSet};

use arrow::array::timezone::Tz;
use arrow::array::ArrayRef;
use arrow::array::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::compute::kernels::cast_utils::{string_to_datetime, Parser};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int64Type, SchemaRef, TimeUnit,
};
use arrow::record_batch::RecordBatch;

use super::Record;

mod columns;
mod scan;
pub(super) use scan::quote_or_backslash;
mod time;
use columns::Column;
pub(crate) use scan::decode_string;
use scan::{at, json_int, literal, number_end, plain, plain_string, skip_value, unescape, ws};

/// The kind of value a column holds, as arrow-json reads it.
#[derive(Clone)]
enum Kind {
    Utf8,
    /// An integer field: whole numbers only.
    Int32,
    Int64,
    /// A raw epoch number of an `epoch_ms` or `epoch_us` timestamp, read by arrow-json's own
    /// integer rules (a fraction is cut toward zero) and converted afterwards.
    Epoch,
    Float32,
    Float64,
    Bool,
    Date32,
    Timestamp(TimeUnit, Tz),
}

/// What a key of a record is to the schema.
#[derive(Clone, Copy)]
enum Key {
    /// A column; `known` is false for a key that unknown-field refusal does not name.
    Column { col: usize, known: bool },
    /// A field read elsewhere (`json` fields): its value is skipped.
    Skipped { known: bool },
}

/// One record's value for one column, held until the record has been read whole.
#[derive(Clone, Copy)]
enum Slot {
    Absent,
    Null,
    /// Bytes of the record (`scratch` false) or of the scratch buffer.
    Str {
        start: u32,
        end: u32,
        scratch: bool,
    },
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
}

/// Why a record goes to the reference decoder; the reason itself is the reference's to give.
pub(crate) struct HandBack;

pub(crate) type Step<T> = Result<T, HandBack>;

pub(crate) struct FastJson {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    /// Keys in schema order (the guess for the next key), with what each is; `None` for a name
    /// a record spells escaped (never guessed).
    order: Vec<(Option<scan::Name>, Key)>,
    keys: HashMap<Box<[u8]>, Key>,
    reject_unknown: bool,
    slots: Vec<Slot>,
    scratch: Vec<u8>,
    stack: Vec<u8>,
    columns: Vec<Column>,
    nulls: Vec<NullBufferBuilder>,
    /// Bytes per row of each string column in the last batch: the next batch's reservation.
    typical: Vec<Option<usize>>,
    /// The last timestamp's date.
    days: time::Days,
}

impl Clone for FastJson {
    /// The same reader with empty buffers (one per worker thread).
    fn clone(&self) -> Self {
        FastJson {
            schema: self.schema.clone(),
            kinds: self.kinds.clone(),
            order: self.order.clone(),
            keys: self.keys.clone(),
            reject_unknown: self.reject_unknown,
            slots: self.slots.clone(),
            scratch: Vec::new(),
            stack: Vec::new(),
            columns: Vec::new(),
            nulls: Vec::new(),
            typical: self.typical.clone(),
            days: time::Days::default(),
        }
    }
}

impl FastJson {
    /// A fast path for `schema` (the JSON decoder's decode schema), or `None` when a column's
    /// type is not one it reads. `epochs` are the columns holding raw epoch numbers (not
    /// integer fields); `skipped` are keys read by others (a key may be both, or named twice);
    /// `known`, when unknown fields are
    /// refused, the keys that are not unknown.
    pub fn new(
        schema: &SchemaRef,
        epochs: &[usize],
        skipped: &[String],
        known: Option<&HashSet<String>>,
    ) -> Option<FastJson> {
        let mut kinds = Vec::new();
        let mut order = Vec::new();
        let mut keys = HashMap::new();
        for (col, f) in schema.fields().iter().enumerate() {
            kinds.push(match f.data_type() {
                DataType::Utf8 => Kind::Utf8,
                DataType::Int32 => Kind::Int32,
                DataType::Int64 if epochs.contains(&col) => Kind::Epoch,
                DataType::Int64 => Kind::Int64,
                DataType::Float32 => Kind::Float32,
                DataType::Float64 => Kind::Float64,
                DataType::Boolean => Kind::Bool,
                DataType::Date32 => Kind::Date32,
                DataType::Timestamp(unit, Some(tz)) => Kind::Timestamp(*unit, tz.parse().ok()?),
                _ => return None,
            });
            let name: Box<[u8]> = f.name().as_bytes().into();
            let key = Key::Column {
                col,
                known: known.is_none_or(|k| k.contains(f.name())),
            };
            if keys.insert(name.clone(), key).is_some() {
                return None;
            }
            order.push((plain(&name).then(|| scan::Name::new(&name)), key));
        }
        for s in skipped {
            let name: Box<[u8]> = s.as_bytes().into();
            let key = Key::Skipped {
                known: known.is_none_or(|k| k.contains(s)),
            };
            // A key read as a column is read there (its text is picked apart from this).
            if keys.contains_key(&name) {
                continue;
            }
            keys.insert(name.clone(), key);
            order.push((plain(&name).then(|| scan::Name::new(&name)), key));
        }
        let n = kinds.len();
        if n == 0 {
            // Nothing to read (only `json` fields): a batch needs a column.
            return None;
        }
        Some(FastJson {
            schema: schema.clone(),
            columns: Vec::with_capacity(n),
            nulls: Vec::with_capacity(n),
            kinds,
            order,
            keys,
            reject_unknown: known.is_some(),
            slots: vec![Slot::Absent; n],
            scratch: Vec::new(),
            stack: Vec::new(),
            typical: vec![None; n],
            days: time::Days::default(),
        })
    }

    /// Decodes the records it is sure of into one batch (`None` when there are none); their
    /// indices go to `rows`, the others' to `handed_back`, both in record order.
    pub fn decode(
        &mut self,
        data: &[u8],
        recs: &[Record],
        rows: &mut Vec<usize>,
        handed_back: &mut Vec<usize>,
    ) -> Option<RecordBatch> {
        // Offsets are i32: a group larger than that is the reference's.
        let span = recs.last().map_or(0, |r| r.end) - recs.first().map_or(0, |r| r.start);
        if span >= i32::MAX as usize {
            handed_back.extend(0..recs.len());
            return None;
        }
        self.start(recs.len(), span);
        for (i, r) in recs.iter().enumerate() {
            let rec = &data[r.start..r.end];
            // A long record is measured on arrow-json's side, as every path must decide it.
            if rec.len() > crate::decode::width::FAST_MAX_RECORD {
                handed_back.push(i);
                continue;
            }
            match self.record(rec) {
                Ok(()) => {
                    self.commit(rec);
                    rows.push(i);
                }
                Err(HandBack) => handed_back.push(i),
            }
        }
        if rows.is_empty() {
            self.columns.clear();
            self.nulls.clear();
            return None;
        }
        Some(self.finish())
    }

    fn start(&mut self, rows: usize, bytes: usize) {
        self.columns.clear();
        self.nulls.clear();
        let strings = self
            .kinds
            .iter()
            .filter(|k| matches!(k, Kind::Utf8))
            .count();
        // What the string columns reserve together is at most the group's bytes: they cannot
        // hold more than the records.
        let wanted = |k: &Kind, t: Option<usize>| match (k, t) {
            (Kind::Utf8, None) => bytes / strings.max(1),
            (Kind::Utf8, Some(t)) => (rows * t + rows * t / 8).min(bytes),
            _ => 0,
        };
        let total: usize = self
            .kinds
            .iter()
            .zip(&self.typical)
            .map(|(k, t)| wanted(k, *t))
            .sum();
        // Large buffers one odd record needed are given back.
        for buf in [&mut self.scratch, &mut self.stack] {
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
        }
        for (k, typical) in self.kinds.iter().zip(&self.typical) {
            self.columns.push(match k {
                Kind::Utf8 => {
                    let mut offsets = Vec::with_capacity(rows + 1);
                    offsets.push(0);
                    let mut reserve = wanted(k, *typical);
                    if total > bytes {
                        reserve = (reserve as u128 * bytes as u128 / total as u128) as usize;
                    }
                    Column::Utf8 {
                        offsets,
                        bytes: Vec::with_capacity(reserve),
                    }
                }
                Kind::Int32 | Kind::Date32 => Column::I32(Vec::with_capacity(rows)),
                Kind::Int64 | Kind::Epoch | Kind::Timestamp(..) => {
                    Column::I64(Vec::with_capacity(rows))
                }
                Kind::Float32 => Column::F32(Vec::with_capacity(rows)),
                Kind::Float64 => Column::F64(Vec::with_capacity(rows)),
                Kind::Bool => Column::Bool(BooleanBufferBuilder::new(0)),
            });
            self.nulls.push(NullBufferBuilder::new(0));
        }
    }

    /// Reads one record into the slots.
    fn record(&mut self, b: &[u8]) -> Step<()> {
        self.slots.fill(Slot::Absent);
        self.scratch.clear();
        let mut i = ws(b, 0);
        if at(b, i) != b'{' {
            return Err(HandBack);
        }
        i = ws(b, i + 1);
        let mut guess = 0;
        if at(b, i) == b'}' {
            i += 1;
        } else {
            loop {
                if at(b, i) != b'"' {
                    return Err(HandBack);
                }
                let (key, close) = self.key(b, i + 1, &mut guess)?;
                i = ws(b, close + 1);
                if at(b, i) != b':' {
                    return Err(HandBack);
                }
                i = ws(b, i + 1);
                i = match key {
                    Some(Key::Column { col, known }) => {
                        if !known || !matches!(self.slots[col], Slot::Absent) {
                            return Err(HandBack);
                        }
                        self.value(b, i, col)?
                    }
                    Some(Key::Skipped { known: true }) => skip_value(&mut self.stack, b, i)?,
                    Some(Key::Skipped { known: false }) => return Err(HandBack),
                    None if self.reject_unknown => return Err(HandBack),
                    None => skip_value(&mut self.stack, b, i)?,
                };
                i = ws(b, i);
                match at(b, i) {
                    b',' => i = ws(b, i + 1),
                    b'}' => {
                        i += 1;
                        break;
                    }
                    _ => return Err(HandBack),
                }
            }
        }
        if ws(b, i) != b.len() {
            return Err(HandBack);
        }
        Ok(())
    }

    /// Reads the key whose text starts at `i`: what it is (`None`: not in the schema) and where
    /// its closing quote is. The key after the last one in schema order is tried in place first
    /// (its bytes, then a quote: no scan for the quote); a name holding a quote or backslash is
    /// never tried so, as the record would spell it escaped.
    fn key(&self, b: &[u8], i: usize, guess: &mut usize) -> Step<(Option<Key>, usize)> {
        if let Some((Some(n), k)) = self.order.get(*guess) {
            let close = i + n.len();
            if at(b, close) == b'"' && n.is_at(b, i) {
                *guess += 1;
                return Ok((Some(*k), close));
            }
        }
        let (start, close) = plain_string(b, i)?;
        let Some(&k) = self.keys.get(&b[start..close]) else {
            return Ok((None, close));
        };
        if let Key::Column { col, .. } = k {
            *guess = col + 1;
        }
        Ok((Some(k), close))
    }

    /// Reads the value at `i` for column `col` into its slot; returns where the value ends.
    fn value(&mut self, b: &[u8], i: usize, col: usize) -> Step<usize> {
        let (slot, end) = match at(b, i) {
            b'"' => {
                let (start, end, scratch, after) = self.string(b, i + 1)?;
                let kind = &self.kinds[col];
                if let Kind::Utf8 = kind {
                    let slot = Slot::Str {
                        start: start as u32,
                        end: end as u32,
                        scratch,
                    };
                    self.slots[col] = slot;
                    return Ok(after);
                }
                let text = if scratch {
                    &self.scratch[start..end]
                } else {
                    &b[start..end]
                };
                if let Kind::Timestamp(unit, _) = kind {
                    if let Some(v) = time::rfc3339(text, *unit, &mut self.days) {
                        self.slots[col] = Slot::I64(v);
                        return Ok(after);
                    }
                }
                // Records are valid UTF-8 (checked per group) and escapes decode to chars.
                let s = std::str::from_utf8(text).map_err(|_| HandBack)?;
                let slot = match kind {
                    Kind::Utf8 => unreachable!("strings are taken above"),
                    Kind::Int32 => {
                        Slot::I32(whole(s.as_bytes(), i32::MIN.into(), i32::MAX.into())? as i32)
                    }
                    Kind::Int64 => Slot::I64(whole(s.as_bytes(), i64::MIN, i64::MAX)?),
                    Kind::Epoch => Slot::I64(Int64Type::parse(s).ok_or(HandBack)?),
                    Kind::Float32 => Slot::F32(Float32Type::parse(s).ok_or(HandBack)?),
                    Kind::Float64 => Slot::F64(Float64Type::parse(s).ok_or(HandBack)?),
                    Kind::Date32 => Slot::I32(Date32Type::parse(s).ok_or(HandBack)?),
                    Kind::Bool => return Err(HandBack),
                    // Spellings other than the common one.
                    Kind::Timestamp(unit, tz) => {
                        let t = string_to_datetime(tz, s).map_err(|_| HandBack)?;
                        Slot::I64(match *unit {
                            TimeUnit::Second => t.timestamp(),
                            TimeUnit::Millisecond => t.timestamp_millis(),
                            TimeUnit::Microsecond => t.timestamp_micros(),
                            TimeUnit::Nanosecond => t.timestamp_nanos_opt().ok_or(HandBack)?,
                        })
                    }
                };
                (slot, after)
            }
            b'-' | b'0'..=b'9' => {
                let kind = &self.kinds[col];
                let end = number_end(b, i);
                let n = &b[i..end];
                let slot = match kind {
                    Kind::Utf8 => Slot::Str {
                        start: i as u32,
                        end: end as u32,
                        scratch: false,
                    },
                    Kind::Date32 => Slot::I32(json_int(n)?),
                    Kind::Epoch => Slot::I64(json_int(n)?),
                    // Whole numbers only (`7.0`, `7e2`), exactly as `leaves` reads them.
                    Kind::Int32 => Slot::I32(whole(n, i32::MIN.into(), i32::MAX.into())? as i32),
                    Kind::Int64 => Slot::I64(whole(n, i64::MIN, i64::MAX)?),
                    Kind::Float32 => Slot::F32(lexical_core::parse(n).map_err(|_| HandBack)?),
                    Kind::Float64 => Slot::F64(lexical_core::parse(n).map_err(|_| HandBack)?),
                    Kind::Bool => return Err(HandBack),
                    // As arrow-json: an integer, or a float cut to one.
                    Kind::Timestamp(..) => Slot::I64(
                        lexical_core::parse::<i64>(n)
                            .or_else(|_| lexical_core::parse::<f64>(n).map(|x| x as i64))
                            .map_err(|_| HandBack)?,
                    ),
                };
                (slot, end)
            }
            b'n' => (Slot::Null, literal(b, i, b"null")?),
            c @ (b't' | b'f') => {
                let (word, v): (&[u8], bool) = if c == b't' {
                    (b"true", true)
                } else {
                    (b"false", false)
                };
                let end = literal(b, i, word)?;
                let slot = match &self.kinds[col] {
                    Kind::Bool => Slot::Bool(v),
                    Kind::Utf8 => {
                        let start = self.scratch.len();
                        self.scratch.extend_from_slice(word);
                        Slot::Str {
                            start: start as u32,
                            end: self.scratch.len() as u32,
                            scratch: true,
                        }
                    }
                    _ => return Err(HandBack),
                };
                (slot, end)
            }
            _ => return Err(HandBack),
        };
        self.slots[col] = slot;
        Ok(end)
    }

    /// Reads the string whose contents start at `i`: its bytes in the record when it has no
    /// escape, else decoded into the scratch buffer. Returns (start, end, in scratch, the
    /// position after the closing quote).
    fn string(&mut self, b: &[u8], i: usize) -> Step<(usize, usize, bool, usize)> {
        let stop = scan::quote_or_backslash(b, i).ok_or(HandBack)?;
        if b[stop] == b'"' {
            return Ok((i, stop, false, stop + 1));
        }
        let start = self.scratch.len();
        let after = unescape(b, i, Some(&mut self.scratch))?;
        Ok((start, self.scratch.len(), true, after))
    }

    /// Appends the slots of the record just read to the columns.
    fn commit(&mut self, rec: &[u8]) {
        for (col, slot) in self.slots.iter().enumerate() {
            let nulls = &mut self.nulls[col];
            let column = &mut self.columns[col];
            if matches!(slot, Slot::Absent | Slot::Null) {
                nulls.append_null();
                match column {
                    Column::Utf8 { offsets, bytes } => offsets.push(bytes.len() as i32),
                    Column::I32(v) => v.push(0),
                    Column::I64(v) => v.push(0),
                    Column::F32(v) => v.push(0.0),
                    Column::F64(v) => v.push(0.0),
                    Column::Bool(v) => v.append(false),
                }
                continue;
            }
            nulls.append_non_null();
            match (column, *slot) {
                (
                    Column::Utf8 { offsets, bytes },
                    Slot::Str {
                        start,
                        end,
                        scratch,
                    },
                ) => {
                    let src = if scratch { &self.scratch[..] } else { rec };
                    bytes.extend_from_slice(&src[start as usize..end as usize]);
                    offsets.push(bytes.len() as i32);
                }
                (Column::I32(v), Slot::I32(x)) => v.push(x),
                (Column::I64(v), Slot::I64(x)) => v.push(x),
                (Column::F32(v), Slot::F32(x)) => v.push(x),
                (Column::F64(v), Slot::F64(x)) => v.push(x),
                (Column::Bool(v), Slot::Bool(x)) => v.append(x),
                _ => unreachable!("a slot is filled for its column's kind"),
            }
        }
    }

    fn finish(&mut self) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.kinds.len());
        let columns = std::mem::take(&mut self.columns);
        let nulls = std::mem::take(&mut self.nulls);
        for (((column, mut nulls), (kind, field)), typical) in columns
            .into_iter()
            .zip(nulls)
            .zip(self.kinds.iter().zip(self.schema.fields()))
            .zip(self.typical.iter_mut())
        {
            arrays.push(column.into_array(nulls.finish(), kind, field, typical));
        }
        RecordBatch::try_new(self.schema.clone(), arrays).expect("columns of the decode schema")
    }
}

/// A whole number in `min..=max` from a number's text ([`super::number::integer`]); anything
/// else is handed back, for arrow-json's side to name.
fn whole(n: &[u8], min: i64, max: i64) -> Step<i64> {
    super::number::integer(n, min, max).map_err(|_| HandBack)
}
