//! Text lines and CSV/TSV records → columns. Every field is first read as text, then converted
//! column by column to its schema type (see `columns.rs`), so each bad value is reported with
//! its field and record.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};

use super::columns::from_text;
use super::{DeadLetter, DecodeError, InputKind, Record, Stage};
use crate::schema::{FieldType, RepoSchema};

#[derive(Clone)]
enum Mode {
    WholeLine,
    Split(String),
    Csv(u8),
}

#[derive(Clone)]
pub(crate) struct DelimitedDecoder {
    mode: Mode,
    /// For each schema field, the input column holding it (None: absent from the CSV header).
    column_of: Vec<Option<usize>>,
    /// Number of input columns a record must not exceed.
    width: usize,
    /// The CSV header `column_of` was derived from.
    header: Option<Vec<u8>>,
}

impl DelimitedDecoder {
    pub fn new(
        schema: &RepoSchema,
        kind: &InputKind,
        header: Option<&[u8]>,
    ) -> Result<Self, DecodeError> {
        let kind_err = |reason: String| DecodeError::Kind {
            kind: kind.name(),
            schema: schema.path.display().to_string(),
            reason,
        };
        if let Some(f) = schema.fields.iter().find(|f| f.is_nested()) {
            return Err(kind_err(format!(
                "field `{}` has nested type {}, which {} input cannot carry (use json input)",
                f.name,
                f.type_name(),
                kind.name()
            )));
        }
        let n = schema.fields.len();
        let identity = (0..n).map(Some).collect();
        Ok(match kind {
            InputKind::Json => unreachable!("json input has its own decoder"),
            InputKind::Text { delimiter: None } => {
                if n != 1 || !matches!(schema.fields[0].ty, FieldType::String | FieldType::Json) {
                    return Err(kind_err(
                        "text lines without a delimiter fill one string field; the schema must \
                         have exactly one field of type string (or give a delimiter)"
                            .into(),
                    ));
                }
                DelimitedDecoder {
                    mode: Mode::WholeLine,
                    column_of: identity,
                    width: 1,
                    header: None,
                }
            }
            InputKind::Text { delimiter: Some(d) } => {
                if d.is_empty() {
                    return Err(kind_err("the delimiter must not be empty".into()));
                }
                DelimitedDecoder {
                    mode: Mode::Split(d.clone()),
                    column_of: identity,
                    width: n,
                    header: None,
                }
            }
            InputKind::Csv {
                delimiter,
                header: _,
            } => match header {
                None => DelimitedDecoder {
                    mode: Mode::Csv(*delimiter),
                    column_of: identity,
                    width: n,
                    header: None,
                },
                Some(h) => {
                    let (column_of, width) = csv_columns(schema, *delimiter, h)?;
                    DelimitedDecoder {
                        mode: Mode::Csv(*delimiter),
                        column_of,
                        width,
                        header: Some(h.to_vec()),
                    }
                }
            },
        })
    }

    /// Maps columns by `header` (the header of the file the next records come from) when it
    /// differs from the one the mapping was made for. Headers are checked when the task starts,
    /// so this fails only for a file whose header changed since: its records become dead
    /// letters with the reason.
    pub fn use_header(&mut self, schema: &RepoSchema, header: &[u8]) -> Result<(), DecodeError> {
        let Mode::Csv(delimiter) = self.mode else {
            return Ok(());
        };
        if self.header.as_deref() == Some(header) {
            return Ok(());
        }
        let (column_of, width) = csv_columns(schema, delimiter, header)?;
        self.column_of = column_of;
        self.width = width;
        self.header = Some(header.to_vec());
        Ok(())
    }

