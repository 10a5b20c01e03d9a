//! The fast JSON path against arrow-json, its reference: generated records, many of them
//! hostile (escapes, surrogates, deep nesting, huge numbers, duplicate and escaped keys, bad
//! commas, truncation, stray bytes), decoded by both must give identical batches and identical
//! dead letters.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// Every type the fast path reads, and the ones it leaves to others (epoch and pattern
/// timestamps, base64, `json`), with defaults and required fields.
const FLAT: &str = r#"
name = "flat"
[[fields]]
name = "s"
type = "string"
[[fields]]
name = "i"
type = "int32"
[[fields]]
name = "l"
type = "int64"
default = 7
[[fields]]
name = "f"
type = "float32"
[[fields]]
name = "d"
type = "float64"
[[fields]]
name = "b"
type = "bool"
[[fields]]
name = "day"
type = "date"
[[fields]]
name = "ts"
type = "timestamp"
nullable = false
[[fields]]
name = "tn"
type = "timestamp"
unit = "us"
timezone = "Europe/Berlin"
[[fields]]
name = "es"
type = "timestamp"
format = "epoch_s"
[[fields]]
name = "em"
type = "timestamp"
format = "epoch_ms"
[[fields]]
name = "pt"
type = "timestamp"
format = "%d/%m/%Y %H:%M"
[[fields]]
name = "bin"
type = "binary"
encoding = "base64"
[[fields]]
name = "ctx"
type = "json"
[[fields]]
name = "renamed"
type = "string"
source = "src key"
[[fields]]
name = "off"
type = "int64"
source = "_kafka_offset"
[[fields]]
name = "ny"
type = "timestamp"
timezone = "America/New_York"
[[fields]]
name = "pt_text"
type = "string"
source = "pt"
[[fields]]
name = "em_us"
type = "timestamp"
format = "epoch_ms"
unit = "us"
source = "em"
[[fields]]
name = "ctx_again"
type = "json"
source = "ctx"
"#;

fn schema(text: &str) -> Arc<RepoSchema> {
    Arc::new(RepoSchema::parse(text, Path::new("flat.toml")).unwrap())
}

fn keys() -> Vec<&'static str> {
    vec![
        "s",
        "i",
        "l",
        "f",
        "d",
        "b",
        "day",
        "ts",
        "tn",
        "es",
        "em",
        "pt",
        "bin",
        "ctx",
        "src key",
        "other",
        "_kafka_offset",
        "ny",
    ]
}

/// A JSON value, often of the wrong kind for its field, often hostile.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<i32>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        any::<f32>().prop_map(|v| format!("{v:e}")),
        prop_oneof![
            Just("99999999999999999999999"),
            Just("-0"),
            Just("1e400"),
            Just("-1e999"),
            Just("1.5"),
            Just("2147483648"),
            Just("-2147483649"),
            Just("01"),
            Just("1.2.3"),
            Just("-"),
            Just("1e"),
            Just("+1"),
            Just(".5"),
            Just("1E+2"),
            Just("0.000000000000000000000000000000000000000000001"),
            Just("7.0"),
            Just("7e2"),
            Just("700e-2"),
            Just("-0.0"),
            Just("2147483647.5"),
            Just("9223372036854775807.0"),
            Just("9223372036854775808"),
            Just("-9223372036854775808e0"),
        ]
        .prop_map(str::to_string),
        prop_oneof![
            Just("\"2024-01-01T00:00:00Z\""),
            Just("\"2024-05-01T00:00:00.005Z\""),
            Just("\"2024-05-01 10:00:00+02:00\""),
            Just("\"2024-05-01T10:00:00\""),
            Just("\"2024-05-01\""),
            Just("\"2262-04-12T00:00:00Z\""),
            Just("\"1677-09-21T00:00:00Z\""),
            Just("\"+10000-01-01T00:00:00Z\""),
            Just("\"2024-13-01T00:00:00Z\""),
            Just("\"01/05/2024 10:30\""),
            Just("\"aGVsbG8=\""),
            Just("\"not base64!\""),
            Just("\"123\""),
            Just("\" 42 \""),
            Just("\"1e3\""),
            Just("\"7.0\""),
            Just("\"7.5\""),
            Just("\"true\""),
            Just("\"\""),
            Just("\"\\u00e9t\\u00E9\""),
            Just("\"\\ud83d\\ude00\""),
            Just("\"\\ud800\""),
            Just("\"\\ud800\\u0041\""),
            Just("\"\\udc00\\ud800\""),
            Just("\"\\u12\""),
            Just("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\""),
            Just("\"\\x\""),
            Just("\"tab\there\""),
            Just("\"caf\u{e9} \u{1F600}\""),
            Just("\"unterminated"),
        ]
        .prop_map(str::to_string),
        "[a-z0-9 ]{0,12}".prop_map(|s| format!("\"{s}\"")),
        prop_oneof![
            Just("{}"),
            Just("[]"),
            Just("{\"a\":[1,{\"b\":null}],\"c\":\"}\"}"),
            Just("[1,2,[3,[4,[5]]]]"),
            Just("[1,]"),
            Just("{\"a\" 1}"),
            Just("[}"),
            Just("{\"a\":1,,\"b\":2}"),
        ]
        .prop_map(str::to_string),
        (1usize..200).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1usize..50).prop_map(|n| format!("{}1{}", "{\"k\":".repeat(n), "}".repeat(n))),
    ]
}

