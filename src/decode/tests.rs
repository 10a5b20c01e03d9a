//! Decoder tests: every kind of bad record is isolated with a reason, good rows survive.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMillisecondType};

use super::*;

fn schema(text: &str) -> Arc<RepoSchema> {
    Arc::new(RepoSchema::parse(text, Path::new("test.toml")).unwrap())
}

fn chunk(text: &[u8]) -> Chunk {
    Chunk {
        data: text.to_vec(),
        first_line: 1,
        first_offset: 0,
        ..Default::default()
    }
}

const WEB: &str = r#"
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

/// A long run of malformed lines is isolated without recursion: the input decides the number
/// of parts, so a recursive bisection overflows a thread's stack and aborts the process.
/// Decoded on a thread with a small stack, in groups as large as the task's default.
#[test]
fn consecutive_malformed_records_do_not_grow_the_stack() {
    let mut input = Vec::new();
    for i in 0..100_000u32 {
        if i % 25_000 == 7 {
            input.extend_from_slice(b"{\"ts\":\"2024-01-01T00:00:00Z\",\"status\":200}\n");
        } else {
            input.extend_from_slice(b"not json at all\n");
        }
    }
    let s = schema(WEB);
    let out = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let opts = DecodeOptions {
                batch_size: 100_000,
                ..DecodeOptions::default()
            };
            let mut d = RecordDecoder::new(s, opts, None).unwrap();
            d.decode(&chunk(&input))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(out.records, 100_000);
    assert_eq!(out.rows(), 4);
    assert_eq!(out.dead.len(), 99_996);
    assert_eq!(out.dead[0].position.line, 1);
    assert_eq!(out.dead.last().unwrap().position.line, 100_000);
    assert!(
        out.dead.iter().all(|d| d.class() == "malformed"),
        "{:?}",
        out.dead[0]
    );
}

/// A JSON number in an RFC 3339 timestamp field is taken as a raw value in the column's unit;
/// one far outside years 1..9999 is that record's dead letter (it used to pass and then wedge
/// the partition when a `{ts:%Y}` path template could not render it).
#[test]
fn raw_timestamp_numbers_out_of_range_are_dead_letters() {
    let input = b"{\"ts\":1714557600000}\n{\"ts\":99999999999999999}\n{\"ts\":-99999999999999999}\n{\"ts\":\"2024-05-01T10:00:00Z\"}\n";
    let mut d = RecordDecoder::new(schema(WEB), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(input));
    assert_eq!(out.rows(), 2);
    let lines: Vec<u64> = out.dead.iter().map(|d| d.position.line).collect();
    assert_eq!(lines, vec![2, 3]);
    assert!(
        out.dead[0].reason.contains("out of range"),
        "{}",
        out.dead[0].reason
    );
    assert_eq!(out.dead[0].class(), "type");
}

/// Byte soup that looks a little like each input kind: JSON punctuation, quotes, escapes,
/// line breaks, non-UTF-8 bytes, digits.
fn soup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\"ts\":".to_vec()),
        Just(b"\"status\":".to_vec()),
        Just(b"\"ctx\":".to_vec()),
        Just(b"2024-01-01T00:00:00Z".to_vec()),
        Just(b"99999999999999999999".to_vec()),
        Just(b"-1e999".to_vec()),
        Just(b"null".to_vec()),
        Just(b"\\ud800".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..120).prop_map(|v| v.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Any bytes, any input kind: decoding never panics (a panic would show as a dead letter
    /// "inside a library"), and every record is a row or a dead letter.
    #[test]
    fn any_bytes_decode_into_rows_and_dead_letters(data in soup(), kind in 0..3usize) {
        let (s, kind) = match kind {
            0 => (schema(WEB), InputKind::Json),
            1 => (
                schema("name = \"c\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n[[fields]]\nname = \"n\"\ntype = \"int64\"\n"),
                InputKind::Csv { delimiter: b',', header: false },
            ),
            _ => (
                schema("name = \"t\"\n[[fields]]\nname = \"line\"\ntype = \"string\"\n"),
                InputKind::Text { delimiter: None },
            ),
        };
        let quote = kind.quoting();
        let opts = DecodeOptions { kind, batch_size: 7, ..DecodeOptions::default() };
        let mut d = RecordDecoder::new(s, opts, None).unwrap();
        let out = d.decode(&chunk(&data));
        proptest::prop_assert_eq!(out.rows() + out.dead.len() as u64, out.records);
        let mut recs = Vec::new();
        framing::split_records(&chunk(&data), quote, &mut recs);
        proptest::prop_assert_eq!(out.records, recs.len() as u64);
        for dl in &out.dead {
            proptest::prop_assert!(!dl.reason.contains("inside a library"), "{}", dl.reason);
        }
    }
}

/// Each line is judged alone: a line that leaves a value open is a dead letter even when the
/// next line would close it, and that next line is judged alone too (it used to be read as one
/// span per group, so `{"a":1}{"b":` and `2}` became two rows).
#[test]
fn a_value_left_open_on_one_line_is_not_closed_by_the_next() {
    let s = schema(
        "name = \"ab\"\n[[fields]]\nname = \"a\"\ntype = \"int64\"\n[[fields]]\nname = \"b\"\ntype = \"int64\"\n",
    );
    let input = b"{\"a\":1}{\"b\":\n2}\n{\"a\":3}\n{\"a\":\n4}\n{\"a\":5}\n";
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(input));
    assert_eq!(out.records, 6);
    let a: Vec<i64> = out
        .batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(a, vec![3, 5], "only the two whole lines are rows");
    let lines: Vec<u64> = out.dead.iter().map(|d| d.position.line).collect();
    assert_eq!(lines, vec![1, 2, 4, 5]);
    assert_eq!(
        out.dead[0].reason,
        "incomplete JSON value (truncated record?)"
    );
    assert!(
        out.dead[1].reason.contains("unexpected '}'"),
        "{}",
        out.dead[1].reason
    );
    assert_eq!(
        out.dead[2].reason,
        "incomplete JSON value (truncated record?)"
    );
}

