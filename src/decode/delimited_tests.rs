//! Delimited decoding: quotes and nulls, widths past and short of the header, headers.

use super::*;

#[test]
fn csv_quotes_and_nulls() {
    let mut v = Vec::new();
    let n = split_csv_into("a,\"b,\"\"c\"\"\",,\"\"", b',', &mut v, 9).unwrap();
    assert_eq!(n, 4);
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
    assert!(split_csv_into("\"open,x", b',', &mut v, 9).is_err());
    v.clear();
    assert!(split_csv_into("\"a\"b,x", b',', &mut v, 9).is_err());
}

/// A record of a million fields where three are expected keeps three and counts the rest:
/// it is a dead letter that says how many it had, without an entry held for each.
#[test]
fn fields_past_the_width_are_counted_not_kept() {
    let schema = RepoSchema::parse(
        "name = \"w\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n\
         [[fields]]\nname = \"b\"\ntype = \"string\"\n\
         [[fields]]\nname = \"c\"\ntype = \"string\"\n",
        std::path::Path::new("w.toml"),
    )
    .unwrap();
    let line = ",".repeat(1 << 20);
    let mut v = Vec::new();
    assert_eq!(split_csv_into(&line, b',', &mut v, 3), Ok((1 << 20) + 1));
    assert_eq!(v.len(), 3);
    for kind in [
        InputKind::Csv {
            delimiter: b',',
            header: false,
        },
        InputKind::Text {
            delimiter: Some(",".into()),
        },
    ] {
        let mut d = DelimitedDecoder::new(&schema, &kind, None).unwrap();
        let recs = [Record {
            start: 0,
            end: line.len(),
            pos: super::super::Position { line: 1, offset: 0 },
        }];
        let mut stage = Stage {
            rows: Vec::new(),
            columns: Vec::new(),
            errors: Vec::new(),
        };
        let mut dead = Vec::new();
        d.decode(&schema, line.as_bytes(), &recs, &mut stage, &mut dead);
        assert_eq!(dead.len(), 1, "{kind:?}");
        assert!(
            dead[0].reason == "the record has 1048577 fields, more than the 3 expected",
            "{kind:?}: {}",
            dead[0].reason
        );
    }
}

/// A CSV line with fewer fields than its header is a dead letter, as one with more is
/// (its last fields were nulls without a word); without a header, and in text split on a
/// delimiter, a line may leave its last fields out.
#[test]
fn a_csv_line_cut_short_is_a_dead_letter() {
    let schema = RepoSchema::parse(
        "name = \"s\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n\
         [[fields]]\nname = \"b\"\ntype = \"string\"\n\
         [[fields]]\nname = \"c\"\ntype = \"string\"\n",
        std::path::Path::new("s.toml"),
    )
    .unwrap();
    let data = b"x,y,z\nx,y\nx,y,\n";
    let recs: Vec<Record> = [(0, 5), (6, 9), (10, 14)]
        .iter()
        .enumerate()
        .map(|(i, &(start, end))| Record {
            start,
            end,
            pos: super::super::Position {
                line: i as u64 + 1,
                offset: start as u64,
            },
        })
        .collect();
    let csv = |header| InputKind::Csv {
        delimiter: b',',
        header,
    };
    for (kind, header, dead_lines) in [
        (csv(true), Some(&b"a,b,c"[..]), vec![2]),
        (csv(false), None, vec![]),
        (
            InputKind::Text {
                delimiter: Some(",".into()),
            },
            None,
            vec![],
        ),
    ] {
        let mut d = DelimitedDecoder::new(&schema, &kind, header).unwrap();
        let mut stage = Stage {
            rows: Vec::new(),
            columns: Vec::new(),
            errors: Vec::new(),
        };
        let mut dead = Vec::new();
        d.decode(&schema, data, &recs, &mut stage, &mut dead);
        let lines: Vec<u64> = dead.iter().map(|d| d.position.line).collect();
        assert_eq!(lines, dead_lines, "{kind:?}");
        if let Some(d) = dead.first() {
            assert_eq!(
                d.reason,
                "the record has 2 fields, fewer than the 3 expected"
            );
        }
    }
}

/// A refused header is shown cut: each record of its file carries the message.
#[test]
fn a_refused_header_is_shown_cut() {
    let schema = RepoSchema::parse(
        "name = \"h\"\n[[fields]]\nname = \"host\"\ntype = \"string\"\nnullable = false\n",
        std::path::Path::new("h.toml"),
    )
    .unwrap();
    let header = format!("x{}", ",y".repeat(100_000));
    let e = csv_columns(&schema, b',', header.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("(100001 columns)"), "{e}");
    assert!(e.len() < 600, "{} bytes", e.len());
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

/// A file whose lines end in a carriage return alone is one line: its header was the whole
/// file, its records column names, and a run exported nothing, without an error or a dead
/// letter. Refused, saying why; a header ending in CRLF reads as before.
#[test]
fn a_header_of_lines_ending_in_cr_alone_is_refused() {
    let schema = RepoSchema::parse(
        "name = \"h\"\n[[fields]]\nname = \"i\"\ntype = \"string\"\n[[fields]]\nname = \"s\"\ntype = \"string\"\n",
        std::path::Path::new("h.toml"),
    )
    .unwrap();
    let e = csv_columns(&schema, b',', b"i,s\r1,a\r2,b\r")
        .unwrap_err()
        .to_string();
    assert!(e.contains("carriage return"), "{e}");
    let (cols, _) = csv_columns(&schema, b',', b"i,s\r\n").unwrap();
    assert_eq!(cols, vec![Some(0), Some(1)]);
    // A quoted column name may hold one; a quote inside a field opens none (the framer's
    // reading), so a file of CR line ends with one is still refused.
    let (cols, _) = csv_columns(&schema, b',', b"i,s,\"a\r\nb\"\r\n").unwrap();
    assert_eq!(cols, vec![Some(0), Some(1)]);
    let e = csv_columns(&schema, b',', b"i,s\"z\r1,a\r")
        .unwrap_err()
        .to_string();
    assert!(e.contains("carriage return"), "{e}");
}
