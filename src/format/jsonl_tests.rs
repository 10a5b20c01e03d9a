//! JSON lines against arrow-json's `LineDelimited` writer, the reference: generated batches of
//! every column type (escapes, control characters, non-ASCII text, extreme integers, floats
//! that are not finite, timestamps of every unit beyond years 1 to 9999 and in several zones,
//! nulls, nested values) must give identical bytes, top-level binary written as base64 text
//! (arrow-json writes hex).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, DictionaryArray, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, Int8Array, LargeStringArray, ListArray, NullArray,
    StringArray, StringViewArray, StructArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt16Array,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Int32Type};
use arrow::json::writer::LineDelimited;
use arrow::json::WriterBuilder;
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::jsonl;

/// arrow-json's lines of `batch`, its top-level binary columns first made base64 text (what
/// ours write, and a binary field reads by default; arrow-json writes hex).
fn reference(batch: &RecordBatch) -> Vec<u8> {
    use base64::Engine;
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema_ref().fields().iter().zip(batch.columns()) {
        match c.as_any().downcast_ref::<BinaryArray>() {
            Some(b) => {
                let text: StringArray = b
                    .iter()
                    .map(|v| v.map(|v| base64::engine::general_purpose::STANDARD.encode(v)))
                    .collect();
                fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
                columns.push(Arc::new(text));
            }
            None => {
                fields.push(f.as_ref().clone());
                columns.push(c.clone());
            }
        }
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .unwrap();
    let mut w = WriterBuilder::new().build::<_, LineDelimited>(Vec::new());
    w.write(&batch).unwrap();
    w.finish().unwrap();
    w.into_inner()
}

fn ours(batch: &RecordBatch) -> (Vec<u8>, Vec<u8>) {
    let mut encoded = Vec::new();
    jsonl::encode(batch, &mut encoded).unwrap();
    let mut written = Vec::new();
    jsonl::write(batch, &mut written).unwrap();
    (encoded, written)
}

fn assert_same(batch: &RecordBatch) {
    let want = reference(batch);
    let (encoded, written) = ours(batch);
    assert_eq!(
        String::from_utf8_lossy(&encoded),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(encoded, want);
    assert_eq!(written, want);
}

/// Text that needs escapes, control characters, quotes, non-ASCII and long runs.
fn text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => proptest::option::of(any::<String>()),
        2 => proptest::option::of("[a-z0-9 /._-]{0,40}"),
        1 => proptest::option::of("[\"\\\\\u{0}-\u{1f}\u{7f}é€😀a]{0,20}"),
        1 => proptest::option::of("[a-z]{15,40}[\"\\\\\n][a-z]{0,20}"),
    ]
}

/// Timestamps near the epoch, near the edges of years 1 and 9999 in every unit, and any.
fn instant() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        // Years 1 to 9999 (and a little beyond) in seconds, milliseconds and microseconds;
        // any i64 is within them in nanoseconds.
        2 => proptest::option::of(-62_200_000_000i64..253_500_000_000),
        2 => proptest::option::of(-62_200_000_000_000i64..253_500_000_000_000),
        2 => proptest::option::of(-62_200_000_000_000_000i64..253_500_000_000_000_000),
        1 => proptest::option::of(-4_000_000_000_000i64..4_000_000_000_000),
        1 => proptest::option::of(any::<i64>()),
        1 => proptest::option::of(prop_oneof![
            Just(-62_135_596_800i64), Just(-62_135_596_801), Just(253_402_300_799),
            Just(253_402_300_800), Just(-62_135_596_800_000), Just(-62_135_596_800_001),
            Just(253_402_300_799_999), Just(253_402_300_800_000), Just(0), Just(-1),
            Just(i64::MIN), Just(i64::MAX), Just(-62_135_596_800_000_000),
            Just(253_402_300_799_999_999), Just(951_782_400_123_456_789),
        ]),
    ]
}

fn float() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        3 => proptest::option::of(any::<f64>()),
        1 => proptest::option::of(prop_oneof![
            Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0),
            Just(0.0), Just(1e16), Just(1e-7), Just(f64::MIN_POSITIVE), Just(f64::MAX),
            Just(24.29), Just(5e-324),
        ]),
    ]
}

