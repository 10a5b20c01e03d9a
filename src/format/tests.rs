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
    // One runtime for every test and case: files keep its handle.
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap());
    let dest = Destination::parse(url, rt.handle().clone()).unwrap();
    let file = dest.create("t/out.bin").unwrap();
    let opts = FormatOptions {
        kind,
        stripe_bytes,
        ..FormatOptions::default()
    };
    (create_writer(&opts, schema, file.clone()).unwrap(), file)
}

#[test]
fn every_writer_counts_its_data_compressors_and_buffers() {
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
        let file_buffer = file.held_bytes() as usize;
        let written = file.bytes_written() as usize;
        assert_eq!(
            file_buffer,
            written.min(256 * 1024),
            "{kind:?}: the local buffer"
        );
        match kind {
            // The row group's pages plus zstd's contexts: 512 KiB for each of 2 columns.
            FormatKind::Parquet => assert!(held > file_buffer + 1024 * 1024, "{held}"),
            // The stripe's encoded data.
            FormatKind::Orc => assert!(held > file_buffer + 1024 * 1024, "{held}"),
            FormatKind::Json => assert_eq!(held, file_buffer + gzip::state_bytes(1), "{kind:?}"),
            _ => assert_eq!(held, file_buffer + 8 * 1024, "{kind:?}"),
        }
        w.finish().unwrap();
        file.commit().unwrap();
    }
}

#[test]
fn an_orc_stripe_in_progress_is_counted_until_it_is_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, file) = writer(dir.path().to_str().unwrap(), FormatKind::Orc, 2 << 20);
    let (mut peak, mut flushes, mut dropped) = (0, 0, false);
    for i in 0..40 {
        let (before, held_before) = (file.bytes_written(), w.memory_bytes());
        w.write(&batch(10_000, i)).unwrap();
        let held = w.memory_bytes();
        if file.bytes_written() > before {
            flushes += 1;
            dropped |= held < held_before;
        } else {
            assert!(
                held > held_before,
                "a write without a flush adds to the stripe"
            );
        }
        peak = peak.max(held);
    }
    assert!(
        flushes >= 3 && dropped,
        "stripes flushed: {flushes}, estimate dropped: {dropped}"
    );
    // orc-rust flushes past the stripe size, between its 8,192-row slices.
    assert!(peak <= 2 * (2 << 20), "peak {peak}");
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

