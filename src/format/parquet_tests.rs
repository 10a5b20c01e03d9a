//! The column writer writes, in parallel or not, byte for byte, what parquet-rs's `ArrowWriter` writes
//! for the same batches, properties and row group limit: flat, nested (struct, list, map) and
//! null columns, batches that cross row group boundaries, an empty file.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, ListArray, MapBuilder, StringArray, StringBuilder, StructArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::parquet::properties;
use super::{create_writer, Codec, FormatKind, FormatOptions};
use crate::store::Destination;

fn schema() -> SchemaRef {
    let item = Field::new("item", DataType::Int64, true);
    let map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
        .finish()
        .data_type()
        .clone();
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("host", DataType::Utf8, true),
        Field::new("id", DataType::Int64, true),
        Field::new(
            "user",
            DataType::Struct(
                vec![
                    Field::new("name", DataType::Utf8, true),
                    Field::new("age", DataType::Int64, true),
                ]
                .into(),
            ),
            true,
        ),
        Field::new("tags", DataType::List(Arc::new(item)), true),
        Field::new("labels", map, true),
    ]))
}

/// `rows` rows starting at `from`: every 7th value null, low- and high-cardinality strings.
fn batch(from: usize, rows: usize) -> RecordBatch {
    let n = from..from + rows;
    let ts = TimestampMillisecondArray::from_iter_values(
        n.clone().map(|i| 1_700_000_000_000 + i as i64 * 13),
    )
    .with_timezone("UTC");
    let host = StringArray::from_iter(
        n.clone()
            .map(|i| (i % 7 != 0).then(|| format!("h{}", i % 5))),
    );
    let id = Int64Array::from_iter(n.clone().map(|i| (i % 7 != 1).then_some((i * 7919) as i64)));
    let names: ArrayRef = Arc::new(StringArray::from_iter(
        n.clone().map(|i| (i % 3 != 0).then(|| format!("user-{i}"))),
    ));
    let ages: ArrayRef = Arc::new(Int64Array::from_iter_values(
        n.clone().map(|i| (i % 90) as i64),
    ));
    let user = StructArray::new(
        match schema().field(3).data_type() {
            DataType::Struct(f) => f.clone(),
            _ => unreachable!(),
        },
        vec![names, ages],
        Some(n.clone().map(|i| i % 7 != 2).collect()),
    );
    let tags = ListArray::from_iter_primitive::<Int64Type, _, _>(n.clone().map(|i| {
        (i % 7 != 3).then(move || (0..i % 4).map(move |k| (k % 3 != 1).then_some((i + k) as i64)))
    }));
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for i in n {
        if i % 7 == 4 {
            labels.append(false).unwrap();
            continue;
        }
        for k in 0..i % 3 {
            labels.keys().append_value(format!("k{k}"));
            labels.values().append_value(format!("v{i}"));
        }
        labels.append(true).unwrap();
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts),
        Arc::new(host),
        Arc::new(id),
        Arc::new(user),
        Arc::new(tags),
        Arc::new(labels.finish()),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

/// The file sluice's writer makes of `sizes` (batch sizes), and the one `ArrowWriter` makes.
fn both(sizes: &[usize], opts: &FormatOptions) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
    let file = dest.create("out.parquet").unwrap();
    let mut w = create_writer(opts, schema(), file.clone()).unwrap();
    let mut reference: Option<ArrowWriter<Vec<u8>>> = None;
    let mut from = 0;
    for &rows in sizes {
        let b = batch(from, rows);
        from += rows;
        w.write(&b).unwrap();
        let r = reference.get_or_insert_with(|| {
            let props = properties(opts, &schema(), Some(&b)).unwrap();
            ArrowWriter::try_new(Vec::new(), schema(), Some(props)).unwrap()
        });
        r.write(&b).unwrap();
    }
    w.finish().unwrap();
    file.commit().unwrap();
    let reference = reference.unwrap_or_else(|| {
        let props = properties(opts, &schema(), None).unwrap();
        ArrowWriter::try_new(Vec::new(), schema(), Some(props)).unwrap()
    });
    let ours = std::fs::read(dir.path().join("out.parquet")).unwrap();
    (ours, reference.into_inner().unwrap())
}