/// A value of the kind its key's field reads (so most records take the fast path), in many
/// spellings.
fn typed(key: &'static str) -> BoxedStrategy<String> {
    let text = prop_oneof![
        "[a-zA-Z0-9 ./:-]{0,24}".prop_map(|s| format!("\"{s}\"")),
        "[\\PC]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"\\u00e9\\n\\\"q\\\"\\ud83d\\ude00\"".to_string()),
    ];
    let day =
        (1i32..9999, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("\"{y:04}-{m:02}-{d:02}\""));
    let stamp = (
        1900i32..2200,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..1_000_000,
        0..4u8,
    )
        .prop_map(|(y, mo, d, h, mi, frac, zone)| {
            let zone = ["Z", "+02:00", "-05:30", ""][zone as usize];
            format!("\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:07.{frac:06}{zone}\"")
        });
    match key {
        "s" | "src key" => text.boxed(),
        "i" => any::<i32>().prop_map(|v| v.to_string()).boxed(),
        "l" | "off" => any::<i64>().prop_map(|v| v.to_string()).boxed(),
        // Raw epoch numbers keep arrow-json's integer rules (not an integer field's).
        "em" => prop_oneof![
            4 => any::<i64>().prop_map(|v| v.to_string()),
            1 => proptest::sample::select(vec![
                "\"1e3\"",
                "\"7.0\"",
                "1714521600000.9",
                "-1.5",
                "9223372036854775807.0",
                "9007199254740993.0",
                "12345678901234567890e-1",
            ])
            .prop_map(str::to_string),
        ]
        .boxed(),
        "f" => any::<f32>().prop_map(|v| format!("{v:?}")).boxed(),
        "d" | "es" => any::<f64>().prop_map(|v| format!("{v:?}")).boxed(),
        "b" => any::<bool>().prop_map(|v| v.to_string()).boxed(),
        "day" => day.boxed(),
        "ts" | "tn" | "ny" => stamp.boxed(),
        "pt" => Just("\"01/05/2024 10:30\"".to_string()).boxed(),
        "bin" => Just("\"aGVsbG8=\"".to_string()).boxed(),
        _ => value().boxed(),
    }
}

/// A key: mostly the schema's, sometimes unknown, escaped or odd.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(keys()).prop_map(|k| format!("\"{k}\"")),
        1 => Just("\"\\u0073\"".to_string()),
        1 => Just("\"i\\\"\"".to_string()),
        1 => "[a-z]{1,3}".prop_map(|k| format!("\"{k}\"")),
    ]
}

