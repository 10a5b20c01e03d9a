//! Decoder tests: every kind of bad record is isolated with a reason, good rows survive.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMillisecondType};

use super::*;

pub(super) fn schema(text: &str) -> Arc<RepoSchema> {
    Arc::new(RepoSchema::parse(text, Path::new("test.toml")).unwrap())
}

pub(super) fn chunk(text: &[u8]) -> Chunk {
    Chunk {
        data: text.to_vec(),
        first_line: 1,
        first_offset: 0,
        ..Default::default()
    }
}

pub(super) const WEB: &str = r#"
name = "web"
[[fields]]
name = "ts"
type = "timestamp"
nullable = false
[[fields]]
name = "status"
type = "int32"
[[fields]]
name = "uid"
type = "int64"
source = "user_id"
[[fields]]
name = "ctx"
type = "json"
[[fields]]
name = "region"
type = "string"
default = "unknown"
"#;

#[test]
fn json_bad_records_are_isolated_with_reasons() {
    let input =
        b"{\"ts\":\"2024-01-01T00:00:00Z\",\"status\":200,\"user_id\":7,\"ctx\":{\"a\":[1,2]}}\n\
{\"ts\":\"2024-01-01T00:00:01Z\",\"status\":\"abc\"}\n\
{\"ts\":\"2024-01-01T00:00:02Z\",\"status\":99999999999}\n\
{\"status\":201}\n\
{\"ts\":\"2024-01-01T00:00:03Z\",\"status\":\n\
{\"ts\":\"2024-01-01T00:00:04Z\",\"region\":\"caf\xff\"}\n\
\n\
{\"ts\":\"2024-01-01T00:00:05Z\",\"status\":204,\"region\":\"eu\"}\n\
[1,2]\n"
            .to_vec();
    let s = schema(WEB);
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(&input));
    assert_eq!(out.records, 8, "the blank line is not a record");
    assert_eq!(out.rows(), 2);
    assert_eq!(out.dead.len(), 6);
    assert_eq!(out.rows() + out.dead.len() as u64, out.records);
    let lines: Vec<u64> = out.dead.iter().map(|d| d.position.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, vec![2, 3, 4, 5, 6, 9]);
    let reason_of = |line: u64| {
        out.dead
            .iter()
            .find(|d| d.position.line == line)
            .unwrap()
            .reason
            .clone()
    };
    assert!(reason_of(2).contains("abc"), "{}", reason_of(2));
    assert!(reason_of(3).contains("99999999999"), "{}", reason_of(3));
    assert!(
        reason_of(4).contains("missing required field `ts`"),
        "{}",
        reason_of(4)
    );
    assert!(reason_of(6).contains("UTF-8"), "{}", reason_of(6));
    let line2 = out.dead.iter().find(|d| d.position.line == 2).unwrap();
    assert_eq!(
        line2.record,
        br#"{"ts":"2024-01-01T00:00:01Z","status":"abc"}"#.to_vec()
    );

    let b = &out.batches[0];
    let b = if out.batches.len() > 1 {
        arrow::compute::concat_batches(&b.schema(), &out.batches).unwrap()
    } else {
        b.clone()
    };
    assert_eq!(b.num_rows(), 2);
    let ts = b.column(0).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.value(0), 1_704_067_200_000);
    assert_eq!(b.column(1).as_primitive::<Int32Type>().value(1), 204);
    assert_eq!(b.column(2).as_primitive::<Int64Type>().value(0), 7);
    assert!(b.column(2).is_null(1));
    assert_eq!(b.column(3).as_string::<i32>().value(0), "{\"a\":[1,2]}");
    assert!(b.column(3).is_null(1));
    assert_eq!(b.column(4).as_string::<i32>().value(0), "unknown");
    assert_eq!(b.column(4).as_string::<i32>().value(1), "eu");
}

#[test]
fn positions_are_byte_offsets_and_lines() {
    let input = b"{\"ts\":\"2024-01-01T00:00:00Z\"}\nnot json\n";
    let mut d = RecordDecoder::new(schema(WEB), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(input));
    assert_eq!(out.dead.len(), 1);
    assert_eq!(
        out.dead[0].position,
        Position {
            line: 2,
            offset: 30
        }
    );
    assert_eq!(out.dead[0].record, b"not json");
}