    pub fn decode(
        &mut self,
        schema: &RepoSchema,
        data: &[u8],
        recs: &[Record],
        stage: &mut Stage,
        dead: &mut Vec<DeadLetter>,
    ) {
        let mut builders: Vec<StringBuilder> = schema
            .fields
            .iter()
            .map(|_| StringBuilder::with_capacity(recs.len(), recs.len() * 8))
            .collect();
        // Only columns up to the last one a field reads are kept (a header may name a
        // million columns; the records' other fields are counted).
        let keep = self.column_of.iter().flatten().max().map_or(0, |c| c + 1);
        let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(keep);
        for (i, r) in recs.iter().enumerate() {
            // The caller has checked UTF-8 for every record.
            let line = std::str::from_utf8(&data[r.start..r.end]).unwrap_or_default();
            values.clear();
            let result = match &self.mode {
                Mode::WholeLine => {
                    values.push(Some(Cow::Borrowed(line)));
                    Ok(1)
                }
                Mode::Split(d) => {
                    // Fields past the width are counted, not kept: a line of delimiters
                    // would otherwise hold 24 bytes of entry for each of its bytes.
                    let mut parts = line.split(d.as_str());
                    values.extend(
                        parts
                            .by_ref()
                            .take(self.width)
                            .map(|v| Some(Cow::Borrowed(v))),
                    );
                    Ok(values.len() + parts.count())
                }
                Mode::Csv(d) => split_csv_into(line, *d, &mut values, keep),
            };
            let reason = match result {
                Err(e) => Some(e),
                Ok(n) if n > self.width => Some(format!(
                    "the record has {n} fields, more than the {} expected",
                    self.width
                )),
                // A CSV line cut short against its header (its last fields were nulls
                // without a word, while a line with too many was refused). Without a header
                // (the schema's fields in order) a line may leave its last fields out, as
                // producers of a schema that gained a field at its end do; and so may text
                // split on a delimiter.
                Ok(n)
                    if n < self.width
                        && matches!(self.mode, Mode::Csv(_))
                        && self.header.is_some() =>
                {
                    Some(format!(
                        "the record has {n} fields, fewer than the {} expected",
                        self.width
                    ))
                }
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                dead.push(DeadLetter {
                    position: r.pos,
                    reason,
                    record: data[r.start..r.end].to_vec(),
                });
                continue;
            }
            stage.rows.push(i);
            for (b, col) in builders.iter_mut().zip(&self.column_of) {
                match col.and_then(|c| values.get(c)).and_then(|v| v.as_deref()) {
                    Some(v) => b.append_value(v),
                    None => b.append_null(),
                }
            }
        }
        for (f, mut b) in schema.fields.iter().zip(builders) {
            let text = b.finish();
            let col: ArrayRef = match f.ty {
                FieldType::String => Arc::new(text),
                _ => from_text(&text, f, &mut stage.errors),
            };
            stage.columns.push(col);
        }
    }
}

/// Whether `text` holds a carriage return outside quotes, quotes read as the framer reads
/// them: one opens only at a field's start (after `delimiter` or at the text's start), `""`
/// inside it is a quote, and the next lone `"` closes it.
fn cr_outside_quotes(text: &str, delimiter: u8) -> bool {
    let b = text.as_bytes();
    let (mut quoted, mut field_start, mut i) = (false, true, 0);
    while i < b.len() {
        match b[i] {
            b'"' if quoted && b.get(i + 1) == Some(&b'"') => i += 1,
            b'"' if quoted => quoted = false,
            b'"' if field_start => quoted = true,
            b'\r' if !quoted => return true,
            _ => {}
        }
        field_start = !quoted && b[i] == delimiter;
        i += 1;
    }
    false
}