#[derive(Debug, Clone)]
struct Row {
    s: Option<String>,
    i: Option<i64>,
    u: Option<u64>,
    f: Option<f64>,
    b: Option<bool>,
    t: Option<i64>,
}

fn row() -> impl Strategy<Value = Row> {
    (
        text(),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<u64>()),
        float(),
        proptest::option::of(any::<bool>()),
        instant(),
    )
        .prop_map(|(s, i, u, f, b, t)| Row { s, i, u, f, b, t })
}

/// Every column type built from the same rows.
fn batch(rows: &[Row]) -> RecordBatch {
    let s = || rows.iter().map(|r| r.s.clone());
    let i = || rows.iter().map(|r| r.i);
    let u = || rows.iter().map(|r| r.u);
    let t = || rows.iter().map(|r| r.t);
    let f = || rows.iter().map(|r| r.f);
    let mut cols: Vec<(String, ArrayRef)> = vec![
        ("s".into(), Arc::new(s().collect::<StringArray>())),
        ("large".into(), Arc::new(s().collect::<LargeStringArray>())),
        ("view".into(), Arc::new(s().collect::<StringViewArray>())),
        (
            "i8".into(),
            Arc::new(i().map(|v| v.map(|v| v as i8)).collect::<Int8Array>()),
        ),
        (
            "i16".into(),
            Arc::new(i().map(|v| v.map(|v| v as i16)).collect::<Int16Array>()),
        ),
        (
            "i32".into(),
            Arc::new(i().map(|v| v.map(|v| v as i32)).collect::<Int32Array>()),
        ),
        ("i64".into(), Arc::new(i().collect::<Int64Array>())),
        (
            "u8".into(),
            Arc::new(u().map(|v| v.map(|v| v as u8)).collect::<UInt8Array>()),
        ),
        (
            "u16".into(),
            Arc::new(u().map(|v| v.map(|v| v as u16)).collect::<UInt16Array>()),
        ),
        (
            "u32".into(),
            Arc::new(u().map(|v| v.map(|v| v as u32)).collect::<UInt32Array>()),
        ),
        ("u64".into(), Arc::new(u().collect::<UInt64Array>())),
        (
            "f32".into(),
            Arc::new(f().map(|v| v.map(|v| v as f32)).collect::<Float32Array>()),
        ),
        ("f64".into(), Arc::new(f().collect::<Float64Array>())),
        (
            "b".into(),
            Arc::new(rows.iter().map(|r| r.b).collect::<BooleanArray>()),
        ),
        (
            "day".into(),
            Arc::new(i().map(|v| v.map(|v| v as i32)).collect::<Date32Array>()),
        ),
        (
            "bin".into(),
            Arc::new(BinaryArray::from_iter(
                rows.iter().map(|r| r.s.as_deref().map(str::as_bytes)),
            )),
        ),
        (
            "list".into(),
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                rows.iter().map(|r| r.i.map(|v| vec![Some(v as i32), None])),
            )),
        ),
    ];
    let tz: [Option<&str>; 5] = [
        None,
        Some("UTC"),
        Some("+00:00"),
        Some("+08:00"),
        Some("Europe/Berlin"),
    ];
    for (n, zone) in tz.iter().enumerate() {
        let zone = zone.map(str::to_string);
        cols.push((
            format!("ts_s{n}"),
            Arc::new(
                t().collect::<TimestampSecondArray>()
                    .with_timezone_opt(zone.clone()),
            ),
        ));
        cols.push((
            format!("ts_ms{n}"),
            Arc::new(
                t().collect::<TimestampMillisecondArray>()
                    .with_timezone_opt(zone.clone()),
            ),
        ));
        cols.push((
            format!("ts_us{n}"),
            Arc::new(
                t().collect::<TimestampMicrosecondArray>()
                    .with_timezone_opt(zone.clone()),
            ),
        ));
        cols.push((
            format!("ts_ns{n}"),
            Arc::new(
                t().collect::<TimestampNanosecondArray>()
                    .with_timezone_opt(zone),
            ),
        ));
    }
    cols.push(("null".into(), Arc::new(NullArray::new(rows.len()))));
    // A dictionary whose keys are valid but whose value is null, and null keys.
    let keys = rows
        .iter()
        .map(|r| r.b.map(i32::from))
        .collect::<Int32Array>();
    let values = StringArray::from(vec![None, Some("x\"y")]);
    cols.push((
        "dict".into(),
        Arc::new(DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap()),
    ));
    // A struct that is itself null where `b` is.
    let inner = StructArray::try_new(
        vec![Field::new("x", DataType::Utf8, true)].into(),
        vec![cols[0].1.clone()],
        Some(
            rows.iter()
                .map(|r| r.b.is_some())
                .collect::<Vec<_>>()
                .into(),
        ),
    )
    .unwrap();
    cols.push(("st".into(), Arc::new(inner)));
    // Names that need escapes too.
    cols.push(("we\"ird\n\\".into(), cols[0].1.clone()));
    RecordBatch::try_from_iter(cols).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lines_match_arrow_json(rows in proptest::collection::vec(row(), 0..24)) {
        assert_same(&batch(&rows));
    }

    /// A slice of a batch: every column starts at an offset.
    #[test]
    fn sliced_lines_match_arrow_json(
        rows in proptest::collection::vec(row(), 1..24),
        from in 0usize..24,
        len in 0usize..24,
    ) {
        let b = batch(&rows);
        let from = from % b.num_rows();
        assert_same(&b.slice(from, len.min(b.num_rows() - from)));
    }
}