#[test]
fn a_batch_full_of_good_rows_in_many_groups() {
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend_from_slice(
            format!("{{\"ts\":\"2024-01-01T00:00:00Z\",\"status\":{i}}}\n").as_bytes(),
        );
        if i % 97 == 0 {
            input.extend_from_slice(b"{\"ts\":\n");
        }
    }
    let opts = DecodeOptions {
        batch_size: 128,
        ..Default::default()
    };
    let mut d = RecordDecoder::new(schema(WEB), opts, None).unwrap();
    let out = d.decode(&chunk(&input));
    assert_eq!(out.rows(), 1000);
    assert_eq!(out.dead.len(), 11);
    assert!(out.batches.iter().all(|b| b.num_rows() <= 128));
    let mut expect = 0;
    for b in &out.batches {
        for v in b.column(1).as_primitive::<Int32Type>().values() {
            assert_eq!(*v, expect, "rows keep their input order");
            expect += 1;
        }
    }
}

#[test]
fn csv_with_header_maps_by_name_and_reports_bad_values() {
    let s = schema(
        r#"
name = "t"
[[fields]]
name = "id"
type = "int64"
nullable = false
[[fields]]
name = "name"
type = "string"
[[fields]]
name = "at"
type = "timestamp"
format = "%d/%m/%Y %H:%M"
"#,
    );
    let kind = InputKind::Csv {
        delimiter: b',',
        header: true,
    };
    let opts = DecodeOptions {
        kind,
        ..Default::default()
    };
    let mut d = RecordDecoder::new(s, opts, Some(b"at,name,id")).unwrap();
    let input = b"01/02/2024 10:00,\"Smith, J\",1\nbad,x,2\n,\"multi\nline\",3\n01/02/2024 10:00,y,\n1,2,3,4\n";
    let out = d.decode(&chunk(input));
    assert_eq!(out.records, 5);
    assert_eq!(out.rows(), 2);
    let reasons: Vec<&str> = out.dead.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("`bad`") && r.contains("time format")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("missing required field `id`")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("4 fields")),
        "{reasons:?}"
    );
    let b = &out.batches[0];
    assert_eq!(b.column(1).as_string::<i32>().value(0), "Smith, J");
    assert_eq!(b.column(1).as_string::<i32>().value(1), "multi\nline");
    assert!(b.column(2).is_null(1));

    let bad_header = RecordDecoder::new(
        schema("name = \"t\"\n[[fields]]\nname = \"id\"\ntype = \"int64\"\nnullable = false\n"),
        DecodeOptions {
            kind: InputKind::Csv {
                delimiter: b',',
                header: true,
            },
            ..Default::default()
        },
        Some(b"a,b"),
    );
    assert!(bad_header.err().unwrap().to_string().contains("`id`"));
}

#[test]
fn text_lines_whole_and_split() {
    let one = schema("name = \"t\"\n[[fields]]\nname = \"line\"\ntype = \"string\"\n");
    let opts = DecodeOptions {
        kind: InputKind::Text { delimiter: None },
        keep_raw: true,
        ..Default::default()
    };
    let mut d = RecordDecoder::new(one, opts, None).unwrap();
    let out = d.decode(&chunk(b"hello world\n\xfe\xff\nsecond"));
    assert_eq!(out.rows(), 2);
    assert_eq!(out.dead.len(), 1);
    let b = &out.batches[0];
    assert_eq!(b.column(0).as_string::<i32>().value(1), "second");
    assert_eq!(b.schema().field(1).name(), RAW_COLUMN);

    let two = schema(
        "name = \"t\"\n[[fields]]\nname = \"a\"\ntype = \"int32\"\n[[fields]]\nname = \"b\"\ntype = \"string\"\n",
    );
    let opts = DecodeOptions {
        kind: InputKind::Text {
            delimiter: Some(" | ".into()),
        },
        ..Default::default()
    };
    let mut d = RecordDecoder::new(two, opts, None).unwrap();
    let out = d.decode(&chunk(b"1 | x\n2\nz | y\n3 | a | b\n"));
    assert_eq!(out.rows(), 2);
    assert_eq!(out.dead.len(), 2);

    let wrong = schema("name = \"t\"\n[[fields]]\nname = \"a\"\ntype = \"int32\"\n");
    let opts = DecodeOptions {
        kind: InputKind::Text { delimiter: None },
        ..Default::default()
    };
    assert!(RecordDecoder::new(wrong, opts, None).is_err());
}