/// For each schema field, the column of `header` holding it (matched by name), and the
/// header's width. A required field without a column is an error. The header's columns are
/// looked up one by one, not kept: a header of a million columns costs its text only.
fn csv_columns(
    schema: &RepoSchema,
    delimiter: u8,
    header: &[u8],
) -> Result<(Vec<Option<usize>>, usize), DecodeError> {
    let header_err = |reason: String| DecodeError::Header {
        source_name: schema.name.clone(),
        reason,
    };
    let text = std::str::from_utf8(header)
        .map_err(|_| header_err("the header is not valid UTF-8".into()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    // Lines that end in a carriage return alone (classic Mac files) are one line here: the
    // whole file was taken for its header, and its records for column names, none a dead
    // letter. (A quoted column name may hold one.)
    if cr_outside_quotes(text, delimiter) {
        return Err(header_err(
            "the header holds a carriage return: do its lines end in CR alone? Lines must end in LF or CRLF (the whole file would be read as its header)".into(),
        ));
    }
    let mut fields_of: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, f) in schema.fields.iter().enumerate() {
        fields_of.entry(f.source.as_str()).or_default().push(i);
    }
    // Each field's first column, and a second one if the header names it twice.
    let mut column_of: Vec<Option<usize>> = vec![None; schema.fields.len()];
    let mut twice: Option<(usize, usize, usize)> = None;
    let mut column = 0;
    let width = for_each_csv_field(text, delimiter, |name| {
        let name = name.as_deref().unwrap_or_default().trim();
        for &f in fields_of.get(name).map_or(&[][..], Vec::as_slice) {
            match column_of[f] {
                None => column_of[f] = Some(column),
                Some(first) if twice.is_none() => twice = Some((f, first, column)),
                Some(_) => {}
            }
        }
        column += 1;
    })
    .map_err(header_err)?;
    let shown = || shown_header(text, width);
    // Two columns for one field: which one holds the values is anyone's guess (the second
    // one's values were dropped without a word).
    if let Some((f, first, second)) = twice {
        let f = &schema.fields[f];
        return Err(header_err(format!(
            "field `{}` has two columns named `{}` (columns {} and {}; header: {})",
            f.name,
            f.source,
            first + 1,
            second + 1,
            shown()
        )));
    }
    for (f, idx) in schema.fields.iter().zip(&column_of) {
        if idx.is_none() && !f.nullable && f.default.is_none() {
            return Err(header_err(format!(
                "required field `{}` has no column named `{}` (header: {})",
                f.name,
                f.source,
                shown()
            )));
        }
    }
    // Every row would be nulls and defaults: a header of another delimiter, or another file.
    if column_of.iter().all(Option::is_none) {
        return Err(header_err(format!(
            "the header names none of the schema's fields (header: {}; delimiter {:?})",
            shown(),
            delimiter as char
        )));
    }
    // Optional fields without a column are null (or their default) in every row: said once
    // per header, with the header's columns of the same name in another case (`Amount` for
    // `amount`), found in one more pass over the header.
    let missing: Vec<usize> = (0..schema.fields.len())
        .filter(|&f| column_of[f].is_none())
        .collect();
    if !missing.is_empty() && first_time(&schema.name, header) {
        let mut other: Vec<Option<String>> = vec![None; missing.len()];
        let lower: HashMap<String, usize> = missing
            .iter()
            .enumerate()
            .map(|(k, &f)| (schema.fields[f].source.to_lowercase(), k))
            .collect();
        let _ = for_each_csv_field(text, delimiter, |name| {
            let name = name.as_deref().unwrap_or_default().trim();
            if let Some(&k) = lower.get(&name.to_lowercase()) {
                other[k].get_or_insert_with(|| name.to_string());
            }
        });
        let said: Vec<String> = missing
            .iter()
            .zip(&other)
            .map(|(&f, o)| match o {
                Some(o) => format!("`{}` (the header has `{o}`)", schema.fields[f].source),
                None => format!("`{}`", schema.fields[f].source),
            })
            .collect();
        tracing::warn!(
            schema = %schema.name,
            header = %shown(),
            "the header has no column for {}: null (or the default) in every row of this file (names match case and all)",
            said.join(", ")
        );
    }
    Ok((column_of, width))
}

/// Whether the header `header` of schema `schema`'s input is met for the first time in this
/// process (its warning is said once, not at each chunk of each decoder that meets it; past
/// 4,096 headers, none is said again).
fn first_time(schema: &str, header: &[u8]) -> bool {
    use std::hash::{Hash, Hasher};
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<u64>>> =
        std::sync::Mutex::new(None);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (schema, header).hash(&mut h);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(Default::default);
    seen.len() < 4096 && seen.insert(h.finish())
}

/// A header as messages show it: whole up to [`SHOWN_HEADER`] bytes, else its start and how
/// many columns it has (each record of a file whose header is refused carries the message).
fn shown_header(text: &str, width: usize) -> String {
    if text.len() <= SHOWN_HEADER {
        return text.to_string();
    }
    format!(
        "{}… ({width} columns)",
        super::dead::cut(text, SHOWN_HEADER)
    )
}

/// The most of a header an error message shows.
const SHOWN_HEADER: usize = 256;

/// Splits one CSV record into its fields (RFC 4180: `"` quotes, `""` is a quote inside quotes).
/// An empty unquoted field is null; a quoted empty field is the empty string.
/// At most `keep` fields are kept in `out`; the rest are counted. Returns the number of
/// fields.
fn split_csv_into<'a>(
    line: &'a str,
    delim: u8,
    out: &mut Vec<Option<Cow<'a, str>>>,
    keep: usize,
) -> Result<usize, String> {
    let kept = out.len();
    for_each_csv_field(line, delim, |v| {
        if out.len() - kept < keep {
            out.push(v);
        }
    })
}

