//! Partitioned output paths: compiling path templates such as
//! `{repo}/dt={ts:%Y-%m-%d}/hr={ts:%H}/` against the Arrow schema of the batches, and splitting
//! each batch into the rows that belong to each folder.
//!
//! This module owns the template syntax, the rendering of values into path segments (time
//! formats, Hive-style `field=value` segments, the null partition name) and the sanitizing of
//! those values so that any value gives a safe, visible folder name.
//!
//! Template syntax, segment by segment (segments are separated by `/`):
//! - literal text, copied as is (a literal segment may not start with `_` or `.`, and no
//!   literal may contain `..`);
//! - `{repo}`: the repo name;
//! - `{field:FORMAT}`: a timestamp or date field formatted with a chrono strftime pattern, in
//!   the field's time zone (UTC when it has none);
//! - `{_ingest:FORMAT}`: the ingestion time, in UTC;
//! - `{field}`: a top-level primitive field rendered as text (timestamps as RFC 3339). With
//!   Hive style on, a segment that is exactly one `{field}` becomes `field=value`.
//!
//! Null values (and empty strings) render as [`NULL_PARTITION`]. Rendered values keep ASCII
//! letters, digits, `-`, `_`, `.` and `~`; every other byte is percent-encoded, and a value
//! that would start a segment with `_` or `.` gets that character percent-encoded too, since
//! query engines skip folders whose names start with them. A rendered value longer than
//! [`MAX_VALUE`] bytes (a file name may hold 255, an object key 1,024) keeps its first
//! [`MAX_VALUE`] bytes, followed by `~` and 16 hex digits of a hash of the whole value: every
//! value gives a folder name of bounded length, and two long values meet only if their 64-bit
//! hashes do (a rendering of that length is never an unshortened value's). A folder name that
//! joins several values (`{host}-{service}`) or a long repo name and passes [`MAX_SEGMENT`]
//! bytes is cut and hashed the same way, so every folder name fits a file system's 255 bytes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};

use room::cap_path;
pub use room::{TIGHT_HEAD, TIGHT_SEGMENT};
use sanitize::{cap_segments, push_null, push_sanitized};
pub use sanitize::{file_name, visible_name, MAX_FILE_NAME, MAX_SEGMENT, MAX_VALUE};
use syntax::{placeholder, push_literal, tokenize, Token};

/// The folder name used for null and empty values (Hive's convention).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// An invalid path template, or a batch that cannot be split with it. Names the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}`: {reason}")]
pub struct TemplateError {
    /// The template as given.
    pub template: String,
    /// What is wrong.
    pub reason: String,
}

/// A compiled path template. Cheap to clone; safe to share between threads.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    template: String,
    parts: Vec<Part>,
    /// True when some part depends on the rows of a batch.
    by_row: bool,
    /// The room its paths are held to ([`PathTemplate::limit_to`]).
    room: room::Room,
}

#[derive(Debug, Clone)]
enum Part {
    /// Text copied as is (literal template text, `/`, `field=`, the sanitized repo name).
    Literal(String),
    /// `{_ingest:FORMAT}`.
    Ingest(TimePattern),
    /// `{field:FORMAT}` on a timestamp or date field.
    Time { col: Column, pattern: TimePattern },
    /// `{field}`.
    Value { col: Column, seg_start: bool },
}