/// A JSON line of form feeds is no JSON value: a dead letter at its line. `is_ascii_whitespace`
/// took it for a blank line, and it was lost without a word.
#[test]
fn a_json_line_of_form_feeds_is_a_dead_letter_not_a_blank_line() {
    let mut d = RecordDecoder::new(schema(WEB), DecodeOptions::default(), None).unwrap();
    let input =
        b"{\"ts\":\"2024-01-01T00:00:00Z\"}\n\x0c\x0c\n \t\r\n{\"ts\":\"2024-01-01T00:00:01Z\"}\n";
    let out = d.decode(&chunk(input));
    assert_eq!((out.records, out.rows()), (3, 2), "{:?}", out.dead);
    assert_eq!(out.dead.len(), 1);
    assert_eq!(out.dead[0].position.line, 2);
}

/// Split on a whitespace delimiter, a line of delimiters is empty fields, as in TSV: it was
/// taken as a blank line and lost without a word. A line of other whitespace stays blank.
#[test]
fn a_text_line_of_whitespace_delimiters_is_a_row() {
    let three = schema(
        "name = \"t\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n[[fields]]\nname = \"b\"\ntype = \"string\"\n[[fields]]\nname = \"c\"\ntype = \"int32\"\n",
    );
    for (delimiter, input, rows) in [
        ("\t", &b"x\ty\t1\n\t\t\n   \n\t\r\n"[..], 3),
        (" ", &b"x y 1\n  \n\t\n"[..], 2),
    ] {
        let opts = DecodeOptions {
            kind: InputKind::Text {
                delimiter: Some(delimiter.into()),
            },
            ..Default::default()
        };
        let mut d = RecordDecoder::new(three.clone(), opts, None).unwrap();
        let out = d.decode(&chunk(input));
        assert_eq!(out.records, rows, "{delimiter:?}: {:?}", out.dead);
        assert_eq!(out.rows(), rows, "{delimiter:?}: {:?}", out.dead);
        let b = &out.batches[0];
        assert_eq!(b.column(0).as_string::<i32>().value(0), "x");
        assert_eq!(b.column(2).null_count(), rows as usize - 1, "{delimiter:?}");
    }
}

#[test]
fn nested_json_types_decode() {
    let s = schema(
        r#"
name = "o"
[[fields]]
name = "items"
type = "list<struct>"
fields = [ { name = "sku", type = "string", nullable = false }, { name = "qty", type = "int32" } ]
[[fields]]
name = "attrs"
type = "map<string,string>"
[[fields]]
name = "price"
type = "decimal(10,2)"
[[fields]]
name = "at"
type = "timestamp"
format = "epoch_s"
[[fields]]
name = "sig"
type = "binary"
"#,
    );
    let input = br#"{"items":[{"sku":"a","qty":1},{"sku":"b"}],"attrs":{"k":"v"},"price":"12.34","at":1700000000.5,"sig":"aGk="}
{"items":[{"qty":1}]}
{"sig":"***"}
"#;
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(input));
    assert_eq!(out.rows(), 1, "{:?}", out.dead);
    assert_eq!(out.dead.len(), 2);
    let b = &out.batches[0];
    let items = b.column(0).as_list::<i32>();
    assert_eq!(items.value(0).len(), 2);
    assert_eq!(
        b.column(3)
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        1_700_000_000_500
    );
    assert_eq!(b.column(4).as_binary::<i32>().value(0), b"hi");
}