/// Unknown fields are found in records arrow-json reads but strict JSON parsers refuse (a
/// leading zero, a raw tab in a string): such a record with an unknown key was kept as a row.
#[test]
fn unknown_fields_are_found_in_records_only_lenient_parsers_read() {
    let s = schema(
        "name = \"u\"\nunknown_fields = \"dead_letter\"\n[[fields]]\nname = \"s\"\ntype = \"string\"\n",
    );
    let input = b"{\"s\":01,\"zz\":1}\n{\"s\":\"a\tb\",\"zz\":1}\n{\"s\":\"a\tb\"}\n";
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(input));
    assert_eq!(out.rows(), 1, "{:?}", out.dead);
    let reasons: Vec<&str> = out.dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for r in reasons {
        assert!(r.starts_with("unknown field `zz`"), "{r}");
    }
}

/// A record arrow-json refuses keeps arrow-json's reason even when it holds an unknown key (cut
/// short, or a second value after the object), and a known key spelled with an escape and a raw
/// tab is known.
#[test]
fn unknown_field_refusal_keeps_malformed_reasons_and_decodes_keys() {
    let s = schema(
        "name = \"u\"\nunknown_fields = \"dead_letter\"\n[[fields]]\nname = \"s\"\ntype = \"string\"\n\
         [[fields]]\nname = \"t\"\nsource = \"a\\tb\"\ntype = \"string\"\n",
    );
    let input = b"{\"s\":\"a\",\"zz\":1\n{\"\\u0061\tb\":\"x\"}\n{\"zz\":1}{}\n{\"zz\":1} x\n";
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(input));
    assert_eq!(out.rows(), 1, "{:?}", out.dead);
    assert_eq!(out.dead.len(), 3);
    assert_eq!(
        out.dead[0].reason,
        "incomplete JSON value (truncated record?)"
    );
    assert_eq!(
        out.dead[1].reason,
        "the line holds more than one JSON value"
    );
    for d in &out.dead {
        assert_eq!(d.class(), "malformed", "{}", d.reason);
    }
}

/// A value nested past the limit is a dead letter, wherever it sits: arrow-json's message for
/// a type error serializes the value by recursion, and 50,000 levels where a string belongs
/// overflowed the stack and aborted the process. At the limit, records still decode (or fail
/// with arrow-json's own reason) on a thread with a 1 MiB stack.
#[test]
fn records_nested_past_the_limit_are_dead_letters_not_a_stack_overflow() {
    let max = depth::MAX_NESTING;
    let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let ts = "\"ts\":\"2024-01-01T00:00:00Z\"";
    let input = [
        format!("{{{ts},\"region\":{}}}", nest(50_000)),
        format!("{{{ts},\"extra\":{}}}", nest(max - 1)),
        format!("{{{ts},\"extra\":{}}}", nest(max)),
        format!("{{{ts},\"region\":{}}}", nest(max - 1)),
        format!("{{{ts},\"status\":1}}"),
        // Empty containers count too, on the fast path as on arrow-json's.
        format!(
            "{{{ts},\"extra\":{}[]{}}}",
            "[".repeat(max - 2),
            "]".repeat(max - 2)
        ),
        format!(
            "{{{ts},\"extra\":{}[]{}}}",
            "[".repeat(max - 1),
            "]".repeat(max - 1)
        ),
    ]
    .join("\n")
        + "\n";
    let s = schema(WEB);
    let out = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
            d.decode(&chunk(input.as_bytes()))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(out.records, 7);
    let lines: Vec<u64> = out.dead.iter().map(|d| d.position.line).collect();
    assert_eq!(out.rows(), 3, "dead letters on lines {lines:?}");
    let dead: Vec<(u64, &str, &str)> = out
        .dead
        .iter()
        .map(|d| (d.position.line, d.reason.as_str(), d.class()))
        .collect();
    let deep = depth::reason();
    assert_eq!(dead[0], (1, deep.as_str(), "malformed"));
    assert_eq!(dead[1], (3, deep.as_str(), "malformed"));
    assert_eq!(dead[2].0, 4);
    assert!(dead[2]
        .1
        .starts_with("whilst decoding field 'region': expected"));
    assert_eq!(dead[3], (7, deep.as_str(), "malformed"));
    assert_eq!(dead.len(), 4);
}

/// A reason that quotes its value (arrow-json's "expected { got ...") is cut at MAX_REASON:
/// a 40 MiB string record held its bytes twice over in memory and in the dead-letter file.
/// The record itself stays whole.
#[test]
fn a_reason_quoting_a_long_value_is_cut_and_the_record_kept() {
    let long = format!("\"{}\"", "é".repeat(5000));
    let input = format!("{long}\n{{\"ts\":\"2024-01-01T00:00:00Z\",\"status\":1}}\n");
    let mut d = RecordDecoder::new(schema(WEB), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(input.as_bytes()));
    assert_eq!((out.rows(), out.dead.len()), (1, 1));
    let dead = &out.dead[0];
    assert_eq!(dead.record, long.as_bytes());
    assert!(dead.reason.starts_with("expected { got"), "{}", dead.reason);
    assert!(dead.reason.ends_with("… (cut)"), "{}", dead.reason);
    assert!(dead.reason.len() <= MAX_REASON + "… (cut)".len());
    assert_eq!(dead.class(), "malformed");
}