/// A validated strftime pattern.
#[derive(Debug, Clone)]
struct TimePattern {
    items: Arc<[Item<'static>]>,
    /// The pattern prints fractions of a second, so rendered values cannot be reused for
    /// other values in the same second.
    subsecond: bool,
    /// The rendered text starts a path segment.
    seg_start: bool,
}

/// A column of the batches, as found at compile time.
#[derive(Debug, Clone)]
struct Column {
    index: usize,
    name: String,
    data_type: DataType,
    /// The time zone of a timestamp column (UTC when it has none).
    tz: Option<Tz>,
}

impl PathTemplate {
    /// Compiles `template` against the Arrow schema of the batches. `repo` fills `{repo}`.
    /// `hive`: a segment that is exactly one bare `{field}` becomes `field=value`.
    pub fn compile(
        template: &str,
        schema: &SchemaRef,
        repo: &str,
        hive: bool,
    ) -> Result<PathTemplate, TemplateError> {
        let err = |reason: String| TemplateError {
            template: template.to_string(),
            reason,
        };
        if template.starts_with('/') {
            return Err(err(
                "the template must be a relative path; remove the leading `/`".into(),
            ));
        }
        let segments = tokenize(template).map_err(err)?;
        let last = segments.len().saturating_sub(1);
        let mut parts: Vec<Part> = Vec::new();
        let mut by_row = false;
        for (s, tokens) in segments.iter().enumerate() {
            if tokens.is_empty() {
                if s == last {
                    // The trailing `/` of the template, or an empty template.
                    continue;
                }
                return Err(err("empty path segment (`//`)".into()));
            }
            for t in tokens {
                if let Token::Literal(text) = t {
                    if text.contains("..") {
                        return Err(err(format!("literal text `{text}` contains `..`")));
                    }
                }
            }
            if let Some(Token::Literal(text)) = tokens.last() {
                if text.ends_with('.') {
                    return Err(err(format!(
                        "segment ending `{text}` ends in `.`, which Azure Blob Storage refuses \
                         in a path (and Windows drops)"
                    )));
                }
            }
            if let Token::Literal(text) = &tokens[0] {
                if text.starts_with('_') || text.starts_with('.') {
                    return Err(err(format!(
                        "segment `{text}` starts with `{}`; query engines skip folders whose \
                         names start with `_` or `.`",
                        &text[..1]
                    )));
                }
            }
            let bare = tokens.len() == 1
                && matches!(tokens[0], Token::Placeholder { name, format: None, .. }
                    if name != "repo" && name != "_ingest");
            for (i, t) in tokens.iter().enumerate() {
                let seg_start = i == 0;
                match *t {
                    Token::Literal(text) => push_literal(&mut parts, text),
                    Token::Placeholder { name, format, text } => {
                        let part = placeholder(name, format, text, schema, repo, seg_start)
                            .map_err(err)?;
                        match part {
                            Part::Literal(rendered) => push_literal(&mut parts, &rendered),
                            Part::Value { col, .. } if hive && bare => {
                                let mut key = String::new();
                                push_sanitized(&mut key, &col.name, true);
                                key.push('=');
                                push_literal(&mut parts, &key);
                                by_row = true;
                                parts.push(Part::Value {
                                    col,
                                    seg_start: false,
                                });
                            }
                            Part::Ingest(_) => parts.push(part),
                            other => {
                                by_row = true;
                                parts.push(other);
                            }
                        }
                    }
                }
            }
            push_literal(&mut parts, "/");
        }
        Ok(PathTemplate {
            template: template.to_string(),
            parts,
            by_row,
            room: room::Room::ANY,
        })
    }

    /// True when the template has no placeholders that depend on rows (empty or constant).
    /// A template with `{_ingest:...}` can still be constant: every row of a batch then lands
    /// in one folder, which depends on the ingestion time (see
    /// [`PathTemplate::uses_ingest_time`]).
    pub fn is_constant(&self) -> bool {
        !self.by_row
    }