#[test]
fn dead_letters_are_classified_by_reason() {
    let input = b"{\"ts\":\"2024-01-01T00:00:01Z\",\"status\":\"abc\"}\n\
{\"status\":201}\n\
{\"ts\":\"2024-01-01T00:00:03Z\",\"status\":\n\
not json\n\
[1,2]\n\
{\"ts\":\"caf\xff\"}\n"
        .to_vec();
    let mut d = RecordDecoder::new(schema(WEB), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(&input));
    let classes: Vec<(u64, &str)> = out
        .dead
        .iter()
        .map(|d| (d.position.line, d.class()))
        .collect();
    assert_eq!(
        classes,
        vec![
            (1, "type"),
            (2, "missing"),
            (3, "malformed"),
            (4, "malformed"),
            (5, "malformed"),
            (6, "malformed")
        ],
        "{:#?}",
        out.dead
    );
    let csv = RecordDecoder::new(
        schema("name = \"t\"\n[[fields]]\nname = \"a\"\ntype = \"int32\"\n"),
        DecodeOptions {
            kind: InputKind::Csv {
                delimiter: b',',
                header: false,
            },
            ..Default::default()
        },
        None,
    );
    let mut csv = csv.unwrap();
    // An unterminated quote runs to the end of the chunk: it comes last.
    let out = csv.decode(&chunk(b"1,2\n7\nzz\n\"x\n"));
    let classes: Vec<&str> = out.dead.iter().map(|d| d.class()).collect();
    assert_eq!(
        classes,
        vec!["shape", "type", "malformed"],
        "{:#?}",
        out.dead
    );
}

#[test]
fn unknown_top_level_fields_are_dead_letters_when_the_schema_says_so() {
    let s = schema(&format!("unknown_fields = \"dead_letter\"\n{WEB}"));
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let input = b"{\"ts\":\"2024-01-01T00:00:00Z\",\"status\":1,\"user_id\":2,\"ctx\":{\"free\":1},\"region\":\"\xc3\xa9\"}\n\
{\"ts\":\"2024-01-01T00:00:00Z\",\"uid\":2}\n\
{\"ts\":\"2024-01-01T00:00:00Z\",\"status\":\n";
    let out = d.decode(&chunk(input));
    assert_eq!(out.rows(), 1, "nested keys of a json field are not checked");
    let reasons: Vec<(&str, &str)> = out
        .dead
        .iter()
        .map(|d| (d.class(), d.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "unknown");
    assert!(
        reasons[0].1.contains("`uid`"),
        "the input name is `user_id`: {reasons:?}"
    );
    assert_eq!(
        reasons[1].0, "malformed",
        "bad JSON is reported as such: {reasons:?}"
    );
    let ignore = RecordDecoder::new(schema(WEB), DecodeOptions::default(), None);
    assert_eq!(ignore.unwrap().decode(&chunk(input)).rows(), 2);
    assert!(RepoSchema::parse(
        &format!("unknown_fields = \"drop\"\n{WEB}"),
        Path::new("t.toml")
    )
    .unwrap_err()
    .to_string()
    .contains("expected ignore, dead_letter or error"));
}

/// Two fields may read one key: in JSON when they read it as one type (a timestamp with a
/// pattern and a string both read text), in CSV always. Before, the second JSON field read
/// nothing and came out null for every record, silently.
#[test]
fn two_fields_read_one_key() {
    let s = schema(
        r#"
name = "twice"
[[fields]]
name = "path"
type = "string"
[[fields]]
name = "path_again"
type = "string"
source = "path"
nullable = false
[[fields]]
name = "ts_text"
type = "string"
source = "ts"
[[fields]]
name = "ts"
type = "timestamp"
format = "%d/%b/%Y:%H:%M:%S %z"
[[fields]]
name = "path_json"
type = "json"
source = "path"
"#,
    );
    let input = b"{\"path\":\"/a\",\"ts\":\"10/Oct/2024:13:55:36 +0000\"}\n{\"ts\":\"11/Oct/2024:13:55:36 +0000\"}\n";
    for reference in [false, true] {
        let mut d = RecordDecoder::new(s.clone(), DecodeOptions::default(), None).unwrap();
        if reference {
            d = d.reference_json();
        }
        let out = d.decode(&chunk(input));
        assert_eq!(out.rows(), 1, "reference {reference}: {:?}", out.dead);
        assert!(
            out.dead[0].reason.contains("path_again"),
            "the second record has no path: {}",
            out.dead[0].reason
        );
        let b = &out.batches[0];
        assert_eq!(b.column(0).as_string::<i32>().value(0), "/a");
        assert_eq!(b.column(1).as_string::<i32>().value(0), "/a");
        assert_eq!(
            b.column(2).as_string::<i32>().value(0),
            "10/Oct/2024:13:55:36 +0000"
        );
        let ts = b.column(3).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_728_568_536_000);
        assert_eq!(b.column(4).as_string::<i32>().value(0), "\"/a\"");
    }
    let mut csv = RecordDecoder::new(
        s.clone(),
        DecodeOptions {
            kind: InputKind::Csv {
                delimiter: b',',
                header: true,
            },
            ..Default::default()
        },
        Some(b"ts,path"),
    )
    .unwrap();
    let out = csv.decode(&chunk(b"10/Oct/2024:13:55:36 +0000,17\n"));
    assert_eq!(out.rows(), 1, "{:?}", out.dead);
    let b = &out.batches[0];
    assert_eq!(b.column(1).as_string::<i32>().value(0), "17");
    assert_eq!(b.column(4).as_string::<i32>().value(0), "17");
    assert_eq!(
        b.column(3)
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        1_728_568_536_000
    );
}

