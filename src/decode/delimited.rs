//! Text lines and CSV/TSV records → columns. Every field is first read as text, then converted
//! column by column to its schema type (see `columns.rs`), so each bad value is reported with
//! its field and record.

use std::borrow::Cow;
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
        let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(self.width);
        for (i, r) in recs.iter().enumerate() {
            // The caller has checked UTF-8 for every record.
            let line = std::str::from_utf8(&data[r.start..r.end]).unwrap_or_default();
            values.clear();
            let result = match &self.mode {
                Mode::WholeLine => {
                    values.push(Some(Cow::Borrowed(line)));
                    Ok(())
                }
                Mode::Split(d) => {
                    values.extend(line.split(d.as_str()).map(|v| Some(Cow::Borrowed(v))));
                    Ok(())
                }
                Mode::Csv(d) => split_csv_into(line, *d, &mut values),
            };
            let reason = match result {
                Err(e) => Some(e),
                Ok(()) if values.len() > self.width => Some(format!(
                    "the record has {} fields, more than the {} expected",
                    values.len(),
                    self.width
                )),
                Ok(()) => None,
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

/// For each schema field, the column of `header` holding it (matched by name), and the
/// header's width. A required field without a column is an error.
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
    let names = split_csv(text.trim_end_matches(['\r', '\n']), delimiter).map_err(header_err)?;
    let mut column_of = Vec::with_capacity(schema.fields.len());
    for f in &schema.fields {
        let mut named = names
            .iter()
            .enumerate()
            .filter(|(_, c)| c.trim() == f.source);
        let idx = named.next().map(|(i, _)| i);
        // Two columns for one field: which one holds the values is anyone's guess (the
        // second one's values were dropped without a word).
        if let Some((j, _)) = named.next() {
            return Err(header_err(format!(
                "field `{}` has two columns named `{}` (columns {} and {}; header: {})",
                f.name,
                f.source,
                idx.unwrap_or_default() + 1,
                j + 1,
                names.join(",")
            )));
        }
        if idx.is_none() && !f.nullable && f.default.is_none() {
            return Err(header_err(format!(
                "required field `{}` has no column named `{}` (header: {})",
                f.name,
                f.source,
                names.join(",")
            )));
        }
        column_of.push(idx);
    }
    // Every row would be nulls and defaults: a header of another delimiter, or another file.
    if column_of.iter().all(Option::is_none) {
        return Err(header_err(format!(
            "the header names none of the schema's fields (header: {}; delimiter {:?})",
            names.join(","),
            delimiter as char
        )));
    }
    Ok((column_of, names.len()))
}

/// Splits one CSV record into its fields (RFC 4180: `"` quotes, `""` is a quote inside quotes).
/// An empty unquoted field is null; a quoted empty field is the empty string.
fn split_csv_into<'a>(
    line: &'a str,
    delim: u8,
    out: &mut Vec<Option<Cow<'a, str>>>,
) -> Result<(), String> {
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
            out.push(Some(Cow::Owned(value)));
            if i == bytes.len() {
                return Ok(());
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
            out.push(if field.is_empty() {
                None
            } else {
                Some(Cow::Borrowed(field))
            });
            match end {
                Some(e) => i = e + 1,
                None => return Ok(()),
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

/// Splits a CSV header (or any record) into owned strings.
pub(crate) fn split_csv(line: &str, delim: u8) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    split_csv_into(line, delim, &mut v)?;
    Ok(v.into_iter()
        .map(|c| c.map(|c| c.into_owned()).unwrap_or_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_nulls() {
        let mut v = Vec::new();
        split_csv_into("a,\"b,\"\"c\"\"\",,\"\"", b',', &mut v).unwrap();
        assert_eq!(
            v,
            vec![
                Some(Cow::Borrowed("a")),
                Some(Cow::Owned("b,\"c\"".to_string())),
                None,
                Some(Cow::Owned(String::new()))
            ]
        );
        v.clear();
        assert!(split_csv_into("\"open,x", b',', &mut v).is_err());
        v.clear();
        assert!(split_csv_into("\"a\"b,x", b',', &mut v).is_err());
    }

    /// A header naming one field's column twice is refused by name: the second column's
    /// values were dropped without a word. Columns no field reads may repeat.
    #[test]
    fn a_header_naming_a_field_twice_is_refused() {
        let schema = RepoSchema::parse(
            "name = \"h\"\n[[fields]]\nname = \"host\"\ntype = \"string\"\n",
            std::path::Path::new("h.toml"),
        )
        .unwrap();
        let e = csv_columns(&schema, b',', b"ts,host,x,host")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`host` has two columns named `host` (columns 2 and 4"),
            "{e}"
        );
        let (cols, width) = csv_columns(&schema, b',', b"x,host,x").unwrap();
        assert_eq!((cols, width), (vec![Some(1)], 3));
    }

    #[test]
    fn input_kinds_take_the_delimiters_they_can_use() {
        use super::input_kind;
        assert_eq!(
            input_kind("csv", Some(";"), true),
            Ok(InputKind::Csv {
                delimiter: b';',
                header: true
            })
        );
        assert_eq!(
            input_kind("csv", None, false),
            Ok(InputKind::Csv {
                delimiter: b',',
                header: false
            })
        );
        assert_eq!(
            input_kind("text", Some(" | "), true),
            Ok(InputKind::Text {
                delimiter: Some(" | ".into())
            })
        );
        for (format, d) in [
            ("csv", ";;"),
            ("csv", "\""),
            ("csv", "\n"),
            ("csv", "é"),
            ("csv", ""),
            ("text", ""),
            ("text", "a\nb"),
            ("json", ","),
            ("tsv", ","),
        ] {
            assert!(input_kind(format, Some(d), true).is_err(), "{format} {d:?}");
        }
        assert!(input_kind("avro", None, true).is_err());
    }

    /// A header naming none of the schema's fields (a `,` header read with `;`) is refused:
    /// every row would have been nulls and defaults, without a word.
    #[test]
    fn a_header_naming_no_field_is_refused() {
        let schema = crate::schema::RepoSchema::parse(
            "name = \"h\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n\
             [[fields]]\nname = \"b\"\ntype = \"int64\"\n",
            std::path::Path::new("h.toml"),
        )
        .unwrap();
        let e = super::csv_columns(&schema, b';', b"a,b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("names none of the schema's fields"), "{e}");
        assert!(super::csv_columns(&schema, b',', b"a,b\n").is_ok());
        assert!(super::csv_columns(&schema, b',', b"b,x\n").is_ok());
    }
}
