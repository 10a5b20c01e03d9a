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
//! query engines skip folders whose names start with them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};

/// The folder name used for null and empty values (Hive's convention).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// An invalid path template, or a batch that cannot be split with it. Names the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}`: {reason}")]
pub struct PartitionError {
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

/// A token of one template segment.
enum Token<'t> {
    Literal(&'t str),
    Placeholder {
        name: &'t str,
        format: Option<&'t str>,
        text: &'t str,
    },
}

impl PathTemplate {
    /// Compiles `template` against the Arrow schema of the batches. `repo` fills `{repo}`.
    /// `hive`: a segment that is exactly one bare `{field}` becomes `field=value`.
    pub fn compile(
        template: &str,
        schema: &SchemaRef,
        repo: &str,
        hive: bool,
    ) -> Result<PathTemplate, PartitionError> {
        let err = |reason: String| PartitionError {
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
    pub fn constant_path(&self, ingest_ms: i64) -> Result<Option<String>, PartitionError> {
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
        Ok(Some(path))
    }

    /// Splits a batch into (relative folder path, rows of that path), in order of first
    /// appearance; each folder path ends with `/` (or is "" for an empty template). Rows keep
    /// their order within a group. When every row maps to one path, returns the batch itself
    /// without copying. `ingest_ms` is the ingestion time (ms since epoch) used by `{_ingest:...}`.
    ///
    /// A batch without rows gives no groups.
    pub fn split(
        &self,
        batch: &RecordBatch,
        ingest_ms: i64,
    ) -> Result<Vec<(String, RecordBatch)>, PartitionError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        if !self.by_row {
            let path = self.constant_path(ingest_ms)?.unwrap_or_default();
            return Ok(vec![(path, batch.clone())]);
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
        for row in 0..rows {
            buf.clear();
            for r in renderers.iter_mut() {
                self.render(r, row, &mut buf, &mut scratch)?;
            }
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
            return Ok(vec![(path, batch.clone())]);
        }
        paths
            .into_iter()
            .zip(groups)
            .map(|(path, rows)| {
                let indices = UInt32Array::from(rows);
                arrow::compute::take_record_batch(batch, &indices)
                    .map(|b| (path, b))
                    .map_err(|e| self.error(format!("cannot gather the rows of a group: {e}")))
            })
            .collect()
    }

    fn error(&self, reason: String) -> PartitionError {
        PartitionError {
            template: self.template.clone(),
            reason,
        }
    }

    fn render_ingest(
        &self,
        pattern: &TimePattern,
        ingest_ms: i64,
    ) -> Result<String, PartitionError> {
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
    ) -> Result<&'b dyn Array, PartitionError> {
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
    ) -> Result<TimeCells<'b>, PartitionError> {
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
    ) -> Result<ValueCells<'b>, PartitionError> {
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
    ) -> Result<(), PartitionError> {
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

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if let Some(Part::Literal(prev)) = parts.last_mut() {
        prev.push_str(text);
    } else {
        parts.push(Part::Literal(text.to_string()));
    }
}

/// Splits a template into segments of tokens. Errors are reasons without the template.
fn tokenize(template: &str) -> Result<Vec<Vec<Token<'_>>>, String> {
    let mut segments = vec![Vec::new()];
    let mut rest = template;
    let mut offset = 0;
    while !rest.is_empty() {
        let Some(at) = rest.find(['{', '}', '/']) else {
            segments
                .last_mut()
                .expect("a segment")
                .push(Token::Literal(rest));
            break;
        };
        if at > 0 {
            segments
                .last_mut()
                .expect("a segment")
                .push(Token::Literal(&rest[..at]));
        }
        match rest.as_bytes()[at] {
            b'/' => {
                segments.push(Vec::new());
                rest = &rest[at + 1..];
                offset += at + 1;
            }
            b'}' => {
                return Err(format!(
                    "unbalanced braces: `}}` at byte {} has no matching `{{`",
                    offset + at
                ))
            }
            _ => {
                let inner_start = at + 1;
                let close = rest[inner_start..].find(['{', '}']);
                let close = match close {
                    Some(c) if rest.as_bytes()[inner_start + c] == b'}' => inner_start + c,
                    _ => {
                        return Err(format!(
                            "unbalanced braces: `{{` at byte {} is not closed",
                            offset + at
                        ))
                    }
                };
                let inner = &rest[inner_start..close];
                let text = &rest[at..=close];
                let (name, format) = match inner.split_once(':') {
                    Some((n, f)) => (n, Some(f)),
                    None => (inner, None),
                };
                if name.trim().is_empty() {
                    return Err(format!("empty field name in `{text}`"));
                }
                if format == Some("") {
                    return Err(format!("empty format after `:` in `{text}`"));
                }
                segments
                    .last_mut()
                    .expect("a segment")
                    .push(Token::Placeholder { name, format, text });
                rest = &rest[close + 1..];
                offset += close + 1;
            }
        }
    }
    Ok(segments)
}

