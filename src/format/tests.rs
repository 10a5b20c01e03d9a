//! What each writer says it holds in memory (`memory_bytes`), the figure
//! `sink.max_buffered_bytes` is enforced with.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::store::Destination;

fn batch(rows: usize, seed: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, true),
    ]));
    let ids = Int64Array::from_iter_values((0..rows).map(|i| (i * 7919 + seed) as i64));
    let text = StringArray::from_iter_values(
        (0..rows).map(|i| format!("value {} of batch {seed} with some words", i * 31)),
    );
    RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(text)]).unwrap()
}

fn writer(url: &str, kind: FormatKind, stripe_bytes: usize) -> (Box<dyn FormatWriter>, OutputFile) {
    writer_for(url, kind, stripe_bytes, batch(1, 0).schema())
}

fn writer_for(
    url: &str,
    kind: FormatKind,
    stripe_bytes: usize,
    schema: arrow::datatypes::SchemaRef,
) -> (Box<dyn FormatWriter>, OutputFile) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse(url, rt.handle().clone()).unwrap();
    // The runtime must outlive the file: leak it for the test.
    std::mem::forget(rt);
    let file = dest.create("t/out.bin").unwrap();
    let opts = FormatOptions {
        kind,
        stripe_bytes,
        ..FormatOptions::default()
    };
    (create_writer(&opts, schema, file.clone()).unwrap(), file)
}

#[test]
fn every_writer_counts_its_file_buffers_and_compressor() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    for kind in [
        FormatKind::Parquet,
        FormatKind::Orc,
        FormatKind::Json,
        FormatKind::Csv,
    ] {
        let (mut w, file) = writer(&url, kind, 64 * 1024 * 1024);
        for i in 0..20 {
            w.write(&batch(10_000, i)).unwrap();
        }
        let held = w.memory_bytes();
        // Local files hold their 1 MiB write buffer once that much is written; Parquet and
        // ORC hold the row group or stripe in progress on top.
        assert!(
            held as u64 >= file.held_bytes(),
            "{kind:?}: {held} < the file's own {}",
            file.held_bytes()
        );
        match kind {
            // Parquet holds the row group's compressed pages; ORC the stripe's Arrow size.
            FormatKind::Parquet => assert!(held as u64 > file.held_bytes() + 100_000, "{held}"),
            FormatKind::Orc => assert!(held > 4 * 1024 * 1024, "{kind:?}: {held}"),
            FormatKind::Json => assert!(held >= GZIP_STATE, "{kind:?}: {held}"),
            _ => assert!(held > 0, "{kind:?}: {held}"),
        }
        w.finish().unwrap();
        let written = file.bytes_written();
        assert_eq!(
            file.held_bytes(),
            written.min(1 << 20),
            "{kind:?}: until commit"
        );
        file.commit().unwrap();
    }
}

#[test]
fn an_orc_stripe_is_flushed_by_the_estimate_and_the_estimate_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, file) = writer(dir.path().to_str().unwrap(), FormatKind::Orc, 2 << 20);
    let mut peak = 0;
    let mut flushes = 0;
    for i in 0..40 {
        let before = file.bytes_written();
        w.write(&batch(10_000, i)).unwrap();
        if file.bytes_written() > before {
            flushes += 1;
        }
        let held = w.memory_bytes() as u64 - file.held_bytes();
        peak = peak.max(held);
    }
    assert!(flushes >= 5, "stripes flushed: {flushes}");
    // At most a stripe's estimate plus one batch.
    let one = batch(10_000, 0).get_array_memory_size() as u64;
    assert!(peak <= (2 << 20) + one, "peak {peak}");
}

#[test]
fn an_upload_counts_its_part_and_the_parts_in_flight() {
    let (mut w, file) = writer("memory:///b", FormatKind::Csv, 1);
    assert_eq!(
        w.memory_bytes(),
        8 * 1024,
        "only the csv buffer before any byte"
    );
    let part = 10 * 1024 * 1024u64;
    let mut written = 0;
    let mut i = 0;
    while written < 5 * part {
        w.write(&batch(50_000, i)).unwrap();
        i += 1;
        written = file.bytes_written();
        let expect = if written < part {
            written
        } else {
            written % part + (written / part).min(2) * part
        };
        assert_eq!(file.held_bytes(), expect, "after {written} bytes");
        assert!(file.held_bytes() < 3 * part);
    }
    w.finish().unwrap();
    file.clone().commit().unwrap();
    assert_eq!(file.held_bytes(), 0, "nothing once committed");
}

/// Writes `ids` as an ORC int64 column (and an int32 one) through sluice's writer and reads
/// them back with orc-rust's reader. orc-rust 0.9.0's encoder panicked on ordinary data (a
/// steady id column with one jump) and on i64::MIN; the vendored copy fixes both.
fn orc_round_trip(ids: &[i64], batch_rows: usize) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("small", DataType::Int32, true),
    ]));
    let url = dir.path().to_str().unwrap();
    let (mut w, file) = writer_for(url, FormatKind::Orc, 64 << 20, schema.clone());
    for part in ids.chunks(batch_rows.max(1)) {
        let col = Int64Array::from(part.to_vec());
        // The same values cut to 32 bits, every 7th one null.
        let small: arrow::array::Int32Array = part
            .iter()
            .map(|v| (v % 7 != 3).then_some(*v as i32))
            .collect();
        let cols: Vec<arrow::array::ArrayRef> = vec![Arc::new(col), Arc::new(small)];
        w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
    file.commit().unwrap();
    let f = std::fs::File::open(dir.path().join("t/out.bin")).unwrap();
    let reader = orc_rust::ArrowReaderBuilder::try_new(f).unwrap().build();
    let mut out = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let small = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>();
        for (i, v) in col.values().iter().enumerate() {
            let expect = (v % 7 != 3).then_some(*v as i32);
            let got = small.unwrap().is_valid(i).then(|| small.unwrap().value(i));
            assert_eq!(got, expect, "the int32 column at row {i}");
        }
        out.extend(col.values().iter().copied());
    }
    out
}

fn int_runs() -> impl proptest::strategy::Strategy<Value = Vec<i64>> {
    use proptest::prelude::*;
    // Runs of values with a common shape (steady steps, small noise, outliers, extremes):
    // what picks each of ORC's RLE v2 encodings.
    let run = prop_oneof![
        (any::<i64>(), -1000i64..1000, 1usize..600).prop_map(|(s, d, n)| (0..n as i64)
            .map(|i| s.wrapping_add(d.wrapping_mul(i)))
            .collect::<Vec<_>>()),
        (0i64..1 << 40, 0u32..40, 1usize..600).prop_map(|(base, bits, n)| {
            (0..n as i64)
                .map(|i| base + ((i * 2654435761) & ((1i64 << bits) - 1).max(0)))
                .collect()
        }),
        proptest::collection::vec(any::<i64>(), 1..50),
        proptest::collection::vec(
            prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)],
            1..30
        ),
    ];
    proptest::collection::vec(run, 1..6).prop_map(|runs| runs.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    #[test]
    fn orc_int_columns_read_back_as_written(ids in int_runs(), batch in 1usize..2000) {
        let back = std::panic::catch_unwind(|| orc_round_trip(&ids, batch));
        proptest::prop_assert!(back.is_ok(), "the ORC writer panicked");
        proptest::prop_assert_eq!(back.unwrap(), ids);
    }
}
