//! Decoder tests on hostile records: long runs of malformed lines, values left open across
//! lines, byte soup, records nested past the limit, unknown fields only lenient parsers read,
//! reasons quoting huge values. None may grow the stack, lose a good row or crash.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use super::tests::{chunk, schema, WEB};
use super::*;

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

/// A list of empty structs: 3 bytes of text an item, each item 50 columns wide once decoded
/// (a 15 MiB push of such a record took 4 GB). Measured before arrow-json reads it, a record
/// past what a record may decode to is a dead letter naming its size; records under it land,
/// however many a chunk holds.
#[test]
fn a_record_of_items_wider_than_their_text_is_a_dead_letter_before_it_decodes() {
    let children: Vec<String> = (0..50)
        .map(|i| format!("{{ name = \"c{i}\", type = \"int64\" }}"))
        .collect();
    let s = schema(&format!(
        "name = \"wide\"\n[[fields]]\nname = \"l\"\ntype = \"list<struct>\"\nfields = [ {} ]\n",
        children.join(", ")
    ));
    let items = |n: usize| format!("{{\"l\":[{}]}}\n", vec!["{}"; n].join(","));
    // About 1.8 KB an item: 200,000 pass 256 MiB, 100,000 do not.
    let mut input = items(200_000).into_bytes();
    input.extend_from_slice(items(100_000).as_bytes());
    input.extend_from_slice(items(100_000).as_bytes());
    input.extend_from_slice(b"{\"l\":[{\"c0\":7}]}\n");
    let mut d = RecordDecoder::new(s, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&chunk(&input));
    assert_eq!(out.records, 4);
    let dead: Vec<(u64, &str)> = out
        .dead
        .iter()
        .map(|d| (d.position.line, d.reason.as_str()))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, 1);
    assert!(
        dead[0].1.contains("would decode to about") && dead[0].1.contains("more than the 256 MiB"),
        "{dead:?}"
    );
    assert_eq!(out.rows(), 3);
}

/// `channel.batch_rows` far past a chunk's lines: arrow-json's decoder, built for that many
/// rows, reserved room for all of them before reading a byte (about 18 GB for 10^8 rows of
/// ten fields: the process aborted; a larger count panicked, and each record it reads became
/// a dead letter "inside a library"). Built for at most a chunk's lines, it reads them.
#[test]
fn a_huge_batch_size_does_not_size_the_decoder() {
    let input = b"{\"ts\":\"2024-01-01T00:00:00Z\",\"status\":200}\n{\"ts\":\n";
    let opts = DecodeOptions {
        batch_size: usize::MAX / 4,
        ..DecodeOptions::default()
    };
    let mut d = RecordDecoder::new(schema(WEB), opts, None).unwrap();
    let out = d.decode(&chunk(input));
    assert_eq!(out.rows(), 1);
    assert_eq!(out.dead.len(), 1);
    assert_eq!(out.dead[0].class(), "malformed", "{:?}", out.dead[0]);
}