/// Both cases orc-rust 0.9.0 panicked on, fixed: the patched-base width compare (a steady
/// column with jumps back) and a run holding i64::MIN among negatives.
#[test]
fn orc_encodes_the_runs_that_overflowed() {
    let ids: Vec<i64> = (0..30_000i64)
        .map(|i| (i % 10_000) * 7919 + i / 10_000)
        .collect();
    assert_eq!(orc_round_trip(&ids, 10_000), ids);
    let negatives = vec![-1, i64::MIN, -2, -1, -3, -3, -3, -7, -1, -2];
    assert_eq!(orc_round_trip(&negatives, 100), negatives);
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

/// A gzip text file written as parallel blocks: decompressed, the bytes are the sequential
/// writer's, one gzip member per batch.
#[test]
fn parallel_blocks_write_what_the_sequential_writers_write() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let raw_schema = Arc::new(Schema::new(vec![Field::new(
        crate::decode::RAW_COLUMN,
        DataType::Utf8,
        true,
    )]));
    let raw = |seed: usize| {
        let lines =
            StringArray::from_iter((0..3000).map(|i| (i % 9 != 0).then(|| format!("l{seed}-{i}"))));
        RecordBatch::try_new(raw_schema.clone(), vec![Arc::new(lines)]).unwrap()
    };
    let cases = [
        (FormatKind::Json, Codec::Gzip(1)),
        (FormatKind::Csv, Codec::Gzip(1)),
        (FormatKind::Tsv, Codec::Gzip(6)),
        (FormatKind::Text, Codec::Gzip(1)),
    ];
    for ((kind, codec), batches) in cases.into_iter().flat_map(|c| [(c, 9), (c, 0)]) {
        let mut files = Vec::new();
        for parallel in [false, true] {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let dest = Destination::parse(&url, rt.handle().clone()).unwrap();
            let name = format!("{kind:?}-{batches}-{parallel}.out");
            let file = dest.create(&name).unwrap();
            let opts = FormatOptions {
                kind,
                codec: Some(codec),
                parallel,
                ..FormatOptions::default()
            };
            let schema = if kind == FormatKind::Text {
                raw_schema.clone()
            } else {
                batch(1, 0).schema()
            };
            let mut w = create_writer(&opts, schema, file.clone()).unwrap();
            for i in 0..batches {
                if kind == FormatKind::Text {
                    w.write(&raw(i)).unwrap();
                } else {
                    w.write(&batch(2000 + i * 10, i)).unwrap();
                }
            }
            w.finish().unwrap();
            file.commit().unwrap();
            files.push(std::fs::read(dir.path().join(&name)).unwrap());
        }
        let text = |bytes: &[u8]| {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let (sequential, parallel) = (text(&files[0]), text(&files[1]));
        assert_eq!(sequential.is_empty(), batches == 0);
        assert!(
            sequential == parallel,
            "{kind:?} {codec:?}: the text differs"
        );
        if kind == FormatKind::Text {
            // One line per row: a null `_raw` (one in nine here) is an empty line. Before,
            // it wrote nothing, and its row was counted as written.
            let lines = sequential.iter().filter(|b| **b == b'\n').count();
            assert_eq!(lines, batches * 3000);
            assert!(batches == 0 || sequential.starts_with(b"\nl0-1\n"));
        }
        // A gzip member starts with 1f 8b 08: one per batch.
        let members = files[1]
            .windows(3)
            .filter(|w| w == &[0x1f, 0x8b, 0x08])
            .count();
        assert!(
            members >= batches.max(1),
            "{kind:?}: {members} gzip members"
        );
    }
}

/// ORC honours the codec's level (orc-rust compressed zstd at its default level 3 and zlib at
/// 6 whatever was asked, so the default `zstd:1` cost twice the compression time), and a
/// stripe encoded and compressed on the rayon pool is byte for byte the sequential one.
#[test]
fn orc_honours_codec_levels_and_parallel_stripes_write_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dest = Destination::parse(&url, rt.handle().clone()).unwrap();
    let write_in = |codec: Codec, parallel: bool, stripe_bytes: usize| -> Vec<u8> {
        let name = format!("{codec:?}-{parallel}-{stripe_bytes}.orc");
        let file = dest.create(&name).unwrap();
        let opts = FormatOptions {
            kind: FormatKind::Orc,
            codec: Some(codec),
            parallel,
            stripe_bytes,
            ..FormatOptions::default()
        };
        let mut w = create_writer(&opts, batch(1, 0).schema(), file.clone()).unwrap();
        for i in 0..8 {
            w.write(&batch(10_000, i)).unwrap();
        }
        w.finish().unwrap();
        file.commit().unwrap();
        let bytes = std::fs::read(dir.path().join(&name)).unwrap();
        let reader = orc_rust::ArrowReaderBuilder::try_new(
            std::fs::File::open(dir.path().join(&name)).unwrap(),
        )
        .unwrap()
        .build();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(
            rows, 80_000,
            "{codec:?} parallel {parallel}: rows read back"
        );
        bytes
    };
    // Small stripes: several of them, each finished in parallel.
    let write = |codec: Codec, parallel: bool| write_in(codec, parallel, 256 * 1024);
    for codec in [Codec::Zstd(19), Codec::Snappy, Codec::Lz4, Codec::None] {
        assert!(
            write(codec, true) == write(codec, false),
            "{codec:?}: the parallel stripes differ"
        );
        // One stripe whose text stream (about 3 MB) spans several compression blocks, which
        // are compressed on the pool.
        assert!(
            write_in(codec, true, 64 << 20) == write_in(codec, false, 64 << 20),
            "{codec:?}: a stripe whose streams span blocks differs in parallel"
        );
    }
    for (low, high) in [
        (Codec::Zstd(1), Codec::Zstd(19)),
        (Codec::Zlib(1), Codec::Zlib(9)),
    ] {
        let (a, b) = (write(low, false), write(high, false));
        assert!(a != b, "{low:?} and {high:?} wrote the same bytes");
        assert!(
            b.len() < a.len(),
            "{high:?} is not smaller than {low:?}: {} against {}",
            b.len(),
            a.len()
        );
        assert!(
            write(low, true) == a,
            "{low:?}: the parallel stripes differ"
        );
    }
}

/// The text format writes `_raw`'s strings: a `_raw` of another type (a stage's `_kafka_key AS
/// _raw`, binary) is refused at start. Before, it passed, and the first write panicked,
/// failing the task at every restart.
#[test]
fn a_raw_column_that_is_no_string_is_refused_by_the_text_format() {
    let opts = FormatOptions {
        kind: FormatKind::Text,
        ..FormatOptions::default()
    };
    let with = |ty: DataType| Arc::new(Schema::new(vec![Field::new("_raw", ty, true)]));
    opts.validate(&with(DataType::Utf8)).unwrap();
    for ty in [DataType::Binary, DataType::Int64, DataType::LargeUtf8] {
        let err = opts.validate(&with(ty.clone())).unwrap_err().to_string();
        assert!(err.contains("strings as lines"), "{ty}: {err}");
    }
}