#[test]
fn a_sliced_batch_writes_its_own_rows() {
    let rows: Vec<Row> = (0..10)
        .map(|n| Row {
            s: Some(format!("row {n}")),
            i: (n % 3 != 0).then_some(n),
            u: Some(n as u64),
            f: Some(n as f64 / 3.0),
            b: Some(n % 2 == 0),
            t: Some(1_714_521_600_005 + n * 1_001),
        })
        .collect();
    let whole = batch(&rows);
    assert_same(&whole.slice(3, 5));
    assert_same(&whole.slice(0, 0));
}

#[test]
fn a_batch_larger_than_one_flush_is_written_whole() {
    let rows: Vec<Row> = (0..3000)
        .map(|n| Row {
            s: Some("x".repeat(40)),
            i: Some(n),
            u: None,
            f: Some(0.5),
            b: None,
            t: Some(n * 86_400_000),
        })
        .collect();
    let b = batch(&rows);
    let (encoded, written) = ours(&b);
    assert!(
        written.len() > 2 * 64 * 1024,
        "the batch spans several flushes"
    );
    assert_eq!(encoded, written);
    assert_eq!(written, reference(&b));
}

#[test]
fn an_empty_batch_writes_nothing_whatever_its_columns() {
    // arrow-json refuses to encode a union and an unknown zone, but only once a row is
    // written: an empty batch of them is no error.
    let union = arrow::array::UnionArray::try_new(
        vec![(0, Arc::new(Field::new("a", DataType::Int32, true)))]
            .into_iter()
            .collect(),
        vec![0i8].into(),
        None,
        vec![Arc::new(Int32Array::from(vec![1])) as ArrayRef],
    )
    .unwrap();
    let zone = TimestampSecondArray::from(vec![1]).with_timezone("Mars/Olympus");
    let b = RecordBatch::try_from_iter([
        ("u", Arc::new(union) as ArrayRef),
        ("t", Arc::new(zone) as ArrayRef),
    ])
    .unwrap();
    assert!(jsonl::encode(&b, &mut Vec::new()).is_err());
    let empty = b.slice(0, 0);
    assert_same(&empty);
}

#[test]
fn a_batch_without_columns_writes_empty_objects() {
    let b = RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(3)),
    )
    .unwrap();
    assert_same(&b);
    assert_eq!(ours(&b).0, b"{}\n{}\n{}\n");
}