/// A record: an object from keys and values, joined with mostly proper punctuation.
fn record() -> impl Strategy<Value = Vec<u8>> {
    let typed_pair =
        proptest::sample::select(keys()).prop_flat_map(|k| (Just(format!("\"{k}\"")), typed(k)));
    let pair = (
        prop_oneof![12 => typed_pair, 1 => (key(), value())],
        0..20u8,
        0..20u8,
    )
        .prop_map(|((k, v), sep, ws)| (k, v, sep, ws));
    (
        proptest::collection::vec(pair, 0..10),
        prop_oneof![3 => Just(30u8), 1 => 0..30u8],
        any::<u8>(),
        any::<usize>(),
    )
        .prop_map(|(pairs, shape, byte, at)| {
            let mut s = String::from(if shape == 0 { " { " } else { "{" });
            for (n, (k, v, sep, ws)) in pairs.iter().enumerate() {
                if n > 0 {
                    s.push_str(match sep {
                        0 => "",
                        1 => ",,",
                        2 => " , ",
                        _ => ",",
                    });
                }
                let pad = if *ws == 0 { " \t" } else { "" };
                s.push_str(&format!("{k}{pad}:{pad}{v}"));
            }
            s.push_str(match shape {
                1 => "",
                2 => "}}",
                3 => "} {}",
                4 => "}\t ",
                5 => "},",
                _ => "}",
            });
            let mut bytes = s.into_bytes();
            match shape {
                6 => bytes.truncate(at % (bytes.len() + 1)),
                7 => {
                    let at = at % (bytes.len() + 1);
                    // Not a line break: that would make two records.
                    if byte != b'\n' {
                        bytes.insert(at, byte);
                    }
                }
                8 => bytes = b"[1,2]".to_vec(),
                9 => bytes = b"null".to_vec(),
                _ => {}
            }
            bytes
        })
}

fn chunk(records: &[Vec<u8>], blank: bool) -> Chunk {
    let mut data = Vec::new();
    for r in records {
        data.extend_from_slice(r);
        // A blank line of JSON whitespace, and a line of a form feed (no JSON value: a dead
        // letter for both decoders).
        data.extend_from_slice(if blank { b"\r\n \t\r\n\x0c\n" } else { b"\n" });
    }
    Chunk {
        data,
        first_line: 1,
        first_offset: 0,
        ..Default::default()
    }
}

fn both(schema_text: &str, data: &Chunk, batch_size: usize) -> (Decoded, Decoded) {
    let s = schema(schema_text);
    let opts = DecodeOptions {
        batch_size,
        ..DecodeOptions::default()
    };
    let mut fast = RecordDecoder::new(s.clone(), opts.clone(), None).unwrap();
    let mut reference = RecordDecoder::new(s, opts, None).unwrap().reference_json();
    (fast.decode(data), reference.decode(data))
}