/// Calls `each` with every field of one CSV record, in order; returns how many there were.
fn for_each_csv_field<'a>(
    line: &'a str,
    delim: u8,
    mut each: impl FnMut(Option<Cow<'a, str>>),
) -> Result<usize, String> {
    let mut n = 0;
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if i < bytes.len() && bytes[i] == b'"' {
            let mut value = String::new();
            let mut j = i + 1;
            let mut seg = j;
            loop {
                match memchr::memchr(b'"', &bytes[j..]) {
                    None => {
                        return Err(format!(
                            "unterminated quoted field starting at column {}",
                            i + 1
                        ))
                    }
                    Some(k) => {
                        let q = j + k;
                        if q + 1 < bytes.len() && bytes[q + 1] == b'"' {
                            value.push_str(&line[seg..=q]);
                            j = q + 2;
                            seg = j;
                        } else {
                            value.push_str(&line[seg..q]);
                            i = q + 1;
                            break;
                        }
                    }
                }
            }
            each(Some(Cow::Owned(value)));
            n += 1;
            if i == bytes.len() {
                return Ok(n);
            }
            if bytes[i] != delim {
                return Err(format!(
                    "unexpected character after a closing quote at column {}",
                    i + 1
                ));
            }
            i += 1;
        } else {
            let end = memchr::memchr(delim, &bytes[i..]).map(|k| i + k);
            let field = &line[i..end.unwrap_or(bytes.len())];
            each(if field.is_empty() {
                None
            } else {
                Some(Cow::Borrowed(field))
            });
            n += 1;
            match end {
                Some(e) => i = e + 1,
                None => return Ok(n),
            }
        }
    }
}

/// The input kind of a `format` name (`json`, `csv`, `tsv`, `text`) with its `delimiter`:
/// csv takes one ASCII character other than a quote or a line break (`;` for the CSV of many
/// European locales; `,` by default); text any string without a line break (lines are split
/// on it); json and tsv none.
pub fn input_kind(
    format: &str,
    delimiter: Option<&str>,
    header: bool,
) -> Result<InputKind, String> {
    let breaks = |d: &str| d.contains(['\r', '\n']);
    match (format, delimiter) {
        ("json", None) => Ok(InputKind::Json),
        ("csv", None) => Ok(InputKind::Csv {
            delimiter: b',',
            header,
        }),
        ("csv", Some(d)) => match d.as_bytes() {
            [b] if b.is_ascii() && !breaks(d) && *b != b'"' => Ok(InputKind::Csv {
                delimiter: *b,
                header,
            }),
            _ => Err(format!(
                "a csv delimiter is one ASCII character other than a quote or a line break, \
                 not {d:?}"
            )),
        },
        ("tsv", None) => Ok(InputKind::Csv {
            delimiter: b'\t',
            header,
        }),
        ("text", None) => Ok(InputKind::Text { delimiter: None }),
        ("text", Some(d)) if d.is_empty() || breaks(d) => Err(format!(
            "a text delimiter is a non-empty string without a line break (lines are split on \
             it), not {d:?}"
        )),
        ("text", Some(d)) => Ok(InputKind::Text {
            delimiter: Some(d.to_string()),
        }),
        ("json", Some(_)) => Err("a delimiter applies to csv and text input, not json".into()),
        ("tsv", Some(_)) => Err(
            "a delimiter applies to csv and text input, not tsv (tsv is split by tabs; give \
             csv with the delimiter)"
                .into(),
        ),
        (other, _) => Err(format!(
            "unknown input format `{other}` (expected json, csv, tsv or text)"
        )),
    }
}

#[cfg(test)]
#[path = "delimited_tests.rs"]
mod tests;