    /// True when the template contains `{_ingest:...}`.
    pub fn uses_ingest_time(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Ingest(_)))
    }

    /// The template as given.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The folder path of a constant template at ingestion time `ingest_ms`, or `None` when
    /// the path depends on rows.
    pub fn constant_path(&self, ingest_ms: i64) -> Result<Option<String>, TemplateError> {
        if self.by_row {
            return Ok(None);
        }
        let mut path = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => path.push_str(text),
                Part::Ingest(pattern) => path.push_str(&self.render_ingest(pattern, ingest_ms)?),
                Part::Time { .. } | Part::Value { .. } => unreachable!("constant template"),
            }
        }
        let mut scratch = Vec::new();
        cap_segments(&mut path, &mut scratch);
        cap_path(&mut path, self.room, &mut scratch);
        Ok(Some(path))
    }

    /// A batch's rows per (relative folder path), in order of first appearance; each folder
    /// path ends with `/` (or is "" for an empty template). Rows keep their order within a
    /// group; when every row maps to one path, [`Rows::All`]. `ingest_ms` is the ingestion
    /// time (ms since epoch) used by `{_ingest:...}`. A batch without rows gives no groups.
    ///
    /// Each group is gathered when its turn comes
    /// ([`Rows::take`]): a batch split into thousands of paths holds one gathered batch at a
    /// time, not thousands of small ones (each column's buffers cost about 200 bytes
    /// however few rows they hold).
    pub fn group(
        &self,
        batch: &RecordBatch,
        ingest_ms: i64,
    ) -> Result<Vec<(String, Rows)>, TemplateError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        if !self.by_row {
            let path = self.constant_path(ingest_ms)?.unwrap_or_default();
            return Ok(vec![(path, Rows::All)]);
        }
        if rows > u32::MAX as usize {
            return Err(self.error(format!("a batch of {rows} rows is too large")));
        }

        let mut renderers = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            renderers.push(match part {
                Part::Literal(text) => Renderer::Text(text.clone()),
                Part::Ingest(pattern) => Renderer::Text(self.render_ingest(pattern, ingest_ms)?),
                Part::Time { col, pattern } => Renderer::Time {
                    nulls: self.column(batch, col)?.nulls(),
                    cells: self.time_cells(batch, col)?,
                    pattern,
                    tz: col.tz.unwrap_or_else(utc),
                    memo_key: None,
                    memo: String::new(),
                },
                Part::Value { col, seg_start } => Renderer::Value {
                    nulls: self.column(batch, col)?.nulls(),
                    cells: self.value_cells(batch, col)?,
                    seg_start: *seg_start,
                    col,
                },
            });
        }

        let mut index: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let mut buf = String::with_capacity(64);
        let mut prev = String::with_capacity(64);
        let mut prev_group = usize::MAX;
        let mut scratch = String::with_capacity(64);
        let mut whole = Vec::new();
        for row in 0..rows {
            buf.clear();
            for r in renderers.iter_mut() {
                self.render(r, row, &mut buf, &mut scratch)?;
            }
            cap_segments(&mut buf, &mut whole);
            cap_path(&mut buf, self.room, &mut whole);
            if prev_group != usize::MAX && buf == prev {
                groups[prev_group].push(row as u32);
                continue;
            }
            let g = match index.get(buf.as_str()) {
                Some(&g) => g,
                None => {
                    let g = groups.len();
                    index.insert(buf.clone(), g);
                    groups.push(Vec::new());
                    g
                }
            };
            groups[g].push(row as u32);
            prev_group = g;
            std::mem::swap(&mut buf, &mut prev);
        }

        let mut paths = vec![String::new(); groups.len()];
        for (path, g) in index {
            paths[g] = path;
        }
        if groups.len() == 1 {
            let path = paths.pop().unwrap_or_default();
            return Ok(vec![(path, Rows::All)]);
        }
        Ok(paths
            .into_iter()
            .zip(groups)
            .map(|(path, rows)| (path, Rows::Some(rows)))
            .collect())
    }

    fn error(&self, reason: String) -> TemplateError {
        TemplateError {
            template: self.template.clone(),
            reason,
        }
    }

    fn render_ingest(
        &self,
        pattern: &TimePattern,
        ingest_ms: i64,
    ) -> Result<String, TemplateError> {
        let at = DateTime::<Utc>::from_timestamp_millis(ingest_ms)
            .ok_or_else(|| self.error(format!("ingestion time {ingest_ms} ms is out of range")))?;
        let mut text = String::new();
        write!(text, "{}", at.format_with_items(pattern.items.iter()))
            .map_err(|_| self.error("cannot format the ingestion time".into()))?;
        let mut out = String::with_capacity(text.len());
        push_sanitized(&mut out, &text, pattern.seg_start);
        Ok(out)
    }

    /// The column `col` of `batch`, checked against the schema the template was compiled for.
    fn column<'b>(
        &self,
        batch: &'b RecordBatch,
        col: &Column,
    ) -> Result<&'b dyn Array, TemplateError> {
        let schema = batch.schema_ref();
        let matches = col.index < batch.num_columns()
            && schema.field(col.index).name() == &col.name
            && schema.field(col.index).data_type() == &col.data_type;
        if !matches {
            return Err(self.error(format!(
                "the batch does not match the schema the template was compiled for: field \
                 `{}` of type {} is not at column {}",
                col.name, col.data_type, col.index
            )));
        }
        Ok(batch.column(col.index).as_ref())
    }

    fn time_cells<'b>(
        &self,
        batch: &'b RecordBatch,
        col: &Column,
    ) -> Result<TimeCells<'b>, TemplateError> {
        let array = self.column(batch, col)?;
        let cells = match array.data_type() {
            DataType::Date32 => TimeCells::Date32(array.as_primitive::<Date32Type>().values()),
            DataType::Date64 => TimeCells::Stamp {
                values: array.as_primitive::<Date64Type>().values(),
                per_sec: 1_000,
            },
            DataType::Timestamp(unit, _) => TimeCells::Stamp {
                values: timestamp_values(array, *unit),
                per_sec: per_second(*unit),
            },
            other => unreachable!("time part on a {other} column"),
        };
        Ok(cells)
    }

    fn value_cells<'b>(
        &self,
        batch: &'b RecordBatch,
        col: &Column,
    ) -> Result<ValueCells<'b>, TemplateError> {
        let array = self.column(batch, col)?;
        let cells = match array.data_type() {
            DataType::Utf8 => ValueCells::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => ValueCells::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => ValueCells::Utf8View(array.as_string_view()),
            DataType::Date32 => ValueCells::Date32(array.as_primitive::<Date32Type>().values()),
            DataType::Date64 => ValueCells::Date64(array.as_primitive::<Date64Type>().values()),
            DataType::Timestamp(unit, _) => ValueCells::Timestamp {
                values: timestamp_values(array, *unit),
                per_sec: per_second(*unit),
                tz: col.tz.unwrap_or_else(utc),
            },
            _ => {
                let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
                    .map_err(|e| self.error(format!("cannot render field `{}`: {e}", col.name)))?;
                ValueCells::Formatted(formatter)
            }
        };
        Ok(cells)
    }

    /// Appends the text of renderer `r` for `row` to `out`.
    fn render(
        &self,
        r: &mut Renderer<'_, '_>,
        row: usize,
        out: &mut String,
        scratch: &mut String,
    ) -> Result<(), TemplateError> {
        match r {
            Renderer::Text(text) => out.push_str(text),
            Renderer::Time {
                nulls,
                cells,
                pattern,
                tz,
                memo_key,
                memo,
            } => {
                if nulls.is_some_and(|n| n.is_null(row)) {
                    push_null(out, pattern.seg_start);
                    return Ok(());
                }
                let (secs, nanos) = cells.get(row);
                if pattern.subsecond || *memo_key != Some(secs) {
                    let at = DateTime::<Utc>::from_timestamp(secs, nanos)
                        .ok_or_else(|| self.error(format!("time value {secs} s is out of range")))?
                        .with_timezone(tz);
                    scratch.clear();
                    write!(scratch, "{}", at.format_with_items(pattern.items.iter()))
                        .map_err(|_| self.error(format!("cannot format the time {at}")))?;
                    memo.clear();
                    push_sanitized(memo, scratch, pattern.seg_start);
                    *memo_key = Some(secs);
                }
                out.push_str(memo);
            }
            Renderer::Value {
                nulls,
                cells,
                seg_start,
                col,
            } => {
                if nulls.is_some_and(|n| n.is_null(row)) {
                    push_null(out, *seg_start);
                    return Ok(());
                }
                let seg_start = *seg_start;
                match cells {
                    ValueCells::Utf8(a) => push_sanitized(out, a.value(row), seg_start),
                    ValueCells::LargeUtf8(a) => push_sanitized(out, a.value(row), seg_start),
                    ValueCells::Utf8View(a) => push_sanitized(out, a.value(row), seg_start),
                    ValueCells::Date32(values) => {
                        let secs = i64::from(values[row]) * 86_400;
                        let day = DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| {
                            self.error(format!("date in field `{}` is out of range", col.name))
                        })?;
                        scratch.clear();
                        write!(scratch, "{}", day.format("%Y-%m-%d")).map_err(|_| {
                            self.error(format!("cannot format field `{}`", col.name))
                        })?;
                        push_sanitized(out, scratch, seg_start);
                    }
                    ValueCells::Date64(values) => {
                        let day = DateTime::<Utc>::from_timestamp_millis(values[row]).ok_or_else(
                            || self.error(format!("date in field `{}` is out of range", col.name)),
                        )?;
                        scratch.clear();
                        write!(scratch, "{}", day.format("%Y-%m-%d")).map_err(|_| {
                            self.error(format!("cannot format field `{}`", col.name))
                        })?;
                        push_sanitized(out, scratch, seg_start);
                    }
                    ValueCells::Timestamp {
                        values,
                        per_sec,
                        tz,
                        ..
                    } => {
                        let (secs, nanos) = split_seconds(values[row], *per_sec);
                        let at = DateTime::<Utc>::from_timestamp(secs, nanos)
                            .ok_or_else(|| {
                                self.error(format!(
                                    "timestamp in field `{}` is out of range",
                                    col.name
                                ))
                            })?
                            .with_timezone(tz);
                        let text = at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                        push_sanitized(out, &text, seg_start);
                    }
                    ValueCells::Formatted(formatter) => {
                        scratch.clear();
                        write!(scratch, "{}", formatter.value(row)).map_err(|_| {
                            self.error(format!("cannot format field `{}`", col.name))
                        })?;
                        push_sanitized(out, scratch, seg_start);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Per-batch state of one part while splitting.
enum Renderer<'t, 'b> {
    Text(String),
    Time {
        nulls: Option<&'b NullBuffer>,
        cells: TimeCells<'b>,
        pattern: &'t TimePattern,
        tz: Tz,
        /// Whole seconds of the value `memo` was rendered from.
        memo_key: Option<i64>,
        memo: String,
    },
    Value {
        nulls: Option<&'b NullBuffer>,
        cells: ValueCells<'b>,
        seg_start: bool,
        col: &'t Column,
    },
}

enum TimeCells<'b> {
    Date32(&'b [i32]),
    /// Date64 (ms) or a timestamp of any unit.
    Stamp {
        values: &'b [i64],
        per_sec: i64,
    },
}

impl TimeCells<'_> {
    /// Whole seconds since the epoch and nanoseconds of the value at `row`.
    fn get(&self, row: usize) -> (i64, u32) {
        match self {
            TimeCells::Date32(v) => (i64::from(v[row]) * 86_400, 0),
            TimeCells::Stamp { values, per_sec } => split_seconds(values[row], *per_sec),
        }
    }
}

enum ValueCells<'b> {
    Utf8(&'b arrow::array::StringArray),
    LargeUtf8(&'b arrow::array::LargeStringArray),
    Utf8View(&'b arrow::array::StringViewArray),
    Date32(&'b [i32]),
    Date64(&'b [i64]),
    Timestamp {
        values: &'b [i64],
        per_sec: i64,
        tz: Tz,
    },
    Formatted(ArrayFormatter<'b>),
}

fn utc() -> Tz {
    "UTC".parse().expect("UTC is a time zone")
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

fn split_seconds(value: i64, per_sec: i64) -> (i64, u32) {
    let secs = value.div_euclid(per_sec);
    let frac = value.rem_euclid(per_sec);
    (secs, (frac * (1_000_000_000 / per_sec)) as u32)
}

fn timestamp_values(array: &dyn Array, unit: TimeUnit) -> &[i64] {
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
    }
}

mod room;
mod rows;
mod sanitize;
mod syntax;
mod table;
pub use rows::Rows;
#[cfg(test)]
mod tests;