fn same(fast: &Decoded, reference: &Decoded) -> Result<(), TestCaseError> {
    prop_assert_eq!(fast.records, reference.records);
    prop_assert_eq!(&fast.dead, &reference.dead);
    prop_assert_eq!(fast.batches.len(), reference.batches.len());
    for (a, b) in fast.batches.iter().zip(&reference.batches) {
        prop_assert_eq!(a, b);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fast_and_reference_decoders_agree(
        records in proptest::collection::vec(record(), 1..40),
        batch_size in prop_oneof![Just(1usize), Just(3usize), Just(8192usize)],
        blank in any::<bool>(),
        reject in any::<bool>(),
    ) {
        let text = if reject {
            format!("unknown_fields = \"dead_letter\"\n{FLAT}")
        } else {
            FLAT.to_string()
        };
        let data = chunk(&records, blank);
        let (fast, reference) = both(&text, &data, batch_size);
        same(&fast, &reference)?;
    }
}

/// The ordinary case goes through the fast path: decoded rows, nothing handed back.
#[test]
fn well_formed_records_are_read_by_the_fast_path() {
    let rec = br#"{"s":"a\"b","i":-3,"l":12,"f":1.5,"d":2.25e3,"b":true,"day":"2024-02-29","ts":"2024-05-01T00:00:00.005Z","tn":"2024-05-01T10:00:00+02:00","es":1.5,"em":1714521600000,"pt":"01/05/2024 10:30","bin":"aGVsbG8=","ctx":{"a":[1]},"src key":"x","other":[{"deep":null}]}"#;
    let data = chunk(&[rec.to_vec(), rec.to_vec()], false);
    let s = schema(FLAT);
    let j = json::JsonDecoder::new(&s, 100, None).unwrap();
    let mut fast = j.fast_for_tests().expect("a flat schema has a fast path");
    let mut recs = Vec::new();
    framing::split_records(&data, None, &mut recs);
    let (mut rows, mut back) = (Vec::new(), Vec::new());
    let batch = fast
        .decode(&data.data, &recs, &mut rows, &mut back)
        .unwrap();
    assert_eq!(rows, vec![0, 1]);
    assert!(back.is_empty());
    assert_eq!(batch.num_rows(), 2);
    let (f, r) = both(FLAT, &data, 8192);
    assert_eq!(f.rows(), 2);
    assert!(f.dead.is_empty(), "{:?}", f.dead);
    assert_eq!(f.batches, r.batches);
}

/// A schema of `json` fields only has no column for the fast path to fill: arrow-json's alone.
#[test]
fn a_schema_of_json_fields_only_decodes() {
    let text = "name = \"j\"\n[[fields]]\nname = \"ctx\"\ntype = \"json\"\n";
    let data = chunk(
        &[b"{\"ctx\":{\"a\":1}}".to_vec(), b"{\"x\":2}".to_vec()],
        false,
    );
    let (f, r) = both(text, &data, 8192);
    assert_eq!(f.rows(), 2, "{:?}", f.dead);
    assert_eq!(f.batches, r.batches);
}

/// Schemas with nested fields are arrow-json's alone, and still decode.
#[test]
fn nested_schemas_have_no_fast_path() {
    let s = schema("name = \"n\"\n[[fields]]\nname = \"tags\"\ntype = \"list<string>\"\n");
    let j = json::JsonDecoder::new(&s, 100, None).unwrap();
    assert!(j.fast_for_tests().is_none());
}

/// The generated records are not all handed back: a good share of them is read by the fast
/// path, so the property above compares it and not arrow-json with itself.
#[test]
fn the_generated_records_exercise_the_fast_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    // The decoder gives the fast path only records that are UTF-8 (checked per group).
    let records: Vec<Vec<u8>> = (0..2000)
        .map(|_| record().new_tree(&mut runner).unwrap().current())
        .filter(|r| std::str::from_utf8(r).is_ok())
        .collect();
    let data = chunk(&records, false);
    let s = schema(FLAT);
    let j = json::JsonDecoder::new(&s, 100, None).unwrap();
    let mut fast = j.fast_for_tests().unwrap();
    let mut recs = Vec::new();
    framing::split_records(&data, None, &mut recs);
    let (mut rows, mut back) = (Vec::new(), Vec::new());
    fast.decode(&data.data, &recs, &mut rows, &mut back);
    let share = rows.len() as f64 / recs.len() as f64;
    eprintln!(
        "fast path read {} of {} generated records",
        rows.len(),
        recs.len()
    );
    assert!((0.3..0.95).contains(&share), "fast path share {share}");
}

/// A group of mostly bad records keeps no room for them in its batch: what the good rows hold is
/// about what arrow-json's batch holds, not records × columns.
#[test]
fn a_batch_holds_room_for_its_rows_only() {
    let mut text = String::from("name = \"wide\"\n");
    for c in 0..50 {
        text.push_str(&format!("[[fields]]\nname = \"c{c}\"\ntype = \"int64\"\n"));
    }
    let mut records = vec![b"{\"c0\":1}".to_vec()];
    records.extend(std::iter::repeat_n(b"x".to_vec(), 8191));
    let data = chunk(&records, false);
    let (f, r) = both(&text, &data, 8192);
    assert_eq!((f.rows(), f.dead.len()), (1, 8191));
    let held = |d: &Decoded| -> usize { d.batches.iter().map(|b| b.get_array_memory_size()).sum() };
    assert!(
        held(&f) <= 2 * held(&r) + 16 * 1024,
        "fast path batch holds {} bytes, arrow-json's {}",
        held(&f),
        held(&r)
    );
}