/// Resolves one placeholder. `{repo}` resolves to a literal. Errors are reasons.
fn placeholder(
    name: &str,
    format: Option<&str>,
    text: &str,
    schema: &SchemaRef,
    repo: &str,
    seg_start: bool,
) -> Result<Part, String> {
    if name == "repo" {
        if format.is_some() {
            return Err(format!("`{text}`: `{{repo}}` takes no format"));
        }
        if repo.is_empty() {
            return Err("`{repo}` is used but the repo name is empty".into());
        }
        let mut rendered = String::new();
        push_sanitized(&mut rendered, repo, seg_start);
        return Ok(Part::Literal(rendered));
    }
    if name == "_ingest" {
        let Some(format) = format else {
            return Err("`{_ingest}` needs a format, e.g. `{_ingest:%Y-%m-%d}`".into());
        };
        return Ok(Part::Ingest(time_pattern(format, text, seg_start)?));
    }
    let index = schema
        .index_of(name)
        .map_err(|_| format!("unknown field `{name}`"))?;
    let field = schema.field(index);
    let data_type = field.data_type().clone();
    if data_type.is_nested() {
        return Err(format!(
            "field `{name}` is nested ({data_type}); only top-level fields of a primitive type \
             can be used in paths"
        ));
    }
    let tz = match &data_type {
        DataType::Timestamp(_, Some(zone)) => Some(
            zone.parse::<Tz>()
                .map_err(|_| format!("field `{name}` has an unknown time zone `{zone}`"))?,
        ),
        DataType::Timestamp(_, None) => Some(utc()),
        _ => None,
    };
    let col = Column {
        index,
        name: name.to_string(),
        data_type,
        tz,
    };
    match format {
        Some(format) => {
            if !matches!(
                col.data_type,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            ) {
                return Err(format!(
                    "`{text}`: a format needs a timestamp or date field, but `{name}` has type {}",
                    col.data_type
                ));
            }
            let pattern = time_pattern(format, text, seg_start)?;
            Ok(Part::Time { col, pattern })
        }
        None => {
            let supported = matches!(
                col.data_type,
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Boolean
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float16
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Timestamp(..)
                    | DataType::Decimal32(..)
                    | DataType::Decimal64(..)
                    | DataType::Decimal128(..)
                    | DataType::Decimal256(..)
            );
            if !supported {
                return Err(format!(
                    "field `{name}` has type {}, which cannot be rendered in a path (use a \
                     string, integer, float, bool, date, timestamp or decimal field)",
                    col.data_type
                ));
            }
            Ok(Part::Value { col, seg_start })
        }
    }
}

fn time_pattern(format: &str, text: &str, seg_start: bool) -> Result<TimePattern, String> {
    if format.contains('/') {
        return Err(format!(
            "`{text}`: a format cannot contain `/`; use one placeholder per path segment"
        ));
    }
    let items: Vec<Item<'static>> = StrftimeItems::new(format).map(|i| i.to_owned()).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{text}`: invalid strftime format `{format}`"));
    }
    let subsecond = items.iter().any(|i| {
        matches!(
            i,
            Item::Numeric(Numeric::Nanosecond, _)
                | Item::Fixed(
                    Fixed::Nanosecond
                        | Fixed::Nanosecond3
                        | Fixed::Nanosecond6
                        | Fixed::Nanosecond9
                        | Fixed::RFC3339
                        | Fixed::Internal(_)
                )
        )
    });
    Ok(TimePattern {
        items: items.into(),
        subsecond,
        seg_start,
    })
}