#[test]
fn column_parallel_files_are_what_arrow_writer_writes() {
    let cases: &[(&[usize], usize)] = &[
        (&[1000, 3000, 1, 7000, 250], 4096),
        (&[10_000; 6], 25_000),
        (&[5], 1),
        (&[70_000], 1_000_000),
        (&[], 1000),
    ];
    for (codec, parallel) in [
        (Codec::Zstd(1), true),
        (Codec::Zstd(1), false),
        (Codec::Snappy, true),
        (Codec::None, false),
    ] {
        for (sizes, group) in cases {
            let opts = FormatOptions {
                kind: FormatKind::Parquet,
                codec: Some(codec),
                row_group_rows: *group,
                parallel,
                ..FormatOptions::default()
            };
            let (ours, reference) = both(sizes, &opts);
            assert!(
                ours == reference,
                "{codec:?}, parallel {parallel}, batches {sizes:?}, row groups of {group}: {} bytes against {}",
                ours.len(),
                reference.len()
            );
            let rows: usize = sizes.iter().sum();
            let read = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(ours),
            )
            .unwrap();
            assert_eq!(read.metadata().num_row_groups(), rows.div_ceil(*group));
            let back: Vec<RecordBatch> = read.build().unwrap().map(Result::unwrap).collect();
            if rows > 0 {
                let back = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
                assert_eq!(back, batch(0, rows));
            }
        }
    }
}

/// Strings without a dictionary are written DELTA_LENGTH_BYTE_ARRAY (the text end to end,
/// which zstd compresses better and sooner than a length before each value); strings with few
/// distinct values keep their dictionary, and timestamps DELTA_BINARY_PACKED. With
/// `ParquetEncodings::Plain` no delta encoding is used, with page version 2 too. Every value
/// reads back as written.
#[test]
fn strings_without_a_dictionary_are_written_end_to_end() {
    use super::{Dictionary, ParquetEncodings};
    use parquet::basic::Encoding;
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("host", DataType::Utf8, true),
        Field::new("trace", DataType::Utf8, true),
    ]));
    let n = 0..20_000u64;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from_iter_values(n.clone().map(|i| i as i64 * 7))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter(
            n.clone()
                .map(|i| (i % 9 != 0).then(|| format!("h{}", i % 4))),
        )),
        Arc::new(StringArray::from_iter(n.map(|i| {
            (i % 11 != 0).then(|| format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        }))),
    ];
    let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (dictionary, encodings, page_version) in [
        (Dictionary::Auto, ParquetEncodings::Delta, 1),
        (Dictionary::Off, ParquetEncodings::Delta, 1),
        (Dictionary::Auto, ParquetEncodings::Plain, 1),
        (Dictionary::Off, ParquetEncodings::Plain, 2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        let file = dest.create("out.parquet").unwrap();
        let opts = FormatOptions {
            kind: FormatKind::Parquet,
            codec: Some(Codec::Zstd(1)),
            dictionary,
            parquet_encodings: encodings,
            parquet_page_version: page_version,
            ..FormatOptions::default()
        };
        let mut w = create_writer(&opts, schema.clone(), file.clone()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        file.commit().unwrap();
        let bytes = bytes::Bytes::from(std::fs::read(dir.path().join("out.parquet")).unwrap());
        let read =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let group = read.metadata().row_group(0);
        let used = |i: usize| -> Vec<Encoding> { group.column(i).encodings().collect() };
        let case = format!("{dictionary:?}, {encodings:?}, page v{page_version}");
        let delta = encodings == ParquetEncodings::Delta;
        if !delta {
            // No column has a delta encoding, whatever the page version would choose.
            for i in 0..3 {
                let delta_used = used(i).into_iter().any(|e| {
                    matches!(
                        e,
                        Encoding::DELTA_BINARY_PACKED
                            | Encoding::DELTA_LENGTH_BYTE_ARRAY
                            | Encoding::DELTA_BYTE_ARRAY
                    )
                });
                assert!(!delta_used, "{case}: column {i} {:?}", used(i));
            }
        }
        let ts = used(0);
        assert_eq!(
            ts.contains(&Encoding::DELTA_BINARY_PACKED),
            delta,
            "{case}: ts {ts:?}"
        );
        let host = used(1);
        assert_eq!(
            host.contains(&Encoding::RLE_DICTIONARY),
            dictionary == Dictionary::Auto,
            "{case}: host {host:?}"
        );
        if dictionary == Dictionary::Off && delta {
            assert!(
                host.contains(&Encoding::DELTA_LENGTH_BYTE_ARRAY),
                "{case}: host {host:?}"
            );
        }
        let trace = used(2);
        assert!(
            !trace.contains(&Encoding::RLE_DICTIONARY),
            "{case}: trace {trace:?}"
        );
        assert_eq!(
            trace.contains(&Encoding::DELTA_LENGTH_BYTE_ARRAY),
            delta,
            "{case}: trace {trace:?}"
        );
        assert_eq!(
            trace.contains(&Encoding::PLAIN),
            !delta,
            "{case}: trace {trace:?}"
        );
        let back: Vec<RecordBatch> = read.build().unwrap().map(Result::unwrap).collect();
        let back = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
        assert_eq!(back, b, "{case}");
    }
}