/// Two fields that read one JSON key as two types are refused when the decoder is made, with
/// both names: one key is read once, as one type.
#[test]
fn two_fields_reading_one_json_key_as_two_types_are_refused() {
    let s = schema(
        r#"
name = "twice"
[[fields]]
name = "status"
type = "int32"
[[fields]]
name = "status_text"
type = "string"
source = "status"
"#,
    );
    let e = RecordDecoder::new(s, DecodeOptions::default(), None)
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("status_text") && text.contains("`status`"),
        "{text}"
    );
}

/// arrow-json's decoder keeps the room its tape took: one large record left each decode
/// thread (and each pooled push decoder) holding about nine times its text while idle,
/// outside every budget. It is kept only after a small group.
#[test]
fn the_arrow_json_decoder_is_not_kept_after_a_large_group() {
    let s = schema("name = \"r\"\n[[fields]]\nname = \"n\"\ntype = \"list<int64>\"\n");
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None)
        .unwrap()
        .reference_json();
    let kept = |d: &RecordDecoder| match &d.inner {
        Inner::Json(j) => j.keeps_arrow_decoder(),
        Inner::Delimited(_) => unreachable!("a JSON schema"),
    };
    assert_eq!(d.decode(&chunk(b"{\"n\":[1,2]}\n")).rows(), 1);
    assert!(kept(&d), "kept after a small group");
    let large = format!("{{\"n\":[{}0]}}\n", "0,".repeat(1 << 20));
    assert_eq!(d.decode(&chunk(large.as_bytes())).rows(), 1);
    assert!(!kept(&d), "kept after a group of 2 MiB");
}

/// A required field read from another key names that key when it is missing: the record
/// holds `placedAt`, not `placed_at` (a record of the field's own name, say the job's own
/// JSON output read back, was told the field is missing, naming a key it has).
#[test]
fn a_missing_required_field_read_from_another_key_names_the_key() {
    let s = schema(
        "name = \"o\"\n[[fields]]\nname = \"placed_at\"\ntype = \"string\"\nsource = \"placedAt\"\nnullable = false\n",
    );
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(b"{\"placed_at\":\"x\"}\n{\"placedAt\":\"y\"}\n"));
    assert_eq!(out.rows(), 1);
    assert!(
        out.dead[0]
            .reason
            .contains("missing required field `placed_at` (read from the key `placedAt`)"),
        "{}",
        out.dead[0].reason
    );
}