/// Bytes kept as they are in rendered values.
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Appends the null partition name. At the start of a segment (no `field=` before it) its
/// leading `_` is percent-encoded like any value's, so the folder stays visible to readers.
fn push_null(out: &mut String, seg_start: bool) {
    if seg_start {
        out.push_str("%5F");
        out.push_str(&NULL_PARTITION[1..]);
    } else {
        out.push_str(NULL_PARTITION);
    }
}

/// Appends `value` made safe for a path segment (see the module documentation). `seg_start`:
/// the value starts a segment, so a leading `_` or `.` is percent-encoded too.
fn push_sanitized(out: &mut String, value: &str, seg_start: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = value.as_bytes();
    let Some(&first) = bytes.first() else {
        push_null(out, seg_start);
        return;
    };
    let first_ok = !(seg_start && (first == b'_' || first == b'.'));
    if first_ok && bytes.iter().all(|&b| is_safe(b)) {
        out.push_str(value);
        return;
    }
    out.reserve(bytes.len() + 8);
    for (i, &b) in bytes.iter().enumerate() {
        if is_safe(b) && (i > 0 || first_ok) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int32Array, Int64Array, StringArray,
        TimestampMicrosecondArray, TimestampMillisecondArray,
    };
    use arrow::datatypes::{Field, Schema};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn compile(template: &str, b: &RecordBatch, hive: bool) -> PathTemplate {
        PathTemplate::compile(template, &b.schema(), "events", hive)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn paths(groups: &[(String, RecordBatch)]) -> Vec<(&str, usize)> {
        groups
            .iter()
            .map(|(p, b)| (p.as_str(), b.num_rows()))
            .collect()
    }

    fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
        b.column_by_name(col)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn time_zone_offset_splits_across_midnight() {
        let ts = TimestampMillisecondArray::from(vec![
            ms("2024-01-01T15:30:00Z"),
            ms("2024-01-01T16:30:00Z"),
            ms("2024-01-01T15:59:59.999Z"),
        ])
        .with_timezone("+08:00");
        let b = batch(vec![("ts", Arc::new(ts) as ArrayRef)]);
        let t = compile("{repo}/dt={ts:%Y-%m-%d}/hr={ts:%H}/", &b, true);
        assert!(!t.is_constant());
        let groups = t.split(&b, 0).unwrap();
        assert_eq!(
            paths(&groups),
            vec![
                ("events/dt=2024-01-01/hr=23/", 2),
                ("events/dt=2024-01-02/hr=00/", 1)
            ]
        );
    }

    #[test]
    fn time_formats_work_for_every_unit_and_dates() {
        let at = ms("2024-03-05T06:07:08.123Z");
        let us = TimestampMicrosecondArray::from(vec![at * 1000]);
        let naive = TimestampMillisecondArray::from(vec![at]);
        let named = TimestampMillisecondArray::from(vec![at]).with_timezone("Asia/Tokyo");
        let day = Date32Array::from(vec![19787]); // 2024-03-05
        let b = batch(vec![
            ("us", Arc::new(us) as ArrayRef),
            ("naive", Arc::new(naive) as ArrayRef),
            ("named", Arc::new(named) as ArrayRef),
            ("day", Arc::new(day) as ArrayRef),
        ]);
        let t = compile(
            "{us:%H%M%S%.3f}/{naive:%H}/{named:%H}/{day:%Y%m%d}/",
            &b,
            false,
        );
        let groups = t.split(&b, 0).unwrap();
        assert_eq!(paths(&groups), vec![("060708.123/06/15/20240305/", 1)]);
    }

    #[test]
    fn sub_second_formats_are_not_reused_within_a_second() {
        let base = ms("2024-03-05T06:07:08Z");
        let ts = TimestampMillisecondArray::from(vec![base + 1, base + 2, base + 1]);
        let b = batch(vec![("ts", Arc::new(ts) as ArrayRef)]);
        let t = compile("{ts:%S%3f}/", &b, false);
        assert_eq!(
            paths(&t.split(&b, 0).unwrap()),
            vec![("08001/", 2), ("08002/", 1)]
        );
        let t = compile("{ts:%S}/", &b, false);
        assert_eq!(paths(&t.split(&b, 0).unwrap()), vec![("08/", 3)]);
    }

    #[test]
    fn hive_style_applies_to_bare_field_segments_only() {
        let region = StringArray::from(vec!["eu-west-1", "us-east-1", "eu-west-1"]);
        let b = batch(vec![("region", Arc::new(region) as ArrayRef)]);
        let groups = compile("{region}/", &b, true).split(&b, 0).unwrap();
        assert_eq!(
            paths(&groups),
            vec![("region=eu-west-1/", 2), ("region=us-east-1/", 1)]
        );
        let groups = compile("{region}/", &b, false).split(&b, 0).unwrap();
        assert_eq!(paths(&groups), vec![("eu-west-1/", 2), ("us-east-1/", 1)]);
        let groups = compile("r-{region}/{repo}/", &b, true)
            .split(&b, 0)
            .unwrap();
        assert_eq!(
            paths(&groups),
            vec![("r-eu-west-1/events/", 2), ("r-us-east-1/events/", 1)]
        );
    }

    #[test]
    fn nulls_and_empty_strings_use_the_hive_default_partition() {
        let region = StringArray::from(vec![Some("eu"), None, Some(""), Some("eu")]);
        let n = Int32Array::from(vec![Some(1), Some(1), None, Some(1)]);
        let ts = TimestampMillisecondArray::from(vec![Some(0), Some(0), None, Some(0)]);
        let b = batch(vec![
            ("region", Arc::new(region) as ArrayRef),
            ("n", Arc::new(n) as ArrayRef),
            ("ts", Arc::new(ts) as ArrayRef),
        ]);
        let groups = compile("{region}/{n}/d={ts:%Y}/", &b, true)
            .split(&b, 0)
            .unwrap();
        assert_eq!(
            paths(&groups),
            vec![
                ("region=eu/n=1/d=1970/", 2),
                ("region=__HIVE_DEFAULT_PARTITION__/n=1/d=1970/", 1),
                (
                    "region=__HIVE_DEFAULT_PARTITION__/n=__HIVE_DEFAULT_PARTITION__/\
                     d=__HIVE_DEFAULT_PARTITION__/",
                    1
                ),
            ]
        );
    }

    #[test]
    fn a_null_starting_a_segment_stays_visible() {
        let v = StringArray::from(vec![None, Some("")]);
        let b = batch(vec![("v", Arc::new(v) as ArrayRef)]);
        let bare = compile("{v}/", &b, false).split(&b, 0).unwrap();
        assert_eq!(paths(&bare), vec![("%5F_HIVE_DEFAULT_PARTITION__/", 2)]);
    }

    #[test]
    fn values_are_sanitized_for_paths() {
        let v = StringArray::from(vec!["a/b c", "_x", ".x", "é=1", "..", "ok-_.~9"]);
        let b = batch(vec![("v", Arc::new(v) as ArrayRef)]);
        let bare = compile("{v}/", &b, false).split(&b, 0).unwrap();
        assert_eq!(
            paths(&bare),
            vec![
                ("a%2Fb%20c/", 1),
                ("%5Fx/", 1),
                ("%2Ex/", 1),
                ("%C3%A9%3D1/", 1),
                ("%2E./", 1),
                ("ok-_.~9/", 1),
            ]
        );
        // Not at the start of a segment, `_` and `.` are kept.
        let hive = compile("{v}/", &b, true).split(&b, 0).unwrap();
        assert_eq!(hive[1].0, "v=_x/");
        assert_eq!(hive[2].0, "v=.x/");
        let inner = compile("k-{v}/", &b, false).split(&b, 0).unwrap();
        assert_eq!(inner[1].0, "k-_x/");
        assert_eq!(inner[0].0, "k-a%2Fb%20c/");
    }

    #[test]
    fn other_primitive_types_render_as_text() {
        let b = batch(vec![
            ("i", Arc::new(Int64Array::from(vec![-42])) as ArrayRef),
            ("f", Arc::new(BooleanArray::from(vec![true])) as ArrayRef),
            (
                "d",
                Arc::new(
                    Decimal128Array::from(vec![12345])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ) as ArrayRef,
            ),
            ("day", Arc::new(Date32Array::from(vec![19787])) as ArrayRef),
            (
                "ts",
                Arc::new(
                    TimestampMillisecondArray::from(vec![ms("2024-03-05T06:07:08Z")])
                        .with_timezone("+08:00"),
                ) as ArrayRef,
            ),
            (
                "utc",
                Arc::new(TimestampMillisecondArray::from(vec![ms(
                    "2024-03-05T06:07:08.5Z",
                )])) as ArrayRef,
            ),
        ]);
        let t = compile("{i}/{f}/{d}/{day}/{ts}/{utc}/", &b, false);
        assert_eq!(
            paths(&t.split(&b, 0).unwrap()),
            vec![(
                "-42/true/123.45/2024-03-05/2024-03-05T14%3A07%3A08%2B08%3A00/\
                 2024-03-05T06%3A07%3A08.500Z/",
                1
            )]
        );
    }

    #[test]
    fn ingest_time_is_formatted_in_utc() {
        let b = batch(vec![(
            "v",
            Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
        )]);
        let t = compile("y={_ingest:%Y}/h={_ingest:%H}/", &b, false);
        assert!(t.is_constant());
        assert!(t.uses_ingest_time());
        let at = ms("2025-06-30T23:30:00-02:00");
        let groups = t.split(&b, at).unwrap();
        assert_eq!(paths(&groups), vec![("y=2025/h=01/", 2)]);
        assert_eq!(
            t.constant_path(at).unwrap().as_deref(),
            Some("y=2025/h=01/")
        );
        let mixed = compile("{_ingest:%Y}/{v}/", &b, true);
        assert!(!mixed.is_constant());
        assert_eq!(
            paths(&mixed.split(&b, at).unwrap()),
            vec![("2025/v=1/", 1), ("2025/v=2/", 1)]
        );
    }

    #[test]
    fn rows_keep_their_order_within_groups() {
        let k = StringArray::from(vec!["b", "a", "b", "c", "a", "b"]);
        let id = Int32Array::from(vec![0, 1, 2, 3, 4, 5]);
        let b = batch(vec![
            ("k", Arc::new(k) as ArrayRef),
            ("id", Arc::new(id) as ArrayRef),
        ]);
        let groups = compile("{k}/", &b, false).split(&b, 0).unwrap();
        let got: Vec<(&str, Vec<i32>)> = groups
            .iter()
            .map(|(p, g)| {
                let ids = g.column(1).as_primitive::<arrow::datatypes::Int32Type>();
                (p.as_str(), ids.values().to_vec())
            })
            .collect();
        assert_eq!(
            got,
            vec![("b/", vec![0, 2, 5]), ("a/", vec![1, 4]), ("c/", vec![3])]
        );
        assert_eq!(strings(&groups[0].1, "k"), vec![Some("b".to_string()); 3]);
    }

    #[test]
    fn one_group_returns_the_batch_itself() {
        let k = StringArray::from(vec!["x", "x", "x"]);
        let b = batch(vec![("k", Arc::new(k) as ArrayRef)]);
        for template in ["{k}/", "const/", ""] {
            let groups = compile(template, &b, true).split(&b, 0).unwrap();
            assert_eq!(groups.len(), 1);
            assert!(
                Arc::ptr_eq(groups[0].1.column(0), b.column(0)),
                "{template}"
            );
        }
        let empty = compile("", &b, true);
        assert!(empty.is_constant());
        assert_eq!(empty.split(&b, 0).unwrap()[0].0, "");
        assert_eq!(compile("a/b", &b, true).split(&b, 0).unwrap()[0].0, "a/b/");
        assert!(compile("{k}/", &b, true)
            .split(&b.slice(0, 0), 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_batch_with_another_schema_is_an_error() {
        let b = batch(vec![(
            "k",
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )]);
        let t = compile("{k}/", &b, true);
        let other = batch(vec![("k", Arc::new(Int32Array::from(vec![1])) as ArrayRef)]);
        let e = t.split(&other, 0).unwrap_err().to_string();
        assert!(e.contains("template `{k}/`") && e.contains("`k`"), "{e}");
    }

    #[test]
    fn compile_errors_name_the_template_and_the_cause() {
        let item = Arc::new(Field::new("item", DataType::Int32, true));
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("region", DataType::Utf8, true),
            Field::new("tags", DataType::List(item.clone()), true),
            Field::new(
                "s",
                DataType::Struct(vec![Field::new("a", DataType::Int32, true)].into()),
                true,
            ),
            Field::new("blob", DataType::Binary, true),
            Field::new("_hidden", DataType::Utf8, true),
        ]));
        let cases = [
            ("dt={tss:%Y}/", "unknown field `tss`"),
            ("dt={ts:%Y/", "unbalanced braces"),
            ("dt={ts{:%Y}/", "unbalanced braces"),
            ("dt=ts}/", "unbalanced braces"),
            ("dt={}/", "empty field name"),
            ("dt={:%Y}/", "empty field name"),
            ("dt={ts:}/", "empty format"),
            ("r={region:%Y}/", "a format needs a timestamp or date field"),
            ("{tags}/", "nested"),
            ("{s}/", "nested"),
            ("{tags:%Y}/", "nested"),
            ("{blob}/", "cannot be rendered in a path"),
            ("dt={ts:%Y-%Q}/", "invalid strftime format `%Y-%Q`"),
            ("dt={ts:%Y/%m}/", "cannot contain `/`"),
            ("_tmp/{region}/", "starts with `_`"),
            (".cache/{region}/", "starts with `.`"),
            ("a/../{region}/", "contains `..`"),
            ("a..b/{region}/", "contains `..`"),
            ("/abs/{region}/", "relative path"),
            ("a//{region}/", "empty path segment"),
            ("{_ingest}/", "needs a format"),
            ("{repo:%Y}/", "takes no format"),
        ];
        for (template, cause) in cases {
            let e = PathTemplate::compile(template, &schema, "events", true)
                .expect_err(template)
                .to_string();
            assert!(
                e.contains(&format!("template `{template}`")) && e.contains(cause),
                "{template}: {e}"
            );
        }
        let e = PathTemplate::compile("dt={tss:%Y}/", &schema, "events", true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template `dt={tss:%Y}/`: unknown field `tss`"
        );
        // A field whose name starts with `_` gets an encoded Hive key, not a hidden folder.
        let b = batch(vec![(
            "_hidden",
            Arc::new(StringArray::from(vec!["v"])) as ArrayRef,
        )]);
        let t = PathTemplate::compile("{_hidden}/", &b.schema(), "events", true).unwrap();
        assert_eq!(t.split(&b, 0).unwrap()[0].0, "%5Fhidden=v/");
    }

    #[test]
    fn templates_can_be_shared_between_threads() {
        fn shared<T: Clone + std::fmt::Debug + Send + Sync>() {}
        shared::<PathTemplate>();
        shared::<PartitionError>();
    }

    #[test]
    fn groups_are_exactly_the_input_rows() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = ["a", "b", "_c", "d e", "", "é"];
        for round in 0..200 {
            let rows = (next() % 300) as usize + 1;
            let keys = 1 + (next() % alphabet.len() as u64) as usize;
            let k: StringArray = (0..rows)
                .map(|_| {
                    let r = next();
                    (r % 7 != 0).then(|| alphabet[(r as usize / 7) % keys])
                })
                .collect();
            let n: Int64Array = (0..rows)
                .map(|_| {
                    let r = next();
                    (r % 5 != 0).then_some((r % 3) as i64)
                })
                .collect();
            let ts: TimestampMillisecondArray = (0..rows)
                .map(|_| Some((next() % (3 * 86_400_000)) as i64))
                .collect();
            let id = Int32Array::from_iter_values(0..rows as i32);
            let b = batch(vec![
                ("k", Arc::new(k) as ArrayRef),
                ("n", Arc::new(n) as ArrayRef),
                ("ts", Arc::new(ts.with_timezone("-03:30")) as ArrayRef),
                ("id", Arc::new(id) as ArrayRef),
            ]);
            let t = compile("{k}/{n}/d={ts:%d}/", &b, round % 2 == 0);
            let groups = t.split(&b, 0).unwrap();
            let mut seen = vec![false; rows];
            let mut distinct = std::collections::HashSet::new();
            for (path, g) in &groups {
                assert!(distinct.insert(path.clone()), "path {path} twice");
                let ids = g.column(3).as_primitive::<arrow::datatypes::Int32Type>();
                assert!(ids.values().windows(2).all(|w| w[0] < w[1]));
                for (j, &id) in ids.values().iter().enumerate() {
                    let i = id as usize;
                    assert!(!seen[i], "row {i} twice");
                    seen[i] = true;
                    // Same values as the input row, and the row renders to its group's path.
                    let original = b.slice(i, 1);
                    let copy = g.slice(j, 1);
                    assert_eq!(original, copy);
                    assert_eq!(t.split(&original, 0).unwrap()[0].0, *path);
                }
            }
            assert!(seen.iter().all(|&s| s), "round {round}: rows lost");
        }
    }
}
